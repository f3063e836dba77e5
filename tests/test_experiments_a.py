"""Smoke tests of studies 1, 2, 3 and 7 (experiments/), end to end in smoke mode.

The studies share static configs (reg, model, batch size) and, under the suite's 4 fake devices,
chunk shapes, so most sweeps reuse programs compiled by an earlier study in this module.
"""

import importlib.util
import json
import os

import numpy as np
import pytest

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments")


def _study(name):
    spec = importlib.util.spec_from_file_location(f"study_{name}", f"{EXPERIMENTS}/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(root, name):
    out = os.path.join(root, name)
    _study(name).main(["--smoke", "--out", out])
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    for file in ("table.md", "table.csv", summary["figure"]):
        assert os.path.getsize(os.path.join(out, file)) > 0, file
    assert summary["command"].startswith(f"python experiments/{name}.py --smoke")
    return summary


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("studies"))


@pytest.fixture(scope="module")
def curve(root):
    return _run(root, "lambda_curve")


def test_get_config_smoke_is_small():
    for name in ("tutorial_mlp", "lambda_curve", "l1_sparsity", "select_lambda"):
        full, smoke = _study(name).get_config(), _study(name).get_config(smoke=True)
        assert isinstance(full, dict) and isinstance(smoke, dict)
        assert smoke["seeds"] == 1 and full["seeds"] >= 3
        assert smoke.get("epochs", smoke.get("long_epochs")) <= 2


def test_lambda_curve(curve):
    regs = {"l1", "l2", "wd", "l1_prox"}
    assert set(curve["best_strength"]) == regs and curve["selected_by"] == "val_loss"
    assert len(_study("lambda_curve").get_config()["grids"]["wd"]) >= 33  # 0 + 32 log-spaced
    for reg in regs:
        best, base = curve["best"][reg], curve["baseline"][reg]
        assert curve["best_strength"][reg] in curve["strengths"][reg]
        assert base["strength"] == 0.0
        assert best["val_loss"] <= base["val_loss"]  # the argmin over a grid that contains λ = 0
        assert 0.0 <= best["test_acc"] <= 1.0 and best["test_loss"] > 0


def test_tutorial_reads_best_strength(root, curve):
    s = _run(root, "tutorial_mlp")
    assert s["best_strength"] == curve["best_strength"]
    runs = {(r["reg"], r["which"], r["epochs"]): r for r in s["runs"]}
    for reg, lam in curve["best_strength"].items():
        assert runs[(reg, "best", s["long_epochs"])]["strength"] == lam
        assert runs[(reg, "nominal", s["tutorial_epochs"])]["strength"] == 0.01
    assert runs[("none", "nominal", 1)]["strength"] == 0.0
    assert runs[("l2", "nominal", 1)]["keras"] == "l2(0.005)"  # l2 adds λ·w: Keras l2(λ/2)
    for r in s["runs"]:
        assert r["gap"] == pytest.approx(r["train_acc"] - r["test_acc"], abs=1e-6)


def test_tutorial_without_lambda_curve(tmp_path):
    s = _run(str(tmp_path), "tutorial_mlp")
    assert s["best_strength"] is None and "nominal λ only" in s["note"]
    assert {r["which"] for r in s["runs"]} == {"nominal"}


def test_l1_sparsity(root, curve):  # `curve` first: reuse its compiled l1 and l1_prox programs
    s = _run(root, "l1_sparsity")
    for reg, p in s["operating_point"].items():
        # The engine's metric counts exact zeros of the kernels: recount them in the parameters.
        assert p["sparsity"] == pytest.approx(p["sparsity_from_params"], abs=1e-6), reg
        assert 0 <= p["pixels_alive"] <= p["pixels_total"] == 64
    # λ = 0.1 for 2 epochs: the prox zeroes weights exactly, the subgradient (almost) never does.
    assert s["max_sparsity"]["l1_prox"] > 0.1
    assert s["max_sparsity"]["l1"] < 0.01


def test_select_lambda(root, curve):  # `curve` first: reuse its compiled single-split wd program
    s = _run(root, "select_lambda")
    lam = s["lambda"]
    assert len(lam["per_fold"]) == s["folds"] == 2
    assert len(lam["val_split_per_seed"]) == s["seeds"] == 1
    grid = _study("select_lambda").get_config(smoke=True)["strengths"]
    assert {lam["cv"], lam["val_split"], lam["test_best"], *lam["per_fold"]} <= set(grid)
    for k, regret in s["regret"].items():  # test_best minimizes mean test loss on the same models
        assert regret >= -1e-7, k
    assert np.isfinite(s["test_loss"]["zero"])
