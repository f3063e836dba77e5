"""What scripts/bench.py and scripts/profile_step.py share: the model-FLOP convention and the
synthetic data they time (imported by both; not a script to run).

Model FLOPs are a labelled convention, not a measurement: 6 × weights per training example for an
MLP (an over-count, :func:`mlp_true_flops` says by how much) and 3 × forward FLOPs for the CNN.
"""

import numpy as np

import wdjax

# --- model FLOPs (labelled conventions) ----------------------------------------------------------


def mlp_weights(in_dim: int, hidden, classes: int) -> int:
    """Multiply-add weights of an MLP ``in_dim → hidden… → classes`` (biases excluded)."""
    dims = [in_dim, *hidden, classes]
    return sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))


def mlp_true_flops(in_dim: int, hidden, classes: int) -> int:
    """FLOPs per example one training step really does: forward, weight and input gradients.

    ``2W`` forward, ``2W`` weight gradients, ``2(W − W_1)`` input gradients (layer 1's input
    gradient is never needed), against the ``6W`` of the convention.
    """
    w = mlp_weights(in_dim, hidden, classes)
    first = in_dim * ([*hidden, classes][0])
    return 4 * w + 2 * (w - first)


def cnn_forward_flops(h, w, c, classes, features=(32, 64), dense=128) -> int:
    """Forward FLOPs per example of the small CNN: ``2·H·W·9·C_in·C_out`` per 3×3 conv (SAME),
    ``2·in·out`` per dense layer; 2×2 pooling halves H and W (floor)."""
    total = 0
    for f in features:
        total += 2 * h * w * 9 * c * f
        h, w, c = h // 2, w // 2, f
    total += 2 * h * w * c * dense + 2 * dense * classes
    return total


def model_flops(kind: str, image_shape, classes: int, hidden=(64, 64)) -> int:
    """Model FLOPs per training example: 6 × weights (MLP), 3 × forward FLOPs (CNN).

    Raises:
      ValueError: ``kind`` is neither ``"mlp"`` nor ``"cnn"`` (no convention for it).
    """
    h, w, c = image_shape
    if kind == "mlp":
        return 6 * mlp_weights(h * w * c, hidden, classes)
    if kind == "cnn":
        return 3 * cnn_forward_flops(h, w, c, classes)
    raise ValueError(f"kind must be 'mlp' or 'cnn', got {kind!r}")


# --- data ----------------------------------------------------------------------------------------


def synthetic(n: int, shape=(28, 28, 1), classes: int = 10, seed: int = 0) -> wdjax.Dataset:
    """MNIST-shaped noise with random labels; no validation or test rows (epochs time training).

    Uniform float32 images in [0, 1) and int32 labels from one ``numpy`` generator seeded with
    ``seed``: the content does not change the work, and the same call gives the same arrays.
    """
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape), dtype=np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    return train_only(wdjax.Dataset(x, y, x[:0], y[:0], x[:0], y[:0], classes, "synthetic"))


def train_only(ds: wdjax.Dataset) -> wdjax.Dataset:
    """The same dataset with empty validation and test splits."""
    return ds._replace(
        x_val=ds.x_train[:0], y_val=ds.y_train[:0], x_test=ds.x_train[:0], y_test=ds.y_train[:0]
    )
