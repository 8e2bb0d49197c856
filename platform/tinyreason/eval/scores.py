"""One flat dict of benchmark scores per evaluated model, and the sweep objective.

Keys are "task/metric" (lm-eval tasks) plus "heldout/accuracy" and
"heldout/well_formed" (the built-in held-out problems and their format health),
so a sweep objective can weight any of them by name.
"""

from __future__ import annotations


def benchmark_scores(evaluation: dict | None) -> dict[str, float]:
    if not evaluation:
        return {}
    scores: dict[str, float] = {}
    if "accuracy" in evaluation:  # the held-out reasoning problems
        scores["heldout/accuracy"] = float(evaluation["accuracy"])
        scores["heldout/well_formed"] = float(evaluation["format"]["well_formed"])
    for task, metrics in (evaluation.get("benchmarks") or {}).get("scores", {}).items():
        for metric, value in metrics.items():
            if isinstance(value, (int, float)):
                scores[f"{task}/{metric}"] = float(value)
    return scores


def objective_value(scores: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted mean of the named scores; with no weights, the held-out accuracy.

    A weight names "task/metric" exactly, or a bare task (its first metric). A name
    that matches nothing is an error: a silently missing benchmark would make every
    trial look equally good.
    """
    if not weights:
        weights = {"heldout/accuracy": 1.0}
    total, wsum = 0.0, 0.0
    for name, w in weights.items():
        value = scores.get(name)
        if value is None:
            matches = [v for k, v in scores.items() if k.split("/")[0] == name]
            if not matches:
                raise ValueError(
                    f"evaluation.objective.weights names {name!r}, which no benchmark reported; "
                    f"available: {', '.join(sorted(scores)) or 'none'}"
                )
            value = matches[0]
        total += w * value
        wsum += w
    return total / wsum
