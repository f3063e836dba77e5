"""Replicates: every source of randomness varies, one compile, paired differences by hand."""

import dataclasses
import types

import numpy as np
import pytest

import wdjax
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


# --- the replicate × arm loop: common random numbers, saved as it goes, resumable by arm -------


def fake_sweep(calls):
    """A stand-in for wdjax.sweep that records each config and returns a history made from it."""

    def sweep(cfg, **kw):
        calls.append(cfg)
        members = cfg.members()
        h = np.array([[cfg.data_seed + m["seed"] / 10 + m["strength"]] * cfg.epochs
                      for m in members])  # fmt: skip
        return types.SimpleNamespace(config=cfg, members=members, history={"val_loss": h})

    return sweep


def test_arms_share_each_replicates_draws_and_a_rerun_loads_them(tmp_path, monkeypatch):
    from wdjax.run import runner
    from wdjax.study import arms

    calls = []
    monkeypatch.setattr(runner, "sweep", fake_sweep(calls))
    two = {"a": BASE, "b": dataclasses.replace(BASE, reg="l1", strengths=(0.0, 1e-3))}
    got = arms.run(str(tmp_path), two, 3)
    assert [(c.reg, c.first_seed, c.data_seed) for c in calls] == [
        (reg, 2 * r, r) for r in range(3) for reg in ("wd", "l1")
    ]  # replicates outermost
    assert (tmp_path / "arms" / "b" / "r2.json").exists()
    calls.clear()
    again = arms.run(str(tmp_path), two, 3)
    assert calls == []  # everything loaded
    for k in two:
        for x, y in zip(got[k], again[k], strict=True):
            assert x.members == y.members and x.config == y.config and x.seconds == y.seconds >= 0
            np.testing.assert_array_equal(x.history["val_loss"], y.history["val_loss"])
    (tmp_path / "arms" / "a" / "r1.json").unlink()  # interrupted before a's replicate 1 was done
    arms.run(str(tmp_path), {k: dataclasses.replace(c, data_dir="/elsewhere")
                             for k, c in two.items()}, 3)  # fmt: skip
    assert [(c.reg, c.data_seed) for c in calls] == [("wd", 1)]  # data_dir: not a difference


def test_a_saved_arm_of_another_config_is_refused_or_recomputed(tmp_path, monkeypatch, capsys):
    from wdjax.run import runner
    from wdjax.study import arms

    calls = []
    monkeypatch.setattr(runner, "sweep", fake_sweep(calls))
    arms.run(str(tmp_path), {"a": BASE}, 2)
    other = {"a": dataclasses.replace(BASE, strengths=(0.0, 0.2), epochs=3)}
    calls.clear()
    with pytest.raises(wdjax.ConfigError, match=r"r0.json was made by another config \(epochs, "
                       r"strengths differ\); pass --stale recompute"):  # fmt: skip
        arms.run(str(tmp_path), other, 2)
    assert calls == []  # refused before training anything
    res = arms.run(str(tmp_path), other, 2, stale="recompute")
    assert len(calls) == 2 and "recomputing arm 'a' replicate 0" in capsys.readouterr().err
    assert res["a"][1].history["val_loss"].shape == (4, 3)
    with pytest.raises(wdjax.ConfigError, match="--stale"):
        arms.run(str(tmp_path), other, 2, stale="maybe")
    with pytest.raises(wdjax.ConfigError, match="arm 'a/b'"):
        arms.run(str(tmp_path), {"a/b": BASE}, 2)
    with pytest.raises(wdjax.ConfigError, match="arm 'a': give a SweepConfig"):
        arms.run(str(tmp_path), {"a": {}}, 2)


def test_saved_arms_give_the_same_tables_as_the_sweeps(runs, tmp_path, monkeypatch):
    from wdjax.run import runner
    from wdjax.study import arms

    done = iter(runs)
    monkeypatch.setattr(runner, "sweep", lambda cfg, **kw: next(done))
    fresh = arms.run(str(tmp_path), {"x": BASE}, 3)["x"]
    monkeypatch.setattr(runner, "sweep", None)  # a resumed run trains nothing
    loaded = arms.run(str(tmp_path), {"x": BASE}, 3)["x"]
    want = replicates.table(runs, ["test_loss", "val_loss"], baseline={"strength": 0.0})
    assert replicates.table(fresh, ["test_loss", "val_loss"], {"strength": 0.0}) == want
    assert replicates.table(loaded, ["test_loss", "val_loss"], {"strength": 0.0}) == want


def test_a_callable_data_gives_each_trained_replicate_its_own_dataset(tmp_path, monkeypatch):
    from wdjax.run import runner
    from wdjax.study import arms

    got, built = [], []
    fake = fake_sweep([])
    monkeypatch.setattr(runner, "sweep", lambda cfg, **kw: got.append(kw["data"]) or fake(cfg))

    def data(cfg):
        built.append(cfg.data_seed)
        return f"dataset {cfg.data_seed}"

    arms.run(str(tmp_path), {"a": BASE}, 2, data=data)
    assert got == ["dataset 0", "dataset 1"] and built == [0, 1]  # one per replicate's config
    (tmp_path / "arms" / "a" / "r1.json").unlink()
    got.clear(), built.clear()
    arms.run(str(tmp_path), {"a": BASE}, 2, data=data)
    assert got == ["dataset 1"] and built == [1]  # a loaded replicate builds no dataset
    arms.run(str(tmp_path / "b"), {"a": BASE}, 1, data="as given")
    assert got[-1] == "as given"


def test_early_stopped_takes_each_member_at_its_own_first_lowest_validation_loss():
    val = np.array([[3.0, 1.0, 2.0, 1.0], [np.nan, np.nan, 0.5, 0.7], [np.nan] * 4])
    test = np.arange(12.0).reshape(3, 4)
    flag = np.zeros((3, 4), bool)
    history = {"val_loss": val, "test_loss": test, "diverged": flag, "norm": np.ones((3, 4, 2))}
    res = types.SimpleNamespace(members=["a", "b", "c"], history=history)
    got = replicates.early_stopped(res)
    assert got.members == ["a", "b", "c"]
    np.testing.assert_array_equal(got.history["epoch"], [[2.0], [3.0], [1.0]])  # the first tie
    np.testing.assert_array_equal(got.history["test_loss"], [[1.0], [6.0], [8.0]])
    np.testing.assert_array_equal(got.history["val_loss"][:2], [[1.0], [0.5]])
    assert got.history["diverged"] is flag and got.history["norm"].shape == (3, 4, 2)  # kept
