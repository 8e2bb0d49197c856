"""The curriculum report: per-stage summary, loss curves, held-out results across stages.

Written as report.md (+ PNG plots) and results.json in the run directory, and
printed as a table at the end of `jobs/curriculum.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tinyreason.curriculum import CurriculumResult


def stage_rows(result: CurriculumResult) -> list[dict]:
    rows = []
    for o in result.stages:
        s = o.manifest.get("summary", {})
        ev = o.evaluation or {}
        rows.append({
            "stage": o.stage.name, "kind": o.stage.kind, "status": "cached" if o.cached else "trained",
            "steps": s.get("steps"), "loss_first": s.get("loss_first"), "loss_last": s.get("loss_last"),
            "tokens_per_s": s.get("tokens_per_s"), "train_seconds": o.manifest.get("train_seconds"),
            "heldout_accuracy": ev.get("accuracy"),
            "well_formed_think": (ev.get("format") or {}).get("well_formed"),
            "reward_margin": s.get("rewards/margins"),
            "model_dir": str(o.dir / "model"),
        })
    return rows


def _fmt(v, spec: str = ".3f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def summary_table(rows: list[dict]) -> str:
    head = "| stage | kind | status | steps | loss first -> last | tokens/s | held-out acc | well-formed | margin |"
    lines = [head, "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['kind']} | {r['status']} | {_fmt(r['steps'])} | "
            f"{_fmt(r['loss_first'])} -> {_fmt(r['loss_last'])} | {_fmt(r['tokens_per_s'], '.0f')} | "
            f"{_fmt(r['heldout_accuracy'], '.1%')} | {_fmt(r['well_formed_think'], '.1%')} | "
            f"{_fmt(r['reward_margin'])} |"
        )
    return "\n".join(lines)


def plot_losses(result: CurriculumResult, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [o for o in result.stages if any("loss" in m for m in o.metrics)]
    if not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3.2), squeeze=False)
    for ax, o in zip(axes[0], stages):
        pts = [(m["step"], m["loss"]) for m in o.metrics if "loss" in m]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", lw=1)
        ax.set_title(f"{o.stage.name} ({o.stage.kind})")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(result: CurriculumResult) -> Path:
    run_dir = result.run_dir
    rows = stage_rows(result)
    plot = plot_losses(result, run_dir / "loss_curves.png")
    base = result.base_eval
    results = {"base": {"model": result.base.path, "evaluation": _strip(base)}, "stages": rows,
               "evaluations": {o.stage.name: _strip(o.evaluation) for o in result.stages}}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    md = [f"# Curriculum report: {result.config.name}", "",
          f"Base model: `{result.base.path}`", "", "## Stages", "", summary_table(rows), ""]
    if plot:
        md += ["## Loss curves", "", f"![loss curves]({plot.name})", ""]
    md += ["## Outputs", ""] + [f"- {r['stage']}: `{r['model_dir']}`" for r in rows]
    path = run_dir / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def _strip(ev: dict | None) -> dict | None:
    return None if ev is None else {k: v for k, v in ev.items() if k != "samples"}


def print_summary(result: CurriculumResult, report: Path) -> None:
    print("\n" + summary_table(stage_rows(result)))
    print(f"\nreport: {report}\nfinal model: {result.stages[-1].dir / 'model'}")
