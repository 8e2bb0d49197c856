"""The report's reasoning sections: what thinking buys per stage (the same model scored with
thinking on and off), pass@k and maj@k with standard errors, and the conditions every column
was scored under (system prompt, template, decoding, thinking).

Two entry points for report.py, both over {model name: its evaluation dict} (base first):

    results["reasoning"] = reasoning_results(evaluations(result))              # into results.json
    md += reasoning_section(evaluations(result), result.config.evaluation)     # markdown lines
"""

from __future__ import annotations

from tinyreason.config.evaluation import EvalConfig

HELDOUT = "heldout/accuracy"


def evaluations(result) -> dict[str, dict | None]:
    """{model: evaluation} of a CurriculumResult: the base first, then each stage in order."""
    return {"base": result.base_eval, **{o.stage.name: o.evaluation for o in result.stages}}


def _on_off(ev: dict) -> dict[str, dict]:
    """{benchmark: {"on", "off", "no_answer_on", "no_answer_off"}} for one model that was scored both ways."""
    rows: dict[str, dict] = {}
    off = ev.get("think_off")
    if off and "accuracy" in ev:
        rows[HELDOUT] = {"on": ev["accuracy"], "off": off["accuracy"],
                         "no_answer_on": _share(ev.get("thinking")), "no_answer_off": _share(off.get("thinking"))}
    bench = ev.get("benchmarks") or {}
    bench_off = bench.get("think_off") or {}
    for task, value in (bench_off.get("primary") or {}).items():
        if task in bench.get("primary", {}):
            rows[task] = {"on": bench["primary"][task], "off": value,
                          "no_answer_on": _task_share(bench, task), "no_answer_off": _task_share(bench_off, task)}
    return rows


def _share(counts: dict | None) -> float | None:
    return counts["no_answer"] / counts["n"] if counts and counts.get("n") else None


def _task_share(run: dict, task: str) -> float | None:
    # a group's row: its leaf tasks' counts added up
    counts = [c for t, c in (run.get("thinking") or {}).items() if t == task or t.startswith(task + "_")]
    n = sum(c["n"] for c in counts)
    return sum(c["no_answer"] for c in counts) / n if n else None


def reasoning_results(evaluations: dict[str, dict | None]) -> dict:
    """For results.json: per model, thinking on vs off per benchmark (with the share of samples
    that gave no answer) and every sampled score (pass@k, maj@k: value, se, n)."""
    out: dict = {"thinking_on_off": {}, "sampled": {}}
    for name, ev in evaluations.items():
        if not ev:
            continue
        rows = _on_off(ev)
        if rows:
            out["thinking_on_off"][name] = rows
        sampled = (ev.get("benchmarks") or {}).get("sampling") or {}
        if sampled:
            out["sampled"][name] = sampled
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _score(entry: dict | None) -> str:
    if not entry:
        return "-"
    se = entry.get("se")
    return f"{entry['value']:.3f}" + ("" if se is None or se != se else f" ± {se:.3f}")


def conditions(ev: EvalConfig) -> list[str]:
    """The scoring conditions, named: the same for every column of the benchmark table."""
    template = ("tinyreason's ChatML template" if ev.prompt.chat_template == "platform"
                else "its own saved chat template, the one its stages trained with")
    system = (f"the system prompt \"{ev.prompt.system_prompt}\"" if ev.prompt.system_prompt
              else "the system prompt it trained with (model.system_prompt, or its template's default)")
    budget = f"a budget of {ev.thinking.budget} thinking tokens" if ev.thinking.budget else "no thinking budget"
    lines = ["## Scoring conditions", "",
             f"Every model, the base included, is scored with {system} "
             f"and {template}; thinking mode `{ev.thinking.mode}`, {budget}.", "",
             f"- held-out probe: {decoding_text(ev.decoding.sampling())}, seed {ev.decoding.seed}, "
             + (f"{ev.heldout_samples} draws per problem, " if ev.heldout_samples > 1 else "")
             + f"up to {ev.max_new_tokens} new tokens"]
    for t in ev.benchmarks.tasks:
        lines.append(f"- {t.task}: {decoding_text(t.sampling_config().sampling())}, seed {t.seed}, "
                     f"{t.repeats} sample{'s' if t.repeats > 1 else ''} per problem, up to "
                     f"{t.max_gen_toks or ev.benchmarks.max_gen_toks} new tokens (generation tasks)")
    return lines + [""]


def decoding_text(sampling: dict) -> str:
    """generate()'s sampling arguments in words: "greedy", or "temperature 0.6, top-p 0.95"."""
    if not sampling["do_sample"]:
        return "greedy"
    parts = [f"temperature {sampling['temperature']}"]
    parts += [f"top-p {sampling['top_p']}"] if "top_p" in sampling else []
    parts += [f"top-k {sampling['top_k']}"] if "top_k" in sampling else []
    return ", ".join(parts)


def reasoning_section(evaluations: dict[str, dict | None], ev: EvalConfig) -> list[str]:
    """Markdown lines: thinking on vs off per reasoning stage, sampled scores, scoring conditions."""
    data = reasoning_results(evaluations)
    md: list[str] = []
    if data["thinking_on_off"]:
        md += ["## Thinking on vs off", "",
               "The same model, problems and seeds, scored a second time with thinking off: its answer starts "
               "after an empty `<think></think>` block. Models whose tokenizer has the think tokens only "
               "(the reasoning stage and after). \"No answer\": samples whose trace never closed, or that "
               "closed with nothing after it; they score as wrong.", "",
               "| model | benchmark | thinking on | thinking off | on - off | no answer (on) | no answer (off) |",
               "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, rows in data["thinking_on_off"].items():
            for bench, r in rows.items():
                md.append(f"| {name} | {bench} | {r['on']:.3f} | {r['off']:.3f} | {r['on'] - r['off']:+.3f} | "
                          f"{_pct(r['no_answer_on'])} | {_pct(r['no_answer_off'])} |")
        md.append("")
    if data["sampled"]:
        keys = sorted({k for tasks in data["sampled"].values() for e in tasks.values() for k in e
                       if k.startswith(("pass@", "maj@")) and isinstance(e[k], dict)},
                      key=lambda k: (k[0] != "p", int(k.split("@")[1])))
        md += ["## Sampled scores", "",
               "pass@k: unbiased estimator (Chen et al. 2021) from n samples per problem; maj@k: accuracy of "
               "the majority answer of k samples. Value ± standard error over problems.", "",
               "| model | task | n | " + " | ".join(keys) + " |", "| --- | --- | ---: |" + " ---: |" * len(keys)]
        for name, tasks in data["sampled"].items():
            for task, e in tasks.items():
                md.append(f"| {name} | {task} | {e.get('n', '-')} | "
                          + " | ".join(_score(e.get(k)) for k in keys) + " |")
        md.append("")
    return md + conditions(ev)
