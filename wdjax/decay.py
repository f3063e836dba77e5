r"""Decoupled weight decay variants of 2025: cautious decay and AdamC's corrected decay.

Both are placed between a preconditioner and the learning-rate scaling, where
:func:`optax.add_decayed_weights` goes in AdamW (``chain(precond, decay, scale_by_lr(γ))``): the
incoming update ``u`` is the base optimizer's direction before the learning rate and the sign
flip (Adam's ``m̂/(√v̂+ε)``, the momentum buffer, the gradient), and the decay term added to it is
multiplied by ``γ_t`` afterwards.

- :func:`cautious_decayed_weights`: ``u ← u + λ·1[u⊙w ≥ 0]⊙w``, so the step is
  ``w ← w − γ_t·(u + λ·1[u⊙w ≥ 0]⊙w)``: a coordinate is decayed only where the update and the
  weight agree in sign (or the update is 0). Chen et al., "Cautious Weight Decay",
  arXiv:2510.12402 (2025).
- :func:`corrected_decayed_weights`: ``u ← u + (γ_t/γ_max)·λ·w`` on the *normalized* leaves and
  ``u + λ·w`` on the other selected leaves, so the step is ``w ← w − γ_t·u − c_t·λ·w`` with
  ``c_t = γ_t²/γ_max`` on normalized layers and ``c_t = γ_t`` elsewhere: AdamC, Defazio,
  "Why Gradients Rapidly Increase Near the End of Training", arXiv:2506.02285 (2025). Under a
  decaying schedule AdamW's ‖g‖/‖w‖ of a normalized layer (one followed by a normalization, so
  its loss is invariant to its scale) settles at √(2λ/γ_t) and rises as γ_t falls; AdamC's
  decay keeps it flat. At a constant learning rate the two are the same.

``mask=`` selects the decayed leaves by the one rule of :mod:`wdjax.masks` (None: kernels);
``normalized=`` (AdamC) selects, among those, the normalized ones: a mask spec (default
``"hidden"``: every kernel but the output layer's, as Defazio treats every linear layer except the
output), callable or pytree of bools, always intersected with ``mask``. λ and γ may be floats,
traced 0-d arrays or schedules ``count -> value``.
"""

import jax
import jax.numpy as jnp
import optax

from wdjax.masks import Mask, resolve_mask
from wdjax.transforms import (
    PyTree,
    RegularizerState,
    ScalarOrSchedule,
    _at,
    _increment,
    _regularizer,
    _require_params,
    check_hyperparameter,
)

__all__ = ["cautious_decayed_weights", "corrected_decayed_weights"]


def cautious_decayed_weights(
    weight_decay: ScalarOrSchedule, mask: Mask = None
) -> optax.GradientTransformationExtraArgs:
    r"""Add the cautious decay :math:`\lambda\,\mathbb{1}[u \odot w \ge 0] \odot w` to the updates.

    .. math::
       u \leftarrow u + \lambda\, \mathbb{1}[u \odot w \ge 0] \odot w

    Placed where AdamW adds its decay (after the preconditioner, before
    :func:`optax.scale_by_learning_rate`), the step is
    :math:`w \leftarrow w - \gamma_t (u + \lambda \mathbb{1}[u \odot w \ge 0] \odot w)`: a weight
    is decayed only where the update would also shrink it (``u`` and ``w`` agree in sign), and
    where ``u = 0`` (the ``≥``). Chen et al., "Cautious Weight Decay", arXiv:2510.12402.

    Args:
      weight_decay: λ >= 0 (float, traced 0-d array or schedule).
      mask: which leaves to decay (:mod:`wdjax.masks`); None = kernels only.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.
    """
    check_hyperparameter("weight_decay", weight_decay)

    def leaf(u, w, d, count):
        del d
        return u + jnp.where(u * w >= 0, _at(weight_decay, count) * w, jnp.zeros_like(w))

    return _regularizer(leaf, mask)


def _full(mask_tree: PyTree, params: PyTree) -> PyTree:
    """A mask tree (or a prefix of the parameters' tree) as a bool per parameter leaf."""
    return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), mask_tree, params)


def _normalized_tree(normalized: Mask, params: PyTree) -> PyTree:
    try:
        return _full(resolve_mask(normalized, params), params)
    except (ValueError, TypeError) as err:
        raise type(err)(
            f"normalized (which decayed layers AdamC treats as normalized; a mask spec, default "
            f"'hidden'): {err}"
        ) from None


def corrected_decayed_weights(
    weight_decay: ScalarOrSchedule,
    learning_rate: ScalarOrSchedule,
    peak_lr,
    mask: Mask = None,
    normalized: Mask = "hidden",
) -> optax.GradientTransformationExtraArgs:
    r"""Add AdamC's corrected decay to the updates (before the learning-rate scaling).

    .. math::
       u \leftarrow u + \frac{\gamma_t}{\gamma_{\max}} \lambda w \ \text{(normalized)},
       \qquad u \leftarrow u + \lambda w \ \text{(other selected leaves)},

    so that after :func:`optax.scale_by_learning_rate` (γ_t) the decay per step is
    ``c_t·λ·w`` with ``c_t = γ_t²/γ_max`` on normalized layers and ``γ_t`` elsewhere. Defazio,
    "Why Gradients Rapidly Increase Near the End of Training", arXiv:2506.02285 (AdamC).

    Args:
      weight_decay: λ >= 0 (float, traced 0-d array or schedule).
      learning_rate: γ_t (float, traced 0-d array or schedule; evaluated at this transform's own
        step count, as :func:`optax.scale_by_learning_rate` evaluates it).
      peak_lr: γ_max > 0 (float or traced 0-d array).
      mask: which leaves to decay (:mod:`wdjax.masks`); None = kernels only.
      normalized: which of those are normalized: a spec (default ``"hidden"``), callable or
        pytree of bools, resolved on the whole parameter tree, then intersected with ``mask``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.
    """
    check_hyperparameter("weight_decay", weight_decay)
    check_hyperparameter("learning_rate", learning_rate)
    check_hyperparameter("peak_lr", peak_lr)
    if callable(peak_lr) or (not isinstance(peak_lr, jax.core.Tracer) and not peak_lr > 0):
        raise ValueError(f"peak_lr must be a number > 0 (γ_max of the schedule), got {peak_lr!r}.")

    def masks(params):
        on = _full(resolve_mask(mask, params), params)
        return on, _normalized_tree(normalized, params)

    def init_fn(params):
        masks(params)  # a bad mask fails here, before any step
        return RegularizerState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _require_params(params)
        on, norm = masks(params)
        lam = _at(weight_decay, state.count)
        ratio = _at(learning_rate, state.count) / peak_lr

        def leaf(u, w, selected, is_normalized):
            if not selected:
                return u
            return u + (lam * ratio if is_normalized else lam) * w

        new = jax.tree.map(leaf, updates, params, on, norm)
        return new, RegularizerState(count=_increment(state.count))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
