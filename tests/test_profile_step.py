"""scripts/profile_step.py: flags are checked before any work, and an A/B traced run completes.

Nothing is timed here: the run checks that both builds produce step times and that the trace prints
per-op lines.
"""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("profile_step", ROOT / "scripts/profile_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


profile_step = _load()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rounds", "1"], "--rounds must be at least 2"),
        (["--members", "0"], "--members must be at least 1"),
        (["--baseline", "/nonexistent/train.py"], "--baseline /nonexistent/train.py: no such file"),
        (["--compiler-option", "xla_only_a_name"], "NAME=VALUE"),
        (["--devices", "1,99"], "this process has 4 devices"),
        (["--cpu-devices", "0"], "--cpu-devices) must be at least 1"),
        (["--members", "3", "--devices", "1,2"], "must split evenly"),
    ],
)
def test_bad_flags_fail_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        profile_step.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_compiler_option_values_are_typed():
    assert profile_step._option("xla_backend_optimization_level=1") == (
        "xla_backend_optimization_level", 1)  # fmt: skip
    assert profile_step._option("xla_cpu_use_fusion_emitters=false")[1] is False


def test_model_flops_follow_the_bench_convention():
    args = profile_step.parse_args([])
    assert profile_step.model_flops(args) == 6 * (784 * 64 + 64 * 64 + 64 * 10) * 128


def test_ab_traced_run(capsys):
    baseline = str(ROOT / "wdjax" / "train.py")  # the engine against itself
    result = profile_step.main(["--members", "2", "--steps", "3", "--rounds", "2", "--trace",
                                "--hidden", "16", "--baseline", baseline, "--matmuls"])  # fmt: skip
    assert set(result) == {"current", "baseline"} and all(t > 0 for t in result.values())
    out = capsys.readouterr().out
    assert "baseline / current step time" in out and "ms/step" in out
    assert "GFLOP/s  layer 1 forward: 128 x 784 x 128" in out  # K=2 members x 64 units


def test_device_counts_are_timed_side_by_side(capsys):
    result = profile_step.main(["--members", "2", "--steps", "2", "--rounds", "2", "--hidden",
                                "8", "--devices", "1,2"])  # fmt: skip
    assert set(result) == {"current", "current on 2 devices"}
    assert "current on 2 devices / current step time" in capsys.readouterr().out
