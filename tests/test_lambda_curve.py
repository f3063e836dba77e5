"""experiments/lambda_curve.py's own helpers against hand-computed values (the study end to end
runs in tests/test_experiments.py)."""

import types

import numpy as np
import pytest
from helpers import load_script

import wdjax
from wdjax.study import replicates

lc = load_script("experiments/lambda_curve.py")


def fake_runs(val, **other):
    """Sweep results with ``val`` [replicates, settings, epochs] as val_loss (one member each)
    and any ``other`` metric of the same shape."""
    runs = []
    for r, v in enumerate(np.asarray(val, float)):
        members = [dict(member=j, strength=float(j) / 10, lr=1e-3, seed=0, fold=0)
                   for j in range(v.shape[0])]  # fmt: skip
        history = {"val_loss": v, **{k: np.asarray(x, float)[r] for k, x in other.items()}}
        runs.append(types.SimpleNamespace(members=members, history=history))
    return runs


def test_baseline_rise_is_the_mean_curves_minimum_and_each_replicates_own_rise():
    val = [[[3.0, 2.0, 2.5], [9, 9, 9]], [[3.0, 1.0, 1.6], [9, 9, 9]]]  # λ = 0 is setting 0
    r = lc.baseline_rise(fake_runs(val))
    assert r["val_min_epoch"] == 2 and r["epochs"] == 3
    assert r["val_rise"][0] == pytest.approx(0.55)  # (0.5 + 0.6) / 2, each from its own minimum
    assert r["val_rise_at_mean_min"][0] == pytest.approx(0.55)  # here the same epoch
    half = 12.706204736 * np.std([0.5, 0.6], ddof=1) / np.sqrt(2)  # t_{0.975, 1}
    assert r["val_rise_at_mean_min"][2] - 0.55 == pytest.approx(half, rel=1e-8)
    assert r["val_rise"][1] == 0.0  # 0.55 − half < 0: a rise is bounded at 0
    own = lc.baseline_rise(fake_runs([[[3.0, 1.0, 1.5], [9, 9, 9]], [[3.0, 2.0, 1.0], [9, 9, 9]]]))
    assert own["val_min_epoch"] == 3 and own["val_rise"][0] == pytest.approx(0.25)  # (0.5 + 0)/2
    assert own["val_rise_at_mean_min"][0] == 0.0


def _metrics(val, test):
    test = np.asarray(test, float)
    return fake_runs(val, test_loss=test, test_acc=1.0 - test / 4, train_loss=np.asarray(val))


def test_choice_picks_on_mean_validation_loss_and_reports_each_replicates_own_pick():
    val = np.array([[[0.93], [0.7], [0.9]], [[0.93], [0.9], [0.6]]])  # means 0.93, 0.8, 0.75
    test = np.array([[[2.0], [1.0], [1.5]], [[2.0], [1.8], [1.2]]])  # [replicates, λ, epochs]
    s = lc.choice(_metrics(val, test), (0.0, 0.1, 0.2))
    assert (s["best_index"], s["best_strength"]) == (2, 0.2)
    assert s["per_replicate_best"] == [0.1, 0.2]
    # nested: replicate 0 picks λ = 0.1 (test 1.0), replicate 1 λ = 0.2 (test 1.2)
    assert s["nested_test_loss"][0] == pytest.approx(1.1)
    assert s["nested_test_loss_diff"][0] == pytest.approx(-0.9)  # against λ = 0's 2.0
    assert s["nested_test_acc"][0] == pytest.approx(1 - 1.1 / 4)
    # oracle: mean test 2.0, 1.4, 1.35 → λ = 0.2; one SE of the best mean 0.75: std(0.9, 0.6)/√2
    # = 0.15, so 0.8 ≤ 0.9 is in the set and 0.93 is not (it would be within one std, 0.212)
    assert s["oracle_strength"] == 0.2 and s["one_se"] == [0.1, 0.2]
    assert s["rows"][2]["test_loss_diff"] == pytest.approx(-0.65)  # paired: (−0.5 − 0.8) / 2


def test_early_stopped_choice_reads_each_member_at_its_own_validation_minimum():
    # replicate 0: λ = 0 lowest at epoch 1, λ = 0.1 at epoch 3; replicate 1: both at epoch 2
    val = [[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], [[2.0, 1.0, 3.0], [np.nan, 0.5, 0.9]]]
    test = [[[10.0, 20.0, 30.0], [11.0, 21.0, 31.0]], [[12.0, 22.0, 32.0], [13.0, 23.0, 33.0]]]
    runs = _metrics(val, test)
    final = lc.choice(runs, (0.0, 0.1))
    early = lc.choice([replicates.early_stopped(r) for r in runs], (0.0, 0.1))
    assert final["rows"][0]["test_loss_mean"] == pytest.approx(31.0)  # (30 + 32) / 2
    assert early["rows"][0]["test_loss_mean"] == pytest.approx(16.0)  # (10 + 22) / 2
    assert early["rows"][1]["test_loss_mean"] == pytest.approx(27.0)  # (31 + 23) / 2
    assert early["rows"][1]["epoch_mean"] == pytest.approx(2.5)  # epochs 3 and 2
    assert early["rows"][1]["test_loss_diff"] == pytest.approx(11.0)  # (21 + 1) / 2
    # validation at the stop: λ = 0 (1.0, 1.0), λ = 0.1 (1.0, 0.5): 0.1 chosen, per replicate
    # λ = 0 (a tie: the first) and 0.1
    assert early["best_strength"] == 0.1 and early["per_replicate_best"] == [0.0, 0.1]


def test_clean_validation_restores_only_the_validation_labels():
    cfg = wdjax.SweepConfig(val_size=300, train_size=500, label_noise=0.2, data_seed=3)
    got = lc.clean_validation(cfg)
    noisy = wdjax.data.load("digits", val_size=300, train_size=500, label_noise=0.2, seed=3)
    clean = wdjax.data.load("digits", val_size=300, train_size=500, label_noise=0.0, seed=3)
    np.testing.assert_array_equal(got.y_val, clean.y_val)
    np.testing.assert_array_equal(got.y_train, noisy.y_train)  # noisy training labels
    for a, b in ((got.x_train, noisy.x_train), (got.x_val, clean.x_val),
                 (got.x_test, clean.x_test), (got.y_test, clean.y_test)):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    assert 0.1 < np.mean(noisy.y_val != clean.y_val) < 0.3  # the noise did reach validation


def test_the_full_design_and_the_smoke():
    full = lc.get_config()
    small = lc.smoke(full)
    assert set(small) <= set(full) and small["replicates"] == 2
    assert full["replicates"] == 4 and all(len(g) == 9 and g[0] == 0.0
                                           for g in full["grids"].values())  # fmt: skip
    assert full["grids"]["wd"][1] == 1e-2 and full["grids"]["wd"][3] == pytest.approx(0.1)
    conds = full["conditions"]
    for n in (6000, 50000):  # constant × cosine, clean labels
        assert {c["schedule"] for c in conds if c["train_size"] == n and not c["label_noise"]} == {
            "constant", "cosine"}  # fmt: skip
    for n in (1000, 6000):  # noise with both validation labels
        assert {c["val_labels"] for c in conds if c["train_size"] == n and c["label_noise"]} == {
            "noisy", "clean"}  # fmt: skip
    want = ["n1000_noise0.2_cosine_wd", "n1000_noise0.2_cosine_cleanval_wd"]
    assert [lc.arm(c, "wd") for c in conds[1:3]] == want
    assert lc.label(conds[2]) == "n=1000, noise=20%, cosine, clean val"
