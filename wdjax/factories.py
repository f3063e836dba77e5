"""Optimizer factories: ``(learning_rate, strength, **traced) -> optax.GradientTransformation``.

A sweep rebuilds each member's optimizer inside the traced step from its traced hyperparameters
through a factory (:class:`wdjax.engine.engine.Engine`). The factories here are hashable
dataclasses, so equal factories share compiled programs.

* :class:`Strategy`: a named strategy of :func:`wdjax.make_optimizer`.
* :class:`Sheared`: λ = r·λ_c(lr) on a line through the (lr, λ) plane, with a cosine (or constant)
  schedule.
* :class:`Decay`: Adam or heavy ball, coupled or decoupled decay, constant or cosine η(t), all
  chosen per member by traced flags (one program for every arm).
* :class:`Held`: Adam with a regularizer, then :func:`wdjax.transforms.hold_zeros` (fine-tuning
  pruned weights with their zeros held).

Parameter groups with optimizers of their own (e.g. the head and BatchNorm scales at a fixed
learning rate while the kernels are swept) need no factory here: any function returning
``optax.multi_transform`` works (docs/sweeps.md, "Parameter groups").
"""

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from wdjax import schedules
from wdjax.errors import ConfigError
from wdjax.masks import DEFAULT_MASK, mask_from_spec
from wdjax.optim import make_optimizer
from wdjax.transforms import either, hold_zeros

__all__ = ["Decay", "Held", "Sheared", "Strategy", "WithMask", "takes_mask"]


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


@dataclasses.dataclass(frozen=True)
class Sheared:
    """λ on a sheared grid: ``(lr, r) ->`` :func:`wdjax.make_optimizer` with λ = r·λ_c(lr).

    λ_c(lr) = ``lam_anchor``·(lr/``lr_anchor``)^``slope`` is the centre line and the member's
    ``strength`` is the ratio r to it; ``schedule`` is ``"cosine"`` (a cosine to 0 over
    ``epochs`` × ``steps_per_epoch`` steps) or ``"constant"`` (η(t) = 1); with ``wd_paper`` η(t)
    multiplies both step and decay, else the learning rate is lr·η(t). ``hyper``: sorted (name,
    value) pairs of the base optimizer's static keyword arguments (e.g. Adam's ``eps``).
    ``fixed_lr``: None trains every parameter at lr (the ``mask``-ed ones decayed); a number
    trains only the ``mask``-ed leaves at (lr, λ) and every other one (the head, biases,
    BatchNorm scales and offsets) on the base optimizer without decay at ``fixed_lr``·η(t)
    (``optax.multi_transform``). Hashable, so replicates reuse one compiled program.
    """

    optimizer: str
    reg: str
    lam_anchor: float
    lr_anchor: float
    slope: float
    steps_per_epoch: int
    epochs: int
    mask: str = "hidden"
    schedule: str = "cosine"  # or "constant"
    hyper: tuple = ()
    fixed_lr: float | None = None

    def __post_init__(self):
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"Sheared: schedule {self.schedule!r}; give 'cosine' or 'constant'")
        if self.fixed_lr is not None and not (isinstance(self.fixed_lr, (int, float))
                                              and self.fixed_lr > 0):  # fmt: skip
            raise ConfigError(f"Sheared: fixed_lr {self.fixed_lr!r}; give a positive number, or "
                              "None to train every parameter at the swept lr")  # fmt: skip

    def centre(self, lr):
        """λ_c(lr), the centre line (r = 1)."""
        return self.lam_anchor * (lr / self.lr_anchor) ** self.slope

    def __call__(self, learning_rate, strength, **traced) -> optax.GradientTransformation:
        lam, kw = strength * self.centre(learning_rate), {**dict(self.hyper), **traced}
        eta = schedules.make(self.schedule, self.steps_per_epoch, self.epochs)
        mask = self.mask if self.fixed_lr is None else "kernels"  # in its group: masked leaves
        if self.reg == "wd_paper":
            swept = make_optimizer(self.optimizer, learning_rate, "wd_paper", lam, mask=mask,
                                   schedule=eta, **kw)  # fmt: skip
        else:
            lr = schedules.learning_rate(learning_rate, eta)
            swept = make_optimizer(self.optimizer, lr, self.reg, lam, mask=mask, **kw)
        if self.fixed_lr is None:
            return swept
        fixed = make_optimizer(self.optimizer, schedules.learning_rate(self.fixed_lr, eta),
                               **dict(self.hyper))  # fmt: skip
        select = mask_from_spec(self.mask)

        def labels(params):
            return jax.tree.map(lambda m: "swept" if m else "fixed", select(params))

        return optax.multi_transform({"swept": swept, "fixed": fixed}, labels)


@dataclasses.dataclass(frozen=True)
class Decay:
    r"""Adam or heavy ball, coupled or decoupled decay, constant or cosine η(t): per member.

    Traced flags (``--set`` axes, ``Hyper.extra``) choose per member: ``adam`` = 1 Adam, else
    heavy ball with coefficient ``momentum`` (0 is plain SGD); ``coupled`` = 1 (``l2``,
    g ← g + λw before the preconditioner) or 0 (``wd``, u = −η(t)(p + λw) with p the
    preconditioned step) decay of the ``mask``-ed kernels; ``cosine`` = 0 a constant η(t) =
    lr, 1 a cosine from lr to 0 over ``total_steps``. The chains are
    :func:`wdjax.make_optimizer`'s ``l2`` and ``wd`` (tests/test_factories.py), through
    :func:`wdjax.transforms.either`, so every arm shares one compiled program.
    """

    mask: str
    total_steps: int

    def __call__(self, learning_rate, strength, adam, coupled, cosine, momentum):
        mask = mask_from_spec(self.mask)

        def eta(t):
            arc = schedules.cosine(t, self.total_steps)
            return learning_rate * jnp.where(cosine > 0, arc, 1.0)

        pre = either(adam, optax.scale_by_adam(), optax.trace(decay=momentum))
        return optax.chain(optax.add_decayed_weights(strength * coupled, mask), pre,
                           optax.add_decayed_weights(strength * (1 - coupled), mask),
                           optax.scale_by_learning_rate(eta))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Held:
    """``make_optimizer("adam", lr, reg, λ, mask=, groups=)``, then
    :func:`wdjax.transforms.hold_zeros` on the ``hold`` kernels.

    Trained from a random start (no exact zeros) the hold multiplies every update by 1: the
    strategy, bit for bit; at λ = 0 from pruned weights (``sweep(init_params=...)``) it is Adam
    fine-tuning with the zeros held. One compiled program serves a sparsity sweep and its
    fine-tuning (hashable).
    """

    reg: str
    mask: str = "hidden"
    groups: str = "incoming"
    hold: str = "hidden"  # the kernels whose zeros are held (wdjax.masks spec)

    def __call__(self, learning_rate, strength, **traced) -> optax.GradientTransformation:
        kw = {"groups": self.groups} if self.reg == "group_lasso_prox" else {}
        tx = make_optimizer("adam", learning_rate, self.reg, strength, mask=self.mask,
                            **kw, **traced)  # fmt: skip
        return optax.chain(tx, hold_zeros(self.hold))


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
