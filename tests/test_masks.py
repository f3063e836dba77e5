"""``mask="hidden"``: every kernel but the output layer's, the output layer read from the data flow.

Where the model is known (:func:`wdjax.engine.adapters.resolve_mask_spec`, the sweep), the
output layer is the one producing the output, whatever the layers' names and their sorted order;
with parameters only, a ``head`` module marks it and its absence is refused.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import wdjax
from wdjax.engine import adapters
from wdjax.masks import mask_from_spec, param_path, resolve_mask

X_IMG = jnp.zeros((2, 8, 8, 1))


def _selected(spec, params) -> set[str]:
    """Paths of the leaves a spec selects on ``params``."""
    mask = resolve_mask(spec, params)
    flat = jax.tree_util.tree_flatten_with_path(mask)[0]
    return {param_path(path) for path, m in flat if m}


def _hidden(model, x=X_IMG) -> set[str]:
    adapter = adapters.as_model(model)
    spec = adapters.resolve_mask_spec("hidden", adapter, x)
    assert isinstance(spec, str) and spec != "hidden"
    params, _ = jax.eval_shape(adapter.init, jax.random.key(0), x)
    return _selected(spec, params)


class StemNet(nnx.Module):
    """The tutorial's setting (issue 22, defect 1): conv stem, norm, a projection, a classifier,
    each role under a name given in ``names``."""

    def __init__(self, rngs: nnx.Rngs, names=("stem", "norm", "proj", "classifier")):
        self.names = tuple(names)
        conv, norm, proj, out = self.names
        setattr(self, conv, nnx.Conv(1, 4, (3, 3), rngs=rngs))
        setattr(self, norm, nnx.BatchNorm(4, rngs=rngs))
        setattr(self, proj, nnx.Linear(4 * 8 * 8, 16, rngs=rngs))
        setattr(self, out, nnx.Linear(16, 10, rngs=rngs))

    def __call__(self, x):
        conv, norm, proj, out = (getattr(self, k) for k in self.names)
        h = nnx.relu(norm(conv(x)))
        return out(nnx.relu(proj(h.reshape(h.shape[0], -1))))


ROLES = ("stem", "norm", "proj", "classifier")


@pytest.mark.parametrize("shift", range(4))  # the output layer's name sorts 1st, 2nd, 3rd, 4th
def test_nnx_stem_norm_proj_classifier_in_every_sorted_order(shift):
    names = ROLES[shift:] + ROLES[:shift]  # (conv, norm, proj, output) roles
    got = _hidden(lambda rngs: StemNet(rngs, names))
    assert got == {f"{names[0]}/kernel", f"{names[2]}/kernel"}


class Chain(nn.Module):
    """Dense layers called in the order of ``names``; the last one gives the output."""

    names: tuple

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        for name in self.names[:-1]:
            x = nn.relu(nn.Dense(6, name=name)(x))
        return nn.Dense(3, name=self.names[-1])(x)


@pytest.mark.parametrize(
    "names",
    [
        ("z_in", "a_out"),
        ("a_in", "z_out"),
        tuple(f"Dense_{i}" for i in range(11)),  # the output last in natural order
        tuple(f"Dense_{i}" for i in (3, 10, 0, 7, 1, 9, 2, 8, 5, 6, 4)),  # and in no order
    ],
)
def test_linen_output_layer_is_the_last_called_whatever_the_names(names):
    assert _hidden(Chain(names)) == {f"{n}/kernel" for n in names[:-1]}


def test_linen_auto_named_layers():
    class Auto(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = x.reshape(x.shape[0], -1)
            for _ in range(10):
                x = nn.tanh(nn.Dense(4)(x))
            return nn.Dense(3)(x)

    assert _hidden(Auto()) == {f"Dense_{i}/kernel" for i in range(10)}


class LinenCNN(nn.Module):
    """flax's own Conv (conv_general_dilated), BatchNorm, pooling, dropout; the output named
    ``a_logits`` (first in sorted order)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3), name="z_conv")(x)
        x = nn.BatchNorm(use_running_average=not train, name="bn")(x)
        x = nn.max_pool(nn.relu(x), (2, 2), (2, 2))
        x = nn.Dense(8, name="m_dense")(x.reshape(x.shape[0], -1))
        x = nn.Dropout(0.1, deterministic=not train)(nn.relu(x))
        return nn.Dense(3, name="a_logits")(x)


def test_a_cnn_with_flax_conv_batchnorm_and_dropout():
    assert _hidden(LinenCNN()) == {"z_conv/kernel", "m_dense/kernel"}


@pytest.mark.parametrize(
    "name,kw", [("mlp", {}), ("cnn", {"batchnorm": True}), ("resnet", {"batchnorm": True})]
)
def test_builtin_models_leave_out_exactly_the_head(name, kw):
    model = wdjax.make_model(name, 10, dropout=0.1, **kw)
    x = jnp.zeros((1, 16, 16, 3))
    params, _ = jax.eval_shape(adapters.as_model(model).init, jax.random.key(0), x)
    kernels = _selected("kernels", params)
    assert _hidden(model, x) == kernels - {"head/kernel"}
    assert _selected("hidden", params) == kernels - {"head/kernel"}  # the `head` rule agrees
    assert "stem/kernel" in kernels or name != "resnet"


class Branches(nn.Module):
    """Two layers feed the output directly: a head and a side branch added to it; a skip from
    ``proj`` past the head (``+ h[:, :3]``) makes ``proj`` one too."""

    skip: bool = False

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(8, name="proj")(x.reshape(x.shape[0], -1))
        inner = nn.relu(nn.Dense(8, name="inner")(nn.relu(h)))
        out = nn.Dense(3, name="head")(inner) + nn.Dense(3, name="side")(nn.relu(h))
        return out + h[:, :3] if self.skip else out


def test_every_layer_feeding_the_output_directly_is_an_output_layer():
    assert _hidden(Branches()) == {"proj/kernel", "inner/kernel"}
    assert _hidden(Branches(skip=True)) == {"inner/kernel"}


class Bilinear(nn.Module):
    """The output is a product of two activations (no layer after them): both are output layers;
    the product is not a layer."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(8, name="trunk")(x.reshape(x.shape[0], -1)))
        q, k = nn.Dense(4, name="q")(h), nn.Dense(4, name="k")(h)
        return jnp.einsum("bi,bj->bij", q, k).reshape(x.shape[0], -1)


def test_a_product_of_activations_is_not_a_layer():
    assert _hidden(Bilinear()) == {"trunk/kernel"}


class Tied(nn.Module):
    """The output layer is a tied embedding (``attend``): a layer without a kernel."""

    @nn.compact
    def __call__(self, ids):
        emb = nn.Embed(20, 8, name="emb")
        h = nn.relu(nn.Dense(8, name="mix")(emb(ids.astype(jnp.int32)).mean(1)))
        return emb.attend(h)


def test_an_output_layer_without_a_kernel_leaves_every_kernel_hidden():
    assert _hidden(Tied(), jnp.zeros((2, 5))) == {"mix/kernel"}


class Stack(nn.Module):
    """Three stacked layers in one kernel leaf, applied by ``lax.scan``."""

    @nn.compact
    def __call__(self, h):
        w = self.param("kernel", nn.initializers.lecun_normal(), (3, 8, 8))
        return jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), h, w)[0]


class Looped(nn.Module):
    head_after: bool

    @nn.compact
    def __call__(self, x):
        h = Stack(name="blocks")(nn.Dense(8, name="inp")(x.reshape(x.shape[0], -1)))
        if not self.head_after:
            return h
        y = nn.Dense(3, name="out")(h)
        return jax.lax.cond(jnp.sum(y) > 0, lambda y: y, lambda y: -y, y)


def test_scan_and_cond_are_followed():
    assert _hidden(Looped(head_after=True)) == {"inp/kernel", "blocks/kernel"}
    assert _hidden(Looped(head_after=False)) == {"inp/kernel"}  # the scanned stack is last


def test_resolution_is_an_anchored_regex_and_other_specs_pass_through():
    spec = adapters.resolve_mask_spec("hidden", Chain(("a", "b", "c")), X_IMG)
    assert spec == "^(?:a/kernel|b/kernel)$"
    assert re.fullmatch(spec, "a/kernel") and not re.search(spec, "xa/kernel")
    for other in ("kernels", "dense", None):
        assert adapters.resolve_mask_spec(other, Chain(("a", "b")), X_IMG) == other
    with pytest.raises(ValueError, match="mask: 'hidden' selects nothing"):
        adapters.resolve_mask_spec("hidden", Chain(("only",)), X_IMG)


def test_with_parameters_only_a_head_marks_the_output_and_no_head_is_refused():
    params = jax.eval_shape(Chain(("a", "b", "head")).init, jax.random.key(0), X_IMG)["params"]
    assert _selected("hidden", params) == {"a/kernel", "b/kernel"}
    auto = {f"Dense_{i}": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)} for i in range(11)}
    for tree in (auto, nnx.state(StemNet(nnx.Rngs(0)), nnx.Param)):
        with pytest.raises(ValueError, match="mask: 'hidden'.*no module named 'head'.*model.*"
                           "name the output layer 'head'.*regular expression"):  # fmt: skip
            mask_from_spec("hidden")(tree)
        with pytest.raises(ValueError, match="no module named 'head'"):
            wdjax.make_optimizer("adam", 1e-3, "wd", 1e-4, mask="hidden").init(tree)
        with pytest.raises(ValueError, match="no module named 'head'"):
            wdjax.l2_penalty(tree, mask="hidden")
    assert mask_from_spec("hidden")({"bias": jnp.ones(3)}) == {"bias": False}  # no kernel at all


def test_the_builder_resolves_hidden_for_a_model_without_head():
    cfg = wdjax.SweepConfig(model=StemNet, mask="hidden", optimizer="sgd", reg="wd")
    engine = wdjax.build(cfg, num_classes=10, x_example=X_IMG[:1]).engine
    assert engine.optimizer.mask == "^(?:proj/kernel|stem/kernel)$"
    assert engine == wdjax.build(cfg, num_classes=10, x_example=X_IMG[:1]).engine  # hashable
    h = wdjax.Hyper(jnp.asarray(0.5), jnp.asarray(0.1), jnp.int32(0), jnp.int32(0))
    state = engine.init(h, X_IMG[:1])
    zero = jax.tree.map(jnp.zeros_like, state.params)
    updates, _ = engine.tx(h).update(zero, state.opt_state, state.params)
    for layer, leaves in state.params.items():  # sgd + wd, g = 0: u = −lr·λ·w on hidden kernels
        for leaf, w in leaves.items():
            decayed = layer in ("stem", "proj") and leaf == "kernel"
            want = -0.1 * 0.5 * np.asarray(w) if decayed else np.zeros_like(w)
            np.testing.assert_allclose(updates[layer][leaf], want, rtol=1e-6, atol=0)


def test_a_sweep_with_an_nnx_model_without_head_trains_with_hidden():
    res = wdjax.sweep(model=StemNet, mask="hidden", epochs=1, strengths=(1e-3,), lrs=(1e-2,),
                      train_size=256, val_size=64)  # fmt: skip
    assert np.isfinite(res.history["train_loss"]).all()
