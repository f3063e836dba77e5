"""Tests for wdjax.penalties: Keras-exact penalties, group definitions and the decay mask."""

import doctest
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import wdjax.penalties
from wdjax.penalties import (
    decay_mask,
    group_lasso_penalty,
    group_norms,
    l1_penalty,
    l2_penalty,
    resolve_mask,
)

pytestmark = pytest.mark.numerics  # .ci/run reruns these under other XLA:CPU kernels


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=True)(x)
        x = nn.Dense(5)(x.reshape((x.shape[0], -1)))
        return nn.Embed(7, 2)(jnp.zeros((1,), jnp.int32)).sum() + x


def _net_params():
    """Shapes only (``jax.eval_shape``): the mask is decided by path, never by values."""
    return jax.eval_shape(_Net().init, jax.random.key(0), jnp.ones((1, 4, 4, 1)))["params"]


def test_decay_mask_selects_kernels_only():
    mask = decay_mask(_net_params())
    assert mask == {
        "Conv_0": {"kernel": True, "bias": False},
        "BatchNorm_0": {"scale": False, "bias": False},
        "Dense_0": {"kernel": True, "bias": False},
        "Embed_0": {"embedding": False},
    }
    assert decay_mask({"params": _net_params()}) == {"params": mask}


def test_decay_mask_is_unchanged_by_a_stacked_member_axis():
    params = _net_params()
    stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((3, *x.shape), x.dtype), params)
    assert decay_mask(stacked) == decay_mask(params)
    # A Dense bias stacked over members is 2-d but still not decayed; the rank is not used.
    assert stacked["Dense_0"]["bias"].ndim == 2 and not decay_mask(stacked)["Dense_0"]["bias"]


def test_decay_mask_on_unnamed_trees_selects_everything():
    assert decay_mask(jnp.ones(3)) is True
    assert decay_mask((jnp.ones(3), jnp.ones(2))) == (True, True)


def test_l1_l2_penalties_hand_values_and_masks():
    p = {
        "Dense_0": {"kernel": jnp.array([[1.0, -2.0], [0.0, 3.0]]), "bias": jnp.array([4.0, -5.0])},
        "Dense_1": {"kernel": jnp.array([[-0.5], [0.5]]), "bias": jnp.array([9.0])},
    }
    assert float(l1_penalty(p)) == pytest.approx(6.0 + 1.0)
    assert float(l2_penalty(p)) == pytest.approx(14.0 + 0.5)
    every = jax.tree.map(lambda _: True, p)
    assert float(l1_penalty(p, every)) == pytest.approx(7.0 + 9.0 + 9.0)
    prefix = {"Dense_0": True, "Dense_1": False}  # a prefix of the params tree
    assert float(l1_penalty(p, prefix)) == pytest.approx(6.0 + 9.0)
    assert float(l2_penalty(p, lambda tree: prefix)) == pytest.approx(14.0 + 41.0)


def test_mask_errors_name_the_mask():
    p = {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
    with pytest.raises(ValueError, match="mask"):
        l1_penalty(p, {"Dense_0": {"kernel": True}})
    with pytest.raises(ValueError, match="mask"):
        l2_penalty(p, {"Dense_1": True})
    with pytest.raises(TypeError, match="mask"):
        resolve_mask({"Dense_0": {"kernel": 1.0, "bias": 0.0}}, p)


def _dense_stack(sizes=(5, 8, 6, 3), seed=2):
    """A flax-named Dense stack {"Dense_i": {"kernel": (in, out), "bias": (out,)}} (float64)."""
    rng = np.random.default_rng(seed)
    return {
        f"Dense_{i}": {"kernel": rng.normal(size=(m, n)), "bias": rng.normal(size=n)}
        for i, (m, n) in enumerate(itertools.pairwise(sizes))
    }


def test_keras_l1_and_l2_loss_formulas_on_a_dense_stack():
    """Keras: loss = mean CE + Σ_layers c·Σ|W| (l1) or c·ΣW² (l2), on kernels only."""
    params = _dense_stack()
    x = np.random.default_rng(3).normal(size=(16, 5))
    labels = np.arange(16) % 3
    h = x
    for i in range(3):
        h = h @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"]
        h = np.maximum(h, 0) if i < 2 else h
    log_probs = h - np.log(np.exp(h).sum(axis=1, keepdims=True))
    ce = -log_probs[np.arange(16), labels].mean()
    c = 0.01
    kernels = [params[f"Dense_{i}"]["kernel"] for i in range(3)]
    keras_l1 = ce + sum(c * np.abs(k).sum() for k in kernels)
    keras_l2 = ce + sum(c * np.square(k).sum() for k in kernels)
    with jax.enable_x64(True):
        assert float(ce + c * l1_penalty(params)) == pytest.approx(keras_l1, rel=1e-14)
        assert float(ce + c * l2_penalty(params)) == pytest.approx(keras_l2, rel=1e-14)
        # Per member under vmap: sums over each member's kernels only.
        stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)
        l1_sum = sum(np.abs(k).sum() for k in kernels)
        np.testing.assert_allclose(jax.vmap(l1_penalty)(stacked), [l1_sum, 2 * l1_sum], rtol=1e-14)


def test_group_norms_and_penalty_use_output_units():
    dense = jnp.array([[3.0, 0.0], [4.0, 1.0]])  # (in=2, out=2): columns are groups
    np.testing.assert_allclose(group_norms(dense), [[5.0, 1.0]])
    conv = jnp.ones((3, 3, 2, 4)).at[..., 1].set(0.0)  # 4 filters of 18 weights
    np.testing.assert_allclose(
        group_norms(conv).reshape(-1), [np.sqrt(18), 0, np.sqrt(18), np.sqrt(18)]
    )
    assert group_norms(conv).shape == (1, 1, 1, 4)
    np.testing.assert_allclose(group_norms(jnp.array([-2.0, 1.0])), [2.0, 1.0])
    p = {"Dense_0": {"kernel": dense, "bias": jnp.ones(2)}, "Conv_0": {"kernel": conv}}
    expected = np.sqrt(2) * 6.0 + np.sqrt(18) * 3 * np.sqrt(18)
    assert float(group_lasso_penalty(p)) == pytest.approx(expected, rel=1e-6)


def test_doctests():
    assert doctest.testmod(wdjax.penalties, raise_on_error=True).attempted > 0
