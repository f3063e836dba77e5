"""Host side: figures made from result directories only (never from live state).

``sweep_figures(run_dir)`` reads ``metrics.csv`` and ``config.json`` and writes

* ``accuracy_vs_strength.png``: final test accuracy and loss against λ, one line per learning
  rate, the mean over seeds and folds with its 95 % Student-t interval as a band (none with one
  seed; diverged members, which wdjax.analysis.tables counts as missing, are left out); λ = 0,
  which has no place on a log axis, is a dashed horizontal line in its learning rate's colour;
* ``curves.png``: validation loss, validation accuracy and training loss per epoch, each line the
  mean over one (λ, lr) setting's seeds and folds (96 members = 3 seeds × 32 λ give 32 lines),
  coloured by λ on a log colour scale with a colour bar; λ = 0 is black (said in the legend);
  with several learning rates the line style tells them apart.

Every title names the dataset, model, optimizer, regularizer and learning rate(s) from
``config.json`` (the folder's name when there is none). Files are written atomically.
"""

import io
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from wdjax import files
from wdjax.analysis import stats

CURVES = (("val_loss", "validation loss"), ("val_acc", "validation accuracy"),
          ("train_loss", "training loss"))  # fmt: skip
LINESTYLES = ("-", "--", ":", "-.")


def final_rows(rows: list[dict]) -> list[dict]:
    """The last epoch's row of each member."""
    last = {}
    for r in rows:
        if r["member"] not in last or r["epoch"] > last[r["member"]]["epoch"]:
            last[r["member"]] = r
    return [last[m] for m in sorted(last)]


def mean_std_by(rows: list[dict], x: str, y: str, group: str | None = None):
    """``{group_value: (xs, mean, std, count)}`` of ``y`` over rows sharing (group, x).

    Non-finite values (diverged members) are left out; std has ddof = 1 (NaN with one value),
    ``count`` is the number of finite values.
    """
    acc = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[r[group] if group else None][r[x]].append(r[y])
    out = {}
    for g, by_x in acc.items():
        xs = np.array(sorted(by_x))
        vals = [np.asarray(by_x[v], float) for v in xs]
        s = [stats.describe(v[np.isfinite(v)]) for v in vals]
        out[g] = (xs, *(np.array([getattr(d, k) for d in s], float) for k in ("mean", "std", "n")))
    return out


def band(ax, xs, samples, label=None, *, confidence: float = 0.95, **line_kw):
    """The mean of ``samples [replicates, len(xs)]`` as a line with markers, and its Student-t
    interval (``confidence``, n − 1 degrees of freedom: :func:`wdjax.analysis.stats.describe`)
    as a band in its colour; returns the line. With one replicate there is no band."""
    s = stats.describe(np.asarray(samples, float), axis=0, confidence=confidence)
    return fill(ax, xs, s.mean, s.lo, s.hi, label, **line_kw)


def fill(ax, xs, mean, lo, hi, label=None, **line_kw):
    """A line with markers at ``mean`` and a band from ``lo`` to ``hi`` in its colour (NaN
    bounds leave a gap); returns the line."""
    (line,) = ax.plot(xs, mean, **{"marker": "o", "ms": 3, "label": label, **line_kw})
    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
    return line


def read_config(run_dir: str) -> dict | None:
    """The run's ``config.json`` as a dict, None when absent."""
    path = os.path.join(run_dir, "config.json")
    return files.read_json(path) if os.path.exists(path) else None


def figure_title(config: dict | None, what: str, run_dir: str = "") -> str:
    """``what`` and the run: dataset, model, optimizer, reg, lr(s), seeds × folds."""
    if not config:
        return f"{what}: {os.path.basename(os.path.normpath(run_dir))}"
    lrs = config.get("lrs") or []
    lr = f"lr={lrs[0]:g}" if len(lrs) == 1 else "lr ∈ {" + ", ".join(f"{v:g}" for v in lrs) + "}"
    seeds, folds = config.get("seeds", 1), config.get("folds", 1)
    reps = f"{seeds} seed{'s' * (seeds != 1)} × {folds} fold{'s' * (folds != 1)}"
    return (f"{what}\n{config.get('dataset')} · {config.get('model')} · "
            f"{config.get('optimizer')} · reg={config.get('reg')} · {lr} · {reps}")  # fmt: skip


def strength_norm(strengths) -> LogNorm | None:
    """A log colour scale over the positive λ (a decade wide around a single one); None if none."""
    pos = np.array([s for s in strengths if s > 0], float)
    if pos.size == 0:
        return None
    lo, hi = pos.min(), pos.max()
    return LogNorm(lo / 10**0.5, hi * 10**0.5) if lo == hi else LogNorm(lo, hi)


def setting_curves(rows: list[dict], metric: str) -> dict:
    """``{(strength, lr): (epochs, mean)}``: ``metric`` per epoch, mean over the setting's
    members of their finite values (NaN where none is finite); a member counts until the epoch
    it is flagged diverged on (frozen since, its values are not its training's)."""
    acc = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if not r.get("diverged"):
            acc[(r["strength"], r["lr"])][r["epoch"]].append(r[metric])
    out = {}
    for key, by_epoch in sorted(acc.items()):
        ep = np.array(sorted(by_epoch))
        vals = [np.asarray(by_epoch[e], float) for e in ep]
        out[key] = (ep, np.array([v[np.isfinite(v)].mean() if np.isfinite(v).any() else np.nan
                                  for v in vals]))  # fmt: skip
    return out


def strength_figure(rows: list[dict], config: dict | None, run_dir: str = ""):
    """Final test accuracy and loss against λ (module docstring), diverged members left out."""
    fin = [r for r in final_rows(rows) if not r.get("diverged")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    positive = [r for r in fin if r["strength"] > 0]
    log_x = len(positive) == len(fin) or len(positive) >= 2
    for ax, metric in zip(axes, ("test_acc", "test_loss"), strict=True):
        for lr, (xs, m, s, n) in sorted(mean_std_by(fin, "strength", metric, "lr").items()):
            keep = xs > 0 if log_x else np.ones(len(xs), bool)
            half = np.array([stats.half_width(si, int(ni)) for si, ni in zip(s, n, strict=True)])
            line = fill(ax, xs[keep], m[keep], (m - half)[keep], (m + half)[keep], f"lr={lr:g}")
            if not keep.all():
                ax.axhline(m[~keep][0], color=line.get_color(), ls="--", label=f"λ=0, lr={lr:g}")
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel("strength λ")
        ax.set_ylabel(f"final {metric.replace('_', ' ')}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    what = "final test metrics, mean and 95 % t-interval over seeds"
    fig.suptitle(figure_title(config, what, run_dir))
    return fig


def curves_figure(rows: list[dict], config: dict | None, run_dir: str = ""):
    """Per-epoch curves, one line per setting, coloured by λ with a colour bar (module doc)."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(15, 4.5), layout="constrained")
    norm, cmap = strength_norm(r["strength"] for r in rows), plt.get_cmap("viridis")
    lrs = sorted({r["lr"] for r in rows})
    for ax, (metric, label) in zip(axes, CURVES, strict=True):
        for (strength, lr), (ep, mean) in setting_curves(rows, metric).items():
            color = cmap(norm(strength)) if strength > 0 else "black"
            ax.plot(ep, mean, lw=1.2, alpha=0.8, color=color,
                    ls=LINESTYLES[lrs.index(lr) % len(LINESTYLES)])  # fmt: skip
        ax.set(xlabel="epoch", ylabel=f"{label} (mean over seeds)")
        ax.grid(alpha=0.3)
    axes[-1].set_yscale("log")
    handles = [plt.Line2D([], [], color="black", label="λ = 0 (off the colour scale)")] * any(
        r["strength"] == 0 for r in rows
    )
    if len(lrs) > 1:
        handles += [plt.Line2D([], [], color="gray", ls=LINESTYLES[i % len(LINESTYLES)],
                               label=f"lr={lr:g}") for i, lr in enumerate(lrs)]  # fmt: skip
    if handles:
        axes[0].legend(handles=handles, fontsize=8)
    if norm is not None:
        fig.colorbar(ScalarMappable(norm, cmap), ax=list(axes), label="strength λ (log scale)")
    fig.suptitle(figure_title(config, "learning curves per (λ, lr) setting", run_dir))
    return fig


def sweep_figures(run_dir: str) -> list[str]:
    """Write the standard figures of a sweep run directory; returns their paths."""
    rows = files.read_csv(os.path.join(run_dir, "metrics.csv"))
    config = read_config(run_dir)
    figures = {"accuracy_vs_strength.png": strength_figure, "curves.png": curves_figure}
    return [save(f(rows, config, run_dir), os.path.join(run_dir, n)) for n, f in figures.items()]


def save(fig, path: str) -> str:
    """Lay out ``fig`` (tight, unless it has a layout engine), render it as PNG, write it
    atomically (:func:`wdjax.files.atomic_write_bytes`), close it; returns ``path``."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    files.atomic_write_bytes(path, buf.getvalue())
    return path
