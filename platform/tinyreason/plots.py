"""Figures for the reports, drawn with matplotlib's file-only backend (no display on a
cluster or in CI). Reports import `plt` from here, so the backend is chosen once.

`plot_curves` draws what a stage kind declares in `StageKind.curves` from its stages'
metrics.jsonl, one panel per curve, stages laid end to end with their boundaries marked;
`plot_scores` draws benchmark scores as grouped bars with one-standard-error bars. Both
save at 9 inches x 100 dpi: render.py shows figures 900 px wide, so text is drawn at the
size it is read (at the old 4-inch panels in a row, the browser shrank 8 pt labels to 4).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after use(): pyplot reads the backend at import)

__all__ = ["StageCurves", "curve_lines", "plot_curves", "plot_scores", "plt"]

WIDTH_IN, DPI = 9.0, 100  # 900 px: render.py's figure width
PANEL_H_IN = 2.6


@dataclass
class StageCurves:
    """One stage's logged metrics, and the evaluation scores its curves may mark at its end."""

    name: str
    metrics: list[dict]
    scores: dict[str, float]


def _pattern(key: str) -> re.Pattern:
    # one `*` stands for one path segment: "rewards/*/mean" matches "rewards/correctness/mean"
    return re.compile("^" + "([^/]+)".join(re.escape(part) for part in key.split("*")) + "$")


def curve_lines(metrics: list[dict], key: str, transform=None) -> dict[str, list[tuple[float, float]]]:
    """{line name: [(step, value), ...]} for a curve key; a key with `*` gives one line per
    matched segment (named by it), a plain key one line named by the key. Logs without a
    step, or with a value that is not a finite number, are skipped."""
    pattern, lines = _pattern(key), {}
    for m in metrics:
        if "step" not in m:
            continue
        for k, v in m.items():
            hit = pattern.match(k)
            if not hit or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            v = transform(v) if transform else v
            if math.isfinite(v):
                lines.setdefault(hit.group(1) if "*" in key else key, []).append((m["step"], v))
    return lines


def _last_step(metrics: list[dict]) -> float:
    return max((m["step"] for m in metrics if isinstance(m.get("step"), (int, float))), default=0)


def _panel(ax, curve, stages: list[StageCurves], offsets: list[float]) -> bool:
    drawn, colors = False, {}
    for i, (stage, offset) in enumerate(zip(stages, offsets)):
        lines = curve_lines(stage.metrics, curve.key, curve.transform)
        for name, pts in lines.items():
            # one colour per stage for a plain curve, per matched line for a `*` curve
            color = colors.setdefault(name, f"C{len(colors)}") if "*" in curve.key else f"C{i}"
            label = name if "*" in curve.key and name not in {ln.get_label() for ln in ax.lines} else None
            ax.plot([offset + s for s, _ in pts], [v for _, v in pts], color=color, lw=1.4, marker="." if
                    len(pts) < 30 else None, ms=4, label=label)
            drawn = True
        if curve.point and curve.point in stage.scores:
            ax.plot([offset + _last_step(stage.metrics)], [stage.scores[curve.point]], marker="*", ms=13,
                    color=f"C{i}", mec="black", ls="none", label=f"{stage.name}: held-out")
            drawn = True
    if not drawn:
        return False
    if curve.log:
        ax.set_yscale("log")
    ax.set_title(curve.label, fontsize=11)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return True


def plot_curves(stages: list[StageCurves], curves, path: Path, title: str | None = None) -> Path | None:
    """One figure for stages sharing their curves: a panel per curve that has data, steps on
    the x axis, the stages laid end to end with a dashed line and the stage's name at each
    boundary. None when no curve was logged. `title` is left out where a heading names it."""
    offsets, total = [], 0.0
    for stage in stages:
        offsets.append(total)
        total += _last_step(stage.metrics)
    present = [c for c in curves if any(curve_lines(s.metrics, c.key, c.transform) for s in stages)]
    if not present:
        return None
    cols = 2 if len(present) > 1 else 1
    rows = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, PANEL_H_IN * rows + 0.7), squeeze=False)
    for ax, curve in zip(axes.flat, present):
        _panel(ax, curve, stages, offsets)
        if len(stages) > 1:
            for stage, offset in zip(stages, offsets):
                ax.axvline(offset, color="0.4", ls="--", lw=0.9)
                ax.text(offset, 1.0, f" {stage.name}", transform=ax.get_xaxis_transform(), va="top", ha="left",
                        fontsize=8, color="0.25")
    for ax in list(axes.flat)[len(present):]:
        ax.set_visible(False)
    for ax in list(axes.flat)[max(0, len(present) - cols):len(present)]:  # the bottom panel of each column
        ax.set_xlabel("optimizer step" + (" (stages end to end)" if len(stages) > 1 else ""), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_scores(columns: dict[str, dict], path: Path, ylabel: str = "score") -> Path | None:
    """Grouped bars: each benchmark across the models in `columns` ({model: {benchmark: Score}}),
    each bar with its one-standard-error bar (none where the se is unknown)."""
    benches = list(dict.fromkeys(b for c in columns.values() for b in c))
    if not benches:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.8))
    width = 0.8 / len(columns)
    for i, (name, scores) in enumerate(columns.items()):
        xs = [j + i * width for j in range(len(benches))]
        values = [scores[b].value if b in scores else 0.0 for b in benches]
        errors = [scores[b].se if b in scores and scores[b].se is not None else math.nan for b in benches]
        ax.bar(xs, values, width, label=name, yerr=errors, capsize=3, error_kw={"lw": 1, "ecolor": "0.2"})
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(benches))], benches, fontsize=9)
    ax.set_ylabel(ylabel + " (bars: ± 1 se)", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, ncols=min(len(columns), 6), loc="upper left", bbox_to_anchor=(0, -0.12), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
