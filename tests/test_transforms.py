"""Tests for wdjax.transforms: prox operators against closed forms and optimality conditions."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import NnxNet, assert_trees_all_equal, assert_trees_close_to_scale, gamma

import wdjax.prox
import wdjax.transforms
from wdjax.prox import adam_prox, prox_elastic_net, prox_group_lasso, prox_l1, soft_threshold
from wdjax.transforms import add_l1_subgradient, check_hyperparameter


def _soft_scalar(x: float, t: float) -> float:
    """Piecewise reference: x - t if x > t, x + t if x < -t, else 0."""
    if x > t:
        return x - t
    if x < -t:
        return x + t
    return 0.0


def _step(tx, updates, params, **kw):
    new_updates, _ = tx.update(updates, tx.init(params), params, **kw)
    return optax.apply_updates(params, new_updates)


def _lasso_problem():
    """Orthonormal design: f = ½‖Xw − y‖², XᵀX = I, b = Xᵀy, solution S_λ(b)."""
    rng = np.random.default_rng(0)
    x, _ = np.linalg.qr(rng.normal(size=(12, 6)))
    b = np.array([1.5, -0.2, 0.05, -2.0, 0.45, -0.7])
    y = x @ b + (np.eye(12) - x @ x.T) @ rng.normal(size=12)  # residual orthogonal to X
    return jnp.asarray(x), jnp.asarray(y), b, jnp.asarray(rng.normal(size=6))


def _run(tx, grad_fn, w0, steps):
    def body(carry, _):
        w, state = carry
        u, state = tx.update(grad_fn(w), state, w)
        return (optax.apply_updates(w, u), state), None

    (w, _), _ = jax.lax.scan(body, (w0, tx.init(w0)), None, length=steps)
    return np.asarray(w)


# --- soft_threshold -------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_soft_threshold_matches_scalar_reference(t):
    xs = [-2.0, -1.0, -0.3, -0.1, -0.0, 0.0, 0.1, 0.3, 1.0, 2.5]  # includes |x| == t
    with jax.enable_x64(True):
        got = np.asarray(soft_threshold(jnp.array(xs, jnp.float64), t))
    np.testing.assert_array_equal(got, [_soft_scalar(x, t) for x in xs])


def test_soft_threshold_optimality_condition():
    """y = S_t(x) solves min ½(y−x)² + t|y|: x − y = t·sign(y) if y ≠ 0, else |x| ≤ t."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (200,), jnp.float64) * 2
        t = 0.7
        y = np.asarray(soft_threshold(x, t))
        x = np.asarray(x)
        nz = y != 0
        np.testing.assert_allclose(x[nz] - y[nz], t * np.sign(y[nz]), rtol=1e-14)
        assert np.all(np.abs(x[~nz]) <= t)
        assert 0 < nz.sum() < nz.size


def test_soft_threshold_pytree_and_per_leaf_thresholds():
    x = {"a": jnp.array([1.0, -3.0]), "b": jnp.array([[0.5]])}
    assert_trees_all_equal(
        soft_threshold(x, {"a": 1.0, "b": 0.25}),
        {"a": jnp.array([0.0, -2.0]), "b": jnp.array([[0.25]])},
    )
    assert_trees_all_equal(
        soft_threshold(x, 0.5), {"a": jnp.array([0.5, -2.5]), "b": jnp.array([[0.0]])}
    )
    with pytest.raises(ValueError, match="threshold"):
        soft_threshold(x, -1.0)


# --- prox transforms: closed forms at one step ----------------------------------------------


def _random_pair(shape=(5, 4), seed=0, dtype=jnp.float64):
    k1, k2 = jax.random.split(jax.random.key(seed))
    w = jax.random.normal(k1, shape, dtype)
    u = 0.5 * jax.random.normal(k2, shape, dtype)
    return w, u


def test_prox_l1_lands_on_soft_threshold_with_exact_zeros():
    with jax.enable_x64(True):
        w, u = _random_pair()
        lr, l1 = 0.1, 4.0
        new = np.asarray(_step(prox_l1(l1, lr), u, w))
        ref = np.asarray(soft_threshold(w + u, lr * l1))
        np.testing.assert_allclose(new, ref, rtol=1e-15, atol=1e-16)
        np.testing.assert_array_equal(new == 0, ref == 0)
        assert 0 < (new == 0).sum() < new.size
        # Optimality of the prox: (v − w⁺)/lr ∈ l1·∂|w⁺|.
        v = np.asarray(w + u)
        nz = new != 0
        np.testing.assert_allclose((v - new)[nz] / lr, l1 * np.sign(new[nz]), rtol=1e-12)
        assert np.all(np.abs(v[~nz]) <= lr * l1)


def test_prox_elastic_net_closed_form_and_optimality():
    with jax.enable_x64(True):
        w, u = _random_pair(seed=1)
        lr, l1, l2 = 0.1, 3.0, 2.0
        new = np.asarray(_step(prox_elastic_net(l1, l2, lr), u, w))
        v = np.asarray(w + u)
        ref = np.sign(v) * np.maximum(np.abs(v) - lr * l1, 0) / (1 + lr * l2)
        np.testing.assert_allclose(new, ref, rtol=1e-14, atol=1e-16)
        np.testing.assert_array_equal(new == 0, ref == 0)
        nz = new != 0
        # v − w⁺ = lr·(l1·sign(w⁺) + l2·w⁺) on the support.
        np.testing.assert_allclose(
            (v - new)[nz], lr * (l1 * np.sign(new[nz]) + l2 * new[nz]), rtol=1e-12
        )


@pytest.mark.parametrize("shape", [(6, 4), (3, 3, 2, 5), (7,)])
def test_prox_group_lasso_block_soft_threshold(shape):
    """Groups = last axis (Dense column, Conv output filter, each entry of a 1-d leaf)."""
    with jax.enable_x64(True):
        w, u = _random_pair(shape, seed=2)
        v = np.asarray(w + u).reshape((-1, shape[-1]) if len(shape) > 1 else (1, -1))
        size = v.shape[0]  # |g|: all axes but the last (1 for a 1-d leaf)
        norms = np.linalg.norm(v, axis=0)
        lr = 0.1
        lam = float(np.median(norms)) / (lr * np.sqrt(size))  # about half the groups vanish
        tau = lr * lam * np.sqrt(size)
        new = np.asarray(_step(prox_group_lasso(lam, lr), u, w))
        ref = (np.maximum(0, 1 - tau / norms) * v).reshape(shape)
        np.testing.assert_allclose(new, ref, rtol=1e-13, atol=1e-16)
        np.testing.assert_array_equal(new == 0, ref == 0)
        zero_groups = norms <= tau
        assert zero_groups.any() and not zero_groups.all()
        # Optimality: v_g − w_g = τ·w_g/‖w_g‖ on surviving groups.
        new2 = new.reshape(v.shape)
        keep = ~zero_groups
        np.testing.assert_allclose(
            (v - new2)[:, keep], tau * new2[:, keep] / np.linalg.norm(new2[:, keep], axis=0)
        )


def test_prox_group_lasso_in_a_diagonal_metric_satisfies_optimality():
    """argmin ½‖w−v‖²_D + c‖w_g‖: D(v − w) = c·w/‖w‖ on kept groups, ‖Dv‖ <= c on zero ones."""
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
        v = jax.random.normal(k1, (9, 8), jnp.float64) * 2.0
        d = 10 ** jax.random.uniform(k2, (9, 8), jnp.float64, -6.0, 2.0)  # Adam-like spread
        w = jax.random.normal(k3, (9, 8), jnp.float64)
        norms_dv = np.linalg.norm(np.asarray(d * v), axis=0)
        lr = 0.1
        lam = float(np.median(norms_dv)) / (lr * 3.0)  # √|g| = 3; about half the groups vanish
        c = lr * lam * 3.0
        new = np.asarray(_step(prox_group_lasso(lam, lr), v - w, w, metric=d))
        v, d = np.asarray(v), np.asarray(d)
        zero = norms_dv <= c
        assert zero.any() and not zero.all()
        np.testing.assert_array_equal(np.all(new == 0, axis=0), zero)
        kept = new[:, ~zero]
        np.testing.assert_allclose(
            (d * (v - new))[:, ~zero],
            c * kept / np.linalg.norm(kept, axis=0),
            rtol=1e-10,
            atol=1e-12 * c,
        )


def test_prox_group_lasso_outgoing_shrinks_rows_by_hand_and_in_a_metric():
    """Rows of a Dense kernel: block soft-thresholding by hand, and the metric prox's
    optimality D(v − w) = c·w/‖w‖ on kept rows, ‖Dv‖ <= c on removed ones."""
    with jax.enable_x64(True):
        v = np.array([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0], [0.0, 6.0, 8.0]])  # ‖rows‖ 5, 0.5, 10
        w = np.ones((3, 3))
        c = 0.1 * 10.0 * np.sqrt(3)  # lr·λ·√|g|, |g| = 3 (the row's length)
        new = np.asarray(_step(prox_group_lasso(10.0, 0.1, groups="outgoing"), v - w, w))
        expected = np.array([1 - c / 5, 0.0, 1 - c / 10])[:, None] * v
        np.testing.assert_allclose(new, expected, rtol=1e-14)
        assert np.all(new[1] == 0)
        d = np.array([[1.0, 1e-3, 10.0], [1.0, 2.0, 3.0], [1e2, 1.0, 1e-4]])
        new = np.asarray(_step(prox_group_lasso(10.0, 0.1, groups="outgoing"), v - w, w, metric=d))
        zero = np.linalg.norm(d * v, axis=1) <= c
        np.testing.assert_array_equal(zero, [False, True, False])
        np.testing.assert_array_equal(np.all(new == 0, axis=1), zero)
        kept = new[~zero]
        np.testing.assert_allclose(
            (d * (v - new))[~zero], c * kept / np.linalg.norm(kept, axis=1, keepdims=True),
            rtol=1e-10,
        )  # fmt: skip
    with pytest.raises(ValueError, match="groups"):
        prox_group_lasso(1.0, 0.1, groups="columns")


def test_prox_group_lasso_zero_group_and_zero_strength_is_finite():
    w = jnp.zeros((3, 2))
    new = _step(prox_group_lasso(0.0, 0.1), jnp.zeros((3, 2)), w)
    assert_trees_all_equal(new, jnp.zeros((3, 2)))
    new = _step(prox_group_lasso(1.0, 0.1), jnp.zeros((3, 2)), w)
    assert_trees_all_equal(new, jnp.zeros((3, 2)))


def test_add_l1_subgradient_sign_of_zero_is_zero():
    w = jnp.array([-2.0, 0.0, 3.0])
    g = jnp.array([0.5, 0.5, 0.5])
    tx = add_l1_subgradient(0.1)
    out, _ = tx.update(g, tx.init(w), w)
    np.testing.assert_allclose(out, [0.4, 0.5, 0.6], rtol=1e-6)
    assert jax.grad(jnp.abs)(0.0) == 1.0  # why a loss-side |w| term differs at zero


@pytest.mark.parametrize(
    "make",
    [
        lambda s: prox_l1(s, 0.1),
        lambda s: prox_elastic_net(s, s, 0.1),
        lambda s: prox_group_lasso(s, 0.1),
        lambda s: add_l1_subgradient(s),
    ],
    ids=["l1", "elastic_net", "group_lasso", "l1_subgradient"],
)
@pytest.mark.parametrize("jit", [False, True])
def test_zero_strength_passes_updates_through_exactly(make, jit):
    w, u = _random_pair((4, 3), seed=3, dtype=jnp.float32)

    def apply(s):
        tx = make(s)
        return tx.update(u, tx.init(w), w)[0]

    fn = jax.jit(apply) if jit else apply
    assert_trees_all_equal(fn(0.0), u)
    assert_trees_all_equal(fn(jnp.float32(0.0)), u)


def test_prox_l1_per_coordinate_metric():
    w = jnp.array([1.0, 1.0, -1.0])
    d = jnp.array([1.0, 4.0, 0.5])
    new = _step(prox_l1(2.0, 0.1), jnp.zeros(3), w, metric=d)
    # thresholds lr·l1/d = 0.2, 0.05, 0.4
    np.testing.assert_allclose(new, [0.8, 0.95, -0.6], rtol=1e-6)


def test_strength_and_learning_rate_schedules():
    w = jnp.array([1.0, -1.0])
    tx = prox_l1(lambda c: 0.1 * (c + 1), lambda c: 1.0 / (c + 1))
    state = tx.init(w)
    u, state = tx.update(jnp.zeros(2), state, w)  # count 0: threshold 1·0.1
    np.testing.assert_allclose(u, [-0.1, 0.1], rtol=1e-6)
    u, state = tx.update(jnp.zeros(2), state, w)  # count 1: threshold 0.5·0.2
    np.testing.assert_allclose(u, [-0.1, 0.1], rtol=1e-6)
    u, state = tx.update(jnp.zeros(2), state, w)  # count 2: threshold (1/3)·0.3
    np.testing.assert_allclose(u, [-0.1, 0.1], rtol=1e-6)
    assert int(state.count) == 3


# --- solver level: lasso with an orthonormal design -----------------------------------------


def test_ista_solves_lasso_to_float64_precision_with_exact_zeros():
    with jax.enable_x64(True):
        x, y, b, w0 = _lasso_problem()
        lam, lr = 0.5, 0.5
        w_star = np.sign(b) * np.maximum(np.abs(b) - lam, 0)

        def grad(w):
            return x.T @ (x @ w - y)

        w = _run(optax.chain(optax.sgd(lr), prox_l1(lam, lr)), grad, w0, 200)
        np.testing.assert_allclose(w, w_star, rtol=0, atol=1e-14)
        np.testing.assert_array_equal(w == 0, w_star == 0)

        # Subgradient steps get near the solution but leave no exact zeros.
        tx = optax.chain(add_l1_subgradient(lam), optax.sgd(0.05))
        w_sub = _run(tx, grad, w0, 2000)
        np.testing.assert_allclose(w_sub, w_star, atol=0.05)
        assert not np.any(w_sub == 0)

        # A Euclidean prox after heavy ball solves the lasso with (1 − μ)·λ instead.
        mu = 0.9
        tx = optax.chain(optax.sgd(0.1, momentum=mu), prox_l1(lam, 0.1))
        w_mom = _run(tx, grad, w0, 1500)
        shrunk = (1 - mu) * lam
        np.testing.assert_allclose(
            w_mom, np.sign(b) * np.maximum(np.abs(b) - shrunk, 0), rtol=0, atol=1e-13
        )


def test_adam_prox_at_zero_strength_equals_adam_and_thresholds_in_adam_metric():
    w = {"kernel": jnp.array([[0.3, -1.0], [2.0, 0.01]])}
    g = {"kernel": jnp.array([[0.1, -0.2], [0.3, 0.05]])}
    tx0 = adam_prox(0.01, prox_l1(0.0, 0.01))
    ref = optax.adam(0.01)
    s0, sr = tx0.init(w), ref.init(w)
    for _ in range(3):
        u0, s0 = tx0.update(g, s0, w)
        ur, sr = ref.update(g, sr, w)
        assert_trees_all_equal(u0, ur)
    # First Adam step: m̂ = g, √v̂ = |g|, so the threshold is lr·λ/(|g|+eps) per coordinate.
    lam, lr = 0.5, 0.01
    tx = adam_prox(lr, prox_l1(lam, lr))
    new = _step(tx, g, w)
    v = w["kernel"] - lr * jnp.sign(g["kernel"])
    expected = soft_threshold(v, lr * lam / (jnp.abs(g["kernel"]) + 1e-8))
    # Elementwise, ≤ 8 roundings on either side (the threshold's division, Adam's moments);
    # the soft threshold may cancel, so relative to the scale.
    assert_trees_close_to_scale(new, {"kernel": expected}, 2 * gamma(8))


# --- vmap / jit / masks / errors ------------------------------------------------------------


_FACTORIES = {
    "prox_l1": lambda s, lr, m: prox_l1(s, lr, m),
    "prox_elastic_net": lambda s, lr, m: prox_elastic_net(s, 0.5 * s, lr, m),
    "prox_group_lasso": lambda s, lr, m: prox_group_lasso(s, lr, m),
    "add_l1_subgradient": lambda s, lr, m: optax.chain(add_l1_subgradient(s, m), optax.sgd(lr)),
    "adam_prox": lambda s, lr, m: adam_prox(lr, prox_l1(s, lr, m)),
}


def _params():
    k1, k2 = jax.random.split(jax.random.key(7))
    # Few distinct leaf shapes keep the eager (op-by-op) reference runs cheap to compile.
    return {
        "Dense_0": {"kernel": jax.random.normal(k1, (3, 2)), "bias": jnp.full((2,), 0.05)},
        "Dense_1": {"kernel": 0.1 * jax.random.normal(k2, (3, 2)), "bias": jnp.zeros((2,))},
    }


def _train(name, strength, lr, mask=None, steps=2):
    params = _params()
    target = jax.tree.map(lambda p: 0.5 * p, params)
    tx = _FACTORIES[name](strength, lr, mask)
    state = tx.init(params)
    for _ in range(steps):
        grads = jax.tree.map(lambda p, t: p - t, params, target)
        if name.startswith("prox"):  # the prox transforms come last, after an SGD step
            grads = jax.tree.map(lambda g: -lr * g, grads)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_vmap_over_strength_and_lr_equals_python_loop():
    """Each transform built inside jit(vmap(...)) over traced (λ, lr) equals the eager loop
    over Python floats (one compilation for all transforms)."""
    strengths = [0.0, 0.3, 2.0]
    lrs = [0.1, 0.2, 0.05]

    def members(s, lr):
        return {name: _train(name, s, lr) for name in _FACTORIES}

    batched = jax.jit(jax.vmap(members))(jnp.array(strengths), jnp.array(lrs))
    p0 = jax.tree.map(lambda p: jnp.maximum(jnp.max(jnp.abs(p)), 0.1), _params())  # ≥ lr·λ
    for name in _FACTORIES:
        for i, (s, lr) in enumerate(zip(strengths, lrs, strict=True)):
            member = jax.tree.map(lambda x, i=i: x[i], batched[name])
            # Fused vs eager: 2 steps of ≤ ~20 elementwise roundings each. The gradients are
            # p − 0.5·p (no cancellation; exactly 0 where p is), so Adam's division by
            # |g| + eps keeps their relative error: 2·γ_40 of the scale of the terms (the
            # initial parameters; a threshold may cancel a weight to near 0), float32.
            assert_trees_close_to_scale(member, _train(name, s, lr), 2 * gamma(40), scale=p0)


@pytest.mark.parametrize("name", sorted(_FACTORIES))
def test_mask_is_respected(name):
    """Masked-out leaves get exactly the unregularized result, selected leaves do not."""
    mask = {"Dense_0": {"kernel": True, "bias": False}, "Dense_1": {"kernel": False, "bias": True}}
    got = _train(name, 1.0, 0.1, mask)
    plain = _train(name, 0.0, 0.1)
    for layer, leaf in [("Dense_0", "bias"), ("Dense_1", "kernel")]:
        assert_trees_all_equal(got[layer][leaf], plain[layer][leaf])
    assert not np.allclose(got["Dense_0"]["kernel"], plain["Dense_0"]["kernel"])
    # A callable mask gives the same result.
    assert_trees_all_equal(_train(name, 1.0, 0.1, lambda p: mask), got)


@pytest.mark.parametrize("name", sorted(_FACTORIES))
def test_errors_name_the_argument(name):
    with pytest.raises(ValueError, match="l1|strength"):
        _FACTORIES[name](-0.1, 0.1, None)
    with pytest.raises(ValueError, match="l1|strength"):
        _FACTORIES[name](float("nan"), 0.1, None)
    if name != "add_l1_subgradient":  # there the learning rate belongs to optax.sgd
        with pytest.raises(ValueError, match="learning_rate"):
            _FACTORIES[name](0.1, -1.0, None)
    params = _params()
    tx = _FACTORIES[name](0.1, 0.1, None)
    state = tx.init(params)
    with pytest.raises(ValueError, match="params"):
        tx.update(params, state)
    bad_mask = {"Dense_0": {"kernel": True}}
    with pytest.raises(ValueError, match="mask"):
        _FACTORIES[name](0.1, 0.1, bad_mask).init(params)
    with pytest.raises(TypeError, match="mask"):
        _FACTORIES[name](0.1, 0.1, jax.tree.map(lambda _: 1.0, params)).init(params)


class _Custom(nnx.Module):
    """A weight matrix not named ``kernel``: the default selects nothing."""

    def __init__(self):
        self.w = nnx.Param(jnp.ones((3, 2)))
        self.b = nnx.Param(jnp.ones(2))


@pytest.mark.parametrize("name", sorted(_FACTORIES))
def test_nnx_states_regularize_kernels_as_linen_trees_do(name):
    """On an NNX state (paths end in ``.value``) the default acts on the kernels only, exactly
    as on the same arrays as a pure dict (the Linen layout); biases and BN scales pass through."""
    state = nnx.state(NnxNet(nnx.Rngs(0)), nnx.Param)
    pure = nnx.to_pure_dict(state)
    grads = jax.tree.map(lambda p: 0.5 * p + 0.1, state)
    tx = _FACTORIES[name](1.0, 0.5, None)
    new, _ = tx.update(grads, tx.init(state), state)
    ref, _ = tx.update(nnx.to_pure_dict(grads), tx.init(pure), pure)
    new = nnx.to_pure_dict(new)
    assert_trees_all_equal(new, ref)
    plain = _FACTORIES[name](0.0, 0.5, None)
    base = nnx.to_pure_dict(plain.update(grads, plain.init(state), state)[0])
    for layer, leaf in [("dense_0", "bias"), ("bn_0", "scale"), ("bn_0", "bias"), ("head", "bias")]:
        assert_trees_all_equal(new[layer][leaf], base[layer][leaf])
    for layer in ("dense_0", "head"):
        assert not np.allclose(new[layer]["kernel"], base[layer]["kernel"])
    optax.apply_updates(state, plain.update(grads, plain.init(state), state)[0])  # a State again


@pytest.mark.parametrize("name", sorted(_FACTORIES))
def test_an_empty_selection_of_a_model_with_matrices_is_an_error(name):
    custom = nnx.state(_Custom(), nnx.Param)
    with pytest.raises(ValueError, match="mask"):
        _FACTORIES[name](0.1, 0.1, None).init(custom)
    with pytest.raises(ValueError, match="mask"):
        _FACTORIES[name](0.1, 0.1, "no_such_layer").init(_params())
    tx = _FACTORIES[name](0.1, 0.1, "w$")
    tx.update(custom, tx.init(custom), custom)
    # No matrix at all: nothing selected passes the updates through, as before.
    vec = {"bias": jnp.ones(3)}
    tx = _FACTORIES[name](0.1, 0.1, None)
    out, _ = tx.update(vec, tx.init(vec), vec)
    if name.startswith("prox"):
        assert_trees_all_equal(out, vec)


def test_check_hyperparameter():
    assert check_hyperparameter("strength", 0.0) == 0.0
    assert check_hyperparameter("strength", np.float32(3)) == 3
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="strength"):
            check_hyperparameter("strength", bad)
    with pytest.raises(ValueError, match="momentum"):
        check_hyperparameter("momentum", 1.0, upper=1.0)
    with pytest.raises(ValueError, match="scalar"):
        check_hyperparameter("strength", [0.1, 0.2])
    with pytest.raises(TypeError, match="strength"):
        check_hyperparameter("strength", "0.1")
    # Tracers and schedules pass through unchecked.
    jax.jit(lambda s: check_hyperparameter("strength", s))(-1.0)
    check_hyperparameter("strength", lambda count: -1.0)


def test_doctests():
    doctest.testmod(wdjax.transforms, raise_on_error=True)
    assert doctest.testmod(wdjax.prox, raise_on_error=True).attempted > 0
