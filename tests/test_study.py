"""wdjax.study: a study's command line and configuration, and the ending every study shares."""

import csv
import dataclasses
import json
import os
import sys

import numpy as np
import pytest

import wdjax
from wdjax import study

DOC = """A made-up study.

More text that is not the description.
"""


def get_config(smoke=False) -> dict:
    return dict(seeds=1 if smoke else 3, epochs=2 if smoke else 50, hidden=(8,),
                window=5 if smoke else 100)  # fmt: skip


def test_setup_splits_sweep_fields_from_the_study_knobs(tmp_path):
    out = tmp_path / "a" / "b"
    run = study.setup(DOC, "demo", get_config, ["--smoke", "--out", str(out)])
    assert out.is_dir() and run.out == str(out) and run.smoke and run.name == "demo"
    assert run.knobs == {"window": 5}
    default = wdjax.SweepConfig()  # everything else stays at SweepConfig's defaults
    assert run.config == dataclasses.replace(
        default, seeds=1, epochs=2, hidden=(8,), data_dir=os.environ.get("TFDS_DATA_DIR")
    )


def test_the_command_line_replaces_the_study_settings(tmp_path):
    argv = ["--out", str(tmp_path), "--seeds", "7", "--label-noise", "0.2", "--train-size", "300",
            "--dataset", "mnist", "--data-dir", "/d"]  # fmt: skip
    run = study.setup(DOC, "demo", get_config, argv)
    c = run.config
    assert (c.seeds, c.label_noise, c.train_size, c.dataset, c.data_dir) == (
        7, 0.2, 300, "mnist", "/d",
    )  # fmt: skip
    assert c.epochs == 50 and not run.smoke and run.knobs == {"window": 100}


def test_default_out_is_results_studies_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = study.setup(DOC, "demo", get_config, [])
    assert run.out == os.path.join("results", "studies", "demo") and os.path.isdir(run.out)


def test_finish_writes_table_figure_and_summary(tmp_path):
    argv = ["--smoke", "--out", str(tmp_path)]
    run = study.setup(DOC, "demo", get_config, argv)
    fig, ax = study.pyplot().subplots()
    ax.plot([0, 1], [1, 0])
    rows = [[1, "x"], [2.5, "y, z"]]
    got = study.finish(run, {"answer": 42}, ["a", "b"], rows, fig, "demo.png")
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == got and saved["answer"] == 42 and saved["figure"] == "demo.png"
    assert saved["command"] == f"python experiments/demo.py --smoke --out {tmp_path}"
    assert saved["seconds"] >= 0
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | y, z |\n"
    assert (tmp_path / "table.md").read_text() == md
    with open(tmp_path / "table.csv", newline="") as f:
        assert list(csv.reader(f)) == [["a", "b"], ["1", "x"], ["2.5", "y, z"]]
    assert study.read_summary(str(tmp_path)) == saved
    assert study.read_summary(str(tmp_path / "summary.json")) == saved
    assert study.read_summary(str(tmp_path / "missing")) is None


def test_command_defaults_to_this_process_arguments(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["experiments/demo.py", "--smoke", "--seeds", "2"])
    assert study.command("demo") == "python experiments/demo.py --smoke --seeds 2"
    assert study.command("demo", []) == "python experiments/demo.py"


def test_with_std_ignores_nans_and_pm_formats_it():
    d = study.with_std(a=[1.0, 3.0, np.nan], b=np.array([2.0, 4.0, 6.0]))
    assert d == {"a": 2.0, "a_std": np.sqrt(2.0), "b": 4.0, "b_std": 2.0}  # sample std, ddof 1
    assert all(type(v) is float for v in d.values())
    assert study.pm(d, "b", 2) == "4.00 ± 2.00" == study.fmt_pm(4, 2, 2)


def test_ci_and_verdict_read_a_replicates_row():
    row = {"x_mean": 0.5, "x_lo": 0.4, "x_hi": 0.6, "x_diff": -0.01, "x_diff_lo": -0.03,
           "x_diff_hi": 0.01}  # fmt: skip
    assert study.ci(row, "x") == "0.500 [0.400, 0.600]"
    assert study.ci(row, "x_diff") == "-0.010 [-0.030, +0.010]"
    assert study.verdict(-0.03, 0.01) == "no detectable difference"
    assert study.verdict(-0.03, -0.01) == "lower" and study.verdict(0.01, 0.03) == "higher"
    assert study.verdict(np.nan, 0.1) == "undefined"


def test_by_strength_rows_follow_the_grid_order():
    class Result:  # 2 strengths × 2 seeds, 3 epochs
        config = wdjax.SweepConfig(strengths=(0.0, 0.1), seeds=2)
        history = {"x": np.arange(12.0).reshape(4, 3)}

    np.testing.assert_array_equal(study.by_strength(Result, "x"), [[2, 5], [8, 11]])
    np.testing.assert_array_equal(study.by_strength(Result, "x", 0), [[0, 3], [6, 9]])


@pytest.mark.parametrize("train_size", [None, 100])
def test_load_data_applies_the_configs_data_fields(train_size):
    cfg = wdjax.SweepConfig(train_size=train_size, label_noise=0.1, data_seed=3, val_size=0.2)
    ds = study.load_data(cfg)
    ref = wdjax.load("digits", train_size=train_size, label_noise=0.1, seed=3, val_size=0.2)
    np.testing.assert_array_equal(ds.x_train, ref.x_train)
    np.testing.assert_array_equal(ds.y_train, ref.y_train)
    assert len(ds.x_val) == len(ref.x_val) and (train_size is None or len(ds.x_train) == 100)
