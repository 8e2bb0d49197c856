"""The statistics every report uses: pure functions, stdlib + numpy only.

    scores.py    Score(value, se, n); binomial, mean and bootstrap standard errors; Wilson
    compare.py   difference of two scores, within-noise-of-best, seed summaries, Welch's t
    sampling.py  pass@k (unbiased, Chen et al. 2021), majority vote and maj@k
    powerlaw.py  y = a * x^b in log-log space, its prediction interval and fit quality
    dist.py      Student's t CDF and quantile (scipy is not a tinyreason dependency)

One package rather than one stats.py keeps each module under the 400-line rule; import
from here: `from tinyreason.stats import Score, difference`.
"""

from tinyreason.stats.dist import (StatsError, critical_value, t_cdf, t_quantile)

__all__ = [
    "StatsError", "critical_value", "t_cdf", "t_quantile",
]
