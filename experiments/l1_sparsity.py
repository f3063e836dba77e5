"""Sparsity from L1 and group lasso against magnitude pruning: which gives the better accuracy at
a given sparsity, and what can actually be removed?

Claim: pruning the smallest weights of a trained network and retraining the survivors keeps its
accuracy at high sparsity, and L1 before pruning helps (Han et al. 2015, "Learning both weights
and connections for efficient neural networks"); the proximal L1 step gives exact zeros and the
subgradient none (Duchi & Singer 2009); group lasso removes whole units (Yuan & Lin 2006; Wen et
al. 2016) and, on outgoing weights, input pixels (Scardapane et al. 2017).

Command: ``python experiments/l1_sparsity.py`` (``--smoke``: digits); 5.2–5.6 min on 2 cores.
Verdict (last full run): reproduced for exact zeros and group lasso; in part for Han. Changed on
purpose: fine-tuning batch orders come from ``data_seed`` + 10,000 (before: epochs 16–20 of the
training's). Rules: :func:`get_config`; write-up: docs/studies/l1_sparsity.md.
"""

from dataclasses import replace

import jax
import numpy as np

import wdjax
from wdjax import Held, masks, study
from wdjax.analysis import plots, stats
from wdjax.study import replicates

SCORES = ("val_loss", "test_loss", "test_acc")
METRICS = (*SCORES, "sparsity", "units_removed", "pixels_removed", "macs_removed")
SWEEPS = {"l1_prox": ("l1_prox", "hidden", "incoming"), "l1": ("l1", "hidden", "incoming"),
          "group_in": ("group_lasso_prox", "hidden", "incoming"),
          "group_out": ("group_lasso_prox", "kernels", "outgoing")}  # fmt: skip
VS_L1 = {a + t: "l1_prox" + t for a in ("prune", "l1→prune") for t in ("", "+ft")}  # paired
TABLE_ARMS = ("l1_prox", "l1_prox+ft", *VS_L1, "group_in", "group_out")
FT_SEED = 10_000  # fine-tuning's batch orders: data_seed + FT_SEED, never the training's
RULES = dict(operating_point="an arm's largest λ with mean validation loss ≤ (1 + tolerance) × "
             "the dense model's; None when none", interval="95 % Student-t over replicates, "
             "paired vs dense and (pruned arms) vs l1_prox(+ft) at the same λ: same sparsity",
             prune="layer-wise magnitude pruning of the hidden kernels to l1_prox's zero counts",
             fine_tune="Adam from a fresh state, the hidden kernels' zeros held (wdjax.Held)",
             removable="to a fixed point: units without live input (constant) or live output; "
             "MACs removed: the share of kernel weights in removed rows and columns")  # fmt: skip


def get_config() -> dict:
    """The full study: λ grids from a range-finding run (20,000 images, 5 epochs)."""
    grids = {"l1_prox": (1e-4, 3e-4, 1e-3, 3e-3), "group_in": (1e-5, 1e-4, 1e-3),
             "group_out": (1e-5, 1e-4, 1e-3)}  # fmt: skip
    return dict(dataset="fashion_mnist", val_size=10000, epochs=15, grids=grids,
                fine_tune=dict(epochs=5, lr=1e-4), tolerance=0.05, replicates=5,
                selected_by="val_loss", rules=RULES)  # fmt: skip


def smoke(config: dict) -> dict:
    """The tiny version: digits, 2 λ per sweep, 1 epoch (+1 fine-tuning), 2 replicates."""
    grids = dict.fromkeys(("l1_prox", "group_in", "group_out"), (1e-5, 1e-3))
    return dict(dataset="digits", val_size=300, epochs=1, grids=grids,
                fine_tune=dict(epochs=1, lr=1e-4), replicates=2)  # fmt: skip


def dense_kernels(params) -> list[np.ndarray]:
    """The kernels of one member's MLP in forward order (hidden layers, then ``head``)."""
    ks = {masks.param_path(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}  # fmt: skip
    names = sorted((k for k in ks if k.endswith("kernel")), key=lambda k: k.startswith("head"))
    return [ks[k] for k in names]


def removable(kernels: list[np.ndarray]) -> list[np.ndarray]:
    """Alive masks ``[inputs of layer 0, …, outputs]`` (RULES' ``removable``; outputs stay)."""
    nz = [k != 0 for k in kernels]
    alive = [np.ones(k.shape[0], bool) for k in kernels] + [np.ones(kernels[-1].shape[1], bool)]
    while True:
        before = sum(int(a.sum()) for a in alive)
        for i, z in enumerate(nz):
            alive[i] = alive[i] & (z & alive[i + 1][None, :]).any(axis=1)
            if i + 1 < len(nz):
                alive[i + 1] = alive[i + 1] & (z & alive[i][:, None]).any(axis=0)
        if sum(int(a.sum()) for a in alive) == before:
            return alive


def structure(kernels: list[np.ndarray]) -> dict:
    """Sparsity (exact zeros), hidden units and pixels removed, MACs removed, alive pixels."""
    alive = removable(kernels)
    full = sum(k.size for k in kernels)
    kept = sum(int(a.sum()) * int(b.sum()) for a, b in zip(alive[:-1], alive[1:], strict=True))
    return dict(sparsity=sum(int((k == 0).sum()) for k in kernels) / full,
                units_removed=sum(int((~a).sum()) for a in alive[1:-1]),
                pixels_removed=int((~alive[0]).sum()), macs_removed=1 - kept / full,
                alive_pixels=alive[0])  # fmt: skip


def prune_like(params, target, mask="hidden"):
    """``params`` with each ``mask`` kernel's smallest |w| zeroed as often as ``target``'s."""

    def leaf(m, w, t):  # an unmasked leaf: none zeroed
        flat = np.array(w).ravel()
        flat[np.argsort(np.abs(flat), kind="stable")[: int(np.sum(np.asarray(t) == 0)) * m]] = 0
        return flat.reshape(np.shape(w))

    return jax.tree.map(leaf, masks.resolve_mask(mask, params), params, target)


def macs(cfg, shape, classes: int = 10) -> int:
    """Multiply-adds of one forward pass of the MLP (= its kernel weights)."""
    widths = [int(np.prod(shape)), *cfg.hidden, classes]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def member(params, i: int):
    return jax.tree.map(lambda x: np.asarray(x)[i], params)


def measured(res, i: int) -> dict:
    """One trained member: final val/test from the history, structure from its parameters."""
    return dict({m: float(res.history[m][i, -1]) for m in SCORES},
                **structure(dense_kernels(member(res.params, i))),
                engine_sparsity=float(res.history["sparsity"][i, -1]))  # fmt: skip


def grid(k: dict, arm: str) -> tuple:
    """``arm``'s λ: its own grid for group lasso, else l1_prox's (matched level by level)."""
    return (0.0,) if arm.startswith("dense") else k["grids"].get(arm, k["grids"]["l1_prox"])


def run_replicate(cfg, k: dict) -> tuple[dict, float]:
    """{arm: [metrics per λ]} of a replicate, and max |test loss as given − the sweep's own|."""
    ds = study.load_data(cfg)
    res = {name: wdjax.sweep(cfg, data=ds, optimizer=Held(*spec),
                             strengths=(0.0,) * (name == "l1_prox") + grid(k, name))
           for name, spec in SWEEPS.items()}  # fmt: skip
    out = {name: [measured(r, i + (name == "l1_prox")) for i in range(len(grid(k, name)))]
           for name, r in res.items()}  # fmt: skip
    out["dense"] = [measured(res["l1_prox"], 0)]
    dense, levels = member(res["l1_prox"].params, 0), len(grid(k, "l1_prox"))
    prox = [member(res["l1_prox"].params, i + 1) for i in range(levels)]
    sources = {"dense": [dense], "l1_prox": prox, "prune": [prune_like(dense, t) for t in prox],
               "l1→prune": [prune_like(member(res["l1"].params, i), t)
                            for i, t in enumerate(prox)]}  # fmt: skip
    flat = [(arm, p) for arm, ps in sources.items() for p in ps]  # fine-tuning: one member each
    params, e = jax.tree.map(lambda *xs: np.stack(xs), *(p for _, p in flat)), k["fine_tune"]
    ft = replace(cfg, epochs=e["epochs"], eval_every=e["epochs"], lrs=(e["lr"],),
                             strengths=(0.0,), seeds=len(flat), optimizer=Held("l1_prox"),
                             data_seed=cfg.data_seed + FT_SEED)  # fmt: skip
    tuned = wdjax.sweep(ft, data=ds, init_params=params).history
    scores = wdjax.evaluate(ft, params, data=ds), {m: tuned[m][:, -1] for m in SCORES}
    for j, (arm, p) in enumerate(flat):  # the zeros are held: the same structure after tuning
        s = structure(dense_kernels(p))
        for tail, sc in zip(("~", "+ft"), scores, strict=True):
            out.setdefault(arm + tail, []).append({**{m: float(sc[m][j]) for m in SCORES}, **s})
    check = max(abs(a["test_loss"] - b["test_loss"]) for arm in ("dense", "l1_prox")
                for a, b in zip(out[arm], out[arm + "~"], strict=True))  # fmt: skip
    for arm in sources:  # dense, l1_prox: the sweep's own evaluation; "as given" must equal it
        out.setdefault(arm, out.pop(arm + "~"))
    return out, check


def arm_rows(reps: list[dict], arm: str, grid) -> list[dict]:
    """Per λ: every metric, paired vs dense (pruned arms: ``x_vs_l1`` vs the L1 arm, same λ)."""
    rows = [dict(strength=float(lam), n=len(reps)) for lam in grid]
    v = {(a, m): np.array([[row[m] for row in rep[a]] for rep in reps], float)
         for a in {arm, "dense", VS_L1.get(arm, arm)} for m in METRICS}  # fmt: skip
    for j, row in enumerate(rows):
        for m in METRICS:
            row.update(replicates.summarize(m, v[arm, m][:, j], v["dense", m][:, 0]))
        for m in ("test_loss", "test_acc") if arm in VS_L1 else ():
            d = stats.paired_differences(v[arm, m][:, j], v[VS_L1[arm], m][:, j])
            row.update({f"{m}_vs_l1": float(d.mean), f"{m}_vs_l1_lo": float(d.lo),
                        f"{m}_vs_l1_hi": float(d.hi)})  # fmt: skip
    return rows


def choose(rows: list[dict], dense: dict, tolerance: float) -> int | None:
    """RULES' operating point: the largest λ with mean val loss ≤ (1 + tolerance) × dense's."""
    limit = (1 + tolerance) * dense["val_loss_mean"]
    return max((j for j, r in enumerate(rows) if r["val_loss_mean"] <= limit), default=None)


COLUMNS = ["arm", "λ", "sparsity (exact zeros)", "hidden units removed", "input pixels removed",
           "MACs removed", "test loss", "Δ test loss vs dense", "test acc", "Δ test acc vs dense",
           "Δ test loss vs l1_prox(+ft), same λ", "Δ test acc vs l1_prox(+ft), same λ",
           "chosen on val"]  # fmt: skip


def table_row(arm: str, r: dict, chosen: bool) -> list:
    d = [study.fmt_ci(r[x], r[x + "_lo"], r[x + "_hi"], 4) if x in r else "—" for x in
         ("test_loss_diff", "test_acc_diff", "test_loss_vs_l1", "test_acc_vs_l1")]  # fmt: skip
    return [arm, f"{r['strength']:.3g}", study.ci(r, "sparsity"), study.ci(r, "units_removed", 1),
            study.ci(r, "pixels_removed", 1), study.ci(r, "macs_removed"), study.ci(r, "test_loss"),
            d[0], study.ci(r, "test_acc", 4), d[1], d[2], d[3], "✓" if chosen else ""]  # fmt: skip


def figure(s: dict, reps: list[dict], shape):
    """Test accuracy and loss against sparsity and MACs removed; pixels used (bottom)."""
    (fig, axes), a = study.pyplot().subplots(2, 3, figsize=(15, 8.5)), s["arms"]
    for ax, (x, y) in zip(axes[0], [("sparsity", "test_acc"), ("sparsity", "test_loss"),
                                    ("macs_removed", "test_acc")], strict=True):  # fmt: skip
        for arm in TABLE_ARMS:
            rows = a[arm]["rows"]
            plots.fill(ax, [r[f"{x}_mean"] for r in rows], *([r[f"{y}_{q}"] for r in rows]
                       for q in ("mean", "lo", "hi")), label=arm)  # fmt: skip
        ax.axhspan(s["dense"][f"{y}_lo"], s["dense"][f"{y}_hi"], color="k", alpha=0.12)
        ax.set(xlabel=x.replace("_", " "), ylabel=y.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0, 1].set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    for ax, arm in zip(axes[1], ("l1_prox+ft", "group_in", "group_out"), strict=True):
        j, none = a[arm]["chosen"] or 0, " (none within tolerance)" * (a[arm]["chosen"] is None)
        used = np.prod(shape) - a[arm]["rows"][j]["pixels_removed_mean"]
        alive = np.mean([rep[arm][j]["alive_pixels"] for rep in reps], axis=0)
        im = ax.imshow(alive.reshape(shape[:2]), vmin=0, vmax=1, cmap="viridis")
        ax.set(xticks=[], yticks=[], title=f"{arm} λ={a[arm]['strengths'][j]:.2g}: {used:.0f} "
               f"pixels used{none}")  # fmt: skip
    fig.colorbar(im, ax=axes[1, -1], label="fraction of replicates using the pixel")
    fig.suptitle("mean over replicates, bands and grey band (dense): 95 % Student-t intervals; "
                 "bottom: input pixels still used at each arm's operating point")  # fmt: skip
    return fig


def run(ctx: study.Context) -> study.Report:
    """Every replicate (arms, then fine-tuning); table: dense, l1 at its top λ, dense+ft, arms."""
    k, e = ctx.knobs, ctx.knobs["fine_tune"]["epochs"]  # eval_every: the fine-tuning's period
    cfgs = replicates.replicate_configs(ctx.config, ctx.replicates)
    reps, evals = zip(*(run_replicate(replace(c, eval_every=e), k) for c in cfgs), strict=True)
    dense = {x: v for x, v in arm_rows(reps, "dense", (0.0,))[0].items() if "_diff" not in x}
    s = dict(dense=dense, arms={arm: dict(strengths=list(grid(k, arm)), rows=r, chosen=choose(
        r, dense, k["tolerance"])) for arm in reps[0] if arm != "dense"
        for r in [arm_rows(reps, arm, grid(k, arm))]})  # fmt: skip
    shape, a = study.load_data(ctx.config).image_shape, s["arms"]
    summary = dict(
        s, operating_point={a: (v["rows"][v["chosen"]] if v["chosen"] is not None else None)
                            for a, v in s["arms"].items()},
        max_sparsity={a: max(r["sparsity_mean"] for r in v["rows"]) for a, v in s["arms"].items()},
        sparsity_check=max(abs(r["sparsity"] - r["engine_sparsity"]) for rep in reps
                           for arm in (*SWEEPS, "dense") for r in rep[arm]),
        eval_check=max(evals), macs_total=macs(ctx.config, shape),
        strengths={a: list(grid(k, a)) for a in SWEEPS}, tolerance=k["tolerance"],
        epochs=ctx.config.epochs, fine_tune=k["fine_tune"])  # fmt: skip
    rows = [table_row("dense", s["dense"], False), table_row("l1 (no pruning)",
            a["l1"]["rows"][-1], False), table_row("dense+ft", a["dense+ft"]["rows"][0], False),
            *(table_row(arm, r, j == a[arm]["chosen"]) for arm in TABLE_ARMS
              for j, r in enumerate(a[arm]["rows"]))]  # fmt: skip
    return study.Report(summary, COLUMNS, rows, figure(s, reps, shape))


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
