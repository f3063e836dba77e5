"""Test loss against λ for wd and l2: where is the U, and how does the best λ move with the
training-set size and with label noise, once the λ = 0 baseline overfits or is early-stopped?

Claim: explicit regularization gives a U-shaped test loss in λ, and smaller data and noisier
labels want more of it (Krogh & Hertz 1992, "A simple weight decay can improve generalization";
Zhang et al. 2017, "Understanding deep learning requires rethinking generalization").

Command: ``python experiments/lambda_curve.py`` (Fashion-MNIST; ``--smoke``: digits, seconds).
Runtime: 81 minutes of sweeps, summed over three interrupted sessions on the shared 2-core
machine at load 5–9; arms rerun alone take a third of that: about half an hour quiet. Resumable.
Verdict: U in part; best λ falls with n (reproduced); noise: larger λ in part, loss contradicted.

Since issue 24: λ = 0 overfits or is early-stopped at every n; constant × cosine; clean val labels.
"""

import dataclasses
import itertools

import numpy as np

from wdjax import study
from wdjax.analysis import plots
from wdjax.study import prose, replicates

REGS, MODES = ("wd", "l2"), ("final", "early")  # early: each member at its best validation epoch
METRICS = ("val_loss", "test_loss", "test_acc", "train_loss")
RANGES = {"wd": (1e-2, 10**1.5), "l2": (3e-5, 3e-5 * 10**3.5)}
RULES = dict(
    selection="λ of the lowest validation loss averaged over replicates (never test); also each "
    "replicate's own (nested), the test oracle, and Breiman's one-SE set: 3 or more λ = flat",
    interval="95 % Student-t over replicates, Δ against λ = 0 paired by replicate, rises ≥ 0; "
    "verdict: lower/higher when the paired interval excludes 0, else no detectable difference",
    stop="final: the last epoch; early: each member at its own lowest validation loss",
    validation="10,000 images; with noise, 'noisy val' selects and stops on flipped labels, "
    "'clean val' on the true ones of the same images (the same training run)",
    budget="epochs per n from a 1-replicate pilot: λ = 0's validation minimum before the last "
    "epoch under the constant schedule (and cosine at n = 1,000)",
    u="per condition, reg and stop: the chosen λ inside the grid, its paired Δ test loss interval "
    "below 0, the largest λ's test loss above it",
    size="per reg, stop and schedule, clean labels: the chosen λ never grows with n, falls overall",
    gain="per clean condition and reg, early-stopped: the chosen λ's Δ test loss interval below 0",
    budget_effect="per clean condition where λ = 0's rise interval is above 0 and reg: mean Δ test "
    "loss at the chosen λ lower at the final epoch than early-stopped",
    noise="per n, reg and validation labels, final epoch, noisy against clean training labels: a "
    "larger chosen λ; a larger mean gain on test accuracy, and on test loss",
)


def grids(per: int) -> dict:
    """λ = 0 and ``per`` log-spaced λ per regularizer, from no effect to collapse."""
    return {r: (0.0, *np.geomspace(lo, hi, per).tolist()) for r, (lo, hi) in RANGES.items()}


def cond(n, noise, schedule, epochs, every, val="noisy") -> dict:  # val: validation labels
    return dict(train_size=n, label_noise=noise, schedule=schedule, epochs=epochs,
                eval_every=every, val_labels=val if noise else "clean")  # fmt: skip


def get_config() -> dict:
    """8 λ + λ = 0, 9 conditions, 4 replicates; ``previous``: the first version (README)."""
    conditions = [cond(*x) for x in [
        (1000, 0.0, "cosine", 60, 3), (1000, 0.2, "cosine", 60, 3),
        (1000, 0.2, "cosine", 60, 3, "clean"), (6000, 0.0, "cosine", 40, 2),
        (6000, 0.0, "constant", 40, 2), (6000, 0.2, "cosine", 40, 2),
        (6000, 0.2, "cosine", 40, 2, "clean"), (50000, 0.0, "cosine", 24, 2),
        (50000, 0.0, "constant", 24, 2)]]  # fmt: skip
    return dict(dataset="fashion_mnist", mask="hidden", val_size=10000, grids=grids(8),
                conditions=conditions, replicates=4, selected_by="val_loss", rules=RULES,
                previous=dict(wd=[2.15, 0.464, 0.0], l2=[0.0139, 0.00139, 0.0], epochs=[120, 40,
                12], verdict="U and size reproduced; noise contradicted in part"))  # fmt: skip


def smoke(config: dict) -> dict:
    """Digits, 2 λ, a noisy condition (epoch 1 of 2 not evaluated), its clean-validation twin."""
    conds = [cond(600, 0.2, "cosine", 2, 2), cond(600, 0.2, "cosine", 2, 2, "clean")]
    return dict(dataset="digits", val_size=400, grids=grids(2), conditions=conds, replicates=2)


def label(c: dict) -> str:
    clean = ", clean val" if c["val_labels"] == "clean" and c["label_noise"] else ""
    return f"n={c['train_size']}, noise={c['label_noise']:.0%}, {c['schedule']}{clean}"


def arm(c: dict, reg: str) -> str:
    return f"n{c['train_size']}_noise{c['label_noise']:g}_{c['schedule']}" + "_cleanval" * (
        label(c).endswith("clean val")) + f"_{reg}"  # fmt: skip


def clean_validation(config):
    """The replicate's dataset with true validation labels (noise leaves the split as it is)."""
    return study.load_data(config)._replace(y_val=study.load_data(dataclasses.replace(
        config, label_noise=0)).y_val)  # fmt: skip


def baseline_rise(runs) -> dict:
    """λ = 0's (setting 0) validation minimum and the rise after it (:func:`study.rise`)."""
    r = study.rise(replicates.curves(runs, "val_loss")[1][:, 0])
    return dict(val_min_epoch=r["min_epoch"], epochs=r["epochs"], val_rise=r["rise"],
                val_rise_at_mean_min=r["rise_at_mean_min"])  # fmt: skip


def choice(runs, grid) -> dict:
    """One reg × stop: rows per λ (paired Δ against λ = 0) and the choices of ``study.select``."""
    metrics = [*METRICS, "epoch"] if "epoch" in runs[0].history else METRICS
    rows = replicates.table(runs, metrics, baseline={"strength": 0.0})
    val, loss, acc = (replicates.setting_values(runs, m)[1] for m in METRICS[:3])
    s, a = study.select(val, loss, grid), study.select(val, acc, grid, higher_is_better=True)
    return dict(best_strength=float(grid[s["averaged"]]), best_index=s["averaged"], rows=rows,
                per_replicate_best=s["per_replicate"], nested_test_loss=s["nested"],
                nested_test_loss_diff=s["nested_diff"], nested_test_acc=a["nested"],
                nested_test_acc_diff=a["nested_diff"], oracle_strength=s["oracle_strength"],
                one_se=s["one_se"])  # fmt: skip


COLUMNS = ["condition", "reg", "stop", "epoch at best λ (mean)", "best λ (val loss)",
           "best λ per replicate", "λ within 1 SE (count)", "test loss at best λ",
           "Δ test loss vs λ=0 (paired)", "nested Δ test loss (own λ)", "test acc at best λ",
           "Δ test acc vs λ=0 (paired)", "nested Δ test acc"]  # fmt: skip


def table_row(c: dict, reg: str, mode: str) -> list:
    r, b, ci, fmt = _pick(c, reg, mode), _pick(c, reg, mode, 1), study.ci, study.fmt_ci
    return [label(c), reg, mode, f"{b['epoch_mean']:.1f}" if mode == "early" else c["epochs"],
            f"{r['best_strength']:.3g}", ", ".join(f"{x:.2g}" for x in r["per_replicate_best"]),
            f"{min(r['one_se']):.2g} … {max(r['one_se']):.2g} ({len(r['one_se'])})",
            ci(b, "test_loss"), ci(b, "test_loss_diff", 4), fmt(*r["nested_test_loss_diff"], 4),
            ci(b, "test_acc", 4), ci(b, "test_acc_diff", 4),
            fmt(*r["nested_test_acc_diff"], 4)]  # fmt: skip


def run(ctx: study.Context) -> study.Report:
    """Every condition × regularizer × replicate (resumable), then their summaries."""
    k, conds = ctx.knobs, ctx.knobs["conditions"]
    arms = {arm(c, reg): dataclasses.replace(ctx.config, reg=reg, strengths=tuple(k["grids"][
            reg]), **{x: v for x, v in c.items() if x != "val_labels"})
            for c in conds for reg in REGS}  # fmt: skip
    clean = {a for a in arms if "cleanval" in a}
    results = ctx.sweeps({a: v for a, v in arms.items() if a not in clean})
    results.update(ctx.sweeps({a: arms[a] for a in clean}, data=clean_validation) if clean else {})
    conditions = [dict(c, label=label(c), regs={}) for c in conds]
    for c, reg in itertools.product(conditions, REGS):
        runs, grid = results[arm(c, reg)], k["grids"][reg]
        c["regs"][reg] = dict(choice(runs, grid), early=choice(
            list(map(replicates.early_stopped, runs)), grid))  # fmt: skip
        c.setdefault("baseline", baseline_rise(runs))  # λ = 0 of the first regularizer
    same = all(np.array_equal(x.history[m], y.history[m], True) for a in sorted(clean)
               for x, y in zip(results[a], results[a.replace("_cleanval", "")], strict=True)
               for m in ("train_loss", "test_loss"))  # fmt: skip
    summary = dict(conditions=conditions, clean_val_same_training=bool(same),
                   previous=k["previous"], strengths={r: list(g) for r, g in k["grids"].items()},
                   best_strength={c["label"]: {r: _pick(c, r)["best_strength"] for r in REGS}
                                  for c in conditions})  # fmt: skip
    rows = [table_row(c, reg, m) for c in conditions for reg in REGS for m in MODES]
    return study.Report(summary, COLUMNS, rows, figure(summary))


def figure(summary: dict):
    """Test loss against λ, a row per n, a column per condition; dashed: early-stopped."""
    plt, cs = study.pyplot(), summary["conditions"]
    by = [[c for c in cs if c["train_size"] == n] for n in sorted({c["train_size"] for c in cs})]
    fig, axes = plt.subplots(len(by), w := max(map(len, by)), squeeze=False,
                             figsize=(4.2 * w, 3.2 * len(by)), layout="tight")  # fmt: skip
    for (i, j), ax in np.ndenumerate(axes):
        if j >= len(by[i]):
            ax.axis("off")
            continue
        for reg, mode in itertools.product(REGS, MODES):
            r, color, ls = _pick(by[i][j], reg, mode), f"C{REGS.index(reg) + 1}", MODES.index(mode)
            lam, mean, lo, hi = (np.array([x[k] for x in r["rows"]]) for k in (
                "strength", "test_loss_mean", "test_loss_lo", "test_loss_hi"))  # fmt: skip
            plots.fill(ax, lam[1:], mean[1:], lo[1:], hi[1:], f"{reg} {mode}", color=color,
                       ms=2, lw=1, ls=("-", "--")[ls])  # fmt: skip
            ax.axhline(mean[0], color=color, ls=":", lw=0.8)
            if b := r["best_index"]:
                ax.plot(lam[b], mean[b], color=color, marker="*", ms=9)
        ax.set(xscale="log", xlabel="λ", ylabel="test loss", title=label(by[i][j]))
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("mean test loss, bands 95 % Student-t; dotted λ = 0; stars: the chosen λ")
    return fig


def _pick(c: dict, reg: str, mode: str = "final", row=False) -> dict:
    r = c["regs"][reg] if mode == "final" else c["regs"][reg][mode]
    return r["rows"][r["best_index"]] if row else r


def _u(r: dict) -> bool:
    i, rows = r["best_index"], r["rows"]
    return 0 < i < len(rows) - 1 and rows[i]["test_loss_diff_hi"] < 0 < rows[-1][
        "test_loss_mean"] - rows[i]["test_loss_mean"]  # fmt: skip


def write_up(summary: dict) -> str:
    """What it shows: each ``RULES`` check (u, size, gain, budget_effect, noise) on ``summary``."""
    cs, p, chain = summary["conditions"], summary["previous"], lambda x: prose.chain(map(
        prose.num, x))  # fmt: skip
    _ci = lambda r, k: prose.ci(*(r[k + e] for e in ("", "_lo", "_hi")))  # noqa: E731
    clean, say = [c for c in cs if not c["label_noise"]], {"size": [], "noise": []}
    ok = dict(u={f"{g} {m} at {c['label']}": _u(_pick(c, g, m)) for c in cs for g in REGS
                 for m in MODES}, size={}, lam={}, acc={}, loss={},
              gain={f"{g} at {c['label']}": _pick(c, g, "early", 1)["test_loss_diff_hi"] < 0
                    for c in clean for g in REGS},
              budget={f"{g} at {c['label']}": _pick(c, g, row=1)["test_loss_diff"] < _pick(
                  c, g, "early", 1)["test_loss_diff"] for c in clean
                  if c["baseline"]["val_rise"][1] > 0 for g in REGS})  # fmt: skip
    for s, g, m in itertools.product(sorted({c["schedule"] for c in clean}), REGS, MODES):
        lam = [_pick(c, g, m)["best_strength"] for c in clean if c["schedule"] == s]
        ok["size"][f"{g} {m} {s}"] = lam[0] > lam[-1] and lam == sorted(lam, reverse=True)
        say["size"].append(f"{g} {m} {s} {chain(lam)}")  # conditions are listed by n
    base = {c["train_size"]: c for c in clean if c["schedule"] == "cosine"}
    for c, g in ((c, g) for c in cs if c["label_noise"] and c["train_size"] in base for g in REGS):
        k, (x, y) = f"{g} at {c['label']}", (_pick(b, g, row=1) for b in (base[c["train_size"]], c))
        ok["lam"][k], ok["acc"][k] = y["strength"] > x["strength"], y["test_acc_diff"] > x[
            "test_acc_diff"]  # fmt: skip
        ok["loss"][k] = y["test_loss_diff"] < x["test_loss_diff"]
        say["noise"].append(f"{k}: λ {chain([x['strength'], y['strength']])}, Δ accuracy "
                            f"{_ci(x, 'test_acc_diff')} → {_ci(y, 'test_acc_diff')}, Δ loss "
                            f"{_ci(x, 'test_loss_diff')} → {_ci(y, 'test_loss_diff')}")  # fmt: skip
    v = {k: prose.says(x) for k, x in ok.items()}
    low = "; ".join(f"{c['label']}: epoch {b['val_min_epoch']} of {b['epochs']}, rise "
                    f"{prose.ci(*b['val_rise'])}" for c in cs for b in [c["baseline"]])  # fmt: skip
    flat = "; ".join(f"{g} {m} at {c['label']}: {chain([min(r['one_se']), max(r['one_se'])])}"
                     for c in cs for g in REGS for m in MODES
                     if len((r := _pick(c, g, m))["one_se"]) >= 3)  # fmt: skip
    return "\n\n".join([
        f"**Baseline.** λ = 0's validation loss is lowest at {low}.",
        f"**The U: {v['u']}** (the table: each chosen λ and its paired Δ test loss).",
        f"**Size: {v['size']}.** The chosen λ as n grows: {'; '.join(say['size'])}.",
        f"**Gain against an early-stopped λ = 0 (table, rows 'early'): {v['gain']}. Final-epoch "
        f"gain above the early-stopped one where λ = 0 overfits: {v['budget']}.**",
        f"**Noise, a larger λ: {v['lam']}; a larger gain in accuracy: {v['acc']}; in loss: "
        f"{v['loss']}.** Clean → noisy labels, final epoch: {'; '.join(say['noise'])}.",
        "**Flat curves.** Where 3 or more λ lie within one standard error of the best validation "
        f"loss the choice among them is noise; those sets (lowest → highest λ): {flat or 'none'}.",
        f"**What changed from the previous verdict, and why.** The first version ({p['verdict']}) "
        f"trained {prose.chain(p['epochs'])} epochs at the three sizes under cosine and chose wd "
        f"{chain(p['wd'])}, l2 {chain(p['l2'])}: its falling λ partly described the budget "
        "(λ = 0 did not overfit at the two larger sizes, clean), and noise was judged on test loss "
        "with λ chosen on noisy labels. Here every size has a budget in which λ = 0 overfits or "
        "is early-stopped, and noise is judged on accuracy too, with λ chosen on clean validation "
        "labels beside noisy ones: the verdicts above.",
    ])  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
