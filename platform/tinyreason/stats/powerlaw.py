"""Power-law fits for scaling studies: y = a * x^b by least squares in log-log space.

Log-log OLS weighs every point by its relative error, which suits losses and scores
spanning orders of magnitude over model sizes or tokens. The saturating form
y = a * x^b + c (irreducible loss) is left out: with the 4-6 sizes a study has, c trades
off against b almost freely, and an honest fit needs nonlinear least squares with the
parameter covariance that scipy would give. The curvature test below says when the pure
power law is not enough (a curve bending towards an irreducible loss shows as curvature).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tinyreason.stats.dist import StatsError, critical_value, t_quantile

# "poor" below R^2 0.9 in log space: a step halfway between two plateaus gets 0.75; x^-0.3
# with 5% scatter over 2 decades (6 points) gets >= 0.98 19 times in 20. R^2 falls with a
# shallower law: x^-0.1 there reads poor 17% of the time, when b is known only to ~12%.
MIN_R2 = 0.9
MIN_POINTS = 3  # two points always fit exactly and leave no residual to judge the fit by
# Curvature: a quadratic term in log-log significant at 99% two-sided (|t| > 63.7 with 4
# points, > 5.84 with 6): a true power law is flagged 1 time in 100.
CURVATURE_LEVEL = 0.99


@dataclass(frozen=True)
class PowerLawFit:
    """y = a * x^b fitted in log-log space. Errors and R^2 are in log space (ln y).

    `b_se` and `resid_std` are None with 2 points; `curvature_t` is the t of an added
    quadratic term in ln x (None below 4 points; > 0: the log-log curve bends up).
    """

    a: float
    b: float
    b_se: float | None
    r2: float
    resid_std: float | None
    n: int
    curvature_t: float | None
    log_x_mean: float
    log_x_sxx: float  # sum of (ln x - mean)^2, for the prediction interval

    def predict(self, x):
        """a * x^b, for a number or an array of x > 0."""
        y = self.a * np.power(_positive(x, "x"), self.b)
        return y if np.ndim(x) else float(y)

    def interval(self, x, level: float = 0.9):
        """(low, high) prediction interval for a new y at x: t with n-2 dof, in log space.

        Half-width t * s * sqrt(1 + 1/n + (ln x - mean)^2 / Sxx) in ln y, so it widens away
        from the fitted range, as an extrapolation should; exponentiated it is asymmetric.
        """
        if self.resid_std is None:
            raise StatsError(f"a prediction interval needs at least {MIN_POINTS} points, the fit has "
                             f"{self.n}: add a model size")
        lx = np.log(_positive(x, "x"))
        half = critical_value(level, self.n - 2) * self.resid_std * np.sqrt(
            1.0 + 1.0 / self.n + (lx - self.log_x_mean) ** 2 / self.log_x_sxx)
        centre = math.log(self.a) + self.b * lx
        lo, hi = np.exp(centre - half), np.exp(centre + half)
        return (lo, hi) if np.ndim(x) else (float(lo), float(hi))

    @property
    def quality_reason(self) -> str | None:
        """Why the fit is poor, or None when it is good."""
        if self.n < MIN_POINTS:
            return f"{self.n} points always fit exactly"
        if self.r2 < MIN_R2:
            return f"R^2 below {MIN_R2}"
        if self.curvature_t is not None:
            limit = t_quantile(0.5 + CURVATURE_LEVEL / 2, self.n - 3)
            if abs(self.curvature_t) > limit:
                bend = "up" if self.curvature_t > 0 else "down"
                return (f"curved in log-log (bends {bend}: quadratic term t = {self.curvature_t:.1f}, "
                        f"|t| > {limit:.2f})")
        return None

    @property
    def quality(self) -> str:
        """"good" or "poor": poor below 3 points, below R^2 0.9, or curved at 99% (see constants)."""
        return "poor" if self.quality_reason else "good"

    def describe(self) -> str:
        """One sentence: the law, the exponent's se, the fit's R^2 and its verdict."""
        se = "" if self.b_se is None else f" (± {self.b_se:.3f})"
        reason = self.quality_reason
        verdict = f"poor fit: {reason}" if reason else "good fit"
        return (f"y = {self.a:.4g} * x^{self.b:.3f}{se} over {self.n} points, "
                f"R^2 = {self.r2:.3f} in log-log: {verdict}.")


def _positive(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise StatsError(f"a power law needs finite {name} > 0, got {values!r}: drop zero or failed "
                         "points (a score of 0 has no logarithm)")
    return arr


def _curvature_t(lx: np.ndarray, ly: np.ndarray, sse_line: float, sst: float) -> float | None:
    """Signed t of a quadratic term added to the log-log line (partial F test, 1 and n-3 dof)."""
    n = len(lx)
    if n < 4:
        return None
    if sse_line <= 1e-12 * sst:  # on the line to rounding: no curvature to test
        return 0.0
    centred = lx - lx.mean()  # centring keeps the quadratic design well conditioned
    coef = np.polyfit(centred, ly, 2)
    sse_quad = float(np.sum((ly - np.polyval(coef, centred)) ** 2))
    if sse_quad <= 1e-12 * sst:  # exactly a parabola
        return math.copysign(math.inf, coef[0])
    return math.copysign(math.sqrt(max(sse_line - sse_quad, 0.0) * (n - 3) / sse_quad), coef[0])


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLawFit:
    """Fit y = a * x^b by ordinary least squares of ln y on ln x.

    b's standard error is the OLS one, s / sqrt(Sxx) with s^2 = SSE / (n-2); R^2 and the
    residual std are in ln y (0.05 there is about 5% scatter in y).
    """
    lx, ly = np.log(_positive(x, "x")), np.log(_positive(y, "y"))
    n = len(lx)
    if lx.ndim != 1 or n != len(ly) or n < 2:
        raise StatsError(f"fit_power_law needs two 1-D sequences of the same length >= 2, got "
                         f"{np.shape(x)} and {np.shape(y)}")
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    if sxx == 0.0:
        raise StatsError(f"fit_power_law needs at least two distinct x, got {list(np.ravel(x))}: "
                         "a scaling study varies the size")
    b = float(np.sum((lx - lx.mean()) * (ly - ly.mean())) / sxx)
    log_a = float(ly.mean() - b * lx.mean())
    sse = float(np.sum((ly - log_a - b * lx) ** 2))
    sst = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 if sst == 0.0 else 1.0 - sse / sst
    s = math.sqrt(sse / (n - 2)) if n > 2 else None
    return PowerLawFit(a=math.exp(log_a), b=b, b_se=None if s is None else s / math.sqrt(sxx),
                       r2=r2, resid_std=s, n=n, curvature_t=_curvature_t(lx, ly, sse, sst),
                       log_x_mean=float(lx.mean()), log_x_sxx=sxx)
