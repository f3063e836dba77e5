"""experiments/decoupling.py's own helpers against hand-computed values (the study end to end
runs in tests/test_experiments.py)."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import load_script

import wdjax

dc = load_script("experiments/decoupling.py")


def test_the_sheared_grid_centres_follow_the_predicted_line():
    tx = dc.Sheared("adam", "l2", lam_anchor=1e-3, lr_anchor=1e-3, slope=-2.0, steps_per_epoch=10,
                    epochs=2)  # fmt: skip
    lrs = np.geomspace(3e-5, 3e-2, 7)
    centres = tx.centre(lrs)
    assert centres[3] == pytest.approx(1e-3 * (lrs[3] / 1e-3) ** -2)
    np.testing.assert_allclose(np.diff(np.log10(centres)) / np.diff(np.log10(lrs)), -2.0)
    rel = dc.rel_grid(4, 6)
    assert len(rel) == 13 and rel[6] == 1.0
    np.testing.assert_allclose(np.log10(rel), np.arange(-6, 7) / 4)


def test_sheared_factory_applies_lambda_times_the_centre_to_the_hidden_kernels():
    # sgd + l2, one step at t = 0 (cosine multiplier 1): u = −lr·(g + λ·w) on hidden kernels only
    tx = dc.Sheared("sgd", "l2", lam_anchor=0.5, lr_anchor=0.1, slope=-1.0, steps_per_epoch=5,
                    epochs=1)  # fmt: skip
    params = {"dense_0": {"kernel": jnp.ones((2, 2))}, "head": {"kernel": jnp.ones((2, 2))}}
    grads = {"dense_0": {"kernel": jnp.zeros((2, 2))}, "head": {"kernel": jnp.zeros((2, 2))}}
    opt = tx(0.2, 2.0)  # λ = 2 · 0.5 · (0.2/0.1)^−1 = 0.5
    u, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(u["dense_0"]["kernel"], -0.2 * 0.5)
    np.testing.assert_allclose(u["head"]["kernel"], 0.0)
    assert isinstance(opt, optax.GradientTransformation)


def test_agreement_rule():
    assert dc.agreement(-1.0, -1.2, -0.7) == "agrees"  # half-width 0.25, contains −1
    assert dc.agreement(-1.0, -0.6, -0.2) == "disagrees"  # half-width 0.2, excludes −1
    assert dc.agreement(-1.0, -1.5, -0.8) == "inconclusive"  # half-width 0.35 > 0.3
    assert dc.agreement(0.0, -0.3, 0.3) == "agrees"  # exactly 0.3 is still decisive
    assert dc.agreement(0.0, np.nan, np.nan) == "inconclusive"
    assert dc.agreement(None, -1.0, -0.9) == "no prediction"


def test_reuse_regret_interpolates_and_flags_off_grid():
    # one replicate, reference lr 0 tunes index 1 (log λ = −1); lr 1's grid is shifted by +0.5:
    # the reused −1 lies halfway between its first two points, lr 2's grid starts above it
    log_grid = np.array([[-2.0, -1.5, 0.0], [-1.0, -0.5, 1.0], [0.0, 0.5, 2.0]])
    val = np.array([[[3.0, 3.0, 1.0], [1.0, 1.0, 2.0], [2.0, 2.0, 3.0]]])  # [R=1, r=3, L=3]
    out = dc.reuse(log_grid, val, val, ref=0)["reuse"]
    assert out[1]["val_regret_mean"] == pytest.approx(2.0 - 1.0) and not out[1]["off_grid"]
    assert out[2]["val_regret_mean"] == pytest.approx(0.0) and out[2]["off_grid"]  # clamped
    # two lrs sharing a grid; reference lr 0 tunes index 1 in both replicates, lr 1's own is 2
    log_grid = np.array([[-2.0, -2.0], [-1.0, -1.0], [0.0, 0.0]])
    val = np.array([[[3.0, 3.0], [1.0, 2.0], [2.0, 1.0]]] * 2)  # [R=2, r=3, L=2]
    test = val + np.array([0.0, 0.1])[:, None, None]
    out = dc.reuse(log_grid, val, test, ref=0)
    assert out["reuse"][0]["test_regret_mean"] == 0.0
    assert out["reuse"][1]["val_regret_mean"] == pytest.approx(1.0)  # 2 − 1 at lr 1
    assert out["reuse"][1]["test_regret_mean"] == pytest.approx(1.0)
    assert out["test_loss"] == [pytest.approx(1.05), pytest.approx(1.05)]


def test_shrink_units():
    assert dc.shrink("adam", "wd", 2.0, 1e-3, 100.0) == pytest.approx(0.2)
    assert dc.shrink("momentum", "l2", 2.0, 1e-3, 100.0) == pytest.approx(2.0)  # /(1 − 0.9)
    assert dc.shrink("adam", "wd_paper", 2e-3, 1e-3, 100.0) == pytest.approx(0.2)  # lr-free
    assert dc.shrink("adam", "l2", 2.0, 1e-3, 100.0) is None


def test_the_bn_model_is_exactly_scale_invariant_and_the_plain_one_is_named():
    cfg = wdjax.SweepConfig()
    m = dc.model(True, cfg, 10)
    assert m.batchnorm and m.bn_epsilon == 0.0 and tuple(m.hidden) == cfg.hidden
    assert dc.model(False, cfg, 10) == "mlp"
