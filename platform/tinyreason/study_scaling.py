"""Scaling in a study: the held-out loss of a pretrain stage against model size and against
training compute (6 x parameters x tokens, Kaplan et al. 2020), each fitted as a power law
in log-log space, drawn with its points and extrapolated with a prediction interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinyreason.outputs import MANIFEST
from tinyreason.plots import plt
from tinyreason.render import md_table
from tinyreason.stats import StatsError, fit_power_law, seed_summary

LEVEL = 0.9  # the prediction interval drawn around each fit


def _parameters(base_path: str) -> float | None:
    manifest = Path(base_path) / MANIFEST  # a from-scratch base records its size (base.py)
    return json.loads(manifest.read_text()).get("parameters") if manifest.exists() else None


def scaling_points(result) -> list[dict]:
    """One point per arm: size, compute and held-out loss of the scaling stage, over its seeds."""
    stage_name = result.study.scaling.stage
    points = []
    for arm in result.study.arms:
        rows = []
        for run in result.runs_of(arm.name):
            outcome = next((o for o in run.result.stages if o.stage.name == stage_name), None) if run.result else None
            nll = ((outcome.evaluation or {}).get("pretrain") or {}).get("nll") if outcome else None
            params = _parameters(run.result.base.path) if run.result else None
            tokens = [m["num_input_tokens_seen"] for m in outcome.metrics if m.get("num_input_tokens_seen")] \
                if outcome else []
            if nll is not None and params and tokens:
                rows.append((params, tokens[-1], nll))
        if rows:
            loss = seed_summary([r[2] for r in rows])
            points.append({"arm": arm.name, "parameters": rows[0][0], "tokens": rows[0][1],
                           "compute": 6.0 * rows[0][0] * rows[0][1], "loss": loss.mean, "loss_std": loss.std,
                           "seeds": loss.n})
    return points


def _fit(points: list[dict], x: str):
    try:
        return fit_power_law([p[x] for p in points], [p["loss"] for p in points])
    except StatsError as e:
        return str(e)


def _plot(points: list[dict], fits: dict, path: Path, extrapolate: float) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, x, label in zip(axes, ("parameters", "compute"), ("parameters", "training FLOPs (6ND)")):
        xs, ys = [p[x] for p in points], [p["loss"] for p in points]
        ax.scatter(xs, ys, color="tab:blue", zorder=3)
        for p in points:
            ax.annotate(p["arm"], (p[x], p["loss"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        fit = fits[x]
        if not isinstance(fit, str):
            grid = np.geomspace(min(xs), max(xs) * extrapolate, 50)
            ax.plot(grid, fit.predict(grid), color="tab:orange", label=f"L = {fit.a:.3g} x^{fit.b:.3f}")
            if fit.resid_std is not None:  # two points fit exactly: no interval to draw
                lo, hi = fit.interval(grid, level=LEVEL)
                ax.fill_between(grid, lo, hi, color="tab:orange", alpha=0.2, label=f"{LEVEL:.0%} prediction interval")
            ax.legend(fontsize=7)
        ax.set(xscale="log", yscale="log", xlabel=label, ylabel="held-out loss (nats/token)")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scaling_section(result, out: Path) -> dict | None:
    points = scaling_points(result)
    if len(points) < 2:
        return {"markdown": ["## Scaling", "", f"Too few arms finished with a held-out loss ({len(points)}) to fit "
                             "anything.", ""], "results": {"points": points}}
    fits = {x: _fit(points, x) for x in ("parameters", "compute")}
    _plot(points, fits, out / "scaling.png", result.study.scaling.extrapolate)
    rows = [[p["arm"], f"{p['parameters'] / 1e6:.2f}M", f"{p['tokens']:,.0f}", f"{p['compute']:.3g}",
             f"{p['loss']:.4f}" + (f" ± {p['loss_std']:.4f}" if p["loss_std"] is not None else "")] for p in points]
    md = ["## Scaling", "", f"Held-out loss of stage `{result.study.scaling.stage}` (mean over seeds) against "
          "parameters and against training compute C = 6ND, fitted as L = a x^b by least squares in log-log space.",
          "", md_table(["arm", "parameters", "tokens", "compute (FLOPs)", "held-out loss"], rows), ""]
    results = {"points": points}
    for x, fit in fits.items():
        if isinstance(fit, str):
            md.append(f"- against {x}: no fit ({fit})")
            continue
        big = max(p[x] for p in points) * result.study.scaling.extrapolate
        guess = float(fit.predict(big))
        lo, hi = fit.interval(big, level=LEVEL) if fit.resid_std is not None else (None, None)
        band = f", {LEVEL:.0%} interval [{lo:.4f}, {hi:.4f}]" if lo is not None else " (no interval from 2 points)"
        md.append(f"- against {x}: {fit.describe()} At {big:.3g} ({result.study.scaling.extrapolate:g}x the largest) "
                  f"the fit predicts {guess:.4f}{band}.")
        results[x] = {"a": fit.a, "b": fit.b, "b_se": fit.b_se, "r2": fit.r2, "quality": fit.quality,
                      "reason": fit.quality_reason, "extrapolated_at": big, "prediction": guess, "interval": [lo, hi]}
    md += ["", "![scaling](scaling.png)", ""]
    return {"markdown": md, "results": results}
