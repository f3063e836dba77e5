"""The tutorial's program exactly: does ``l1(0.01)`` on its MLP make weights sparse and fight
overfitting?

Claim (the tutorial's): L1 on the hidden layers makes weights sparse and, like L2, fights
overfitting (Tibshirani 1996; Duchi & Singer 2009; Krogh & Hertz 1992; Loshchilov & Hutter 2019).

Command: ``python experiments/tutorial_mlp.py`` (``--smoke``: digits, seconds; ``--no-keras``;
the Keras arms need Keras, run on its JAX backend).
Runtime: 17 minutes (sweeps 951 s; Keras and analysis 80 s), measured while sharing the 2-core
machine (load ~12); it resumes by arm. Verdict (last full run): sparse reproduced as |w| < η,
contradicted as exact zeros (only the prox makes them); overfitting inconclusive at 10 epochs
(none to fight), reproduced for l1 and l2 at 30. Since issue 24: |w| < η beside exact zeros,
L1 grids to 1e-8, nested choices with one-SE sets, a 30-epoch program where λ = 0 overfits.
"""

import dataclasses
import importlib.util

import jax.numpy as jnp
import numpy as np

from wdjax import study
from wdjax.analysis import plots, stats
from wdjax.study import keras_peer, prose, replicates

REGS, NOMINAL, TAU = ("l1", "l2", "wd", "l1_prox"), 0.01, 1e-3  # TAU = η, the Adam step
RANGES = {"l1": (-8, -1), "l2": (-5, -2), "wd": (-3, 0), "l1_prox": (-7, -1)}  # log10 λ
METRICS = ("test_acc", "test_loss", "val_loss", "train_acc", "weight_l2", "near_zero", "exact_zero")
FRACTIONS = ("test_acc", "train_acc", "near_zero", "exact_zero")  # intervals clipped to [0, 1]
RULES = dict(
    selection="per program and reg: the λ of lowest validation loss averaged over replicates, each "
    "replicate's own (nested) and its test loss, Breiman's one-SE set (3 or more λ: flat, named as "
    "a set), the test oracle for reference; edge: the top or lowest non-zero λ chosen",
    interval="95 % Student-t over replicates, fractions clipped to [0, 1]; vs λ = 0 paired by "
    "replicate; Keras − wdjax: Welch", sparse="hidden-kernel fraction |w| < τ = η = 1e-3 (Adam "
    "moves a weight about η a step: one the subgradient holds at 0 zig-zags within about η of it) "
    "at l1(0.01), 10 epochs: interval above 0.5 reproduced, below contradicted, else "
    "inconclusive; the same on exact zeros", overfitting="λ = 0 overfits when its mean validation "
    "minimum lies before the last epoch and the paired rise after it is above 0; then per l1 and "
    "l2, the nested pick's paired Δ test loss at the last epoch: below 0 reproduced, above "
    "contradicted, else (or no overfitting) inconclusive. Programs: the tutorial's 10 epochs (the "
    "claim as given) and 30 (1-replicate pilot: λ = 0's validation minimum at epoch 16-20)",
    keras="matched: Glorot-uniform, zero biases, Adam ε = 1e-7, λ·Σ|w| on the batch-mean loss; "
    "not: Keras's last partial batch and random stream")  # fmt: skip
PREVIOUS = dict(best={"l1": 1e-6, "l2": 0.0, "wd": 0.0215, "l1_prox": 2.15e-6}, rerun_wd=0.00464)


def grid(reg: str, smoke: bool = False, per: int = 2, lohi=None) -> tuple[float, ...]:
    """0 and ``per`` λ per decade over ``lohi`` (default ``RANGES[reg]``; powers of ten exact)."""
    lo, hi = (round(per * x) for x in lohi or RANGES[reg])
    return ((0.0, NOMINAL) if reg.startswith("l1") else (0.0, 10.0 ** (lo / per))) if smoke else (
        0.0, *(float(f"{10 ** (k / per):.3g}") for k in range(lo, hi + 1)))  # fmt: skip


def get_config() -> dict:
    """Fashion-MNIST 50,000 / 10,000 / 10,000, 4 replicates, Keras beside: the 10-epoch program
    (4 regs; the prox 1 λ per decade) and a 30-epoch one (l1 and l2 around their pilot optima)."""
    long = dict(epochs=30, grids={"l1": grid("l1", lohi=(-5, -3.5)), "l2": grid("l2", lohi=(
        -4, -2.5))})  # fmt: skip
    return dict(dataset="fashion_mnist", model=keras_peer.KerasMLP(), mask="hidden", val_size=10000,
                axes=(("eps", (1e-7,)),), grids={r: grid(r, per=2 - (r == "l1_prox")) for r in
                REGS}, replicates=4, long=long, eval_every=2, keras=study.option(True, "also run "
                "the tutorial's Keras code"), selected_by="val_loss", rules=RULES,
                previous=PREVIOUS)  # fmt: skip


def smoke(config: dict) -> dict:
    long = dict(epochs=1, grids={r: grid(r, smoke=True) for r in ("l1", "l2")})  # digits, 1 epoch
    return dict(dataset="digits", val_size=400, epochs=1, eval_every=1, replicates=2, keras=False,
                long=long, grids={r: grid(r, smoke=True) for r in REGS})  # fmt: skip


def record(before, after, grads, batch_stats) -> dict:
    """The hidden kernels after the epoch's last step: fractions |w| < TAU and w == 0."""
    w = jnp.concatenate([jnp.abs(after[k]["kernel"]).ravel() for k in ("dense_0", "dense_1")])
    return {"near_zero": jnp.mean(w < TAU), "exact_zero": jnp.mean(w == 0)}


def bounded(row: dict) -> dict:
    """``row`` with each fraction's interval clipped to [0, 1] (its paired Δ to [−1, 1])."""
    return {k: float(np.clip(v, -1 if "_diff_" in k else 0, 1)) if k.endswith(("_lo", "_hi")) and k[
        :-3].removesuffix("_diff") in FRACTIONS else v for k, v in row.items()}  # fmt: skip


def choice(runs, grid: list) -> dict:
    """One program × reg: rows per λ (paired Δ vs λ = 0, fractions bounded), the selection."""
    val, loss, acc = (replicates.setting_values(runs, m)[1] for m in METRICS[2::-1])
    s, a = study.select(val, loss, grid), study.select(val, acc, grid, higher_is_better=True)
    return dict(strengths=list(grid), selection=s, edge=s["averaged"] in (1, len(grid) - 1),
                rows=[bounded(r) for r in replicates.table(runs, METRICS, {"strength": 0.0})],
                nested_test_acc_diff=a["nested_diff"])  # fmt: skip


def keras_arms(config, n: int, l1_runs) -> tuple[dict, dict]:
    """Keras rows for none and l1(0.01) on the replicates' data; Welch Keras − wdjax's l1 arm."""
    rows, welch, lams = {}, {}, [s["strength"] for s in l1_runs[0].members]
    per = {lam: [keras_peer.member(study.load_data(c), lam, c.first_seed, c.epochs, c.batch_size,
                 TAU) for c in replicates.replicate_configs(config, n)]
           for lam in (0.0, NOMINAL)}  # fmt: skip
    for lam, a in ((0.0, "none"), (NOMINAL, "l1(0.01)")):
        row = dict(program="tutorial", arm=f"Keras {a}", reg="l1" if lam else "none", strength=lam)
        for m in METRICS:
            row |= replicates.summarize(m, v := [p[m] for p in per[lam]], [p[m] for p in per[0.0]])
            w = stats.welch_difference(v, replicates.setting_values(l1_runs, m)[1][:, lams.index(
                lam)])  # fmt: skip
            welch.setdefault(a, {})[m] = [float(w.mean), float(w.lo), float(w.hi)]
        rows[f"tutorial Keras {a}"] = bounded(row)
    return rows, welch


def run(ctx: study.Context) -> study.Report:
    """Both programs × regularizer × replicate (resumable), Keras beside, then the summary."""
    k, cfg, programs, at = ctx.knobs, ctx.config, {}, {}
    arms = {r: dataclasses.replace(cfg, reg=r, strengths=tuple(g)) for r, g in k["grids"].items()}
    long = {f"long_{r}": dataclasses.replace(cfg, reg=r, strengths=tuple(g), epochs=k["long"][
        "epochs"]) for r, g in k["long"]["grids"].items()}  # fmt: skip
    res = ctx.sweeps(arms := arms | long, record=record, record_every="epoch")
    for p, names in dict(tutorial=list(k["grids"]), long=list(long)).items():
        regs = {a.removeprefix("long_"): choice(res[a], list(arms[a].strengths)) for a in names}
        for a in names if p == "long" else ():  # each member at its best validation epoch
            regs[a[5:]]["early"] = choice(list(map(replicates.early_stopped, res[a])), list(
                arms[a].strengths))  # fmt: skip
        b = study.rise(replicates.curves(res[names[0]], "val_loss")[1][:, 0])
        b["overfits"] = bool(b["min_epoch"] < b["epochs"] and b["rise_at_mean_min"][1] > 0)
        programs[p] = dict(epochs=arms[names[0]].epochs, baseline=b, regs=regs, claims={
            r: study.outcome(regs[r]["selection"]["nested_diff"], "lower") if b["overfits"]
            else "inconclusive" for r in ("l1", "l2")})  # fmt: skip
        for mode in ("final", "early") if p == "long" else ("final",):
            at |= table_arms(p if p == "tutorial" else f"long {mode}", {r: x if mode == "final"
                             else x["early"] for r, x in regs.items()})  # fmt: skip
    use_keras = k["keras"] and importlib.util.find_spec("keras") is not None
    rows, welch = keras_arms(cfg, ctx.replicates, res["l1"]) if use_keras else ({}, {})
    sparse = {x: study.outcome([at["tutorial l1(0.01)"][f"{x}_{s}"] for s in ("lo", "hi")],
                               "higher", ref=0.5) for x in FRACTIONS[2:]}  # fmt: skip
    summary = dict(programs=programs, arms=at | rows, tau=TAU, sparse=sparse, edges=[
        f"{p} {r}" for p, x in programs.items() for r, y in x["regs"].items() if y["edge"]],
        best_strength={r: x["selection"]["averaged_strength"] for r, x in programs["tutorial"][
            "regs"].items()}, keras=dict(installed=use_keras, welch=welch), epochs=cfg.epochs,
        previous=k["previous"], train_size=len(study.load_data(cfg).x_train))  # fmt: skip
    return study.Report(summary, COLUMNS, table_rows(at | rows, welch), figure(summary))


def table_arms(program: str, regs: dict) -> dict:
    """``{"<program> <arm>": row}``: none, l1(0.01), each reg at its λ, l1_prox(0.01)."""
    picks = [("none", "none", 0.0, next(iter(regs.values())))] + [(f"{r}(0.01)", r, NOMINAL, x)
             for r, x in regs.items() if r[:2] == "l1" and NOMINAL in x["strengths"]] + [(
             f"{r} at its λ", r, x["strengths"][x["selection"]["averaged"]], x) for r, x in
             regs.items()]  # fmt: skip
    return {f"{program} {a}": dict(x["rows"][x["strengths"].index(lam)], program=program, arm=a,
                                   reg=r, strength=lam) for a, r, lam, x in picks}  # fmt: skip


COLUMNS = ["program", "arm", "λ", "test acc", "Δ test acc vs none (paired)", "test loss",
           "Δ test loss vs none (paired)", "verdict / Keras − wdjax", "|w| < η", "w = 0",
           "‖W‖₂"]  # fmt: skip


def table_rows(arms: dict, welch: dict) -> list[list]:
    return [[a["program"], a["arm"], f"{a['strength']:.3g}", *(study.ci(a, m, 4) for m in (
        "test_acc", "test_acc_diff", "test_loss", "test_loss_diff")), ("acc {}, loss {}".format(*(
        study.fmt_ci(*welch[a["arm"][6:]][m], 4) for m in ("test_acc", "test_loss"))) if a[
        "arm"].startswith("Keras") else "baseline" if a["reg"] == "none" else "λ = 0 chosen" if
        not a["strength"] else study.verdict((a["test_loss_diff_lo"], a["test_loss_diff_hi"]))),
        *(study.ci(a, m, 3) for m in FRACTIONS[2:]), study.ci(a, "weight_l2", 2)]
        for a in arms.values()]  # fmt: skip


def figure(summary: dict):
    """Paired Δ test loss against λ (10 epochs; 30, final and early-stopped: dashed); hidden
    fractions |w| < η (solid) and w = 0 (dotted) against λ; dotted: 0.01, λ = 0's |w| < η."""
    fig, ax = study.pyplot().subplots(1, 3, figsize=(16, 4.5))
    t, lg = (summary["programs"][p]["regs"] for p in ("tutorial", "long"))
    curve = lambda a, x, m, label, **kw: plots.fill(ax[a], x["strengths"][1:], *(  # noqa: E731
        np.array([y[m + s] for y in x["rows"][1:]]) for s in ("" if "diff" in m else "_mean",
        "_lo", "_hi")), label, ms=2, **kw)  # fmt: skip
    for i, (reg, x) in enumerate(t.items()):
        curve(0, x, "test_loss_diff", reg, color=f"C{i}")
        for m, ls in zip(FRACTIONS[2:], "-:" if reg.startswith("l1") else "", strict=False):
            curve(1, x, m, f"{reg} {m}", color=f"C{i}", ls=ls)
    for i, (reg, x) in enumerate(lg.items()):
        for y, ls, what in ((x, "-", "final"), (x["early"], "--", "early-stopped")):
            curve(2, y, "test_loss_diff", f"{reg} {what}", color=f"C{i}", ls=ls)
    ax[1].axhline(t["l1"]["rows"][0]["near_zero_mean"], color="k", ls=":", lw=0.8)
    for i, a in enumerate(ax):
        a.set(xscale="log", xlabel="λ", title=["10 epochs: Δ test loss vs λ = 0", "10 epochs: "
              "hidden weights", "30 epochs: Δ test loss vs λ = 0, same stop"][i])  # fmt: skip
        a.axvline(NOMINAL, color="k", ls=":", lw=0.8), a.legend(fontsize=7), a.grid(alpha=0.3)
        _ = i != 1 and (a.axhline(0, color="k", lw=0.8), a.set_yscale("symlog", linthresh=0.01))
    return fig


def _sel(r: str, x: dict) -> str:
    s, n, one, flat = x["selection"], prose.num, x["selection"]["one_se"], len(x["selection"][
        "one_se"]) >= 3  # fmt: skip
    return (f"{r} " + (f"flat: one-SE set {n(min(one))} … {n(max(one))} ({len(one)} λ, argmin "
            if flat else "λ = ") + n(s["averaged_strength"]) + (")" if flat else f" (one-SE set "
            f"{prose.join(map(n, one))})") + " at an edge" * x["edge"] + ", per replicate "
            f"{', '.join(map(n, s['per_replicate']))}, oracle {n(s['oracle_strength'])}, nested "
            f"Δ test loss {prose.ci(*s['nested_diff'])}")  # fmt: skip


def write_up(summary: dict) -> str:
    """What it shows: each ``RULES`` label applied to ``summary``, numbers from it."""
    P, a, prev, w, sp = (summary[x] for x in ("programs", "arms", "previous", "keras", "sparse"))
    pct = lambda r, m: prose.ci(*(100 * r[m + s] for s in ("_mean", "_lo", "_hi")), 1) + " %"  # noqa: E731
    d = lambda r, m: prose.ci(*(r[m + s] for s in ("", "_lo", "_hi")))  # noqa: E731
    kw, n, low = w["welch"], prose.num, P["tutorial"]["regs"]["l1"]["strengths"][1]
    l1, none, prox = (a[f"tutorial {x}"] for x in ("l1(0.01)", "none", "l1_prox(0.01)"))
    out = [(f"**Keras beside wdjax**: test accuracy {prose.ci(*kw['none']['test_acc'])} (Keras "
            f"− wdjax, Welch) without a regularizer, {prose.ci(*kw['l1(0.01)']['test_acc'])} with "
            "`l1(0.01)`; Keras's hidden |w| < η there: "
            f"{pct(a['tutorial Keras l1(0.01)'], 'near_zero')}." if w["installed"] else
            "Keras was not installed for this run."), f"**L1 makes weights sparse: "
           f"{sp['near_zero']} counted as |w| < η = {n(summary['tau'])}; {sp['exact_zero']} as "
           f"exact zeros.** At `l1(0.01)` {pct(l1, 'near_zero')} of the hidden weights lie within "
           f"η of 0 (λ = 0: {pct(none, 'near_zero')}), {pct(l1, 'exact_zero')} exactly at 0: "
           f"Adam with the subgradient keeps them in a band about η wide; the prox at 0.01 zeroes "
           f"{pct(prox, 'exact_zero')}. That strength costs {d(l1, 'test_acc_diff')} test "
           f"accuracy and {d(l1, 'test_loss_diff')} test loss (paired).", "**Chosen λ, 10 "
           "epochs, on validation loss**: " + "; ".join(_sel(r, x) for r, x in P["tutorial"][
           "regs"].items()) + ". At a grid edge: " + (prose.join(summary["edges"]) or "none") +
           "."]  # fmt: skip
    for p, x in P.items():
        b, c = x["baseline"], x["claims"]
        out.append(f"**Fights overfitting, {x['epochs']} epochs: l1 {c['l1']}, l2 {c['l2']}.** "
                   f"λ = 0's validation loss is lowest at epoch {b['min_epoch']} of {b['epochs']}"
                   f", then rises by {prose.ci(*b['rise_at_mean_min'])} (paired)" + (
                   "" if b["overfits"] else ": no overfitting to fight") + ". " + "; ".join(
                   _sel(r, x["regs"][r]) for r in c) + "." + (" Early-stopped (each member at "
                   "its best validation epoch, against λ = 0 stopped so): " + "; ".join(_sel(
                   r, y["early"]) for r, y in x["regs"].items()) + "." if p == "long" else
                   ""))  # fmt: skip
    return "\n\n".join([*out, "**What changed from the previous verdict, and why.** Before: "
                         "sparse contradicted (no exact zero at any λ), overfitting inconclusive "
                         "(10 epochs did not overfit); chosen "
                         + ", ".join(f"{r} {n(v)}" for r, v in prev["best"].items()) + f" (l1 at "
                         f"the grid's lowest), and AdamW {n(prev['rerun_wd'])} in a rerun on "
                         "another CPU: on a flat curve the argmin follows the last bits. Now: "
                         "sparsity also in the band of η where Adam's subgradient keeps L1 "
                         f"weights, L1 grids down to {n(low)}, one-SE sets and each replicate's "
                         f"own pick, and a {P['long']['epochs']}-epoch program in which λ = 0 "
                         "overfits."])  # fmt: skip


def main(argv=None) -> dict:
    return study.main(get_config, run, smoke=smoke, argv=argv)


if __name__ == "__main__":
    main()
