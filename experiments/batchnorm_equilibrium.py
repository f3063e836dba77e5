"""Rotational equilibrium: does weight decay fix the per-step rotation of BatchNorm-preceded units?

Claims tested. With BatchNorm after a Dense layer (no bias) the kernel is scale-invariant, so
weight decay cannot limit what it computes; it only sets its norm and hence its effective
learning rate (van Laarhoven 2017, "L2 regularization versus batch and weight normalization";
Zhang et al. 2019, "Three mechanisms of weight decay regularization"). (1) Kosson et al. 2024
("Rotational Equilibrium") predict that at a constant learning rate η each such unit's per-step
angular update settles, as an RMS over units, at √(2ηλ(1−β₁)/(1+β₁)) for AdamW (``adam+wd``),
√(2ηλ/(1+μ)) for heavy ball + L2 (``momentum+l2``, torch's SGD weight_decay) and
√(2ηλ(1−μ)/(1+μ)) for heavy ball + decoupled decay (``momentum+wd``). (2) Adam + L2: the study
derives its equilibrium (below). (3) Without decay ‖w‖² grows by exactly η²‖g‖² per SGD step (g ⟂
w), so the effective learning rate η/‖w‖² decays. (4) Mechanism: decay acts only through the
effective learning rate, so a run without decay whose units are rescaled after every step to the
decayed run's norms ends as the decayed run does. Verdicts: (1) reproduced for the two heavy-ball
arms (within 1 % at ηλ = 1e-3, 3.5 % at 4e-3), and within 6.4 % for AdamW (measured below the
prediction); (2) partly reproduced: with the Γ measured at each step the formula predicts how the
angle scales with λ (×1.42 for 4λ, not ×2) and gives 86 % of the angle, but Adam + L2 reaches no
equilibrium here: its angle still grows by 31–41 % between the last two windows, following the
first layer's falling Γ; (3) reproduced (exact to float rounding); (4) reproduced: the paired
differences lie inside the margin fixed before the run.

Command: ``python experiments/batchnorm_equilibrium.py`` (Fashion-MNIST; ``--smoke``: digits,
seconds). Runtime: 355 s (5.9 min) at full size on this 2-core machine, shared with other jobs
(an earlier run under heavier load: 485 s); one compiled program holds every arm (72 members);
≈ 10 s in smoke mode, mostly compiling.

Setup: MLP 784 → 64 → 64 → 10 with BatchNorm (ε = 0, so the two hidden kernels are exactly
scale-invariant in training mode) before each ReLU, batch 128, all 60,000 Fashion-MNIST training
images (nothing is selected here, so no validation split), 14 epochs = 6,552 steps ≥ 5/(ηλ) at the
base ηλ = 1e-3; the decay acts on the two BatchNorm-preceded kernels only (``mask="hidden"``).
Arms at a constant learning rate, each at λ and 4λ: adam+wd (η = 1e-3, λ = 1), momentum+l2 and
momentum+wd (μ = 0.9, η = 1e-2, λ = 0.1), adam+l2 (η = 1e-3, λ = 0.2); plain SGD without decay
(η = 0.1); the mechanism test (below). Per step, for each hidden kernel: the RMS over units of
``wdjax.unit_angular_update``, ‖W‖, the RMS unit norm ‖w‖, ‖W'‖² − ‖W‖², ‖W' − W‖², and with Adam
the scale-free gradient scale Γ and the share of weights whose decay makes ≥ half of Adam's
denominator. The equilibrium angle is the RMS over the last 1,500 steps pooled over both layers;
drift = that ÷ the same over the 1,500 steps before (1 at a steady state). R = 6 replicates
(``replicates.replicate_configs``: new initial weights and batch order); inside one every
arm shares them. Means, ratios (measured / predicted, θ(4λ)/θ(λ)) and paired differences carry
95 % Student-t intervals over replicates (n − 1 = 5 degrees of freedom). All members run in one
program (``Decay``: Adam or heavy ball, coupled or decoupled decay, constant or cosine η(t) are
traced per member; tests/test_batchnorm_equilibrium.py checks it against ``make_optimizer``).

Adam + L2 (derived here). Coupled decay G = g + λw enters Adam, whose step divides each
coordinate by d_i = √v̂_i + ε. Assume, as Kosson et al. do, noise-dominated gradients ⟂ w with
‖g‖ ∝ 1/‖w‖, and gradient-dominated v̂ (λ|w_i| ≪ √v̂_i). Then (i) each step moves w by ‖u‖² = η²kC
(C = fan-in, k = (1−β₁)/(1+β₁): momentum averages uncorrelated noise); (ii) each gradient's total
displacement over its momentum lifetime is η·g_i/d_i, uncorrelated across gradients, so the noise
adds η²C per step to ‖w‖² (this is what gives AdamW √(2ηλk)); (iii) λw passes coherently through
the momentum and removes 2ηλ·Σ_i w_i²/d_i = 2ηλ‖w‖³/Γ per step, with Γ = ‖w‖³/Σ_i(w_i²/d_i) the
w²-weighted harmonic mean of the scale-free gradient scales ‖w‖·d_i (d ∝ 1/‖w‖, so Γ does not
depend on ‖w‖). Balance: ‖w‖³ = ηCΓ/(2λ), and θ² = η²kC/‖w‖² gives

    θ = (2·k^{3/2}·√C·η²λ / Γ)^{1/3}

which depends on (η, λ) only through η²λ, the invariant of Adam + L2's exact scale map (η → cη,
λ → λ/c², w → c·w: ``wdjax.symmetry``); Γ is measured per step from Adam's v̂. Consequences:
θ ∝ λ^{1/3} at fixed Γ (4λ → ×1.59, not ×2), and the angle moves whenever Γ does.
tests/test_batchnorm_equilibrium.py checks the η²λ property and the formula on a simulated
scale-invariant unit (noise ⟂ w): within 0.4 %, as is Kosson et al.'s AdamW form.

Fixed before the run. Time to equilibrium: the step count after which the trailing RMS of the
pooled angle over 200 steps stays within ±10 % of the equilibrium angle to the end (NaN if it
ends outside), reported × ηλ (the decay clock of adam+wd and momentum+wd; momentum+l2 decays at
ηλ/(1−μ) per step, adam+l2 at about ηλ/d). Mechanism test: momentum+l2 (μ = 0.9, peak η = 1e-2,
λ = 0.1) with a cosine schedule to 0 over the run, so the radius the decay holds moves with η(t);
three members per replicate share initial weights and batch order (common random numbers):
"decayed"; "rescaled" (λ = 0, and after every step each BatchNorm-preceded unit is rescaled to
that unit's norm in the decayed member after the same step); "plain" (λ = 0, not rescaled: does
the decay matter at all?). Optimizer state is left as it is on rescaling: the rescaled member
always sits at the decayed member's norms, so the gradients its momentum buffer holds were taken
at the same scales as the decayed member's (rescaling the buffer would be a second intervention).
Margin: the paired difference rescaled − decayed must lie within ±0.5 points of test accuracy and
±0.01 of test loss (its 95 % interval inside the margin: "within the margin").

summary.json: ``equilibrium`` {"<opt>+<reg>[@4λ]": {eta, strength, predicted, per_layer,
unit_norm, effective_lr (η/‖w‖² heavy ball, η/‖w‖ Adam), and mean/std/lo/hi of measured, ratio,
t_eq_steps, t_eq (× ηλ), drift, test_loss, test_acc; @4λ also scaling and predicted_scaling
(θ(4λ)/θ(λ) per replicate); adam+l2 also per_layer_predicted, decay_frac_first/last}}, ``zero``
{optimizer, eta, growth_ratio (Σ(‖W'‖² − ‖W‖²)/Σ‖W' − W‖²), first_angle, last_angle (RMS over
the first/last window), eff_lr_ratio {layer: final/initial η/‖w‖²}, unit_norm, test_loss,
test_acc}, ``mechanism`` {optimizer, reg, eta, strength, schedule, margin_acc, margin_loss,
decayed/rescaled/plain {test_loss, test_acc; paired _diff against decayed}, verdict_acc,
verdict_loss, norm_mismatch, angle_ratio, plain_angle_ratio}, ``steps``, ``window``, ``smooth``,
``band``, ``batch_size``, ``replicates``, ``dataset``, ``figure``, ``command``, ``seconds``.

Measured (6 replicates; mean [95 % interval]). Kosson et al.'s forms: measured / predicted =
0.936 [0.935, 0.938] (adam+wd), 1.009 [1.008, 1.010] (momentum+l2) and 1.005 [1.003, 1.007]
(momentum+wd) at ηλ = 1e-3; 0.969 [0.967, 0.970], 1.035 [1.034, 1.036] and 1.004 [1.002, 1.005]
at 4λ. θ(4λ)/θ(λ) = 2.069 [2.066, 2.072], 2.052 [2.048, 2.056], 1.998 [1.994, 2.002] against 2:
the √(ηλ) law holds within 3.5 %. Time to equilibrium: 1.92 [1.83, 2.01]/(ηλ) (adam+wd) and 1.87
[1.79, 1.96]/(ηλ) (momentum+wd), i.e. ≈ 1,900 steps, and 2.9 and 2.7/(ηλ) at 4λ; momentum+l2 takes
358 [356, 360] steps (0.36/(ηλ): its decay runs through the buffer, ηλ/(1−μ) per step) and 200 at
4λ (the floor of the 200-step smoothing). At the same ηλ momentum+l2 rotates 3.2× faster than
momentum+wd (0.0327 vs 0.0103 rad; the forms predict √(1/(1−μ)) = 3.16) and ends with a worse
test loss (0.618 [0.546, 0.690] vs 0.399 [0.384, 0.414]): the same nominal ηλ is not the same
regularization.

Adam + L2: measured / predicted = 0.866 [0.856, 0.877] at λ = 0.2 and 0.863 [0.857, 0.870] at
0.8 over the last window (0.0923 and 0.1306 rad), and θ(4λ)/θ(λ) = 1.415 [1.375, 1.455] against
the formula's 1.420 [1.374, 1.466] (λ^{1/3} with the measured Γ; the other three arms' √ law would
give 2). But there is no steady state: drift = 1.415 [1.368, 1.461] and 1.307 [1.289, 1.325], no
time to equilibrium (NaN), and dense_0 rotates 0.129 rad per step in the last window against 0.020
for dense_1 (predicted 0.149 and 0.023). The formula follows the rise because it uses the measured
Γ, which keeps falling in the first layer (37-fold from step 500 to 6,400 in a 3-replicate
check of the same setting); why Γ falls was not measured. It is not a growing share of
decay-dominated weights (λ|w| ≥ d/2): that share stays at 1.5–4 % in dense_0 (first vs last
window: 1.7 % → 1.5 % at λ = 0.2, 2.7 % → 4.1 % at 0.8). In a first full run at λ = 0.05 two of
six replicates turned NaN near the end (not diagnosed further; with BatchNorm ε = 0 a unit whose
pre-activations are constant over a batch divides by 0), so λ = 0.05 was replaced by 0.2 (stable
in every run) and the study rerun; the other arms' numbers were identical in both runs.

Without decay (SGD, η = 0.1): Σ(‖W'‖² − ‖W‖²)/Σ‖W' − W‖² = 1.0000000 [0.9999999, 1.0000001], so
‖W‖² grows by exactly η²‖g‖² per step; η/‖w‖² ends at 0.459 [0.456, 0.462] (dense_0) and
0.850 [0.843, 0.856] (dense_1) of its value after the first step, and the RMS angle falls from
0.0095 (first 1,500 steps) to 0.0077 (last 1,500).

Mechanism test: the rescaled member's unit norms match the decayed member's to 1.7e-7 and it
rotates 0.991 [0.988, 0.995] as much; rescaled − decayed test accuracy −0.00002 [−0.0009,
+0.0009] and test loss −0.0001 [−0.0033, +0.0032], both within the margin, while the plain member
(rotating 0.059× as much: without decay the norms grow) has a higher test loss, +0.0134 [+0.0103,
+0.0165], and no detectable difference in accuracy (−0.0021 [−0.0047, +0.0006]). So with
BatchNorm, what decay does to these kernels, it does through their norm, i.e. their effective
learning rate.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import wdjax
from wdjax import Decay, study
from wdjax.analysis import stats
from wdjax.study import replicates

NAME = "batchnorm_equilibrium"
EXACT = ("adam+wd", "momentum+l2", "momentum+wd")  # Kosson et al.'s closed forms


def get_config(smoke=False) -> dict:
    """SweepConfig fields plus knobs: ``arms`` (optimizer, reg, η, λ) at a constant learning rate,
    each also at λ·``mult``; ``zero`` (optimizer, η) without decay; ``mechanism`` (optimizer,
    reg, peak η, λ) under a cosine schedule with its ``margin`` (accuracy, loss) fixed before the
    run; ``window`` steps average the equilibrium, ``smooth`` steps the time-to-equilibrium trace,
    which must stay within ``band`` of its final value; ``b1`` is Adam's β₁ (optax's default)."""
    arms = [("adam", "wd", 1e-3, 1.0), ("momentum", "l2", 1e-2, 0.1),
            ("momentum", "wd", 1e-2, 0.1), ("adam", "l2", 1e-3, 0.2)]  # fmt: skip
    return dict(
        dataset="digits" if smoke else "fashion_mnist", val_size=0, batchnorm=True,
        mask="hidden", epochs=2 if smoke else 14,
        replicates=2 if smoke else 6, arms=arms, mult=4.0, zero=("sgd", 0.1),
        mechanism=("momentum", "l2", 1e-2, 0.1), margin=(0.005, 0.01),
        window=8 if smoke else 1500, smooth=4 if smoke else 200, band=0.1, b1=0.9,
    )  # fmt: skip


# --- predictions ----------------------------------------------------------------------------


def predicted(optimizer: str, reg: str, eta: float, lam: float, momentum=0.9, b1=0.9,
              gamma=None, fan_in=None) -> float:  # fmt: skip
    """The equilibrium RMS angular update per step of one BatchNorm-preceded unit.

    Kosson et al.'s closed forms for adam+wd, momentum+l2 and momentum+wd; for adam+l2 the
    study's (module docstring) ``(2·k^{3/2}·√C·η²λ/Γ)^{1/3}`` with k = (1−β₁)/(1+β₁), C the
    unit's fan-in and Γ its scale-free gradient scale (:func:`adam_gamma`)."""
    if (optimizer, reg) == ("adam", "wd"):
        return math.sqrt(2 * eta * lam * (1 - b1) / (1 + b1))
    if (optimizer, reg) == ("momentum", "l2"):
        return math.sqrt(2 * eta * lam / (1 + momentum))
    if (optimizer, reg) == ("momentum", "wd"):
        return math.sqrt(2 * eta * lam * (1 - momentum) / (1 + momentum))
    if (optimizer, reg) == ("adam", "l2"):
        if gamma is None or fan_in is None:
            raise ValueError("adam+l2: the prediction needs the unit's gamma and fan_in")
        k = (1 - b1) / (1 + b1)
        return np.cbrt(2 * k**1.5 * math.sqrt(fan_in) * eta**2 * lam / np.asarray(gamma))[()]
    raise ValueError(f"no prediction for optimizer={optimizer!r}, reg={reg!r}")


def adam_gamma(kernel, denom):
    """Γ_j = ‖w_j‖³ / Σ_i (w_ij² / d_ij) per output unit j, with d = √v̂ + ε Adam's denominator:
    the w²-weighted harmonic mean of the scale-free gradient scale s_i = ‖w_j‖·d_ij (d scales as
    1/‖w_j‖, so Γ does not depend on the unit's norm)."""
    w = kernel.reshape(-1, kernel.shape[-1])
    d = denom.reshape(w.shape)
    sq = jnp.sum(jnp.square(w), axis=0)
    return sq**1.5 / jnp.sum(jnp.square(w) / d, axis=0)


def effective_gamma(gamma_U):
    """The one Γ whose adam+l2 prediction is the RMS over units of the units' predictions:
    θ_j ∝ Γ_j^{-1/3}, so RMS_j θ_j ∝ (mean_j Γ_j^{-2/3})^{1/2} = Γ_eff^{-1/3}."""
    return jnp.mean(gamma_U ** (-2.0 / 3.0), axis=-1) ** -1.5


# --- the traced run -------------------------------------------------------------------------


def bn_kernels(params) -> list[str]:
    """The BatchNorm-preceded layers: every layer with a kernel except the output head."""
    return [k for k in params if k != "head" and "kernel" in params[k]]


def rescale(params, follow, layers):
    """Each member's kernels in ``layers`` with every unit rescaled to the norm of the same unit
    of member ``follow[k]`` (members with ``follow[k] == k`` are left bit for bit)."""
    out = dict(params)
    own = follow == jnp.arange(follow.shape[0])
    for name in layers:
        w = params[name]["kernel"]  # [K, in, out]
        norm_KxU = jnp.sqrt(jnp.sum(jnp.square(w), axis=1))
        factor = jnp.where(own[:, None], 1.0, norm_KxU[follow] / norm_KxU)
        out[name] = dict(params[name], kernel=w * factor[:, None, :])
    return out


def adam_denominator(opt_state, b2: float, eps: float):
    """√v̂ + ε of the update just made (None when the optimizer keeps no Adam state)."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, "nu"))
             if hasattr(x, "nu")]  # fmt: skip
    if not found:
        return None
    (adam,) = found
    corr = 1 - b2 ** adam.count.astype(jnp.float32)  # [K]: updates made, this one included
    return jax.tree.map(lambda v: jnp.sqrt(v / corr.reshape(-1, *[1] * (v.ndim - 1))) + eps,
                        adam.nu)  # fmt: skip


def record(old, new, layers, denom, lam=None) -> dict:
    """Per BatchNorm-preceded kernel, [K] each: RMS angle over units, ‖W‖, RMS unit norm,
    ‖W'‖² − ‖W‖², ‖W' − W‖² and, with Adam, Γ_eff and the fraction of weights whose coupled
    decay makes at least half of Adam's denominator (λ|w| ≥ d/2: the gradient no longer
    dominates v̂, the regime the adam+l2 formula excludes; ``lam`` [K])."""
    rec = {}
    for name in layers:
        w0, w1 = old.params[name]["kernel"], new.params[name]["kernel"]  # [K, in, out]
        angle_KxU = jax.vmap(wdjax.unit_angular_update)(w0, w1)
        rec[f"angle/{name}"] = jnp.sqrt(jnp.mean(jnp.square(angle_KxU), axis=-1))
        sq0, sq1 = jnp.sum(jnp.square(w0), axis=1), jnp.sum(jnp.square(w1), axis=1)  # [K, out]
        rec[f"norm/{name}"] = jnp.sqrt(jnp.sum(sq1, axis=-1))
        rec[f"unit_norm/{name}"] = jnp.sqrt(jnp.mean(sq1, axis=-1))
        rec[f"growth/{name}"] = jnp.sum(sq1 - sq0, axis=-1)
        rec[f"step_sq/{name}"] = jnp.sum(jnp.square(w1 - w0), axis=(1, 2))
        if denom is not None:
            d = denom[name]["kernel"]
            rec[f"gamma/{name}"] = effective_gamma(jax.vmap(adam_gamma)(w1, d))
            if lam is not None:
                decayed = lam[:, None, None] * jnp.abs(w1) >= d / 2
                rec[f"decay_frac/{name}"] = jnp.mean(decayed, axis=(1, 2))
    return rec


def trace_steps(engine, states, hyper, x, y, epochs: int, data_seed=0, follow=None):
    """Train every member for ``epochs``; per step the :func:`record` of each BatchNorm-preceded
    kernel and the training loss, each [steps, K]. Returns (states, records).

    Batches: member k's rows of ``x`` are :meth:`wdjax.Engine.batch_order` of its data seed
    (``data_seed``: one for all members or one per member), as a sweep draws them. ``follow``
    ([K] member indices): after each step member k's units are rescaled to member follow[k]'s
    unit norms (:func:`rescale`); its optimizer state is left as it is."""
    n, k = x.shape[0], hyper.seed.shape[0]
    seeds = jnp.broadcast_to(jnp.asarray(data_seed, jnp.int32), (k,))
    layers = bn_kernels(states.params)
    hyper_opt = dict(getattr(engine.optimizer, "hyper", ()))
    b2, eps = hyper_opt.get("b2", 0.999), hyper_opt.get("eps", 1e-8)

    def step(states, rows_KxB):
        new, (loss, _) = jax.vmap(engine.step)(states, hyper, x[rows_KxB], y[rows_KxB])
        if follow is not None:
            new = new._replace(params=rescale(new.params, follow, layers))
        denom = adam_denominator(new.opt_state, b2, eps)
        rec = record(states, new, layers, denom, hyper.strength)
        return new, dict(rec, train_loss=loss)

    def epoch(states, e):
        order_KxSxB = jax.vmap(engine.batch_order, in_axes=(0, None, None))(seeds, e, n)
        return jax.lax.scan(step, states, jnp.swapaxes(order_KxSxB, 0, 1))

    states, rec = jax.lax.scan(epoch, states, jnp.arange(epochs))
    return states, {key: v.reshape(-1, v.shape[-1]) for key, v in rec.items()}


class Setting(NamedTuple):
    """One member kind of the program (run once per replicate)."""

    name: str
    optimizer: str  # "adam" or "momentum" (μ = 0: plain SGD)
    reg: str  # "l2" (coupled) or "wd" (decoupled)
    eta: float  # peak learning rate
    lam: float
    momentum: float  # heavy ball μ (unused by Adam)
    cosine: bool  # cosine schedule to 0 over the run (else constant)
    follow: int | None = None  # rescale to this setting's unit norms after every step


def train(config, ds, settings: list, cfgs):
    """Trace the program: ``settings`` × replicates (``cfgs``: init seed, batch order), settings
    outermost; returns (records {key: [steps, K]}, test loss [K], test accuracy [K])."""
    spe, r = ds.x_train.shape[0] // config.batch_size, len(cfgs)
    model = wdjax.make_model("mlp", ds.num_classes, hidden=config.hidden, batchnorm=True)
    tx = Decay(config.mask, spe * config.epochs)
    engine = wdjax.Engine(model.clone(bn_epsilon=0.0), tx, config.batch_size)  # exact invariance

    def column(values, dtype=jnp.float32):  # one value per setting -> one per member
        return jnp.asarray(np.repeat(values, r), dtype)

    extra = dict(adam=column([s.optimizer == "adam" for s in settings]),
                 coupled=column([s.reg == "l2" for s in settings]),
                 cosine=column([s.cosine for s in settings]),
                 momentum=column([s.momentum for s in settings]))  # fmt: skip
    seeds = jnp.asarray(np.tile([c.first_seed for c in cfgs], len(settings)), jnp.int32)
    hyper = wdjax.Hyper(column([s.lam for s in settings]), column([s.eta for s in settings]),
                        seeds, jnp.zeros_like(seeds), extra)  # fmt: skip
    data_seeds = jnp.asarray(np.tile([c.data_seed for c in cfgs], len(settings)), jnp.int32)
    follow = np.arange(len(settings) * r)
    for i, s in enumerate(settings):
        if s.follow is not None:
            follow[i * r : (i + 1) * r] = np.arange(s.follow * r, (s.follow + 1) * r)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train, jnp.int32)
    states = jax.jit(engine.init_members)(hyper, x[:1])
    go = jax.jit(trace_steps, static_argnums=(0, 5))
    states, rec = go(engine, states, hyper, x, y, config.epochs, data_seeds, jnp.asarray(follow))
    test = jax.jit(jax.vmap(engine.evaluate, in_axes=(0, None, None)))(
        states, jnp.asarray(ds.x_test), jnp.asarray(ds.y_test, jnp.int32)
    )
    return {key: np.asarray(v, float) for key, v in rec.items()}, *(np.asarray(t) for t in test)


# --- measurements from the records ----------------------------------------------------------


def equilibrium(rec, window: int, columns) -> tuple[np.ndarray, dict]:
    """√(mean over the last ``window`` steps and over layers of RMS-angle²) per member column."""
    angles = {k.split("/", 1)[1]: v[-window:, columns] for k, v in rec.items() if "angle/" in k}
    per_layer = {name: np.sqrt(np.mean(np.square(a), axis=0)) for name, a in angles.items()}
    pooled = np.sqrt(np.mean([np.square(v) for v in per_layer.values()], axis=0))
    return pooled, per_layer


def pooled_angle(rec) -> np.ndarray:
    """[steps, K]: the per-step RMS angle pooled over layers (RMS over all their units' RMS)."""
    return np.sqrt(np.mean([np.square(v) for k, v in rec.items() if "angle/" in k], axis=0))


def smoothed(v, w: int) -> np.ndarray:
    """Trailing RMS over ``w`` steps along axis 0: entry t covers steps t − w + 1 … t."""
    c = np.cumsum(np.square(np.asarray(v, float)), axis=0)
    c = np.concatenate([np.zeros((1, *c.shape[1:])), c])
    return np.sqrt((c[w:] - c[:-w]) / w)


def time_to_equilibrium(angle, final: float, smooth: int, band: float) -> float:
    """Steps after which the trailing RMS angle (:func:`smoothed`) stays within ``band`` of
    ``final`` for good: the step count at the first such point (≥ ``smooth``; NaN if its last
    point is outside the band)."""
    s = smoothed(angle, smooth)
    outside = np.flatnonzero(np.abs(s / final - 1) > band)
    if outside.size and outside[-1] == s.size - 1:
        return np.nan
    return float(smooth + (outside[-1] + 1 if outside.size else 0))


def fan_ins(config, ds) -> dict:
    """Inputs per unit of each BatchNorm-preceded Dense (C in the adam+l2 prediction)."""
    sizes = [int(np.prod(ds.x_train.shape[1:])), *config.hidden[:-1]]
    return {f"dense_{i}": c for i, c in enumerate(sizes)}


def prediction(arm, lam: float, rec, cols, window: int, fans: dict, b1: float, mu: float):
    """Predicted equilibrium angle per member column, pooled as :func:`equilibrium` pools the
    measured one; adam+l2 from each step's Γ_eff over the window."""
    opt, reg, eta, _ = arm
    if (opt, reg) != ("adam", "l2"):
        return np.full(len(cols), predicted(opt, reg, eta, lam, mu, b1))
    per_layer = []
    for name, fan in fans.items():
        g = rec[f"gamma/{name}"][-window:, cols]
        per_layer.append(np.mean(np.square(predicted(opt, reg, eta, lam, mu, b1, g, fan)), 0))
    return np.sqrt(np.mean(per_layer, axis=0))


def equivalence(lo: float, hi: float, margin: float) -> str:
    """What a paired difference's interval says against an equivalence margin ±``margin``."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undefined"
    if -margin < lo and hi < margin:
        return "within the margin"
    if hi < -margin or lo > margin:
        return "outside the margin"
    return "inconclusive (the interval crosses the margin)"


def final_unit_norms(rec, cols) -> dict:
    return {k.split("/", 1)[1]: v[-1, cols] for k, v in rec.items() if k.startswith("unit_norm/")}


# --- the arms -------------------------------------------------------------------------------


def settings_of(knobs, momentum: float) -> list[Setting]:
    """Every arm at λ and mult·λ, the λ = 0 arm (plain SGD is the heavy ball with μ = 0) and the
    mechanism test's three members (decayed, rescaled to it, plain), in one program."""
    out = []
    for opt, reg, eta, lam in knobs["arms"]:
        for m in (1.0, knobs["mult"]):
            name = f"{opt}+{reg}" + ("" if m == 1 else f"@{m:g}λ")
            out.append(Setting(name, opt, reg, eta, lam * m, momentum, False))
    opt, eta = knobs["zero"]
    mu = 0.0 if opt == "sgd" else momentum
    out.append(Setting("zero", "momentum", "l2", eta, 0.0, mu, False))
    opt, reg, eta, lam = knobs["mechanism"]
    out += [Setting("decayed", opt, reg, eta, lam, momentum, True),
            Setting("rescaled", opt, reg, eta, 0.0, momentum, True, follow=len(out)),
            Setting("plain", opt, reg, eta, 0.0, momentum, True)]  # fmt: skip
    return out


def tested(e: dict, **samples) -> None:
    """Add ``name_mean/std/lo/hi`` of each sample over replicates to ``e``."""
    for name, x in samples.items():
        e.update(replicates.summarize(name, x))


def arm_entry(run, arm, lam, part, fans) -> tuple[dict, tuple]:
    """The summary entry of one (arm, λ) from its ``part`` (records, test loss, test accuracy,
    replicates as columns); also its per-replicate (measured, predicted)."""
    k, (opt, _, eta, _), (rec, loss, acc) = run.knobs, arm, part
    cols = np.arange(loss.shape[0])
    measured, per_layer = equilibrium(rec, k["window"], cols)
    pred = prediction(arm, lam, rec, cols, k["window"], fans, k["b1"], run.config.momentum)
    angle = pooled_angle(rec)
    t_eq = np.array([time_to_equilibrium(angle[:, j], measured[j], k["smooth"], k["band"])
                     for j in cols])  # fmt: skip
    units = {n: float(v.mean()) for n, v in final_unit_norms(rec, cols).items()}
    power = 1 if opt == "adam" else 2  # Adam's step is scale-free: η/‖w‖ rotates it
    e = dict(eta=eta, strength=lam, predicted=float(pred.mean()),
             per_layer={n: float(v.mean()) for n, v in per_layer.items()}, unit_norm=units,
             effective_lr={n: eta / u**power for n, u in units.items()})  # fmt: skip
    before = {key: v[: -k["window"]] for key, v in rec.items()}  # the window before the last
    tested(e, measured=measured, ratio=measured / pred, t_eq_steps=t_eq, t_eq=t_eq * eta * lam,
           drift=measured / equilibrium(before, k["window"], cols)[0], test_loss=loss,
           test_acc=acc)  # fmt: skip
    if arm[:2] == ("adam", "l2"):
        e.update(adam_l2_detail(arm, lam, rec, cols, fans, k))
    return e, (measured, pred)


def adam_l2_detail(arm, lam, rec, cols, fans, k) -> dict:
    """Per layer: measured and predicted angle over the last window, and the fraction of weights
    in the decay-dominated regime over the first and the last window."""
    w, out = k["window"], {"per_layer_predicted": {}, "decay_frac_first": {}, "decay_frac_last": {}}
    for name, fan in fans.items():
        one = {f"gamma/{name}": rec[f"gamma/{name}"]}
        pred = prediction(arm, lam, one, cols, w, {name: fan}, k["b1"], 0.0)
        out["per_layer_predicted"][name] = float(pred.mean())
        frac = rec[f"decay_frac/{name}"][:, cols]
        out["decay_frac_first"][name] = float(frac[:w].mean())
        out["decay_frac_last"][name] = float(frac[-w:].mean())
    return out


def arm_entries(run, parts: dict, fans: dict) -> dict:
    """``equilibrium``: each arm at λ and mult·λ, the latter with θ(mult·λ)/θ(λ) measured and
    predicted, paired by replicate."""
    out, mult = {}, run.knobs["mult"]
    for arm in run.knobs["arms"]:
        name = f"{arm[0]}+{arm[1]}"
        out[name], base = arm_entry(run, arm, arm[3], parts[name], fans)
        top = f"{name}@{mult:g}λ"
        out[top], mp = arm_entry(run, arm, arm[3] * mult, parts[top], fans)
        tested(out[top], scaling=mp[0] / base[0], predicted_scaling=mp[1] / base[1])
    return out


def zero_entry(run, part) -> dict:
    """Without decay: ‖W‖² grows by exactly ‖ΔW‖² = η²‖g‖² per SGD step (g ⟂ W), so η/‖w‖²
    falls."""
    (rec, loss, acc), w = part, run.knobs["window"]
    growth = sum(v.sum(0) for k, v in rec.items() if k.startswith("growth/"))
    step_sq = sum(v.sum(0) for k, v in rec.items() if k.startswith("step_sq/"))
    angle = smoothed(pooled_angle(rec), w)
    e = dict(optimizer=run.knobs["zero"][0], eta=run.knobs["zero"][1], eff_lr_ratio={},
             unit_norm={})  # fmt: skip
    tested(e, growth_ratio=growth / step_sq, first_angle=angle[0], last_angle=angle[-1],
           test_loss=loss, test_acc=acc)  # fmt: skip
    for name, u in ((k.split("/", 1)[1], v) for k, v in rec.items() if "unit_norm/" in k):
        e["eff_lr_ratio"][name] = replicates.summarize("ratio", (u[0] / u[-1]) ** 2)
        e["unit_norm"][name] = float(u[-1].mean())
    return e


def mechanism_entry(run, parts: dict) -> dict:
    """Decayed, rescaled-without-decay (its units set to the decayed run's norms after every
    step) and plain-without-decay members under a cosine schedule, paired by replicate."""
    opt, reg, eta, lam = run.knobs["mechanism"]
    acc_m, loss_m = run.knobs["margin"]
    e = dict(optimizer=opt, reg=reg, eta=eta, strength=lam, schedule="cosine",
             margin_acc=acc_m, margin_loss=loss_m)  # fmt: skip
    groups = ("decayed", "rescaled", "plain")
    for g in groups:
        _, loss, acc = parts[g]
        e[g] = {}
        tested(e[g], test_loss=loss, test_acc=acc)
        if g != "decayed":
            e[g].update(replicates.summarize("test_loss", loss, parts["decayed"][1]))
            e[g].update(replicates.summarize("test_acc", acc, parts["decayed"][2]))
    d = e["rescaled"]
    e["verdict_acc"] = equivalence(d["test_acc_diff_lo"], d["test_acc_diff_hi"], acc_m)
    e["verdict_loss"] = equivalence(d["test_loss_diff_lo"], d["test_loss_diff_hi"], loss_m)
    units = {g: np.stack([v for k, v in parts[g][0].items() if "unit_norm/" in k]) for g in groups}
    e["norm_mismatch"] = float(np.max(np.abs(units["rescaled"] / units["decayed"] - 1)))
    angle = {g: np.sqrt(np.mean(np.square(pooled_angle(parts[g][0])), axis=0)) for g in groups}
    tested(e, angle_ratio=angle["rescaled"] / angle["decayed"],
           plain_angle_ratio=angle["plain"] / angle["decayed"])  # fmt: skip
    return e


def split(settings, rec, loss, acc, r: int) -> dict:
    """{setting name: (records, test loss, test accuracy)} restricted to its r replicates."""
    out = {}
    for i, s in enumerate(settings):
        cols = slice(i * r, (i + 1) * r)
        out[s.name] = ({k: v[:, cols] for k, v in rec.items()}, loss[cols], acc[cols])
    return out


# --- table and figure -----------------------------------------------------------------------

COLUMNS = ["arm", "η", "λ", "predicted angle", "measured angle", "measured / predicted",
           "θ(4λ) / θ(λ): measured (predicted)", "steps to equilibrium × ηλ",
           "drift: last / previous window",
           "final RMS unit norm", "test loss", "test acc", "Δ test loss (paired)",
           "Δ test acc (paired)"]  # fmt: skip


def arm_row(name: str, e: dict) -> list:
    scaling = "–"
    if "scaling_mean" in e:
        scaling = f"{study.ci(e, 'scaling', 3)} ({study.ci(e, 'predicted_scaling', 3)})"
    norms = " / ".join(f"{v:.3g}" for v in e["unit_norm"].values())
    return [name, f"{e['eta']:g}", f"{e['strength']:g}", f"{e['predicted']:.4f}",
            study.ci(e, "measured", 4), study.ci(e, "ratio", 3), scaling,
            study.ci(e, "t_eq", 2), study.ci(e, "drift", 3), norms, study.ci(e, "test_loss", 3),
            study.ci(e, "test_acc", 4), "–", "–"]  # fmt: skip


def zero_row(z: dict) -> list:
    norms = " / ".join(f"{v:.3g}" for v in z["unit_norm"].values())
    growth = f"ΔW‖² growth / Σ‖ΔW‖² = {study.ci(z, 'growth_ratio', 5)}"
    return [f"{'sgd'}, λ = 0 (angle: last window)", f"{z['eta']:g}", "0", "none (no equilibrium)",
            study.ci(z, "last_angle", 4), growth, "–", "–", "–", norms, study.ci(z, "test_loss", 3),
            study.ci(z, "test_acc", 4), "–", "–"]  # fmt: skip


def mechanism_rows(m: dict) -> list[list]:
    rows = []
    labels = dict(decayed="decayed", rescaled="no decay, rescaled to the decayed norms",
                  plain="no decay, not rescaled")  # fmt: skip
    for g, label in labels.items():
        d = m[g]
        diffs = ["–", "–"] if g == "decayed" else [study.ci(d, "test_loss_diff", 4),
                                                  study.ci(d, "test_acc_diff", 4)]  # fmt: skip
        lam = m["strength"] if g == "decayed" else 0
        rows.append([f"mechanism ({m['optimizer']}+{m['reg']}, cosine): {label}",
                     f"{m['eta']:g}", f"{lam:g}", "–", "–", "–", "–", "–", "–", "–",
                     study.ci(d, "test_loss", 3), study.ci(d, "test_acc", 4), *diffs])  # fmt: skip
    return rows


def band(ax, curves, label, step=1, ls="-", color=None):
    """Mean over replicates of ``curves`` [steps, R] with its 95 % t-interval band."""
    s = stats.describe(curves.T, axis=0)
    t = np.arange(curves.shape[0])[::step]
    (line,) = ax.plot(t, s.mean[::step], lw=0.9, label=label, ls=ls, color=color)
    ax.fill_between(t, s.lo[::step], s.hi[::step], color=line.get_color(), alpha=0.2)


def predicted_trace(arm, lam, rec, fans, b1) -> np.ndarray:
    """adam+l2's prediction at every step from that step's Γ, pooled over layers: [steps, R]."""
    per_layer = [np.square(predicted(*arm[:3], lam, gamma=rec[f"gamma/{n}"], fan_in=c, b1=b1))
                 for n, c in fans.items()]  # fmt: skip
    return np.sqrt(np.mean(per_layer, axis=0))


def figure(parts: dict, eq: dict, run, fans: dict):
    """Per arm, the angle (trailing RMS over ``smooth`` steps; dashed: predicted) and the RMS unit
    norm of dense_0 at λ and mult·λ; the λ = 0 arm's angle and η/‖w‖²; the mechanism test's
    angle and norms. Lines: means over replicates, bands: 95 % t-intervals."""
    plt, k = study.pyplot(), run.knobs
    w, names = k["smooth"], [f"{a[0]}+{a[1]}" for a in k["arms"]]
    step = max(1, w // 4)
    fig, axes = plt.subplots(2, len(names) + 2, figsize=(4.2 * (len(names) + 2), 6.8))
    panels = [(n, [n, f"{n}@{k['mult']:g}λ"]) for n in names]
    panels += [("no decay (λ = 0)", ["zero"]), ("mechanism test (cosine)", ["decayed",
               "rescaled", "plain"])]  # fmt: skip
    for c, (title, members) in enumerate(panels):
        for i, m in enumerate(members):
            rec = parts[m][0]
            band(axes[0, c], smoothed(pooled_angle(rec), w), m, step, color=f"C{i}")
            arm = next((a for a in k["arms"] if m.startswith(f"{a[0]}+{a[1]}")), None)
            if arm is not None and arm[:2] == ("adam", "l2"):  # the prediction moves with Γ
                pred = predicted_trace(arm, eq[m]["strength"], rec, fans, k["b1"])
                band(axes[0, c], smoothed(pred, w), None, step, ls="--", color=f"C{i}")
            elif m in eq:
                axes[0, c].axhline(eq[m]["predicted"], color=f"C{i}", ls="--", lw=0.8)
            low = rec["unit_norm/dense_0"]
            if m == "zero":
                low = k["zero"][1] / np.square(low)
            band(axes[1, c], low, m, step)
        axes[0, c].set(title=title, ylabel="RMS angle per step (rad)", yscale="log")
        ylabel = "η/‖w‖², dense_0" if members == ["zero"] else "RMS unit norm ‖w‖, dense_0"
        axes[1, c].set(xlabel="step", ylabel=ylabel, yscale="log")
    for ax in axes.ravel():
        ax.legend(fontsize=7)
    fig.suptitle(f"BatchNorm-preceded units (Fashion-MNIST MLP): per-step RMS angle (trailing RMS "
                 f"over {w} steps; dashed: predicted) and norms; mean over {k['replicates']} "
                 "replicates, bands: 95 % Student-t intervals")  # fmt: skip
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    run = study.setup(__doc__, NAME, get_config, argv)
    ds = study.load_data(run.config)
    cfgs = replicates.replicate_configs(run.config, run.knobs["replicates"])
    settings = settings_of(run.knobs, run.config.momentum)
    parts = split(settings, *train(run.config, ds, settings, cfgs), len(cfgs))
    fans = fan_ins(run.config, ds)
    eq = arm_entries(run, parts, fans)
    zero, mech = zero_entry(run, parts["zero"]), mechanism_entry(run, parts)
    rows = [arm_row(name, e) for name, e in eq.items()] + [zero_row(zero), *mechanism_rows(mech)]
    summary = dict(equilibrium=eq, zero=zero, mechanism=mech,
                   steps=int(parts["zero"][0]["train_loss"].shape[0]),
                   window=run.knobs["window"], smooth=run.knobs["smooth"],
                   band=run.knobs["band"], batch_size=run.config.batch_size,
                   replicates=run.knobs["replicates"], dataset=run.config.dataset)  # fmt: skip
    fig = figure(parts, eq, run, fans)
    return study.finish(run, summary, COLUMNS, rows, fig, "equilibrium.png")


if __name__ == "__main__":
    main()
