"""Does the best λ move with the learning rate as the exact scale symmetry of BatchNorm predicts?

Claim: with decoupled weight decay the best λ no longer depends on the learning rate, while with
L2 it moves with it (Loshchilov & Hutter 2019, "Decoupled weight decay regularization", Fig. 2).
With BatchNorm after a kernel, the exact map of :mod:`wdjax.analysis.symmetry` predicts
log λ*(η) = a·log η + const, a = −1 (ηλ invariant), −2 (adam+l2) or 0 (wd_paper).

Command: ``python experiments/decoupling.py`` (``--smoke``, ``--pilot --out DIR``, ``--variant
current``: the previous design alone); full run not yet made (budget ≤ 60 min on 2 cores).
Verdict (last full run, the previous design): reproduced in kind, exact slopes contradicted for 5
of 7 BN arms, an artefact of that design. Rules: :func:`get_config`; write-up generated.
"""

import dataclasses
import os

import jax.numpy as jnp
import numpy as np

import wdjax
from wdjax import Sheared, files, schedules, study
from wdjax.analysis import plots, selection, stats, tables
from wdjax.analysis.symmetry import SCALE_MAPS, predicted_slope
from wdjax.engine.models import MLP
from wdjax.errors import ConfigError
from wdjax.study import prose, replicates

BN_ARMS = tuple(SCALE_MAPS)  # the 7 (optimizer, reg) pairs with a tested map
PLAIN_ARMS = (("adam", "l2"), ("adam", "wd"), ("adam", "wd_paper"))
LR_RANGES = {"sgd": (1e-3, 1.0), "momentum": (1e-4, 1e-1), "adam": (3e-5, 3e-2)}
ANCHORS = {  # arm: λ_c at η₀ of the current design (its pilot 2's centre lines), of the pilot
    "sgd+l2+bn": (5.7, 10.0), "momentum+l2+bn": (11.0, 10.0), "momentum+wd+bn": (130.0, 300.0),
    "momentum+wd_paper+bn": (0.21, 0.03), "adam+l2+bn": (230.0, 100.0),
    "adam+wd+bn": (300.0, 300.0), "adam+wd_paper+bn": (0.32, 0.03), "adam+l2": (3e-3, 10**-3.5),
    "adam+wd": (1.0, 10**0.5), "adam+wd_paper": (1e-3, 10**-4.5),
}  # fmt: skip
EXACT_ANCHORS = dict(ANCHORS)  # the exact design's λ_c at η₀ (its pilot): set below
PLAIN_SLOPES = {"adam+l2": 0.5, "adam+wd": 0.0, "adam+wd_paper": 1.0}  # BN: predicted_slope
CONTROL = {"adam+wd+bn": -0.5, "momentum+wd_paper+bn": 0.5}  # arm: the grid's shear ≠ a
MARGIN, CONTROL_MARGIN = 0.1, 0.05
VARIANTS = ("exact", "current")  # current: the design of the previous full run
RULES = dict(
    design="exact: only the BN-preceded (hidden) kernels at (η, λ); the head, its bias and the "
    "BN scale/offset on the arm's base optimizer at the grid's central η under the same cosine; "
    "Adam ε = 0 with 0/0 taken as 0. current: every parameter at η, Adam ε = 1e-8 (rerun on the "
    "same seeds, 7 BN arms: Δslope = exact − current, paired t, measures both changes together)",
    estimator="per (arm, η, replicate) λ* is the vertex of the parabola in log λ through the "
    "final validation loss at the grid minimum and its neighbours; a minimum at an end of the "
    "grid or next to a diverged value is an edge cell, left out",
    slope="least squares of log10 λ* on log10 η per replicate (≥ 3 non-edge lrs); Student t "
    "over replicates, beside the percentile bootstrap (2,000 draws, seed 0)",
    verdict="in this order: the t-interval inside prediction ± 0.1 → agrees; else it excludes "
    "the prediction → disagrees; else inconclusive",
    control="adam+wd+bn and momentum+wd_paper+bn, exact design, w₀ of the hidden kernels × c^b "
    "at η₀·c (c = 2^k, b = 1; c = 4^k, b = ½; k = −3 … 3): every trajectory maps exactly, so λ* "
    "has slope a; λ grid ±1.5 decades sheared at a − 0.5 resp. a + 0.5; passes when the mean "
    "slope is within 0.05 of a; else the verdicts are withheld",
)


def get_config() -> dict:
    """The full study: 10 arms × 7 lrs × 13 (BN) or 7 relative λ, 5 replicates, 690 steps; the
    exact design, the current one's 7 BN arms and 2 control arms."""
    arms = [(o, r, True) for o, r in BN_ARMS] + [(o, r, False) for o, r in PLAIN_ARMS]
    return dict(dataset="fashion_mnist", train_size=3000, val_size=10000,
                epochs=30, eval_every=30, arms=arms, n_lr=7, rel_bn=rel_grid(4, 6),
                rel_plain=rel_grid(2, 3), replicates=5, selected_by="val_loss", rules=RULES,
                variant=study.option("exact", f"the design: one of {', '.join(VARIANTS)}"),
                pilot=study.option(False, "run the pilot (1 replicate, 3 lrs, wide grids)"))  # fmt: skip


def smoke(config: dict) -> dict:
    """The tiny version: digits, adam+wd+bn, 3 lrs × 3 λ, 2 epochs, 2 replicates."""
    return dict(dataset="digits", train_size=None, val_size=400, epochs=2, eval_every=2,
                arms=[("adam", "wd", True)], n_lr=3, rel_bn=rel_grid(4, 1),
                rel_plain=rel_grid(2, 1), replicates=2)  # fmt: skip


def rel_grid(per_decade: int, half: int) -> tuple[float, ...]:
    """r = 10^(k/per_decade), k = −half … half: the grid relative to the centre line."""
    return tuple(10.0 ** (k / per_decade) for k in range(-half, half + 1))


def slope(name: str, pilot: bool = False) -> float:
    """The centre line's slope of arm ``name``: BN the predicted, else :data:`PLAIN_SLOPES`."""
    bn = name.endswith("+bn")
    return predicted_slope(*name.split("+")[:2]) if bn else 0.0 if pilot else PLAIN_SLOPES[name]


def agreement(predicted, lo, hi, margin: float = MARGIN) -> str:
    """RULES' verdict: agrees / disagrees / inconclusive; no prediction: 'no prediction'."""
    if predicted is None:
        return "no prediction"
    v = study.verdict((lo, hi), margin, ref=predicted)
    return {"equivalent": "agrees", "lower": "disagrees", "higher": "disagrees"}.get(
        v, "inconclusive")  # fmt: skip


def model(bn: bool, config, num_classes: int):
    """The MLP; with BatchNorm ε = 0, so the BN-preceded kernels are exactly scale-invariant."""
    return MLP(num_classes, config.hidden, batchnorm=True, bn_epsilon=0.0) if bn else "mlp"


def shrink(opt, reg, lam, lr, lr_sum_unit, momentum=0.9):
    """Total shrink of the decayed kernels at λ (``lr_sum_unit`` = Σ_t η(t), the multiplier)."""
    factor = 1 / (1 - momentum) if (opt, reg) == ("momentum", "l2") else 1.0
    return (lam * lr_sum_unit if reg == "wd_paper" else None if (opt, reg) == ("adam", "l2")
            else lam * lr * lr_sum_unit * factor)  # fmt: skip


def analyse(opt, reg, bn, cfg, vals) -> dict:
    """Per-replicate λ*, edges, slopes, intervals, verdict, shrink, reuse of λ(η₀)."""
    val, tx, lrs = vals["val_loss"], cfg.optimizer, np.asarray(cfg.lrs)
    grid = np.log10(np.asarray(cfg.strengths))[:, None] + np.log10(tx.centre(lrs))[None, :]
    (R, _, L), eta = val.shape, schedules.make("cosine", tx.steps_per_epoch, tx.epochs)
    star = np.array([[selection.vertex(grid[:, j], val[i, :, j])[0] for j in range(L)]
                     for i in range(R)])  # fmt: skip
    slopes = np.array([selection.fit_slope(np.log10(lrs), row) for row in star])
    ok, pred = slopes[np.isfinite(slopes)], predicted_slope(opt, reg) if bn else None
    s, boot = stats.describe(ok), stats.bootstrap_mean_interval(ok)
    unit_t = np.asarray(eta(np.arange(tx.steps_per_epoch * tx.epochs)), float)
    unit = float(np.sum(unit_t))
    geo = [np.nanmean(c) if np.isfinite(c).any() else np.nan for c in star.T]
    arm = dict(optimizer=opt, reg=reg, batchnorm=bn, predicted_slope=pred, centre_slope=tx.slope,
        lambda_anchor=tx.lam_anchor, anchor_lr=tx.lr_anchor, lrs=lrs.tolist(),
        rel_strengths=list(cfg.strengths), lambda_star=[[None if np.isnan(v) else float(10**v)
        for v in row] for row in star], edge=np.isnan(star).tolist(),
        edge_cells=int(np.isnan(star).sum()), slopes=slopes.tolist(),
        **replicates.summarize("slope", ok), slope_n=int(s.n), slope_boot_lo=boot[0],
        slope_boot_hi=boot[1], verdict=agreement(pred, s.lo, s.hi), shrink=[None if np.isnan(g)
        else shrink(opt, reg, 10**g, lr, unit) for g, lr in zip(geo, lrs, strict=True)],
        best_val_loss=np.nanmean(np.min(val, axis=1), axis=0).tolist(), steps=len(unit_t))
    return arm  # fmt: skip


def control_init(cfg, ds, b: float) -> dict:
    """Replicate ``cfg``'s own initial weights (its seed, as the sweep draws them), one tree per
    member (strength-major, then lr), the hidden kernels × (lr/η₀)^b."""
    x = ds.x_train[:1]
    h = wdjax.Hyper(jnp.float32(0), jnp.float32(cfg.lrs[0]), jnp.int32(cfg.first_seed),
                    jnp.int32(0))  # fmt: skip
    p = wdjax.build(cfg, num_classes=ds.num_classes, x_example=x).engine.init(h, x).params
    f = np.tile((np.asarray(cfg.lrs) / cfg.lrs[len(cfg.lrs) // 2]) ** b, len(cfg.strengths))
    return {k: {n: jnp.asarray(f.reshape(-1, *[1] * w.ndim) ** (n == "kernel" and k != "head")
                               * np.asarray(w)[None], w.dtype) for n, w in v.items()}
            for k, v in p.items()}  # fmt: skip


def sweep_arms(ctx, variant: str, lines: dict, lr_points=None, rel=None, n=None) -> dict:
    """{arm: (SweepConfig, {val_loss, test_loss: [R, r, lr]})} by ``ctx.sweeps``; diverged +inf.
    ``variant`` "control": :data:`CONTROL`'s arms on lrs η₀·c, w₀ mapped, one sweep each."""
    cfg, k, ds, configs, out = ctx.config, ctx.knobs, study.load_data(ctx.config), {}, {}
    for opt, reg, bn in k["arms"]:
        name, lrs = f"{opt}+{reg}" + "+bn" * bn, np.geomspace(*LR_RANGES[opt], k["n_lr"])
        exact, steps, b = variant != "current", len(ds.x_train) // cfg.batch_size, 1.0
        eta0, hyper = float(lrs[len(lrs) // 2]), (("eps", 0.0), ("eps_root", 0.0))
        if variant == "control":
            b = SCALE_MAPS[opt, reg].weight_exponent
            lrs = eta0 * 2.0 ** (np.arange(k["n_lr"]) - k["n_lr"] // 2) ** (1 / b)
        tx = Sheared(opt, reg, lines[name][0], eta0, lines[name][1] + CONTROL.get(name, 0) * (
            variant == "control"), steps, cfg.epochs, hyper=hyper * (opt == "adam" and exact),
            fixed_lr=eta0 if exact else None)  # fmt: skip
        lrs = lrs if lr_points is None else lrs[lr_points]
        c = dataclasses.replace(cfg, optimizer=tx, model=model(bn, cfg, ds.num_classes),
            batchnorm=bn, lrs=tuple(lrs.tolist()),
            strengths=rel or k["rel_bn" if bn else "rel_plain"])  # fmt: skip
        configs[name] = (f"{variant}_{name}", c, b)
    if variant != "control":
        res = ctx.sweeps({f: c for f, c, _ in configs.values()}, n)
    else:  # one sweep per replicate: its own w₀, mapped per member
        res = {f: [ctx.sweeps({f"{f}_r{r}": c}, 1, init_params=control_init(c, ds, b))[
            f"{f}_r{r}"][0] for r, c in enumerate(replicates.replicate_configs(c0, ctx.replicates))]
            for f, c0, b in configs.values()}  # fmt: skip
    for name, (f, c, _) in configs.items():
        assert all(np.allclose([m["lr"] for m in r.members], np.tile(c.lrs, len(c.strengths)))
                   for r in res[f]), "members: strength-major, then lr (control_init's order)"
        out[name] = (c, {key: np.stack([np.where(tables.diverged_members(r.history), np.inf,
            r.history[key][:, -1]).astype(float).reshape(len(c.strengths), len(c.lrs), -1)
            .mean(-1) for r in res[f]]) for key in ("val_loss", "test_loss")})  # fmt: skip
    return out


def analysed(ctx, variant, lines, **kw) -> dict:
    return {name: analyse(c.optimizer.optimizer, c.optimizer.reg, c.batchnorm, c, v)
            for name, (c, v) in sweep_arms(ctx, variant, lines, **kw).items()}  # fmt: skip


def delta(a: dict, b: dict) -> list:
    """[mean, lo, hi] of slope(a) − slope(b), paired by replicate (both finite)."""
    x, y = np.asarray(a["slopes"], float), np.asarray(b["slopes"], float)
    ok = np.isfinite(x) & np.isfinite(y)
    d = stats.paired_differences(x[ok], y[ok])
    return [float(d.mean), float(d.lo), float(d.hi)]


def run(ctx: study.Context) -> study.Report:
    """Every arm × replicate of the design (resumable), the current design's BN arms and the
    control; slopes, verdicts, Δslope, reuse. ``--pilot``: 1 replicate, 3 lrs of each BN arm on
    wide grids, λ* to ``<out>/pilot.json`` (the centre lines of :data:`EXACT_ANCHORS`)."""
    k, kw, v = ctx.knobs, {}, ctx.knobs["variant"]
    if v not in VARIANTS:
        raise ConfigError(f"--variant: give one of {', '.join(VARIANTS)}, got {v!r}")
    if k["pilot"] and os.path.normpath(ctx.out) == os.path.join("results", "studies", ctx.name):
        raise ConfigError("--pilot: pass --out DIR so the pilot leaves the study's results alone")
    anchors = EXACT_ANCHORS if v == "exact" else ANCHORS
    lines = {n: (lam, slope(n)) for n, (lam, _) in anchors.items()}
    if k["pilot"]:
        lines = {n: (p, slope(n, True)) for n, (_, p) in anchors.items()}
        k["arms"] = [a for a in k["arms"] if a[2]]
        kw = dict(lr_points=[0, k["n_lr"] // 2, -1], rel=rel_grid(2, 1 if ctx.smoke else 7), n=1)
    all_arms, arms = k["arms"], analysed(ctx, v, lines, **kw)
    summary, bn = dict(arms=arms, variant=v), [n for n, a in arms.items() if a["batchnorm"]]
    if v == "exact" and not k["pilot"]:
        k["arms"] = [a for a in all_arms if a[2]]
        cur = analysed(ctx, "current", {n: (lam, slope(n)) for n, (lam, _) in ANCHORS.items()})
        k["arms"] = [a for a in all_arms if f"{a[0]}+{a[1]}+bn" in CONTROL] or all_arms[:1]
        ctl = analysed(ctx, "control", lines)
        summary.update(current=cur, delta_slope={n: delta(arms[n], cur[n]) for n in bn},
            control={n: dict(slope=[a["slope_mean"], a["slope_lo"], a["slope_hi"]],
                             predicted=a["predicted_slope"], grid_slope=a["centre_slope"],
                             edge_cells=a["edge_cells"], lambda_star=a["lambda_star"],
                             lrs=a["lrs"]) for n, a in ctl.items()})  # fmt: skip
        summary["control_passed"] = all(abs(c["slope"][0] - c["predicted"]) <= CONTROL_MARGIN
                                        for c in summary["control"].values())  # fmt: skip
    if k["pilot"]:
        files.write_json(os.path.join(ctx.out, "pilot.json"), {n: dict(lrs=a["lrs"],
                         lambda_star=a["lambda_star"][0]) for n, a in arms.items()})  # fmt: skip
    summary["slope_verdicts"] = {n: dict(slope=[a["slope_mean"], a["slope_lo"], a["slope_hi"]],
        predicted=a["predicted_slope"], verdict=a["verdict"] if summary.get("control_passed",
        True) else "withheld: control failed") for n, a in arms.items() if a["batchnorm"]}  # fmt: skip
    summary.update(estimator=RULES["estimator"], epochs=ctx.config.epochs,
                   steps=arms[next(iter(arms))]["steps"], train_size=ctx.config.train_size)
    rows = [table_row(n, a, summary.get("delta_slope", {}).get(n)) for n, a in arms.items()]
    return study.Report(summary, COLUMNS, rows, figure(summary))


COLUMNS = ["arm", "predicted slope", "measured slope [95 % t]", "bootstrap 95 %", "verdict",
           "Δslope vs current design [95 % paired t]", "edge cells", "shrink at η₀",
           "best val loss: lowest η", "central η", "highest η"]  # fmt: skip


def table_row(name: str, a: dict, d) -> list:
    pred, j0, sh, bv = a["predicted_slope"], a["lrs"].index(a["anchor_lr"]), a["shrink"], a[
        "best_val_loss"]  # fmt: skip
    return [name, "—" if pred is None else f"{pred:+.0f}",
            study.fmt_ci(a["slope_mean"], a["slope_lo"], a["slope_hi"], 2) + f" (n={a['slope_n']})",
            f"[{a['slope_boot_lo']:+.2f}, {a['slope_boot_hi']:+.2f}]", a["verdict"],
            "—" if d is None else study.fmt_ci(*d, 2), f"{a['edge_cells']} of "
            f"{len(a['edge']) * len(a['lrs'])}", "—" if sh[j0] is None else f"{sh[j0]:.3g}",
            *(f"{bv[j]:.3f}" for j in (0, j0, -1))]  # fmt: skip


def figure(summary: dict):
    """λ* against η per arm (95 % t bands; the prediction dashed; the current design dotted)."""
    panels = dict(summary["arms"]) | {f"control {n}": c for n, c in summary.get("control",
                                      {}).items()}  # fmt: skip
    cols, rows = 4, -(-len(panels) // 4)
    fig, axes = study.pyplot().subplots(rows, cols, figsize=(13.6, 3.0 * rows), squeeze=False)
    for ax, (name, a) in zip(axes.flat, panels.items(), strict=False):
        x, cur = np.log10(a["lrs"]), summary.get("current", {}).get(name)
        for arm, style in ((a, "C0"), (cur, "C2")):
            if arm is not None:
                star = np.log10(np.array(arm["lambda_star"], float))
                plots.band(ax, x, star, color=style)
                ax.plot(np.broadcast_to(x, star.shape).T, star.T, ".", color=style, ms=2)
        if a.get("predicted") is not None or a.get("predicted_slope") is not None:
            p, m = a.get("predicted", a.get("predicted_slope")), np.nanmean(star)
            ax.plot(x, m + p * (x - x.mean()), "k--", lw=1)
        ax.set(xlabel="log10 η", ylabel="log10 λ*", title=name)
    [ax.axis("off") for ax in list(axes.flat)[len(panels):]]
    fig.suptitle("λ* against η, 95 % t bands over replicates: exact design (blue), current "
                 "design (green), slope predicted by the map (dashed, through the mean)")
    return fig


def write_up(summary: dict) -> str:
    """What it shows: RULES applied to ``summary``, numbers from it."""
    v, ctl, d = summary["slope_verdicts"], summary.get("control", {}), summary.get("delta_slope")
    f = lambda x: prose.ci(*x, 2)  # noqa: E731
    out = [f"**Positive control: {'passed' if summary.get('control_passed') else 'failed'}.** "
           + "; ".join(f"{n}: slope {f(c['slope'])} (grid sheared at {prose.num(c['grid_slope'], 1)}"
                       f", predicted {prose.num(c['predicted'], 0)})" for n, c in ctl.items())]
    for verdict in ("agrees", "disagrees", "inconclusive"):
        names = [f"{n} {f(x['slope'])} (predicted {prose.num(x['predicted'], 0)})"
                 for n, x in v.items() if x["verdict"] == verdict]  # fmt: skip
        out.append(f"**{verdict.capitalize()}** (rule: ±0.1): {prose.join(names) or 'none'}.")
    if d:
        out.append("**What changed from the previous verdict, and why.** The previous design "
                   "trained the head, its bias and the BN scale/offset at η, outside the map, and "
                   "Adam had ε = 1e-8. Δslope (exact − current, paired): " + "; ".join(
                   f"{n} {f(x)}" for n, x in d.items()) + ".")  # fmt: skip
    return "\n\n".join(out)


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
