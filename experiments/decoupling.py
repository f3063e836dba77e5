"""Does the best λ move with the learning rate as the exact scale symmetry of BatchNorm predicts?

Claim: with decoupled weight decay the best λ no longer depends on the learning rate, while with
L2 it moves with it (Loshchilov & Hutter 2019, "Decoupled weight decay regularization", Fig. 2).
The prediction per (optimizer, strategy) is the exact map of :mod:`wdjax.analysis.symmetry`:
with BatchNorm after a kernel, log λ*(η) = a·log η + const, a = −1 (ηλ invariant), −2 (adam+l2)
or 0 (wd_paper: L&H's decoupling).

Command: ``python experiments/decoupling.py`` (``--smoke``: digits, seconds; ``--pilot --out
DIR``: the pilot; ``--anchors-from DIR/pilot.json``; ``--variant current``: today's design).
Runtime: 20.7 minutes (plus 93 s for the pilot) on the 2-core machine. Interrupted, the same
command resumes by arm.

Verdict (last full run): reproduced in kind, contradicted in exact value (5 of 7 BN slopes
0.1–0.2 above their prediction).

Design, estimator and rules in :func:`get_config` (write-up: docs/studies/decoupling.md). The
rewrite on :mod:`wdjax.study` runs the same programs and seeds; arms are named with their anchor
λ (``adam+wd+bn_c300``) and the figure is ``decoupling.png``.
"""

import dataclasses
import os

import numpy as np

from wdjax import Sheared, files, schedules, study
from wdjax.analysis import stats, tables
from wdjax.analysis.symmetry import SCALE_MAPS, predicted_slope
from wdjax.engine.models import MLP
from wdjax.errors import ConfigError
from wdjax.study import replicates

BN_ARMS = tuple(SCALE_MAPS)  # the 7 (optimizer, reg) pairs with a tested map
PLAIN_ARMS = (("adam", "l2"), ("adam", "wd"), ("adam", "wd_paper"))
LR_RANGES = {"sgd": (1e-3, 1.0), "momentum": (1e-4, 1e-1), "adam": (3e-5, 3e-2)}
ANCHORS = {  # λ_c at η₀: BN, centre_lines(pilot 2); without BN, pilot 1 by eye
    "sgd+l2+bn": 5.7, "momentum+l2+bn": 11.0, "momentum+wd+bn": 130.0,
    "momentum+wd_paper+bn": 0.21, "adam+l2+bn": 230.0, "adam+wd+bn": 300.0,
    "adam+wd_paper+bn": 0.32, "adam+l2": 3e-3, "adam+wd": 1.0, "adam+wd_paper": 1e-3,
}  # fmt: skip
PLAIN_SLOPES = {"adam+l2": 0.5, "adam+wd": 0.0, "adam+wd_paper": 1.0}
PILOT = {  # the pilot's grids: λ_c at η₀ and the centre line's slope; ±3.5 decades, 2 per decade
    "sgd+l2+bn": (10.0, -1.0), "momentum+l2+bn": (10.0, -1.0), "momentum+wd+bn": (300.0, -1.0),
    "momentum+wd_paper+bn": (0.03, 0.0), "adam+l2+bn": (100.0, -2.0),
    "adam+wd+bn": (300.0, -1.0), "adam+wd_paper+bn": (0.03, 0.0), "adam+l2": (10**-3.5, 0.0),
    "adam+wd": (10**0.5, 0.0), "adam+wd_paper": (10**-4.5, 0.0),
}  # fmt: skip
MAX_HALF_WIDTH = 0.3  # an interval wider than ±0.3 decides nothing
BOOT_DRAWS = 2000
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


def arm_name(opt: str, reg: str, bn: bool) -> str:
    return f"{opt}+{reg}" + ("+bn" if bn else "")


def variant(text: str) -> str:
    """The ``--variant`` option's parser: one of :data:`VARIANTS`."""
    if text not in VARIANTS:
        raise ValueError(text)
    return text


def get_config() -> dict:
    """The full study: 10 arms × 7 lrs × 13 (BN) or 7 relative λ, 5 replicates, 690 steps."""
    arms = [(o, r, True) for o, r in BN_ARMS] + [(o, r, False) for o, r in PLAIN_ARMS]
    return dict(dataset="fashion_mnist", mask="hidden", train_size=3000, val_size=10000,
                epochs=30, eval_every=30, arms=arms, n_lr=7, rel_bn=rel_grid(4, 6),
                rel_plain=rel_grid(2, 3), replicates=5, selected_by="val_loss", rules=RULES,
                variant=study.option("current", "the design: current (today's)", parse=variant),
                pilot=study.option(False, "run the pilot (1 replicate, 3 lrs, wide grids)"),
                anchors_from=study.option(None, "centre lines from a pilot.json", parse=str),
    )  # fmt: skip


def smoke(config: dict) -> dict:
    """The tiny version: digits, adam+wd+bn, 3 lrs × 3 λ, 2 epochs, 2 replicates."""
    return dict(dataset="digits", train_size=None, val_size=400, epochs=2, eval_every=2,
                arms=[("adam", "wd", True)], n_lr=3, rel_bn=rel_grid(4, 1),
                rel_plain=rel_grid(2, 1), replicates=2)  # fmt: skip


def rel_grid(per_decade: int, half: int) -> tuple[float, ...]:
    """r = 10^(k/per_decade), k = −half … half: the grid relative to the centre line."""
    return tuple(10.0 ** (k / per_decade) for k in range(-half, half + 1))


def lr_grid(opt: str, n: int) -> np.ndarray:
    return np.geomspace(*LR_RANGES[opt], n)


def vertex(log_lam, loss) -> tuple[float, bool]:
    """(log λ* at the vertex of the parabola through the grid minimum and its neighbours, edge)
    of one loss curve over the grid ``log_lam``. Non-finite losses count as +inf; a minimum at an
    end, or next to a non-finite value, is an edge: (NaN, True)."""
    x, y = np.asarray(log_lam, float), np.asarray(loss, float)
    y = np.where(np.isfinite(y), y, np.inf)
    i = int(np.argmin(y))
    if not 0 < i < len(y) - 1 or not np.all(np.isfinite(y[i - 1 : i + 2])):
        return float("nan"), True
    (x0, x1, x2), (y0, y1, y2) = x[i - 1 : i + 2], y[i - 1 : i + 2]
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)  # > 0: y0 > y1 ≤ y2 (first minimum)
    return float(x1 - 0.5 * num / den), False


def fit_slope(log_lr, log_lam, min_points: int = 3) -> float:
    """Least-squares slope of ``log_lam`` on ``log_lr`` over the finite points (NaN if fewer
    than ``min_points``)."""
    x, y = np.asarray(log_lr, float), np.asarray(log_lam, float)
    ok = np.isfinite(y)
    if ok.sum() < min_points:
        return float("nan")
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def bootstrap_interval(x, draws: int = BOOT_DRAWS, seed: int = 0) -> tuple[float, float]:
    """Percentile 95 % interval of the mean of ``x`` (finite values), resampled with replacement."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(draws, x.size))
    lo, hi = np.percentile(x[idx].mean(axis=1), [2.5, 97.5])
    return float(lo), float(hi)


def agreement(predicted, lo, hi, max_half: float = MAX_HALF_WIDTH) -> str:
    """agrees / disagrees / inconclusive (RULES' verdict); no prediction: 'no prediction'."""
    if predicted is None:
        return "no prediction"
    if (hi - lo) / 2 > max_half or study.verdict((lo, hi), ref=predicted) == "undefined":
        return "inconclusive"
    return (
        "agrees" if study.verdict((lo, hi), ref=predicted) == study.NO_DIFFERENCE else "disagrees"
    )


def interp_loss(log_lam, loss, at) -> tuple[float, bool]:
    """(loss linearly interpolated in log λ at ``at``, off-grid): beyond the grid the end value
    (a lower bound if the loss keeps rising), flagged."""
    x, y = np.asarray(log_lam, float), np.asarray(loss, float)
    off = not x[0] <= at <= x[-1]
    return float(np.interp(at, x, y)), off


def model(bn: bool, config, num_classes: int):
    """The MLP; with BatchNorm ε = 0, so the BN-preceded kernels are exactly scale-invariant."""
    if not bn:
        return "mlp"
    return MLP(num_classes, config.hidden, batchnorm=True, bn_epsilon=0.0)


def shrink(opt, reg, lam, lr, lr_sum_unit, momentum=0.9):
    """Total shrink of the decayed kernels at λ (``lr_sum_unit`` = Σ_t η(t), the multiplier)."""
    if reg == "wd_paper":
        return lam * lr_sum_unit
    if (opt, reg) == ("adam", "l2"):
        return None
    factor = 1 / (1 - momentum) if (opt, reg) == ("momentum", "l2") else 1.0
    return lam * lr * lr_sum_unit * factor


def analyse(opt, reg, bn, lrs, lr0, tx, vals, rel, steps):
    """Per-replicate λ*, edges, slopes, intervals, verdict, shrink, reuse of λ(η₀)."""
    val, test = vals["val_loss"], vals["test_loss"]  # [R, r, L]
    R, _, L = val.shape
    log_lr = np.log10(lrs)
    log_grid = np.log10(np.asarray(rel))[:, None] + np.log10(tx.centre(lrs))[None, :]  # [r, L]
    star = np.full((R, L), np.nan)
    edge = np.zeros((R, L), bool)
    for i in range(R):
        for j in range(L):
            star[i, j], edge[i, j] = vertex(log_grid[:, j], val[i, :, j])
    slopes = np.array([fit_slope(log_lr, star[i]) for i in range(R)])
    ok = slopes[np.isfinite(slopes)]
    s = stats.describe(ok)
    boot = bootstrap_interval(ok)
    pred = predicted_slope(opt, reg) if bn else None
    eta = schedules.make("cosine", steps // tx.epochs, tx.epochs)
    unit = float(np.sum(np.asarray(eta(np.arange(steps)), float)))
    geo = np.array([np.nanmean(star[:, j]) if np.isfinite(star[:, j]).any() else np.nan
                    for j in range(L)])  # fmt: skip
    arm = dict(
        optimizer=opt, reg=reg, batchnorm=bn, predicted_slope=pred, centre_slope=tx.slope,
        lambda_anchor=tx.lam_anchor, anchor_lr=lr0, lrs=lrs.tolist(), rel_strengths=list(rel),
        lambda_star=[[None if np.isnan(v) else float(10**v) for v in row] for row in star],
        edge=edge.tolist(), edge_cells=int(edge.sum()), slopes=slopes.tolist(),
        slope_mean=float(s.mean), slope_std=float(s.std), slope_lo=float(s.lo),
        slope_hi=float(s.hi), slope_n=int(s.n), slope_boot_lo=boot[0], slope_boot_hi=boot[1],
        half_width=float((s.hi - s.lo) / 2), verdict=agreement(pred, s.lo, s.hi),
        shrink=[None if np.isnan(g) else shrink(opt, reg, 10**g, lr, unit)
                for g, lr in zip(geo, lrs, strict=True)],
        best_val_loss=np.nanmean(np.min(val, axis=1), axis=0).tolist(),
    )  # fmt: skip
    arm.update(reuse(log_grid, val, test, L // 2))
    return arm, star


def reuse(log_grid, val, test, ref: int) -> dict:
    """λ tuned on validation at lr index ``ref`` (grid argmin, per replicate) reused at every lr:
    regret = loss there − loss at that lr's own validation-tuned λ, paired by replicate."""
    R, _, L = val.shape
    rows, own_test = [], []
    for j in range(L):
        d_test, d_val, off = [], [], False
        for i in range(R):
            at = log_grid[stats.argmin(val[i, :, ref]), ref]
            own = stats.argmin(val[i, :, j])
            v, o = interp_loss(log_grid[:, j], val[i, :, j], at)
            t, _ = interp_loss(log_grid[:, j], test[i, :, j], at)
            off |= o
            d_val.append(v - val[i, own, j])
            d_test.append(t - test[i, own, j])
        own_test.append(np.mean([test[i, stats.argmin(val[i, :, j]), j] for i in range(R)]))
        row = dict(lr_index=j, off_grid=off)
        row.update(replicates.summarize("test_regret", d_test))
        row.update(replicates.summarize("val_regret", d_val))
        rows.append(row)
    return dict(reuse=rows, test_loss=[float(x) for x in own_test])


def plot(arms: dict, stars: dict):
    plt = study.pyplot()
    n = len(arms)
    cols = min(n, 4)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 3.0 * nrows), squeeze=False)
    for ax, (name, a) in zip(axes.flat, arms.items(), strict=False):
        x = np.log10(a["lrs"])
        star = stars[name]
        for row in star:
            ax.plot(x, row, ".", color="0.6", ms=3)
        d = stats.describe(np.where(np.isfinite(star), star, np.nan), axis=0)
        ax.errorbar(x, d.mean, yerr=[d.mean - d.lo, d.hi - d.mean], fmt="o-", ms=3, capsize=2,
                    label=f"measured {a['slope_mean']:+.2f}")  # fmt: skip
        lc = np.log10(a["lambda_anchor"]) + a["centre_slope"] * (x - np.log10(a["anchor_lr"]))
        if a["predicted_slope"] is not None:
            ax.plot(x, lc, "k--", lw=1, label=f"predicted {a['predicted_slope']:+.0f}")
        ax.fill_between(x, lc + np.log10(min(a["rel_strengths"])),
                        lc + np.log10(max(a["rel_strengths"])), color="C1", alpha=0.1)  # fmt: skip
        ax.set_title(f"{name}: {a['verdict']}", fontsize=9)
        ax.set(xlabel="log10 lr", ylabel="log10 λ*")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("λ* (vertex of validation loss) against lr; bars: 95 % t-intervals over "
                 "replicates; grey: replicates; shaded: the sheared λ grid")  # fmt: skip
    fig.tight_layout()
    return fig


def fmt_reuse(row: dict) -> str:
    """A reuse row's test-loss regret: mean [95 % t]; "diverges" where the reused λ diverged in
    a replicate (regret +inf); "≥" where it lay beyond the grid (a lower bound)."""
    if not np.isfinite(row["test_regret_mean"]):
        return "diverges"
    ci = study.fmt_ci(row["test_regret_mean"], row["test_regret_lo"], row["test_regret_hi"], 3)
    return ("≥ " if row["off_grid"] else "") + ci


def table_row(name: str, a: dict) -> list:
    pred = "—" if a["predicted_slope"] is None else f"{a['predicted_slope']:+.0f}"
    j0 = a["lrs"].index(a["anchor_lr"])
    sh = a["shrink"][j0]
    return [name, pred,
            study.fmt_ci(a["slope_mean"], a["slope_lo"], a["slope_hi"], 2) + f" (n={a['slope_n']})",
            f"[{a['slope_boot_lo']:+.2f}, {a['slope_boot_hi']:+.2f}]", a["verdict"],
            f"{a['edge_cells']} of {len(a['edge']) * len(a['lrs'])}",
            "—" if sh is None else f"{sh:.3g}", f"{a['test_loss'][j0]:.3f}",
            fmt_reuse(a["reuse"][0]), fmt_reuse(a["reuse"][-1])]  # fmt: skip


COLUMNS = ["arm", "predicted slope", "measured slope [95 % t]", "bootstrap 95 %", "verdict",
           "edge cells", "shrink at η₀", "mean test loss at η₀",
           "reuse λ(η₀) at the lowest lr: Δ test loss", "at the highest lr"]  # fmt: skip


def centre_lines(pilot_out: dict) -> dict:
    """The rule that turns pilot 2 into the BN arms' grids: {arm: (λ_c at η₀, predicted slope)}
    with λ_c the pilot's λ* at η₀ when interior, else the geometric mean of its other finite λ*
    carried to η₀ along the predicted slope, else the pilot's centre (2 significant digits).
    The arms without BN keep :data:`ANCHORS` and :data:`PLAIN_SLOPES` (from pilot 1)."""
    out = {k: (ANCHORS[k], PLAIN_SLOPES[k]) for k in PLAIN_SLOPES}
    for name, p in pilot_out.items():
        opt, reg, *_ = name.split("+")
        slope = predicted_slope(opt, reg)
        x, y = np.log10(p["lrs"]), np.log10(np.asarray(p["lambda_star"], float))
        if np.isfinite(y[1]):
            lam = 10 ** y[1]
        elif np.isfinite(y).any():
            ok = np.isfinite(y)
            lam = 10 ** np.mean(y[ok] - slope * (x[ok] - x[1]))
        else:
            lam = PILOT[name][0]
        out[name] = (float(f"{lam:.2g}"), slope)
    return out


def arm_configs(ctx, lines: dict, lr_points=None, rel=None) -> dict:
    """{arm folder: SweepConfig} of every arm: the sheared factory, the model, lrs and r grid."""
    cfg, k = ctx.config, ctx.knobs
    ds = study.load_data(cfg)
    out = {}
    for opt, reg, bn in k["arms"]:
        name, lrs = arm_name(opt, reg, bn), lr_grid(opt, k["n_lr"])
        lam0, slope = lines[name]
        tx = Sheared(opt, reg, lam0, float(lrs[len(lrs) // 2]), slope,
                     len(ds.x_train) // cfg.batch_size, cfg.epochs)  # fmt: skip
        lrs = lrs if lr_points is None else lrs[lr_points]
        out[f"{name}_c{lam0:g}"] = dataclasses.replace(
            cfg, optimizer=tx, model=model(bn, cfg, ds.num_classes), batchnorm=bn,
            lrs=tuple(lrs.tolist()), strengths=rel or k["rel_bn" if bn else "rel_plain"],
        )  # fmt: skip
    return out


def losses(res) -> dict:
    """{val_loss, test_loss: [r, lr]} of one sweep (means over seeds), diverged members +inf."""
    c, out = res.config, {}
    for key in ("val_loss", "test_loss"):
        v = np.asarray(res.history[key][:, -1], float)
        v = np.where(tables.diverged_members(res.history), np.inf, v)
        out[key] = v.reshape(len(c.strengths), len(c.lrs), c.seeds).mean(-1)
    return out


def run(ctx: study.Context) -> study.Report:
    """Every arm × replicate (resumable), then each arm's slope, verdict and reuse regret."""
    k = ctx.knobs
    if k["pilot"]:
        return pilot(ctx)
    lines = ({n: (ANCHORS[n], predicted_slope(*n.split("+")[:2]) if n.endswith("+bn")
              else PLAIN_SLOPES[n]) for n in ANCHORS} if k["anchors_from"] is None
             else centre_lines(files.read_json(k["anchors_from"])))  # fmt: skip
    configs = arm_configs(ctx, lines)
    results = ctx.sweeps(configs)
    arms, stars = {}, {}
    for (opt, reg, bn), (folder, cfg) in zip(k["arms"], configs.items(), strict=True):
        name, tx = arm_name(opt, reg, bn), cfg.optimizer
        vals = {key: np.stack([losses(r)[key] for r in results[folder]]) for key in ("val_loss",
                "test_loss")}  # fmt: skip
        steps = tx.steps_per_epoch * tx.epochs
        arms[name], stars[name] = analyse(opt, reg, bn, np.asarray(cfg.lrs), tx.lr_anchor, tx,
                                          vals, cfg.strengths, steps)  # fmt: skip
        a = arms[name]
        print(f"{name}: slope {a['slope_mean']:+.2f} [{a['slope_lo']:+.2f}, {a['slope_hi']:+.2f}]"
              f" edges {a['edge_cells']}", flush=True)  # fmt: skip
    by = {v: [n for n, a in arms.items() if a["verdict"] == v]
          for v in ("agrees", "disagrees", "inconclusive")}  # fmt: skip
    summary = dict(arms=arms, agree=by["agrees"], disagree=by["disagrees"],
                   inconclusive=by["inconclusive"], estimator=RULES["estimator"], steps=steps,
                   epochs=ctx.config.epochs, train_size=ctx.config.train_size,
                   variant=k["variant"])  # fmt: skip
    return study.Report(summary, COLUMNS, [table_row(n, a) for n, a in arms.items()],
                        plot(arms, stars))  # fmt: skip


def pilot(ctx: study.Context) -> study.Report:
    """One replicate at the first, middle and last lr of each BN arm on :data:`PILOT`'s wide
    grids (±3.5 decades, 2 per decade): λ* per lr, written to ``<out>/pilot.json``."""
    if os.path.normpath(ctx.out) == os.path.join("results", "studies", "decoupling"):
        raise ConfigError("--pilot: pass --out DIR so the pilot leaves the study's results alone")
    ctx.knobs["arms"] = [a for a in ctx.knobs["arms"] if a[2]]  # BN arms (plain: pilot 1)
    rel = rel_grid(2, 1 if ctx.smoke else 7)
    configs = arm_configs(ctx, PILOT, [0, ctx.knobs["n_lr"] // 2, -1], rel)
    results = ctx.sweeps(configs, replicates=1)
    out, rows = {}, []
    for (folder, cfg), res in zip(configs.items(), results.values(), strict=True):
        v, lrs = losses(res[0])["val_loss"], np.asarray(cfg.lrs)
        grid = np.log10(np.asarray(rel))[:, None] + np.log10(cfg.optimizer.centre(lrs))[None, :]
        star = [vertex(grid[:, j], v[:, j])[0] for j in range(3)]
        name = folder.split("_c")[0]
        out[name] = dict(lrs=lrs.tolist(), lambda_star=[10**s for s in star],
                         slope=fit_slope(np.log10(lrs), star, 2), log_grid=grid.tolist(),
                         val_loss=v.tolist())  # fmt: skip
        rows.append([name, *(f"{10**s:.3g}" for s in star), f"{out[name]['slope']:+.2f}"])
    files.write_json(os.path.join(ctx.out, "pilot.json"), out)
    fig, ax = study.pyplot().subplots()
    for name, p in out.items():
        ax.plot(np.log10(p["lrs"]), np.log10(p["lambda_star"]), "o-", label=name)
    ax.set(xlabel="log10 lr", ylabel="log10 λ* (NaN: edge)")
    ax.legend(fontsize=7)
    return study.Report(dict(pilot=out), ["arm", "λ* lowest lr", "middle", "highest", "slope"],
                        rows, fig)  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
