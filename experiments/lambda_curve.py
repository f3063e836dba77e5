"""Test loss against λ for l1, l2, wd and l1_prox: where is the U, and how does the best λ move
with the training-set size and with label noise?

Claim: explicit regularization gives a U-shaped test loss in λ, and smaller data and noisier
labels want more of it (Krogh & Hertz 1992, "A simple weight decay can improve generalization";
Zhang et al. 2017, "Understanding deep learning requires rethinking generalization").

Command: ``python experiments/lambda_curve.py`` (Fashion-MNIST; ``--smoke``: digits, seconds).
Runtime: 24 minutes on the 2-core machine. Interrupted, the same command resumes by arm.

Verdict (last full run): reproduced for the U and for n; contradicted in part for label noise.

Design: :func:`get_config`; its ``RULES`` appear in the write-up (:func:`write_up`). Same programs
and seeds as before; ``val_rise``: final − each replicate's own minimum (was ``…_at_mean_min``).
"""

import dataclasses

import numpy as np

from wdjax import schedules, study
from wdjax.analysis import plots
from wdjax.study import prose, replicates

REGS = ("l1", "l2", "wd", "l1_prox")
METRICS = ("val_loss", "test_loss", "test_acc", "train_loss")
RANGES = {"l1": (1e-6, 1e-2), "l2": (3e-5, 3e-1), "wd": (1e-2, 1e2), "l1_prox": (1e-5, 1e-1)}
SHRINK_UNITS = ("wd", "l1_prox")  # λ·Σ η_t means the same thing across schedules only for these
RULES = dict(
    selection="λ with the lowest validation loss averaged over replicates (never the test set); "
    "also each replicate's own choice on its own validation loss (nested), the test-oracle λ for "
    "reference, and Breiman's one-SE set (mean validation loss within one standard error of the "
    "best)",
    interval="95 % Student-t over replicates (n - 1 dof); differences against λ = 0 of the same "
    "sweep, paired by replicate",
    verdict="lower/higher when the paired interval excludes 0, else no detectable difference",
    validation="10,000 images from the rest of the 60,000 at every n (the same selection noise "
    "at every n); with noise, validation labels are flipped too and the test set is clean",
    shrink="λ·Σ_t η_t: total e-folds of decay (wd), total soft-threshold distance (l1_prox)",
    u="a U: the chosen λ inside the grid, lower test loss than λ = 0, the largest λ's above it",
    size="per regularizer, clean labels: the chosen λ never grows with n and falls overall",
    noise="per n and regularizer: a larger λ chosen with noise; a lower mean Δ test loss at it",
)


def grids(per: int) -> dict:
    """λ = 0 and ``per`` log-spaced λ per regularizer, from no effect to collapse."""
    return {r: (0.0, *np.geomspace(lo, hi, per).tolist()) for r, (lo, hi) in RANGES.items()}


def get_config() -> dict:
    """The full study: 13 λ (3 per decade), 6 conditions (epochs / evaluation period per n)."""
    sizes = [(1000, 120, 20), (6000, 40, 8), (50000, 12, 3)]
    conditions = [dict(train_size=n, label_noise=p, epochs=e, eval_every=k)
                  for n, e, k in sizes for p in (0.0, 0.2)]  # fmt: skip
    return dict(dataset="fashion_mnist", schedule="cosine", mask="hidden", val_size=10000,
                grids=grids(13), conditions=conditions, replicates=5, selected_by="val_loss",
                rules=RULES)  # fmt: skip


def smoke(config: dict) -> dict:
    """The tiny version: digits, 2 λ, one noisy condition of 2 epochs, 2 replicates."""
    cond = dict(train_size=600, label_noise=0.2, epochs=2, eval_every=1)
    return dict(dataset="digits", val_size=400, grids=grids(2), conditions=[cond], replicates=2)


def label(cond: dict) -> str:
    return f"n={cond['train_size']}, noise={cond['label_noise']:.0%}"


def arm(cond: dict, reg: str) -> str:
    return f"n{cond['train_size']}_noise{cond['label_noise']:g}_{reg}"


def lr_sum(config, train_size: int) -> tuple[int, float]:
    """(steps, Σ_t η_t) of the run: the engine takes ``train_size // batch_size`` steps an epoch
    (the last partial batch dropped) and η_t = lr · schedule(t)."""
    spe = train_size // config.batch_size
    eta = schedules.make(config.schedule, spe, config.epochs)
    steps = spe * config.epochs
    return steps, float(config.lrs[0] * np.sum(np.asarray(eta(np.arange(steps)), float)))


def baseline_rise(runs) -> dict:
    """λ = 0's (setting 0) validation minimum and the rise after it (:func:`study.rise`)."""
    _, c = replicates.curves(runs, "val_loss")  # [R, settings, epochs]
    r = study.rise(c[:, 0])
    return dict(val_min_epoch=r["min_epoch"], epochs=r["epochs"], val_rise=r["rise"],
                val_rise_at_mean_min=r["rise_at_mean_min"])  # fmt: skip


def reg_summary(runs, grid, lam_sum: float, reg: str) -> dict:
    """One regularizer's sweep over replicates: rows per λ, the λ chosen on validation loss
    (averaged and per replicate: nested), the test oracle and the one-SE set."""
    rows = replicates.table(runs, METRICS, baseline={"strength": 0.0})
    (_, val), (_, loss), (_, acc) = (replicates.setting_values(runs, m)
                                     for m in ("val_loss", "test_loss", "test_acc"))  # fmt: skip
    s = study.select(val, loss, grid)
    a = study.select(val, acc, grid, higher_is_better=True)
    i = s["averaged"]
    lam = float(grid[i])
    return dict(best_strength=lam, best_index=i, rows=rows, per_replicate_best=s["per_replicate"],
                nested_test_loss=s["nested"], nested_test_loss_diff=s["nested_diff"],
                nested_test_acc=a["nested"], nested_test_acc_diff=a["nested_diff"],
                oracle_strength=s["oracle_strength"], one_se=s["one_se"],
                shrink=lam * lam_sum if reg in SHRINK_UNITS else None)  # fmt: skip


def table_row(cond: dict, reg: str, r: dict) -> list:
    b = r["rows"][r["best_index"]]
    shrink = "—" if r["shrink"] is None else f"{r['shrink']:.3g}"
    reps = ", ".join("—" if x is None else f"{x:.2g}" for x in r["per_replicate_best"])
    dl = ("λ = 0 chosen" if r["best_index"] == 0
          else study.verdict((b["test_loss_diff_lo"], b["test_loss_diff_hi"])))  # fmt: skip
    se = r["one_se"]
    one_se = f"{min(se):.2g} … {max(se):.2g} ({len(se)})" if se else "—"
    return [label(cond), reg, f"{r['best_strength']:.3g}", shrink, reps, one_se,
            study.ci(b, "test_loss"), study.ci(b, "test_loss_diff", 4), dl,
            study.fmt_ci(*r["nested_test_loss"]), study.fmt_ci(*r["nested_test_loss_diff"], 4),
            study.ci(b, "test_acc", 4), study.ci(b, "test_acc_diff", 4)]  # fmt: skip


COLUMNS = ["condition", "reg", "best λ (val loss)", "shrink λ·Ση", "best λ per replicate",
           "λ within 1 SE (count)", "test loss at best λ", "Δ test loss vs λ=0 (paired)",
           "test loss vs λ=0", "nested test loss (own λ per replicate)", "nested Δ vs λ=0",
           "test acc at best λ", "Δ test acc vs λ=0 (paired)"]  # fmt: skip


def run(ctx: study.Context) -> study.Report:
    """Every condition × regularizer × replicate (resumable), then their summaries."""
    k = ctx.knobs
    cfgs = [dataclasses.replace(ctx.config, **c) for c in k["conditions"]]
    arms = {arm(c, reg): dataclasses.replace(cfg, reg=reg, strengths=tuple(k["grids"][reg]))
            for c, cfg in zip(k["conditions"], cfgs, strict=True) for reg in REGS}  # fmt: skip
    results = ctx.sweeps(arms)
    conditions, rows = [], []
    for cond, cfg in zip(k["conditions"], cfgs, strict=True):
        steps, lam_sum = lr_sum(cfg, cond["train_size"])
        out = dict(cond, steps=steps, lr_sum=lam_sum, regs={})
        for reg in REGS:
            runs = results[arm(cond, reg)]
            out["regs"][reg] = reg_summary(runs, k["grids"][reg], lam_sum, reg)
            if reg == "wd":
                out["baseline"] = baseline_rise(runs)
            rows.append(table_row(cond, reg, out["regs"][reg]))
        conditions.append(out)
    summary = dict(
        conditions=conditions,
        best_strength={label(c): {r: c["regs"][r]["best_strength"] for r in REGS}
                       for c in conditions},
        nested_test_loss={label(c): {r: c["regs"][r]["nested_test_loss"] for r in REGS}
                          for c in conditions},
        strengths={r: list(g) for r, g in k["grids"].items()},
    )  # fmt: skip
    return study.Report(summary, COLUMNS, rows, figure(summary))


def figure(summary: dict):
    """Test loss and accuracy against λ: a column per training size, rows (loss, accuracy) ×
    (clean, noisy); bands are 95 % t-intervals over replicates, dotted lines λ = 0, stars the
    λ chosen by validation loss."""
    plt, conditions = study.pyplot(), summary["conditions"]
    sizes = sorted({c["train_size"] for c in conditions})
    noises = sorted({c["label_noise"] for c in conditions})
    fig, axes = plt.subplots(2 * len(noises), len(sizes), figsize=(5 * len(sizes), 3.2 * 2 *
                             len(noises)), squeeze=False)  # fmt: skip
    for c in conditions:
        col, row0 = sizes.index(c["train_size"]), 2 * noises.index(c["label_noise"])
        for reg, color in zip(REGS, ("C0", "C1", "C2", "C3"), strict=True):
            r = c["regs"][reg]
            lam = np.array([x["strength"] for x in r["rows"]])
            for dr, m in enumerate(("test_loss", "test_acc")):
                ax = axes[row0 + dr, col]
                mean, lo, hi = (np.array([x[f"{m}_{s}"] for x in r["rows"]])
                                for s in ("mean", "lo", "hi"))  # fmt: skip
                plots.fill(ax, lam[1:], mean[1:], lo[1:], hi[1:], reg, color=color, ms=2, lw=1)
                ax.axhline(mean[0], color=color, ls=":", lw=0.8)
                i = r["best_index"]
                if i > 0:
                    ax.plot(lam[i], mean[i], color=color, marker="*", ms=10)
                ax.set_xscale("log")
                ax.set_title(f"{label(c)}: test {'loss' if m == 'test_loss' else 'accuracy'}",
                             fontsize=9)  # fmt: skip
                ax.grid(alpha=0.3)
                if m == "test_loss":
                    ax.set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel("λ")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("mean over replicates, bands: 95 % Student-t intervals; dotted: λ = 0; "
                 "stars: λ chosen by validation loss")  # fmt: skip
    fig.tight_layout()
    return fig


def _u(r: dict) -> bool:
    i, rows = r["best_index"], r["rows"]
    return (0 < i < len(rows) - 1 and rows[i]["test_loss_diff_hi"] < 0  # "lower" (study.verdict)
            and rows[-1]["test_loss_mean"] > rows[i]["test_loss_mean"])  # fmt: skip


def _size(cs: list) -> str:
    clean = sorted((c for c in cs if c["label_noise"] == 0), key=lambda c: c["train_size"])
    if len(clean) < 2:
        return "**Size: not tested** (one training size with clean labels)."
    lam = {g: [c["regs"][g]["best_strength"] for c in clean] for g in REGS}
    ok = {g: v[0] > v[-1] and v == sorted(v, reverse=True) for g, v in lam.items()}
    wd = prose.chain(prose.num(c["regs"]["wd"]["shrink"]) for c in clean)
    return (f"**Size: {prose.says(ok)}.** The chosen λ at n = "
            f"{prose.chain(format(c['train_size'], ',') for c in clean)}: "
            + "; ".join(f"{g} {prose.chain(map(prose.num, v))}" for g, v in lam.items())
            + f"; wd's total decay λ·Σηₜ {wd} e-folds.")  # fmt: skip


def _noise(cs: list) -> str:
    by = {n: {c["label_noise"]: c for c in cs if c["train_size"] == n}
          for n in sorted({c["train_size"] for c in cs})}  # fmt: skip
    pairs = {(f"{g} at n = {n:,}", g): (d[min(d)], d[max(d)])
             for n, d in by.items() if len(d) > 1 for g in REGS}  # fmt: skip
    if not pairs:
        return "**Noise: not tested** (no training size both with and without label noise)."
    lam = {k: [c["regs"][g]["best_strength"] for c in ab] for (k, g), ab in pairs.items()}
    dl = {k: [c["regs"][g]["rows"][c["regs"][g]["best_index"]]["test_loss_diff"] for c in ab]
          for (k, g), ab in pairs.items()}  # fmt: skip  # mean Δ test loss (vs λ = 0) at the λ
    each = "; ".join(f"{k}: {prose.chain(map(prose.num, lam[k]))} "
                     f"({prose.chain(prose.num(x, 4) for x in dl[k])})" for k in lam)  # fmt: skip
    return (f"**Noise: a larger λ: {prose.says({k: b > a for k, (a, b) in lam.items()})}; a larger "
            f"gain: {prose.says({k: b < a for k, (a, b) in dl.items()})}.** Clean → noisy labels, "
            f"the chosen λ (mean Δ test loss against λ = 0): {each}.")  # fmt: skip


def write_up(summary: dict) -> str:
    """What it shows: ``RULES`` u, size and noise applied to ``summary``, numbers from it."""
    cs = summary["conditions"]
    u = prose.says({f"{g} at {label(c)}": _u(c["regs"][g]) for c in cs for g in REGS})
    low = "; ".join(f"{label(c)}: epoch {b['val_min_epoch']} of {b['epochs']}" + (
        f", then up by {prose.ci(*b['val_rise'], 3)}" if b["val_min_epoch"] < b["epochs"] else "")
        for c in cs for b in [c["baseline"]])  # fmt: skip
    return "\n\n".join([f"**The U: {u}** (the table: each chosen λ, its Δ test loss).", _size(cs),
                         _noise(cs), f"**Caveat.** λ = 0's validation loss is lowest at {low}; at "
                         "the last epoch, a zero gain holds for that budget only."])  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
