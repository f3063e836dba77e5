"""experiments/select_lambda.py's own helpers against hand-computed values (no training)."""

import types

import numpy as np
import pytest
from helpers import load_script

import wdjax
from wdjax.study import NO_DIFFERENCE

mod = load_script("experiments/select_lambda.py")


def test_both_hold_outs_and_the_final_networks_see_the_same_n_examples():
    sweeps = mod.method_overrides(300, 5, 0.1)
    assert sweeps["val_split"] == dict(train_size=270, val_size=30, folds=1)
    assert sweeps["cv"] == dict(train_size=300, val_size=0, folds=5)
    assert sweeps["final"] == dict(train_size=300, val_size=0, folds=1)
    seen = {}
    for name, kw in sweeps.items():
        ds = wdjax.load("digits", val_size=kw["val_size"], train_size=kw["train_size"], seed=7)
        x = np.concatenate([ds.x_train, ds.x_val]).reshape(300, -1)
        seen[name] = {row.tobytes() for row in x}
    assert len(seen["cv"]) == 300  # 300 distinct images: comparing sets is comparing examples
    assert seen["cv"] == seen["val_split"] == seen["final"]


def test_choices_per_method_and_the_oracle():
    # 2 splits, 3 strengths, 2 folds
    cv_val = np.array([[[3.0, 1.0], [2.0, 2.5], [1.0, 4.0]],  # fold means 2, 2.25, 2.5 -> 0
                       [[5.0, 5.0], [4.0, 1.0], [np.nan, 0.0]]])  # 5, 2.5, nan -> 1  # fmt: skip
    split_val = np.array([[0.3, 0.2, 0.1], [0.1, 0.2, 0.3]])
    test = np.array([[0.5, 0.4, 0.6], [0.7, 0.9, 0.8]])
    pick = mod.choices(cv_val, split_val, test)
    np.testing.assert_array_equal(pick["cv"], [0, 1])
    np.testing.assert_array_equal(pick["val_split"], [2, 0])
    np.testing.assert_array_equal(pick["one_fold_avg"], [[2, 0], [1, 2]])  # NaN skipped
    np.testing.assert_array_equal(pick["one_fold"], [2, 1])
    np.testing.assert_array_equal(pick["zero"], [0, 0])
    np.testing.assert_array_equal(pick["oracle"], [1, 0])


def test_regret_against_the_split_minimum_and_mean_over_folds():
    test = np.array([[0.5, 0.4, 0.6], [0.7, 0.9, 0.8]])
    np.testing.assert_allclose(mod.regret(test, np.array([0, 0])), [0.1, 0.0])
    np.testing.assert_allclose(mod.regret(test, np.array([[2, 1], [1, 2]])), [0.1, 0.15])
    assert np.isnan(mod.regret(np.array([[0.5, np.nan]]), np.array([1])))[0]  # never dropped


def test_describe_regret_median_interval_t_interval_and_hits():
    values = np.arange(10.0)  # median 4.5; order statistics x_(2) = 1, x_(9) = 8
    d = mod.describe_regret(values, np.array([True] * 3 + [False] * 7))
    assert (d["median"], d["median_lo"], d["median_hi"]) == (4.5, 1.0, 8.0)
    assert d["median_coverage"] == pytest.approx(1 - 2 * 11 / 1024)
    half = 2.2621571628 * np.std(values, ddof=1) / np.sqrt(10)  # t_{0.975, 9}
    assert (d["lo"], d["hi"]) == pytest.approx((4.5 - half, 4.5 + half))
    assert d["oracle_hits"] == 0.3 and d["values"] == values.tolist()


def test_fold_values_average_seeds_per_strength_and_fold():
    # members in grid order: strength (2) × seeds (2) × folds (2); final epoch counts
    val = np.array([[9.0, 1.0], [9.0, 2.0], [9.0, 3.0], [9.0, 5.0],
                    [9.0, 5.0], [9.0, 6.0], [9.0, 7.0], [9.0, 8.0]])  # fmt: skip
    res = types.SimpleNamespace(history={"val_loss": val},
                                config=types.SimpleNamespace(strengths=(0.0, 1.0)))  # fmt: skip
    np.testing.assert_allclose(mod.fold_values(res, "val_loss", 2), [[2.0, 3.5], [6.0, 7.0]])


def paired(*intervals):
    """cv − method entries for the methods of VERSUS, from their (lo, hi) intervals."""
    return {k: mod.compare(types.SimpleNamespace(mean=(lo + hi) / 2, lo=lo, hi=hi))
            for k, (lo, hi) in zip(mod.VERSUS, intervals, strict=True)}  # fmt: skip


def test_compare_reads_the_interval_against_the_prediction_lower():
    assert mod.PREDICTION == "lower" and "lower" in mod.RULES["prediction"]
    below, across, above = (-0.3, -0.1), (-0.1, 0.2), (0.1, 0.3)
    got = paired(below, across, above)
    assert [got[k]["verdict"] for k in mod.VERSUS] == ["lower", NO_DIFFERENCE, "higher"]
    assert [got[k]["outcome"] for k in mod.VERSUS] == ["reproduced", "inconclusive",
                                                       "contradicted"]  # fmt: skip
    diverged = mod.compare(types.SimpleNamespace(mean=np.nan, lo=np.nan, hi=np.nan))
    assert (diverged["verdict"], diverged["outcome"]) == ("undefined", "inconclusive")


def test_conclusion_words():
    lower = paired((-2, -1), (-2, -1), (-2, -1))
    assert mod.conclusion({"1000": lower, "6000": lower}).startswith("reproduced (n = 1000: ")
    mixed = paired((-2, -1), (-1, 1), (-2, -1))
    assert mod.conclusion({"1000": lower, "6000": mixed}).startswith("inconclusive")
    worse = paired((1, 2), (-2, -1), (-2, -1))
    text = mod.conclusion({"1000": worse, "6000": lower})
    assert text.startswith("contradicted") and "cv − val_split higher" in text
