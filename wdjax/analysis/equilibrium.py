r"""Rotational equilibrium of scale-invariant weights (Kosson et al. 2024, "Rotational
Equilibrium: How Weight Decay Balances Learning Across Neural Networks"): the predicted RMS
angular update per step, and the estimators of the measured one.

A BatchNorm-preceded kernel is scale-invariant, so decay sets only its norm, hence its effective
learning rate, and at a constant η each unit's RMS angle per step settles at

- adam + wd (AdamW): √(2ηλ(1−β₁)/(1+β₁));
- momentum + l2: √(2ηλ/(1+μ));  momentum + wd: √(2ηλ(1−μ)/(1+μ));
- adam + l2: θ = (2·k^{3/2}·√C·η²λ/Γ)^{1/3}, k = (1−β₁)/(1+β₁), C the fan-in and Γ Adam's
  scale-free gradient scale (:func:`adam_gamma`; derived below).

Adam + L2, derived. Coupled decay G = g + λw enters Adam, whose step divides each coordinate by
d_i = √v̂_i + ε. Assume, as Kosson et al. do, noise-dominated gradients ⟂ w with ‖g‖ ∝ 1/‖w‖, and
gradient-dominated v̂ (λ|w_i| ≪ √v̂_i). Then (i) each step moves w by ‖u‖² = η²kC (C the fan-in;
k: momentum averages uncorrelated noise); (ii) each gradient's total displacement over its
momentum lifetime is η·g_i/d_i, uncorrelated across gradients, so the noise adds η²C per step to
‖w‖² (this is what gives AdamW √(2ηλk)); (iii) λw passes coherently through the momentum and
removes 2ηλ·Σ_i w_i²/d_i = 2ηλ‖w‖³/Γ per step, with Γ = ‖w‖³/Σ_i(w_i²/d_i) the w²-weighted
harmonic mean of the scale-free gradient scales ‖w‖·d_i (d ∝ 1/‖w‖, so Γ does not depend on ‖w‖).
Balance: ‖w‖³ = ηCΓ/(2λ), and θ² = η²kC/‖w‖² gives θ = (2·k^{3/2}·√C·η²λ/Γ)^{1/3}, which depends
on (η, λ) only through η²λ, the invariant of Adam + L2's exact scale map (η → cη, λ → λ/c²,
w → c·w: :mod:`wdjax.analysis.symmetry`). So θ ∝ λ^{1/3} at fixed Γ (4λ → ×1.59, not ×2), and the
angle moves whenever Γ does. tests/test_batchnorm_equilibrium.py checks the η²λ property and the
formula on a simulated scale-invariant unit (noise ⟂ w).

Angles arrive as arrays ``[steps, replicates, layers]``; the estimators are plain numpy.
"""

import jax.numpy as jnp
import numpy as np

__all__ = ["adam_gamma", "effective_gamma", "equilibrium", "predicted", "rms", "smoothed",
           "time_to_equilibrium"]  # fmt: skip


def predicted(optimizer: str, reg: str, eta: float, lam: float, momentum=0.9, b1=0.9,
              gamma=None, fan_in=None) -> float:  # fmt: skip
    """The equilibrium RMS angular update per step (module docstring); adam+l2 needs Γ and C."""
    k, arm = (1 - b1) / (1 + b1), (optimizer, reg)
    forms = {("adam", "wd"): 2 * eta * lam * k, ("momentum", "l2"): 2 * eta * lam / (1 + momentum),
             ("momentum", "wd"): 2 * eta * lam * (1 - momentum) / (1 + momentum)}  # fmt: skip
    if arm in forms:
        return float(np.sqrt(forms[arm]))
    if arm != ("adam", "l2") or gamma is None or fan_in is None:
        raise ValueError(f"no prediction for optimizer={optimizer!r}, reg={reg!r}" if arm !=
                         ("adam", "l2") else "adam+l2: the prediction needs the unit's gamma "
                         "and fan_in")  # fmt: skip
    return np.cbrt(2 * k**1.5 * np.sqrt(fan_in) * eta**2 * lam / np.asarray(gamma))[()]


def adam_gamma(kernel, denom):
    """Γ_j = ‖w_j‖³ / Σ_i (w_ij² / d_ij) per unit j, d = √v̂ + ε (scale-free: d ∝ 1/‖w_j‖)."""
    sq = jnp.square(kernel.reshape(-1, kernel.shape[-1]))
    return jnp.sum(sq, axis=0) ** 1.5 / jnp.sum(sq / denom.reshape(sq.shape), axis=0)


def effective_gamma(gamma_U):
    """The Γ whose prediction is the RMS of the units' predictions: (mean Γ_j^{-2/3})^{-3/2}."""
    return jnp.mean(gamma_U ** (-2.0 / 3.0), axis=-1) ** -1.5


def rms(x, axis) -> np.ndarray:
    """Root mean square along ``axis``."""
    return np.sqrt(np.mean(np.square(x), axis=axis))


def equilibrium(angle, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The RMS of ``angle`` [steps, R, L] over the last ``window`` steps: pooled and per layer."""
    return rms(rms(angle[-window:], 0), -1), rms(angle[-window:], 0)


def smoothed(v, w: int) -> np.ndarray:
    """Trailing RMS over ``w`` steps along axis 0: entry t covers steps t − w + 1 … t."""
    c = np.cumsum(np.square(np.asarray(v, float)), axis=0)
    c = np.concatenate([np.zeros((1, *c.shape[1:])), c])
    return np.sqrt((c[w:] - c[:-w]) / w)


def time_to_equilibrium(angle, final: float, smooth: int, band: float) -> float:
    """Steps (≥ ``smooth``) after which the trailing RMS stays within ``band`` of ``final``."""
    s = smoothed(angle, smooth)
    outside = np.flatnonzero(np.abs(s / final - 1) > band)
    last = outside[-1] + 1 if outside.size else 0
    return np.nan if last == s.size else float(smooth + last)
