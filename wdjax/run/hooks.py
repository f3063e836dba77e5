"""``sweep()``'s Python-object arguments beyond the config: ``init_params=`` and ``record=``.

Checked before any compile or file write (:func:`check`, with ``jax.eval_shape`` of one
member's initialization: nothing is compiled), recorded by name in ``config.json`` (key
``"hooks"``) and ``meta.json`` (:func:`describe`; ``init_params`` by the sha256 of its leaves),
and compared on ``--resume`` (:func:`check_resume`); :func:`not_reproducible` is the one line a
``--config`` replay of such a run prints.
"""

import dataclasses
import hashlib
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wdjax import files
from wdjax.engine.adapters import qualified_name
from wdjax.engine.engine import Engine, Hyper
from wdjax.engine.recording import EVERY, Recording, takes_opt_state
from wdjax.errors import ConfigError
from wdjax.masks import param_path

__all__ = ["Start", "check", "check_resume", "describe", "not_reproducible"]

NOT_RECORD = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
              "diverged", "step", "lr")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Start:
    """Given initial parameters in the model's tree: leaves ``[K, ...]`` (``stacked``) or
    ``[...]`` shared by every member."""

    params: Any
    stacked: bool

    def chunk(self, c: int, size: int, members: int):
        """Chunk ``c``'s parameters, ``[size, ...]`` (past the last member: the last member's)."""
        if not self.stacked:
            return jax.tree.map(lambda x: np.broadcast_to(x, (size, *x.shape)), self.params)
        rows = np.minimum(np.arange(c * size, (c + 1) * size), members - 1)
        return jax.tree.map(lambda x: x[rows], self.params)


def describe(init_params, record, record_every: str) -> dict:
    """The hooks by name (``{}`` without any), after checking their kinds (no data needed)."""
    if record_every not in EVERY:
        raise ConfigError(f"record_every: must be one of {', '.join(EVERY)} (got "
                          f"{record_every!r})")  # fmt: skip
    out = {}
    if init_params is not None:
        leaves = jax.tree.leaves(init_params)
        if not leaves or not all(hasattr(x, "shape") for x in leaves):
            raise ConfigError("init_params: must be a tree of arrays (the model's parameters, "
                              "e.g. SweepResult.params)")  # fmt: skip
        digest = hashlib.sha256()
        for path, leaf in jax.tree_util.tree_flatten_with_path(init_params)[0]:
            x = np.asarray(leaf)
            digest.update(f"{param_path(path)}:{x.dtype}:{x.shape};".encode())
            digest.update(np.ascontiguousarray(x).tobytes())
        out["init_params"] = f"sha256:{digest.hexdigest()[:16]}"
    if record is not None:
        if not callable(record):
            raise ConfigError(f"record: must be a function (before, after, grads, batch_stats) "
                              f"-> dict of arrays (got {type(record).__name__})")  # fmt: skip
        out["record"] = qualified_name(record)
        out["record_every"] = record_every
    return out


def check(engine: Engine, x_example, members: int, init_params, record: Callable | None,
          record_every: str, axes: tuple = ()) -> tuple[Engine, Start | None]:  # fmt: skip
    """The engine to compile (recording when ``record`` is given) and the start, checked against
    one member's parameter tree by ``jax.eval_shape`` (nothing compiles; without hooks, nothing
    is traced either). The optimizer factory gets the first value of each of the config's
    ``axes`` (``--set``), as a member does."""
    if init_params is None and record is None:
        return engine, None
    extra = {name: jnp.float32(values[0]) for name, values in axes}
    h = Hyper(jnp.float32(0), jnp.float32(0), jnp.int32(0), jnp.int32(0), extra)
    state = jax.eval_shape(engine.init_members, jax.tree.map(lambda x: x[None], h), x_example)
    one = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), state)
    like = one.params
    start = None if init_params is None else _conform(init_params, like, members)
    if record is None:
        return engine, start
    opt = (one.opt_state,) if takes_opt_state(record) else ()
    try:
        out = jax.eval_shape(record, like, like, like, one.batch_stats, *opt)
    except Exception as e:  # noqa: BLE001 - the user's function: one line, the cause chained
        raise ConfigError(
            f"record: calling it on (before, after, grads, batch_stats"
            f"{', opt_state' if opt else ''}) failed: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    if not isinstance(out, dict) or not all(isinstance(k, str) for k in out):
        raise ConfigError("record: must return a dict {name: array}")
    clash = sorted(set(out) & set(NOT_RECORD + tuple(state_stats_names(engine, like))))
    if clash:
        raise ConfigError(f"record: names {clash} are the sweep's own metrics; rename them")
    return Recording.of(engine, record, record_every, tuple(sorted(out))), start


def state_stats_names(engine: Engine, like) -> list[str]:
    """The names of the weight statistics each epoch reports (wdjax.engine.metrics)."""
    from wdjax.engine import metrics

    return list(jax.eval_shape(metrics.weight_stats, like))


def _conform(init_params, like, members: int) -> Start:
    """``init_params`` in ``like``'s tree (by path), shared or stacked; one line otherwise."""
    want = {param_path(p): s for p, s in jax.tree_util.tree_flatten_with_path(like)[0]}
    got = {param_path(p): x for p, x in jax.tree_util.tree_flatten_with_path(init_params)[0]}
    if set(want) != set(got):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise ConfigError(f"init_params: not the model's parameter tree (missing "
                          f"{missing or 'none'}, unexpected {extra or 'none'}); pass the "
                          "parameters of this model")  # fmt: skip
    kinds = set()
    for path, s in want.items():
        shape = tuple(np.shape(got[path]))
        kind = {s.shape: "shared", (members, *s.shape): "stacked"}.get(shape)
        if kind is None:
            raise ConfigError(f"init_params: {path} has shape {shape}; the model's is "
                              f"{s.shape} (one tree for every member) or {(members, *s.shape)} "
                              f"(one per member, {members} members)")  # fmt: skip
        kinds.add(kind)
    if len(kinds) > 1:
        raise ConfigError(f"init_params: some leaves have a leading axis of {members} members "
                          "and some not; stack every leaf or none")  # fmt: skip
    order = [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(like)[0]]
    leaves = [np.asarray(got[path], want[path].dtype) for path in order]
    return Start(jax.tree.unflatten(jax.tree.structure(like), leaves), kinds == {"stacked"})


def check_resume(out: str | None, hooks: dict, resume: bool) -> dict:
    """``hooks``, checked: on ``--resume`` the run in ``out`` must have been made with the same
    ones."""
    path = os.path.join(out or "", "config.json")
    if not (out and resume and os.path.exists(path)):
        return hooks
    saved = files.read_json(path).get("hooks", {})
    if saved != hooks:
        names = sorted(k for k in set(saved) | set(hooks) if saved.get(k) != hooks.get(k))
        raise ConfigError(f"resume: the run in {out!r} was made with other {', '.join(names)} "
                          f"({saved or 'none'}; now {hooks or 'none'}); pass the same ones "
                          "again, or start a new out")  # fmt: skip
    return hooks


def not_reproducible(config_json: dict) -> str | None:
    """The line a replay of ``config_json`` (``--config``) must print, or None: Python objects
    (``init_params``, ``record``) are recorded by name only."""
    hooks = config_json.get("hooks") or {}
    if not hooks:
        return None
    named = ", ".join(f"{k}={v}" for k, v in hooks.items())
    return (
        f"config: this run was made with {named}, which a config file cannot carry; "
        "call wdjax.sweep(...) with them to reproduce it"
    )
