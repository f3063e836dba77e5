"""Does weight decay slow training? Per-step cost of every strategy, and time to a validation loss.

Command: ``python experiments/overhead.py`` (Fashion-MNIST; ``--smoke``: digits, seconds).
Runtime: 7 minutes (406 s; ≈ 55 s of it compiling the 32 timed programs) on the 2-core machine,
under the lock that serializes the studies' full runs; other agents' smoke runs and tests still ran
beside it (1-minute load average 2.2 before the timed rounds, 2.1 after, 2.4 after training).

Claim tested: a regularizer adds O(#params) elementwise work (a multiply-add for L2 and decoupled
decay, a sign or a soft threshold for L1, a norm per unit for the group lasso) to a step whose cost
is the forward/backward pass, so it is free per step: decoupled weight decay is one more term of
the update (Loshchilov & Hutter 2019, "Decoupled weight decay regularization"), the proximal steps
are closed-form element- or blockwise maps (Parikh & Boyd 2014, "Proximal algorithms"); and the
issue's caveat, that a regularizer free per step may still need more steps, is tested by the time
to a target validation loss at the λ validation picks. Verdict: *reproduced* for weight decay
(``wd``, ``wd_paper``: no detectable per-step cost in any of the four settings, and no detectable
extra epochs to the target) and nearly so for L2 and the L1 variants (medians ≤ 1.06, detectably
above 1 only in the 16-member MLP sweep); *contradicted* for the group-lasso prox on the MLP (about
2× a step, so the one strategy detectably slower to the target in seconds); *inconclusive* on
whether any regularizer needs a few more epochs: every paired difference contains 0 but reaches +4
to +6 epochs at n = 5.

Setup, per-step cost: every strategy of ``wdjax.STRATEGIES`` after Adam (lr 1e-3, batch 128,
``mask="hidden"``, λ = SweepConfig's 1e-4), for the tutorial MLP (784-64-64-10) and the CNN
(``model="cnn"``: two 3×3 convolutions of 32 and 64 filters, Dense 128), each as one model (K = 1)
and as a vmapped member sweep (MLP K = 16, CNN K = 4), on Fashion-MNIST batches. A timed call is
the sweep's own epoch program, ``Engine.train_epoch`` (a ``lax.scan`` of vmapped ``Engine.step``,
then its divergence check and weight statistics) over 200 / 25 (MLP K = 1 / 16) or 4 / 2 (CNN)
consecutive steps with nothing evaluated, compiled ahead and warmed up, every call from the same
initial state (every member starting from member 0's), ``block_until_ready``. 12 rounds; in each
round every cell times its 8 strategies back to back, in an order rotated by one each round. The
ratio to ``none`` is formed per round (same round, same load: paired) and summarized by its median
over rounds with the distribution-free order-statistic 95 % interval
(stats.median_interval; n = 12: [x_(3), x_(10)], coverage 96.1 %): on a shared
machine the noise is one-sided, heavy-tailed slowdowns when another job takes a core, which a
median ignores and a Student-t interval does not (the geometric mean with the t-interval of the
log ratios is in summary.json, ``geo``, for comparison). Compile seconds are recorded too.

Setup, time to target: the tutorial MLP (as above, a constant learning rate) on 10,000 training
images with 10,000 validation images from the rest of the 60,000 (new draw per replicate; at the
full 50,000 validation picks λ ≈ 0 for every strategy, tutorial_mlp and lambda_curve, so the
"tuned" regularizer would be none), 30 epochs of 78 steps, validation loss every epoch. Each
strategy trains a grid of 3 λ over one decade (``GRIDS``, around what lambda_curve chose at 6,000
images; none: λ = 0) as one sweep per replicate; R = 5 replicates (new initial weights, batch
order, training subset and validation split), every strategy of a replicate on the same draws. The
tuned λ has the lowest minimum over epochs of the replicate-mean validation loss (never test).
Target, a rule fixed before the run: 1.05 × the replicate's own ``none`` run's lowest validation
loss. Epochs to target = the first epoch whose validation loss is ≤ the target; seconds = epochs ×
78 × the strategy's step time (MLP, K = 1: none's median × the strategy's median paired ratio;
evaluation is left out: it costs every strategy the same); mean and 95 % Student-t interval over
replicates (n − 1 = 4 degrees of freedom), differences against ``none`` paired by replicate. A
replicate that never reaches the target within 30 epochs is censored: "reached" counts the others,
and the strategy's mean and differences are NaN (nothing is imputed). The timing interval is not
carried into the seconds.

summary.json keys: ``timing`` {cell: {strategy: ``us, us_lo, us_hi`` (µs per step, median and
order-statistic interval), ``ratio, ratio_lo, ratio_hi, coverage`` (vs none), ``geo, geo_lo,
geo_hi`` (geometric mean, t-interval of log ratios), ``compile_s``}}, ``time_to_target`` {strategy:
``strength, index, val_min`` (per λ: the mean curve's minimum), ``targets, epochs`` (per replicate,
NaN censored), ``reached, n, curve, curve_lo, curve_hi`` (mean validation loss per epoch at the
tuned λ) and mean/std/lo/hi with paired diff/diff_lo/diff_hi of ``epochs``, ``seconds``,
``best_val``}, ``load`` (1-minute load average before and after the timed rounds and after
training), ``machine`` (cpu, cores, jax, backend), ``cells``, ``steps_per_call``, ``rounds``,
``train_size``, ``val_size``, ``steps_per_epoch``, ``seconds_per_epoch``, ``target_factor``,
``best_strength``, ``strengths``, ``selected_by``, ``replicates``, ``epochs``, ``dataset``,
``ratio_interval``, ``figure``, ``command``, ``seconds``.

Measured (Fashion-MNIST; ratios are medians of the 12 per-round paired ratios [order-statistic
95 % interval]; epochs and seconds are means [95 % t-interval] over 5 replicates): one step of
``none`` takes 347 µs (MLP, K = 1), 4.6 ms (MLP, K = 16), 51 ms (CNN, K = 1) and 226 ms (CNN,
K = 4). Decoupled decay costs no detectable time anywhere: ``wd`` 1.00 [0.98, 1.13], 1.00 [0.95,
1.04], 0.98 [0.96, 1.05], 0.99 [0.95, 1.06] in that order, ``wd_paper`` 0.98–1.00 with every
interval containing 1. L2 and the L1 variants are within noise of none at K = 1 and on the CNN;
in the 16-member MLP sweep, the cheapest step per member, ``l1`` (1.06 [1.02, 1.09]) and ``l2``
(1.05 [1.03, 1.13]) are detectably slower, ``l1_prox`` and ``elastic_net_prox`` not (1.02 [0.98,
1.05], 1.04 [0.96, 1.07]; a first full run of the same timing code found 1.05–1.07 with intervals
above 1 for these two: effects of this size are at the method's resolution). ``group_lasso_prox``
is the exception: 1.96 [1.92, 2.65] (MLP, K = 1) and 2.17 [2.03, 2.37] (K = 16), its per-unit
norms and Newton iterations weighing as much as the small MLP's matmuls, and 1.06 [1.03, 1.09] /
1.06 [1.03, 1.14] on the CNN, whose convolutions dominate. Compiling a timed program takes 0.9–1.5
s (MLP) and 1.7–3.1 s (CNN), ``group_lasso_prox`` the longest. Time to target (1.05 × none's best
validation loss; none reaches it at epoch 10.8 [8.8, 12.8] of 30): every strategy reached it in
every replicate (nothing censored); the paired differences in epochs range from +0.4 [−3.2, +4.0]
(``group_lasso_prox``) to +2.8 [−0.4, +6.0] (``l2``), ``wd`` +1.8 [−1.8, +5.4]: no detectable
difference at n = 5, though every point estimate is positive. In seconds (78 steps an epoch at the
measured step time) only ``group_lasso_prox`` is detectably slower, +0.30 s [0.13, 0.48] on none's
0.29 s [0.24, 0.35]. Validation picks the smallest λ of the grid for ``l1``, ``wd``, ``wd_paper``
and ``group_lasso_prox``, the largest for ``l1_prox`` (so their optimum may lie outside it); at the
picked λ only ``wd`` and ``wd_paper`` (the same decay, λ = 0.3 and 3e-4 at lr 1e-3) reach a
detectably lower best validation loss than none: −0.0080 [−0.0132, −0.0028] and −0.0081 [−0.0143,
−0.0018].
"""

import dataclasses
import os
import platform
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

import wdjax
from wdjax import study
from wdjax.analysis import stats
from wdjax.run.build import build
from wdjax.study import replicates

NAME = "overhead"
GRIDS = {  # 3 λ per strategy over one decade around what lambda_curve chose at n = 6,000
    "l1": (1e-5, 3e-5, 1e-4), "l2": (3e-4, 1e-3, 3e-3), "wd": (0.3, 1.0, 3.0),
    "wd_paper": (3e-4, 1e-3, 3e-3), "l1_prox": (3e-6, 1e-5, 3e-5),
    "elastic_net_prox": (6e-6, 2e-5, 6e-5), "group_lasso_prox": (3e-6, 1e-5, 3e-5),
}  # fmt: skip


def get_config(smoke=False) -> dict:
    """Timing knobs: ``cells`` ((model, K, steps per timed call) triples; the first is the
    single model whose step time prices an epoch), ``rounds``; time-to-target knobs: ``grids``
    {strategy: λ}, ``target_factor``, ``replicates`` (``epochs``, ``train_size``, ``val_size``:
    SweepConfig's)."""
    if smoke:
        return dict(dataset="digits", mask="hidden", train_size=None, val_size=400, epochs=2,
                    strategies=("none", "wd"), cells=(("mlp", 1, 3),), rounds=2,
                    grids={"wd": (0.01, 0.1)}, target_factor=1.05, replicates=2)  # fmt: skip
    return dict(dataset="fashion_mnist", mask="hidden", train_size=10000, val_size=10000,
                epochs=30, strategies=wdjax.STRATEGIES, cells=(("mlp", 1, 200), ("mlp", 16, 25),
                ("cnn", 1, 4), ("cnn", 4, 2)), rounds=12, grids=GRIDS, target_factor=1.05,
                replicates=5)  # fmt: skip


# --- per-step cost ----------------------------------------------------------------------------


def train_only(ds) -> wdjax.Data:
    """``ds``' training split as :class:`wdjax.Data` with empty validation and test sets."""
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train, jnp.int32)
    return wdjax.Data(x, y, jnp.arange(len(x), dtype=jnp.int32)[None],
                      jnp.zeros((1, 0), jnp.int32), x[:0], y[:0])  # fmt: skip


def make_runner(reg: str, k: int, config, steps: int, ds):
    """(run() → (states, metrics), compile seconds) for one (strategy, K) of ``config.model``:
    ``steps`` steps of ``Engine.train_epoch`` (the sweep's own epoch program: a ``lax.scan`` of
    vmapped ``Engine.step``, then the divergence check and weight statistics), each call from the
    same initial states, nothing evaluated."""
    cfg = dataclasses.replace(config, reg=reg)
    engine = build(cfg, num_classes=ds.num_classes).engine
    strength = 0.0 if reg == "none" else cfg.strengths[0]
    f32, i32 = jnp.float32, jnp.int32
    hyper = wdjax.Hyper(jnp.full(k, strength, f32), jnp.full(k, cfg.lrs[0], f32),
                        jnp.arange(k, dtype=i32), jnp.zeros(k, i32))  # fmt: skip
    data, n = train_only(ds), len(ds.x_train)
    epochs = -(-steps // (n // cfg.batch_size))
    order = jnp.concatenate([engine.batch_order(cfg.data_seed, e, n) for e in range(epochs)])
    order = order[:steps]  # [steps, batch]
    # Every member starts from member 0's state, built eagerly: one jit of init per strategy
    # would compile as long as the timed program (step cost does not depend on the values).
    one = engine.init(jax.tree.map(lambda a: a[0], hyper), data.x_pool[:1])
    states = jax.tree.map(lambda a: jnp.broadcast_to(a, (k, *a.shape)), one)
    t = time.perf_counter()
    compiled = jax.jit(engine.train_epoch).lower(states, hyper, data, order).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(states, hyper, data, order))  # warm-up
    return (lambda: compiled(states, hyper, data, order)), compile_s


def time_round(runners: dict, offset: int = 0) -> dict:
    """Seconds of one call of every runner, in dict order rotated by ``offset`` (so no strategy
    always runs first, right after another cell's heavier calls): {name: s}."""
    names = list(runners)
    offset %= max(len(names), 1)
    out = {}
    for name in names[offset:] + names[:offset]:
        t = time.perf_counter()
        jax.block_until_ready(runners[name]())
        out[name] = time.perf_counter() - t
    return out


def time_all(runners: dict, repeats: int) -> dict:
    """``repeats`` rounds of :func:`time_round` (round r rotated by r): {name: [s per round]}."""
    out = {name: [] for name in runners}
    for r in range(repeats):
        for name, s in time_round(runners, r).items():
            out[name].append(s)
    return out


def ratio_summary(t, t_none) -> dict:
    """Per-round paired ratios t/t_none (same round, same load): median with its order-statistic
    interval (stats.median_interval, the table's) and, for comparison, the geometric
    mean with the Student-t interval of the log ratios."""
    r = np.asarray(t, float) / np.asarray(t_none, float)
    m = stats.median_interval(r)
    g = stats.describe(np.log(r))
    return dict(ratio=m.median, ratio_lo=m.lo, ratio_hi=m.hi, coverage=m.coverage,
                geo=float(np.exp(g.mean)), geo_lo=float(np.exp(g.lo)),
                geo_hi=float(np.exp(g.hi)))  # fmt: skip


def cell_summary(times: dict, steps: int, compile_s: dict) -> dict:
    """{strategy: µs per step (median over rounds, order-statistic interval), ratio_summary
    against none, compile seconds} of one (model, K) cell; ``times`` {strategy: [s per call]}."""
    out = {}
    for reg, t in times.items():
        us = stats.median_interval(np.asarray(t, float) / steps * 1e6)
        out[reg] = dict(us=us.median, us_lo=us.lo, us_hi=us.hi, compile_s=compile_s[reg],
                        **ratio_summary(t, times["none"]))  # fmt: skip
    return out


def seconds_per_epoch(cell: dict, steps: int) -> dict:
    """{strategy: seconds of ``steps`` steps}: none's median step time × the strategy's median
    paired ratio (the study's estimate of relative cost, steadier than the ratio of two
    separately taken medians)."""
    base = cell["none"]["us"] * 1e-6 * steps
    return {reg: base * d["ratio"] for reg, d in cell.items()}


def cell_name(model: str, k: int) -> str:
    return f"{model} K={k}"


def time_strategies(run, ds) -> tuple[dict, dict]:
    """Every (cell, strategy) compiled, then ``rounds`` interleaved rounds: (cells {name:
    cell_summary}, load {before, after} (1-minute load averages around the timed rounds))."""
    k = run.knobs
    runners, comp = {}, {}
    for model, members, steps in k["cells"]:
        cfg = dataclasses.replace(run.config, model=model)
        cell = cell_name(model, members)
        runners[cell], comp[cell] = {}, {}
        for reg in k["strategies"]:
            runners[cell][reg], comp[cell][reg] = make_runner(reg, members, cfg, steps, ds)
        print(f"compiled {cell}: {sum(comp[cell].values()):.0f} s", flush=True)
    load = {"before": os.getloadavg()[0]}
    times = {cell: {reg: [] for reg in k["strategies"]} for cell in runners}
    for r in range(k["rounds"]):
        for cell, cell_runners in runners.items():
            for reg, s in time_round(cell_runners, r).items():
                times[cell][reg].append(s)
    load["after"] = os.getloadavg()[0]
    steps = {cell_name(m, n): s for m, n, s in k["cells"]}
    cells = {c: cell_summary(times[c], steps[c], comp[c]) for c in runners}
    return cells, load


def machine() -> dict:
    """CPU model (lscpu's "Model name"), logical cores, jax version and backend."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        cpu = next(ln.split(":", 1)[1].strip() for ln in text.splitlines()
                   if ln.startswith("Model name"))  # fmt: skip
    except (OSError, StopIteration, subprocess.SubprocessError):
        cpu = platform.processor() or "unknown"
    return dict(cpu=cpu, cores=os.cpu_count(), jax=jax.__version__, backend=jax.default_backend())


# --- time to a target validation loss ------------------------------------------------------------


def train_strategies(run) -> dict:
    """{strategy: [SweepResult per replicate]}: each strategy's λ grid (none: 0) as one sweep per
    replicate; the strategies of a replicate share its data draw (split, batch order, seeds)."""
    k = run.knobs
    out = {reg: [] for reg in k["strategies"]}
    for cfg in replicates.replicate_configs(run.config, k["replicates"]):
        ds = study.load_data(cfg)
        for reg in k["strategies"]:
            grid = (0.0,) if reg == "none" else tuple(k["grids"][reg])
            out[reg].append(wdjax.sweep(cfg, reg=reg, strengths=grid, data=ds))
        print(f"replicate {cfg.data_seed - run.config.data_seed} trained", flush=True)
    return out


def tuned_index(val_SxE) -> int:
    """The setting whose replicate-mean validation curve ``val_SxE`` [settings, epochs] has the
    lowest minimum over epochs (the λ an early-stopped run would keep)."""
    return stats.argmin(np.fmin.reduce(np.asarray(val_SxE, float), axis=1))


def epochs_to_target(curves_RxE, targets_R) -> np.ndarray:
    """[R] the first epoch (1-based) whose validation loss is ≤ the replicate's target; NaN when
    none is (censored: not reached within the run's epochs)."""
    c, t = np.asarray(curves_RxE, float), np.asarray(targets_R, float)[:, None]
    hit = c <= t  # NaN compares False
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1.0, np.nan)


def time_to_target(runs: dict, factor: float, seconds_per_epoch: dict) -> dict:
    """Per strategy at its tuned λ: epochs and seconds (epochs × ``seconds_per_epoch``) to the
    target, each replicate's target being ``factor`` × its own none run's lowest validation loss;
    mean [t-interval] over replicates and paired differences against none (NaN where a replicate
    is censored), plus the tuned λ's lowest validation loss and its paired difference."""
    _, none = replicates.curves(runs["none"], "val_loss")  # [R, 1, E]
    best_none = np.fmin.reduce(none[:, 0], axis=1)
    targets = factor * best_none
    base_e = epochs_to_target(none[:, 0], targets)
    base_s = base_e * seconds_per_epoch["none"]
    out = {}
    for reg, rs in runs.items():
        settings, c = replicates.curves(rs, "val_loss")
        val_min = np.fmin.reduce(np.nanmean(c, axis=0), axis=1)  # [settings]
        i = tuned_index(np.nanmean(c, axis=0))
        e = epochs_to_target(c[:, i], targets)
        best = np.fmin.reduce(c[:, i], axis=1)
        out[reg] = dict(strength=settings[i]["strength"], index=i, val_min=val_min.tolist(),
                        targets=targets.tolist(),
                        epochs=e.tolist(), reached=int(np.isfinite(e).sum()), n=len(e),
                        curve=np.nanmean(c[:, i], axis=0).tolist(),
                        **replicates.summarize("epochs", e, base_e),
                        **replicates.summarize("seconds", e * seconds_per_epoch[reg], base_s),
                        **replicates.summarize("best_val", best, best_none))  # fmt: skip
        out[reg]["curve_lo"], out[reg]["curve_hi"] = (
            np.asarray(v).tolist() for v in stats.describe(c[:, i], axis=0)[3:]
        )  # fmt: skip
    return out


# --- report ------------------------------------------------------------------------------------


def interval(mean, lo, hi, digits=2) -> str:
    """``mean [lo, hi]``; the median alone when the interval is undefined (too few rounds)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:.{digits}f}"
    return study.fmt_ci(mean, lo, hi, digits)


def table(cells: dict, ttt: dict, strategies) -> tuple[list, list]:
    first = next(iter(cells))
    cols = ["strategy", f"µs/step {first}"] + [f"× none {c}" for c in cells]
    cols += ["tuned λ", "reached", "epochs to target", "Δ epochs (paired)", "s to target",
             "Δ s (paired)", "Δ best val loss (paired)"]  # fmt: skip
    rows = []
    for reg in strategies:
        u, t = cells[first][reg], ttt[reg]
        row = [reg, interval(u["us"], u["us_lo"], u["us_hi"], 0)]
        row += [interval(*(cells[c][reg][x] for x in ("ratio", "ratio_lo", "ratio_hi")))
                for c in cells]  # fmt: skip
        row += [f"{t['strength']:.3g}", f"{t['reached']}/{t['n']}", study.ci(t, "epochs", 1),
                study.ci(t, "epochs_diff", 1), study.ci(t, "seconds", 2),
                study.ci(t, "seconds_diff", 2), study.ci(t, "best_val_diff", 4)]  # fmt: skip
        rows.append(row)
    return cols, rows


def figure(cells: dict, ttt: dict, strategies):
    plt = study.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    x = np.arange(len(strategies))
    w = 0.8 / len(cells)
    for j, (cell, d) in enumerate(cells.items()):
        mid = np.array([d[r]["ratio"] for r in strategies])
        lo, hi = (np.array([d[r][k] for r in strategies]) for k in ("ratio_lo", "ratio_hi"))
        yerr = np.nan_to_num(np.vstack([mid - lo, hi - mid]))
        axes[0].errorbar(x + w * (j - (len(cells) - 1) / 2), mid, yerr=yerr, fmt="o", ms=4,
                         capsize=2, label=cell)  # fmt: skip
    axes[0].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[0].set_xticks(x, strategies, rotation=30, ha="right")
    axes[0].set(ylabel="step time / step time of none",
                title="per-step time vs none (median, 95 % order-stat. interval)")  # fmt: skip
    axes[0].legend(fontsize=8)
    for j, reg in enumerate(strategies):
        t = ttt[reg]
        ep = np.arange(1, len(t["curve"]) + 1)
        axes[1].plot(ep, t["curve"], color=f"C{j}", lw=1, label=f"{reg} λ={t['strength']:.2g}")
        axes[1].fill_between(ep, t["curve_lo"], t["curve_hi"], color=f"C{j}", alpha=0.12)
    target = np.mean(ttt["none"]["targets"])
    axes[1].axhline(target, color="k", lw=0.8, ls=":", label="target (mean)")
    low = np.nanmin([np.nanmin(ttt[r]["curve_lo"]) for r in strategies])
    if np.isfinite(low) and low < target:
        axes[1].set_ylim(0.97 * low, 1.4 * target)  # where the curves cross the target
    axes[1].set(xlabel="epoch", ylabel="validation loss",
                title="val. loss at the tuned λ (bands: 95 % t-int. over replicates)")  # fmt: skip
    axes[1].legend(fontsize=7)
    mid = np.array([ttt[r]["seconds_diff"] for r in strategies])
    lo, hi = (
        np.array([ttt[r][k] for r in strategies]) for k in ("seconds_diff_lo", "seconds_diff_hi")
    )
    axes[2].errorbar(x, mid, yerr=np.nan_to_num(np.vstack([mid - lo, hi - mid])), fmt="o",
                     capsize=3)  # fmt: skip
    axes[2].axhline(0.0, color="k", lw=0.8, ls="--")
    axes[2].set_xticks(x, strategies, rotation=30, ha="right")
    axes[2].set(ylabel="Δ seconds to target vs none",
                title="time to target − none's (paired, 95 % t-interval)")  # fmt: skip
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    run = study.setup(__doc__, NAME, get_config, argv)
    k, info = run.knobs, machine()
    ds = study.load_data(run.config)
    cells, load = time_strategies(run, ds)
    first = next(iter(cells))  # the single model (K = 1): the per-epoch cost of a user's run
    spe = len(ds.x_train) // run.config.batch_size  # steps an epoch (partial batch dropped)
    per_epoch = seconds_per_epoch(cells[first], spe)
    ttt = time_to_target(train_strategies(run), k["target_factor"], per_epoch)
    load["after_training"] = os.getloadavg()[0]
    cols, rows = table(cells, ttt, k["strategies"])
    summary = dict(
        timing=cells, time_to_target=ttt, load=load, machine=info, cells=list(cells),
        steps_per_call={cell_name(m, n): s for m, n, s in k["cells"]}, rounds=k["rounds"],
        train_size=len(ds.x_train), val_size=len(ds.x_val), steps_per_epoch=spe,
        seconds_per_epoch=per_epoch, target_factor=k["target_factor"],
        best_strength={r: ttt[r]["strength"] for r in k["strategies"]},
        strengths={r: list(k["grids"][r]) for r in k["strategies"] if r != "none"},
        selected_by="lowest minimum over epochs of the replicate-mean validation loss",
        replicates=k["replicates"], epochs=run.config.epochs, dataset=run.config.dataset,
        ratio_interval="median of per-round paired ratios, order-statistic 95 % interval",
    )  # fmt: skip
    return study.finish(run, summary, cols, rows, figure(cells, ttt, k["strategies"]),
                        f"{NAME}.png")  # fmt: skip


if __name__ == "__main__":
    main()
