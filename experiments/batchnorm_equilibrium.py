"""Rotational equilibrium: does weight decay fix the per-step rotation of BatchNorm-preceded units?

Claim: a BatchNorm-preceded kernel is scale-invariant, so decay only sets its norm, hence its
effective learning rate (van Laarhoven 2017; Zhang et al. 2019), and at a constant η each unit's
RMS angle per step settles at a closed form (Kosson et al. 2024, "Rotational Equilibrium"):
√(2ηλ(1−β₁)/(1+β₁)) adam+wd, √(2ηλ/(1+μ)) momentum+l2, √(2ηλ(1−μ)/(1+μ)) momentum+wd; adam+l2:
θ = (2·k^{3/2}·√C·η²λ/Γ)^{1/3} (k = (1−β₁)/(1+β₁), C fan-in, Γ Adam's scale-free gradient scale;
derived in docs/studies/batchnorm_equilibrium.md). Without decay ‖W‖² grows by η²‖g‖² per SGD step;
a no-decay run rescaled every step to the decayed run's unit norms ends as the decayed run does.

Command: ``python experiments/batchnorm_equilibrium.py`` (Fashion-MNIST; ``--smoke``: digits).
Runtime: 355 s at full size on the 2-core machine (before this rewrite; one sweep per arm now).

Verdict (last full run): Kosson's forms reproduced (within 1 % heavy ball, 6.4 % AdamW); adam+l2
partly (λ^{1/3} scaling, no steady state); the λ = 0 growth and the mechanism test reproduced.

Design in :func:`get_config`, rules in ``RULES``. On ``sweep()``'s hooks now: one sweep per arm
and replicate; rescaling is an optax transform, Adam's Γ via a probe parameter (``Probed``);
replicate r loads its data with data_seed + r as its sweeps do (before: seed 0 for every replicate).
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import wdjax
from wdjax import Decay, study
from wdjax.analysis import plots
from wdjax.engine.models import MLP
from wdjax.study import replicates

PROBE = "probe"  # Γ_eff and the decay-dominated share per layer, written by the optimizer
TESTS = ("test_loss", "test_acc")
KINDS = ("angle", "unit_norm", "growth", "step_sq", "gamma", "decay_frac", "units")
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
    return dict(dataset="fashion_mnist", val_size=0, batchnorm=True, epochs=14,
                replicates=6, arms=arms, mult=4.0, zero=("sgd", 0.1), b1=0.9, rules=RULES,
                mechanism=("momentum", "l2", 1e-2, 0.1), margin=(0.005, 0.01), window=1500,
                smooth=200, band=0.1)  # fmt: skip


def smoke(config: dict) -> dict:
    return dict(dataset="digits", epochs=2, replicates=2, window=8, smooth=4)


def predicted(optimizer: str, reg: str, eta: float, lam: float, momentum=0.9, b1=0.9,
              gamma=None, fan_in=None) -> float:  # fmt: skip
    """The equilibrium RMS angular update per step (module docstring); adam+l2 needs Γ, C."""
    k = (1 - b1) / (1 + b1)
    if (optimizer, reg) == ("adam", "wd"):
        return math.sqrt(2 * eta * lam * k)
    if (optimizer, reg) == ("momentum", "l2"):
        return math.sqrt(2 * eta * lam / (1 + momentum))
    if (optimizer, reg) == ("momentum", "wd"):
        return math.sqrt(2 * eta * lam * (1 - momentum) / (1 + momentum))
    if (optimizer, reg) == ("adam", "l2"):
        if gamma is None or fan_in is None:
            raise ValueError("adam+l2: the prediction needs the unit's gamma and fan_in")
        return np.cbrt(2 * k**1.5 * math.sqrt(fan_in) * eta**2 * lam / np.asarray(gamma))[()]
    raise ValueError(f"no prediction for optimizer={optimizer!r}, reg={reg!r}")


def adam_gamma(kernel, denom):
    """Γ_j = ‖w_j‖³ / Σ_i (w_ij² / d_ij) per unit j, d = √v̂ + ε (scale-free: d ∝ 1/‖w_j‖)."""
    w = kernel.reshape(-1, kernel.shape[-1])
    sq = jnp.sum(jnp.square(w), axis=0)
    return sq**1.5 / jnp.sum(jnp.square(w) / denom.reshape(w.shape), axis=0)


def effective_gamma(gamma_U):
    """The Γ whose prediction is the RMS of the units' predictions: (mean Γ_j^{-2/3})^{-3/2}."""
    return jnp.mean(gamma_U ** (-2.0 / 3.0), axis=-1) ** -1.5


# --- the traced pieces: model, optimizer, records --------------------------------------------


class Probed(MLP):
    """The MLP plus a parameter the loss never sees: the optimizer writes Adam's per-layer Γ_eff
    and decay-dominated share into it, for ``record`` (which sees parameters, not the optimizer
    state). Its gradient is 0; the other parameters initialize and train as the MLP's."""

    @nn.compact
    def __call__(self, x, train: bool):
        self.param(PROBE, nn.initializers.zeros, (2, len(self.hidden)))
        return super().__call__(x, train)


def measure(params, opt_state, strength, layers, b2=0.999, eps=1e-8):
    """[2, layers]: Γ_eff and the share of weights with λ|w| ≥ d/2 (decay makes half of Adam's
    denominator) after the update; zeros without Adam state."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, "nu"))
             if hasattr(x, "nu")]  # fmt: skip
    if not found:
        return jnp.zeros((2, len(layers)))
    corr = 1 - b2 ** found[0].count.astype(jnp.float32)
    d = {n: jnp.sqrt(found[0].nu[n]["kernel"] / corr) + eps for n in layers}
    return jnp.stack([jnp.stack([effective_gamma(adam_gamma(params[n], d[n])),
                                 jnp.mean(strength * jnp.abs(params[n]) >= d[n] / 2)])
                      for n in layers], axis=1)  # fmt: skip


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: one program per instance
class Observed:
    """``decay``'s update, then (given ``targets`` {layer: [steps, units]}) each unit of the
    ``layers`` kernels set to its target norm after the step, and :func:`measure` into the probe.
    Optimizer state is left as it is on rescaling."""

    decay: Decay
    layers: tuple
    targets: dict | None = dataclasses.field(default=None, repr=False)

    def __call__(self, learning_rate, strength, **traced) -> optax.GradientTransformation:
        flags = dict.fromkeys(("adam", "coupled", "cosine", "momentum"), 0.0)  # hooks.check
        inner = self.decay(learning_rate, strength, **{**flags, **traced})  # passes no flags

        def update(grads, state, params):
            u, s = inner.update(grads, state[0], params)
            new = {n: params[n]["kernel"] + u[n]["kernel"] for n in self.layers}
            u = dict(u)
            for n in self.layers if self.targets is not None else ():
                v = new[n]
                new[n] = (
                    v
                    * (jnp.asarray(self.targets[n])[state[1]] / jnp.linalg.norm(v, axis=0))[None, :]
                )
                u[n] = dict(u[n], kernel=new[n] - params[n]["kernel"])
            u[PROBE] = measure(new, s, strength, self.layers) - params[PROBE]
            return u, (s, state[1] + 1)

        return optax.GradientTransformation(lambda p: (inner.init(p), jnp.int32(0)), update)


def layers_of(params) -> list[str]:
    """The BatchNorm-preceded kernels: every layer with a kernel except the output head."""
    return [k for k, v in params.items() if k != "head" and isinstance(v, dict) and "kernel" in v]


def record(before, after, grads, batch_stats) -> dict:
    """Per BatchNorm-preceded kernel: RMS angle over units, RMS unit norm, ‖W'‖² − ‖W‖²,
    ‖W' − W‖², and the probe's Γ_eff and decay-dominated share."""
    out = {}
    for i, n in enumerate(layers_of(after)):
        w0, w1 = before[n]["kernel"], after[n]["kernel"]
        sq0, sq1 = jnp.sum(jnp.square(w0), axis=0), jnp.sum(jnp.square(w1), axis=0)
        out[f"angle/{n}"] = jnp.sqrt(jnp.mean(jnp.square(wdjax.unit_angular_update(w0, w1))))
        out[f"unit_norm/{n}"] = jnp.sqrt(jnp.mean(sq1))
        out[f"growth/{n}"] = jnp.sum(sq1 - sq0)
        out[f"step_sq/{n}"] = jnp.sum(jnp.square(w1 - w0))
        out[f"gamma/{n}"], out[f"decay_frac/{n}"] = after[PROBE][0, i], after[PROBE][1, i]
    return out


def record_units(before, after, grads, batch_stats) -> dict:
    """:func:`record` plus every unit's norm (the targets of the rescaled run)."""
    units = {f"units/{n}": jnp.linalg.norm(after[n]["kernel"], axis=0) for n in layers_of(after)}
    return {**record(before, after, grads, batch_stats), **units}


# --- measurements from the records: {key: [steps, replicates]} per member --------------------


def equilibrium(rec, window: int, columns) -> tuple[np.ndarray, dict]:
    """√(mean over the last ``window`` steps and over layers of RMS-angle²) per member column."""
    angles = {k.split("/", 1)[1]: v[-window:, columns] for k, v in rec.items() if "angle/" in k}
    per_layer = {name: np.sqrt(np.mean(np.square(a), axis=0)) for name, a in angles.items()}
    return np.sqrt(np.mean([np.square(v) for v in per_layer.values()], axis=0)), per_layer


def pooled_angle(rec) -> np.ndarray:
    """[steps, R]: the per-step RMS angle pooled over layers."""
    return np.sqrt(np.mean([np.square(v) for k, v in rec.items() if "angle/" in k], axis=0))


def smoothed(v, w: int) -> np.ndarray:
    """Trailing RMS over ``w`` steps along axis 0: entry t covers steps t − w + 1 … t."""
    c = np.cumsum(np.square(np.asarray(v, float)), axis=0)
    c = np.concatenate([np.zeros((1, *c.shape[1:])), c])
    return np.sqrt((c[w:] - c[:-w]) / w)


def time_to_equilibrium(angle, final: float, smooth: int, band: float) -> float:
    """Steps after which the trailing RMS angle stays within ``band`` of ``final`` for good (the
    step count at the first such point, ≥ ``smooth``; NaN if its last point is outside)."""
    outside = np.flatnonzero(np.abs(smoothed(angle, smooth) / final - 1) > band)
    if outside.size and outside[-1] == smoothed(angle, smooth).size - 1:
        return np.nan
    return float(smooth + (outside[-1] + 1 if outside.size else 0))


def prediction(arm, lam: float, rec, fans: dict, b1: float, mu: float, window=None):
    """Predicted angle per replicate (adam+l2: from each step's Γ_eff, pooled over the layers
    and over the last ``window`` steps as measured; None: per step)."""
    opt, reg, eta, _ = arm
    if (opt, reg) != ("adam", "l2"):
        return np.full(rec[next(iter(rec))].shape[1], predicted(opt, reg, eta, lam, mu, b1))
    sl = slice(None) if window is None else slice(-window, None)
    sq = [np.square(predicted(opt, reg, eta, lam, mu, b1, rec[f"gamma/{n}"][sl], c))
          for n, c in fans.items()]  # fmt: skip
    return np.sqrt(np.mean(sq, 0) if window is None else np.mean(sq, axis=(0, 1)))


def arm_entry(k, mu, arm, lam, part, fans) -> tuple[dict, tuple]:
    """One (arm, λ)'s summary entry; also its per-replicate (measured, predicted)."""
    (opt, _, eta, _), (rec, loss, acc), w = arm, part, k["window"]
    cols = np.arange(loss.shape[0])
    measured, per_layer = equilibrium(rec, w, cols)
    pred = prediction(arm, lam, rec, fans, k["b1"], mu, w)
    t_eq = np.array([time_to_equilibrium(pooled_angle(rec)[:, j], measured[j], k["smooth"],
                                         k["band"]) for j in cols])  # fmt: skip
    units = {n.split("/")[1]: float(v[-1].mean()) for n, v in rec.items() if "unit_norm/" in n}
    power = 1 if opt == "adam" else 2  # Adam's step is scale-free: η/‖w‖ rotates it
    e = dict(eta=eta, strength=lam, predicted=float(pred.mean()),
             per_layer={n: float(v.mean()) for n, v in per_layer.items()}, unit_norm=units,
             effective_lr={n: eta / u**power for n, u in units.items()})  # fmt: skip
    before = equilibrium({key: v[:-w] for key, v in rec.items()}, w, cols)[0]
    tested(e, measured=measured, ratio=measured / pred, t_eq_steps=t_eq, t_eq=t_eq * eta * lam,
           drift=measured / before, test_loss=loss, test_acc=acc)  # fmt: skip
    if arm[:2] == ("adam", "l2"):
        e.update(
            {key: {} for key in ("per_layer_predicted", "decay_frac_first", "decay_frac_last")}
        )
        for n, c in fans.items():
            p = prediction(arm, lam, {f"gamma/{n}": rec[f"gamma/{n}"]}, {n: c}, k["b1"], mu, w)
            e["per_layer_predicted"][n] = float(p.mean())
            e["decay_frac_first"][n] = float(rec[f"decay_frac/{n}"][:w].mean())
            e["decay_frac_last"][n] = float(rec[f"decay_frac/{n}"][-w:].mean())
    return e, (measured, pred)


def tested(e: dict, **samples) -> None:
    """Add ``name_mean/std/lo/hi`` of each sample over replicates to ``e``."""
    for name, x in samples.items():
        e.update(replicates.summarize(name, x))


def zero_entry(k, rec, loss, acc) -> dict:
    """Without decay: ‖W‖² grows by exactly ‖ΔW‖² per SGD step (g ⟂ W); η/‖w‖² falls."""
    growth = sum(v.sum(0) for key, v in rec.items() if key.startswith("growth/"))
    step_sq = sum(v.sum(0) for key, v in rec.items() if key.startswith("step_sq/"))
    angle = smoothed(pooled_angle(rec), k["window"])
    e = dict(optimizer=k["zero"][0], eta=k["zero"][1], eff_lr_ratio={}, unit_norm={})
    tested(e, growth_ratio=growth / step_sq, first_angle=angle[0], last_angle=angle[-1],
           test_loss=loss, test_acc=acc)  # fmt: skip
    for name, u in ((key.split("/", 1)[1], v) for key, v in rec.items() if "unit_norm/" in key):
        e["eff_lr_ratio"][name] = replicates.summarize("ratio", (u[0] / u[-1]) ** 2)
        e["unit_norm"][name] = float(u[-1].mean())
    return e


def mechanism_entry(k, parts: dict) -> dict:
    """Decayed, rescaled and plain members, paired by replicate, against the margin."""
    opt, reg, eta, lam = k["mechanism"]
    e = dict(optimizer=opt, reg=reg, eta=eta, strength=lam, schedule="cosine",
             margin_acc=k["margin"][0], margin_loss=k["margin"][1])  # fmt: skip
    groups = ("decayed", "rescaled", "plain")
    for g in groups:
        _, loss, acc = parts[g]
        e[g] = {}
        tested(e[g], test_loss=loss, test_acc=acc)
        if g != "decayed":
            e[g].update(replicates.summarize("test_loss", loss, parts["decayed"][1]))
            e[g].update(replicates.summarize("test_acc", acc, parts["decayed"][2]))
    for m, margin in zip(("acc", "loss"), k["margin"], strict=True):
        d = e["rescaled"]
        e[f"verdict_{m}"] = study.verdict((d[f"test_{m}_diff_lo"], d[f"test_{m}_diff_hi"]), margin)
    units = {g: np.stack([v for n, v in parts[g][0].items() if "unit_norm/" in n]) for g in groups}
    e["norm_mismatch"] = float(np.max(np.abs(units["rescaled"] / units["decayed"] - 1)))
    angle = {g: np.sqrt(np.mean(np.square(pooled_angle(parts[g][0])), axis=0)) for g in groups}
    tested(e, angle_ratio=angle["rescaled"] / angle["decayed"],
           plain_angle_ratio=angle["plain"] / angle["decayed"])  # fmt: skip
    return e


# --- the study: sweeps, summary, table, figure ------------------------------------------------

COLUMNS = ["member", "η", "λ", "predicted angle", "measured angle", "measured / predicted",
           "θ(4λ)/θ(λ) (predicted)", "steps to equilibrium × ηλ", "drift", "test loss",
           "test acc", "Δ test loss vs decayed", "Δ test acc vs decayed"]  # fmt: skip


def rows(eq: dict, zero: dict, mech: dict) -> list[list]:
    out = [[n, f"{e['eta']:g}", f"{e['strength']:g}", f"{e['predicted']:.4f}",
            study.ci(e, "measured", 4), study.ci(e, "ratio"), study.ci(e, "scaling")
            + f" ({e['predicted_scaling_mean']:.3f})" if "scaling_mean" in e else "–",
            study.ci(e, "t_eq", 2), study.ci(e, "drift"), study.ci(e, "test_loss"),
            study.ci(e, "test_acc", 4), "–", "–"] for n, e in eq.items()]  # fmt: skip
    out.append(
        [
            "sgd, λ = 0 (last window)",
            f"{zero['eta']:g}",
            "0",
            "–",
            study.ci(zero, "last_angle", 4),
            "growth ratio " + study.ci(zero, "growth_ratio", 5),
            "–",
            "–",
            "–",
            study.ci(zero, "test_loss"),
            study.ci(zero, "test_acc", 4),
            "–",
            "–",
        ]
    )
    for g in ("decayed", "rescaled", "plain"):
        d, diff = mech[g], g != "decayed"
        out.append([f"mechanism: {g}", f"{mech['eta']:g}", f"{mech['strength'] * (not diff):g}",
                    "–", "–", "–", "–", "–", "–", study.ci(d, "test_loss"),
                    study.ci(d, "test_acc", 4), study.ci(d, "test_loss_diff", 4) if diff else "–",
                    study.ci(d, "test_acc_diff", 4) if diff else "–"])  # fmt: skip
    return out


def figure(parts: dict, k: dict, fans: dict):
    """Per panel: the RMS angle per step (trailing RMS over ``smooth`` steps; dashed: predicted)
    and dense_0's RMS unit norm; means over replicates with 95 % t bands."""
    plt, w = study.pyplot(), k["smooth"]
    names = [f"{a[0]}+{a[1]}" for a in k["arms"]]
    panels = [[n, f"{n}@{k['mult']:g}λ"] for n in names] + [
        ["zero"],
        ["decayed", "rescaled", "plain"],
    ]
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.8), squeeze=False)
    for c, members in enumerate(panels):
        for i, m in enumerate(members):
            rec, arm = (
                parts[m][0],
                next((a for a in k["arms"] if m.startswith(f"{a[0]}+{a[1]}")), None),
            )
            angle = smoothed(pooled_angle(rec), w)
            t = np.arange(angle.shape[0]) + w
            plots.band(axes[0, c], t, angle.T, m, color=f"C{i}", marker=None, lw=0.9)
            if arm is not None:
                lam = arm[3] * (k["mult"] if "@" in m else 1)
                pred = prediction(arm, lam, rec, fans, k["b1"], 0.9)
                pred = smoothed(pred, w) if pred.ndim == 2 else np.broadcast_to(pred, angle.shape)
                axes[0, c].plot(t, pred.mean(1), color=f"C{i}", ls="--", lw=0.8)
            u = rec["unit_norm/dense_0"]
            plots.band(axes[1, c], np.arange(u.shape[0]), u.T, m, color=f"C{i}", marker=None)
        axes[0, c].set(title=" / ".join(members), ylabel="RMS angle per step (rad)", yscale="log")
        axes[1, c].set(xlabel="step", ylabel="RMS unit norm, dense_0", yscale="log")
        axes[0, c].legend(fontsize=7)
    fig.suptitle(f"BatchNorm-preceded units: RMS angle (dashed: predicted) and norm; mean over "
                 f"{k['replicates']} replicates, bands: 95 % Student-t intervals")  # fmt: skip
    fig.tight_layout()
    return fig


def arm_config(base, opt, reg, eta, lams, cosine, mu):
    """One arm's sweep: ``lams`` at η through :class:`Decay`'s traced flags."""
    flags = dict(adam=opt == "adam", coupled=reg == "l2", cosine=cosine, momentum=mu)
    return dataclasses.replace(
        base,
        strengths=tuple(lams),
        lrs=(eta,),
        axes=tuple((n, (float(v),)) for n, v in flags.items()),
    )


def parts_of(runs: list, names: list) -> dict:
    """{member name: (records {key: [steps, R]}, test loss [R], test accuracy [R])}."""
    keys = [key for key in runs[0].history if key.split("/")[0] in KINDS[:-1]]
    out = {}
    for j, name in enumerate(names):
        rec = {key: np.stack([np.asarray(r.history[key][j], float).reshape(-1) for r in runs], 1)
               for key in keys}  # fmt: skip
        out[name] = (rec, *(np.array([r.history[m][j, -1] for r in runs]) for m in TESTS))
    return out


def run(ctx: study.Context) -> study.Report:
    k, cfg, mu = ctx.knobs, ctx.config, ctx.config.momentum
    ds = study.load_data(cfg)
    layers = tuple(f"dense_{i}" for i in range(len(cfg.hidden)))
    fans = dict(zip(layers, [int(np.prod(ds.x_train.shape[1:])), *cfg.hidden[:-1]], strict=True))
    decay = Decay(cfg.mask, ds.x_train.shape[0] // cfg.batch_size * cfg.epochs)
    model = Probed(ds.num_classes, cfg.hidden, batchnorm=True, bn_epsilon=0.0)  # exact invariance
    base = dataclasses.replace(cfg, model=model, optimizer=Observed(decay, layers),
                               eval_every=cfg.epochs)  # fmt: skip
    arms = {f"{o}+{r}": arm_config(base, o, r, eta, (lam, lam * k["mult"]), False, mu)
            for o, r, eta, lam in k["arms"]}  # fmt: skip
    arms["zero"] = arm_config(base, "sgd", "l2", k["zero"][1], (0.0,), False, 0.0)
    results = ctx.sweeps(arms, record=record, record_every="step")
    opt, reg, eta, lam = k["mechanism"]
    mech = arm_config(base, opt, reg, eta, (lam, 0.0), True, mu)
    results |= ctx.sweeps({"mechanism": mech}, record=record_units, record_every="step")
    results["rescaled"] = []
    for r, c in enumerate(replicates.replicate_configs(mech, ctx.replicates)):
        h = results["mechanism"][r].history
        tx = Observed(decay, layers, {n: h[f"units/{n}"][0].reshape(-1, h[f"units/{n}"].shape[-1])
                                      for n in layers})  # fmt: skip
        c = dataclasses.replace(c, strengths=(0.0,), optimizer=tx)
        results["rescaled"] += ctx.sweeps({f"rescaled.r{r}": c}, 1, record=record,
                                          record_every="step")[f"rescaled.r{r}"]  # fmt: skip
    parts = {}
    for name, runs in results.items():
        mult = [name, f"{name}@{k['mult']:g}λ"] if name in arms and name != "zero" else [name]
        parts |= parts_of(runs, ["decayed", "plain"] if name == "mechanism" else mult)
    eq = {}
    for arm in k["arms"]:
        n, top = f"{arm[0]}+{arm[1]}", f"{arm[0]}+{arm[1]}@{k['mult']:g}λ"
        eq[n], base_ = arm_entry(k, mu, arm, arm[3], parts[n], fans)
        eq[top], mp = arm_entry(k, mu, arm, arm[3] * k["mult"], parts[top], fans)
        tested(eq[top], scaling=mp[0] / base_[0], predicted_scaling=mp[1] / base_[1])
    zero, mechanism = zero_entry(k, *parts["zero"]), mechanism_entry(k, parts)
    summary = dict(equilibrium=eq, zero=zero, mechanism=mechanism, window=k["window"],
                   steps=int(parts["zero"][0]["angle/dense_0"].shape[0]), smooth=k["smooth"],
                   band=k["band"], batch_size=cfg.batch_size)  # fmt: skip
    return study.Report(summary, COLUMNS, rows(eq, zero, mechanism), figure(parts, k, fans))


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
