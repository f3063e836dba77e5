"""Host side of a sweep, top to bottom: check, load, compile, train chunk by chunk, write.

``sweep(config)`` trains every member of ``config`` (strengths × lrs × seeds × folds) with one
compiled training program per epoch (:class:`~wdjax.Engine`; a small second program gives the
epoch's batch order) and returns a :class:`SweepResult` whose arrays carry a leading member axis.
Data flow, from a CLI flag to the compiled step::

    flag -> SweepConfig field (config.py: type, default, check) -> validate = build.build at
         nominal sizes (model, optimizer, schedule, mask; traced once) -> data.load (host arrays)
         -> build.build on the data (the Engine) -> config.json -> devices (mesh, put)
         -> programs.fit (compile, cache, chunk)
         -> per chunk: init -> per epoch: order + train_epoch (lax.scan of Engine.step, vmapped
            over members) -> host metrics -> progress, checkpoints -> results (run directory)

Members are trained a chunk at a time (all epochs of a chunk, then the next; see
:mod:`wdjax.programs`), sharded over devices (:mod:`wdjax.devices`); with several processes each
runs the same program on its share of members and process 0 alone writes files. Checkpoints
(:mod:`wdjax.checkpoints`) make a run resumable bit for bit; Ctrl-C stops at the next epoch end
after saving one (:class:`Interrupted`); a second Ctrl-C stops at once, saying which checkpoint
is kept (:func:`_stop_requests`).
"""

import dataclasses
import logging
import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wdjax import data as D
from wdjax import files
from wdjax.analysis import tables
from wdjax.engine import devices as dev
from wdjax.engine import programs
from wdjax.engine.engine import Data, Engine, Hyper
from wdjax.engine.recording import start_members
from wdjax.run import hooks, interrupts, rundir
from wdjax.run.build import build, validate
from wdjax.run.checkpoints import Checkpoints
from wdjax.run.config import ConfigError, RunOptions, SweepConfig, check_fields
from wdjax.run.progress import Bar, epoch_info

log = logging.getLogger("wdjax")

__all__ = ["Interrupted", "SweepResult", "host_data", "hyper_arrays", "load_result", "sweep"]


class SweepResult(NamedTuple):
    """What a sweep returns (host arrays)."""

    config: SweepConfig
    members: list  # [K] dicts: member, strength, lr, seed, fold
    history: dict  # name -> [K, epochs] arrays (train/val/test loss+acc, norms, sparsity, ...)
    summary: dict  # as summary.json
    meta: dict  # as meta.json
    params: Any  # final parameters, leaves [K, ...] (None when reloaded from a finished run)
    run_dir: str | None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped the sweep at an epoch end, after a checkpoint was saved."""


def sweep(config: SweepConfig | None = None, *, out: str | None = None, resume: bool = False,
          progress=None, devices=None, data=None, checkpoint_every: str = "60s",
          init_params=None, record=None, record_every: str = "epoch",
          **overrides) -> SweepResult:  # fmt: skip
    """Train every member of a sweep; see the module docstring.

    Args:
      config: a :class:`SweepConfig` (default: the tutorial MLP on ``digits``).
      out: run directory to write (None: write nothing, e.g. in tests or notebooks).
      resume: continue the run in ``out`` from its last checkpoint (its config must match).
      progress: None/False (silent), True (a progress bar, or a log line per epoch when stderr
        is not a terminal), or a callable taking each epoch's dict (:func:`progress.epoch_info`).
      devices: the devices to shard members over (default: :func:`devices.for_members`).
      data: a :class:`wdjax.Dataset` to train on instead of loading ``config.dataset`` (used as
        given: the config's data fields are not applied).
      checkpoint_every: ``"N"`` epochs or ``"Ts"``/``"Tm"`` (see :mod:`wdjax.checkpoints`).
      init_params, record, record_every: start from given parameters; record a jittable
        ``(before, after, grads, batch_stats) -> dict`` per epoch or step (docs/sweeps.md).
      **overrides: fields of :class:`SweepConfig` replacing those of ``config``.
    """
    cfg = _config(config, overrides)
    _check(cfg, out, checkpoint_every, data)  # every argument, before any load or file
    named = hooks.check_resume(out, hooks.describe(init_params, record, record_every), resume)
    writer = out is not None and jax.process_index() == 0
    if out and rundir.prepare(out, cfg, resume):
        return load_result(out)  # finished earlier: nothing to train
    ds = _dataset(cfg, data)
    t_data = time.perf_counter()
    host = host_data(ds, cfg)
    k = len(members := cfg.members())
    engine = build(cfg, num_classes=ds.num_classes, x_example=host.x_pool[:1],
                   steps_per_epoch=host.train_idx.shape[1] // cfg.batch_size).engine  # fmt: skip
    engine, start = hooks.check(engine, host.x_pool[:1], k, init_params, record, record_every,
                                cfg.axes)  # fmt: skip
    if writer:
        rundir.write_config(out, cfg, named)
    shard, repl = dev.mesh_shardings(devices or dev.for_members(min(cfg.chunk_size or k, k)))
    arrays = jax.tree.map(lambda x: dev.put(x, repl), host)
    log.info("compiling the training program (%d members, %d devices)", k, shard.mesh.size)
    axes = tuple(name for name, _ in cfg.axes)
    progs = programs.fit(engine, arrays, k, cfg.chunk_size, shard, repl, cfg.data_seed, axes)
    if writer:
        rundir.check_fingerprint(out, rundir.fingerprint(cfg, progs.init.out_info.params), resume)
    ckpt = Checkpoints(out, checkpoint_every, write=writer) if out else None
    run = _Run(cfg, progs, arrays, shard, hyper_arrays(members, _padded(k, progs.chunk), cfg.dtype),
               ckpt, progress, _resuming(ckpt, resume, out), t_data,
               start=start, engine=engine)  # fmt: skip
    with interrupts.stop_requests(writer and jax.process_count() == 1, lambda: _saved(run)) as stop:
        history, params, run_s, steps = _train(run, stop)
    meta = {**rundir.meta(cfg, shard.mesh, progs, run_s, steps, ds), **named}
    meta["startup_seconds"] = run.startup  # data loaded -> the first epoch's program called
    if writer:
        meta["checkpoint_seconds"] = ckpt.save_seconds
    history, records = _split({name: v[:k] for name, v in history.items()}, engine)
    params = jax.tree.map(lambda x: x[:k], params)
    summary = tables.summarize(members, history)
    if writer:
        rundir.write(out, members, history, summary, meta, params, records)
        ckpt.delete()
    return SweepResult(cfg, members, {**history, **records}, summary, meta, params, out)


def _check(cfg: SweepConfig, out, checkpoint_every, data) -> None:
    """The run options, ``data``'s type and the whole config (:func:`wdjax.run.build.validate`,
    on ``data``'s images when given), before any data load, compile or file write."""
    check_fields(RunOptions(out=out, checkpoint_every=checkpoint_every))
    if data is not None and not isinstance(data, D.Dataset):
        raise ConfigError(f"data: must be a wdjax.Dataset (got {type(data).__name__})", "data")
    validate(cfg, None if data is None else data.x_train[:1])


def load_result(out: str) -> SweepResult:
    """Reload a finished run directory (history rebuilt from metrics.csv; no parameters' tree
    structure is lost: ``params.npz`` keeps the paths; ``record=`` values from records.npz)."""
    cfg, members, history, summary, meta, params = rundir.load(out)
    path = os.path.join(out, "records.npz")
    if os.path.exists(path):
        history.update(files.load_params(path))
    return SweepResult(cfg, members, history, summary, meta, params, out)


def _split(history: dict, engine) -> tuple[dict, dict]:
    """(metrics, ``record=`` values): the names a recording engine's ``record`` returns."""
    names = getattr(engine, "names", ())
    return ({n: v for n, v in history.items() if n not in names},
            {n: v for n, v in history.items() if n in names})  # fmt: skip


# --- pieces ---------------------------------------------------------------------------------


def _config(config, overrides: dict) -> SweepConfig:
    """``config`` (default: the tutorial's) with ``overrides``, each naming a field."""
    if config is not None and not isinstance(config, SweepConfig):
        raise ConfigError(f"config: must be a wdjax.SweepConfig (got {type(config).__name__})",
                          "config")  # fmt: skip
    names = {f.name for f in dataclasses.fields(SweepConfig)}
    if unknown := sorted(set(overrides) - names):
        raise ConfigError(f"{unknown[0]}: sweep() takes no argument {unknown[0]!r}; the "
                          f"settings are the fields of SweepConfig", unknown[0])  # fmt: skip
    return dataclasses.replace(config or SweepConfig(), **overrides)


def _dataset(cfg: SweepConfig, data) -> D.Dataset:
    if data is None:
        log.info("loading %s", cfg.dataset)
        return D.load(cfg.dataset, data_dir=cfg.data_dir, raw_dir=cfg.raw_dir,
                      val_size=cfg.val_size, train_size=cfg.train_size,
                      label_noise=cfg.label_noise, seed=cfg.data_seed,
                      standardize=cfg.standardize)  # fmt: skip
    if not isinstance(data, D.Dataset):
        raise ConfigError(f"data: must be a wdjax.Dataset (got {type(data).__name__})", "data")
    return data


def _resuming(ckpt: Checkpoints | None, resume: bool, out: str | None) -> bool:
    """Whether to continue from a checkpoint; ``resume`` of a run stopped before its first
    checkpoint says that it has none and trains from the start."""
    if not resume or ckpt is None:
        return False
    found = ckpt.exists()
    if not found:
        log.warning("resume: %s holds no checkpoint (the run stopped before one was saved): "
                    "training from epoch 1", out)  # fmt: skip
    return found


def host_data(ds: D.Dataset, cfg: SweepConfig) -> Data:
    """Pool + per-fold index arrays (numpy). Without folds the pool is train ++ val."""
    x_pool = np.concatenate([ds.x_train, ds.x_val])
    y_pool = np.concatenate([ds.y_train, ds.y_val]).astype(np.int32)
    if cfg.folds > 1:
        train_idx, val_idx = D.kfold_indices(len(x_pool), cfg.folds, cfg.data_seed)
    else:
        n, v = len(ds.x_train), len(ds.x_val)
        train_idx = np.arange(n, dtype=np.int32)[None]
        val_idx = np.arange(n, n + v, dtype=np.int32)[None]
    if cfg.batch_size > train_idx.shape[1]:
        raise ConfigError(
            f"batch_size: batch_size {cfg.batch_size} is larger than the "
            f"{train_idx.shape[1]} training examples per member; lower it",
            "batch_size",
        )
    return Data(x_pool, y_pool, np.asarray(train_idx, np.int32), np.asarray(val_idx, np.int32),
                ds.x_test, ds.y_test.astype(np.int32))  # fmt: skip


def hyper_arrays(members: list[dict], total: int, dtype: str) -> Hyper:
    """Per-member hyperparameters, padded to ``total`` by repeating the last member."""
    rows = members + [members[-1]] * (total - len(members))
    axes = [k for k in tables.setting_of(rows[0]) if k not in ("strength", "lr")]  # --set
    return Hyper(
        np.array([r["strength"] for r in rows], dtype),
        np.array([r["lr"] for r in rows], dtype),
        np.array([r["seed"] for r in rows], np.int32),
        np.array([r["fold"] for r in rows], np.int32),
        {k: np.array([r[k] for r in rows], dtype) for k in axes},
    )


def _padded(k: int, chunk: int) -> int:
    return math.ceil(k / chunk) * chunk


@dataclasses.dataclass
class _Run:
    """What the training loop reads: config, programs, device data, hyperparameters, outputs."""

    cfg: SweepConfig
    progs: programs.Programs
    arrays: Data
    shard: Any
    hyper: Hyper  # all members (padded), host arrays
    ckpt: Checkpoints | None
    progress: Any
    resume: bool
    t_data: float = 0.0  # perf_counter when the data had loaded
    startup: float | None = None  # seconds from then to the first epoch's call (this session)
    start: hooks.Start | None = None  # init_params=, checked
    engine: Engine | None = None  # (for start_members)

    @property
    def chunks(self) -> int:
        return self.hyper.seed.shape[0] // self.progs.chunk


def _saved(run: "_Run") -> str:
    """What a run stopped now keeps: its last complete checkpoint (Orbax renames a finished save
    into ``checkpoints/<step>``; one in flight is a temporary folder) and how to continue."""
    path = run.ckpt.path if run.ckpt is not None else None
    steps = [
        int(n) for n in (os.listdir(path) if path and os.path.isdir(path) else ()) if n.isdigit()
    ]
    hint = interrupts.resume_hint
    if not steps:
        return f"nothing was saved (no checkpoint yet): start it again with: {hint}"
    chunk, epoch = divmod(max(steps) - 1, run.cfg.epochs)
    where = f"chunk {chunk + 1}/{run.chunks}, " if run.chunks > 1 else ""
    return (f"the last checkpoint ({where}epoch {epoch + 1}/{run.cfg.epochs}) is kept in {path}; "
            f"continue with: {hint}")  # fmt: skip


def _train(run: _Run, stop: list) -> tuple[dict, Any, float, int]:
    """Every chunk × epoch (from the checkpoint when resuming): (history, params, seconds,
    member-steps) of the finished members, host arrays with the padded member axis."""
    cfg, chunk = run.cfg, run.progs.chunk
    start, done, params = (0, 0), None, None
    states = hist = None
    if run.resume:
        c, e, states, hist, done, params = run.ckpt.restore(run.progs.init.out_info)
        start = (c, e)
        log.info("resuming at chunk %d/%d, epoch %d/%d", c + 1, run.chunks, e, cfg.epochs)
    bar = Bar(run.chunks * cfg.epochs - start[0] * cfg.epochs - start[1]) \
        if run.progress is True else None  # fmt: skip
    t0, session_epochs = time.perf_counter(), 0
    steps_per_epoch = run.arrays.train_idx.shape[1] // cfg.batch_size
    try:
        for c in range(start[0], run.chunks):
            hyper = jax.tree.map(lambda x, c=c: dev.put(x[c * chunk:(c + 1) * chunk], run.shard),
                                 run.hyper)  # fmt: skip
            first = start[1] if c == start[0] else 0
            if first and states is not None:
                states = jax.tree.map(lambda x: dev.put(x, run.shard), states)
            else:
                states, hist = run.progs.init(hyper, run.arrays.x_pool[:1]), {}
                if run.start is not None:
                    given = run.start.chunk(c, chunk, cfg.num_members)
                    given = jax.tree.map(lambda x: dev.put(x, run.shard), given)
                    states = start_members(run.engine, states, hyper, given)
                    states = jax.tree.map(lambda x: dev.put(x, run.shard), states)
            for epoch in range(first, cfg.epochs):
                states, hist = _epoch(run, states, hyper, hist, epoch)
                session_epochs += 1
                if epoch + 1 == cfg.epochs:
                    done = _concat([done, hist])
                    params = _concat([params, dev.to_host(states.params)])
                info = epoch_info(c, run.chunks, epoch, cfg.epochs, chunk,
                                  time.perf_counter() - t0, session_epochs,
                                  run.chunks * cfg.epochs - start[0] * cfg.epochs - start[1],
                                  {k: v[:, -1] for k, v in hist.items()})  # fmt: skip
                _boundary(run, stop, c, epoch, states, hist, done, params)
                (bar or run.progress or (lambda i: None))(info)
    finally:
        if bar is not None:
            bar.close()
        if run.ckpt is not None:
            run.ckpt.close()
    return done, params, time.perf_counter() - t0, session_epochs * chunk * steps_per_epoch


def _epoch(run: _Run, states, hyper, hist: dict, epoch: int):
    """One epoch of the running chunk; its metrics appended to ``hist`` ([C, epochs] arrays)."""
    order = run.progs.order(jnp.int32(run.cfg.data_seed), jnp.int32(epoch))
    every, last = run.cfg.eval_every, epoch + 1 == run.cfg.epochs
    flag = (jnp.bool_(last or (epoch + 1) % every == 0),) * (every > 1)  # evaluate this epoch?
    if run.startup is None:
        run.startup = time.perf_counter() - run.t_data
    states, metrics = run.progs.epoch(states, hyper, run.arrays, order, *flag)
    for k, v in dev.to_host(metrics).items():
        hist[k] = np.concatenate([hist[k], v[:, None]], 1) if k in hist else v[:, None]
    return states, hist


def _boundary(run: _Run, stop, c, epoch, states, hist, done, params) -> None:
    """At an epoch end: save a checkpoint when due or when asked to stop, then stop if asked."""
    last = epoch + 1 == run.cfg.epochs
    step = c * run.cfg.epochs + epoch + 1
    if run.ckpt is None or not run.ckpt.due(step, asked=stop[0]):
        return
    host_states = None if last else dev.to_host(states)  # (a collective with several processes)
    position = (c + 1, 0) if last else (c, epoch + 1)
    run.ckpt.save(step, position, host_states, {} if last else hist, done, params)
    if stop[0]:
        run.ckpt.close()
        raise Interrupted(
            f"stopped after chunk {c + 1}/{run.chunks}, epoch {epoch + 1}/{run.cfg.epochs}; "
            f"checkpoint saved in {run.ckpt.path}"
        )


def _concat(trees: list):
    """Concatenate pytrees of arrays along the member axis, skipping empty ones."""
    trees = [t for t in trees if t is not None and jax.tree.leaves(t)]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *trees) if trees else None
