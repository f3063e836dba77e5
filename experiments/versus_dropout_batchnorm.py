"""Weight decay against dropout and BatchNorm, alone and combined: which closes the gap, and how?

Command: ``python experiments/versus_dropout_batchnorm.py`` (Fashion-MNIST; ``--smoke``: digits,
seconds). Runtime: 895 s (14.9 min) at full size on this 2-core machine, shared with other jobs
(a test run beside it); ≈ 16 s in smoke mode, almost all of it compiling the 4 model shapes.

Claims tested: weight decay (Krogh & Hertz 1992), dropout (Srivastava et al. 2014) and BatchNorm
(Ioffe & Szegedy 2015) each regularize: each lowers the test loss of a network that overfits.
With BatchNorm, weight decay on the BatchNorm-preceded kernels cannot limit capacity (the network
is invariant to their scale); it shrinks their norm and so raises their effective learning rate
(van Laarhoven 2017, "L2 regularization versus batch and weight normalization"; Zhang et al.
2019, "Three mechanisms of weight decay regularization"). Verdicts: weight decay and dropout
regularize: reproduced; BatchNorm regularizes: contradicted here (alone it overfits more than
the plain network); with BatchNorm, weight decay raises the effective learning rate: reproduced
(and it then lowers the test loss although the decayed kernels are scale-invariant).

Setup: a wide MLP (784 → 256 → 256 → 10, ReLU) on a small training set, where the plain network
overfits: 6,000 Fashion-MNIST training images (a calibration at 10,000 overfit too, later and
less), 10,000 more of the training pool for validation, the 10,000 test images; Adam 1e-3 at a
constant learning rate, batch 128, 40 epochs (1,840 steps), validation and test evaluated every 4
epochs. Arms (8): none, wd, dropout, dropout+wd, bn, bn+wd, dropout+bn, dropout+bn+wd. Dropout
follows each hidden ReLU, BatchNorm sits before it (those kernels then have no bias); ``wd`` is
decoupled (AdamW, ``reg="wd"``) on the hidden kernels only (``mask="hidden"``: with BatchNorm
exactly the scale-invariant ones). One sweep per (dropout rate, BatchNorm) shape (rates 0, 0.2, 0.5
× BatchNorm off/on) holds the λ grid {0, 0.1, 0.3, 1, 3, 10, 30}, so a dropout sweep gives both
"dropout" (λ = 0) and "dropout+wd" (λ > 0). Each arm is tuned over its own grid only (rates for
dropout arms, λ > 0 for +wd arms, both for dropout+wd and dropout+bn+wd) by the lowest final
validation loss averaged over replicates (never the test set); the chosen (rate, λ) is in the table
and every candidate's validation loss in ``tuning``. R = 5 replicates re-run every sweep with new
initial weights, dropout masks, batch order, training subset and validation split
(``replicates.replicate_configs``); inside a replicate every arm shares them, so each arm's
difference from ``none`` is paired by replicate. Means and differences carry 95 % Student-t
intervals over replicates (n − 1 = 4 degrees of freedom).

Measured per arm, on the final weights in inference mode with dropout off (``final_eval``): test
loss and accuracy, training loss and the generalization gap = test − training loss (the same
evaluation on both sides). With BatchNorm the normalization uses the training set's population
statistics under the final weights (PreciseBN) rather than the running averages: at Adam 1e-3 the
weights move faster than the running averages (momentum 0.9) follow, and refreshing the averages on
the final weights alone lowered one bn member's validation loss from 0.546 to 0.464 in a check (8
epochs, one member); the ``stale`` column is the recorded (running-average) test loss minus the
population one. Without BatchNorm the evaluation equals the recorded one to float rounding
(``eval_check``). Also: ‖W‖ of the two hidden kernels and their effective learning rate η/‖W_l‖
averaged over the two layers (Adam's step is scale-free, so the angle a kernel turns per step scales
as η/‖W‖; with SGD it would be η/‖W‖²). The curves: validation loss as recorded (BN arms: running
averages), ``train_loss`` as recorded (the running mean over an epoch in training mode: dropout
active, batch statistics, as Keras reports it), ‖W‖ and η/‖W‖ per epoch.

summary.json keys: ``arms`` {arm: {dropout, batchnorm, strength, verdict (of the test-loss
difference), and per metric x of METRICS ``x_mean, x_std, x_lo, x_hi, x_diff, x_diff_lo,
x_diff_hi`` (paired vs none)}}, ``overfitting`` (the none arm's recorded validation loss:
``min_epoch``, ``val_min``, ``val_final``, ``rise`` = final − minimum, as {mean, lo, hi} over
replicates; ``mean_curve_min_epoch``), ``bn_wd`` (bn+wd against bn, paired: ``test_loss_diff``,
``hidden_l2_ratio``, ``eff_lr_ratio`` {mean, lo, hi}, ratios as geometric means), ``claims``
{claim: {verdict, why}}, ``tuning`` {arm: [[rate, λ, mean validation loss]]}, ``eval_check``,
``best`` (lowest mean test loss), ``selected_by``, ``rates``, ``strengths``, ``epochs``,
``eval_every``, ``replicates``, ``train_size``, ``hidden``, ``dataset``, ``figure``,
``command``, ``seconds``.

Measured (full run, n = 5 replicates; mean [95 % interval]; differences paired against none):
the plain network overfits: its validation loss is lowest at epoch 15.2 [9.8, 20.6] (each
replicate's minimum; evaluated every 4 epochs) at 0.429 [0.397, 0.461] and has risen by 0.187
[0.159, 0.215] at epoch 40. Test loss: none 0.661 [0.608, 0.713]; wd (λ = 3) −0.205
[−0.268, −0.141]; dropout (0.5) −0.210 [−0.253, −0.167]; dropout+wd (0.5, 0.3) −0.216
[−0.246, −0.186]; bn +0.134 [+0.108, +0.161]; bn+wd (λ = 10) −0.130 [−0.176, −0.085];
dropout+bn (0.5) −0.129 [−0.162, −0.096]; dropout+bn+wd (0.5, 3) −0.195 [−0.244, −0.145]. Every
tuned λ is inside the grid. The gap (0.599 [0.539, 0.660] for none) shrinks in every arm but bn
(+0.192 [+0.165, +0.220]). Test accuracy (none 0.849 [0.844, 0.855]) shows no detectable
difference for wd (−0.014 [−0.032, +0.003]), dropout (+0.002 [−0.003, +0.006]) and dropout+wd,
and falls with BatchNorm plus decay (bn+wd −0.035 [−0.045, −0.026], dropout+bn+wd −0.013
[−0.021, −0.005]): the test losses differ mostly in confidence. How they differ: wd shrinks the
hidden kernels (‖W‖ 35.6 → 9.4) and keeps the clean training loss high (0.284 vs 0.061: it limits
the fit); dropout leaves ‖W‖ near none's (33.8) and its clean training loss (0.203) sits well below
its training-mode one (0.298); bn fits fastest (clean training loss 0.003) and overfits most; with
BatchNorm, λ = 10 shrinks ‖W‖ to 0.119 [0.116, 0.122] of bn's and raises η/‖W‖ 9.6 [9.3, 9.9]-fold,
and lowers the test loss by 0.265 [0.243, 0.286] against bn although the decayed kernels are
exactly the scale-invariant ones (the head is not decayed): the change cannot come from a smaller
function class; it comes through the training dynamics, as Zhang et al. argue. BatchNorm's running
averages lag: bn+wd's recorded test loss exceeds the population-statistics one by 0.202
[0.055, 0.349] (bn: +0.055 [−0.008, +0.119], not detectable). Caveat: the verdicts are for this one
overfitting setting (small data, constant learning rate, final epoch, no early stopping), and the
BatchNorm verdict is for the final epoch of a run where it overfits.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

import wdjax
from wdjax import study
from wdjax.analysis import stats
from wdjax.engine.models import BN_MOMENTUM
from wdjax.study import replicates

NAME = "versus_dropout_batchnorm"
ARMS = ("none", "wd", "dropout", "dropout+wd", "bn", "bn+wd", "dropout+bn", "dropout+bn+wd")
METRICS = ("eval_test_loss", "eval_test_acc", "gap", "eval_train_loss", "eval_val_loss",
           "train_loss", "hidden_l2", "eff_lr", "test_loss", "val_loss", "stale")  # fmt: skip
CLAIMS = {"wd regularizes (Krogh & Hertz 1992)": "wd",
          "dropout regularizes (Srivastava et al. 2014)": "dropout",
          "BatchNorm regularizes (Ioffe & Szegedy 2015)": "bn"}  # fmt: skip


def get_config(smoke=False) -> dict:
    """Knobs: ``rates`` (dropout rates, one sweep each), ``replicates``."""
    return dict(
        dataset="digits" if smoke else "fashion_mnist", hidden=(64, 64) if smoke else (256, 256),
        train_size=None if smoke else 6_000, val_size=0.2 if smoke else 10_000, mask="hidden",
        strengths=(0.0, 0.3) if smoke else (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
        epochs=2 if smoke else 40, eval_every=1 if smoke else 4,
        rates=(0.3,) if smoke else (0.2, 0.5), replicates=2 if smoke else 5,
    )  # fmt: skip


def candidates(arm: str, rates, strengths) -> list[tuple]:
    """The (dropout, batchnorm, λ) settings an arm is tuned over: every rate for dropout arms,
    every λ > 0 for +wd arms, else 0."""
    drops = tuple(rates) if "dropout" in arm else (0.0,)
    lams = [s for s in strengths if s > 0] if arm.endswith("wd") else [0.0]
    return [(d, "bn" in arm, lam) for d in drops for lam in lams]


def select(options: list[tuple], val: dict) -> tuple:
    """The option with the lowest validation loss averaged over replicates (NaN-safe)."""
    i = stats.argmin([np.mean(val[o]) for o in options])
    return options[0 if i is None else i]


# --- per-member quantities the history does not hold -----------------------------------------


def hidden_norms(history: dict, hidden) -> np.ndarray:
    """``[layers, K, epochs]`` Frobenius norms of the hidden kernels (``weight_l2/dense_i``)."""
    return np.stack([np.asarray(history[f"weight_l2/dense_{i}"], float)
                     for i in range(len(hidden))])  # fmt: skip


SPLITS = ("train", "val", "test")


def final_eval(res, ds) -> dict:
    """``{eval_<split>_loss, eval_<split>_acc: [K]}`` for the training, validation and test
    images: each member's final weights in inference mode, dropout off, and with BatchNorm the
    training set's population statistics under those weights (PreciseBN) instead of the running
    averages, which lag behind weights that Adam moves quickly (the summary's ``stale`` column:
    recorded − population test loss). One full-batch training-mode pass from zero running
    averages gives (1 − momentum)·(mean, biased variance), the statistics that pass normalizes
    with, so the training loss equals that pass's."""
    cfg = res.config
    model = wdjax.make_model(cfg.model, ds.num_classes, hidden=cfg.hidden, batchnorm=cfg.batchnorm)
    data = [jnp.asarray(getattr(ds, f"{a}_{s}")) for s in SPLITS for a in "xy"]
    out = _eval_program(model)(res.params, *data)
    return {f"eval_{s}_{m}": np.asarray(out[i][j], float)
            for i, s in enumerate(SPLITS) for j, m in enumerate(("loss", "acc"))}  # fmt: skip


@functools.cache
def _eval_program(model):
    """The jitted ``final_eval`` of one model (compiled once per model and data shapes)."""

    def member(params, x_tr, *rest):
        variables = {"params": params}
        if model.batchnorm:
            init = jax.eval_shape(lambda k: model.init(k, x_tr[:1], train=False), jax.random.key(0))
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), init["batch_stats"])
            _, new = model.apply({"params": params, "batch_stats": zeros}, x_tr, train=True,
                                 mutable=["batch_stats"])  # fmt: skip
            variables["batch_stats"] = jax.tree.map(lambda v: v / (1 - BN_MOMENTUM),
                                                    new["batch_stats"])  # fmt: skip

        def split(x, y):
            logits = model.apply(variables, x, train=False)
            return wdjax.cross_entropy(logits, y), wdjax.accuracy(logits, y)

        xs = (x_tr, *rest)
        return [split(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]

    return jax.jit(lambda params, *data: jax.lax.map(lambda p: member(p, *data), params))


def augment(res, ds):
    """The sweep's result with :func:`final_eval`'s metrics, ``gap`` (test − training loss of
    that evaluation) and ``stale`` (recorded − evaluated test loss), each at the final epoch
    only (NaN before), and ``hidden_l2``, ``eff_lr`` (every epoch) added to its history; the
    parameters dropped (memory)."""
    h = dict(res.history)
    epochs = np.asarray(h["test_loss"]).shape[1]

    def final(v):
        return np.concatenate([np.full((len(v), epochs - 1), np.nan), np.asarray(v)[:, None]], 1)

    ev = final_eval(res, ds)
    h.update({k: final(v) for k, v in ev.items()})
    h["gap"] = final(ev["eval_test_loss"] - ev["eval_train_loss"])
    h["stale"] = final(np.asarray(h["test_loss"], float)[:, -1] - ev["eval_test_loss"])
    norms = hidden_norms(h, res.config.hidden)
    h["hidden_l2"] = np.sqrt(np.sum(norms**2, axis=0))
    h["eff_lr"] = np.mean(np.asarray(h["lr"], float)[None] / norms, axis=0)
    return res._replace(history=h, params=None)


# --- statistics over replicates ---------------------------------------------------------------


def grid_values(runs: dict, metric: str) -> dict:
    """``{(dropout, batchnorm, λ): [replicates]}`` final-epoch values of every setting swept."""
    return _by_setting(runs, metric, replicates.setting_values)


def grid_curves(runs: dict, metric: str) -> dict:
    """``{(dropout, batchnorm, λ): [replicates, epochs]}`` per-epoch values."""
    return _by_setting(runs, metric, replicates.curves)


def _by_setting(runs: dict, metric: str, read) -> dict:
    out = {}
    for (d, bn), rs in runs.items():
        settings, v = read(rs, metric)
        out.update({(d, bn, s["strength"]): v[:, j] for j, s in enumerate(settings)})
    return out


def interval(x) -> dict:
    s = stats.describe(x)
    return {"mean": float(s.mean), "lo": float(s.lo), "hi": float(s.hi)}


def arm_row(values: dict, base: dict) -> dict:
    """Per metric ``x``: mean/std/lo/hi over replicates and the paired difference to ``base``."""
    row = {}
    for x, v in values.items():
        row.update(replicates.summarize(x, v, base[x]))
    return row


def overfitting(val_RxE: np.ndarray) -> dict:
    """Where the validation loss of each replicate bottoms out (epochs not evaluated are NaN),
    and how far it has risen by the last epoch: {mean, lo, hi} over replicates."""
    idx = [stats.argmin(v) for v in val_RxE]
    mins = np.array([v[i] for v, i in zip(val_RxE, idx, strict=True)])
    final = val_RxE[:, -1]
    return dict(min_epoch=interval(np.add(idx, 1)), val_min=interval(mins),
                val_final=interval(final), rise=interval(final - mins),
                mean_curve_min_epoch=int(stats.argmin(np.mean(val_RxE, axis=0))) + 1)  # fmt: skip


def ratio(x, base) -> dict:
    """The paired ratio x/base as exp of the interval of the mean log ratio (geometric mean)."""
    s = stats.paired_differences(np.log(x), np.log(base))
    return {"mean": float(np.exp(s.mean)), "lo": float(np.exp(s.lo)), "hi": float(np.exp(s.hi))}


def claim_verdicts(arms: dict, bn_wd: dict) -> dict:
    """reproduced / contradicted / inconclusive per claim, from paired intervals."""
    out = {}
    for claim, arm in CLAIMS.items():
        r = arms[arm]
        v = study.verdict((r["eval_test_loss_diff_lo"], r["eval_test_loss_diff_hi"]))
        out[claim] = {
            "verdict": {"lower": "reproduced", "higher": "contradicted"}.get(v, "inconclusive"),
            "why": f"test loss {arm} − none {study.ci(r, 'eval_test_loss_diff')}: {v}",
        }
    r = bn_wd["eff_lr_ratio"]
    up = "reproduced" if r["lo"] > 1 else ("contradicted" if r["hi"] < 1 else "inconclusive")
    out["with BN, wd raises the effective lr (van Laarhoven 2017; Zhang et al. 2019)"] = {
        "verdict": up,
        "why": f"η/‖W‖ bn+wd ÷ bn = {study.fmt_ci(r['mean'], r['lo'], r['hi'], 2)}",
    }
    return out


# --- figure -----------------------------------------------------------------------------------


LOG_AXES = ("train_loss", "eff_lr")


def plot(curves: dict, chosen: dict):
    plt = study.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    panels = (("val_loss", "validation loss (BN: running averages)"),
              ("train_loss", "training loss (train mode)"), ("hidden_l2", "‖W‖ hidden kernels"),
              ("eff_lr", "η/‖W_l‖ (hidden, mean; BN arms)"))  # fmt: skip
    for ax, (metric, label) in zip(axes.flat, panels, strict=True):
        for k, (arm, key) in enumerate(chosen.items()):
            if metric == "eff_lr" and "bn" not in arm:
                continue
            c = curves[metric][key]
            ok = ~np.all(np.isnan(c), axis=0)
            e = np.arange(1, c.shape[1] + 1)[ok]
            s = stats.describe(c[:, ok], axis=0)
            ls = "--" if arm.endswith("wd") else "-"
            ax.plot(e, s.mean, ls, color=f"C{k}", label=arm)
            ax.fill_between(e, s.lo, s.hi, color=f"C{k}", alpha=0.15)
        ax.set(xlabel="epoch", ylabel=label, yscale="log" if metric in LOG_AXES else "linear")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Arms at their tuned (rate, λ): mean over replicates, bands = 95 % intervals")
    fig.tight_layout()
    return fig


# --- main -------------------------------------------------------------------------------------


def sweep_all(run) -> dict:
    """``{(dropout, batchnorm): [SweepResult per replicate]}`` (each augmented)."""
    shapes = [(d, bn) for bn in (False, True) for d in (0.0, *run.knobs["rates"])]
    runs = {s: [] for s in shapes}
    for cfg in replicates.replicate_configs(run.config, run.knobs["replicates"]):
        ds = study.load_data(cfg)
        for d, bn in shapes:
            runs[(d, bn)].append(augment(wdjax.sweep(cfg, data=ds, dropout=d, batchnorm=bn), ds))
    return runs


def compare(finals: dict, chosen: dict) -> tuple[dict, dict]:
    """(``arms`` rows with paired differences against none, ``bn_wd``: bn+wd against bn)."""
    base = {x: finals[x][chosen["none"]] for x in METRICS}
    arms = {}
    for arm, key in chosen.items():
        row = arm_row({x: finals[x][key] for x in METRICS}, base)
        verdict = study.verdict((row["eval_test_loss_diff_lo"], row["eval_test_loss_diff_hi"]))
        arms[arm] = dict(dropout=key[0], batchnorm=key[1], strength=key[2], **row, verdict=verdict)
    bn, wd = chosen["bn"], chosen["bn+wd"]
    bn_wd = dict(
        test_loss_diff=interval(finals["eval_test_loss"][wd] - finals["eval_test_loss"][bn]),
        hidden_l2_ratio=ratio(finals["hidden_l2"][wd], finals["hidden_l2"][bn]),
        eff_lr_ratio=ratio(finals["eff_lr"][wd], finals["eff_lr"][bn]),
    )
    return arms, bn_wd


def eval_check(finals: dict) -> float:
    """Largest |evaluated − recorded| final validation loss over the settings without BatchNorm
    (the same computation in another program: equal to float rounding)."""
    keys = [k for k in finals["val_loss"] if not k[1]]
    return float(max(np.max(np.abs(finals["eval_val_loss"][k] - finals["val_loss"][k]))
                     for k in keys))  # fmt: skip


COLUMNS = ["arm", "rate, λ", "test loss", "Δ test loss vs none", "verdict", "test acc",
           "gap (test − train)", "Δ gap vs none", "train loss", "‖W‖ hidden",
           "η/‖W‖ (×10⁻⁵)", "stale BN statistics"]  # fmt: skip


def table_row(arm: str, r: dict) -> list:
    diff = (lambda k: "—") if arm == "none" else (lambda k: study.ci(r, k))  # noqa: E731
    eff = study.fmt_ci(*(1e5 * r[f"eff_lr_{k}"] for k in ("mean", "lo", "hi")), 2)
    return [arm, f"{r['dropout']:g}, {r['strength']:g}", study.ci(r, "eval_test_loss"),
            diff("eval_test_loss_diff"), "baseline" if arm == "none" else r["verdict"],
            study.ci(r, "eval_test_acc"), study.ci(r, "gap"), diff("gap_diff"),
            study.ci(r, "eval_train_loss"), study.ci(r, "hidden_l2", 1), eff,
            study.ci(r, "stale") if r["batchnorm"] else "—"]  # fmt: skip


def main(argv=None) -> dict:
    run = study.setup(__doc__, NAME, get_config, argv)
    rates, lams = run.knobs["rates"], run.config.strengths
    runs = sweep_all(run)
    finals = {x: grid_values(runs, x) for x in METRICS}
    chosen = {a: select(candidates(a, rates, lams), finals["eval_val_loss"]) for a in ARMS}
    arms, bn_wd = compare(finals, chosen)
    tuning = {a: [[d, lam, float(np.mean(finals["eval_val_loss"][(d, bn, lam)]))]
                  for d, bn, lam in candidates(a, rates, lams)] for a in ARMS}  # fmt: skip
    curves = {x: grid_curves(runs, x) for x in ("val_loss", "train_loss", "hidden_l2", "eff_lr")}
    summary = dict(
        arms=arms, overfitting=overfitting(curves["val_loss"][chosen["none"]]), bn_wd=bn_wd,
        claims=claim_verdicts(arms, bn_wd), tuning=tuning, eval_check=eval_check(finals),
        best=min(arms, key=lambda a: arms[a]["eval_test_loss_mean"]), selected_by="val_loss",
        rates=list(rates), strengths=list(lams), epochs=run.config.epochs,
        eval_every=run.config.eval_every, replicates=run.knobs["replicates"],
        train_size=run.config.train_size, hidden=list(run.config.hidden),
        dataset=run.config.dataset,
    )  # fmt: skip
    rows = [table_row(a, r) for a, r in arms.items()]
    fig = plot(curves, chosen)
    return study.finish(run, summary, COLUMNS, rows, fig, "comparison.png")


if __name__ == "__main__":
    main()
