"""Replicates, intervals, paired differences: the statistics every table and study rests on.

Pure numpy (plus ``scipy.stats.t`` for the Student-t quantile). A *sample* is the values of one
setting over its replicates (seeds × folds); nothing here drops NaNs silently: a NaN in a sample
makes its mean, std and interval NaN, and callers decide (and say) what a NaN means.

For a sample x_1..x_n:

* mean  x̄ = (1/n)·Σ x_i
* std   s = √( Σ (x_i − x̄)² / (n − 1) )                  (ddof = 1; undefined for n = 1)
* 95 % interval  x̄ ± t_{0.975, n−1} · s / √n          (Student t, n − 1 degrees of freedom)

The interval covers the true mean with probability 0.95 when the x_i are independent draws from
a normal distribution; for n = 1 there is no interval (NaN), never a zero-width one.

A bounded quantity (an accuracy in [0, 1], a loss or a norm ≥ 0) has its true mean in its range,
so :func:`describe` with ``bounds=(a, b)`` reports the interval clipped to the range,
[max(lo, a), min(hi, b)]: it covers the true mean whenever the unclipped one does (the same 95 %
under the same assumptions) and never prints an accuracy above 1 or a loss below 0. The mean and
std are unchanged. (A logit or log scale would also keep the interval in range, but changes what
is averaged and has no interval when every value sits on a bound, e.g. accuracies all 1.)

For a median (skewed quantities such as a selection's regret) :func:`median_interval` gives the
distribution-free order-statistic interval [x_(j), x_(k)]: with x_(1) ≤ … ≤ x_(n) and B ~
Binomial(n, ½), P(x_(j) ≤ median < x_(k)) = P(j ≤ B < k) for any continuous distribution; j, k
are the symmetric pair closest to the nominal level from above (at n = 10: x_(2), x_(9), 97.9 %).
Paired samples of such quantities are compared by the exact :func:`sign_test`, and a proportion
(hits out of n) gets the exact Clopper–Pearson :func:`binomial_interval`, inside [0, 1].
"""

import math
from typing import NamedTuple

import numpy as np


def _scipy():
    """``scipy.stats``, imported on first use: at import it added ~0.8 s to every ``import
    wdjax.run.cli`` (2.28 -> 1.45 s), and only intervals and tests need it."""
    from scipy import stats

    return stats


class Summary(NamedTuple):
    """Mean, std (ddof=1), count and interval of a sample (arrays when reduced along an axis)."""

    mean: float  # x̄
    std: float  # s (ddof=1); NaN for n < 2
    n: int  # number of replicates
    lo: float  # x̄ − t·s/√n; NaN for n < 2
    hi: float  # x̄ + t·s/√n; NaN for n < 2


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom: t_{0.975,4} = 2.776445."""
    return float(_scipy().t.ppf(p, dof))


def half_width(std, n: int, confidence: float = 0.95):
    """Half width of the two-sided Student-t interval: t_{(1+c)/2, n−1} · s / √n (NaN if n < 2)."""
    if n < 2:
        return np.full(np.shape(std), np.nan)[()]
    return t_quantile((1 + confidence) / 2, n - 1) * np.asarray(std, float) / math.sqrt(n)


def describe(x, axis: int | None = None, confidence: float = 0.95,
             bounds: tuple[float, float] | None = None) -> Summary:  # fmt: skip
    """:class:`Summary` of the sample ``x`` (all of it, or each slice along ``axis``).

    ``bounds=(a, b)``: the quantity's range (``(0, 1)`` for an accuracy, ``(0, inf)`` for a
    loss); the interval is clipped to it (module docstring). None: no clipping.

    Example: ``describe([1.0, 2.0, 3.0])`` has mean 2, std 1, n 3 and interval
    2 ± t_{0.975,2}/√3 = [−0.484, 4.484]; with ``bounds=(0, 3)``, [0, 3].
    """
    x = np.asarray(x, float)
    if axis is None:
        x, axis = x.ravel(), 0
    n = x.shape[axis]
    shape = np.delete(np.array(x.shape), axis)
    if n == 0:
        nan = np.full(shape, np.nan)[()]
        return Summary(nan, nan, 0, nan, nan)
    with np.errstate(invalid="ignore"):  # ±inf in a sample: mean ±inf, std NaN (inf − inf)
        mean = np.mean(x, axis=axis)[()]
        std = np.std(x, axis=axis, ddof=1)[()] if n > 1 else np.full(shape, np.nan)[()]
    half = half_width(std, n, confidence)
    lo, hi = mean - half, mean + half
    if bounds is not None:  # NaN stays NaN (np.maximum / np.minimum propagate it)
        lo, hi = np.maximum(lo, bounds[0])[()], np.minimum(hi, bounds[1])[()]
    return Summary(mean, std, n, lo, hi)


def paired_differences(x, baseline, axis: int | None = None, confidence: float = 0.95) -> Summary:
    """:class:`Summary` of d_i = x_i − baseline_i, replicates paired by index (same seed/fold).

    The interval is d̄ ± t_{(1+c)/2, n−1} · s_d / √n with s_d the std (ddof=1) of the differences:
    pairing removes the between-seed variation that an unpaired comparison would carry.
    ``baseline`` broadcasts against ``x`` (e.g. one baseline row against many settings).
    """
    x, b = np.asarray(x, float), np.asarray(baseline, float)
    try:
        pairs = np.broadcast_shapes(x.shape, b.shape) == x.shape
    except ValueError:
        pairs = False
    if not pairs:
        raise ValueError(f"baseline of shape {b.shape} does not pair with x of shape {x.shape}")
    return describe(x - b, axis=axis, confidence=confidence)


def welch_difference(x, y, confidence: float = 0.95) -> Summary:
    """:class:`Summary` of mean(x) − mean(y) for two *independent* samples (no pairing, e.g. two
    frameworks with their own random streams): the Welch interval d ± t_{(1+c)/2, ν}·se with
    se² = s_x²/n_x + s_y²/n_y and ν = se⁴ / ((s_x²/n_x)²/(n_x−1) + (s_y²/n_y)²/(n_y−1))
    (Welch–Satterthwaite). Here ``std`` holds se and ``n`` is n_x + n_y."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    nx, ny = x.size, y.size
    d = float(np.mean(x) - np.mean(y)) if nx and ny else np.nan
    if nx < 2 or ny < 2:
        return Summary(d, np.nan, nx + ny, np.nan, np.nan)
    vx, vy = np.var(x, ddof=1) / nx, np.var(y, ddof=1) / ny
    se = math.sqrt(vx + vy)
    if se == 0:
        return Summary(d, 0.0, nx + ny, d, d)
    dof = (vx + vy) ** 2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1))
    half = float(_scipy().t.ppf((1 + confidence) / 2, dof)) * se
    return Summary(d, se, nx + ny, d - half, d + half)


class MedianSummary(NamedTuple):
    """Median of a sample with its order-statistic interval and that interval's exact coverage."""

    median: float
    n: int
    lo: float  # x_(j); NaN when no order statistics reach the level (n < 6 at 95 %)
    hi: float  # x_(n+1−j)
    coverage: float  # P(j ≤ B ≤ n − j), B ~ Binomial(n, ½); NaN with lo/hi


def median_interval(x, confidence: float = 0.95) -> MedianSummary:
    """Median and the distribution-free interval [x_(j), x_(n+1−j)] with the largest j whose
    coverage P(j ≤ B ≤ n − j), B ~ Binomial(n, ½), is still ≥ ``confidence`` (NaN in a sample:
    everything NaN). Example: n = 10, 95 % → j = 2, coverage 1 − 2·(1 + 10)/1024 = 0.9785."""
    x = np.sort(np.asarray(x, float).ravel())
    n = x.size
    if n == 0 or np.isnan(x).any():
        return MedianSummary(np.nan, n, np.nan, np.nan, np.nan)
    best, binom = None, _scipy().binom
    for j in range(1, n // 2 + 1):
        coverage = float(binom.cdf(n - j, n, 0.5) - binom.cdf(j - 1, n, 0.5))
        if coverage >= confidence:
            best = (j, coverage)
    if best is None:
        return MedianSummary(float(np.median(x)), n, np.nan, np.nan, np.nan)
    j, coverage = best
    return MedianSummary(float(np.median(x)), n, float(x[j - 1]), float(x[n - j]), coverage)


class SignTest(NamedTuple):
    """Paired signs of x − y: counts and the exact two-sided binomial p-value (ties dropped)."""

    below: int  # pairs with x < y
    above: int  # pairs with x > y
    ties: int  # pairs with x == y (not counted in the test)
    p: float  # P(a split at least this uneven | B ~ Binomial(below + above, ½)), two-sided


def sign_test(x, y) -> SignTest:
    """The exact sign test of paired samples (Dixon & Mood 1946): under "x − y is as likely
    negative as positive" the number of negative differences among the n untied pairs is
    Binomial(n, ½); p = min(1, 2·P(B ≤ min(below, above))). Distribution-free, so it fits
    quantities a t interval does not (a regret is never negative and often exactly 0). NaN in
    a pair: everything NaN."""
    d = np.asarray(x, float) - np.asarray(y, float)
    if np.isnan(d).any():
        return SignTest(0, 0, 0, np.nan)
    below, above = int(np.sum(d < 0)), int(np.sum(d > 0))
    n, k = below + above, min(below, above)
    p = 1.0 if n == 0 else float(_scipy().binomtest(k, n, 0.5).pvalue)
    return SignTest(below, above, int(d.size - n), p)


def binomial_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper & Pearson 1934) interval of a proportion: the Beta quantiles
    [B(α/2; k, n − k + 1), B(1 − α/2; k + 1, n − k)], 0 at k = 0 and 1 at k = n; always inside
    [0, 1] and covering the true proportion with probability ≥ ``confidence``."""
    if n <= 0:
        return float("nan"), float("nan")
    ci = _scipy().binomtest(successes, n).proportion_ci(confidence, method="exact")
    return float(ci.low), float(ci.high)


def argmin(x) -> int | None:
    """Index of the smallest value of a 1-D array, NaN ignored; None if every value is NaN.

    Among equal minima the first index wins; use :func:`minima` to see them all.
    """
    x = np.asarray(x, float).ravel()
    ok = ~np.isnan(x)
    return int(np.flatnonzero(ok)[np.argmin(x[ok])]) if ok.any() else None


def argmax(x) -> int | None:
    """Index of the largest value of a 1-D array, NaN ignored; None if every value is NaN."""
    return argmin(-np.asarray(x, float))


def minima(x, rtol: float = 0.0) -> list[int]:
    """Indices of every finite value v with v ≤ m + rtol·|m|, m the smallest finite value.

    ``rtol = 0`` keeps exact ties only (equal as floats). NaN and ±inf are never minima.
    """
    x = np.asarray(x, float).ravel()
    finite = np.isfinite(x)
    if not finite.any():
        return []
    m = np.min(x[finite])
    return np.flatnonzero(finite & (x <= m + rtol * abs(m))).tolist()


def bootstrap_mean_interval(x, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95 % interval of the mean of ``x`` (finite values), resampled with replacement."""
    x = np.asarray(x, float)[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(draws, x.size))
    return tuple(float(q) for q in np.percentile(x[idx].mean(axis=1), [2.5, 97.5]))
