r"""Regularizers as optax transforms: the shared machinery, hyperparameter checks, subgradients.

The proximal operators and the transforms built on them are in :mod:`wdjax.prox`.


Every transform is an :class:`optax.GradientTransformation` (with extra-args support) that
composes with :func:`optax.chain` and accepts its strengths and learning rate as Python floats,
traced 0-d arrays (so a transform built inside a ``vmap``-ped function sweeps λ) or schedules
``count -> value`` (evaluated at the step count, as ``optax.sgd`` does). ``mask=`` selects the
leaves it acts on, by the one rule of :mod:`wdjax.penalties` shared with the penalties and
:func:`wdjax.make_optimizer`: None means kernels only (:func:`wdjax.masks.decay_mask`;
never biases or norm scales; a tree with no names, e.g. a bare array, whole), or a spec string
(``"kernels"``, ``"hidden"``, a regular expression over the parameter path), a callable or a
pytree of bools (as :func:`optax.masked`). Linen params, NNX states and member-stacked trees
are all understood; a mask selecting no leaf of parameters holding a weight matrix is an error
(``make_optimizer`` also refuses an empty selection of parameters without one). The state is
the transform's own (:class:`RegularizerState`) whatever the mask.

The proximal transforms are placed LAST in a chain, after the learning-rate scaling. Given the
incoming update :math:`u` and parameters :math:`w`, they prox the post-step point
:math:`v = w + u` and return the update that lands on the prox output:

.. math::
   u' = \operatorname{prox}_{\eta R}(w + u) - w,

computed so that ``w + u'`` is exactly zero wherever the prox output is zero, and so that
``u' == u`` bit for bit when the strength is zero. Here :math:`\eta_i = \mathrm{lr} / d_i`
is the step in the metric :math:`D = \operatorname{diag}(d)`: :math:`d = 1` unless the caller
passes ``metric=d`` to ``update`` (an extra argument, masked with the parameters), which
:func:`adam_prox` does with Adam's denominator :math:`d = \sqrt{\hat v} + \epsilon`
(Yun et al., 2021). With these steps the fixed points of ``base optimizer -> prox`` are the
stationary points of loss + penalty; for heavy-ball momentum μ pass strength λ/(1−μ) (what
``make_optimizer`` does). Placed after a preconditioner without its metric, a Euclidean prox
solves a different problem (after momentum its fixed points solve the lasso with (1−μ)·l1).

References:
  Duchi & Singer, "Efficient Online and Batch Learning using Forward Backward Splitting"
  (FOBOS), JMLR 2009. Parikh & Boyd, "Proximal Algorithms", 2014. Yun, Lozano & Yang,
  "Adaptive Proximal Gradient Methods for Structured Neural Networks", NeurIPS 2021.
  Moré & Sorensen, "Computing a Trust Region Step", SIAM J. Sci. Stat. Comput. 1983.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wdjax.errors import ConfigError, ConfigTypeError
from wdjax.masks import Mask, resolve_mask

PyTree = Any
ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]

__all__ = [
    "HeldZerosState",
    "RegularizerState",
    "add_l1_subgradient",
    "check_hyperparameter",
    "either",
    "hold_zeros",
    "scale_by_adam_no_eps",
]


def check_hyperparameter(name: str, value: Any, *, upper: float | None = None) -> Any:
    """Reject a negative, NaN, infinite or non-scalar concrete hyperparameter.

    Tracers (values inside ``jit``/``vmap``) and schedules (callables) cannot be checked and
    pass through unchanged, so this is safe to call inside traced code.

    Args:
      name: argument name, used in the error message.
      value: a Python/NumPy number, a concrete 0-d array, a tracer or a callable.
      upper: if given, the value must also be strictly below it (e.g. 1 for momentum).

    Returns:
      ``value``, unchanged.

    Raises:
      TypeError: if ``value`` is not a real number.
      ValueError: if it is not a scalar, not finite, negative, or not below ``upper``.
    """
    if callable(value) or isinstance(value, jax.core.Tracer):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise ConfigTypeError(f"{name} must be a real number, got {value!r}.", name)
    if arr.ndim != 0:
        raise ConfigError(
            f"{name} must be a scalar, got shape {arr.shape}; to sweep several values, vmap a "
            "function that builds the optimizer over them.",
            name,
        )
    if not np.isfinite(arr) or arr < 0:
        raise ConfigError(f"{name} must be finite and >= 0, got {value!r}.", name)
    if upper is not None and not arr < upper:
        raise ConfigError(f"{name} must be < {upper}, got {value!r}.", name)
    return value


def _increment(count: jax.Array) -> jax.Array:
    """count + 1, saturating at the int32 maximum (as optax's counters)."""
    return jnp.where(count < jnp.iinfo(jnp.int32).max, count + 1, count)


def _at(x: ScalarOrSchedule, count: jax.Array) -> jax.Array:
    return x(count) if callable(x) else x


def _require_params(params) -> None:
    if params is None:
        raise ValueError(
            "params: this transform needs the current parameters; call "
            "tx.update(updates, state, params)."
        )


def _masked(
    inner: optax.GradientTransformationExtraArgs, mask: Mask
) -> optax.GradientTransformationExtraArgs:
    """``optax.masked`` (masking a ``metric`` extra argument too) with the mask checked first.

    ``inner`` must have a state that does not depend on the parameters (a step count): the
    state is then ``inner``'s own, not wrapped in ``optax.MaskedState``.
    """
    wrapped = optax.masked(
        inner, lambda tree: resolve_mask(mask, tree), mask_compatible_extra_args=True
    )

    def init_fn(params):
        return wrapped.init(params).inner_state

    def update_fn(updates, state, params=None, **extra_args):
        state = optax.MaskedState(inner_state=state)
        updates, state = wrapped.update(updates, state, params, **extra_args)
        return updates, state.inner_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class RegularizerState(NamedTuple):
    """State of the regularizer transforms: the step count for schedules."""

    count: jax.Array  # shape=(), dtype=jnp.int32


def _regularizer(leaf_update, mask: Mask) -> optax.GradientTransformationExtraArgs:
    """Build a transform from ``leaf_update(u, w, d, count) -> u'`` mapped over leaves."""

    def init_fn(params):
        del params
        return RegularizerState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, *, metric=None, **extra_args):
        del extra_args
        _require_params(params)
        if metric is None:
            new = jax.tree.map(lambda u, w: leaf_update(u, w, None, state.count), updates, params)
        else:
            new = jax.tree.map(
                lambda u, w, d: leaf_update(u, w, d, state.count), updates, params, metric
            )
        return new, RegularizerState(count=_increment(state.count))

    return _masked(optax.GradientTransformationExtraArgs(init_fn, update_fn), mask)


def add_l1_subgradient(
    l1: ScalarOrSchedule, mask: Mask = None
) -> optax.GradientTransformationExtraArgs:
    r"""Add the L1 subgradient :math:`\lambda_1\operatorname{sign}(w)` to the updates.

    .. math::
       g \leftarrow g + \lambda_1 \operatorname{sign}(w), \qquad \operatorname{sign}(0) = 0.

    Placed FIRST in a chain (before the optimizer) this is Keras/TensorFlow
    ``kernel_regularizer=l1(λ₁)`` without a loss term (TF's ``abs`` has gradient 0 at 0;
    ``jax.grad(jnp.abs)(0.)`` is 1, which pushes exact zeros off zero). Subgradient steps
    approach the lasso solution but leave no exact zeros; use :func:`prox_l1` for sparsity.

    Args:
      l1: λ₁ >= 0 (float, traced 0-d array or schedule).
      mask: which leaves to penalize (see :mod:`wdjax.penalties`); None = kernels only.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.
    """
    check_hyperparameter("l1", l1)

    def leaf(g, w, d, count):
        del d
        return g + _at(l1, count) * jnp.sign(w)

    return _regularizer(leaf, mask)


def either(flag, first, second) -> optax.GradientTransformation:
    r"""``first``'s updates where ``flag`` > 0, else ``second``'s (a traced switch).

    .. math::
       u = \begin{cases} u_{\text{first}} & \text{flag} > 0 \\
       u_{\text{second}} & \text{otherwise} \end{cases}

    Both inner transforms run on the same incoming updates and both states are kept and
    updated, so members of a sweep that use different optimizers (``flag`` a traced
    per-member hyperparameter) share one compiled program; each state sees only its inputs,
    exactly as if its transform ran alone.

    Args:
      flag: a float or traced 0-d array; > 0 selects ``first``.
      first, second: ``optax.GradientTransformation`` s.

    Returns:
      An ``optax.GradientTransformation`` whose state is ``(first_state, second_state)``.
    """

    def init(params):
        return first.init(params), second.init(params)

    def update(updates, state, params=None):
        a, state_a = first.update(updates, state[0], params)
        b, state_b = second.update(updates, state[1], params)
        return jax.tree.map(lambda x, y: jnp.where(flag > 0, x, y), a, b), (state_a, state_b)

    return optax.GradientTransformation(init, update)


class HeldZerosState(NamedTuple):
    """State of :func:`hold_zeros`: 1 where the initial weight is non-zero, 0 where it is 0."""

    keep: PyTree


def hold_zeros(mask: Mask = None) -> optax.GradientTransformation:
    r"""Hold the exact zeros of the parameters the state was initialized with.

    .. math::
       u \leftarrow u \cdot [w_0 \ne 0],

    so a weight that starts at exactly 0 stays exactly 0 (:math:`w + 0 \cdot u`) and every
    other update passes unchanged (multiplied by 1). Placed last in a chain after pruning, this
    fine-tunes the surviving weights only (the "prune, then fine-tune" baseline of sparsity
    studies, e.g. Han et al., "Learning both Weights and Connections", NeurIPS 2015).

    Args:
      mask: which leaves to hold (see :mod:`wdjax.masks`); None holds every leaf (unlike the
        regularizers, whose None means kernels only: a pruned bias is held as well).

    Returns:
      An ``optax.GradientTransformation``; its state (:class:`HeldZerosState`, inside
      ``optax.MaskedState`` when ``mask`` is given) is set by ``init(params)``.
    """

    def init(params):
        return HeldZerosState(jax.tree.map(lambda w: (w != 0).astype(w.dtype), params))

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, k: u * k, updates, state.keep), state

    tx = optax.GradientTransformation(init, update)
    if mask is None:
        return tx
    return optax.masked(tx, lambda tree: resolve_mask(mask, tree))


def scale_by_adam_no_eps(b1=0.9, b2=0.999, nesterov: bool = False) -> optax.GradientTransformation:
    r"""Adam's direction with ε = 0, taking 0/0 as 0.

    .. math::
       d = \hat m / \sqrt{\hat v} \text{ where } \hat v > 0, \qquad d = 0 \text{ where } \hat v = 0,

    with :math:`\hat m, \hat v` as :func:`optax.scale_by_adam` (``eps = eps_root = 0``; Kingma
    & Ba, "Adam", ICLR 2015). A coordinate whose every gradient so far was 0 (a pixel that is 0
    in every batch so far gives a zero row of the first kernel's gradient) has
    :math:`\hat m = \hat v = 0`, where optax gives NaN; its direction is 0 here. Elsewhere the
    update is optax's bit for bit. Without ε the direction is invariant to the gradients' scale
    (exactly, for a power-of-2 scale), which the scale maps of :mod:`wdjax.analysis.symmetry`
    need; ``make_optimizer("adam", ..., eps=0.0, eps_root=0.0)`` uses it.
    """
    inner = optax.scale_by_adam(b1, b2, eps=0.0, eps_root=0.0, nesterov=nesterov)

    def update(updates, state, params=None):
        out, state = inner.update(updates, state, params)
        zero = jax.tree.map(lambda u, nu: jnp.where(nu > 0, u, jnp.zeros_like(u)), out, state.nu)
        return zero, state

    return optax.GradientTransformation(inner.init, update)
