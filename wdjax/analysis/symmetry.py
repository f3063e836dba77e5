r"""Exact scale symmetries of BatchNorm-preceded weights under each regularized optimizer.

With BatchNorm (ε = 0) after a kernel W, the loss is invariant to W's scale: L(s·W) = L(W), so
∇L(s·W) = ∇L(W)/s. For each (optimizer, strategy) of :func:`wdjax.make_optimizer` there is a map

.. math:: (\eta, \lambda, w_0) \mapsto (c\,\eta,\ c^{a}\lambda,\ c^{b} w_0)

under which the whole training trajectory maps onto itself: the scale-invariant weights are
:math:`s = c^b` times larger at every step and every prediction is identical (only those weights
trained and decayed; Adam with ``eps = eps_root = 0``). Derivations (G = g + λw for coupled L2;
Adam's direction is invariant to the gradient's scale; the heavy-ball buffer scales as the
gradient does):

* SGD + ``l2``, heavy ball + ``l2``, heavy ball + ``wd`` (u = −η(b + λw), torch's SGDW):
  s·w − s·η·g − s·ηλ·w must equal s·w − c·η·g/s − c·η·λ'·s·w, so c = s², λ' = λ/c:
  (a, b) = (−1, ½); the trajectory depends on (η, λ) through ηλ.
* heavy ball + ``wd_paper`` (u = −η·b − λ·w, Loshchilov & Hutter's SGDW): c = s², λ' = λ:
  (0, ½).
* Adam + ``l2``: the direction is invariant only if G' = G/s, i.e. λ'·s = λ/s, λ' = λ/s²; the step
  c·η·d must be s·η·d, so s = c and λ' = λ/c²: (−2, 1); (η, λ) enter through η²λ.
* Adam + ``wd`` (optax's AdamW, u = −η(d + λw)): s = c, λ' = λ/c: (−1, 1); ηλ invariant.
* Adam + ``wd_paper`` (L&H's AdamW, u = −η·d − λ·w): s = c, λ' = λ: (0, 1).

Prediction for a λ sweep: once the decay has equilibrated (total shrink ≳ 2, so the initial scale
is forgotten) the best λ at learning rate c·η is c^a times the best at η, so log λ*(η) has slope
``a`` along the iso-quality line (:func:`predicted_slope`). tests/test_scale_symmetry.py checks
every map on a trajectory in float64 (and that a wrong map fails).
"""

import math
from typing import NamedTuple

__all__ = ["SCALE_MAPS", "ScaleMap", "predicted_slope", "scale_map"]


class ScaleMap(NamedTuple):
    """λ' = c**lam_exponent · λ and w₀' = c**weight_exponent · w₀ for learning rate c·η."""

    lam_exponent: float
    weight_exponent: float


SCALE_MAPS = {
    ("sgd", "l2"): ScaleMap(-1.0, 0.5),
    ("momentum", "l2"): ScaleMap(-1.0, 0.5),
    ("momentum", "wd"): ScaleMap(-1.0, 0.5),
    ("momentum", "wd_paper"): ScaleMap(0.0, 0.5),
    ("adam", "l2"): ScaleMap(-2.0, 1.0),
    ("adam", "wd"): ScaleMap(-1.0, 1.0),
    ("adam", "wd_paper"): ScaleMap(0.0, 1.0),
}


def scale_map(optimizer: str, reg: str, c: float) -> tuple[float, float]:
    """(λ factor, weight scale s) of the exact map for learning rate × ``c``."""
    if (optimizer, reg) not in SCALE_MAPS:
        raise ValueError(
            f"no scale map for optimizer={optimizer!r}, reg={reg!r}: derived for "
            f"{sorted(SCALE_MAPS)}; add the derivation and its test first."
        )
    if not c > 0:
        raise ValueError(f"c must be a positive learning-rate factor, got {c!r}.")
    m = SCALE_MAPS[optimizer, reg]
    return c**m.lam_exponent, c**m.weight_exponent


def predicted_slope(optimizer: str, reg: str) -> float:
    """d log λ* / d log η that the exact scale map predicts (BatchNorm-preceded, equilibrated)."""
    lam_factor, _ = scale_map(optimizer, reg, 10.0)
    return round(math.log10(lam_factor), 12)
