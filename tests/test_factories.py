"""Tests for the generic transforms (either, hold_zeros) and the optimizer factories (Sheared,
Decay, Held) against optax's own optimizers and update rules written out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_all_equal

import wdjax
from wdjax import Decay, Held, Sheared, either, hold_zeros


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "dense_0": {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
                    "bias": jnp.asarray(rng.normal(size=2), jnp.float32)},
        "head": {"kernel": jnp.asarray(rng.normal(size=(2, 2)), jnp.float32),
                 "bias": jnp.zeros(2)},
    }  # fmt: skip


def _run(tx, params, grads):
    """Params after one update per gradient tree in ``grads``."""
    state = tx.init(params)
    for g in grads:
        u, state = tx.update(g, state, params)
        params = optax.apply_updates(params, u)
    return params


def _grads(params, n, seed=1):
    rng = np.random.default_rng(seed)
    return [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
            for _ in range(n)]  # fmt: skip


@pytest.mark.parametrize("flag", [1.0, 0.0])
def test_either_follows_the_flagged_transform_exactly_as_it_runs_alone(flag):
    params = _params()
    grads = _grads(params, 4)
    adam, heavy = optax.adam(1e-2), optax.sgd(1e-2, momentum=0.9)
    got = _run(either(flag, adam, heavy), params, grads)
    assert_trees_all_equal(got, _run(adam if flag else heavy, params, grads))


def test_either_switches_per_member_under_vmap_with_one_program():
    params = _params()
    grads = _grads(params, 3)
    adam, heavy = optax.adam(1e-2), optax.sgd(1e-2, momentum=0.9)

    def member(flag):
        return _run(either(flag, adam, heavy), params, grads)

    got = jax.vmap(member)(jnp.array([1.0, 0.0]))
    for i, ref in enumerate((adam, heavy)):
        expected = _run(ref, params, grads)
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7),
                     got, expected)  # fmt: skip


def test_hold_zeros_multiplies_each_update_by_the_initial_nonzero_pattern():
    w0 = {"a": jnp.array([0.0, 1.5, -2.0, 0.0]), "b": jnp.array([[0.0, 3.0]])}
    u = {"a": jnp.array([0.1, 0.2, 0.3, 0.4]), "b": jnp.array([[5.0, 6.0]])}
    tx = hold_zeros()
    state = tx.init(w0)
    later = jax.tree.map(lambda x: x + 1.0, w0)  # the rule uses the *initial* zeros only
    got, _ = tx.update(u, state, later)
    np.testing.assert_array_equal(got["a"], np.float32([0.0, 0.2, 0.3, 0.0]))
    np.testing.assert_array_equal(got["b"], [[0.0, 6.0]])


def test_hold_zeros_with_a_mask_holds_only_the_selected_leaves():
    w0 = {
        "dense_0": {"kernel": jnp.array([[0.0, 1.0], [2.0, 3.0]]), "bias": jnp.zeros(2)},
        "head": {"kernel": jnp.array([[0.0, 1.0], [1.0, 1.0]]), "bias": jnp.zeros(2)},
    }
    u = jax.tree.map(jnp.ones_like, w0)
    tx = hold_zeros("hidden")
    got, _ = tx.update(u, tx.init(w0), w0)
    np.testing.assert_array_equal(got["dense_0"]["kernel"], [[0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(got["head"]["kernel"], 1.0)  # not held
    np.testing.assert_array_equal(got["dense_0"]["bias"], 1.0)  # not a hidden kernel


def test_sheared_is_sgd_on_lambda_times_the_centre_with_a_cosine_step():
    # w ← w − lr·η(t)·(g + λ·w) on the hidden kernels, λ = r·λa·(lr/lra)^slope,
    # η(t) = ½(1 + cos(π t / T)), T = 2 epochs × 2 steps.
    lr, r, lam_a, lr_a, slope = 0.2, 2.0, 0.5, 0.1, -1.0
    lam = r * lam_a * (lr / lr_a) ** slope
    tx = Sheared("sgd", "l2", lam_a, lr_a, slope, steps_per_epoch=2, epochs=2)(lr, r)
    params = _params()
    grads = _grads(params, 3)
    got = _run(tx, params, grads)
    w = {k: {n: np.asarray(v, np.float64) for n, v in d.items()} for k, d in params.items()}
    for t, g in enumerate(grads):
        eta = 0.5 * (1 + np.cos(np.pi * t / 4))
        w["dense_0"]["kernel"] = w["dense_0"]["kernel"] - lr * eta * (
            np.asarray(g["dense_0"]["kernel"]) + lam * w["dense_0"]["kernel"]
        )
        for k, n in (("dense_0", "bias"), ("head", "kernel"), ("head", "bias")):
            w[k][n] = w[k][n] - lr * eta * np.asarray(g[k][n])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, w)


def test_sheared_constant_schedule_is_adamw_at_lambda_times_the_centre():
    # schedule="constant": η(t) = 1, so adam + wd is optax.adamw(lr, λ) on the hidden kernels,
    # λ = r·λa·(lr/lra)^slope, over more steps than the (unused) cosine horizon of 2 × 2 steps.
    lr, r, lam_a, lr_a, slope = 0.05, 0.5, 0.4, 0.1, -1.0
    lam = r * lam_a * (lr / lr_a) ** slope
    tx = Sheared("adam", "wd", lam_a, lr_a, slope, 2, 2, schedule="constant")(lr, r)
    ref = optax.adamw(lr, weight_decay=lam, mask=wdjax.mask_from_spec("hidden"))
    params = _params()
    grads = _grads(params, 6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 _run(tx, params, grads), _run(ref, params, grads))  # fmt: skip
    with pytest.raises(ValueError, match="schedule"):
        Sheared("adam", "wd", lam_a, lr_a, slope, 2, 2, schedule="step")


@pytest.mark.parametrize("coupled", [0.0, 1.0])
def test_decay_with_adam_is_optax_adamw_or_adam_on_the_l2_gradient(coupled):
    lr, lam = 0.05, 0.3
    mask = wdjax.mask_from_spec("kernels")
    tx = Decay("kernels", 100)(lr, lam, adam=1.0, coupled=coupled, cosine=0.0, momentum=0.0)
    if coupled:  # Adam on g + λw (coupled L2)
        ref = optax.chain(optax.add_decayed_weights(lam, mask), optax.adam(lr))
    else:  # AdamW: −lr·(adam step + λw)
        ref = optax.adamw(lr, weight_decay=lam, mask=mask)
    params = _params()
    grads = _grads(params, 4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 _run(tx, params, grads), _run(ref, params, grads))  # fmt: skip


def test_decay_with_heavy_ball_and_cosine_is_sgd_momentum_on_a_cosine_schedule():
    lr, lam, mu, total = 0.05, 0.3, 0.9, 10
    mask = wdjax.mask_from_spec("kernels")
    tx = Decay("kernels", total)(lr, lam, adam=0.0, coupled=1.0, cosine=1.0, momentum=mu)
    sched = optax.cosine_decay_schedule(lr, total)
    ref = optax.chain(optax.add_decayed_weights(lam, mask), optax.sgd(sched, momentum=mu))
    params = _params()
    grads = _grads(params, 5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 _run(tx, params, grads), _run(ref, params, grads))  # fmt: skip


def test_held_at_zero_strength_is_adam_with_the_hidden_zeros_held():
    params = _params()
    params["dense_0"]["kernel"] = params["dense_0"]["kernel"].at[0, 1].set(0.0).at[2, 0].set(0.0)
    params["head"]["kernel"] = params["head"]["kernel"].at[1, 1].set(0.0)
    grads = _grads(params, 4)
    got = _run(Held("l1_prox")(1e-2, 0.0), params, grads)
    ref = _run(optax.adam(1e-2), params, grads)  # then zero the held entries' total movement
    expected = jax.tree.map(lambda x: x, ref)
    expected["dense_0"]["kernel"] = jnp.where(params["dense_0"]["kernel"] == 0, 0.0,
                                              ref["dense_0"]["kernel"])  # fmt: skip
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), got,
                 expected)  # fmt: skip
    assert got["head"]["kernel"][1, 1] != 0.0  # the output layer's zeros are not held


def test_factories_are_hashable_and_equal_by_value():
    assert Held("l1_prox") == Held("l1_prox") and hash(Held("l1_prox")) == hash(Held("l1_prox"))
    assert Decay("hidden", 10) == Decay("hidden", 10)
    assert len({Sheared("adam", "wd", 1.0, 1.0, -1.0, 2, 2), Sheared("adam", "wd", 1.0, 1.0, -1.0,
                                                                     2, 2)}) == 1  # fmt: skip


@pytest.mark.parametrize("bad", [0.0, -1e-3, "1e-3"])
def test_sheared_refuses_a_fixed_lr_that_is_not_a_positive_number(bad):
    with pytest.raises(wdjax.ConfigError, match="Sheared: fixed_lr .*give a positive number"):
        wdjax.Sheared("adam", "wd", 1.0, 1e-3, -1.0, 10, 2, fixed_lr=bad)
