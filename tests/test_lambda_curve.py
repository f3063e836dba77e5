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


def test_baseline_rise_is_paired_final_minus_the_mean_curves_minimum():
    val = [[[3.0, 2.0, 2.5], [9, 9, 9]], [[3.0, 1.0, 1.6], [9, 9, 9]]]  # λ = 0 is setting 0
    r = lc.baseline_rise(fake_runs(val))
    assert r["val_min_epoch"] == 2 and r["epochs"] == 3
    assert r["val_rise"][0] == pytest.approx(0.55)  # (0.5 + 0.6) / 2
    half = 12.706204736 * np.std([0.5, 0.6], ddof=1) / np.sqrt(2)  # t_{0.975, 1}
    assert r["val_rise"][2] - r["val_rise"][0] == pytest.approx(half, rel=1e-8)


def test_reg_summary_picks_the_lowest_mean_validation_loss():
    val = np.array([[[1.0], [0.7], [0.9]], [[1.0], [0.9], [0.6]]])  # means 1.0, 0.8, 0.75
    runs = fake_runs(val)
    for r in runs:
        for k in ("test_loss", "test_acc", "train_loss"):
            r.history[k] = r.history["val_loss"]
    s = lc.reg_summary(runs, (0.0, 0.1, 0.2), lam_sum=4.0, reg="wd")
    assert (s["best_index"], s["best_strength"]) == (2, 0.2)
    assert s["per_replicate_best"] == [0.1, 0.2] and s["shrink"] == pytest.approx(0.8)
    assert lc.reg_summary(runs, (0.0, 0.1, 0.2), 4.0, "l2")["shrink"] is None
