"""Rotational equilibrium: does weight decay fix the per-step rotation of BatchNorm-preceded units?

Claim: a BatchNorm-preceded kernel is scale-invariant, so decay only sets its norm, hence its
effective learning rate (van Laarhoven 2017; Zhang et al. 2019), and at a constant η each unit's
RMS angle per step settles at a closed form (Kosson et al. 2024, "Rotational Equilibrium"):
√(2ηλ(1−β₁)/(1+β₁)) adam+wd, √(2ηλ/(1+μ)) momentum+l2, √(2ηλ(1−μ)/(1+μ)) momentum+wd; adam+l2:
θ = (2·k^{3/2}·√C·η²λ/Γ)^{1/3} (k = (1−β₁)/(1+β₁), C fan-in, Γ Adam's scale-free gradient scale;
derived in docs/studies/batchnorm_equilibrium.md). Without decay ‖W‖² grows by η²‖g‖² per SGD step;
a no-decay run rescaled every step to the decayed run's unit norms ends as the decayed run does.

Command: ``python experiments/batchnorm_equilibrium.py`` (Fashion-MNIST; ``--smoke``: digits).
Runtime: 355 s at full size on the 2-core machine (before the rewrite on sweep()'s hooks).

Verdict (last full run): Kosson's forms reproduced (within 1 % heavy ball, 6.4 % AdamW); adam+l2
partly (λ^{1/3} scaling, no steady state); the λ = 0 growth and the mechanism test reproduced.

Design in :func:`get_config`, rules in ``RULES``; one sweep per arm and replicate. Replicate r
loads its data with data_seed + r as its sweeps do (before the rewrite: seed 0 for every one).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wdjax import Decay, study, unit_angular_update
from wdjax.analysis import plots
from wdjax.engine.models import MLP
from wdjax.study import replicates

TESTS = ("test_loss", "test_acc")
KINDS = ("angle", "unit_norm", "growth", "step_sq", "gamma", "decay_frac")  # records per layer
GROUPS = ("decayed", "rescaled", "plain")
RULES = dict(
    equilibrium="RMS angle over the last `window` steps, pooled over both BatchNorm-preceded "
    "layers; drift = that / the same over the window before (1 at a steady state)",
    time_to_equilibrium="steps after which the trailing RMS over `smooth` steps stays within "
    "±`band` of the equilibrium angle to the end (NaN if it ends outside), reported × ηλ",
    mechanism="momentum+l2 with a cosine η(t): decayed; rescaled (λ = 0, each unit set to the "
    "decayed unit's norm after every step, optimizer state untouched); plain (λ = 0)",
    margin="rescaled − decayed within ±0.005 test accuracy and ±0.01 test loss (95 % interval "
    "inside the margin: equivalent)",
    interval="95 % Student-t over replicates; differences and ratios paired by replicate",
)


def get_config() -> dict:
    """The MLP 784-64-64-10 with BatchNorm (ε = 0), all training images, 14 epochs, 6 replicates;
    ``arms`` (optimizer, reg, η, λ) at λ and ``mult``·λ, ``zero`` (SGD, η), ``mechanism``."""
    arms = [("adam", "wd", 1e-3, 1.0), ("momentum", "l2", 1e-2, 0.1),
            ("momentum", "wd", 1e-2, 0.1), ("adam", "l2", 1e-3, 0.2)]  # fmt: skip
    return dict(dataset="fashion_mnist", val_size=0, batchnorm=True, mask="hidden", epochs=14,
                replicates=6, arms=arms, mult=4.0, zero=("sgd", 0.1), b1=0.9, rules=RULES,
                mechanism=("momentum", "l2", 1e-2, 0.1), margin=(0.005, 0.01), window=1500,
                smooth=200, band=0.1)  # fmt: skip


def smoke(config: dict) -> dict:
    return dict(dataset="digits", epochs=2, replicates=2, window=8, smooth=4)


def predicted(optimizer: str, reg: str, eta: float, lam: float, momentum=0.9, b1=0.9,
              gamma=None, fan_in=None) -> float:  # fmt: skip
    """The equilibrium RMS angular update per step (module docstring); adam+l2 needs Γ, C."""
    k = (1 - b1) / (1 + b1)
    forms = {("adam", "wd"): 2 * eta * lam * k, ("momentum", "l2"): 2 * eta * lam / (1 + momentum),
             ("momentum", "wd"): 2 * eta * lam * (1 - momentum) / (1 + momentum)}  # fmt: skip
    if (optimizer, reg) in forms:
        return math.sqrt(forms[optimizer, reg])
    if (optimizer, reg) != ("adam", "l2"):
        raise ValueError(f"no prediction for optimizer={optimizer!r}, reg={reg!r}")
    if gamma is None or fan_in is None:
        raise ValueError("adam+l2: the prediction needs the unit's gamma and fan_in")
    return np.cbrt(2 * k**1.5 * np.sqrt(fan_in) * eta**2 * lam / np.asarray(gamma))[()]


def adam_gamma(kernel, denom):
    """Γ_j = ‖w_j‖³ / Σ_i (w_ij² / d_ij) per unit j, d = √v̂ + ε (scale-free: d ∝ 1/‖w_j‖)."""
    sq = jnp.square(kernel.reshape(-1, kernel.shape[-1]))
    return jnp.sum(sq, axis=0) ** 1.5 / jnp.sum(sq / denom.reshape(sq.shape), axis=0)


def effective_gamma(gamma_U):
    """The Γ whose prediction is the RMS of the units' predictions: (mean Γ_j^{-2/3})^{-3/2}."""
    return jnp.mean(gamma_U ** (-2.0 / 3.0), axis=-1) ** -1.5


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: one program per instance
class Observed:
    """``decay``, its hyperparameters kept in the state (for :func:`record`); with ``targets``
    {layer: [steps, units]}, each unit set to its target norm after each step (state untouched)."""

    decay: Decay
    targets: dict | None = dataclasses.field(default=None, repr=False)

    def __call__(self, learning_rate, strength, **flags) -> optax.GradientTransformation:
        inner = optax.inject_hyperparams(self.decay)(learning_rate, strength, **flags)

        def update(u, t, p):
            new = {n: p[n]["kernel"] + u[n]["kernel"] for n in self.targets}
            new = {n: v * (jnp.asarray(self.targets[n])[t] / jnp.linalg.norm(v, axis=0))[None, :]
                   for n, v in new.items()}  # fmt: skip
            return u | {n: dict(u[n], kernel=v - p[n]["kernel"]) for n, v in new.items()}, t + 1

        rescale = optax.GradientTransformation(lambda p: jnp.int32(0), update)
        return inner if self.targets is None else optax.chain(inner, rescale)


def record(before, after, grads, batch_stats, opt_state, units=False, b2=0.999, eps=1e-8) -> dict:
    """Per BatchNorm-preceded kernel (all but the head's): RMS angle over units, RMS unit norm,
    ‖W'‖² − ‖W‖², ‖W' − W‖², Adam's Γ_eff and the share of weights with λ|w| ≥ d/2 (decay makes
    half of its denominator d = √v̂ + ε; from Adam's state whichever branch a member takes)."""
    s = opt_state if hasattr(opt_state, "hyperparams") else opt_state[0]  # Observed's state
    adam = next(x for x in jax.tree.leaves(s, is_leaf=lambda x: hasattr(x, "nu"))
                if hasattr(x, "nu"))  # fmt: skip
    lam = s.hyperparams["strength"]
    out, corr = {}, 1 - b2 ** adam.count.astype(jnp.float32)
    for n in (n for n, v in after.items() if n != "head" and "kernel" in v):
        w0, w1, d = before[n]["kernel"], after[n]["kernel"], jnp.sqrt(adam.nu[n]["kernel"] / corr)
        sq0, sq1, d = jnp.sum(jnp.square(w0), axis=0), jnp.sum(jnp.square(w1), axis=0), d + eps
        out[f"angle/{n}"] = jnp.sqrt(jnp.mean(jnp.square(unit_angular_update(w0, w1))))
        out[f"unit_norm/{n}"] = jnp.sqrt(jnp.mean(sq1))
        out[f"growth/{n}"], out[f"step_sq/{n}"] = jnp.sum(sq1 - sq0), jnp.sum(jnp.square(w1 - w0))
        out[f"gamma/{n}"] = effective_gamma(adam_gamma(w1, d))
        out[f"decay_frac/{n}"] = jnp.mean(lam * jnp.abs(w1) >= d / 2)
        out |= {f"units/{n}": jnp.linalg.norm(w1, axis=0)} if units else {}
    return out


def record_units(before, after, grads, batch_stats, opt_state) -> dict:
    """:func:`record` plus every unit's norm (the targets of the rescaled run)."""
    return record(before, after, grads, batch_stats, opt_state, units=True)


def rms(x, axis) -> np.ndarray:
    """The root mean square along ``axis`` (one member's records are [steps, R, layers])."""
    return np.sqrt(np.mean(np.square(x), axis=axis))


def equilibrium(angle, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The RMS angle over the last ``window`` steps, pooled over layers [R] and per layer [R, L]."""
    return rms(rms(angle[-window:], 0), -1), rms(angle[-window:], 0)


def smoothed(v, w: int) -> np.ndarray:
    """Trailing RMS over ``w`` steps along axis 0: entry t covers steps t − w + 1 … t."""
    c = np.cumsum(np.square(np.asarray(v, float)), axis=0)
    c = np.concatenate([np.zeros((1, *c.shape[1:])), c])
    return np.sqrt((c[w:] - c[:-w]) / w)


def time_to_equilibrium(angle, final: float, smooth: int, band: float) -> float:
    """Steps after which the trailing RMS angle stays within ``band`` of ``final`` for good (the
    step count at the first such point, ≥ ``smooth``; NaN if its last point is outside)."""
    s = smoothed(angle, smooth)
    outside = np.flatnonzero(np.abs(s / final - 1) > band)
    if outside.size and outside[-1] == s.size - 1:
        return np.nan
    return float(smooth + (outside[-1] + 1 if outside.size else 0))


def prediction(arm, lam: float, rec, fans: dict, b1: float, mu: float):
    """The predicted angle [steps, R, L] (adam+l2: from each step's Γ_eff; else constant)."""
    (opt, reg, eta, _), c = arm, np.array(list(fans.values()), float)
    gamma = rec["gamma"] if (opt, reg) == ("adam", "l2") else None
    return np.broadcast_to(predicted(opt, reg, eta, lam, mu, b1, gamma, c), rec["angle"].shape)


def tested(e: dict, **samples) -> dict:
    """``e`` with ``name_mean/std/lo/hi`` of each sample over replicates added."""
    return e | {k: v for n, x in samples.items() for k, v in replicates.summarize(n, x).items()}


def arm_entry(k, mu, arm, lam, part, fans) -> tuple[dict, tuple]:
    """One (arm, λ)'s summary entry; also its per-replicate (measured, predicted)."""
    (opt, reg, eta, _), (rec, loss, acc), w = arm, part, k["window"]
    named = lambda v: {n: float(x) for n, x in zip(fans, v, strict=True)}  # noqa: E731
    (measured, per_layer), pred = equilibrium(rec["angle"], w), equilibrium(
        prediction(arm, lam, rec, fans, k["b1"], mu), w)  # fmt: skip
    t_eq = np.array([time_to_equilibrium(rms(rec["angle"][:, j], -1), m, k["smooth"], k["band"])
                     for j, m in enumerate(measured)])  # fmt: skip
    units, power = named(rec["unit_norm"][-1].mean(0)), 1 if opt == "adam" else 2  # Adam: η/‖w‖
    e = dict(eta=eta, strength=lam, predicted=float(pred[0].mean()),
             per_layer=named(per_layer.mean(0)), unit_norm=units,
             effective_lr={n: eta / u**power for n, u in units.items()})  # fmt: skip
    if (opt, reg) == ("adam", "l2"):
        e |= dict(per_layer_predicted=named(pred[1].mean(0)),
                  decay_frac_first=named(rec["decay_frac"][:w].mean((0, 1))),
                  decay_frac_last=named(rec["decay_frac"][-w:].mean((0, 1))))  # fmt: skip
    return tested(e, measured=measured, ratio=measured / pred[0], t_eq_steps=t_eq,
                  t_eq=t_eq * eta * lam, drift=measured / equilibrium(rec["angle"][:-w], w)[0],
                  test_loss=loss, test_acc=acc), (measured, pred[0])  # fmt: skip


def zero_entry(k, fans, rec, loss, acc) -> dict:
    """Without decay: ‖W‖² grows by exactly ‖ΔW‖² per SGD step (g ⟂ W); η/‖w‖² falls."""
    angle, u = smoothed(rms(rec["angle"], -1), k["window"]), rec["unit_norm"]
    e = dict(optimizer=k["zero"][0], eta=k["zero"][1],
             eff_lr_ratio={n: replicates.summarize("ratio", (u[0, :, i] / u[-1, :, i]) ** 2)
                           for i, n in enumerate(fans)},
             unit_norm={n: float(u[-1, :, i].mean()) for i, n in enumerate(fans)})  # fmt: skip
    return tested(e, growth_ratio=rec["growth"].sum((0, 2)) / rec["step_sq"].sum((0, 2)),
                  first_angle=angle[0], last_angle=angle[-1], test_loss=loss,
                  test_acc=acc)  # fmt: skip


def mechanism_entry(k, parts: dict) -> dict:
    """Decayed, rescaled and plain members, paired by replicate, against the margin."""
    (opt, reg, eta, lam), (rec, *tests) = k["mechanism"], parts["decayed"]
    e = dict(optimizer=opt, reg=reg, eta=eta, strength=lam, schedule="cosine",
             margin_acc=k["margin"][0], margin_loss=k["margin"][1])  # fmt: skip
    for g in GROUPS:
        e[g] = tested({}, test_loss=parts[g][1], test_acc=parts[g][2])
        for m, x, base in zip(TESTS, parts[g][1:], tests, strict=True) if g != "decayed" else ():
            e[g].update(replicates.summarize(m, x, base))
    for m, margin in zip(("acc", "loss"), k["margin"], strict=True):
        d = e["rescaled"]
        e[f"verdict_{m}"] = study.verdict((d[f"test_{m}_diff_lo"], d[f"test_{m}_diff_hi"]), margin)
    e["norm_mismatch"] = float(np.max(np.abs(parts["rescaled"][0]["unit_norm"] / rec["unit_norm"]
                                             - 1)))  # fmt: skip
    angle = {g: rms(parts[g][0]["angle"], (0, 2)) for g in GROUPS}
    return tested(e, angle_ratio=angle["rescaled"] / angle["decayed"],
                  plain_angle_ratio=angle["plain"] / angle["decayed"])  # fmt: skip


COLUMNS = ["member", "η", "λ", "predicted angle", "measured angle", "measured / predicted",
           "θ(4λ)/θ(λ) (predicted)", "steps to equilibrium × ηλ", "drift", "test loss",
           "test acc", "Δ test loss vs decayed", "Δ test acc vs decayed"]  # fmt: skip


def rows(eq: dict, zero: dict, mech: dict) -> list[list]:
    def cells(e, *keys):
        return [study.ci(e, key, d) if f"{key}_lo" in e else "–" for key, d in keys]

    tail = (("test_loss", 3), ("test_acc", 4), ("test_loss_diff", 4), ("test_acc_diff", 4))
    out = [[n, f"{e['eta']:g}", f"{e['strength']:g}", f"{e['predicted']:.4f}",
            *cells(e, ("measured", 4), ("ratio", 3)), cells(e, ("scaling", 3))[0]
            + (f" ({e['predicted_scaling_mean']:.3f})" if "scaling_mean" in e else ""),
            *cells(e, ("t_eq", 2), ("drift", 3), *tail)]
           for n, e in eq.items()]  # fmt: skip
    out.append(["sgd, λ = 0 (last window)", f"{zero['eta']:g}", "0", "–",
                *cells(zero, ("last_angle", 4)), "growth ratio " + study.ci(zero, "growth_ratio", 5),
                "–", "–", "–", *cells(zero, *tail)])  # fmt: skip
    return out + [[f"mechanism: {g}", f"{mech['eta']:g}", f"{mech['strength'] * (g == GROUPS[0]):g}",
                   *["–"] * 6, *cells(mech[g], *tail)] for g in GROUPS]  # fmt: skip


def figure(parts: dict, k: dict, fans: dict):
    """Per panel: the RMS angle per step (trailing RMS over ``smooth`` steps; dashed: predicted)
    and dense_0's RMS unit norm; means over replicates with 95 % t bands."""
    plt, w, arms = study.pyplot(), k["smooth"], {f"{a[0]}+{a[1]}": a for a in k["arms"]}
    panels = [[n, f"{n}@{k['mult']:g}λ"] for n in arms] + [["zero"], list(GROUPS)]
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.8), squeeze=False)
    for (top, bottom), members in zip(axes.T, panels, strict=True):
        for i, m in enumerate(members):
            rec, arm, style = parts[m][0], arms.get(m.split("@")[0]), dict(color=f"C{i}")
            angle = smoothed(rms(rec["angle"], -1), w)
            plots.band(top, np.arange(angle.shape[0]) + w, angle.T, m, marker=None, lw=0.9, **style)
            if arm is not None:
                lam = arm[3] * (k["mult"] if "@" in m else 1)
                pred = smoothed(rms(prediction(arm, lam, rec, fans, k["b1"], 0.9), -1), w)
                top.plot(np.arange(angle.shape[0]) + w, pred.mean(1), ls="--", lw=0.8, **style)
            u = rec["unit_norm"][..., 0]
            plots.band(bottom, np.arange(u.shape[0]), u.T, m, marker=None, **style)
        top.set(title=" / ".join(members), ylabel="RMS angle per step (rad)", yscale="log")
        bottom.set(xlabel="step", ylabel="RMS unit norm, dense_0", yscale="log")
        top.legend(fontsize=7)
    fig.suptitle(f"BatchNorm-preceded units: RMS angle (dashed: predicted) and norm; mean over "
                 f"{k['replicates']} replicates, bands: 95 % Student-t intervals")  # fmt: skip
    fig.tight_layout()
    return fig


def arm_config(base, opt, reg, eta, lams, cosine, mu):
    """One arm's sweep: ``lams`` at η through :class:`Decay`'s traced flags."""
    flags = dict(adam=opt == "adam", coupled=reg == "l2", cosine=cosine, momentum=mu)
    return dataclasses.replace(base, strengths=tuple(lams), lrs=(eta,),
                               axes=tuple((n, (float(v),)) for n, v in flags.items()))  # fmt: skip


def parts_of(runs: list, names: list, fans: dict) -> dict:
    """{member: (records {kind: [steps, R, layers]}, test loss [R], test accuracy [R])}."""

    def rec(j, kind):  # [R, L, steps] -> [steps, R, L]
        return np.moveaxis(np.array([[np.ravel(r.history[f"{kind}/{n}"][j]) for n in fans]
                                     for r in runs], float), -1, 0)  # fmt: skip

    return {name: ({kind: rec(j, kind) for kind in KINDS},
                   *(np.array([r.history[m][j, -1] for r in runs]) for m in TESTS))
            for j, name in enumerate(names)}  # fmt: skip


def run(ctx: study.Context) -> study.Report:
    k, cfg, mu = ctx.knobs, ctx.config, ctx.config.momentum
    ds, top = study.load_data(cfg), f"@{ctx.knobs['mult']:g}λ"
    fans_out = {f"dense_{i}": h for i, h in enumerate(cfg.hidden)}
    fans = dict(zip(fans_out, [int(np.prod(ds.x_train.shape[1:])), *cfg.hidden[:-1]], strict=True))
    decay = Decay(cfg.mask, ds.x_train.shape[0] // cfg.batch_size * cfg.epochs)
    model = MLP(ds.num_classes, cfg.hidden, batchnorm=True, bn_epsilon=0.0)  # exact invariance
    base = dataclasses.replace(cfg, model=model, optimizer=Observed(decay), eval_every=cfg.epochs)
    arms = {f"{o}+{r}": arm_config(base, o, r, eta, (lam, lam * k["mult"]), False, mu)
            for o, r, eta, lam in k["arms"]}  # fmt: skip
    arms["zero"] = arm_config(base, "sgd", "l2", k["zero"][1], (0.0,), False, 0.0)
    results = ctx.sweeps(arms, record=record, record_every="step")
    mech = arm_config(base, *k["mechanism"][:3], (k["mechanism"][3], 0.0), True, mu)
    results |= ctx.sweeps({"mechanism": mech}, record=record_units, record_every="step")
    results["rescaled"] = []
    for r, c in enumerate(replicates.replicate_configs(mech, ctx.replicates)):
        h = results["mechanism"][r].history  # the decayed member's unit norms, step by step
        tx = Observed(decay, {n: np.reshape(h[f"units/{n}"][0], (-1, fans_out[n])) for n in fans})
        c = dataclasses.replace(c, strengths=(0.0,), optimizer=tx)
        results["rescaled"] += ctx.sweeps({f"rescaled.r{r}": c}, 1, record=record,
                                          record_every="step")[f"rescaled.r{r}"]  # fmt: skip
    names = {"mechanism": ["decayed", "plain"], "zero": ["zero"], "rescaled": ["rescaled"]}
    parts = {m: p for n, runs in results.items()
             for m, p in parts_of(runs, names.get(n, [n, n + top]), fans).items()}  # fmt: skip
    eq = {}
    for arm in k["arms"]:
        n = f"{arm[0]}+{arm[1]}"
        eq[n], low = arm_entry(k, mu, arm, arm[3], parts[n], fans)
        eq[n + top], high = arm_entry(k, mu, arm, arm[3] * k["mult"], parts[n + top], fans)
        eq[n + top] = tested(eq[n + top], scaling=high[0] / low[0],
                             predicted_scaling=high[1] / low[1])  # fmt: skip
    zero, mechanism = zero_entry(k, fans, *parts["zero"]), mechanism_entry(k, parts)
    summary = dict(equilibrium=eq, zero=zero, mechanism=mechanism, window=k["window"],
                   steps=int(parts["zero"][0]["angle"].shape[0]), smooth=k["smooth"],
                   band=k["band"], batch_size=cfg.batch_size)  # fmt: skip
    return study.Report(summary, COLUMNS, rows(eq, zero, mechanism), figure(parts, k, fans))


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
