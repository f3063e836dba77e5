"""Two processes on this machine (jax.distributed on localhost, gloo CPU collectives) == one."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from wdjax import results

FLAGS = ["sweep", "--strength", "0,1e-3,1e-2,1e-1", "--epochs", "2", "--batch-size", "64",
         "--lr", "1e-2", "--quiet"]  # fmt: skip


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
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
    meta = results.read_json(two / "meta.json")
    assert meta["process_count"] == 2 and len(meta["devices"]) == 2
    a, b = results.read_csv(one / "metrics.csv"), results.read_csv(two / "metrics.csv")
    assert len(a) == len(b) == 4 * 2
    for ra, rb in zip(a, b, strict=True):
        for key in ("member", "epoch", "strength"):
            assert ra[key] == rb[key]
        for key in ("train_loss", "val_loss", "test_loss", "weight_l2", "weight_l1"):
            np.testing.assert_allclose(rb[key], ra[key], rtol=1e-5, err_msg=key)
