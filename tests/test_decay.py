"""cautious_wd and wd_corrected (AdamC) against their papers' rules written out in numpy.

Rules (u = the base optimizer's direction before the learning rate and the sign flip, γ_t the
learning rate, λ the strength; only on the masked leaves):

* cautious_wd (Chen et al., arXiv:2510.12402): w ← w − γ_t·(u + λ·1[u⊙w ≥ 0]⊙w).
* wd_corrected (Defazio, arXiv:2506.02285): w ← w − γ_t·u − c_t·λ·w, c_t = γ_t²/γ_max on the
  normalized kernels, γ_t on the other masked leaves.

The base optimizers are written out here too (sgd: u = g; heavy ball: b ← μb + g, u = b; Adam:
m̂/(√v̂ + ε) with bias corrections), not taken from optax.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import adam_drift, assert_trees_all_equal, assert_trees_close_to_scale

import wdjax
from wdjax.optim import OPTIMIZERS, make_optimizer

STEPS, LR, LAM, MU = 30, 0.05, 0.5, 0.9
B1, B2, EPS = 0.9, 0.999, 1e-8
# Two float64 programs over 30 steps of O(1) weights: each step adds a few roundings of ~1e-16
# (Adam's direction is well conditioned here: |g| is O(0.1) or exactly 0), far below 1e-12.
TOL = 1e-12


def _cosine(t):  # optax.cosine_decay_schedule(LR, STEPS) written out: to ~0 at the last step
    return LR * 0.5 * (1 + np.cos(np.pi * min(t, STEPS) / STEPS))


SCHEDULES = {"constant": lambda t: LR, "cosine": _cosine}


def _problem():
    """Quadratic ½·Σ a⊙(w − c)² over a two-layer tree. Random targets c make u and w disagree
    in sign on some coordinates; a = 0 on one coordinate of each kernel gives u = 0 there."""
    rng = np.random.default_rng(7)
    shapes = {"dense_0": {"kernel": (3, 4), "bias": (4,)}, "head": {"kernel": (4, 2), "bias": (2,)}}
    is_shape = lambda s: isinstance(s, tuple)  # noqa: E731
    w0 = jax.tree.map(lambda s: rng.normal(size=s), shapes, is_leaf=is_shape)
    target = jax.tree.map(lambda s: 2.0 * rng.normal(size=s), shapes, is_leaf=is_shape)
    curv = jax.tree.map(lambda s: rng.uniform(0.2, 1.0, size=s), shapes, is_leaf=is_shape)
    curv["dense_0"]["kernel"][0, 0] = 0.0
    curv["head"]["kernel"][1, 1] = 0.0
    return w0, target, curv


def _grad(w, target, curv):
    return jax.tree.map(lambda w, c, a: a * (w - c), w, target, curv)


def _flat(tree):
    return {"/".join(k.key for k in path): np.asarray(x) for path, x in
            jax.tree_util.tree_flatten_with_path(tree)[0]}  # fmt: skip


def _reference(optimizer, reg, lr_fn, peak, mask, normalized):
    """The rules in numpy; returns the final weights and how often u⊙w < 0 and u = 0 occurred."""
    w0, target, curv = (_flat(t) for t in _problem())
    w = {k: v.copy() for k, v in w0.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    seen = {"disagree": 0, "agree": 0, "zero": 0}
    for t in range(STEPS):
        gamma = lr_fn(t)
        for k in w:
            g = curv[k] * (w[k] - target[k])
            if optimizer == "sgd":
                u = g
            elif optimizer == "momentum":
                m[k] = MU * m[k] + g
                u = m[k]
            else:
                m[k] = B1 * m[k] + (1 - B1) * g
                v[k] = B2 * v[k] + (1 - B2) * g * g
                m_hat, v_hat = m[k] / (1 - B1 ** (t + 1)), v[k] / (1 - B2 ** (t + 1))
                u = m_hat / (np.sqrt(v_hat) + EPS)
            if k not in mask:
                w[k] = w[k] - gamma * u
            elif reg == "wd":
                w[k] = w[k] - gamma * (u + LAM * w[k])
            elif reg == "cautious_wd":
                keep = u * w[k] >= 0
                seen["disagree"] += int(np.sum(~keep))
                seen["agree"] += int(np.sum(keep & (u != 0)))
                seen["zero"] += int(np.sum(u == 0))
                w[k] = w[k] - gamma * (u + LAM * keep * w[k])
            else:
                c = gamma**2 / peak if k in normalized else gamma
                w[k] = w[k] - gamma * u - c * LAM * w[k]
    return w, seen


def _ours(optimizer, reg, learning_rate, **kw):
    hyper = {"momentum": MU} if optimizer == "momentum" else {}
    tx = make_optimizer(optimizer, learning_rate, reg, LAM, **hyper, **kw)
    w, target, curv = _problem()
    w = jax.tree.map(jnp.asarray, w)
    state = tx.init(w)
    for _ in range(STEPS):
        u, state = tx.update(_grad(w, target, curv), state, w)
        w = optax.apply_updates(w, u)
    return _flat(w)


def _assert_close(ours, want, msg):
    for k in want:
        err = np.max(np.abs(ours[k] - want[k]))
        assert err <= TOL, f"{msg} {k}: max|ours − rule| = {err:.3g}"


KERNELS = ("dense_0/kernel", "head/kernel")


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_cautious_wd_follows_the_rule(optimizer, schedule):
    lr_fn = SCHEDULES[schedule]
    lr = LR if schedule == "constant" else optax.cosine_decay_schedule(LR, STEPS)
    with jax.enable_x64(True):
        ours = _ours(optimizer, "cautious_wd", lr)
        plain_wd = _ours(optimizer, "wd", lr)
    want, seen = _reference(optimizer, "cautious_wd", lr_fn, None, KERNELS, ())
    _assert_close(ours, want, f"{optimizer} {schedule}")
    # The case covers both sides of the indicator and u = 0 (decayed: ≥, not >) ...
    assert seen["disagree"] > 0 and seen["agree"] > 0 and seen["zero"] >= 2 * STEPS, seen
    assert abs(want["dense_0/kernel"][0, 0]) < abs(_flat(_problem()[0])["dense_0/kernel"][0, 0])
    # ... and differs from plain decoupled decay, which itself follows its rule.
    wd_want, _ = _reference(optimizer, "wd", lr_fn, None, KERNELS, ())
    _assert_close(plain_wd, wd_want, f"wd {optimizer} {schedule}")
    assert np.max(np.abs(want["dense_0/kernel"] - wd_want["dense_0/kernel"])) > 1e-3
    np.testing.assert_array_equal(ours["dense_0/bias"], plain_wd["dense_0/bias"])  # unmasked


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_wd_corrected_follows_the_rule(optimizer, schedule):
    """Default mask (kernels) and normalized="hidden": dense_0's kernel gets γ_t²/γ_max, the
    output layer's kernel γ_t, biases nothing."""
    lr_fn = SCHEDULES[schedule]
    kw = {} if schedule == "constant" else {"peak_lr": LR}
    lr = LR if schedule == "constant" else optax.cosine_decay_schedule(LR, STEPS)
    with jax.enable_x64(True):
        ours = _ours(optimizer, "wd_corrected", lr, **kw)
    want, _ = _reference(optimizer, "wd_corrected", lr_fn, LR, KERNELS, ("dense_0/kernel",))
    _assert_close(ours, want, f"{optimizer} {schedule}")
    wd_want, _ = _reference(optimizer, "wd", lr_fn, None, KERNELS, ())
    moved = np.max(np.abs(want["dense_0/kernel"] - wd_want["dense_0/kernel"]))
    assert moved > 1e-3 if schedule == "cosine" else moved < 1e-15
    _assert_close({"head/kernel": ours["head/kernel"]}, {"head/kernel": wd_want["head/kernel"]},
                  "output layer decays as wd")  # fmt: skip


def test_wd_corrected_normalized_only_among_the_masked_leaves():
    """mask = dense_0's kernel and head's bias, normalized = every kernel: the head kernel is
    outside the mask (no decay), head's bias decays by γ_t, dense_0's kernel by γ_t²/γ_max."""
    mask = "dense_0/kernel|head/bias"
    with jax.enable_x64(True):
        ours = _ours("adam", "wd_corrected", optax.cosine_decay_schedule(LR, STEPS), peak_lr=LR,
                     mask=mask, normalized="kernels")  # fmt: skip
    want, _ = _reference("adam", "wd_corrected", _cosine, LR, ("dense_0/kernel", "head/bias"),
                         ("dense_0/kernel",))  # fmt: skip
    _assert_close(ours, want, "mask ∩ normalized")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_wd_corrected_at_a_constant_rate_is_wd_exactly(optimizer):
    for lr in (LR, np.float64(LR)):
        for kw in ({}, {"peak_lr": lr}):
            got = _ours(optimizer, "wd_corrected", lr, **kw)
            assert_trees_all_equal(got, _ours(optimizer, "wd", lr))


def test_zero_strength_under_a_schedule_is_the_base_optimizer():
    sched = optax.cosine_decay_schedule(LR, STEPS)
    w, target, curv = _problem()
    w = jax.tree.map(jnp.asarray, w)

    def final(tx, steps=5):
        state, params = tx.init(w), w
        for _ in range(steps):
            u, state = tx.update(_grad(params, target, curv), state, params)
            params = optax.apply_updates(params, u)
        return params

    want = final(optax.adam(sched))
    assert_trees_all_equal(final(make_optimizer("adam", sched, "cautious_wd", 0.0)), want)
    got = final(make_optimizer("adam", sched, "wd_corrected", 0.0, peak_lr=LR))
    assert_trees_all_equal(got, want)


def _engine_like(reg, strength, lr):
    """As Engine.tx builds it in a sweep: the schedule peak·η(t), the peak as peak_lr."""
    eta = wdjax.schedules.make("cosine", STEPS, 1)
    kw = {"peak_lr": lr} if reg == "wd_corrected" else {}
    return make_optimizer("adam", wdjax.schedules.learning_rate(lr, eta), reg, strength, **kw)


@pytest.mark.parametrize("reg", ["cautious_wd", "wd_corrected"])
def test_traced_strength_and_lr_under_jit_and_vmap(reg):
    strengths, lrs = [0.0, 0.1, 0.5], [0.05, 0.02, 0.1]
    w, target, curv = _problem()

    def run(strength, lr, base=False):
        eta = wdjax.schedules.make("cosine", STEPS, 1)
        tx = optax.adam(wdjax.schedules.learning_rate(lr, eta)) if base else (
            _engine_like(reg, strength, lr))  # fmt: skip

        def body(carry, _):
            w, state = carry
            u, state = tx.update(_grad(w, target, curv), state, w)
            return (optax.apply_updates(w, u), state), None

        return jax.lax.scan(body, (w, tx.init(w)), None, length=STEPS)[0][0]

    # jit vs eager: different programs; ≤ ~20 elementwise roundings a step.
    tol = adam_drift(STEPS, max(lrs), 20)
    with jax.enable_x64(True):
        batched = jax.jit(jax.vmap(run))(jnp.array(strengths), jnp.array(lrs))
        for i, (s, lr) in enumerate(zip(strengths, lrs, strict=True)):
            member = jax.tree.map(lambda a, i=i: a[i], batched)
            assert_trees_close_to_scale(member, run(s, lr), tol, err_msg=f"member {i}")
        base = run(0.0, lrs[0], base=True)  # λ = 0: the base optimizer
    assert_trees_close_to_scale(jax.tree.map(lambda a: a[0], batched), base, tol)
    assert np.max(np.abs(batched["dense_0"]["kernel"][1] - base["dense_0"]["kernel"])) > 1e-3


def test_inject_hyperparams_passes_the_current_rate():
    """inject_hyperparams evaluates the schedule and passes γ_t as an array: with peak_lr, that
    is the current rate, and the trajectory is the schedule's."""
    sched = optax.cosine_decay_schedule(LR, STEPS)
    inject = optax.inject_hyperparams(make_optimizer, static_args=("optimizer", "reg"))
    with jax.enable_x64(True):
        tx = inject("momentum", learning_rate=sched, reg="wd_corrected", strength=LAM,
                    momentum=MU, peak_lr=LR)  # fmt: skip
        w, target, curv = _problem()
        state = tx.init(w)
        for _ in range(STEPS):
            u, state = tx.update(_grad(w, target, curv), state, w)
            w = optax.apply_updates(w, u)
    want, _ = _reference("momentum", "wd_corrected", _cosine, LR, KERNELS, ("dense_0/kernel",))
    _assert_close(_flat(w), want, "inject_hyperparams")


def test_errors_name_the_argument():
    sched = optax.cosine_decay_schedule(LR, STEPS)
    with pytest.raises(ValueError, match="^peak_lr: .*schedule"):
        make_optimizer("adam", sched, "wd_corrected", 0.1)
    with pytest.raises(ValueError, match="^peak_lr: .*constant"):
        make_optimizer("adam", 0.1, "wd_corrected", 0.1, peak_lr=0.2)
    with pytest.raises(ValueError, match="peak_lr"):
        make_optimizer("adam", sched, "wd_corrected", 0.1, peak_lr=0.0)
    with pytest.raises(ValueError, match="peak_lr"):
        make_optimizer("adam", sched, "wd_corrected", 0.1, peak_lr=-1.0)
    for reg in ("wd", "cautious_wd"):
        with pytest.raises(TypeError, match="peak_lr"):
            make_optimizer("adam", 0.1, reg, 0.1, peak_lr=0.1)
        with pytest.raises(TypeError, match="normalized"):
            make_optimizer("adam", 0.1, reg, 0.1, normalized="kernels")
    with pytest.raises(ValueError, match="^normalized"):
        make_optimizer("adam", 0.1, "wd_corrected", 0.1, normalized="(")
    params = _problem()[0]
    tx = make_optimizer("adam", sched, "wd_corrected", 0.1, peak_lr=LR, normalized="nothing$")
    with pytest.raises(ValueError, match="^normalized"):
        tx.init(params)  # selects no leaf: refused before any step


@pytest.mark.numerics
def test_sweep_member_equals_a_standalone_make_optimizer_run():
    """--reg wd_corrected --schedule cosine: the engine passes each member's peak lr."""
    from wdjax.run import cli
    from wdjax.run import runner as S

    argv = "sweep --dataset digits --epochs 2 --batch-size 64 --reg wd_corrected --schedule cosine"
    argv += " --strength 1 --lr 3e-3,1e-2 --dtype float64"
    cfg = cli.parse(argv.split())[0]
    assert (cfg.optimizer, cfg.reg, cfg.schedule, cfg.lrs) == ("adam", "wd_corrected", "cosine",
                                                               (3e-3, 1e-2))  # fmt: skip
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["sweep"].format_help()
    assert all(reg in " ".join(help_text.split()) for reg in wdjax.STRATEGIES)
    with jax.enable_x64(True):
        res = S.sweep(cfg)
        wd = S.sweep(cfg, reg="wd")
        total = int(res.history["step"][0, -1])
        for k, m in enumerate(res.members):
            factory = _Standalone(m["lr"], total)
            one = S.sweep(cfg, optimizer=factory, schedule="constant", lrs=(m["lr"],))
            pk = jax.tree.map(lambda x, k=k: x[k], res.params)
            p1 = jax.tree.map(lambda x: x[0], one.params)
            # total steps of sums of ≤ 64 terms in float64 (tests/test_runner.py's bound).
            assert_trees_close_to_scale(pk, p1, adam_drift(total, m["lr"], 64),
                                        err_msg=f"member {k}")  # fmt: skip
            gap = np.max(np.abs(pk["dense_0"]["kernel"] - wd.params["dense_0"]["kernel"][k]))
            assert gap > 1e-4, gap  # the correction changed the run


@dataclasses.dataclass(frozen=True)
class _Standalone:
    """The optimizer factory of a one-member sweep with no engine schedule: AdamC on optax's
    cosine schedule from this peak to 0 over ``total`` steps."""

    peak: float
    total: int

    def __call__(self, learning_rate, strength):
        sched = optax.cosine_decay_schedule(self.peak, self.total)
        return make_optimizer("adam", sched, "wd_corrected", strength, peak_lr=self.peak)
