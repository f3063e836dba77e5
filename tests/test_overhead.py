"""experiments/overhead.py's own helpers against hand-computed values (the study end to end runs
in tests/test_experiments.py)."""

import math
import types

import numpy as np
import pytest
from helpers import load_script

import wdjax

ov = load_script("experiments/overhead.py")


def fake_runs(val, strengths):
    """Sweep results with ``val`` [replicates, settings, epochs] as val_loss (one member each)."""
    runs = []
    for v in np.asarray(val, float):
        members = [dict(member=j, strength=float(s), lr=1e-3, seed=0, fold=0)
                   for j, s in enumerate(strengths)]  # fmt: skip
        runs.append(types.SimpleNamespace(members=members, history={"val_loss": v}))
    return runs


def test_time_round_rotates_the_order():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    assert set(ov.time_round(runners, offset=4)) == set("abc")  # 4 mod 3 = 1
    assert calls == list("bca")
    calls.clear()
    times = ov.time_round(runners, offset=2)
    assert calls == list("cab") and min(times.values()) >= 0


def test_cell_summary_pairs_rounds_before_the_median():
    t_none = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]  # the load changes from round to round
    t = [1.0, 4.0, 3.0, 8.0, 5.0, 12.0]  # ratios 1..6 within each round
    s = ov.cell_summary({"none": t_none, "wd": t}, 1, {"none": 0.0, "wd": 0.0})["wd"]
    assert s["ratio"] == 3.5  # the median of 1..6
    # n = 6: the order-statistic interval [x_(1), x_(6)] covers 1 - 2/64 of the time
    assert (s["ratio_lo"], s["ratio_hi"], s["coverage"]) == (1.0, 6.0, 1 - 2 / 64)


def test_cell_summary_gives_microseconds_per_step_and_none_at_ratio_one():
    times = {"none": [0.010, 0.020, 0.030], "wd": [0.015, 0.030, 0.045]}
    c = ov.cell_summary(times, steps=10, compile_s={"none": 1.5, "wd": 2.5})
    assert c["none"]["us"] == pytest.approx(2000.0) and c["wd"]["us"] == pytest.approx(3000.0)
    assert c["none"]["ratio"] == 1.0 and c["wd"]["ratio"] == pytest.approx(1.5)
    assert np.isnan(c["wd"]["ratio_lo"])  # 3 rounds: no 95 % order-statistic interval
    assert (c["none"]["compile_s"], c["wd"]["compile_s"]) == (1.5, 2.5)


def test_epochs_to_target_is_the_first_epoch_at_or_below_it_and_nan_when_censored():
    curves = [[3.0, 2.0, 1.0], [3.0, 3.0, 3.0], [np.nan, 1.0, 0.5]]
    e = ov.epochs_to_target(curves, [2.0, 2.5, 1.0])
    np.testing.assert_array_equal(e, [2.0, np.nan, 2.0])


def test_time_to_target_pairs_each_replicate_with_its_own_none_target():
    none = fake_runs([[[1.0, 0.8, 0.9]], [[1.2, 0.9, 0.85]]], [0.0])  # best 0.8, 0.85
    wd = fake_runs([[[1.1, 1.05, 0.7], [2, 2, 2]], [[1.2, 1.0, 0.8], [2, 2, 2]]], [0.1, 1.0])
    l1 = fake_runs([[[2.0, 2.0, 2.0]], [[2.0, 2.0, 2.0]]], [1e-4])  # never reaches the target
    t = ov.time_to_target({"none": none, "wd": wd, "l1": l1}, factor=1.25,
                          seconds_per_epoch={"none": 2.0, "wd": 3.0, "l1": 1.0})  # fmt: skip
    assert t["none"]["targets"] == pytest.approx([1.0, 1.0625])  # 1.25 × each replicate's best
    assert t["none"]["epochs"] == [1.0, 2.0] and t["none"]["epochs_diff"] == 0.0
    w = t["wd"]
    assert (w["strength"], w["index"], w["reached"]) == (0.1, 0, 2)  # minima 0.75 and 2.0
    assert w["val_min"] == pytest.approx([0.75, 2.0])  # the mean curves' minima
    assert w["epochs"] == [3.0, 2.0] and w["epochs_diff"] == pytest.approx(1.0)  # [2, 0] vs none
    assert w["seconds_mean"] == pytest.approx(7.5)  # 3 s an epoch × [3, 2]
    assert w["seconds_diff"] == pytest.approx(4.5)  # [9 − 2, 6 − 4]
    half = 12.706204736 * np.std([7.0, 2.0], ddof=1) / math.sqrt(2)  # t_{0.975, 1}
    assert w["seconds_diff_hi"] - w["seconds_diff"] == pytest.approx(half)
    assert w["best_val_diff"] == pytest.approx(-0.075)  # [0.7 − 0.8, 0.8 − 0.85]
    assert w["curve"] == pytest.approx([1.15, 1.025, 0.75])
    assert w["edge"] and not t["none"]["edge"]  # λ = 0.1 is the grid's first value
    assert (w["epochs_lo"], w["epochs_hi"]) == (1.0, 3.0)  # t: [−3.85, 8.85], bounded to [1, 3]
    assert w["own_strength"] == [0.1, 0.1] and w["nested_epochs_mean"] == w["epochs_mean"]
    assert t["l1"]["reached"] == 0 and np.isnan(t["l1"]["epochs_mean"])  # censored: no mean
    assert np.isnan(t["l1"]["seconds_diff"])


def test_time_to_target_nested_lets_each_replicate_pick_its_own_lambda():
    none = fake_runs([[[1.0, 0.8, 0.9]], [[1.2, 0.9, 0.85]]], [0.0])  # targets 1.0, 1.0625
    l2 = fake_runs([[[0.95, 0.9, 0.9], [1.2, 1.2, 0.5]], [[1.0, 0.6, 0.6], [1.2, 1.1, 1.05]]],
                   [0.1, 1.0])  # fmt: skip  # replicate 0's own minimum: λ = 1 (0.5); 1's: 0.1
    t = ov.time_to_target({"none": none, "l2": l2}, 1.25, {"none": 1.0, "l2": 1.0})["l2"]
    assert t["strength"] == 0.1 and t["own_strength"] == [1.0, 0.1]  # mean minima .75 and .775
    assert t["epochs"] == [1.0, 1.0]  # averaged choice λ = 0.1: first at or below the target
    assert t["nested_epochs_mean"] == pytest.approx(2.0)  # own picks: epochs 3 and 1
    assert t["nested_epochs_diff"] == pytest.approx(0.5)  # none: 1 and 2 epochs


def test_labels_read_the_margins_fixed_before_the_run():
    r = lambda lo, hi: dict(ratio=(lo + hi) / 2, ratio_lo=lo, ratio_hi=hi)  # noqa: E731
    cells = {"a": {"wd": r(0.95, 1.05), "l1": r(0.95, 1.05), "l2": r(1.05, 1.15)},
             "b": {"wd": r(1.2, 1.4), "l1": r(0.92, 1.08), "l2": r(0.95, 1.05)}}  # fmt: skip
    t = lambda lo, hi, edge=False, reached=5: dict(epochs_diff_lo=lo, epochs_diff_hi=hi,  # noqa: E731
                                                   edge=edge, reached=reached, n=5)  # fmt: skip
    ttt = {"none": dict(epochs_mean=10.0), "wd": t(-1.0, 1.9), "l1": t(2.5, 4.0),
           "l2": t(-1.0, 1.0, edge=True)}  # fmt: skip
    lab = ov.labels(cells, ttt)
    assert [lab[k]["free_per_step"] for k in ("wd", "l1", "l2")] == [
        "contradicted", "reproduced", "inconclusive"]  # fmt: skip
    assert lab["wd"]["step_cells"] == ["reproduced", "contradicted"]
    assert lab["wd"]["epochs_margin"] == pytest.approx(2.0)  # 0.2 × none's 10 epochs
    assert [lab[k]["no_extra_epochs"] for k in ("wd", "l1", "l2")] == [
        "reproduced",
        "contradicted",
        "inconclusive",
    ]  # l2: a tuned λ at the grid edge
    ttt["wd"]["reached"] = 4  # a censored replicate: no verdict
    assert ov.labels(cells, ttt)["wd"]["no_extra_epochs"] == "inconclusive"


def test_table_shows_the_median_alone_without_an_interval():
    nan = float("nan")
    cells = {"mlp K=1": {"none": dict(us=1.234, us_lo=nan, us_hi=nan, ratio=1.0, ratio_lo=0.9,
                                      ratio_hi=1.2)}}  # fmt: skip
    t = {k: 0.5 for k in ("epochs", "seconds")} | {"strength": 0.0, "reached": 2, "n": 2}
    for k in ("epochs", "seconds", "best_val"):
        t |= {f"{k}_mean": 1.0, f"{k}_lo": 0.5, f"{k}_hi": 1.5, f"{k}_diff": 0.0,
              f"{k}_diff_lo": -0.1, f"{k}_diff_hi": 0.1}  # fmt: skip
    cols, rows = ov.table(cells, {"none": t | {"edge": False}})
    assert rows[0][1:3] == ["1", "1.00 [0.90, 1.20]"] and len(cols) == len(rows[0])


def test_full_config_meets_the_issue_rules():
    c = ov.get_config()
    assert c["replicates"] >= 5 and c["val_size"] >= 5000 and c["rounds"] >= 6
    assert c["cells"][0][:2] == ("mlp", 1) and {m for m, *_ in c["cells"]} == {"mlp", "cnn"}
    assert tuple(c["strategies"]) == ov.STUDIED == wdjax.STRATEGIES[:8]  # those of the time
    for reg in ov.STUDIED[1:]:  # every regularizer: 6 λ > 0, a factor √10 apart (rounded)
        g = np.log10(c["grids"][reg])
        assert len(g) == 6 and np.allclose(np.diff(g), 0.5, atol=0.03), reg
    assert (ov.STEP_MARGIN, ov.EPOCHS_MARGIN) == (0.1, 0.2)  # fixed before the run
    assert "0.2" in c["rules"]["no_extra_epochs"] and "0.1" in c["rules"]["free_per_step"]


def test_make_runner_runs_the_steps_it_claims_across_an_epoch_boundary():
    ds = wdjax.load("digits")  # 1,294 training images: 10 steps an epoch at batch 128
    fn, compile_s = ov.make_runner("wd", 2, wdjax.SweepConfig(), 13, ds)
    states, metrics = fn()
    assert metrics["train_loss"].shape == (2,) and compile_s > 0
    np.testing.assert_array_equal(np.asarray(states.step), [13, 13])  # 13 steps, every call
    np.testing.assert_array_equal(np.asarray(fn()[0].step), [13, 13])  # from the same start
    assert np.isnan(metrics["val_loss"]).all() and np.isnan(metrics["test_loss"]).all()


def test_seconds_per_epoch_prices_none_by_its_median_and_the_rest_by_their_paired_ratio():
    cell = {"none": {"us": 400.0, "ratio": 1.0}, "wd": {"us": 450.0, "ratio": 0.98}}
    s = ov.seconds_per_epoch(cell, steps=78)
    assert s["none"] == pytest.approx(400e-6 * 78)
    assert s["wd"] == pytest.approx(400e-6 * 78 * 0.98)  # not 450 µs: the paired ratio
