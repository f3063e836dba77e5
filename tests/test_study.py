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


def test_command_defaults_to_this_process_arguments(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["experiments/demo.py", "--smoke", "--seeds", "2"])
    assert study.command("demo") == "python experiments/demo.py --smoke --seeds 2"
    assert study.command("demo", []) == "python experiments/demo.py"


def test_ci_reads_a_replicates_row():
    row = {"x_mean": 0.5, "x_lo": 0.4, "x_hi": 0.6, "x_diff": -0.01, "x_diff_lo": -0.03,
           "x_diff_hi": 0.01}  # fmt: skip
    assert study.ci(row, "x") == "0.500 [0.400, 0.600]"
    assert study.ci(row, "x_diff") == "-0.010 [-0.030, +0.010]"


@pytest.mark.parametrize("train_size", [None, 100])
def test_load_data_applies_the_configs_data_fields(train_size):
    cfg = wdjax.SweepConfig(train_size=train_size, label_noise=0.1, data_seed=3, val_size=0.2)
    ds = study.load_data(cfg)
    ref = wdjax.load("digits", train_size=train_size, label_noise=0.1, seed=3, val_size=0.2)
    np.testing.assert_array_equal(ds.x_train, ref.x_train)
    np.testing.assert_array_equal(ds.y_train, ref.y_train)
    assert len(ds.x_val) == len(ref.x_val) and (train_size is None or len(ds.x_train) == 100)


# --- verdicts: rules fixed before the run -----------------------------------------------------


def test_says_names_the_shorter_list():
    from wdjax.study import prose

    assert prose.says({}) == "not tested"
    assert prose.says({"a": True, "b": True}) == "reproduced"
    assert prose.says({"a": False, "b": False}) == "contradicted"
    assert prose.says({"a": True, "b": True, "c": False}) == "reproduced in part, not for c"
    assert prose.says({"a": True, "b": False, "c": False}) == "reproduced in part, only for a"
    assert prose.says({"a": True, "b": False}) == "reproduced in part, not for b"  # a tie


def test_verdict_reads_an_interval_in_the_rules_order():
    assert study.verdict((-0.03, 0.01)) == "no detectable difference at this n"
    assert study.verdict((-0.03, -0.01)) == "lower" and study.verdict([9.0, 0.01, 0.03]) == "higher"
    assert study.verdict((np.nan, 0.1)) == "undefined"
    assert study.verdict((-0.03, 0.01), 0.05) == "equivalent"  # inside ±0.05
    assert study.verdict((-0.03, 0.01), 0.02) == study.NO_DIFFERENCE  # crosses −0.02
    assert study.verdict((0.001, 0.002), 0.01) == "equivalent"  # equivalence is checked first
    assert study.verdict((0.01, 0.03), 0.02) == "higher"
    s = wdjax.analysis.stats.Summary(0.5, 0.1, 5, 0.4, 0.6)  # a Summary's lo, hi; ref: a slope
    assert study.verdict(s, ref=0.3) == "higher" and study.verdict(s, 0.15, ref=0.5) == "equivalent"
    with pytest.raises(ValueError, match="margin"):
        study.verdict((0, 1), margin=-1)
    with pytest.raises(ValueError, match="interval"):
        study.verdict((0, 1, 2, 3))


def test_outcome_from_the_prediction_in_the_config():
    assert study.outcome((-0.3, -0.1), "lower") == "reproduced"
    assert study.outcome((0.1, 0.3), "lower") == "contradicted"
    assert study.outcome((-0.3, 0.1), "lower") == "inconclusive"
    assert study.outcome((-0.04, -0.01), "lower", margin=0.05) == "contradicted"  # too small
    assert study.outcome((-0.04, 0.01), "equivalent", margin=0.05) == "reproduced"
    assert study.outcome((-0.04, 0.09), "equivalent", margin=0.05) == "inconclusive"
    assert study.outcome((0.06, 0.09), "equivalent", margin=0.05) == "contradicted"
    assert study.outcome((np.nan, 0.1), "higher") == "inconclusive"
    with pytest.raises(ValueError, match="margin"):
        study.outcome((0, 1), "equivalent")
    with pytest.raises(ValueError, match="prediction"):
        study.outcome((0, 1), "smaller")


# --- selection: averaged, nested, oracle, one-SE; the validation minimum ---------------------

T2 = 12.706204736174698  # t_{0.975, 1}
T3 = 4.302652729749464  # t_{0.975, 2}


def test_select_by_hand():
    # 3 replicates × 4 λ. Mean val: 1.0, 0.6, 0.65, 0.9 → averaged picks λ index 1.
    val = np.array([[1.0, 0.5, 0.7, 0.9], [1.0, 0.7, 0.6, 0.9], [1.0, 0.6, 0.65, 0.9]])
    test = np.array([[2.0, 1.0, 3.0, 4.0], [2.0, 5.0, 1.5, 4.0], [2.0, 1.2, 1.1, 4.0]])
    s = study.select(val, test, [0.0, 0.1, 0.2, 0.3])
    assert s["averaged"] == 1 and s["averaged_strength"] == 0.1
    assert s["per_replicate"] == [0.1, 0.2, 0.1]  # each replicate's own argmin
    nested = np.array([1.0, 1.5, 1.2])  # test loss at those picks
    half = T3 * np.std(nested, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(s["nested"], [3.7 / 3, 3.7 / 3 - half, 3.7 / 3 + half])
    d = nested - 2.0  # against λ = 0, paired
    np.testing.assert_allclose(s["nested_diff"][0], d.mean())
    # mean test: 2.0, 2.4, 1.866…, 4.0 → the oracle is index 2
    assert (s["oracle"], s["oracle_strength"]) == (2, 0.2)
    # one SE of the best (index 1): std(0.5, 0.7, 0.6) / √3 = 0.1 / √3 = 0.0577; 0.65 ≤ 0.6577
    assert s["one_se"] == [0.1, 0.2]
    np.testing.assert_allclose(s["averaged_value"][0], (1.0 + 5.0 + 1.2) / 3)
    acc = study.select(val, -test, higher_is_better=True)
    assert acc["oracle"] == 2 and acc["per_replicate"] == [1, 2, 1]  # no grid: indices


def test_select_with_a_diverged_setting_and_one_replicate():
    val = np.array([[0.5, np.nan, 0.4], [0.6, 0.1, 0.5]])  # setting 1 diverged once: mean NaN
    s = study.select(val, val, baseline=None)
    assert s["averaged"] == 2 and s["per_replicate"] == [2, 1] and "nested_diff" not in s
    one = study.select([[0.3, 0.2, 0.2]], [[1.0, 2.0, 3.0]])
    assert one["one_se"] == [1, 2] and np.isnan(one["nested"][1])  # ties only; no interval
    with pytest.raises(ValueError, match="grid"):
        study.select(val, val, [0.0, 1.0])
    with pytest.raises(ValueError, match="metric"):
        study.select(val, val[:, :2])


def test_rise_is_the_mean_curves_minimum_and_each_replicates_own_rise():
    # NaN: epoch 2 not evaluated. Mean curve 3.0, nan, 1.5, 2.05 → minimum at epoch 3.
    c = np.array([[3.0, np.nan, 2.0, 2.5], [3.0, np.nan, 1.0, 1.6]])
    r = study.rise(c)
    assert (r["min_epoch"], r["epochs"]) == (3, 4)
    np.testing.assert_allclose(r["rise_at_mean_min"][0], 0.55)  # (0.5 + 0.6) / 2
    half = T2 * np.std([0.5, 0.6], ddof=1) / np.sqrt(2)
    np.testing.assert_allclose(r["rise_at_mean_min"][1:], [0.55 - half, 0.55 + half])
    # Each replicate's own minimum; a replicate still falling at the end rises 0.
    r = study.rise([[3.0, 1.0, 1.5], [3.0, 2.0, 1.0]])
    assert r["min_epoch"] == 3  # mean 3, 1.5, 1.25
    np.testing.assert_allclose(r["rise"][0], 0.25)  # (0.5 + 0) / 2
    assert r["rise"][1] == 0.0  # 0.25 − 12.7·0.354/√2 < 0: bounded at 0
    assert r["rise_at_mean_min"][0] == 0.0  # the mean's minimum is the last epoch
    with pytest.raises(ValueError, match="curves"):
        study.rise([[np.nan, np.nan]])


def test_band_draws_the_t_interval_over_replicates_not_the_std():
    from wdjax.analysis import plots

    fig, ax = study.pyplot().subplots()
    x = np.array([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]])  # 3 replicates, 2 points
    line = plots.band(ax, [10, 20], x, "a")
    np.testing.assert_allclose(line.get_ydata(), [2.0, 3.0])
    (poly,) = ax.collections
    ys = poly.get_paths()[0].vertices[:, 1]
    half = T3 * np.array([1.0, np.sqrt(3.0)]) / np.sqrt(3)  # std 1 and √3
    for y in (2.0 - half[0], 3.0 - half[1], 2.0 + half[0], 3.0 + half[1]):
        assert np.isclose(ys, y).any(), y
    assert not np.isclose(ys, 2.0 + 1.0).any()  # not mean ± std
    study.pyplot().close(fig)


# --- study.main: config, smoke overrides, declared options, the standard ending ----------------


def full_config() -> dict:
    return dict(epochs=50, hidden=(8,), window=study.option(100, "smoothing window"),
                verbose=study.option(False, "say more"), replicates=5, selected_by="val_loss",
                rules=dict(margin=0.01))  # fmt: skip


def smoke_overrides(config) -> dict:
    return dict(epochs=2, window=5, replicates=2)


def test_main_applies_smoke_then_the_command_line_and_writes_the_header(tmp_path):
    seen = {}

    def run(ctx):
        seen.update(knobs=ctx.knobs, config=ctx.config, ctx=ctx)
        fig, ax = study.pyplot().subplots()
        return study.Report({"answer": 1}, ["a"], [[1]], fig)

    argv = ["--smoke", "--out", str(tmp_path), "--window", "7", "--verbose", "--seeds", "3"]
    got = study.main(full_config, run, smoke=smoke_overrides, argv=argv)
    assert seen["knobs"] == {"window": 7, "verbose": True, "replicates": 2,
                             "selected_by": "val_loss", "rules": {"margin": 0.01}}  # fmt: skip
    assert (seen["config"].epochs, seen["config"].seeds, seen["config"].hidden) == (2, 3, (8,))
    assert seen["ctx"].name == "test_study" and seen["ctx"].stale == "refuse"
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == got and saved["answer"] == 1 and saved["figure"] == "test_study.png"
    head = (saved["replicates"], saved["dataset"], saved["selected_by"])
    assert head == (2, "digits", "val_loss")
    assert saved["rules"] == {"margin": 0.01} and saved["command"].endswith("--seeds 3")
    import jax
    import optax

    v = saved["versions"]
    assert (v["jax"], v["optax"], v["wdjax"]) == (jax.__version__, optax.__version__, "0.1.0")
    assert (tmp_path / "test_study.png").exists() and (tmp_path / "table.md").exists()
    full = {}
    study.main(full_config, lambda ctx: full.update(k=ctx.knobs, c=ctx.config) or
               study.Report({}, ["a"], [[1]], study.pyplot().figure()),
               smoke=smoke_overrides, argv=["--out", str(tmp_path / "full")])  # fmt: skip
    assert full["k"]["window"] == 100 and not full["k"]["verbose"] and full["c"].epochs == 50


def test_main_refuses_undeclared_smoke_keys_options_on_standard_flags_and_header_clashes(tmp_path):
    def report(ctx):
        return study.Report({"replicates": 9}, ["a"], [[1]], study.pyplot().figure())

    argv = ["--smoke", "--out", str(tmp_path)]
    with pytest.raises(wdjax.ConfigError, match="smoke: overrides windows"):
        study.main(full_config, report, smoke=lambda c: {"windows": 3}, argv=argv)
    bad = lambda: dict(seeds=study.option(2, "no"))  # noqa: E731
    with pytest.raises(wdjax.ConfigError, match="option seeds"):
        study.main(bad, report, argv=argv)
    with pytest.raises(ValueError, match="replicates belong to the header"):
        study.main(full_config, report, smoke=smoke_overrides, argv=argv)
    with pytest.raises(SystemExit):  # a typed option parses its text, argparse says which
        study.main(full_config, report, argv=argv + ["--window", "seven"])
