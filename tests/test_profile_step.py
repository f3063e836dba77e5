"""scripts/profile_step.py: flags are checked before any work, and an A/B traced run completes.

Nothing is timed here: the run checks that both builds produce step times and that the trace prints
per-op lines.
"""

import math
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT / "scripts") not in sys.path:  # the scripts import bench_common from their own folder
    sys.path.insert(0, str(ROOT / "scripts"))

import profile_step  # noqa: E402


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rounds", "1"], "--rounds must be at least 2"),
        (["--members", "0"], "--members must be at least 1"),
        (["--baseline", "/nonexistent/train.py"], "--baseline /nonexistent/train.py: no such file"),
        (["--compiler-option", "xla_only_a_name"], "NAME=VALUE"),
        (["--devices", "1,99"], "this process has 4 devices"),
        (["--cpu-devices", "0"], ("cpu devices", "must be at least 1, got 0")),  # the library's
        (["--members", "3", "--devices", "1,2"], "must split evenly"),
    ],
)
def test_bad_flags_fail_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        profile_step.parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert all(m in err for m in ([message] if isinstance(message, str) else message)), err


def test_compiler_option_values_are_typed():
    args = profile_step.parse_args(
        ["--compiler-option", "xla_backend_optimization_level=1",
         "--compiler-option", "xla_cpu_use_fusion_emitters=false",
         "--compiler-option", "xla_cpu_some_float=0.5", "--compiler-option", "xla_name=fast"]
    )  # fmt: skip
    assert args.compiler_option == [
        ("xla_backend_optimization_level", 1),
        ("xla_cpu_use_fusion_emitters", False),
        ("xla_cpu_some_float", 0.5),
        ("xla_name", "fast"),
    ]
    assert type(args.compiler_option[1][1]) is bool


def test_step_flops_are_the_convention_per_batch():
    # 6 x (784·64 + 64·64 + 64·10) weights x 128 examples, counted by hand; none for other models.
    assert profile_step.step_flops(profile_step.parse_args([])) == 6 * 54912 * 128
    assert profile_step.step_flops(profile_step.parse_args(["--hidden", "16"])) == (
        6 * (784 * 16 + 16 * 10) * 128
    )
    assert math.isnan(profile_step.step_flops(profile_step.parse_args(["--model", "cnn"])))


def test_ab_traced_run(capsys):
    baseline = str(ROOT / "wdjax" / "engine" / "engine.py")  # the engine against itself
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
