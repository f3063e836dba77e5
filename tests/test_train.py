"""The pure engine against direct computations: evaluation with padding, one step vs optax.adamw."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_all_close

from wdjax import metrics as M
from wdjax import train
from wdjax.config import SweepConfig
from wdjax.train import Engine, Hyper

CFG = SweepConfig(reg="wd", optimizer="adam", hidden=(16,), batch_size=8)


def _member(cfg=CFG, lr=1e-2, strength=0.1, seed=3):
    engine = Engine.from_config(cfg, 10)
    h = Hyper(jnp.float32(strength), jnp.float32(lr), jnp.int32(seed), jnp.int32(0))
    x = jnp.asarray(np.random.default_rng(0).random((50, 8, 8, 1), np.float32))
    y = jnp.asarray(np.arange(50) % 10, jnp.int32)
    return engine, h, engine.init(h, x[:1]), x, y


@pytest.mark.parametrize("eval_batch", [7, 50, 1024])
def test_evaluate_equals_one_full_batch_despite_padding(monkeypatch, eval_batch):
    monkeypatch.setattr(train, "EVAL_BATCH", eval_batch)  # 7: 8 batches, the last padded by 6
    engine, _, state, x, y = _member()
    loss, acc = jax.jit(engine.evaluate)(state, x, y)
    logits = engine.model.apply({"params": state.params}, x, train=False)
    np.testing.assert_allclose(loss, M.cross_entropy(logits, y), rtol=1e-6)
    np.testing.assert_allclose(acc, M.accuracy(logits, y), rtol=1e-6)


def test_step_is_an_optax_adamw_step_on_the_mean_cross_entropy():
    engine, h, state, x, y = _member()
    new, (loss, _) = jax.jit(engine.step)(state, h, x[:8], y[:8])

    def ce(p):
        return M.cross_entropy(engine.model.apply({"params": p}, x[:8], train=False), y[:8])

    mask = jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", state.params)
    tx = optax.adamw(1e-2, weight_decay=0.1, mask=mask)
    g = jax.grad(ce)(state.params)
    updates, _ = tx.update(g, tx.init(state.params), state.params)
    assert_trees_all_close(new.params, optax.apply_updates(state.params, updates), rtol=1e-5,
                           atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(loss, ce(state.params), rtol=1e-6)
    assert int(new.step) == 1 and not bool(new.diverged)


def test_batch_order_is_the_epoch_permutation_cut_to_whole_batches():
    engine, _, _, _, _ = _member()
    n, b = 1000, engine.batch_size
    order = np.asarray(jax.jit(engine.batch_order, static_argnums=2)(7, 3, n))
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.key(7), 3), n))
    assert order.dtype == np.int32 and order.shape == (n // b, b)
    np.testing.assert_array_equal(order.ravel(), perm[: (n // b) * b])
    assert len(np.unique(order)) == order.size  # each example at most once per epoch
    other = np.asarray(engine.batch_order(7, 4, n))
    assert not np.array_equal(order, other)  # a new order every epoch


def _epoch_of(engine, hyper, x, y, states=None):
    data = train.Data(x, y, jnp.arange(x.shape[0], dtype=jnp.int32)[None],
                      jnp.zeros((1, 0), jnp.int32), x[:5], y[:5])  # fmt: skip
    if states is None:
        states = engine.init_members(hyper, x[:1])
    return jax.jit(engine.epoch)(states, hyper, data, 0, 0)


def test_diverging_member_is_put_back_to_its_epoch_start_and_the_other_is_unaffected():
    engine, _, _, x, y = _member()
    two = Hyper(jnp.array([0.1, 0.1]), jnp.array([1e-2, 1e30]), jnp.array([3, 4], jnp.int32),
                jnp.zeros(2, jnp.int32))  # fmt: skip
    start = engine.init_members(two, x[:1])
    states, out = _epoch_of(engine, two, x, y, start)
    assert out["diverged"].tolist() == [False, True]
    # The diverged member holds exactly its epoch-start parameters (finite), step count 0.
    for new, old in zip(jax.tree.leaves(states.params), jax.tree.leaves(start.params), strict=True):
        np.testing.assert_array_equal(new[1], old[1])
    assert states.step.tolist() == [6, 0] and np.isfinite(out["test_loss"][1])
    # The same member diverges again next epoch from there and stays frozen.
    again, out2 = _epoch_of(engine, two, x, y, states)
    for new, old in zip(jax.tree.leaves(again.params), jax.tree.leaves(start.params), strict=True):
        np.testing.assert_array_equal(new[1], old[1])
    assert out2["diverged"].tolist() == [False, True]
    # Member 0 trains exactly as it would alone.
    one = jax.tree.map(lambda a: a[:1], two)
    alone, _ = _epoch_of(engine, one, x, y)
    for a, b in zip(jax.tree.leaves(states.params), jax.tree.leaves(alone.params), strict=True):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-7)
