"""Magnitude pruning and what a sparse MLP lets a dense implementation remove: the machinery of
experiments/l1_sparsity.py (moved here from the study when its claims, iterative pruning and
generated write-up grew past the study files' 250 lines).

* :func:`dense_kernels`, :func:`removable`, :func:`structure`: an MLP's kernels in forward order,
  the units and pixels that can be removed (no live input or no live output, to a fixed point),
  and its sparsity (exact zeros), units, pixels and multiply-adds removed;
* :func:`zeros_after`, :func:`prune_like`: layer-wise magnitude pruning to another tree's zero
  counts, at once or in rounds whose density falls geometrically (Han et al. 2015, "Learning both
  weights and connections for efficient neural networks", §3.4: iterative pruning);
* :func:`member`, :func:`stack`: one member of a stacked parameter tree, and the reverse;
  :func:`measured`: a trained member's final metrics and :func:`structure`;
* :func:`bounded`: a 95 % Student-t interval over replicates clipped to the quantity's range;
* :func:`values`, :func:`own_choices`, :func:`claim`, :func:`overall`: the study's per-replicate
  results as arrays, each replicate's operating point, a paired claim per sparsity level and its
  outcome over the levels.
"""

import jax
import numpy as np

from wdjax import masks
from wdjax.analysis import stats
from wdjax.study.verdicts import outcome

__all__ = ["bounded", "claim", "dense_kernels", "measured", "member", "overall", "own_choices",
           "prune_like", "removable", "stack", "structure", "values", "zeros_after"]  # fmt: skip


def dense_kernels(params) -> list[np.ndarray]:
    """The kernels of one member's MLP in forward order (hidden layers, then ``head``)."""
    ks = {masks.param_path(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}  # fmt: skip
    names = sorted((k for k in ks if k.endswith("kernel")), key=lambda k: k.startswith("head"))
    return [ks[k] for k in names]


def removable(kernels: list[np.ndarray]) -> list[np.ndarray]:
    """Alive masks ``[inputs of layer 0, …, outputs]``: a unit or pixel is dead when it has no
    non-zero weight to a live unit of the next layer, or (a hidden unit: then constant) none from
    a live one of the previous layer; repeated to a fixed point. Outputs stay alive."""
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
    """Sparsity (exact zeros of all kernels), hidden units and input pixels removed, MACs removed
    (the share of kernel weights in removed rows and columns) and the alive pixels (0/1)."""
    alive, full = removable(kernels), sum(k.size for k in kernels)
    kept = sum(int(a.sum()) * int(b.sum()) for a, b in zip(alive[:-1], alive[1:], strict=True))
    return dict(sparsity=sum(int((k == 0).sum()) for k in kernels) / full,
                units_removed=sum(int((~a).sum()) for a in alive[1:-1]),
                pixels_removed=int((~alive[0]).sum()), macs_removed=1 - kept / full,
                alive_pixels=alive[0].astype(int).tolist())  # fmt: skip


def zeros_after(target: int, size: int, rounds: int) -> list[int]:
    """A kernel's zero count after each of ``rounds`` pruning rounds toward ``target`` zeros of
    ``size``: its density (1 − target/size)^(k/rounds) after round k, rounded; the last exact."""
    return [size - round(size * (1 - target / size) ** (k / rounds)) for k in range(1, rounds + 1)]


def prune_like(params, target, mask="hidden", k: int = 1, rounds: int = 1):
    """``params`` with each ``mask`` kernel's smallest |w| zeroed as often as after round ``k`` of
    ``rounds`` toward ``target``'s zero count in that kernel (k = rounds = 1: as often as in
    ``target``). Zeros already there are the smallest: a later round keeps them."""

    def leaf(m, w, t):  # an unmasked leaf: none zeroed
        flat = np.array(w).ravel()
        n = zeros_after(int(np.sum(np.asarray(t) == 0)), flat.size, rounds)[k - 1] * m
        flat[np.argsort(np.abs(flat), kind="stable")[:n]] = 0
        return flat.reshape(np.shape(w))

    return jax.tree.map(leaf, masks.resolve_mask(mask, params), params, target)


def member(params, i: int):
    """Member ``i`` of a tree stacked along a leading members axis (numpy leaves)."""
    return jax.tree.map(lambda x: np.asarray(x)[i], params)


def stack(trees: list):
    """Trees of equal structure stacked along a new leading members axis."""
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def measured(res, i: int, metrics) -> dict:
    """Member ``i`` of a sweep result: each of ``metrics`` at its last epoch, the engine's own
    ``sparsity`` metric as ``engine_sparsity``, and :func:`structure` of its kernels."""
    return dict({m: float(res.history[m][i, -1]) for m in metrics},
                engine_sparsity=float(res.history["sparsity"][i, -1]),
                **structure(dense_kernels(member(res.params, i))))  # fmt: skip


def bounded(x, lim, base=None) -> list[float]:
    """``[mean, lo, hi]`` of ``x`` over replicates, or of the paired ``x − base``: the 95 %
    Student-t interval clipped to the range ``lim`` = (low, high) (a difference: to ± its width)."""
    w, d = lim[1] - lim[0], np.asarray(x, float) - (0 if base is None else np.asarray(base))
    s = stats.describe(d, bounds=lim if base is None else (-w, w))
    return [float(s.mean), float(s.lo), float(s.hi)]


def overall(outcomes: list[str]) -> str:
    """A claim's outcome from its levels' outcomes: ``"reproduced"`` when reproduced at some level
    and contradicted at none, ``"contradicted"`` the reverse, else ``"inconclusive"``."""
    yes, no = "reproduced" in outcomes, "contradicted" in outcomes
    return "reproduced" if yes and not no else "contradicted" if no and not yes else "inconclusive"


def values(reps: list[dict], arm: str, metric: str) -> np.ndarray:
    """``[replicates, settings]``: ``reps[r][arm][j][metric]`` (per replicate: {arm: [rows]})."""
    return np.array([[row[metric] for row in rep[arm]] for rep in reps], float)


def own_choices(val, dense_val, tolerance: float) -> list:
    """Each replicate's operating point: per row of ``val`` [replicates, λ] the largest λ index
    with validation loss ≤ (1 + tolerance) × that row's ``dense_val``; None when none."""
    return [max((j for j, x in enumerate(v) if x <= (1 + tolerance) * d), default=None)
            for v, d in zip(np.asarray(val), np.asarray(dense_val), strict=True)]  # fmt: skip


def claim(reps: list[dict], a: str, b: str, prediction: str, lims: dict) -> dict:
    """The paired Δ test accuracy (and loss) ``a − b`` per sparsity level (:func:`bounded` with
    ``lims[metric]``), each level's :func:`wdjax.study.outcome` of ``prediction`` on the accuracy
    interval, and the claim's :func:`overall` verdict."""
    d = {m: [bounded(x, lims[m], y) for x, y in zip(values(reps, a, m).T, values(reps, b, m).T,
                                                     strict=True)]
         for m in ("test_acc", "test_loss")}  # fmt: skip
    levels = [dict(sparsity=float(s), test_acc=x, test_loss=y, outcome=outcome(x, prediction))
              for s, x, y in zip(values(reps, a, "sparsity").mean(0), d["test_acc"],
                                 d["test_loss"], strict=True)]  # fmt: skip
    return dict(a=a, b=b, prediction=prediction, levels=levels,
                verdict=overall([x["outcome"] for x in levels]))  # fmt: skip
