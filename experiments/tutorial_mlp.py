"""The tutorial's program exactly: what do ``l1(0.01)`` and its alternatives do to its MLP?

Claim (the tutorial's): L1 on the hidden layers makes weights sparse and, like L2, fights
overfitting (Tibshirani 1996; Duchi & Singer 2009; Krogh & Hertz 1992; Loshchilov & Hutter 2019).

Command: ``python experiments/tutorial_mlp.py`` (``--smoke``: digits, seconds; ``--no-keras``).
Runtime: 8 minutes on the 2-core machine, Keras included; interrupted, it resumes by arm.

Verdict (last full run): "L1 makes weights sparse" contradicted (no exact zero at any λ; only the
prox makes them); "it fights overfitting" inconclusive (the 10-epoch program does not overfit).

Design in :func:`get_config`, rules fixed before the run in ``RULES``: the same programs and
seeds as before the rewrite on :mod:`wdjax.study` (replicates now run outermost).
"""

import dataclasses
import importlib.util
import os

import flax.linen as nn
import jax
import numpy as np

from wdjax import study
from wdjax.analysis import plots, stats
from wdjax.study import replicates

REGS = ("l1", "l2", "wd", "l1_prox")
RANGES = {"l1": (-6, -1), "l2": (-5, 0), "wd": (-3, 2), "l1_prox": (-6, -1)}  # log10 λ
NOMINAL = 0.01  # the tutorial's l1(0.01)
HIDDEN = ("dense_0", "dense_1")  # the regularized kernels (mask="hidden")
METRICS = ("test_acc", "test_loss", "val_loss", "train_acc", "weight_l2",
           *(f"sparsity/{layer}" for layer in HIDDEN))  # fmt: skip
KERAS = {"none": "—", "l1": "l1({:.3g})", "l2": "l2({:.3g})", "wd": "AdamW(weight_decay={:.3g})",
         "l1_prox": "— (prox of l1({:.3g}))"}  # fmt: skip
RULES = dict(
    selection="per reg, the λ of lowest validation loss averaged over replicates (never test); "
    "also each replicate's own pick (nested) and Breiman's one-SE set",
    interval="95 % Student-t over replicates; vs λ = 0 paired by replicate (verdict: lower/higher "
    "when it excludes 0, else no detectable difference); Keras − wdjax: Welch",
    harmless="the largest l1 λ up to which no paired Δ test loss lies above 0 (NaN: harm)",
    sparsity="exact zeros in the two hidden kernels; shrink = λ·lr·T (wd: e-folds, prox: distance)",
    keras="matched: Glorot-uniform, zero biases, Adam ε = 1e-7, λ·Σ|w| on the batch-mean loss; "
    "not: Keras's last partial batch and random stream; our l2 λ is Keras l2(λ/2)",
)


class KerasMLP(nn.Module):
    """The tutorial's network with Keras's initializers: Glorot-uniform kernels, zero biases."""

    num_classes: int = 10
    hidden: tuple = (64, 64)

    @nn.compact
    def __call__(self, x_NHWC, train: bool = False):
        x, init = x_NHWC.reshape(x_NHWC.shape[0], -1), nn.initializers.glorot_uniform()
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, kernel_init=init, name=f"dense_{i}")(x))
        return nn.Dense(self.num_classes, kernel_init=init, name="head")(x)


def grid(reg: str, smoke: bool = False) -> tuple[float, ...]:
    """0 and 3 λ per decade over ``RANGES[reg]`` (powers of ten exact; the L1 grids hold 0.01)."""
    lo, hi = RANGES[reg]
    if smoke:
        return (0.0, NOMINAL) if reg.startswith("l1") else (0.0, 10.0**lo)
    return (0.0, *(float(f"{10 ** (k / 3):.3g}") for k in range(3 * lo, 3 * hi + 1)))


def get_config() -> dict:
    """The full study: Fashion-MNIST, 50,000 / 10,000 / 10,000, 5 replicates, Keras beside."""
    return dict(dataset="fashion_mnist", model=KerasMLP(), mask="hidden", val_size=10000,
                axes=(("eps", (1e-7,)),), grids={r: grid(r) for r in REGS}, replicates=5,
                keras=study.option(True, "also run the tutorial's Keras code (where installed)"),
                selected_by="val_loss", rules=RULES)  # fmt: skip


def smoke(config: dict) -> dict:
    """The tiny version: digits, 1 epoch, 2 λ per regularizer, 2 replicates, no Keras."""
    return dict(dataset="digits", val_size=400, epochs=1, replicates=2, keras=False,
                grids={r: grid(r, smoke=True) for r in REGS})  # fmt: skip


def hidden_sparsity(runs, x) -> np.ndarray:
    """[R, S] fraction of exact zeros in the hidden kernels (sizes from the model's shapes)."""
    shapes = jax.eval_shape(runs[0].config.model.init, jax.random.key(0), x[:1])["params"]
    n = {k: int(np.prod(shapes[k]["kernel"].shape)) for k in HIDDEN}
    zeros = sum(replicates.setting_values(runs, f"sparsity/{k}")[1] * n[k] for k in HIDDEN)
    return zeros / sum(n.values())


def arm_row(arm: str, reg: str, lam: float, sweep, lr_sum: float) -> dict:
    """One wdjax table arm: ``sweep``'s row at λ, hidden sparsity, shrink λ·lr·T (``lr_sum``)."""
    g, _, rows, sp = sweep
    row = {k: v for k, v in rows[g.index(lam)].items()
           if k.split("_")[0] in ("test", "val", "train", "weight")}  # fmt: skip
    return dict(arm=arm, reg=reg, strength=lam, framework="wdjax", **row,
                **replicates.summarize("sparsity", sp[:, g.index(lam)]),
                shrink=lam * lr_sum if reg in ("wd", "l1_prox") else None)  # fmt: skip


def l1_harmless(rows: list[dict]) -> tuple[float | None, list]:
    """The largest λ up to which no paired Δ test loss is detectably > 0, and that curve."""
    curve = [[r["strength"], *(r[f"test_loss_diff{s}"] for s in ("", "_lo", "_hi"))]
             for r in rows[1:]]  # fmt: skip
    harm = [i for i, c in enumerate(curve) if not c[2] <= 0] + [len(curve)]
    return (curve[harm[0] - 1][0] if harm[0] else None), curve


def keras_member(data, lam: float, seed: int, epochs: int, batch_size: int) -> dict:
    """The tutorial's Keras code on ``data`` (a wdjax Dataset): test/val loss and accuracy."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    keras.utils.set_random_seed(seed)
    reg = {"kernel_regularizer": keras.regularizers.l1(lam)} if lam else {}
    layers = [keras.layers.Dense(64, activation="relu", **reg) for _ in range(2)]
    layers = [keras.Input(data.x_train.shape[1:]), keras.layers.Flatten(), *layers]
    model = keras.Sequential([*layers, keras.layers.Dense(data.num_classes, activation="softmax")])
    ce = keras.metrics.CategoricalCrossentropy(name="ce")  # evaluate()'s "loss" adds the penalty
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy", ce])
    hot, k = keras.utils.to_categorical, data.num_classes
    hist = model.fit(data.x_train, hot(data.y_train, k), epochs=epochs, batch_size=batch_size,
                     verbose=0)  # fmt: skip
    out = {"train_acc": float(hist.history["accuracy"][-1])}
    for split, x, y in (("test", data.x_test, data.y_test), ("val", data.x_val, data.y_val)):
        r = model.evaluate(x, hot(y, k), batch_size=2048, verbose=0, return_dict=True)
        out[f"{split}_loss"], out[f"{split}_acc"] = float(r["ce"]), float(r["accuracy"])
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers[1:]]
    hidden = kernels[:2]  # sparsity of the two regularized kernels; ‖W‖₂ over every kernel
    out["sparsity"] = float(sum((k == 0).sum() for k in hidden) / sum(k.size for k in hidden))
    out["weight_l2"] = float(np.sqrt(sum(np.sum(np.square(k, dtype=float)) for k in kernels)))
    return out


def keras_arms(config, n: int, sweeps: dict) -> tuple[list[dict], dict]:
    """Keras rows for none and l1(0.01) on the replicates' data; Welch Keras − wdjax."""
    arms = {"none": (0.0, sweeps["wd"]), "l1(0.01)": (NOMINAL, sweeps["l1"])}
    cfgs = replicates.replicate_configs(config, n)
    per = {arm: [keras_member(study.load_data(c), lam, c.first_seed, c.epochs, c.batch_size)
                 for c in cfgs] for arm, (lam, _) in arms.items()}  # fmt: skip
    rows, welch = [], {}
    for arm, (lam, (g, rs, _, _)) in arms.items():
        row = dict(arm=f"Keras {arm}", reg="l1" if lam else "none", strength=lam,
                   framework="keras", shrink=None)  # fmt: skip
        for m in ("test_acc", "test_loss", "val_loss", "train_acc", "sparsity", "weight_l2"):
            v = [p[m] for p in per[arm]]
            base = [p[m] for p in per["none"]] if m in ("test_acc", "test_loss") else None
            row.update(replicates.summarize(m, v, base))
            if base is not None:
                w = stats.welch_difference(v, replicates.setting_values(rs, m)[1][:, g.index(lam)])
                welch.setdefault(arm, {})[m] = [float(w.mean), float(w.lo), float(w.hi)]
        rows.append(row)
    return rows, welch


COLUMNS = ["arm", "λ", "Keras", "test acc", "Δ test acc vs none (paired)", "test loss",
           "Δ test loss vs none (paired)", "test loss vs none", "hidden sparsity", "‖W‖₂",
           "shrink"]  # fmt: skip


def table_rows(arms: list[dict], welch: dict) -> list[list]:
    out = []
    for a in arms:
        lam, reg = a["strength"], a["reg"]
        if a["framework"] == "keras":
            w = welch.get(a["arm"].removeprefix("Keras "), {})
            cells = [study.fmt_ci(*w[m], 4) if m in w else "—" for m in ("test_acc", "test_loss")]
            note = "Keras − wdjax: acc {}, loss {}".format(*cells)
        elif lam == 0:  # wdjax's arms at λ = 0: none, or a regularizer whose chosen λ is 0
            note = "baseline" if a["arm"] == "none" else "λ = 0 chosen"
        else:
            note = study.verdict((a["test_loss_diff_lo"], a["test_loss_diff_hi"]))
        diffs = [study.ci(a, m, 4) if m in a else "—" for m in ("test_acc_diff", "test_loss_diff")]
        out.append([a["arm"], f"{lam:.3g}",
                    KERAS[reg].format(lam / 2 if reg == "l2" else lam) if lam else "—",
                    study.ci(a, "test_acc", 4), diffs[0], study.ci(a, "test_loss", 4), diffs[1],
                    note, study.ci(a, "sparsity", 3), study.ci(a, "weight_l2", 2),
                    "—" if a["shrink"] is None else f"{a['shrink']:.3g}"])  # fmt: skip
    return out


def choose_arms(sweeps: dict, lr_sum: float) -> tuple[list[dict], dict]:
    """Table arms (none, l1(0.01), each reg at its chosen λ, l1_prox(0.01)); selection per reg."""
    nom = [[arm_row(f"{r}(0.01)", r, NOMINAL, sweeps[r], lr_sum)] if NOMINAL in sweeps[r][0]
           else [] for r in ("l1", "l1_prox")]  # fmt: skip
    arms, chosen = [arm_row("none", "none", 0.0, sweeps["wd"], lr_sum), *nom[0]], {}
    for reg in REGS:
        g, runs = sweeps[reg][:2]
        val, loss = (replicates.setting_values(runs, m)[1] for m in ("val_loss", "test_loss"))
        chosen[reg] = study.select(val, loss, g)
        lam = g[chosen[reg]["averaged"]]
        arms.append(arm_row(f"{reg} at its λ", reg, lam, sweeps[reg], lr_sum))
    return arms + nom[1], chosen


def run(ctx: study.Context) -> study.Report:
    """Every regularizer × replicate (resumable), Keras beside, then the table and figure."""
    k, cfg = ctx.knobs, ctx.config
    results = ctx.sweeps({reg: dataclasses.replace(cfg, reg=reg, strengths=tuple(k["grids"][reg]))
                          for reg in REGS})  # fmt: skip
    x = study.load_data(cfg).x_train
    sweeps = {reg: (list(k["grids"][reg]), runs, replicates.table(runs, METRICS, {"strength": 0.0}),
                    hidden_sparsity(runs, x)) for reg, runs in results.items()}  # fmt: skip
    steps = int(np.nanmax(results["wd"][0].history["step"][:, -1]))
    arms, chosen = choose_arms(sweeps, cfg.lrs[0] * steps)
    best = {reg: float(s["averaged_strength"]) for reg, s in chosen.items()}
    harmless, curve = l1_harmless(sweeps["l1"][2])  # curve: [λ, Δ, lo, hi] per λ > 0
    use_keras = k["keras"] and importlib.util.find_spec("keras") is not None
    rows, welch = keras_arms(cfg, ctx.replicates, sweeps) if use_keras else ([], {})
    _, val = replicates.curves(results["wd"], "val_loss")
    summary = dict(arms=arms + rows, best_strength=best, selection=chosen, l1_curve=curve,
                   l1_harmless_up_to=harmless, epochs=cfg.epochs, steps=steps, train_size=len(x),
                   keras=dict(installed=use_keras, welch_keras_minus_wdjax=welch),
                   baseline_val_min_epoch=study.rise(val[:, 0])["min_epoch"])  # fmt: skip
    return study.Report(summary, COLUMNS, table_rows(arms + rows, welch), figure(sweeps, best))


def figure(sweeps: dict, best: dict):
    """Paired Δ test loss against λ; test accuracy per epoch (none, l1(0.01), chosen λ)."""
    fig, (a, b) = study.pyplot().subplots(1, 2, figsize=(13, 4.5))
    for reg, color in zip(REGS, ("C0", "C1", "C2", "C3"), strict=True):
        g, runs, rows, _ = sweeps[reg]
        d = [[r[f"test_loss_diff{s}"] for r in rows[1:]] for s in ("", "_lo", "_hi")]
        plots.fill(a, g[1:], *d, reg, color=color, ms=2)
        _, acc = replicates.curves(runs, "test_acc")
        shown = [(best[reg], "-", f"{reg} λ={best[reg]:.3g}", color)]
        shown += [(NOMINAL, "--", "l1(0.01)", color)] if reg == "l1" and NOMINAL in g else []
        shown += [(0.0, ":", "none", "k")] if reg == "wd" else []
        for lam, ls, lab, c in shown:
            plots.band(b, range(1, acc.shape[2] + 1), acc[:, g.index(lam)], lab, c=c, ls=ls, ms=0)
    a.axhline(0, color="k", lw=0.8)
    a.axvline(NOMINAL, color="k", ls=":", lw=0.8)
    a.set(xscale="log", xlabel="λ (dotted: the tutorial's 0.01)",
          ylabel="Δ test loss vs λ = 0, paired")  # fmt: skip
    a.set_yscale("symlog", linthresh=0.01)
    b.set(xlabel="epoch", ylabel="test accuracy")
    for ax, size in ((a, 8), (b, 7)):
        ax.legend(fontsize=size)
        ax.grid(alpha=0.3)
    fig.suptitle("the tutorial's MLP: mean over replicates, bands: 95 % Student-t intervals")
    return fig


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
