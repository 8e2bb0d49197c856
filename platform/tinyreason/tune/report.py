"""The sweep report: every trial, the best one, plots, and best.yaml.

report.md links PNG plots; report.html embeds the same plots as data URIs so it
is one self-contained file to share. best.yaml is the swept curriculum with the
best values written in, runnable as it is with jobs/curriculum.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tinyreason.config.base import read_yaml, resolve_path
from tinyreason.config.loading import apply_override
from tinyreason.config.sweeps import section_of
from tinyreason.eval.scores import benchmark_scores
from tinyreason.outputs import StageOutput
from tinyreason.plots import plt
from tinyreason.report import markdown_to_html
from tinyreason.tune.sweep import SweepResult


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _status(result: SweepResult, t) -> str:
    if t.error:
        return f"ERROR: {t.error[:120]}"
    if t.status == "STOPPED":
        return f"stopped early by {result.sweep.scheduler.type.upper()} at step {_fmt(t.metrics.get('step'))}"
    return t.status


def trial_table(result: SweepResult) -> tuple[list[str], list[list[str]]]:
    params = list(result.sweep.space)
    benches = sorted({k for t in result.trials for k in t.metrics if k.startswith("bench/")})
    # loss and step: the last training log, which is all a trial stopped early has to show
    head = ["trial", *params, "objective", *[b.removeprefix("bench/") for b in benches], "loss", "step", "train s",
            "status"]
    rows = []
    for t in sorted(result.trials, key=lambda t: -(t.metrics.get("objective") or float("-inf"))):
        rows.append([t.trial_id, *[_fmt(t.params.get(p)) for p in params], _fmt(t.metrics.get("objective")),
                     *[_fmt(t.metrics.get(b)) for b in benches], _fmt(t.metrics.get("loss")),
                     _fmt(t.metrics.get("step")), _fmt(t.metrics.get("train_seconds")), _status(result, t)])
    return head, rows


def _md_table(head, rows) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plot_objective(result: SweepResult, out: Path) -> list[Path]:
    paths = []
    done = [t for t in result.trials if "objective" in t.metrics]
    for p, space in result.sweep.space.items():
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        xs = [t.params.get(p) for t in done]
        ax.scatter(xs, [t.metrics["objective"] for t in done], color="tab:blue")
        failed = [t.params.get(p) for t in result.trials if t.status == "ERROR"]
        if failed:
            ax.scatter(failed, [0] * len(failed), marker="x", color="tab:red", label="failed")
            ax.legend()
        if space.loguniform or (xs and all(isinstance(x, (int, float)) and x > 0 for x in xs)
                                and max(xs) / max(min(xs), 1e-12) > 50):
            ax.set_xscale("log")
        ax.set_xlabel(p)
        ax.set_ylabel("objective")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"objective_vs_{p}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_curves(result: SweepResult, out: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    drawn = 0
    for t in result.trials:
        if not t.stage_dir:
            continue
        pts = [(m["step"], m["loss"]) for m in StageOutput(result.ctx.store, t.stage_dir).metrics() if "loss" in m]
        if pts:
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
            stopped = t.status == "STOPPED"  # a dashed curve that ends where the scheduler cut it
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label + (" (stopped)" if stopped else ""), lw=1,
                    ls="--" if stopped else "-")
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "training_curves.png"
    fig.savefig(path, dpi=110)
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
          f"Curriculum `{result.sweep.curriculum}`, stage `{result.sweep.stage}`, search `{result.sweep.search}`, "
          f"{len(result.trials)} trials ({_counts(result)}). {_scheduler_line(result)}"
          f"Parent stages were trained once; every trial starts from `{_shown(result, result.parent.path)}`.", "",
          "## Trials", "", _md_table(head, rows), ""]
    if result.best:
        best_yaml = out / "best.yaml"
        best_yaml.write_text(yaml.safe_dump(best_config(result), sort_keys=False), encoding="utf-8")
        md += ["## Best trial", "", f"`{result.best.trial_id}`: objective {_fmt(result.best.metrics['objective'])} "
               f"with {', '.join(f'{k}={_fmt(v)}' for k, v in result.best.params.items())}. "
               f"Run it: `python jobs/curriculum.py --config {best_yaml}`", ""]
        md += ["### Best trial against the parent stage", "", _vs_parent(result), ""]
    md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots + ([curves] if curves else [])]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    (out / "report.html").write_text(markdown_to_html(md, out), encoding="utf-8")
    (out / "trials.json").write_text(json.dumps([t.__dict__ for t in result.trials], indent=2, default=str))
    result.out.publish()  # object storage: the report, plots, trials and best.yaml go there
    return out / "report.md"


def _shown(result: SweepResult, path: str) -> str:
    key = result.ctx.store.key_of(path)
    return key if key is not None else path


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
    parent = benchmark_scores(result.parent_eval)
    best = {k.removeprefix("bench/"): v for k, v in result.best.metrics.items() if k.startswith("bench/")}
    rows = [[k, _fmt(parent.get(k)), _fmt(v), _fmt(v - parent[k]) if k in parent else "-"]
            for k, v in sorted(best.items())]
    return _md_table(["benchmark", f"parent ({result.parent.name})", "best trial", "delta"], rows)
