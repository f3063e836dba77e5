"""Which L1 method gives real sparsity: l1_prox vs l1 (subgradient) vs group_lasso_prox?

Command: ``python experiments/l1_sparsity.py``. Runtime: about 2–3 minutes on 2 CPU cores (three
compiled sweeps of 25 strengths × 3 seeds = 75 members, 100 epochs each).

Setup: the tutorial MLP 64-64, Adam lr 1e-3, batch 128, 100 epochs (10 undertrains on digits);
λ = 0 plus 24 log-spaced strengths in 1e-7…1e-1 per method. Only exact zeros count as zeros.
Dead hidden units: hidden units whose whole incoming kernel column is exactly zero (layers
``dense_0``, ``dense_1``). The pixel image shows, for each method at its operating point, the
fraction of seeds in which an input pixel keeps any non-zero first-layer weight. Operating point:
the largest λ whose mean test accuracy is within 1 percentage point of the method's λ = 0 run
(chosen on test: this describes the frontier, it does not select a model).

Expected (literature): the subgradient (Keras-style) L1 makes weights small but never exactly zero,
since a gradient step almost never lands on 0 (Duchi & Singer 2009; Tsuruoka et al. 2009);
proximal L1 (ISTA/FOBOS) sets weights exactly to zero, unstructured; the group lasso over each
unit's incoming weights removes whole hidden units (Yuan & Lin 2006; Scardapane et al. 2017,
"Group sparse regularization for deep neural networks"), so sparsity comes in blocks and pixels
die only when every unit they feed dies. Digits' border pixels are constant (mostly 0), so
their weights get no data gradient and the L1 prox should prune them first.

summary.json keys: ``operating_point`` {reg: {strength, sparsity, sparsity_from_params,
tiny_fraction (|w| < 1e-3, from params), test_acc, test_acc_std, test_loss, test_loss_std,
dead_hidden_units, pixels_alive, pixels_total}}, ``max_sparsity`` {reg: float}, ``frontier``
{reg: {strength, sparsity, test_acc, test_loss, dead_hidden_units}: lists, means over seeds},
``epochs``, ``seeds``, ``figure``, ``command``.

Measured (digits, 100 epochs, 3 seeds, 164 s on the shared 2-core machine): as expected, the
subgradient ``l1`` never produces an exact zero at any λ (sparsity 0.000 everywhere, although at its
operating point λ = 4.5e-4 half of the weights are below 1e-3 in magnitude), while ``l1_prox``
reaches 57 % exact zeros at λ = 8.2e-4 for 0.8 pp of test accuracy (0.976 ± 0.001 vs 0.983 at
λ = 0; test loss 0.140 vs 0.070, so the loss pays more than the accuracy) and 91 % zeros for 7 pp.
``group_lasso_prox`` removes whole hidden units (16 of 128 at its operating point, 16 % zeros) and
has a worse frontier than the unstructured prox beyond ~20 % sparsity. Not expected: with Adam both
proxes prune some weights at the smallest λ (1e-7): weights whose gradient is always zero (inputs
from the 3 pixels digits never lights up, units whose ReLU is dead) have v̂ ≈ 0, so the Adam-metric
threshold lr·λ/(√v̂+ε) is huge and they go to zero at once (1–6 dead units already at λ = 1e-7).
The pixel maps match the expectation: l1_prox keeps 46 of 64 pixels and drops the left/right border
columns; group lasso drops exactly the 3 never-lit pixels; l1 keeps all 64.
"""

import jax
import numpy as np

import wdjax
from wdjax import study

NAME = "l1_sparsity"
REGS = ("l1", "l1_prox", "group_lasso_prox")


def get_config(smoke=False) -> dict:
    grid = (0.0, *np.geomspace(1e-7, 1e-1, 2 if smoke else 24).tolist())
    return dict(strengths=grid, seeds=1 if smoke else 3, epochs=2 if smoke else 100)


def kernels(params) -> list[np.ndarray]:
    """Every kernel leaf ([K, ...] with the member axis) of the returned parameters, in order."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    path_of = wdjax.penalties.param_path
    return [np.asarray(v) for path, v in leaves if path_of(path).endswith("kernel")]


def analyse(res, image_shape) -> dict:
    """Per-strength means over seeds and the operating point of one method's sweep."""
    m = {k: study.by_strength(res, k) for k in ("sparsity", "test_acc", "test_loss")}
    dead = sum(study.by_strength(res, k) for k in res.history
               if k.startswith("dead_units/") and not k.endswith("head"))  # fmt: skip
    acc = np.nanmean(m["test_acc"], axis=1)
    i = int(np.flatnonzero(acc >= acc[0] - 0.01).max())
    seeds = m["sparsity"].shape[1]
    ks = [k.reshape(len(acc), seeds, *k.shape[1:]) for k in kernels(res.params)]
    flat = np.concatenate([k[i].reshape(seeds, -1) for k in ks], axis=1)  # [seeds, weights]
    first = next(k for k in ks if k.shape[2] == np.prod(image_shape))[i]  # [seeds, pixels, units]
    alive = np.any(first.reshape(seeds, *image_shape, -1) != 0, axis=(-2, -1))  # [seeds, H, W]
    alive_pix = np.mean(alive, axis=0)  # [H, W]: fraction of seeds with the pixel alive
    point = dict(strength=float(res.config.strengths[i]),
                 sparsity=float(np.mean(m["sparsity"][i])),
                 sparsity_from_params=float(np.mean(flat == 0)),
                 tiny_fraction=float(np.mean(np.abs(flat) < 1e-3)),
                 **study.with_std(test_acc=m["test_acc"][i], test_loss=m["test_loss"][i]),
                 dead_hidden_units=float(np.mean(dead[i])),
                 pixels_alive=float(np.mean(np.sum(alive, axis=(1, 2)))),
                 pixels_total=int(alive_pix.size))  # fmt: skip
    front = dict(strength=list(res.config.strengths), dead_hidden_units=np.mean(dead, 1).tolist(),
                 **{k: np.nanmean(v, axis=1).tolist() for k, v in m.items()})  # fmt: skip
    return dict(point=point, frontier=front, alive=alive_pix)


def figure(out: dict):
    plt = study.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    for reg, a in out.items():
        f = a["frontier"]
        axes[0, 0].plot(f["sparsity"], f["test_acc"], marker="o", ms=3, label=reg)
        axes[0, 1].plot(f["sparsity"], f["test_loss"], marker="o", ms=3, label=reg)
        axes[0, 2].plot(f["strength"][1:], f["dead_hidden_units"][1:], marker="o", ms=3, label=reg)
    for ax, (x, y) in zip(axes[0], [("sparsity (exact zeros)", "test accuracy"),
                                    ("sparsity (exact zeros)", "test cross-entropy"),
                                    ("λ", "dead hidden units (of 128)")], strict=True):  # fmt: skip
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    axes[0, 1].set_yscale("log")
    axes[0, 2].set_xscale("log")
    axes[0, 0].legend()
    for ax, (reg, a) in zip(axes[1], out.items(), strict=True):
        im = ax.imshow(a["alive"], vmin=0, vmax=1, cmap="viridis")
        p = a["point"]
        ax.set_title(f"{reg} λ={p['strength']:.2g}: {p['pixels_alive']:.0f} pixels alive",
                     fontsize=9)  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[1, -1], label="fraction of seeds with the pixel alive")
    fig.suptitle("sparsity–accuracy frontier (means over seeds); bottom: input pixels with any "
                 "non-zero weight at the largest λ within 1 pp of λ = 0")  # fmt: skip
    return fig


def main(argv=None) -> dict:
    run = study.setup(__doc__, NAME, get_config, argv)
    image_shape = study.load_data(run.config).image_shape
    out = {reg: analyse(wdjax.sweep(run.config, reg=reg), image_shape) for reg in REGS}
    rows = []
    for reg, a in out.items():
        p = a["point"]
        rows.append([reg, f"{p['strength']:.3g}", f"{p['sparsity']:.3f}",
                     f"{p['tiny_fraction']:.3f}", study.pm(p, "test_acc"),
                     study.pm(p, "test_loss"), f"{p['dead_hidden_units']:.1f}",
                     f"{p['pixels_alive']:.1f}/{p['pixels_total']}",
                     f"{max(a['frontier']['sparsity']):.3f}"])  # fmt: skip
    columns = ["reg", "λ (≤1 pp acc loss)", "sparsity", "share of abs(w) < 1e-3", "test acc",
               "test loss", "dead hidden units", "pixels alive",
               "max sparsity (any λ)"]  # fmt: skip
    summary = dict(
        operating_point={r: a["point"] for r, a in out.items()},
        max_sparsity={r: max(a["frontier"]["sparsity"]) for r, a in out.items()},
        frontier={r: a["frontier"] for r, a in out.items()},
        epochs=run.config.epochs, seeds=run.config.seeds,
    )  # fmt: skip
    return study.finish(run, summary, columns, rows, figure(out), f"{NAME}.png")


if __name__ == "__main__":
    main()
