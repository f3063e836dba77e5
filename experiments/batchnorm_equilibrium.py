"""Rotational equilibrium: does weight decay fix the per-step rotation of BatchNorm-preceded units?

Claim: a BatchNorm-preceded kernel is scale-invariant, so decay only sets its norm, hence its
effective learning rate (van Laarhoven 2017; Zhang et al. 2019), and at a constant η each unit's
RMS angle per step settles at a closed form (Kosson et al. 2024, "Rotational Equilibrium"):
√(2ηλ(1−β₁)/(1+β₁)) adam+wd, √(2ηλ/(1+μ)) momentum+l2, √(2ηλ(1−μ)/(1+μ)) momentum+wd; adam+l2:
θ = (2·k^{3/2}·√C·η²λ/Γ)^{1/3} (k = (1−β₁)/(1+β₁), C fan-in, Γ Adam's scale-free gradient scale;
derived in docs/studies/batchnorm_equilibrium.md). Without decay ‖W‖² grows by η²‖g‖² per SGD step;
a no-decay run rescaled every step to the decayed run's unit norms ends as the decayed run does.
Command: ``python experiments/batchnorm_equilibrium.py`` (Fashion-MNIST; ``--smoke``: digits);
355 s at full size on the 2-core machine (before the rewrite on sweep()'s hooks).
Verdict (last full run): Kosson's forms reproduced (within 1 % heavy ball, 6.4 % AdamW); adam+l2
partly (λ^{1/3} scaling, no steady state); the λ = 0 growth and the mechanism test reproduced.
Replicate r loads its data with data_seed + r as its sweeps do (before the rewrite: seed 0 for all).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wdjax import Decay, study, unit_angular_update
from wdjax.analysis import plots
from wdjax.analysis.equilibrium import (
    adam_gamma,
    effective_gamma,
    equilibrium,
    predicted,
    rms,
    smoothed,
    time_to_equilibrium,
)
from wdjax.engine.models import MLP
from wdjax.study import replicates

TESTS, GROUPS = ("test_loss", "test_acc"), ("decayed", "rescaled", "plain")
KINDS = ("angle", "unit_norm", "growth", "step_sq", "gamma", "decay_frac")  # records per layer
RULES = dict(equilibrium="RMS angle over the last `window` steps, pooled over both BatchNorm-"
             "preceded layers; drift = that / the same over the window before (1 at a steady "
             "state)", time_to_equilibrium="steps after which the trailing RMS over `smooth` steps "
             "stays within ±`band` of the equilibrium angle to the end (NaN if it ends outside), "
             "reported × ηλ", mechanism="momentum+l2 with a cosine η(t): decayed; rescaled (λ = 0, "
             "each unit set to the decayed unit's norm after every step, optimizer state "
             "untouched); plain (λ = 0)", margin="rescaled − decayed within ±0.005 test accuracy "
             "and ±0.01 test loss (95 % interval inside the margin: equivalent)", interval="95 % "
             "Student-t over replicates; differences and ratios paired by replicate")  # fmt: skip
CELLS = {"measured angle": ("measured", 4), "λ = 0: last-window angle": ("last_angle", 4),
         "measured / predicted": ("ratio", 3), "λ = 0: ‖W‖² growth / Σ‖ΔW‖²": ("growth_ratio", 5),
         "θ(4λ)/θ(λ)": ("scaling", 3), "predicted θ(4λ)/θ(λ)": ("predicted_scaling", 3),
         "steps to equilibrium × ηλ": ("t_eq", 2), "drift": ("drift", 3), "test loss":
         ("test_loss", 3), "test acc": ("test_acc", 4), "Δ test loss vs decayed":
         ("test_loss_diff", 4), "Δ test acc vs decayed": ("test_acc_diff", 4)}  # fmt: skip


def get_config() -> dict:
    """MLP 784-64-64-10, BatchNorm (ε = 0); ``arms`` (optimizer, reg, η, λ) at λ and mult·λ."""
    arms = [("adam", "wd", 1e-3, 1.0), ("momentum", "l2", 1e-2, 0.1),
            ("momentum", "wd", 1e-2, 0.1), ("adam", "l2", 1e-3, 0.2)]  # fmt: skip
    return dict(dataset="fashion_mnist", val_size=0, batchnorm=True, epochs=14, decayed="hidden",
                replicates=6, arms=arms, mult=4.0, zero=("sgd", 0.1), b1=0.9, rules=RULES,
                mechanism=("momentum", "l2", 1e-2, 0.1), margin=(0.005, 0.01), window=1500,
                smooth=200, band=0.1)  # fmt: skip


def smoke(config: dict) -> dict:
    return dict(dataset="digits", epochs=2, replicates=2, window=8, smooth=4)


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


def tested(e: dict, base=None, **samples) -> dict:
    """``e`` plus ``name_mean/std/lo/hi`` of each sample (and ``name_diff*`` against ``base``)."""
    return e | {k: v for n, x in samples.items()
                for k, v in replicates.summarize(n, x, base and base[n]).items()}  # fmt: skip


def arm_entries(k, mu, arm, parts, fans) -> dict:
    """An arm's summary entries at λ and mult·λ (with the ratios of the two's angles)."""
    (opt, reg, eta, lam), w, c = arm, k["window"], np.array(list(fans.values()), float)
    named, l2 = lambda v: dict(zip(fans, map(float, v), strict=True)), (opt, reg) == ("adam", "l2")
    out, got = {}, []
    for n, x in ((f"{opt}+{reg}", lam), (f"{opt}+{reg}@{k['mult']:g}λ", lam * k["mult"])):
        p, gamma = parts[n], parts[n]["gamma"] if l2 else None  # adam+l2: each step's Γ_eff
        pred = equilibrium(np.broadcast_to(predicted(opt, reg, eta, x, mu, k["b1"], gamma, c),
                                           p["angle"].shape), w)  # fmt: skip
        measured, per_layer = equilibrium(p["angle"], w)
        t_eq = np.array([time_to_equilibrium(rms(p["angle"][:, j], -1), m, k["smooth"], k["band"])
                         for j, m in enumerate(measured)])  # fmt: skip
        e = dict(eta=eta, strength=x, predicted=float(pred[0].mean()), per_layer=named(
            per_layer.mean(0)), unit_norm=named(p["unit_norm"][-1].mean(0)))  # fmt: skip
        if l2:
            e |= dict(per_layer_predicted=named(pred[1].mean(0)),
                      decay_frac_first=named(p["decay_frac"][:w].mean((0, 1))),
                      decay_frac_last=named(p["decay_frac"][-w:].mean((0, 1))))  # fmt: skip
        out[n] = tested(e, measured=measured, ratio=measured / pred[0], t_eq=t_eq * eta * x,
                        drift=measured / equilibrium(p["angle"][:-w], w)[0],
                        test_loss=p["test_loss"], test_acc=p["test_acc"])  # fmt: skip
        got.append((measured, pred[0]))
    (m0, p0), (m1, p1) = got
    return out | {n: tested(out[n], scaling=m1 / m0, predicted_scaling=p1 / p0)}


def controls(k, fans, parts: dict) -> tuple[dict, dict]:
    """λ = 0: ‖W‖² grows by exactly ‖ΔW‖² per SGD step (g ⟂ W), η/‖w‖² falls; the mechanism:
    decayed, rescaled and plain members, paired by replicate, against the margin."""
    p, (opt, reg, eta, lam), decayed = parts["zero"], k["mechanism"], parts["decayed"]
    angle, u = smoothed(rms(p["angle"], -1), k["window"]), p["unit_norm"]
    z = dict(optimizer=k["zero"][0], eta=k["zero"][1], unit_norm={}, eff_lr_ratio={})
    for i, n in enumerate(fans):
        z["eff_lr_ratio"][n] = replicates.summarize("ratio", (u[0, :, i] / u[-1, :, i]) ** 2)
        z["unit_norm"][n] = float(u[-1, :, i].mean())
    z = tested(z, growth_ratio=p["growth"].sum((0, 2)) / p["step_sq"].sum((0, 2)),
               first_angle=angle[0], last_angle=angle[-1], test_loss=p["test_loss"],
               test_acc=p["test_acc"])  # fmt: skip
    e = dict(optimizer=opt, reg=reg, eta=eta, strength=lam, schedule="cosine",
             margin_acc=k["margin"][0], margin_loss=k["margin"][1])  # fmt: skip
    for g in GROUPS:
        e[g] = tested({}, None if g == "decayed" else decayed, **{m: parts[g][m] for m in TESTS})
    d, angle = e["rescaled"], {g: rms(parts[g]["angle"], (0, 2)) for g in GROUPS}
    for m, margin in zip(("acc", "loss"), k["margin"], strict=True):
        e[f"verdict_{m}"] = study.verdict((d[f"test_{m}_diff_lo"], d[f"test_{m}_diff_hi"]), margin)
    e["norm_mismatch"] = float(np.max(np.abs(parts["rescaled"]["unit_norm"]
                                             / decayed["unit_norm"] - 1)))  # fmt: skip
    return z, tested(e, angle_ratio=angle["rescaled"] / angle["decayed"],
                     plain_angle_ratio=angle["plain"] / angle["decayed"])  # fmt: skip


def figure(parts: dict, eq: dict, k: dict):
    """Per panel the trailing RMS angle of BatchNorm-preceded units over ``smooth`` steps (dashed:
    predicted), the mean over replicates with its 95 % Student-t band."""
    plt, w = study.pyplot(), k["smooth"]
    panels = [[n, f"{n}@{k['mult']:g}λ"] for n in eq if "@" not in n] + [["zero"], list(GROUPS)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, members in zip(axes[0], panels, strict=True):
        for i, m in enumerate(members):
            angle = smoothed(rms(parts[m]["angle"], -1), w)
            plots.band(ax, np.arange(len(angle)) + w, angle.T, m, color=f"C{i}", marker=None)
            if m in eq:
                ax.axhline(eq[m]["predicted"], color=f"C{i}", ls="--", lw=0.8)
        ax.set(title=" / ".join(members), xlabel="step", ylabel="RMS angle per step (rad)",
               yscale="log")  # fmt: skip
        ax.legend(fontsize=7)
    return fig.tight_layout() or fig


def arm_config(base, opt, reg, eta, lams, cosine, mu):
    """One arm's sweep: ``lams`` at η through :class:`Decay`'s traced flags."""
    flags = dict(adam=opt == "adam", coupled=reg == "l2", cosine=cosine, momentum=mu)
    return dataclasses.replace(base, strengths=tuple(lams), lrs=(eta,),
                               axes=tuple((n, (float(v),)) for n, v in flags.items()))  # fmt: skip


def run(ctx: study.Context) -> study.Report:
    k, cfg, mu, top = ctx.knobs, ctx.config, ctx.config.momentum, f"@{ctx.knobs['mult']:g}λ"
    ds = study.load_data(cfg)
    fans = dict(zip([f"dense_{i}" for i in range(len(cfg.hidden))], [int(np.prod(
        ds.x_train.shape[1:])), *cfg.hidden[:-1]], strict=True))  # fmt: skip
    decay = Decay(k["decayed"], ds.x_train.shape[0] // cfg.batch_size * cfg.epochs)
    model = MLP(ds.num_classes, cfg.hidden, batchnorm=True, bn_epsilon=0.0)  # exact invariance
    base = dataclasses.replace(cfg, model=model, optimizer=Observed(decay), eval_every=cfg.epochs)
    arms = {f"{o}+{r}": arm_config(base, o, r, eta, (lam, lam * k["mult"]), False, mu)
            for o, r, eta, lam in k["arms"]}  # fmt: skip
    arms["zero"] = arm_config(base, "sgd", "l2", k["zero"][1], (0.0,), False, 0.0)
    results = ctx.sweeps(arms, record=record, record_every="step")
    mech = arm_config(base, *k["mechanism"][:3], (0.0, k["mechanism"][3]), True, mu)  # ascending
    results |= ctx.sweeps({"mechanism": mech}, record=lambda *a: record(*a, units=True),
                          record_every="step")  # fmt: skip
    h = [x.history for x in results["mechanism"]]  # member 1: the decayed one's norms per step
    rescaled = {f"rescaled.r{r}": dataclasses.replace(c, strengths=(0.0,), optimizer=Observed(
        decay, {n: np.reshape(h[r][f"units/{n}"][1], (-1, h[r][f"units/{n}"].shape[-1]))
                for n in fans})) for r, c in enumerate(replicates.replicate_configs(
                    mech, ctx.replicates))}  # fmt: skip
    rescaled = ctx.sweeps(rescaled, 1, record=record, record_every="step")
    results["rescaled"] = [x for runs in rescaled.values() for x in runs]
    names = {"mechanism": ["plain", "decayed"], "zero": ["zero"], "rescaled": ["rescaled"]}
    parts = {m: {kind: np.moveaxis(np.array([[np.ravel(x.history[f"{kind}/{n}"][j])
                                              for n in fans] for x in runs], float), -1, 0)
                 for kind in KINDS} | {t: np.array([x.history[t][j, -1] for x in runs])
                                       for t in TESTS}
             for n, runs in results.items()
             for j, m in enumerate(names.get(n, [n, n + top]))}  # fmt: skip
    eq = {n: e for arm in k["arms"] for n, e in arm_entries(k, mu, arm, parts, fans).items()}
    zero, mech = controls(k, fans, parts)
    summary = dict(equilibrium=eq, zero=zero, mechanism=mech, window=k["window"],
                   steps=int(parts["zero"]["angle"].shape[0]), smooth=k["smooth"],
                   band=k["band"], batch_size=cfg.batch_size)  # fmt: skip
    named = eq | {"sgd, λ = 0": zero} | {f"mechanism: {g}": mech[g] for g in GROUPS}
    rows = [[n, f"{e['predicted']:.4f}" if "predicted" in e else "–",
             *(study.ci(e, key, d) if f"{key}_lo" in e else "–" for key, d in CELLS.values())]
            for n, e in named.items()]  # fmt: skip
    return study.Report(summary, ["member", "predicted angle", *CELLS], rows, figure(parts, eq, k))


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
