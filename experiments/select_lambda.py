"""Does k-fold cross-validation pick a better λ than one validation split?

Command: ``python experiments/select_lambda.py``. Runtime: about 3 minutes on 2 CPU cores (one
compiled 5-fold sweep of 17 strengths × 3 seeds × 5 folds = 255 members, one single-split sweep of
51 members; 100 epochs each).

Setup: the tutorial MLP 64-64, Adam lr 1e-3, batch 128, 100 epochs (10 undertrains on digits),
decoupled weight decay ``wd`` (AdamW), λ = 0 plus 16 log-spaced strengths. Every λ is scored by
validation cross-entropy (mean over seeds, final epoch). Chosen λ:
``cv``: 5-fold CV on the 1,438-example pool (folds × λ × seeds are the members of one compiled
call; each fold validates on 288 examples); ``val_split``: the usual single 10 % split (144
examples; the split every other study uses); ``per_fold``: each CV fold alone as one 288-example
validation split (how much a single split's choice moves); ``test_best``: the λ with the lowest
mean test loss (an oracle, not a method). Every choice is then scored on the same models: the
single-split run's networks (trained on 1,294 examples) at that λ, on the 359-example test set.

Expected (literature): CV lowers the variance of the risk estimate compared with one split, so its
choice sits closer to the oracle (Stone 1974; Arlot & Celisse 2010, "A survey of cross-validation
procedures for model selection"); with a flat loss-vs-λ curve near the optimum, the test-loss
regret of any reasonable choice is small compared with the seed spread.

summary.json keys: ``lambda`` {cv, val_split, test_best, per_fold: [..], val_split_per_seed: [..]},
``test_loss`` and ``test_acc`` {cv, val_split, test_best, zero, per_fold: mean over folds'
choices} with ``_std`` twins (over seeds; per_fold: over folds), ``regret`` {cv, val_split,
per_fold}: test loss minus test_best's, ``reg``, ``folds``, ``selected_by``, ``epochs``, ``seeds``,
``figure``, ``command``.

Measured (digits, 100 epochs, 3 seeds, 138–192 s on 2 shared cores): validation and test loss
are flat from λ = 1e-3 to ≈ 0.5 and rise beyond 1 (accuracy 0.75 at λ = 10), so the choice hardly
matters: 5-fold CV and the single 10 % split both pick λ = 0.136 (test loss 0.0690 ± 0.0045, acc
0.9861 ± 0.0023), the test oracle picks 0.074 (0.0689 ± 0.0059): a regret of 1e-4, far below the
seed spread; λ = 0 gives 0.0697 ± 0.0076. Single small splits are noisy, as expected: each CV fold
alone (288 examples) picks anywhere from 1.8e-3 to 0.25, and the 10 % split picks 3.4e-3 … 0.25
when each seed decides alone, yet these choices cost only 0.0023 in test loss (half a seed std).
CV gives the stable choice the literature predicts; on this flat curve the stability buys little.
"""

import numpy as np

import wdjax
from wdjax import stats, study

NAME = "select_lambda"
NAMES = {"cv": "{f}-fold CV", "val_split": "one 10 % validation split",
         "per_fold": "one CV fold alone (each)", "test_best": "best on test (oracle)",
         "zero": "λ = 0"}  # fmt: skip


def get_config(smoke=False) -> dict:
    grid = (0.0, *np.geomspace(1e-3, 1e1, 2 if smoke else 16).tolist())
    return dict(strengths=grid, folds=2 if smoke else 5, seeds=1 if smoke else 3,
                epochs=2 if smoke else 100)  # fmt: skip


def scores(m: dict, pick: dict, per_fold: list) -> dict:
    """``test_loss``/``test_acc`` of each choice (mean ± std over seeds; per_fold: over folds'
    choices) on the single-split models, and each method's ``regret`` against the oracle."""
    out = {}
    for metric in ("test_loss", "test_acc"):
        d = {}
        for k, i in pick.items():
            d.update(study.with_std(**{k: m[metric][i]}))
        # each fold's choice, mean over seeds; then mean ± std over folds
        d.update(study.with_std(per_fold=m[metric][per_fold].mean(axis=1)))
        out[metric] = d
    tl = out["test_loss"]
    out["regret"] = {k: tl[k] - tl["test_best"] for k in ("cv", "val_split", "per_fold")}
    return out


def main(argv=None) -> dict:
    run = study.setup(__doc__, NAME, get_config, argv)
    cfg = run.config
    lam = np.array(cfg.strengths)
    s, f = len(lam), cfg.folds
    cv = wdjax.sweep(cfg)
    cv_val = study.by_strength(cv, "val_loss").reshape(s, cfg.seeds, f)
    one = wdjax.sweep(cfg, folds=1)
    m = {k: study.by_strength(one, k) for k in ("val_loss", "test_loss", "test_acc")}  # [S, seeds]
    pick = dict(cv=stats.argmin(cv_val.mean(axis=(1, 2))),
                val_split=stats.argmin(m["val_loss"].mean(1)),
                test_best=stats.argmin(m["test_loss"].mean(1)), zero=0)  # fmt: skip
    per_fold = [stats.argmin(cv_val[:, :, j].mean(1)) for j in range(f)]
    per_seed = [stats.argmin(m["val_loss"][:, j]) for j in range(cfg.seeds)]
    chosen = {k: float(lam[i]) for k, i in pick.items() if k != "zero"}
    chosen.update(per_fold=lam[per_fold].tolist(), val_split_per_seed=lam[per_seed].tolist())
    summary = {"lambda": chosen, **scores(m, pick, per_fold)}
    tl, ta, regret = summary["test_loss"], summary["test_acc"], summary["regret"]
    rows = []
    for k, label in NAMES.items():
        lam_txt = (", ".join(f"{x:.3g}" for x in chosen["per_fold"]) if k == "per_fold"
                   else f"{lam[pick[k]]:.3g}")  # fmt: skip
        rows.append([label.format(f=f), lam_txt, study.pm(tl, k), study.pm(ta, k),
                     f"{regret[k]:+.4f}" if k in regret else ""])  # fmt: skip
    summary.update(reg=cfg.reg, folds=f, selected_by="val_loss", epochs=cfg.epochs,
                   seeds=cfg.seeds)  # fmt: skip
    columns = ["selection", "λ", "test loss", "test acc", "regret (test loss)"]
    fig = figure(lam, cv_val, m, pick)
    return study.finish(run, summary, columns, rows, fig, f"{NAME}.png")


def figure(lam, cv_val, m, pick):
    plt = study.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    x = lam[1:]
    ax = axes[0]
    for j in range(cv_val.shape[2]):
        ax.plot(x, cv_val[1:, :, j].mean(1), color="C0", lw=0.6, alpha=0.5)
    ax.plot(x, cv_val[1:].mean(axis=(1, 2)), color="C0", lw=2, label="CV mean (thin: folds)")
    ax.plot(x, m["val_loss"][1:].mean(1), color="C1", ls="--", label="one 10 % split")
    ax.plot(x, m["test_loss"][1:].mean(1), color="k", label="test")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    mean, std = study.mean_std(m["test_acc"][1:], axis=1)
    axes[1].plot(x, mean, color="k", label="test accuracy (single-split models)")
    axes[1].fill_between(x, mean - std, mean + std, color="k", alpha=0.15)
    axes[1].set_ylabel("test accuracy")
    for a in axes:
        for k, c, ls in (("cv", "C0", "-"), ("val_split", "C1", ":"), ("test_best", "k", ":")):
            if pick[k] > 0:
                a.axvline(lam[pick[k]], color=c, ls=ls, lw=1.2)
        a.set_xscale("log")
        a.set_xlabel("wd strength λ (vertical: chosen λ)")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle("choosing λ: k-fold CV vs one validation split vs the test-set oracle")
    return fig


if __name__ == "__main__":
    main()
