"""Tests for wdjax.models: exact parameter counts, equivalence to lax/flax layers, BN, dropout."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import (
    U64,
    assert_trees_all_close,
    assert_trees_all_equal,
    assert_trees_close_to_scale,
    gamma,
)
from jax import lax

from wdjax.engine import models
from wdjax.engine.models import MODELS, im2col_3x3, make_model, max_pool_2x2, param_count


def _init_shapes(model, shape):
    init = functools.partial(model.init, train=False)
    return jax.eval_shape(init, jax.random.key(0), jnp.zeros(shape, jnp.float32))


def _init(model, shape, seed=0):
    init = jax.jit(functools.partial(model.init, train=False))  # one compile, not op by op
    return init(jax.random.key(seed), jnp.zeros(shape, jnp.float32))


def _apply(model, variables, x, train, **kw):
    return jax.jit(functools.partial(model.apply, train=train, **kw))(variables, x)


def _normal(seed, shape):
    """Host-side test data (no per-shape PRNG compiles)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _fill(shapes, seed, dtype=jnp.float32):
    """Random values for a variables tree of ShapeDtypeStructs (no init compile).

    Kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), BN scales 1 + N(0, 0.1^2), running var 1.
    """
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name, shape = path[-1].key, leaf.shape
        z = rng.standard_normal(shape)
        if name == "kernel":
            v = z / np.sqrt(np.prod(shape[:-1]))
        elif name in ("mean", "bias"):
            v = 0.1 * z
        else:  # "scale", "var"
            v = 1 + 0.1 * np.abs(z)
        return jnp.asarray(v, dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _dense(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


def _conv(c_in, c_out, bias=True):
    return 9 * c_in * c_out + (c_out if bias else 0)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("vgg", 10), {}, "unknown model 'vgg'.*mlp, cnn, resnet"),
        (("mlp", 0), {}, "num_classes"),
        (("mlp", 10), {"dropout": 1.0}, r"dropout.*\[0, 1\)"),
        (("mlp", 10), {"dropout": -0.1}, "dropout"),
        (("mlp", 10), {"dropout": float("nan")}, "dropout"),
        (("mlp", 10), {"dropout": True}, "dropout"),
        (("mlp", 10), {"hidden": (64, 0)}, "hidden"),
        (("mlp", 10), {"hidden": (64, 2.5)}, "hidden"),
        (("mlp", 10), {"depth": 20}, "unknown option 'depth' for model 'mlp'"),
        (("cnn", 10), {"depth": 20}, "unknown option 'depth'.*features, dense"),
        (("resnet", 10), {"depth": 21}, "depth must be 6 n \\+ 2"),
        (("resnet", 10), {"depth": 2}, "depth"),
        (("resnet", 10), {"widths": (32, 16, 64)}, "widths must be non-decreasing"),
        (("cnn", 10), {"features": ()}, "features"),
    ],
)
def test_make_model_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model(*args, **kwargs)


def test_make_model_type_errors():
    with pytest.raises(TypeError, match="batchnorm"):
        make_model("mlp", 10, batchnorm=1)
    with pytest.raises(TypeError, match="hidden"):
        make_model("mlp", 10, hidden=64)


def test_models_tuple():
    assert MODELS == ("mlp", "cnn", "resnet")


# ----------------------------------------------------------------------------- parameter counts


def test_mlp_tutorial_param_count_is_55050():
    variables = _init_shapes(make_model("mlp", 10), (1, 28, 28, 1))
    assert param_count(variables["params"]) == 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10 == 55050
    assert "batch_stats" not in variables


def test_mlp_batchnorm_param_count():
    variables = _init_shapes(make_model("mlp", 10, hidden=(32,), batchnorm=True), (1, 8, 8, 1))
    # Dense without bias, BN scale + bias, head with bias; running mean + var.
    assert param_count(variables["params"]) == _dense(64, 32, False) + 2 * 32 + _dense(32, 10)
    assert param_count(variables["batch_stats"]) == 2 * 32


@pytest.mark.parametrize("shape", [(1, 28, 28, 1), (1, 32, 32, 3), (1, 8, 8, 1)])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_cnn_param_count(shape, batchnorm):
    _, h, w, c = shape
    flat = (h // 4) * (w // 4) * 64  # two SAME convs and two 2x2 pools: 28 -> 7, 32 -> 8, 8 -> 2
    b = not batchnorm
    expected = _conv(c, 32, b) + _conv(32, 64, b) + _dense(flat, 128, b) + _dense(128, 10)
    expected += 2 * (32 + 64 + 128) if batchnorm else 0
    variables = _init_shapes(make_model("cnn", 10, batchnorm=batchnorm), shape)
    assert param_count(variables["params"]) == expected
    pinned = {(28, False): 421642, (32, False): 545098, (8, False): 53002}
    if (h, batchnorm) in pinned:
        assert expected == pinned[(h, batchnorm)]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_resnet20_cifar_param_count(batchnorm):
    b = not batchnorm
    convs = [(3, 16)] + [(16, 16)] * 6 + [(16, 32)] + [(32, 32)] * 5 + [(32, 64)] + [(64, 64)] * 5
    assert len(convs) == 19  # + the head = 20 layers
    expected = sum(_conv(ci, co, b) for ci, co in convs) + _dense(64, 10)
    expected += sum(2 * co for _, co in convs) if batchnorm else 0  # BN scale + bias
    variables = _init_shapes(make_model("resnet", 10, batchnorm=batchnorm), (1, 32, 32, 3))
    assert param_count(variables["params"]) == expected
    if batchnorm:
        assert expected == 269722  # He et al. report "0.27M"; option-A shortcuts have no params
        assert param_count(variables["batch_stats"]) == sum(2 * co for _, co in convs)


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batchnorm", [False, True])
def test_structure_names_layouts_and_no_bias_before_bn(name, batchnorm):
    kw = {"depth": 8} if name == "resnet" else {}
    model = make_model(name, 7, batchnorm=batchnorm, **kw)
    variables = _init_shapes(model, (2, 8, 8, 3))
    out = jax.eval_shape(
        functools.partial(model.apply, train=False), variables, jnp.zeros((5, 8, 8, 3))
    )
    assert out.shape == (5, 7)
    flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
    modules = {}
    for path, leaf in flat:
        keys = tuple(p.key for p in path)
        assert keys[-1] in ("kernel", "bias", "scale"), keys
        modules.setdefault(keys[:-1], {})[keys[-1]] = leaf.shape
    for mod, leaves in modules.items():
        if "kernel" not in leaves:  # a BatchNorm
            assert batchnorm and set(leaves) == {"scale", "bias"}, mod
            continue
        kernel = leaves["kernel"]
        assert len(kernel) in (2, 4) and (len(kernel) == 2 or kernel[:2] == (3, 3)), mod
        is_head = mod == ("head",)
        assert ("bias" in leaves) == (is_head or not batchnorm), mod  # no bias right before BN
        if "bias" in leaves:
            assert leaves["bias"] == (kernel[-1],)  # last kernel axis is the output unit
    assert ("batch_stats" in variables) == batchnorm


def test_hidden_configures_mlp():
    params = _init_shapes(make_model("mlp", 3, hidden=(5, 6, 7)), (1, 2, 2, 1))["params"]
    shapes = {k: v["kernel"].shape for k, v in params.items()}
    assert shapes == {"dense_0": (4, 5), "dense_1": (5, 6), "dense_2": (6, 7), "head": (7, 3)}
    params = _init_shapes(make_model("mlp", 3, hidden=()), (1, 2, 2, 1))["params"]
    assert param_count(params) == 4 * 3 + 3  # softmax regression


# ----------------------------------------------------------------------------- layer equivalence


def _lax_conv(x, kernel, stride, padding):
    return lax.conv_general_dilated(
        x, kernel, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _our_conv(x, kernel, stride):
    patches = im2col_3x3(x, stride)
    n, h, w, k = patches.shape
    return (patches.reshape(n * h * w, k) @ kernel.reshape(k, -1)).reshape(n, h, w, -1)


def _value_and_grads(conv, x, kernel, probe):
    def f(x, kernel):
        return jnp.sum(conv(x, kernel) * probe)

    return conv(x, kernel), jax.grad(f, argnums=(0, 1))(x, kernel)


@pytest.mark.numerics
@pytest.mark.parametrize("hw, c_in", [((8, 8), 1), ((7, 9), 3), ((6, 5), 4)])
def test_conv_equals_lax_conv_forward_and_grads(hw, c_in):
    with jax.enable_x64(True):
        x = jnp.asarray(_normal(0, (2, *hw, c_in)), jnp.float64)
        kernel = jnp.asarray(_normal(1, (3, 3, c_in, 5)), jnp.float64)
        probes = {
            s: jnp.asarray(_normal(s, (2, -(-hw[0] // s), -(-hw[1] // s), 5))) for s in (1, 2)
        }

        @jax.jit
        def both(x, kernel):  # one compile: {stride: (ours, lax)} values and grads
            pad = ((1, 1), (1, 1))
            out = {}
            for s, probe in probes.items():
                mine = functools.partial(_our_conv, stride=s)
                ref = functools.partial(_lax_conv, stride=s, padding=pad)
                out[s] = [_value_and_grads(f, x, kernel, probe) for f in (mine, ref)]
            return out

        out = both(x, kernel)
        for s in (1, 2):
            assert out[s][0][0].shape == probes[s].shape
            assert_trees_all_close(out[s][0], out[s][1], rtol=1e-12, atol=1e-12)


@pytest.mark.numerics
def test_conv_module_equals_flax_conv_same_params():
    # im2col + one matmul against lax.conv are two different programs: compared in float64.
    ours, ref = models.Conv3x3(4), nn.Conv(4, (3, 3), padding="SAME")
    shapes = jax.eval_shape(ours.init, jax.random.key(0), jnp.zeros((3, 7, 6, 2)))
    # Identical parameter layout: nn.Conv's own init has the same tree and shapes.
    assert shapes == jax.eval_shape(ref.init, jax.random.key(0), jnp.zeros((3, 7, 6, 2)))
    with jax.enable_x64(True):
        x = jnp.asarray(_normal(2, (3, 7, 6, 2)), jnp.float64)
        params = _fill(shapes, 3, jnp.float64)

        def loss(module, params, x):
            return jnp.sum(jnp.sin(module.apply(params, x)))

        @jax.jit
        def both(params, x):
            return [(m.apply(params, x), jax.grad(loss, (1, 2))(m, params, x)) for m in (ours, ref)]

        mine, theirs = both(params, x)
    assert jax.tree.leaves(mine)[0].dtype == np.float64
    # Outputs are 18-term dots (+ bias); gradients sum ≤ 3·7·6 = 126 positions of |x|·|cos| ≤ |x|
    # (x ~ N(0, 1)), so Σ|terms| ≤ ~10x a leaf's max and 2·γ_126·10 ≈ 3e-13 in float64.
    assert_trees_close_to_scale(mine, theirs, 20 * gamma(126, U64))


def test_max_pool_equals_flax_max_pool():
    ref = functools.partial(nn.max_pool, window_shape=(2, 2), strides=(2, 2))

    @jax.jit
    def both(x, probe):
        def value_and_grad(f):
            return f(x), jax.grad(lambda x: jnp.sum(f(x) * probe))(x)

        return [value_and_grad(f) for f in (max_pool_2x2, ref)]

    for hw in [(8, 8), (7, 7), (6, 9)]:
        x = jnp.asarray(_normal(4, (2, *hw, 3)))  # continuous: no ties in a window
        probe = jnp.asarray(_normal(5, (2, hw[0] // 2, hw[1] // 2, 3)))
        mine, theirs = both(x, probe)
        assert mine[0].shape == probe.shape
        assert_trees_all_equal(mine, theirs)


class _RefCNN(nn.Module):
    """The CNN written with library layers, same parameter names."""

    @nn.compact
    def __call__(self, x, train):
        x = nn.max_pool(nn.relu(nn.Conv(32, (3, 3), name="conv_0")(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(64, (3, 3), name="conv_1")(x)), (2, 2), (2, 2))
        x = nn.relu(nn.Dense(128, name="dense_0")(x.reshape(x.shape[0], -1)))
        return nn.Dense(10, name="head")(x)


@pytest.mark.numerics
def test_cnn_equals_flax_conv_reference():
    with jax.enable_x64(True):
        model = make_model("cnn", 10)
        x = jnp.asarray(_normal(6, (4, 8, 8, 1)), jnp.float64)
        labels = jnp.arange(4) % 10
        params = _fill(_init_shapes(model, (1, 8, 8, 1)), 7, jnp.float64)

        def loss(module, params):
            logits = module.apply(params, x, True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        @jax.jit
        def both(params):
            return [
                (m.apply(params, x, False), jax.grad(loss, 1)(m, params))
                for m in (model, _RefCNN())
            ]

        mine, theirs = both(params)
        assert_trees_all_close(mine, theirs, rtol=1e-10, atol=1e-12)


def _ref_resnet_no_bn(params, x, depth):
    """ResNet forward from lax.conv_general_dilated (padding 1, option-A shortcuts)."""

    def conv(p, x, stride):
        return _lax_conv(x, p["kernel"], stride, ((1, 1), (1, 1))) + p["bias"].reshape(1, 1, 1, -1)

    x = jax.nn.relu(conv(params["stem"], x, 1))
    for s in range(3):
        for b in range((depth - 2) // 6):
            p = params[f"stage{s}_block{b}"]
            stride = 2 if s > 0 and b == 0 else 1
            y = conv(p["conv_1"], jax.nn.relu(conv(p["conv_0"], x, stride)), 1)
            short = x[:, ::stride, ::stride, :]
            short = jnp.concatenate([short, jnp.zeros_like(short)], -1) if stride == 2 else short
            x = jax.nn.relu(y + short)
    head = params["head"]
    return jnp.mean(x, axis=(1, 2)) @ head["kernel"] + head["bias"].reshape(1, -1)


@pytest.mark.numerics
def test_resnet_equals_lax_reference():
    # 6x6 -> 3x3 (stride 2 on an even size) -> 2x2 (stride 2 on an odd size).
    with jax.enable_x64(True):
        model = make_model("resnet", 10, depth=8, widths=(4, 8, 16))
        x = jnp.asarray(_normal(8, (2, 6, 6, 3)), jnp.float64)
        params = _fill(_init_shapes(model, (1, 6, 6, 3)), 9, jnp.float64)["params"]
        ours = _apply(model, {"params": params}, x, False)
        ref = jax.jit(_ref_resnet_no_bn, static_argnums=2)(params, x, 8)
        assert_trees_all_close(ours, ref, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- BN and dropout


def _bn_mlp():
    """x -> Dense(3, no bias) -> BN -> ReLU -> identity head: logits = relu(bn(x W)), float64
    (call under jax.enable_x64: the model is checked against numpy formulas, another program)."""
    model = make_model("mlp", 3, hidden=(3,), batchnorm=True)
    x = jnp.asarray(_normal(10, (16, 2, 2, 1)), jnp.float64)
    variables = _fill(_init_shapes(model, (1, 2, 2, 1)), 11, jnp.float64)
    params = dict(variables["params"])
    params["head"] = {"kernel": jnp.eye(3), "bias": jnp.zeros(3)}
    params["bn_0"] = {"scale": jnp.array([1.0, 2.0, 0.5]), "bias": jnp.array([0.1, -0.2, 0.3])}
    stats = {"bn_0": {"mean": jnp.array([0.5, -1.0, 0.0]), "var": jnp.array([2.0, 0.5, 1e-6])}}
    return model, x, params, stats


# Sums of ≤ 16 terms (4-term dots, 16-row batch means) in float64, then BatchNorm divides by
# √(var + 1e-5) ≥ 3.3e-3 (var = 1e-6 in unit 2) and Flax's variance E[z²] − E[z]² cancels by
# ≤ ~10x here: ≤ 2·γ_16·316·10 ≈ 2e-11 of the scale; a wrong eps, momentum or variance is ≥ 1e-3.
BN_TOL = 2 * gamma(16, U64) * 316 * 10


@pytest.mark.numerics
def test_batchnorm_eval_uses_running_stats_with_eps_1e5():
    with jax.enable_x64(True):
        model, x, params, stats = _bn_mlp()
        out = _apply(model, {"params": params, "batch_stats": stats}, x, False)
    assert out.dtype == np.float64
    z = np.asarray(x).reshape(16, 4) @ np.asarray(params["dense_0"]["kernel"])
    m, v = (np.asarray(stats["bn_0"][k]) for k in ("mean", "var"))
    g, b = np.asarray(params["bn_0"]["scale"]), np.asarray(params["bn_0"]["bias"])
    expected = np.maximum((z - m) / np.sqrt(v + 1e-5) * g + b, 0)
    assert_trees_close_to_scale(out, expected, BN_TOL)


@pytest.mark.numerics
def test_batchnorm_train_uses_batch_stats_and_momentum_09():
    with jax.enable_x64(True):
        model, x, params, stats = _bn_mlp()
        variables = {"params": params, "batch_stats": stats}
        out, updates = _apply(model, variables, x, True, mutable=["batch_stats"])
    z = np.asarray(x).reshape(16, 4) @ np.asarray(params["dense_0"]["kernel"])
    bm, bv = z.mean(0), z.var(0)  # biased batch variance, as in Flax
    g, b = np.asarray(params["bn_0"]["scale"]), np.asarray(params["bn_0"]["bias"])
    assert_trees_close_to_scale(out, np.maximum((z - bm) / np.sqrt(bv + 1e-5) * g + b, 0), BN_TOL)
    new = updates["batch_stats"]["bn_0"]
    old = {k: np.asarray(v) for k, v in stats["bn_0"].items()}
    want = {"mean": 0.9 * old["mean"] + 0.1 * bm, "var": 0.9 * old["var"] + 0.1 * bv}
    assert_trees_close_to_scale(new, want, BN_TOL)


@pytest.mark.numerics
@pytest.mark.parametrize("name", MODELS)
def test_dropout_only_in_train_mode_and_keyed_by_rng(name):
    kw = {"depth": 8, "widths": (4, 8, 8)} if name == "resnet" else {}
    model = make_model(name, 10, dropout=0.5, **kw)
    x = jnp.asarray(_normal(12, (4, 8, 8, 1)))
    variables = _fill(_init_shapes(model, (1, 8, 8, 1)), 13)
    no_drop = make_model(name, 10, dropout=0.0, **kw)
    with pytest.raises(Exception, match="dropout"):
        jax.eval_shape(functools.partial(model.apply, train=True), variables, x)  # needs the rng

    @jax.jit
    def outputs(variables, x):  # one compile for every variant
        def train(k):
            return model.apply(variables, x, True, rngs={"dropout": jax.random.key(k)})

        eval_out = model.apply(variables, x, False)  # no "dropout" rng needed
        return eval_out, train(1), train(1), train(2), no_drop.apply(variables, x, True)

    eval_out, train_1, train_1_again, train_2, no_drop_out = outputs(variables, x)
    assert_trees_all_equal(train_1, train_1_again)
    assert not np.allclose(train_1, train_2)
    assert not np.allclose(train_1, eval_out)
    assert_trees_all_equal(no_drop_out, eval_out)


# ----------------------------------------------------------------------------- jit / scan / vmap


@pytest.mark.parametrize(
    "name, kw",
    [("mlp", {}), ("cnn", {"features": (8, 16)}), ("resnet", {"depth": 8, "widths": (4, 8, 8)})],
    ids=MODELS,
)
def test_scanned_sgd_steps_with_bn_and_dropout_lower_the_loss(name, kw):
    model = make_model(name, 4, dropout=0.1, batchnorm=True, hidden=(16,), **kw)
    x = jnp.asarray(_normal(14, (16, 8, 8, 1)))
    y = jnp.arange(16) % 4
    variables = _fill(_init_shapes(model, (1, 8, 8, 1)), 15)
    tx = optax.sgd(0.1)

    def loss_fn(params, stats, key):
        logits, upd = model.apply(
            {"params": params, "batch_stats": stats},
            x,
            True,
            rngs={"dropout": key},
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, upd["batch_stats"]

    def step(carry, i):
        params, stats, opt = carry
        key = jax.random.fold_in(jax.random.key(0), i)
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, key)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), stats, opt), loss

    @jax.jit
    def run(params, stats):
        return lax.scan(step, (params, stats, tx.init(params)), jnp.arange(8))

    (params, stats, _), losses = run(variables["params"], variables["batch_stats"])
    assert losses.shape == (8,) and np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), stats, variables["batch_stats"])
    assert all(jax.tree.leaves(changed))


def test_init_vmapped_over_member_keys_equals_each_member():
    # (Same Flax mechanism for every model; compiling a vmapped conv-net init takes ~10 s on CPU.)
    model = make_model("mlp", 10, batchnorm=True)
    x = jnp.zeros((1, 8, 8, 1))
    keys = jax.random.split(jax.random.key(10), 3)

    init = jax.jit(lambda k: model.init(k, x, False))
    stacked = jax.jit(jax.vmap(init))(keys)
    assert param_count(stacked) == 3 * param_count(_init_shapes(model, x.shape))
    for k in range(3):
        member = jax.tree.map(lambda a, k=k: a[k], stacked)
        # Same random bits, elementwise maps only (truncated-normal inverse CDF, ~30 roundings):
        # vmapped and single programs may fuse them differently, so within 2·γ_30 of the scale.
        assert_trees_close_to_scale(member, init(keys[k]), 2 * gamma(30))
    first, second = (jax.tree.map(lambda a, k=k: a[k], stacked["params"]) for k in (0, 1))
    assert not np.allclose(first["head"]["kernel"], second["head"]["kernel"])


@pytest.mark.numerics
@pytest.mark.parametrize("name", ["mlp", "cnn"])  # resnet: same layers, ~15 s more compile
def test_apply_vmapped_over_stacked_members_equals_each_member(name):
    # Batched (vmapped) layers vs one member's: different programs, compared in float64.
    with jax.enable_x64(True):
        model = make_model(name, 10, batchnorm=True, dropout=0.2)
        x = jnp.asarray(_normal(16, (6, 8, 8, 1)), jnp.float64)
        shapes = _init_shapes(model, (1, 8, 8, 1))
        members = [_fill(shapes, seed, jnp.float64) for seed in range(2)]
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *members)
        keys = jax.random.split(jax.random.key(17), 2)  # per-member dropout keys

        def apply(v, key):
            return model.apply(v, x, True, mutable=["batch_stats"], rngs={"dropout": key})

        @jax.jit
        def both(stacked, members, keys):  # one compile
            return jax.vmap(apply)(stacked, keys), [
                apply(m, keys[k]) for k, m in enumerate(members)
            ]

        outs, singles = both(stacked, members, keys)
    for k in range(2):
        mine = jax.tree.map(lambda a, k=k: a[k], outs)
        assert jax.tree.leaves(mine)[0].dtype == np.float64
        # Sums of ≤ 1,024 terms (the CNN's flattened features), then BatchNorm's division by
        # √(var + 1e-5) ≥ 3e-3 amplifies an absolute error by ≤ 316 per layer (two BN layers):
        # 2·γ_1024·316² ≈ 2e-8 of the scale in float64; a wrong member or dropout key is O(1).
        assert_trees_close_to_scale(mine, singles[k], 2 * gamma(1024, U64) * 316**2)


@pytest.mark.numerics
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_bn_epsilon_zero_makes_bn_preceded_kernels_scale_invariant(model):
    """BN(s·Wx) = BN(Wx) exactly when ε = 0 (train mode: batch statistics); ε = 1e-5 (the
    default) breaks it by ~ε/var, far above float64 rounding."""
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1), jnp.float64)
        out = {}
        for eps in (0.0, models.BN_EPSILON):
            kw = dict(batchnorm=True, bn_epsilon=eps)
            net = models.MLP(10, hidden=(32, 32), **kw) if model == "mlp" else models.CNN(10, **kw)
            v = jax.jit(lambda k, x, net=net: net.init(k, x, train=False))(jax.random.key(0), x)
            scaled = jax.tree_util.tree_map_with_path(
                lambda p, w: 2.0 * w if "kernel" in jax.tree_util.keystr(p) and "head" not in
                jax.tree_util.keystr(p) else w, v["params"])  # fmt: skip
            apply = jax.jit(lambda v, x, net=net: net.apply(
                v, x, train=True, mutable=["batch_stats"])[0])  # fmt: skip
            a, b = apply(v, x), apply({**v, "params": scaled}, x)  # one program for both
            out[eps] = float(jnp.abs(a - b).max() / jnp.abs(a).max())
    assert out[0.0] < 1e-12  # float64 rounding of a few dozen operations
    assert out[models.BN_EPSILON] > 1e-9
