"""Rotational equilibrium: does weight decay fix the per-step rotation of BatchNorm-preceded units?

Claim: a BatchNorm-preceded kernel is scale-invariant, so decay only sets its norm, hence its
effective learning rate (van Laarhoven 2017; Zhang et al. 2019), and at a constant η each unit's
RMS angle per step settles at a closed form (Kosson et al. 2024, "Rotational Equilibrium"):
√(2ηλ(1−β₁)/(1+β₁)) adam+wd, √(2ηλ/(1+μ)) momentum+l2, √(2ηλ(1−μ)/(1+μ)) momentum+wd; adam+l2:
θ = (2·k^{3/2}·√C·η²λ/Γ)^{1/3} (k = (1−β₁)/(1+β₁), C fan-in, Γ Adam's scale-free gradient scale;
derived in wdjax.analysis.equilibrium). Without decay ‖W‖² grows by η²‖g‖² per SGD step;
a no-decay run rescaled every step to the decayed run's unit norms ends as the decayed run does.
Command: ``python experiments/batchnorm_equilibrium.py`` (Fashion-MNIST; ``--smoke``: digits);
19 minutes on the shared 2-core machine at load 5–9 (about 6 quiet, before the rewrite).
Verdict: heavy ball reproduced; AdamW not at ηλ = 1e-3 (−6.6 %); adam+l2 not testable as set up.
"""

import dataclasses

import numpy as np

from wdjax import Decay, study
from wdjax.analysis import plots
from wdjax.analysis.equilibrium import equilibrium, predicted, rms, smoothed, time_to_equilibrium
from wdjax.engine.models import MLP
from wdjax.study import prose, replicates
from wdjax.study.equilibrium import KINDS, Observed, arm_config, record, trace

TESTS, GROUPS = ("test_loss", "test_acc"), ("decayed", "rescaled", "plain")
MARGIN, GROWTH_MARGIN = 0.05, 1e-3  # fixed before the run: RULES labels
BOUNDS = dict(measured=(0, np.pi), test_acc=(0, 1))  # other samples here are ≥ 0
PREVIOUS = dict(adam_wd_ratio=[0.936, 0.935, 0.938], adam_l2_drift=[1.415, 1.368, 1.461])
RULES = dict(equilibrium="RMS angle over the last `window` steps, pooled over both BatchNorm-"
             "preceded layers; drift = that / the same over the window before (1 at a steady "
             "state)", time_to_equilibrium="steps after which the trailing RMS over `smooth` steps "
             "stays within ±`band` of the equilibrium angle to the end (NaN if it ends outside), "
             "reported × ηλ", mechanism="momentum+l2 with a cosine η(t): decayed; rescaled (λ = 0, "
             "each unit set to the decayed unit's norm after every step, optimizer state "
             "untouched); plain (λ = 0)", margin="rescaled − decayed within ±0.005 test accuracy "
             "and ±0.01 test loss (95 % interval inside the margin: equivalent)", interval="95 % "
             "Student-t over replicates, clipped to the quantity's range (angles [0, π], accuracy "
             "[0, 1], the rest ≥ 0); differences and ratios paired by replicate", label=f"drift "
             f"not inside 1 ± {MARGIN}: not testable as set up; else measured/predicted inside 1 "
             f"± {MARGIN} reproduced, wholly outside not reproduced, else inconclusive; the same "
             "for θ(4λ)/θ(λ) ÷ its prediction (both members steady); λ = 0: growth/Σ‖ΔW‖² inside "
             f"1 ± {GROWTH_MARGIN} and η/‖w‖² falling; mechanism: equivalent in both "
             "metrics")  # fmt: skip
CELLS = {"measured angle": ("measured", 4), "λ = 0: last-window angle": ("last_angle", 4),
         "measured / predicted": ("ratio", 3), "λ = 0: ‖W‖² growth / Σ‖ΔW‖²": ("growth_ratio", 5),
         "θ(4λ)/θ(λ)": ("scaling", 3), "predicted θ(4λ)/θ(λ)": ("predicted_scaling", 3),
         "steps to equilibrium × ηλ": ("t_eq", 2), "drift": ("drift", 3), "test loss": ("test_loss",
         3), "test acc": ("test_acc", 4), "Δ test loss vs decayed": ("test_loss_diff", 4),
         "Δ test acc vs decayed": ("test_acc_diff", 4)}  # fmt: skip


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


def tested(e: dict, base=None, **samples) -> dict:
    """``e`` + ``name_mean/std/lo/hi`` (clipped to ``BOUNDS``, else ≥ 0), ``name_diff*`` vs base."""
    e = e | {k: v for n, x in samples.items()
             for k, v in replicates.summarize(n, x, base and base[n]).items()}  # fmt: skip
    for n, (lo, hi) in ((n, BOUNDS.get(n, (0, np.inf))) for n in samples):
        e |= {f"{n}_lo": max(e[f"{n}_lo"], lo), f"{n}_hi": min(e[f"{n}_hi"], hi)}  # NaN stays
    return e


def labels(eq: dict, zero: dict, mech: dict) -> dict:
    """The RULES labels of every member, the scaling of each arm, λ = 0 and the mechanism."""

    def label(e: dict, name: str, margin: float = MARGIN) -> str:  # inside 1 ± margin?
        o = study.outcome((e[f"{name}_lo"], e[f"{name}_hi"]), "equivalent", margin, ref=1.0)
        return "not reproduced" if o == "contradicted" else o

    def worst(labels) -> str:  # the label of several checks that must all hold
        return next((w for w in ("not testable as set up", "not reproduced", "contradicted",
                                 "inconclusive") if w in labels), "reproduced")  # fmt: skip

    steady = {n: label(e, "drift") == "reproduced" for n, e in eq.items()}  # RULES["label"]
    out = {n: label(e, "ratio") if steady[n] else "not testable as set up" for n, e in eq.items()}
    out |= {f"{n} scaling": worst([label(e, "scaling_vs_predicted")] + ["not testable as set up"]
                                  * (not steady[n] or not steady[n.split("@")[0]]))
            for n, e in eq.items() if "scaling_vs_predicted_lo" in e}  # fmt: skip
    falls = [study.outcome((r["ratio_lo"], r["ratio_hi"]), "lower", ref=1.0)
             for r in zero["eff_lr_ratio"].values()]  # fmt: skip
    out["zero"] = worst([label(zero, "growth_ratio", GROWTH_MARGIN), *falls])
    out["mechanism"] = worst([study.outcome([mech["rescaled"][f"test_{m}_diff_{s}"] for s in (
        "lo", "hi")], "equivalent", mech[f"margin_{m}"]) for m in ("acc", "loss")])  # fmt: skip
    return out


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
    return out | {n: tested(out[n], scaling=m1 / m0, predicted_scaling=p1 / p0,
                            scaling_vs_predicted=m1 / m0 / (p1 / p0))}  # fmt: skip


def controls(k, fans, parts: dict) -> tuple[dict, dict]:
    """λ = 0 (‖W‖² grows by ‖ΔW‖² per SGD step: g ⟂ W); the mechanism, paired by replicate."""
    p, (opt, reg, eta, lam), decayed = parts["zero"], k["mechanism"], parts["decayed"]
    angle, u = smoothed(rms(p["angle"], -1), k["window"]), p["unit_norm"]
    z = dict(optimizer=k["zero"][0], eta=k["zero"][1], unit_norm=dict(zip(fans, u[-1].mean(
        0).tolist(), strict=True)), eff_lr_ratio={n: replicates.summarize("ratio", (
            u[0, :, i] / u[-1, :, i]) ** 2) for i, n in enumerate(fans)})  # fmt: skip
    z = tested(z, growth_ratio=p["growth"].sum((0, 2)) / p["step_sq"].sum((0, 2)),
               first_angle=angle[0], last_angle=angle[-1], test_loss=p["test_loss"],
               test_acc=p["test_acc"])  # fmt: skip
    e = dict(optimizer=opt, reg=reg, eta=eta, strength=lam, schedule="cosine",
             margin_acc=k["margin"][0], margin_loss=k["margin"][1])  # fmt: skip
    for g in GROUPS:
        e[g] = tested({}, None if g == "decayed" else decayed, **{m: parts[g][m] for m in TESTS})
    angle = {g: rms(parts[g]["angle"], (0, 2)) for g in GROUPS}
    e["norm_mismatch"] = float(np.max(np.abs(parts["rescaled"]["unit_norm"]
                                             / decayed["unit_norm"] - 1)))  # fmt: skip
    return z, tested(e, angle_ratio=angle["rescaled"] / angle["decayed"],
                     plain_angle_ratio=angle["plain"] / angle["decayed"])  # fmt: skip


def figure(summary: dict):
    """Per panel the trailing RMS angle of the units (``trace``; dashed: the predicted one)."""
    eq, tr = summary["equilibrium"], summary["traces"]
    panels = [[m for m in eq if m.split("@")[0] == n] for n in eq if "@" not in n]
    panels += [["zero"], list(GROUPS)]
    fig, axes = study.pyplot().subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    for ax, members in zip(axes, panels, strict=True):
        for i, (m, t) in enumerate((m, tr[m]) for m in members):
            plots.fill(ax, t["step"], t["mean"], t["lo"], t["hi"], m, color=f"C{i}", marker=None)
            if m in eq:
                ax.axhline(eq[m]["predicted"], color=f"C{i}", ls="--", lw=0.8)
        ax.set(title=" / ".join(members), xlabel="step", ylabel="RMS angle per step (rad)",
               yscale="log")  # fmt: skip
        ax.legend(fontsize=7)
    return fig.tight_layout() or fig


def run(ctx: study.Context) -> study.Report:
    k, cfg, mu, top = ctx.knobs, ctx.config, ctx.config.momentum, f"@{ctx.knobs['mult']:g}λ"
    ds = study.load_data(cfg)  # the same draws as the sweeps' (data_seed)
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
    summary = dict(
        equilibrium=eq,
        zero=zero,
        mechanism=mech,
        window=k["window"],
        steps=int(parts["zero"]["angle"].shape[0]),
        smooth=k["smooth"],
        band=k["band"],
        batch_size=cfg.batch_size,
        labels=labels(eq, zero, mech),
        margin=MARGIN,
        growth_margin=GROWTH_MARGIN,
        previous=PREVIOUS,
        traces={m: trace(p["angle"], k["smooth"]) for m, p in parts.items()},
    )
    named = eq | {"sgd, λ = 0": zero} | {f"mechanism: {g}": mech[g] for g in GROUPS}
    rows = [[n, f"{e['predicted']:.4f}" if "predicted" in e else "–",
             *(study.ci(e, key, d) if f"{key}_lo" in e else "–" for key, d in CELLS.values())]
            for n, e in named.items()]  # fmt: skip
    return study.Report(summary, ["member", "predicted angle", *CELLS], rows, figure(summary))


def write_up(summary: dict) -> str:
    """What it shows: the RULES labels, numbers from ``summary``."""
    eq, lab, z, m, pv = map(summary.get, ("equilibrium", "labels", "zero", "mechanism", "previous"))
    ci = lambda e, x, d=3: prose.ci(e.get(f"{x}_mean", e.get(x)), e[f"{x}_lo"], e[f"{x}_hi"], d)  # noqa: E731
    members = "; ".join(f"{n}: {lab[n]} ({ci(e, 'ratio')} of the predicted "
                        f"{prose.num(e['predicted'])} rad, drift {ci(e, 'drift')})"
                        for n, e in eq.items())  # fmt: skip
    scaling = "; ".join(f"{n.split('@')[0]} {lab[n + ' scaling']} ({ci(e, 'scaling')} against "
                        f"{ci(e, 'predicted_scaling')})" for n, e in eq.items()
                        if n + " scaling" in lab)  # fmt: skip
    d, mx = m["rescaled"], (summary["margin"], summary["growth_margin"])
    return "\n\n".join([
        f"**Equilibrium angles (label: measured/predicted inside 1 ± {prose.num(mx[0])}, at a "
        f"steady state: drift inside the same margin).** {members}. **θ(4λ)/θ(λ).** {scaling}.",
        f"**Without decay: {lab['zero']}.** ‖W‖² growth / Σ‖ΔW‖² {ci(z, 'growth_ratio', 5)} "
        f"(margin ± {prose.num(mx[1])}). **The mechanism: {lab['mechanism']}.** Rescaled − "
        f"decayed: test accuracy {ci(d, 'test_acc_diff', 4)} (margin ± "
        f"{prose.num(m['margin_acc'])}), test loss {ci(d, 'test_loss_diff', 4)} (± "
        f"{prose.num(m['margin_loss'])}).",
        f"**What changed from the previous verdict, and why.** The last run called AdamW "
        f"reproduced at {prose.ci(*pv['adam_wd_ratio'], 3)} of the prediction and Adam + L2 "
        f"partly reproduced at a drift of {prose.ci(*pv['adam_l2_drift'], 3)}; now an interval "
        "outside ±5 % is not reproduced and a member without a steady state not testable as set "
        "up, by rules fixed before the run (Kosson et al.'s Adam + L2 analysis not compared).",
    ])  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
