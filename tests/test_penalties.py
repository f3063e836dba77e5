"""Tests for wdjax.penalties: Keras-exact penalties, group definitions and the decay mask."""

import doctest
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import gamma

import wdjax
import wdjax.masks
import wdjax.penalties
from wdjax.masks import decay_mask, mask_from_spec, param_path, resolve_mask
from wdjax.penalties import group_lasso_penalty, group_norms, group_sizes, l1_penalty, l2_penalty


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


def test_outgoing_groups_are_rows_and_input_channels():
    dense = jnp.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # (in=3, out=3)
    np.testing.assert_allclose(group_norms(dense, "outgoing"), [[5.0], [0.0], [1.0]])
    assert group_sizes(dense, "outgoing") == 3 and group_sizes(dense) == 3
    conv = jnp.ones((3, 3, 2, 4)).at[:, :, 1, :].set(0.0)  # 2 input channels of 3·3·4 weights
    assert group_norms(conv, "outgoing").shape == (1, 1, 2, 1)
    np.testing.assert_allclose(group_norms(conv, "outgoing").reshape(-1), [6.0, 0.0])
    assert group_sizes(conv, "outgoing") == 36 and group_sizes(conv) == 18
    np.testing.assert_allclose(group_norms(jnp.array([-2.0, 1.0]), "outgoing"), [2.0, 1.0])
    p = {"Dense_0": {"kernel": dense, "bias": jnp.ones(3)}, "Conv_0": {"kernel": conv}}
    expected = np.sqrt(3) * 6.0 + np.sqrt(36) * 6.0
    assert float(group_lasso_penalty(p, groups="outgoing")) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="groups"):
        group_lasso_penalty(p, groups="rows")


# --- Flax NNX states, Linen params, member stacks: one rule ---------------------------------


class _NnxMLP(nnx.Module):
    """Linear -> BatchNorm -> Linear -> Linear head (NNX), the layout of _LinenMLP."""

    def __init__(self, rngs: nnx.Rngs):
        self.dense_0 = nnx.Linear(4, 5, rngs=rngs)
        self.bn_0 = nnx.BatchNorm(5, rngs=rngs)
        self.dense_1 = nnx.Linear(5, 3, rngs=rngs)
        self.head = nnx.Linear(3, 2, rngs=rngs)


class _LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=True, name="bn_0")(nn.Dense(5, name="dense_0")(x))
        return nn.Dense(2, name="head")(nn.Dense(3, name="dense_1")(x))


def _nnx_and_linen(seed=0):
    """An NNX MLP (random nonzero biases/scales too) and Linen variables holding its arrays."""
    net = _NnxMLP(nnx.Rngs(seed))
    for i, (_, var) in enumerate(nnx.iter_graph(net)):
        if isinstance(var, nnx.Param) and var[...].ndim == 1:  # biases, BatchNorm scale/bias
            var.set_value(jax.random.normal(jax.random.key(100 + i), var[...].shape))
    pure = nnx.to_pure_dict(nnx.state(net, nnx.Param))
    linen = jax.eval_shape(_LinenMLP().init, jax.random.key(0), jnp.ones((1, 4)))["params"]
    assert jax.tree.map(jnp.shape, linen) == jax.tree.map(jnp.shape, pure)
    return net, {"params": pure}


def test_nnx_state_paths_drop_the_variable_value():
    net, _ = _nnx_and_linen()
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(net, nnx.Param))[0]
    assert all(path[-1] == jax.tree_util.GetAttrKey("value") for path, _ in leaves)  # flax 0.12
    paths = [param_path(path) for path, _ in leaves]
    assert "dense_0/kernel" in paths and "bn_0/scale" in paths


def test_nnx_and_linen_penalties_agree_with_a_hand_computation():
    net, linen = _nnx_and_linen()
    kernels = [np.asarray(m.kernel[...], np.float64) for m in (net.dense_0, net.dense_1, net.head)]
    n = sum(k.size for k in kernels)
    hand = {
        l1_penalty: sum(np.abs(k).sum() for k in kernels),
        l2_penalty: sum(np.square(k).sum() for k in kernels),
        group_lasso_penalty: sum(
            np.sqrt(k.shape[0]) * np.linalg.norm(k, axis=0).sum() for k in kernels
        ),
    }
    trees = {
        "nnx.state": nnx.state(net, nnx.Param),
        "nnx.split": nnx.split(net, nnx.Param, ...)[1],
        "to_pure_dict": nnx.to_pure_dict(nnx.state(net, nnx.Param)),
        "linen variables": linen,
        "linen params": linen["params"],
    }
    for fn, want in hand.items():
        got = {name: float(fn(tree)) for name, tree in trees.items()}
        assert want > 1.0 and len(set(got.values())) == 1, (fn.__name__, got)
        # float32 sums of n terms (n·2 for the group norms' squares and roots), any order.
        assert abs(got["nnx.state"] - want) <= gamma(2 * n) * want, fn.__name__
    mask = jax.tree.leaves(decay_mask(nnx.state(net, nnx.Param)))
    assert sum(mask) == 3 and len(mask) == 8  # the kernels of 3 kernels, 3 biases, BN scale/bias


def test_member_stacked_nnx_states_per_member_and_summed():
    keys = jax.random.split(jax.random.key(1), 3)
    stacked = jax.vmap(lambda k: nnx.split(_NnxMLP(nnx.Rngs(k)), nnx.Param, ...)[1])(keys)
    single = nnx.state(_NnxMLP(nnx.Rngs(0)), nnx.Param)
    assert nnx.to_pure_dict(decay_mask(stacked)) == nnx.to_pure_dict(decay_mask(single))
    assert stacked["bn_0"]["scale"][...].ndim == 2  # a stacked vector: still not selected
    want = []
    for k in keys:
        net = _NnxMLP(nnx.Rngs(k))
        want.append(
            sum(float(jnp.abs(m.kernel[...]).sum()) for m in (net.dense_0, net.dense_1, net.head))
        )
    per_member = jax.vmap(l1_penalty)(stacked)
    np.testing.assert_allclose(per_member, want, rtol=2 * gamma(50))
    assert float(l1_penalty(stacked)) == pytest.approx(sum(want), rel=2 * gamma(150))


class _Custom(nnx.Module):
    """Weights not named ``kernel``: the default selects nothing."""

    def __init__(self):
        self.w = nnx.Param(jnp.ones((3, 2)))
        self.b = nnx.Param(jnp.ones(2))


@pytest.mark.parametrize("fn", [l1_penalty, l2_penalty, group_lasso_penalty])
def test_an_empty_selection_of_a_model_with_matrices_is_an_error(fn):
    with pytest.raises(ValueError, match="mask.*'w'.*mask='w\\$'"):
        fn(nnx.state(_Custom(), nnx.Param))
    with pytest.raises(ValueError, match="mask"):
        fn({"params": {"dense": {"kernel": jnp.ones((2, 2))}}}, "no_such_layer")
    with pytest.raises(ValueError, match="mask"):
        fn({"dense": {"kernel": jnp.ones((2, 2))}}, lambda p: jax.tree.map(lambda _: False, p))
    assert float(fn(nnx.state(_Custom(), nnx.Param), "w$")) > 0
    # No matrix at all (a lone vector): nothing selected is a zero penalty, as before.
    assert float(fn({"bias": jnp.ones(3)})) == 0.0


def _mlp_params():
    model = wdjax.make_model("mlp", 10)
    return jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 28, 28, 1)), False)


def test_hidden_excludes_exactly_the_output_layer():
    variables = _mlp_params()
    hidden = mask_from_spec("hidden")
    assert hidden(variables)["params"] == {
        "dense_0": {"kernel": True, "bias": False},
        "dense_1": {"kernel": True, "bias": False},
        "head": {"kernel": False, "bias": False},
    }
    net, _ = _nnx_and_linen()
    got = nnx.to_pure_dict(hidden(nnx.state(net, nnx.Param)))
    assert [param_path(p) for p, m in jax.tree_util.tree_flatten_with_path(got)[0] if m] == [
        "dense_0/kernel",
        "dense_1/kernel",
    ]
    # Without a `head` module, parameters alone do not say which layer is the output: refused
    # (tests/test_masks.py: with the model, the data flow says).
    auto = {f"Dense_{i}": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)} for i in range(11)}
    with pytest.raises(ValueError, match="no module named 'head'"):
        hidden(auto)
    auto["head"] = auto.pop("Dense_10")
    stacked = jax.tree.map(lambda x: jnp.stack([x, x]), auto)
    assert hidden(stacked) == hidden(auto)
    # A `head` module is the output layer wherever it sorts (ResNet: head, stage0_block0, stem).
    resnet = {k: {"kernel": jnp.ones((2, 2))} for k in ("stem", "stage0_block0", "head")}
    assert hidden(resnet) == {
        "stem": {"kernel": True},
        "stage0_block0": {"kernel": True},
        "head": {"kernel": False},
    }


def test_regex_spec_matches_the_slash_joined_path():
    variables = _mlp_params()
    mask = resolve_mask("dense_[01]/kernel", variables)["params"]
    assert [k for k, m in mask.items() if m["kernel"]] == ["dense_0", "dense_1"]
    assert not any(m["bias"] for m in mask.values())
    net, _ = _nnx_and_linen()
    nnx_mask = nnx.to_pure_dict(resolve_mask("^dense_1/", nnx.state(net, nnx.Param)))
    assert nnx_mask["dense_1"] == {"kernel": True, "bias": True} and not nnx_mask["head"]["kernel"]
    assert mask_from_spec("hidden") == mask_from_spec("hidden")  # hashable static config
    assert resolve_mask("kernels", variables) == decay_mask(variables)
    with pytest.raises(ValueError, match="mask"):
        mask_from_spec("dense_[")
    with pytest.raises(ValueError, match="mask"):
        mask_from_spec("")


def test_doctests():
    assert doctest.testmod(wdjax.penalties, raise_on_error=True).attempted > 0
