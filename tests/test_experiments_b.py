"""Smoke tests of studies 4, 5, 6 and 8 (experiments/), plus checks of their own helpers."""

import importlib.util
import json
import math
import pathlib
import time

import numpy as np
import pytest
from helpers import gamma

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _study(name):
    spec = importlib.util.spec_from_file_location(
        f"study_{name}", ROOT / "experiments" / f"{name}.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _smoke(mod, tmp_path, keys, figure):
    out = tmp_path / mod.NAME
    summary = mod.main(["--smoke", "--out", str(out)])
    for f in ("summary.json", "table.md", "table.csv", figure):
        assert (out / f).is_file(), f
    saved = json.loads((out / "summary.json").read_text())
    assert set(keys) | {"figure", "command"} <= set(saved)
    assert saved["figure"] == figure
    assert "--smoke" in saved["command"]
    return summary


# --- study 4: decoupling ------------------------------------------------------------------------


def test_decoupling_smoke(tmp_path):
    mod = _study("decoupling")
    s = _smoke(
        mod, tmp_path, ["slopes", "slopes_seed_std", "lambda_star", "edge", "best"], "heatmaps.png"
    )
    assert set(s["slopes"]) == {"adam+wd_paper+bn"}
    assert math.isfinite(s["slopes"]["adam+wd_paper+bn"])
    best = s["best"]["adam+wd_paper+bn"]
    assert best["lr"] in s["lrs"]["adam+wd_paper+bn"]
    assert 0.0 <= best["test_acc"] <= 1.0 and best["test_loss"] > 0


@pytest.mark.parametrize("slope", [-1.0, 0.0, 1.0, -0.5])
def test_best_strength_and_slope_recover_a_known_slope(slope):
    mod = _study("decoupling")
    lrs = np.geomspace(1e-3, 1e-1, 5)
    lams = np.geomspace(1e-6, 1.0, 13)
    star = 1e-3 * (lrs / 1e-2) ** slope * 1.37  # off the grid points
    loss = (np.log(lams)[:, None] - np.log(star)[None, :]) ** 2 + 0.5  # [λ, lr], quadratic in log λ
    got, edge = mod.best_strength(lams, loss)
    np.testing.assert_allclose(got, star, rtol=1e-6)
    assert not edge.any()
    assert mod.fit_slope(lrs, got) == pytest.approx(slope, abs=1e-6)


def test_best_strength_flags_edges_and_ignores_diverged():
    mod = _study("decoupling")
    lams = np.array([1e-3, 1e-2, 1e-1])
    loss = np.array([[1.0, np.nan], [2.0, 0.5], [3.0, np.inf]])  # col 0: edge; col 1: NaN is +inf
    got, edge = mod.best_strength(lams, loss)
    assert edge.tolist() == [True, False]
    assert got[0] == pytest.approx(1e-3) and got[1] == pytest.approx(1e-2)


# --- study 5: versus dropout / batchnorm --------------------------------------------------------


def test_versus_dropout_batchnorm_smoke(tmp_path):
    mod = _study("versus_dropout_batchnorm")
    s = _smoke(mod, tmp_path, ["setups", "best", "epochs", "seeds", "dropout"], "comparison.png")
    assert set(s["setups"]) == {"dropout+bn", "dropout+bn+wd"}
    assert s["setups"]["dropout+bn"]["strength"] == 0.0
    assert s["setups"]["dropout+bn+wd"]["strength"] > 0.0
    for row in s["setups"].values():
        assert row["loss_gap"] == pytest.approx(row["test_loss"] - row["train_loss"], rel=1e-6)
        assert row["acc_gap"] == pytest.approx(row["train_acc"] - row["test_acc"], abs=1e-6)


def test_final_by_strength_groups_by_member_labels():
    mod = _study("versus_dropout_batchnorm")

    class Fake:
        members = [dict(member=m, strength=s, seed=d) for m, (s, d) in
                   enumerate([(0.1, 1), (0.0, 0), (0.1, 0), (0.0, 1)])]  # fmt: skip
        history = {"x": np.array([[9, 101], [9, 0], [9, 100], [9, 1]], float)}

    strengths, v = mod.final_by_strength(Fake, "x")
    assert strengths.tolist() == [0.0, 0.1]
    np.testing.assert_array_equal(v, [[0, 1], [100, 101]])  # [strength, seed], final epoch


# --- study 6: batchnorm equilibrium -------------------------------------------------------------


def test_batchnorm_equilibrium_smoke(tmp_path):
    mod = _study("batchnorm_equilibrium")
    s = _smoke(mod, tmp_path, ["equilibrium", "steps", "window"], "equilibrium.png")
    e = s["equilibrium"]["adam+wd"]
    assert e["predicted"] == pytest.approx(math.sqrt(2e-3 * 0.1 / 1.9))
    assert 0 < e["measured"] < 0.5
    assert set(e["per_layer"]) == {"dense_0", "dense_1"}  # the BatchNorm-preceded kernels only


def test_predicted_equilibria_by_hand():
    p = _study("batchnorm_equilibrium").predicted
    assert p("adam", "wd", 1e-3, 1.0, b1=0.9) == pytest.approx(math.sqrt(2e-4 / 1.9))
    assert p("momentum", "l2", 1e-2, 0.1, momentum=0.9) == pytest.approx(math.sqrt(2e-3 / 1.9))
    assert p("momentum", "wd", 1e-2, 0.1, momentum=0.8) == pytest.approx(
        math.sqrt(2e-3 * 0.2 / 1.8)
    )
    with pytest.raises(ValueError, match="no prediction"):
        p("sgd", "l1", 1e-2, 0.1)


def test_equilibrium_pools_rms_over_window_and_layers():
    eq = _study("batchnorm_equilibrium").equilibrium
    steps = np.arange(10.0)[:, None] * np.ones((1, 3))  # early steps must be ignored
    rec = {"angle/a": np.where(steps >= 6, 3.0, 99.0), "angle/b": np.where(steps >= 6, 4.0, 99.0),
           "norm/a": np.full((10, 3), 7.0)}  # fmt: skip
    pooled, per_layer = eq(rec, 4, np.array([0, 2]))
    np.testing.assert_allclose(pooled, [math.sqrt(12.5)] * 2)
    assert per_layer["a"].tolist() == [3.0, 3.0]


@pytest.mark.numerics
def test_trace_steps_records_the_kernels_it_returns():
    import jax
    import jax.numpy as jnp

    import wdjax

    mod = _study("batchnorm_equilibrium")
    cfg = wdjax.SweepConfig(
        optimizer="momentum", reg="wd", batchnorm=True, hidden=(4,), batch_size=16
    )
    engine = wdjax.Engine.from_config(cfg, 3)
    x = jax.random.normal(jax.random.key(1), (16, 2, 2, 1))
    y = jnp.arange(16, dtype=jnp.int32) % 3
    hyper = wdjax.Hyper(jnp.full(2, 0.1), jnp.full(2, 0.1), jnp.arange(2), jnp.zeros(2, jnp.int32))
    init = engine.init_members(hyper, x[:1])
    w0 = np.asarray(init.params["dense_0"]["kernel"])
    states, rec = mod.trace_steps(engine, init, hyper, x, y, 2)
    assert rec["angle/dense_0"].shape == (2, 2)  # 2 epochs × 1 step, 2 members
    w = np.asarray(states.params["dense_0"]["kernel"], np.float64)
    # float32 sums of 16 squares (no cancellation) and a square root, against float64: within
    # γ_18 relative to each norm (2·γ_18 leaves room for the mean's division).
    tol = 2 * gamma(18)
    np.testing.assert_allclose(rec["norm/dense_0"][-1], np.linalg.norm(w, axis=(1, 2)), rtol=tol)
    unit = np.sqrt(np.mean(np.sum(w**2, axis=1), axis=-1))
    np.testing.assert_allclose(rec["unit_norm/dense_0"][-1], unit, rtol=tol)
    assert np.all(rec["angle/dense_0"] > 0) and np.all(np.isfinite(rec["angle/dense_0"]))
    # The first recorded RMS angle is the angle between w0 and w after one step (float64 arccos).
    one, rec_one = mod.trace_steps(engine, init, hyper, x, y, 1)  # its own w1 (another program)
    w1 = np.asarray(one.params["dense_0"]["kernel"], np.float64)
    cos = np.sum(w0 * w1, 1) / np.linalg.norm(w0, axis=1) / np.linalg.norm(w1, axis=1)
    rms = np.sqrt(np.mean(np.arccos(np.clip(cos, -1, 1)) ** 2, axis=-1))
    # The float32 angle 2·atan2(‖ŵ − ŵ'‖, ‖ŵ + ŵ'‖), fan-in 4: each unit-vector element is off
    # by ≤ γ_12 (4 squares, 3 adds, a root, a division, the subtraction, with room for the atan2
    # and the RMS), so ‖ŵ − ŵ'‖ and θ by ≤ √4·2·γ_12 absolute: 4·γ_12/θ relative to θ (the
    # float64 arccos reference is exact by comparison).
    np.testing.assert_allclose(rec_one["angle/dense_0"][0], rms, rtol=4 * gamma(12) / rms.min())


# --- study 8: overhead --------------------------------------------------------------------------


def test_overhead_smoke(tmp_path):
    mod = _study("overhead")
    s = _smoke(
        mod, tmp_path, ["relative", "per_step_us", "iqr_us", "compile_seconds"], "overhead.png"
    )
    assert s["relative"]["K=2"]["none"] == 1.0
    assert set(s["relative"]["K=2"]) == {"none", "wd"}
    assert all(v > 0 for v in s["per_step_us"]["K=2"].values())


def test_overhead_timer_and_runner_do_the_work_they_claim():
    import wdjax

    mod = _study("overhead")
    times = mod.time_all({"fast": lambda: None, "slow": lambda: time.sleep(0.01)}, repeats=3)
    assert len(times["fast"]) == 3 and min(times["slow"]) > max(times["fast"])
    cfg = dict(mod.get_config(smoke=True), steps=7)
    fn, compile_s = mod.make_runner("wd", 2, cfg, wdjax.load("digits"))
    states, losses = fn()
    assert losses.shape == (7, 2) and compile_s > 0
    np.testing.assert_array_equal(np.asarray(states.step), [7, 7])  # 7 optimizer steps per member


@pytest.mark.parametrize("slope", [-1.0, 0.0])
def test_basin_edge_recovers_a_known_edge_slope(slope):
    mod = _study("decoupling")
    lrs = np.geomspace(1e-3, 1e-1, 5)
    lams = np.geomspace(1e-6, 1.0, 13)
    edge = 1e-3 * (lrs / 1e-2) ** slope * 1.37
    # Minimum 1.0 at the smallest λ, then linear in log λ, reaching 1.1 exactly at the edge.
    x = np.log(lams)[:, None] - np.log(lams[0])
    loss = 1.0 + 0.1 * x / (np.log(edge) - np.log(lams[0]))[None, :]
    got = mod.basin_edge(lams, loss, rise=0.1)
    np.testing.assert_allclose(got, edge, rtol=1e-6)
    assert mod.fit_slope(lrs, got) == pytest.approx(slope, abs=1e-6)
    assert np.isnan(mod.basin_edge(lams, np.ones((13, 1)))[0])  # never exceeds: NaN
