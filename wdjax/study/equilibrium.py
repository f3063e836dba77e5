"""Measuring rotational equilibrium during a sweep: the hooks of
experiments/batchnorm_equilibrium.py (moved here from the study when its labels and generated
write-up grew past the study files' 250 lines).

* :func:`record`: a ``record=`` hook of ``ctx.sweeps``/``sweep``: per step and per hidden kernel
  (:data:`KINDS`) the RMS angle and norm of its units, ‖W'‖² − ‖W‖², ‖W' − W‖², Adam's
  effective Γ (:func:`wdjax.analysis.equilibrium.adam_gamma`) and the share of weights where
  decay is at least half of Adam's denominator;
* :class:`Observed`: the optimizer factory (a :class:`wdjax.Decay` with λ in its state) that can
  also set every unit of the given kernels to a target norm after each step (the mechanism test);
* :func:`arm_config`: one arm's sweep config, the optimizer chosen by :class:`Decay`'s flags;
* :func:`trace`: a trailing-RMS angle curve summarized over replicates at a few hundred steps
  (what a figure drawn from ``summary.json`` needs).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wdjax.analysis import stats
from wdjax.analysis.equilibrium import adam_gamma, effective_gamma, rms, smoothed
from wdjax.engine.metrics import unit_angular_update
from wdjax.factories import Decay

__all__ = ["KINDS", "Observed", "arm_config", "record", "trace"]

KINDS = ("angle", "unit_norm", "growth", "step_sq", "gamma", "decay_frac")  # records per layer


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: one program per instance
class Observed:
    """``decay`` (λ kept in its state); with ``targets`` {layer: [steps, units]}: after each step
    every unit of those kernels set to its target norm, direction and optimizer state kept."""

    decay: Decay
    targets: dict | None = dataclasses.field(default=None, repr=False)

    def __call__(self, learning_rate, strength, **flags) -> optax.GradientTransformation:
        inner = optax.inject_hyperparams(self.decay)(learning_rate, strength, **flags)
        rescale = optax.GradientTransformation(lambda p: jnp.int32(0), self.rescale)
        return inner if self.targets is None else optax.chain(inner, rescale)

    def rescale(self, u, t, p):  # the step's new kernel v, per unit v · target / ‖v‖
        v = {n: p[n]["kernel"] + u[n]["kernel"] for n in self.targets}
        scale = {n: (jnp.asarray(x)[t] / jnp.linalg.norm(v[n], axis=0))[None, :]
                 for n, x in self.targets.items()}  # fmt: skip
        return u | {n: dict(u[n], kernel=v[n] * scale[n] - p[n]["kernel"]) for n in v}, t + 1


def record(before, after, grads, batch_stats, opt_state, units=False, b2=0.999, eps=1e-8) -> dict:
    """Per hidden kernel (``KINDS``): RMS angle and norm of units, ‖W'‖² − ‖W‖², ‖W' − W‖², Adam's
    Γ_eff, the share of weights with λ|w| ≥ d/2 (decay makes half of Adam's d = √v̂ + ε);
    with ``units``, every unit's norm (the targets of the rescaled run)."""
    s = opt_state if hasattr(opt_state, "hyperparams") else opt_state[0]  # Observed's state
    adam = next(x for x in jax.tree.leaves(s, is_leaf=lambda x: hasattr(x, "nu"))
                if hasattr(x, "nu"))  # fmt: skip
    out, corr = {}, 1 - b2 ** adam.count.astype(jnp.float32)
    for n in (n for n, v in after.items() if n != "head" and "kernel" in v):
        w0, w1, d = before[n]["kernel"], after[n]["kernel"], jnp.sqrt(adam.nu[n]["kernel"] / corr)
        sq0, sq1, d = jnp.sum(jnp.square(w0), axis=0), jnp.sum(jnp.square(w1), axis=0), d + eps
        out |= dict(zip([f"{x}/{n}" for x in KINDS], [
            jnp.sqrt(jnp.mean(jnp.square(unit_angular_update(w0, w1)))), jnp.sqrt(jnp.mean(sq1)),
            jnp.sum(sq1 - sq0), jnp.sum(jnp.square(w1 - w0)), effective_gamma(adam_gamma(w1, d)),
            jnp.mean(s.hyperparams["strength"] * jnp.abs(w1) >= d / 2)], strict=True))  # fmt: skip
        out |= {f"units/{n}": jnp.linalg.norm(w1, axis=0)} if units else {}
    return out


def trace(angle, w: int, points: int = 200) -> dict:
    """The trailing RMS angle over ``w`` steps (pooled over layers) at ≤ ``points`` steps: mean
    over replicates with its 95 % Student-t interval, clipped at 0."""
    a = smoothed(rms(angle, -1), w)  # [steps − w + 1, R]
    s, j = stats.describe(a, axis=1), np.unique(np.linspace(0, len(a) - 1, points).astype(int))
    return dict(step=(j + w).tolist(), mean=s.mean[j].tolist(), lo=np.maximum(s.lo[j], 0).tolist(),
                hi=s.hi[j].tolist())  # fmt: skip


def arm_config(base, opt, reg, eta, lams, cosine, mu):
    """One arm's sweep: ``lams`` at η through :class:`Decay`'s traced flags."""
    flags = dict(adam=opt == "adam", coupled=reg == "l2", cosine=cosine, momentum=mu)
    return dataclasses.replace(base, strengths=tuple(lams), lrs=(eta,),
                               axes=tuple((n, (float(v),)) for n, v in flags.items()))  # fmt: skip
