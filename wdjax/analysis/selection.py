"""Choosing λ on validation loss, honestly: over replicates, per replicate, and with its spread.

Inputs are ``[replicates, settings]`` arrays (one row per replicate, one column per λ of a grid
shared by every replicate), NaN where a setting diverged. With v the validation loss and m the
test metric (lower is better unless said otherwise):

* averaged  ĵ = argmin_j mean_r v[r, j]: one λ for all replicates (a study's usual choice; it
  looks at every replicate's validation loss, which no single user has);
* nested  ĵ_r = argmin_j v[r, j]: each replicate picks its own λ on its own validation loss, and
  m[r, ĵ_r] is what that choice scores on the test set: the honest estimate of "tune λ on
  validation, then deploy" (mean and 95 % Student-t interval over r);
* oracle  j* = argmin_j mean_r m[r, j] (argmax for accuracies): the best λ in hindsight, for
  reference only;
* one-SE set  {j : mean_r v[r, j] ≤ mean_r v[r, ĵ] + se_ĵ}, se_ĵ = s_ĵ / √R the standard error of
  the best setting's mean (Breiman et al. 1984, *Classification and Regression Trees*, §3.4.3;
  Hastie, Tibshirani & Friedman, *The Elements of Statistical Learning*, §7.10): every λ the
  data cannot tell from the best. Where it holds several λ the curve is flat there and the
  argmin is decided by noise (on another CPU, by the last bits).

:func:`rise` is the validation minimum and the rise after it (overfitting) of a curve
``[replicates, epochs]``.
"""

import warnings

import numpy as np

from wdjax.analysis import stats

__all__ = ["fit_slope", "interval", "nested", "one_se_set", "rise", "select", "vertex"]


def interval(x, lower: float | None = None) -> list[float]:
    """``[mean, lo, hi]`` of a sample over replicates (95 % Student-t; NaN for n < 2), the bounds
    clipped at ``lower`` when the quantity cannot go below it (e.g. 0 for a rise)."""
    bounds = None if lower is None else (lower, np.inf)
    s = stats.describe(np.asarray(x, float), bounds=bounds)
    return [float(s.mean), float(s.lo), float(s.hi)]


def nested(val, metric) -> tuple[list, np.ndarray]:
    """``(picks, scores)``: each replicate's own argmin of ``val[r]`` (None when every value is
    NaN) and ``metric[r, pick]`` (NaN for None)."""
    val, metric = np.asarray(val, float), np.asarray(metric, float)
    picks = [stats.argmin(row) for row in val]
    scores = np.array([np.nan if j is None else metric[r, j] for r, j in enumerate(picks)])
    return picks, scores


def one_se_set(val) -> list[int]:
    """Indices of every setting whose mean validation loss over replicates is within one standard
    error (of the best setting's mean) of the best mean; [] when every mean is NaN. With one
    replicate there is no standard error: only exact ties with the best."""
    val = np.asarray(val, float)
    mean = val.mean(axis=0)
    best = stats.argmin(mean)
    if best is None:
        return []
    r = val.shape[0]
    se = float(np.std(val[:, best], ddof=1) / np.sqrt(r)) if r > 1 else 0.0
    return [j for j in range(mean.size) if np.isfinite(mean[j]) and mean[j] <= mean[best] + se]


def select(val, metric, grid=None, *, baseline: int | None = 0, higher_is_better=False) -> dict:
    """Every choice of the module docstring for one grid, JSON-ready.

    Args:
      val: validation loss ``[replicates, settings]``.
      metric: the test metric judged ``[replicates, settings]`` (test loss, or accuracy with
        ``higher_is_better``).
      grid: the settings' λ (default: their indices).
      baseline: the column every nested pick is compared with, paired by replicate (λ = 0);
        None: no comparison.

    Returns:
      ``averaged`` (index), ``averaged_value`` [mean, lo, hi] of the metric there; ``per_replicate``
      [λ] and ``nested`` [mean, lo, hi] of the metric at each replicate's own pick, with
      ``nested_diff`` [mean, lo, hi] against ``baseline``; ``oracle`` (index) and its λ;
      ``one_se`` [λ] (Breiman's set).
    """
    val, metric = np.asarray(val, float), np.asarray(metric, float)
    if val.shape != metric.shape or val.ndim != 2:
        raise ValueError(f"val {val.shape} and metric {metric.shape}: give two equal "
                         "[replicates, settings] arrays")  # fmt: skip
    grid = list(range(val.shape[1])) if grid is None else [float(g) for g in grid]
    if len(grid) != val.shape[1]:
        raise ValueError(f"grid: {len(grid)} values for {val.shape[1]} settings; give one each")
    sign = -1.0 if higher_is_better else 1.0
    j = stats.argmin(val.mean(axis=0))
    picks, scores = nested(val, metric)
    oracle = stats.argmin(sign * metric.mean(axis=0))
    out = dict(
        averaged=j, averaged_strength=None if j is None else grid[j],
        averaged_value=interval(metric[:, j]) if j is not None else [np.nan] * 3,
        per_replicate=[None if p is None else grid[p] for p in picks], nested=interval(scores),
        oracle=oracle, oracle_strength=None if oracle is None else grid[oracle],
        one_se=[grid[i] for i in one_se_set(val)],
    )  # fmt: skip
    if baseline is not None:
        out["nested_diff"] = interval(scores - metric[:, baseline])
    return out


def rise(curves) -> dict:
    """The validation minimum and the rise after it, of ``curves [replicates, epochs]`` (NaN at
    epochs not evaluated; the last epoch is).

    Returns ``min_epoch``: the 1-based epoch where the mean curve is lowest; ``rise``
    [mean, lo, hi] of final − minimum of each replicate's own curve (≥ 0: its interval is
    bounded at 0 below); ``rise_at_mean_min`` [mean, lo, hi] of final − the value at
    ``min_epoch``, paired by replicate (it can be negative); ``epochs``.
    """
    c = np.asarray(curves, float)
    with warnings.catch_warnings():  # an epoch no replicate evaluated: NaN, said once below
        warnings.simplefilter("ignore", RuntimeWarning)
        e = stats.argmin(np.nanmean(c, axis=0))
    if e is None:
        raise ValueError("curves: every epoch is NaN; give at least one evaluated epoch")
    own_min = np.array([np.nanmin(row) if np.isfinite(row).any() else np.nan for row in c])
    return dict(min_epoch=int(e) + 1, epochs=int(c.shape[1]),
                rise=interval(c[:, -1] - own_min, lower=0.0),
                rise_at_mean_min=interval(c[:, -1] - c[:, e]))  # fmt: skip


def vertex(log_lam, loss) -> tuple[float, bool]:
    """(log λ* at the vertex of the parabola through the grid minimum and its neighbours, edge):
    the optimum of a curve sampled on a grid, between grid points. Non-finite losses count as
    +inf; a minimum at an end, or next to a non-finite neighbour, is an edge: (NaN, True)."""
    x, y = np.asarray(log_lam, float), np.asarray(loss, float)
    y = np.where(np.isfinite(y), y, np.inf)
    i = int(np.argmin(y))
    if not 0 < i < len(y) - 1 or not np.all(np.isfinite(y[i - 1 : i + 2])):
        return float("nan"), True
    (x0, x1, x2), (y0, y1, y2) = x[i - 1 : i + 2], y[i - 1 : i + 2]
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    return float(x1 - 0.5 * num / den), False


def fit_slope(log_lr, log_lam, min_points: int = 3) -> float:
    """Least-squares slope over the finite points (NaN if fewer than ``min_points``)."""
    x, y = np.asarray(log_lr, float), np.asarray(log_lam, float)
    ok = np.isfinite(y)
    return float(np.polyfit(x[ok], y[ok], 1)[0]) if ok.sum() >= min_points else float("nan")
