"""A benchmark score with its standard error, and the estimators that give one.

Every score in a report is a `Score(value, se, n)`; `se` is None where it is unknown
(lm-eval's "N/A", a single item or seed), never NaN: results.json is JSON, and
`json.dumps(float("nan"))` writes `NaN`, which JSON parsers reject.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tinyreason.stats.dist import StatsError, critical_value

# lm-eval writes this string in place of a stderr it did not compute (one item, or a
# metric with no stderr function).
LM_EVAL_NO_STDERR = "N/A"


@dataclass(frozen=True)
class Score:
    """A score, its standard error (None: unknown) and the number of items (or seeds) behind it.

    `format(score)` gives "0.420 ± 0.049": the ± is one standard error, as in lm-eval's
    tables, not a 95% half-width (that is 1.96 times it; see `interval`).
    """

    value: float
    se: float | None = None
    n: int | None = None

    def interval(self, level: float = 0.95) -> tuple[float, float] | None:
        """The normal-approximation interval value ± z*se; None when se is unknown."""
        if self.se is None:
            return None
        half = critical_value(level) * self.se
        return self.value - half, self.value + half

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        se = "?" if self.se is None else format(self.se, spec)
        return f"{format(self.value, spec)} ± {se}"

    def __str__(self) -> str:
        return format(self)


def _check_n(n: int, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise StatsError(f"{what} needs a whole number of items n >= 1, got {n!r}: pass the item count "
                         "the score was averaged over (lm-eval's sample_len)")


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise StatsError(f"a proportion is between 0 and 1, got {p}: pass accuracy as a fraction, not percent")


def proportion_se(p: float, n: int) -> float:
    """Binomial (Wald) standard error sqrt(p(1-p)/n) of an accuracy p over n items.

    The textbook estimator, and within sqrt(n/(n-1)) of lm-eval's `acc_stderr` (which uses
    the sample std: 0.5% apart at n=100). At p=0 or 1 Wald gives 0, which would call 0/100
    vs 4/100 "beyond noise" (z=2.04; Fisher's exact p=0.12); there it returns the Wilson 95%
    interval's half-width / 1.96 = 0.98/(n+3.84) instead: 0.0094 at n=100, next to Wald's
    0.0099 at 1/100, so the same comparison gets z=1.84, within noise. Below n of about 30,
    or fewer than 5 successes or failures, Wald intervals undercover: show `wilson_interval`.
    """
    _check_p(p)
    _check_n(n, "proportion_se")
    if p in (0.0, 1.0):  # Wilson at p=0 is [0, z^2/(n+z^2)]: half of that, over z
        z = critical_value(0.95)
        return z / (2.0 * (n + z * z))
    return math.sqrt(p * (1.0 - p) / n)


def wilson_interval(p: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion: stays inside [0, 1] and is not empty at p=0 or 1.

    At 0/20 it is [0, 0.161] where Wald's is [0, 0]; at n=100, p=0.5 it is within 0.002 of
    Wald's. Agresti & Coull (1998) recommend it for small n.
    """
    _check_p(p)
    _check_n(n, "wilson_interval")
    z = critical_value(level)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def finite_values(values: Sequence, what: str) -> np.ndarray:
    """A non-empty float array of finite values; `what` names the caller in the error."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0 or len(arr) == 0:
        raise StatsError(f"{what} got no values: pass one score per item (or per seed)")
    if not np.all(np.isfinite(arr)):
        raise StatsError(f"{what} got a NaN or infinite value: drop failed items before scoring, "
                         "or score them 0")
    return arr


def mean_se(values: Sequence[float]) -> float | None:
    """Standard error of a mean: sample std (ddof=1) / sqrt(n), as lm-eval's `mean_stderr`.

    None for a single value: one item says nothing about the spread.
    """
    arr = finite_values(values, "mean_se")
    if len(arr) < 2:
        return None
    return float(np.std(arr, ddof=1) / math.sqrt(len(arr)))


def bootstrap_se(per_item_scores: Sequence, stat: Callable[[np.ndarray], float] = np.mean,
                 iters: int = 1000, seed: int = 0) -> float | None:
    """Bootstrap standard error of `stat` over items: resample items with replacement.

    For metrics lm-eval gives no stderr for (F1, BLEU, a median). Rows are resampled along
    the first axis, so a 2-D array of (prediction, reference) pairs per item works with a
    `stat` that takes such an array. 1,000 resamples pin the se to about 2% of itself
    (relative sd of a bootstrap sd is ~1/sqrt(2*iters)). None for a single item.
    """
    arr = np.asarray(per_item_scores)
    if arr.ndim == 0 or len(arr) == 0:
        raise StatsError("bootstrap_se got no items: pass one score (or one row) per item")
    if iters < 2:
        raise StatsError(f"bootstrap_se needs iters >= 2, got {iters}: 1000 is the default")
    if len(arr) < 2:
        return None
    rng = np.random.default_rng(seed)
    draws = [float(stat(arr[rng.integers(0, len(arr), len(arr))])) for _ in range(iters)]
    return float(np.std(draws, ddof=1))


def _stderr_value(stderr) -> float | None:
    if stderr is None or (isinstance(stderr, str) and stderr.strip().upper() == LM_EVAL_NO_STDERR):
        return None
    try:
        se = float(stderr)
    except (TypeError, ValueError):
        raise StatsError(f"stderr {stderr!r} is not a number: pass lm-eval's `<metric>_stderr` value, "
                         f"None, or {LM_EVAL_NO_STDERR!r}") from None
    if math.isnan(se):
        return None
    if se < 0 or math.isinf(se):
        raise StatsError(f"a standard error is finite and >= 0, got {se}: check which key was read "
                         "as the stderr")
    return se


def score_with_error(value: float, stderr, n: int | None = None) -> Score:
    """A Score from a value and lm-eval's `*_stderr` as given: a number, "N/A", None or NaN.

    The last three mean "unknown" (se=None): a comparison with such a score never calls a
    difference beyond noise.
    """
    value = float(value)
    if not math.isfinite(value):
        raise StatsError(f"score value {value} is not finite: the evaluation did not produce a score")
    if n is not None:
        _check_n(n, "score_with_error")
    return Score(value, _stderr_value(stderr), n)


def proportion_score(p: float, n: int) -> Score:
    """An accuracy over n items with its binomial standard error (see `proportion_se`)."""
    return Score(float(p), proportion_se(p, n), int(n))


def mean_score(values: Sequence[float]) -> Score:
    """The mean of per-item scores with the standard error of that mean."""
    arr = finite_values(values, "mean_score")
    return Score(float(arr.mean()), mean_se(arr), len(arr))
