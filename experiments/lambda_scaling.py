"""Choosing λ without a grid: does AdamW's best timescale τ = B/(η·λ·n) stay put in epochs?

Claim: AdamW's weights are an exponential moving average of recent updates over τ_iter = 1/(ηλ)
steps; the best τ_epoch = B/(η·λ·n) stays roughly constant as the data grow, between 1 and the
number of epochs, so λ* ∝ 1/(η·n) (Wang & Aitchison 2025, ICML, arXiv 2405.13698); or the best τ
is a power law in data per parameter (Bergsma et al. 2025, "Power Lines", arXiv 2505.13738).

Command: ``python experiments/lambda_scaling.py`` (Fashion-MNIST; ``--smoke``: digits, seconds).
Runtime: 34 minutes measured while sharing the 2-core machine; interrupted, it resumes by arm.
Verdict (last full run): slope in n −0.93 inconclusive, in η −0.33 contradicted; τ* 27 > E = 20.
"""

import dataclasses

import numpy as np

from wdjax import Sheared, study
from wdjax.analysis import plots, selection, stats, tables
from wdjax.study import prose

B, MARGIN, CONTROL_MARGIN = 128, 0.25, 0.1  # batch; verdict margin; the control's margin
RULES = dict(
    design="MLP 784→64→64→10 (ReLU; 256-256 at the extreme n, central η); AdamW (reg wd, decay "
    "ηλ per step, hidden kernels), constant η, batch 128; E epochs at every n (Wang & Aitchison "
    "state τ in epochs at a fixed number of passes); fixed steps: every n at the central η for "
    "the steps of n = 5,000 in E epochs (whole epochs)",
    grid="λ = B/(η·n·τ), τ_epoch on a factor-2 grid, the same in every cell (fixed steps: times "
    "√(its epochs / E)), plus λ = 0",
    estimator="λ* per (cell, replicate): vertex in log λ of the parabola through the minimum of "
    "its validation loss (10,000 held-out images; mean of the evaluations in the run's last "
    "quarter, against the constant rate's jitter) and its neighbours; edge minima are left out "
    "and counted; beside it the averaged choice (vertex of the replicate-mean curve)",
    control="first: synthetic U-curves on the same grids, optima on slopes (s_n, s_η) = (−0.5, "
    "−1.5), (−1.5, −0.5), noise of the pilot's between-replicate sd and of this run's, 200 "
    "studies of 5 replicates: each mean fitted slope within 0.1 of the truth, else no verdicts",
    slope="per replicate, least squares log λ* = a + s_n·log n + s_η·log η over the 12 "
    "fixed-epoch cells (≥ 8 non-edge), 95 % Student-t over replicates: reproduced inside the "
    "prediction ± 0.25, contradicted when it excludes it, else inconclusive",
    tau="τ*_epoch = B/(η·λ*·n), geometric mean over cells per replicate: reproduced inside [1, "
    "E], contradicted wholly outside, else inconclusive",
    steps="fixed steps: log λ* on log n; τ constant in epochs predicts −1, in steps 0",
    width="per replicate log τ* = a + b_n·log n + b_N·log N (N parameters), 4 cells: Wang & "
    "Aitchison b_N = 0, Power Lines b_N + b_n = 0 (alike when b_n is near 0)",
)
FITS = ("slope_log_n", "slope_log_lr", "steps_slope", "b_n", "b_N", "b_sum", "log_tau")
VERDICTS = dict(slope_log_n=("slope_log_n", -1.0), slope_log_lr=("slope_log_lr", -1.0),
                steps_epochs=("steps_slope", -1.0), steps_fraction=("steps_slope", 0.0),
                width_wang_aitchison=("b_N", 0.0), width_power_lines=("b_sum", 0.0))  # fmt: skip
LABELS = {"equivalent": "reproduced", "lower": "contradicted", "higher": "contradicted"}


def get_config() -> dict:  # the full study, as the pilots set it (git log)
    return dict(dataset="fashion_mnist", val_size=10000, epochs=20, eval_every=2,
                lrs=(1e-3, 3e-3, 1e-2), sizes=(2000, 5000, 12500, 30000),
                taus=tuple(2.0**k for k in range(1, 10)), steps_size=5000, wide=(256, 256),
                noise=0.02, curvature=0.1, replicates=5, selected_by="val_loss",
                rules=RULES)  # fmt: skip


def smoke(config: dict) -> dict:  # digits, 2 sizes × 1 lr × 3 τ, 2 epochs, 2 replicates
    return dict(dataset="digits", val_size=400, epochs=2, eval_every=1, lrs=(3e-3,),
                sizes=(300, 600), taus=(0.5, 1, 2), steps_size=300, wide=(32, 32),
                replicates=2)  # fmt: skip


def sweep_arms(cfg, k: dict) -> dict:
    """{arm: (roles: the fits its central-η cell enters, n, SweepConfig)}; λ = strength·B/η."""
    tx = Sheared("adam", "wd", B, 1.0, -1.0, 1, 1, schedule="constant")
    lr_c, ends = cfg.lrs[len(cfg.lrs) // 2], (min(k["sizes"]), max(k["sizes"]))

    def arm(n, taus, **kw):
        strengths = (0.0, *sorted(1.0 / (n * t) for t in taus))
        return dataclasses.replace(cfg, optimizer=tx, train_size=n, strengths=strengths, **kw)

    out = {f"n{n}": ({"main", *["steps"] * (n == k["steps_size"]), *["width"] * (n in ends)}, n,
                     arm(n, k["taus"])) for n in k["sizes"]}  # fmt: skip
    for n in (n for n in k["sizes"] if n != k["steps_size"]):
        e = max(1, round(cfg.epochs * (k["steps_size"] // B) / (n // B)))  # whole epochs
        taus = [t * (e / cfg.epochs) ** 0.5 for t in k["taus"]]  # centred between −1 and 0
        out[f"steps_n{n}"] = ({"steps"}, n, arm(n, taus, lrs=(lr_c,), epochs=e,
                                                eval_every=max(1, e // 10)))  # fmt: skip
    for n in ends:
        out[f"wide_n{n}"] = ({"width"}, n, arm(n, k["taus"], lrs=(lr_c,), hidden=k["wide"]))
    return out


def cells(results: dict, arms: dict, inputs: int):
    """One dict per (arm, lr): its grid, λ* and τ* per replicate (NaN: edge) and averaged."""
    for name, (roles, n, cfg) in arms.items():
        late = np.arange(1, cfg.epochs + 1) > 0.75 * cfg.epochs  # the last quarter's evaluations
        v, t = (np.stack([np.where(tables.diverged_members(r.history), np.inf, np.nanmean(
            np.asarray(r.history[key], float)[:, late if key == "val_loss" else [-1]], axis=1))
            .reshape(len(cfg.strengths), -1) for r in results[name]])
            for key in ("val_loss", "test_loss"))  # fmt: skip
        w = (inputs, *cfg.hidden, 10)
        N = sum(a * b + b for a, b in zip(w, w[1:], strict=False))  # parameters
        for j, (lr, vj) in enumerate(zip(cfg.lrs, np.moveaxis(v, 2, 0), strict=True)):
            x, top = np.log10(np.asarray(cfg.strengths[1:]) * B / lr), np.log10(B / lr / n)
            star = np.array([selection.vertex(x, row[1:])[0] for row in vj])
            yield dict(arm=name, n=n, lr=lr, width=list(cfg.hidden), epochs=cfg.epochs,
                roles=sorted(roles if lr == cfg.lrs[len(cfg.lrs) // 2] else {"main"}), params=N,
                steps=cfg.epochs * (n // B), log_tau=(top - x).tolist(), edges=int(np.isnan(
                star).sum()), log_lam_star=star.tolist(), log_tau_star=(top - star).tolist(),
                log_lam_avg=[selection.vertex(x, vj[:, 1:].mean(0))[0]], val_mean=vj.mean(
                0).tolist(), val_sd=float(np.median(np.std(vj[:, 1:], axis=0, ddof=1))),
                nested_test_diff=selection.select(vj, t[:, :, j])["nested_diff"])  # fmt: skip


def fit(X, y, min_points: int) -> np.ndarray:
    """Least-squares slopes of y on X (and an intercept), finite y only; NaN if underdetermined."""
    X, y = np.asarray(X, float).reshape(len(y), -1), np.asarray(y, float)
    A = np.column_stack([np.ones((ok := np.isfinite(y)).sum()), X[ok]])
    bad = ok.sum() < min_points or np.linalg.matrix_rank(A) < A.shape[1]
    return np.full(X.shape[1], np.nan) if bad else np.linalg.lstsq(A, y[ok], rcond=None)[0][1:]


def fits(cs: list, key: str) -> dict:
    """{FITS: per replicate} of ``key``: log_lam_star, or log_lam_avg (the averaged choice)."""
    g = {r: [c for c in cs if r in c["roles"]] for r in ("main", "steps", "width")}
    y = {r: np.array([c[key] for c in g[r]], float).T for r in g}  # [replicates, cells]
    top = {r: np.log10([B / (c["lr"] * c["n"]) for c in g[r]]) for r in g}  # log τ = top − log λ
    logs = np.log10([[c["n"], c["lr"]] for c in g["main"]])
    s = np.array([fit(logs, row, min(8, len(logs))) for row in y["main"]])
    st = np.array([fit(np.log10([c["n"] for c in g["steps"]]), row, 3)[0] for row in y["steps"]])
    wb = np.array([fit(np.log10([[c["n"], c["params"]] for c in g["width"]]), top["width"] - row,
                   4) for row in y["width"]])  # fmt: skip
    tau = [np.nanmean(top["main"] - row) if np.isfinite(row).any() else np.nan for row in y["main"]]
    return dict(zip(FITS, (s[:, 0], s[:, 1], st, wb[:, 0], wb[:, 1], wb.sum(1), tau), strict=True))


def control(grids, logs, noise: float, k: float, replicates: int, draws: int = 200) -> dict:
    """RULES' control on grids ``[cells, S]`` at ``logs`` (log n, log η): U = 2k(e^{ad} − 1 −
    ad)/a², d = log λ − log λ*, a = 1.5, plus noise; mean fitted slopes, t coverage."""
    rng, out, ok = np.random.default_rng(0), {}, True
    for truth in ((-0.5, -1.5), (-1.5, -0.5)):
        d = grids - (grids.mean() + (logs - logs.mean(0)) @ np.asarray(truth))[:, None]
        u = k * 2 * (np.exp(1.5 * d) - 1 - 1.5 * d) / 1.5**2
        f = np.array([[fit(logs, [selection.vertex(g, y)[0] for g, y in zip(grids, u + noise *
            rng.standard_normal(grids.shape), strict=True)],
            min(8, len(logs))) for _ in range(replicates)] for _ in range(draws)])  # fmt: skip
        s = stats.describe(f, axis=1)  # per draw, over replicates: [draws, 2]
        ok &= bool(np.all(np.abs((mean := np.nanmean(s.mean, 0)) - truth) <= CONTROL_MARGIN))
        out[f"{truth[0]:g},{truth[1]:g}"] = dict(truth=list(truth), fitted=mean.tolist(),
            coverage=np.mean((s.lo <= truth) & (truth <= s.hi), axis=0).tolist())  # fmt: skip
    return dict(cases=out, noise=noise, curvature=k, passed=ok)


def run(ctx: study.Context) -> study.Report:
    """The control first, then every arm × replicate (resumable), the fits and the verdicts."""

    def ci(x, log=False):  # [mean, lo, hi] over the finite replicates, 95 % t; log: of log10 x
        m = selection.interval(np.asarray(x, float)[np.isfinite(x)])
        return [10**v for v in m] if log else m

    cfg, k, E = ctx.config, ctx.knobs, ctx.config.epochs
    arms, cases = sweep_arms(cfg, k), [(n, lr) for n in k["sizes"] for lr in cfg.lrs]
    grids = np.log10([[B / (lr * n * t) for t in k["taus"][::-1]] for n, lr in cases])
    check = lambda sd: control(grids, np.log10(cases), sd, k["curvature"], ctx.replicates)  # noqa: E731
    before, results = check(k["noise"]), ctx.sweeps({a: c for a, (_, _, c) in arms.items()})
    cs = list(cells(results, arms, int(np.prod(study.load_data(cfg).x_train.shape[1:]))))
    after = check(float(np.median([c["val_sd"] for c in cs if "main" in c["roles"]])))
    off = not (before["passed"] and after["passed"])
    per, avg = fits(cs, "log_lam_star"), fits(cs, "log_lam_avg")
    iv = {f: ci(per[f], log=f == "log_tau") for f in FITS}
    (lo, hi), j, big = iv["log_tau"][1:], len(cfg.lrs) // 2, max(k["sizes"])
    verdicts = {v: "withheld" if off else LABELS.get(study.verdict(iv[f], MARGIN, ref=ref),
                "inconclusive") for v, (f, ref) in VERDICTS.items()}  # fmt: skip
    verdicts["tau_epochs"] = ("withheld" if off else "reproduced" if 1 <= lo and hi <= E else
                              "contradicted" if hi < 1 or lo > E else "inconclusive")  # fmt: skip
    rise = study.rise([np.asarray(r.history["val_loss"], float)[j] for r in results[f"n{big}"]])
    summary = dict(slope_log_n=iv["slope_log_n"], slope_log_lr=iv["slope_log_lr"],
        predicted_slope=-1.0, tau_epochs=iv["log_tau"], steps_slope=iv["steps_slope"],
        width={f: iv[f] for f in ("b_n", "b_N", "b_sum")}, verdicts=verdicts,
        control=dict(before=before, after=after, passed=not off),
        averaged={f: float(10 ** avg[f][0] if f == "log_tau" else avg[f][0]) for f in FITS},
        per_replicate={f: [float(v) for v in per[f]] for f in FITS}, cells=cs,
        baseline=dict(rise, train_size=big, lr=cfg.lrs[j]), epochs=E, sizes=list(k["sizes"]),
        lrs=list(cfg.lrs), taus=list(k["taus"]), edges=sum(c["edges"] for c in cs))  # fmt: skip
    cols = ("arm|n|η|width|epochs (steps)|λ* (geometric mean [95 % t])|τ*_epoch [95 % t]|edges|"
            "λ* averaged choice|nested Δ test loss vs λ = 0").split("|")  # fmt: skip
    g = lambda c, key: "{:.3g} [{:.3g}, {:.3g}]".format(*ci(c[key], True))  # noqa: E731
    rows = [[c["arm"], c["n"], f"{c['lr']:g}", "-".join(map(str, c["width"])), f"{c['epochs']} "
             f"({c['steps']})", g(c, "log_lam_star"), g(c, "log_tau_star"), c["edges"],
             f"{10 ** c['log_lam_avg'][0]:.3g}", study.fmt_ci(*c["nested_test_diff"], 4)]
            for c in cs]  # fmt: skip
    return study.Report(summary, cols, rows, figure(summary))


def figure(summary: dict):
    """λ*, τ*_epoch against n (95 % t bands, edges out); validation loss against τ, central η."""
    cs, lrs = summary["cells"], summary["lrs"]
    groups = {f"η = {lr:g}": [c for c in cs if "main" in c["roles"] and c["lr"] == lr]
              for lr in lrs} | {"fixed steps": [c for c in cs if "steps" in c["roles"]],
              "wide": [c for c in cs if c["arm"][0] == "w"]}  # fmt: skip
    fig, ax = study.pyplot().subplots(1, 3, figsize=(15, 4.3))
    for i, (label, g) in enumerate((x, sorted(g, key=lambda c: c["n"])) for x, g in groups.items()):
        x, top = np.log10([c["n"] for c in g]), np.log10([B / (c["lr"] * c["n"]) for c in g])
        for a, key in zip(ax, ("log_lam_star", "log_tau_star"), strict=False):  # edges left out
            iv = [selection.interval(np.array(c[key], float)[np.isfinite(c[key])]) for c in g]
            plots.fill(a, x, *np.array(iv).T, label, color=f"C{i}")
        if i < len(lrs):  # the prediction: slope −1 through the mean τ*
            ax[0].plot(x, top - np.log10(summary["tau_epochs"][0]), "--", color=f"C{i}", lw=0.8)
    [ax[1].axhline(y, color="k", ls=":", lw=0.8) for y in (0, np.log10(summary["epochs"]))]
    for i, c in enumerate(groups[f"η = {lrs[len(lrs) // 2]:g}"]):
        ax[2].plot(c["log_tau"], c["val_mean"][1:], "o-", ms=3, color=f"C{i}", label=f"n={c['n']}")
        ax[2].axhline(c["val_mean"][0], color=f"C{i}", ls=":", lw=0.8)
    for a, t in zip(ax, ("log10 λ* (dashed: slope −1)", "log10 τ*_epoch (dotted: 1 and E)",
                         "validation loss, central η"), strict=True):  # fmt: skip
        a.set(xlabel="log10 τ_epoch" if a is ax[2] else "log10 n", title=t), a.legend(fontsize=7)
    return fig


def write_up(summary: dict) -> str:
    """What it shows: RULES applied to ``summary``, numbers from it."""
    v, c, w, b, a, cs = map(summary.get, "verdicts control width baseline averaged cells".split())
    flat = sum(x["nested_test_diff"][2] >= 0 for x in cs if x["arm"][0] == "n")
    edges = [f"{x['arm']} at η = {x['lr']:g}: {x['edges']}" for x in cs if x["edges"]]
    f, g, ok = (lambda x: prose.ci(*x, 2)), (lambda x: prose.num(x, 2)), c["after"]["passed"]
    cases = "; ".join(f"({prose.join(map(g, d['truth']))}) → ({prose.join(map(g, d['fitted']))})"
                      for d in c["before"]["cases"].values())  # fmt: skip
    return "\n\n".join([
        f"**Positive control: {'passed' if c['passed'] else 'failed: verdicts withheld'}.** "
        f"Known slopes (s_n, s_η) → fitted, noise sd {prose.num(c['before']['noise'])}: {cases}; "
        f"at this run's sd {prose.num(c['after']['noise'])}: {'failed' * (not ok) or 'passed'}.",
        f"**Slope in log n: {v['slope_log_n']}; in log η: {v['slope_log_lr']}.** s_n = "
        f"{f(summary['slope_log_n'])}, s_η = {f(summary['slope_log_lr'])} per replicate "
        f"(predicted −1); averaged choice: {g(a['slope_log_n'])} and {g(a['slope_log_lr'])}.",
        f"**τ*_epoch in [1, E]: {v['tau_epochs']}.** Geometric mean "
        f"{prose.ci(*summary['tau_epochs'], 1)} epochs of {summary['epochs']} (averaged choice "
        f"{prose.num(a['log_tau'])}).",
        f"**Fixed steps: τ constant in epochs (−1) {v['steps_epochs']}; a constant fraction of "
        f"the steps (0) {v['steps_fraction']}.** Slope {f(summary['steps_slope'])}. **Width: "
        f"Wang & Aitchison (b_N = 0) {v['width_wang_aitchison']}; Power Lines (b_N + b_n = 0) "
        f"{v['width_power_lines']}.** b_n = {f(w['b_n'])}, b_N = {f(w['b_N'])}, b_N + b_n = "
        f"{f(w['b_sum'])}.",
        f"**Caveats.** {summary['edges']} (cell, replicate) optima at a grid edge, left out "
        f"({prose.join(edges)}). In {flat} of the "
        "12 fixed-epoch cells tuned decay gives no detectable test-loss gain over λ = 0 (nested, "
        "paired): there the curve is flat at large τ and λ* is poorly determined. "
        f"λ = 0's validation loss at n = {b['train_size']:,}, η = {prose.num(b['lr'])} is lowest"
        f" at epoch {b['min_epoch']} of {b['epochs']}, then up by {prose.ci(*b['rise'], 3)}.",
    ])  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
