"""Test loss against λ for wd and l2: where is the U, and how does the best λ move with the
training-set size and with label noise, once the λ = 0 baseline overfits or is early-stopped?

Claim: explicit regularization gives a U-shaped test loss in λ, and smaller data and noisier
labels want more of it (Krogh & Hertz 1992, "A simple weight decay can improve generalization";
Zhang et al. 2017, "Understanding deep learning requires rethinking generalization").

Command: ``python experiments/lambda_curve.py`` (Fashion-MNIST; ``--smoke``: digits, seconds).
Runtime: about 40 minutes on the shared 2-core machine (pilot estimate). It resumes by arm.

Verdict (last full run): not yet rerun with this design.

Design: :func:`get_config`; ``RULES`` appear in the write-up. Changed from the first version
(issue 24): budgets where λ = 0 overfits, early stopping beside the final epoch, constant × cosine
at n = 6,000 and 50,000, λ chosen on noisy and on clean validation labels, wd and l2 only (they
carry the claims; l1 and l1_prox are study 3's), 2 λ per decade, 4 replicates (the 45-minute cap).
"""

import dataclasses

import numpy as np

from wdjax import schedules, study
from wdjax.analysis import plots
from wdjax.study import replicates

REGS = ("wd", "l2")
MODES = ("final", "early")  # the last epoch; each member at its own best validation epoch
METRICS = ("val_loss", "test_loss", "test_acc", "train_loss")
RANGES = {"wd": (1e-2, 10**1.5), "l2": (3e-5, 3e-5 * 10**3.5)}
RULES = dict(
    selection="λ with the lowest validation loss averaged over replicates (never the test set); "
    "also each replicate's own choice on its own validation loss (nested), the test-oracle λ for "
    "reference, and Breiman's one-SE set (mean validation loss within one standard error of the "
    "best): where it holds 3 or more λ the curve is called flat and the text speaks of the set",
    interval="95 % Student-t over replicates (n - 1 dof); differences against λ = 0 of the same "
    "sweep, paired by replicate; a rise is bounded at 0",
    verdict="lower/higher when the paired interval excludes 0, else no detectable difference",
    stop="final: the last epoch; early: each member (replicate, λ) at its own lowest validation "
    "loss among the evaluated epochs, its test metrics there",
    validation="10,000 images from the rest of the 60,000 at every n; with noise the library "
    "flips validation labels too: 'noisy val' selects and early-stops on them, 'clean val' on the "
    "same images with their true labels (the same training run: same bits); the test set is clean",
    budget="epochs per n fixed from a 1-replicate pilot so that λ = 0's validation loss has its "
    "minimum before the last epoch under the constant schedule (and under cosine at n = 1,000)",
    u="per condition, regularizer and stop: the chosen λ inside the grid, its paired Δ test loss "
    "below 0 (interval), the largest λ's mean test loss above the chosen one's",
    size="per regularizer, stop and schedule, clean labels: the chosen λ never grows with n and "
    "falls overall",
    gain="per clean condition and regularizer, early-stopped: the chosen λ lowers test loss "
    "against the early-stopped λ = 0 (paired interval below 0): a gain that is not the budget's",
    budget_effect="per clean condition where λ = 0's rise interval is above 0, per regularizer: "
    "the mean Δ test loss at the chosen λ is lower at the final epoch than early-stopped",
    noise="per n, regularizer and validation labels (noisy, clean), final epoch: a larger λ "
    "chosen with noise than without; a larger gain with noise on test accuracy (mean Δ acc vs "
    "λ = 0 higher) and on test loss (mean Δ loss lower)",
)


def grids(per: int) -> dict:
    """λ = 0 and ``per`` log-spaced λ per regularizer, from no effect to collapse."""
    return {r: (0.0, *np.geomspace(lo, hi, per).tolist()) for r, (lo, hi) in RANGES.items()}


def cond(n, noise, schedule, epochs, every, val="noisy") -> dict:
    return dict(train_size=n, label_noise=noise, schedule=schedule, epochs=epochs,
                eval_every=every, val_labels=val if noise else "clean")  # fmt: skip


def get_config() -> dict:
    """The full study: 8 λ (2 per decade) + λ = 0, 9 conditions, 4 replicates."""
    conditions = [cond(1000, 0.0, "cosine", 60, 3), cond(1000, 0.2, "cosine", 60, 3),
                  cond(1000, 0.2, "cosine", 60, 3, "clean"),
                  cond(6000, 0.0, "cosine", 40, 2), cond(6000, 0.0, "constant", 40, 2),
                  cond(6000, 0.2, "cosine", 40, 2), cond(6000, 0.2, "cosine", 40, 2, "clean"),
                  cond(50000, 0.0, "cosine", 24, 2), cond(50000, 0.0, "constant", 24, 2)]  # fmt: skip
    return dict(dataset="fashion_mnist", mask="hidden", val_size=10000, grids=grids(8),
                conditions=conditions, replicates=4, selected_by="val_loss", rules=RULES,
                previous=PREVIOUS)  # fmt: skip


PREVIOUS = dict(  # the first version's full run (README, 2026-12): the chosen λ at n = 1,000 /
    wd=[2.15, 0.464, 0.0], l2=[0.0139, 0.00139, 0.0],  # 6,000 / 50,000, cosine, 120/40/12 epochs
    epochs=[120, 40, 12], verdict="U and size reproduced; noise contradicted in part")


def smoke(config: dict) -> dict:
    """The tiny version: digits, 2 λ, one noisy condition of 2 epochs with its clean-validation
    twin, 2 replicates."""
    conds = [cond(600, 0.2, "cosine", 2, 1), cond(600, 0.2, "cosine", 2, 1, "clean")]
    return dict(dataset="digits", val_size=400, grids=grids(2), conditions=conds, replicates=2)


def label(c: dict) -> str:
    val = ", clean val" if c["val_labels"] == "clean" and c["label_noise"] else ""
    return f"n={c['train_size']}, noise={c['label_noise']:.0%}, {c['schedule']}{val}"


def arm(c: dict, reg: str) -> str:
    val = "_cleanval" if c["val_labels"] == "clean" and c["label_noise"] else ""
    return f"n{c['train_size']}_noise{c['label_noise']:g}_{c['schedule']}{val}_{reg}"


def clean_validation(config):
    """The replicate's dataset with its validation labels as they were before the noise: the
    same images, training labels and test set (``label_noise`` draws the same permutation)."""
    noisy = study.load_data(config)
    return noisy._replace(y_val=study.load_data(dataclasses.replace(config, label_noise=0)).y_val)


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


def stopped(runs) -> dict:
    """``{mode: {metric: [replicates, settings]}}``: the last epoch's values, and each member's
    at its own lowest validation loss (first such epoch; ``epoch`` 1-based; NaN if diverged)."""
    curves = {m: replicates.curves(runs, m)[1] for m in METRICS}
    v = np.where(np.isfinite(curves["val_loss"]), curves["val_loss"], np.inf)
    e, ok = v.argmin(axis=-1), np.isfinite(v.min(axis=-1))
    early = {m: np.where(ok, np.take_along_axis(c, e[..., None], -1)[..., 0], np.nan)
             for m, c in curves.items()}  # fmt: skip
    early["epoch"] = np.where(ok, e + 1.0, np.nan)
    return dict(final={m: c[..., -1] for m, c in curves.items()}, early=early)


def choice(values: dict, grid) -> dict:
    """One regularizer × stop: rows per λ (each metric over replicates, paired Δ against λ = 0),
    the λ chosen on validation loss (averaged and nested), the test oracle and the one-SE set."""
    rows = []
    for j, lam in enumerate(grid):
        row = dict(strength=float(lam), n=int(values["val_loss"].shape[0]))
        for m, v in values.items():
            row.update(replicates.summarize(m, v[:, j], None if m == "epoch" else v[:, 0]))
        rows.append(row)
    s = study.select(values["val_loss"], values["test_loss"], grid)
    a = study.select(values["val_loss"], values["test_acc"], grid, higher_is_better=True)
    return dict(best_strength=float(grid[s["averaged"]]), best_index=s["averaged"], rows=rows,
                per_replicate_best=s["per_replicate"], nested_test_loss=s["nested"],
                nested_test_loss_diff=s["nested_diff"], nested_test_acc=a["nested"],
                nested_test_acc_diff=a["nested_diff"], oracle_strength=s["oracle_strength"],
                one_se=s["one_se"])  # fmt: skip


def reg_summary(runs, grid, lam_sum: float, reg: str) -> dict:
    """A regularizer's sweep: the final epoch's :func:`choice` at the top level, the
    early-stopped one under ``early``, and wd's total decay λ·Σηₜ at the chosen λ (``shrink``)."""
    out = {mode: choice(v, grid) for mode, v in stopped(runs).items()}
    lam = out["final"]["best_strength"]
    return dict(out["final"], early=out["early"], shrink=lam * lam_sum if reg == "wd" else None)


def table_row(c: dict, reg: str, r: dict, mode: str) -> list:
    b = r["rows"][r["best_index"]]
    reps = ", ".join("—" if x is None else f"{x:.2g}" for x in r["per_replicate_best"])
    dl = ("λ = 0 chosen" if r["best_index"] == 0
          else study.verdict((b["test_loss_diff_lo"], b["test_loss_diff_hi"])))  # fmt: skip
    se = r["one_se"]
    stop = study.ci(b, "epoch", 1) if mode == "early" else f"{c['epochs']}"
    return [label(c), reg, mode, stop, f"{r['best_strength']:.3g}", reps,
            f"{min(se):.2g} … {max(se):.2g} ({len(se)})" if se else "—",
            study.ci(b, "test_loss"), study.ci(b, "test_loss_diff", 4), dl,
            study.fmt_ci(*r["nested_test_loss_diff"], 4), study.ci(b, "test_acc", 4),
            study.ci(b, "test_acc_diff", 4), study.fmt_ci(*r["nested_test_acc_diff"], 4)]  # fmt: skip


COLUMNS = ["condition", "reg", "stop", "epoch at best λ", "best λ (val loss)",
           "best λ per replicate", "λ within 1 SE (count)", "test loss at best λ",
           "Δ test loss vs λ=0 (paired)", "test loss vs λ=0", "nested Δ test loss (own λ)",
           "test acc at best λ", "Δ test acc vs λ=0 (paired)", "nested Δ test acc"]  # fmt: skip


def run(ctx: study.Context) -> study.Report:
    """Every condition × regularizer × replicate (resumable), then their summaries."""
    k, conds = ctx.knobs, ctx.knobs["conditions"]
    cfgs = [dataclasses.replace(ctx.config, **{x: v for x, v in c.items() if x != "val_labels"})
            for c in conds]  # fmt: skip
    arms = {arm(c, reg): dataclasses.replace(cfg, reg=reg, strengths=tuple(k["grids"][reg]))
            for c, cfg in zip(conds, cfgs, strict=True) for reg in REGS}  # fmt: skip
    clean = {a for c in conds for reg in REGS if "cleanval" in (a := arm(c, reg))}
    results = ctx.sweeps({a: v for a, v in arms.items() if a not in clean})
    results.update(ctx.sweeps({a: arms[a] for a in clean}, data=clean_validation) if clean else {})
    conditions, rows = [], []
    for c, cfg in zip(conds, cfgs, strict=True):
        steps, lam_sum = lr_sum(cfg, c["train_size"])
        out = dict(c, label=label(c), steps=steps, lr_sum=lam_sum, regs={})
        for reg in REGS:
            runs = results[arm(c, reg)]
            out["regs"][reg] = r = reg_summary(runs, k["grids"][reg], lam_sum, reg)
            out.setdefault("baseline", baseline_rise(runs))  # λ = 0 of the first regularizer
            rows += [table_row(c, reg, r, "final"), table_row(c, reg, r["early"], "early")]
        conditions.append(out)
    twins = [(results[a], results[a.replace("_cleanval", "")]) for a in sorted(clean)]
    same = all(np.array_equal(x.history[m], y.history[m]) for a, b in twins
               for x, y in zip(a, b, strict=True) for m in ("train_loss", "test_loss"))  # fmt: skip
    summary = dict(
        conditions=conditions, clean_val_same_training=bool(same), previous=k["previous"],
        best_strength={label(c): {r: c["regs"][r]["best_strength"] for r in REGS}
                       for c in conditions},
        nested_test_loss={label(c): {r: {m: (c["regs"][r] if m == "final" else c["regs"][r][m])
                                         ["nested_test_loss"] for m in MODES} for r in REGS}
                          for c in conditions},
        strengths={r: list(g) for r, g in k["grids"].items()},
    )  # fmt: skip
    return study.Report(summary, COLUMNS, rows, figure(summary))


def figure(summary: dict):
    """Test loss against λ: a row per training size, a column per condition at that size; solid
    the final epoch, dashed early-stopped, bands 95 % t-intervals, dotted λ = 0 (final), stars
    the λ chosen on validation loss."""
    plt, cs = study.pyplot(), summary["conditions"]
    sizes = sorted({c["train_size"] for c in cs})
    by = {n: [c for c in cs if c["train_size"] == n] for n in sizes}
    ncol = max(len(v) for v in by.values())
    fig, axes = plt.subplots(len(sizes), ncol, figsize=(4.2 * ncol, 3.2 * len(sizes)),
                             squeeze=False)  # fmt: skip
    for i, n in enumerate(sizes):
        for j in range(ncol):
            ax = axes[i, j]
            if j >= len(by[n]):
                ax.axis("off")
                continue
            c = by[n][j]
            for reg, color in zip(REGS, ("C2", "C1"), strict=True):
                for mode, ls in zip(MODES, ("-", "--"), strict=True):
                    r = c["regs"][reg] if mode == "final" else c["regs"][reg][mode]
                    lam, (mean, lo, hi) = np.array([x["strength"] for x in r["rows"]]), (
                        np.array([x[f"test_loss_{s}"] for x in r["rows"]]) for s in
                        ("mean", "lo", "hi"))  # fmt: skip
                    plots.fill(ax, lam[1:], mean[1:], lo[1:], hi[1:], f"{reg} {mode}",
                               color=color, ms=2, lw=1, ls=ls)  # fmt: skip
                    if mode == "final":
                        ax.axhline(mean[0], color=color, ls=":", lw=0.8)
                    if (b := r["best_index"]) > 0:
                        ax.plot(lam[b], mean[b], color=color, marker="*", ms=9)
            ax.set_xscale("log")
            ax.set_title(label(c), fontsize=9)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("λ")
    for ax in axes[:, 0]:
        ax.set_ylabel("test loss")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("test loss: mean over replicates, bands 95 % Student-t; solid final epoch, "
                 "dashed early-stopped; dotted λ = 0; stars: λ chosen on validation loss")  # fmt: skip
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
