"""One evaluation per model: the held-out probe plus the lm-eval suite, flattened.

Keys are "task/metric" for lm-eval tasks plus "heldout/accuracy" and
"heldout/well_formed" (the built-in held-out problems and their <think> health) and
"heldout_new/accuracy", "heldout_new/well_formed" (the same, worded with the held-out
template family that no training row uses),
so a sweep objective and the results table can name any of them. A pretrain stage
also has "pretrain/perplexity": a row of the results table, but never part of the
objective or the score plot (lower is better, and it is not on a 0-1 scale).
"""

from __future__ import annotations

from tinyreason.eval.harness import objective

HELDOUT = ("heldout/accuracy", "heldout/well_formed", "heldout_new/accuracy", "heldout_new/well_formed")
PERPLEXITY = "pretrain/perplexity"


def primary_scores(evaluation: dict | None) -> dict[str, float]:
    """One number per benchmark: each lm-eval task's primary metric and the held-out probe."""
    if not evaluation:
        return {}
    out: dict[str, float] = {}
    if "accuracy" in evaluation:
        out["heldout/accuracy"] = float(evaluation["accuracy"])
        out["heldout/well_formed"] = float(evaluation["format"]["well_formed"])
    if "new_templates" in evaluation:
        out["heldout_new/accuracy"] = float(evaluation["new_templates"]["accuracy"])
        out["heldout_new/well_formed"] = float(evaluation["new_templates"]["format"]["well_formed"])
    out.update((evaluation.get("benchmarks") or {}).get("primary", {}))
    return out


def pretrain_scores(evaluation: dict | None) -> dict[str, float]:
    """Validation perplexity on the pretrain blend's held-out split, when it was measured."""
    ppl = ((evaluation or {}).get("pretrain") or {}).get("perplexity")
    return {PERPLEXITY: float(ppl)} if ppl is not None else {}


def table_scores(evaluation: dict | None) -> dict[str, float]:
    """The rows of the results table: every benchmark's primary metric, then perplexity."""
    return {**primary_scores(evaluation), **pretrain_scores(evaluation)}


def benchmark_scores(evaluation: dict | None) -> dict[str, float]:
    """Every reported metric, flat: the primary ones and each task's full metric set."""
    out = primary_scores(evaluation)
    for task, metrics in ((evaluation or {}).get("benchmarks") or {}).get("scores", {}).items():
        out.update((f"{task}/{m}", float(v)) for m, v in metrics.items() if isinstance(v, (int, float)))
    return out


def objective_value(evaluation: dict | None, weights: dict[str, float]) -> float:
    """The sweep objective: the configured weighted mean; with no weights, the mean of the
    lm-eval tasks' primary metrics, or the held-out accuracy when no suite is configured."""
    primary = primary_scores(evaluation)
    scores = ((evaluation or {}).get("benchmarks") or {}).get("scores")
    if not weights:
        suite = {k: v for k, v in primary.items() if k not in HELDOUT}
        weights = dict.fromkeys(suite, 1.0) if suite else {"heldout/accuracy": 1.0}
    return objective(primary, weights, scores)
