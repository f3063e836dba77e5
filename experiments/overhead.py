"""Does weight decay slow training? Per-step cost of every strategy, and time to a validation loss.

Claim: a regularizer adds O(#params) elementwise work to a step whose cost is the forward/backward
pass: free per step (Loshchilov & Hutter 2019; Parikh & Boyd 2014), though it may need more steps.

Command: ``python experiments/overhead.py`` (Fashion-MNIST; ``--smoke``: digits, seconds).
Runtime: 7 minutes on the 2-core machine; an interrupted run's training resumes by arm.

Verdict (last full run): reproduced for weight decay (no detectable cost per step or in epochs),
contradicted for the group-lasso prox on the MLP (2× a step), inconclusive on extra epochs.

Design (:func:`get_config`, rules in its ``rules``): each strategy after Adam on the MLP and CNN,
K = 1 and a vmapped sweep, 12 interleaved rounds of ``Engine.train_epoch``; then 3 λ each, 10,000
images, 30 epochs, 5 replicates. The same programs and seeds as before; the figure is simpler.
"""

import dataclasses
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import wdjax
from wdjax import study
from wdjax.analysis import plots, stats
from wdjax.study import replicates

STUDIED = wdjax.STRATEGIES[:8]  # when the study ran: cautious_wd and wd_corrected came later
GRIDS = {"l1": (1e-5, 3e-5, 1e-4), "l2": (3e-4, 1e-3, 3e-3), "wd": (0.3, 1.0, 3.0),  # 3 λ each
         "wd_paper": (3e-4, 1e-3, 3e-3), "l1_prox": (3e-6, 1e-5, 3e-5),  # around lambda_curve's
         "elastic_net_prox": (6e-6, 2e-5, 6e-5),
         "group_lasso_prox": (3e-6, 1e-5, 3e-5)}  # fmt: skip
RULES = dict(
    ratio="a strategy's call time ÷ none's in the same round; median over rounds, order-statistic "
    "95 % interval (noise is one-sided); geo: geometric mean, t-interval of the log ratios",
    tuned="the λ whose replicate-mean validation curve has the lowest minimum over epochs",
    target="target_factor × the replicate's own none run's lowest validation loss; epochs to it: "
    "the first epoch at or below it; never reached: censored (NaN, nothing imputed)",
    seconds="epochs × steps an epoch × none's median step time (first cell) × the strategy's "
    "median paired ratio; evaluation left out; mean and 95 % t-interval, paired against none",
)  # fmt: skip


def get_config() -> dict:  # cells: (model, K, steps per timed call); the first prices an epoch
    return dict(dataset="fashion_mnist", mask="hidden", train_size=10000, val_size=10000,
                epochs=30, strategies=STUDIED, cells=(("mlp", 1, 200), ("mlp", 16, 25),
                ("cnn", 1, 4), ("cnn", 4, 2)), rounds=12, grids=GRIDS, target_factor=1.05,
                replicates=5, rules=RULES, selected_by="lowest minimum over epochs of the "
                "replicate-mean validation loss")  # fmt: skip


def smoke(config: dict) -> dict:
    return dict(dataset="digits", train_size=None, val_size=400, epochs=2, rounds=2, replicates=2,
                strategies=("none", "wd"), cells=(("mlp", 1, 3),),
                grids={"wd": (0.01, 0.1)})  # fmt: skip


def make_runner(reg: str, k: int, config, steps: int, ds):
    """(run() → (states, metrics), compile seconds): ``steps`` steps of ``Engine.train_epoch`` for
    K members of one strategy, each call from member 0's initial state (built eagerly: a jitted
    init compiles as long as the epoch), nothing evaluated."""
    cfg = dataclasses.replace(config, reg=reg, strengths=config.strengths[:1] if reg != "none"
                              else (0.0,))  # fmt: skip
    engine, i32, f32 = wdjax.build(cfg, num_classes=ds.num_classes).engine, jnp.int32, jnp.float32
    hyper = wdjax.Hyper(jnp.full(k, cfg.strengths[0], f32), jnp.full(k, cfg.lrs[0], f32),
                        jnp.arange(k, dtype=i32), jnp.zeros(k, i32))  # fmt: skip
    x, y, n = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train, i32), len(ds.x_train)
    data = wdjax.Data(x, y, jnp.arange(n, dtype=i32)[None], jnp.zeros((1, 0), i32), x[:0], y[:0])
    order = jnp.concatenate([engine.batch_order(cfg.data_seed, e, n) for e in
                             range(-(-steps // (n // cfg.batch_size)))])[:steps]  # fmt: skip
    one = engine.init(jax.tree.map(lambda a: a[0], hyper), data.x_pool[:1])
    states = jax.tree.map(lambda a: jnp.broadcast_to(a, (k, *a.shape)), one)
    t, compiled = time.perf_counter(), jax.jit(engine.train_epoch).lower(states, hyper, data, order)
    compiled = compiled.compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(states, hyper, data, order))  # warm-up
    return (lambda: compiled(states, hyper, data, order)), compile_s


def time_round(runners: dict, offset: int = 0) -> dict:
    """{name: seconds of one call}, in dict order rotated by ``offset`` (no one always first)."""
    names, out = list(runners), {}
    offset %= max(len(names), 1)
    for name in names[offset:] + names[:offset]:
        t = time.perf_counter()
        jax.block_until_ready(runners[name]())
        out[name] = time.perf_counter() - t
    return out


def cell_summary(times: dict, steps: int, compile_s: dict) -> dict:
    """{strategy: ``us`` per step (median, order-statistic interval), per-round paired ratios to
    none (``ratio``: median, order-statistic interval; ``geo``, rules), ``compile_s``}."""
    out = {}
    for reg, t in times.items():
        r = np.asarray(t, float) / np.asarray(times["none"], float)
        us, m, g = stats.median_interval(np.asarray(t, float) / steps * 1e6), *(
            stats.median_interval(r), stats.describe(np.log(r)))  # fmt: skip
        out[reg] = dict(us=us.median, us_lo=us.lo, us_hi=us.hi, compile_s=compile_s[reg],
                        ratio=m.median, ratio_lo=m.lo, ratio_hi=m.hi, coverage=m.coverage,
                        geo=float(np.exp(g.mean)), geo_lo=float(np.exp(g.lo)),
                        geo_hi=float(np.exp(g.hi)))  # fmt: skip
    return out


def seconds_per_epoch(cell: dict, steps: int) -> dict:
    """{strategy: seconds of ``steps`` steps}: none's median step time × the paired ratio."""
    base = cell["none"]["us"] * 1e-6 * steps
    return {reg: base * d["ratio"] for reg, d in cell.items()}


def time_strategies(ctx, ds) -> tuple[dict, dict]:
    """Compile every (cell, strategy), time interleaved rounds: ({cell: summary}, load averages)."""
    k, runners, comp = ctx.knobs, {}, {}
    for model, members, steps in k["cells"]:
        cfg, cell = dataclasses.replace(ctx.config, model=model), f"{model} K={members}"
        pairs = {r: make_runner(r, members, cfg, steps, ds) for r in k["strategies"]}
        runners[cell], comp[cell] = ({r: v[i] for r, v in pairs.items()} for i in (0, 1))
        print(f"compiled {cell}: {sum(comp[cell].values()):.0f} s", flush=True)
    load = {"before": os.getloadavg()[0]}  # 1-minute load averages around the timed rounds
    rounds = [{c: time_round(rs, r) for c, rs in runners.items()} for r in range(k["rounds"])]
    times = {c: {reg: [rd[c][reg] for rd in rounds] for reg in k["strategies"]} for c in runners}
    load["after"] = os.getloadavg()[0]
    return {c: cell_summary(times[c], s, comp[c])
            for c, (_, _, s) in zip(runners, k["cells"], strict=True)}, load  # fmt: skip


def machine() -> dict:
    """CPU model (/proc/cpuinfo's "model name"), logical cores, jax version and backend."""
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    cpu = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")]
    return dict(cpu=(cpu or [platform.processor() or "unknown"])[0], cores=os.cpu_count(),
                jax=jax.__version__, backend=jax.default_backend())  # fmt: skip


def train_strategies(ctx) -> dict:  # {strategy: [ArmResult per replicate]}, none at λ = 0
    return ctx.sweeps({reg: dataclasses.replace(ctx.config, reg=reg, strengths=(0.0,) if reg ==
                       "none" else tuple(ctx.knobs["grids"][reg]))
                       for reg in ctx.knobs["strategies"]})  # fmt: skip


def epochs_to_target(curves_RxE, targets_R) -> np.ndarray:
    """[R] the first epoch (1-based) at or below the replicate's target; NaN: censored."""
    hit = np.asarray(curves_RxE, float) <= np.asarray(targets_R, float)[:, None]  # NaN: False
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1.0, np.nan)


def time_to_target(runs: dict, factor: float, seconds_per_epoch: dict) -> dict:
    """At each strategy's tuned λ: epochs, seconds to the target, best val loss (``rules``)."""
    _, none = replicates.curves(runs["none"], "val_loss")  # [R, 1, E]
    best_none = np.fmin.reduce(none[:, 0], axis=1)
    targets, out = factor * best_none, {}
    base_e = epochs_to_target(none[:, 0], targets)
    for reg, rs in runs.items():
        settings, c = replicates.curves(rs, "val_loss")
        val_min = np.fmin.reduce(np.nanmean(c, axis=0), axis=1)  # [settings]
        i = stats.argmin(val_min)  # rules["tuned"]
        e, best, sc = epochs_to_target(c[:, i], targets), np.fmin.reduce(c[:, i], axis=1), c[:, i]
        band = stats.describe(sc, axis=0)
        out[reg] = dict(strength=settings[i]["strength"], index=i, val_min=val_min.tolist(),
                        targets=targets.tolist(), epochs=e.tolist(),
                        reached=int(np.isfinite(e).sum()), n=len(e),
                        curve=np.nanmean(sc, axis=0).tolist(), curve_lo=band.lo.tolist(),
                        curve_hi=band.hi.tolist(),
                        **replicates.summarize("epochs", e, base_e),
                        **replicates.summarize("seconds", e * seconds_per_epoch[reg],
                                               base_e * seconds_per_epoch["none"]),
                        **replicates.summarize("best_val", best, best_none))  # fmt: skip
    return out


def table(cells: dict, ttt: dict, strategies) -> tuple[list, list]:
    def ival(d, x, n=2):  # mean [lo, hi], the median alone where no interval is defined
        m, lo, hi = d[x], d[x + "_lo"], d[x + "_hi"]
        return study.fmt_ci(m, lo, hi, n) if np.isfinite(lo) and np.isfinite(hi) else f"{m:.{n}f}"

    cols = ["strategy", f"µs/step {(first := next(iter(cells)))}", *(f"× none {c}" for c in cells),
            "tuned λ", "reached", "epochs to target", "Δ epochs (paired)", "s to target",
            "Δ s (paired)", "Δ best val loss (paired)"]  # fmt: skip
    rows = [[r, ival(cells[first][r], "us", 0), *(ival(cells[c][r], "ratio") for c in cells),
             f"{t['strength']:.3g}", f"{t['reached']}/{t['n']}", study.ci(t, "epochs", 1),
             study.ci(t, "epochs_diff", 1), study.ci(t, "seconds", 2),
             study.ci(t, "seconds_diff", 2), study.ci(t, "best_val_diff", 4)]
            for r, t in ((r, ttt[r]) for r in strategies)]  # fmt: skip
    return cols, rows


TITLES = (("step time / none's", "per-step time vs none (median, 95 % order-stat. interval)"),
          ("validation loss", "val. loss at the tuned λ (bands: 95 % t-int. over replicates)"),
          ("Δ s to target", "time to target − none's (paired, 95 % t-interval)"))  # fmt: skip


def errorbars(ax, x, d: dict, key: str, strategies, ref: float, **kw):
    mid, lo, hi = (np.array([d[r][key + s] for r in strategies]) for s in ("", "_lo", "_hi"))
    ax.errorbar(x, mid, yerr=np.nan_to_num(np.vstack([mid - lo, hi - mid])), fmt="o", **kw)
    ax.axhline(ref, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, strategies, rotation=30, ha="right")


def figure(cells: dict, ttt: dict, strategies):
    fig, axes = study.pyplot().subplots(1, 3, figsize=(17, 4.6))
    x, w = np.arange(len(strategies)), 0.8 / len(cells)
    for j, (cell, d) in enumerate(cells.items()):
        errorbars(axes[0], x + w * (j - (len(cells) - 1) / 2), d, "ratio", strategies, 1.0, ms=4,
                  capsize=2, label=cell)  # fmt: skip
    for j, (reg, t) in enumerate((r, ttt[r]) for r in strategies):
        plots.fill(axes[1], np.arange(1, len(t["curve"]) + 1), t["curve"], t["curve_lo"],
                   t["curve_hi"], f"{reg} λ={t['strength']:.2g}", color=f"C{j}", lw=1,
                   marker=None)  # fmt: skip
    target = np.mean(ttt["none"]["targets"])
    axes[1].axhline(target, color="k", lw=0.8, ls=":", label="target (mean)")
    errorbars(axes[2], x, ttt, "seconds_diff", strategies, 0.0, capsize=3)
    for ax, (ylabel, title), size in zip(axes, TITLES, (8, 7, 0), strict=True):
        ax.set(ylabel=ylabel, title=title, xlabel="epoch" if size == 7 else None)
        if size:
            ax.legend(fontsize=size)
    fig.tight_layout()
    return fig


def run(ctx: study.Context) -> study.Report:
    k, info, ds = ctx.knobs, machine(), study.load_data(ctx.config)
    cells, load = time_strategies(ctx, ds)
    spe = len(ds.x_train) // ctx.config.batch_size  # steps an epoch (partial batch dropped)
    per_epoch = seconds_per_epoch(cells[next(iter(cells))], spe)  # the first cell, K = 1
    ttt = time_to_target(train_strategies(ctx), k["target_factor"], per_epoch)
    load["after_training"] = os.getloadavg()[0]
    summary = dict(
        timing=cells, time_to_target=ttt, load=load, machine=info, cells=list(cells),
        steps_per_call={f"{m} K={n}": s for m, n, s in k["cells"]}, rounds=k["rounds"],
        train_size=len(ds.x_train), val_size=len(ds.x_val), steps_per_epoch=spe,
        seconds_per_epoch=per_epoch, target_factor=k["target_factor"],
        best_strength={r: ttt[r]["strength"] for r in k["strategies"]},
        strengths={r: list(k["grids"][r]) for r in k["strategies"] if r != "none"},
        epochs=ctx.config.epochs, ratio_interval="median of per-round paired ratios, "
        "order-statistic 95 % interval",
    )  # fmt: skip
    return study.Report(summary, *table(cells, ttt, k["strategies"]),
                        figure(cells, ttt, k["strategies"]))  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
