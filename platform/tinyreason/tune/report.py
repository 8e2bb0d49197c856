"""The sweep report: every trial, the best one and which trials are within noise of it,
plots, and best.yaml.

report.md links PNG plots; report.html (render.py) embeds them so it is one self-contained
file to share. best.yaml is the swept curriculum with the best values written in, runnable
as it is with jobs/curriculum.py. Each trial's objective carries its standard error (see
`eval.scores.objective_score`); a trial whose objective is within 1.96 standard errors of
the difference from the best one's is marked "within noise": the sweep cannot rank the two.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from tinyreason.config.base import read_yaml, resolve_path
from tinyreason.config.loading import apply_override
from tinyreason.config.sweeps import section_of
from tinyreason.cost import trial_cost_section
from tinyreason.eval.scores import primary_with_errors
from tinyreason.outputs import StageOutput
from tinyreason.plots import DPI, WIDTH_IN, plt
from tinyreason.render import markdown_to_html, md_table, relative_to
from tinyreason.stats import Score, difference, within_noise_of_best
from tinyreason.tune.sweep import SweepResult, TrialRecord


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _score(v: float | None, se: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" + (f" ± {se:.3f}" if se is not None else "")


def _status(result: SweepResult, t) -> str:
    if t.error:
        return f"ERROR: {t.error[:120]}"
    if t.status == "STOPPED":
        return f"stopped early by {result.sweep.scheduler.type.upper()} at step {_fmt(t.metrics.get('step'))}"
    return t.status


def benchmark_keys(trials: list[TrialRecord]) -> list[str]:
    """The benchmarks the trial table shows: each once. A trial reports every lm-eval metric
    twice, as the task's primary score ("tinyreason_choice") and under its own name
    ("tinyreason_choice/acc"); a "task/metric" key is dropped when "task" is there too
    (every metric stays in trials.json)."""
    keys = list(dict.fromkeys(k.removeprefix("bench/") for t in trials for k in t.metrics if k.startswith("bench/")))
    return [k for k in keys if not ("/" in k and k.split("/", 1)[0] in keys)]


def objective_scores(trials: list[TrialRecord]) -> dict[str, Score]:
    """Each finished trial's objective with its standard error (None where it was not reported)."""
    return {t.trial_id: Score(t.metrics["objective"], t.metrics.get("objective_se")) for t in trials
            if t.status == "TERMINATED" and "objective" in t.metrics}


def noise_marks(trials: list[TrialRecord], best: TrialRecord | None) -> dict[str, str]:
    """{trial id: "best" | "within noise" | the gap in words} for the finished trials."""
    scores = objective_scores(trials)
    if best is None or best.trial_id not in scores:
        return {}
    close = within_noise_of_best(scores)
    marks = {}
    for name, s in scores.items():
        if name == best.trial_id:
            marks[name] = "best"
        elif name in close:
            marks[name] = "within noise"
        else:
            marks[name] = difference(s, scores[best.trial_id]).describe()
    return marks


def noise_sentence(trials: list[TrialRecord], best: TrialRecord) -> str:
    """In words, beside the best trial: which trials the sweep cannot tell apart from it."""
    marks = noise_marks(trials, best)
    close = [k for k, v in marks.items() if v == "within noise"]
    if best.metrics.get("objective_se") is None:
        return ("Its objective has no standard error (an evaluation from before tinyreason kept them, or a metric "
                "lm-eval gives none for), so no trial is called apart from it.")
    if not close:
        return ("Every other finished trial is below it by more than the noise (1.96 standard errors of the "
                "difference)." if len(marks) > 1 else "It is the only finished trial.")
    return (f"Within noise of it: {', '.join(f'`{c}`' for c in close)}. Their objectives differ from the best one's "
            "by less than 1.96 standard errors of the difference, so this sweep cannot rank them against it; more "
            "evaluation items would (evaluation.heldout_problems, or a larger `limit` per task). The best is also "
            "picked after looking, which flatters it.")


def trial_table(result: SweepResult) -> tuple[list[str], list[list[str]]]:
    params = list(result.sweep.space)
    benches = benchmark_keys(result.trials)
    marks = noise_marks(result.trials, result.best)
    # loss and step: the last training log, which is all a trial stopped early has to show
    head = ["trial", *params, "objective ± se", "against the best", *[f"{b} ± se" for b in benches], "loss",
            "step", "train s", "status"]
    rows = []
    for t in sorted(result.trials, key=lambda t: -(t.metrics.get("objective") or float("-inf"))):
        m = t.metrics
        rows.append([t.trial_id, *[_fmt(t.params.get(p)) for p in params],
                     _score(m.get("objective"), m.get("objective_se")), marks.get(t.trial_id, "-"),
                     *[_score(m.get(f"bench/{b}"), m.get(f"se/{b}")) for b in benches], _fmt(m.get("loss")),
                     _fmt(m.get("step")), _fmt(m.get("train_seconds")), _status(result, t)])
    return head, rows


def plot_objective(result: SweepResult, out: Path) -> list[Path]:
    paths = []
    done = [t for t in result.trials if "objective" in t.metrics]
    for p, space in result.sweep.space.items():
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.6))
        xs = [t.params.get(p) for t in done]
        errors = [t.metrics.get("objective_se") or math.nan for t in done]
        ax.errorbar(xs, [t.metrics["objective"] for t in done], yerr=errors, fmt="o", color="tab:blue", capsize=4,
                    label="objective ± 1 se")
        if result.best is not None and result.best in done:
            ax.plot([result.best.params.get(p)], [result.best.metrics["objective"]], marker="*", ms=15, ls="none",
                    color="tab:orange", mec="black", label="best")
        failed = [t.params.get(p) for t in result.trials if t.status == "ERROR"]
        if failed:
            ax.scatter(failed, [0] * len(failed), marker="x", color="tab:red", label="failed")
        if space.loguniform or (xs and all(isinstance(x, (int, float)) and x > 0 for x in xs)
                                and max(xs) / max(min(xs), 1e-12) > 50):
            ax.set_xscale("log")
        ax.set_xlabel(p)
        ax.set_ylabel("objective")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"objective_vs_{p}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_curves(result: SweepResult, out: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4))
    drawn = 0
    for t in result.trials:
        if not t.stage_dir:
            continue
        pts = [(m["step"], m["loss"]) for m in StageOutput(result.ctx.store, t.stage_dir).metrics() if "loss" in m]
        if pts:
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
            stopped = t.status == "STOPPED"  # a dashed curve that ends where the scheduler cut it
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label + (" (stopped)" if stopped else ""), lw=1.4,
                    ls="--" if stopped else "-")
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "training_curves.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def best_config(result: SweepResult) -> dict:
    """The curriculum YAML as written, with the sweep's overrides and the best values applied."""
    raw = read_yaml(resolve_path(result.sweep.curriculum))
    for assignment in result.sweep.overrides:
        apply_override(raw, assignment)
    for key, value in result.best.params.items():
        section, name = section_of(key)
        apply_override(raw, f"stages.{result.sweep.stage}.{section}.{name}={json.dumps(value)}")
    raw["name"] = f"{raw.get('name', 'experiment')}-best-{result.sweep.name}"
    return raw


def write_sweep_report(result: SweepResult) -> Path:
    out = result.sweep_dir
    head, rows = trial_table(result)
    plots = plot_objective(result, out)
    curves = plot_curves(result, out)
    md = [f"# Sweep report: {result.sweep.name}", "",
          f"Curriculum `{relative_to(result.sweep.curriculum, Path.cwd())}`, stage `{result.sweep.stage}`, search "
          f"`{result.sweep.search}`, {len(result.trials)} trials ({_counts(result)}). {_scheduler_line(result)}"
          f"Parent stages were trained once; every trial starts from `{_shown(result, result.parent.path)}` "
          "(paths are relative to the storage root).", "",
          "## Trials", "", "Scores ± one standard error. \"Against the best\": within noise when the difference "
          "from the best trial's objective is under 1.96 standard errors of the difference.", "",
          md_table(head, rows), ""]
    if result.best:
        best_yaml = out / "best.yaml"
        best_yaml.write_text(yaml.safe_dump(best_config(result), sort_keys=False), encoding="utf-8")
        b = result.best
        settings = ", ".join(f"{k}={_fmt(v)}" for k, v in b.params.items())
        objective = _score(b.metrics["objective"], b.metrics.get("objective_se"))
        md += ["## Best trial", "",
               f"`{b.trial_id}`: objective {objective} with {settings}. {noise_sentence(result.trials, b)}", "",
               f"`best.yaml` beside this report is the curriculum with these values; run it with "
               f"`python jobs/curriculum.py --config <storage>/{_shown(result, best_yaml)}`.", ""]
        md += ["### Best trial against the parent stage", "", _vs_parent(result), ""]
    md += trial_cost_section(result.trials)  # cost.py: each trial's worker-hours, tokens, money; the sweep's total
    md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots + ([curves] if curves else [])]
    text = "\n".join(md) + "\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "report.html").write_text(markdown_to_html(text, out, f"Sweep report: {result.sweep.name}"),
                                     encoding="utf-8")
    (out / "trials.json").write_text(json.dumps([t.__dict__ for t in result.trials], indent=2, default=str))
    result.out.publish()  # object storage: the report, plots, trials and best.yaml go there
    return out / "report.md"


def _shown(result: SweepResult, path) -> str:
    key = result.ctx.store.key_of(path)
    return key if key is not None else str(path)


def _counts(result: SweepResult) -> str:
    failed = sum(t.status == "ERROR" for t in result.trials)
    stopped = sum(t.status == "STOPPED" for t in result.trials)
    return f"{failed} failed" + (f", {stopped} stopped early" if stopped else "")


def _scheduler_line(result: SweepResult) -> str:
    s = result.sweep.scheduler
    if s.type == "none":
        return ""
    return (f"Scheduler {s.type.upper()} on training `{s.metric}` ({s.mode}): trials are compared from step "
            f"{s.grace_period} on, at steps growing by x{s.reduction_factor:g}, and the lagging ones stopped. ")


def _vs_parent(result: SweepResult) -> str:
    parent = primary_with_errors(result.parent_eval)
    m = result.best.metrics
    rows = []
    for k in benchmark_keys([result.best]):
        best = Score(m[f"bench/{k}"], m.get(f"se/{k}"))
        ref = parent.get(k)
        rows.append([k, _score(ref.value, ref.se) if ref else "-", _score(best.value, best.se),
                     difference(best, ref).describe() if ref else "-"])
    return md_table(["benchmark", f"parent ({result.parent.name})", "best trial", "change"], rows)
