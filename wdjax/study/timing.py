"""Timing one step of a strategy: compiled epoch programs called in interleaved rounds.

Used by experiments/overhead.py (moved here from the study when its rules grew past the study
files' 250 lines). :func:`make_runner` builds ``steps`` steps of ``Engine.train_epoch`` for K
members of one strategy as a compiled call from a fixed state; :func:`time_round` calls each
runner once, in an order rotated per round so that no strategy always runs first (the machine's
load drifts, and a ratio formed within one round pairs the strategies under the same load);
:func:`machine` names the hardware the times were measured on.
"""

import dataclasses
import os
import platform
import time

import jax
import jax.numpy as jnp

import wdjax

__all__ = ["machine", "make_runner", "time_round"]


def make_runner(reg: str, k: int, config, steps: int, ds):
    """(run() → (states, metrics), compile seconds): ``steps`` steps of ``Engine.train_epoch`` for
    K members of one strategy, each call from member 0's eagerly built state; nothing evaluated."""
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
    names, out, k = list(runners), {}, offset % max(len(runners), 1)
    for name in names[k:] + names[:k]:
        t = time.perf_counter()
        jax.block_until_ready(runners[name]())
        out[name] = time.perf_counter() - t
    return out


def machine() -> dict:
    """CPU model (/proc/cpuinfo's "model name"), logical cores, jax version and backend."""
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    cpu = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")]
    return dict(cpu=(cpu or [platform.processor() or "unknown"])[0], cores=os.cpu_count(),
                jax=jax.__version__, backend=jax.default_backend())  # fmt: skip
