"""Sparsity from L1 and group lasso against magnitude pruning: which gives the better accuracy at
a given sparsity, and what can actually be removed?

Claim: magnitude-pruned, a network trained with L1 is more accurate than one trained with L2
before retraining and less accurate after it, and pruning iteratively beats pruning once (Han et
al. 2015, "Learning both weights and connections for efficient neural networks", §3.1, §3.4);
the proximal L1 step gives exact zeros and the subgradient none (Duchi & Singer 2009); group lasso
removes whole units (Yuan & Lin 2006; Wen et al. 2016) and, on outgoing weights, input pixels
(Scardapane et al. 2017).

Command: ``python experiments/l1_sparsity.py`` (``--smoke``: digits; RULES); resumes by replicate;
last full run 904 s (budget 15 min), sharing the 2-core machine at load ≈ 12. Verdict:
zeros, units, L2 after retraining: reproduced; L1 before: inconclusive; iterative: contradicted.
"""

import json
import os
import time
from dataclasses import replace

import numpy as np

import wdjax
from wdjax import Held, files, study
from wdjax.analysis import plots
from wdjax.study import prose, pruning, replicates
from wdjax.study.pruning import bounded, measured, member, prune_like, stack, values

SCORES = ("val_loss", "test_loss", "test_acc")
METRICS = (*SCORES, "sparsity", "units_removed", "pixels_removed", "macs_removed")
SWEEPS = {"l1_prox": ("l1_prox",), "l1": ("l1",), "l2": ("l2",), "group_in": ("group_lasso_prox",),
          "group_out": ("group_lasso_prox", "kernels", "outgoing")}  # fmt: skip
VS_L1 = {a + t: "l1_prox" + t for a in ("prune", "l1→prune") for t in ("", "+ft")}  # paired
PRUNED = ("l1_prox", "l1_prox+ft", *VS_L1, "l2→prune", "l2→prune+ft", "l2→iter+ft")
CLAIMS = {"han_no_retraining": ("l1→prune", "l2→prune", "higher"),  # Δ test acc a − b
          "han_retraining": ("l1→prune+ft", "l2→prune+ft", "lower"),
          "iterative": ("l2→iter+ft", "l2→prune+ft", "higher")}  # fmt: skip
grid = lambda k, arm: (0.0,) if arm.startswith("dense") else tuple(  # noqa: E731  # λ per level
    k["grids"].get(arm, k["grids"]["l1_prox"]))  # fmt: skip  # own grid: group lasso, l2
RULES = dict(han="§3.1, per sparsity level (l1_prox's zero counts per hidden kernel): paired Δ "
             "test acc l1→prune − l2→prune > 0, l1→prune+ft − l2→prune+ft < 0; L1: subgradient "
             "at the level's λ; L2: each replicate's own λ₂ (0 included) on its validation loss",
             iterative="§3.4: paired Δ test acc l2→iter+ft − l2→prune+ft > 0 per level; iter: a "
             "pruning step (density falling geometrically) before each retraining round; "
             "one-shot: pruned once; the same rounds, epochs, batches and fresh Adam states",
             outcome="a level: interval beyond 0 on the predicted side reproduced, on the other "
             "contradicted, else inconclusive; a claim: reproduced somewhere and contradicted "
             "nowhere, the reverse, else inconclusive", interval="95 % Student-t over replicates, "
             "paired by replicate, clipped to the range (fractions [0, 1]; counts [0, number])",
             operating_point="an arm's largest λ with mean val loss ≤ (1 + tolerance) × dense's; "
             "also each replicate's own (nested), the argmin, one-SE set and test oracle",
             prune="layer-wise by magnitude; retraining: Adam, constant lr, zeros held",
             removable="units without live input or output, to a fixed point; MACs: kernel "
             "weights in removed rows and columns")  # fmt: skip
PREVIOUS = dict(sparsity=0.808, prune=0.5702, l1_prune=0.8304, prune_ft=0.8641, l1_prune_ft=0.8479,
                verdict="reproduced for exact zeros and whole units; in part for Han")  # fmt: skip


def get_config() -> dict:
    """λ grids from a range-finding run (20,000 images, 5 epochs); retraining 3 × 2 epochs."""
    grids = {"l1_prox": (1e-4, 3e-4, 1e-3, 3e-3), "group_in": (1e-5, 1e-4, 1e-3),
             "group_out": (1e-5, 1e-4, 1e-3), "l2": (0.0, 1e-4, 1e-3, 1e-2)}  # fmt: skip
    return dict(dataset="fashion_mnist", val_size=10000, epochs=15, grids=grids,
                fine_tune=dict(epochs=6, lr=1e-4, rounds=3), tolerance=0.05, replicates=5,
                selected_by="val_loss", rules=RULES, previous=PREVIOUS)  # fmt: skip


def smoke(config: dict) -> dict:
    """Digits, 2 λ per sweep, 1 epoch (+ 2 rounds of 1 retraining epoch), 2 replicates."""
    grids = dict.fromkeys(("l1_prox", "group_in", "group_out"), (1e-5, 1e-3)) | {"l2": (0, 1e-3)}
    return dict(dataset="digits", val_size=300, epochs=1, grids=grids,
                fine_tune=dict(epochs=2, lr=1e-4, rounds=2), replicates=2)  # fmt: skip


def run_replicate(cfg, k: dict) -> dict:
    """{arm: [metrics per λ or level]}, the λ₂ picked (index), |as given − the sweep's own|."""
    ds, e, n = study.load_data(cfg), k["fine_tune"], k["fine_tune"]["rounds"]
    res = {a: wdjax.sweep(cfg, data=ds, optimizer=Held(*spec), strengths=(0.0,) * (
        a == "l1_prox") + grid(k, a)) for a, spec in SWEEPS.items()}  # fmt: skip
    out = {a: [measured(r, i + (a == "l1_prox"), SCORES) for i in range(len(grid(k, a)))]
           for a, r in res.items()}  # fmt: skip
    pick, out["dense"] = int(np.argmin([r["val_loss"] for r in out["l2"]])), [measured(res[
        "l1_prox"], 0, SCORES)]  # fmt: skip  # λ₂: this replicate's own choice on validation
    dense, l2, prox = member(res["l1_prox"].params, 0), member(res["l2"].params, pick), [
        member(res["l1_prox"].params, i + 1) for i in range(len(grid(k, "l1_prox")))]  # fmt: skip
    src = {"dense": [dense], "l1_prox": prox, "prune": [prune_like(dense, t) for t in prox],
           "l1→prune": [prune_like(member(res["l1"].params, i), t) for i, t in enumerate(prox)],
           "l2→prune": [prune_like(l2, t) for t in prox], "l2→iter": [l2] * len(prox)}  # fmt: skip
    flat = [(a, p, prox[i] if a == "l2→iter" else None) for a, ps in src.items()
            for i, p in enumerate(ps)]  # fmt: skip  # one member each; iter: pruned per round
    ft = replace(cfg, epochs=e["epochs"] // n, eval_every=e["epochs"] // n, lrs=(e["lr"],),
                 strengths=(0.0,), seeds=len(flat), optimizer=Held("l1_prox"))  # fmt: skip
    given = wdjax.evaluate(ft, stack(ps := [p for _, p, _ in flat]), data=ds)
    for r in range(1, n + 1):  # every arm: a fresh Adam each round, the same batches
        ps = [p if t is None else prune_like(p, t, k=r, rounds=n)
              for p, (*_, t) in zip(ps, flat, strict=True)]  # fmt: skip
        s = [pruning.structure(pruning.dense_kernels(p)) for p in ps]  # held: kept in tuning
        tuned = wdjax.sweep(replace(ft, data_seed=cfg.data_seed + 10_000 + 100 * (r - 1)),
                            data=ds, init_params=stack(ps))  # fmt: skip  # batch orders
        ps = [member(tuned.params, j) for j in range(len(flat))]
    for j, (arm, _, t) in enumerate(flat):
        for tail, sc in (("~", given), ("+ft", tuned.history))[t is not None :]:
            out.setdefault(arm + tail, []).append({**{m: float(np.reshape(sc[m], (
                len(flat), -1))[j, -1]) for m in SCORES}, **s[j]})  # fmt: skip
    check = max(abs(a["test_loss"] - b["test_loss"]) for arm in ("dense", "l1_prox")
                for a, b in zip(out[arm], out[arm + "~"], strict=True))  # fmt: skip
    for arm in list(src)[:-1]:  # dense, l1_prox: the sweep's own evaluation; "as given" equals it
        out.setdefault(arm, out.pop(arm + "~"))
    return dict(out=out, check=check, l2_pick=pick)


def replicate(ctx: study.Context, r: int, cfg) -> dict:
    """:func:`run_replicate` + seconds as ``<out>/arms/r<r>.json``; loaded when its key matches."""
    k, path, t0 = ctx.knobs, os.path.join(ctx.out, "arms", f"r{r}.json"), time.perf_counter()
    key = json.loads(json.dumps(dict(config=cfg.to_json(), grids=k["grids"], ft=k["fine_tune"])))
    if os.path.exists(path) and (saved := files.read_json(path))["key"] == key:
        return saved
    files.write_json(path, rep := dict(run_replicate(cfg, k), key=key) | dict(
        seconds=time.perf_counter() - t0))  # fmt: skip  # write_json makes the folder
    return rep


def arm_rows(reps: list[dict], arm: str, grid, lims: dict) -> list[dict]:
    """Per λ: each metric (``_mean, _lo, _hi``), paired vs dense (``_diff``) and, for pruned
    arms' test metrics, vs l1_prox(+ft) at the same level (``_vs_l1_diff``): bounded."""
    rows = [dict(strength=float(lam), n=len(reps)) for lam in grid]
    for m in METRICS:
        v, d, v1 = (values(reps, a, m) for a in (arm, "dense", VS_L1.get(arm, arm)))
        for j, row in enumerate(rows):
            for key, base in {"": None, "_diff": d[:, 0], "_vs_l1_diff": v1[:, j]}.items():
                if key != "_vs_l1_diff" or (arm in VS_L1 and m in SCORES[1:]):
                    row |= dict(zip((m + (key or "_mean"), f"{m}{key}_lo", f"{m}{key}_hi"),
                                    bounded(v[:, j], lims[m], base), strict=True))  # fmt: skip
    return rows


def run(ctx: study.Context) -> study.Report:
    """Every replicate (resumable), then per arm its rows and choices, the claims, the table."""
    k, cfg, e = ctx.knobs, ctx.config, ctx.knobs["fine_tune"]
    if e["epochs"] % e["rounds"]:  # equal epochs per round
        raise ValueError(f"fine_tune: give epochs divisible by rounds, got {e}")
    saved = [replicate(ctx, r, replace(c, eval_every=e["epochs"])) for r, c in
             enumerate(replicates.replicate_configs(cfg, ctx.replicates))]  # fmt: skip
    reps, shape = [s["out"] for s in saved], study.load_data(cfg).image_shape
    lims = dict(dict.fromkeys(SCORES[:2], (0, np.inf)), units_removed=(0, sum(cfg.hidden)),
                pixels_removed=(0, int(np.prod(shape))), **dict.fromkeys(
                    ("test_acc", "sparsity", "macs_removed"), (0, 1)))  # fmt: skip
    dense, arms = arm_rows(reps, "dense", (0.0,), lims)[0], {}
    for arm in (a for a in reps[0] if a != "dense"):
        g, val, acc = grid(k, arm), values(reps, arm, "val_loss"), values(reps, arm, "test_acc")
        own = pruning.own_choices(val, values(reps, "dense", "val_loss")[:, 0], k["tolerance"])
        rows = arm_rows(reps, arm, g, lims)
        arms[arm] = dict(strengths=list(g), rows=rows, chosen=pruning.own_choices(
            [[r["val_loss_mean"] for r in rows]], [dense["val_loss_mean"]], k["tolerance"])[0],
            per_replicate=[None if j is None else g[j] for j in own], nested_test_acc=bounded(
                [np.nan if j is None else acc[r, j] for r, j in enumerate(own)], (0, 1)),
            argmin=study.select(val, values(reps, arm, "test_loss"), g, baseline=None))  # fmt: skip
    summary = dict(
        dense=dense, arms=arms, claims={c: pruning.claim(reps, *x, lims) for c, x in CLAIMS
                                        .items()},
        l2_pick=[k["grids"]["l2"][s["l2_pick"]] for s in saved], previous=k["previous"],
        max_sparsity={a: max(r["sparsity_mean"] for r in v["rows"]) for a, v in arms.items()},
        sparsity_check=max(abs(r["sparsity"] - r["engine_sparsity"]) for rep in reps
                           for arm in (*SWEEPS, "dense") for r in rep[arm]),
        eval_check=max(s["check"] for s in saved), image_shape=list(shape), alive_pixels=np.mean(
            [rep["group_out"][arms["group_out"]["chosen"] or 0]["alive_pixels"] for rep in reps],
            0).tolist(), tolerance=k["tolerance"], epochs=cfg.epochs, fine_tune=e,
        replicate_seconds=[s["seconds"] for s in saved])  # fmt: skip
    rows = [table_row("dense", dense), table_row("l1 (no pruning)", arms["l1"]["rows"][-1]),
            table_row("dense+ft", arms["dense+ft"]["rows"][0]), *(table_row(
                a, r, j == arms[a]["chosen"]) for a in (*PRUNED, "l2", "group_in", "group_out")
                for j, r in enumerate(arms[a]["rows"]))]  # fmt: skip
    return study.Report(summary, COLUMNS, rows, figure(summary))


COLUMNS = ["arm", "λ (level)", "sparsity (exact zeros)", "hidden units removed", "input pixels "
           "removed", "MACs removed", "test loss", "Δ test loss vs dense", "test acc", "Δ test acc "
           "vs dense", "Δ test acc vs l1_prox(+ft), same level", "chosen on val"]  # fmt: skip


def table_row(arm: str, r: dict, chosen: bool = False) -> list:
    d = [study.ci(r, x, 4) if x in r and arm != "dense" else "—" for x in (
        "test_loss_diff", "test_acc_diff", "test_acc_vs_l1_diff")]  # fmt: skip
    return [arm, f"{r['strength']:.3g}", study.ci(r, "sparsity"), study.ci(r, "units_removed", 1),
            study.ci(r, "pixels_removed", 1), study.ci(r, "macs_removed"), study.ci(r, "test_loss"),
            d[0], study.ci(r, "test_acc", 4), d[1], d[2], "✓" if chosen else ""]  # fmt: skip


def figure(summary: dict):
    """Test accuracy against sparsity; the claims' paired Δ; pixels group_out uses."""
    (fig, ax), a = study.pyplot().subplots(1, 3, figsize=(16, 5)), summary["arms"]
    for arm in (*PRUNED, "group_in", "group_out"):
        plots.fill(ax[0], [r["sparsity_mean"] for r in a[arm]["rows"]], *([r[f"test_acc_{q}"] for r
                   in a[arm]["rows"]] for q in ("mean", "lo", "hi")), label=arm)  # fmt: skip
    for c in summary["claims"].values():
        plots.fill(ax[1], [x["sparsity"] for x in c["levels"]], *np.transpose(
            [x["test_acc"] for x in c["levels"]]), label=f"{c['a']} − {c['b']}")  # fmt: skip
    for x, y in zip(ax[:2], ("test acc", "paired Δ test acc (the claims)"), strict=True):
        x.set(xlabel="sparsity", ylabel=y), x.legend(fontsize=6), x.axhline(0, c="k", lw=0.5)
    im = ax[2].imshow(np.reshape(summary["alive_pixels"], summary["image_shape"][:2]), vmin=0)
    ax[2].set(xticks=[], yticks=[], title="group_out: input pixels used at its operating point")
    _ = fig.colorbar(im, ax=ax[2], label="fraction of replicates using the pixel"), fig.suptitle(
        "means over replicates; bands: 95 % Student-t intervals clipped to the range")  # fmt: skip
    return fig


def write_up(summary: dict) -> str:
    """What it shows: each claim by its rule, then the rest; numbers from ``summary``."""
    c, a, pv, m = (summary[x] for x in ("claims", "arms", "previous", "max_sparsity"))
    sel, n = a["l2"]["argmin"], lambda xs: ", ".join("—" if x is None else prose.num(x) for x in xs)

    def op(x: str, e: dict) -> str:  # an operating point: averaged, per replicate, nested
        r = e["rows"][e["chosen"]] if e["chosen"] is not None else None
        at = "none" if r is None else (f"λ = {prose.num(r['strength'])}, units removed "
                                       f"{study.ci(r, 'units_removed', 1)}, pixels "
                                       f"{study.ci(r, 'pixels_removed', 1)}")  # fmt: skip
        return (f"{x} {at} (per replicate {n(e['per_replicate'])}; nested test acc "
                f"{prose.ci(*e['nested_test_acc'])})")  # fmt: skip

    lv = {k: "; ".join(f"{prose.num(x['sparsity'], 3)} zeros {prose.ci(*x['test_acc'])} ("
                       f"{x['outcome']})" for x in v["levels"]) for k, v in c.items()}  # fmt: skip
    return "\n\n".join([
        f"**L1 better than L2 before retraining: {c['han_no_retraining']['verdict']}; L2 better "
        f"after retraining: {c['han_retraining']['verdict']}; iterative better than one-shot: "
        f"{c['iterative']['verdict']}.** Paired Δ test accuracy L1 − L2, pruned as given: "
        f"{lv['han_no_retraining']}. Retrained: {lv['han_retraining']}. Iterative − one-shot (L2 "
        f"model, the same retraining): {lv['iterative']}. The L2 model's λ₂, each replicate's own "
        f"on validation: {n(summary['l2_pick'])} (averaged choice {n([sel['averaged_strength']])}"
        f", one-SE set {n(sel['one_se'])}, test oracle {n([sel['oracle_strength']])}).",
        f"**Exact zeros.** The subgradient leaves {prose.num(m['l1'], 3)} at its largest λ, the "
        f"proximal step up to {prose.num(m['l1_prox'], 3)}. **Operating points** (largest λ "
        "within the tolerance of the dense validation loss, averaged over replicates; then each "
        "replicate's own): " + "; ".join(op(x, a[x]) for x in ("l1_prox+ft", "prune+ft",
                                                               "group_in", "group_out")) + ".",
        f"**What changed from the previous verdict, and why.** The last run said \"{pv['verdict']}"
        "\": it read Han et al. as one claim (L1 before pruning helps) against an unregularized "
        "model. They make two (Han et al. 2015, §3.1): L1 better right after pruning, L2 after "
        f"retraining, which that table already showed (at {prose.num(pv['sparsity'], 3)} zeros "
        f"as given {prose.num(pv['l1_prune'], 4)} against {prose.num(pv['prune'], 4)}, retrained "
        f"{prose.num(pv['l1_prune_ft'], 4)} against {prose.num(pv['prune_ft'], 4)}). Each is now "
        "a rule fixed before the run against an L2 model chosen on validation; iterative pruning "
        "(Han et al. 2015, §3.4) is an arm; bounded intervals stay in range."])  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
