"""The tutorial's program exactly: what do ``l1(0.01)`` and its alternatives do to its MLP?

Command: ``python experiments/tutorial_mlp.py`` (Fashion-MNIST; ``--dataset mnist`` where its
idx files are present; ``--smoke``: digits, seconds). Runtime: 8 minutes (483 s, Keras
included) on the 2-core machine, shared with other jobs while it ran.

Claim tested: the tutorial's — L1 (``kernel_regularizer=l1(0.01)`` on the two hidden Dense
layers) makes weights sparse and, like L2, fights overfitting; λ is chosen by validation. The
literature it rests on: Tibshirani 1996 (the lasso's exact zeros come from its proximal /
soft-thresholding solution, not from a subgradient step: Duchi & Singer 2009, FOBOS) and Krogh &
Hertz 1992 (weight decay improves generalization when λ is tuned); for Adam, coupled L2 and
decoupled decay differ (Loshchilov & Hutter 2019). Verdict: "L1 makes weights sparse" is
*contradicted* for the tutorial's Keras-style L1 (no exact zero at any λ; only the prox makes
them); "it fights overfitting" is *inconclusive* here: the 10-epoch program does not overfit
(validation loss still falling at epoch 10), no regularizer at its validation-chosen λ changes
the test loss detectably, and the tutorial's ``l1(0.01)`` costs 10 points of accuracy.

Setup (the tutorial's Keras program): 784 → Dense 64 ReLU → Dense 64 ReLU → Dense 10 softmax,
Adam lr 1e-3, cross-entropy, batch 128, 10 epochs, constant learning rate; the regularizer on the
two hidden kernels only (``mask="hidden"``: the tutorial's output layer has none). Keras defaults
matched: Glorot-uniform kernels and zero biases (:class:`KerasMLP`; wdjax's own MLP uses Flax's
LeCun-normal), Adam ε = 1e-7 (optax's default is 1e-8), β = (0.9, 0.999), λ·Σ|w| added to the
batch-mean loss (gradient λ·sign(w)). Not matched: Keras trains on the last partial batch of each
epoch (391 steps an epoch here), wdjax drops it (390 steps: static shapes; every image is still
seen, the 80 left out change each epoch); Keras shuffles with its own random stream. Data: the
60,000 training images split into 50,000 for training and 10,000 for validation (the tutorial
has no validation set; choosing λ needs one), the 10,000 test images only reported. Arms: no
regularizer; the tutorial's ``l1(0.01)``; and each of ``l1`` (Keras ``l1(λ)``), ``l2`` (our λ·w
gradient = Keras ``l2(λ/2)``), ``wd`` (``AdamW(weight_decay=λ)``) and ``l1_prox`` (the same
penalty λ·Σ|w| applied by a soft-thresholding step after Adam's: exact zeros; no Keras
equivalent) at its own λ, the one with the lowest validation loss averaged over replicates on a
grid of 0 and 16 values, 3 per decade (l1, l1_prox 1e-6 … 1e-1; l2 1e-5 … 1; wd 1e-3 … 1e2).
R = 5 replicates: new initial weights, batch order and validation split each (``data_seed`` + r);
every λ and regularizer of a replicate shares them, so differences against λ = 0 are paired by
replicate (95 % Student-t intervals, n − 1 = 4 degrees of freedom). ``shrink`` = λ·lr·T, the
total e-folds of decay (``wd``) or soft-threshold distance (``l1_prox``) over T steps. Sparsity is
the fraction of exactly-zero weights in the two hidden kernels. Where Keras is installed (the
``bench`` extra), the tutorial's Keras code (Sequential, ``"adam"``, categorical cross-entropy on
one-hot labels, softmax output) runs on the same replicates' data for no regularizer and
``l1(0.01)``; Keras − wdjax is an unpaired (Welch) interval, the two frameworks drawing their own
random numbers.

summary.json keys: ``arms`` (one dict per table row: ``arm, reg, strength, framework`` and
mean/lo/hi of ``test_acc, test_loss, val_loss, train_acc, sparsity, weight_l2`` and the paired
``test_acc_diff``, ``test_loss_diff`` with lo/hi), ``keras`` (installed or not, and the Welch
differences Keras − wdjax per arm), ``l1_curve`` (λ, paired Δ test loss mean/lo/hi per λ),
``l1_harmless_up_to`` (the largest λ of the l1 grid below which no λ detectably raises test
loss), ``best_strength`` {reg: λ}, ``baseline_val_min_epoch``, ``epochs``, ``replicates``,
``train_size``, ``dataset``, ``figure``, ``command``, ``seconds``.

Measured (Fashion-MNIST, 50,000 / 10,000 / 10,000, 5 replicates; means [95 % t-interval]): without
a regularizer test accuracy 0.874 [0.871, 0.877], loss 0.354 [0.349, 0.359]; the tutorial's
``l1(0.01)`` −10.4 [−11.2, −9.6] points and +0.302 [+0.287, +0.317] in loss, sparsity 0.000; Keras
running the tutorial's code agrees within the replicates' spread (Keras − wdjax: accuracy −0.001
[−0.007, +0.005] without a regularizer, +0.001 [−0.007, +0.009] with l1(0.01)). L1 does no
detectable harm at λ ≤ 2.15e-5 (the next grid value, 4.64e-5, raises test loss by 0.0066 [0.0039,
0.0094]). Validation chooses l1 1e-6, l2 0, wd 0.0215 and l1_prox 2.15e-6: every difference from no
regularizer has an interval containing 0 and inside ±0.009 in test loss and ±0.005 in accuracy (no
detectable difference at n = 5). ``l1_prox`` at 0.01 zeroes 97.0 [96.7, 97.4] % of the hidden
weights at −9.8 points; at its chosen λ 6.9 [4.1, 9.7] % at no detectable cost.
"""

import dataclasses
import os

import flax.linen as nn
import numpy as np

from wdjax import study
from wdjax.analysis import stats
from wdjax.study import replicates

NAME = "tutorial_mlp"
REGS = ("l1", "l2", "wd", "l1_prox")
RANGES = {"l1": (-6, -1), "l2": (-5, 0), "wd": (-3, 2), "l1_prox": (-6, -1)}  # log10 λ
NOMINAL = 0.01  # the tutorial's l1(0.01)
METRICS = ("test_acc", "test_loss", "val_loss", "train_acc", "weight_l2", "sparsity/dense_0",
           "sparsity/dense_1")  # fmt: skip
KERAS = {"none": "—", "l1": "l1({:.3g})", "l2": "l2({:.3g})", "wd": "AdamW(weight_decay={:.3g})",
         "l1_prox": "— (prox of l1({:.3g}))"}  # fmt: skip


class KerasMLP(nn.Module):
    """The tutorial's network with Keras's initializers: Glorot-uniform kernels, zero biases."""

    num_classes: int = 10
    hidden: tuple = (64, 64)

    @nn.compact
    def __call__(self, x_NHWC, train: bool = False):
        x = x_NHWC.reshape(x_NHWC.shape[0], -1)
        init = nn.initializers.glorot_uniform()
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, kernel_init=init, name=f"dense_{i}")(x))
        return nn.Dense(self.num_classes, kernel_init=init, name="head")(x)


def grid(reg: str, smoke: bool) -> tuple[float, ...]:
    """0 and 3 values per decade over ``RANGES[reg]`` (exact powers of ten at every third), with
    the tutorial's 0.01 on the L1 grids."""
    lo, hi = RANGES[reg]
    if smoke:
        return (0.0, NOMINAL) if reg.startswith("l1") else (0.0, 10.0**lo)
    return (0.0, *(float(f"{10 ** (k / 3):.3g}") for k in range(3 * lo, 3 * hi + 1)))


def get_config(smoke=False) -> dict:
    return dict(
        dataset="digits" if smoke else "fashion_mnist", model=KerasMLP(), mask="hidden",
        val_size=400 if smoke else 10000, axes=(("eps", (1e-7,)),),
        **({"epochs": 1} if smoke else {}), grids={r: grid(r, smoke) for r in REGS},
        replicates=2 if smoke else 5, keras=not smoke,  # Keras: tests/test_tutorial_mlp.py
    )  # fmt: skip


def hidden_sparsity(runs) -> np.ndarray:
    """[R, S] fraction of exact zeros in the two hidden kernels (784·64 and 64·64 weights)."""
    zeros, size = 0.0, 0
    for layer in ("dense_0", "dense_1"):
        _, s = replicates.setting_values(runs, f"sparsity/{layer}")
        n = int(np.prod(runs[0].params[layer]["kernel"].shape[1:]))  # leaves are [K, ...]
        zeros, size = zeros + s * n, size + n
    return zeros / size


def arm_row(arm: str, reg: str, lam: float, row: dict, sparsity: np.ndarray, lr_sum: float):
    """One table arm (wdjax): the replicates.table row at λ plus hidden sparsity and the shrink
    λ·Σ_t η_t (``lr_sum`` = lr·T at the tutorial's constant learning rate)."""
    sp = stats.describe(sparsity)
    out = dict(arm=arm, reg=reg, strength=lam, framework="wdjax",
               sparsity_mean=float(sp.mean), sparsity_lo=float(sp.lo), sparsity_hi=float(sp.hi),
               shrink=lam * lr_sum if reg in ("wd", "l1_prox") else None)  # fmt: skip
    keys = [k for k in row if k.split("_")[0] in ("test", "val", "train", "weight")]
    return dict(out, **{k: row[k] for k in keys})


def l1_harmless(rows: list[dict]) -> tuple[float | None, list]:
    """The largest λ > 0 of the grid below which (and at which) no λ's paired Δ test loss is
    detectably > 0, and the curve (λ, Δ, lo, hi) it is read from."""
    curve = [(r["strength"], r["test_loss_diff"], r["test_loss_diff_lo"], r["test_loss_diff_hi"])
             for r in rows[1:]]  # fmt: skip
    harmless = None
    for lam, _, lo, _ in curve:
        if not lo <= 0:  # detectably worse (NaN counts as worse: a diverged replicate)
            break
        harmless = lam
    return harmless, curve


def keras_member(data, lam: float, seed: int, epochs: int, batch_size: int) -> dict:
    """The tutorial's Keras code on ``data`` (a wdjax Dataset): test/val loss and accuracy."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    keras.utils.set_random_seed(seed)
    reg = {"kernel_regularizer": keras.regularizers.l1(lam)} if lam else {}
    model = keras.Sequential([
        keras.Input(data.x_train.shape[1:]), keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu", **reg),
        keras.layers.Dense(64, activation="relu", **reg),
        keras.layers.Dense(data.num_classes, activation="softmax"),
    ])  # fmt: skip
    # evaluate()'s "loss" adds the L1 penalty: the cross-entropy alone is its own metric
    ce = keras.metrics.CategoricalCrossentropy(name="ce")
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy", ce])
    onehot = keras.utils.to_categorical
    hist = model.fit(data.x_train, onehot(data.y_train, data.num_classes), epochs=epochs,
                     batch_size=batch_size, verbose=0)  # fmt: skip
    out = {"train_acc": float(hist.history["accuracy"][-1])}
    for split, x, y in (("test", data.x_test, data.y_test), ("val", data.x_val, data.y_val)):
        r = model.evaluate(x, onehot(y, data.num_classes), batch_size=2048, verbose=0,
                           return_dict=True)  # fmt: skip
        out[f"{split}_loss"], out[f"{split}_acc"] = float(r["ce"]), float(r["accuracy"])
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers[1:]]
    hidden = kernels[:2]  # sparsity of the two regularized kernels; ‖W‖₂ over every kernel
    out["sparsity"] = float(sum((k == 0).sum() for k in hidden) / sum(k.size for k in hidden))
    out["weight_l2"] = float(np.sqrt(sum(np.sum(np.square(k, dtype=float)) for k in kernels)))
    return out


def keras_available() -> bool:
    """Keras 3 importable on the JAX backend (the ``bench`` extra)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras  # noqa: F401
    except ImportError:
        return False
    return True


def keras_arms(config, n: int, wd_rows: dict) -> tuple[list[dict], dict]:
    """Keras rows for no regularizer and l1(0.01) over the same replicates' data, and the Welch
    differences Keras − wdjax (``wd_rows``: per arm, the wdjax per-replicate values)."""
    per = {"none": [], "l1(0.01)": []}
    for c in replicates.replicate_configs(config, n):
        data = study.load_data(c)
        for arm, lam in (("none", 0.0), ("l1(0.01)", NOMINAL)):
            per[arm].append(keras_member(data, lam, c.first_seed, c.epochs, c.batch_size))
    rows, welch = [], {}
    for arm, lam in (("none", 0.0), ("l1(0.01)", NOMINAL)):
        row = dict(arm=f"Keras {arm}", reg="l1" if lam else "none", strength=lam,
                   framework="keras", shrink=None)  # fmt: skip
        for m in ("test_acc", "test_loss", "val_loss", "train_acc", "sparsity", "weight_l2"):
            v = [p[m] for p in per[arm]]
            s = stats.describe(v)
            row.update({f"{m}_mean": float(s.mean), f"{m}_lo": float(s.lo), f"{m}_hi": float(s.hi)})
            if m in ("test_acc", "test_loss"):
                d = stats.paired_differences(v, [p[m] for p in per["none"]])
                row.update({f"{m}_diff": float(d.mean), f"{m}_diff_lo": float(d.lo),
                            f"{m}_diff_hi": float(d.hi)})  # fmt: skip
                w = stats.welch_difference(v, wd_rows[arm][m])
                welch.setdefault(arm, {})[m] = [float(w.mean), float(w.lo), float(w.hi)]
        rows.append(row)
    return rows, welch


def table_rows(arms: list[dict], welch: dict) -> list[list]:
    out = []
    for a in arms:
        lam, reg = a["strength"], a["reg"]
        keras_eq = KERAS[reg].format(lam / 2 if reg == "l2" else lam) if lam else "—"
        if a["framework"] == "keras":
            w = welch.get(a["arm"].removeprefix("Keras "), {})
            note = "Keras − wdjax: acc {}, loss {}".format(
                *(study.fmt_ci(*w[m], 4) if m in w else "—" for m in ("test_acc", "test_loss"))
            )
        elif a["arm"] == "none":
            note = "baseline"
        else:
            note = study.verdict((a["test_loss_diff_lo"], a["test_loss_diff_hi"]))
        if a["arm"].endswith("at its λ") and lam == 0:
            note = "λ = 0 chosen"
        diffs = [study.ci(a, m, 4) if m in a else "—" for m in ("test_acc_diff", "test_loss_diff")]
        out.append([a["arm"], f"{lam:.3g}", keras_eq, study.ci(a, "test_acc", 4), diffs[0],
                    study.ci(a, "test_loss", 4), diffs[1],
                    note, study.ci(a, "sparsity", 3), study.ci(a, "weight_l2", 2),
                    "—" if a["shrink"] is None else f"{a['shrink']:.3g}"])  # fmt: skip
    return out


COLUMNS = ["arm", "λ", "Keras", "test acc", "Δ test acc vs none (paired)", "test loss",
           "Δ test loss vs none (paired)", "test loss vs none", "hidden sparsity", "‖W‖₂",
           "shrink"]  # fmt: skip


def sweep_regs(run) -> dict:
    """Per regularizer: (grid, runs over replicates, replicates.table rows, hidden sparsity)."""
    out = {}
    for reg in REGS:
        g = run.knobs["grids"][reg]
        cfg = dataclasses.replace(run.config, reg=reg, strengths=g)
        runs = replicates.run(cfg, run.knobs["replicates"])
        rows = replicates.table(runs, METRICS, baseline={"strength": 0.0})
        out[reg] = (g, runs, rows, hidden_sparsity(runs))
        print(f"{reg}: done", flush=True)
    return out


def choose_arms(sweeps: dict, lr_sum: float) -> tuple[list[dict], dict, dict]:
    """Table arms (none, l1(0.01), each regularizer at its validation-chosen λ, l1_prox(0.01)),
    the chosen λ per regularizer, and per arm the per-replicate values Keras is compared with."""
    g, runs, rows, sp = sweeps["l1"]
    nominal = g.index(NOMINAL) if NOMINAL in g else None
    arms = [arm_row("none", "none", 0.0, sweeps["wd"][2][0], sweeps["wd"][3][:, 0], lr_sum)]
    if nominal is not None:
        arms.append(arm_row("l1(0.01)", "l1", NOMINAL, rows[nominal], sp[:, nominal], lr_sum))
    best = {}
    for reg in REGS:
        g, runs, rows, sp = sweeps[reg]
        i = stats.argmin([r["val_loss_mean"] for r in rows])
        best[reg] = float(g[i])
        arms.append(arm_row(f"{reg} at its λ", reg, g[i], rows[i], sp[:, i], lr_sum))
    g, _, rows, sp = sweeps["l1_prox"]
    if NOMINAL in g:
        j = g.index(NOMINAL)
        arms.append(arm_row("l1_prox(0.01)", "l1_prox", NOMINAL, rows[j], sp[:, j], lr_sum))
    per_rep = {}
    for arm, reg, j in (("none", "wd", 0), ("l1(0.01)", "l1", nominal)):
        if j is not None:
            runs = sweeps[reg][1]
            per_rep[arm] = {m: replicates.setting_values(runs, m)[1][:, j]
                            for m in ("test_acc", "test_loss")}  # fmt: skip
    return arms, best, per_rep


def main(argv=None) -> dict:
    run = study.setup(__doc__, NAME, get_config, argv)
    sweeps = sweep_regs(run)
    first = sweeps["wd"][1][0]
    steps = int(np.nanmax(first.history["step"][:, -1]))
    arms, best, per_rep = choose_arms(sweeps, run.config.lrs[0] * steps)  # constant lr
    harmless, curve = l1_harmless(sweeps["l1"][2])
    use_keras = run.knobs["keras"] and keras_available()
    welch = {}
    if use_keras:
        k_rows, welch = keras_arms(run.config, run.knobs["replicates"], per_rep)
        arms += k_rows
    _, val = replicates.curves(sweeps["wd"][1], "val_loss")
    summary = dict(
        arms=arms, best_strength=best, l1_harmless_up_to=harmless,
        l1_curve=[list(c) for c in curve],
        keras=dict(installed=use_keras, welch_keras_minus_wdjax=welch),
        baseline_val_min_epoch=int(stats.argmin(np.nanmean(val[:, 0], axis=0))) + 1,
        epochs=run.config.epochs, replicates=run.knobs["replicates"], steps=steps,
        train_size=len(study.load_data(run.config).x_train), dataset=run.config.dataset,
    )  # fmt: skip
    fig = figure(sweeps, best)
    return study.finish(run, summary, COLUMNS, table_rows(arms, welch), fig, f"{NAME}.png")


def figure(sweeps: dict, best: dict):
    """Left: paired Δ test loss against λ per regularizer (bands: 95 % t-intervals); right:
    test accuracy per epoch of no regularizer, l1(0.01) and each regularizer at its λ."""
    plt = study.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5))
    for reg, color in zip(REGS, ("C0", "C1", "C2", "C3"), strict=True):
        g, runs, rows, _ = sweeps[reg]
        lam = np.array(g[1:])
        d, lo, hi = (
            np.array([r[f"test_loss_diff{s}"] for r in rows[1:]]) for s in ("", "_lo", "_hi")
        )
        a.plot(lam, d, color=color, marker="o", ms=2, label=reg)
        a.fill_between(lam, lo, hi, color=color, alpha=0.2)
        settings, acc = replicates.curves(runs, "test_acc")
        lams = [s["strength"] for s in settings]
        shown = [(lams.index(best[reg]), "-", f"{reg} λ={best[reg]:.3g}")]
        if reg == "l1" and NOMINAL in lams:
            shown.append((lams.index(NOMINAL), "--", "l1(0.01)"))
        if reg == "wd":
            shown.append((0, ":", "none"))
        for j, ls, lab in shown:
            s = stats.describe(acc[:, j], axis=0)
            ep = np.arange(1, acc.shape[2] + 1)
            c = "k" if lab == "none" else color
            b.plot(ep, s.mean, color=c, ls=ls, label=lab)
            b.fill_between(ep, s.lo, s.hi, color=c, alpha=0.15)
    a.axhline(0, color="k", lw=0.8)
    a.axvline(NOMINAL, color="k", ls=":", lw=0.8)
    a.set(xscale="log", xlabel="λ (dotted: the tutorial's 0.01)",
          ylabel="test loss − test loss at λ = 0 (paired)")  # fmt: skip
    a.set_yscale("symlog", linthresh=0.01)
    a.legend(fontsize=8)
    b.set(xlabel="epoch", ylabel="test accuracy")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle("the tutorial's MLP: mean over replicates, bands: 95 % Student-t intervals")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
