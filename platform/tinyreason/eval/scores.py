"""One evaluation per model: the held-out probe plus the lm-eval suite, flattened.

Keys are "task/metric" for lm-eval tasks plus "heldout/accuracy" and
"heldout/well_formed" (the built-in held-out problems and their <think> health) and
"heldout_new/accuracy", "heldout_new/well_formed" (the same, worded with the held-out
template family that no training row uses),
so a sweep objective and the results table can name any of them. A pretrain stage
also has "pretrain/perplexity": a row of the results table, but never part of the
objective or the score plot (lower is better, and it is not on a 0-1 scale).

The `*_with_errors` functions give the same numbers as `stats.Score`s, each with its
standard error: lm-eval's `*_stderr` for its tasks, the binomial one for the held-out
probe (Wilson-based at 0 or 1 correct, see `stats.proportion_se`), or the probe's own over
problems where it averaged several draws per problem (`evaluation.heldout_samples`), none for
perplexity.
"""

from __future__ import annotations

from tinyreason.eval.harness import EvalError, pick_metric
from tinyreason.eval.tables import objective
from tinyreason.stats import Score, proportion_score, score_with_error

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


# --------------------------------------------------------------------------- with standard errors


def _task_score(value: float, se: float | None, n: int | None) -> Score:
    """lm-eval's score and stderr as a Score. lm-eval's stderr of an accuracy of 0 or 1 is 0
    (the sample std of identical items), which would call 0/20 against 1/20 beyond noise;
    there the binomial se is used instead, which at 0 or 1 is the Wilson interval's."""
    if se == 0.0 and value in (0.0, 1.0) and n:
        return proportion_score(value, n)
    return score_with_error(value, se, n)


def _probe_score(probe: dict) -> Score:
    """A held-out accuracy: the binomial se over its n problems, or, averaged over k draws per
    problem, the se of the mean of per-problem accuracies it recorded (smaller: the draws' luck
    averages out, the problems' does not)."""
    value, n = float(probe["accuracy"]), probe.get("n")
    if probe.get("accuracy_se") is not None:
        return Score(value, float(probe["accuracy_se"]), n)
    return proportion_score(value, n) if n else Score(value)


def primary_with_errors(evaluation: dict | None) -> dict[str, Score]:
    """`primary_scores` with standard errors; an evaluation cached before errors were kept has se None."""
    if not evaluation:
        return {}
    out: dict[str, Score] = {}
    for prefix, probe in (("heldout", evaluation), ("heldout_new", evaluation.get("new_templates"))):
        if probe and "accuracy" in probe:  # the held-out template family has its own n problems
            out[f"{prefix}/accuracy"] = _probe_score(probe)
            n, well_formed = probe.get("n"), float(probe["format"]["well_formed"])
            out[f"{prefix}/well_formed"] = proportion_score(well_formed, n) if n else Score(well_formed)
    bench = evaluation.get("benchmarks") or {}
    ses, counts = bench.get("primary_stderr") or {}, bench.get("n") or {}
    for task, value in (bench.get("primary") or {}).items():
        out[task] = _task_score(float(value), ses.get(task), counts.get(task))
    return out


def table_with_errors(evaluation: dict | None) -> dict[str, Score]:
    """The results table's rows as Scores: `primary_with_errors`, then perplexity (se unknown)."""
    return {**primary_with_errors(evaluation), **{k: Score(v) for k, v in pretrain_scores(evaluation).items()}}


def _metric_score(evaluation: dict, key: str) -> Score | None:
    """A "task/metric" score with its se, as `objective` looks it up; None when not reported."""
    bench = evaluation.get("benchmarks") or {}
    task, _, metric = key.partition("/")
    values, ses = (bench.get("scores") or {}).get(task), (bench.get("stderr") or {}).get(task) or {}
    if not metric or not values:
        return None
    try:
        value = pick_metric(values, metric, key)
    except EvalError:
        return None
    name = next(k for k in values if k == metric or k.startswith(metric + ","))
    return _task_score(value, ses.get(name), (bench.get("n") or {}).get(task))


def objective_score(evaluation: dict | None, weights: dict[str, float]) -> Score:
    """`objective_value` with a standard error: the weighted mean of the parts' ses, which bounds
    the se of the weighted mean under any correlation between them (Minkowski). The built-in tasks
    score the same items, so they are correlated and the independent sqrt(sum w^2 se^2) would
    understate it, calling trials apart that are not. None when any part's se is unknown."""
    value = objective_value(evaluation, weights)
    scores = primary_with_errors(evaluation)
    if not weights:
        suite = [k for k in scores if k not in HELDOUT]
        weights = dict.fromkeys(suite, 1.0) if suite else {"heldout/accuracy": 1.0}
    parts = [(w, scores.get(k) or _metric_score(evaluation or {}, k)) for k, w in weights.items()]
    if any(s is None or s.se is None for _, s in parts):
        return Score(value)
    return Score(value, sum(w * s.se for w, s in parts) / sum(w for w, _ in parts))
