"""experiments/lambda_curve.py's own helpers against hand-computed values (the study end to end
runs in tests/test_experiments.py)."""

import types

import numpy as np
import pytest
from helpers import load_script

import wdjax

lc = load_script("experiments/lambda_curve.py")


def fake_runs(val):
    """Sweep results with ``val`` [replicates, settings, epochs] as val_loss (one member each)."""
    runs = []
    for v in np.asarray(val, float):
        members = [dict(member=j, strength=float(j) / 10, lr=1e-3, seed=0, fold=0)
                   for j in range(v.shape[0])]  # fmt: skip
        runs.append(types.SimpleNamespace(members=members, history={"val_loss": v}))
    return runs


def test_lr_sum_of_a_cosine_to_zero_is_lr_times_t_plus_one_over_two():
    # Σ_{t<T} ½(1 + cos(πt/T)) = T/2 + ½·Re Σ_t e^{iπt/T} = T/2 + ½·Re 2/(1 − e^{iπ/T}) = (T+1)/2
    cfg = wdjax.SweepConfig(schedule="cosine", epochs=3, batch_size=100, lrs=(2e-3,))
    steps, total = lc.lr_sum(cfg, train_size=1050)  # 10 steps an epoch (partial batch dropped)
    assert steps == 30
    assert total == pytest.approx(2e-3 * (30 + 1) / 2, rel=1e-6)  # float32 schedule values
    const = wdjax.SweepConfig(epochs=2, batch_size=10, lrs=(1e-3,))
    assert lc.lr_sum(const, train_size=100) == (20, pytest.approx(20e-3, rel=1e-6))


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


def test_reg_summary_picks_on_mean_validation_loss_and_reports_each_replicates_own_pick():
    val = np.array([[[0.93], [0.7], [0.9]], [[0.93], [0.9], [0.6]]])  # means 0.93, 0.8, 0.75
    runs = fake_runs(val)
    test = np.array([[2.0, 1.0, 1.5], [2.0, 1.8, 1.2]])  # [replicates, λ]
    for r, t in zip(runs, test, strict=True):
        r.history["test_loss"] = t[:, None]
        r.history["test_acc"] = 1.0 - t[:, None] / 4
        r.history["train_loss"] = r.history["val_loss"]
    s = lc.reg_summary(runs, (0.0, 0.1, 0.2), lam_sum=4.0, reg="wd")
    assert (s["best_index"], s["best_strength"]) == (2, 0.2)
    assert s["per_replicate_best"] == [0.1, 0.2] and s["shrink"] == pytest.approx(0.8)
    # nested: replicate 0 picks λ = 0.1 (test 1.0), replicate 1 λ = 0.2 (test 1.2)
    assert s["nested_test_loss"][0] == pytest.approx(1.1)
    assert s["nested_test_loss_diff"][0] == pytest.approx(-0.9)  # against λ = 0's 2.0
    assert s["nested_test_acc"][0] == pytest.approx(1 - 1.1 / 4)
    # oracle: mean test 2.0, 1.4, 1.35 → λ = 0.2; one SE of the best mean 0.75: std(0.9, 0.6)/√2
    # = 0.15, so 0.8 ≤ 0.9 is in the set and 0.93 is not (it would be within one std, 0.212)
    assert s["oracle_strength"] == 0.2 and s["one_se"] == [0.1, 0.2]
    assert lc.reg_summary(runs, (0.0, 0.1, 0.2), 4.0, "l2")["shrink"] is None


def test_smoke_overrides_only_declared_keys_and_keeps_the_full_design():
    full = lc.get_config()
    small = lc.smoke(full)
    assert set(small) <= set(full) and small["replicates"] == 2
    assert len(full["conditions"]) == 6 and full["replicates"] == 5
    assert all(len(g) == 14 and g[0] == 0.0 for g in full["grids"].values())  # 0 + 13 λ
    assert full["grids"]["wd"][1] == 1e-2 and full["grids"]["wd"][-1] == pytest.approx(1e2)
    assert lc.arm(full["conditions"][1], "l1_prox") == "n1000_noise0.2_l1_prox"
