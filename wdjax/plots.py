"""Host side: figures made from result directories only (never from live state).

``sweep_figures(run_dir)`` writes ``accuracy_vs_strength.png`` (final test accuracy and loss
against λ, one line per learning rate, mean ± std over seeds and folds as a band) and
``curves.png`` (validation accuracy and training loss per epoch, one line per member).
"""

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from wdjax import results  # noqa: E402


def final_rows(rows: list[dict]) -> list[dict]:
    """The last epoch's row of each member."""
    last = {}
    for r in rows:
        if r["member"] not in last or r["epoch"] > last[r["member"]]["epoch"]:
            last[r["member"]] = r
    return [last[m] for m in sorted(last)]


def mean_std_by(rows: list[dict], x: str, y: str, group: str | None = None):
    """``{group_value: (xs, mean, std, count)}`` of ``y`` over rows sharing (group, x)."""
    acc = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[r[group] if group else None][r[x]].append(r[y])
    out = {}
    for g, by_x in acc.items():
        xs = np.array(sorted(by_x))
        vals = [np.asarray(by_x[v], float) for v in xs]
        out[g] = (
            xs,
            np.array([np.nanmean(v) for v in vals]),
            np.array([np.nanstd(v) for v in vals]),
            np.array([len(v) for v in vals]),
        )
    return out


def band(ax, xs, mean, std, label):
    (line,) = ax.plot(xs, mean, marker="o", ms=3, label=label)
    ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def sweep_figures(run_dir: str) -> list[str]:
    """Write the standard figures of a sweep run directory; returns their paths."""
    rows = results.read_csv(os.path.join(run_dir, "metrics.csv"))
    fin = final_rows(rows)
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    positive = [r for r in fin if r["strength"] > 0]
    log_x = len(positive) == len(fin) or len(positive) >= 2
    for ax, metric in zip(axes, ("test_acc", "test_loss"), strict=True):
        for lr, (xs, m, s, _) in sorted(mean_std_by(fin, "strength", metric, "lr").items()):
            if log_x:
                keep = xs > 0
                xs, m, s = xs[keep], m[keep], s[keep]
            band(ax, xs, m, s, f"lr={lr:g}")
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel("strength λ")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"final {os.path.basename(os.path.normpath(run_dir))}: mean ± std over seeds")
    paths.append(save(fig, os.path.join(run_dir, "accuracy_vs_strength.png")))

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    by_member = defaultdict(list)
    for r in rows:
        by_member[r["member"]].append(r)
    for rs in by_member.values():
        rs = sorted(rs, key=lambda r: r["epoch"])
        ep = [r["epoch"] for r in rs]
        label = f"λ={rs[0]['strength']:.2g}" if len(by_member) <= 10 else None
        axes[0].plot(ep, [r["val_acc"] for r in rs], lw=1, alpha=0.7, label=label)
        axes[1].plot(ep, [r["train_loss"] for r in rs], lw=1, alpha=0.7)
    axes[0].set_ylabel("validation accuracy")
    axes[1].set_ylabel("training loss")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if len(by_member) <= 10:
        axes[0].legend(fontsize=8)
    paths.append(save(fig, os.path.join(run_dir, "curves.png")))
    return paths


def save(fig, path: str) -> str:
    """Save atomically (render to a temp name, then os.replace)."""
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.path.basename(path)}")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path
