"""Does the best λ move with the learning rate as the exact scale symmetry of BatchNorm predicts?

Claim: with decoupled weight decay the best λ no longer depends on the learning rate, while with
L2 it moves with it (Loshchilov & Hutter 2019, "Decoupled weight decay regularization", Fig. 2).
With BatchNorm after a kernel, the exact map of :mod:`wdjax.analysis.symmetry` predicts
log λ*(η) = a·log η + const, a = −1 (ηλ invariant), −2 (adam+l2) or 0 (wd_paper).

Command: ``python experiments/decoupling.py`` (``--smoke``, ``--pilot --out DIR``,
``--anchors-from DIR/pilot.json``, ``--variant current``); 20.7 minutes (pilot 93 s) on 2 cores.
Verdict (last full run): reproduced in kind, contradicted in exact value (5 of 7 BN slopes
0.1–0.2 above their prediction). Rules: :func:`get_config`; write-up: docs/studies/decoupling.md.
"""

import dataclasses
import os

import numpy as np

from wdjax import Sheared, files, schedules, study
from wdjax.analysis import plots, selection, stats, tables
from wdjax.analysis.symmetry import SCALE_MAPS, predicted_slope
from wdjax.engine.models import MLP
from wdjax.errors import ConfigError
from wdjax.study import replicates

BN_ARMS = tuple(SCALE_MAPS)  # the 7 (optimizer, reg) pairs with a tested map
PLAIN_ARMS = (("adam", "l2"), ("adam", "wd"), ("adam", "wd_paper"))
LR_RANGES = {"sgd": (1e-3, 1.0), "momentum": (1e-4, 1e-1), "adam": (3e-5, 3e-2)}
ANCHORS = {  # arm: λ_c at η₀ of the study (BN: pilot 2's centre_lines; else pilot 1), of the pilot
    "sgd+l2+bn": (5.7, 10.0), "momentum+l2+bn": (11.0, 10.0), "momentum+wd+bn": (130.0, 300.0),
    "momentum+wd_paper+bn": (0.21, 0.03), "adam+l2+bn": (230.0, 100.0),
    "adam+wd+bn": (300.0, 300.0), "adam+wd_paper+bn": (0.32, 0.03), "adam+l2": (3e-3, 10**-3.5),
    "adam+wd": (1.0, 10**0.5), "adam+wd_paper": (1e-3, 10**-4.5),
}  # fmt: skip
PLAIN_SLOPES = {"adam+l2": 0.5, "adam+wd": 0.0, "adam+wd_paper": 1.0}  # BN: predicted_slope
MAX_HALF_WIDTH = 0.3  # an interval wider than ±0.3 decides nothing
VARIANTS = ("current",)  # the design of the last full run; the next issue adds its own
RULES = dict(
    estimator="per (arm, η, replicate) λ* is the vertex of the parabola in log λ through the "
    "final validation loss at the grid minimum and its neighbours; a minimum at an end of the "
    "grid or next to a diverged value is an edge cell, left out",
    slope="least squares of log10 λ* on log10 η per replicate (≥ 3 non-edge lrs); Student t "
    "over replicates, beside the percentile bootstrap (2,000 draws, seed 0)",
    verdict="agrees when the t-interval contains the predicted slope, disagrees when it excludes "
    "it (study.verdict with ref = the prediction); inconclusive when its half-width > 0.3",
    equilibrium="total shrink λ*·Σ_t η_t at the optimum should be ≳ 2",
    separability="λ tuned on validation at η₀ reused at every η (interpolated in log λ, clamped "
    "and flagged beyond the grid): test-loss regret paired by replicate",
)


def get_config() -> dict:
    """The full study: 10 arms × 7 lrs × 13 (BN) or 7 relative λ, 5 replicates, 690 steps."""
    arms = [(o, r, True) for o, r in BN_ARMS] + [(o, r, False) for o, r in PLAIN_ARMS]
    return dict(dataset="fashion_mnist", train_size=3000, val_size=10000,
                epochs=30, eval_every=30, arms=arms, n_lr=7, rel_bn=rel_grid(4, 6),
                rel_plain=rel_grid(2, 3), replicates=5, selected_by="val_loss", rules=RULES,
                variant=study.option("current", f"the design: one of {', '.join(VARIANTS)}"),
                pilot=study.option(False, "run the pilot (1 replicate, 3 lrs, wide grids)"),
                anchors_from=study.option(None, "pilot.json: its centre lines", parse=str),
    )  # fmt: skip


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


def agreement(predicted, lo, hi, max_half: float = MAX_HALF_WIDTH) -> str:
    """agrees / disagrees / inconclusive (RULES' verdict); no prediction: 'no prediction'."""
    v = None if predicted is None else study.verdict((lo, hi), ref=predicted)
    if v is None or (hi - lo) / 2 > max_half or v == "undefined":
        return "no prediction" if v is None else "inconclusive"
    return "agrees" if v == study.NO_DIFFERENCE else "disagrees"


def model(bn: bool, config, num_classes: int):
    """The MLP; with BatchNorm ε = 0, so the BN-preceded kernels are exactly scale-invariant."""
    return MLP(num_classes, config.hidden, batchnorm=True, bn_epsilon=0.0) if bn else "mlp"


def shrink(opt, reg, lam, lr, lr_sum_unit, momentum=0.9):
    """Total shrink of the decayed kernels at λ (``lr_sum_unit`` = Σ_t η(t), the multiplier)."""
    factor = 1 / (1 - momentum) if (opt, reg) == ("momentum", "l2") else 1.0
    return (lam * lr_sum_unit if reg == "wd_paper" else None if (opt, reg) == ("adam", "l2")
            else lam * lr * lr_sum_unit * factor)  # fmt: skip


def analyse(opt, reg, bn, cfg, vals) -> tuple[dict, np.ndarray]:
    """Per-replicate λ*, edges, slopes, intervals, verdict, shrink, reuse of λ(η₀)."""
    val, tx, lrs = vals["val_loss"], cfg.optimizer, np.asarray(cfg.lrs)
    grid = np.log10(np.asarray(cfg.strengths))[:, None] + np.log10(tx.centre(lrs))[None, :]
    (R, _, L), eta = val.shape, schedules.make("cosine", tx.steps_per_epoch, tx.epochs)
    star = np.array([[selection.vertex(grid[:, j], val[i, :, j])[0] for j in range(L)]
                     for i in range(R)])  # fmt: skip
    slopes = np.array([selection.fit_slope(np.log10(lrs), row) for row in star])
    ok, pred = slopes[np.isfinite(slopes)], predicted_slope(opt, reg) if bn else None
    s, boot = stats.describe(ok), stats.bootstrap_mean_interval(ok)
    unit = float(np.sum(np.asarray(eta(np.arange(tx.steps_per_epoch * tx.epochs)), float)))
    geo = [np.nanmean(c) if np.isfinite(c).any() else np.nan for c in star.T]
    arm = dict(optimizer=opt, reg=reg, batchnorm=bn, predicted_slope=pred, centre_slope=tx.slope,
        lambda_anchor=tx.lam_anchor, anchor_lr=tx.lr_anchor, lrs=lrs.tolist(),
        rel_strengths=list(cfg.strengths), lambda_star=[[None if np.isnan(v) else float(10**v)
        for v in row] for row in star], edge=np.isnan(star).tolist(),
        edge_cells=int(np.isnan(star).sum()), slopes=slopes.tolist(),
        **replicates.summarize("slope", ok), slope_n=int(s.n), slope_boot_lo=boot[0],
        slope_boot_hi=boot[1], half_width=float((s.hi - s.lo) / 2),
        verdict=agreement(pred, s.lo, s.hi), shrink=[None if np.isnan(g) else
        shrink(opt, reg, 10**g, lr, unit) for g, lr in zip(geo, lrs, strict=True)],
        best_val_loss=np.nanmean(np.min(val, axis=1), axis=0).tolist())  # fmt: skip
    return dict(arm, **reuse(grid, val, vals["test_loss"], L // 2)), star


def reuse(log_grid, val, test, ref: int) -> dict:
    """λ tuned at lr index ``ref`` reused at every lr (interpolated in log λ, flagged ``off_grid``
    beyond the grid): regret = loss there − loss at that lr's own tuned λ, paired by replicate."""
    R, _, L = val.shape
    at = [log_grid[stats.argmin(val[i, :, ref]), ref] for i in range(R)]
    rows, own_test = [], []
    for j in range(L):
        own, g = [stats.argmin(val[i, :, j]) for i in range(R)], log_grid[:, j]
        d = {k: [np.interp(at[i], g, v[i, :, j]) - v[i, own[i], j] for i in range(R)]
             for k, v in (("test_regret", test), ("val_regret", val))}  # fmt: skip
        rows.append(dict(lr_index=j, off_grid=not all(g[0] <= a <= g[-1] for a in at),
                         **{k + q: x for k, v in d.items() for q, x in
                            replicates.summarize("", v).items()}))  # fmt: skip
        own_test.append(float(np.mean([test[i, own[i], j] for i in range(R)])))
    return dict(reuse=rows, test_loss=own_test)


def plot(arms: dict, stars: dict):
    n, cols, nrows = len(arms), min(len(arms), 4), -(-len(arms) // 4)
    fig, axes = study.pyplot().subplots(nrows, cols, figsize=(3.4 * cols, 3.0 * nrows),
                                        squeeze=False)  # fmt: skip
    for ax, (name, a) in zip(axes.flat, arms.items(), strict=False):
        x, star, rel = np.log10(a["lrs"]), stars[name], np.log10(a["rel_strengths"])
        ax.plot(np.broadcast_to(x, star.shape).T, star.T, ".", color="0.6", ms=3)
        plots.band(ax, x, star, label=f"measured {a['slope_mean']:+.2f}")
        lc = np.log10(a["lambda_anchor"]) + a["centre_slope"] * (x - np.log10(a["anchor_lr"]))
        if a["predicted_slope"] is not None:
            ax.plot(x, lc, "k--", lw=1, label=f"predicted {a['predicted_slope']:+.0f}")
        ax.fill_between(x, lc + rel.min(), lc + rel.max(), color="C1", alpha=0.1)
        ax.set(xlabel="log10 lr", ylabel="log10 λ*", title=f"{name}: {a['verdict']}")
        ax.legend(fontsize=7)
    [ax.axis("off") for ax in list(axes.flat)[n:]]
    fig.suptitle("λ* against lr: 95 % t bands over replicates (grey), the sheared λ grid shaded")
    fig.tight_layout()
    return fig


COLUMNS = ["arm", "predicted slope", "measured slope [95 % t]", "bootstrap 95 %", "verdict",
           "edge cells", "shrink at η₀", "mean test loss at η₀",
           "reuse λ(η₀) at the lowest lr: Δ test loss", "at the highest lr"]  # fmt: skip


def table_row(name: str, a: dict) -> list:
    """A reused λ's test-loss regret: "diverges" (+inf), "≥" beyond the grid (a lower bound)."""
    pred, j0, sh = a["predicted_slope"], a["lrs"].index(a["anchor_lr"]), a["shrink"]
    reuse = ["diverges" if not np.isfinite(r["test_regret_mean"]) else "≥ " * r["off_grid"]
             + study.fmt_ci(r["test_regret_mean"], r["test_regret_lo"], r["test_regret_hi"], 3)
             for r in (a["reuse"][0], a["reuse"][-1])]  # fmt: skip
    return [name, "—" if pred is None else f"{pred:+.0f}",
            study.fmt_ci(a["slope_mean"], a["slope_lo"], a["slope_hi"], 2) + f" (n={a['slope_n']})",
            f"[{a['slope_boot_lo']:+.2f}, {a['slope_boot_hi']:+.2f}]", a["verdict"],
            f"{a['edge_cells']} of {len(a['edge']) * len(a['lrs'])}", "—" if sh[j0] is None
            else f"{sh[j0]:.3g}", f"{a['test_loss'][j0]:.3f}", *reuse]  # fmt: skip


def centre_lines(pilot_out: dict) -> dict:
    """Pilot 2 -> {arm: (λ_c at η₀, slope)}: its λ* at η₀, else its other λ* carried along the
    slope (geometric mean), else its centre (2 digits); the arms without BN keep :data:`ANCHORS`."""
    out = {k: (ANCHORS[k][0], PLAIN_SLOPES[k]) for k in PLAIN_SLOPES}
    for name, p in pilot_out.items():
        x, y = np.log10(p["lrs"]), np.log10(np.asarray(p["lambda_star"], float))
        ok = np.isfinite(y)
        lam = (10 ** y[1] if ok[1] else 10 ** np.mean(y[ok] - slope(name) * (x[ok] - x[1]))
               if ok.any() else ANCHORS[name][1])  # fmt: skip
        out[name] = (float(f"{lam:.2g}"), slope(name))
    return out


def sweep_arms(ctx, lines: dict, lr_points=None, rel=None, replicates=None) -> dict:
    """{arm: (SweepConfig, {val_loss, test_loss: [R, r, lr]})} by ``ctx.sweeps``; diverged +inf."""
    cfg, k, ds, configs = ctx.config, ctx.knobs, study.load_data(ctx.config), {}
    for opt, reg, bn in k["arms"]:
        name, lrs = f"{opt}+{reg}" + "+bn" * bn, np.geomspace(*LR_RANGES[opt], k["n_lr"])
        tx = Sheared(opt, reg, lines[name][0], float(lrs[len(lrs) // 2]), lines[name][1],
                     len(ds.x_train) // cfg.batch_size, cfg.epochs)  # fmt: skip
        lrs = lrs if lr_points is None else lrs[lr_points]
        configs[name] = (f"{name}_c{tx.lam_anchor:g}", dataclasses.replace(cfg, optimizer=tx,
            model=model(bn, cfg, ds.num_classes), batchnorm=bn, lrs=tuple(lrs.tolist()),
            strengths=rel or k["rel_bn" if bn else "rel_plain"]))  # fmt: skip
    res = ctx.sweeps(dict(configs.values()), replicates)
    return {name: (c, {key: np.stack([np.where(tables.diverged_members(r.history), np.inf,
        r.history[key][:, -1]).astype(float).reshape(len(c.strengths), len(c.lrs), -1).mean(-1)
        for r in res[folder]]) for key in ("val_loss", "test_loss")})
        for name, (folder, c) in configs.items()}  # fmt: skip


def run(ctx: study.Context) -> study.Report:
    """Every arm × replicate (resumable), then slopes, verdicts, reuse; ``--pilot``: 1 replicate,
    3 lrs of each BN arm on wide grids, λ* to ``<out>/pilot.json`` for ``--anchors-from``."""
    k, kw = ctx.knobs, {}
    if k["variant"] not in VARIANTS:
        raise ConfigError(f"--variant: give one of {', '.join(VARIANTS)}, got {k['variant']!r}")
    if k["pilot"] and os.path.normpath(ctx.out) == os.path.join("results", "studies", ctx.name):
        raise ConfigError("--pilot: pass --out DIR so the pilot leaves the study's results alone")
    lines = {n: (lam, slope(n)) for n, (lam, _) in ANCHORS.items()}
    if k["pilot"]:
        lines, k["arms"] = {n: (p, slope(n, True)) for n, (_, p) in ANCHORS.items()}, [
            a for a in k["arms"] if a[2]]  # fmt: skip
        kw = dict(lr_points=[0, k["n_lr"] // 2, -1], rel=rel_grid(2, 1 if ctx.smoke else 7),
                  replicates=1)  # fmt: skip
    elif k["anchors_from"] is not None:
        lines = centre_lines(files.read_json(k["anchors_from"]))
    arms, stars = {}, {}
    for (opt, reg, bn), (name, (cfg, vals)) in zip(k["arms"], sweep_arms(ctx, lines, **kw).items(),
                                                   strict=True):  # fmt: skip
        arms[name], stars[name] = analyse(opt, reg, bn, cfg, vals)
    if k["pilot"]:
        files.write_json(os.path.join(ctx.out, "pilot.json"), {n: dict(lrs=a["lrs"],
                         lambda_star=a["lambda_star"][0]) for n, a in arms.items()})  # fmt: skip
    by = {v.removesuffix("s"): [n for n, a in arms.items() if a["verdict"] == v]
          for v in ("agrees", "disagrees", "inconclusive")}  # fmt: skip
    summary = dict(arms=arms, **by, estimator=RULES["estimator"],
                   steps=cfg.optimizer.steps_per_epoch * cfg.epochs, epochs=ctx.config.epochs,
                   train_size=ctx.config.train_size, variant=k["variant"])  # fmt: skip
    return study.Report(summary, COLUMNS, [table_row(n, a) for n, a in arms.items()],
                        plot(arms, stars))  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
