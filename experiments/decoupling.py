"""Does the best λ move with the learning rate as the exact scale symmetry of BatchNorm predicts?

Claim tested: Loshchilov & Hutter (2019, "Decoupled weight decay regularization", Fig. 2): with
decoupled weight decay the best λ no longer depends on the learning rate, while with L2 it moves
with it. Here the prediction for each (optimizer, strategy) comes from the exact map of
:mod:`wdjax.symmetry` (tested in tests/test_scale_symmetry.py), not from memory: with BatchNorm
after a kernel, (η, λ, w₀) → (cη, c^a·λ, c^b·w₀) maps the training trajectory onto itself, so once
the decay has equilibrated (the initial scale forgotten) the best λ follows log λ*(η) = a·log η +
const: a = −1 for sgd+l2, momentum+l2, momentum+wd and adam+wd (ηλ is invariant), −2 for adam+l2
(η²λ), 0 for momentum+wd_paper and adam+wd_paper (λ alone: L&H's decoupling). Verdict:
*reproduced* in kind, *contradicted* in exact value: every measured slope lies on the side of
its prediction's class (coupled ≈ −0.8 … −0.9, decoupled ≈ +0.1 … +0.2), but for 5 of 7 BN arms
the t-interval (half-width ≤ 0.13) excludes the predicted value (each slope 0.1–0.2 above it);
one agrees (momentum+wd_paper) and adam+l2 is inconclusive (its 3 lowest lrs did not train).

Command: ``python experiments/decoupling.py`` (``--smoke``: digits, seconds; ``--pilot``: the
pilot below). Runtime: 1,240 s (20.7 minutes) for the full run plus 93 s for pilot 2, on the
2-core machine, shared with other jobs while it ran (``/usr/bin/time``: 1,840 s user).

Setup: 784 → Dense 64 → BN → ReLU → Dense 64 → BN → ReLU → Dense 10 with BN ε = 0 (so the two
BN-preceded kernels are exactly scale-invariant, as the tested map assumes; Adam keeps ε = 1e-8)
on Fashion-MNIST: 3,000 training images (a small set, so that decay has an optimum above 0 without
BatchNorm too), validation 10,000 other images of the pool, test 10,000, batch 128, 30 epochs =
690 steps, cosine schedule to 0; only the BN-preceded kernels are decayed (``mask="hidden"``: a
decayed head would break the symmetry). The head and the BN scales and offsets also train at η,
so the map is exact for the decayed kernels only: the prediction assumes that the head's
dependence on η does not move λ*. Learning rates: 7 per optimizer, half a decade apart over 3
decades (sgd 1e-3 … 1, momentum (μ = 0.9) 1e-4 … 1e-1, adam 3e-5 … 3e-2); the middle one is the
anchor η₀. λ grid, sheared per learning rate along the predicted line: λ = r·λ_c(η), λ_c(η) =
λ₀·(η/η₀)^a, r = 10^(k/4), k = −6 … 6 (±1.5 decades, 4 per decade, 13 values), λ₀ from the pilot
(:data:`ANCHORS`). One compiled program per arm holds all 7 × 13 (η, r) members: the study's
optimizer factory (:class:`Sheared`) turns a member's r into λ and builds the cosine schedule
itself (the engine's schedule is ``constant``), so the λ grid need not be a product with the lrs.
Without BatchNorm (no symmetry, no prediction; BN ε does not apply) adam+l2, adam+wd and
adam+wd_paper on a coarser grid (r = 10^(k/2), k = −3 … 3) around a line through the pilot's λ*
(slopes +0.5, 0, +1). R = 5 replicates, each with new initial weights, batch order, training
subset and validation split (``data_seed`` + r); every member of a replicate shares them (common
random numbers).

Pilot (before the full run; one replicate at the first, middle and last lr of each arm). Pilot 1
(BN ε = 1e-5, 50 epochs, unsheared grids of 7 decades): with BatchNorm the validation loss is
lowest at strong decay, η·λ ≈ 0.01–0.3 per step (the effective learning rate of the scale-
invariant kernels regularizes the 3,000-image fit), with a cliff of divergence just above; at
the lowest lrs the minimum was above the grid. Adam's equilibrium weight scale is ∝ η (the map's
s = c), so at η = 3e-5 the pre-activation variance fell below ε = 1e-5 and ε broke the symmetry:
hence ε = 0. sgd+l2 without BatchNorm had its minimum at the λ → 0 end at 2 of 3 lrs (1e-3,
3e-2: undertrained, decay never helps) and trained chaotically at lr 1: dropped; the other arms
without BN had a minimum at the middle and highest lr (λ* 2e-3 → 1e-2 for adam+l2, 1 → 1 for
adam+wd, 7e-4 → 3e-2 for adam+wd_paper) and none at the lowest (a plateau: undertrained), which
set their lines. Pilot 2 (the setup above, 93 s; BN arms on grids ±3.5 decades around
:data:`PILOT`'s lines, 2 per decade), λ* at the lowest, middle and highest lr: sgd+l2 122, 5.7,
0.18; momentum+l2 259, 10.7, 0.26; momentum+wd 1,780, 126, edge; momentum+wd_paper 0.21, edge,
edge; adam+l2 edge, 230, 0.71; adam+wd edge, edge, edge; adam+wd_paper 0.32, edge, edge. The
minimum sits at η·λ ≈ 0.1–0.3 per step for the coupled arms (λ ≈ 0.3–1 for wd_paper), one or two
cells below the first diverged value (a decay that wipes a kernel in one step leaves BN with
0/0 at ε = 0): most "edges" are a minimum next to divergence. Adam+l2 at lr 3e-5 did not train
at any λ (validation loss 2.15–2.22): Adam's steps have size ≈ η whatever λ, so shrinking the
unmapped initial kernels (entries ≈ 0.036) to the mapped scale takes ≈ |w₀|/η ≈ 1,200 steps,
more than the run. :func:`centre_lines` (fixed before the full run) turned pilot 2 into
:data:`ANCHORS` (adam+wd: every cell an edge, so the pilot's centre 300).

Estimator, fixed before the full run: per (arm, η, replicate), λ* is the vertex of the parabola
in log λ through the final validation loss at the grid minimum and its two neighbours; a minimum
at an end of the grid, or next to a non-finite (diverged) value, is an *edge cell*: reported and
left out of the fit. The slope per replicate is the least-squares slope of log10 λ* on log10 η
over its non-edge learning rates (at least 3, else that replicate has no slope). The slope's mean
and 95 % interval are Student t over replicates (n − 1 df); beside it the percentile bootstrap
over replicates (2,000 draws, seed 0). Verdict: the slope *agrees* with its prediction when the
t-interval contains it and its half-width is ≤ 0.3, *disagrees* when it excludes it with
half-width ≤ 0.3, and is *inconclusive* otherwise. Equilibrium: the total shrink λ*·Σ_t η_t (sgd
and adam+wd, momentum+wd; ×1/(1 − μ) for momentum+l2; λ*·Σ_t η(t) for wd_paper; not defined for
adam+l2, whose decay passes through Adam's normalization) at the measured optimum should be ≳ 2.
Separability: per arm and replicate, the λ tuned on validation loss at η₀ (grid argmin) reused at
every other η (losses interpolated linearly in log λ on that η's grid; a λ beyond the grid is
clamped to its end, a lower bound on the loss, and flagged), minus the loss at that η's own
validation-tuned λ: test-loss regret paired by replicate, mean and t-interval.
Runtime arithmetic: (7 × 91 + 3 × 49) members × 5 replicates × 690 steps = 2.7 M member-steps at
≈ 0.4 ms (64-64 BN-MLP, batch 128) ≈ 18 minutes, plus one compile per arm.

summary.json keys: ``arms`` {arm: ``optimizer, reg, batchnorm, predicted_slope`` (None without
BN), ``centre_slope``, ``lambda_anchor``, ``anchor_lr``, ``lrs``, ``rel_strengths``,
``lambda_star`` [R][L] (None at edge cells), ``edge`` [R][L], ``edge_cells``, ``slopes`` [R],
``slope_mean, slope_std, slope_lo, slope_hi, slope_n, slope_boot_lo, slope_boot_hi, half_width,
verdict``, ``shrink`` [L] (at the geometric-mean λ* per η; None for adam+l2), ``best_val_loss``
[L], ``test_loss`` [L] (mean at each η's own λ*), ``reuse`` [per η: ``lr_index, off_grid,
test_regret_mean/std/lo/hi, val_regret_mean/std/lo/hi``]}, ``agree``, ``disagree``,
``inconclusive`` (arm lists), ``estimator``, ``steps``, ``epochs``, ``train_size``,
``replicates``, ``selected_by``, ``dataset``, ``figure``, ``command``, ``seconds``.

Measured (Fashion-MNIST, 5 replicates, 690 steps; slopes are mean [95 % t-interval] over
replicates, bootstrap in the table). With BatchNorm: sgd+l2 −0.90 [−0.98, −0.82], momentum+l2
−0.87 [−0.92, −0.81], momentum+wd −0.84 [−0.97, −0.71], adam+wd −0.80 [−0.90, −0.71] (predicted
−1: disagree, by 0.1–0.2); momentum+wd_paper +0.13 [−0.06, +0.32] (predicted 0: agrees);
adam+wd_paper +0.18 [+0.07, +0.28] (predicted 0: disagrees); adam+l2 −1.35 [−1.71, −0.99]
(predicted −2: inconclusive, half-width 0.36; the bootstrap [−1.61, −1.15] also excludes −2),
fitted on its 4 highest lrs only: at 3e-5 … 3e-4 every replicate's minimum is an edge (15 edge
cells: those runs did not train, mean validation loss 2.4, 2.1, 0.78). Elsewhere edge cells are
few (0–4 of 35 per BN arm, at the highest lrs, a minimum next to divergence). The shared offset
(every slope 0.1–0.2 above its prediction) has one candidate, not measured here: the head and
the BN scales and offsets train at η and lie outside the map, and at the lowest lrs they train
least (mean best validation loss 0.57 at the lowest lr against 0.45 at the highest, every
coupled BN arm). With BN, equilibrium holds at every optimum: shrink 24–318 (≫ 2; adam+l2
undefined). Without BatchNorm
the slopes rest mostly on the 3 highest lrs (13–18 edge cells of 35 at the lower lrs, where the runs
are undertrained and validation loss is flat in λ): adam+wd +0.13 [−0.15, +0.40] (λ* does not
move with η), adam+wd_paper +1.18 [+0.89, +1.47] (λ* ∝ η: L&H's form couples λ to η here) and
adam+l2 +0.64 [+0.36, +0.91]; shrink at η₀ is below 2 there (0.06–0.08). Separability (test-loss
regret of reusing the λ tuned at η₀, paired by replicate): with BN the decoupled arms lose
nothing detectable at the lowest lr (momentum+wd_paper +0.006 [−0.005, +0.018], adam+wd_paper
+0.003 [−0.004, +0.011]) while the coupled ones lose from ≥ 0.029 [0.020, 0.039] (momentum+wd;
≥: the reused λ lay beyond the grid, a lower bound) to ≥ 0.261 [0.246, 0.276] (sgd+l2); at the
highest lr the reused λ diverges in at least one replicate for sgd+l2, momentum+l2, momentum+wd,
adam+wd and adam+wd_paper (there λ*(η₀) sits one cell below divergence), adam+l2 loses ≥ 0.030
[0.014, 0.045] and momentum+wd_paper +0.006 [−0.006, +0.018] (no detectable difference). Without BN
every arm loses at the highest lr (adam+wd 0.113 [0.055, 0.171], adam+wd_paper ≥ 0.148 [0.103,
0.193], adam+l2 ≥ 0.069 [0.036, 0.102]). The table was re-rendered from summary.json after the
run (its reuse columns: presentation only, no number changed).
"""

import sys

import numpy as np

import wdjax
from wdjax import Sheared, files, schedules, study
from wdjax.analysis import stats, tables
from wdjax.analysis.symmetry import SCALE_MAPS, predicted_slope
from wdjax.engine.models import MLP
from wdjax.study import replicates

NAME = "decoupling"
BN_ARMS = tuple(SCALE_MAPS)  # the 7 (optimizer, reg) pairs with a tested map
PLAIN_ARMS = (("adam", "l2"), ("adam", "wd"), ("adam", "wd_paper"))
LR_RANGES = {"sgd": (1e-3, 1.0), "momentum": (1e-4, 1e-1), "adam": (3e-5, 3e-2)}
# λ_c at the anchor lr η₀ and the centre line's slope (BN: the predicted one; without BN: the
# pilot's), from the pilot (see the docstring).
ANCHORS = {  # BN: centre_lines(pilot 2); without BN: pilot 1 by eye
    "sgd+l2+bn": 5.7, "momentum+l2+bn": 11.0, "momentum+wd+bn": 130.0,
    "momentum+wd_paper+bn": 0.21, "adam+l2+bn": 230.0, "adam+wd+bn": 300.0,
    "adam+wd_paper+bn": 0.32, "adam+l2": 3e-3, "adam+wd": 1.0, "adam+wd_paper": 1e-3,
}  # fmt: skip
PLAIN_SLOPES = {"adam+l2": 0.5, "adam+wd": 0.0, "adam+wd_paper": 1.0}
# The pilot's grids: λ_c at η₀ and the slope of their centre line; ±3.5 decades, 2 per decade.
PILOT = {
    "sgd+l2+bn": (10.0, -1.0), "momentum+l2+bn": (10.0, -1.0), "momentum+wd+bn": (300.0, -1.0),
    "momentum+wd_paper+bn": (0.03, 0.0), "adam+l2+bn": (100.0, -2.0),
    "adam+wd+bn": (300.0, -1.0), "adam+wd_paper+bn": (0.03, 0.0), "adam+l2": (10**-3.5, 0.0),
    "adam+wd": (10**0.5, 0.0), "adam+wd_paper": (10**-4.5, 0.0),
}  # fmt: skip
MAX_HALF_WIDTH = 0.3  # an interval wider than ±0.3 decides nothing
BOOT_DRAWS = 2000


def arm_name(opt: str, reg: str, bn: bool) -> str:
    return f"{opt}+{reg}" + ("+bn" if bn else "")


def get_config(smoke=False) -> dict:
    """Knobs: ``arms`` [(optimizer, reg, batchnorm)], ``n_lr``, ``rel_bn`` / ``rel_plain`` (the
    relative λ grids r), ``replicates``."""
    arms = [(o, r, True) for o, r in BN_ARMS] + [(o, r, False) for o, r in PLAIN_ARMS]
    return dict(
        dataset="digits" if smoke else "fashion_mnist", mask="hidden",
        train_size=None if smoke else 3000, val_size=400 if smoke else 10000,
        epochs=2 if smoke else 30, eval_every=2 if smoke else 30,
        arms=[("adam", "wd", True)] if smoke else arms, n_lr=3 if smoke else 7,
        rel_bn=rel_grid(4, 1 if smoke else 6), rel_plain=rel_grid(2, 1 if smoke else 3),
        replicates=2 if smoke else 5,
    )  # fmt: skip


def rel_grid(per_decade: int, half: int) -> tuple[float, ...]:
    """r = 10^(k/per_decade), k = −half … half: the grid relative to the centre line."""
    return tuple(10.0 ** (k / per_decade) for k in range(-half, half + 1))


def lr_grid(opt: str, n: int) -> np.ndarray:
    return np.geomspace(*LR_RANGES[opt], n)


# --- the estimator (fixed before the full run) --------------------------------------------------


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
    """agrees / disagrees / inconclusive (see the docstring); no prediction: 'no prediction'."""
    if predicted is None:
        return "no prediction"
    if not (np.isfinite(lo) and np.isfinite(hi)) or (hi - lo) / 2 > max_half:
        return "inconclusive"
    return "agrees" if lo <= predicted <= hi else "disagrees"


def interp_loss(log_lam, loss, at) -> tuple[float, bool]:
    """(loss linearly interpolated in log λ at ``at``, off-grid): beyond the grid the end value
    (a lower bound if the loss keeps rising), flagged."""
    x, y = np.asarray(log_lam, float), np.asarray(loss, float)
    off = not x[0] <= at <= x[-1]
    return float(np.interp(at, x, y)), off


# --- sweeps and analysis -----------------------------------------------------------------------


def model(bn: bool, config, num_classes: int):
    """The MLP; with BatchNorm ε = 0, so the BN-preceded kernels are exactly scale-invariant."""
    if not bn:
        return "mlp"
    return MLP(num_classes, config.hidden, batchnorm=True, bn_epsilon=0.0)


def sweep_once(cfg, ds, opt, reg, bn, lrs, rel, centre) -> tuple:
    """One sweep of an arm: (factory, {val_loss, test_loss: [r, lr]}), diverged members +inf.
    ``centre`` = (λ_c at η₀, η₀, slope of the centre line)."""
    tx = Sheared(opt, reg, *centre, len(ds.x_train) // cfg.batch_size, cfg.epochs)
    res = wdjax.sweep(cfg, optimizer=tx, model=model(bn, cfg, ds.num_classes), batchnorm=bn,
                      lrs=tuple(lrs.tolist()), strengths=tuple(rel), data=ds)  # fmt: skip
    out = {}
    for k in ("val_loss", "test_loss"):
        v = np.asarray(res.history[k][:, -1], float)
        v = np.where(tables.diverged_members(res.history), np.inf, v)
        out[k] = v.reshape(len(rel), len(lrs), cfg.seeds).mean(-1)
    return tx, out


def sweep_arm(run, data, opt, reg, bn, anchor, slope, rel):
    """R replicates of one arm: lrs, η₀, the factory, values [R, r, lr] of val and test loss."""
    lrs = lr_grid(opt, run.knobs["n_lr"])
    lr0 = float(lrs[len(lrs) // 2])
    out = {"val_loss": [], "test_loss": []}
    for r, cfg in enumerate(replicates.replicate_configs(run.config, run.knobs["replicates"])):
        tx, v = sweep_once(cfg, data[r], opt, reg, bn, lrs, rel, (anchor, lr0, slope))
        for k in out:
            out[k].append(v[k])
    return lrs, lr0, tx, {k: np.asarray(v) for k, v in out.items()}


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


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--pilot" in argv:
        return pilot([a for a in argv if a != "--pilot"])
    lines = {k: (ANCHORS[k], PLAIN_SLOPES.get(k)) for k in ANCHORS}  # pilot 2 → ANCHORS
    if "--anchors-from" in argv:  # the pilot's file: the same rule as ANCHORS was made by
        i = argv.index("--anchors-from")
        lines = centre_lines(files.read_json(argv[i + 1]))
        print("centre lines:", lines, flush=True)
        argv = argv[:i] + argv[i + 2 :]
    run = study.setup(__doc__, NAME, get_config, argv)
    data = [
        study.load_data(c)
        for c in replicates.replicate_configs(run.config, run.knobs["replicates"])
    ]
    arms, stars, steps = {}, {}, None
    for opt, reg, bn in run.knobs["arms"]:
        name = arm_name(opt, reg, bn)
        slope = predicted_slope(opt, reg) if bn else lines[name][1]
        rel = run.knobs["rel_bn" if bn else "rel_plain"]
        lrs, lr0, tx, vals = sweep_arm(run, data, opt, reg, bn, lines[name][0], slope, rel)
        steps = tx.steps_per_epoch * tx.epochs
        arms[name], stars[name] = analyse(opt, reg, bn, lrs, lr0, tx, vals, rel, steps)
        print(
            f"{name}: slope {arms[name]['slope_mean']:+.2f} [{arms[name]['slope_lo']:+.2f}, "
            f"{arms[name]['slope_hi']:+.2f}] edges {arms[name]['edge_cells']}",
            flush=True,
        )
    by = {v: [k for k, a in arms.items() if a["verdict"] == v]
          for v in ("agrees", "disagrees", "inconclusive")}  # fmt: skip
    summary = dict(
        arms=arms, agree=by["agrees"], disagree=by["disagrees"], inconclusive=by["inconclusive"],
        estimator="vertex of the 3-point parabola of validation loss in log λ; slope per "
                  "replicate by least squares over non-edge lrs; Student t over replicates",
        steps=steps, epochs=run.config.epochs, train_size=run.config.train_size,
        replicates=run.knobs["replicates"], selected_by="val_loss", dataset=run.config.dataset,
    )  # fmt: skip
    rows = [table_row(k, a) for k, a in arms.items()]
    return study.finish(run, summary, COLUMNS, rows, plot(arms, stars), "slopes.png")


def pilot(argv) -> dict:
    """One replicate at the first, middle and last lr of each arm on a wide grid (±3.5 decades,
    2 per decade, around :data:`PILOT`'s line): λ* per lr (vertex; NaN at an edge) and the
    validation losses, written to ``<out>/pilot.json``."""
    run = study.setup(__doc__, NAME + "_pilot", get_config, argv)
    ds = study.load_data(run.config)
    rel = rel_grid(2, 1 if run.smoke else 7)
    out = {}
    for opt, reg, bn in [a for a in run.knobs["arms"] if a[2]]:  # BN arms (plain: pilot 1)
        name = arm_name(opt, reg, bn)
        lrs = lr_grid(opt, run.knobs["n_lr"])
        lrs, lr0 = lrs[[0, len(lrs) // 2, -1]], float(lrs[len(lrs) // 2])
        lam0, slope = PILOT[name]
        tx, v = sweep_once(run.config, ds, opt, reg, bn, lrs, rel, (lam0, lr0, slope))
        grid = np.log10(np.asarray(rel))[:, None] + np.log10(tx.centre(lrs))[None, :]
        star = [vertex(grid[:, j], v["val_loss"][:, j])[0] for j in range(3)]
        out[name] = dict(lrs=lrs.tolist(), lambda_star=[10**s for s in star],
                         slope=fit_slope(np.log10(lrs), star, 2), log_grid=grid.tolist(),
                         val_loss=v["val_loss"].tolist())  # fmt: skip
        print(name, [f"{10**s:.3g}" for s in star], f"slope {out[name]['slope']:+.2f}", flush=True)
    files.write_json(f"{run.out}/pilot.json", out)
    return out


if __name__ == "__main__":
    main()
