"""Does weight decay slow training? Per-step time of every strategy relative to ``none``.

Question: the tutorial asks whether adding weight decay (or L1) costs training time. We time one
optimizer step of every strategy in ``wdjax.STRATEGIES`` (with Adam, the tutorial's optimizer)
for one model (K = 1) and for a vmapped sweep of K = 32 members, relative to ``none``.

Method: for each (strategy, K) the sweep's own epoch program, ``wdjax.Engine.train_epoch`` (a
``lax.scan`` of ``jax.vmap(Engine.step)``, then the epoch's divergence check and weight
statistics), run over 100 consecutive steps (the batches of 10 ``digits`` epochs of 128 images, in
``Engine.batch_order``) with empty validation and test sets, so nothing is evaluated; MLP 64-64.
After compiling (and one warm-up call), each call is timed with ``block_until_ready`` from the same
initial state; the repeats run round-robin over the strategies so that load changes on a shared
machine hit all of them alike; per-step time = median over repeats / 100; the spread is the
interquartile range. Compile time is reported too.

Command: ``python experiments/overhead.py`` (``--smoke``: seconds). Runtime ≈ 4 min on 2 (shared)
CPU cores (16 compiles + 9 repeats × 16 timed calls). The table shows median ± half the IQR.

Expected: the regularizers add O(#params) elementwise work (a multiply-add for ``l2``/``wd``,
sign or soft-thresholding for L1, per-unit norms for group lasso) to a step whose cost is the
forward/backward matmuls, O(batch × #params): a few percent at most for K = 32. At K = 1 the
network is tiny (≈ 9k weights, batch 128) and a step is dominated by per-op overheads, so extra
elementwise ops may show as a larger relative cost; the Newton iterations of
``group_lasso_prox`` after Adam (``wdjax.prox_group_lasso``) are the most expensive.

summary.json: ``relative`` {"K=<k>": {strategy: median time / median time of none}},
``per_step_us`` {"K=<k>": {strategy: µs}}, ``iqr_us`` (same layout), ``compile_seconds``
{"K=<k>": {strategy: s}}, ``steps_per_call``, ``repeats``, ``members``, ``backend``, ``strength``
(λ of every strategy but none), ``method``, ``figure``, ``command``, ``seconds``.

Measured: (full run, 224 s on 2 CPU cores shared with other jobs; the IQR of a cell is 10–20 % of
its median, so ratios within ≈ ±0.15 of 1 are noise) per-step time relative to none, K = 1 / K = 32:
l1 0.87 / 0.97, l2 0.88 / 0.98, wd 0.96 / 0.87, wd_paper 0.87 / 1.03, l1_prox 0.92 / 1.02,
elastic_net_prox 1.15 / 0.97, group_lasso_prox 1.61 / 1.58 (none: 372 µs per step at K = 1, 10.1 ms
at K = 32, i.e. 315 µs per member: on 2 cores even one tiny model is compute-bound, so vmapping 32
members saves only ≈ 15 % per member). As expected, weight decay, L2 and the L1 variants cost
nothing measurable next to the matmuls; only group_lasso_prox (its per-unit norms and the Newton
iterations after Adam) is clearly slower, ≈ 1.6×. The K = 1 ratios below 1 are timing noise, not a
speed-up. Compile times are 3–6 s for every strategy. (Those numbers timed a bare scan of
``Engine.step``; timing ``Engine.train_epoch`` instead, back to back with it on the same machine,
moved none at K = 1 from 98 to 116 µs per step (the epoch's loss bookkeeping, divergence check and
weight statistics, spread over 100 steps) and left K = 32 at 3.43 ms; group_lasso_prox read 1.62 /
1.67 against 1.91 / 1.58, the others 0.99–1.05.)
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

import wdjax
from wdjax import study

NAME = "overhead"


def get_config(smoke=False) -> dict:
    """``members``: the K values; ``steps`` per timed call; the strength is SweepConfig's."""
    return dict(
        strategies=("none", "wd") if smoke else wdjax.STRATEGIES,
        members=(2,) if smoke else (1, 32), steps=5 if smoke else 100, repeats=2 if smoke else 9,
    )  # fmt: skip


def train_only(ds) -> wdjax.Data:
    """``ds``' training split as :class:`wdjax.Data` with empty validation and test sets."""
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train, jnp.int32)
    return wdjax.Data(x, y, jnp.arange(len(x), dtype=jnp.int32)[None],
                      jnp.zeros((1, 0), jnp.int32), x[:0], y[:0])  # fmt: skip


def make_runner(reg: str, k: int, config, steps: int, ds):
    """(run() → (states, metrics), compile seconds) for one (strategy, K): ``steps`` steps of
    ``Engine.train_epoch``, each call from the same initial states."""
    cfg = dataclasses.replace(config, reg=reg)
    engine = wdjax.Engine.from_config(cfg, ds.num_classes)
    strength = 0.0 if reg == "none" else cfg.strengths[0]
    f32, i32 = jnp.float32, jnp.int32
    hyper = wdjax.Hyper(jnp.full(k, strength, f32), jnp.full(k, cfg.lrs[0], f32),
                        jnp.arange(k, dtype=i32), jnp.zeros(k, i32))  # fmt: skip
    data, n = train_only(ds), len(ds.x_train)
    epochs = -(-steps // (n // cfg.batch_size))
    order = jnp.concatenate([engine.batch_order(cfg.data_seed, e, n) for e in range(epochs)])
    order = order[:steps]  # [steps, batch]
    states = jax.jit(engine.init_members)(hyper, data.x_pool[:1])
    t = time.perf_counter()
    compiled = jax.jit(engine.train_epoch).lower(states, hyper, data, order).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(states, hyper, data, order))  # warm-up
    return (lambda: compiled(states, hyper, data, order)), compile_s


def time_all(runners: dict, repeats: int) -> dict:
    """Seconds per call of every runner, ``repeats`` times round-robin: {name: [repeats]}."""
    out = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            out[name].append(time.perf_counter() - t)
    return out


def plot(rel: dict):
    plt = study.pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    names = list(next(iter(rel.values())))
    x = np.arange(len(names))
    w = 0.8 / len(rel)
    for i, (k, r) in enumerate(rel.items()):
        ax.bar(x + w * (i - (len(rel) - 1) / 2), [r[n] for n in names], w, label=k)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(ylabel="step time / step time of none", title="per-step time relative to none (adam)")
    ax.legend()
    return fig


def main(argv=None) -> dict:
    run = study.setup(__doc__, NAME, get_config, argv)
    ds, knobs = study.load_data(run.config), run.knobs
    runners, comp = {}, {}
    for k in knobs["members"]:
        for reg in knobs["strategies"]:
            key = (k, reg)
            runners[key], comp[key] = make_runner(reg, k, run.config, knobs["steps"], ds)
    times = time_all(runners, knobs["repeats"])
    per, iqr, rel, cs = {}, {}, {}, {}
    for (k, reg), v in times.items():
        kk = f"K={k}"
        q25, med, q75 = np.percentile(np.asarray(v) / knobs["steps"], [25, 50, 75])
        per.setdefault(kk, {})[reg], iqr.setdefault(kk, {})[reg] = med * 1e6, (q75 - q25) * 1e6
        cs.setdefault(kk, {})[reg] = comp[(k, reg)]
    for kk, d in per.items():
        rel[kk] = {reg: t / d["none"] for reg, t in d.items()}
    cols = ["strategy"] + [
        c for kk in per for c in (f"µs/step {kk}", f"× none {kk}", f"compile s {kk}")
    ]
    rows = [[reg] + [c for kk in per for c in (f"{per[kk][reg]:.0f} ± {iqr[kk][reg] / 2:.0f}",
                                               f"{rel[kk][reg]:.3f}", f"{cs[kk][reg]:.1f}")]
            for reg in knobs["strategies"]]  # fmt: skip
    summary = dict(
        relative=rel, per_step_us=per, iqr_us=iqr, compile_seconds=cs,
        steps_per_call=knobs["steps"], repeats=knobs["repeats"], members=list(knobs["members"]),
        backend=jax.default_backend(), strength=run.config.strengths[0],
        method="median over round-robin repeats of Engine.train_epoch (a jitted lax.scan of "
        "vmapped Engine.step), nothing evaluated",
    )  # fmt: skip
    return study.finish(run, summary, cols, rows, plot(rel), "overhead.png")


if __name__ == "__main__":
    main()
