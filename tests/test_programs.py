"""Compiled programs: the cache (no recompilation for new λ), chunk fitting, cheap init compile."""

import dataclasses

import jax
import numpy as np
import pytest
from helpers import adam_drift, assert_trees_close_to_scale, gamma

from wdjax.engine import devices, programs
from wdjax.engine import engine as E
from wdjax.run import runner as S
from wdjax.run.build import build
from wdjax.run.config import SweepConfig

BASE = SweepConfig(epochs=2, batch_size=64, strengths=(1e-4,), lrs=(1e-2,), seeds=1)
TRAJ_TOL = adam_drift(50, 1e-2, 64)  # float64 sweeps of <= 50 steps (tests/test_runner.py)
F64 = dict(dtype="float64")


@pytest.mark.numerics
def test_members_are_chunked_automatically_when_memory_is_short(monkeypatch):
    cfg = dataclasses.replace(BASE, strengths=(0.0, 1e-3, 1e-2, 1e-1, 1.0), **F64)
    with jax.enable_x64(True):
        whole = S.sweep(cfg, devices=jax.devices()[:1])
    need = {}

    def limit(device):  # room for about two members' programs
        return int(need.setdefault("bytes", 0) or 1)

    real_bytes = programs.program_bytes

    def program_bytes(compiled):
        b = real_bytes(compiled)
        need.setdefault("bytes", b * 2 // 5 / programs.MEMORY_FRACTION + 1)
        return b

    monkeypatch.setattr(devices, "memory_limit", limit)
    monkeypatch.setattr(programs, "program_bytes", program_bytes)
    with jax.enable_x64(True):
        auto = S.sweep(cfg, devices=jax.devices()[:1])
    assert auto.meta["chunk_size"] < 5 and auto.meta["chunks"] > 1
    assert_trees_close_to_scale(auto.params, whole.params, TRAJ_TOL)


@pytest.fixture
def traces(monkeypatch):
    """Counts the epoch program's traces, from an empty compile cache."""
    seen = []
    original = E.Engine.train_epoch

    def counting(self, *args):
        seen.append(1)
        return original(self, *args)

    monkeypatch.setattr(E.Engine, "train_epoch", counting)
    programs.clear_cache()
    return seen


def test_no_recompilation_for_new_strengths(traces):
    cfg = dataclasses.replace(BASE, strengths=(1e-4, 1e-3, 1e-2))
    first = S.sweep(cfg)
    assert len(traces) == 1 and first.meta["compile_seconds"] > 0
    second = S.sweep(cfg, strengths=(2e-4, 2e-3, 2e-2), lrs=(3e-3,))
    assert len(traces) == 1 and second.meta["compile_seconds"] == 0.0
    assert not np.allclose(first.history["weight_l2"], second.history["weight_l2"])


@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet"])
def test_fast_init_compile_gives_the_default_compile_weights(model):
    # The runner compiles initialization with _CPU_SMALL_OPTIONS (~3x faster to compile); the
    # initial weights must not change. Same HLO, other LLVM options: identical on the machines
    # tried, but code generation may contract elementwise maths differently elsewhere, so within
    # the inverse-CDF's ~30 roundings (2·γ_30 of the scale); another seed or init is O(1) off.
    cfg = SweepConfig(model=model, hidden=(64, 64))
    engine = build(cfg, num_classes=10).engine
    k = 3
    hyper = E.Hyper(
        jax.numpy.zeros(k), jax.numpy.ones(k), jax.numpy.arange(k), jax.numpy.zeros(k, "int32")
    )
    x = jax.numpy.zeros((1, 32, 32, 3) if model == "resnet" else (1, 28, 28, 1))
    default = jax.jit(engine.init_members)(hyper, x)
    mesh = jax.sharding.Mesh(jax.devices()[:1], ("members",))
    shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    fast = programs.compile_small(jax.jit(engine.init_members).lower(hyper, x), shard)(hyper, x)
    assert_trees_close_to_scale(fast, default, 2 * gamma(30))


def test_a_constant_schedule_shares_programs_across_run_lengths(traces):
    S.sweep(BASE, strengths=(1e-3, 1e-2), epochs=2)
    again = S.sweep(BASE, strengths=(2e-3, 2e-2), epochs=1)
    assert len(traces) == 1 and again.meta["compile_seconds"] == 0.0
