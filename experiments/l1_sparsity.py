"""Sparsity from L1 and group lasso against magnitude pruning: which gives the better accuracy at
a given sparsity, and what can actually be removed?

Command: ``python experiments/l1_sparsity.py`` (Fashion-MNIST; ``--smoke``: digits, seconds).
Runtime: 314 s and 334 s (5.2–5.6 min; two runs, identical results) on the 2-core machine,
shared with other agents' jobs (run under flock). Per replicate: 4 training sweeps of 5 + 4 +
3 + 3 members × 15 epochs, then 13 members fine-tuned 5 epochs.

Claims tested: magnitude pruning of a trained network, then fine-tuning the survivors with the
pruned weights held at zero, keeps its accuracy at high sparsity, and training with an L1 penalty
before pruning helps (Han et al. 2015, "Learning both weights and connections for efficient
neural networks"): the baseline every pruning paper has to beat. The proximal L1 step sets
weights exactly to zero while the subgradient (Keras-style) L1 leaves none (Duchi & Singer
2009). Group lasso removes whole units: on each unit's incoming weights (Yuan & Lin 2006;
Wen et al. 2016, "Learning structured sparsity in deep neural networks") or on its outgoing
weights, which also removes input pixels (Scardapane et al. 2017, "Group sparse regularization
for deep neural networks"). Verdict: *reproduced* for exact zeros (prox yes, subgradient
no) and for whole units from group lasso (outgoing groups also remove pixels); *reproduced in
part* for Han et al.: prune-and-retrain keeps the dense accuracy up to 54 % sparsity and L1
before pruning helps without retraining and at 90 %, but with retraining at 24–81 % sparsity
pruning the unregularized model beats every L1 arm in accuracy. L1 wins where it counts for a
dense implementation: at the same sparsity it removes 14–88 % of the multiply-adds, pruning
0–27 %.

Setup: the tutorial MLP 784-64-64-10 on Fashion-MNIST (50,000 training images, 10,000-image
validation split from the training pool, the 10,000 test images), Adam lr 1e-3, batch 128,
15 epochs. Arms, each a sweep whose λ = 0 member is the dense baseline (every arm of a
replicate shares its initial weights and batch order: paired):

* ``l1_prox``: Adam + proximal L1 in Adam's metric (:func:`wdjax.prox.adam_prox`) on the
  two hidden kernels (``mask="hidden"``); ``l1``: the subgradient L1 on the same kernels and λ.
* ``prune``: the dense baseline, magnitude-pruned layer-wise (hidden kernels only, the smallest
  |w| of each layer) to exactly the per-layer zero count of the ``l1_prox`` model at the same λ
  and replicate (same sparsity, same allocation over layers).
* ``…+ft``: 5 more epochs of Adam (lr 1e-4, Han et al.'s lowered rate) with every zero of
  the hidden kernels held at zero: ``l1_prox+ft`` (the L1-trained model's own zeros),
  ``prune+ft`` (Han et al.'s prune and retrain) and ``l1→prune+ft`` (Han et al.'s full recipe:
  the subgradient-L1 model pruned as ``prune``, then retrained). Fine-tuned arms train 15 + 5
  epochs in all; ``dense+ft`` (the dense model fine-tuned alike) separates the effect of those
  epochs from that of the zeros.
* ``group_in`` / ``group_out``: proximal group lasso (Adam metric) with a group per unit's
  incoming weights (kernel columns; ``mask="hidden"``: the 128 hidden units) or per unit's
  outgoing weights (kernel rows, ``groups="outgoing"``; ``mask="kernels"``: the 784 pixels
  and the 128 hidden units, whose outgoing rows are in dense_0, dense_1 and the head).

What can be removed (from the final weights, per member): a unit whose incoming weights from
the surviving inputs are all zero outputs the constant relu(b), which folds into the next
layer's bias; a unit (or input pixel) whose outgoing weights to surviving units are all zero is
unused; both are removed, to a fixed point. ``MACs removed`` is the share of the 54,912
multiply-adds of a forward pass (784·64 + 64·64 + 64·10) in the removed rows and columns: what
a dense implementation saves. ``sparsity`` is the share of exact zeros among those 54,912 kernel
weights (what a sparse kernel could skip; parameters only).

Statistics: R = 5 replicates (new initial weights, batch order, validation split); per arm
and λ the mean over replicates and its Student-t 95 % interval, the paired difference against
the dense baseline and, for the pruned arms, against ``l1_prox`` (or ``l1_prox+ft``) at the same
λ, hence the same sparsity. Operating point of an arm (chosen on validation, never on test):
its largest λ whose mean validation loss is at most 5 % above the dense model's. λ grids:
l1_prox, l1 and the pruned arms 1e-4, 3e-4, 1e-3, 3e-3; group lasso 1e-5, 1e-4, 1e-3 (ranges
from a range-finding run at 20,000 images, 5 epochs: from ≈ no loss to a collapse).

summary.json keys: ``arms`` {arm: {``strengths``, ``rows`` (per λ: ``strength``, ``n`` and
mean/std/lo/hi of ``val_loss, test_loss, test_acc, sparsity, units_removed, pixels_removed,
macs_removed`` with paired ``_diff/_diff_lo/_diff_hi`` vs dense; pruned arms also
``test_loss_vs_l1, test_acc_vs_l1`` (+ ``_lo/_hi``)), ``chosen`` (index or None)}},
``dense`` (the baseline's row), ``operating_point`` {arm: its chosen row or None},
``max_sparsity`` {arm: largest mean sparsity over λ}, ``sparsity_check`` (largest |engine's
sparsity metric − recount from the parameters| over trained members), ``macs_total``,
``strengths`` {sweep: λ grid}, ``tolerance``, ``selected_by``, ``epochs``, ``fine_tune``
{epochs, lr}, ``eval_check`` (largest |test loss "as given" by the fine-tuning path − the
sweep's own| for dense and l1_prox: 0), ``replicates``, ``dataset``, ``figure``, ``command``,
``seconds``.

Measured (Fashion-MNIST, R = 5; mean [95 % t-interval]; Δ paired by replicate): dense test
loss 0.358 [0.347, 0.369], accuracy 0.8740 [0.8693, 0.8788]; 5 more epochs at lr 1e-4
(``dense+ft``) alone lower the loss by 0.026 [0.017, 0.034] and raise accuracy by 1.02 [0.49,
1.54] points, so fine-tuned arms compare with that. The subgradient ``l1`` has no exact zero at
any λ (sparsity 0.000 at λ = 3e-3, where accuracy is down 6.3 points); ``l1_prox`` reaches 23.5,
54, 81 and 90 % zeros. No ``l1_prox`` λ is within 5 % of the dense validation loss (at 1e-4 the
test loss rises by 0.020 [0.004, 0.037]); fine-tuned (``l1_prox+ft``, chosen λ = 1e-4: 23.5 %
zeros, 14 % of MACs removed) its test loss is 0.019 [0.008, 0.030] below the dense model's.
Magnitude pruning at the same per-layer sparsity: without fine-tuning it matches l1_prox at
23.5 % (accuracy +0.93 [+0.56, +1.29] points vs l1_prox) and collapses at 81 % (0.570 [0.491,
0.650]); fine-tuned (``prune+ft``) it is the most accurate sparse arm up to 81 %: +0.69, +1.66,
+1.63 points over ``l1_prox+ft`` (intervals [0.45, 0.92], [1.39, 1.93], [1.27, 1.99]), at 54 %
zeros (chosen on validation) 0.8823 [0.8816, 0.8831] with test loss 0.332 [0.326, 0.337], like
``dense+ft``; at 90 % it falls 2.62 [1.33, 3.91] points below ``l1_prox+ft``. Han et al.'s
L1-then-prune: the subgradient-L1 model pruned without retraining stays near l1_prox
(``l1→prune`` at 81 %: 0.830 [0.825, 0.835], −0.40 [−0.71, −0.08] points vs l1_prox) where
the pruned dense model collapses, and retrained it shows no detectable difference from
``l1_prox+ft`` at any sparsity. What is removable: at equal sparsity l1_prox removes 14, 40, 74,
88 % of the MACs (13–63 hidden units, 16–89 pixels) against 0, 0, 9, 27 % for pruning. Group
lasso at its chosen λ = 1e-5 costs no detectable test loss (incoming −0.0028 [−0.0071, +0.0016],
outgoing −0.0028 [−0.0066, +0.0009]) and removes 12.0 [9.5, 14.5] units (10 % of MACs) or 11.2
units and 12.4 [9.5, 15.3] pixels (11 %); at λ = 1e-4 incoming groups remove 22.4 units at
22.5 % zeros where l1_prox (λ = 1e-4) removes 13.2 at 23.5 %; at 1e-3 incoming groups remove
72.8 units (88.5 % of MACs, −5.7 points), outgoing ones 64.6 units and 134.8 pixels (80.5 %,
−6.8 points). The pixels removed are the image corners (figure).
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import wdjax
from wdjax import masks, study
from wdjax.analysis import stats
from wdjax.engine import devices, programs
from wdjax.run import runner
from wdjax.run.build import build
from wdjax.study import replicates

NAME = "l1_sparsity"
METRICS = ("val_loss", "test_loss", "test_acc", "sparsity", "units_removed", "pixels_removed",
           "macs_removed")  # fmt: skip
SWEEPS = {  # sweep -> (reg, mask, groups)
    "l1_prox": ("l1_prox", "hidden", "incoming"),
    "l1": ("l1", "hidden", "incoming"),
    "group_in": ("group_lasso_prox", "hidden", "incoming"),
    "group_out": ("group_lasso_prox", "kernels", "outgoing"),
}
VS_L1 = {"prune": "l1_prox", "prune+ft": "l1_prox+ft", "l1→prune": "l1_prox",
         "l1→prune+ft": "l1_prox+ft"}  # fmt: skip
TABLE_ARMS = ("l1_prox", "l1_prox+ft", "prune", "prune+ft", "l1→prune", "l1→prune+ft",
              "group_in", "group_out")  # fmt: skip


def get_config(smoke=False) -> dict:
    """Knobs: ``grids`` {l1_prox (also l1's and the pruned arms'), group_in, group_out: λ > 0,
    ascending}, ``fine_tune`` {epochs, lr}, ``tolerance``
    (relative validation-loss allowance of an operating point), ``replicates``."""
    if smoke:
        grids = {"l1_prox": (1e-5, 1e-3), "group_in": (1e-5, 1e-3), "group_out": (1e-5, 1e-3)}
    else:  # from a range-finding run (20,000 images, 5 epochs, λ 1e-6 … 1e-2)
        grids = {"l1_prox": (1e-4, 3e-4, 1e-3, 3e-3), "group_in": (1e-5, 1e-4, 1e-3),
                 "group_out": (1e-5, 1e-4, 1e-3)}  # fmt: skip
    return dict(dataset="digits" if smoke else "fashion_mnist", val_size=300 if smoke else 10000,
                epochs=1 if smoke else 15, mask="hidden", grids=grids,
                fine_tune=dict(epochs=1 if smoke else 5, lr=1e-4), tolerance=0.05,
                replicates=2 if smoke else 5)  # fmt: skip


# --- what a network's zeros remove ----------------------------------------------------------


def dense_kernels(params) -> list[np.ndarray]:
    """The kernels of one member's MLP in forward order (hidden layers, then ``head``)."""
    ks = {masks.param_path(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}  # fmt: skip
    names = sorted((k for k in ks if k.endswith("kernel")), key=lambda k: k.startswith("head"))
    return [ks[k] for k in names]


def removable(kernels: list[np.ndarray]) -> list[np.ndarray]:
    """Alive masks of each layer's inputs, ``[inputs of layer 0, …, outputs]``, after removing
    (to a fixed point) every hidden unit with no non-zero weight from an alive input (a constant,
    folded into the next bias) and every input or hidden unit with no non-zero weight to an alive
    unit (unused). The output units always stay."""
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
    """``sparsity`` (exact zeros / kernel weights), ``units_removed`` (hidden), ``pixels_removed``,
    ``macs_removed`` (share of a forward pass's multiply-adds in removed rows and columns) and
    ``alive_pixels`` (bool [inputs])."""
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
    sel = masks.resolve_mask(mask, params)

    def leaf(m, w, t):
        if not m:
            return w
        k = int(np.sum(np.asarray(t) == 0))
        flat = np.array(w).ravel()
        flat[np.argsort(np.abs(flat), kind="stable")[:k]] = 0
        return flat.reshape(np.shape(w))

    return jax.tree.map(leaf, sel, params, target)


# --- fine-tuning with the zeros held -----------------------------------------------------------


class HeldZeros(NamedTuple):
    keep: Any  # like the params: 1 where the starting weight is non-zero, 0 where it is zero


def hold_zeros() -> optax.GradientTransformation:
    """Multiply each update by (w₀ ≠ 0) of the parameters it was initialized with: a weight
    that starts at exactly 0 stays exactly 0 (w + 0·u)."""

    def init(params):
        return HeldZeros(jax.tree.map(lambda w: (w != 0).astype(w.dtype), params))

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, k: u * k, updates, state.keep), state

    return optax.GradientTransformation(init, update)


@dataclasses.dataclass(frozen=True)
class Held:
    """Optimizer factory: ``make_optimizer("adam", lr, reg, λ, mask=, groups=)`` followed by
    :func:`hold_zeros` on the hidden kernels. Trained from a random start (no exact zeros) the
    hold multiplies every update by 1: the strategy, bit for bit; with λ = 0 from pruned weights
    it is Adam fine-tuning with the zeros held. One compiled program serves l1_prox's sweep and
    every fine-tuning (hashable, so :mod:`wdjax.programs` reuses it)."""

    reg: str
    mask: str = "hidden"
    groups: str = "incoming"

    def __call__(self, learning_rate, strength, **traced) -> optax.GradientTransformation:
        kw = {"groups": self.groups} if self.reg == "group_lasso_prox" else {}
        tx = wdjax.make_optimizer("adam", learning_rate, self.reg, strength, mask=self.mask,
                                  **kw, **traced)  # fmt: skip
        return optax.chain(tx, held_zeros())


def held_zeros() -> optax.GradientTransformation:
    return optax.masked(hold_zeros(), masks.mask_from_spec("hidden"))


def fine_tune(cfg, ds, params, chunk: int, first_epoch: int) -> tuple[dict, dict]:
    """Metrics of ``params`` (leaves [K, ...]) as given and after ``cfg.epochs`` epochs of
    ``cfg.optimizer`` at λ = 0 and lr ``cfg.lrs[0]`` from a fresh Adam state, ``chunk`` members
    at a time (the compiled program of the sweep with that many members). "As given" is an
    epoch at lr 0, which leaves every weight as it is (w − 0·u); its Adam state is discarded.
    Batch orders are those of epochs ``first_epoch …``, which the training did not see."""
    engine = build(cfg, num_classes=ds.num_classes).engine
    shard, repl = devices.mesh_shardings(devices.for_members(chunk))
    arrays = jax.tree.map(lambda x: devices.put(x, repl), runner.host_data(ds, cfg))
    progs = programs.fit(engine, arrays, chunk, None, shard, repl, cfg.data_seed)
    k, c = len(jax.tree.leaves(params)[0]), progs.chunk
    metrics = ("val_loss", "test_loss", "test_acc")
    before, after, tuned = {m: [] for m in metrics}, {m: [] for m in metrics}, []

    def put(tree):
        return jax.tree.map(lambda x: devices.put(x, shard), tree)

    def hyper(lr):
        rows = [dict(member=i, strength=0.0, lr=lr, seed=cfg.first_seed, fold=0) for i in range(c)]
        return put(runner.hyper_arrays(rows, c, cfg.dtype))

    def fresh(p):  # new Adam moments, the zeros of p held
        s = progs.init(hyper(0.0), arrays.x_pool[:1])
        return s._replace(params=put(p), opt_state=(s.opt_state[0], put(held_zeros().init(p))))

    def epochs(states, h, first, n):
        for e in range(n):
            order = progs.order(jnp.int32(cfg.data_seed), jnp.int32(first + e))
            flag = (jnp.bool_(e + 1 == n),) * (engine.eval_every > 1)
            states, out = progs.epoch(states, h, arrays, order, *flag)
        return states, {m: np.asarray(out[m]) for m in metrics}

    for lo in range(0, k, c):
        p = jax.tree.map(lambda x, lo=lo: np.asarray(x)[np.minimum(np.arange(lo, lo + c), k - 1)],
                         params)  # fmt: skip
        _, got = epochs(fresh(p), hyper(0.0), first_epoch, 1)
        states, out = epochs(fresh(p), hyper(cfg.lrs[0]), first_epoch, cfg.epochs)
        for m in metrics:
            before[m].append(got[m])
            after[m].append(out[m])
        tuned.append(jax.tree.map(np.asarray, states.params))
    cut = {m: np.concatenate(before[m])[:k] for m in metrics}
    done = {m: np.concatenate(after[m])[:k] for m in metrics}
    done["params"] = jax.tree.map(lambda *xs: np.concatenate(xs)[:k], *tuned)
    return cut, done


# --- one replicate ---------------------------------------------------------------------------


def member(params, i: int):
    return jax.tree.map(lambda x: np.asarray(x)[i], params)


def stack(trees: list):
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def measured(res, i: int) -> dict:
    """One trained member's metrics: final val/test from the history, structure from params."""
    out = {m: float(res.history[m][i, -1]) for m in ("val_loss", "test_loss", "test_acc")}
    s = structure(dense_kernels(member(res.params, i)))
    out.update(s, engine_sparsity=float(res.history["sparsity"][i, -1]))
    return out


def grid(k: dict, arm: str) -> tuple:
    """The λ of each level of ``arm``: its own grid for the group lasso, else l1_prox's (the
    subgradient l1 and the pruned arms are matched to l1_prox level by level)."""
    if arm.startswith("dense"):
        return (0.0,)
    return k["grids"][arm if arm in ("group_in", "group_out") else "l1_prox"]


def run_replicate(cfg, k: dict) -> tuple[dict, float]:
    """Every arm of one replicate, {arm: [per λ: metrics dict]} (``dense`` and ``dense+ft``
    holding one entry each), and the largest |test loss of a model evaluated "as given" by
    :func:`fine_tune` − its sweep's evaluation| (dense, l1_prox: 0 when the epoch at lr 0
    leaves the weights as they are). ``cfg.eval_every`` must be the fine-tuning's epoch count (the
    fine-tuning then reuses l1_prox's compiled program)."""
    ds = study.load_data(cfg)
    res = {}
    for name, (reg, mask, groups) in SWEEPS.items():
        lams = (0.0, *grid(k, name)) if name == "l1_prox" else grid(k, name)
        res[name] = wdjax.sweep(cfg, data=ds, optimizer=Held(reg, mask, groups),
                                strengths=tuple(lams))  # fmt: skip
    out = {name: [measured(r, i + (name == "l1_prox")) for i in range(len(grid(k, name)))]
           for name, r in res.items()}  # fmt: skip
    out["dense"] = [measured(res["l1_prox"], 0)]
    levels = len(grid(k, "l1_prox"))
    dense = member(res["l1_prox"].params, 0)
    prox = [member(res["l1_prox"].params, i + 1) for i in range(levels)]
    sources = {"dense": [dense], "l1_prox": prox,
               "prune": [prune_like(dense, t) for t in prox],
               "l1→prune": [prune_like(member(res["l1"].params, i), t)
                            for i, t in enumerate(prox)]}  # fmt: skip
    ft = dataclasses.replace(cfg, epochs=k["fine_tune"]["epochs"], lrs=(k["fine_tune"]["lr"],),
                             optimizer=Held("l1_prox"))  # fmt: skip
    params = stack([p for arm in sources.values() for p in arm])
    before, after = fine_tune(ft, ds, params, chunk=levels + 1, first_epoch=cfg.epochs)
    j, check = 0, 0.0
    for arm, ps in sources.items():
        rows_b, rows_a = [], []
        for p in ps:
            s = structure(dense_kernels(p))  # the zeros are held: the same after fine-tuning
            rows_b.append({**{m: float(before[m][j]) for m in before}, **s})
            rows_a.append({**{m: float(after[m][j]) for m in before}, **s})
            j += 1
        if arm in out:  # dense, l1_prox: the sweep's own evaluation; "as given" must equal it
            check = max(check, *(abs(a["test_loss"] - b["test_loss"])
                                 for a, b in zip(out[arm], rows_b, strict=True)))  # fmt: skip
        out.setdefault(arm, rows_b)
        out[arm + "+ft"] = rows_a
    return out, check


# --- over replicates -------------------------------------------------------------------------


def values(reps: list[dict], arm: str, metric: str) -> np.ndarray:
    """``metric`` of ``arm`` as [replicates, λ]."""
    return np.array([[row[metric] for row in rep[arm]] for rep in reps], float)


def arm_rows(reps: list[dict], arm: str, grid) -> list[dict]:
    """Per λ: mean/std/lo/hi of every metric, paired difference vs dense (and vs the L1 arm at
    the same λ for pruned arms)."""
    rows = [dict(strength=float(lam), n=len(reps)) for lam in grid]
    for m in METRICS:
        v, base = values(reps, arm, m), values(reps, "dense", m)[:, 0]
        for j, row in enumerate(rows):
            row.update(replicates.summarize(m, v[:, j], base))
    if arm in VS_L1:
        for m in ("test_loss", "test_acc"):
            d = stats.paired_differences(values(reps, arm, m), values(reps, VS_L1[arm], m),
                                         axis=0)  # fmt: skip
            for j, row in enumerate(rows):
                row.update({f"{m}_vs_l1": float(d.mean[j]), f"{m}_vs_l1_lo": float(d.lo[j]),
                            f"{m}_vs_l1_hi": float(d.hi[j])})  # fmt: skip
    return rows


def choose(rows: list[dict], dense: dict, tolerance: float) -> int | None:
    """The largest λ whose mean validation loss is ≤ (1 + tolerance) × the dense model's; None
    when no λ qualifies."""
    ok = [j for j, r in enumerate(rows) if r["val_loss_mean"] <= (1 + tolerance) *
          dense["val_loss_mean"]]  # fmt: skip
    return max(ok) if ok else None


def summarize(reps: list[dict], k: dict) -> dict:
    dense = dict(strength=0.0, n=len(reps))
    for m in METRICS:
        dense.update(replicates.summarize(m, values(reps, "dense", m)[:, 0]))
    arms = {}
    for arm in reps[0]:
        if arm == "dense":
            continue
        rows = arm_rows(reps, arm, grid(k, arm))
        arms[arm] = dict(
            strengths=list(grid(k, arm)), rows=rows, chosen=choose(rows, dense, k["tolerance"])
        )
    return dict(arms=arms, dense=dense)


# --- table, figure, main ---------------------------------------------------------------------

COLUMNS = ["arm", "λ", "sparsity (exact zeros)", "hidden units removed", "input pixels removed",
           "MACs removed", "test loss", "Δ test loss vs dense", "test acc", "Δ test acc vs dense",
           "Δ test loss vs l1_prox(+ft), same λ", "Δ test acc vs l1_prox(+ft), same λ",
           "chosen on val"]  # fmt: skip


def table_row(arm: str, r: dict, chosen: bool) -> list:
    vs = [study.fmt_ci(r[f"{m}_vs_l1"], r[f"{m}_vs_l1_lo"], r[f"{m}_vs_l1_hi"], 4)
          if f"{m}_vs_l1" in r else "—" for m in ("test_loss", "test_acc")]  # fmt: skip
    return [arm, f"{r['strength']:.3g}", study.ci(r, "sparsity"), study.ci(r, "units_removed", 1),
            study.ci(r, "pixels_removed", 1), study.ci(r, "macs_removed"),
            study.ci(r, "test_loss"), study.ci(r, "test_loss_diff", 4), study.ci(r, "test_acc", 4),
            study.ci(r, "test_acc_diff", 4), *vs, "✓" if chosen else ""]  # fmt: skip


def table(s: dict) -> list[list]:
    """Dense, the subgradient l1 at its largest λ, then every λ of each arm of TABLE_ARMS."""
    d = s["dense"]
    cells = [study.ci(d, m, 1 if m in ("units_removed", "pixels_removed") else 3)
             for m in ("sparsity", "units_removed", "pixels_removed", "macs_removed",
                       "test_loss")]  # fmt: skip
    rows = [["dense", "0", *cells, "—", study.ci(d, "test_acc", 4), "—", "—", "—", ""]]
    rows.append(table_row("l1 (no pruning)", s["arms"]["l1"]["rows"][-1], False))
    rows.append(table_row("dense+ft", s["arms"]["dense+ft"]["rows"][0], False))
    for arm in TABLE_ARMS:
        a = s["arms"][arm]
        rows += [table_row(arm, r, j == a["chosen"]) for j, r in enumerate(a["rows"])]
    return rows


def pixel_map(reps: list[dict], arm: str, j: int, shape) -> np.ndarray:
    """Fraction of replicates in which each input pixel survives (arm at λ index ``j``)."""
    return np.mean([rep[arm][j]["alive_pixels"] for rep in reps], axis=0).reshape(shape[:2])


def figure(s: dict, reps: list[dict], shape):
    plt = study.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    d = s["dense"]
    for arm in TABLE_ARMS:
        rows = s["arms"][arm]["rows"]
        for ax, (x, y) in zip(axes[0], [("sparsity", "test_acc"), ("sparsity", "test_loss"),
                                        ("macs_removed", "test_acc")], strict=True):  # fmt: skip
            xs = [r[f"{x}_mean"] for r in rows]
            ys = np.array([[r[f"{y}_{q}"] for q in ("mean", "lo", "hi")] for r in rows])
            ax.errorbar(xs, ys[:, 0], yerr=[ys[:, 0] - ys[:, 1], ys[:, 2] - ys[:, 0]],
                        marker="o", ms=3, capsize=2, label=arm)  # fmt: skip
    labels = [("sparsity (exact zeros)", "test_acc"), ("sparsity (exact zeros)", "test_loss"),
              ("MACs removed (structured)", "test_acc")]  # fmt: skip
    for ax, (x, y) in zip(axes[0], labels, strict=True):
        ax.axhspan(d[f"{y}_lo"], d[f"{y}_hi"], color="k", alpha=0.12, label="dense")
        ax.set_xlabel(x)
        ax.set_ylabel(y.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0, 1].set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    # l1_prox+ft has l1_prox's zeros: its operating point shows the L1 prox's pixels
    for ax, arm in zip(axes[1], ("l1_prox+ft", "group_in", "group_out"), strict=True):
        a = s["arms"][arm]
        j = a["chosen"] if a["chosen"] is not None else 0
        im = ax.imshow(pixel_map(reps, arm, j, shape), vmin=0, vmax=1, cmap="viridis")
        r = a["rows"][j]
        used = np.prod(shape) - r["pixels_removed_mean"]
        none = "" if a["chosen"] is not None else " (no λ within the tolerance)"
        ax.set_title(f"{arm} λ={r['strength']:.2g}: {used:.0f} pixels used{none}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[1, -1], label="fraction of replicates using the pixel")
    fig.suptitle(
        "mean over replicates, error bars and grey band (dense): 95 % Student-t "
        "intervals; bottom: input pixels still used at each arm's operating point"
    )
    return fig


def macs(cfg, shape, classes: int = 10) -> int:
    """Multiply-adds of one forward pass of the MLP (= its kernel weights)."""
    widths = [int(np.prod(shape)), *cfg.hidden, classes]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def main(argv=None) -> dict:
    run = study.setup(__doc__, NAME, get_config, argv)
    k = run.knobs
    reps, eval_check = [], 0.0
    for r, cfg in enumerate(replicates.replicate_configs(run.config, k["replicates"])):
        cfg = dataclasses.replace(cfg, eval_every=k["fine_tune"]["epochs"])
        rep, check = run_replicate(cfg, k)
        reps.append(rep)
        eval_check = max(eval_check, check)
        print(f"replicate {r + 1}/{k['replicates']} done", flush=True)
    s = summarize(reps, k)
    shape = study.load_data(run.config).image_shape
    checks = [abs(row["sparsity"] - row["engine_sparsity"]) for rep in reps
              for arm in (*SWEEPS, "dense") for row in rep[arm]]  # fmt: skip
    summary = dict(
        s, operating_point={a: (v["rows"][v["chosen"]] if v["chosen"] is not None else None)
                            for a, v in s["arms"].items()},
        max_sparsity={a: max(r["sparsity_mean"] for r in v["rows"])
                      for a, v in s["arms"].items()},
        sparsity_check=max(checks), eval_check=eval_check, macs_total=macs(run.config, shape),
        strengths={a: list(grid(k, a)) for a in SWEEPS}, tolerance=k["tolerance"],
        selected_by="val_loss",
        epochs=run.config.epochs, fine_tune=k["fine_tune"], replicates=k["replicates"],
        dataset=run.config.dataset,
    )  # fmt: skip
    return study.finish(run, summary, COLUMNS, table(s), figure(s, reps, shape), f"{NAME}.png")


if __name__ == "__main__":
    main()
