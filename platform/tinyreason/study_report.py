"""The study report: one row per arm (its stages in words), each benchmark and the objective as
mean ± spread over seeds with the arms that seed noise cannot tell from the best marked, the
arms' curves on shared axes, the best arm against the base, compute per arm, and for a
scaling study the power-law fits of held-out loss against size and compute.

Written as report.md, a self-contained report.html and results.json in studies/<name>/.
"""

from __future__ import annotations

import json
import math

from tinyreason.console import say
from tinyreason.eval.scores import objective_value, primary_scores
from tinyreason.plots import plt
from tinyreason.render import markdown_to_html, md_table
from tinyreason.stats import seed_summary, seeds_differ
from tinyreason.study import ArmRun, StudyResult
from tinyreason.study_scaling import scaling_section

OBJECTIVE = "objective"


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def arm_scores(run: ArmRun, weights: dict) -> dict[str, float]:
    """The final stage's primary scores and the objective, for one (arm, seed)."""
    ev = run.final_eval
    if not ev:
        return {}
    scores = primary_scores(ev)
    try:
        scores[OBJECTIVE] = objective_value(ev, weights)
    except (ValueError, TypeError):
        pass
    return scores


def summarize(result: StudyResult) -> dict:
    """{arm: {metric: SeedSummary as dict, ...}, ...} over the arm's seeds that finished."""
    out = {}
    for arm in result.study.arms:
        cfg = result.configs[(arm.name, result.study.seeds[0])]
        per_seed = [arm_scores(r, cfg.evaluation.objective.weights) for r in result.runs_of(arm.name) if r.result]
        metrics = sorted({k for s in per_seed for k in s})
        out[arm.name] = {m: seed_summary([s[m] for s in per_seed if m in s]).__dict__ for m in metrics
                         if any(m in s for s in per_seed)}
        out[arm.name]["_values"] = {m: [s.get(m) for s in per_seed] for m in metrics}
    return out


def best_arm(summary: dict) -> str | None:
    scored = {a: s[OBJECTIVE]["mean"] for a, s in summary.items() if OBJECTIVE in s}
    return max(scored, key=scored.get) if scored else None


def noise_calls(summary: dict, best: str | None) -> dict[str, str]:
    """Each arm against the best, by the objective's spread over seeds (Welch's t)."""
    calls = {}
    for arm, s in summary.items():
        if best is None or OBJECTIVE not in s:
            calls[arm] = "not scored"
        elif arm == best:
            calls[arm] = "best"
        else:
            diff = seeds_differ(s["_values"][OBJECTIVE], summary[best]["_values"][OBJECTIVE])
            calls[arm] = diff.describe()
    return calls


def compute_of(run: ArmRun) -> dict:
    """Tokens trained and worker-hours of the arm's whole curriculum (shared stages counted for
    every arm that uses them, and marked)."""
    tokens = hours = 0.0
    shared = 0
    for o in run.result.stages if run.result else []:
        seen = [m.get("num_input_tokens_seen") for m in o.metrics if m.get("num_input_tokens_seen")]
        tokens += seen[-1] if seen else 0
        s = o.stage.scaling
        hours += o.manifest.get("train_seconds", 0) * s.num_workers * (s.gpus_per_worker if s.use_gpu
                                                                       else s.cpus_per_worker) / 3600
        shared += o.cached
    unit = "GPU" if run.result and any(o.stage.scaling.use_gpu for o in run.result.stages) else "CPU"
    return {"tokens": tokens, "hours": hours, "unit": unit, "stages_reused": shared}


def _stages_in_words(result: StudyResult, arm) -> str:
    if arm.about:
        return arm.about
    cfg = result.configs[(arm.name, result.study.seeds[0])]
    words = " -> ".join(f"{s.name} ({s.kind})" for s in cfg.stages)
    return words + (f"; {', '.join(arm.set)}" if arm.set else "")


def arms_table(result: StudyResult, summary: dict, calls: dict) -> str:
    metrics = [OBJECTIVE] + sorted({m for s in summary.values() for m in s if m not in (OBJECTIVE, "_values")})
    head = ["arm", "stages", "seeds", *metrics, "vs best", "tokens", "worker-h"]
    rows = []
    for arm in result.study.arms:
        s, runs = summary[arm.name], result.runs_of(arm.name)
        done = [r for r in runs if r.result]
        cells = [f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" if m in s and s[m]["std"] is not None
                 else _fmt(s[m]["mean"]) if m in s else "-" for m in metrics]
        comp = compute_of(done[0]) if done else {"tokens": None, "hours": None, "unit": ""}
        failed = [f"seed {r.seed}: {r.error}" for r in runs if r.error]
        rows.append([arm.name, _stages_in_words(result, arm), f"{len(done)}/{len(runs)}", *cells,
                     calls[arm.name] + (f" (failed: {'; '.join(failed)})" if failed else ""),
                     _fmt(comp["tokens"], ",.0f"), _fmt(comp["hours"], ".3f")])
    return md_table(head, rows)


def plot_curves(result: StudyResult, path) -> bool:
    """Each arm's training loss through its stages (seed 0), on one step axis, stage by stage."""
    fig, ax = plt.subplots(figsize=(9, 4))
    drawn = False
    for arm in result.study.arms:
        run = next((r for r in result.runs_of(arm.name) if r.result), None)
        offset, xs, ys = 0, [], []
        for o in run.result.stages if run else []:
            pts = [(m["step"], m["loss"]) for m in o.metrics if "loss" in m and "step" in m]
            xs += [offset + s for s, _ in pts]
            ys += [v for _, v in pts]
            offset += max((s for s, _ in pts), default=0)
        if xs:
            ax.plot(xs, ys, lw=1, label=arm.name)
            drawn = True
    if drawn:
        ax.set(xlabel="optimizer steps, stages end to end", ylabel="training loss", title="arms, seed 0")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn


def base_vs_best(result: StudyResult, summary: dict, best: str | None) -> str:
    base_eval = next((r.result.base_eval for r in result.runs if r.result and r.result.base_eval), None)
    if best is None or not base_eval:
        return "No arm finished with an evaluation, or the base was not evaluated."
    base = primary_scores(base_eval)
    rows = [[m, _fmt(base.get(m)), f"{summary[best][m]['mean']:.3f}", _fmt(summary[best][m]["mean"] - base[m], "+.3f")]
            for m in sorted(base) if m in summary[best]]
    return md_table(["benchmark", "base", f"best arm ({best}), mean over seeds", "delta"], rows)


def write_study_report(result: StudyResult):
    out = result.out.path
    summary = summarize(result)
    best = best_arm(summary)
    calls = noise_calls(summary, best)
    seeds = result.study.seeds
    md = [f"# Study report: {result.study.name}", "",
          f"Base experiment `{result.study.base}`; {len(result.study.arms)} arms x {len(seeds)} seed(s) {seeds}. "
          "Each cell is the mean ± standard deviation over seeds of the arm's final stage; \"vs best\" compares "
          "the objective with the best arm's by Welch's t over seeds (with one seed the spread is unknown and "
          "nothing is called different). Arms share the stages they have in common: trained once.", "",
          "## Arms", "", arms_table(result, summary, calls), ""]
    if best:
        md += [f"Best arm: **{best}**.", "", "## The best arm against the base", "", base_vs_best(result, summary, best), ""]
    if plot_curves(result, out / "curves.png"):
        md += ["## Training curves", "", "![arms' training loss](curves.png)", ""]
    scaling = scaling_section(result, out) if result.study.scaling else None
    if scaling:
        md += scaling["markdown"]
    failed = [r for r in result.runs if r.error]
    if failed:
        md += ["## Failed runs", ""] + [f"- {r.arm} (seed {r.seed}): {r.error}" for r in failed] + [""]
    text = "\n".join(md) + "\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "report.html").write_text(markdown_to_html(text, out, f"Study {result.study.name}"), encoding="utf-8")
    doc = {"study": result.study.model_dump(mode="json"), "best": best, "calls": calls,
           "arms": {a: {k: v for k, v in s.items()} for a, s in summary.items()},
           "runs": [{"arm": r.arm, "seed": r.seed, "error": r.error, "seconds": r.seconds,
                     "run": r.result.run.rel if r.result else None,
                     "compute": compute_of(r) if r.result else None} for r in result.runs],
           "scaling": scaling["results"] if scaling else None}
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    result.out.publish()
    return out / "report.md"


def print_study_summary(result: StudyResult, report) -> None:
    summary = summarize(result)
    say("\n" + arms_table(result, summary, noise_calls(summary, best_arm(summary))))
    say(f"report: {report}")

