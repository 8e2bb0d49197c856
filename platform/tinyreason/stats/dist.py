"""Student's t distribution without scipy: its CDF and quantile.

scipy sits in the venv only because scikit-learn (pulled in by lm-eval) needs it; it is
not a dependency of tinyreason, so the t quantile that seed comparisons and power-law
prediction intervals need is computed here: the CDF through the regularized incomplete
beta function (continued fraction, Numerical Recipes 6.4), the quantile by bisection on
it. Non-integer degrees of freedom work, which Welch's test needs.
"""

from __future__ import annotations

import math
from statistics import NormalDist


class StatsError(ValueError):
    """A statistic asked of data that cannot give it, phrased with the fix."""


# 200 continued-fraction terms keep quantiles within 1e-9 relative of scipy's from 0.05 to
# 10^6 dof (checked at p 0.6-0.9999); beyond 10^6 dof t is the normal to 1e-6.
_CF_TERMS = 200
_CF_EPS = 1e-15
_TINY = 1e-300
_NORMAL_DOF = 1e6


def _beta_cf(a: float, b: float, x: float) -> float:
    """Lentz's continued fraction for the incomplete beta function (NR eq. 6.4.9)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _CF_TERMS + 1):
        for aa in (m * (b - m) * x / ((a - 1.0 + 2 * m) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1.0 + 2 * m))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _CF_EPS:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    # The fraction converges fast only left of the mode; use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def _check_dof(dof: float) -> None:
    if not dof > 0:  # also rejects NaN
        raise StatsError(f"degrees of freedom must be > 0, got {dof}: a t statistic needs at least 2 points")


def t_tail(t: float, dof: float) -> float:
    """P(T > t) for t >= 0: kept apart from the CDF so that tiny tails keep their digits."""
    return 0.5 * regularized_beta(dof / 2.0, 0.5, dof / (dof + t * t))


def t_cdf(t: float, dof: float) -> float:
    """P(T <= t) for Student's t with `dof` degrees of freedom (math.inf: the normal)."""
    _check_dof(dof)
    if dof >= _NORMAL_DOF:
        return NormalDist().cdf(t)
    tail = t_tail(abs(t), dof)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, dof: float) -> float:
    """The t value with P(T <= t) = p; t_quantile(0.975, 10) = 2.228 (two-sided 95%, 10 dof)."""
    if not 0.0 < p < 1.0:
        raise StatsError(f"a quantile needs 0 < p < 1, got {p}: for a two-sided 95% level pass p=0.975")
    _check_dof(dof)
    if dof >= _NORMAL_DOF:
        return NormalDist().inv_cdf(p)
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    target = 1.0 - p
    lo, hi = 0.0, 1.0
    while t_tail(hi, dof) > target:  # bracket: t(0.9995, 1 dof) is 636.6, ten doublings
        lo, hi = hi, hi * 2.0
        if math.isinf(hi):
            raise StatsError(f"t quantile at p={p} with {dof} dof overflows a float: use dof >= 0.1")
    for _ in range(200):  # bisection halves the bracket; stop at 1e-12 relative
        mid = 0.5 * (lo + hi)
        if t_tail(mid, dof) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def critical_value(level: float, dof: float = math.inf) -> float:
    """The two-sided critical |t| (|z| with dof=inf) at a confidence level: 0.95 -> 1.96 for z."""
    if not 0.0 < level < 1.0:
        raise StatsError(f"a confidence level is between 0 and 1, got {level}: 95% is level=0.95")
    return t_quantile(0.5 + level / 2.0, dof)


def level_of(z: float) -> float:
    """The two-sided confidence level a |z| threshold stands for: 1.96 -> 0.95."""
    return 2.0 * NormalDist().cdf(abs(z)) - 1.0
