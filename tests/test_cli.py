"""The `python -m wdjax` command end to end, and its error paths."""

import json
import os
import subprocess
import sys
import time

import pytest
from test_idx import tiny_arrays, write_set

from wdjax import cli, idx
from wdjax.config import ConfigError, parse_grid


def test_parse_grid_lists_and_log_ranges():
    assert parse_grid("0,1e-3", "--strength") == (0.0, 1e-3)
    g = parse_grid("1e-6:1e-1:6", "--strength")
    assert len(g) == 6 and g[0] == pytest.approx(1e-6) and g[-1] == pytest.approx(1e-1)
    assert g[1] / g[0] == pytest.approx(10.0)
    assert parse_grid("0, 1e-2:1e-1:2", "--strength") == pytest.approx((0.0, 1e-2, 1e-1))
    for bad in ("", "a", "1e-6:1e-1", "0:1:3", "1e-3:1e-1:0"):
        with pytest.raises(ConfigError, match="--strength"):
            parse_grid(bad, "--strength")


def test_cli_sweep_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["sweep", "--strength", "0,1e-2", "--seeds", "2", "--epochs", "2", "--batch-size",
            "64", "--lr", "1e-2", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "4 members" in printed and "best by val_acc" in printed
    for f in ("config.json", "metrics.csv", "summary.json", "meta.json", "params.npz",
              "accuracy_vs_strength.png", "curves.png"):  # fmt: skip
        assert (out / f).exists(), f
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["strengths"] == [0.0, 0.01] and cfg["seeds"] == 2 and cfg["dataset"] == "digits"


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--strength", "-1"], "--strength"),
        (["--lr", "nan"], "--lr"),
        (["--model", "vgg"], "--model"),
        (["--reg", "l3"], "--reg"),
        (["--batch-size", "100000"], "--batch-size"),
        (["--coordinator", "127.0.0.1:1"], "--num-processes"),
        (["--cpu-devices", "0"], "--cpu-devices"),
    ],
)
def test_cli_bad_flags_exit_2_with_one_line(tmp_path, capsys, flags, needle):
    code = cli.main(["sweep", "--out", str(tmp_path / "r"), "--quiet", *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and needle in err
    assert "Traceback" not in err


def test_cli_unprepared_dataset_offline_fails_fast(tmp_path):
    env = dict(os.environ, WDJAX_OFFLINE="1", TFDS_DATA_DIR=str(tmp_path))
    env.pop("WDJAX_RAW_DIR", None)
    t = time.perf_counter()
    out = str(tmp_path / "r")
    argv = [sys.executable, "-m", "wdjax", "sweep", "--dataset", "mnist", "--out", out]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.perf_counter() - t
    assert proc.returncode == 2, proc.stderr
    assert "mnist" in proc.stderr and "digits" in proc.stderr and "Traceback" not in proc.stderr
    assert elapsed < 30  # interpreter + imports; the data check itself is bounded at seconds
    assert not (tmp_path / "r").exists()  # nothing written before the data was found


@pytest.fixture
def tiny_fashion(tmp_path, monkeypatch):
    """A tiny fashion_mnist (40 / 10 images) in a raw dir; nothing from this machine's folders."""
    monkeypatch.setitem(idx.DATASETS, "fashion_mnist", idx.DATASETS["fashion_mnist"]._replace(
        counts=(40, 10)))  # fmt: skip
    monkeypatch.setattr(idx, "SYSTEM_ROOT", tmp_path / "no_system_datasets")
    monkeypatch.delenv("WDJAX_RAW_DIR", raising=False)
    return write_set(tmp_path / "raw", tiny_arrays(seed=0, counts=(40, 10)), gz=False)


def test_cli_raw_dir_run_says_which_dataset_and_files(tmp_path, capsys, tiny_fashion):
    out, raw = tmp_path / "run", tmp_path / "raw"
    argv = ["sweep", "--dataset", "fashion_mnist", "--raw-dir", str(raw), "--data-dir",
            str(tmp_path / "data"), "--epochs", "1", "--batch-size", "8", "--out", str(out),
            "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "dataset fashion_mnist: 36 train / 4 val / 10 test images of 28x28x1" in printed
    assert f"from {raw}" in printed
    meta = json.loads((out / "meta.json").read_text())["dataset"]
    assert meta["name"] == "fashion_mnist" and meta["source"] == str(raw)
    assert sorted(meta["sha256"]) == sorted(p.name for p in tiny_fashion.values())
    assert json.loads((out / "config.json").read_text())["raw_dir"] == str(raw)


def test_cli_bad_idx_file_exits_2_naming_it(tmp_path, capsys, tiny_fashion):
    tiny_fashion["y_test"].write_bytes(tiny_fashion["y_test"].read_bytes()[:-1])
    argv = [
        "sweep",
        "--dataset",
        "fashion_mnist",
        "--raw-dir",
        str(tmp_path / "raw"),
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(tiny_fashion["y_test"]) in err and "truncated" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "data" / "wdjax_cache").exists()
