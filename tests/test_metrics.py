"""Metrics against hand computations and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wdjax import metrics as M


def _params():
    k0 = np.array([[1.0, 0.0, -2.0], [0.0, 0.0, 3.0]], np.float32)  # unit 1 is dead (column 0)
    k1 = np.zeros((3, 3, 1, 2), np.float32)
    k1[..., 0] = 0.5  # conv: output filter 1 dead
    return {"params": {"Dense_0": {"kernel": k0, "bias": np.ones(3, np.float32)},
                       "Conv_0": {"kernel": k1, "bias": np.ones(2, np.float32)},
                       "BatchNorm_0": {"scale": np.ones(2, np.float32)}}}  # fmt: skip


@pytest.mark.parametrize("jit", [False, True])
def test_weight_stats_by_hand(jit):
    fn = jax.jit(M.weight_stats) if jit else M.weight_stats
    s = {k: float(v) for k, v in fn(_params()).items()}
    l2_dense, l2_conv = np.sqrt(1 + 4 + 9), np.sqrt(9 * 0.25)
    assert s["weight_l2/Dense_0"] == pytest.approx(l2_dense)
    assert s["weight_l2/Conv_0"] == pytest.approx(l2_conv)
    assert s["weight_l2"] == pytest.approx(np.sqrt(14 + 9 * 0.25))  # biases/scales excluded
    assert s["weight_l1"] == pytest.approx(6 + 4.5)
    assert s["sparsity/Dense_0"] == pytest.approx(3 / 6)
    assert s["sparsity/Conv_0"] == pytest.approx(9 / 18)
    assert s["sparsity"] == pytest.approx(12 / 24)
    assert s["dead_units/Dense_0"] == 1 and s["dead_units/Conv_0"] == 1 and s["dead_units"] == 2


def test_cross_entropy_and_accuracy_by_formula():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    labels = jnp.array([0, 2])
    lse = np.log(np.exp([2.0, 0.0, -1.0]).sum()), np.log(np.exp([0.0, 3.0, 0.0]).sum())
    expected = np.mean([lse[0] - 2.0, lse[1] - 0.0])
    assert float(M.cross_entropy(logits, labels)) == pytest.approx(expected, rel=1e-6)
    assert float(M.accuracy(logits, labels)) == 0.5


@pytest.mark.parametrize("theta", [1e-4, 1e-2, 0.7, 2.5])
def test_unit_angular_update_recovers_known_rotation(theta):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        old = rng.normal(size=(5, 4))
        u = old / np.linalg.norm(old, axis=0)
        v = rng.normal(size=(5, 4))
        v -= u * np.sum(u * v, axis=0)  # orthogonal to each column
        v /= np.linalg.norm(v, axis=0)
        scale = np.array([1.0, 2.0, 0.5, 3.0])  # rescaling a unit does not rotate it
        new = (np.cos(theta) * u + np.sin(theta) * v) * scale
        got = np.asarray(M.unit_angular_update(jnp.asarray(old), jnp.asarray(new)))
    np.testing.assert_allclose(got, theta, rtol=1e-9)


def test_kernels_found_under_member_axis_and_nesting():
    p = {"params": {"Block_0": {"Conv_0": {"kernel": jnp.ones((4, 3, 3, 2, 5))}}}}
    assert list(M.kernels(p)) == ["Block_0/Conv_0"]
