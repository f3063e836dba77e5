r"""Loss-side penalties (Keras-exact L1/L2, group lasso) and the group geometry of kernels.

The penalties take the mask of :mod:`wdjax.masks` (the rule every public function shares).

Groups (for :func:`group_lasso_penalty` and :func:`wdjax.prox.prox_group_lasso`, argument
``groups``):

- ``"incoming"`` (the default): the group of a weight is its position along the leaf's LAST
  axis, the output unit. A Dense kernel ``(in, out)`` has one group per column (``|g| = in``,
  the unit's incoming weights); a Conv kernel ``(kh, kw, cin, cout)`` one group per output
  filter (``|g| = kh·kw·cin``).
- ``"outgoing"``: the group is the position along the SECOND-TO-LAST axis, the input unit. A
  Dense kernel has one group per row (``|g| = out``: the weights leaving one input pixel or one
  unit of the previous layer); a Conv kernel one group per input channel (``|g| = kh·kw·cout``).
  A unit's outgoing weights live in the NEXT layer's kernel, so removing the units of a layer
  needs that kernel in the mask (``"kernels"``, not ``"hidden"``, for the last hidden layer).

A leaf with fewer than two axes (a bias) has one group of size 1 per entry in both, where the
group norm is ``|w|`` and group lasso reduces to L1.
"""

import jax
import jax.numpy as jnp
import numpy as np

from wdjax.errors import ConfigError
from wdjax.masks import Mask, PyTree, resolve_mask

__all__ = [
    "GROUPS",
    "check_groups",
    "group_axes",
    "group_lasso_penalty",
    "group_norms",
    "group_sizes",
    "l1_penalty",
    "l2_penalty",
]

GROUPS = ("incoming", "outgoing")  # group lasso's groups: a kernel's columns or its rows


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
      mask: see :func:`resolve_mask`; None means :func:`decay_mask` (kernels only).

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
      mask: see :func:`resolve_mask`; None means :func:`decay_mask` (kernels only).

    Returns:
      A scalar.
    """
    return _masked_sum(lambda x: jnp.sum(jnp.square(x)), params, mask)


def check_groups(groups: str) -> None:
    """Raise ValueError naming ``groups`` unless it is one of :data:`GROUPS`."""
    if groups not in GROUPS:
        raise ConfigError(f"groups must be one of {GROUPS}, got {groups!r}.", "groups")


def group_axes(x: jax.Array, groups: str = "incoming") -> tuple[int, ...]:
    """The axes of leaf ``x`` that one group spans (reduced over to get its norm).

    ``"incoming"``: every axis but the last; ``"outgoing"``: every axis but the second-to-last
    (module docstring). Empty for a leaf with fewer than two axes (each entry its own group).

    Example:
      >>> import jax.numpy as jnp
      >>> group_axes(jnp.ones((3, 3, 2, 4))), group_axes(jnp.ones((3, 3, 2, 4)), "outgoing")
      ((0, 1, 2), (0, 1, 3))
    """
    check_groups(groups)
    if x.ndim < 2:
        return ()
    keep = x.ndim - 1 if groups == "incoming" else x.ndim - 2
    return tuple(a for a in range(x.ndim) if a != keep)


def group_sizes(x: jax.Array, groups: str = "incoming") -> int:
    """Number of weights in each group of leaf ``x`` (the product of :func:`group_axes`)."""
    return int(np.prod([x.shape[a] for a in group_axes(x, groups)]))


def group_norms(x: jax.Array, groups: str = "incoming") -> jax.Array:
    """Euclidean norm of each group of leaf ``x``, keeping dims to broadcast.

    Args:
      x: one leaf, e.g. a Dense kernel ``(in, out)`` or a Conv kernel ``(kh, kw, cin, cout)``.
      groups: ``"incoming"`` (one group per output unit) or ``"outgoing"`` (one per input unit).

    Returns:
      For ``x.ndim >= 2``, an array of the rank of ``x`` with 1 on the :func:`group_axes`:
      ``(1, ..., 1, out)`` for incoming groups, ``(1, ..., in, 1)`` for outgoing; otherwise
      ``|x|`` (each entry is its own group).
    """
    axes = group_axes(x, groups)
    if not axes:
        return jnp.abs(x)
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True))


def group_lasso_penalty(params: PyTree, mask: Mask = None, groups: str = "incoming") -> jax.Array:
    r"""Group lasso penalty: :math:`\sum_g \sqrt{|g|}\,\|w_g\|_2`.

    Groups are described in the module docstring (``groups="incoming"``: output units, a Dense
    kernel's columns; ``"outgoing"``: input units, its rows); ``strength *
    group_lasso_penalty`` is the penalty whose proximal operator
    :func:`wdjax.prox.prox_group_lasso` applies (with the same ``groups``).

    Args:
      params: parameter pytree.
      mask: see :func:`resolve_mask`; None means :func:`decay_mask` (kernels only).
      groups: ``"incoming"`` or ``"outgoing"``.

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([[3.0, 4.0], [0.0, 0.0], [0.0, 1.0]])  # rows: 3 inputs; columns: 2 units
      >>> float(group_lasso_penalty(w, groups="outgoing"))  # √2·(5 + 0 + 1)
      8.485280990600586
    """
    check_groups(groups)
    return _masked_sum(
        lambda x: np.sqrt(group_sizes(x, groups)) * jnp.sum(group_norms(x, groups)), params, mask
    )
