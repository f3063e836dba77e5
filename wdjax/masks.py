r"""Which leaves are regularized: the one mask rule of the penalties, transforms and optimizers.

Every function here is pure and jittable and takes any parameter pytree: flax ``linen`` params
(``{"params": {"Dense_0": {"kernel": (in, out), "bias": (out,)}}}`` or the inner dict), flax
``nnx`` states (``nnx.state(model, nnx.Param)``, the state of ``nnx.split(model, nnx.Param, ...)``,
or ``state.to_pure_dict()``), bare arrays, and all of these stacked along a leading member axis.

Which leaves are regularized: one rule for every public function
----------------------------------------------------------------
Penalties, transforms (:mod:`wdjax.transforms`) and :func:`wdjax.make_optimizer` take the same
``mask`` and the same default. A leaf's *path* is its keys from the root joined with ``/``, without
the trailing ``value``/``raw_value`` attribute of an NNX Variable (flax 0.12 ``nnx.State`` key
paths end in ``.value``): Linen ``params/Dense_0/kernel``, NNX ``layers/0/kernel``,
``head/kernel``. Its *name* is the last string key of the path (``kernel``).

- ``mask=None`` (spec ``"kernels"``, :func:`decay_mask`): leaves named ``kernel``: the weight
  matrices and filters of Linen and NNX ``Dense``/``Linear``/``Conv``/``DenseGeneral``/``Einsum``.
  Never biases, normalization ``scale``/``bias``, ``embedding`` tables or any other named leaf (as
  Keras ``kernel_regularizer``). A tree with no names at all (a bare array, a tuple of arrays) is
  weights: regularized whole.
- ``"hidden"``: the kernels except the output layer's. The output layer is the one that produces
  the model's output, found from the data flow where the model is known and never from a sorted
  order of names. A sweep (``sweep``, the CLI; the builder :func:`wdjax.build` given ``x_example``)
  traces the model once and replaces ``"hidden"`` by an explicit regular expression over the
  hidden kernels' paths (:func:`wdjax.engine.adapters.resolve_mask_spec`;
  :mod:`wdjax.engine.dataflow` says what "output layer" means for skips and parallel branches).
  Where only parameters are given (:func:`wdjax.make_optimizer`, the transforms, the penalties,
  :func:`mask_from_spec`), the output layer is every kernel under a module named ``head`` (the
  output layer of every :mod:`wdjax.engine.models` model, Linen or NNX); parameters with
  kernels but no ``head`` are refused (pass the model through a sweep, name the output layer
  ``head``, or give a regular expression).
- any other string: a regular expression, ``re.search``-ed on each leaf's path
  (``dense_[01]/kernel``: the first two layers' kernels; ``kernel|embedding`` adds embeddings).
- a callable ``params -> bools`` or a pytree of Python bools with the structure of the parameters
  or a prefix of it (:func:`optax.masked`'s forms; for an NNX state, build it from the state, e.g.
  ``jax.tree.map(lambda x: ..., state)``).

The decision is made from paths, never from shapes, so it stays right when every leaf carries a
leading member axis. :func:`mask_from_spec` turns a string into the callable.

A mask that selects no leaf of parameters holding a weight matrix (a leaf of rank >= 2 as the
function sees it: per member under ``vmap``) is a ``ValueError`` naming ``mask`` in every public
function: that is how a model whose weights are not named ``kernel`` is caught. Parameters without
any matrix (a lone bias vector) give a zero penalty and pass through the transforms;
:func:`wdjax.make_optimizer` refuses those too (a strategy that regularizes nothing is
``reg="none"``). Stacked along a member axis outside ``vmap``, vectors have rank 2 and count.
"""

import dataclasses
import re
from collections.abc import Callable, Collection
from typing import Any

import jax
import numpy as np

from wdjax.errors import ConfigError, ConfigTypeError

PyTree = Any
Mask = PyTree | Callable[[PyTree], PyTree] | str | None

__all__ = [
    "DEFAULT_MASK",
    "Mask",
    "decay_mask",
    "kernels_except",
    "mask_from_spec",
    "param_path",
    "resolve_mask",
]

DEFAULT_MASK = "kernels"  # the default mask spec, read by every default in wdjax
_DECAYED_NAMES = ("kernel",)
_OUTPUT_MODULE = "head"
_VARIABLE_VALUE = ("value", "raw_value")  # an nnx.Variable's own array, the last key of a path


def _keys(path) -> tuple:
    """The path's keys as Python values, without a trailing NNX Variable ``value`` attribute."""
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name in _VARIABLE_VALUE:
        path = path[:-1]
    return tuple(
        getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))) for key in path
    )


def param_path(path) -> str:
    """A pytree key path as the text masks match: keys joined with ``/`` (NNX ``.value`` dropped).

    Example:
      >>> import jax.numpy as jnp
      >>> leaves = jax.tree_util.tree_flatten_with_path({"Dense_0": {"kernel": jnp.ones(1)}})[0]
      >>> param_path(leaves[0][0])
      'Dense_0/kernel'
    """
    return "/".join(str(key) for key in _keys(path))


def _leaf_name(path) -> str | None:
    """The last string key of a path (None when no key is a name: an unnamed tree)."""
    names = [key for key in _keys(path) if isinstance(key, str)]
    return names[-1] if names else None


def _is_kernel(path) -> bool:
    name = _leaf_name(path)
    return name is None or name in _DECAYED_NAMES


def decay_mask(params: PyTree) -> PyTree:
    """The default mask (spec ``"kernels"``): True for kernels, False for everything else.

    The rule is the module docstring's: a leaf whose name (last string key, after dropping an NNX
    Variable's ``.value``) is ``"kernel"`` is regularized; biases, normalization ``scale``/``bias``,
    ``embedding`` tables and any other named leaf are not; a tree with no names at all (a bare
    array, a tuple of arrays) is regularized whole, so ``l1_penalty(w)`` on a plain array is
    ``Σ|w|``. Decided by path, never by shape: a leading member axis changes nothing.

    Args:
      params: parameter pytree (Linen dict, NNX state or pure dict), or updates like it.

    Returns:
      A pytree of Python bools with the structure of ``params`` (for an NNX state: a state whose
      Variables hold the bools).

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}
      >>> decay_mask(p)
      {'Dense_0': {'bias': False, 'kernel': True}}
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: _is_kernel(path), params)


def _hidden_mask(params: PyTree) -> PyTree:
    """Kernels except the output layer's: those under a ``head`` module (see the module doc)."""
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    kernels = [param_path(path) for path in paths if _is_kernel(path)]
    if kernels and not any(_OUTPUT_MODULE in _keys(path)[:-1] for path in paths):
        raise ValueError(
            "mask: 'hidden' needs to know the output layer, and these parameters have no module "
            f"named 'head' (kernels: {', '.join(kernels[:6])}{', ...' * (len(kernels) > 6)}). "
            "Pass the model (sweep(model=..., mask='hidden') and the CLI find the output layer "
            "from the model's data flow; or wdjax.engine.adapters.resolve_mask_spec('hidden', "
            "model, x)), name the output layer 'head', or give a regular expression over the "
            "kernels' paths, e.g. mask='^(?!classifier/).*kernel$' (every kernel but those of "
            "a layer named classifier)."
        )
    return jax.tree_util.tree_map_with_path(
        lambda path, _: _is_kernel(path) and _OUTPUT_MODULE not in _keys(path)[:-1], params
    )


def kernels_except(params: PyTree, output: Collection[str]) -> str:
    """The spec selecting every kernel of ``params`` but those at the paths ``output``.

    This is ``"hidden"`` made explicit once the output layer is known: an anchored regular
    expression listing the selected kernels' paths (:func:`param_path`), so it stays a string
    (hashable, recorded as it is).

    Args:
      params: the parameter pytree (one member's).
      output: the :func:`param_path` of each output-layer leaf.

    Returns:
      ``"^(?:path_1|path_2|...)$"`` over the kernels not in ``output``, in tree order.

    Raises:
      ValueError: no kernel is left (every kernel is the output layer's).

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"proj": {"kernel": jnp.ones((2, 3))}, "out": {"kernel": jnp.ones((3, 1))}}
      >>> kernels_except(p, {"out/kernel"})
      '^(?:proj/kernel)$'
    """
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    hidden = [param_path(path) for path in paths if _is_kernel(path)]
    hidden = [p for p in hidden if p not in set(output)]
    if not hidden:
        raise ValueError(
            f"mask: 'hidden' selects nothing: every kernel of this model is its output layer's "
            f"({', '.join(sorted(output))}); use mask='kernels' or reg='none'."
        )
    return "^(?:" + "|".join(re.escape(p) for p in hidden) + ")$"


@dataclasses.dataclass(frozen=True)
class _SpecMask:
    """A mask spec string as a callable; hashable and equal by its spec (a static config value)."""

    spec: str

    def __call__(self, params: PyTree) -> PyTree:
        if self.spec == "kernels":
            return decay_mask(params)
        if self.spec == "hidden":
            return _hidden_mask(params)
        pattern = re.compile(self.spec)
        return jax.tree_util.tree_map_with_path(
            lambda path, _: pattern.search(param_path(path)) is not None, params
        )

    def __repr__(self) -> str:
        return f"mask_from_spec({self.spec!r})"


def mask_from_spec(spec: str) -> Callable[[PyTree], PyTree]:
    """The callable mask ``params -> bools`` of a spec string (rule in the module docstring).

    Args:
      spec: ``"kernels"`` (the default, :func:`decay_mask`), ``"hidden"`` (kernels except the
        output layer's: those under a ``head`` module; without one the callable refuses the
        parameters, see the module docstring), or a regular expression ``re.search``-ed on
        each leaf's ``/``-joined path (:func:`param_path`).

    Returns:
      A callable (hashable, equal for equal specs) taking a parameter pytree and returning a pytree
      of Python bools with its structure.

    Raises:
      ValueError: an empty spec or an invalid regular expression.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)},
      ...      "head": {"kernel": jnp.ones((3, 1)), "bias": jnp.zeros(1)}}
      >>> mask_from_spec("hidden")(p)
      {'dense_0': {'bias': False, 'kernel': True}, 'head': {'bias': False, 'kernel': False}}
      >>> mask_from_spec("bias$")(p)["head"]
      {'bias': True, 'kernel': False}
    """
    if not isinstance(spec, str) or not spec:
        raise ConfigError(
            f"mask: a spec must be 'kernels', 'hidden' or a non-empty regular expression, got "
            f"{spec!r}.",
            "mask",
        )
    if spec not in ("kernels", "hidden"):
        try:
            re.compile(spec)
        except re.error as err:
            raise ConfigError(
                f"mask: {spec!r} is neither 'kernels' nor 'hidden' and not a valid regular "
                f"expression ({err}).",
                "mask",
            ) from err
    return _SpecMask(spec)


def _is_static_bool(m) -> bool:
    if isinstance(m, bool | np.bool_):
        return True
    return (
        isinstance(m, np.ndarray | jax.Array)
        and not isinstance(m, jax.core.Tracer)
        and m.shape == ()
        and m.dtype == np.bool_
    )


def _check_structure(mask_tree: PyTree, params: PyTree) -> None:
    try:
        jax.tree.map(lambda m, sub: None, mask_tree, params)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            "mask: its tree does not match the parameters (it must have their structure, or a "
            f"prefix of it). mask tree: {jax.tree.structure(mask_tree)}; params tree: "
            f"{jax.tree.structure(params)}. Build it with e.g. "
            "jax.tree.map(lambda x: ..., params), or pass a callable params -> mask or a spec.",
            "mask",
        ) from err
    for m in jax.tree.leaves(mask_tree):
        if not _is_static_bool(m):
            raise ConfigTypeError(
                f"mask: leaves must be Python bools (static), got {type(m).__name__} {m!r}.",
                "mask",
            )


def _first_matrix(params: PyTree) -> tuple[str, tuple] | None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        shape = tuple(getattr(leaf, "shape", ()))
        if len(shape) >= 2:
            return param_path(path), shape
    return None


def _check_selects(mask_tree: PyTree, params: PyTree, label: str) -> None:
    if any(jax.tree.leaves(mask_tree)):
        return
    matrix = _first_matrix(params)
    if matrix is None:
        return
    path, shape = matrix
    name = path.rsplit("/", 1)[-1] or "w"
    raise ConfigError(
        f"mask: {label} selects no leaf of these parameters, which hold weight matrices "
        f"(e.g. {path!r}, shape {shape}), so nothing would be regularized. The default takes "
        "leaves named 'kernel' (flax Dense/Linear/Conv, Linen or NNX); for other names pass "
        f"mask= a regular expression over the '/'-joined path (e.g. mask={name + '$'!r}), a "
        "callable params -> bools or a pytree of bools.",
        "mask",
    )


def resolve_mask(mask: Mask, params: PyTree) -> PyTree:
    """Evaluate ``mask`` on ``params`` and check it, as :func:`optax.masked` would use it.

    Args:
      mask: None (:func:`decay_mask`), a spec string (:func:`mask_from_spec`), a callable
        ``params -> bools`` or a pytree of bools (the structure of ``params`` or a prefix of it).
      params: the parameter (or update) pytree the mask applies to.

    Returns:
      The mask pytree, with Python/NumPy bool leaves.

    Raises:
      ValueError: the mask's tree does not match (is not a prefix of) ``params``; or it selects
        no leaf although ``params`` hold a weight matrix (a leaf of rank >= 2); or a bad spec.
      TypeError: a mask leaf is not a static boolean.
    """
    if mask is None or isinstance(mask, str):  # None: the default, DEFAULT_MASK
        fn = mask_from_spec(DEFAULT_MASK if mask is None else mask)
    else:
        fn = mask
    mask_tree = fn(params) if callable(fn) else fn
    _check_structure(mask_tree, params)
    label = "the default (kernels)" if mask is None else "this mask"
    _check_selects(mask_tree, params, repr(mask) if isinstance(mask, str) else label)
    return mask_tree
