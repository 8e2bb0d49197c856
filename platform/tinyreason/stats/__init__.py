"""The statistics every report uses: pure functions, stdlib + numpy only.

    scores.py    Score(value, se, n); binomial, mean and bootstrap standard errors; Wilson
    compare.py   difference of two scores, within-noise-of-best, seed summaries, Welch's t
    sampling.py  pass@k (unbiased, Chen et al. 2021), majority vote and maj@k
    powerlaw.py  y = a * x^b in log-log space, its prediction interval and fit quality
    dist.py      Student's t CDF and quantile (scipy is not a tinyreason dependency)

One package rather than one stats.py keeps each module under the 400-line rule; import
from here: `from tinyreason.stats import Score, difference`.
"""

from tinyreason.stats.compare import (Diff, SeedSummary, difference, seed_summary, seeds_differ,
                                      welch_dof, within_noise_of_best)
from tinyreason.stats.dist import StatsError, critical_value, t_cdf, t_quantile
from tinyreason.stats.powerlaw import PowerLawFit, fit_power_law
from tinyreason.stats.sampling import majority_vote, maj_at_k_over_items, pass_at_k, pass_at_k_over_items
from tinyreason.stats.scores import (Score, bootstrap_se, mean_score, mean_se, proportion_score,
                                     proportion_se, score_with_error, wilson_interval)

__all__ = [
    "Diff", "PowerLawFit", "Score", "SeedSummary", "StatsError",
    "bootstrap_se", "critical_value", "difference", "fit_power_law", "maj_at_k_over_items",
    "majority_vote", "mean_score", "mean_se", "pass_at_k", "pass_at_k_over_items",
    "proportion_score", "proportion_se", "score_with_error", "seed_summary", "seeds_differ",
    "t_cdf", "t_quantile", "welch_dof", "wilson_interval", "within_noise_of_best",
]
