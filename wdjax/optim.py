r"""Named regularization strategies composed with a base optimizer: the one place chain order lives.

``make_optimizer(optimizer, learning_rate, reg, strength)`` returns an
:class:`optax.GradientTransformation`. It is meant to be called inside ``jit``/``vmap`` with
``strength`` and ``learning_rate`` as traced 0-d arrays (one per sweep member): nothing here
branches on their values, and concrete values are validated with
:func:`check_hyperparameter` before anything is built.

Base optimizers (``p`` = preconditioned gradient, ``lr`` = learning rate):

- ``"sgd"``: ``u = −lr·g``.
- ``"momentum"``: heavy ball, ``b ← μ·b + g``, ``u = −lr·b`` (``nesterov=True``:
  ``u = −lr·(g + μ·b)``), as torch ``SGD(momentum=μ, dampening=0)``; hyper ``momentum=0.9``.
- ``"adam"``: ``u = −lr·m̂/(√(v̂+eps_root)+eps)``; hyper ``b1``, ``b2``, ``eps``, ``eps_root``,
  ``nesterov`` as :func:`optax.scale_by_adam`; ``eps = eps_root = 0`` (numbers) takes 0/0 as 0
  (:func:`wdjax.transforms.scale_by_adam_no_eps`), where optax gives NaN.

Strategies (λ = ``strength``). With λ = 0 each reduces to the base optimizer: bit for bit
when run eagerly (``wd_paper`` with a non-constant ``schedule``: to float rounding); under
``jit`` with a traced λ to 1–2 ulp, because XLA fuses the multiply-adds of the two graphs
differently. So a λ grid containing 0 holds a valid baseline.

- ``none``: base (``optax.sgd`` / ``optax.sgd(momentum=)`` / ``optax.adam``).
- ``l1``: ``g ← g + λ·sign(w)`` (sign 0 = 0), then base. Keras ``kernel_regularizer=l1(λ)``
  (TF's ``abs`` has gradient 0 at 0), with no penalty term in the loss.
- ``l2`` (coupled): ``g ← g + λ·w``, then base: the gradient of (λ/2)·Σw². torch
  ``SGD/Adam(weight_decay=λ)``; Keras ``l2(c)`` is λ = 2c.
- ``wd`` (decoupled): ``u = −lr·(p + λ·w)``. ``optax.adamw(weight_decay=λ)``, torch
  ``AdamW(weight_decay=λ)``, Keras ``AdamW(weight_decay=λ)``; after ``sgd`` the same as ``l2``.
- ``wd_paper``: ``u = −η(t)·(α·p + λ·w)`` with α = ``learning_rate`` and η = ``schedule``
  (Loshchilov & Hutter, 2019): the decay per step is η(t)·λ, so optax/torch wd = λ/α.
- ``l1_prox``: base, then ``w ← S_τ(w + u)``: the lasso λ·Σ|w| (scikit-learn
  ``Lasso(alpha=λ)`` when the loss is its ``(1/2n)‖y − Xw‖²``).
- ``elastic_net_prox``: base, then ``w ← S_{τρ}(w + u)/(1 + τ(1−ρ))``: λρ·Σ|w| +
  (λ(1−ρ)/2)·Σw², scikit-learn ``ElasticNet(alpha=λ, l1_ratio=ρ)``.
- ``group_lasso_prox``: base, then block soft-thresholding with τ·√|g|: λ·Σ_g √|g|·‖w_g‖
  over units (:mod:`wdjax.penalties`): ``groups="incoming"`` (default; a kernel's columns,
  each unit's incoming weights) or ``"outgoing"`` (its rows: the weights leaving each input
  pixel or unit; Scardapane et al. 2017).
- ``cautious_wd``: ``u = −lr·(p + λ·1[p⊙w ≥ 0]⊙w)``: decay only where the base direction p
  (before the learning rate and the sign flip: Adam's m̂/(√v̂+ε), the momentum buffer, the
  gradient) and the weight agree in sign, or p = 0 (Chen et al., "Cautious Weight Decay",
  arXiv:2510.12402). :func:`wdjax.decay.cautious_decayed_weights`; no peer library has it.
- ``wd_corrected`` (AdamC): ``u = −γ_t·p − c_t·λ·w`` with ``c_t = γ_t²/γ_max`` on the
  ``normalized=`` kernels (a mask spec, default ``"hidden"``: every kernel but the output
  layer's; only ever among the masked leaves) and ``c_t = γ_t`` on the other masked leaves
  (Defazio, "Why Gradients Rapidly Increase Near the End of Training", arXiv:2506.02285).
  ``peak_lr=`` is γ_max, required when ``learning_rate`` is a schedule; with a constant number
  it defaults to that number (another value is an error) and the strategy is ``wd`` exactly.
  A ``jax.Array`` learning rate given with ``peak_lr`` is the current γ_t (what
  ``optax.inject_hyperparams`` passes for a schedule). In a sweep the engine passes each
  member's peak learning rate. :func:`wdjax.decay.corrected_decayed_weights`.

The prox threshold τ is ``lr·λ`` after ``sgd``, ``lr·λ/(1−μ)`` after ``momentum`` and the
per-coordinate ``lr·λ/(√v̂+ε)`` after ``adam`` (:func:`wdjax.prox.adam_prox`), so the
fixed points are stationary points of loss + penalty for every base optimizer (group lasso
after Adam solves the group prox in Adam's metric exactly by a few Newton steps: see
:func:`wdjax.prox.prox_group_lasso`).
"""

from typing import Any

import jax
import numpy as np
import optax

from wdjax.decay import cautious_decayed_weights, corrected_decayed_weights
from wdjax.errors import ConfigError, ConfigTypeError
from wdjax.masks import Mask, mask_from_spec, resolve_mask
from wdjax.penalties import check_groups
from wdjax.prox import adam_prox, prox_elastic_net, prox_group_lasso, prox_l1
from wdjax.transforms import (
    ScalarOrSchedule,
    add_l1_subgradient,
    check_hyperparameter,
    scale_by_adam_no_eps,
)

__all__ = ["OPTIMIZERS", "STRATEGIES", "check_hyperparameter", "make_optimizer"]

Hyper = float | jax.Array | None

OPTIMIZERS = ("sgd", "momentum", "adam")
STRATEGIES = (
    "none",
    "l1",
    "l2",
    "wd",
    "wd_paper",
    "l1_prox",
    "elastic_net_prox",
    "group_lasso_prox",
    "cautious_wd",
    "wd_corrected",
)
_OPTIMIZER_HYPER = {
    "sgd": {},
    "momentum": {"momentum": 0.9, "nesterov": False},
    "adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0, "nesterov": False},
}
_STRATEGY_HYPER = {
    "elastic_net_prox": {"l1_ratio": 0.5},
    "wd_paper": {"schedule": 1.0},
    "group_lasso_prox": {"groups": "incoming"},
    "wd_corrected": {"peak_lr": None, "normalized": "hidden"},
}
_PROX = ("l1_prox", "elastic_net_prox", "group_lasso_prox")
_DECOUPLED = ("wd", "cautious_wd", "wd_corrected")  # chain(precond, decay, scale_by_lr)


def _split_hyper(optimizer: str, reg: str, hyper: dict[str, Any]) -> tuple[dict, dict]:
    opt_hyper = dict(_OPTIMIZER_HYPER[optimizer])
    reg_hyper = dict(_STRATEGY_HYPER.get(reg, {}))
    for key, value in hyper.items():
        if key in opt_hyper:
            opt_hyper[key] = value
        elif key in reg_hyper:
            reg_hyper[key] = value
        else:
            allowed = sorted(opt_hyper) + sorted(reg_hyper)
            raise ConfigTypeError(
                f"make_optimizer: unexpected keyword {key!r} for optimizer={optimizer!r}, "
                f"reg={reg!r}; allowed: {allowed}.",
                key,
            )
    for key in ("momentum", "b1", "b2"):
        if key in opt_hyper:
            check_hyperparameter(key, opt_hyper[key], upper=1.0)
    for key in ("eps", "eps_root"):
        if key in opt_hyper:
            check_hyperparameter(key, opt_hyper[key])
    _check_reg_hyper(reg_hyper)
    return opt_hyper, reg_hyper


def _check_reg_hyper(reg_hyper: dict) -> None:
    if "l1_ratio" in reg_hyper:
        ratio = check_hyperparameter("l1_ratio", reg_hyper["l1_ratio"])
        if not isinstance(ratio, jax.core.Tracer) and not ratio <= 1:
            raise ConfigError(f"l1_ratio must be in [0, 1], got {ratio!r}.", "l1_ratio")
    if "schedule" in reg_hyper:
        check_hyperparameter("schedule", reg_hyper["schedule"])
    if "groups" in reg_hyper:
        check_groups(reg_hyper["groups"])
    if reg_hyper.get("peak_lr") is not None:
        check_hyperparameter("peak_lr", reg_hyper["peak_lr"])
    if isinstance(reg_hyper.get("normalized"), str):
        try:
            mask_from_spec(reg_hyper["normalized"])
        except ValueError as err:
            raise ValueError(f"normalized (a mask spec): {err}") from None


def _preconditioner(optimizer: str, hyper: dict) -> optax.GradientTransformation:
    if optimizer == "momentum":
        return optax.trace(decay=hyper["momentum"], nesterov=hyper["nesterov"])
    if optimizer == "adam":
        if all(_is_number(hyper[k]) and hyper[k] == 0 for k in ("eps", "eps_root")):
            return scale_by_adam_no_eps(hyper["b1"], hyper["b2"], hyper["nesterov"])  # 0/0 → 0
        return optax.scale_by_adam(**hyper)
    return optax.identity()


def _strategy_mask(mask: Mask):
    """``mask`` as a callable that also refuses an empty selection of any non-empty tree."""

    def mask_fn(tree):
        mask_tree = resolve_mask(mask, tree)
        if jax.tree.leaves(tree) and not any(jax.tree.leaves(mask_tree)):
            raise ConfigError(
                f"mask: {'the default (kernels)' if mask is None else repr(mask)} selects no "
                "leaf of these parameters (the default regularizes leaves named 'kernel', or "
                "every leaf of an unnamed tree); pass mask= a spec, callable or pytree that "
                "selects the weights, or use reg='none'.",
                "mask",
            )
        return mask_tree

    return mask_fn


def _times(strength: ScalarOrSchedule, factor) -> ScalarOrSchedule:
    if callable(strength):
        return lambda count: strength(count) * factor
    return strength * factor


def _prox(reg: str, strength, learning_rate, mask, reg_hyper):
    if reg == "l1_prox":
        return prox_l1(strength, learning_rate, mask)
    if reg == "elastic_net_prox":
        ratio = reg_hyper["l1_ratio"]
        return prox_elastic_net(
            _times(strength, ratio), _times(strength, 1 - ratio), learning_rate, mask
        )
    return prox_group_lasso(strength, learning_rate, mask, groups=reg_hyper["groups"])


def _wd_paper(precond, alpha, strength, mask_fn, schedule) -> optax.GradientTransformation:
    if callable(alpha):
        raise TypeError(
            "learning_rate: wd_paper takes a constant α; pass the multiplier η(t) as schedule=."
        )
    return optax.chain(
        precond,
        optax.scale(alpha),
        optax.add_decayed_weights(strength, mask_fn),
        optax.scale_by_learning_rate(schedule),
    )


def _decoupled(reg, precond, learning_rate, strength, mask_fn, reg_hyper):
    """``wd``, ``cautious_wd``, ``wd_corrected``: chain(precond, decay, scale_by_lr)."""
    if reg == "wd_corrected":
        return _wd_corrected(precond, learning_rate, strength, mask_fn, reg_hyper)
    if reg == "cautious_wd":
        decay = cautious_decayed_weights(strength, mask_fn)
    else:
        decay = optax.add_decayed_weights(strength, mask_fn)
    return optax.chain(precond, decay, optax.scale_by_learning_rate(learning_rate))


def _is_number(x) -> bool:
    """A Python or NumPy number (not a jax.Array, which may be a traced or injected value)."""
    return isinstance(x, int | float | np.number) or (isinstance(x, np.ndarray) and x.ndim == 0)


def _wd_corrected(precond, learning_rate, strength, mask_fn, reg_hyper):
    peak, normalized = reg_hyper["peak_lr"], reg_hyper["normalized"]
    lr_scale = optax.scale_by_learning_rate(learning_rate)
    if peak is None and callable(learning_rate):
        raise ValueError(
            "peak_lr: wd_corrected with a schedule as learning_rate needs its peak γ_max "
            "(the decay on normalized layers is γ_t²/γ_max), e.g. make_optimizer('adam', "
            "optax.cosine_decay_schedule(3e-2, T), 'wd_corrected', λ, peak_lr=3e-2)."
        )
    if peak is not None and _is_number(learning_rate) and _is_number(peak):
        if float(peak) != float(learning_rate):
            raise ValueError(
                f"peak_lr: with a constant learning_rate ({learning_rate!r}) the peak is that "
                f"rate, got peak_lr={peak!r}; leave peak_lr out or pass a schedule."
            )
        peak = None
    if peak is None:  # a constant rate: c_t = γ²/γ = γ, exactly wd
        return optax.chain(precond, optax.add_decayed_weights(strength, mask_fn), lr_scale)
    decay = corrected_decayed_weights(strength, learning_rate, peak, mask_fn, normalized)
    return optax.chain(precond, decay, lr_scale)


def make_optimizer(
    optimizer: str,
    learning_rate: ScalarOrSchedule,
    reg: str = "none",
    strength: ScalarOrSchedule = 0.0,
    *,
    mask: Mask = None,
    momentum: Hyper = None,
    nesterov: bool | None = None,
    b1: Hyper = None,
    b2: Hyper = None,
    eps: Hyper = None,
    eps_root: Hyper = None,
    l1_ratio: Hyper = None,
    schedule: ScalarOrSchedule | None = None,
    groups: str | None = None,
    peak_lr: Hyper = None,
    normalized: Mask = None,
) -> optax.GradientTransformation:
    """Compose a named regularization strategy with a base optimizer (table in module doc).

    Args:
      optimizer: one of :data:`OPTIMIZERS`.
      learning_rate: float, traced 0-d array or optax schedule. For ``wd_paper`` it is the
        constant α (float or traced) and the schedule multiplier goes in ``schedule=``.
      reg: one of :data:`STRATEGIES`.
      strength: λ >= 0 (float, traced 0-d array or schedule). Must be 0 for ``reg="none"``.
      mask: which leaves to regularize, by the rule of :mod:`wdjax.penalties` that the
        transforms and penalties share: None means kernels only (never biases or norm scales);
        or a spec string (``"kernels"``, ``"hidden"``, a regular expression over the parameter
        path), a callable ``params -> bools`` or a pytree of bools. One difference: an empty
        selection is refused here even for parameters without a weight matrix (the transforms
        and penalties refuse it only when the parameters hold one): a strategy that
        regularizes nothing is ``reg="none"``.
      momentum, nesterov: heavy ball (``optimizer="momentum"``; default 0.9, False).
      b1, b2, eps, eps_root, nesterov: ``optimizer="adam"``, as :func:`optax.scale_by_adam`
        (defaults 0.9, 0.999, 1e-8, 0.0, False).
      l1_ratio: ``reg="elastic_net_prox"``: l1 = λ·ρ, l2 = λ·(1−ρ), as scikit-learn (default 0.5).
      schedule: ``reg="wd_paper"``: the multiplier η(t), float or callable (default 1.0).
      groups: ``reg="group_lasso_prox"``: ``"incoming"`` (default) or ``"outgoing"`` units
        (:mod:`wdjax.penalties`); a string, so static under ``inject_hyperparams``.
      peak_lr: ``reg="wd_corrected"``: γ_max > 0; required when ``learning_rate`` is a schedule
        (default: a constant ``learning_rate`` itself).
      normalized: ``reg="wd_corrected"``: which masked leaves get AdamC's γ_t²/γ_max decay, a
        mask spec, callable or pytree of bools (default ``"hidden"``; a callable goes in
        ``static_args`` under ``inject_hyperparams``, as ``mask``).

    A hyperparameter left at None takes its default; one that does not apply to ``optimizer``
    and ``reg`` is an error. Every numeric argument may be injected:
    ``optax.inject_hyperparams(make_optimizer, static_args=("optimizer", "reg"))(...)`` (add
    ``"mask"`` to ``static_args`` for a callable mask, which it would take for a schedule) keeps
    ``learning_rate``, ``strength`` and the given hyperparameters in ``state.hyperparams``.

    Returns:
      An :class:`optax.GradientTransformation`; regularizing strategies need ``params`` in
      ``update``.

    Raises:
      ValueError: unknown ``optimizer``/``reg``, a negative/NaN concrete hyperparameter, a
        nonzero concrete ``strength`` with ``reg="none"``, a mask not matching the params or
        selecting none of them.
      TypeError: a hyperparameter that does not apply to ``optimizer``/``reg``.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> tx = make_optimizer("adam", 1e-3, "wd", 1e-2)
      >>> params = {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
      >>> state = tx.init(params)
      >>> zeros = jax.tree.map(jnp.zeros_like, params)
      >>> updates, state = tx.update(zeros, state, params)  # decoupled: -lr*wd*w on kernels
      >>> u = updates["Dense_0"]
      >>> round(float(u["kernel"][0, 0]), 8), float(abs(u["bias"][0]))
      (-1e-05, 0.0)
    """
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.", "optimizer")
    if reg not in STRATEGIES:
        raise ConfigError(f"reg must be one of {STRATEGIES}, got {reg!r}.", "reg")
    check_hyperparameter("learning_rate", learning_rate)
    check_hyperparameter("strength", strength)
    given = dict(momentum=momentum, nesterov=nesterov, b1=b1, b2=b2, eps=eps)
    given.update(eps_root=eps_root, l1_ratio=l1_ratio, schedule=schedule, groups=groups)
    given.update(peak_lr=peak_lr, normalized=normalized)
    hyper = {key: value for key, value in given.items() if value is not None}
    opt_hyper, reg_hyper = _split_hyper(optimizer, reg, hyper)
    precond = _preconditioner(optimizer, opt_hyper)
    if reg == "none":
        if not (callable(strength) or isinstance(strength, jax.core.Tracer)) and strength != 0:
            raise ConfigError(
                f"strength must be 0 with reg='none' (got {strength!r}); choose a strategy "
                f"from {STRATEGIES[1:]}.",
                "strength",
            )
        return optax.chain(precond, optax.scale_by_learning_rate(learning_rate))
    mask_fn = _strategy_mask(mask)
    if reg == "wd_paper":
        return _wd_paper(precond, learning_rate, strength, mask_fn, reg_hyper["schedule"])
    lr_scale = optax.scale_by_learning_rate(learning_rate)
    if reg == "l1":
        return optax.chain(add_l1_subgradient(strength, mask_fn), precond, lr_scale)
    if reg == "l2":
        return optax.chain(optax.add_decayed_weights(strength, mask_fn), precond, lr_scale)
    if reg in _DECOUPLED:
        return _decoupled(reg, precond, learning_rate, strength, mask_fn, reg_hyper)
    if optimizer == "adam":
        prox = _prox(reg, strength, learning_rate, mask_fn, reg_hyper)
        return adam_prox(learning_rate, prox, **opt_hyper)
    if optimizer == "momentum":
        strength = _times(strength, 1 / (1 - opt_hyper["momentum"]))
    prox = _prox(reg, strength, learning_rate, mask_fn, reg_hyper)
    return optax.chain(precond, lr_scale, prox)
