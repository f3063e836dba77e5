"""Any Flax model behind one small functional interface, for the engine (Linen or NNX).

The engine needs two pure functions of arrays::

    init(key, x_example)              -> (params, model_state)
    apply(params, model_state, x, train, key) -> (logits, model_state)

``params`` are the trainable parameters and ``model_state`` everything else the model carries
between steps (BatchNorm statistics), both plain nested dicts of arrays with Linen-style paths
(``{"dense_0": {"kernel": ...}}``), so masks, penalties, metrics, checkpoints and ``params.npz``
treat every model alike. ``key`` seeds dropout for one step.

* :class:`Linen`: an unbound ``flax.linen.Module``. Its ``__call__(x, ...)`` may take ``train``
  (the built-in models do), ``deterministic`` (= not train) or ``training``, or none of them.
  Non-parameter collections (``batch_stats``) are carried and, when training, mutable.
* :class:`NNX`: a factory ``rngs -> nnx.Module`` (a module class whose constructor takes
  ``rngs``, or a function). The module is split once (``nnx.split``) into a graph definition per
  mode (``train()`` / ``eval()``) and state templates; each call merges the member's arrays back
  (``nnx.merge``) around plain ``jax.jit``, which ran as fast as Linen where ``nnx.jit`` with
  ``nnx.Optimizer`` ran 2.2× slower. Its RNG streams (dropout) are rebuilt every step from the
  engine's per-member, per-step key instead of being carried. ``__call__(x)`` takes the batch.

Both are hashable (they key the compiled-program cache): two adapters of the same module or the
same factory are equal.
"""

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from wdjax.errors import ConfigTypeError

__all__ = ["NNX", "Linen", "as_model", "describe", "qualified_name", "resolve_mask_spec"]

_FLAGS = {"train": lambda t: t, "training": lambda t: t, "deterministic": lambda t: not t}


def _mode_flag(module) -> str | None:
    params = inspect.signature(type(module).__call__).parameters
    return next((name for name in _FLAGS if name in params), None)


@dataclasses.dataclass(frozen=True)
class Linen:
    """An unbound Linen module (see the module docstring)."""

    module: Any

    def _kw(self, train: bool) -> dict:
        flag = _mode_flag(self.module)
        return {} if flag is None else {flag: _FLAGS[flag](train)}

    def init(self, key, x):
        variables = self.module.init({"params": key}, x, **self._kw(False))
        rest = {k: v for k, v in variables.items() if k != "params"}
        return variables["params"], rest

    def apply(self, params, state, x, train: bool, key=None):
        variables = {"params": params, **state}
        if not train:
            return self.module.apply(variables, x, **self._kw(False)), state
        rngs = {"dropout": jax.random.key(0) if key is None else key}
        if not state:
            return self.module.apply(variables, x, rngs=rngs, **self._kw(True)), state
        logits, new = self.module.apply(variables, x, rngs=rngs, mutable=list(state),
                                        **self._kw(True))  # fmt: skip
        return logits, dict(new)


@dataclasses.dataclass(frozen=True)
class NNX:
    """A factory ``rngs -> nnx.Module`` (see the module docstring)."""

    factory: Callable
    _split: Any = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        from flax import nnx

        abstract = nnx.eval_shape(lambda: self.factory(nnx.Rngs(0)))
        if not isinstance(abstract, nnx.Module):
            raise ConfigTypeError(
                f"model: the factory returned {type(abstract).__name__}, not an nnx.Module; "
                "pass a class or function taking rngs",
                "model",
            )
        abstract.train()
        train_def, params, rngs, rest = nnx.split(abstract, nnx.Param, nnx.RngState, ...)
        abstract.eval()
        eval_def = nnx.split(abstract, nnx.Param, nnx.RngState, ...)[0]
        object.__setattr__(self, "_split", (train_def, eval_def, params, rngs, rest))

    @staticmethod
    def _fill(template, pure):
        from flax import nnx

        state = jax.tree.map(lambda v: v, template)  # a fresh State of the same structure
        nnx.replace_by_pure_dict(state, pure)
        return state

    def _rngs(self, key):
        leaves, treedef = jax.tree.flatten(self._split[3])
        new = [jax.random.fold_in(key, i) if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)
               else jnp.zeros(v.shape, v.dtype) for i, v in enumerate(leaves)]  # fmt: skip
        return jax.tree.unflatten(treedef, new)

    def init(self, key, x):
        from flax import nnx

        module = self.factory(nnx.Rngs(key))
        _, params, _, rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

    def apply(self, params, state, x, train: bool, key=None):
        from flax import nnx

        train_def, eval_def, p_t, _, rest_t = self._split
        key = jax.random.key(0) if key is None else key
        module = nnx.merge(train_def if train else eval_def, self._fill(p_t, params),
                           self._rngs(key), self._fill(rest_t, state))  # fmt: skip
        logits = module(x)
        if not train:
            return logits, state
        return logits, nnx.to_pure_dict(nnx.split(module, nnx.Param, nnx.RngState, ...)[3])


def _is_nnx(model) -> bool:
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover - flax without nnx
        return False
    return isinstance(model, nnx.Module) or (
        inspect.isclass(model) and issubclass(model, nnx.Module)
    )


def as_model(model) -> Linen | NNX:
    """An adapter for a Linen module, an NNX module class or factory (``rngs -> module``)."""
    import flax.linen as nn

    if isinstance(model, Linen | NNX):
        return model
    if isinstance(model, nn.Module):
        return Linen(model)
    if _is_nnx(model) and not inspect.isclass(model):
        raise ConfigTypeError(
            "model: an nnx.Module instance cannot give each member its own initial weights; "
            "pass its class (if its constructor takes only rngs) or a factory, e.g. "
            "lambda rngs: MyNet(..., rngs=rngs)",
            "model",
        )
    if callable(model):
        return NNX(model)
    raise ConfigTypeError(
        f"model: {model!r} is not a model name, a Linen module or an NNX factory", "model"
    )


def describe(model) -> str:
    """A stable text naming a model (config.json, resume checks): the class and its fields."""
    adapter = as_model(model)
    if isinstance(adapter, Linen):
        return f"linen:{adapter.module!r}"
    return f"nnx:{qualified_name(adapter.factory)}"


def qualified_name(obj) -> str:
    """``module.QualName`` of a function or class, else of the object's class (stable across
    runs: no memory address)."""
    named = obj if inspect.isfunction(obj) or inspect.isclass(obj) else type(obj)
    return f"{named.__module__}.{named.__qualname__}"


def resolve_mask_spec(spec, model, x_example):
    """A mask spec with ``"hidden"`` made explicit from the model's data flow.

    ``"hidden"`` means every kernel but the output layer's, and the output layer is the one that
    produces the model's output: found by tracing the model's (eval-mode) apply once on abstract
    inputs, never from names or their sorted order (:mod:`wdjax.engine.dataflow` defines it for
    skips and parallel branches). Any other spec is returned as it is.

    Args:
      spec: a mask spec (:func:`wdjax.mask_from_spec`), a callable or a pytree of bools.
      model: a Linen module, an NNX factory or an adapter (:func:`as_model`).
      x_example: an input batch (any batch size; an array or :class:`jax.ShapeDtypeStruct`):
        only its shape is used.

    Returns:
      ``spec`` unchanged, or for ``"hidden"`` an anchored regular expression over the hidden
      kernels' paths (:func:`wdjax.masks.kernels_except`), e.g. ``'^(?:stem/kernel|proj/kernel)$'``
      (a string, so an engine holding it stays hashable).

    Raises:
      ValueError: naming ``mask``: every kernel is the output layer's, no layer with parameters
        produces the output, or the model's program holds a primitive the trace cannot follow.
    """
    if not (isinstance(spec, str) and spec == "hidden"):
        return spec
    from wdjax import masks
    from wdjax.engine import dataflow

    adapter = as_model(model)
    x = jax.ShapeDtypeStruct(tuple(jnp.shape(x_example)), jnp.float32)
    params, state = jax.eval_shape(adapter.init, jax.random.key(0), x)
    try:
        found = dataflow.output_layer(lambda p, s, x: adapter.apply(p, s, x, False)[0],
                                      params, state, x)  # fmt: skip
    except dataflow.Opaque as err:
        raise ValueError(
            f"mask: 'hidden' cannot find the output layer: the model's program holds "
            f"{err.args[0]!r}, which the trace does not follow. Give a regular expression over "
            "the kernels' paths instead (e.g. mask='^(?!head/).*kernel$')."
        ) from None
    if not found:
        raise ValueError(
            "mask: 'hidden' found no layer with parameters (a dot_general or convolution of the "
            "activations with parameters) producing the model's output; give a regular "
            "expression over the kernels' paths instead."
        )
    paths = [masks.param_path(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return masks.kernels_except(params, {paths[i] for i in found})
