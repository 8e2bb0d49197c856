"""Is a difference real? Two scores against their standard errors, and seeds against their spread.

`difference` compares two lm-eval scores (normal approximation: at 100+ items the
binomial is close to normal); `seeds_differ` compares runs repeated over seeds with
Welch's t, because 3 to 5 seeds estimate the spread too poorly for 1.96 (t at 4 dof is
2.78). A difference whose spread is unknown is never called beyond noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tinyreason.stats.dist import StatsError, critical_value
from tinyreason.stats.scores import Score, finite_values, mean_se

Z_95 = 1.96  # two-sided 95%: what "within noise" means unless a caller asks otherwise


@dataclass(frozen=True)
class Diff:
    """a - b with its standard error, z (Welch's t for seeds) and whether |z| >= threshold.

    `se` and `z` are None where the spread is unknown; `dof` is None for a normal
    comparison and the Welch degrees of freedom for seeds.
    """

    diff: float
    se: float | None
    z: float | None
    significant: bool
    threshold: float = Z_95
    dof: float | None = None
    note: str = "spread unknown"

    def describe(self, scale: float = 100.0, unit: str = "points", digits: int = 1) -> str:
        """Phrase it: "+4.0 points (± 5.1), within noise" (0-1 scores read as points, x100).

        The ± is one se, as in `format(score)`. For other scales (a loss, perplexity)
        pass scale=1, unit="" and the digits to show.
        """
        unit = f" {unit}" if unit else ""
        head = f"{self.diff * scale:+.{digits}f}{unit}"
        if self.se is None:
            return f"{head} (± ?), {self.note}: not called either way"
        verdict = "beyond noise" if self.significant else "within noise"
        return f"{head} (± {self.se * scale:.{digits}f}), {verdict}"


def _verdict(diff: float, se: float | None, threshold: float, dof: float | None = None,
             note: str = "spread unknown") -> Diff:
    if se is None:
        return Diff(diff, None, None, False, threshold, dof, note)
    if se == 0.0:  # exact scores (a deterministic metric): any gap is real, none is no gap
        z = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    else:
        z = diff / se
    return Diff(diff, se, z, abs(z) >= threshold, threshold, dof, note)


def _paired_se(paired, a: Score, b: Score) -> float | None:
    try:
        a_items, b_items = paired
    except (TypeError, ValueError):
        raise StatsError("paired= takes (a_items, b_items): both models' per-item scores on the "
                         "same items, in the same order") from None
    a_arr, b_arr = finite_values(a_items, "paired a_items"), finite_values(b_items, "paired b_items")
    if len(a_arr) != len(b_arr):
        raise StatsError(f"paired scores need the same items on both sides, got {len(a_arr)} and "
                         f"{len(b_arr)}: evaluate both models on the same task split")
    for n in (a.n, b.n):
        if n is not None and n != len(a_arr):
            raise StatsError(f"a Score says n={n} but paired gives {len(a_arr)} items: pass the "
                             "per-item scores behind that Score")
    item_diff = float(a_arr.mean() - b_arr.mean())
    if not math.isclose(item_diff, a.value - b.value, rel_tol=1e-6, abs_tol=1e-9):
        raise StatsError(f"paired items differ by {item_diff:.6g} on average but the scores by "
                         f"{a.value - b.value:.6g}: pair per-item scores whose mean is the score "
                         "(a corpus-level metric needs bootstrap_se instead)")
    return mean_se(a_arr - b_arr)


def difference(a: Score, b: Score, paired=None, z: float = Z_95) -> Diff:
    """a - b and whether it is beyond noise at |z| >= z (1.96: ~95% two-sided).

    Independent samples: se = sqrt(se_a^2 + se_b^2). Two models scored on the same items
    are positively correlated (the hard items are hard for both); pass
    `paired=(a_items, b_items)` and the se is that of the per-item differences,
    sqrt(1 - rho) of the independent one (half at rho = 0.75), so real gains stop reading
    as noise. Either se unknown: not called.
    """
    if not z > 0:
        raise StatsError(f"z threshold must be > 0, got {z}: 1.96 is ~95% two-sided")
    diff = a.value - b.value
    if paired is not None:
        se = _paired_se(paired, a, b)
    elif a.se is None or b.se is None:
        se = None
    else:
        se = math.hypot(a.se, b.se)
    return _verdict(diff, se, z)


def within_noise_of_best(scores: dict[str, Score], z: float = Z_95,
                         higher_is_better: bool = True) -> set[str]:
    """The names whose score is not distinguishable from the best one's (the best included).

    A score with an unknown se cannot be told apart, so it is included. The best is picked
    after looking, so its value is biased up (winner's curse), and k arms tested at 5% each
    give about 0.05k false "beyond noise" calls: both make this set err small with many arms.
    """
    if not scores:
        return set()
    pick = max if higher_is_better else min
    best_name = pick(scores, key=lambda name: scores[name].value)
    best = scores[best_name]
    return {name for name, s in scores.items()
            if name == best_name or not difference(best, s, z=z).significant}


@dataclass(frozen=True)
class SeedSummary:
    """One arm's metric over seeds: mean, sample std (ddof=1), its sem, range and count.

    `std` and `sem` are None with one seed: the spread is unknown, not zero.
    """

    mean: float
    std: float | None
    sem: float | None
    min: float
    max: float
    n: int

    @property
    def score(self) -> Score:
        """The mean as a Score with the sem as its se, to format or compare like any score."""
        return Score(self.mean, self.sem, self.n)


def seed_summary(values: Sequence[float]) -> SeedSummary:
    """Mean, sample std (ddof=1: 3 seeds with ddof=0 understate the std by 18%), sem, min, max."""
    arr = finite_values(values, "seed_summary")
    std = float(np.std(arr, ddof=1)) if len(arr) > 1 else None
    sem = std / math.sqrt(len(arr)) if std is not None else None
    return SeedSummary(float(arr.mean()), std, sem, float(arr.min()), float(arr.max()), len(arr))


def welch_dof(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom of a difference of two means (var: sample variances)."""
    va, vb = var_a / n_a, var_b / n_b
    denom = va * va / (n_a - 1) + vb * vb / (n_b - 1)
    return float(n_a + n_b - 2) if denom == 0.0 else (va + vb) ** 2 / denom


def seeds_differ(a_values: Sequence[float], b_values: Sequence[float], level: float = 0.95) -> Diff:
    """mean(a) - mean(b) over seeds, by Welch's t test (unequal variances) at a two-sided level.

    The threshold is the t quantile at the Welch-Satterthwaite dof, not 1.96: with 3 seeds
    a side (~4 dof) a difference needs |t| >= 2.78. One seed on either side leaves the
    spread unknown: the Diff says so and is never significant.
    """
    a, b = seed_summary(a_values), seed_summary(b_values)
    diff = a.mean - b.mean
    if a.std is None or b.std is None:
        return _verdict(diff, None, critical_value(level), note="spread unknown with 1 seed")
    dof = welch_dof(a.std ** 2, a.n, b.std ** 2, b.n)
    se = math.sqrt(a.sem ** 2 + b.sem ** 2)
    return _verdict(diff, se, critical_value(level, dof), dof)
