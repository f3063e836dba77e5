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


def test_nonfinite_step_freezes_the_member():
    engine, h, state, x, y = _member(lr=1e30)
    s = state
    for _ in range(3):
        s, _ = jax.jit(engine.step)(s, h, x[:8], y[:8])
    assert bool(s.diverged)
    # Frozen at the last finite state: every parameter finite, the step counter stopped.
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(s.params))
    assert int(s.step) < 3
