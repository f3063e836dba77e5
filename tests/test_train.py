"""The pure engine against direct computations: evaluation with padding, one step vs optax.adamw."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import U64, adam_drift, assert_trees_close_to_scale, gamma

from wdjax.engine import engine as train
from wdjax.engine import metrics as M
from wdjax.engine.engine import Hyper
from wdjax.run.build import build
from wdjax.run.config import SweepConfig

CFG = SweepConfig(reg="wd", optimizer="adam", hidden=(16,), batch_size=8)
# These tests compare the engine with other programs (optax, one full batch, a K=1 program) and
# so run in float64 (the engine's dtype="float64", under jax.enable_x64): see tests/helpers.py.
CFG64 = dataclasses.replace(CFG, dtype="float64")
# Every sum below has ≤ 64 terms (64 inputs; 16 hidden units; a batch of 8) of magnitude ≤ ~1.
N_TERMS = 64


def _member(cfg=CFG64, lr=1e-2, strength=0.1, seed=3):
    engine = build(cfg, num_classes=10).engine
    h = Hyper(jnp.asarray(strength), jnp.asarray(lr), jnp.int32(seed), jnp.int32(0))
    x = jnp.asarray(np.random.default_rng(0).random((50, 8, 8, 1)))
    y = jnp.asarray(np.arange(50) % 10, jnp.int32)
    return engine, h, engine.init(h, x[:1]), x, y


@pytest.mark.parametrize("eval_batch", [7, 50, 1024])
def test_evaluate_equals_one_full_batch_despite_padding(monkeypatch, eval_batch):
    monkeypatch.setattr(train, "EVAL_BATCH", eval_batch)  # 7: 8 batches, the last padded by 6
    with jax.enable_x64(True):
        engine, _, state, x, y = _member()
        loss, acc = jax.jit(engine.evaluate)(state, x, y)
        logits, _ = engine.apply(state.params, state.batch_stats, x, train=False)
        want_loss, want_acc = M.cross_entropy(logits, y), M.accuracy(logits, y)
    assert loss.dtype == np.float64
    # Logits are two ≤ 64-term dots deep; the loss (a mean of log-sum-exp − z_y, O(1) each) moves
    # by ≤ 2·max|Δz|, so 4·γ_64 relative to its scale. Accuracy counts argmaxes: exact unless two
    # logits tie within float64 rounding, which these random inputs do not.
    assert abs(float(loss) - float(want_loss)) <= 4 * gamma(N_TERMS, U64) * float(want_loss)
    assert float(acc) == float(want_acc)


@pytest.mark.numerics
def test_step_is_an_optax_adamw_step_on_the_mean_cross_entropy():
    with jax.enable_x64(True):
        engine, h, state, x, y = _member()
        new, (loss, _) = jax.jit(engine.step)(state, h, x[:8], y[:8])

        def ce(p):
            return M.cross_entropy(engine.apply(p, {}, x[:8], train=False)[0], y[:8])

        mask = jax.tree_util.tree_map_with_path(
            lambda path, _: path[-1].key == "kernel", state.params
        )
        tx = optax.adamw(1e-2, weight_decay=0.1, mask=mask)

        @jax.jit  # the reference step as one program (eagerly, one compile per op)
        def reference(params):
            updates, _ = tx.update(jax.grad(ce)(params), tx.init(params), params)
            return optax.apply_updates(params, updates), ce(params)

        want, want_loss = reference(state.params)
    # The gradients differ by ≤ 2·γ_64 (terms ≤ ~1); Adam's first step, lr·g/(|g| + eps), moves by
    # ≤ lr·|Δg|/eps (tests/helpers.adam_drift).
    assert_trees_close_to_scale(new.params, want, adam_drift(1, 1e-2, N_TERMS))
    assert abs(float(loss) - float(want_loss)) <= 4 * gamma(N_TERMS, U64) * float(want_loss)
    assert int(new.step) == 1 and not bool(new.diverged)


def test_batch_order_is_the_epoch_permutation_cut_to_whole_batches():
    engine = build(CFG, num_classes=10).engine
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
    with jax.enable_x64(True):  # lr = 1e300 overflows float64 within the epoch
        engine, _, _, x, y = _member()
        two = Hyper(jnp.array([0.1, 0.1]), jnp.array([1e-2, 1e300]), jnp.array([3, 4], jnp.int32),
                    jnp.zeros(2, jnp.int32))  # fmt: skip
        start = engine.init_members(two, x[:1])
        states, out = _epoch_of(engine, two, x, y, start)
        again, out2 = _epoch_of(engine, two, x, y, states)
        one = jax.tree.map(lambda a: a[:1], two)
        alone, _ = _epoch_of(engine, one, x, y)
    assert out["diverged"].tolist() == [False, True]
    # The diverged member holds exactly its epoch-start parameters (finite), step count 0.
    for new, old in zip(jax.tree.leaves(states.params), jax.tree.leaves(start.params), strict=True):
        np.testing.assert_array_equal(new[1], old[1])
    assert states.step.tolist() == [6, 0] and np.isfinite(out["test_loss"][1])
    # The same member diverges again next epoch from there and stays frozen.
    for new, old in zip(jax.tree.leaves(again.params), jax.tree.leaves(start.params), strict=True):
        np.testing.assert_array_equal(new[1], old[1])
    assert out2["diverged"].tolist() == [False, True]
    # Member 0 trains as it would alone (a K=1 program: another program, float64): the epoch's 6
    # Adam steps drift by ≤ adam_drift(6, ...) ≈ 2e-7; one step of lr = 1e-2 (a bug) is ~1e-2.
    tol = adam_drift(6, 1e-2, N_TERMS)
    assert_trees_close_to_scale(
        jax.tree.map(lambda a: a[0], states.params), jax.tree.map(lambda a: a[0], alone.params), tol
    )
