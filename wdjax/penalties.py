"""Loss-side penalties (Keras-exact L1/L2, group lasso) and the default decay mask.

Every function here is pure and jittable and takes flax ``linen`` parameter trees such as
``{"params": {"Dense_0": {"kernel": (in, out), "bias": (out,)}, ...}}``.

Masks follow :func:`optax.masked`: a pytree of Python bools with the structure of the
parameters (or a prefix of it), or a callable ``params -> such a pytree``. ``mask=None``
means :func:`decay_mask` (kernels only), the convention of Keras ``kernel_regularizer``.

Groups (for :func:`group_lasso_penalty` and :func:`wdjax.transforms.prox_group_lasso`): the
group of a weight is its position along the leaf's LAST axis, the output unit. A Dense
kernel ``(in, out)`` has one group per column (``|g| = in``); a Conv kernel
``(kh, kw, cin, cout)`` has one group per output filter (``|g| = kh·kw·cin``). A leaf with
fewer than two axes (a bias) has one group of size 1 per entry, where the group norm is
``|w|`` and group lasso reduces to L1.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Mask = PyTree | Callable[[PyTree], PyTree] | None

__all__ = [
    "decay_mask",
    "group_lasso_penalty",
    "group_norms",
    "group_sizes",
    "l1_penalty",
    "l2_penalty",
    "resolve_mask",
]

_DECAYED_NAMES = ("kernel",)


def _leaf_name(path) -> str | None:
    """Name of the last named key in a pytree path (None when no key is named)."""
    for key in reversed(path):
        if isinstance(key, jax.tree_util.DictKey):
            return str(key.key)
        if isinstance(key, jax.tree_util.GetAttrKey):
            return key.name
    return None


def decay_mask(params: PyTree) -> PyTree:
    """The default regularization mask: True for kernels, False for everything else.

    The decision is made from each leaf's path, never from its shape, so it stays right when
    every leaf carries a leading member axis from stacking (``vmap``-ped sweeps). A leaf whose
    last named key is ``"kernel"`` (flax ``Dense``/``Conv``) is decayed; biases, normalization
    ``scale``/``bias``, ``embedding`` tables and any other named leaf are not. A tree with no
    named keys at all (a bare array, a tuple of arrays) is treated as weights: every leaf is
    True, so ``l1_penalty(w)`` on a plain array is ``Σ|w|``.

    Args:
      params: parameter pytree (or updates with the same structure).

    Returns:
      A pytree of Python bools with the structure of ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}
      >>> decay_mask(p)
      {'Dense_0': {'bias': False, 'kernel': True}}
    """

    def leaf_mask(path, _):
        name = _leaf_name(path)
        return name is None or name in _DECAYED_NAMES

    return jax.tree_util.tree_map_with_path(leaf_mask, params)


def _is_static_bool(m) -> bool:
    if isinstance(m, bool | np.bool_):
        return True
    return (
        isinstance(m, np.ndarray | jax.Array)
        and not isinstance(m, jax.core.Tracer)
        and m.shape == ()
        and m.dtype == np.bool_
    )


def resolve_mask(mask: Mask, params: PyTree, *, default: Mask = decay_mask) -> PyTree:
    """Evaluate ``mask`` on ``params`` and check it, as :func:`optax.masked` would use it.

    Args:
      mask: pytree of bools (the structure of ``params`` or a prefix of it), a callable
        ``params -> such a pytree``, or None for ``default``.
      params: the parameter (or update) pytree the mask applies to.
      default: the mask used when ``mask`` is None (a callable or a pytree).

    Returns:
      The mask pytree, with Python/NumPy bool leaves.

    Raises:
      ValueError: if the mask's tree does not match (is not a prefix of) ``params``.
      TypeError: if a mask leaf is not a static boolean.
    """
    if mask is None:
        mask = default
    mask_tree = mask(params) if callable(mask) else mask
    try:
        jax.tree.map(lambda m, sub: None, mask_tree, params)
    except (ValueError, TypeError) as err:
        raise ValueError(
            "mask: its tree does not match the parameters (it must have their structure, or a "
            f"prefix of it). mask tree: {jax.tree.structure(mask_tree)}; params tree: "
            f"{jax.tree.structure(params)}. Build it with e.g. "
            "jax.tree.map(lambda x: ..., params), or pass a callable params -> mask."
        ) from err
    for m in jax.tree.leaves(mask_tree):
        if not _is_static_bool(m):
            raise TypeError(
                f"mask: leaves must be Python bools (static), got {type(m).__name__} {m!r}."
            )
    return mask_tree


def _masked_sum(fn, params: PyTree, mask: Mask) -> jax.Array:
    mask_tree = resolve_mask(mask, params)
    per_leaf = jax.tree.map(
        lambda m, sub: [fn(x) for x in jax.tree.leaves(sub)] if m else [], mask_tree, params
    )
    terms = jax.tree.leaves(per_leaf)
    return sum(terms, start=jnp.zeros(()))


def l1_penalty(params: PyTree, mask: Mask = None) -> jax.Array:
    r"""Sum of absolute values over the masked leaves: :math:`\sum_{w} |w|`.

    ``loss + c * l1_penalty(params)`` is exactly the Keras loss with
    ``kernel_regularizer=keras.regularizers.l1(c)`` on every layer (the default mask selects
    kernels). Differentiating it gives ``c·sign(w)`` except at ``w == 0`` where JAX's
    ``grad(abs)(0.)`` is 1 (TensorFlow's is 0), which pushes exact zeros off zero; the
    optimizer-side :func:`wdjax.transforms.add_l1_subgradient` (strategy ``"l1"``) uses
    ``sign(0) = 0`` instead. On stacked (member-axis) parameters this sums over members:
    ``vmap`` it for per-member values.

    Args:
      params: parameter pytree.
      mask: see :func:`resolve_mask`; None means :func:`decay_mask`.

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"Dense_0": {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([5.0, 5.0])}}
      >>> float(l1_penalty(p))
      3.0
    """
    return _masked_sum(lambda x: jnp.sum(jnp.abs(x)), params, mask)


def l2_penalty(params: PyTree, mask: Mask = None) -> jax.Array:
    r"""Sum of squares over the masked leaves: :math:`\sum_{w} w^2` (no ½).

    ``loss + c * l2_penalty(params)`` is Keras ``kernel_regularizer=l2(c)``; its gradient is
    ``2c·w``, so it equals coupled strategy ``"l2"`` (torch ``weight_decay``) with strength
    ``2c``; conversely ``"l2"`` with strength λ is ``loss + (λ/2)·l2_penalty(params)``.

    Args:
      params: parameter pytree.
      mask: see :func:`resolve_mask`; None means :func:`decay_mask`.

    Returns:
      A scalar.
    """
    return _masked_sum(lambda x: jnp.sum(jnp.square(x)), params, mask)


def group_sizes(x: jax.Array) -> int:
    """Number of weights in each group of leaf ``x`` (product of all axes but the last)."""
    return int(np.prod(x.shape[:-1])) if x.ndim >= 2 else 1


def group_norms(x: jax.Array) -> jax.Array:
    """Euclidean norm of each group (output unit) of leaf ``x``, keeping dims to broadcast.

    Args:
      x: one leaf, e.g. a Dense kernel ``(in, out)`` or a Conv kernel ``(kh, kw, cin, cout)``.

    Returns:
      For ``x.ndim >= 2``, an array of shape ``(1, ..., 1, out)`` (same rank as ``x``);
      otherwise ``|x|`` (each entry is its own group).
    """
    if x.ndim < 2:
        return jnp.abs(x)
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(x.ndim - 1)), keepdims=True))


def group_lasso_penalty(params: PyTree, mask: Mask = None) -> jax.Array:
    r"""Group lasso penalty over output units: :math:`\sum_g \sqrt{|g|}\,\|w_g\|_2`.

    Groups are described in the module docstring; ``strength * group_lasso_penalty`` is the
    penalty whose proximal operator :func:`wdjax.transforms.prox_group_lasso` applies.

    Args:
      params: parameter pytree.
      mask: see :func:`resolve_mask`; None means :func:`decay_mask`.

    Returns:
      A scalar.
    """
    return _masked_sum(lambda x: np.sqrt(group_sizes(x)) * jnp.sum(group_norms(x)), params, mask)
