"""The report's statistics on hand-made numbers: standard errors, noise calls, seeds, pass@k,
maj@k, power-law fits and the t quantile behind them."""

import itertools
import json
import math

import numpy as np
import pytest

from tinyreason.stats import (Diff, Score, StatsError, bootstrap_se, critical_value, difference,
                              fit_power_law, maj_at_k_over_items, majority_vote, mean_score, mean_se,
                              pass_at_k, pass_at_k_over_items, proportion_score, proportion_se,
                              score_with_error, seed_summary, seeds_differ, t_cdf, t_quantile,
                              welch_dof, wilson_interval, within_noise_of_best)

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


# ----------------------------------------------------------------------------- standard errors


def test_proportion_se_and_format():
    assert proportion_se(0.42, 100) == pytest.approx(math.sqrt(0.42 * 0.58 / 100))
    assert format(proportion_score(0.42, 100)) == "0.420 ± 0.049"
    assert str(Score(0.5, 0.01234, 10)) == "0.500 ± 0.012"
    assert f"{Score(0.5, 0.01234):.2f}" == "0.50 ± 0.01"


def test_proportion_se_is_not_zero_at_the_edges():
    # Wald would say 0; the Wilson-based value sits next to Wald's at 1/100 (0.0099).
    assert proportion_se(0.0, 100) == pytest.approx(0.98 / (100 + 3.84), rel=1e-3)
    assert proportion_se(1.0, 100) == proportion_se(0.0, 100)
    assert 0.009 < proportion_se(0.0, 100) < proportion_se(0.01, 100)
    # 0/100 vs 4/100: Fisher's exact test gives p=0.12, so not beyond noise.
    assert not difference(proportion_score(0.04, 100), proportion_score(0.0, 100)).significant


def test_wilson_interval():
    lo, hi = wilson_interval(0.0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.161, abs=1e-3)
    lo, hi = wilson_interval(0.5, 100)
    assert lo == pytest.approx(0.5 - 1.96 * 0.05, abs=2e-3) and hi == pytest.approx(0.5 + 1.96 * 0.05, abs=2e-3)


@pytest.mark.parametrize("p, n", [(42.0, 100), (-0.1, 10), (0.5, 0), (0.5, 10.5), (math.nan, 10)])
def test_proportion_se_rejects_bad_input(p, n):
    with pytest.raises(StatsError):
        proportion_se(p, n)


def test_mean_se_matches_lm_eval_mean_stderr():
    items = [1] * 42 + [0] * 58  # lm-eval: sample std (n-1) / sqrt(n)
    assert mean_se(items) == pytest.approx(math.sqrt(0.42 * 0.58 / 99))
    assert mean_se([0.7]) is None
    score = mean_score(items)
    assert (score.value, score.n) == (pytest.approx(0.42), 100)
    with pytest.raises(StatsError):
        mean_se([])
    with pytest.raises(StatsError):
        mean_se([0.1, math.nan])


def test_bootstrap_se_agrees_with_the_formula_for_a_mean():
    items = np.random.default_rng(3).random(200)
    se = bootstrap_se(items, iters=2000, seed=0)
    assert se == pytest.approx(mean_se(items), rel=0.08)
    assert se == bootstrap_se(items, iters=2000, seed=0)  # seeded: same report twice
    assert bootstrap_se([0.4]) is None


def test_bootstrap_se_resamples_rows():
    # (prediction, reference) rows: a stat over pairs, here the fraction where they agree.
    rows = np.array([[i % 3, i % 2] for i in range(120)])
    se = bootstrap_se(rows, stat=lambda r: float(np.mean(r[:, 0] == r[:, 1])), seed=1)
    p = float(np.mean(rows[:, 0] == rows[:, 1]))
    assert se == pytest.approx(math.sqrt(p * (1 - p) / 120), rel=0.15)


def test_score_with_error_passes_lm_eval_stderr_through():
    assert score_with_error(0.42, 0.0496, 100) == Score(0.42, 0.0496, 100)
    for missing in ("N/A", None, math.nan):
        assert score_with_error(0.42, missing).se is None
    assert format(score_with_error(0.42, "N/A")) == "0.420 ± ?"
    for bad in (-0.1, "abc", math.inf):
        with pytest.raises(StatsError):
            score_with_error(0.42, bad)
    json.dumps(score_with_error(0.42, "N/A").__dict__)  # None, not NaN: results.json stays JSON


# ----------------------------------------------------------------------------- within noise


def test_close_scores_are_within_noise():
    diff = difference(proportion_score(0.2267, 100), proportion_score(0.22, 100))
    assert not diff.significant and abs(diff.z) < 0.2


def test_far_scores_are_beyond_noise():
    diff = difference(proportion_score(0.60, 100), proportion_score(0.20, 100))
    assert diff.significant and diff.z > 6
    assert diff.se == pytest.approx(math.hypot(proportion_se(0.6, 100), proportion_se(0.2, 100)))


def test_describe():
    assert difference(Score(0.46, 0.036), Score(0.42, 0.036)).describe() == "+4.0 points (± 5.1), within noise"
    assert difference(Score(0.54, 0.03465), Score(0.42, 0.03465)).describe() == \
        "+12.0 points (± 4.9), beyond noise"
    assert difference(Score(0.3, 0.01), Score(0.42, 0.01)).describe().startswith("-12.0 points")
    assert Diff(0.25, 0.5, 0.5, False).describe(scale=1, unit="", digits=2) == "+0.25 (± 0.50), within noise"


def test_unknown_stderr_is_never_significant():
    diff = difference(Score(0.9, None), Score(0.1, 0.01))
    assert diff.se is None and diff.z is None and not diff.significant
    assert "spread unknown" in diff.describe()


def test_z_threshold_is_the_callers():
    a, b = Score(0.50, 0.03), Score(0.42, 0.03)  # z = 1.89
    assert not difference(a, b).significant
    assert difference(a, b, z=1.645).significant  # ~90% two-sided


def test_exact_scores():
    assert not difference(Score(0.5, 0.0), Score(0.5, 0.0)).significant
    assert difference(Score(0.5, 0.0), Score(0.4, 0.0)).significant


def test_paired_items_narrow_the_se():
    b_items = np.random.default_rng(0).integers(0, 2, 200)
    a_items = b_items.copy()
    a_items[np.flatnonzero(b_items == 0)[:12]] = 1  # a fixes 12 items, breaks none: +6 points
    a, b = mean_score(a_items), mean_score(b_items)
    assert not difference(a, b).significant  # independent se ~0.05
    paired = difference(a, b, paired=(a_items, b_items))
    assert paired.significant and paired.se < 0.02
    with pytest.raises(StatsError, match="same items"):
        difference(a, b, paired=(a_items, b_items[:-1]))
    with pytest.raises(StatsError, match="n=200"):
        difference(a, b, paired=(a_items[:50], b_items[:50]))
    with pytest.raises(StatsError, match="bootstrap_se"):
        difference(a, b, paired=(b_items, a_items))


def test_within_noise_of_best():
    scores = {"beta=0.1": proportion_score(0.60, 100), "beta=0.3": proportion_score(0.55, 100),
              "beta=1.0": proportion_score(0.20, 100), "no-stderr": Score(0.10, None)}
    assert within_noise_of_best(scores) == {"beta=0.1", "beta=0.3", "no-stderr"}
    ppl = {"a": Score(12.0, 0.3), "b": Score(12.5, 0.3), "c": Score(20.0, 0.3)}
    assert within_noise_of_best(ppl, higher_is_better=False) == {"a", "b"}
    assert within_noise_of_best({}) == set()
    assert within_noise_of_best({"only": Score(0.1, 0.01)}) == {"only"}


# ----------------------------------------------------------------------------- seeds


def test_seed_summary():
    s = seed_summary([0.40, 0.42, 0.44])
    assert (s.mean, s.min, s.max, s.n) == (pytest.approx(0.42), 0.40, 0.44, 3)
    assert s.std == pytest.approx(0.02) and s.sem == pytest.approx(0.02 / math.sqrt(3))
    assert s.score == Score(s.mean, s.sem, 3)
    one = seed_summary([0.4])
    assert one.std is None and one.sem is None and one.n == 1
    with pytest.raises(StatsError):
        seed_summary([])


def test_seeds_differ_uses_welch_t_not_z():
    a, b = [2.0, 3.0, 4.0], [0.0, 1.0, 2.0]  # t = 2.45 on 4 dof: past 1.96, short of 2.78
    diff = seeds_differ(a, b)
    assert diff.z == pytest.approx(2 / math.sqrt(2 / 3)) and diff.dof == pytest.approx(4.0)
    assert diff.threshold == pytest.approx(2.776, abs=1e-3) and not diff.significant
    assert seeds_differ([5.0, 6.0, 7.0], b).significant


def test_seeds_differ_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    a, b = [0.31, 0.35, 0.29, 0.40], [0.25, 0.27, 0.22]
    ref = stats.ttest_ind(a, b, equal_var=False)
    diff = seeds_differ(a, b)
    assert diff.z == pytest.approx(ref.statistic) and diff.dof == pytest.approx(ref.df)
    assert diff.significant == (ref.pvalue < 0.05)


def test_one_seed_means_unknown_spread():
    diff = seeds_differ([0.9], [0.1, 0.12, 0.11])
    assert diff.se is None and not diff.significant
    assert diff.describe() == "+79.0 points (± ?), spread unknown with 1 seed: not called either way"


def test_welch_dof_equal_spread_is_pooled_dof():
    assert welch_dof(1.0, 5, 1.0, 5) == pytest.approx(8.0)
    assert welch_dof(0.0, 3, 0.0, 4) == 5.0


# ----------------------------------------------------------------------------- pass@k, maj@k


def brute_force_pass_at_k(n, c, k):
    """Fraction of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_at_large_n():
    exact = 1 - math.comb(190, 100) / math.comb(200, 100)  # integers: no overflow, no rounding
    assert pass_at_k(200, 10, 100) == pytest.approx(exact, rel=1e-12)
    assert pass_at_k(200, 0, 100) == 0.0 and pass_at_k(200, 150, 100) == 1.0
    assert pass_at_k(200, 37, 1) == pytest.approx(37 / 200)


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (5, 2, 6), (5, 2, 0), (5, 2.5, 1)])
def test_pass_at_k_rejects_bad_counts(n, c, k):
    with pytest.raises(StatsError):
        pass_at_k(n, c, k)


def test_pass_at_k_over_items():
    score = pass_at_k_over_items([0, 1, 5, 2], n=5, k=2)
    per_item = [0.0, 0.4, 1.0, 0.7]
    assert score.value == pytest.approx(np.mean(per_item)) and score.n == 4
    assert score.se == pytest.approx(np.std(per_item, ddof=1) / 2)
    assert pass_at_k_over_items([3], n=5, k=1).se is None


def test_majority_vote():
    assert majority_vote(["b", "a", "a", "b"]) == "b"  # tie: first seen wins
    assert majority_vote(["a", "b", "b"]) == "b"
    assert majority_vote([None, None, None, "7"]) == "7"  # None never wins over an answer
    assert majority_vote([None, None]) is None and majority_vote([]) is None
    norm = lambda s: s.strip().lower() or None  # noqa: E731
    assert majority_vote([" X", "y", "x ", "  "], normalize=norm) == "x"
    assert majority_vote(["  ", " "], normalize=norm) is None


def test_maj_at_k_over_items():
    answers = [["5", "5", "3", "3"], ["1", "2", "2", "9"], [None, None, "4", None]]
    score = maj_at_k_over_items(answers, ["3", "2", "4"])
    assert score.value == pytest.approx(2 / 3) and score.n == 3  # tie 5/3 goes to 5
    assert maj_at_k_over_items(answers, ["5", "1", "4"], k=1).value == pytest.approx(2 / 3)
    assert score.se == pytest.approx(proportion_se(2 / 3, 3))
    with pytest.raises(StatsError, match="needs k=5"):
        maj_at_k_over_items(answers, ["3", "2", "4"], k=5)
    with pytest.raises(StatsError, match="one reference per problem"):
        maj_at_k_over_items(answers, ["3"])


# ----------------------------------------------------------------------------- power law


def noisy_power_law(seed, a=3.0, b=-0.3, points=10, noise=0.02):
    x = np.logspace(6, 10, points)  # 1M to 10B parameters
    return x, a * x**b * np.exp(np.random.default_rng(seed).normal(0.0, noise, points))


@pytest.mark.parametrize("seed", range(5))
def test_power_law_recovers_the_exponent(seed):
    fit = fit_power_law(*noisy_power_law(seed))
    assert fit.b == pytest.approx(-0.3, rel=0.02)
    assert fit.a == pytest.approx(3.0, rel=0.3)
    assert abs(fit.b + 0.3) < 3.5 * fit.b_se  # the se is honest about the error
    assert fit.quality == "good" and fit.r2 > 0.99 and 0.01 < fit.resid_std < 0.04
    assert fit.describe().endswith("good fit.")


def test_power_law_predict_and_interval():
    x, y = noisy_power_law(0)
    fit = fit_power_law(x, y)
    assert fit.predict(1e8) == pytest.approx(3.0 * 1e8**-0.3, rel=0.03)
    assert fit.predict(np.array([1e7, 1e8])).shape == (2,)
    lo, hi = fit.interval(1e8)
    assert lo < fit.predict(1e8) < hi
    lo_far, hi_far = fit.interval(1e13)  # extrapolating 3 decades out is wider in log space
    assert math.log(hi_far / lo_far) > math.log(hi / lo)
    assert fit.interval(1e8, level=0.99)[1] > hi


def test_power_law_interval_covers_at_its_level():
    hits, trials = 0, 300
    rng = np.random.default_rng(7)
    x = np.logspace(6, 9, 5)
    for _ in range(trials):
        fit = fit_power_law(x, 2.0 * x**-0.2 * np.exp(rng.normal(0, 0.05, 5)))
        new = 2.0 * 3e9**-0.2 * math.exp(rng.normal(0, 0.05))
        lo, hi = fit.interval(3e9, level=0.9)
        hits += lo <= new <= hi
    assert 0.84 < hits / trials < 0.96  # binomial sd at 300 trials: 0.017


def test_step_and_parabola_are_poor_fits():
    x = np.logspace(6, 9, 8)
    step = fit_power_law(x, np.where(x < 3e7, 1.0, 2.0))
    assert step.quality == "poor" and "R^2 below 0.9" in step.describe()
    parabola = fit_power_law(x, np.exp(-(np.log(x) - np.log(x).mean()) ** 2 / 4))
    assert parabola.quality == "poor" and parabola.r2 < 0.1


def test_irreducible_loss_shows_as_curvature():
    x = np.logspace(3, 6, 6)
    y = (10 * x**-0.3 + 0.5) * np.exp(np.random.default_rng(0).normal(0, 0.01, 6))
    fit = fit_power_law(x, y)
    assert fit.r2 > 0.9  # R^2 alone would pass it
    assert fit.quality == "poor" and "curved in log-log (bends up" in fit.quality_reason


def test_exact_power_law_and_two_points():
    x = [1e6, 1e7, 1e8, 1e9]
    exact = fit_power_law(x, [5 * v**-0.1 for v in x])
    assert exact.b == pytest.approx(-0.1) and exact.curvature_t == 0.0 and exact.quality == "good"
    two = fit_power_law([1e6, 1e7], [2.0, 1.0])
    assert two.quality == "poor" and two.b_se is None and "2 points" in two.describe()
    with pytest.raises(StatsError, match="add a model size"):
        two.interval(1e8)


@pytest.mark.parametrize("x, y", [([1, 2, 3], [1.0, 0.0, 2.0]), ([1, 2, 3], [1.0, 2.0]),
                                  ([5, 5, 5], [1.0, 2.0, 3.0]), ([1], [1.0]), ([-1, 2, 3], [1, 2, 3])])
def test_fit_power_law_rejects_bad_points(x, y):
    with pytest.raises(StatsError):
        fit_power_law(x, y)
