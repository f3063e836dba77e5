"""Any Flax model in a sweep: Linen and NNX behind one interface, factories, axes, resume."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import adam_drift, assert_trees_close_to_scale

import wdjax
from wdjax.analysis import tables
from wdjax.engine import adapters
from wdjax.run.build import build
from wdjax.run.config import ConfigError, SweepConfig

BASE = SweepConfig(epochs=2, batch_size=64, strengths=(1e-4, 1e-1), lrs=(1e-2,))
F64 = dict(dtype="float64")
TRAJ_TOL = adam_drift(50, 1e-2, 64)  # float64 trajectories of <= 50 steps (tests/test_runner.py)
LINEN_MLP = wdjax.make_model("mlp", 10, hidden=(16,))  # dense_0 -> relu -> head


class NNXMLP(nnx.Module):
    """The same network in NNX (8x8x1 digits in, 16 hidden, 10 out), Linen's parameter names."""

    def __init__(self, rngs: nnx.Rngs, dropout: float = 0.0, batchnorm: bool = False):
        # No bias before BatchNorm (its gradient is exactly 0: Adam would amplify rounding).
        self.dense_0 = nnx.Linear(64, 16, use_bias=not batchnorm, rngs=rngs)
        self.bn_0 = nnx.BatchNorm(16, momentum=0.9, epsilon=1e-5, rngs=rngs) if batchnorm else None
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.head = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        h = self.dense_0(x.reshape(x.shape[0], -1))
        h = self.bn_0(h) if self.bn_0 is not None else h
        return self.head(self.drop(nnx.relu(h)))


def linen_weights(rngs: nnx.Rngs) -> NNXMLP:
    """NNXMLP holding exactly the weights the Linen MLP draws from the same member key."""
    net = NNXMLP(rngs)
    key = rngs.default.key[...]  # the member's init key, fold_in(key(seed), 0)
    p = LINEN_MLP.init({"params": key}, jnp.zeros((1, 8, 8, 1)), False)["params"]
    for name in ("dense_0", "head"):
        getattr(net, name).kernel[...] = p[name]["kernel"]
        getattr(net, name).bias[...] = p[name]["bias"]
    return net


@pytest.mark.numerics
def test_nnx_and_linen_mlp_with_the_same_weights_give_the_same_sweep():
    cfg = dataclasses.replace(BASE, hidden=(16,), **F64)
    with jax.enable_x64(True):
        linen = wdjax.sweep(cfg)
        nnx_run = wdjax.sweep(cfg, model=linen_weights)
    assert jax.tree.structure(nnx_run.params) == jax.tree.structure(linen.params)
    # Two different programs (nnx.Linear vs nn.Dense): float64, the trajectory bound.
    assert_trees_close_to_scale(nnx_run.params, linen.params, TRAJ_TOL)
    for name in ("train_loss", "val_loss", "test_acc"):
        assert_trees_close_to_scale(nnx_run.history[name], linen.history[name], TRAJ_TOL)
    assert nnx_run.config.to_json()["model"].startswith("nnx:")


@pytest.mark.numerics
def test_nnx_batchnorm_and_dropout_members_differ_by_seed_and_equal_their_standalone_run():
    def factory(rngs):
        return NNXMLP(rngs, dropout=0.3, batchnorm=True)

    cfg = dataclasses.replace(BASE, strengths=(1e-3,), seeds=2, model=factory, **F64)
    with jax.enable_x64(True):  # member 0 (seed 0) alone: a K=1 program, so float64
        two, alone = wdjax.sweep(cfg), wdjax.sweep(cfg, seeds=1)
    p = two.params
    assert not np.allclose(p["dense_0"]["kernel"][0], p["dense_0"]["kernel"][1])  # by seed
    assert np.all(np.isfinite(two.history["val_loss"]))
    # Dropout masks and BatchNorm statistics must follow the member's seed for this to hold.
    a, b = (jax.tree.map(lambda x: x[0], r.params) for r in (two, alone))
    assert_trees_close_to_scale(a, b, TRAJ_TOL)
    assert_trees_close_to_scale(two.history["val_loss"][:1], alone.history["val_loss"], TRAJ_TOL)


def test_an_nnx_instance_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="^model: .*factory"):
        wdjax.sweep(BASE, model=NNXMLP(nnx.Rngs(0)))


class TinyLinen(nn.Module):
    """A user's Linen module whose __call__ takes no train flag and names its layers itself."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(8, name="hidden")(x.reshape(x.shape[0], -1)))
        return nn.Dense(10, name="out")(x)


def lion_factory(learning_rate, strength, b1=0.9):
    return optax.lion(learning_rate, b1=b1, weight_decay=strength)


def test_a_factory_sweep_with_lion_equals_a_hand_written_loop():
    cfg = dataclasses.replace(BASE, strengths=(1e-2,), epochs=1, model=TinyLinen(),
                              optimizer=lion_factory, **F64)  # fmt: skip
    with jax.enable_x64(True):
        res = wdjax.sweep(cfg)
        ds = wdjax.load("digits", val_size=cfg.val_size, seed=cfg.data_seed)
        engine = build(cfg, num_classes=10).engine
        h = wdjax.Hyper(jnp.asarray(1e-2), jnp.asarray(1e-2), jnp.int32(0), jnp.int32(0))
        state = engine.init(h, jnp.asarray(ds.x_train[:1]))
        params = state.params
        tx = optax.chain(optax.scale_by_lion(b1=0.9), optax.add_decayed_weights(1e-2),
                         optax.scale_by_learning_rate(1e-2))  # fmt: skip
        opt = tx.init(params)
        order = engine.batch_order(cfg.data_seed, 0, ds.x_train.shape[0])

        def loss(p, x, y):
            return wdjax.cross_entropy(TinyLinen().apply({"params": p}, x), y)

        @jax.jit  # one compile for the loop's step, not one per eager op
        def step(params, opt, x, y):
            updates, opt = tx.update(jax.grad(loss)(params, x, y), opt, params)
            return optax.apply_updates(params, updates), opt

        for rows in np.asarray(order):
            x, y = jnp.asarray(ds.x_train[rows], jnp.float64), jnp.asarray(ds.y_train[rows])
            params, opt = step(params, opt, x, y)
    steps = len(order)  # lion's sign update: a rounding difference flips no sign here
    assert_trees_close_to_scale(jax.tree.map(lambda x: x[0], res.params), params,
                                adam_drift(steps, 1e-2, 64))  # fmt: skip
    assert res.config.to_json()["optimizer"].endswith("lion_factory")


@pytest.mark.numerics
def test_a_set_axis_is_traced_and_equals_the_fixed_value():
    cfg = dataclasses.replace(BASE, strengths=(1e-3,), axes=(("b1", (0.8, 0.95)),), **F64)
    with jax.enable_x64(True):
        res = wdjax.sweep(cfg)
        fixed = wdjax.sweep(cfg, axes=(), optimizer=lambda lr, s: wdjax.make_optimizer(
            "adam", lr, "wd", s, b1=0.95))  # fmt: skip
    assert [m["b1"] for m in res.members] == [0.8, 0.95]
    member = jax.tree.map(lambda x: x[1], res.params)
    assert_trees_close_to_scale(member, jax.tree.map(lambda x: x[0], fixed.params), TRAJ_TOL)
    assert not np.allclose(res.params["head"]["kernel"][0], res.params["head"]["kernel"][1])
    assert {r["b1"] for r in tables.table_rows(res.members, res.history)} == {
        0.8,
        0.95,
    }


def test_an_unknown_axis_names_the_flag():
    with pytest.raises(ConfigError, match="^axes: "):
        wdjax.sweep(BASE, axes=(("b9", (0.1,)),))


def test_resume_needs_the_same_model_again(tmp_path):
    out = str(tmp_path / "run")
    cfg = dataclasses.replace(BASE, epochs=2, model=TinyLinen())
    with pytest.raises(KeyboardInterrupt):
        wdjax.sweep(cfg, out=out, checkpoint_every="1", progress=_interrupt)
    with pytest.raises(ConfigError, match="^resume: .*model"):
        wdjax.sweep(cfg, out=out, resume=True, model=linen_weights)
    done = wdjax.sweep(cfg, out=out, resume=True)
    assert done.history["val_loss"].shape == (2, 2)


def test_resume_refuses_a_model_of_the_same_name_with_other_parameters(tmp_path):
    out = str(tmp_path / "run")
    factories = [lambda rngs, w=w: nnx.Linear(64, w, rngs=rngs) for w in (10, 12)]
    cfg = dataclasses.replace(BASE, epochs=2, model=_Flat(factories[0]))
    with pytest.raises(KeyboardInterrupt):
        wdjax.sweep(cfg, out=out, checkpoint_every="1", progress=_interrupt)
    with pytest.raises(ConfigError, match="^resume: .*parameters: .*other shapes .*kernel"):
        wdjax.sweep(cfg, out=out, resume=True, model=_Flat(factories[1]))
    done = wdjax.sweep(cfg, out=out, resume=True)  # the same NNX model again: it finishes
    assert done.history["val_loss"].shape == (2, 2)
    for f in ("metrics.csv", "table.md", "curves.png", "params.npz", "fingerprint.json"):
        assert (tmp_path / "run" / f).stat().st_size > 0, f


class _Flat:
    """An NNX factory (one name whatever its layer): flattens the images, then the layer."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, rngs):
        return _FlatModule(self.layer(rngs))


class _FlatModule(nnx.Module):
    def __init__(self, layer):
        self.layer = layer

    def __call__(self, x):
        return self.layer(x.reshape(x.shape[0], -1))


def _interrupt(info):
    raise KeyboardInterrupt


def test_adapters_are_equal_for_the_same_module_or_factory():
    assert adapters.as_model(TinyLinen()) == adapters.as_model(TinyLinen())
    assert adapters.as_model(linen_weights) == adapters.as_model(linen_weights)
    assert hash(adapters.as_model(linen_weights)) == hash(adapters.as_model(linen_weights))


def test_nnx_dropout_streams_differ_by_member_seed():
    init = nnx.initializers.constant(0.05)

    def factory(rngs):  # the same weights for every seed: only the dropout streams differ
        return _FlatModule(_Dropped(rngs, init))

    res = wdjax.sweep(dataclasses.replace(BASE, strengths=(0.0,), seeds=2, epochs=1, model=factory))
    k = res.params["layer"]["dense"]["kernel"]
    assert not np.array_equal(k[0], k[1])


class _Dropped(nnx.Module):
    def __init__(self, rngs, init):
        self.dense = nnx.Linear(64, 10, kernel_init=init, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.dense(self.drop(x))
