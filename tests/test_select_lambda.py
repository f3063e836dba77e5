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


def test_describe_regret_median_bootstrap_and_clopper_pearson_hits():
    values = np.arange(10.0)  # median 4.5; order statistics x_(2) = 1, x_(9) = 8
    d = mod.describe_regret(values, np.array([True] * 3 + [False] * 7))
    assert (d["median"], d["median_lo"], d["median_hi"]) == (4.5, 1.0, 8.0)
    assert d["median_coverage"] == pytest.approx(1 - 2 * 11 / 1024)
    assert d["mean"] == 4.5 and 0 <= d["mean_lo"] < 4.5 < d["mean_hi"] <= 9  # inside the range
    assert (d["hits"], d["picks"], d["oracle_hits"]) == (3, 10, 0.3)
    from scipy.stats import binom

    lo, hi = d["hit_rate"][1:]  # Clopper–Pearson: P(B ≥ 3 | lo) = P(B ≤ 3 | hi) = 0.025
    assert binom.sf(2, 10, lo) == pytest.approx(0.025) and binom.cdf(3, 10, hi) == pytest.approx(
        0.025
    )
    assert d["values"] == values.tolist() and "lo" not in d  # no t interval on a regret
    zeros = mod.describe_regret(np.zeros(10), np.ones(10, bool))
    assert zeros["mean_lo"] == zeros["mean_hi"] == 0.0 and zeros["hit_rate"][2] == 1.0


def test_grid_is_centred_by_the_rule_fixed_before_the_run():
    cfg, base = mod.get_config(), wdjax.SweepConfig()
    lam = np.array(cfg["strengths"][1:])
    assert cfg["strengths"][0] == 0.0 and len(lam) == 7
    np.testing.assert_allclose(np.diff(np.log10(lam)), 0.5, atol=0.01)  # half a decade apart
    steps = [e * (n // base.batch_size) for n, e, _ in cfg["budgets"]]  # 700 and 2,760
    centre = np.exp(np.mean([-np.log(base.lrs[0] * t) for t in steps]))  # 1/(η·T), geometric
    assert lam[3] == pytest.approx(centre, rel=2e-3) and "test loss" in cfg["rules"]["grid"]


def test_fold_values_average_seeds_per_strength_and_fold():
    # members in grid order: strength (2) × seeds (2) × folds (2); final epoch counts
    val = np.array([[9.0, 1.0], [9.0, 2.0], [9.0, 3.0], [9.0, 5.0],
                    [9.0, 5.0], [9.0, 6.0], [9.0, 7.0], [9.0, 8.0]])  # fmt: skip
    res = types.SimpleNamespace(history={"val_loss": val},
                                config=types.SimpleNamespace(strengths=(0.0, 1.0)))  # fmt: skip
    np.testing.assert_allclose(mod.fold_values(res, "val_loss", 2), [[2.0, 3.5], [6.0, 7.0]])


def test_compare_is_the_exact_sign_test_with_the_prediction_lower():
    assert (
        mod.PREDICTION == "lower" and mod.ALPHA == 0.05 and "sign test" in mod.RULES["prediction"]
    )
    cv, other = np.zeros(10), np.r_[np.full(8, 0.01), 0.0, -0.01]  # cv lower in 8, higher in 1
    c = mod.compare(cv, other)
    assert (c["cv_lower"], c["cv_higher"], c["ties"]) == (8, 1, 1)
    assert c["p"] == pytest.approx(2 * 10 / 512)  # 2·P(B ≤ 1), B ~ Binomial(9, ½) = 0.039
    assert (c["verdict"], c["outcome"]) == ("lower", "reproduced")
    c = mod.compare(other, cv)
    assert (c["verdict"], c["outcome"]) == ("higher", "contradicted")
    c = mod.compare(cv, np.r_[np.full(7, 0.01), 0.0, -0.01, -0.01])  # 7 against 2: p = 0.18
    assert (c["verdict"], c["outcome"]) == (NO_DIFFERENCE, "inconclusive")
    c = mod.compare(np.zeros(10), np.zeros(10))  # all tied (both at the oracle): no test
    assert (c["ties"], c["p"], c["outcome"]) == (10, 1.0, "inconclusive")
    c = mod.compare(np.r_[np.nan, cv[1:]], other)
    assert (c["verdict"], c["outcome"]) == (NO_DIFFERENCE, "inconclusive")


def outcomes(*words):
    """cv comparisons for the methods of VERSUS with these outcomes."""
    return {k: {"outcome": w, "verdict": w} for k, w in zip(mod.VERSUS, words, strict=True)}


def test_conclusion_words():
    ok = outcomes("reproduced", "reproduced", "reproduced")
    assert mod.conclusion({"1000": ok, "6000": ok}).startswith("reproduced (n = 1000: ")
    mixed = outcomes("reproduced", "inconclusive", "reproduced")
    assert mod.conclusion({"1000": ok, "6000": mixed}).startswith("inconclusive")
    bad = outcomes("contradicted", "reproduced", "inconclusive")
    text = mod.conclusion({"1000": bad, "6000": ok})
    assert text.startswith("contradicted") and "cv vs val_split contradicted" in text
