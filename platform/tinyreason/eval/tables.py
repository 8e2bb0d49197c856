"""The suite's numbers for sweeps and reports: the objective a sweep maximizes (a weighted
mean of benchmark scores) and the markdown table of scores per model, each ± its standard error."""

from __future__ import annotations

import math

from tinyreason.eval.harness import EvalError, pick_metric
from tinyreason.render import md_table
from tinyreason.stats import Score


def objective(primary: dict[str, float], weights: dict[str, float],
              scores: dict[str, dict[str, float]] | None = None) -> float:
    """Weighted mean of benchmark scores. Keys are "task" (its primary metric) or
    "task/metric" (looked up in `scores`); empty weights: the plain mean of `primary`."""
    if not weights:
        if not primary:
            raise ValueError("objective: no benchmark scores to average; configure evaluation.benchmarks.tasks")
        return sum(primary.values()) / len(primary)
    total = wsum = 0.0
    for key, weight in weights.items():
        total += weight * _lookup(key, primary, scores)
        wsum += weight
    if wsum <= 0:
        raise ValueError(f"objective: weights must sum to more than 0, got {wsum} from {weights}")
    return total / wsum


def _lookup(key: str, primary: dict, scores: dict | None) -> float:
    if key in primary:
        return primary[key]
    task, _, metric = key.partition("/")
    if metric and scores and task in scores:
        try:
            return pick_metric(scores[task], metric, f"objective weight {key!r}")
        except EvalError as e:
            raise ValueError(str(e)) from None
    known = sorted(primary) + sorted(f"{t}/{m}" for t in (scores or {}) for m in scores[t])
    raise ValueError(f"objective weight {key!r} names a benchmark that was not scored; add task "
                     f"{task!r} to evaluation.benchmarks.tasks or drop the weight. Scored: {', '.join(known[:20])}")


def score_cell(v) -> str:
    """A table cell for a score: "0.400 ± 0.049" (one standard error) for a `stats.Score` whose
    se is known, the value alone for a plain number or an unknown se, "-" for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, Score):
        return f"{v:.3f}" if v.se is not None else f"{v.value:.3f}"
    return f"{v:.3f}"


def results_table(columns: dict[str, dict], base: str | None = None) -> str:
    """Markdown: one row per benchmark, one column per model (base first); each cell a value
    ± its standard error when the columns hold `stats.Score`s, plain numbers otherwise."""
    order = ([base] if base in columns else []) + [c for c in columns if c != base]
    rows = list(dict.fromkeys(b for c in order for b in columns[c]))
    return md_table(["benchmark", *order], [[name, *(score_cell(columns[c].get(name)) for c in order)]
                                           for name in rows], align=["left", *["right"] * len(order)]) + "\n"
