"""Per-setting tables and selection of a run (the files themselves: :mod:`wdjax.files`).

A run directory (:mod:`wdjax.run.rundir` starts, resumes and writes it) holds::

    config.json     the SweepConfig (a resumed run must match it)
    metrics.csv     long format: one row per member and epoch
    summary.json    per member: final metrics, best epochs; diverged members; selected setting
    table.csv       per (strength, lr) setting: mean, std, n and 95 % interval of final metrics
    table.md        the same, formatted for people, with how the setting was selected
    meta.json       versions, backend, devices, compile/run seconds, steps/s
    params.npz      final parameters (:func:`save_params`)
    checkpoints/    the last checkpoint of an unfinished run (wdjax.checkpoints)
    *.png           figures (wdjax.plots)

Every file is written to a temporary name in the same directory and moved into place with
``os.replace``, so a kill leaves either the old or the new file, never half of one; files get
the mode a plain ``open`` would give them (0o666 & ~umask: 0644 under the usual umask 022).

**Selection.** A setting is one (strength, lr) pair; its replicates are its seeds × folds. The
selected setting minimizes the mean over replicates of the final validation loss (the final
training loss when there is no validation set, ``val_size = 0``); the test set is never used.
A member that diverged (flagged at any epoch) has no final values: its values count as NaN, so
its setting's means are NaN and it cannot be selected.
"""

import os

import numpy as np

from wdjax import files
from wdjax.analysis import stats
from wdjax.files import CSV_FIRST

# Final-epoch metrics aggregated per setting (those a history holds), and those table.md shows.
TABLE_METRICS = CSV_FIRST[6:-1]
MD_METRICS = ("val_loss", "val_acc", "test_loss", "test_acc", "train_loss", "weight_l2", "sparsity")


REPLICATE_KEYS = ("member", "seed", "fold")  # what varies between a setting's replicates

# The range of each bounded metric (per-layer ``name/<layer>`` too): its intervals are clipped to
# it (:func:`wdjax.analysis.stats.describe`). dead_units is a count of units, so only >= 0.
_UNIT = (0.0, 1.0)
_NONNEGATIVE = (0.0, float("inf"))
BOUNDS = {
    **dict.fromkeys(("train_acc", "val_acc", "test_acc", "sparsity"), _UNIT),
    **dict.fromkeys(("train_loss", "val_loss", "test_loss"), _NONNEGATIVE),
    **dict.fromkeys(("weight_l2", "weight_l1", "dead_units"), _NONNEGATIVE),
}


def bounds_of(metric: str) -> tuple[float, float] | None:
    """The range of a metric (``val_acc``: (0, 1); ``weight_l2/dense_0``: (0, inf)); None for a
    quantity of unknown range (an extra column), whose interval is not clipped."""
    return BOUNDS.get(metric.split("/", 1)[0])


def setting_of(info: dict) -> dict:
    """A member's setting: its grid values other than seed and fold (strength, lr, and any
    further axis such as ``b1``), in grid order."""
    return {k: v for k, v in info.items() if k not in REPLICATE_KEYS}


def settings(members: list[dict]) -> list[tuple[dict, list[int]]]:
    """``[(setting, [member indices]), ...]`` in grid order (first appearance)."""
    groups: dict = {}
    for m, info in enumerate(members):
        groups.setdefault(tuple(setting_of(info).items()), []).append(m)
    return [(dict(key), idx) for key, idx in groups.items()]


def _key(d: dict, fields) -> tuple:
    return tuple(d[f] for f in fields)


def diverged_members(history: dict) -> np.ndarray:
    """``[K]`` bool: the member was flagged ``diverged`` at any epoch (False without the flag)."""
    flag = history.get("diverged")
    k = next(iter(history.values())).shape[0]
    return np.zeros(k, bool) if flag is None else np.asarray(flag, bool).any(axis=1)


def final_values(history: dict, name: str) -> np.ndarray:
    """``[K]`` float: ``history[name]`` at the last epoch, NaN for members that diverged."""
    return np.where(diverged_members(history), np.nan, np.asarray(history[name], float)[:, -1])


def table_rows(members, history, metrics=None, confidence: float = 0.95) -> list[dict]:
    """One row per setting: ``strength, lr, n, diverged`` and, per final-epoch metric ``x``,
    ``x_mean, x_std, x_lo, x_hi`` over the setting's n = seeds × folds members.

    std has ddof = 1; [lo, hi] is the Student-t interval x̄ ± t_{(1+c)/2, n−1}·s/√n
    (:func:`stats.describe`), NaN when n = 1, clipped to the metric's range (:data:`BOUNDS`:
    accuracies and sparsity to [0, 1], losses, norms and dead units to [0, ∞)). ``diverged``
    counts the setting's diverged members; with one or more, every mean of the row is NaN (see
    the module docstring).
    """
    names = [x for x in (metrics or TABLE_METRICS) if x in history]
    finals = {x: final_values(history, x) for x in names}
    bad = diverged_members(history)
    rows = []
    for setting, idx in settings(members):
        row = dict(setting, n=len(idx), diverged=int(bad[idx].sum()))
        for x in names:
            s = stats.describe(finals[x][idx], confidence=confidence, bounds=bounds_of(x))
            row.update({f"{x}_{k}": float(getattr(s, k)) for k in ("mean", "std", "lo", "hi")})
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], summary: dict | None = None, metrics=MD_METRICS) -> str:
    """``rows`` (:func:`table_rows`) as a markdown table, cells ``mean ± std [lo, hi]``, then
    notes on n, the interval, divergence and (given ``summary``) the selected setting."""
    names = [x for x in metrics if rows and f"{x}_mean" in rows[0]]
    fields = _setting_fields(rows)
    marks = _marks(summary, fields)
    head = ["λ", *fields[1:], "n", "diverged", *(x.replace("_", " ") for x in names)]
    lines = ["| " + " | ".join(head + ["selected"] * bool(marks)) + " |"]
    lines.append("|" + "---:|" * len(head) + "---|" * bool(marks))
    for r in rows:
        cells = [f"{r[f]:.3g}" for f in fields] + [str(r["n"]), str(r["diverged"])]
        cells += [_cell(r, x) for x in names]
        cells += [marks.get(_key(r, fields), "")] * bool(marks)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + _notes(summary)) + "\n"


def _cell(row: dict, x: str) -> str:
    mean, std, lo, hi = (row[f"{x}_{k}"] for k in ("mean", "std", "lo", "hi"))
    if np.isnan(mean):
        return "—"
    if np.isnan(std):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {std:.2g} [{lo:.4g}, {hi:.4g}]"


def _setting_fields(rows: list[dict]) -> list[str]:
    """The setting's columns of table rows: strength, lr and any further axis."""
    return list(rows[0])[: list(rows[0]).index("n")] if rows else ["strength", "lr"]


def _marks(summary: dict | None, fields) -> dict:
    if not summary:
        return {}
    marks = {_key(t, fields): "tie" for t in summary.get("ties", [])}
    best = summary.get("best_setting")
    if best:
        marks[_key(best, fields)] = "best"
    return marks


def _notes(summary: dict | None) -> list[str]:
    notes = [
        "Final epoch; n = seeds × folds members per setting; mean ± std (ddof = 1) "
        "[95 % Student-t interval, mean ± t(0.975, n−1)·std/√n]. With n = 1 there is no std or "
        "interval: the mean alone is shown. — : no value (a diverged member, or no such data).",
        "Intervals are clipped to each quantity's range (accuracy and sparsity to [0, 1]; losses "
        "and norms to ≥ 0): the true mean lies in its range, so the clipped interval covers it "
        "whenever the Student-t interval does.",
        "A setting with a diverged member has no means (—) and cannot be selected.",
    ]
    if summary is None:
        return notes
    best, by = summary.get("best_setting"), summary.get("selected_by")
    how = "mean final validation loss" if by == "val_loss" else "mean final training loss"
    if by == "train_loss":
        how += " (no validation set: val_size = 0)"
    if best is None:
        return notes + [f"Selected by lowest {how}: no setting is selectable (all diverged)."]
    where = ", ".join(f"{'λ' if k == 'strength' else k} = {v:.3g}" for k, v in best.items()
                      if k not in ("mean", "n", "members"))  # fmt: skip
    notes.append(
        f"Selected by lowest {how}: {where} "
        f"(mean {best['mean']:.6g} over n = {best['n']}); the test set is never used to select."
    )
    if len(summary.get("ties", [])) > 1:
        notes.append(f"{len(summary['ties'])} settings tie at that mean (marked tie); the first "
                     "in grid order is reported as best.")  # fmt: skip
    return notes


def write_table(run_dir: str, rows: list[dict], summary: dict | None = None) -> list[str]:
    """Write ``table.csv`` (every column of ``rows``) and ``table.md`` into ``run_dir``."""
    csv_path, md_path = os.path.join(run_dir, "table.csv"), os.path.join(run_dir, "table.md")
    files.write_csv(csv_path, rows, columns=list(rows[0]) if rows else ["strength", "lr", "n"])
    files.atomic_write_bytes(md_path, markdown_table(rows, summary).encode())
    return [csv_path, md_path]


# --- summary --------------------------------------------------------------------------------------


def summarize(members: list[dict], history: dict, *, tie_rtol: float = 0.0) -> dict:
    """What summary.json holds: per member results, and the selected setting (module docstring).

    Returns a dict with

    * ``members``: per member its info plus ``final`` (last-epoch metrics), ``best_epoch`` and
      ``best_val_acc`` (1-based epoch of the highest validation accuracy; without a validation
      set, of the lowest training loss, and ``best_val_acc`` None), ``best_val_loss_epoch`` and
      ``best_val_loss`` (epoch of the lowest validation loss and that loss; None without one);
    * ``diverged``: ids of the members flagged diverged;
    * ``selected_by``: ``"val_loss"``, or ``"train_loss"`` when every val_loss is NaN;
    * ``best_setting``: ``{strength, lr, mean, n, members}``, the setting with the lowest mean
      over its n members of the final ``selected_by`` loss, or None when no setting has a finite
      mean (every one diverged);
    * ``ties``: ``[{strength, lr, mean}]``, every setting whose mean is within ``tie_rtol``
      (relative; 0: equal as floats) of the lowest, in grid order; the first is ``best_setting``;
    * ``excluded``: ``[{strength, lr, diverged}]``, settings with no finite mean;
    * ``best_member``: the member of ``best_setting`` with the lowest final ``selected_by`` loss
      (lowest id among equals), None with no best setting.
    """
    has_val = not np.all(np.isnan(np.asarray(history["val_loss"], float)))
    by = "val_loss" if has_val else "train_loss"
    per = [_member_summary(info, history, m, has_val) for m, info in enumerate(members)]
    groups, rows = settings(members), table_rows(members, history, metrics=(by,))
    means = [r[f"{by}_mean"] for r in rows]
    tied = stats.minima(means, rtol=tie_rtol)
    best_setting = best_member = None
    if tied:
        setting, idx = groups[tied[0]]
        best_setting = dict(setting, mean=means[tied[0]], n=len(idx), members=idx)
        best_member = idx[stats.argmin(final_values(history, by)[idx])]
    return {
        "members": per,
        "diverged": np.flatnonzero(diverged_members(history)).tolist(),
        "best_member": best_member,
        "selected_by": by,
        "best_setting": best_setting,
        "ties": [dict(groups[i][0], mean=means[i]) for i in tied],
        "excluded": [
            dict(groups[i][0], diverged=r["diverged"])
            for i, r in enumerate(rows)
            if not np.isfinite(r[f"{by}_mean"])
        ],
    }


def _member_summary(info: dict, history: dict, m: int, has_val: bool) -> dict:
    """One member's entry of :func:`summarize` (epochs 1-based; None when all values are NaN)."""
    val_acc, val_loss = history["val_acc"][m], history["val_loss"][m]
    acc = stats.argmax(val_acc if has_val else -np.asarray(history["train_loss"][m], float))
    loss = stats.argmin(val_loss) if has_val else None
    return dict(
        info,
        final={k: v[m, -1].item() for k, v in history.items() if "/" not in k},
        best_epoch=None if acc is None else acc + 1,
        best_val_acc=float(val_acc[acc]) if has_val and acc is not None else None,
        best_val_loss_epoch=None if loss is None else loss + 1,
        best_val_loss=None if loss is None else float(val_loss[loss]),
    )


# --- parameters ---------------------------------------------------------------------------------
