r"""Learning-rate schedules as multipliers η(t) of the peak rate, traceable per sweep member.

A schedule here is a pure function ``t -> η(t)`` of the step count ``t`` (an integer array:
optax's ``count``, the number of updates already applied) with values in ``[0, 1]``: the
fraction of the member's peak learning rate in effect at that step. Every parameter may be a
Python number or a traced 0-d array (``boundaries``: a 1-d array, its length fixes the program's
shape), and nothing branches on their values, so a ``jax.vmap`` over members with different
warm-ups, decay factors or restart periods compiles once. Step counts (``total_steps``,
``warmup_steps``, ``boundaries``, ``period``, ``period_mult``) are integers.

With warm-up length :math:`W` and start fraction :math:`\eta_0` (``warmup_init``), every kind
begins with the linear ramp :math:`\eta(t) = \eta_0 + (1-\eta_0)\,t/W` for :math:`t < W`, and

- ``constant``: :math:`\eta = 1`.
- ``cosine``: :math:`\eta = \alpha + (1-\alpha)\tfrac12(1 + \cos(\pi\,\min(t-W, D)/D))`,
  :math:`D = T - W`, :math:`T` = ``total_steps`` (optax's ``warmup_cosine_decay_schedule``
  divided by its peak).
- ``step``: :math:`\eta = r(t)\,\gamma^{\#\{b_j \le t\}}`: the decay ``factor`` γ per boundary
  passed (boundaries in absolute steps, as torch's ``MultiStepLR``), :math:`r` the ramp (1 after
  it).
- ``sgdr`` (warm restarts): with :math:`\tau = t - W`, cycle :math:`i` spans
  :math:`[s_i, s_{i+1})`, :math:`s_i = T_0 (m^i - 1)/(m - 1)` (:math:`i T_0` for :math:`m = 1`),
  length :math:`T_i = T_0 m^i`, and :math:`\eta = \alpha + (1-\alpha)\tfrac12(1 +
  \cos(\pi(\tau - s_i)/T_i))`. The cycle index is computed in closed form
  (:math:`\lfloor\tau/T_0\rfloor`, or :math:`\lfloor\log_m(1 + \tau(m-1)/T_0)\rfloor` corrected
  in exact integer arithmetic), so traced :math:`T_0` and :math:`m` need no Python control flow.

:func:`make` builds one from epoch-denominated settings; :func:`learning_rate` turns it into
the optax schedule ``t -> peak·η(t)`` for ``make_optimizer``'s ``learning_rate`` (the prox
thresholds, ``lr·λ``, then use the scheduled step too). For ``wd_paper`` pass the peak α as
``learning_rate`` and η itself as ``schedule=``: ``w ← w − η(t)(α·p + λ·w)``, decay η(t)·λ per
step, Loshchilov & Hutter's form (for AdamW, η(t) multiplies both Adam's step and the decay).

References:
  Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017.
  Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
  Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", 2017 (warm-up).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wdjax.errors import ConfigError, ConfigTypeError
from wdjax.transforms import check_hyperparameter

__all__ = [
    "PARAMS",
    "SCHEDULES",
    "constant",
    "cosine",
    "learning_rate",
    "make",
    "multiplier",
    "sgdr",
    "step",
]

Schedule = Callable[[jax.Array], jax.Array]
SCHEDULES = ("constant", "cosine", "step", "sgdr")
# The epoch-denominated keywords of :func:`make`, per kind.
PARAMS = {
    "constant": (),
    "cosine": ("warmup_epochs", "warmup_init", "alpha"),
    "step": ("decay_epochs", "decay_factor", "warmup_epochs", "warmup_init"),
    "sgdr": ("restart_epochs", "restart_mult", "alpha", "warmup_epochs", "warmup_init"),
}
# name: (lower bound, upper bound, lower bound excluded, integer). Bounds hold elementwise.
_RULES = {
    "total_steps": (1, None, False, True),
    "warmup_steps": (0, None, False, True),
    "warmup_init": (0, 1, False, False),
    "alpha": (0, 1, False, False),
    "boundaries": (0, None, False, True),
    "factor": (0, 1, True, False),
    "period": (1, None, False, True),
    "period_mult": (1, None, False, True),
    "warmup_epochs": (0, None, False, False),
    "decay_epochs": (0, None, False, False),
    "decay_factor": (0, 1, True, False),
    "restart_mult": (1, None, False, True),
}
_REQUIRED = {"step": "decay_epochs", "sgdr": "restart_epochs"}


def _check(name: str, value: Any, lo, hi=None, lo_open=False, integer=False) -> None:
    """Reject a concrete value outside its range; of a tracer only the dtype can be checked."""
    leaves = jax.tree.leaves(value)  # a tuple of boundaries may hold tracers
    traced = any(isinstance(x, jax.core.Tracer) for x in leaves)
    dtype = np.dtype(jnp.result_type(*leaves)) if traced else np.asarray(value).dtype
    if integer and dtype.kind not in "iu" and leaves:
        raise ConfigTypeError(
            f"{name} must be an integer (a number of steps), got {value!r}.", name
        )
    if dtype.kind not in "iuf":
        raise ConfigTypeError(f"{name} must be a real number, got {value!r}.", name)
    if traced:
        return
    arr = np.asarray(value)
    low_ok = arr > lo if lo_open else arr >= lo
    if not (np.all(np.isfinite(arr)) and np.all(low_ok) and (hi is None or np.all(arr <= hi))):
        bounds = f"{'(' if lo_open else '['}{lo}, {'inf)' if hi is None else f'{hi}]'}"
        raise ConfigError(f"{name} must be in {bounds}, got {value!r}.", name)


def _check_all(**params) -> None:
    for name, value in params.items():
        _check(name, value, *_RULES[name])
    total, warm = params.get("total_steps"), params.get("warmup_steps", 0)
    traced = isinstance(total, jax.core.Tracer) or isinstance(warm, jax.core.Tracer)
    if total is not None and not traced and not warm < total:
        raise ConfigError(
            f"warmup_steps must be < total_steps (warmup_epochs < epochs), got {warm!r} >= "
            f"{total!r}.",
            "warmup_epochs",
        )


def _ramp(t, warmup_steps, warmup_init, after):
    """η₀ + (1 − η₀)·t/W for t < W, else ``after`` (W = 0: no warm-up)."""
    ramp = warmup_init + (1 - warmup_init) * t / jnp.maximum(warmup_steps, 1)
    return jnp.where(t < warmup_steps, ramp, after)


def _arc(tau, length, alpha):
    """α + (1 − α)·½(1 + cos(π·min(τ, D)/D)), D = ``length``."""
    tau = jnp.minimum(tau, length)
    return alpha + (1 - alpha) * (0.5 * (1 + jnp.cos(jnp.pi * tau / length)))


def constant(t) -> jax.Array:
    """η = 1 at every step (float array of ``t``'s shape)."""
    return jnp.ones(jnp.shape(t))


def cosine(t, total_steps, *, warmup_steps=0, warmup_init=0.0, alpha=0.0) -> jax.Array:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``alpha`` at ``total_steps``.

    optax's ``warmup_cosine_decay_schedule(η₀, 1, W, T, α)``; constant ``alpha`` after ``T``.
    """
    _check_all(
        total_steps=total_steps, warmup_steps=warmup_steps, warmup_init=warmup_init, alpha=alpha
    )
    tau = jnp.maximum(t - warmup_steps, 0)
    return _ramp(t, warmup_steps, warmup_init, _arc(tau, total_steps - warmup_steps, alpha))


def step(t, boundaries, *, factor=0.1, warmup_steps=0, warmup_init=0.0) -> jax.Array:
    """``factor`` to the number of ``boundaries`` (1-d, steps) at or below ``t``, after the ramp.

    optax's ``piecewise_constant_schedule(1, {b: factor for b in boundaries})`` times the ramp.
    """
    _check_all(
        boundaries=boundaries, factor=factor, warmup_steps=warmup_steps, warmup_init=warmup_init
    )
    t = jnp.asarray(t)
    boundaries = jnp.asarray(boundaries, jnp.int32)
    passed = t[..., None] >= boundaries.reshape((1,) * t.ndim + boundaries.shape)
    decay = jnp.prod(jnp.where(passed, factor, 1.0), axis=-1)
    return _ramp(t, warmup_steps, warmup_init, 1.0) * decay


def _cycle_start(i, period, mult):
    """s_i = T₀·(mⁱ − 1)/(m − 1), i·T₀ for m = 1: exact in integers."""
    geometric = period * (mult**i - 1) // jnp.maximum(mult - 1, 1)
    return jnp.where(mult == 1, i * period, geometric)


def _cycle(tau, period, mult):
    """The index i of the cycle holding τ ≥ 0 (s_i ≤ τ < s_{i+1})."""
    m = jnp.maximum(mult, 2)  # the logarithm is used for m > 1 only
    guess = jnp.floor(jnp.log1p(tau * (m - 1) / period) / jnp.log(m)).astype(jnp.asarray(tau).dtype)
    i = jnp.where(mult == 1, tau // period, guess)
    i = i - (tau < _cycle_start(i, period, mult))  # the float guess is off by at most one
    return i + (tau >= _cycle_start(i + 1, period, mult))


def sgdr(t, period, *, period_mult=1, alpha=0.0, warmup_steps=0, warmup_init=0.0) -> jax.Array:
    """Cosine cycles from 1 to ``alpha``, the first ``period`` steps long, each ``period_mult``
    times longer than the last, starting after the warm-up (Loshchilov & Hutter 2017).

    optax's ``sgdr_schedule`` of ``cosine_decay_schedule(1, T₀·mⁱ, α)`` cycles, after the ramp.
    Exact while ``t·period_mult² < 2³¹`` (integer cycle starts).
    """
    _check_all(
        period=period,
        period_mult=period_mult,
        alpha=alpha,
        warmup_steps=warmup_steps,
        warmup_init=warmup_init,
    )
    tau = jnp.maximum(jnp.asarray(t) - warmup_steps, 0)
    i = _cycle(tau, period, period_mult)
    arc = _arc(tau - _cycle_start(i, period, period_mult), period * period_mult**i, alpha)
    return _ramp(t, warmup_steps, warmup_init, arc)


_KINDS = {"constant": constant, "cosine": cosine, "step": step, "sgdr": sgdr}


def _kind(kind: str) -> Callable[..., jax.Array]:
    if kind not in _KINDS:
        raise ConfigError(f"schedule must be one of {SCHEDULES}, got {kind!r}.", "kind")
    return _KINDS[kind]


def multiplier(kind: str, t, **params) -> jax.Array:
    """η(t) of schedule ``kind`` (one of :data:`SCHEDULES`), parameters in steps as above."""
    return _kind(kind)(t, **params)


def _steps(epochs, steps_per_epoch: int):
    """Epochs to whole steps (round half to even), int32; concrete stays concrete."""
    if isinstance(epochs, jax.core.Tracer):
        return jnp.round(epochs * steps_per_epoch).astype(jnp.int32)
    steps = np.round(np.asarray(epochs, np.float64) * steps_per_epoch).astype(np.int32)
    return int(steps) if steps.ndim == 0 else steps


def _in_steps(kind: str, steps_per_epoch: int, epochs: int, p: dict) -> dict:
    """:func:`make`'s epoch-denominated keywords -> the step-denominated keywords of ``kind``."""
    if kind == "constant":
        return {}
    out = {
        "warmup_steps": _steps(p.get("warmup_epochs", 0), steps_per_epoch),
        "warmup_init": p.get("warmup_init", 0.0),
    }
    if kind == "cosine":
        return out | {"total_steps": epochs * steps_per_epoch, "alpha": p.get("alpha", 0.0)}
    if kind == "step":
        boundaries = _steps(p["decay_epochs"], steps_per_epoch)
        return out | {"boundaries": boundaries, "factor": p.get("decay_factor", 0.1)}
    period = _steps(p["restart_epochs"], steps_per_epoch)
    return out | {
        "period": period,
        "period_mult": p.get("restart_mult", 1),
        "alpha": p.get("alpha", 0.0),
    }


def make(kind: str, steps_per_epoch: int, epochs: int, **params) -> Schedule:
    """The multiplier ``t -> η(t)`` of ``kind`` from epoch-denominated settings.

    Args:
      kind: one of :data:`SCHEDULES`.
      steps_per_epoch: optimizer steps per epoch (static int).
      epochs: length of the run (static int): ``cosine`` reaches ``alpha`` at its end.
      **params: the keywords :data:`PARAMS` lists for ``kind`` (default): ``warmup_epochs`` (0),
        ``warmup_init`` (0), ``alpha`` (0), ``decay_epochs`` (``step``, required, 1-d),
        ``decay_factor`` (0.1), ``restart_epochs`` (``sgdr``: T₀, required), ``restart_mult``
        (1, integer). Numbers or traced arrays; epochs are rounded to whole steps.

    Returns:
      ``t -> η(t)``, e.g. for :func:`learning_rate` or ``make_optimizer(..., schedule=η)``.

    Raises:
      ValueError: unknown ``kind``; a value out of range (named).
      TypeError: a keyword ``kind`` does not take, a required one missing, a non-integer count.

    Example:
      >>> eta = make("cosine", steps_per_epoch=10, epochs=5, warmup_epochs=1)
      >>> [round(float(eta(t)), 4) for t in (0, 5, 10, 30, 50, 99)]
      [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    fn = _kind(kind)
    if unknown := sorted(set(params) - set(PARAMS[kind])):
        raise ConfigTypeError(
            f"schedule {kind!r} takes {PARAMS[kind]}, got unexpected {unknown}.", unknown[0]
        )
    if (required := _REQUIRED.get(kind)) and required not in params:
        raise ConfigTypeError(f"schedule {kind!r} needs {required}.", required)
    _check("steps_per_epoch", steps_per_epoch, 1, integer=True)
    _check("epochs", epochs, 1, integer=True)
    for name, value in params.items():
        # restart_epochs: at least one step, so the period is >= 1 after rounding.
        rule = (0.5 / steps_per_epoch, None, True) if name == "restart_epochs" else _RULES[name]
        _check(name, value, *rule)
    steps = _in_steps(kind, steps_per_epoch, epochs, params)
    _check_all(**steps)
    return lambda t: fn(t, **steps)


def learning_rate(peak, eta: Schedule) -> Schedule:
    """The optax schedule ``t -> peak·η(t)`` (``peak`` a float or traced 0-d array >= 0)."""
    check_hyperparameter("peak", peak)
    return lambda t: peak * eta(t)
