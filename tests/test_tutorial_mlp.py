"""experiments/tutorial_mlp.py's own helpers: the Keras-matched network, the grids, the L1
threshold, and (where Keras is installed) the tutorial's Keras code."""

import importlib.util
import os

import jax
import numpy as np
import pytest
from helpers import load_script

tm = load_script("experiments/tutorial_mlp.py")


def test_keras_mlp_has_glorot_uniform_kernels_and_zero_biases():
    params = tm.KerasMLP().init(jax.random.key(0), np.zeros((1, 28, 28, 1)))["params"]
    assert [params[k]["kernel"].shape for k in ("dense_0", "dense_1", "head")] == [
        (784, 64), (64, 64), (64, 10)]  # fmt: skip
    w = np.asarray(params["dense_0"]["kernel"])
    limit = np.sqrt(6 / (784 + 64))  # Glorot & Bengio 2010 / Keras GlorotUniform
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    # uniform on [−a, a]: std a/√3; 50,176 draws give a relative s.e. of ≈ 0.3 %
    assert np.std(w) == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert all(not np.any(params[k]["bias"]) for k in params)


def test_grids_are_three_per_decade_with_the_tutorials_value():
    g = tm.grid("l1", smoke=False)
    assert g[0] == 0.0 and len(g) == 17 and g[1] == 1e-6 and g[-1] == 0.1 and 0.01 in g
    ratios = np.diff(np.log10(g[1:]))
    np.testing.assert_allclose(ratios, 1 / 3, atol=3e-3)  # 3 significant digits
    assert (
        tm.grid("wd", smoke=False)[1:] == tuple(10 * x for x in tm.grid("l2", smoke=False)[1:])
        or tm.grid("wd", smoke=False)[-1] == 100.0
    )


def test_l1_harmless_is_the_last_lambda_before_the_first_detectable_harm():
    def row(lam, lo):
        return dict(strength=lam, test_loss_diff=lo + 0.01, test_loss_diff_lo=lo,
                    test_loss_diff_hi=lo + 0.02)  # fmt: skip

    rows = [row(0.0, 0.0), row(1e-4, -0.01), row(1e-3, -0.001), row(1e-2, 0.002), row(0.1, -1)]
    harmless, curve = tm.l1_harmless(rows)
    assert harmless == 1e-3 and len(curve) == 4  # 0.1 comes after the first harm: not harmless
    assert tm.l1_harmless([row(0.0, 0.0), row(1e-4, 0.01)])[0] is None
    assert tm.l1_harmless([row(0.0, 0.0), row(1e-4, np.nan)])[0] is None  # NaN: diverged


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="Keras (bench extra) absent")
def test_keras_member_reports_the_cross_entropy_without_the_penalty():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import wdjax

    data = wdjax.data.load("digits", val_size=200)
    with jax.numpy_rank_promotion("allow"):  # Keras broadcasts implicitly; the suite forbids it
        strong = tm.keras_member(data, 1.0, seed=0, epochs=1, batch_size=128)
    # A huge l1 drives the hidden kernels to oscillate around 0: the penalty λ·Σ|w| would
    # dominate a loss that included it; the cross-entropy of 10 classes stays near ln 10.
    assert strong["test_loss"] < 3.0 and 0 <= strong["test_acc"] <= 1
    assert strong["sparsity"] == 0.0  # a subgradient step leaves no exact zeros
