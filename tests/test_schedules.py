"""Tests for wdjax.schedules: each kind against optax's schedules per member (one compile), the
epoch conversion, the schedule inside optimizers (sgd, wd_paper, prox), and the input checks."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import U64, assert_trees_close_to_scale, gamma

from wdjax import schedules
from wdjax.optim import make_optimizer

STEPS = 450
# float32, on the scale 1 of η. Per program: x = π·τ/D takes 2 roundings, |x| ≤ π, and |cos'| ≤ 1
# carries them: ≤ 2π·u; cos itself (XLA's polynomial) ≤ 4u; 1 + c, ·(1 − α), + α (·½ is exact):
# 3 roundings; the ramp η₀ + (1 − η₀)·t/W: 3 roundings; step's γ^n: ≤ 3 products. In all < 16u
# per program, so two programs (ours, optax's) differ by ≤ 2·γ_16 of the scale.
TOL = 2 * gamma(16)


def _ramp(init, warmup):
    """optax's linear warm-up from ``init`` to 1 (optax's linear_schedule is constant at W = 0)."""
    return optax.linear_schedule(init, 1.0, warmup) if warmup else optax.constant_schedule(1.0)


def _cosine_ref(total_steps, warmup_steps, warmup_init, alpha):
    return optax.warmup_cosine_decay_schedule(
        warmup_init, 1.0, warmup_steps, total_steps, end_value=alpha
    )


def _step_ref(boundaries, factor, warmup_steps, warmup_init):
    scales = {}
    for b in boundaries:  # a repeated boundary decays twice
        scales[b] = scales.get(b, 1.0) * factor
    decay = optax.piecewise_constant_schedule(1.0, scales)
    return lambda t: _ramp(warmup_init, warmup_steps)(t) * decay(t)


def _sgdr_ref(period, period_mult, alpha, warmup_steps, warmup_init):
    lengths = [period * period_mult**i for i in range(STEPS)]
    cycles = next(n for n in range(1, STEPS) if sum(lengths[:n]) >= STEPS)
    kwargs = [
        dict(init_value=1.0, peak_value=1.0, warmup_steps=0, decay_steps=d, end_value=alpha)
        for d in lengths[:cycles]
    ]
    return optax.join_schedules(
        [_ramp(warmup_init, warmup_steps), optax.sgdr_schedule(kwargs)], [warmup_steps]
    )


# Per kind: members (each parameter differs across them, traced) and optax's closed form.
MEMBERS = {
    "constant": ([{}, {}], lambda: optax.constant_schedule(1.0)),
    "cosine": (
        [
            dict(total_steps=300, warmup_steps=0, warmup_init=0.0, alpha=0.0),
            dict(total_steps=400, warmup_steps=10, warmup_init=0.0, alpha=0.1),
            dict(total_steps=250, warmup_steps=37, warmup_init=0.2, alpha=0.5),
            dict(total_steps=100, warmup_steps=1, warmup_init=0.5, alpha=1.0),
        ],
        _cosine_ref,
    ),
    "step": (
        [
            dict(boundaries=(50, 100, 150), factor=0.1, warmup_steps=0, warmup_init=0.0),
            dict(boundaries=(0, 120, 120), factor=0.5, warmup_steps=20, warmup_init=0.0),
            dict(boundaries=(30, 300, 449), factor=1.0, warmup_steps=5, warmup_init=0.3),
            dict(boundaries=(60, 61, 200), factor=0.25, warmup_steps=80, warmup_init=0.0),
        ],
        _step_ref,
    ),
    "sgdr": (
        [
            dict(period=7, period_mult=1, alpha=0.0, warmup_steps=0, warmup_init=0.0),
            dict(period=10, period_mult=2, alpha=0.1, warmup_steps=15, warmup_init=0.0),
            dict(period=3, period_mult=3, alpha=0.0, warmup_steps=4, warmup_init=0.25),
            dict(period=25, period_mult=1, alpha=0.5, warmup_steps=1, warmup_init=0.0),
        ],
        _sgdr_ref,
    ),
}


def _is_boundaries(x):
    return isinstance(x, tuple)  # one leaf: stacked to [members, boundaries]


@pytest.mark.parametrize("kind", schedules.SCHEDULES)
def test_each_kind_matches_optax_per_member_with_one_compile(kind):
    """jit(vmap) over members with different (traced) parameters, at every step of a range:
    each member's row equals optax's schedule and the un-vmapped call; new values: no retrace."""
    members, reference = MEMBERS[kind]
    t = jnp.arange(STEPS)
    traces = []

    def per_member(params):
        traces.append(1)
        return schedules.multiplier(kind, t, **params)

    stacked = jax.tree.map(lambda *xs: jnp.asarray(xs), *members, is_leaf=_is_boundaries)
    sweep = jax.jit(jax.vmap(per_member, axis_size=len(members)))  # constant: no parameters
    rows = sweep(stacked)
    reversed_rows = sweep(jax.tree.map(lambda x: x[::-1], stacked))
    assert len(traces) == 1
    for k, params in enumerate(members):
        expected = np.broadcast_to(reference(**params)(t), t.shape)
        single = schedules.multiplier(kind, t, **params)
        for got in (rows[k], reversed_rows[len(members) - 1 - k], single):
            assert_trees_close_to_scale(got, expected, TOL, f"{kind} {params}", scale=1.0)


@pytest.mark.parametrize("mult,period", [(2, 1), (2, 5), (3, 1), (3, 4)])
def test_sgdr_restarts_exactly_at_each_cycle_start(mult, period):
    """Far out (τ up to ~2²⁴) the float cycle-index guess is corrected: η = 1 exactly at each
    start s_i, the last step of cycle i − 1 before it, the second step of cycle i after it."""
    i = np.arange(1, int(np.log(2**24 / period) / np.log(mult)))  # s_i < 2²⁴: no int64 overflow
    starts = period * (mult**i - 1) // (mult - 1)
    lengths = period * mult ** (i - 1.0)
    eta = jax.jit(lambda t: schedules.sgdr(t, period, period_mult=mult))
    np.testing.assert_array_equal(eta(jnp.asarray(starts, jnp.int32)), 1.0)
    before = 0.5 * (1 + np.cos(np.pi * (lengths - 1) / lengths))
    after = 0.5 * (1 + np.cos(np.pi / (lengths * mult)))
    for offset, want in [(-1, before), (1, after)]:
        got = eta(jnp.asarray(starts + offset, jnp.int32))
        assert_trees_close_to_scale(got, want, TOL, f"s_i {offset:+d}", scale=1.0)


def test_make_converts_epochs_to_steps_concrete_and_traced():
    """make == the step-denominated function with epochs x steps_per_epoch rounded to whole
    steps (1.46 -> 15, 0.68 -> 7: not truncated), also when traced per member (one compile)."""
    t = jnp.arange(STEPS)
    eta = schedules.make("cosine", 10, 30, warmup_epochs=1.46, warmup_init=0.1, alpha=0.2)
    want = schedules.cosine(t, 300, warmup_steps=15, warmup_init=0.1, alpha=0.2)
    np.testing.assert_array_equal(eta(t), want)  # the same program on the same inputs
    traces = []

    def per_member(restart, mult, warmup, decay_epochs, factor):
        traces.append(1)
        sgdr = schedules.make(
            "sgdr", 10, 45, restart_epochs=restart, restart_mult=mult, warmup_epochs=warmup
        )
        step = schedules.make("step", 10, 45, decay_epochs=decay_epochs, decay_factor=factor)
        return sgdr(t), step(t)

    args = ([0.68, 2.0], [2, 1], [0.46, 0.0], [[2.96, 20.0], [10.0, 10.0]], [0.5, 0.1])
    sweep = jax.jit(jax.vmap(per_member))
    sgdr_rows, step_rows = sweep(*map(jnp.asarray, args))
    sweep(*(jnp.asarray(a)[::-1] for a in args))
    assert len(traces) == 1
    for k, (period, mult, warm, bounds, factor) in enumerate(
        [(7, 2, 5, (30, 200), 0.5), (20, 1, 0, (100, 100), 0.1)]
    ):
        want = _sgdr_ref(period, mult, 0.0, warm, 0.0)(t)
        assert_trees_close_to_scale(sgdr_rows[k], want, TOL, f"sgdr member {k}", scale=1.0)
        want = _step_ref(bounds, factor, 0, 0.0)(t)
        assert_trees_close_to_scale(step_rows[k], want, TOL, f"step member {k}", scale=1.0)


def test_sgd_applies_peak_times_eta_per_member_with_one_compile():
    """optax.sgd(learning_rate=learning_rate(peak, η)) built inside jit(vmap) over (peak, warm-up):
    the update at step t is −peak·η(t)·g, η optax's warm-up cosine."""
    steps, traces = 60, []

    def run(peak, warmup_epochs):
        traces.append(1)
        eta = schedules.make("cosine", 10, 6, warmup_epochs=warmup_epochs)
        tx = optax.sgd(schedules.learning_rate(peak, eta))
        grad = jnp.ones(3)

        def body(state, _):
            u, state = tx.update(grad, state)
            return state, u[0]

        return jax.lax.scan(body, tx.init(grad), None, length=steps)[1]

    sweep = jax.jit(jax.vmap(run))
    peaks, warmups = jnp.asarray([0.1, 0.5, 2.0]), jnp.asarray([0.0, 1.0, 2.5])
    updates = sweep(peaks, warmups)
    sweep(peaks[::-1], warmups[::-1])
    assert len(traces) == 1
    for k, warmup_steps in enumerate([0, 10, 25]):
        eta = _cosine_ref(steps, warmup_steps, 0.0, 0.0)(jnp.arange(steps))
        want = -float(peaks[k]) * np.asarray(eta)  # one more rounding (×peak): within 2·γ_16
        assert_trees_close_to_scale(updates[k], want, TOL, f"member {k}", scale=peaks[k])


def test_wd_paper_decays_by_eta_times_lambda():
    """make_optimizer("adam", α, "wd_paper", λ, schedule=η): w ← w − η(t)·(α·m̂/(√v̂+ε) + λ·w)
    (Loshchilov & Hutter 2019, Algorithm 2), written out in float64 over a few steps."""
    alpha, lam, b1, b2, eps, steps = 0.1, 0.5, 0.9, 0.999, 1e-8, 8
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(steps, 4))  # fixed gradients: the two programs see equal inputs
    with jax.enable_x64(True):
        eta = schedules.make("cosine", 2, 4, warmup_epochs=1, alpha=0.1)
        tx = make_optimizer("adam", alpha, "wd_paper", lam, mask=lambda p: True, schedule=eta)
        w = w_ref = np.linspace(-1.0, 1.0, 4)
        state, m, v = tx.init(jnp.asarray(w)), 0.0, 0.0
        for t in range(steps):
            u, state = tx.update(jnp.asarray(grads[t]), state, jnp.asarray(w))
            w = np.asarray(optax.apply_updates(jnp.asarray(w), u))
            m, v = b1 * m + (1 - b1) * grads[t], b2 * v + (1 - b2) * grads[t] ** 2
            direction = (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + eps)
            w_ref = w_ref - float(eta(t)) * (alpha * direction + lam * w_ref)
    # Per step ≤ 16 roundings on terms of scale ≤ max(|w|, α·|direction|) ~ 1, carried with a
    # factor ≤ 1 (1 − η·λ ≤ 1): ≤ steps·2·γ_16 apart in float64.
    assert_trees_close_to_scale(w, w_ref, steps * 2 * gamma(16, U64), scale=1.0)


def test_l1_prox_threshold_uses_the_scheduled_step():
    """sgd + l1_prox with lr = peak·η(t) and zero gradients: w_T = S_{λ·peak·Ση(t)}(w₀)."""
    peak, lam, steps = 0.5, 0.3, 12
    with jax.enable_x64(True):
        eta = schedules.make("step", 4, 3, decay_epochs=(1.0, 2.0), decay_factor=0.5)
        tx = make_optimizer("sgd", schedules.learning_rate(peak, eta), "l1_prox", lam)
        w0 = {"kernel": jnp.asarray([2.0, -1.5, 0.5, -0.1, 0.0])}
        w, state = w0, tx.init(w0)
        for _ in range(steps):
            u, state = tx.update(jax.tree.map(jnp.zeros_like, w), state, w)
            w = optax.apply_updates(w, u)
        tau = lam * peak * 4 * (1 + 0.5 + 0.25)  # 4 steps at each of η = 1, ½, ¼
        k = np.asarray(w0["kernel"])
        want = np.sign(k) * np.maximum(np.abs(k) - tau, 0.0)
    # Each step rounds the threshold and the subtraction (≤ 3 roundings of scale ≤ max|w₀|).
    assert_trees_close_to_scale(w["kernel"], want, steps * 2 * gamma(3, U64), scale=k)
    np.testing.assert_array_equal(np.asarray(w["kernel"]) == 0, want == 0)


def test_learning_rate_with_constant_is_optax_constant_schedule():
    eta = schedules.make("constant", 5, 2)
    lr = schedules.learning_rate(0.3, eta)
    t = jnp.arange(20)
    np.testing.assert_array_equal(lr(t), optax.constant_schedule(0.3)(t) * jnp.ones(20))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: schedules.multiplier("linear", 0), ValueError, "one of .*'sgdr'"),
        (lambda: schedules.make("exp", 10, 2), ValueError, "schedule must be one of"),
        (lambda: schedules.cosine(0, 100, warmup_steps=-1), ValueError, "warmup_steps"),
        (lambda: schedules.cosine(0, 100, alpha=1.5), ValueError, "alpha must be in"),
        (lambda: schedules.sgdr(0, 10, alpha=-0.1), ValueError, "alpha must be in"),
        (lambda: schedules.step(0, (5,), factor=0.0), ValueError, r"factor must be in \(0"),
        (lambda: schedules.step(0, (5,), factor=1.5), ValueError, "factor must be in"),
        (lambda: schedules.cosine(0, 10, warmup_steps=10), ValueError, "warmup_steps must be <"),
        (lambda: schedules.sgdr(0, 2.5), TypeError, "period must be an integer"),
        (lambda: schedules.sgdr(0, 10, period_mult=0), ValueError, "period_mult"),
        (lambda: schedules.make("cosine", 10, 5, warmup_epochs=-1), ValueError, "warmup_epochs"),
        (lambda: schedules.make("cosine", 10, 5, warmup_epochs=5), ValueError, "warmup_epochs"),
        (lambda: schedules.make("step", 10, 5, decay_factor=2), TypeError, "needs decay_epochs"),
        (lambda: schedules.make("step", 10, 5, decay_epochs=(1,), alpha=0.1), TypeError, "alpha"),
        (lambda: schedules.make("sgdr", 10, 5, restart_epochs=0.01), ValueError, "restart_epochs"),
        (
            lambda: schedules.make("sgdr", 10, 5, restart_epochs=1, restart_mult=1.5),
            TypeError,
            "restart_mult",
        ),
        (lambda: schedules.make("constant", 0, 5), ValueError, "steps_per_epoch"),
        (lambda: schedules.learning_rate(-0.1, schedules.constant), ValueError, "peak"),
    ],
)
def test_input_checks_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_doctests():
    assert doctest.testmod(schedules, raise_on_error=True).attempted > 0
