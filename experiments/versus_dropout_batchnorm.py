"""Weight decay against dropout and BatchNorm, alone and combined: which closes the gap, and how?

Claims: weight decay (Krogh & Hertz 1992), dropout (Srivastava et al. 2014) and BatchNorm (Ioffe &
Szegedy 2015) each lower the test loss of a network that overfits; with BatchNorm, decay on the
scale-invariant kernels raises their effective learning rate η/‖W‖ (van Laarhoven 2017).

Command: ``python experiments/versus_dropout_batchnorm.py`` (Fashion-MNIST; ``--smoke``: digits,
seconds). Runtime: 15 minutes on the 2-core machine.

Verdict (last full run): wd, dropout regularize: reproduced; BatchNorm regularizes: contradicted
(alone it overfits more); with BatchNorm, wd raises η/‖W‖: reproduced.

Design (:func:`get_config`, rules in its ``rules``): a wide MLP on 6,000 images, Adam 1e-3, 40
epochs; one sweep per (dropout rate, BatchNorm) shape holds the λ grid; 8 arms, each tuned on its
own grid; 5 replicates (common random numbers). The same programs and seeds as before.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

import wdjax
from wdjax import study
from wdjax.analysis import plots, stats
from wdjax.engine.models import BN_MOMENTUM
from wdjax.study import replicates

ARMS = ("none", "wd", "dropout", "dropout+wd", "bn", "bn+wd", "dropout+bn", "dropout+bn+wd")
METRICS = ("eval_test_loss", "eval_test_acc", "gap", "eval_train_loss", "eval_val_loss",
           "train_loss", "hidden_l2", "eff_lr", "test_loss", "val_loss", "stale")  # fmt: skip
CLAIMS = {"wd regularizes (Krogh & Hertz 1992)": "wd",
          "dropout regularizes (Srivastava et al. 2014)": "dropout",
          "BatchNorm regularizes (Ioffe & Szegedy 2015)": "bn"}  # fmt: skip
EFF_LR_CLAIM = "with BN, wd raises the effective lr (van Laarhoven 2017; Zhang et al. 2019)"
RULES = dict(
    selection="each arm's (rate, λ) over its own grid by the lowest final validation loss "
    "averaged over replicates (never test); each replicate's own pick too (nested)",
    predictions={**{c: f"test loss {a} − none: lower" for c, a in CLAIMS.items()},
                 EFF_LR_CLAIM: "η/‖W‖ bn+wd ÷ bn: higher than 1"},
    interval="95 % Student-t over replicates, paired against none; ratios: exp of the interval "
    "of the mean log ratio; verdicts by study.outcome",
    evaluation="final weights in inference mode, dropout off, BatchNorm with the training set's "
    "population statistics (PreciseBN); η/‖W_l‖ averaged over the hidden kernels",
)  # fmt: skip


def get_config() -> dict:
    """The full study. Knobs: ``rates`` (dropout rates, one sweep each), ``replicates``."""
    return dict(dataset="fashion_mnist", hidden=(256, 256), train_size=6_000, val_size=10_000,
                mask="hidden", strengths=(0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0), epochs=40,
                eval_every=4, rates=(0.2, 0.5), replicates=5, selected_by="val_loss",
                rules=RULES)  # fmt: skip


def smoke(config: dict) -> dict:
    """The tiny version: digits, a narrower MLP, 2 λ, one rate, 2 epochs, 2 replicates."""
    return dict(dataset="digits", hidden=(64, 64), train_size=None, val_size=0.2, epochs=2,
                strengths=(0.0, 0.3), eval_every=1, rates=(0.3,), replicates=2)  # fmt: skip


def candidates(arm: str, rates, strengths) -> list[tuple]:
    """An arm's (dropout, batchnorm, λ) grid: every rate with dropout, every λ > 0 with +wd."""
    drops = tuple(rates) if "dropout" in arm else (0.0,)
    lams = [s for s in strengths if s > 0] if arm.endswith("wd") else [0.0]
    return [(d, "bn" in arm, lam) for d in drops for lam in lams]


def select(options: list[tuple], val: dict, metric: dict) -> tuple[tuple, dict]:
    """(the option of lowest mean validation loss, :func:`study.select`'s choices)."""
    s = study.select(*(np.stack([d[o] for o in options], 1) for d in (val, metric)), baseline=None)
    return options[s["averaged"] or 0], s


def final_eval(res, ds) -> dict:
    """``{eval_<split>_loss, eval_<split>_acc: [K]}`` (``rules["evaluation"]``): one training-mode
    pass from zero running averages gives (1 − momentum)·(mean, biased variance)."""
    cfg, splits = res.config, ("train", "val", "test")
    model = wdjax.make_model(cfg.model, ds.num_classes, hidden=cfg.hidden, batchnorm=cfg.batchnorm)
    out = _eval_program(model)(res.params, *(jnp.asarray(getattr(ds, f"{a}_{s}"))
                                             for s in splits for a in "xy"))  # fmt: skip
    return {f"eval_{s}_{m}": np.asarray(out[i][j], float)
            for i, s in enumerate(splits) for j, m in enumerate(("loss", "acc"))}  # fmt: skip


@functools.cache
def _eval_program(model):
    def member(params, *xy):
        variables = {"params": params}
        if model.batchnorm:
            init = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), xy[0])
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), init["batch_stats"])
            _, new = model.apply({"params": params, "batch_stats": zeros}, xy[0], train=True,
                                 mutable=["batch_stats"])  # fmt: skip
            variables["batch_stats"] = jax.tree.map(lambda v: v / (1 - BN_MOMENTUM),
                                                    new["batch_stats"])  # fmt: skip
        zs = [(model.apply(variables, x, train=False), y)
              for x, y in zip(xy[::2], xy[1::2], strict=True)]  # fmt: skip
        return [(wdjax.cross_entropy(z, y), wdjax.accuracy(z, y)) for z, y in zs]

    return jax.jit(lambda params, *data: jax.lax.map(lambda p: member(p, *data), params))


def augment(res, ds):
    """``res`` with :func:`final_eval`'s metrics, ``gap`` (their test − train loss), ``stale``
    (recorded − evaluated test loss) at the last epoch (NaN before), ``hidden_l2``, ``eff_lr``."""
    h, ev, e = dict(res.history), final_eval(res, ds), np.shape(res.history["test_loss"])[1]
    final = lambda v: np.c_[np.full((len(v), e - 1), np.nan), v]  # noqa: E731
    h.update({k: final(v) for k, v in ev.items()})
    h["gap"] = final(ev["eval_test_loss"] - ev["eval_train_loss"])
    h["stale"] = final(np.asarray(h["test_loss"], float)[:, -1] - ev["eval_test_loss"])
    norms = np.stack([np.asarray(h[f"weight_l2/dense_{i}"], float)
                      for i in range(len(res.config.hidden))])  # fmt: skip
    h["hidden_l2"] = np.sqrt(np.sum(norms**2, axis=0))
    h["eff_lr"] = np.mean(np.asarray(h["lr"], float)[None] / norms, axis=0)
    return res._replace(history=h, params=None)


def by_setting(runs: dict, metric: str, read=replicates.setting_values) -> dict:
    """``{(dropout, batchnorm, λ): [replicates(, epochs)]}`` (``read``: or ``curves``)."""
    return {(d, bn, s["strength"]): v[:, j] for (d, bn), rs in runs.items()
            for settings, v in [read(rs, metric)] for j, s in enumerate(settings)}  # fmt: skip


def interval(x, values=None) -> dict:
    return dict(zip(("mean", "lo", "hi"), values or study.interval(x), strict=True))


def overfitting(val_RxE: np.ndarray) -> dict:
    """Each replicate's validation minimum (epoch, value) and the rise after it (study.rise)."""
    idx = [stats.argmin(v) for v in val_RxE]
    mins, r = np.array([v[i] for v, i in zip(val_RxE, idx, strict=True)]), study.rise(val_RxE)
    return dict(min_epoch=interval(np.add(idx, 1)), val_min=interval(mins),
                val_final=interval(val_RxE[:, -1]), rise=interval(None, r["rise"]),
                mean_curve_min_epoch=r["min_epoch"])  # fmt: skip


def ratio(x, base) -> dict:
    """The paired ratio x/base: exp of the interval of the mean log ratio (geometric mean)."""
    return {k: float(np.exp(v)) for k, v in interval(np.log(x) - np.log(base)).items()}


def claim_verdicts(arms: dict, bn_wd: dict) -> dict:
    """reproduced / contradicted / inconclusive per claim (``rules["predictions"]``)."""
    out = {}
    for claim, arm in CLAIMS.items():
        r = arms[arm]
        d = (r["eval_test_loss_diff_lo"], r["eval_test_loss_diff_hi"])
        out[claim] = {"verdict": study.outcome(d, "lower"), "why": f"test loss {arm} − none "
                      f"{study.ci(r, 'eval_test_loss_diff')}: {study.verdict(d)}"}  # fmt: skip
    r = bn_wd["eff_lr_ratio"]
    why = f"η/‖W‖ bn+wd ÷ bn = {study.fmt_ci(r['mean'], r['lo'], r['hi'], 2)}"
    return {**out, EFF_LR_CLAIM: {"verdict": study.outcome((r["lo"], r["hi"]), "higher",
                                                           ref=1.0), "why": why}}  # fmt: skip


def plot(curves: dict, chosen: dict):
    fig, axes = study.pyplot().subplots(2, 2, figsize=(12, 8.5))
    panels = (("val_loss", "validation loss (BN: running averages)", "linear"),
              ("train_loss", "training loss (train mode)", "log"),
              ("hidden_l2", "‖W‖ hidden kernels", "linear"),
              ("eff_lr", "η/‖W_l‖ (hidden, mean; BN arms)", "log"))  # fmt: skip
    for ax, (metric, label, scale) in zip(axes.flat, panels, strict=True):
        for k, (arm, key) in enumerate(chosen.items()):
            c = curves[metric][key]
            ok = ~np.all(np.isnan(c), axis=0)
            if metric != "eff_lr" or "bn" in arm:
                plots.band(ax, np.arange(1, c.shape[1] + 1)[ok], c[:, ok], arm, color=f"C{k}",
                           ls="--" if arm.endswith("wd") else "-", marker=None)  # fmt: skip
        ax.set(xlabel="epoch", ylabel=label, yscale=scale)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Arms at their tuned (rate, λ): mean over replicates, bands = 95 % intervals")
    fig.tight_layout()
    return fig


def sweep_all(ctx) -> dict:
    """``{(dropout, batchnorm): [augmented SweepResult per replicate]}`` (common draws)."""
    shapes = [(d, bn) for bn in (False, True) for d in (0.0, *ctx.knobs["rates"])]
    runs = {s: [] for s in shapes}
    for r, cfg in enumerate(replicates.replicate_configs(ctx.config, ctx.replicates)):
        ds = study.load_data(cfg)
        for d, bn in shapes:
            runs[(d, bn)].append(augment(wdjax.sweep(cfg, data=ds, dropout=d, batchnorm=bn), ds))
        print(f"{ctx.name}: replicate {r} trained", flush=True)
    return runs


def compare(finals: dict, chosen: dict) -> tuple[dict, dict]:
    """(``arms`` rows with paired differences against none, ``bn_wd``: bn+wd against bn)."""
    arms = {}
    for arm, key in chosen.items():
        row = {k: v for x in METRICS for k, v in replicates.summarize(
               x, finals[x][key], finals[x][chosen["none"]]).items()}  # fmt: skip
        verdict = study.verdict((row["eval_test_loss_diff_lo"], row["eval_test_loss_diff_hi"]))
        arms[arm] = dict(dropout=key[0], batchnorm=key[1], strength=key[2], **row, verdict=verdict)
    pair = lambda x, f: f(finals[x][chosen["bn+wd"]], finals[x][chosen["bn"]])  # noqa: E731
    return arms, dict(test_loss_diff=pair("eval_test_loss", lambda a, b: interval(a - b)),
                      hidden_l2_ratio=pair("hidden_l2", ratio),
                      eff_lr_ratio=pair("eff_lr", ratio))  # fmt: skip


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


def run(ctx: study.Context) -> study.Report:
    """Sweeps, tuning, comparisons; ``eval_check``: |evaluated − recorded| val loss, no BN."""
    rates, lams = ctx.knobs["rates"], ctx.config.strengths
    runs = sweep_all(ctx)
    finals = {x: by_setting(runs, x) for x in METRICS}
    val = finals["eval_val_loss"]
    picks = {a: select(candidates(a, rates, lams), val, finals["eval_test_loss"]) for a in ARMS}
    chosen = {a: key for a, (key, _) in picks.items()}
    arms, bn_wd = compare(finals, chosen)
    curves = {x: by_setting(runs, x, replicates.curves)
              for x in ("val_loss", "train_loss", "hidden_l2", "eff_lr")}  # fmt: skip
    summary = dict(
        arms=arms, overfitting=overfitting(curves["val_loss"][chosen["none"]]), bn_wd=bn_wd,
        claims=claim_verdicts(arms, bn_wd), nested={a: s["nested"] for a, (_, s) in picks.items()},
        tuning={a: [[d, lam, float(np.mean(val[(d, bn, lam)]))]
                    for d, bn, lam in candidates(a, rates, lams)] for a in ARMS},
        eval_check=max(float(np.max(np.abs(val[k] - finals["val_loss"][k])))
                       for k in val if not k[1]),
        best=min(arms, key=lambda a: arms[a]["eval_test_loss_mean"]), rates=list(rates),
        strengths=list(lams), epochs=ctx.config.epochs, eval_every=ctx.config.eval_every,
        train_size=ctx.config.train_size, hidden=list(ctx.config.hidden),
    )  # fmt: skip
    rows = [table_row(a, r) for a, r in arms.items()]
    return study.Report(summary, COLUMNS, rows, plot(curves, chosen))


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
