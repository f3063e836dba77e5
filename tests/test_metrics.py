"""Metrics against hand computations and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_close_to_scale, gamma

from wdjax.engine import metrics as M


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
    # float32 against the float64 formula: lse (3 terms) and its subtraction lose ≤ ~8 roundings
    # relative to the lse's ≤ 3.1, the mean of 1.6 keeps that within 2·γ_8.
    assert float(M.cross_entropy(logits, labels)) == pytest.approx(expected, rel=2 * gamma(8))
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


def test_cross_entropy_is_optax_integer_label_cross_entropy_bit_for_bit():
    # The one-hot pick must give optax's values exactly (large logits included), and its gradient
    # must be (softmax(z) - onehot(y)) / B.
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(64, 10)) * np.array([1.0] * 5 + [30.0] * 5), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, 64), jnp.int32)
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    assert np.array_equal(M.cross_entropy(logits, labels), jnp.mean(per_example))
    grad = jax.grad(M.cross_entropy)(logits, labels)
    want = (jax.nn.softmax(logits) - jax.nn.one_hot(labels, 10)) / 64
    # Autodiff vs the formula: softmax is exp, a 10-term sum and a division (≤ γ_13 relative per
    # probability on either side); subtracting the one-hot may cancel, so relative to the scale.
    assert_trees_close_to_scale(grad, want, 2 * gamma(13))
    optax_grad = jax.grad(
        lambda z: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, labels))
    )
    np.testing.assert_array_equal(grad, optax_grad(logits))


@pytest.mark.parametrize("rows", [300, 5])
def test_zero_counts_and_dead_units_are_exact_counts(rows):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(rows, 7)).astype(np.float32)
    w[rng.random(w.shape) < 0.6] = 0.0
    w[:, 2] = 0.0  # a dead unit
    s = jax.jit(M.weight_stats)({"Dense_0": {"kernel": jnp.asarray(w)}})
    assert int(round(float(s["sparsity"]) * w.size)) == int((w == 0).sum())
    assert int(s["dead_units"]) == int(np.all(w == 0, axis=0).sum())


def test_zero_counts_past_float32_precision_are_exact():
    # A unit of 2^24 + 1 weights, one of them nonzero: 2^24 zeros. Counted in float32, 2^24 and
    # the row count 2^24 + 1 compare equal (2^24 + 1 rounds to 2^24) and the live unit would be
    # called dead; the statistics must count in int32 there.
    w = np.zeros((2**24 + 1, 1), np.float32)
    w[7, 0] = 0.5
    s = jax.jit(M.weight_stats)({"Dense_0": {"kernel": jnp.asarray(w)}})
    assert int(s["dead_units"]) == 0


def test_all_finite_flags_inf_and_nan_but_not_huge_finite_values():
    from wdjax.engine.engine import _all_finite

    big = jnp.full((1000,), 3e38, jnp.float32)  # their sum overflows; they are finite
    assert bool(jax.jit(_all_finite)({"a": big, "b": -big}))
    for bad in (np.inf, -np.inf, np.nan):
        leaf = np.ones((4, 3), np.float32)
        leaf[2, 1] = bad
        assert not bool(jax.jit(_all_finite)({"a": big, "b": jnp.asarray(leaf)}))
    assert bool(_all_finite({}))


def test_weight_stats_of_an_nnx_state_equal_the_linen_dict():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.dense_0 = nnx.Linear(3, 4, rngs=rngs)
            self.head = nnx.Linear(4, 2, rngs=rngs)

    state = nnx.state(Net(nnx.Rngs(0)), nnx.Param)  # paths end in .value
    pure = nnx.to_pure_dict(state)
    assert sorted(M.kernels(state)) == ["dense_0", "head"]
    got, want = M.weight_stats(state), M.weight_stats(pure)
    assert got == want and got["weight_l1"] > 0
    assert got["weight_l1"] == float(sum(jnp.abs(pure[k]["kernel"]).sum() for k in pure))
