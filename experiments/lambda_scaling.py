"""Choosing λ without a grid: does AdamW's best timescale τ = B/(η·λ·n) stay put in epochs?

Claim: AdamW's weights are an exponential moving average of recent updates with timescale
τ_iter = 1/(ηλ) steps; the best τ_epoch = B/(η·λ·n) stays roughly constant as the data grow and
lies between 1 and the number of epochs, so λ* ∝ 1/(η·n) (Wang & Aitchison 2025, "How to set
AdamW's weight decay as you scale model and dataset size", ICML, arXiv 2405.13698); or the best
τ is a power law in data per parameter (Bergsma et al. 2025, "Power Lines", arXiv 2505.13738).

Command: ``python experiments/lambda_scaling.py`` (Fashion-MNIST; ``--smoke``: digits, seconds).
Runtime: not yet run in full. Interrupted, the same command resumes by arm.
Verdict (last full run): not yet run.

Design and rules: :func:`get_config` (``RULES``); write-up: docs/studies/lambda_scaling.md.
"""

import dataclasses

import numpy as np

from wdjax import Sheared, study
from wdjax.analysis import plots, selection, stats, tables
from wdjax.study import prose

B, MARGIN, CONTROL_MARGIN = 128, 0.25, 0.1  # batch; verdict margin; the control's margin
RULES = dict(
    model="the tutorial MLP 784→64→64→10 (ReLU); width 256-256 at the extreme n, central η",
    optimizer="AdamW (reg wd): u = −η(p + λw), p Adam's step, η constant, decay ηλ per step on "
    "the hidden kernels (all but the output layer's); batch 128",
    epochs="E epochs at every n (Wang & Aitchison state τ in epochs at a fixed number of passes: "
    "every n sees each example E times); fixed steps: every n at the central η for the steps "
    "n = 5,000 takes in E epochs (whole epochs, rounded)",
    grid="λ = B/(η·n·τ), τ_epoch on a factor-2 grid, the same in every cell (sheared along the "
    "prediction; fixed steps: times √(its epochs / E)), plus λ = 0",
    estimator="λ* per (cell, replicate): vertex in log λ of the parabola through the grid "
    "minimum of that replicate's validation loss (the mean of the evaluations in the last "
    "quarter of the run, against the constant rate's jitter) and its neighbours; a minimum at a "
    "grid end is an edge, left out of every fit and counted; beside it the averaged choice "
    "(vertex of the replicate-mean curve). Validation: 10,000 images from the rest of the 60,000",
    control="run first: synthetic U-curves on the same grids, optima on slopes (s_n, s_η) = "
    "(−0.5, −1.5) and (−1.5, −0.5), noise of the pilot's between-replicate sd (and of this "
    "run's), 200 studies of 5 replicates: each mean fitted slope within 0.1 of the truth, else "
    "the estimator failed and every verdict is withheld",
    slope="per replicate, least squares log λ* = a + s_n·log n + s_η·log η over the 12 "
    "fixed-epoch cells (≥ 8 non-edge); 95 % Student-t over replicates; reproduced when the "
    "interval lies inside the prediction ± 0.25, contradicted when it excludes it, else "
    "inconclusive",
    tau="τ*_epoch = B/(η·λ*·n), geometric mean over cells per replicate; t interval of its log; "
    "reproduced inside [1, E], contradicted wholly outside, else inconclusive",
    steps="fixed steps: slope of log λ* in log n; τ constant in epochs predicts −1, a constant "
    "fraction of the run's steps 0; each by the slope rule",
    width="per replicate log τ* = a + b_n·log n + b_N·log N over the 4 (n, width) cells (N "
    "parameters); Wang & Aitchison: b_N = 0, Power Lines: b_N + b_n = 0, by the slope rule "
    "(the two coincide when b_n is near 0)",
)
FITS = ("slope_log_n", "slope_log_lr", "steps_slope", "b_n", "b_N", "b_sum", "log_tau")


def get_config() -> dict:
    """The full study, as the pilots set it (git log): 1.2 decades of n, η over a decade."""
    return dict(dataset="fashion_mnist", val_size=10000, epochs=20, eval_every=2,
                lrs=(1e-3, 3e-3, 1e-2), sizes=(2000, 5000, 12500, 30000),
                taus=tuple(2.0**k for k in range(1, 10)), steps_size=5000, wide=(256, 256),
                noise=0.02, curvature=0.1, replicates=5, selected_by="val_loss",
                rules=RULES)  # fmt: skip


def smoke(config: dict) -> dict:
    """The tiny version: digits, 2 sizes × 2 lrs × 3 τ, 2 epochs, width 32-32, 2 replicates."""
    return dict(dataset="digits", val_size=400, epochs=2, eval_every=1, lrs=(1e-3, 3e-3),
                sizes=(300, 600), taus=(0.5, 1.0, 2.0), steps_size=300, wide=(32, 32),
                replicates=2)  # fmt: skip


def sweep_arms(cfg, k: dict) -> dict:
    """{arm: (roles, n, SweepConfig)}; one factory (λ = strength·B/η, strength = 1/(n·τ)), so
    arms of one shape share a program. Roles: which fits use the arm's central-η cell."""
    tx = Sheared("adam", "wd", B, 1.0, -1.0, 1, 1, schedule="constant")
    lr_c, ends = cfg.lrs[len(cfg.lrs) // 2], (min(k["sizes"]), max(k["sizes"]))

    def arm(n, taus, **kw):
        strengths = (0.0, *sorted(1.0 / (n * t) for t in taus))
        return dataclasses.replace(cfg, optimizer=tx, train_size=n, strengths=strengths, **kw)

    roles = {n: {"main", *["steps"] * (n == k["steps_size"]), *["width"] * (n in ends)}
             for n in k["sizes"]}  # fmt: skip
    out = {f"n{n}": (roles[n], n, arm(n, k["taus"])) for n in k["sizes"]}
    for n in (n for n in k["sizes"] if n != k["steps_size"]):
        e = max(1, round(cfg.epochs * (k["steps_size"] // B) / (n // B)))  # whole epochs
        out[f"steps_n{n}"] = ({"steps"}, n, arm(n, [t * (e / cfg.epochs) ** 0.5 for t in
                              k["taus"]], lrs=(lr_c,), epochs=e, eval_every=max(1, e // 10)))  # fmt: skip
    for n in ends:
        out[f"wide_n{n}"] = ({"width"}, n, arm(n, k["taus"], lrs=(lr_c,), hidden=k["wide"]))
    return out


def cells(results: dict, arms: dict, inputs: int) -> list[dict]:
    """One dict per (arm, lr): its grid, λ* and τ* per replicate (NaN: edge) and averaged."""
    out = []
    for name, (roles, n, cfg) in arms.items():
        late = np.arange(1, cfg.epochs + 1) > 0.75 * cfg.epochs  # the last quarter's evaluations
        v, t = (np.stack([np.where(tables.diverged_members(r.history), np.inf, np.nanmean(
            np.asarray(r.history[key], float)[:, late if key == "val_loss" else [-1]], axis=1))
            .reshape(len(cfg.strengths), -1) for r in results[name]])
            for key in ("val_loss", "test_loss"))  # fmt: skip
        w = (inputs, *cfg.hidden, 10)
        for j, lr in enumerate(cfg.lrs):
            x, top = np.log10(np.asarray(cfg.strengths[1:]) * B / lr), np.log10(B / (lr * n))
            star = np.array([selection.vertex(x, row[1:])[0] for row in v[:, :, j]])
            avg = selection.vertex(x, v[:, 1:, j].mean(axis=0))[0]
            out.append(dict(arm=name, n=n, lr=lr, width=list(cfg.hidden), epochs=cfg.epochs,
                roles=sorted(roles if lr == cfg.lrs[len(cfg.lrs) // 2] else {"main"}), steps=cfg.epochs * (n // B),
                params=sum(a * b + b for a, b in zip(w[:-1], w[1:], strict=False)),
                log_tau=(top - x).tolist(), log_lam_star=star.tolist(), log_lam_avg=[avg],
                edges=int(np.isnan(star).sum()), val_mean=v[:, :, j].mean(0).tolist(),
                val_sd=float(np.median(np.std(v[:, 1:, j], axis=0, ddof=1))),
                nested_test_diff=selection.select(v[:, :, j], t[:, :, j])["nested_diff"]))
    return out  # fmt: skip


def fit(X, y, min_points: int) -> np.ndarray:
    """Least-squares coefficients of y on the columns of X (intercept added, not returned) over
    the finite y; NaN with fewer than ``min_points`` or a rank-deficient design."""
    X, y = np.asarray(X, float).reshape(len(y), -1), np.asarray(y, float)
    ok = np.isfinite(y)
    A = np.column_stack([np.ones(ok.sum()), X[ok]])
    if ok.sum() < min_points or np.linalg.matrix_rank(A) < A.shape[1]:
        return np.full(X.shape[1], np.nan)
    return np.linalg.lstsq(A, y[ok], rcond=None)[0][1:]


def fits(cs: list, key: str) -> dict:
    """RULES' fits per replicate of ``key`` (``log_lam_star``; ``log_lam_avg``: the averaged
    choice, one "replicate"): {name in FITS: array over replicates}."""
    g = {r: [c for c in cs if r in c["roles"]] for r in ("main", "steps", "width")}
    y = {r: np.array([c[key] for c in g[r]], float).T for r in g}  # [replicates, cells]
    top = {r: np.log10([B / (c["lr"] * c["n"]) for c in g[r]]) for r in g}
    logs = np.log10([[c["n"], c["lr"]] for c in g["main"]])
    s = np.array([fit(logs, row, min(8, len(logs))) for row in y["main"]])
    st = np.array([fit(np.log10([c["n"] for c in g["steps"]]), row, 3)[0] for row in y["steps"]])
    wb = np.array([fit(np.log10([[c["n"], c["params"]] for c in g["width"]]), top["width"] - row,
                   4) for row in y["width"]])  # fmt: skip
    tau = [np.nanmean(top["main"] - row) if np.isfinite(row).any() else np.nan
           for row in y["main"]]  # fmt: skip
    return dict(zip(FITS, (s[:, 0], s[:, 1], st, wb[:, 0], wb[:, 1], wb.sum(1), tau),
                    strict=True))  # fmt: skip


def judge(interval, ref: float, withheld: bool) -> str:
    """RULES' verdict: reproduced inside ref ± 0.25, contradicted when it excludes ref."""
    if withheld:
        return "withheld"
    v = study.verdict(interval, MARGIN, ref=ref)
    return {"equivalent": "reproduced", "lower": "contradicted", "higher": "contradicted"}.get(
        v, "inconclusive")  # fmt: skip


def curve(x, opt, k: float, a: float = 1.5):
    """A U in log10 λ with its minimum at ``opt``, curvature 2k there, steeper on the right."""
    d = np.asarray(x) - np.asarray(opt)[..., None]
    return k * 2 * (np.exp(a * d) - 1 - a * d) / a**2


def control(grids, logs, noise: float, k: float, replicates: int, draws: int = 200) -> dict:
    """RULES' positive control on the sheared grids ``[cells, S]`` at ``logs [cells, 2]``
    (log10 n, log10 η): the mean fitted slopes and the t intervals' coverage per truth."""
    rng, out, ok = np.random.default_rng(0), {}, True
    for truth in ((-0.5, -1.5), (-1.5, -0.5)):
        opt = grids.mean() + (logs - logs.mean(0)) @ np.asarray(truth)
        f = np.array([[fit(logs, [selection.vertex(g, y)[0] for g, y in zip(grids, curve(
            grids, opt, k) + noise * rng.standard_normal(grids.shape), strict=True)],
            min(8, len(logs))) for _ in range(replicates)] for _ in range(draws)])  # fmt: skip
        s = stats.describe(f, axis=1)  # per draw, over replicates: [draws, 2]
        mean = np.nanmean(s.mean, axis=0)
        ok &= bool(np.all(np.abs(mean - truth) <= CONTROL_MARGIN))
        out[f"{truth[0]:g},{truth[1]:g}"] = dict(truth=list(truth), fitted=mean.tolist(),
            coverage=np.mean((s.lo <= truth) & (truth <= s.hi), axis=0).tolist())  # fmt: skip
    return dict(cases=out, noise=noise, curvature=k, passed=ok)


def ci(x, log: bool = False) -> list:
    """[mean, lo, hi] over the finite replicates (95 % t); ``log``: x is log10, back-transformed."""
    x = np.asarray(x, float)
    iv = selection.interval(x[np.isfinite(x)])
    return [float(10**v) for v in iv] if log else iv


def run(ctx: study.Context) -> study.Report:
    """The control first, then every arm × replicate (resumable), the fits and the verdicts."""
    cfg, k = ctx.config, ctx.knobs
    arms, E = sweep_arms(cfg, k), cfg.epochs
    cases = [(n, lr) for n in k["sizes"] for lr in cfg.lrs]
    grids = np.log10([[B / (lr * n * t) for t in sorted(k["taus"], reverse=True)]
                      for n, lr in cases])  # fmt: skip
    control_of = lambda noise: control(grids, np.log10(cases), noise, k["curvature"],
                                       ctx.replicates)  # fmt: skip  # noqa: E731
    before = control_of(k["noise"])
    results = ctx.sweeps({a: c for a, (_, _, c) in arms.items()})
    cs = cells(results, arms, int(np.prod(study.load_data(cfg).x_train.shape[1:])))
    after = control_of(float(np.median([c["val_sd"] for c in cs if "main" in c["roles"]])))
    off = not (before["passed"] and after["passed"])
    per, avg = fits(cs, "log_lam_star"), fits(cs, "log_lam_avg")
    iv = {f: ci(per[f], log=f == "log_tau") for f in FITS}
    lo, hi = iv["log_tau"][1:]
    verdicts = dict(slope_log_n=judge(iv["slope_log_n"], -1.0, off),
        slope_log_lr=judge(iv["slope_log_lr"], -1.0, off), tau_epochs="withheld" if off else
        "reproduced" if 1 <= lo and hi <= E else "contradicted" if hi < 1 or lo > E else
        "inconclusive", steps_epochs=judge(iv["steps_slope"], -1.0, off),
        steps_fraction=judge(iv["steps_slope"], 0.0, off),
        width_wang_aitchison=judge(iv["b_N"], 0.0, off),
        width_power_lines=judge(iv["b_sum"], 0.0, off))  # fmt: skip
    big = arms[f"n{max(k['sizes'])}"][2]
    j = len(cfg.lrs) // 2  # λ = 0 at the central η: member j (strengths × lrs)
    rise = study.rise([np.asarray(r.history["val_loss"], float)[j] for r in
                       results[f"n{max(k['sizes'])}"]])  # fmt: skip
    summary = dict(slope_log_n=iv["slope_log_n"], slope_log_lr=iv["slope_log_lr"],
        predicted_slope=-1.0, tau_epochs=iv["log_tau"], steps_slope=iv["steps_slope"],
        width={f: iv[f] for f in ("b_n", "b_N", "b_sum")}, verdicts=verdicts,
        control=dict(before=before, after=after, passed=not off),
        averaged={f: float(10 ** avg[f][0] if f == "log_tau" else avg[f][0]) for f in FITS},
        per_replicate={f: [float(v) for v in per[f]] for f in FITS}, cells=cs,
        baseline=dict(rise, train_size=big.train_size, lr=big.lrs[j]), epochs=E,
        sizes=list(k["sizes"]), lrs=list(cfg.lrs), taus=list(k["taus"]),
        edges=sum(c["edges"] for c in cs))  # fmt: skip
    return study.Report(summary, COLUMNS, [row(c) for c in cs], figure(summary))


COLUMNS = ["arm", "n", "η", "width", "epochs (steps)", "λ* (geometric mean [95 % t])",
           "τ*_epoch [95 % t]", "edges", "λ* averaged choice", "nested Δ test loss vs λ = 0"]


def row(c: dict) -> list:
    lam, tau = ci(c["log_lam_star"], log=True), ci(np.array(c["log_lam_star"]) * 0 + np.log10(
        B / (c["lr"] * c["n"])) - c["log_lam_star"], log=True)  # fmt: skip
    g = lambda v: f"{v[0]:.3g} [{v[1]:.3g}, {v[2]:.3g}]"  # noqa: E731
    return [c["arm"], c["n"], f"{c['lr']:g}", "-".join(map(str, c["width"])),
            f"{c['epochs']} ({c['steps']})", g(lam), g(tau), c["edges"],
            f"{10 ** c['log_lam_avg'][0]:.3g}", study.fmt_ci(*c["nested_test_diff"], 4)]


def figure(summary: dict):
    """λ* (a) and τ*_epoch (b) against n: bands are 95 % t intervals over replicates (edges
    left out); (c) the mean validation loss against τ at the central η, dotted λ = 0."""
    cs, lrs, E = summary["cells"], summary["lrs"], summary["epochs"]
    groups = {f"η = {lr:g}": [c for c in cs if "main" in c["roles"] and c["lr"] == lr]
              for lr in lrs}  # fmt: skip
    groups["fixed steps"] = [c for c in cs if "steps" in c["roles"]]
    groups["width " + "-".join(map(str, cs[-1]["width"]))] = [c for c in cs if c["arm"][0] == "w"]
    fig, ax = study.pyplot().subplots(1, 3, figsize=(15, 4.3))
    for i, (label, g) in enumerate(groups.items()):
        g = sorted(g, key=lambda c: c["n"])
        x, top = np.log10([c["n"] for c in g]), np.log10([B / (c["lr"] * c["n"]) for c in g])
        lam = np.array([c["log_lam_star"] for c in g], float).T
        plots.band(ax[0], x, lam, label, color=f"C{i}")
        plots.band(ax[1], x, top - lam, label, color=f"C{i}")
        if i < len(lrs):
            ax[0].plot(x, top - np.log10(summary["tau_epochs"][0]), "--", color=f"C{i}", lw=0.8)
    for y in (0, np.log10(E)):
        ax[1].axhline(y, color="k", ls=":", lw=0.8)
    for i, c in enumerate(c for c in cs if "main" in c["roles"] and c["lr"] == lrs[len(lrs) // 2]):
        ax[2].plot(c["log_tau"], c["val_mean"][1:], "o-", ms=3, color=f"C{i}", label=f"n={c['n']}")
        ax[2].axhline(c["val_mean"][0], color=f"C{i}", ls=":", lw=0.8)
    for a, t in zip(ax, ("log10 λ* (dashed: slope −1 at the mean τ*)", "log10 τ*_epoch (dotted: 1, E)",
                         "validation loss, central η (dotted: λ = 0)"), strict=True):  # fmt: skip
        a.set(xlabel="log10 τ_epoch" if a is ax[2] else "log10 n", title=t)
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_up(summary: dict) -> str:
    """What it shows: RULES applied to ``summary``, numbers from it."""
    v, c, w, b = summary["verdicts"], summary["control"], summary["width"], summary["baseline"]
    f = lambda x: prose.ci(*x, 2)  # noqa: E731
    cases = "; ".join(f"true ({prose.join(prose.num(t, 1) for t in d['truth'])}) → fitted "
                      f"({prose.join(prose.num(x, 2) for x in d['fitted'])})"
                      for d in c["before"]["cases"].values())  # fmt: skip
    a = summary["averaged"]
    return "\n\n".join([
        f"**Positive control: {'passed' if c['passed'] else 'failed, verdicts withheld'}.** "
        f"Synthetic optima through the same grids, noise sd {prose.num(c['before']['noise'])} "
        f"(and this run's {prose.num(c['after']['noise'])}): {cases}.",
        f"**Slope in log n: {v['slope_log_n']}; in log η: {v['slope_log_lr']}.** Per replicate "
        f"s_n = {f(summary['slope_log_n'])} and s_η = {f(summary['slope_log_lr'])} (predicted "
        f"−1); the averaged choice gives {prose.num(a['slope_log_n'], 2)} and "
        f"{prose.num(a['slope_log_lr'], 2)}.",
        f"**τ*_epoch in [1, E]: {v['tau_epochs']}.** Geometric mean "
        f"{prose.ci(*summary['tau_epochs'], 2)} epochs of {summary['epochs']} (averaged choice "
        f"{prose.num(a['log_tau'])}).",
        f"**Fixed steps: slope {f(summary['steps_slope'])}**: τ constant in epochs (−1) "
        f"{v['steps_epochs']}, τ a constant fraction of the steps (0) {v['steps_fraction']}.",
        f"**Width: Wang & Aitchison (b_N = 0) {v['width_wang_aitchison']}, Power Lines (b_N + "
        f"b_n = 0) {v['width_power_lines']}.** b_n = {f(w['b_n'])}, b_N = {f(w['b_N'])}, b_N + "
        f"b_n = {f(w['b_sum'])}.",
        f"**Caveats.** {summary['edges']} (cell, replicate) optima at a grid edge, left out. "
        f"λ = 0's validation loss at n = {b['train_size']:,}, η = {prose.num(b['lr'])} is lowest"
        f" at epoch {b['min_epoch']} of {b['epochs']}, then up by {prose.ci(*b['rise'], 3)}.",
    ])  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
