"""The helpers of experiments/versus_dropout_batchnorm.py against hand-computed values."""

import math

import jax
import numpy as np
import pytest
from helpers import load_script

import wdjax

STUDY = load_script("experiments/versus_dropout_batchnorm.py")
T1 = 12.706204736174698  # t_{0.975, 1}


def test_candidates_are_each_arms_own_grid():
    c = STUDY.candidates
    lams = (0.0, 0.3, 1.0)
    assert c("none", (0.2, 0.5), lams) == [(0.0, False, 0.0)]
    assert c("wd", (0.2, 0.5), lams) == [(0.0, False, 0.3), (0.0, False, 1.0)]
    assert c("dropout", (0.2, 0.5), lams) == [(0.2, False, 0.0), (0.5, False, 0.0)]
    assert c("bn+wd", (0.2,), lams) == [(0.0, True, 0.3), (0.0, True, 1.0)]
    assert c("dropout+bn+wd", (0.2, 0.5), lams) == [
        (0.2, True, 0.3), (0.2, True, 1.0), (0.5, True, 0.3), (0.5, True, 1.0)
    ]  # fmt: skip
    assert {len(c(a, (0.2, 0.5), lams)) for a in STUDY.ARMS} == {1, 2, 4}


def test_select_takes_the_lowest_mean_validation_loss():
    val = {"a": np.array([1.0, 3.0]), "b": np.array([2.5, 1.0]), "c": np.array([np.nan, 0.0])}
    test = {"a": np.array([0.5, 0.7]), "b": np.array([0.9, 0.3]), "c": np.array([0.1, 0.1])}
    choice, s, own = STUDY.select(["a", "b"], val, test)
    assert choice == "b"  # means 2.0, 1.75
    np.testing.assert_allclose(own, [0.5, 0.3])  # each replicate's own pick, scored on test
    assert s["per_replicate"] == [0, 1]  # replicate 0 picks a (1.0), replicate 1 picks b (1.0)
    assert s["nested"][0] == pytest.approx(0.4)  # test a[0] = 0.5, b[1] = 0.3
    assert STUDY.select(["a", "c"], val, test)[0] == "a"  # a diverged replicate: c's mean NaN


def test_overfitting_locates_each_replicates_minimum():
    nan = np.nan
    val = np.array([[0.9, nan, 0.5, nan, 0.7], [0.8, nan, 0.6, nan, 0.6]])  # evaluated 1, 3, 5
    o = STUDY.overfitting(val)
    assert o["min_epoch"]["mean"] == 3.0 and o["mean_curve_min_epoch"] == 3
    assert o["val_min"]["mean"] == pytest.approx(0.55)
    assert o["rise"]["mean"] == pytest.approx(0.1)  # rises 0.2 and 0.0
    assert o["rise"]["hi"] == pytest.approx(0.1 + T1 * 0.1)  # s = 0.2/√2, s/√2 = 0.1
    assert o["rise"]["lo"] == 0.0  # 0.1 − T1·0.1 < 0: a rise cannot be negative (study.rise)


def test_ratio_is_the_geometric_mean_of_paired_ratios():
    k1, k2 = (0.0, True, 0.0), (0.0, True, 1.0)
    finals = {x: {k1: np.array([1.0, 1.0]), k2: np.array([2.0, 8.0])} for x in STUDY.METRICS}
    r = STUDY.compare(finals, {"none": k1, "bn": k1, "bn+wd": k2})[1]["eff_lr_ratio"]
    assert r["mean"] == pytest.approx(4.0)  # log ratios ln2, ln8: mean ln4, s = ln4/√2
    assert r["lo"] == pytest.approx(4 * 4 ** (-T1 / 2))
    assert r["hi"] == pytest.approx(4 * 4 ** (T1 / 2))


def test_pairs_add_one_component_to_each_arm():
    got = STUDY.pairs()
    assert len(got) == 12 and len(set(got)) == 12  # 3 arms × 1 + 3 × 2 + 1 × 3 components
    assert ("dropout+bn", "dropout") in got and ("dropout+bn", "none") not in got
    assert ("dropout+bn+wd", "dropout+bn") in got and ("wd", "none") in got
    for arm, base in got:  # exactly one component fewer, named in the same order
        a, b = set(arm.split("+")), set(base.split("+")) - {"none"}
        assert b < a and len(a - b) == 1 and base in STUDY.ARMS, (arm, base)


def test_claims_pair_each_arm_with_its_baseline_by_replicate():
    keys = {a: (0.0, "bn" in a, float(len(a))) for a in STUDY.ARMS}  # one option per arm
    loss = {a: np.array([1.0, 1.2, 1.1]) for a in STUDY.ARMS}
    loss["dropout+bn"] = np.array([1.3, 1.5, 1.35])  # worse than dropout in every replicate
    loss["dropout"] = np.array([0.9, 1.0, 0.95])
    finals = {"eval_test_loss": {keys[a]: v for a, v in loss.items()}}
    own = dict(loss) | {"dropout": np.array([1.4, 1.4, 1.5])}  # nested picks: other options
    c = STUDY.claims(finals, keys, own, {"eff_lr_ratio": {"mean": 2.0, "lo": 1.5, "hi": 2.5}})
    d = c["dropout+bn − dropout"]
    assert (d["arm"], d["baseline"], d["outcome"]) == ("dropout+bn", "dropout", "contradicted")
    assert d["diff"][0] == pytest.approx(1.3 / 3) and d["diff"][1] > 0  # .4, .5, .4
    assert d["nested_diff"][0] == pytest.approx(-0.05) and d["nested_outcome"] == "inconclusive"
    assert c["dropout − none"]["outcome"] == "reproduced"  # −.1, −.2, −.15
    assert c["wd − none"]["outcome"] == "inconclusive"  # identical: interval [0, 0]
    assert c[STUDY.EFF_LR_CLAIM]["outcome"] == "reproduced" and len(c) == 13


def _fake_result(batchnorm: bool, k: int = 2):
    cfg = wdjax.SweepConfig(hidden=(5, 3), batchnorm=batchnorm, epochs=2)
    model = wdjax.make_model("mlp", 4, hidden=cfg.hidden, batchnorm=batchnorm)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2, 3, 1)).astype(np.float32)
    y = rng.integers(0, 4, 50).astype(np.int32)
    ds = wdjax.Dataset(x[:30], y[:30], x[30:40], y[30:40], x[40:], y[40:], 4, "fake")
    init = jax.jit(lambda key: model.init(key, x[:1], train=False)["params"])  # one compile
    params = [init(jax.random.key(s)) for s in range(k)]
    stacked = jax.tree.map(lambda *p: np.stack(p), *params)
    norms = {f"weight_l2/dense_{i}": np.array([[3.0, 4.0]] * k) for i in range(2)}
    history = {"test_loss": np.ones((k, 2)), "lr": np.full((k, 2), 1e-3), **norms}
    return wdjax.SweepResult(cfg, [], history, {}, {}, stacked, None), model, params, ds


def _population_stats(model, params, x):
    """Mean and biased variance of each BatchNorm's input over ``x``, layer by layer (numpy)."""
    stats, h = {}, np.asarray(x).reshape(len(x), -1)
    for i in range(2):
        z = h @ np.asarray(params[f"dense_{i}"]["kernel"])
        mean, var = z.mean(0), z.var(0)
        stats[f"bn_{i}"] = {"mean": mean, "var": var}
        scale, bias = (np.asarray(params[f"bn_{i}"][n]) for n in ("scale", "bias"))
        h = np.maximum((z - mean) / np.sqrt(var + 1e-5) * scale + bias, 0)
    return stats


@pytest.mark.parametrize("batchnorm", [False, True])
def test_final_eval_is_inference_mode_with_population_statistics(batchnorm):
    res, model, params, ds = _fake_result(batchnorm)
    ev = STUDY.final_eval(res, ds)
    assert set(ev) == {f"eval_{s}_{m}" for s in ("train", "val", "test") for m in ("loss", "acc")}

    @jax.jit  # the reference, one member and one split at a time (compiled, not op by op)
    def scores(variables, x, y):
        logits = model.apply(variables, x, train=False)
        return wdjax.cross_entropy(logits, y), wdjax.accuracy(logits, y)

    for k, p in enumerate(params):
        variables = {"params": p}
        if batchnorm:
            variables["batch_stats"] = _population_stats(model, p, ds.x_train)
        for s in ("train", "val", "test"):
            loss, acc = scores(variables, getattr(ds, f"x_{s}"), getattr(ds, f"y_{s}"))
            assert ev[f"eval_{s}_loss"][k] == pytest.approx(float(loss), rel=1e-5)
            assert ev[f"eval_{s}_acc"][k] == pytest.approx(float(acc))


def test_augment_adds_gap_norms_and_effective_learning_rate():
    res, *_, ds = _fake_result(False)
    h = STUDY.augment(res, ds).history
    ev = STUDY.final_eval(res, ds)
    np.testing.assert_allclose(h["gap"][:, -1], ev["eval_test_loss"] - ev["eval_train_loss"])
    np.testing.assert_allclose(h["stale"][:, -1], 1.0 - ev["eval_test_loss"])
    assert np.isnan(h["gap"][:, 0]).all() and np.isnan(h["eval_train_loss"][:, 0]).all()
    np.testing.assert_allclose(h["hidden_l2"], [[3 * math.sqrt(2), 4 * math.sqrt(2)]] * 2)
    np.testing.assert_allclose(h["eff_lr"], [[1e-3 / 3, 1e-3 / 4]] * 2)


def test_compare_pairs_by_replicate_against_none_and_bn():
    k0, k1, k2 = (0.0, False, 0.0), (0.0, True, 0.0), (0.0, True, 1.0)
    base, bn, wd = np.array([0.0, 1.0, 3.5]), np.array([1.0, 2.0, 4.0]), np.array([2.0, 8.0, 4.0])
    finals = {x: {k0: base, k1: bn, k2: wd} for x in STUDY.METRICS}
    arms, bn_wd = STUDY.compare(finals, {"none": k0, "bn": k1, "bn+wd": k2})
    r = arms["bn"]
    assert r["eval_test_loss_mean"] == pytest.approx(7 / 3)
    assert r["eval_test_loss_diff"] == pytest.approx(5 / 6)  # differences 1, 1, 0.5
    half = 4.302652729911275 * math.sqrt(1 / 12) / math.sqrt(3)  # t_{0.975, 2} · s / √n
    assert r["eval_test_loss_diff_lo"] == pytest.approx(5 / 6 - half)
    assert (r["batchnorm"], r["strength"], arms["none"]["eval_test_loss_diff"]) == (True, 0.0, 0.0)
    assert bn_wd["test_loss_diff"]["mean"] == pytest.approx(7 / 3)  # 1, 6, 0 against bn
    assert bn_wd["eff_lr_ratio"]["mean"] == pytest.approx(2.0)  # ratios 2, 4, 1: (2·4·1)^(1/3)
    assert arms["bn"]["eval_test_acc_lo"] == 0.0 and arms["bn"]["eval_test_acc_hi"] == 1.0
    assert arms["bn"]["eval_test_loss_lo"] == 0.0  # 7/3 − 4.3 < 0: a loss is ≥ 0
    assert arms["bn"]["gap_lo"] < 0  # a difference of losses: not clipped
