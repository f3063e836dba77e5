"""The `python -m wdjax` command end to end, and its error paths."""

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import child_xla_flags
from test_idx import tiny_arrays, write_set

from wdjax.data import idx
from wdjax.run import cli
from wdjax.run.config import RunOptions, SweepConfig, flag_of


def test_cli_sweep_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["sweep", "--strength", "0,1e-2", "--seeds", "2", "--epochs", "2", "--batch-size",
            "64", "--lr", "1e-2", "--schedule", "cosine", "--warmup-epochs", "1",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "4 members" in printed
    assert "best setting by mean final val_loss over 2 members" in printed
    assert "| 0.01 |" in printed or "0.01" in printed.split("best setting")[0]  # the table
    for f in ("config.json", "metrics.csv", "summary.json", "meta.json", "params.npz",
              "accuracy_vs_strength.png", "curves.png", "table.csv", "table.md"):  # fmt: skip
        assert (out / f).exists(), f
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["strengths"] == [0.0, 0.01] and cfg["seeds"] == 2 and cfg["dataset"] == "digits"
    assert cfg["schedule"] == "cosine" and cfg["warmup_epochs"] == 1.0


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
        (["--lr", "-1e-3"], "--lr"),  # a negative value parses, and is refused by its check
        (["--strength", "-1e-3"], "--strength"),
        (["--val-size", "1.5"], "--val-size"),
        (["--seeds", "two"], "--seeds"),
        (["--epochs", "0"], "--epochs"),
        (["--dropout", "1"], "--dropout"),
        (["--checkpoint-every", "0"], "--checkpoint-every"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--lr"], "--lr"),
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


def test_every_setting_has_a_flag_and_parses_into_its_field():
    argv = ["sweep", "--standardize", "--hidden", "32,16", "--val-size", "500", "--train-size",
            "none", "--strength", "0,1e-3", "--lr", "3e-3", "--dtype", "float64",
            "--checkpoint-every", "5", "--no-batchnorm", "-v"]  # fmt: skip
    cfg, opts = cli.parse(argv)
    assert cfg == SweepConfig(standardize=True, hidden=(32, 16), val_size=500, train_size=None,
                              strengths=(0.0, 1e-3), lrs=(3e-3,), dtype="float64")  # fmt: skip
    assert opts == RunOptions(checkpoint_every="5", verbose=True)
    assert (
        isinstance(cfg.val_size, int)
        and cli.parse(["sweep", "--val-size", "0.25"])[0].val_size == 0.25
    )
    flags = cli.build_parser()._subparsers._group_actions[0].choices["sweep"].format_help()
    for cls in (SweepConfig, RunOptions):
        for f in dataclasses.fields(cls):
            assert flag_of(f) in flags, f.name


def test_out_naming_a_file_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main(["sweep", "--out", str(tmp_path / "file"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --out:") and "is a file" in err


def test_no_validation_set_selects_by_training_loss_and_says_so(tmp_path, capsys):
    argv = ["sweep", "--val-size", "0", "--strength", "0,1e-2", "--epochs", "1", "--batch-size",
            "64", "--out", str(tmp_path / "r"), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "best setting by mean final train_loss" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["selected_by"] == "train_loss"


def _child_env():
    return dict(os.environ, XLA_FLAGS=child_xla_flags(devices=None), WDJAX_OFFLINE="1")


def test_ctrl_c_saves_and_prints_the_command_that_resumes_bit_identically(
    tmp_path, uninterrupted_run
):
    cut = tmp_path / "cut"
    run = [*uninterrupted_run.command, "--checkpoint-every", "1000s"]
    proc = subprocess.Popen([*run, "--out", str(cut)], env=_child_env(),
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    for line in proc.stderr:  # one log line per epoch when stderr is not a terminal
        if "epoch 3/" in line:
            proc.send_signal(signal.SIGINT)
            break
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, err
    last = err.strip().splitlines()[-1]
    assert "stopped after chunk 1/1, epoch" in last and "Traceback" not in err
    command = last.split("continue with: ")[1]
    assert command.endswith("--resume") and f"--out {cut}" in command
    argv = shlex.split(command.replace("python", sys.executable, 1))
    subprocess.run(argv, env=_child_env(), check=True, capture_output=True, timeout=300)
    full = uninterrupted_run.out
    assert (cut / "metrics.csv").read_bytes() == (full / "metrics.csv").read_bytes()
    a, b = np.load(cut / "params.npz"), np.load(full / "params.npz")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert not (cut / "checkpoints").exists()
