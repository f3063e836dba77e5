"""Replicates of a sweep: every source of randomness varied, settings compared paired.

A *replicate* re-runs the whole sweep as a reader re-running the study would: replicate ``r`` uses
seeds ``first_seed + r·seeds …`` (initial weights, dropout) and ``data_seed + r`` (the validation
split, the batch order, label noise). Inside one replicate every setting shares those seeds
(common random numbers), so the difference between two settings is measured on the same draws
and its spread over replicates is the spread of the difference itself (paired). Replicates are
separate calls of the same compiled shape: only the first compiles.

Per replicate and setting the value is the mean over the replicate's members of that setting
(its seeds × folds); over replicates, :func:`stats.describe` gives mean, std (ddof = 1), n
and the Student-t 95 % interval, and :func:`stats.paired_differences` the difference to a
baseline setting with its own interval. A diverged member makes its setting's value NaN in that
replicate (:func:`tables.final_values`), so its summary is NaN: never silently dropped.
"""

import dataclasses
import types

import numpy as np

from wdjax.analysis import stats, tables
from wdjax.run.config import SweepConfig

__all__ = ["curves", "early_stopped", "replicate_configs", "run", "setting_values", "summarize",
           "table"]  # fmt: skip


def replicate_configs(config: SweepConfig, n: int) -> list[SweepConfig]:
    """The ``n`` replicates' configs: disjoint seeds, data seed ``data_seed + r``."""
    if n < 1:
        raise ValueError(f"n: give at least 1 replicate, got {n}")
    return [
        dataclasses.replace(
            config, first_seed=config.first_seed + r * config.seeds, data_seed=config.data_seed + r
        )  # fmt: skip
        for r in range(n)
    ]


def run(config: SweepConfig, n: int, **sweep_kw) -> list:
    """Sweep every replicate (:func:`wdjax.sweep` keyword arguments pass through)."""
    from wdjax.run.runner import sweep

    return [sweep(c, **sweep_kw) for c in replicate_configs(config, n)]


def setting_values(runs: list, metric: str) -> tuple[list[dict], np.ndarray]:
    """``(settings, values [replicates, settings])``: each setting's final ``metric``, averaged
    over the replicate's members of that setting (NaN if one of them diverged)."""
    settings, c = curves(runs, metric)
    return settings, c[:, :, -1]


def curves(runs: list, metric: str) -> tuple[list[dict], np.ndarray]:
    """``(settings, values [replicates, settings, epochs])``: ``metric`` per epoch, averaged over
    each replicate's members of a setting (NaN where skipped by ``eval_every`` or diverged), for
    figures with interval bands (:func:`stats.describe` along axis 0)."""
    settings = [s for s, _ in tables.settings(runs[0].members)]
    out = []
    for res in runs:
        groups = tables.settings(res.members)
        assert [s for s, _ in groups] == settings, "replicates must share their grid"
        h = np.asarray(res.history[metric], float)
        h = np.where(tables.diverged_members(res.history)[:, None], np.nan, h)
        out.append([h[idx].mean(axis=0) for _, idx in groups])
    return settings, np.asarray(out)


def early_stopped(res, by: str = "val_loss"):
    """A sweep result (one replicate) with each member at its own lowest ``by`` over the epochs
    evaluated (the first such epoch; all NaN: the first): every ``[members, epochs]`` metric of
    its history becomes ``[members, 1]`` at that epoch, plus ``epoch`` (1-based), so that
    :func:`table`, :func:`setting_values` and :func:`wdjax.study.select` give early-stopped
    comparisons. Other entries (records, ``diverged``) are kept as they are."""
    v = np.asarray(res.history[by], float)
    e = np.where(np.isfinite(v), v, np.inf).argmin(axis=1)[:, None]
    h = {m: np.take_along_axis(np.asarray(x, float), e, 1) for m, x in res.history.items()
         if m != "diverged" and np.ndim(x) == 2 and np.shape(x) == v.shape}  # fmt: skip
    return types.SimpleNamespace(members=res.members, history={**res.history, **h,
                                                                "epoch": e + 1.0})  # fmt: skip


def summarize(name: str, values, baseline=None) -> dict:
    """``name_mean, name_std, name_lo, name_hi`` of ``values`` over replicates and, with a
    ``baseline`` sample of the same replicates, the paired ``name_diff, name_diff_lo,
    name_diff_hi`` (:func:`stats.describe`, :func:`stats.paired_differences`)."""
    s = stats.describe(values)
    row = {f"{name}_{k}": float(getattr(s, k)) for k in ("mean", "std", "lo", "hi")}
    if baseline is not None:
        d = stats.paired_differences(values, baseline)
        row.update({f"{name}_diff": float(d.mean), f"{name}_diff_lo": float(d.lo),
                    f"{name}_diff_hi": float(d.hi)})  # fmt: skip
    return row


def table(runs: list, metrics, baseline: dict | None = None) -> list[dict]:
    """One row per setting: per metric ``x``, ``x_mean, x_std, x_lo, x_hi`` over replicates, and
    with a ``baseline`` setting (e.g. ``{"strength": 0.0}``: the keys it fixes), the paired
    difference ``x_diff, x_diff_lo, x_diff_hi`` against it; ``n`` = replicates."""
    out = None
    for x in metrics:
        settings, v = setting_values(runs, x)
        out = out or [dict(s, n=v.shape[0]) for s in settings]
        base = None if baseline is None else _baseline_column(settings, v, baseline)
        for j, row in enumerate(out):
            row.update(summarize(x, v[:, j], base))
    return out


def _baseline_column(settings: list[dict], values: np.ndarray, baseline: dict) -> np.ndarray:
    hits = [j for j, s in enumerate(settings) if all(s.get(k) == v for k, v in baseline.items())]
    if len(hits) != 1:
        raise ValueError(f"baseline={baseline!r} matches {len(hits)} settings of the grid, not "
                         "exactly one; fix the keys it names (e.g. strength and lr)")  # fmt: skip
    return values[:, hits[0]]
