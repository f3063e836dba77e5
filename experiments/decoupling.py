"""Is weight decay decoupled from the learning rate? lr × λ heatmaps per (optimizer, strategy).

Question: for sgd+``l2``, sgd+``wd_paper``, adam+``l2``, adam+``wd`` (optax/torch AdamW) and
adam+``wd_paper`` (Loshchilov & Hutter's AdamW), with and without BatchNorm, how does the best λ
move with the learning rate? Each (optimizer, strategy, batchnorm) is ONE compiled sweep over
lrs × λ × seeds; we draw the final test cross-entropy as a heatmap (L&H 2019, Fig. 2) and fit the
slope of log λ*(lr) against log lr. λ*(lr) is the argmin over λ of the mean (over seeds) final
*validation* loss, refined by a parabola in log λ through the grid minimum and its neighbours; the
test set is only reported, never used to select. A second estimator, added after the first full
runs showed validation loss flat over decades of small λ (so the argmin is mostly noise there), is
the basin edge: the λ above the minimum where the mean validation loss first exceeds 1.1 × its
minimum (log-linear interpolation), i.e. where decay starts to hurt.

Command: ``python experiments/decoupling.py`` (``--smoke``: seconds). Runtime ≈ 5.5 min on 2 CPU
cores (10 sweeps × ≈ 13 s compile + 40 epochs of 135 members).

Setup: MLP 64-64 on ``digits``, batch 128 (10 steps per epoch), 40 epochs = 400 steps (longer than
the tutorial's 10 epochs, which undertrain at lr 1e-3); 5 log-spaced lrs (sgd 0.1–1, adam 1e-3–3e-2:
lower ones undertrain in 400 steps, see Measured), 9 log-spaced λ over 4 decades per strategy (l2
1e-5–0.1, wd 1e-3–10, wd_paper 1e-6–0.01), 3 seeds.

Expected. From the update rules in wdjax/optim.py the per-step shrinkage is d = lr·λ for sgd+l2
and adam+wd (u = −lr·(p + λw)) and d = λ for wd_paper (u = −(α·p + λw)); for adam+l2 the term λw
is divided by √v̂ with the gradient (no closed form). (i) With BatchNorm the hidden kernels are
scale-invariant and settle where only d sets the angular update (√(2d)·c, Kosson et al. 2024,
independent of α): slope −1 for sgd+l2 and adam+wd, ≈ 0 for both wd_paper (L&H's decoupling);
L&H's Fig. 2 shows −1 (a diagonal basin) for adam+l2 too. The same holds without BatchNorm while
the decay has not equilibrated (d·T ≲ 1 over T steps: only the total shrinkage d·T acts).
(ii) Trained to convergence without BatchNorm the fixed points are lr-free for l2
(argmin L + λ/2·‖w‖²) and adam+wd (p = −λw): slope 0; wd_paper's (α·p = −λw) depends on λ/α:
slope +1.

summary.json: ``slopes`` {"<opt>+<reg>[+bn]": slope}, ``slopes_seed_std`` (std over seeds of the
slope fitted per seed), ``lambda_star`` {config: [λ* per lr]}, ``edge`` {config: number of lrs whose
grid minimum is at an end of the λ grid; such points bias the slope towards 0},
``slopes_basin_edge`` and ``lambda_edge`` (the basin-edge estimator; NaN where never crossed),
``best`` {config: lr, strength, test_loss(_std), test_acc(_std) at the validation-selected cell},
``lrs``, ``strengths``, ``selected_by``, ``epochs``, ``figure``, ``command``, ``seconds``.

Measured: (full run, 272–320 s on 2 shared CPU cores) slope of log λ* against log lr, argmin (± seed
std) / basin edge: sgd+l2 +1.32 ± 1.00 / −1.14; sgd+wd_paper +1.56 ± 0.40 / −0.23; adam+l2 +1.01 ±
0.29 / −0.08; adam+wd +1.55 ± 0.59 / −0.22; adam+wd_paper +2.41 ± 0.84 / +0.95; with BatchNorm:
sgd+l2 +0.90 ± 0.87 / −0.78; sgd+wd_paper +1.74 ± 1.37 / +0.20; adam+l2 −1.48 ± 0.19 / −1.99;
adam+wd +0.73 ± 0.36 / −0.76; adam+wd_paper +1.26 ± 0.35 / −0.28. The requested argmin slopes do NOT
match L&H: on clean ``digits`` the validation loss is flat over 2–4 decades of small λ, so the
argmin wanders inside that flat basin (seed std up to 1.4) and drifts towards λ → 0 at the smaller
lrs, which are the least trained and gain least from decay; that makes every slope but adam+l2+bn's
positive. A first run with lower lrs (sgd 0.03–1, adam 3e-4–3e-2) gave the same picture (argmin
slopes +0.7 to +2.6, adam+l2+bn −1.04). The basin-edge slopes (added afterwards, see above) follow
the derivation: with BatchNorm ≈ −0.8 for the lr·λ-coupled sgd+l2 and adam+wd, ≈ 0 (+0.20, −0.28)
for both wd_paper, and coupled (−2.0) for adam+l2; without BatchNorm −1.1 for sgd+l2
(shrinkage-limited), ≈ 0 for adam+l2 and adam+wd (their lr-free fixed points) and +0.95 for
adam+wd_paper (its fixed point depends on λ/α), with sgd+wd_paper at −0.2. Best cells reach test
loss 0.025–0.07 and accuracy 97.8–99.3 %; BatchNorm lowers the best test loss for every pair.
"""

import numpy as np

import wdjax
from wdjax import study

NAME = "decoupling"
PAIRS = [("sgd", "l2"), ("sgd", "wd_paper"), ("adam", "l2"), ("adam", "wd"), ("adam", "wd_paper")]
CONFIGS = [(opt, reg, bn) for bn in (False, True) for opt, reg in PAIRS]
EXPECTED = {"sgd+l2": "-1 / 0", "sgd+wd_paper": "0 / +1", "adam+l2": "-1 / 0",
            "adam+wd": "-1 / 0", "adam+wd_paper": "0 / +1"}  # fmt: skip


def get_config(smoke=False) -> dict:
    return dict(
        configs=[("adam", "wd_paper", True)] if smoke else CONFIGS,
        lr_range={"sgd": (0.1, 1.0), "adam": (1e-3, 3e-2)},
        strength_range={"l2": (1e-5, 1e-1), "wd": (1e-3, 10.0), "wd_paper": (1e-6, 1e-2)},
        n_lr=2 if smoke else 5, n_strength=3 if smoke else 9, seeds=1 if smoke else 3,
        epochs=1 if smoke else 40,
    )  # fmt: skip


def best_strength(strengths, loss_SxL):
    """λ* per column: grid argmin of loss[λ, lr], refined by a parabola in log λ when interior.

    Returns (λ* [L], at_edge [L] bool). Non-finite losses count as +inf.
    """
    x = np.log(np.asarray(strengths, float))
    loss = np.where(np.isfinite(loss_SxL), loss_SxL, np.inf)
    out, edge = [], []
    for col in loss.T:
        i = int(np.argmin(col))
        interior = 0 < i < len(x) - 1 and np.all(np.isfinite(col[i - 1 : i + 2]))
        xi = x[i]
        if interior:
            a, b, _ = np.polyfit(x[i - 1 : i + 2], col[i - 1 : i + 2], 2)
            xi = np.clip(-b / (2 * a), x[i - 1], x[i + 1]) if a > 0 else xi
        out.append(np.exp(xi))
        edge.append(not 0 < i < len(x) - 1)
    return np.array(out), np.array(edge)


def basin_edge(strengths, loss_SxL, rise=0.1):
    """Per column, the λ (log-linear interpolation) above the minimum where loss first exceeds
    (1 + rise) × its minimum: where decay starts to hurt. NaN where it never does."""
    x = np.log(np.asarray(strengths, float))
    out = []
    for col in np.where(np.isfinite(loss_SxL), loss_SxL, np.inf).T:
        i, level = int(np.argmin(col)), (1 + rise) * np.min(col)
        above = np.flatnonzero(col[i:] > level)
        if above.size == 0:
            out.append(np.nan)
            continue
        j = i + above[0]  # col[j-1] ≤ level < col[j]
        y0, y1 = col[j - 1], min(col[j], 1e30)
        out.append(np.exp(x[j - 1] + (x[j] - x[j - 1]) * (level - y0) / (y1 - y0)))
    return np.array(out)


def fit_slope(lrs, lam_star) -> float:
    """Least-squares slope of log λ* against log lr."""
    ok = np.isfinite(lam_star)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(lrs)[ok], np.log(lam_star)[ok], 1)[0])


def run_config(opt, reg, bn, config, knobs):
    """One compiled sweep over lrs × λ × seeds of one (optimizer, strategy, batchnorm)."""
    lrs = np.geomspace(*knobs["lr_range"][opt], knobs["n_lr"])
    lams = np.geomspace(*knobs["strength_range"][reg], knobs["n_strength"])
    res = wdjax.sweep(config, optimizer=opt, reg=reg, batchnorm=bn,
                      strengths=tuple(lams.tolist()), lrs=tuple(lrs.tolist()))  # fmt: skip
    shape = (len(lams), len(lrs), res.config.seeds)  # grid order: strengths × lrs × seeds

    def final(name):
        v = res.history[name][:, -1].astype(float).reshape(shape)
        return np.where(res.history["diverged"][:, -1].reshape(shape), np.inf, v)

    val, test_loss, test_acc = final("val_loss"), final("test_loss"), final("test_acc")
    lam_star, edge = best_strength(lams, val.mean(-1))
    lam_edge = basin_edge(lams, val.mean(-1))
    per_seed = [fit_slope(lrs, best_strength(lams, val[..., s])[0]) for s in range(shape[2])]
    i, j = np.unravel_index(np.argmin(val.mean(-1)), shape[:2])
    best = dict(lr=float(lrs[j]), strength=float(lams[i]))
    best.update(study.with_std(test_loss=test_loss[i, j], test_acc=test_acc[i, j]))
    slope, seed_std = fit_slope(lrs, lam_star), float(np.std(per_seed))
    return dict(lrs=lrs, lams=lams, test=test_loss.mean(-1), lam_star=lam_star, edge=edge,
                slope=slope, seed_std=seed_std, best=best, lam_edge=lam_edge,
                slope_edge=fit_slope(lrs, lam_edge))  # fmt: skip


def plot(runs: dict):
    plt = study.pyplot()
    n = len(runs)
    cols = min(n, 5)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, r) in zip(axes.flat, runs.items(), strict=False):
        x, y = np.log10(r["lrs"]), np.log10(r["lams"])
        hx, hy = (x[1] - x[0]) / 2, (y[1] - y[0]) / 2
        img = np.clip(r["test"], None, np.nanmin(r["test"]) + 1.0)  # inf (diverged) → top colour
        im = ax.imshow(img, origin="lower", aspect="auto", cmap="viridis",
                       extent=(x[0] - hx, x[-1] + hx, y[0] - hy, y[-1] + hy))  # fmt: skip
        fig.colorbar(im, ax=ax, fraction=0.046)
        ls = np.log10(r["lam_star"])
        ax.plot(x, ls, "wo-", ms=4)
        ax.plot(x, np.log10(r["lam_edge"]), "rx--", ms=5)
        ax.set(xlabel="log10 lr", ylabel="log10 λ")
        ax.set_title(f"{name}: argmin {r['slope']:+.2f}, edge {r['slope_edge']:+.2f}", fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(
        "final test cross-entropy (mean over seeds); white: λ* (argmin of validation "
        "loss); red: basin edge (validation loss 10% above its minimum)"
    )
    return fig


def row(name: str, r: dict) -> list:
    """The table row of one config."""
    b = r["best"]
    expected = EXPECTED[name.removesuffix("+bn")]
    expected = expected.split(" / ")[0] if name.endswith("+bn") else expected
    return [name, expected, f"{r['slope']:+.2f} ± {r['seed_std']:.2f}", f"{r['slope_edge']:+.2f}",
            " ".join(f"{v:.2g}" for v in r["lam_star"]), int(r["edge"].sum()),
            f"{b['lr']:.2g}", f"{b['strength']:.2g}", study.pm(b, "test_loss"),
            study.pm(b, "test_acc")]  # fmt: skip


def main(argv=None) -> dict:
    run = study.setup(__doc__, NAME, get_config, argv)
    runs = {}
    for opt, reg, bn in run.knobs["configs"]:
        name = f"{opt}+{reg}" + ("+bn" if bn else "")
        runs[name] = run_config(opt, reg, bn, run.config, run.knobs)
    rows = [row(name, r) for name, r in runs.items()]
    cols = ["config", "expected slope (eq. / converged)", "slope ± seed std", "slope (basin edge)",
            "λ* per lr", "λ* at grid edge", "best lr", "best λ", "test loss",
            "test acc"]  # fmt: skip
    summary = dict(
        slopes={k: r["slope"] for k, r in runs.items()},
        slopes_seed_std={k: r["seed_std"] for k, r in runs.items()},
        slopes_basin_edge={k: r["slope_edge"] for k, r in runs.items()},
        lambda_edge={k: r["lam_edge"].tolist() for k, r in runs.items()},
        lambda_star={k: r["lam_star"].tolist() for k, r in runs.items()},
        edge={k: int(r["edge"].sum()) for k, r in runs.items()},
        best={k: r["best"] for k, r in runs.items()},
        lrs={k: r["lrs"].tolist() for k, r in runs.items()},
        strengths={k: r["lams"].tolist() for k, r in runs.items()},
        selected_by="val_loss", epochs=run.config.epochs,
    )  # fmt: skip
    return study.finish(run, summary, cols, rows, plot(runs), "heatmaps.png")


if __name__ == "__main__":
    main()
