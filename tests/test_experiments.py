"""Every study in experiments/ end to end in smoke mode, and checks of the studies' own helpers.

Each study runs once per session (the ``smoke`` fixture: ``study_smoke`` in conftest.py) into one
temporary results folder, so a study that reads another's summary (``NEEDS``) finds it beside its
own ``--out``, as it does in ``results/studies/``. The studies share static configs (model, batch
size) and, under the suite's 4 fake devices, chunk shapes, so most sweeps reuse programs compiled
by an earlier study.
"""

import csv
import dataclasses
import itertools
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import gamma, load_script

import wdjax
from wdjax.study import Option

pytestmark = pytest.mark.xdist_group("studies")  # one worker runs the smoke runs (conftest.py)
ROOT = pathlib.Path(__file__).resolve().parents[1]
STUDIES = sorted(p.stem for p in (ROOT / "experiments").glob("*.py"))
KEYS = {  # the headline keys each study's docstring lists for summary.json
    "batchnorm_equilibrium": {"equilibrium", "zero", "mechanism", "steps", "window", "smooth",
                              "band", "batch_size", "replicates", "dataset", "labels", "traces",
                              "margin", "growth_margin", "previous"},
    "decay_variants": {"adamc_drift", "test_loss_diff", "claims", "arms", "lr", "margin",
                       "drift_from", "replicates", "selected_by", "dataset"},
    "decoupling": {"arms", "slope_verdicts", "control", "control_passed", "current", "delta_slope",
                   "variant", "epochs", "train_size", "replicates", "selected_by", "dataset"},
    "l1_sparsity": {"arms", "dense", "claims", "l2_pick", "previous", "max_sparsity",
                    "sparsity_check", "eval_check", "image_shape", "alive_pixels", "tolerance",
                    "selected_by", "epochs", "fine_tune", "replicates", "dataset"},
    "lambda_curve": {"conditions", "best_strength", "selected_by", "strengths", "replicates",
                     "dataset", "clean_val_same_training", "previous"},
    "lambda_scaling": {"slope_log_n", "slope_log_lr", "predicted_slope", "tau_epochs",
                       "steps_slope", "width", "verdicts", "control", "averaged", "per_replicate",
                       "cells", "baseline", "epochs", "sizes", "lrs", "taus", "edges",
                       "replicates", "selected_by", "dataset"},
    "overhead": {"timing", "time_to_target", "load", "machine", "cells", "steps_per_call", "rounds",
                 "train_size", "val_size", "steps_per_epoch", "seconds_per_epoch", "target_factor",
                 "best_strength", "strengths", "selected_by", "replicates", "epochs", "dataset",
                 "ratio_interval", "labels", "step_margin", "epochs_margin", "previous"},
    "select_lambda": {"regret", "paired", "lambda", "curves", "baseline_min_epoch", "selection",
                      "conclusion", "budgets", "strengths", "replicates", "folds", "val_fraction",
                      "reg", "mask", "selected_by", "dataset", "alpha", "labels", "previous"},
    "tutorial_mlp": {"arms", "keras", "programs", "sparse", "tau", "edges", "best_strength",
                     "previous", "epochs", "replicates", "train_size", "selected_by", "dataset"},
    "versus_dropout_batchnorm": {"arms", "overfitting", "bn_wd", "claims", "tuning", "eval_check",
                                 "best", "selected_by", "rates", "strengths", "epochs",
                                 "eval_every", "replicates", "train_size", "hidden", "dataset",
                                 "nested", "curves", "previous"},
}  # fmt: skip


def study(name):
    return load_script(f"experiments/{name}.py")


def unheld_in_write_up(smoke, name) -> list:
    """The numbers of ``name``'s write-up (from its smoke summary) that no smoke result holds."""
    out = smoke(name)[0]
    text = study(name).write_up(json.loads((out / "summary.json").read_text()))
    study(name).figure(json.loads((out / "summary.json").read_text()))  # drawn from the summary
    return [n.text for n in load_script("scripts/docs_numbers.py").unheld(text, str(out))]


@pytest.fixture
def smoke(study_smoke):
    """``smoke(name)`` → (results directory, what ``main`` returned), each study run once per
    session (``study_smoke`` in conftest.py; test_studies_docs_numbers.py reads the same runs)."""
    return study_smoke


def configs(name) -> tuple[dict, dict]:
    """(full, smoke) config dicts: ``get_config()`` and its ``smoke`` overrides applied (a study
    on ``study.main``), or ``get_config(smoke=True)``; declared options as their defaults."""
    mod = study(name)
    if not hasattr(mod, "smoke"):
        return mod.get_config(), mod.get_config(smoke=True)
    full = mod.get_config()
    plain = {k: v.default if isinstance(v, Option) else v for k, v in full.items()}
    return plain, {**plain, **mod.smoke(full)}


def summary(smoke, name) -> dict:
    return json.loads((smoke(name)[0] / "summary.json").read_text())


# --- every study ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", STUDIES)
def test_study_writes_summary_table_and_figure(smoke, name):
    assert name in KEYS, f"list experiments/{name}.py's summary.json keys in KEYS"
    out, returned = smoke(name)
    saved = json.loads((out / "summary.json").read_text())
    assert KEYS[name] | {"figure", "command", "seconds"} <= set(saved)
    assert set(returned) == set(saved)  # main returns the summary it wrote
    assert saved["command"] == f"python experiments/{name}.py --smoke --out {out}"
    assert (out / saved["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "table.md").read_text().splitlines()
    with open(out / "table.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(md) == len(rows) + 1 >= 3  # markdown: header, rule, ≥ 1 row; CSV: header, rows
    assert md[0] == "| " + " | ".join(rows[0]) + " |"


@pytest.mark.parametrize("name", STUDIES)
def test_get_config_overrides_only_what_the_study_changes(name):
    defaults = {f.name: f.default for f in dataclasses.fields(wdjax.SweepConfig)}
    full, small = configs(name)
    restated = sorted(k for k, v in full.items() if k in defaults and v == defaults[k])
    assert not restated, f"{name} restates SweepConfig defaults: {restated}"
    assert set(full) <= set(small) <= set(full) | set(defaults)  # smoke may shrink a default
    wdjax.SweepConfig(**{k: v for k, v in small.items() if k in defaults})  # valid field types
    assert small.get("seeds", 1) == 1 and small.get("epochs", 1) <= 2


# --- 1, 2: tutorial_mlp, lambda_curve -------------------------------------------------------


def test_lambda_curve(smoke):
    out, _ = smoke("lambda_curve")
    curve = summary(smoke, "lambda_curve")
    regs, modes = {"wd", "l2"}, {"final", "early"}
    assert curve["selected_by"] == "val_loss" and curve["replicates"] == 2
    assert set(curve["versions"]) >= {"python", "jax", "flax", "optax", "wdjax"}
    assert "selection" in curve["rules"] and curve["clean_val_same_training"] is True
    assert [c["val_labels"] for c in curve["conditions"]] == ["noisy", "clean"]
    for c in curve["conditions"]:
        assert set(c["regs"]) == regs and 1 <= c["baseline"]["val_min_epoch"] <= c["epochs"]
        assert c["baseline"]["val_rise"][1] >= 0.0  # a rise is bounded at 0
        for reg, mode in itertools.product(regs, modes):
            r = c["regs"][reg] if mode == "final" else c["regs"][reg][mode]
            rows = r["rows"]
            val = [x["val_loss_mean"] for x in rows]
            assert r["best_strength"] == rows[r["best_index"]]["strength"]
            assert val[r["best_index"]] == min(val)  # chosen on validation loss, not test
            assert rows[0]["test_loss_diff"] == 0.0  # λ = 0 paired with itself
            assert r["best_strength"] in r["one_se"] and len(r["nested_test_loss"]) == 3
            test = [x["test_loss_mean"] for x in rows]
            assert test[curve["strengths"][reg].index(r["oracle_strength"])] == min(test)
            assert ("epoch_mean" in rows[0]) == (mode == "early")
    # the clean-validation twin: the same training (same bits), other validation labels
    noisy, clean = (np.load(out / "arms" / f"n600_noise0.2_cosine{v}_wd" / "r0.npz")
                    for v in ("", "_cleanval"))  # fmt: skip
    np.testing.assert_array_equal(noisy["test_loss"], clean["test_loss"])
    assert not np.array_equal(noisy["val_loss"], clean["val_loss"])


def test_lambda_curve_resumes_by_arm_from_what_it_saved(smoke):
    out, first = smoke("lambda_curve")
    saved = sorted(p.name for p in (out / "arms").iterdir())
    assert saved == sorted(f"n600_noise0.2_cosine{v}_{r}" for v in ("", "_cleanval")
                           for r in ("l2", "wd"))  # fmt: skip
    (out / "arms" / "n600_noise0.2_cosine_cleanval_wd" / "r1.json").unlink()  # as if stopped
    again = study("lambda_curve").main(["--smoke", "--out", str(out)])
    timing = {"seconds", "sweep_seconds", "arms_loaded"}
    same = set(first) - timing
    assert {k: again[k] for k in same} == {k: first[k] for k in same}  # the same program's bits
    assert (first["arms_loaded"], again["arms_loaded"]) == (0, 7)  # 4 arms × 2 replicates − 1


def test_tutorial_mlp(smoke):
    s = summary(smoke, "tutorial_mlp")
    arms, programs = s["arms"], s["programs"]
    assert set(programs) == {"tutorial", "long"} and not s["keras"]["installed"]  # smoke: no Keras
    assert {"tutorial none", "tutorial l1(0.01)", "tutorial l1_prox(0.01)", "long early none"} | {
        f"tutorial {r} at its λ" for r in s["best_strength"]} <= set(arms)  # fmt: skip
    assert arms["tutorial l1(0.01)"]["strength"] == 0.01 and arms["tutorial none"][
        "test_loss_diff"] == 0.0  # fmt: skip
    # the prox makes exact zeros, the subgradient none; near zero (|w| < η) counts the band
    nominal = [arms[f"tutorial {a}(0.01)"] for a in ("l1", "l1_prox")]
    assert nominal[1]["exact_zero_mean"] > 0 == nominal[0]["exact_zero_mean"]
    assert nominal[0]["near_zero_mean"] > arms["tutorial none"]["near_zero_mean"]
    assert all(0 <= a[f"{m}_lo"] <= a[f"{m}_hi"] <= 1 for a in arms.values()
               for m in ("test_acc", "near_zero", "exact_zero"))  # fmt: skip
    assert set(s["sparse"].values()) <= {"reproduced", "contradicted", "inconclusive"}
    for p in programs.values():
        assert set(p["claims"]) == {"l1", "l2"} and 1 <= p["baseline"]["min_epoch"] <= p["epochs"]
        for reg in p["regs"].values():
            sel, val = reg["selection"], [r["val_loss_mean"] for r in reg["rows"]]
            assert val[sel["averaged"]] == min(val) and sel["averaged_strength"] in sel["one_se"]
            assert len(sel["nested"]) == 3 and len(sel["per_replicate"]) == s["replicates"]
    assert "early" in programs["long"]["regs"]["l1"] and s["tau"] == 1e-3
    full = study("tutorial_mlp").get_config()
    assert "epochs" not in full and full["mask"] == "hidden" and full["axes"] == (("eps", (1e-7,)),)
    assert 0.01 in full["grids"]["l1"] and min(full["grids"]["l1"][1:]) < 1e-6  # below the old edge


# --- 3: l1_sparsity -------------------------------------------------------------------------


def test_l1_sparsity(smoke):
    s = summary(smoke, "l1_sparsity")
    assert s["sparsity_check"] < 1e-6  # engine's sparsity metric == recount from the parameters
    # wdjax.evaluate against the sweep's own evaluation: two programs, float32 losses ~1 (a few ulp)
    assert s["eval_check"] < 1e-5
    # λ = 1e-3 for 1 epoch: the prox zeroes weights exactly, the subgradient never does.
    assert s["max_sparsity"]["l1_prox"] > 0.1 and s["max_sparsity"]["l1"] == 0.0
    arms, tol = s["arms"], s["tolerance"]
    for arm in ("l1_prox+ft", "prune", "prune+ft", "l1→prune", "l1→prune+ft", "l2→prune",
                "l2→prune+ft", "l2→iter+ft"):  # fmt: skip  # matched sparsity, iterative too
        for a, b in zip(arms[arm]["rows"], arms["l1_prox"]["rows"], strict=True):
            assert a["sparsity_mean"] == pytest.approx(b["sparsity_mean"], abs=1e-12), arm
    dense = s["dense"]["val_loss_mean"]
    for arm, a in arms.items():  # operating point: largest λ within tolerance, on validation
        ok = [j for j, r in enumerate(a["rows"]) if r["val_loss_mean"] <= (1 + tol) * dense]
        assert a["chosen"] == (max(ok) if ok else None), arm
        assert len(a["per_replicate"]) == 2 and set(a["argmin"]) >= {"nested", "one_se", "oracle"}
        for r in a["rows"]:  # bounded quantities: bounded intervals
            assert 0 <= r["pixels_removed_lo"] <= r["pixels_removed_hi"] <= 64
            assert 0 <= r["units_removed_lo"] <= r["units_removed_hi"] <= 128
            for x in ("macs_removed", "sparsity", "test_acc"):
                assert 0 <= r[f"{x}_lo"] <= r[f"{x}_hi"] <= 1
    for c in s["claims"].values():  # the rule of RULES, level by level and overall
        outs = [x["outcome"] for x in c["levels"]]
        assert outs == [wdjax.study.outcome(x["test_acc"], c["prediction"]) for x in c["levels"]]
        assert c["verdict"] in ("reproduced", "contradicted", "inconclusive")
    assert set(s["claims"]) == {"han_no_retraining", "han_retraining", "iterative"}
    assert s["l2_pick"] == arms["l2"]["argmin"]["per_replicate"]  # each replicate's own λ₂
    assert s["selected_by"] == "val_loss" and s["replicates"] == 2
    assert unheld_in_write_up(smoke, "l1_sparsity") == []


# --- 4: decoupling --------------------------------------------------------------------------


def test_decoupling(smoke):
    s = summary(smoke, "decoupling")
    mod = study("decoupling")
    assert set(s["arms"]) == {"adam+wd+bn"} and s["selected_by"] == "val_loss"
    assert s["variant"] == "exact" and set(s["current"]) == set(s["delta_slope"]) == {"adam+wd+bn"}
    a = s["arms"]["adam+wd+bn"]
    assert a["predicted_slope"] == -1.0 and a["batchnorm"]  # from wdjax.symmetry's tested map
    R, L = s["replicates"], len(a["lrs"])
    assert np.shape(a["edge"]) == (R, L) and np.shape(a["lambda_star"]) == (R, L)
    assert a["edge_cells"] == int(np.sum(a["edge"]))
    assert all((v is None) == e for row, er in zip(a["lambda_star"], a["edge"], strict=True)
               for v, e in zip(row, er, strict=True))  # fmt: skip
    v = s["slope_verdicts"]["adam+wd+bn"]
    assert v["predicted"] == -1.0 and len(v["slope"]) == 3
    assert v["verdict"] in {"agrees", "disagrees", "inconclusive", "withheld"}
    assert (v["verdict"] == "withheld") == (not s["control_passed"])
    c = s["control"]["adam+wd+bn"]  # smoke: the one arm, sheared along its own slope
    assert c["predicted"] == -1.0 and len(c["slope"]) == 3
    np.testing.assert_allclose(np.diff(np.log2(c["lrs"])), 1.0)  # b = 1: lrs a power of 2 apart
    full = mod.get_config()
    assert len(full["arms"]) == 10 and full["replicates"] >= 5 and full["n_lr"] >= 7
    assert len(full["rel_bn"]) == 13 and set(mod.CONTROL) <= {f"{o}+{r}+bn" for o, r, _ in
                                                                full["arms"]}  # fmt: skip


# --- 5: versus_dropout_batchnorm ------------------------------------------------------------


def test_versus_dropout_batchnorm(smoke):
    s = summary(smoke, "versus_dropout_batchnorm")
    mod = study("versus_dropout_batchnorm")
    assert set(s["arms"]) == set(mod.ARMS) and s["selected_by"] == "val_loss"
    assert s["replicates"] >= 2 and s["eval_check"] < 1e-4
    for arm, row in s["arms"].items():
        assert ("bn" in arm) == row["batchnorm"] and (row["dropout"] > 0) == ("dropout" in arm)
        assert (row["strength"] > 0) == arm.endswith("wd")
        assert row["gap_mean"] == pytest.approx(
            row["eval_test_loss_mean"] - row["eval_train_loss_mean"], abs=1e-6
        )
        assert row["eval_test_loss_lo"] <= row["eval_test_loss_mean"] <= row["eval_test_loss_hi"]
    assert s["arms"]["none"]["eval_test_loss_diff"] == 0.0
    assert all(
        0 <= r["eval_test_acc_lo"] and r["eval_test_acc_hi"] <= 1 for r in s["arms"].values()
    )
    pairs = {(c["arm"], c["baseline"]) for c in s["claims"].values() if "arm" in c}
    assert pairs == set(mod.pairs()) and len(s["claims"]) == 13  # 12 pairs + η/‖W‖
    d = s["claims"]["dropout+bn − dropout"]  # "BN helps with dropout": against dropout alone
    t = {a: s["arms"][a]["eval_test_loss_mean"] for a in ("dropout+bn", "dropout")}
    assert d["diff"][0] == pytest.approx(t["dropout+bn"] - t["dropout"], abs=1e-6)
    assert (
        d["outcome"] in {"reproduced", "contradicted", "inconclusive"}
        and len(d["nested_diff"]) == 3
    )
    assert set(s["curves"]) == set(mod.ARMS) and s["previous"]["dropout"][0] == 0.451
    assert unheld_in_write_up(smoke, "versus_dropout_batchnorm") == []


# --- 6: batchnorm_equilibrium ---------------------------------------------------------------


def test_batchnorm_equilibrium(smoke):
    s = summary(smoke, "batchnorm_equilibrium")
    eq = s["equilibrium"]
    arms = ("adam+wd", "momentum+l2", "momentum+wd", "adam+l2")
    assert set(eq) == {a + m for a in arms for m in ("", "@4λ")}
    e = eq["adam+wd"]
    assert e["predicted"] == pytest.approx(math.sqrt(2e-3 * 0.1 / 1.9))
    assert 0 < e["measured_mean"] < 0.5
    assert e["measured_lo"] <= e["measured_mean"] <= e["measured_hi"]
    assert set(e["per_layer"]) == {"dense_0", "dense_1"}  # the BatchNorm-preceded kernels only
    assert eq["adam+wd@4λ"]["predicted_scaling_mean"] == pytest.approx(2.0)
    assert set(eq["adam+l2"]["decay_frac_last"]) == {"dense_0", "dense_1"}
    assert s["zero"]["growth_ratio_mean"] == pytest.approx(1.0, abs=1e-3)  # g ⟂ W exactly (ε = 0)
    m = s["mechanism"]
    assert m["norm_mismatch"] < 1e-5  # the rescaled member sits at the decayed member's norms
    assert {"test_acc_diff", "test_loss_diff"} <= set(m["rescaled"]) and s["replicates"] == 2
    words = {"reproduced", "not reproduced", "inconclusive", "not testable as set up",
             "contradicted"}  # fmt: skip
    assert set(s["labels"]) == set(eq) | {f"{a}@4λ scaling" for a in arms} | {"zero", "mechanism"}
    assert set(s["labels"].values()) <= words and s["labels"]["zero"] == "reproduced"
    for n, x in eq.items():  # bounded quantities, bounded intervals (RULES["interval"])
        assert 0 <= x["measured_lo"] and x["measured_hi"] <= math.pi and x["test_acc_hi"] <= 1, n
        drift_ok = 0.95 < x["drift_lo"] and x["drift_hi"] < 1.05
        assert (s["labels"][n] == "not testable as set up") == (not drift_ok), n
    assert set(s["traces"]) == set(eq) | {"zero", "decayed", "rescaled", "plain"}
    assert all(
        0 <= lo <= m for t in s["traces"].values() for m, lo in zip(t["mean"], t["lo"], strict=True)
    )
    assert unheld_in_write_up(smoke, "batchnorm_equilibrium") == []


def test_predicted_equilibria_by_hand():
    p = study("batchnorm_equilibrium").predicted
    assert p("adam", "wd", 1e-3, 1.0, b1=0.9) == pytest.approx(math.sqrt(2e-4 / 1.9))
    assert p("momentum", "l2", 1e-2, 0.1, momentum=0.9) == pytest.approx(math.sqrt(2e-3 / 1.9))
    assert p("momentum", "wd", 1e-2, 0.1, momentum=0.8) == pytest.approx(
        math.sqrt(2e-3 * 0.2 / 1.8)
    )
    with pytest.raises(ValueError, match="no prediction"):
        p("sgd", "l1", 1e-2, 0.1)


def test_equilibrium_pools_rms_over_window_and_layers():
    eq = study("batchnorm_equilibrium").equilibrium
    steps = np.arange(10.0)[:, None, None] * np.ones((1, 3, 2))  # [steps, R, layers]
    angle = np.where(steps >= 6, [3.0, 4.0], 99.0)  # early steps must be ignored
    pooled, per_layer = eq(angle, 4)
    np.testing.assert_allclose(pooled, [math.sqrt(12.5)] * 3)
    assert per_layer.tolist() == [[3.0, 4.0]] * 3


def test_record_by_hand():
    """One member's step record against float64 numpy on the same kernels and Adam state."""
    mod = study("batchnorm_equilibrium")
    rng = np.random.default_rng(0)
    w0, w1 = (jnp.asarray(rng.normal(size=(5, 3)), jnp.float32) for _ in range(2))
    params = {"dense_0": {"kernel": w0}, "head": {"kernel": jnp.ones((3, 2))}}
    tx = mod.Observed(mod.Decay("hidden", 10))(1e-3, 0.7, adam=1.0, coupled=1.0, cosine=0.0,
                                              momentum=0.9)  # fmt: skip
    grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
    _, state = tx.update(grads, tx.init(params), params)  # one Adam step: v̂ = g'² (g' = g + λw)
    rec = mod.record(params, {**params, "dense_0": {"kernel": w1}}, None, {}, state)
    assert set(rec) == {f"{k}/dense_0" for k in mod.KINDS}  # the head is not recorded
    a, b = np.asarray(w0, np.float64), np.asarray(w1, np.float64)
    sq0, sq1 = np.sum(a**2, 0), np.sum(b**2, 0)
    cos = np.sum(a * b, 0) / np.sqrt(sq0 * sq1)
    tol = 2 * gamma(8)  # float32 sums of 5 squares and a root (no cancellation)
    assert float(rec["unit_norm/dense_0"]) == pytest.approx(np.sqrt(np.mean(sq1)), rel=tol)
    assert float(rec["step_sq/dense_0"]) == pytest.approx(np.sum((b - a) ** 2), rel=tol)
    assert float(rec["growth/dense_0"]) == pytest.approx(np.sum(sq1 - sq0), rel=1e-5)
    rms = np.sqrt(np.mean(np.arccos(cos) ** 2))
    assert float(rec["angle/dense_0"]) == pytest.approx(rms, rel=1e-5)
    g = np.asarray(grads["dense_0"]["kernel"], np.float64) + 0.7 * a  # coupled: g + λw
    d = np.abs(g) + 1e-8  # √v̂ after one step, v̂ = (0.001 g²) / (1 − 0.999)
    units = np.sum(b**2, 0) ** 1.5 / np.sum(b**2 / d, 0)
    want = np.mean(units ** (-2 / 3)) ** -1.5
    assert float(rec["gamma/dense_0"]) == pytest.approx(want, rel=1e-4)
    assert float(rec["decay_frac/dense_0"]) == pytest.approx(np.mean(0.7 * np.abs(b) >= d / 2))


# --- 7: select_lambda -----------------------------------------------------------------------


def test_select_lambda(smoke):
    s = summary(smoke, "select_lambda")
    cfg = configs("select_lambda")[1]
    grid, n = cfg["strengths"], str(cfg["budgets"][0][0])
    methods = {"cv", "val_split", "one_fold", "one_fold_avg", "zero"}
    regret, lam = s["regret"][n], s["lambda"][n]
    assert set(regret) == methods and set(s["paired"][n]) == methods - {"cv"}
    for k, r in regret.items():  # the oracle minimizes the same final networks' test losses
        assert len(r["values"]) == s["replicates"] == 2 and min(r["values"]) >= 0, k
        assert 0 <= r["hit_rate"][1] <= r["oracle_hits"] <= r["hit_rate"][2] <= 1, k
        assert 0 <= r["mean_lo"] <= r["mean"] <= r["mean_hi"], k  # bounded: never below 0
    assert np.shape(lam["one_fold_avg"]) == (2, s["folds"]) and s["folds"] == 2
    chosen = {*np.ravel(lam["one_fold_avg"]), *lam["cv"], *lam["val_split"], *lam["oracle"]}
    assert chosen <= set(grid)
    assert lam["zero"] == [0.0, 0.0] and len(s["curves"][n]["test"]["mean"]) == len(grid)
    assert s["conclusion"].split()[0] in {"reproduced", "contradicted", "inconclusive"}
    for k, p in s["paired"][n].items():  # the sign test's counts cover every split
        assert p["cv_lower"] + p["cv_higher"] + p["ties"] == 2 and 0 < p["p"] <= 1, k
    assert set(s["selection"][n]) == {"cv", "val_split"}
    assert {"averaged", "nested", "one_se", "per_replicate"} <= set(s["selection"][n]["cv"])
    assert unheld_in_write_up(smoke, "select_lambda") == []


# --- 8: overhead ----------------------------------------------------------------------------


def test_overhead(smoke):
    s = summary(smoke, "overhead")
    cell = s["timing"]["mlp K=1"]
    assert s["cells"] == ["mlp K=1"] and set(cell) == {"none", "wd"}
    assert cell["none"]["ratio"] == 1.0
    assert all(v["us"] > 0 and v["compile_s"] > 0 for v in cell.values())
    assert s["rounds"] == 2 and s["replicates"] == 2 and s["dataset"] == "digits"
    ttt = s["time_to_target"]
    assert ttt["none"]["strength"] == 0.0 and ttt["none"]["epochs_diff"] == 0.0  # self-paired
    wd = ttt["wd"]
    assert wd["strength"] == s["best_strength"]["wd"] and wd["strength"] in s["strengths"]["wd"]
    assert wd["index"] == int(np.argmin(wd["val_min"]))  # tuned on validation loss, never test
    assert len(wd["epochs"]) == wd["n"] == 2 and wd["targets"] == ttt["none"]["targets"]
    assert set(s["load"]) == {"before", "after", "after_training"}
    lab = s["labels"]["wd"]  # the RULES labels, margins fixed before the run
    assert lab["epochs_margin"] == pytest.approx(0.2 * ttt["none"]["epochs_mean"])
    assert {lab["free_per_step"], lab["no_extra_epochs"]} <= {"reproduced", "contradicted",
                                                              "inconclusive"}  # fmt: skip
    assert wd["edge"] == (wd["index"] in (0, len(wd["val_min"]) - 1))
    assert unheld_in_write_up(smoke, "overhead") == []
    assert s["machine"]["jax"] == jax.__version__


# --- 10: decay_variants ---------------------------------------------------------------------


def test_decay_variants(smoke):
    s = summary(smoke, "decay_variants")
    assert {"wd", "wd_corrected"} <= set(s["adamc_drift"]) and s["replicates"] == 2
    for x in [*s["adamc_drift"].values(), *s["test_loss_diff"].values()]:
        assert len(x) == 3 and x[1] <= x[0] <= x[2]  # [mean, lo, hi]
    assert set(s["arms"]) == {"bn_wd", "bn_wd_corrected", "bn_cautious_wd", "mlp_wd",
                              "mlp_cautious_wd"}  # fmt: skip
    bn = s["arms"]["bn_wd"]
    assert len(bn["log_ratio"]) == len(bn["strengths"]) and len(bn["log_ratio"][0]) == 2
    assert s["test_loss_diff"]["AdamC−AdamW λ=0"] == pytest.approx([0, 0, 0], abs=1e-5)  # λ = 0
    for name, c in s["claims"].items():
        assert c["outcome"] in {"reproduced", "contradicted", "inconclusive"}, name
    for m in ("mlp", "bn"):  # the rule, applied by hand to the chosen λ
        c, grid = s["claims"][f"cautious_same_lambda {m}"], s["arms"][f"{m}_wd"]["strengths"]
        assert c["steps"] == abs(grid.index(c["cautious"]) - grid.index(c["wd"]))
        assert c["wd"] == s["arms"][f"{m}_wd"]["selection"]["averaged_strength"]
    full = configs("decay_variants")[0]
    b = full["models"]["bn"]
    assert full["replicates"] >= 5 and math.ceil(full["window"] * b["epochs"]) >= 4
    assert sum(g > 0 for g in b["strengths"]) >= 3 and b["batchnorm"] and b["strengths"][0] == 0


def test_decay_variants_drift_estimator_by_hand():
    """The fitted change over the last k epochs: exact on a line, the centre's derivative on a
    parabola (least squares on symmetric points), blind to the epochs before the window."""
    drift = study("decay_variants").drift
    e = np.arange(1.0, 21.0)
    assert drift(3.0 + 0.25 * e, 4) == pytest.approx(0.25 * 3)
    assert drift(np.where(e > 16, 1.0, e**3), 4) == pytest.approx(0.0, abs=1e-12)
    assert drift(e**2, 5) == pytest.approx(2 * 18.0 * 4)  # window 16..20, centre 18
    x = np.stack([e, -e])  # leading axes kept: one value per row
    np.testing.assert_allclose(drift(x, 4), [3.0, -3.0])
    # positive control: AdamW's equilibrium √(2λ/γ_e) under a cosine γ rises over the window
    gamma = 0.5 * (1 + np.cos(np.pi * (e - 0.5) / 20))
    assert drift(0.5 * np.log(2 * 10.0 / gamma), 4) > 0.5


def test_decay_variants_record_by_hand():
    rec = study("decay_variants").record
    rng = np.random.default_rng(0)
    w, g = (rng.normal(size=(5, 3)) for _ in range(2))
    params = {"dense_0": {"kernel": jnp.asarray(w)}, "head": {"kernel": jnp.ones((3, 2))}}
    grads = {"dense_0": {"kernel": jnp.asarray(g)}, "head": {"kernel": jnp.ones((3, 2))}}
    out = rec(params, {**params, "dense_0": {"kernel": jnp.asarray(2 * w)}}, grads, {})  # w before
    assert set(out) == {"ratio/dense_0"}  # the output layer is not normalized
    assert float(out["ratio/dense_0"]) == pytest.approx(np.linalg.norm(g) / np.linalg.norm(w),
                                                        rel=1e-6)  # fmt: skip


# --- 9: lambda_scaling ----------------------------------------------------------------------


def test_lambda_scaling(smoke):
    s, mod = summary(smoke, "lambda_scaling"), study("lambda_scaling")
    full, small = configs("lambda_scaling")
    assert s["predicted_slope"] == -1.0 and s["selected_by"] == "val_loss" and s["replicates"] == 2
    keys = ("slope_log_n", "slope_log_lr", "tau_epochs", "steps_slope")
    assert all(len(s[k]) == 3 for k in keys)
    assert set(s["verdicts"]) == set(mod.VERDICTS) | {"tau_epochs"}
    arms = {c["arm"] for c in s["cells"]}
    assert arms == {"n300", "n600", "steps_n600", "wide_n300", "wide_n600"}
    for c in s["cells"]:  # sheared: λ = B/(η·n·τ), the config's τ grid in every cell
        scale = (c["epochs"] / small["epochs"]) ** 0.5 if c["arm"].startswith("steps") else 1.0
        assert np.allclose(10 ** np.array(c["log_tau"])[::-1] / scale, small["taus"]), c["arm"]
        assert len(c["log_lam_star"]) == 2 and len(c["val_mean"]) == len(small["taus"]) + 1
    steps = {c["arm"]: c["steps"] for c in s["cells"]}
    assert steps["steps_n600"] == 4 == (600 // 128) * 1  # n = 300's 2 epochs × 2 steps, in epochs
    # the full design: ≥ 4 sizes over > 1 decade, 3 lrs over ≥ 1 decade, 5 replicates
    assert len(full["sizes"]) >= 4 and max(full["sizes"]) / min(full["sizes"]) > 10
    assert len(full["lrs"]) == 3 and full["lrs"][-1] / full["lrs"][0] >= 10 - 1e-9
    assert full["replicates"] == 5


def test_lambda_scaling_estimators_against_math():
    mod = study("lambda_scaling")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2))
    y = 0.7 - 1.0 * X[:, 0] + 0.4 * X[:, 1]
    y[3] = np.nan  # an edge cell: left out
    np.testing.assert_allclose(mod.fit(X, y, 8), [-1.0, 0.4], atol=1e-12)
    assert np.isnan(mod.fit(X[:8], y[:8], 8)).all()  # 7 finite points < 8
    assert np.isnan(mod.fit(np.ones((12, 2)), y, 3)).all()  # rank-deficient design
    # the control on the full study's grids: exact U-curves give the true slopes back
    full = configs("lambda_scaling")[0]
    cases = [(n, lr) for n in full["sizes"] for lr in full["lrs"]]
    grids = np.log10([[128 / (lr * n * t) for t in full["taus"][::-1]] for n, lr in cases])
    exact = mod.control(grids, np.log10(cases), 0.0, 0.1, 5, draws=1)
    for case in exact["cases"].values():
        np.testing.assert_allclose(case["fitted"], case["truth"], atol=0.02)
    noisy = mod.control(grids, np.log10(cases), full["noise"], full["curvature"], 5, draws=50)
    assert exact["passed"] and noisy["passed"]
    worse = mod.control(grids[:, ::4], np.log10(cases), 0.3, 0.1, 5, draws=20)  # 3 points, noise
    assert not worse["passed"]  # the control can fail
