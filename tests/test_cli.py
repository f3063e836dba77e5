"""The `python -m wdjax` command end to end, and its error paths."""

import dataclasses
import importlib
import inspect
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import tomllib

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import INTERRUPTIBLE, child_xla_flags
from test_idx import tiny_arrays, write_set

import wdjax
from wdjax.data import idx
from wdjax.errors import ConfigError
from wdjax.run import cli
from wdjax.run.config import GROUPS, RunOptions, SweepConfig, flag_of


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


def test_help_in_sections_with_metavars_each_default_once(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    top = cli.build_parser()
    sweep = top._subparsers._group_actions[0].choices["sweep"]
    text = sweep.format_help()
    for group in GROUPS:
        assert f"\n{group}:\n" in text, group
    sections = {g.title: {a.dest for a in g._group_actions} for g in sweep._action_groups}
    for f in [*dataclasses.fields(SweepConfig), *dataclasses.fields(RunOptions)]:
        assert f.name in sections[f.metadata["group"]], f.name
    for shown in ("--strength GRID", "--lr GRID", "--out DIR", "--epochs N", "--dropout FLOAT",
                  "--set NAME=GRID", "--checkpoint-every EVERY", "--hidden N,...", "--mask SPEC",
                  "--config FILE"):  # fmt: skip
        assert shown in text, shown
    assert "VALUE" not in text and "(default: None)" not in text and "(default: )" not in text
    for action in sweep._actions:
        assert (action.help or "").count("default") <= 1, action.dest
    assert "examples:" in text and "--config" in text.split("examples:")[1]
    assert "``" not in top.format_help() and "``" not in text


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    import jax

    assert capsys.readouterr().out.strip() == f"wdjax {wdjax.__version__} (jax {jax.__version__})"
    # the installed command (pyproject's [project.scripts]) is this main
    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as f:
        module, name = tomllib.load(f)["project"]["scripts"]["wdjax"].split(":")
    assert getattr(importlib.import_module(module), name) is cli.main


def test_config_json_of_a_finished_run_trains_the_same_run(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    argv = ["sweep", "--strength", "0,1e-2", "--set", "b1=0.8,0.9", "--hidden", "16", "--epochs",
            "2", "--batch-size", "64", "--lr", "1e-2", "--label-noise", "0.1",
            "--quiet"]  # fmt: skip
    assert cli.main([*argv, "--out", str(a)]) == 0
    assert cli.main(["sweep", "--config", str(a / "config.json"), "--out", str(b), "--quiet"]) == 0
    assert (a / "config.json").read_text() == (b / "config.json").read_text()
    pa, pb = np.load(a / "params.npz"), np.load(b / "params.npz")  # same program, same inputs
    assert sorted(pa) == sorted(pb) and all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    cfg, opts = cli.parse(["sweep", "--config", str(a / "config.json"), "--seeds", "3"])
    assert cfg == SweepConfig.from_json({**json.loads((a / "config.json").read_text()), "seeds": 3})


def test_config_toml_and_json_settings_with_flags_overriding(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(
        'strengths = "0,1e-6:1e-1:4"\nlrs = [0.01, 0.1]\nhidden = [32, 16]\nepochs = 3\n'
        'standardize = true\nval_size = 500\nout = "runs/x"\naxes = {b1 = [0.8, 0.9]}\n'
    )
    cfg, opts = cli.parse(["sweep", "--config", str(toml), "--epochs", "5", "--no-standardize"])
    assert cfg == SweepConfig(strengths=(0.0, *np.geomspace(1e-6, 1e-1, 4).tolist()),
                              lrs=(0.01, 0.1), hidden=(32, 16), epochs=5, standardize=False,
                              val_size=500, axes=(("b1", (0.8, 0.9)),))  # fmt: skip
    assert opts == RunOptions(out="runs/x")
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"reg": "l1_prox", "seeds": 2, "restart_epochs": None}))
    cfg, _ = cli.parse(["sweep", "--config", str(settings), "--reg", "l1"])
    assert cfg == SweepConfig(reg="l1", seeds=2)


@pytest.mark.parametrize(
    "text, needle",
    [
        (
            '{"epochs": 2, "strength": [0.1]}',
            "unknown setting 'strength' (did you mean 'strengths'",
        ),
        ('{"no_such_setting": 1}', "'no_such_setting'"),
        ('{"model": "linen:Net(features=10)"}', "records model as a Python object"),
        ('{"optimizer": "factory:mymod.opt"}', "records optimizer as a Python object"),
        ('{"init_params": "object:mymod.params"}', "init_params records a Python object"),
        ('{"epochs": "ten"}', "epochs"),
        ('{"epochs": 2.5}', "epochs is 2.5: give a whole number"),
        ('{"standardize": "yes"}', "standardize"),
        ('{"strengths": [0.1, "x"]}', "strengths"),
        ("[1, 2]", "not a table of settings"),
        ("{oops", "cannot read it as JSON"),
    ],
)
def test_config_file_refusals_are_one_line_before_any_work(tmp_path, capsys, text, needle):
    path = tmp_path / "settings.json"
    path.write_text(text)
    code = cli.main(["sweep", "--config", str(path), "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: --config: {path}") and err.count("\n") == 1, err
    assert needle in err and not (tmp_path / "r").exists()


def test_config_file_missing_or_python_object_overridden(tmp_path, capsys):
    assert cli.main(["sweep", "--config", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": "nnx:mymod.make", "epochs": 3}))
    cfg, _ = cli.parse(["sweep", "--config", str(path), "--model", "cnn"])  # the flag replaces it
    assert cfg.model == "cnn" and cfg.epochs == 3


def test_config_json_of_a_run_made_with_hooks_says_what_it_cannot_reproduce(tmp_path, capsys):
    """sweep(init_params=..., record=...) records them by name: a replay names them, one line."""
    out = tmp_path / "hooked"
    wdjax.sweep(epochs=1, out=str(out), record=lambda b, a, g, s: {"n": jnp.zeros(())})
    assert "hooks" in json.loads((out / "config.json").read_text())
    assert (
        cli.main(["sweep", "--config", str(out / "config.json"), "--out", str(tmp_path / "b")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "record=" in err and "wdjax.sweep" in err, err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "message, argument, line",
    [
        ("strengths: has -1.0: every value must be ≥ 0", "strengths",
         "error: --strength: has -1.0: every value must be ≥ 0"),
        ("mask: 'nomatch' selects no parameter", None,
         "error: --mask: 'nomatch' selects no parameter"),
        ("out: 'x' is a file; name a folder", "out", "error: --out: 'x' is a file; name a folder"),
        ("must be '5', '60s' or '10m'", "checkpoint_every",
         "error: --checkpoint-every: must be '5', '60s' or '10m'"),
        ("--lr: already a flag", "lrs", "error: --lr: already a flag"),
        ("data: must be a wdjax.Dataset", "data", "error: data: must be a wdjax.Dataset"),
    ],
)  # fmt: skip
def test_library_errors_name_their_argument_the_cli_its_flag(monkeypatch, capsys, message,
                                                             argument, line):  # fmt: skip
    from wdjax.run import runner

    def refuse(*args, **kwargs):
        raise ConfigError(message, argument=argument)

    monkeypatch.setattr(runner, "sweep", refuse)
    assert cli.main(["sweep", "--quiet", "--out", "unused"]) == 2
    assert capsys.readouterr().err == line + "\n"


def test_one_table_from_argument_names_to_flags():
    fields = [*dataclasses.fields(SweepConfig), *dataclasses.fields(RunOptions)]
    assert cli.FLAGS == {f.name: flag_of(f) for f in fields}
    assert cli.FLAGS["strengths"] == "--strength" and cli.FLAGS["axes"] == "--set"
    params = inspect.signature(wdjax.sweep).parameters
    assert {"out", "resume", "checkpoint_every"} <= set(params) & set(cli.FLAGS)


def _child_env():
    return dict(os.environ, XLA_FLAGS=child_xla_flags(devices=None), WDJAX_OFFLINE="1")


SIGINT_FLAGS = [*INTERRUPTIBLE, "--checkpoint-every", "1000s"]  # the shared run's flags


@pytest.fixture
def reference_run(uninterrupted_run):
    """The SIGINT_FLAGS run trained through (conftest's session run, shared with the kill test):
    what a stopped and resumed run must equal."""
    return uninterrupted_run.out


def _same_run(a, b) -> bool:
    pa, pb = np.load(a / "params.npz"), np.load(b / "params.npz")
    same = sorted(pa) == sorted(pb) and all(np.array_equal(pa[k], pb[k]) for k in pa)
    return same and (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()


def _continue(command: str) -> subprocess.CompletedProcess:
    argv = shlex.split(command.replace("python", sys.executable, 1))
    return subprocess.run(argv, env=_child_env(), check=True, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.mark.xdist_group("uninterrupted")  # shares uninterrupted_run (conftest.py)
def test_ctrl_c_saves_and_prints_the_command_that_resumes_bit_identically(tmp_path, reference_run):
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "wdjax", *SIGINT_FLAGS, "--out", str(cut)],
                            env=_child_env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
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
    _continue(command)
    assert _same_run(cut, reference_run)
    assert not (cut / "checkpoints").exists()


# The CLI with each epoch made 1 s longer: two Ctrl-C 0.3 s apart land within one epoch.
SLOW_EPOCHS = """
import sys, time
from wdjax.run import cli, runner
epoch = runner._epoch
runner._epoch = lambda *a: (epoch(*a), time.sleep(1.0))[0]
sys.exit(cli.main(sys.argv[1:]))
"""


def _ctrl_c_twice(flags: list, out, at: str) -> tuple[int, str]:
    """Run the CLI (slow epochs); at the log line containing ``at``, Ctrl-C twice 0.3 s apart.
    Returns the exit status and what followed on stderr."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EPOCHS, *flags, "--out", str(out)],
                            env=_child_env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    for line in proc.stderr:
        if at in line:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            break
    err = proc.stderr.read()
    return proc.wait(timeout=60), err


@pytest.mark.xdist_group("uninterrupted")  # shares uninterrupted_run (conftest.py)
def test_second_ctrl_c_stops_at_once_naming_the_kept_checkpoint(tmp_path, reference_run):
    cut = tmp_path / "cut"
    code, err = _ctrl_c_twice([*SIGINT_FLAGS, "--checkpoint-every", "1"], cut, "epoch 3/60")
    assert code == 130, err  # not killed by the signal (-2)
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped at once; the last checkpoint (epoch "), err
    epoch = int(last.split("(epoch ")[1].split("/")[0])
    assert 1 <= epoch <= 3 and f"is kept in {cut / 'checkpoints'}" in last
    command = last.split("continue with: ")[1]
    assert command.endswith("--resume") and f"--out {cut}" in command
    resumed = _continue(command)
    assert f"resuming at chunk 1/1, epoch {epoch}/60" in resumed.stderr  # not a start-over
    assert _same_run(cut, reference_run)


def test_second_ctrl_c_before_any_checkpoint_says_nothing_was_saved(tmp_path, capsys):
    flags = ["sweep", "--epochs", "4", "--batch-size", "64", "--cpu-devices", "1"]
    code, err = _ctrl_c_twice(flags, tmp_path / "r", "epoch 1/4")
    assert code == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped at once; nothing was saved (no checkpoint yet)"), err
    command = last.split("start it again with: ")[1]
    assert command.endswith("--resume")
    assert cli.main([*shlex.split(command)[3:], "--quiet"]) == 0  # --resume: says it starts over
    assert "holds no checkpoint" in capsys.readouterr().err
    assert len(json.loads((tmp_path / "r" / "summary.json").read_text())["members"]) == 1
