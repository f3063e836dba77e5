"""wdjax.stats: Student-t quantiles and intervals, paired differences, NaN-safe arg-extrema."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from wdjax.analysis import stats

NAN = float("nan")


@pytest.mark.parametrize(
    "p, dof, expected",
    [(0.975, 4, 2.776445), (0.975, 9, 2.262157), (0.975, 2, 4.302653), (0.975, 10**7, 1.959964)],
)
def test_t_quantile_matches_tables(p, dof, expected):
    assert stats.t_quantile(p, dof) == pytest.approx(expected, abs=1e-6)


def test_describe_by_hand():
    # [1, 2, 3]: mean 2, s² = (1 + 0 + 1)/2 = 1, half width t_{0.975,2}·1/√3 = 2.484138.
    s = stats.describe([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert s.lo == pytest.approx(2 - 2.484138, abs=1e-6)
    assert s.hi == pytest.approx(2 + 2.484138, abs=1e-6)
    assert stats.half_width(1.0, 3) == pytest.approx(2.484138, abs=1e-6)


def test_one_replicate_has_no_interval():
    s = stats.describe([0.7])
    assert s.mean == 0.7 and s.n == 1
    assert math.isnan(s.std) and math.isnan(s.lo) and math.isnan(s.hi)
    assert math.isnan(stats.describe([]).mean) and stats.describe([]).n == 0


def test_nan_propagates():
    s = stats.describe([1.0, NAN, 3.0])
    assert math.isnan(s.mean) and math.isnan(s.lo) and s.n == 3


def test_describe_along_an_axis_equals_each_slice():
    x = np.array([[1.0, 2.0, 4.0, 8.0], [0.5, 0.5, 1.5, 2.0], [3.0, 1.0, 2.0, 0.0]])
    s = stats.describe(x, axis=1)
    for i, row in enumerate(x):
        one = stats.describe(row)
        for got, want in zip(s, one, strict=True):
            np.testing.assert_allclose(got if np.ndim(got) == 0 else got[i], want, rtol=1e-15)


def test_paired_differences_by_hand():
    # d = x − b = [0.5, 1, 2]: mean 7/6, s_d = √(7/12) = 0.763763, half = 4.302653·s_d/√3.
    s = stats.paired_differences([1.0, 2.0, 4.0], [0.5, 1.0, 2.0])
    assert s.mean == pytest.approx(7 / 6, abs=1e-12)
    assert s.std == pytest.approx(math.sqrt(7 / 12), abs=1e-12)
    assert s.n == 3
    assert s.lo == pytest.approx(7 / 6 - 1.897291, abs=1e-6)
    assert s.hi == pytest.approx(7 / 6 + 1.897291, abs=1e-6)


def test_paired_differences_broadcast_a_baseline_and_check_shapes():
    x = np.array([[1.0, 2.0, 4.0], [2.0, 2.0, 2.0]])
    s = stats.paired_differences(x, [0.5, 1.0, 2.0], axis=1)
    np.testing.assert_allclose(s.mean, [7 / 6, 5 / 6])
    with pytest.raises(ValueError, match="pair"):
        stats.paired_differences([1.0, 2.0], [1.0, 2.0, 3.0])


def test_pairing_removes_the_seed_effect():
    # Each seed shifts both arms alike: the paired interval is far narrower than either arm's.
    seed_effect = np.array([0.0, 1.0, -1.0, 0.5, -0.5])
    base = 1.0 + seed_effect
    x = 1.2 + seed_effect + np.array([0.01, -0.01, 0.0, 0.02, -0.02])
    paired, unpaired = stats.paired_differences(x, base), stats.describe(x)
    assert paired.lo > 0  # the +0.2 is resolved
    assert paired.hi - paired.lo < (unpaired.hi - unpaired.lo) / 10


def test_interval_covers_the_mean_95_percent_at_n5():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(4000, 5))
    s = stats.describe(x, axis=1)
    coverage = np.mean((s.lo <= 3.0) & (3.0 <= s.hi))
    assert 0.94 <= coverage <= 0.96  # binomial sd 0.0034; z = 1.96 or ddof = 0 give ≈ 0.88–0.93


def test_argmin_argmax_ignore_nan():
    assert stats.argmin([NAN, 3.0, 1.0, 1.0]) == 2  # the first of equal minima
    assert stats.argmax([NAN, 2.0, 5.0, -math.inf]) == 2
    assert stats.argmin([NAN, NAN]) is None and stats.argmax([NAN]) is None
    assert stats.argmin([math.inf, 2.0]) == 1


def test_minima_lists_ties_and_skips_non_finite():
    assert stats.minima([NAN, 3.0, 1.0, 1.0, math.inf, -math.inf]) == [2, 3]
    assert stats.minima([1.0, 1.0 + 1e-9, 2.0]) == [0]
    assert stats.minima([1.0, 1.0 + 1e-9, 2.0], rtol=1e-6) == [0, 1]
    assert stats.minima([NAN, math.inf]) == []


def test_median_interval_order_statistics_and_exact_coverage():
    m = stats.median_interval(np.arange(10.0)[::-1])  # x_(2), x_(9): 1 - 2·11/1024
    assert (m.median, m.n, m.lo, m.hi) == (4.5, 10, 1.0, 8.0)
    assert m.coverage == pytest.approx(1 - 22 / 1024, abs=1e-15)
    assert np.isnan(stats.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]).lo)  # n = 5: 2·(1/32) > 5 %
    assert stats.median_interval(np.arange(6.0)).lo == 0.0  # n = 6: 1 - 2/64 = 0.969 ≥ 0.95
    assert np.isnan(stats.median_interval([1.0, np.nan, 3.0, 4.0, 5.0, 6.0]).median)


def test_median_interval_covers_at_least_its_stated_level():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(4000, 10))  # skewed; true median ln 2
    hits = [m.lo <= np.log(2) <= m.hi for m in map(stats.median_interval, x)]
    assert abs(np.mean(hits) - (1 - 22 / 1024)) < 0.01  # binomial s.e. of 4000 draws ≈ 0.0023


def test_welch_difference_by_hand():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 9.0]  # s_x² = 5/3, s_y² = 13
    vx, vy = (5 / 3) / 4, 13 / 3
    dof = (vx + vy) ** 2 / (vx**2 / 3 + vy**2 / 2)  # Welch–Satterthwaite ≈ 2.34
    d = stats.welch_difference(x, y)
    half = float(scipy_stats.t.ppf(0.975, dof))
    assert d.mean == pytest.approx(2.5 - 5.0, rel=1e-15)
    assert d.std == pytest.approx(math.sqrt(vx + vy), rel=1e-14)
    assert d.hi - d.mean == pytest.approx(half * math.sqrt(vx + vy), rel=1e-12)
    assert np.isnan(stats.welch_difference([1.0], y).lo)


def test_bounds_clip_the_interval_to_the_range_and_keep_mean_and_std():
    # [1, 2, 3]: 2 ± t_{0.975,2}/√3 = [−0.484, 4.484]; in [0, 3]: [0, 3]
    s = stats.describe([1.0, 2.0, 3.0], bounds=(0.0, 3.0))
    assert (s.mean, s.std, s.n, s.lo, s.hi) == (2.0, 1.0, 3, 0.0, 3.0)
    free = stats.describe([1.0, 2.0, 3.0])
    assert free.lo < 0 < 3 < free.hi
    inside = stats.describe([1.0, 2.0, 3.0], bounds=(-10.0, 10.0))
    assert (inside.lo, inside.hi) == (free.lo, free.hi)
    x = np.array([[1.0, 0.2], [1.0, 0.3], [0.97, np.nan]])
    cols = stats.describe(x, axis=0, bounds=(0.0, 1.0))
    assert cols.hi[0] == 1.0 and np.isnan(cols.lo[1]) and np.isnan(cols.hi[1])
    assert np.isnan(stats.describe([0.5], bounds=(0.0, 1.0)).lo)  # n = 1: still no interval


def test_bootstrap_interval_is_seeded_and_inside_the_range():
    x = [-1.1, -0.9, -1.0, -1.2, -0.8]
    lo, hi = stats.bootstrap_mean_interval(x)
    assert (lo, hi) == stats.bootstrap_mean_interval(x)  # fixed seed
    assert -1.2 <= lo < -1.0 < hi <= -0.8
    assert stats.bootstrap_mean_interval([3.0, 3.0]) == (3.0, 3.0)
    assert np.isnan(stats.bootstrap_mean_interval([1.0, np.nan])[0])  # one finite value


def test_sign_test_is_the_exact_binomial_on_untied_pairs():
    x = np.array([0.0] * 8 + [2.0, 2.0, 1.0, 1.0])
    y = np.array([1.0] * 8 + [1.0, 1.0, 1.0, 1.0])  # 8 below, 2 above, 2 ties
    t = stats.sign_test(x, y)
    assert (t.below, t.above, t.ties) == (8, 2, 2)
    assert t.p == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 2·P(B ≤ 2), B ~ Binomial(10, ½)
    assert stats.sign_test(y, x).p == t.p and stats.sign_test(x, x).p == 1.0  # all tied
    assert stats.sign_test([0.0] * 6, [1.0] * 6).p == pytest.approx(2 / 64)
    assert np.isnan(stats.sign_test([np.nan, 1.0], [0.0, 0.0]).p)


def test_binomial_interval_is_clopper_pearson():
    lo, hi = stats.binomial_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))  # (1 − hi)^10 = α/2
    lo, hi = stats.binomial_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10))
    lo, hi = stats.binomial_interval(5, 10)  # P(B ≥ 5 | lo) = P(B ≤ 5 | hi) = 0.025
    from scipy.stats import binom

    assert binom.sf(4, 10, lo) == pytest.approx(0.025) and binom.cdf(5, 10, hi) == pytest.approx(
        0.025
    )
    assert 0 < lo < 0.5 < hi < 1 and np.isnan(stats.binomial_interval(0, 0)[0])
