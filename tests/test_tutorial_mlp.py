"""experiments/tutorial_mlp.py's own helpers and its Keras peer (wdjax.study.keras_peer): the
Keras-matched network, the grids, the near-zero and exact-zero counts, the bounded intervals, the
per-(program, reg) selection, and (where Keras is installed) the tutorial's Keras code."""

import importlib.util
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import load_script

from wdjax.study import keras_peer

tm = load_script("experiments/tutorial_mlp.py")


def test_keras_mlp_has_glorot_uniform_kernels_and_zero_biases():
    params = keras_peer.KerasMLP().init(jax.random.key(0), np.zeros((1, 28, 28, 1)))["params"]
    assert [params[k]["kernel"].shape for k in ("dense_0", "dense_1", "head")] == [
        (784, 64), (64, 64), (64, 10)]  # fmt: skip
    w = np.asarray(params["dense_0"]["kernel"])
    limit = np.sqrt(6 / (784 + 64))  # Glorot & Bengio 2010 / Keras GlorotUniform
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    # uniform on [−a, a]: std a/√3; 50,176 draws give a relative s.e. of ≈ 0.3 %
    assert np.std(w) == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert all(not np.any(params[k]["bias"]) for k in params)


def test_grids_reach_below_the_old_edge_and_hold_the_tutorials_value():
    full = tm.get_config()
    g = full["grids"]["l1"]
    # the previous grid's lowest l1 λ, 1e-6, was chosen: the grid now goes two decades below it
    assert g[0] == 0.0 and g[1] == 1e-8 and g[-1] == 0.1 and 0.01 in g and len(g) == 16
    np.testing.assert_allclose(np.diff(np.log10(g[1:])), 0.5, atol=3e-3)  # 3 significant digits
    prox = full["grids"]["l1_prox"]
    assert prox == (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1)  # 1 per decade, exact
    assert full["long"]["epochs"] == 30 and full["long"]["grids"]["l1"] == (
        0.0, 1e-5, 3.16e-5, 1e-4, 3.16e-4)  # fmt: skip
    assert tm.grid("l2", smoke=True) == (0.0, 1e-5) and tm.grid("l1", smoke=True) == (0.0, 0.01)


def test_record_counts_hidden_weights_below_eta_and_exactly_zero():
    # dense_0 has 4 weights (|w| < 1e-3: 0, 5e-4, −9.9e-4 → 3; == 0: 1), dense_1 has 2 (1e-3 is
    # not below the threshold; −0.0 is exactly zero): near 4/6, exact 2/6; the head is not counted
    after = {"dense_0": {"kernel": jnp.array([[0.0, 5e-4], [-9.9e-4, 0.5]])},
             "dense_1": {"kernel": jnp.array([[1e-3], [-0.0]])},
             "head": {"kernel": jnp.zeros((2, 2))}}  # fmt: skip
    out = tm.record(None, after, None, {})
    assert float(out["near_zero"]) == pytest.approx(4 / 6)
    assert float(out["exact_zero"]) == pytest.approx(2 / 6)


def test_bounded_clips_fractions_to_their_range_and_leaves_the_rest():
    row = dict(test_acc_mean=0.9, test_acc_lo=-0.2, test_acc_hi=1.3, near_zero_lo=-0.01,
               near_zero_hi=0.5, test_acc_diff=0.1, test_acc_diff_lo=-1.4, test_acc_diff_hi=1.2,
               test_loss_lo=-0.5, weight_l2_hi=30.0, exact_zero_hi=np.nan)  # fmt: skip
    out = tm.bounded(row)
    assert (out["test_acc_lo"], out["test_acc_hi"], out["near_zero_lo"]) == (0.0, 1.0, 0.0)
    assert np.signbit(out["test_acc_lo"]) == np.False_  # +0.0, printed "0.0000", not "-0.0000"
    assert (out["test_acc_diff_lo"], out["test_acc_diff_hi"]) == (-1.0, 1.0)  # a difference
    assert out["near_zero_hi"] == 0.5 and out["test_acc_mean"] == 0.9
    assert out["test_loss_lo"] == -0.5 and out["weight_l2_hi"] == 30.0  # not fractions
    assert np.isnan(out["exact_zero_hi"])  # NaN stays NaN


def _runs(val, test):
    """Fake replicate results: ``val``/``test`` [replicates, settings] at the last of 2 epochs."""
    grid = [0.0, 1e-3, 1e-2, 1e-1]
    members = [dict(member=j, strength=g, lr=1e-3, seed=0, fold=0) for j, g in enumerate(grid)]
    hist = lambda v: np.stack([np.full(len(grid), np.nan), v], 1)  # noqa: E731
    return grid, [types.SimpleNamespace(members=members, history={
        "val_loss": hist(np.asarray(v, float)), "test_loss": hist(np.asarray(t, float)),
        **{m: hist(np.full(len(grid), 0.5)) for m in tm.METRICS[:1] + tm.METRICS[3:]}})
        for v, t in zip(val, test, strict=True)]  # fmt: skip


def test_choice_selects_on_validation_per_replicate_and_flags_edges():
    val = [[1.0, 0.9, 0.95, 2.0], [1.0, 0.95, 0.9, 2.0], [1.0, 0.9, 0.96, 2.0]]
    test = [[1.0, 0.8, 0.7, 2.0], [1.1, 0.9, 0.8, 2.1], [1.2, 0.85, 0.75, 2.2]]
    grid, runs = _runs(val, test)
    c = tm.choice(runs, grid)
    s = c["selection"]
    # mean val: 1.0, 0.9167, 0.9367, 2.0 → 1e-3 (the lowest non-zero λ: an edge); oracle 1e-2
    assert s["averaged_strength"] == 1e-3 and c["edge"] and s["oracle_strength"] == 1e-2
    assert s["per_replicate"] == [1e-3, 1e-2, 1e-3]
    # nested test loss 0.8, 0.8, 0.85 against λ = 0's 1.0, 1.1, 1.2: Δ −0.2, −0.3, −0.35
    assert s["nested"][0] == pytest.approx(0.8167, abs=1e-4)
    assert s["nested_diff"][0] == pytest.approx(-0.85 / 3)
    # one SE of 1e-3's mean: std(0.9, 0.95, 0.9)/√3 = 0.0167 → 1e-2 (0.9367) is outside
    assert s["one_se"] == [1e-3]
    assert c["rows"][1]["test_loss_diff"] == pytest.approx(-0.25)  # −0.2, −0.2, −0.35
    val[0][2] = 0.5  # now 1e-2 wins on average: inside the grid, no edge
    assert not tm.choice(_runs(val, test)[1], grid)["edge"]


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="Keras (bench extra) absent")
def test_keras_member_reports_the_cross_entropy_without_the_penalty():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import wdjax

    data = wdjax.data.load("digits", val_size=200)
    with jax.numpy_rank_promotion("allow"):  # Keras broadcasts implicitly; the suite forbids it
        strong = keras_peer.member(data, 1.0, seed=0, epochs=1, batch_size=128, tau=1e-3)
    # A huge l1 drives the hidden kernels to oscillate around 0: the penalty λ·Σ|w| would
    # dominate a loss that included it; the cross-entropy of 10 classes stays near ln 10.
    assert strong["test_loss"] < 3.0 and 0 <= strong["test_acc"] <= 1
    assert strong["exact_zero"] == 0.0  # a subgradient step leaves no exact zeros
    assert 0 < strong["near_zero"] < 1  # |w| < tau: some, after 1 epoch of ~10 steps


def test_table_arms_show_the_tutorials_value_only_where_an_l1_grid_holds_it():
    def reg(grid, best):
        rows = [dict(strength=g, test_loss_mean=g) for g in grid]
        return dict(strengths=list(grid), rows=rows, selection=dict(averaged=grid.index(best)))

    tutorial = tm.table_arms("p", {"l1": reg([0.0, 0.01], 0.01), "l2": reg([0.0, 0.01], 0.0)})
    assert list(tutorial) == ["p none", "p l1(0.01)", "p l1 at its λ", "p l2 at its λ"]
    assert tutorial["p l2 at its λ"]["strength"] == 0.0 and tutorial["p none"]["reg"] == "none"
    long = tm.table_arms("q", {"l1": reg([0.0, 1e-4], 1e-4), "l2": reg([0.0, 1e-3], 1e-3)})
    assert list(long) == ["q none", "q l1 at its λ", "q l2 at its λ"]  # no 0.01 in the grid
    assert long["q l2 at its λ"]["test_loss_mean"] == 1e-3 and long["q none"]["program"] == "q"
