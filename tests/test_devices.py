"""Device choice: CPU splitting and how many devices a chunk of members uses."""

import os
import subprocess
import sys

import pytest
from helpers import child_xla_flags

from wdjax.engine import devices
from wdjax.run.config import ConfigError


@pytest.mark.parametrize(
    "chunk, expected", [(1, 1), (3, 3), (4, 4), (5, 3), (6, 3), (7, 4), (96, 4)]
)
def test_default_cpu_devices_pad_a_chunk_by_at_most_a_quarter(chunk, expected):
    # conftest gives 4 CPU devices: K = 1 must not run as 4 padded copies, K = 5 not as 8.
    assert len(devices.for_members(chunk)) == expected


def test_use_cpu_devices_checks_its_argument_and_the_backend_state(monkeypatch):
    assert devices.use_cpu_devices() == 4  # conftest's XLA_FLAGS device count takes precedence
    monkeypatch.setenv("XLA_FLAGS", "")
    with pytest.raises(ConfigError, match="^cpu_devices: .*at least 1"):
        devices.use_cpu_devices(0)
    with pytest.raises(ConfigError, match="before any JAX computation"):
        devices.use_cpu_devices(2)  # this test process has long initialized JAX


def test_use_cpu_devices_splits_the_cpu_in_a_fresh_process():
    env = dict(os.environ, XLA_FLAGS=child_xla_flags(devices=None))
    code = "import wdjax, jax; print(wdjax.use_cpu_devices(3), len(jax.devices()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    assert out.stdout.split() == ["3", "3"]
