"""Each exact scale map of :mod:`wdjax.symmetry` maps a training trajectory onto itself.

The derivations are in wdjax/symmetry.py. Each map is checked in float64 over 25 steps on changing
minibatches with c = 4: a pure-JAX MLP whose two kernels are each followed by BatchNorm with ε = 0
(no scale or offset) and a fixed head, trained by :func:`wdjax.make_optimizer` (Adam with eps =
eps_root = 0). A wrong map (the SGD map applied to Adam + L2) fails by many orders more. (With c
and s powers of two every operation commutes exactly with the scaling, so here the two runs agree
to the bit; the tolerance, 1e-11 of the scale, is what a general c would need.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdjax
from wdjax.analysis.symmetry import SCALE_MAPS, predicted_slope, scale_map

C = 4.0
# name: (optimizer, reg, s(c), λ'(λ, c))
ARMS = sorted(SCALE_MAPS)
BASE = {"sgd": (0.1, 1e-2), "momentum": (0.05, 1e-2), "adam": (3e-3, 3e-2)}  # (lr, λ)


def _bn(z):  # BatchNorm over the batch with ε = 0, no scale or offset: exactly scale-invariant
    return (z - z.mean(0, keepdims=True)) / jnp.sqrt(z.var(0, keepdims=True))


def _logits(params, head, x):
    h = jax.nn.relu(_bn(x @ params["dense_0"]["kernel"]))
    h = jax.nn.relu(_bn(h @ params["dense_1"]["kernel"]))
    return h @ head  # the head is fixed: decaying it would break the symmetry


def _run(opt, params, head, batches):
    def loss(p, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(_logits(p, head, x), y).mean()

    state, logits = opt.init(params), []
    for x, y in batches:
        g = jax.grad(loss)(params, x, y)
        u, state = opt.update(g, state, params)
        params = optax.apply_updates(params, u)
        logits.append(_logits(params, head, x))
    return params, np.stack(logits)


@pytest.fixture(scope="module")
def problem():
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(0), 6)
        params = {
            "dense_0": {"kernel": jax.random.normal(k[0], (12, 16), jnp.float64) / 3},
            "dense_1": {"kernel": jax.random.normal(k[1], (16, 16), jnp.float64) / 4},
        }
        head = jax.random.normal(k[2], (16, 5), jnp.float64)
        x = jax.random.normal(k[3], (25, 32, 12), jnp.float64)
        y = jax.random.randint(k[4], (25, 32), 0, 5)
    return params, head, list(zip(x, y, strict=True))  # fmt: skip


def _pair(problem, optimizer, reg, s, lam2, lr, lam):
    params, head, batches = problem
    kw = {"eps": 0.0, "eps_root": 0.0} if optimizer == "adam" else {}
    with jax.enable_x64(True):
        a = _run(wdjax.make_optimizer(optimizer, lr, reg, lam, **kw), params, head, batches)
        scaled = jax.tree.map(lambda w: s * w, params)
        b = _run(wdjax.make_optimizer(optimizer, C * lr, reg, lam2, **kw), scaled, head, batches)
    return a, b


@pytest.mark.parametrize("arm", ARMS, ids="+".join)
def test_the_scale_map_maps_the_trajectory_onto_itself(problem, arm):
    optimizer, reg = arm
    lam_factor, s = scale_map(optimizer, reg, C)
    lr, lam = BASE[optimizer]
    (w, logits), (w2, logits2) = _pair(problem, optimizer, reg, s, lam_factor * lam, lr, lam)
    # float64: each step's rounding (~1e-16 relative) is carried by 25 steps of a well-conditioned
    # map; 1e-11 of the logits' scale leaves a wide margin and is still ~1e9 times below a wrong map
    scale = np.abs(logits).max()
    np.testing.assert_allclose(logits2, logits, rtol=0, atol=1e-11 * scale)
    for k in w:  # numpy: outside the x64 context jax arithmetic would round to float32
        np.testing.assert_allclose(np.asarray(w2[k]["kernel"]), s * np.asarray(w[k]["kernel"]),
                                   rtol=1e-11, atol=0)  # fmt: skip
    assert not np.allclose(logits[0], logits[-1], atol=1e-3)  # the weights did move


def test_a_wrong_map_fails_clearly(problem):
    lr, lam = BASE["adam"]  # Adam + L2 with the SGD map (s = √c, λ/c) instead of (c, λ/c²)
    (_, logits), (_, logits2) = _pair(problem, "adam", "l2", np.sqrt(C), lam / C, lr, lam)
    assert np.abs(logits2 - logits).max() > 1e-3 * np.abs(logits).max()


def test_predicted_slopes_are_the_maps_exponents():
    # by hand from the derivations: ηλ invariant → −1, η²λ → −2, λ alone (decoupled) → 0
    expected = {("sgd", "l2"): -1, ("momentum", "l2"): -1, ("momentum", "wd"): -1,
                ("momentum", "wd_paper"): 0, ("adam", "l2"): -2, ("adam", "wd"): -1,
                ("adam", "wd_paper"): 0}  # fmt: skip
    assert {arm: predicted_slope(*arm) for arm in ARMS} == expected
    assert scale_map("momentum", "l2", 4.0) == (0.25, 2.0)


def test_an_underived_arm_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="no scale map for optimizer='adam', reg='l1'"):
        scale_map("adam", "l1", 4.0)
    with pytest.raises(ValueError, match="c must be a positive"):
        scale_map("adam", "wd", 0.0)
