"""The curriculum report: what each stage did, its curves, its scores with their errors, and
what its model writes.

Written as report.md, a self-contained report.html (render.py: figures inlined) and
results.json in the run directory, and summarized on the console at the end of
jobs/curriculum.py. The report is a list of sections, `SECTIONS`: each a function of the
`CurriculumResult` that returns markdown ("" to leave itself out) and may save figures in
the run dir. A new section is one function in its own module and one line in that list.

Every compared number carries its standard error: the benchmark table reads "0.400 ± 0.049"
(one se; lm-eval's for its tasks, the binomial one for the held-out probe), the bars have
error bars, and each stage's change against the base says whether it is beyond noise
(|difference| >= 1.96 se of the difference, stats.difference).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tinyreason.console import say
from tinyreason.cost import curriculum_cost
from tinyreason.curriculum import CurriculumResult
from tinyreason.eval.pretrain import SAMPLE_SEED, SAMPLE_TEMPERATURE
from tinyreason.eval.reasoning_report import evaluations, reasoning_results, reasoning_section
from tinyreason.eval.scores import PERPLEXITY, objective_score, primary_with_errors, table_scores, table_with_errors
from tinyreason.eval.tables import results_table
from tinyreason.generations import heldout_intro, heldout_samples, pretrain_samples, training_samples
from tinyreason.outputs import read_jsonl
from tinyreason.plots import StageCurves, plot_curves, plot_scores
from tinyreason.provenance_report import footer
from tinyreason.render import markdown_to_html, md_table
from tinyreason.stats import Score, difference
from tinyreason.train import registry
from tinyreason.train.grpo import SAMPLES_FILE

Section = Callable[[CurriculumResult], str]


def _pct(s: Score | None) -> str | None:
    if s is None:
        return None
    return f"{s.value:.1%}" + (f" ± {s.se * 100:.1f}" if s.se is not None else "")


def stage_rows(result: CurriculumResult) -> list[dict]:
    rows = []
    for o in result.stages:
        s = o.manifest.get("summary", {})
        scores = primary_with_errors(o.evaluation)
        acc, wf = scores.get("heldout/accuracy"), scores.get("heldout/well_formed")
        new = scores.get("heldout_new/accuracy")  # the held-out template family: no training row is worded so
        rows.append({
            "stage": o.stage.name, "kind": o.stage.kind, "status": "cached" if o.cached else "trained",
            "steps": s.get("steps"), "loss_first": s.get("loss_first"), "loss_last": s.get("loss_last"),
            "tokens_per_s": s.get("tokens_per_s"), "train_seconds": o.manifest.get("train_seconds"),
            "heldout_accuracy": acc.value if acc else None, "heldout_accuracy_se": acc.se if acc else None,
            "new_templates_accuracy": new.value if new else None, "new_templates_accuracy_se": new.se if new else None,
            "well_formed_think": wf.value if wf else None, "well_formed_think_se": wf.se if wf else None,
            "reward_margin": s.get("rewards/margins"), "perplexity": table_scores(o.evaluation).get(PERPLEXITY),
            "why": o.reason, "best_checkpoint": (o.manifest.get("checkpoints") or {}).get("best"),
            "model_dir": f"{o.output.rel}/model",
        })
    return rows


def _num(v, spec: str = ".3f"):
    return format(v, spec) if isinstance(v, float) else v


def _row_pct(r: dict, key: str) -> str | None:
    return _pct(Score(r[key], r[f"{key}_se"])) if r[key] is not None else None


def summary_table(rows: list[dict]) -> str:
    body = [[r["stage"], r["kind"], r["status"], r["steps"],
             f"{_num(r['loss_first'])} -> {_num(r['loss_last'])}" if r["loss_first"] is not None else None,
             _num(r["tokens_per_s"], ",.0f"), _row_pct(r, "heldout_accuracy"), _row_pct(r, "new_templates_accuracy"),
             _row_pct(r, "well_formed_think"), _num(r["reward_margin"])] for r in rows]
    return md_table(["stage", "kind", "status", "steps", "loss", "tokens/s", "held-out acc", "new templates",
                     "well-formed", "margin"], body,
                    align=["left", "left", "left", "right", "right", "right", "right", "right", "right", "right"])


def _models(result: CurriculumResult) -> dict[str, dict | None]:
    """Each evaluated model's evaluation, by name: the base first, then the stages."""
    evals = {"base": result.base_eval} if result.base_eval else {}
    evals.update((o.stage.name, o.evaluation) for o in result.stages)
    return {k: v for k, v in evals.items() if v}


def benchmark_columns(result: CurriculumResult, scores=primary_with_errors) -> dict[str, dict[str, Score]]:
    """{model: {benchmark: Score}}, base first; `table_with_errors` adds the perplexity rows."""
    cols = {name: scores(ev) for name, ev in _models(result).items()}
    return {k: v for k, v in cols.items() if v}


def delta_table(columns: dict[str, dict[str, Score]], base: str = "base") -> str:
    """Each model's change against `base`, benchmark by benchmark, in words: "+15.0 points
    (± 6.9), beyond noise". Scores on a 0-1 scale read in points (x100); perplexity as it is."""
    others = [c for c in columns if c != base]
    if base not in columns or not others:
        return ""
    rows = []
    for bench, ref in columns[base].items():
        cells = []
        for col in others:
            s = columns[col].get(bench)
            if s is None:
                cells.append(None)
                continue
            d = difference(s, ref)
            cells.append(d.describe(scale=1, unit="", digits=2) if bench == PERPLEXITY else d.describe())
        rows.append([bench, *cells])
    return md_table(["benchmark", *others], rows)


def _objectives(result: CurriculumResult) -> dict[str, Score | None]:
    weights = result.config.evaluation.objective.weights
    out = {}
    for name, ev in _models(result).items():
        try:
            out[name] = objective_score(ev, weights)
        except ValueError:
            out[name] = None  # a weight naming a benchmark this model did not run: shown as "-"
    return out


def stages_section(result: CurriculumResult) -> str:
    rows = stage_rows(result)
    md = ["## Stages", "", summary_table(rows), ""]
    md += [f"- **{r['stage']}**: {r['why']}" for r in rows if r["why"]]
    return "\n".join(md)


def cost_section(result: CurriculumResult) -> str:
    """What each stage cost in worker- and GPU-hours (and money with a price table): cost.py."""
    return "\n".join(curriculum_cost(result.stages)[1])


def benchmarks_section(result: CurriculumResult) -> str:
    table = benchmark_columns(result, table_with_errors)
    if not table:
        return ""
    base = "base" if "base" in table else None
    counts = {b: s.n for c in table.values() for b, s in c.items() if s.n}
    md = ["## Benchmarks", "",
          "Each score ± one standard error: lm-evaluation-harness's for its tasks, the binomial one for the "
          "held-out probe (Wilson-based when 0 or all items are right)"
          + (f"; `{PERPLEXITY}` is on the pretrain blend's held-out split, lower is better" if any(
              PERPLEXITY in c for c in table.values()) else "") + ". Items per benchmark: "
          + ", ".join(f"{b} {n}" for b, n in counts.items()) + ".", "", results_table(table, base)]
    if base and len(table) > 1:
        md += ["### Against the base model", "",
               "Beyond noise: the difference is at least 1.96 standard errors of the difference (about 95%, two-"
               "sided), counting both models' errors as independent. Every model answers the same items, which "
               "makes real differences more certain than this says: the call errs towards \"within noise\".", "",
               delta_table(table, base), ""]
    objectives = _objectives(result)
    if any(objectives.values()):
        md += [f"Objective ({result.config.evaluation.objective.name}): "
               + ", ".join(f"{k} {format(v, '.3f') if v.se is not None else format(v.value, '.3f')}"
                           if v else f"{k} -" for k, v in objectives.items()) + ".", ""]
    figure = plot_scores(benchmark_columns(result), result.run_dir / "benchmarks.png")
    if figure:
        md += [f"![benchmark scores by model, ± 1 standard error]({figure.name})"]
    return "\n".join(md)


def curve_groups(result: CurriculumResult) -> list[list]:
    """Consecutive stages whose kinds declare the same curves share one figure (chat SFT then
    <think> SFT: one set of panels with the boundary marked)."""
    groups: list[list] = []
    for o in result.stages:
        curves = registry.get(o.stage.kind).curves
        if groups and registry.get(groups[-1][-1].stage.kind).curves == curves:
            groups[-1].append(o)
        else:
            groups.append([o])
    return groups


def curves_section(result: CurriculumResult) -> str:
    md = []
    for i, group in enumerate(curve_groups(result)):
        stages = [StageCurves(o.stage.name, o.metrics, table_scores(o.evaluation)) for o in group]
        title = ", then ".join(f"{o.stage.name} ({o.stage.kind})" for o in group)
        names = "-".join(o.stage.name for o in group)
        path = plot_curves(stages, registry.get(group[0].stage.kind).curves,
                           result.run_dir / f"curves-{i + 1:02d}-{names}.png")
        if path:
            md += [f"### {title}", "", f"![training curves of {title}]({path.name})", ""]
    return "\n".join(["## Training curves", "", "What each stage logged, by optimizer step; stages of kinds with "
                      "the same curves share a figure, laid end to end with their boundaries dashed.", "", *md]
                     ) if md else ""


def reasoning_stages(result: CurriculumResult) -> list:
    """The stages from the first one that teaches <think> on: their models think before answering."""
    first = next((i for i, o in enumerate(result.stages) if registry.get(o.stage.kind).think_tokens), None)
    return [] if first is None else result.stages[first:]


def generations_section(result: CurriculumResult) -> str:
    md = []
    for o in reasoning_stages(result):
        blocks = heldout_samples(o.evaluation)
        if blocks:
            md += [f"### {o.stage.name} ({o.stage.kind})", "", heldout_intro(o.evaluation), "", *blocks, ""]
    return "\n".join(["## Sample generations", "", "Each model's full greedy output on held-out problems, its "
                      "`<think>` part and its answer in separate blocks (open one to read it).", "", *md]
                     ) if md else ""


def training_samples_section(result: CurriculumResult) -> str:
    md = []
    for o in result.stages:
        o.output.fetch(SAMPLES_FILE)
        blocks = training_samples(read_jsonl(o.output.file(SAMPLES_FILE)))
        if blocks:
            md += [f"### {o.stage.name} ({o.stage.kind})", "", *blocks, ""]
    return "\n".join(["## Completions during training", "", "Completions the policy sampled while training, "
                      "as its reward functions scored them: from the first and the last logged step.", "", *md]
                     ) if md else ""


def pretrain_samples_section(result: CurriculumResult) -> str:
    pretrain = {name: ev["pretrain"] for name, ev in _models(result).items() if ev.get("pretrain")}
    md = [line for name, p in pretrain.items() for line in pretrain_samples(name, p)]
    return "\n".join(["## Pre-training samples", "", f"Continuations of fixed prompts: greedy, and one sampled at "
                      f"temperature {SAMPLE_TEMPERATURE} seeded per prompt from seed {SAMPLE_SEED}.", "", *md]
                     ) if md else ""


def reasoning_eval_section(result: CurriculumResult) -> str:
    """Thinking on and off, answers missing, pass@k and maj@k (eval/reasoning_report.py)."""
    return "\n".join(reasoning_section(evaluations(result), result.config.evaluation))


def outputs_section(result: CurriculumResult) -> str:
    store = result.run.store
    md = ["## Outputs", "", "Paths are relative to the storage root.", ""]
    for o, r in zip(result.stages, stage_rows(result)):
        line = f"- {r['stage']}: `{r['model_dir']}` (model card `{r['model_dir']}/README.md`)"
        if (b := r["best_checkpoint"]) and b.get("value") is not None:
            line += f"; best checkpoint (step {b['step']}, {b['value']:.4g}): `{store.key_of(b['path']) or b['path']}`"
        md.append(line)
    return "\n".join(md)


def provenance_section(result: CurriculumResult) -> str:
    """Code, libraries, machines and seed behind the numbers (provenance_report.py)."""
    return "\n".join(footer(result))


# The report, top to bottom. Add a section by appending its function (see the module docstring).
SECTIONS: list[Section] = [stages_section, cost_section, benchmarks_section, reasoning_eval_section,
                           curves_section, generations_section, training_samples_section, pretrain_samples_section,
                           outputs_section, provenance_section]


def results_json(result: CurriculumResult) -> dict:
    scores = {m: {b: s.__dict__ for b, s in c.items()} for m, c in benchmark_columns(result, table_with_errors).items()}
    return {"base": {"model": result.run.store.key_of(result.base.path) or result.base.path},
            "stages": stage_rows(result), "benchmarks": scores,
            "objective": {"name": result.config.evaluation.objective.name,
                          "values": {k: (v.__dict__ if v else None) for k, v in _objectives(result).items()}},
            "pretrain": {name: ev["pretrain"] for name, ev in _models(result).items() if ev.get("pretrain")},
            "reasoning": reasoning_results(evaluations(result)), "cost": curriculum_cost(result.stages)[0]}


def write_report(result: CurriculumResult, sections: list[Section] | None = None) -> Path:
    run_dir = result.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    base = result.run.store.key_of(result.base.path) or result.base.path
    md = [f"# Curriculum report: {result.config.name}", "", f"Base model: `{base}`. Run `{result.run.rel}`.", ""]
    for section in SECTIONS if sections is None else sections:
        text = section(result)
        if text:
            md += [text.rstrip(), ""]
    text = "\n".join(md)
    (run_dir / "results.json").write_text(json.dumps(results_json(result), indent=2, default=str))
    path = run_dir / "report.md"
    path.write_text(text, encoding="utf-8")
    (run_dir / "report.html").write_text(markdown_to_html(text, run_dir, f"Curriculum report: {result.config.name}"),
                                         encoding="utf-8")
    result.run.publish()  # object storage: the run record goes there too
    return path


def print_summary(result: CurriculumResult, report: Path) -> None:
    say("\n" + summary_table(stage_rows(result)))
    columns = benchmark_columns(result, table_with_errors)
    if columns:
        say("\n" + results_table(columns, "base" if "base" in columns else None))
    # the console names local files as they are, to open them; the report never does
    say(f"report: {report}\nfinal model: {result.stages[-1].output.model_dir}\nlogs: {result.run.logs_dir}")
