"""Compiling a sweep's three programs, and the cache that reuses them across sweeps.

Three programs per (engine, data shapes, chunk, mesh): ``init`` (every member's initial state),
``order`` (the epoch's batch order, :meth:`Engine.batch_order`) and ``epoch``
(:meth:`Engine.train_epoch`). The cache key is the hashable :class:`wdjax.Engine` itself (model,
optimizer, strategy, batch size, dtype: everything that shapes the program), the data shapes, the
chunk and the devices, so a new λ grid of the same size reuses the compiled programs. XLA compiles
in C++ without Python's lock, so the two small programs compile on a worker thread (with the
cheaper CPU options, :data:`CPU_SMALL_OPTIONS`) while this thread traces and compiles the epoch:
first-call compile is their longest path, not their sum.

:func:`fit` picks the chunk: ``chunk_size`` members if given, else as many as fit, halving until
the compiled epoch's ``memory_analysis()`` (arguments + outputs + temporaries − aliased) is under
:data:`MEMORY_FRACTION` of a device's memory.
"""

import concurrent.futures
import functools
import logging
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from wdjax.engine import compile_cache
from wdjax.engine import devices as dev
from wdjax.engine.engine import Data, Engine, Hyper

__all__ = ["CPU_SMALL_OPTIONS", "MEMORY_FRACTION", "Programs", "clear_cache", "compile_small",
           "fit", "get", "memory_breakdown", "program_bytes"]  # fmt: skip

# Initialization (once per sweep) and the batch order (once per epoch) are small programs: on
# XLA:CPU, LLVM -O1 with the classic elemental emitters compiles them faster (init's threefry +
# truncated-normal kernels: ~2.2 s -> ~0.7 s for the MLP; the shuffle 0.54 -> 0.37 s) with
# the same weights (tested) and the same run time. (-O0 changes the values; for the epoch
# program the classic emitters cost ~20 % run time, so it keeps the defaults.)
CPU_SMALL_OPTIONS = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}
MEMORY_FRACTION = 0.7  # automatic chunking keeps a compiled epoch under this share of memory
log = logging.getLogger("wdjax")
_CACHE: dict = {}  # key (see module docstring) -> (init, order, epoch)
_MAX_CACHED = 16


class Programs(NamedTuple):
    """A sweep's compiled programs for one chunk size, and the seconds compiling them took."""

    init: Any  # (Hyper [C], x_example) -> MemberState [C]
    order: Any  # (data_seed, epoch) -> [steps, B] int32
    epoch: Any  # (MemberState [C], Hyper [C], Data, order) -> (MemberState [C], metrics [C])
    chunk: int
    seconds: float


def get(engine: Engine, data: Data, chunk: int, shard, repl, data_seed: int,
        axes: tuple = ()) -> Programs:  # fmt: skip
    """The compiled programs for this engine, these data shapes and ``chunk`` (cached);
    ``axes`` names the optimizer's further traced arguments (``Hyper.extra``)."""
    shapes = tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves(data))
    devices = tuple(str(d) for d in shard.mesh.devices.flat)
    key = (engine, shapes, chunk, devices, jax.config.jax_enable_x64, axes)
    if key in _CACHE:
        return Programs(*_CACHE[key], chunk, 0.0)
    t = time.perf_counter()
    disk = compile_cache.program_key(engine, shapes, chunk, devices, axes)  # None: not cached
    compiled = disk and compile_cache.load_programs(disk, shard.mesh.devices.flat)
    if compiled:
        log.info("loaded the compiled programs from the compile cache (%s)", compile_cache.root())
    else:
        hits = compile_cache.jax_cache_hits()
        compiled = _compile(engine, data, chunk, shard, repl, data_seed, axes)
        if disk and compile_cache.jax_cache_hits() == hits:  # never re-save JAX's loaded ones
            compile_cache.save_programs(disk, compiled)
    if len(_CACHE) >= _MAX_CACHED:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = compiled
    return Programs(*compiled, chunk, time.perf_counter() - t)


def _compile(engine, data, chunk, shard, repl, data_seed, axes) -> tuple:
    """Trace, lower and compile (init, order, epoch)."""
    fdt = jnp.dtype(engine.dtype)
    spec = functools.partial(jax.ShapeDtypeStruct, (chunk,), sharding=shard)
    hyper = Hyper(spec(dtype=fdt), spec(dtype=fdt), spec(dtype=jnp.int32), spec(dtype=jnp.int32),
                  {name: spec(dtype=fdt) for name in axes})  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        init_lo = jax.jit(engine.init_members, out_shardings=shard).lower(hyper, data.x_pool[:1])
        init_f = worker.submit(compile_small, init_lo, shard)
        order = functools.partial(engine.batch_order, n=data.train_idx.shape[1])
        order_lo = jax.jit(order, out_shardings=repl).lower(jnp.int32(data_seed), jnp.int32(0))
        order_f = worker.submit(compile_small, order_lo, shard)
        states = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=shard), init_lo.out_info
        )
        order_spec = jax.ShapeDtypeStruct(order_lo.out_info.shape, jnp.int32, sharding=repl)
        epoch = jax.jit(engine.train_epoch, donate_argnums=0, out_shardings=(shard, shard))
        flag = (jax.ShapeDtypeStruct((), jnp.bool_, sharding=repl),) * (engine.eval_every > 1)
        epoch_c = epoch.lower(states, hyper, data, order_spec, *flag).compile()
        return init_f.result(), order_f.result(), epoch_c


def clear_cache() -> None:
    """Forget every compiled program (the next sweep compiles again)."""
    _CACHE.clear()


def fit(engine: Engine, data: Data, members: int, chunk_size, shard, repl, data_seed,
        axes: tuple = ()) -> Programs:  # fmt: skip
    """Programs for the largest chunk (≤ ``members``, or ``chunk_size``) whose epoch fits in
    memory; with several processes, process 0's choice (every process must run the same one)."""
    n_dev = shard.mesh.size
    chunk, seconds = _even(min(chunk_size or members, members), n_dev), 0.0
    while True:  # halve the chunk until the compiled epoch fits (unless chunk_size is set)
        progs = get(engine, data, chunk, shard, repl, data_seed, axes)
        seconds += progs.seconds
        fits = program_bytes(progs.epoch) <= MEMORY_FRACTION * dev.memory_limit(
            jax.local_devices()[0]
        )
        if chunk_size or chunk <= n_dev or fits:
            break
        chunk = _even(chunk // 2, n_dev)
    if jax.process_count() > 1:
        agreed = int(multihost_utils.broadcast_one_to_all(np.int32(chunk)))
        if agreed != chunk:
            progs = get(engine, data, agreed, shard, repl, data_seed, axes)
            seconds += progs.seconds
    return progs._replace(seconds=seconds)


def _even(c: int, n_dev: int) -> int:
    return math.ceil(c / n_dev) * n_dev  # every chunk splits evenly over the devices


def compile_small(lowered, shard):
    """Compile a small program that runs once per sweep or epoch (init, batch order) with the
    cheaper CPU options (the defaults elsewhere, or if the installed XLA no longer knows one)."""
    if shard.mesh.devices.flat[0].platform == "cpu":
        try:
            return lowered.compile(compiler_options=CPU_SMALL_OPTIONS)
        except jax.errors.JaxRuntimeError as e:  # an XLA without these options: compile as usual
            if "No such compile option" not in str(e):
                raise
    return lowered.compile()


def memory_breakdown(compiled) -> dict | None:
    """``memory_analysis()`` of a compiled program as a dict of bytes per device (None if the
    backend does not report it): arguments, outputs, temporaries, aliased (outputs written in
    place of donated arguments) and total = arguments + outputs + temporaries − aliased."""
    m = compiled.memory_analysis()
    if m is None:
        return None
    out = {
        "arguments": m.argument_size_in_bytes,
        "outputs": m.output_size_in_bytes,
        "temporaries": m.temp_size_in_bytes,
        "aliased": m.alias_size_in_bytes,
    }
    out["total"] = out["arguments"] + out["outputs"] + out["temporaries"] - out["aliased"]
    return out


def program_bytes(compiled) -> int:
    """Device bytes a compiled program needs: arguments + outputs + temporaries − aliased."""
    m = memory_breakdown(compiled)
    return 0 if m is None else m["total"]
