"""Optimizer factories: ``(learning_rate, strength, **traced) -> optax.GradientTransformation``.

A sweep rebuilds each member's optimizer inside the traced step from its traced hyperparameters
through a factory (:class:`wdjax.engine.engine.Engine`). The factories here are hashable
dataclasses, so equal factories share compiled programs.
"""

import dataclasses

import optax

from wdjax.masks import DEFAULT_MASK
from wdjax.optim import make_optimizer

__all__ = ["Strategy"]


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
