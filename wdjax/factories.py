"""Optimizer factories: ``(learning_rate, strength, **traced) -> optax.GradientTransformation``.

A sweep rebuilds each member's optimizer inside the traced step from its traced hyperparameters
through a factory (:class:`wdjax.engine.engine.Engine`). The factories here are hashable
dataclasses, so equal factories share compiled programs.
"""

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import optax

from wdjax.masks import DEFAULT_MASK, mask_from_spec
from wdjax.optim import make_optimizer

__all__ = ["Strategy", "WithMask", "takes_mask"]


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A named strategy as an optimizer factory: ``(learning_rate, strength, **traced) ->``
    :func:`wdjax.make_optimizer` ``(optimizer, learning_rate, reg, strength, mask=mask,
    **hyper, **traced)``. Hashable, so equal strategies share compiled programs."""

    optimizer: str
    reg: str
    hyper: tuple = ()  # sorted (name, value) pairs of static keyword arguments
    mask: str = DEFAULT_MASK  # a spec, wdjax.masks.mask_from_spec

    def __call__(self, learning_rate, strength, **traced) -> optax.GradientTransformation:
        kw = {**dict(self.hyper), **traced}
        return make_optimizer(self.optimizer, learning_rate, self.reg, strength, mask=self.mask,
                              **kw)  # fmt: skip


def takes_mask(factory) -> bool:
    """Whether ``factory`` has a parameter named ``mask`` (so a sweep passes it its mask)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature (a builtin): it takes no mask we can see
        return False
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return "mask" in params and params["mask"].kind in kinds


@dataclasses.dataclass(frozen=True)
class WithMask:
    """An optimizer factory that takes ``mask``, given a sweep's mask: ``(learning_rate,
    strength, **traced) -> factory(learning_rate, strength, mask=mask_from_spec(mask),
    **traced)``. The factory receives the mask as a callable ``params -> bools``
    (:func:`wdjax.mask_from_spec`; ``optax.masked``, ``optax.add_decayed_weights`` and
    :func:`wdjax.make_optimizer` all take it). Hashable: equal factories share programs."""

    factory: Callable
    mask: Any = DEFAULT_MASK  # a spec string (or a callable params -> bools)

    def __call__(self, learning_rate, strength, **traced) -> optax.GradientTransformation:
        mask = mask_from_spec(self.mask) if isinstance(self.mask, str) else self.mask
        return self.factory(learning_rate, strength, mask=mask, **traced)
