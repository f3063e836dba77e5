"""experiments/decoupling.py's own helpers against hand-computed values (the study end to end
runs in tests/test_experiments.py)."""

import dataclasses

import jax
import numpy as np
import pytest
from helpers import load_script

import wdjax
from wdjax import study

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


def test_the_exact_design_trains_head_and_bn_at_the_fixed_lr_without_decay():
    # sgd + wd, one step at t = 0 (cosine multiplier 1): hidden kernel u = −lr·(g + λw), every
    # other leaf u = −fixed_lr·g (no decay); fixed_lr None: all at lr (the current design)
    kw = dict(lam_anchor=0.5, lr_anchor=0.1, slope=-1.0, steps_per_epoch=5, epochs=1)
    one = lambda *shape: np.ones(shape, np.float32)  # noqa: E731
    params = {"dense_0": {"kernel": one(2, 2)}, "bn_0": {"scale": one(2)},
              "head": {"kernel": one(2, 2), "bias": one(2)}}  # fmt: skip
    grads = jax.tree.map(lambda w: 0.5 * np.ones_like(w), params)
    opt = dc.Sheared("sgd", "wd", fixed_lr=0.01, **kw)(0.2, 2.0)  # λ = 2·0.5·(0.2/0.1)^−1 = 0.5
    u, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(u["dense_0"]["kernel"], -0.2 * (0.5 + 0.5))
    for leaf in (u["bn_0"]["scale"], u["head"]["kernel"], u["head"]["bias"]):
        np.testing.assert_allclose(leaf, -0.01 * 0.5)
    old = dc.Sheared("sgd", "wd", **kw)(0.2, 2.0)
    u, _ = old.update(grads, old.init(params), params)
    np.testing.assert_allclose(u["head"]["kernel"], -0.2 * 0.5)  # at lr, not decayed
    np.testing.assert_allclose(u["dense_0"]["kernel"], -0.2 * (0.5 + 0.5))


def test_agreement_rule():
    # RULES: interval inside prediction ± 0.1 → agrees; else excluding it → disagrees
    assert dc.agreement(-1.0, -1.08, -0.93) == "agrees"
    assert dc.agreement(-1.0, -1.2, -0.7) == "inconclusive"  # contains −1, wider than ± 0.1
    assert dc.agreement(-1.0, -0.95, -0.92) == "agrees"  # excludes −1 but inside ± 0.1: first rule
    assert dc.agreement(-1.0, -0.6, -0.2) == "disagrees"
    assert dc.agreement(0.0, np.nan, np.nan) == "inconclusive"
    assert dc.agreement(None, -1.0, -0.9) == "no prediction"


def test_shrink_units():
    assert dc.shrink("adam", "wd", 2.0, 1e-3, 100.0) == pytest.approx(0.2)
    assert dc.shrink("momentum", "l2", 2.0, 1e-3, 100.0) == pytest.approx(2.0)  # /(1 − 0.9)
    assert dc.shrink("adam", "wd_paper", 2e-3, 1e-3, 100.0) == pytest.approx(0.2)  # lr-free
    assert dc.shrink("adam", "l2", 2.0, 1e-3, 100.0) is None


def test_delta_is_paired_and_drops_replicates_without_a_slope():
    a, b = {"slopes": [-1.0, -0.9, np.nan, -1.1]}, {"slopes": [-0.8, -0.8, -0.7, -0.8]}
    m, lo, hi = dc.delta(a, b)  # differences −0.2, −0.1, −0.3: mean −0.2, sd 0.1, n 3
    assert m == pytest.approx(-0.2) and hi - m == pytest.approx(4.302653 * 0.1 / np.sqrt(3))


def test_the_control_starts_each_member_from_the_sweeps_own_w0_mapped():
    cfg = dataclasses.replace(wdjax.SweepConfig(), dataset="digits", val_size=400, epochs=1,
        model=wdjax.engine.models.MLP(10, (8,), batchnorm=True, bn_epsilon=0.0), batchnorm=True,
        lrs=(0.25, 1.0, 4.0), strengths=(1.0, 2.0), hidden=(8,))  # fmt: skip
    ds = study.load_data(cfg)
    w0 = study.initial_params(cfg, ds)
    p = dc.control_init(cfg, ds, 0.5)  # b = ½: s = (lr/η₀)^½ = ½, 1, 2; members strength-major
    s = np.array([0.5, 1.0, 2.0] * 2)[:, None, None]
    np.testing.assert_array_equal(p["dense_0"]["kernel"], s * np.asarray(w0["dense_0"]["kernel"]))
    np.testing.assert_array_equal(p["head"]["kernel"][4], w0["head"]["kernel"])  # not scaled
    # initial_params is what a sweep starts from: given back, the sweep is the same to the bit
    one = dataclasses.replace(cfg, lrs=(1.0,), strengths=(1.0,))
    a, b = wdjax.sweep(one), wdjax.sweep(one, init_params=study.initial_params(one, ds))
    np.testing.assert_array_equal(a.history["val_loss"], b.history["val_loss"])
