r"""Proximal operators and the prox transforms: L1 (soft thresholding), elastic net, group lasso,
and Adam with a prox step in its own metric.

See :mod:`wdjax.transforms` for the conventions every transform shares (strengths as floats,
traced arrays or schedules; ``mask=``; the state) and the derivation of the prox step placed
last in a chain.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wdjax.masks import Mask
from wdjax.penalties import GROUPS, group_axes, group_norms, group_sizes
from wdjax.transforms import (
    PyTree,
    ScalarOrSchedule,
    _at,
    _regularizer,
    _require_params,
    check_hyperparameter,
)

__all__ = [
    "AdamProxState",
    "adam_prox",
    "prox_elastic_net",
    "prox_group_lasso",
    "prox_l1",
    "soft_threshold",
]


def _step(learning_rate: jax.Array, d: jax.Array | None) -> jax.Array:
    """Per-coordinate step lr / d (d floored at the smallest normal to avoid 0/0)."""
    if d is None:
        return learning_rate
    return learning_rate / jnp.maximum(d, jnp.finfo(jnp.result_type(d)).tiny)


def soft_threshold(x: PyTree, threshold: PyTree) -> PyTree:
    r"""Soft-thresholding :math:`S_t(x) = \operatorname{sign}(x)\max(|x| - t, 0)`, leafwise.

    It is the proximal operator of :math:`t\|\cdot\|_1`:
    :math:`S_t(x) = \arg\min_y \tfrac12\|y - x\|^2 + t\|y\|_1`.

    Args:
      x: a pytree of arrays.
      threshold: ``t >= 0``, a scalar (float or 0-d array) or a pytree with the structure of
        ``x`` (per-leaf or per-coordinate thresholds).

    Returns:
      A pytree with the structure of ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> soft_threshold(jnp.array([-3.0, 0.5, 2.0]), 1.0)
      Array([-2.,  0.,  1.], dtype=float32)
    """
    for t in jax.tree.leaves(threshold):
        if not isinstance(t, jax.core.Tracer) and not np.all(np.asarray(t) >= 0):
            raise ValueError(f"threshold must be >= 0 (and not NaN), got {threshold!r}.")

    def leaf(v, t):
        return jnp.sign(v) * jnp.maximum(jnp.abs(v) - t, 0)

    if jax.tree.structure(threshold) == jax.tree.structure(x):
        return jax.tree.map(leaf, x, threshold)
    return jax.tree.map(lambda v: leaf(v, threshold), x)


def _l1_leaf(u, w, t):
    v = w + u
    return jnp.where(jnp.abs(v) <= t, -w, u - jnp.clip(v, -t, t))


def prox_l1(
    l1: ScalarOrSchedule, learning_rate: ScalarOrSchedule, mask: Mask = None
) -> optax.GradientTransformationExtraArgs:
    r"""Proximal L1 step (ISTA / FOBOS), placed last in a chain after the learning rate.

    .. math::
       w_{t+1} = S_{\eta\,\lambda_1}(w_t + u_t), \qquad \eta = \mathrm{lr}_t / d,

    i.e. the update becomes :math:`S_{\eta\lambda_1}(w + u) - w`, so small weights become
    exact zeros. ``optax.chain(optax.sgd(lr), prox_l1(l1, lr))`` is ISTA, whose fixed points
    minimize ``loss + l1·Σ|w|``; after heavy-ball momentum μ use ``l1/(1−μ)``, after Adam use
    :func:`adam_prox` (per-coordinate ``d``). Strength conversions: the same λ as Keras
    ``l1(λ)``, strategy ``"l1"`` and scikit-learn ``Lasso(alpha=λ)`` when the loss is its
    ``(1/2n)‖y − Xw‖²``.
    With ``l1 == 0`` the update passes through unchanged (exactly).

    Args:
      l1: strength λ₁ >= 0 (float, traced 0-d array or schedule).
      learning_rate: the learning rate of the preceding step (float, traced or schedule).
      mask: which leaves to threshold (see :mod:`wdjax.penalties`); None = kernels only.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params`` and accepts
      ``metric=`` (a pytree like params of positive ``d``).
    """
    check_hyperparameter("l1", l1)
    check_hyperparameter("learning_rate", learning_rate)

    def leaf(u, w, d, count):
        return _l1_leaf(u, w, _step(_at(learning_rate, count), d) * _at(l1, count))

    return _regularizer(leaf, mask)


def prox_elastic_net(
    l1: ScalarOrSchedule,
    l2: ScalarOrSchedule,
    learning_rate: ScalarOrSchedule,
    mask: Mask = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Proximal elastic-net step, placed last in a chain after the learning rate.

    The prox of :math:`\lambda_1\|w\|_1 + \tfrac{\lambda_2}{2}\|w\|^2` (the ½ convention, as
    coupled ``"l2"``):

    .. math::
       w_{t+1} = \frac{S_{\eta\lambda_1}(w_t + u_t)}{1 + \eta\lambda_2},
       \qquad \eta = \mathrm{lr}_t / d.

    scikit-learn ``ElasticNet(alpha=α, l1_ratio=ρ)`` (loss ``(1/2n)‖y − Xw‖²``) is ``l1 = α·ρ``,
    ``l2 = α·(1−ρ)``; Keras ``l1_l2(l1=a, l2=b)`` is ``l1 = a``, ``l2 = 2b``.

    Args:
      l1: λ₁ >= 0 (float, traced 0-d array or schedule).
      l2: λ₂ >= 0 (float, traced 0-d array or schedule).
      learning_rate: the learning rate of the preceding step (float, traced or schedule).
      mask: which leaves to shrink (see :mod:`wdjax.penalties`); None = kernels only.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` (see :func:`prox_l1`).
    """
    check_hyperparameter("l1", l1)
    check_hyperparameter("l2", l2)
    check_hyperparameter("learning_rate", learning_rate)

    def leaf(u, w, d, count):
        step = _step(_at(learning_rate, count), d)
        t, c = step * _at(l1, count), step * _at(l2, count)
        v = w + u
        shrunk = (u - jnp.clip(v, -t, t) - c * w) / (1 + c)
        return jnp.where(jnp.abs(v) <= t, -w, shrunk)

    return _regularizer(leaf, mask)


def _group_reduce(fn, x: jax.Array, groups: str) -> jax.Array:
    """Reduce over each group (its :func:`group_axes`, dims kept); 1-d leaves: identity."""
    axes = group_axes(x, groups)
    return fn(x, axis=axes, keepdims=True) if axes else x


def _group_shrink_in_metric(v, d, c, groups: str = "incoming", iterations: int = 8):
    """Prox of c·‖w_g‖ in the metric diag(d): ``(zero, s)`` with prox = 0 or ``v − s·v``.

    The minimizer of ½(w−v)ᵀD(w−v) + c‖w‖ is w = d·v/(d+μ) where μ > 0 solves the secular
    equation F(μ) = c/‖w(μ)‖ − μ = 0 (w = 0 iff ‖D v‖ <= c). F is concave, so Newton started
    right of the root, at the bound μ₀ = c·max(d)/(‖Dv‖ − c), decreases monotonically to it
    (exact after one step when d is constant over the group; <= 6 steps to float64 precision
    for d spanning 10 decades in our checks).
    """
    d = jnp.maximum(d, jnp.finfo(d.dtype).tiny)
    norm_dv = jnp.sqrt(_group_reduce(jnp.sum, jnp.square(d * v), groups))
    zero = norm_dv <= c
    mu0 = c * _group_reduce(jnp.max, d, groups) / jnp.where(zero, 1, norm_dv - c)

    def newton(_, mu):
        w = v * (d / (d + mu))
        norm_w = jnp.where(zero, 1, jnp.sqrt(_group_reduce(jnp.sum, jnp.square(w), groups)))
        f = c / norm_w - mu
        df = c * _group_reduce(jnp.sum, jnp.square(w) / (d + mu), groups) / norm_w**3 - 1
        return jnp.where(zero, 0, mu - f / df)

    mu = jax.lax.fori_loop(0, iterations, newton, jnp.where(zero, 0, mu0))
    return zero, mu / (d + mu)


def prox_group_lasso(
    strength: ScalarOrSchedule,
    learning_rate: ScalarOrSchedule,
    mask: Mask = None,
    groups: str = "incoming",
) -> optax.GradientTransformationExtraArgs:
    r"""Proximal group-lasso step (block soft-thresholding of units), placed last.

    With :math:`v = w + u` and groups as in :mod:`wdjax.penalties` (``groups="incoming"``: one
    per output unit, a Dense kernel column, a Conv output filter; ``"outgoing"``: one per input
    unit, a Dense kernel row, a Conv input channel; each entry of a 1-d leaf is its own group):

    .. math::
       w_g \leftarrow \max\Big(0,\ 1 - \frac{\mathrm{lr}\,\lambda\sqrt{|g|}}
       {\max(\|v_g\|, \mathrm{tiny})}\Big)\, v_g,

    the prox of :math:`\lambda\sum_g\sqrt{|g|}\,\|w_g\|`
    (:func:`wdjax.penalties.group_lasso_penalty`), so whole units reach exact zero; the floor
    ``tiny`` avoids 0/0 when a group and the strength are both zero.

    With a per-coordinate ``metric=d`` (from :func:`adam_prox`) it computes the prox in the
    metric :math:`D=\operatorname{diag}(d)`,
    :math:`\arg\min_w \tfrac12\|w-v\|_D^2 + \mathrm{lr}\,\lambda\sqrt{|g|}\,\|w_g\|`:
    :math:`w_g = 0` iff :math:`\|D v_g\| \le \mathrm{lr}\,\lambda\sqrt{|g|}`, else
    :math:`w_g = d\,v_g/(d+\mu_g)` with :math:`\mu_g` from 8 Newton steps on the secular
    equation (Moré & Sorensen, 1983), so it is not an approximation: Adam's fixed points are
    stationary points of loss + group penalty (zero groups exactly where
    :math:`\|\nabla_g f\| \le \lambda\sqrt{|g|}`).

    Args:
      strength: λ >= 0 (float, traced 0-d array or schedule).
      learning_rate: the learning rate of the preceding step (float, traced or schedule).
      mask: which leaves to shrink (see :mod:`wdjax.penalties`); None = kernels only.
      groups: ``"incoming"`` (columns) or ``"outgoing"`` (rows; :mod:`wdjax.penalties`).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` (see :func:`prox_l1`).

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([[3.0, 4.0], [0.3, 0.4]])  # rows: 2 inputs; ‖row‖ = 5 and 0.5
      >>> tx = prox_group_lasso(1.0, 1.0, groups="outgoing")  # threshold 1·1·√2 per row
      >>> u, _ = tx.update(jnp.zeros((2, 2)), tx.init(w), w)
      >>> (w + u).round(4)  # row 0 scaled by 1 − √2/5, row 1 removed
      Array([[2.1515, 2.8686],
             [0.    , 0.    ]], dtype=float32)
    """
    check_hyperparameter("strength", strength)
    check_hyperparameter("learning_rate", learning_rate)
    if groups not in GROUPS:
        raise ValueError(f"groups must be one of {GROUPS}, got {groups!r}.")

    def leaf(u, w, d, count):
        c = _at(learning_rate, count) * _at(strength, count) * math.sqrt(group_sizes(w, groups))
        v = w + u
        if d is None:
            norm = group_norms(v, groups)
            factor = jnp.maximum(0, 1 - c / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny))
            return jnp.where(factor == 0, -w, u - (1 - factor) * v)
        zero, shrink = _group_shrink_in_metric(v, d, c, groups)
        return jnp.where(zero, -w, u - shrink * v)

    return _regularizer(leaf, mask)


class AdamProxState(NamedTuple):
    """State of :func:`adam_prox`."""

    adam: optax.ScaleByAdamState
    learning_rate: optax.OptState  # state of optax.scale_by_learning_rate
    prox: optax.OptState  # state of the wrapped prox transform


def adam_prox(
    learning_rate: ScalarOrSchedule,
    prox: optax.GradientTransformation,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam followed by a proximal step in Adam's own metric (ProxGen, Yun et al. 2021).

    ``chain(scale_by_adam, scale_by_learning_rate(lr), prox)``, except that ``prox`` receives
    ``metric = sqrt(v̂_t + eps_root) + eps`` (Adam's denominator at this step), so its threshold
    is per coordinate. For ``prox = prox_l1(λ, lr)``:

    .. math::
       w_{t+1} = S_{\mathrm{lr}\,\lambda / (\sqrt{\hat v_t}+\epsilon)}
       \Big(w_t - \mathrm{lr}\,\frac{\hat m_t}{\sqrt{\hat v_t}+\epsilon}\Big),

    the minimizer of :math:`\tfrac12\|w - v\|_D^2 + \mathrm{lr}\,\lambda\|w\|_1` with
    :math:`D = \operatorname{diag}(\sqrt{\hat v}+\epsilon)`; its fixed points are stationary
    points of loss + λ·Σ|w|. (A Euclidean ``prox_l1`` after Adam barely regularizes: its
    fixed points have ``ĝ = −λ·(√v̂+ε)·sign(w)``, a penalty rescaled by the gradient scale, and
    zeros are stable only where ``|ĝ| <= λ·(√v̂+ε)``, roughly λ >= 1.) With strength 0 this equals
    ``optax.adam`` exactly.

    Args:
      learning_rate: float, traced 0-d array or schedule (also give it to ``prox``).
      prox: one of :func:`prox_l1`, :func:`prox_elastic_net`, :func:`prox_group_lasso`
        (built with the same learning rate and its own ``mask``).
      b1, b2, eps, eps_root, nesterov: as :func:`optax.scale_by_adam`.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.
    """
    check_hyperparameter("learning_rate", learning_rate)
    adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, nesterov=nesterov)
    scale = optax.scale_by_learning_rate(learning_rate)
    prox = optax.with_extra_args_support(prox)

    def init_fn(params):
        return AdamProxState(adam.init(params), scale.init(params), prox.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _require_params(params)
        updates, adam_state = adam.update(updates, state.adam, params)
        correction = 1 - b2**adam_state.count  # Adam's bias correction, as optax
        metric = jax.tree.map(
            lambda v: jnp.sqrt(v / correction.astype(v.dtype) + eps_root) + eps, adam_state.nu
        )
        updates, scale_state = scale.update(updates, state.learning_rate, params)
        updates, prox_state = prox.update(updates, state.prox, params, metric=metric)
        return updates, AdamProxState(adam_state, scale_state, prox_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
