"""Two processes on this machine (jax.distributed on localhost, gloo CPU collectives) == one."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import adam_drift, assert_trees_close_to_scale, child_xla_flags

from wdjax import files

# float64: one process runs the 4 members as one program, two processes as two 2-member
# programs (other programs), so the two runs agree to float64 rounding, not bit for bit.
FLAGS = ["sweep", "--strength", "0,1e-3,1e-2,1e-1", "--epochs", "2", "--batch-size", "64",
         "--lr", "1e-2", "--dtype", "float64", "--quiet"]  # fmt: skip
# Two epochs of digits at batch 64: Adam drifts by ≤ adam_drift(50, 1e-2, 64) ≈ 7e-7 of the
# scale (tests/helpers.py); a member gathered into the wrong row is off by O(1).
TOL = adam_drift(50, 1e-2, 64)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ, XLA_FLAGS=child_xla_flags(devices=1))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def test_two_processes_equal_one_process(tmp_path):
    one = tmp_path / "one"
    subprocess.run([sys.executable, "-m", "wdjax", *FLAGS, "--out", str(one)], check=True,
                   env=_env(), timeout=300, capture_output=True)  # fmt: skip
    two = tmp_path / "two"
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wdjax",
                *FLAGS,
                "--out",
                str(two),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("multi-process sweep timed out")
    assert all(p.returncode == 0 for p in procs), "\n".join(outs)
    meta = files.read_json(two / "meta.json")
    assert meta["process_count"] == 2 and len(meta["devices"]) == 2
    a, b = files.read_csv(one / "metrics.csv"), files.read_csv(two / "metrics.csv")
    assert len(a) == len(b) == 4 * 2
    for ra, rb in zip(a, b, strict=True):
        for key in ("member", "epoch", "strength"):
            assert ra[key] == rb[key]
    for key in ("train_loss", "val_loss", "test_loss", "weight_l2", "weight_l1"):
        got, want = np.array([r[key] for r in b]), np.array([r[key] for r in a])
        assert_trees_close_to_scale(got, want, TOL, err_msg=key)
