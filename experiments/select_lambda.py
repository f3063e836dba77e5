"""Choosing λ: does 5-fold cross-validation land closer to the test-optimal λ than one split?

Claim tested: cross-validation lowers the variance of the risk estimate compared with one
hold-out split, so the λ it selects is closer to the oracle (Stone 1974, "Cross-validatory choice
and assessment of statistical predictions"; Kohavi 1995, "A study of cross-validation and
bootstrap for accuracy estimation and model selection"; Arlot & Celisse 2010, "A survey of
cross-validation procedures for model selection").

Command: ``python experiments/select_lambda.py``. Runtime: 691 s (11.5 min) measured on the
2-core machine, shared with other agents' jobs (run under flock; the process got 156 % CPU): per
split 3 sweeps (40 + 8 + 8 members), each shape compiled once and reused over the 10 splits.

Setup: the tutorial MLP 64-64, Adam lr 1e-3, batch 128, cosine schedule, decoupled weight decay
``wd`` (AdamW) on every kernel but the output layer's (``mask="hidden"``, as the tutorial), λ = 0
plus 7 log-spaced values 0.03 … 30 (half a decade apart; a calibration run on 1e-3 … 1e3 put
the test-loss minimum near λ ≈ 3 at n = 1,000 and λ ≈ 1 at n = 6,000). Fashion-MNIST; a
researcher owns n labelled examples (n = 1,000: 100 epochs; n = 6,000: 60 epochs; both past
λ = 0's validation minimum, see below) and picks λ using only them:

* ``cv``: 5-fold CV on the n examples (λ = argmin of the fold-mean final validation loss);
* ``val_split``: one random 10 % hold-out (train on 0.9 n, validate on 0.1 n);
* ``one_fold``: fold 0 of the CV alone (a 20 % hold-out); ``one_fold_avg``: each fold alone,
  regret averaged over the 5 (the expected regret of one 20 % split, measured more precisely);
* ``zero``: λ = 0, no regularization (reference).

Every method's λ is then used for the network retrained on all n examples at that λ; the test
loss of those final networks per λ is what a method delivers, and its argmin is the oracle (per
split; never a method). Regret = test loss at the method's λ − the oracle's. Both hold-outs see
the same n examples (for one ``data_seed`` :func:`wdjax.load` draws the pool ``perm[:n]`` and
only cuts it differently). Each of R = 10 data splits (``data_seed`` = r: which n examples, the
folds, the hold-out, the batch order; new initial weights, shared by the three sweeps of a split)
is one independent draw of the whole procedure; regrets are paired by split. Reported per n and
method: median regret with its order-statistic interval (coverage 97.9 % at R = 10; many regrets
are exactly 0, so read it as at least that), mean regret with a Student-t 95 % interval, the
paired difference cv − method with a Student-t 95 % interval, how often the oracle's λ is picked,
and the chosen λ (median, range).

summary.json keys: ``regret`` {n: {method: {median, median_lo, median_hi, median_coverage, mean,
std, lo, hi, oracle_hits, values}}}, ``paired`` {n: {method: {mean, lo, hi, verdict}}} (cv −
method), ``lambda`` {n: {method: chosen λ per split (one_fold_avg: per split and fold), oracle}},
``test_loss_curve`` {n: {mean, lo, hi}} (final networks, per λ), ``baseline_min_epoch`` {n:
{val_loss, test_loss}} (epoch of λ = 0's smallest mean over splits: the 10 % split's validation
loss, the final networks' test loss), ``conclusion``, ``budgets``, ``strengths``, ``replicates``,
``folds``, ``val_fraction``, ``reg``, ``mask``, ``selected_by``, ``dataset``.

Measured (Fashion-MNIST, R = 10; intervals as in the table): λ = 0's mean validation loss (10 %
split, mean over splits) is lowest at epoch 30 of 100 (n = 1,000) and 35 of 60 (n = 6,000), and
regularizing matters: λ = 0's regret is 0.058 [0.046, 0.070] and 0.037 [0.032, 0.041]. The test
loss is U-shaped with its minimum at λ = 3 (n = 1,000) and 0.95 (n = 6,000) in every split. 5-fold
CV picked the oracle's λ in 10 of 10 splits at both n (regret 0 each time). One 10 % split picked
it in 8 of 10 at both n (mean regret 0.0068 [−0.0039, 0.0174] and 0.0021 [−0.0011, 0.0053]),
fold 0 alone in 8 and 7 (0.0055 [−0.0028, 0.0138], 0.0051 [−0.0008, 0.0110]); a miss costs
0.008–0.043. Paired cv − method: −0.0068 [−0.0174, +0.0039] and −0.0021 [−0.0053, +0.0011]
(10 % split), −0.0055 [−0.0138, +0.0028] and −0.0051 [−0.0110, +0.0008] (fold 0): no detectable
difference at either n. Against one fold's expected regret (mean over the 5 folds of a split),
−0.0062 [−0.0105, −0.0020] at n = 1,000: lower; −0.0011 [−0.0023, +0.0000] at n = 6,000: no
detectable difference.

Conclusion: inconclusive. Every paired difference points CV's way (never higher) and CV beats
the expected regret of one 20 % fold at n = 1,000, as Stone and Arlot & Celisse predict, but
against a realised single split (the 10 % hold-out, fold 0) the paired 95 % intervals contain 0
at both n with 10 splits: a single split usually finds the same λ (7–8 splits of 10) and its
rare misses cost 0.008–0.043 nats; more splits would be needed to separate these mean
regrets. Caveat: a CV fold trains on 0.8 n for the same epochs (0.8× the wd steps) as the final
network; with this grid that did not move CV's choice.
"""

import numpy as np

from wdjax import study
from wdjax.analysis import stats, tables
from wdjax.study import replicates

NAME = "select_lambda"
METHODS = {"cv": "{f}-fold CV", "val_split": "one {p} % split", "one_fold": "one CV fold (fold 0)",
           "one_fold_avg": "one CV fold (mean of {f})", "zero": "λ = 0"}  # fmt: skip
VERSUS = ("val_split", "one_fold", "one_fold_avg")  # the claim: cv's regret is lower than these


def get_config(smoke=False) -> dict:
    return dict(dataset="digits" if smoke else "fashion_mnist", mask="hidden", schedule="cosine",
                strengths=(0.0, *np.geomspace(3e-2, 3e1, 2 if smoke else 7).tolist()),
                budgets=((256, 1, 1),) if smoke else ((1000, 100, 10), (6000, 60, 5)),
                cv_folds=2 if smoke else 5, val_fraction=0.1,
                replicates=2 if smoke else 10)  # fmt: skip


def method_overrides(n: int, folds: int, val_fraction: float) -> dict:
    """The three sweeps of a budget of ``n`` examples, as SweepConfig overrides; all of them use
    the same n examples (``perm[:n]`` of the pool for one data seed)."""
    n_val = round(val_fraction * n)
    return dict(cv=dict(train_size=n, val_size=0, folds=folds),
                val_split=dict(train_size=n - n_val, val_size=n_val, folds=1),
                final=dict(train_size=n, val_size=0, folds=1))  # fmt: skip


def fold_values(res, metric: str, folds: int) -> np.ndarray:
    """``[strengths, folds]``: final ``metric`` per λ and fold, mean over seeds (NaN: diverged)."""
    x = tables.final_values(res.history, metric)
    return x.reshape(len(res.config.strengths), -1, folds).mean(axis=1)


def measure(config, n: int, epochs: int, every: int, knobs: dict) -> dict:
    """One budget: the CV, 10 % split and final sweeps over every split → arrays by split."""
    sweeps = method_overrides(n, knobs["cv_folds"], knobs["val_fraction"])
    r = knobs["replicates"]
    cv = replicates.run(config, r, epochs=epochs, eval_every=epochs, **sweeps["cv"])
    split = replicates.run(config, r, epochs=epochs, eval_every=every, **sweeps["val_split"])
    final = replicates.run(config, r, epochs=epochs, eval_every=every, **sweeps["final"])
    return dict(cv_val=np.stack([fold_values(x, "val_loss", knobs["cv_folds"]) for x in cv]),
                split_val=replicates.setting_values(split, "val_loss")[1],
                test=replicates.setting_values(final, "test_loss")[1],
                val_curve=replicates.curves(split, "val_loss")[1][:, 0],
                test_curve=replicates.curves(final, "test_loss")[1][:, 0])  # fmt: skip


def rows_argmin(x) -> np.ndarray:
    """Index of the smallest value along the last axis (NaN ignored), for every leading index."""
    x = np.asarray(x, float)
    return np.array([stats.argmin(v) for v in x.reshape(-1, x.shape[-1])]).reshape(x.shape[:-1])


def choices(cv_val, split_val, test) -> dict:
    """Chosen λ index per split ``[R]`` of each method (``one_fold_avg``: ``[R, folds]``) and of
    the test oracle, from ``cv_val [R, S, F]``, ``split_val [R, S]``, ``test [R, S]``."""
    per_fold = rows_argmin(np.moveaxis(cv_val, 2, 1))  # [R, F]
    return dict(cv=rows_argmin(cv_val.mean(axis=2)), val_split=rows_argmin(split_val),
                one_fold=per_fold[:, 0], one_fold_avg=per_fold,
                zero=np.zeros(len(test), int), oracle=rows_argmin(test))  # fmt: skip


def regret(test, idx) -> np.ndarray:
    """``[R]``: test loss at the chosen λ minus the smallest test loss of the split; with ``idx``
    of shape ``[R, F]`` the mean over the F choices of each split."""
    test, idx = np.asarray(test, float), np.asarray(idx)
    rows = np.arange(len(test)).reshape((-1,) + (1,) * (idx.ndim - 1))
    out = test[rows, idx] - np.nanmin(test, axis=1).reshape(rows.shape)
    return out.reshape(len(test), -1).mean(axis=1)


def describe_regret(values, hits) -> dict:
    """Median with its order-statistic interval, mean with its Student-t interval, oracle hits."""
    m, t = stats.median_interval(values), stats.describe(values)
    return dict(median=m.median, median_lo=m.lo, median_hi=m.hi, median_coverage=m.coverage,
                mean=float(t.mean), std=float(t.std), lo=float(t.lo), hi=float(t.hi),
                oracle_hits=float(np.mean(hits)), values=np.asarray(values).tolist())  # fmt: skip


def analyse(m: dict, lam: np.ndarray) -> dict:
    """Per method: regret statistics, cv − method paired by split, chosen λ."""
    pick = choices(m["cv_val"], m["split_val"], m["test"])
    oracle = pick.pop("oracle")
    reg = {k: regret(m["test"], i) for k, i in pick.items()}
    hit = {k: i == (oracle[:, None] if i.ndim == 2 else oracle) for k, i in pick.items()}
    out = dict(regret={k: describe_regret(reg[k], hit[k]) for k in pick}, paired={},
               lambda_={k: lam[i].tolist() for k, i in pick.items()})  # fmt: skip
    out["lambda_"]["oracle"] = lam[oracle].tolist()
    for k in pick:
        if k != "cv":
            d = stats.paired_differences(reg["cv"], reg[k])
            out["paired"][k] = dict(mean=float(d.mean), lo=float(d.lo), hi=float(d.hi),
                                    verdict=study.verdict(d))  # fmt: skip
    t = stats.describe(m["test"], axis=0)
    out["curve"] = dict(mean=t.mean.tolist(), lo=t.lo.tolist(), hi=t.hi.tolist())
    return out


def min_epoch(curves) -> int:
    """1-based epoch of the smallest mean over splits of ``curves [R, epochs]`` (None: no value)."""
    i = stats.argmin(np.mean(curves, axis=0))  # epochs skipped by eval_every: NaN everywhere
    return None if i is None else i + 1


def conclusion(paired: dict) -> str:
    """reproduced (cv lower than every single split at every n), contradicted (higher than one
    anywhere), else inconclusive; with each n's verdicts."""
    v = {n: {k: paired[n][k]["verdict"] for k in VERSUS} for n in paired}
    flat = [x for d in v.values() for x in d.values()]
    word = ("reproduced" if all(x == "lower" for x in flat)
            else "contradicted" if "higher" in flat else "inconclusive")  # fmt: skip
    detail = "; ".join(f"n = {n}: " + ", ".join(f"cv − {k} {x}" for k, x in d.items())
                       for n, d in v.items())  # fmt: skip
    return f"{word} ({detail})"


COLUMNS = ["n", "method", "median regret [order-stat. interval]", "mean regret [95 % t]",
           "cv − method, paired [95 % t]", "oracle hits", "λ chosen: median (range)"]  # fmt: skip


def table_rows(per_n: dict, labels: dict) -> list[list]:
    """One row per (n, method), the cells of :data:`COLUMNS`."""
    rows = []
    for n, a in per_n.items():
        for k, r in a["regret"].items():
            lam = np.asarray(a["lambda_"][k], float)
            p = a["paired"].get(k)
            rows.append([n, labels[k],
                         f"{r['median']:.4f} [{r['median_lo']:.4f}, {r['median_hi']:.4f}]",
                         study.fmt_ci(r["mean"], r["lo"], r["hi"], 4),
                         study.fmt_ci(p["mean"], p["lo"], p["hi"], 4) if p else "",
                         f"{r['oracle_hits']:.2f}",
                         f"{np.median(lam):.3g} ({lam.min():.3g}–{lam.max():.3g})"])  # fmt: skip
    return rows


def main(argv=None) -> dict:
    run = study.setup(__doc__, NAME, get_config, argv)
    cfg, k = run.config, run.knobs
    if cfg.train_size is not None:
        raise SystemExit("--train-size: select_lambda sets its own budgets; leave the flag out")
    lam = np.array(cfg.strengths)
    measured = {n: measure(cfg, n, e, every, k) for n, e, every in k["budgets"]}
    per_n = {str(n): analyse(m, lam) for n, m in measured.items()}
    labels = {m: t.format(f=k["cv_folds"], p=round(100 * k["val_fraction"]))
              for m, t in METHODS.items()}  # fmt: skip
    summary = dict(
        regret={n: a["regret"] for n, a in per_n.items()},
        paired={n: a["paired"] for n, a in per_n.items()},
        conclusion=conclusion({n: a["paired"] for n, a in per_n.items()}),
        test_loss_curve={n: a["curve"] for n, a in per_n.items()},
        baseline_min_epoch={str(n): dict(val_loss=min_epoch(m["val_curve"]),
                                         test_loss=min_epoch(m["test_curve"]))
                            for n, m in measured.items()},
        budgets=[dict(n=n, epochs=e, eval_every=v) for n, e, v in k["budgets"]],
        strengths=lam.tolist(), replicates=k["replicates"], folds=k["cv_folds"],
        val_fraction=k["val_fraction"], reg=cfg.reg, mask=cfg.mask, selected_by="val_loss",
        dataset=cfg.dataset, **{"lambda": {n: a["lambda_"] for n, a in per_n.items()}},
    )  # fmt: skip
    fig = figure(measured, per_n, lam, labels)
    return study.finish(run, summary, COLUMNS, table_rows(per_n, labels), fig, f"{NAME}.png")


def figure(measured: dict, per_n: dict, lam: np.ndarray, labels: dict):
    plt = study.pyplot()
    fig, axes = plt.subplots(len(per_n), 2, figsize=(14, 4.2 * len(per_n)), squeeze=False)
    rng = np.random.default_rng(0)  # jitter of the points only
    x = np.arange(len(lam))
    for (n, a), m, (ax_r, ax_c) in zip(per_n.items(), measured.values(), axes, strict=True):
        names = list(a["regret"])
        values = [a["regret"][k]["values"] for k in names]
        ax_r.boxplot(values, whis=(0, 100), widths=0.5)
        for i, v in enumerate(values):
            ax_r.plot(i + 1 + rng.uniform(-0.12, 0.12, len(v)), v, "o", ms=4, alpha=0.7)
        ax_r.set_xticks(range(1, len(names) + 1), [labels[k] for k in names], fontsize=8)
        ax_r.set_yscale("symlog", linthresh=1e-3)  # many regrets are 0; λ = 0's are large
        ax_r.set_ylim(0, 1.5 * np.nanmax([np.nanmax(v) for v in values] + [1e-3]))
        ax_r.set_ylabel("test-loss regret vs oracle λ (symlog)")
        ax_r.set_title(f"n = {n}: regret per split (points; box: quartiles, range)", fontsize=9)
        curves = (("test", "final networks (all n): test", "k"),
                  ("split_val", "one 10 % split: validation", "C1"))  # fmt: skip
        for key, label, color in (*curves, ("cv_val", "CV: validation (fold mean)", "C0")):
            v = m[key].mean(axis=2) if key == "cv_val" else m[key]
            s = stats.describe(v, axis=0)
            ax_c.plot(x, s.mean, marker="o", ms=3, color=color, label=label)
            ax_c.fill_between(x, s.lo, s.hi, color=color, alpha=0.2)
        ax_c.set_ylim(top=1.3 * np.nanmean(m["test"][:, 0]))  # large λ leave the frame
        ax_c.set_xticks(x, [f"{v:.2g}" for v in lam], fontsize=7)
        ax_c.set_xlabel("wd strength λ")
        ax_c.set_ylabel("cross-entropy")
        ax_c.set_title(f"n = {n}: loss vs λ, split mean (clipped at 1.3 × λ = 0)", fontsize=9)
        ax_c.legend(fontsize=8)
        for ax in (ax_r, ax_c):
            ax.grid(alpha=0.3)
    fig.suptitle("Choosing λ: CV vs one split (bands: 95 % Student-t intervals over splits)")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
