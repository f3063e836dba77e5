"""Sparsity from L1 and group lasso against magnitude pruning: which gives the better accuracy at
a given sparsity, and what can actually be removed?

Claim: pruning the smallest weights of a trained network and retraining the survivors keeps its
accuracy at high sparsity, and L1 before pruning helps (Han et al. 2015, "Learning both weights
and connections for efficient neural networks"); the proximal L1 step gives exact zeros and the
subgradient none (Duchi & Singer 2009); group lasso removes whole units (Yuan & Lin 2006; Wen et
al. 2016) and, on outgoing weights, input pixels (Scardapane et al. 2017).

Command: ``python experiments/l1_sparsity.py`` (Fashion-MNIST; ``--smoke``: digits, seconds).
Runtime: 5.2–5.6 minutes on the 2-core machine.

Verdict (last full run): reproduced for exact zeros and group lasso; reproduced in part for Han.

Design (arms, λ grids and rules in :func:`get_config`'s ``rules``; the write-up in
docs/studies/l1_sparsity.md): the tutorial MLP, 15 epochs, 5 replicates with common random
numbers. Rewritten on sweep()'s hooks: fine-tuning is a sweep from ``init_params`` (one member
per model, its batch orders from ``data_seed`` + 10,000 instead of epochs 16–20 of the
training's), and "as given" is ``wdjax.evaluate`` instead of an epoch at lr 0.
"""

import dataclasses

import jax
import numpy as np

import wdjax
from wdjax import Held, masks, study
from wdjax.analysis import stats
from wdjax.study import replicates

METRICS = ("val_loss", "test_loss", "test_acc", "sparsity", "units_removed", "pixels_removed",
           "macs_removed")  # fmt: skip
SCORES = ("val_loss", "test_loss", "test_acc")
SWEEPS = {
    "l1_prox": ("l1_prox", "hidden", "incoming"),
    "l1": ("l1", "hidden", "incoming"),
    "group_in": ("group_lasso_prox", "hidden", "incoming"),
    "group_out": ("group_lasso_prox", "kernels", "outgoing"),
}  # sweep -> (reg, mask, groups)
VS_L1 = {"prune": "l1_prox", "prune+ft": "l1_prox+ft", "l1→prune": "l1_prox",
         "l1→prune+ft": "l1_prox+ft"}  # fmt: skip
TABLE_ARMS = ("l1_prox", "l1_prox+ft", "prune", "prune+ft", "l1→prune", "l1→prune+ft",
              "group_in", "group_out")  # fmt: skip
FT_SEED = 10_000  # fine-tuning's batch orders: data_seed + FT_SEED, never the training's
RULES = dict(
    operating_point="an arm's largest λ whose mean validation loss is ≤ (1 + tolerance) × the "
    "dense model's (validation only, never test); None when no λ qualifies",
    interval="95 % Student-t over replicates; differences paired by replicate against the dense "
    "baseline and, for pruned arms, against l1_prox(+ft) at the same λ (the same sparsity)",
    prune="layer-wise magnitude pruning of the hidden kernels to l1_prox's per-layer zero count",
    fine_tune="Adam at lr 1e-4 from a fresh state, the hidden kernels' zeros held (wdjax.Held)",
    removable="to a fixed point: units with no live input (constant, folded into the next bias) "
    "and units or pixels with no live output; MACs removed = share of the kernel weights in them",
)


def get_config() -> dict:
    """The full study: λ grids from a range-finding run (20,000 images, 5 epochs)."""
    grids = {"l1_prox": (1e-4, 3e-4, 1e-3, 3e-3), "group_in": (1e-5, 1e-4, 1e-3),
             "group_out": (1e-5, 1e-4, 1e-3)}  # fmt: skip
    return dict(dataset="fashion_mnist", val_size=10000, epochs=15, mask="hidden", grids=grids,
                fine_tune=dict(epochs=5, lr=1e-4), tolerance=0.05, replicates=5,
                selected_by="val_loss", rules=RULES)  # fmt: skip


def smoke(config: dict) -> dict:
    """The tiny version: digits, 2 λ per sweep, 1 epoch (+1 fine-tuning), 2 replicates."""
    grids = dict.fromkeys(("l1_prox", "group_in", "group_out"), (1e-5, 1e-3))
    return dict(dataset="digits", val_size=300, epochs=1, grids=grids,
                fine_tune=dict(epochs=1, lr=1e-4), replicates=2)  # fmt: skip


# --- what a network's zeros remove ------------------------------------------------------------


def dense_kernels(params) -> list[np.ndarray]:
    """The kernels of one member's MLP in forward order (hidden layers, then ``head``)."""
    ks = {masks.param_path(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}  # fmt: skip
    names = sorted((k for k in ks if k.endswith("kernel")), key=lambda k: k.startswith("head"))
    return [ks[k] for k in names]


def removable(kernels: list[np.ndarray]) -> list[np.ndarray]:
    """Alive masks ``[inputs of layer 0, …, outputs]`` after removing, to a fixed point, every
    hidden unit without a non-zero weight from an alive input and every input or hidden unit
    without one to an alive unit. The outputs always stay."""
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
    """``sparsity`` (exact zeros / kernel weights), ``units_removed`` (hidden),
    ``pixels_removed``, ``macs_removed`` (share of the multiply-adds in removed rows and
    columns) and ``alive_pixels`` (bool [inputs])."""
    alive = removable(kernels)
    full = sum(k.size for k in kernels)
    kept = sum(int(a.sum()) * int(b.sum()) for a, b in zip(alive[:-1], alive[1:], strict=True))
    return dict(sparsity=sum(int((k == 0).sum()) for k in kernels) / full,
                units_removed=sum(int((~a).sum()) for a in alive[1:-1]),
                pixels_removed=int((~alive[0]).sum()), macs_removed=1 - kept / full,
                alive_pixels=alive[0])  # fmt: skip


def prune_like(params, target, mask="hidden"):
    """``params`` with, in each kernel ``mask`` selects, as many of its smallest |w| set to 0 as
    ``target``'s kernel has zeros (layer-wise magnitude pruning to the same sparsity)."""

    def leaf(m, w, t):
        if not m:
            return w
        flat = np.array(w).ravel()
        flat[np.argsort(np.abs(flat), kind="stable")[: int(np.sum(np.asarray(t) == 0))]] = 0
        return flat.reshape(np.shape(w))

    return jax.tree.map(leaf, masks.resolve_mask(mask, params), params, target)


def macs(cfg, shape, classes: int = 10) -> int:
    """Multiply-adds of one forward pass of the MLP (= its kernel weights)."""
    widths = [int(np.prod(shape)), *cfg.hidden, classes]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


# --- one replicate ------------------------------------------------------------------------------


def member(params, i: int):
    return jax.tree.map(lambda x: np.asarray(x)[i], params)


def measured(res, i: int) -> dict:
    """One trained member: final val/test from the history, structure from its parameters."""
    out = {m: float(res.history[m][i, -1]) for m in SCORES}
    s = structure(dense_kernels(member(res.params, i)))
    return dict(out, **s, engine_sparsity=float(res.history["sparsity"][i, -1]))


def grid(k: dict, arm: str) -> tuple:
    """``arm``'s λ: its own grid for group lasso, else l1_prox's (matched level by level)."""
    return (0.0,) if arm.startswith("dense") else k["grids"].get(arm, k["grids"]["l1_prox"])


def fine_tune(cfg, k: dict, ds, params) -> tuple[dict, dict]:
    """(scores as given, scores after fine-tuning) of ``params`` (leaves [K, ...]): a sweep of K
    members at λ = 0 started from them (``init_params``), the hidden kernels' zeros held."""
    n, e = len(jax.tree.leaves(params)[0]), k["fine_tune"]["epochs"]
    ft = dataclasses.replace(cfg, epochs=e, eval_every=e, lrs=(k["fine_tune"]["lr"],),
                             strengths=(0.0,), seeds=n, optimizer=Held("l1_prox"),
                             data_seed=cfg.data_seed + FT_SEED)  # fmt: skip
    given = wdjax.evaluate(ft, params, data=ds)
    res = wdjax.sweep(ft, data=ds, init_params=params)
    return {m: given[m] for m in SCORES}, {m: np.asarray(res.history[m])[:, -1] for m in SCORES}


def run_replicate(cfg, k: dict) -> tuple[dict, float]:
    """{arm: [per λ: metrics]} of one replicate (``dense``, ``dense+ft``: one entry each) and the
    largest |test loss "as given" − the sweep's own| of the dense and l1_prox models."""
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
    flat = [p for ps in sources.values() for p in ps]
    given, tuned = fine_tune(cfg, k, ds, jax.tree.map(lambda *xs: np.stack(xs), *flat))
    j, check = 0, 0.0
    for arm, ps in sources.items():
        rows = {"": [], "+ft": []}
        for p in ps:
            s = structure(dense_kernels(p))  # the zeros are held: the same after fine-tuning
            rows[""].append({**{m: float(given[m][j]) for m in SCORES}, **s})
            rows["+ft"].append({**{m: float(tuned[m][j]) for m in SCORES}, **s})
            j += 1
        if arm in out:  # dense, l1_prox: the sweep's own evaluation; "as given" must equal it
            check = max(check, *(abs(a["test_loss"] - b["test_loss"])
                                 for a, b in zip(out[arm], rows[""], strict=True)))  # fmt: skip
        out.setdefault(arm, rows[""])
        out[arm + "+ft"] = rows["+ft"]
    return out, check


# --- over replicates ----------------------------------------------------------------------------


def values(reps: list[dict], arm: str, metric: str) -> np.ndarray:
    """``metric`` of ``arm`` as [replicates, λ]."""
    return np.array([[row[metric] for row in rep[arm]] for rep in reps], float)


def arm_rows(reps: list[dict], arm: str, grid) -> list[dict]:
    """Per λ: every metric over replicates, paired against dense (and, for pruned arms, against
    the L1 arm at the same λ: ``x_vs_l1``, ``_lo``, ``_hi``)."""
    rows = [dict(strength=float(lam), n=len(reps)) for lam in grid]
    for m in METRICS:
        v, base = values(reps, arm, m), values(reps, "dense", m)[:, 0]
        for j, row in enumerate(rows):
            row.update(replicates.summarize(m, v[:, j], base))
    for m in ("test_loss", "test_acc") if arm in VS_L1 else ():
        d = stats.paired_differences(values(reps, arm, m), values(reps, VS_L1[arm], m), axis=0)
        for j, row in enumerate(rows):
            row.update({f"{m}_vs_l1": float(d.mean[j]), f"{m}_vs_l1_lo": float(d.lo[j]),
                        f"{m}_vs_l1_hi": float(d.hi[j])})  # fmt: skip
    return rows


def choose(rows: list[dict], dense: dict, tolerance: float) -> int | None:
    """RULES' operating point: the largest λ with mean val loss ≤ (1 + tolerance) × dense's."""
    ok = [j for j, r in enumerate(rows)
          if r["val_loss_mean"] <= (1 + tolerance) * dense["val_loss_mean"]]  # fmt: skip
    return max(ok) if ok else None


def summarize(reps: list[dict], k: dict) -> dict:
    dense = dict(strength=0.0, n=len(reps))
    for m in METRICS:
        dense.update(replicates.summarize(m, values(reps, "dense", m)[:, 0]))
    arms = {}
    for arm in (a for a in reps[0] if a != "dense"):
        rows = arm_rows(reps, arm, grid(k, arm))
        arms[arm] = dict(strengths=list(grid(k, arm)), rows=rows,
                         chosen=choose(rows, dense, k["tolerance"]))  # fmt: skip
    return dict(arms=arms, dense=dense)


# --- table, figure, run -------------------------------------------------------------------------

COLUMNS = ["arm", "λ", "sparsity (exact zeros)", "hidden units removed", "input pixels removed",
           "MACs removed", "test loss", "Δ test loss vs dense", "test acc", "Δ test acc vs dense",
           "Δ test loss vs l1_prox(+ft), same λ", "Δ test acc vs l1_prox(+ft), same λ",
           "chosen on val"]  # fmt: skip


def table_row(arm: str, r: dict, chosen: bool) -> list:
    vs = [study.fmt_ci(r[f"{m}_vs_l1"], r[f"{m}_vs_l1_lo"], r[f"{m}_vs_l1_hi"], 4)
          if f"{m}_vs_l1" in r else "—" for m in ("test_loss", "test_acc")]  # fmt: skip
    diff = [
        study.ci(r, m, 4) if m + "_lo" in r else "—" for m in ("test_loss_diff", "test_acc_diff")
    ]
    return [arm, f"{r['strength']:.3g}", study.ci(r, "sparsity"), study.ci(r, "units_removed", 1),
            study.ci(r, "pixels_removed", 1), study.ci(r, "macs_removed"), study.ci(r, "test_loss"),
            diff[0], study.ci(r, "test_acc", 4), diff[1], *vs, "✓" if chosen else ""]  # fmt: skip


def table(s: dict) -> list[list]:
    """Dense, the subgradient l1 at its largest λ, dense+ft, then every λ of TABLE_ARMS."""
    rows = [table_row("dense", s["dense"], False),
            table_row("l1 (no pruning)", s["arms"]["l1"]["rows"][-1], False),
            table_row("dense+ft", s["arms"]["dense+ft"]["rows"][0], False)]  # fmt: skip
    for arm in TABLE_ARMS:
        a = s["arms"][arm]
        rows += [table_row(arm, r, j == a["chosen"]) for j, r in enumerate(a["rows"])]
    return rows


def figure(s: dict, reps: list[dict], shape):
    """Accuracy and loss against sparsity and MACs removed (95 % t bars; grey: dense), and the
    input pixels still used at each arm's operating point."""
    plt = study.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    panels = [("sparsity", "test_acc"), ("sparsity", "test_loss"), ("macs_removed", "test_acc")]
    for ax, (x, y) in zip(axes[0], panels, strict=True):
        for arm in TABLE_ARMS:
            rows = s["arms"][arm]["rows"]
            m, lo, hi = (np.array([r[f"{y}_{q}"] for r in rows]) for q in ("mean", "lo", "hi"))
            ax.errorbar([r[f"{x}_mean"] for r in rows], m, yerr=[m - lo, hi - m], marker="o",
                        ms=3, capsize=2, label=arm)  # fmt: skip
        ax.axhspan(s["dense"][f"{y}_lo"], s["dense"][f"{y}_hi"], color="k", alpha=0.12,
                   label="dense")  # fmt: skip
        ax.set(xlabel=x.replace("_", " "), ylabel=y.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0, 1].set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    for ax, arm in zip(axes[1], ("l1_prox+ft", "group_in", "group_out"), strict=True):
        a = s["arms"][arm]
        j = a["chosen"] if a["chosen"] is not None else 0
        alive = np.mean([rep[arm][j]["alive_pixels"] for rep in reps], axis=0)
        im = ax.imshow(alive.reshape(shape[:2]), vmin=0, vmax=1, cmap="viridis")
        used = np.prod(shape) - a["rows"][j]["pixels_removed_mean"]
        none = "" if a["chosen"] is not None else " (no λ within the tolerance)"
        ax.set_title(f"{arm} λ={a['rows'][j]['strength']:.2g}: {used:.0f} pixels used{none}",
                     fontsize=9)  # fmt: skip
        ax.set(xticks=[], yticks=[])
    fig.colorbar(im, ax=axes[1, -1], label="fraction of replicates using the pixel")
    fig.suptitle("mean over replicates, bars and grey band (dense): 95 % Student-t intervals; "
                 "bottom: input pixels still used at each arm's operating point")  # fmt: skip
    return fig


def run(ctx: study.Context) -> study.Report:
    """Every replicate (all arms, then their fine-tuning), then the summaries."""
    k, reps, eval_check = ctx.knobs, [], 0.0
    for r, cfg in enumerate(replicates.replicate_configs(ctx.config, ctx.replicates)):
        rep, check = run_replicate(dataclasses.replace(cfg, eval_every=k["fine_tune"]["epochs"]), k)
        reps.append(rep)
        eval_check = max(eval_check, check)
        print(f"{ctx.name}: replicate {r + 1}/{ctx.replicates} done", flush=True)
    s = summarize(reps, k)
    shape = study.load_data(ctx.config).image_shape
    checks = [abs(row["sparsity"] - row["engine_sparsity"])
              for rep in reps for arm in (*SWEEPS, "dense") for row in rep[arm]]  # fmt: skip
    summary = dict(
        s, operating_point={a: (v["rows"][v["chosen"]] if v["chosen"] is not None else None)
                            for a, v in s["arms"].items()},
        max_sparsity={a: max(r["sparsity_mean"] for r in v["rows"]) for a, v in s["arms"].items()},
        sparsity_check=max(checks), eval_check=eval_check, macs_total=macs(ctx.config, shape),
        strengths={a: list(grid(k, a)) for a in SWEEPS}, tolerance=k["tolerance"],
        epochs=ctx.config.epochs, fine_tune=k["fine_tune"],
    )  # fmt: skip
    return study.Report(summary, COLUMNS, table(s), figure(s, reps, shape))


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
