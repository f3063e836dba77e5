"""scripts/bench.py and bench_common.py: the model-FLOP convention against hand counts (the one
definition bench.py and profile_step.py share), flags, and a --quick end-to-end run.

Benchmarks are never timed here: the end-to-end run checks the JSON fields and the table only.
"""

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench.py"
if str(SCRIPT.parent) not in sys.path:  # the scripts import bench_common from their own folder
    sys.path.insert(0, str(SCRIPT.parent))

import bench  # noqa: E402
import bench_common  # noqa: E402


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --- FLOP conventions (hand counts from the issue) ---------------------------------------------


def test_mlp_weights_tutorial():
    # 784·64 + 64·64 + 64·10 multiply-add weights (biases excluded).
    assert bench_common.mlp_weights(784, (64, 64), 10) == 50176 + 4096 + 640 == 54912


def test_mlp_model_flops_convention_and_overcount():
    assert bench_common.model_flops("mlp", (28, 28, 1), 10, (64, 64)) == 6 * 54912
    # Real work: 2W forward + 2W weight grads + input grads of layers 2 and 3 only.
    assert bench_common.mlp_true_flops(784, (64, 64), 10) == 4 * 54912 + 2 * (4096 + 640)
    ratio = 6 * 54912 / bench_common.mlp_true_flops(784, (64, 64), 10)
    assert ratio == pytest.approx(1.44, abs=0.01)  # the issue's "~1.4x over-count"


def test_tutorial_mlp_floor_matches_issue():
    # The issue: model FLOPs at ~455 GFLOP/s take 0.044 s per 60,000-example member-epoch; the
    # true floor is ~0.031 s.
    examples = (60_000 // 128) * 128
    assert 6 * 54912 * examples / 455e9 == pytest.approx(0.0434, abs=1e-3)
    assert bench_common.mlp_true_flops(784, (64, 64), 10) * examples / 445e9 == pytest.approx(
        0.031, abs=1e-3
    )


def test_cnn_forward_flops_hand_count():
    conv1 = 2 * 28 * 28 * 9 * 1 * 32
    conv2 = 2 * 14 * 14 * 9 * 32 * 64
    dense = 2 * (7 * 7 * 64) * 128 + 2 * 128 * 10
    assert bench_common.cnn_forward_flops(28, 28, 1, 10) == conv1 + conv2 + dense == 8_482_304
    assert bench_common.model_flops("cnn", (28, 28, 1), 10) == 3 * 8_482_304
    # Odd sizes pool with floor: 7 -> 3 -> 1.
    assert bench_common.cnn_forward_flops(7, 7, 3, 2, features=(4, 8), dense=5) == (
        2 * 49 * 9 * 3 * 4 + 2 * 9 * 9 * 4 * 8 + 2 * 1 * 8 * 5 + 2 * 5 * 2
    )


def test_model_flops_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        bench_common.model_flops("resnet", (32, 32, 3), 10)


def test_workload_counts_full_batches_only():
    w = bench.Workload("m", "mlp", bench_common.synthetic(300), (64, 64), (1,))
    assert (w.steps, w.examples) == (2, 256)
    assert w.flops == 6 * 54912 * 256
    cnn = bench.Workload("c", "cnn", bench_common.synthetic(130), (), (1,))
    assert cnn.flops == 3 * 8_482_304 * 128


def test_workload_of_each_section_at_the_plan_sizes():
    plan = bench.parse_args(["--quick"])
    mlp, cnn, digits = (bench.workload(name, plan) for name in bench.MODEL_SECTIONS)
    assert (mlp.name, mlp.kind, mlp.hidden, mlp.ks) == ("mlp 784-64-64-10", "mlp", (64, 64), (1, 2))
    assert mlp.data.x_train.shape == (512, 28, 28, 1) and cnn.data.x_train.shape[0] == 256
    assert (cnn.name, cnn.kind, cnn.hidden) == ("cnn (small)", "cnn", ())
    assert digits.name == "mlp digits 64-64-64-10" and digits.data.image_shape == (8, 8, 1)
    assert digits.data.x_val.shape[0] == digits.data.x_test.shape[0] == 0  # epochs time training


def test_synthetic_is_mnist_shaped_train_only_and_seeded():
    ds = bench_common.synthetic(200, seed=1)
    assert ds.x_train.shape == (200, 28, 28, 1) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int32 and 0 <= ds.y_train.min() <= ds.y_train.max() < 10
    assert ds.x_val.shape == ds.x_test.shape == (0, 28, 28, 1)
    assert ds.y_val.shape == ds.y_test.shape == (0,)
    again = bench_common.synthetic(200, seed=1)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    np.testing.assert_array_equal(ds.y_train, again.y_train)
    rgb = bench_common.synthetic(3, shape=(32, 32, 3), classes=2)
    assert rgb.x_train.shape == (3, 32, 32, 3) and rgb.num_classes == 2


# --- flags ---------------------------------------------------------------------------------------


def test_parse_args_defaults_and_quick():
    full = bench.parse_args([])
    assert full.ks == (1, 8, 32, 128) and full.n_train == 60_000 and full.matmul_n == 2048
    assert full.sections == bench.SECTIONS
    quick = bench.parse_args(["--quick", "--ks", "1,4", "--sections", "mlp,torch", "--out", ""])
    assert quick.quick and quick.ks == (1, 4) and quick.n_train < 60_000
    assert quick.sections == ("mlp", "torch") and quick.out is None
    given = bench.parse_args(["--quick", "--epochs", "3", "--rounds", "0", "--reg", "l1"])
    assert (given.epochs, given.rounds, given.reg) == (3, 0, "l1")
    assert given.n_train == bench.QUICK["n_train"] and given.out == "results/bench.json"


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--sections", "mlp,gpu"], "--sections"),
        (["--epochs", "1"], "--epochs"),
        (["--ks", "1,0"], "--ks"),
        (["--peer-ks", "a"], "--peer-ks"),
        (["--reg", "dropout"], "--reg"),
        (["--n-train", "64"], "--n-train"),
        (["--devices", "99"], "--devices"),
        (["--cpu-devices", "0"], "--cpu-devices"),
        (["--rounds", "-1"], "--rounds"),
        (["--round-k", "0"], "--round-k"),
    ],
)
def test_parse_args_rejects_bad_flags(argv, match):
    with pytest.raises(ValueError, match=match):
        bench.parse_args(argv)


def test_gpu_preset_is_refused_on_a_cpu_backend_and_with_quick():
    with pytest.raises(ValueError, match="--gpu: JAX's backend is cpu"):
        bench.parse_args(["--gpu"])
    with pytest.raises(ValueError, match="--quick and --gpu"):
        bench.parse_args(["--quick", "--gpu"])


def test_gpu_preset_sizes_and_nothing_cpu_specific_off_the_cpu(monkeypatch):
    monkeypatch.setattr(bench.jax, "default_backend", lambda: "gpu")
    plan = bench.parse_args(["--gpu", "--cnn-ks", "1,8"])  # explicit flags override the preset
    assert plan.ks == (1, 32, 256, 1024) and plan.cnn_ks == (1, 8) and plan.rounds == 0
    assert plan.sections == ("mlp", "cnn") and plan.n_train == 60_000  # no peers, full data
    # the split-CPU child (XLA_FLAGS / jax_num_cpu_devices in a subprocess) is never started
    assert bench.split_devices(plan) == 0
    assert bench.bench_split("mlp", plan, 1.0) == ([], [])
    monkeypatch.setattr(bench.jax, "default_backend", lambda: "cpu")
    on_cpu = bench.parse_args(["--cpu-devices", "2"])
    assert bench.split_devices(on_cpu) == 2  # the guard's other side


def test_small_programs_get_cpu_compile_options_on_cpu_only():
    from wdjax.engine import programs

    class Lowered:  # records the options it is compiled with
        def compile(self, **kw):
            self.kw = kw
            return "compiled"

    def shard(platform):
        device = type("Device", (), {"platform": platform})()
        return type("Shard", (), {"mesh": type("Mesh", (), {"devices": np.array([device])})()})()

    cpu = {"compiler_options": programs.CPU_SMALL_OPTIONS}
    for platform, expected in (("gpu", {}), ("tpu", {}), ("cpu", cpu)):
        lowered = Lowered()
        assert programs.compile_small(lowered, shard(platform)) == "compiled"
        assert lowered.kw == expected, platform


# --- report --------------------------------------------------------------------------------------


def _row(model, framework, how, k, member_s):
    return dict(
        model=model,
        framework=framework,
        how=how,
        k=k,
        s_per_epoch=k * member_s,
        s_per_member_epoch=member_s,
        gflops=1.0,
        pct_peak=1.0,
    )


def test_ratios_compare_each_sweep_with_each_baseline_at_its_largest_k():
    rows = [
        _row("m", "wdjax", "sweep", 1, 0.2),
        _row("m", "wdjax", "sweep", 8, 0.05),
        _row("m", "wdjax", "sequential", 8, 0.2),
        _row("m", "torch", "eager", 1, 9.0),
        _row("m", "torch", "eager", 8, 0.4),
        _row("other", "torch", "eager", 8, 1.0),
    ]
    got = {(q["k"], q["vs"]): (q["vs_k"], q["faster"]) for q in bench.ratios(rows)}
    assert got == {
        (1, "wdjax sequential"): (8, pytest.approx(1.0)),
        (1, "torch eager"): (8, pytest.approx(2.0)),
        (8, "wdjax sequential"): (8, pytest.approx(4.0)),
        (8, "torch eager"): (8, pytest.approx(8.0)),
    }


def test_ratio_check_pairs_each_round_and_takes_the_median(monkeypatch):
    # Round i: the sweep takes sweep_s[i] per member-epoch, Keras keras_s[i] (its first epoch is
    # dropped), PyTorch 1.0 s; the ratios are taken within each round, then the median.
    sweep_s, keras_s = iter([0.1, 0.2, 0.1]), iter([0.3, 0.4, 0.5])
    monkeypatch.setattr(bench, "split_devices", lambda plan: 0)
    calls = []

    def fake_wdjax(w, plan, peak, memory):
        calls.append((w.ks, plan.ks, memory))
        return [{"s_per_member_epoch": next(sweep_s)}], []

    monkeypatch.setattr(bench, "bench_wdjax", fake_wdjax)
    monkeypatch.setattr(bench, "keras_member", lambda w, plan, lam, e: [9.0, next(keras_s)])
    monkeypatch.setattr(bench, "torch_member", lambda w, plan, lam, e, fused: [9.0, 1.0, 1.0])
    plan = bench.Plan(rounds=3, round_k=32)
    w = bench.Workload("mlp", "mlp", bench_common.synthetic(256), (64, 64), (1, 8))
    got = bench.bench_rounds(w, plan, 100.0, ["keras", "torch"])
    assert calls == [((32,), (32,), False)] * 3
    assert got["faster"]["keras model.fit (jax)"] == pytest.approx([3.0, 2.0, 5.0])
    assert got["median_faster"]["keras model.fit (jax)"] == pytest.approx(3.0)
    assert got["faster"]["torch eager, AdamW(fused)"] == pytest.approx([10.0, 5.0, 10.0])
    assert got["median_faster"]["torch eager, AdamW"] == pytest.approx(10.0)
    assert got["k"] == 32 and got["how"] == "sweep"
    text = bench.table({"rows": [], "memory": [], "ratios": [], "rounds": got, "notes": []})
    assert "ratio check, 3 rounds" in text and "median 3.00x" in text
    assert bench.bench_rounds(w, plan, 100.0, []) is None  # no peer: nothing to compare
    # the CNN's check: its own K (--cnn-round-k), its sweep measured on the CNN's sizes
    sweep_s, calls[:] = iter([0.5, 0.25, 0.5]), []
    cnn = bench.Workload("cnn", "cnn", bench_common.synthetic(256), (), (1, 8))
    got = bench.bench_rounds(cnn, bench.Plan(rounds=3, cnn_round_k=8), 100.0, ["torch"], "cnn")
    assert [c[0] for c in calls] == [(8,)] * 3 and got["k"] == 8
    assert got["median_faster"] == {"torch eager, AdamW": pytest.approx(2.0)}  # no fused: CNN
    assert bench.bench_rounds(w, bench.Plan(rounds=0), 100.0, ["keras"]) is None


# --- end to end (subprocess: the script's own process, not this suite's JAX settings) ------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    argv = [
        "--quick",
        "--sections",
        "mlp,keras,torch",
        "--ks",
        "1",
        "--seq-k",
        "2",
        "--peer-ks",
        "1",
        "--repeats",
        "2",
        "--out",
        str(out),
    ]
    env = dict(os.environ, KERAS_BACKEND="jax")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_quick_run_prints_table_and_notes(quick_run):
    stdout, _ = quick_run
    assert "s/mem-ep" in stdout and "GFLOP/s" in stdout and "%peak" in stdout
    assert bench.SYNTHETIC_NOTE in stdout
    assert "over-counts" in stdout and "load average" in stdout


def test_quick_run_json_fields(quick_run):
    _, res = quick_run
    assert set(res) == {"meta", "peak", "rows", "memory", "ratios", "rounds", "cnn_rounds", "notes"}
    assert res["cnn_rounds"] is None  # no cnn section: no CNN ratio check
    assert res["peak"]["n"] == 256 and res["peak"]["gflops"] > 0
    assert res["meta"]["plan"]["quick"] is True and res["meta"]["loadavg_start"]
    assert res["meta"]["complete"] is True and res["peak"]["gflops_end"] > 0
    for r in res["rows"]:
        for field in ("s_per_epoch", "s_per_member_epoch", "gflops", "pct_peak"):
            assert math.isfinite(r[field]) and r[field] > 0, (r, field)
        assert r["s_per_epoch"] == pytest.approx(r["k"] * r["s_per_member_epoch"])


def test_quick_run_wdjax_rows(quick_run):
    _, res = quick_run
    rows = {(r["framework"], r["how"], r["k"]): r for r in res["rows"]}
    sweep = rows[("wdjax", "sweep", 1)]
    assert sweep["finite"] and sweep["compile_s"] >= 0
    assert sweep["recompile_s"] == 0.0  # new λ values of the same count never recompile
    seq = rows[("wdjax", "sequential", 2)]
    assert seq["wall_s_per_member_epoch"] > 0


def test_quick_run_memory_record(quick_run):
    _, res = quick_run
    (m,) = [m for m in res["memory"] if "how" not in m]  # the parent process's sweep
    assert m["k"] == 1  # quick size: 512 synthetic rows, no validation or test rows
    assert m["data_bytes"] == 512 * 784 * 4 + 512 * 4 + 512 * 4  # x, y, train indices
    assert m["state_bytes_per_member"] >= 3 * 55050 * 4  # params + Adam mu + nu (float32)
    assert m["need_bytes"] == m["data_bytes"] + m["state_bytes_per_member"]
    if "ratio" in m:  # the engine's compiled epoch was found
        assert m["ratio"] > 0 and m["compiled_bytes"] == (
            m["arguments"] + m["outputs"] + m["temporaries"] - m["aliased"]
        )


def test_quick_run_split_rows_come_from_a_child_with_more_cpu_devices(quick_run):
    stdout, res = quick_run
    split = [r for r in res["rows"] if r["how"].startswith("sweep, ")]
    assert [(r["how"], r["k"]) for r in split] == [("sweep, 4 CPU devices", 1)]  # conftest: 4
    assert split[0]["finite"] and split[0]["recompile_s"] == 0.0
    (m,) = [m for m in res["memory"] if m.get("how") == "4 CPU devices"]
    assert m["devices"] == 1  # K = 1 runs on one device, not as 4 padded copies
    assert "sweep, 4 CPU devices K=1" in stdout


@pytest.mark.parametrize("peer", ["keras", "torch"])
def test_quick_run_peers(quick_run, peer):
    _, res = quick_run
    rows = [r for r in res["rows"] if r["framework"] == peer]
    if not _has(peer):
        assert not rows and any(n.startswith(f"{peer} skipped") for n in res["notes"])
        pytest.skip(f"{peer} not installed (optional 'bench' extra)")
    assert rows and {r["k"] for r in rows} == {1}
    assert len(rows) == (1 if peer == "keras" else 2)  # torch: default and fused AdamW
    got = {q["vs"] for q in res["ratios"] if q["model"] == rows[0]["model"]}
    assert {f"{r['framework']} {r['how']}" for r in rows} <= got


def test_quick_run_ratio_check(quick_run):
    stdout, res = quick_run
    if not (_has("keras") or _has("torch")):
        assert res["rounds"] is None and "ratio check skipped: no peer to compare with" in stdout
        pytest.skip("no peer installed (optional 'bench' extra)")
    rounds = res["rounds"]
    assert rounds["k"] == 2 and rounds["how"] == "sweep, 4 CPU devices"  # quick: --round-k 2
    assert len(rounds["seconds_per_member_epoch"]) == 2  # quick: 2 rounds
    for name, each in rounds["faster"].items():
        assert len(each) == 2 and all(x > 0 for x in each), name
    assert "ratio check, 2 rounds" in stdout
