"""Replicates: every source of randomness varies, one compile, paired differences by hand."""

import dataclasses
import types

import numpy as np
import pytest

from wdjax.analysis import stats
from wdjax.run.config import SweepConfig
from wdjax.study import replicates

BASE = SweepConfig(epochs=2, batch_size=64, strengths=(0.0, 1e-1), lrs=(1e-2,), seeds=2)


def test_replicates_vary_seeds_and_data_seed_and_share_them_across_settings():
    cfgs = replicates.replicate_configs(dataclasses.replace(BASE, data_seed=7), 3)
    assert [c.data_seed for c in cfgs] == [7, 8, 9]
    seeds = [sorted({m["seed"] for m in c.members()}) for c in cfgs]
    assert seeds == [[0, 1], [2, 3], [4, 5]]  # disjoint: each replicate its own initial weights
    for c in cfgs:  # common random numbers: every setting of a replicate uses the same seeds
        by_setting = {}
        for m in c.members():
            by_setting.setdefault(m["strength"], []).append(m["seed"])
        assert len({tuple(v) for v in by_setting.values()}) == 1
    with pytest.raises(ValueError, match="n:"):
        replicates.replicate_configs(BASE, 0)


@pytest.fixture(scope="module")
def runs():
    return replicates.run(BASE, 3)


def test_only_the_first_replicate_compiles_and_each_draws_other_data(runs):
    assert [r.meta["compile_seconds"] > 0 for r in runs[1:]] == [False, False]
    val = [r.history["val_loss"][0, -1] for r in runs]
    assert len(set(np.round(val, 6))) == 3  # other validation split, batch order and weights


def test_table_is_describe_and_paired_differences_over_replicates(runs):
    rows = replicates.table(runs, ["test_loss"], baseline={"strength": 0.0})
    assert [r["strength"] for r in rows] == [0.0, 0.1] and rows[0]["n"] == 3
    last = [np.asarray(r.history["test_loss"][:, -1], float) for r in runs]  # float64 sums
    per = np.array([[x[:2].mean(), x[2:].mean()] for x in last])  # [replicates, settings]
    s = stats.describe(per[:, 1])
    assert rows[1]["test_loss_mean"] == pytest.approx(s.mean, rel=1e-12)
    assert rows[1]["test_loss_lo"] == pytest.approx(s.lo, rel=1e-12)
    d = per[:, 1] - per[:, 0]
    half = stats.t_quantile(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert rows[1]["test_loss_diff"] == pytest.approx(d.mean(), rel=1e-12)
    assert rows[1]["test_loss_diff_hi"] == pytest.approx(d.mean() + half, rel=1e-12)
    assert rows[0]["test_loss_diff"] == 0.0 and rows[0]["test_loss_diff_hi"] == 0.0  # itself
    with pytest.raises(ValueError, match="baseline"):
        replicates.table(runs, ["test_loss"], baseline={"strength": 0.5})


def test_curves_are_each_settings_member_mean_per_epoch(runs):
    settings, c = replicates.curves(runs, "val_loss")
    assert [s["strength"] for s in settings] == [0.0, 0.1] and c.shape == (3, 2, 2)
    h = np.asarray(runs[2].history["val_loss"], float)
    np.testing.assert_allclose(c[2, 1], h[2:].mean(axis=0), rtol=1e-12)  # members 2, 3: λ = 0.1
    _, final = replicates.setting_values(runs, "val_loss")
    np.testing.assert_allclose(c[:, :, -1], final, rtol=1e-12)


def test_a_diverged_member_makes_its_setting_nan_in_that_replicate():
    members = [dict(member=k, strength=s, lr=1e-3, seed=k % 2, fold=0)
               for k, s in enumerate((0.0, 0.0, 0.1, 0.1))]  # fmt: skip
    loss = np.arange(8.0).reshape(4, 2)
    diverged = np.array([[0, 0], [0, 0], [0, 1], [0, 0]], bool)  # member 2 (λ = 0.1) diverged
    runs = [types.SimpleNamespace(members=members, history={"x": loss, "diverged": d})
            for d in (diverged, np.zeros_like(diverged))]  # fmt: skip
    _, v = replicates.setting_values(runs, "x")
    np.testing.assert_array_equal(v, [[2.0, np.nan], [2.0, 6.0]])  # means of final epochs
    row = replicates.table(runs, ["x"], baseline={"strength": 0.0})[1]
    assert np.isnan(row["x_mean"]) and np.isnan(row["x_diff"])  # never silently dropped
