"""Tests for wdjax.optim.make_optimizer: closed forms, peers' formulas, vmap/jit, masks, errors."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import (
    U32,
    U64,
    NnxNet,
    adam_drift,
    assert_trees_all_equal,
    assert_trees_close_to_scale,
    gamma,
)

import wdjax
import wdjax.masks
import wdjax.optim
import wdjax.penalties
from wdjax.optim import OPTIMIZERS, STRATEGIES, check_hyperparameter, make_optimizer
from wdjax.prox import prox_l1


def _run(tx, grad_fn, w0, steps):
    def body(carry, _):
        w, state = carry
        u, state = tx.update(grad_fn(w), state, w)
        return (optax.apply_updates(w, u), state), None

    (w, _), _ = jax.lax.scan(body, (w0, tx.init(w0)), None, length=steps)
    return w


# Per optimizer: learning rate, steps and hyper that converge to float64 precision.
_SETTINGS = {
    "sgd": (0.5, 200, {}),
    "momentum": (0.1, 1500, {"momentum": 0.9}),
    "adam": (0.05, 3000, {}),
}


def _orthonormal_design():
    rng = np.random.default_rng(0)
    x, _ = np.linalg.qr(rng.normal(size=(12, 6)))
    b = np.array([1.5, -0.2, 0.05, -2.0, 0.45, -0.7])
    y = x @ b + (np.eye(12) - x @ x.T) @ rng.normal(size=12)
    return jnp.asarray(x), jnp.asarray(y), b, jnp.asarray(rng.normal(size=6))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_l1_prox_solves_lasso_exactly_for_every_base_optimizer(optimizer):
    """f = ½‖Xw − y‖², XᵀX = I: the minimizer of f + λ‖w‖₁ is sign(b)·max(|b| − λ, 0)."""
    lr, steps, hyper = _SETTINGS[optimizer]
    with jax.enable_x64(True):
        x, y, b, w0 = _orthonormal_design()
        lam = 0.5
        w_star = np.sign(b) * np.maximum(np.abs(b) - lam, 0)
        tx = make_optimizer(optimizer, lr, "l1_prox", lam, **hyper)
        w = np.asarray(_run(tx, lambda w: x.T @ (x @ w - y), w0, steps))
    np.testing.assert_allclose(w, w_star, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(w == 0, w_star == 0)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_elastic_net_and_group_lasso_prox_fixed_points(optimizer):
    """sklearn ElasticNet(alpha, l1_ratio) and the group lasso on f = ½‖W − B‖²."""
    lr, steps, hyper = _SETTINGS[optimizer]
    rng = np.random.default_rng(1)
    big_b = rng.normal(size=(3, 5)) * np.array([1.0, 0.1, 1.0, 0.2, 1.0])
    lam, rho = 0.4, 0.3
    with jax.enable_x64(True):
        w0 = {"kernel": jnp.asarray(rng.normal(size=(3, 5)))}

        def grad(w):
            return {"kernel": w["kernel"] - big_b}

        tx = make_optimizer(optimizer, lr, "elastic_net_prox", lam, l1_ratio=rho, **hyper)
        w = np.asarray(_run(tx, grad, w0, steps)["kernel"])
        expected = np.sign(big_b) * np.maximum(np.abs(big_b) - lam * rho, 0)
        expected /= 1 + lam * (1 - rho)
        np.testing.assert_allclose(w, expected, rtol=0, atol=1e-14)
        np.testing.assert_array_equal(w == 0, expected == 0)

        tx = make_optimizer(optimizer, lr, "group_lasso_prox", lam, **hyper)
        w = np.asarray(_run(tx, grad, w0, steps)["kernel"])
        norms = np.linalg.norm(big_b, axis=0)
        expected = np.maximum(0, 1 - lam * np.sqrt(3) / norms) * big_b
        np.testing.assert_allclose(w, expected, rtol=0, atol=1e-14)
        np.testing.assert_array_equal(np.all(w == 0, axis=0), norms <= lam * np.sqrt(3))
        assert 0 < np.sum(norms <= lam * np.sqrt(3)) < 5


def test_group_lasso_prox_outgoing_fixed_point_removes_rows():
    """f = ½‖W − B‖² with outgoing groups (rows, |g| = 5): W_i = max(0, 1 − λ√5/‖B_i‖)·B_i."""
    lr, steps, hyper = _SETTINGS["adam"]
    rng = np.random.default_rng(2)
    big_b = rng.normal(size=(4, 5)) * np.array([[1.0], [0.1], [1.0], [0.2]])
    lam = 0.2
    with jax.enable_x64(True):
        w0 = {"kernel": jnp.asarray(rng.normal(size=(4, 5)))}
        tx = make_optimizer("adam", lr, "group_lasso_prox", lam, groups="outgoing", **hyper)
        w = np.asarray(_run(tx, lambda w: {"kernel": w["kernel"] - big_b}, w0, steps)["kernel"])
    norms = np.linalg.norm(big_b, axis=1, keepdims=True)
    expected = np.maximum(0, 1 - lam * np.sqrt(5) / norms) * big_b
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(np.all(w == 0, axis=1), norms[:, 0] <= lam * np.sqrt(5))
    assert 0 < np.sum(norms <= lam * np.sqrt(5)) < 4
    with pytest.raises(ValueError, match="groups"):
        make_optimizer("adam", lr, "group_lasso_prox", lam, groups="rows")
    with pytest.raises(TypeError, match="groups"):
        make_optimizer("adam", lr, "l1_prox", lam, groups="outgoing")


@pytest.mark.parametrize("reg", ["l1_prox", "elastic_net_prox"])
def test_prox_strategies_match_scikit_learn(reg):
    """f = (1/2n)‖Xw − y‖²: l1_prox λ is Lasso(alpha=λ); elastic_net_prox (λ, ρ) is
    ElasticNet(alpha=λ, l1_ratio=ρ) (both without intercept)."""
    from sklearn.linear_model import ElasticNet, Lasso

    rng = np.random.default_rng(4)
    n = 30
    x_np = rng.normal(size=(n, 8))
    y_np = x_np @ np.array([2.0, -1.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.1]) + 0.1 * rng.normal(size=n)
    alpha, rho = 0.1, 0.6
    if reg == "l1_prox":
        ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=100_000)
        hyper = {}
    else:
        ref = ElasticNet(
            alpha=alpha, l1_ratio=rho, fit_intercept=False, tol=1e-14, max_iter=100_000
        )
        hyper = {"l1_ratio": rho}
    expected = ref.fit(x_np, y_np).coef_
    lr = 1.0 / np.linalg.eigvalsh(x_np.T @ x_np / n).max()
    with jax.enable_x64(True):
        x, y = jnp.asarray(x_np), jnp.asarray(y_np)
        tx = make_optimizer("sgd", lr, reg, alpha, **hyper)
        w = np.asarray(_run(tx, lambda w: x.T @ (x @ w - y) / n, jnp.zeros(8), 3000))
    np.testing.assert_allclose(w, expected, atol=1e-9)
    np.testing.assert_array_equal(w == 0, expected == 0)
    assert np.any(expected == 0)


def test_ridge_closed_form_with_coupled_l2():
    """GD on (1/2n)‖Xw − y‖² + (λ/2)‖w‖² converges to (XᵀX/n + λI)⁻¹Xᵀy/n."""
    rng = np.random.default_rng(2)
    n, lam = 40, 0.3
    x_np, y_np = rng.normal(size=(n, 5)), rng.normal(size=n)
    expected = np.linalg.solve(x_np.T @ x_np / n + lam * np.eye(5), x_np.T @ y_np / n)
    with jax.enable_x64(True):
        x, y = jnp.asarray(x_np), jnp.asarray(y_np)
        tx = make_optimizer("sgd", 0.3, "l2", lam)
        w = _run(tx, lambda w: x.T @ (x @ w - y) / n, jnp.zeros(5), 600)
    np.testing.assert_allclose(w, expected, rtol=1e-12)


def _flax_params():
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    return {
        "Dense_0": {"kernel": jax.random.normal(k1, (4, 3)), "bias": jnp.full((3,), 0.1)},
        "BatchNorm_0": {"scale": jnp.ones((3,)), "bias": jnp.zeros((3,))},
        "Dense_1": {"kernel": jax.random.normal(k2, (3, 2)), "bias": jax.random.normal(k3, (2,))},
    }


def _quadratic_grad(params):
    return jax.tree.map(lambda p: p - 0.3 * jnp.ones_like(p) + 0.1 * p**2, params)


def _trajectory(tx, steps=12, params=None):
    """Parameters after each step on the quadratic, op by op (no jit compilation)."""
    params = _small_params() if params is None else params
    state = tx.init(params)
    out = []
    for _ in range(steps):
        updates, state = tx.update(_quadratic_grad(params), state, params)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out


def _small_params():
    k1, k2 = jax.random.split(jax.random.key(5))
    return {
        "Dense_0": {"kernel": jax.random.normal(k1, (3, 2)), "bias": jax.random.normal(k2, (2,))}
    }


def _final(tx, steps=3, params=None):
    """Parameters after ``steps`` steps, op by op (no jit) on a small Dense tree."""
    params = _small_params() if params is None else params
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(_quadratic_grad(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_wd_with_adam_equals_optax_adamw_leaf_for_leaf():
    mask = wdjax.masks.decay_mask
    ours = _trajectory(make_optimizer("adam", 1e-2, "wd", 0.1, b1=0.8, eps=1e-6))
    ref = _trajectory(optax.adamw(1e-2, b1=0.8, eps=1e-6, weight_decay=0.1, mask=mask))
    for a, b in zip(ours, ref, strict=True):
        assert_trees_all_equal(a, b)


def test_wd_paper_equals_adamw_with_decay_divided_by_lr():
    # Two formulas (λ·w vs α·(λ/α)·w) round differently: float64, 12 Adam steps of elementwise
    # maths (n ≈ 10 roundings per step) drift by ≤ adam_drift(12, α, 10).
    alpha, lam = 1e-2, 1e-3
    tol = adam_drift(12, alpha, 10)
    with jax.enable_x64(True):
        params = _small_params()
        ours = _trajectory(make_optimizer("adam", alpha, "wd_paper", lam), params=params)
        ref = _trajectory(
            optax.adamw(alpha, weight_decay=lam / alpha, mask=wdjax.masks.decay_mask),
            params=params,
        )
        assert_trees_close_to_scale(ours[-1], ref[-1], tol)
        # With a schedule multiplier η(t): w ← w − η(t)·(α·p + λ·w), i.e. adamw(α·η, λ/α).
        eta = optax.linear_schedule(1.0, 0.1, 10)
        ours = _trajectory(
            make_optimizer("adam", alpha, "wd_paper", lam, schedule=eta), params=params
        )
        ref = _trajectory(
            optax.adamw(
                lambda t: alpha * eta(t), weight_decay=lam / alpha, mask=wdjax.masks.decay_mask
            ),
            params=params,
        )
        assert_trees_close_to_scale(ours[-1], ref[-1], tol)


@pytest.mark.parametrize("nesterov", [False, True])
def test_l2_with_momentum_is_torch_sgd_weight_decay(nesterov):
    """torch.optim.SGD(lr, momentum=μ, weight_decay=λ, nesterov): g ← g + λw; b ← μb + g;
    w ← w − lr·b (nesterov: w ← w − lr·(g + μb)); the first b is g."""
    lr, mu, lam = 0.05, 0.9, 0.01
    tx = make_optimizer(
        "momentum", lr, "l2", lam, momentum=mu, nesterov=nesterov, mask=lambda p: True
    )
    with jax.enable_x64(True):  # ours in float64 too: the formula below is another program
        params = _small_params()
        ours = _trajectory(tx, steps=10, params=params)
        params = jax.tree.map(np.asarray, params)
        buf = None
        for step in range(10):
            g = jax.tree.map(np.asarray, _quadratic_grad(params))
            g = jax.tree.map(lambda g, w: g + lam * w, g, params)
            buf = g if buf is None else jax.tree.map(lambda b, g: mu * b + g, buf, g)
            direction = jax.tree.map(lambda g, b: g + mu * b, g, buf) if nesterov else buf
            params = jax.tree.map(lambda w, d: w - lr * d, params, direction)
            # ≤ 8 roundings a step, carried by the buffer for ≤ 1/(1 − μ) = 10 steps, step+1 steps.
            assert_trees_close_to_scale(ours[step], params, 2 * gamma(8 * 10 * (step + 1), U64))


def test_l2_with_adam_differs_from_wd_with_adam():
    l2 = _trajectory(make_optimizer("adam", 1e-2, "l2", 0.5))[-1]
    wd = _trajectory(make_optimizer("adam", 1e-2, "wd", 0.5))[-1]
    diff = np.abs(l2["Dense_0"]["kernel"] - wd["Dense_0"]["kernel"]).max()
    assert diff > 1e-3
    assert_trees_all_equal(l2["Dense_0"]["bias"], wd["Dense_0"]["bias"])  # not decayed


@pytest.mark.numerics
def test_dead_input_weights_decay_geometrically_under_wd():
    """A Dense input that is always zero gets no data gradient: w_T = w_0·(1 − lr·λ)^T."""
    lr, lam, steps = 0.05, 0.2, 25
    x = jax.random.normal(jax.random.key(0), (16, 4)).at[:, 0].set(0.0)
    y = jax.random.normal(jax.random.key(1), (16, 3))
    params = {
        "Dense_0": {"kernel": jax.random.normal(jax.random.key(2), (4, 3)), "bias": jnp.zeros(3)}
    }

    def loss(p):
        out = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"].reshape(1, -1)
        return jnp.mean((out - y) ** 2)

    def train_all(params):  # one compilation for the three optimizers
        return {
            o: _run(make_optimizer(o, lr, "wd", lam), jax.grad(loss), params, steps)
            for o in OPTIMIZERS
        }

    expected = params["Dense_0"]["kernel"][0] * (1 - lr * lam) ** steps
    for optimizer, w in jax.jit(train_all)(params).items():
        # Elementwise (no cancellation: w·(1 − lr·λ) keeps its sign): ≤ 4 roundings a step in
        # either program, relative to the element itself.
        np.testing.assert_allclose(
            w["Dense_0"]["kernel"][0], expected, rtol=2 * gamma(4 * steps), err_msg=optimizer
        )
        assert not np.allclose(w["Dense_0"]["kernel"][1:], params["Dense_0"]["kernel"][1:])


def test_l1_strategy_is_the_keras_l1_gradient_on_a_dense_stack():
    """Keras loss CE + Σ l1·Σ|W| has gradient g_CE + l1·sign(W) on kernels (TF: sign(0) = 0);
    biases get g_CE only. Here g_CE is any gradient pytree of a two-layer Dense stack."""
    keys = jax.random.split(jax.random.key(0), 8)
    shapes = {
        "Dense_0": {"kernel": (4, 5), "bias": (5,)},
        "Dense_1": {"kernel": (5, 3), "bias": (3,)},
    }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda t: isinstance(t, tuple))
    params = treedef.unflatten(
        [jax.random.normal(k, s) for k, s in zip(keys[:4], leaves, strict=True)]
    )
    g = treedef.unflatten([jax.random.normal(k, s) for k, s in zip(keys[4:], leaves, strict=True)])
    params["Dense_0"]["kernel"] = params["Dense_0"]["kernel"].at[0, 0].set(0.0)
    lr, l1 = 0.1, 0.01
    tx = make_optimizer("sgd", lr, "l1", l1)
    updates, _ = tx.update(g, tx.init(params), params)
    for layer in ("Dense_0", "Dense_1"):
        k, gk = params[layer]["kernel"], g[layer]["kernel"]
        # Two roundings on either side; g + l1·sign(w) may cancel, so relative to the scale.
        want = {"kernel": -lr * (gk + l1 * jnp.sign(k)), "bias": -lr * g[layer]["bias"]}
        assert_trees_close_to_scale(updates[layer], want, 2 * gamma(3))
    # The zeroed kernel entry gets only the data gradient (jax.grad of |w| would add l1).
    assert updates["Dense_0"]["kernel"][0, 0] == -lr * g["Dense_0"]["kernel"][0, 0]


def _base(optimizer, lr):
    return {
        "sgd": optax.sgd(lr),
        "momentum": optax.sgd(lr, momentum=0.9),
        "adam": optax.adam(lr),
    }[optimizer]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_zero_strength_is_exactly_the_base_optimizer(optimizer):
    """λ = 0 (Python float or 0-d array) gives the base optimizer bit for bit (eager)."""
    ref = _final(_base(optimizer, 0.05))
    for reg in STRATEGIES:
        assert_trees_all_equal(_final(make_optimizer(optimizer, 0.05, reg, 0.0)), ref)
        assert_trees_all_equal(_final(make_optimizer(optimizer, 0.05, reg, jnp.zeros(()))), ref)


def _scan_final(optimizer, reg, strength, lr, steps=2):
    tx = make_optimizer(optimizer, lr, reg, strength)

    def body(carry, _):
        params, state = carry
        updates, state = tx.update(_quadratic_grad(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    params = _small_params()
    return jax.lax.scan(body, (params, tx.init(params)), None, length=steps)[0][0]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_vmap_over_strength_and_lr_built_inside_equals_python_loop(optimizer):
    """For every strategy: jit(vmap(...)) over traced (λ, lr), optimizer built inside, equals
    the eager loop over Python floats; its λ = 0 member equals the base optimizer (to 1–2 ulp:
    XLA fuses the multiply-adds of the jitted graph differently from eager execution)."""
    strengths = [0.0, 0.05, 0.5]
    lrs = [0.05, 0.1, 0.02]
    # Fused (jit) vs eager are different programs: float64; 2 steps of ≤ ~20 elementwise
    # roundings (Adam's eps amplification included in adam_drift), at the largest lr.
    tol = adam_drift(2, max(lrs), 20)

    def members(s, lr):  # one compilation for all strategies of this optimizer
        return {
            reg: _scan_final(optimizer, reg, 0.0 * s if reg == "none" else s, lr)
            for reg in STRATEGIES
        }

    with jax.enable_x64(True):
        batched = jax.jit(jax.vmap(members))(jnp.array(strengths), jnp.array(lrs))
        base = _final(_base(optimizer, lrs[0]), steps=2)
        expected = {
            reg: [
                _final(make_optimizer(optimizer, lr, reg, 0.0 if reg == "none" else s), steps=2)
                for s, lr in zip(strengths, lrs, strict=True)
            ]  # fmt: skip
            for reg in STRATEGIES
        }
    for reg in STRATEGIES:
        for i in range(len(lrs)):
            member = jax.tree.map(lambda a, i=i: a[i], batched[reg])
            assert_trees_close_to_scale(member, expected[reg][i], tol, err_msg=f"{reg} {i}")
        member0 = jax.tree.map(lambda a: a[0], batched[reg])
        assert_trees_close_to_scale(member0, base, tol, err_msg=reg)


def test_stacked_members_with_default_mask_and_no_recompilation():
    """Stacked params + vmapped init/update keep biases/scales untouched; new λ: no retrace."""
    traces = []

    @jax.jit
    def run(strengths, stacked):
        traces.append(1)

        def member(s, params):
            tx = make_optimizer("momentum", 0.1, "l1_prox", s)
            state = tx.init(params)
            updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
            return optax.apply_updates(params, updates)

        return jax.vmap(member)(strengths, stacked)

    stacked = jax.tree.map(lambda p: jnp.stack([p, p]), _flax_params())
    out = run(jnp.array([0.0, 100.0]), stacked)
    run(jnp.array([1.0, 2.0]), stacked)
    assert len(traces) == 1
    for layer, leaf in [("Dense_0", "bias"), ("BatchNorm_0", "scale"), ("Dense_1", "bias")]:
        assert_trees_all_equal(out[layer][leaf], stacked[layer][leaf])
    assert_trees_all_equal(out["Dense_0"]["kernel"][0], stacked["Dense_0"]["kernel"][0])
    assert np.all(out["Dense_0"]["kernel"][1] == 0)  # λ·lr/(1−μ) = 100 zeroes every kernel


@pytest.mark.parametrize("reg", STRATEGIES[1:])
def test_explicit_mask_is_respected(reg):
    """Only the selected leaf (here the bias, not the kernel) is regularized."""
    mask = {"Dense_0": {"kernel": False, "bias": True}}
    got = _final(make_optimizer("adam", 0.05, reg, 0.5, mask=mask))
    plain = _final(optax.adam(0.05))
    assert_trees_all_equal(got["Dense_0"]["kernel"], plain["Dense_0"]["kernel"])
    assert not np.allclose(got["Dense_0"]["bias"], plain["Dense_0"]["bias"])
    callable_mask = _final(make_optimizer("adam", 0.05, reg, 0.5, mask=lambda p: mask))
    assert_trees_all_equal(callable_mask, got)


def test_schedules_for_learning_rate_and_strength():
    sched = optax.linear_schedule(0.1, 0.01, 5)
    ours = _trajectory(make_optimizer("sgd", sched, "wd", lambda t: 0.1 * (t + 1)), steps=4)
    params = _small_params()
    mask = wdjax.masks.decay_mask(params)
    for t in range(4):
        g = _quadratic_grad(params)
        params = jax.tree.map(
            lambda w, g, m, t=t: w - sched(t) * (g + (0.1 * (t + 1) * w if m else 0.0)),
            params,
            g,
            mask,
        )
        # SGD, elementwise: ≤ 6 roundings a step on either side, t + 1 steps, float32.
        assert_trees_close_to_scale(ours[t], params, 2 * gamma(6 * (t + 1), U32))


def test_errors_name_the_argument():
    params = _flax_params()
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="reg"):
        make_optimizer("sgd", 0.1, "l3", 0.1)
    with pytest.raises(TypeError, match="momentum"):
        make_optimizer("sgd", 0.1, "l2", 0.1, momentum=0.9)
    with pytest.raises(TypeError, match="l1_ratio"):
        make_optimizer("sgd", 0.1, "l1_prox", 0.1, l1_ratio=0.5)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="strength"):
            make_optimizer("adam", 0.1, "wd", bad)
        with pytest.raises(ValueError, match="learning_rate"):
            make_optimizer("adam", bad, "wd", 0.1)
    with pytest.raises(ValueError, match="strength"):
        make_optimizer("sgd", 0.1, "none", 0.1)
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer("momentum", 0.1, "l1_prox", 0.1, momentum=1.0)
    with pytest.raises(ValueError, match="b2"):
        make_optimizer("adam", 0.1, "wd", 0.1, b2=1.5)
    with pytest.raises(ValueError, match="l1_ratio"):
        make_optimizer("sgd", 0.1, "elastic_net_prox", 0.1, l1_ratio=1.5)
    with pytest.raises(TypeError, match="learning_rate"):
        make_optimizer("adam", optax.constant_schedule(0.1), "wd_paper", 0.1)
    for reg in STRATEGIES[1:]:
        tx = make_optimizer("adam", 0.1, reg, 0.1)
        state = tx.init(params)
        with pytest.raises(ValueError, match="params"):
            tx.update(params, state)
        with pytest.raises(ValueError, match="mask"):
            make_optimizer("adam", 0.1, reg, 0.1, mask={"Dense_0": True}).init(params)
        with pytest.raises(ValueError, match="mask"):
            make_optimizer("adam", 0.1, reg, 0.1).init({"w": jnp.ones(3)})  # no kernel leaf
    assert check_hyperparameter("strength", 0.5) == 0.5


def test_default_mask_agrees_with_prox_l1_and_leaves_biases_alone():
    """make_optimizer's default and prox_l1's default are the same leaves (kernels only)."""
    params = _flax_params()
    grads = _quadratic_grad(params)
    ours = make_optimizer("sgd", 0.1, "l1_prox", 2.0)
    chained = optax.chain(optax.sgd(0.1), prox_l1(2.0, 0.1))
    got = ours.update(grads, ours.init(params), params)[0]
    assert_trees_all_equal(got, chained.update(grads, chained.init(params), params)[0])
    plain = optax.sgd(0.1).update(grads, optax.sgd(0.1).init(params), params)[0]
    for layer, leaf in [("Dense_0", "bias"), ("BatchNorm_0", "scale"), ("BatchNorm_0", "bias")]:
        assert_trees_all_equal(got[layer][leaf], plain[layer][leaf])
    assert_trees_all_equal(got["Dense_1"]["bias"], plain["Dense_1"]["bias"])
    assert not np.allclose(got["Dense_0"]["kernel"], plain["Dense_0"]["kernel"])


class _Custom(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones((3, 2)))


@pytest.mark.parametrize("reg", STRATEGIES[1:])
def test_nnx_states_and_empty_selections(reg):
    state = nnx.state(NnxNet(nnx.Rngs(0)), nnx.Param)
    pure = nnx.to_pure_dict(state)
    grads = jax.tree.map(lambda p: 0.5 * p + 0.1, state)
    for optimizer in ("adam", "sgd"):  # NNX state == pure dict (Linen layout), for each
        tx = make_optimizer(optimizer, 0.05, reg, 0.5)
        got = nnx.to_pure_dict(tx.update(grads, tx.init(state), state)[0])
        assert_trees_all_equal(got, tx.update(nnx.to_pure_dict(grads), tx.init(pure), pure)[0])
    base = optax.sgd(0.05)
    plain = nnx.to_pure_dict(base.update(grads, base.init(state), state)[0])
    assert_trees_all_equal(got["bn_0"], plain["bn_0"])
    assert_trees_all_equal(got["head"]["bias"], plain["head"]["bias"])
    assert not np.allclose(got["head"]["kernel"], plain["head"]["kernel"])
    custom = nnx.state(_Custom(), nnx.Param)
    with pytest.raises(ValueError, match="mask"):
        make_optimizer("adam", 0.05, reg, 0.5).init(custom)
    with pytest.raises(ValueError, match="mask"):
        make_optimizer("adam", 0.05, reg, 0.5, mask="hidden").init(
            {"head": {"kernel": custom["w"]}}
        )
    make_optimizer("adam", 0.05, reg, 0.5, mask="w$").init(custom)


def test_hidden_spec_leaves_the_output_layer_alone():
    model = wdjax.make_model("mlp", 10, hidden=(4, 3))
    params = model.init(jax.random.key(0), jnp.ones((1, 2, 2, 1)), False)["params"]
    grads = jax.tree.map(jnp.zeros_like, params)
    tx = make_optimizer("sgd", 0.1, "wd", 0.5, mask="hidden")
    got = tx.update(grads, tx.init(params), params)[0]
    assert_trees_all_equal(got["head"], jax.tree.map(jnp.zeros_like, params["head"]))
    for layer in ("dense_0", "dense_1"):
        assert_trees_close_to_scale(got[layer]["kernel"], -0.05 * params[layer]["kernel"], U32)


def test_inject_hyperparams_builds_updates_and_sets_strength():
    """optax.inject_hyperparams sees every numeric argument (not a **hyper dict)."""
    params = _small_params()
    grads = _quadratic_grad(params)
    inject = optax.inject_hyperparams(make_optimizer, static_args=("optimizer", "reg"))
    tx = inject("adam", learning_rate=1e-3, reg="wd", strength=1e-4)
    state = tx.init(params)
    assert set(state.hyperparams) == {"learning_rate", "strength"}
    state.hyperparams["strength"] = jnp.asarray(0.5)
    got, state = jax.jit(tx.update)(grads, state, params)
    ref = make_optimizer("adam", 1e-3, "wd", 0.5)
    want = ref.update(grads, ref.init(params), params)[0]
    # jit vs eager, one Adam step of ≤ ~10 elementwise roundings.
    assert_trees_close_to_scale(got, want, adam_drift(1, 1e-3, 10, u=U32))
    tx = inject("momentum", learning_rate=0.1, reg="l1_prox", strength=0.2, momentum=0.9)
    state = tx.init(params)
    state.hyperparams["momentum"] = jnp.asarray(0.5)
    got = tx.update(grads, state, params)[0]
    ref = make_optimizer("momentum", 0.1, "l1_prox", 0.2, momentum=0.5)
    # Injected float32 arrays vs Python floats (products such as lr·λ/(1 − μ) rounded in float64
    # first): ≤ 8 elementwise roundings on either side; a threshold may cancel: to the scale.
    want = ref.update(grads, ref.init(params), params)[0]
    assert_trees_close_to_scale(got, want, 2 * gamma(8))


def test_doctests():
    assert doctest.testmod(wdjax.optim, raise_on_error=True).attempted > 0
