"""Pure, jittable metrics: loss, accuracy, weight norms, sparsity, dead units, angular updates.

Every function takes one member's arrays (no member axis); the sweep vmaps them. Weight statistics
cover the *kernels* (the leaves `decay_mask` selects), per layer and in total. A layer is named by
its parameter path without the trailing ``kernel`` (``Dense_0``, ``Block_1/Conv_0``).
"""

import jax
import jax.numpy as jnp

from wdjax.masks import param_path


def cross_entropy(logits_BxC, labels_B):
    """Mean softmax cross-entropy, (1/B)·Σ_b (logsumexp(z_b) − z_b[y_b]) (integer labels).

    The same values, bit for bit, as ``optax.softmax_cross_entropy_with_integer_labels`` (tested),
    but z_b[y_b] is picked by a one-hot mask (a sum of exact zeros and z_b[y_b]) instead of a
    gather, so the gradient is elementwise, ``softmax(z_b) − onehot(y_b)``, rather than a
    scatter-add: fewer XLA kernels to compile in the training step.
    """
    hit_BxC = labels_B[:, None] == jnp.arange(logits_BxC.shape[-1])[None, :]
    label_logits_B = jnp.sum(jnp.where(hit_BxC, logits_BxC, 0), axis=-1)
    return jnp.mean(jax.nn.logsumexp(logits_BxC, axis=-1) - label_logits_B)


def accuracy(logits_BxC, labels_B):
    """Fraction of examples whose arg-max logit is the label."""
    return jnp.mean(jnp.argmax(logits_BxC, axis=-1) == labels_B)


def layer_name(path):
    """``('params', 'Dense_0', 'kernel')`` → ``'Dense_0'``: the parameter's path
    (:func:`wdjax.masks.param_path`, NNX's ``.value`` dropped) without params/kernel."""
    keys = [k for k in param_path(path).split("/") if k not in ("params", "kernel")]
    return "/".join(keys) or "kernel"


def kernels(params):
    """``{layer_name: kernel}`` for every leaf named ``kernel`` (the decayed weights), in Linen
    trees and NNX states alike."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if param_path(path).split("/")[-1] == "kernel":
            out[layer_name(path)] = leaf
    return out


def weight_stats(params):
    """Norms and exact-zero counts of the kernels, per layer and in total.

    Returns a flat dict with ``/`` keys: ``weight_l2`` = √(Σ w²), ``weight_l1`` = Σ|w|,
    ``sparsity`` = (# w == 0) / (# w), ``dead_units`` = number of output units (last axis) whose
    whole incoming kernel group is exactly zero; the same per layer as ``weight_l2/<layer>`` etc.
    Only exact zeros count: a weight of 1e-30 is not sparse.
    """
    ks = kernels(params)
    out, sq, ab, zeros, size, dead = {}, 0.0, 0.0, 0, 0, 0
    for name, w in ks.items():
        w2, w1 = jnp.sum(jnp.square(w)), jnp.sum(jnp.abs(w))
        # Zeros per unit, then the layer's zeros and dead units from them: one reduction, summed
        # in the kernel's float dtype where that is exact (every partial sum an integer below
        # 2^24 in float32), since XLA:CPU runs float sums as library reductions, not generated
        # kernels; in int32 otherwise.
        w_IxO = w.reshape(-1, w.shape[-1])
        floating = jnp.issubdtype(w.dtype, jnp.floating)
        exact = floating and w_IxO.shape[0] < 2 ** (jnp.finfo(w.dtype).nmant + 1)
        zeros_O = jnp.sum(w_IxO == 0, axis=0, dtype=w.dtype if exact else jnp.int32)
        z = jnp.sum(zeros_O.astype(jnp.int32))
        d = jnp.sum(zeros_O == w_IxO.shape[0])
        out[f"weight_l2/{name}"] = jnp.sqrt(w2)
        out[f"weight_l1/{name}"] = w1
        out[f"sparsity/{name}"] = z / w.size
        out[f"dead_units/{name}"] = d
        sq, ab, zeros, size, dead = sq + w2, ab + w1, zeros + z, size + w.size, dead + d
    out["weight_l2"] = jnp.sqrt(sq)
    out["weight_l1"] = ab
    out["sparsity"] = zeros / max(size, 1)
    out["dead_units"] = dead
    return out


def unit_angular_update(old_kernel, new_kernel):
    """Per-output-unit angle (radians) between a kernel's old and new incoming weight vectors.

    For unit j with weights w_j (all axes but the last flattened), the angle
    ``arccos(⟨w_j, w'_j⟩ / (‖w_j‖·‖w'_j‖))``, computed stably at small angles as
    ``2·atan2(‖ŵ − ŵ'‖, ‖ŵ + ŵ'‖)`` with ŵ = w/‖w‖ (Kahan). This is the rotation a scale-invariant
    (BatchNorm-preceded) unit sees per step (Kosson et al., "Rotational Equilibrium", 2024).
    """
    a = old_kernel.reshape(-1, old_kernel.shape[-1])
    b = new_kernel.reshape(-1, new_kernel.shape[-1])
    a = a / jnp.linalg.norm(a, axis=0, keepdims=True)
    b = b / jnp.linalg.norm(b, axis=0, keepdims=True)
    return 2 * jnp.arctan2(jnp.linalg.norm(a - b, axis=0), jnp.linalg.norm(a + b, axis=0))
