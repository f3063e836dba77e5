"""What ``sweep(record=..., init_params=...)`` adds to the engine: records and given starts.

:class:`Recording` is an :class:`~wdjax.engine.engine.Engine` that also calls a jittable
``record(before, after, grads, batch_stats[, opt_state]) -> {name: array}`` on each member's
step: the parameters before and after the step, that step's gradient (of the mean batch loss),
the model's state after it (BatchNorm statistics; ``{}`` without) and, to a function with a
fifth positional parameter (:func:`takes_opt_state`), the optimizer state after it. With
``every="step"`` every step is recorded (the epoch's metrics gain ``name: [members, steps,
...]``); with ``every="epoch"`` only the epoch's last step (``[members, ...]``; the call sits in
a ``lax.cond`` on an unbatched flag, so the other steps compute nothing). A sweep without
``record=`` uses the plain :class:`Engine`: its program, ``repr`` and compile-cache key are
unchanged.

:func:`start_members` puts given parameters in the members' states after their initialization
(a small program of its own, compiled only when ``init_params=`` is given): the optimizer state
is initialized from them, the BatchNorm statistics and step count stay the fresh ones.
"""

import dataclasses
import functools
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp

from wdjax.engine.engine import Engine, Hyper, MemberState

__all__ = ["EVERY", "Recording", "start_members", "takes_opt_state"]

EVERY = ("step", "epoch")


def takes_opt_state(record: Callable) -> bool:
    """Whether ``record`` takes a fifth positional argument (``opt_state``) or ``*args``."""
    try:
        params = inspect.signature(record).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): the four
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    star = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    return star or sum(p.kind in kinds for p in params) >= 5


@dataclasses.dataclass(frozen=True)
class Recording(Engine):
    """An engine whose epoch also returns ``record``'s values (module docstring)."""

    record: Callable | None = None
    every: str = "epoch"  # "step" | "epoch"
    names: tuple = ()  # the names record returns (sorted)
    with_state: bool = False  # record takes the optimizer state (takes_opt_state)

    @classmethod
    def of(cls, engine: Engine, record: Callable, every: str = "epoch",
           names: tuple = ()) -> "Recording":  # fmt: skip
        """``engine`` recording ``record`` every ``every``."""
        fields = {f.name: getattr(engine, f.name) for f in dataclasses.fields(Engine)}
        return cls(**fields, record=record, every=every, names=tuple(names),
                   with_state=takes_opt_state(record))  # fmt: skip

    def _values(self, before: MemberState, after: MemberState, grads) -> dict:
        state = (after.opt_state,) if self.with_state else ()
        return dict(self.record(before.params, after.params, grads, after.batch_stats, *state))

    def recorded_step(self, state: MemberState, h: Hyper, x_B, y_B, last=None):
        new, metrics, grads = self.step_and_grads(state, h, x_B, y_B)
        values = functools.partial(self._values, state, new, grads)
        if self.every == "step":
            return new, metrics, values()

        def nothing():
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(values))

        return new, metrics, jax.lax.cond(last, values, nothing)

    def scan_inputs(self, order_SxB):
        if self.every == "step":
            return order_SxB
        steps = order_SxB.shape[0]
        return order_SxB, jnp.arange(steps) == steps - 1

    def records_out(self, records) -> dict:
        if self.every == "step":  # [steps, members, ...] -> [members, steps, ...]
            return {k: jnp.swapaxes(v, 0, 1) for k, v in records.items()}
        return {k: v[-1] for k, v in records.items()}  # the last step's


def _start(engine: Engine, state: MemberState, h: Hyper, params) -> MemberState:
    dtype = jnp.dtype(engine.dtype)
    params = jax.tree.map(lambda p: jnp.asarray(p).astype(dtype), params)
    return state._replace(params=params, opt_state=engine.tx(h).init(params))


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def start_members(engine: Engine, states: MemberState, hyper: Hyper, params) -> MemberState:
    """Members' states ``[C, ...]`` with ``params`` (leaves ``[C, ...]``, the model's tree) in
    place of their initial parameters, and optimizer states initialized from them."""
    return jax.vmap(functools.partial(_start, engine))(states, hyper, params)
