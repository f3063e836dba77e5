"""The 2025 decay variants: does AdamC keep ‖g‖/‖w‖ flat at the end of a cosine schedule, and does
cautious decay lower the λ curve and keep the best λ?

Claim: under a learning rate decaying to 0, AdamW's ‖g‖/‖w‖ of normalized (BatchNorm-preceded)
layers rises as γ_t falls, and AdamC's decay c_t = γ_t²/γ_max keeps it flat (Defazio 2025, "Why
Gradients Rapidly Increase Near the End of Training", arXiv:2506.02285); decaying only where the
update and the weight agree in sign lowers the loss curve in λ, keeps the best λ and keeps the
training loss near the unregularized one (Chen et al. 2025, "Cautious Weight Decay",
arXiv:2510.12402).

Command: ``python experiments/decay_variants.py`` (Fashion-MNIST; ``--smoke``: digits, seconds).
Runtime: 13.5 minutes, measured while sharing the 2-core machine; it resumes by arm.
Verdict (last full run): AdamW's rise and AdamC's flat ratio reproduced; cautious decay keeps the
best λ (one step up) and the training loss; its lower curve at the chosen λ inconclusive.
"""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from wdjax import study
from wdjax.analysis import plots, selection
from wdjax.study import prose, replicates

METRICS = ("val_loss", "test_loss", "train_loss", "test_acc")
REGS = {"bn": ("wd", "wd_corrected", "cautious_wd"), "mlp": ("wd", "cautious_wd")}
FIELDS = ("batchnorm", "train_size", "epochs")  # per model; eval only at the end
NAMES = {"wd": "AdamW", "wd_corrected": "AdamC", "cautious_wd": "cautious"}
RULES = dict(
    drift="per BatchNorm-preceded kernel, ‖g‖/‖w‖ of each training batch (g its gradient, w the "
    "kernel before the step) averaged per epoch; the least-squares slope of its log on the epoch "
    "over the last ⌈window·epochs⌉ epochs times (records − 1), averaged over layers; adamc_drift: "
    "its mean over λ ≥ drift_from (ηλ ≥ 1e-3 per step: equilibrium in the pilot)",
    interval="95 % Student-t over replicates; differences paired by replicate (arms share seeds, "
    "data, batch order)", selection="λ of the lowest validation loss averaged over replicates "
    "(never test); also each replicate's own choice (nested)", outcome="direction predicted: "
    "interval beyond 0 that side reproduced, other side contradicted, else inconclusive; flat: "
    "inside ±margin reproduced, wholly outside contradicted, else inconclusive",
    adamw_rises="AdamW's adamc_drift > 0", adamc_flat="AdamC's adamc_drift flat (margin: a 10 % "
    "change of the ratio)", adamc_below="paired drift AdamC − AdamW < 0", adamc_test="paired Δ "
    "test loss AdamC − AdamW, each at its own λ (averaged choice) < 0 (Defazio: lower loss)",
    cautious_lower="per model, paired Δ test loss cautious − wd, each at its own λ (averaged "
    "choice) < 0", cautious_same_lambda="per model, the averaged choices equal or one grid step "
    "apart reproduced, two or more contradicted, one at an end of the grid inconclusive",
    cautious_objective="per model, paired |train(λ) − train(0)| cautious − wd, mean over the `top` "
    "largest λ, < 0")  # fmt: skip


def get_config() -> dict:
    """MLP 784-64-64-10 at n = 6,000 (60 epochs: it overfits, so the U turns) and the same with
    BatchNorm at n = 50,000 (20 epochs; at 6,000 memorization pulled ‖g‖ down in the pilot)."""
    models = dict(bn=dict(batchnorm=True, train_size=50000, epochs=20,
                          strengths=(0.0, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)),
                  mlp=dict(batchnorm=False, train_size=6000, epochs=60,
                           strengths=(0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)))  # fmt: skip
    return dict(dataset="fashion_mnist", schedule="cosine", mask="hidden", val_size=10000,
                models=models, replicates=5, selected_by="val_loss", window=0.2, margin=0.1,
                drift_from=1.0, top=2, rules=RULES)  # fmt: skip


def smoke(config: dict) -> dict:
    small = dict(train_size=600, epochs=2, strengths=(0.0, 1.0, 10.0))
    return dict(dataset="digits", val_size=400, replicates=2,
                models={m: dict(c, **small) for m, c in config["models"].items()})  # fmt: skip


def drift(log_ratio, k: int) -> np.ndarray:
    """``log_ratio [..., epochs]``'s fitted change over its last k: LSQ slope × (k − 1)."""
    y, x = np.asarray(log_ratio, float)[..., -k:], np.arange(k) - (k - 1) / 2
    return (y * x).sum(-1) / (x * x).sum() * (k - 1)


def record(before, after, grads, batch_stats) -> dict:
    """‖g‖/‖w‖ of each hidden kernel at every step (w before the step)."""
    return {f"ratio/{n}": jnp.linalg.norm(grads[n]["kernel"]) / jnp.linalg.norm(w["kernel"])
            for n, w in before.items() if n != "head" and "kernel" in w}  # fmt: skip


def own(a: dict, b: dict) -> tuple[list, list]:
    """Paired Δ test loss a − b, each at its own λ: (averaged choice, nested choice)."""
    ja, jb = (int(np.nanargmin(np.nanmean(v["val_loss"], 0))) for v in (a, b))
    na, nb = (selection.nested(v["val_loss"], v["test_loss"])[1] for v in (a, b))
    return study.interval(a["test_loss"][:, ja] - b["test_loss"][:, jb]), study.interval(na - nb)


def claim(interval, prediction: str, margin=None) -> dict:  # the outcome rule of RULES
    return dict(interval=list(interval), prediction=prediction, verdict=study.verdict(
        interval, margin), outcome=study.outcome(interval, prediction, margin))  # fmt: skip


def part_b(k: dict, v: dict, sel: dict, m: str) -> tuple[dict, dict]:
    """Cautious − wd on model ``m``: (claims, test_loss_diff entries)."""
    averaged, nested = own(c := v[f"{m}_cautious_wd"], w := v[f"{m}_wd"])
    gap = [np.abs(x["train_loss"][:, -k["top"] :] - x["train_loss"][:, :1]).mean(1) for x in (c, w)]
    diffs = {f"cautious−wd {m} own λ": averaged, f"cautious−wd {m} nested": nested,
             f"cautious−wd {m} mean over λ>0": study.interval(
                 (c["test_loss"][:, 1:] - w["test_loss"][:, 1:]).mean(1))}  # fmt: skip
    sc, sw, grid = sel[f"{m}_cautious_wd"], sel[f"{m}_wd"], list(k["models"][m]["strengths"])
    i, j = sc["averaged"], sw["averaged"]  # rule cautious_same_lambda
    same = dict(cautious=grid[i], wd=grid[j], steps=abs(i - j), outcome="inconclusive" if {i, j}
                & {0, len(grid) - 1} else "reproduced" if abs(i - j) <= 1 else "contradicted",
                per_replicate_steps=[abs(grid.index(a) - grid.index(b)) for a, b in zip(
                    sc["per_replicate"], sw["per_replicate"], strict=True)])  # fmt: skip
    objective = claim(study.interval(gap[0] - gap[1]), "lower")
    return {f"cautious_lower {m}": claim(averaged, "lower"), f"cautious_same_lambda {m}": same,
            f"cautious_objective {m}": objective}, diffs  # fmt: skip


def part_a(k: dict, v: dict, drifts: dict) -> tuple[dict, dict, dict]:
    """AdamC vs AdamW on the BN model: (adamc_drift, claims, test_loss_diff entries)."""
    grid = np.array(k["models"]["bn"]["strengths"])
    head = {r: drifts[f"bn_{r}"][:, grid >= k["drift_from"]].mean(1) for r in REGS["bn"]}
    dr, gap = {r: study.interval(x) for r, x in head.items()}, head["wd_corrected"] - head["wd"]
    averaged, nested = own(c := v["bn_wd_corrected"], w := v["bn_wd"])
    diffs = {"AdamC−AdamW own λ": averaged, "AdamC−AdamW nested": nested}
    diffs |= {f"AdamC−AdamW λ={g:g}": study.interval(c["test_loss"][:, j] - w["test_loss"][:, j])
              for j, g in enumerate(grid)}  # fmt: skip
    claims = dict(adamw_rises=claim(dr["wd"], "higher"), adamc_test=claim(averaged, "lower"),
                  adamc_flat=claim(dr["wd_corrected"], "equivalent", k["margin"]),
                  adamc_below=claim(study.interval(gap), "lower"))  # fmt: skip
    return dr | {"AdamC−AdamW": study.interval(gap)}, claims, diffs


def run(ctx: study.Context) -> study.Report:
    """Every arm × replicate (resumable; BN arms record ‖g‖/‖w‖), then both parts' summaries."""
    k, base = ctx.knobs, ctx.config
    cfgs = {f"{m}_{r}": dataclasses.replace(base, reg=r, strengths=tuple(c["strengths"]),
                                            eval_every=c["epochs"], **{x: c[x] for x in FIELDS})
            for m, c in k["models"].items() for r in REGS[m]}  # fmt: skip
    bn = {a: c for a, c in cfgs.items() if a.startswith("bn_")}
    runs = ctx.sweeps(bn, record=record, record_every="step")
    runs |= ctx.sweeps({a: c for a, c in cfgs.items() if a not in bn})
    v = {a: {m: replicates.setting_values(r, m)[1] for m in METRICS} for a, r in runs.items()}
    sel = {a: study.select(x["val_loss"], x["test_loss"], cfgs[a].strengths) for a, x in v.items()}
    ratios = {a: np.log(np.array([[np.asarray(h, float).mean(-1) for n, h in sorted(
        x.history.items()) if n.startswith("ratio/")] for x in runs[a]])).transpose(0, 2, 1, 3)
              for a in bn}  # fmt: skip  # [replicates, settings, layers, epochs]
    win = {a: max(2, math.ceil(k["window"] * cfgs[a].epochs - 1e-9)) for a in bn}  # ≥ 2 records
    drifts = {a: drift(x, win[a]).mean(-1) for a, x in ratios.items()}  # [R, S]
    adamc_drift, claims, diffs = part_a(k, v, drifts)
    for m in k["models"]:
        claims, diffs = (x | y for x, y in zip((claims, diffs), part_b(k, v, sel, m), strict=True))
    arms = {a: dict(model=a.split("_")[0], reg=a.split("_", 1)[1], strengths=list(c.strengths),
                    rows=replicates.table(runs[a], METRICS, baseline={"strength": 0.0}),
                    selection=sel[a], epochs=c.epochs, train_size=c.train_size,
                    vs_wd=[study.interval(x) for x in (v[a]["test_loss"] - v[
                        a.split("_")[0] + "_wd"]["test_loss"]).T])
            for a, c in cfgs.items()}  # fmt: skip
    for a in bn:
        arms[a] |= dict(drift=[study.interval(x) for x in drifts[a].T], window=win[a],
                        log_ratio=ratios[a].mean((0, 2)).tolist())  # fmt: skip
    summary = dict(adamc_drift=adamc_drift, test_loss_diff=diffs, claims=claims, arms=arms,
                   lr=base.lrs[0], margin=k["margin"], drift_from=k["drift_from"])  # fmt: skip
    return study.Report(summary, COLUMNS, table_rows(arms, base.lrs[0]), figure(summary))


COLUMNS = ["model", "reg", "λ (★ chosen)", "ηλ", "drift of log ‖g‖/‖w‖", "val loss", "test loss",
           "Δ test loss vs λ=0", "Δ test loss vs wd", "train loss", "test acc"]  # fmt: skip


def table_rows(arms: dict, lr: float) -> list:
    return [[e["model"], e["reg"], f"{g:g}" + (" ★" if e["selection"]["averaged"] == j else ""),
             f"{g * lr:.0e}", study.fmt_ci(*e["drift"][j]) if "drift" in e else "—",
             *(study.ci(row, x, 4) for x in ("val_loss", "test_loss", "test_loss_diff")),
             "—" if e["reg"] == "wd" else study.fmt_ci(*e["vs_wd"][j], 4),
             study.ci(row, "train_loss", 4), study.ci(row, "test_acc", 4)]
            for e in arms.values() for j, (row, g) in enumerate(zip(e["rows"], e["strengths"],
                                                                     strict=True))]  # fmt: skip


def _curve(ax, e: dict, metric: str, color: str) -> None:
    lam, r, i = np.array(e["strengths"]), e["rows"], e["selection"]["averaged"]
    mean, lo, hi = (np.array([x[f"{metric}_{s}"] for x in r]) for s in ("mean", "lo", "hi"))
    plots.fill(ax, lam[1:], mean[1:], lo[1:], hi[1:], NAMES[e["reg"]], color=color, ms=3, lw=1)
    ax.axhline(mean[0], color=color, ls=":", lw=0.8)
    if metric == "test_loss" and i:
        ax.plot(lam[i], mean[i], color=color, marker="*", ms=10)
    ax.set(xscale="log", xlabel="λ", title=f"{e['model']}: {metric.replace('_', ' ')}")


def figure(summary: dict):
    """BN: log ‖g‖/‖w‖ per epoch (AdamW solid, AdamC dashed; shaded: the window), drift per λ;
    test and training loss against λ (bands: 95 % t; dotted: λ = 0; stars: chosen λ)."""
    plt, arms, colors = study.pyplot(), summary["arms"], dict(wd="C0", wd_corrected="C1",
                                                               cautious_wd="C2")  # fmt: skip
    (fig, ax), w = plt.subplots(2, 3, figsize=(15, 8)), arms["bn_wd"]
    for j, g in enumerate(w["strengths"]):
        for reg, ls in (("wd", "-"), ("wd_corrected", "--")) if g >= summary["drift_from"] else ():
            ax[0, 0].plot(np.arange(1, w["epochs"] + 1), arms[f"bn_{reg}"]["log_ratio"][j], ls,
                          color=f"C{j + 3}", label=f"λ={g:g}" if reg == "wd" else None)  # fmt: skip
    ax[0, 0].axvspan(w["epochs"] - w["window"] + 1, w["epochs"], color="0.9")
    ax[0, 0].set(xlabel="epoch", ylabel="log ‖g‖/‖w‖", title="bn: AdamW (solid), AdamC (dashed)")
    for reg, c in colors.items():
        lam, d = (np.array(arms[f"bn_{reg}"][x][1:]) for x in ("strengths", "drift"))
        ax[0, 1].errorbar(lam, d[:, 0], yerr=[d[:, 0] - d[:, 1], d[:, 2] - d[:, 0]], color=c,
                          marker="o", ms=3, capsize=3, label=NAMES[reg])  # fmt: skip
    ax[0, 1].axhspan(-summary["margin"], summary["margin"], color="0.9")
    ax[0, 1].set(xscale="log", xlabel="λ", title="bn: drift over the window (shaded: margin)")
    for col, m in enumerate(("mlp", "bn")):
        for reg in REGS[m]:
            _curve(ax[1, col], arms[f"{m}_{reg}"], "test_loss", colors[reg])
            _curve(ax[col, 2], arms[f"{m}_{reg}"], "train_loss", colors[reg])
    return [a.legend(fontsize=7) for a in ax.flat] and fig.tight_layout() or fig


def write_up(summary: dict) -> str:
    """What it shows: each ``RULES`` label applied to ``summary``, numbers from it."""
    (c, d, a, dr), ci = (summary[x] for x in ("claims", "test_loss_diff", "arms", "adamc_drift")), (
        lambda x: prose.ci(*x))  # fmt: skip
    o, lam = {x: c[x]["outcome"] for x in c if "outcome" in c[x]}, a["bn_wd"]["strengths"][1:]
    eq = "; ".join(f"{prose.num(g)}: {ci(d[f'AdamC−AdamW λ={g:g}'])}" for g in lam)  # fmt: skip
    parts = [f"**AdamW's ratio rises: {o['adamw_rises']}; AdamC's stays flat: {o['adamc_flat']}; "
             f"AdamC's below AdamW's: {o['adamc_below']}.** The fitted change of log ‖g‖/‖w‖ over "
             f"the last {a['bn_wd']['window']} epochs of {a['bn_wd']['epochs']} (mean over λ ≥ "
             f"{prose.num(summary['drift_from'])}): AdamW {ci(dr['wd'])}, AdamC "
             f"{ci(dr['wd_corrected'])} (margin ±{prose.num(summary['margin'])}), paired "
             f"difference {ci(dr['AdamC−AdamW'])}; cautious decay {ci(dr['cautious_wd'])}.",
             f"**AdamC's test loss lower: {o['adamc_test']}.** Chosen on validation: AdamW λ = "
             f"{prose.num(a['bn_wd']['selection']['averaged_strength'])}, AdamC λ = "
             f"{prose.num(a['bn_wd_corrected']['selection']['averaged_strength'])}; paired Δ test "
             f"loss AdamC − AdamW {ci(d['AdamC−AdamW own λ'])} at those, "
             f"{ci(d['AdamC−AdamW nested'])} with each replicate's own choice; at equal λ "
             f"{eq}."]  # fmt: skip
    for m in ("mlp", "bn"):
        sl, e, vs = c[f"cautious_same_lambda {m}"], a[f"{m}_wd"], a[f"{m}_cautious_wd"]["vs_wd"]
        parts.append(
            f"**Cautious decay on the {m} (n = {e['train_size']:,}, {e['epochs']} epochs): "
            f"lower curve {o[f'cautious_lower {m}']}; same best λ {sl['outcome']}; training loss "
            f"closer to λ = 0's {o[f'cautious_objective {m}']}.** Paired Δ test loss cautious − "
            f"wd at each one's chosen λ {ci(d[f'cautious−wd {m} own λ'])}, nested "
            f"{ci(d[f'cautious−wd {m} nested'])}, averaged over λ > 0 "
            f"{ci(d[f'cautious−wd {m} mean over λ>0'])}; chosen λ: cautious "
            f"{prose.num(sl['cautious'])}, wd {prose.num(sl['wd'])} (grid steps apart per "
            f"replicate: {', '.join(map(str, sl['per_replicate_steps']))}); Δ |train(λ) − "
            f"train(0)| over the largest λ {ci(c[f'cautious_objective {m}']['interval'])}. At "
            f"equal λ cautious − wd is {ci(vs[e['selection']['averaged']])} at wd's choice and "
            f"{ci(vs[-1])} at the largest λ" + (": it decays only part of the weights, so its U "
            "sits to the right." if sl["cautious"] > sl["wd"] else "."))  # fmt: skip
    return "\n\n".join([*parts, "**Caveat.** One learning rate, small MLPs (BatchNorm's ε > 0), "
                        "few steps beside the papers' language models."])  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
