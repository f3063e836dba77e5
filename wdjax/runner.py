"""Host side of a sweep: data to device once, members sharded over devices, chunks, resume.

``sweep(config)`` trains every member of ``config`` (strengths × lrs × seeds × folds) with one
compiled training program per epoch (:class:`wdjax.train.Engine`; a small second program gives
the epoch's batch order), writes the run directory
(:mod:`wdjax.results`) and returns a :class:`SweepResult` whose arrays carry a leading member axis.

Devices: the member axis is sharded over every device (a 1-D mesh named ``members``); with several
processes (``jax.distributed``) each process runs the same program on its share of members and
process 0 alone writes files. Memory: members are trained a chunk at a time (all epochs of a
chunk, then the next): ``chunk_size`` members if given, else as many as fit: the chunk is halved
until the compiled epoch's ``memory_analysis()`` (arguments + outputs + temporaries − aliased) is
under ``MEMORY_FRACTION`` of a device's memory (host RAM for CPU devices). The last chunk is padded
with copies so every chunk has the same shape and the program compiles once. Results do not
depend on chunking or sharding.
"""

import concurrent.futures
import dataclasses
import functools
import importlib.metadata
import math
import os
import platform
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from wdjax import data as D
from wdjax import results
from wdjax.config import ConfigError, SweepConfig, validate
from wdjax.train import Data, Engine, Hyper

_EXECUTABLES: dict = {}  # (static config, shapes, devices) -> compiled (init, order, epoch)
_MAX_EXECUTABLES = 16
# Initialization (once per sweep) and the batch order (once per epoch) are small programs: on
# XLA:CPU, LLVM -O1 with the classic elemental emitters compiles them faster (init's threefry +
# truncated-normal kernels: ~2.2 s -> ~0.7 s for the MLP; the shuffle 0.54 -> 0.37 s) with
# bit-identical results (tested) and the same run time. (-O0 changes the values; for the epoch
# program the classic emitters cost ~20 % run time, so it keeps the defaults.)
_CPU_SMALL_OPTIONS = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}
MEMORY_FRACTION = 0.7  # automatic chunking keeps a compiled epoch under this share of memory


class SweepResult(NamedTuple):
    """What a sweep returns (host arrays)."""

    config: SweepConfig
    members: list  # [K] dicts: member, strength, lr, seed, fold
    history: dict  # name -> [K, epochs] arrays (train/val/test loss+acc, norms, sparsity, ...)
    summary: dict  # as summary.json
    meta: dict  # as meta.json
    params: Any  # final parameters, leaves [K, ...] (None when reloaded from a finished run)
    run_dir: str | None


def sweep(
    config: SweepConfig | None = None,
    *,
    out: str | None = None,
    resume: bool = False,
    progress=None,
    devices=None,
    data=None,
    **overrides,
) -> SweepResult:
    """Train every member of a sweep; see the module docstring.

    Args:
      config: a :class:`SweepConfig` (default: the tutorial MLP on ``digits``).
      out: run directory to write (None: write nothing, e.g. in tests or notebooks).
      resume: continue the run in ``out`` from its last checkpoint (its config must match).
      progress: None/False (silent), True (a progress line per epoch on stderr), or a callable
        taking a dict (chunk, chunks, epoch, epochs, elapsed, eta, best_val_acc, members).
      data: a :class:`wdjax.Dataset` of arrays to train on instead of loading
        ``config.dataset`` (e.g. synthetic data in a benchmark); used as given.
      devices: the devices to shard members over (default: all of ``jax.devices()``; on CPU, as
        many of them as split a chunk of members with the least padding, see
        :func:`use_cpu_devices`).
      **overrides: fields of :class:`SweepConfig` replacing those of ``config``.
    """
    cfg = dataclasses.replace(config or SweepConfig(), **overrides)
    validate(cfg)
    writer = jax.process_index() == 0 and out is not None
    ckpt_path = os.path.join(out, "checkpoint.npz") if out else None
    if out and resume:
        _check_resumable(out, cfg)
        if not os.path.exists(ckpt_path) and os.path.exists(os.path.join(out, "summary.json")):
            return load_result(out)
    elif out and os.path.exists(os.path.join(out, "config.json")):
        raise ConfigError(
            f"out (--out) {out!r} already holds a run: pass resume=True (--resume) "
            "to continue it, or choose a new directory"
        )

    if data is None:
        ds = D.load(
            cfg.dataset,
            data_dir=cfg.data_dir,
            raw_dir=cfg.raw_dir,
            val_size=cfg.val_size,
            train_size=cfg.train_size,
            label_noise=cfg.label_noise,
            seed=cfg.data_seed,
            standardize=cfg.standardize,
        )
    elif isinstance(data, D.Dataset):
        ds = data  # used as given: the config's data fields are not applied
    else:
        raise ConfigError(f"data= must be a wdjax.Dataset (got {type(data).__name__})")
    host_data = _host_data(ds, cfg)
    n_train = host_data.train_idx.shape[1]
    if cfg.batch_size > n_train:
        raise ConfigError(
            f"batch_size (--batch-size) {cfg.batch_size} is larger than the "
            f"{n_train} training examples per member; lower it"
        )
    if writer:
        results.write_json(os.path.join(out, "config.json"), cfg.to_json())

    members = cfg.members()
    if devices is None:
        devices = _default_devices(min(cfg.chunk_size or len(members), len(members)))
    mesh = Mesh(np.array(devices), ("members",))
    shard, repl = NamedSharding(mesh, P("members")), NamedSharding(mesh, P())
    arrays = jax.tree.map(lambda x: _put(x, repl), host_data)
    engine = Engine.from_config(cfg, ds.num_classes)
    chunk, compile_s = _chunk_size(cfg, len(members), mesh.size), 0.0
    while True:  # halve the chunk until the compiled epoch fits in memory (unless chunk_size set)
        init_fn, order_fn, epoch_fn, seconds = _compiled(cfg, engine, arrays, chunk, shard, repl)
        compile_s += seconds
        if cfg.chunk_size or chunk <= mesh.size:
            break
        if _program_bytes(epoch_fn) <= MEMORY_FRACTION * _memory_limit(jax.local_devices()[0]):
            break
        chunk = _chunk_size(cfg, chunk // 2, mesh.size)
    if jax.process_count() > 1:  # every process must run the same program: process 0 decides
        agreed = int(multihost_utils.broadcast_one_to_all(np.int32(chunk)))
        if agreed != chunk:
            chunk = agreed
            compiled = _compiled(cfg, engine, arrays, chunk, shard, repl)
            init_fn, order_fn, epoch_fn, seconds = compiled
            compile_s += seconds
    hyper_all = _hyper_arrays(members, math.ceil(len(members) / chunk) * chunk, cfg.dtype)

    # Finished chunks' history ([K_done, E] arrays) and final parameters, host side.
    start_chunk, start_epoch, resumed, done, done_params = 0, 0, None, None, None
    if out and resume and os.path.exists(ckpt_path):
        start_chunk, start_epoch, r_states, r_hist, done, done_params = results.load_checkpoint(
            ckpt_path, init_fn.out_info
        )
        if start_epoch > 0:  # a chunk was interrupted mid-way (else: start the next one fresh)
            resumed = (r_states, r_hist)

    t0, steps = time.perf_counter(), 0
    n_chunks = hyper_all.seed.shape[0] // chunk
    for c in range(start_chunk, n_chunks):
        hyper = jax.tree.map(lambda x, c=c: _put(x[c * chunk : (c + 1) * chunk], shard), hyper_all)
        if resumed is not None and c == start_chunk:
            states = jax.tree.map(lambda x: _put(x, shard), resumed[0])
            hist = {k: list(np.moveaxis(v, 1, 0)) for k, v in resumed[1].items()}
            first = start_epoch
        else:
            states, hist, first = init_fn(hyper, arrays.x_pool[:1]), {}, 0
        for epoch in range(first, cfg.epochs):
            order = order_fn(jnp.int32(cfg.data_seed), jnp.int32(epoch))
            states, m = epoch_fn(states, hyper, arrays, order)
            for k, v in _to_host(m).items():
                hist.setdefault(k, []).append(v)
            steps += chunk * (n_train // cfg.batch_size)
            stacked = {k: np.stack(v, axis=1) for k, v in hist.items()}
            last = epoch + 1 == cfg.epochs
            if last:
                done = _concat([done, stacked])
                done_params = _concat([done_params, _to_host(states.params)])
            if out:
                host_states = _to_host(states)  # a collective: every process takes part
            if writer:
                results.save_checkpoint(
                    ckpt_path, chunk=c + last, epoch=0 if last else epoch + 1,
                    states=host_states, history={} if last else stacked,
                    done=done, done_params=done_params,
                )  # fmt: skip
            _report(progress, c, n_chunks, epoch, cfg.epochs, t0, stacked, chunk, first)
    run_s = time.perf_counter() - t0

    k = len(members)
    history = {name: v[:k] for name, v in done.items()}
    params = jax.tree.map(lambda x: x[:k], done_params)
    meta = _meta(cfg, mesh, compile_s, run_s, steps, chunk, n_chunks)
    meta["epoch_program_bytes"] = _program_bytes(epoch_fn)  # per device, see _program_bytes
    meta["epoch_memory"] = _memory_breakdown(epoch_fn)
    meta["dataset"] = D.describe(ds)  # name, sizes, source path, files' sha256, cache entry
    summary = summarize(members, history)
    if writer:
        _write_run(out, members, history, summary, meta, params)
        if os.path.exists(ckpt_path):
            os.unlink(ckpt_path)
    return SweepResult(cfg, members, history, summary, meta, params, out)


# --- pieces ---------------------------------------------------------------------------------


def _host_data(ds, cfg: SweepConfig) -> Data:
    """Pool + per-fold index arrays (numpy). Without folds the pool is train ++ val."""
    x_pool = np.concatenate([ds.x_train, ds.x_val])
    y_pool = np.concatenate([ds.y_train, ds.y_val]).astype(np.int32)
    if cfg.folds > 1:
        train_idx, val_idx = D.kfold_indices(len(x_pool), cfg.folds, cfg.data_seed)
    else:
        n, v = len(ds.x_train), len(ds.x_val)
        train_idx = np.arange(n, dtype=np.int32)[None]
        val_idx = np.arange(n, n + v, dtype=np.int32)[None]
    return Data(
        x_pool,
        y_pool,
        np.asarray(train_idx, np.int32),
        np.asarray(val_idx, np.int32),
        ds.x_test,
        ds.y_test.astype(np.int32),
    )


def _static_key(cfg: SweepConfig):
    """The config fields that shape the compiled program (not the grid values)."""
    fields = (
        "model",
        "hidden",
        "dropout",
        "batchnorm",
        "optimizer",
        "reg",
        "l1_ratio",
        "momentum",
        "batch_size",
        "dtype",
    )
    return tuple(getattr(cfg, f) for f in fields)


def _compiled(cfg, engine: Engine, data: Data, chunk: int, shard, repl):
    """AOT-compiled (init, order, epoch) for this static config and these shapes, cached across
    calls.

    Three programs: ``init`` (every member's initial state), ``order`` (the epoch's batch order,
    :meth:`Engine.batch_order`) and ``epoch`` (:meth:`Engine.train_epoch`). XLA compiles in C++
    without Python's lock, so the two small programs compile on a worker thread (with the cheaper
    CPU options, see ``_CPU_SMALL_OPTIONS``) while this thread traces, lowers and compiles the
    epoch: first-call compile is their longest path, not their sum.
    """
    fdt = jnp.dtype(cfg.dtype)
    hyper_spec = Hyper(
        *(
            jax.ShapeDtypeStruct((chunk,), dt, sharding=shard)
            for dt in (fdt, fdt, jnp.int32, jnp.int32)
        )
    )
    shapes = tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves(data))
    key = (
        _static_key(cfg),
        shapes,
        chunk,
        tuple(str(d) for d in shard.mesh.devices.flat),
        jax.config.jax_enable_x64,
    )
    if key in _EXECUTABLES:
        return (*_EXECUTABLES[key], 0.0)
    t = time.perf_counter()
    n_train = data.train_idx.shape[1]
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        init_lo = jax.jit(engine.init_members, out_shardings=shard).lower(
            hyper_spec, data.x_pool[:1]
        )
        init_f = worker.submit(_compile_small, init_lo, shard)
        order_lo = jax.jit(
            functools.partial(engine.batch_order, n=n_train), out_shardings=repl
        ).lower(jnp.int32(cfg.data_seed), jnp.int32(0))
        order_f = worker.submit(_compile_small, order_lo, shard)
        states_spec = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=shard), init_lo.out_info
        )
        order_spec = jax.ShapeDtypeStruct(order_lo.out_info.shape, jnp.int32, sharding=repl)
        epoch = jax.jit(engine.train_epoch, donate_argnums=0, out_shardings=(shard, shard))
        epoch_c = epoch.lower(states_spec, hyper_spec, data, order_spec).compile()
        init_c, order_c = init_f.result(), order_f.result()
    if len(_EXECUTABLES) >= _MAX_EXECUTABLES:
        _EXECUTABLES.pop(next(iter(_EXECUTABLES)))
    _EXECUTABLES[key] = (init_c, order_c, epoch_c)
    return init_c, order_c, epoch_c, time.perf_counter() - t


def _compile_small(lowered, shard):
    """Compile a small program that runs once per sweep or epoch (init, batch order) with the
    cheaper CPU options (the defaults elsewhere, or if the installed XLA no longer knows one)."""
    if shard.mesh.devices.flat[0].platform == "cpu":
        try:
            return lowered.compile(compiler_options=_CPU_SMALL_OPTIONS)
        except jax.errors.JaxRuntimeError as e:  # an XLA without these options: compile as usual
            if "No such compile option" not in str(e):
                raise
    return lowered.compile()


def _memory_breakdown(compiled) -> dict | None:
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


def _program_bytes(compiled) -> int:
    """Device bytes a compiled program needs: arguments + outputs + temporaries − aliased."""
    m = _memory_breakdown(compiled)
    return 0 if m is None else m["total"]


def _memory_limit(device) -> int:
    """Bytes one device may use: the accelerator's limit, or the host RAM shared by CPU devices."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return ram // max(1, len(jax.local_devices()))


def default_cpu_devices() -> int:
    """The CPU device count :func:`use_cpu_devices` picks: two per usable core, at most 8."""
    return min(8, 2 * len(os.sched_getaffinity(0)))


def use_cpu_devices(n: int | None = None) -> int:
    """Split the host CPU into ``n`` JAX devices, so a sweep's members run as ``n`` concurrent
    programs (call before JAX initializes its backends, e.g. first thing in a script).

    On XLA:CPU one program leaves cores idle: the member-batched 64x64 matmuls and the optimizer's
    elementwise passes run on one thread. Sharding members over several CPU devices runs that
    many programs at once; measured on 2 cores (docs/performance.md), 4 devices trained the
    tutorial MLP sweep 1.2-1.5x faster per member than one. The data are replicated on every
    device (host memory grows by one copy of the data per device). Results do not change.

    Args:
      n: device count (default: :func:`default_cpu_devices`). An
        ``XLA_FLAGS=--xla_force_host_platform_device_count`` already set takes precedence.

    Returns:
      The number of CPU devices requested (or already set by ``XLA_FLAGS``).

    Raises:
      ConfigError: ``n`` < 1, or JAX's backends are already initialized.
    """
    if n is not None and n < 1:
        raise ConfigError(f"cpu devices (--cpu-devices) must be at least 1, got {n}")
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return int(flags.split("xla_force_host_platform_device_count=")[1].split()[0])
    n = default_cpu_devices() if n is None else n
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError as e:
        raise ConfigError(
            f"cannot split the CPU into {n} devices: JAX's backends are already initialized "
            f"({e}); call wdjax.use_cpu_devices() before any JAX computation"
        ) from None
    return n


def _default_devices(chunk: int) -> list:
    """All devices; on one process's CPU devices, the most that split ``chunk`` members with at
    most 25 % padding (so K = 1 runs on one device, not as K padded copies on K devices)."""
    devices = jax.devices()
    if jax.process_count() > 1 or devices[0].platform != "cpu":
        return devices
    fits = [d for d in range(1, len(devices) + 1) if math.ceil(chunk / d) * d <= 1.25 * chunk]
    return devices[: max(fits)]


def _chunk_size(cfg: SweepConfig, k: int, n_dev: int) -> int:
    c = min(cfg.chunk_size or k, k)
    return math.ceil(c / n_dev) * n_dev  # every chunk splits evenly over the devices


def _hyper_arrays(members: list[dict], total: int, dtype: str) -> Hyper:
    """Per-member hyperparameters, padded to ``total`` by repeating the last member."""
    rows = members + [members[-1]] * (total - len(members))
    return Hyper(
        np.array([r["strength"] for r in rows], dtype),
        np.array([r["lr"] for r in rows], dtype),
        np.array([r["seed"] for r in rows], np.int32),
        np.array([r["fold"] for r in rows], np.int32),
    )


def _put(x, sharding):
    """A global array from a host array that every process holds in full."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _to_host(tree):
    if jax.process_count() > 1:
        tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)


def _concat(trees: list):
    """Concatenate pytrees of arrays along the member axis, skipping empty ones."""
    trees = [t for t in trees if t is not None and jax.tree.leaves(t)]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *trees) if trees else None


def summarize(members: list[dict], history: dict) -> dict:
    """Per member: final metrics and best epoch (by validation accuracy, else training loss)."""
    val = history["val_acc"]
    has_val = not np.all(np.isnan(val))
    per = []
    for m, info in enumerate(members):
        score = val[m] if has_val else -history["train_loss"][m]
        best = int(np.nanargmax(np.where(np.isnan(score), -np.inf, score)))
        final = {k: v[m, -1].item() for k, v in history.items() if "/" not in k}
        per.append(
            dict(
                info,
                final=final,
                best_epoch=best + 1,
                best_val_acc=float(val[m, best]) if has_val else None,
            )
        )
    diverged = [p["member"] for p in per if p["final"]["diverged"]]
    finals = np.array([p["final"]["val_acc" if has_val else "test_acc"] for p in per], float)
    best_member = int(np.nanargmax(np.where(np.isnan(finals), -np.inf, finals)))
    return {
        "members": per,
        "diverged": diverged,
        "best_member": best_member,
        "selected_by": "val_acc" if has_val else "test_acc",
    }


def _meta(cfg, mesh, compile_s, run_s, steps, chunk, n_chunks) -> dict:
    import flax
    import optax

    return {
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib"),
            "flax": flax.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
        },
        "backend": jax.default_backend(),
        "devices": [str(d) for d in mesh.devices.flat],
        "process_count": jax.process_count(),
        "members": cfg.num_members,
        "chunk_size": chunk,
        "chunks": n_chunks,
        "compile_seconds": compile_s,
        "run_seconds": run_s,
        "member_steps_per_second": steps / run_s if run_s > 0 else None,
        "platform": platform.platform(),
        "argv": sys.argv,
    }


def _report(progress, c, n_chunks, epoch, epochs, t0, stacked, chunk, first):
    if not progress:
        return
    elapsed = time.perf_counter() - t0
    done_units = c * epochs + epoch + 1
    total_units = n_chunks * epochs
    rate = elapsed / max(done_units - first, 1)
    best = np.nanmax(stacked["val_acc"]) if not np.all(np.isnan(stacked["val_acc"])) else np.nan
    info = dict(
        chunk=c + 1,
        chunks=n_chunks,
        epoch=epoch + 1,
        epochs=epochs,
        elapsed=elapsed,
        eta=rate * (total_units - done_units),
        best_val_acc=float(best),
        members=chunk,
    )
    (progress if callable(progress) else print_progress)(info)


def print_progress(info: dict) -> None:
    """A one-line progress bar on stderr (the default for ``progress=True``)."""
    frac = ((info["chunk"] - 1) * info["epochs"] + info["epoch"]) / (
        info["chunks"] * info["epochs"]
    )
    bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
    sys.stderr.write(
        f"\r[{bar}] chunk {info['chunk']}/{info['chunks']} ({info['members']} members) "
        f"epoch {info['epoch']}/{info['epochs']}  {info['elapsed']:.1f}s elapsed, "
        f"ETA {info['eta']:.1f}s, best val acc {info['best_val_acc']:.4f}"
        + ("\n" if frac >= 1 else "")
    )
    sys.stderr.flush()


def _write_run(out, members, history, summary, meta, params):
    from wdjax import plots

    results.write_csv(os.path.join(out, "metrics.csv"), results.metric_rows(members, history))
    results.write_json(os.path.join(out, "summary.json"), summary)
    results.write_json(os.path.join(out, "meta.json"), meta)
    if params is not None:
        results.save_params(os.path.join(out, "params.npz"), params)
    plots.sweep_figures(out)


def _check_resumable(out: str, cfg: SweepConfig) -> None:
    path = os.path.join(out, "config.json")
    if not os.path.exists(path):
        raise ConfigError(
            f"resume (--resume): {out!r} holds no run (no config.json); drop --resume to start one"
        )
    saved = SweepConfig.from_json(results.read_json(path))
    if saved != cfg:
        diff = [
            f.name
            for f in dataclasses.fields(cfg)
            if getattr(saved, f.name) != getattr(cfg, f.name)
        ]
        raise ConfigError(
            f"resume (--resume): the run in {out!r} was made with different "
            f"settings ({', '.join(diff)}); use the same flags or a new --out"
        )


def load_result(out: str) -> SweepResult:
    """Reload a finished run directory (history rebuilt from metrics.csv)."""
    cfg = SweepConfig.from_json(results.read_json(os.path.join(out, "config.json")))
    rows = results.read_csv(os.path.join(out, "metrics.csv"))
    members = cfg.members()
    epochs = max(r["epoch"] for r in rows)
    skip = {"member", "strength", "lr", "seed", "fold", "epoch"}
    names = [k for k in rows[0] if k not in skip]
    history = {
        n: np.zeros((len(members), epochs), bool if isinstance(rows[0][n], bool) else float)
        for n in names
    }
    for r in rows:
        for n in names:
            history[n][r["member"], r["epoch"] - 1] = r[n]
    params_path = os.path.join(out, "params.npz")
    params = results.load_params(params_path) if os.path.exists(params_path) else None
    return SweepResult(
        cfg,
        members,
        history,
        results.read_json(os.path.join(out, "summary.json")),
        results.read_json(os.path.join(out, "meta.json")),
        params,
        out,
    )
