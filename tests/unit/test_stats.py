"""The report's statistics on hand-made numbers: standard errors, noise calls, seeds, pass@k,
maj@k, power-law fits and the t quantile behind them."""

import itertools
import json
import math

import numpy as np
import pytest
from tinyreason.stats import (StatsError, critical_value, t_cdf, t_quantile)

# ----------------------------------------------------------------------------- t quantile

# Two-sided critical values from any t table (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2).
T_TABLE = [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 4, 2.776),
           (0.975, 5, 2.571), (0.975, 10, 2.228), (0.975, 30, 2.042), (0.95, 1, 6.314),
           (0.95, 10, 1.812), (0.995, 4, 4.604), (0.9995, 1, 636.619), (0.9, 20, 1.325)]


@pytest.mark.parametrize("p, dof, expected", T_TABLE)
def test_t_quantile_matches_table(p, dof, expected):
    assert t_quantile(p, dof) == pytest.approx(expected, abs=6e-4)
    assert t_quantile(1 - p, dof) == pytest.approx(-expected, abs=6e-4)


def test_t_quantile_normal_limit_and_round_trip():
    assert t_quantile(0.975, math.inf) == pytest.approx(1.95996, abs=1e-5)
    assert critical_value(0.95) == pytest.approx(1.95996, abs=1e-5)
    assert t_quantile(0.5, 3) == 0.0
    for dof in (0.7, 2.5, 4.37, 57.0):
        for p in (0.6, 0.9, 0.999):
            assert t_cdf(t_quantile(p, dof), dof) == pytest.approx(p, rel=1e-10)


def test_t_against_scipy_at_fractional_dof():
    stats = pytest.importorskip("scipy.stats")  # only a cross-check: tinyreason does not need scipy
    for dof in (1.3, 3.8, 12.6):
        for p in (0.9, 0.975, 0.995):
            assert t_quantile(p, dof) == pytest.approx(stats.t.ppf(p, dof), rel=1e-9)


@pytest.mark.parametrize("p, dof", [(0.0, 3), (1.0, 3), (0.9, 0), (0.9, -1), (0.9, math.nan)])
def test_t_quantile_rejects_bad_input(p, dof):
    with pytest.raises(StatsError):
        t_quantile(p, dof)
