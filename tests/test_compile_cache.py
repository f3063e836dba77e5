"""wdjax.compile_cache: where it lives, what it keys on, and that a cached program is the same
program (bit-identical results), shared safely by concurrent processes, and never trusted blindly.

The end-to-end tests run the CLI in fresh processes (JAX reads its cache settings once per
process) with HOME in a temporary directory; this test process itself runs with the cache off
(tests/conftest.py), so no test writes to the user's home.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import child_xla_flags
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import wdjax
from wdjax.engine import compile_cache
from wdjax.engine import devices as dev
from wdjax.run.build import build


def test_the_test_process_never_writes_a_cache_to_the_home():
    assert os.environ["WDJAX_COMPILE_CACHE"] == "off"
    assert compile_cache.default_root() is None


def test_default_root_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compile_cache.default_root({}) == str(tmp_path / ".cache" / "wdjax")
    assert compile_cache.default_root({"XDG_CACHE_HOME": "/x"}) == "/x/wdjax"
    assert compile_cache.default_root({"WDJAX_COMPILE_CACHE": "/y", "XDG_CACHE_HOME": "/x"}) == "/y"
    for off in ("off", "OFF", "0", "none", ""):
        assert compile_cache.default_root({"WDJAX_COMPILE_CACHE": off}) is None


def _engine(**kw):
    return build(wdjax.SweepConfig(**kw), num_classes=10, steps_per_epoch=10).engine


def test_only_builtin_engines_use_the_program_cache(monkeypatch, tmp_path):
    monkeypatch.setitem(compile_cache._STATE, "root", str(tmp_path))
    key = compile_cache.program_key
    args = ((((8, 8, 1), "float32"),), 16, ("TFRT_CPU_0",), ())
    base = key(_engine(reg="wd"), *args)
    assert base is not None and base == key(_engine(reg="wd"), *args)  # stable
    assert key(_engine(reg="l2"), *args) != base  # the strategy is in the key
    assert key(_engine(reg="wd", batchnorm=True), *args) != base  # the model too
    assert key(_engine(reg="wd"), *args[:1], 32, *args[2:]) != base  # and the chunk
    # user code: its repr could hide a change, so such engines are compiled every time
    custom_opt = _engine(optimizer=lambda lr, s: optax.sgd(lr))
    custom_mask = _engine(reg="wd", mask=lambda p: jax.tree.map(lambda _: True, p))
    assert key(custom_opt, *args) is None and key(custom_mask, *args) is None
    monkeypatch.setitem(compile_cache._STATE, "root", None)  # off
    assert key(_engine(reg="wd"), *args) is None


def test_programs_round_trip_on_a_mesh_bit_identical(monkeypatch, tmp_path):
    monkeypatch.setitem(compile_cache._STATE, "root", str(tmp_path))
    shard, repl = dev.mesh_shardings(jax.devices())  # the 4 CPU devices of tests/conftest.py
    x = jax.device_put(np.arange(32, dtype=np.float32).reshape(8, 4), shard)
    f = jax.jit(lambda a: (jnp.tanh(a) @ a.T).sum(1), out_shardings=shard).lower(x).compile()
    g = jax.jit(lambda a: a.sum(), out_shardings=repl).lower(x).compile()
    compile_cache.save_programs("k", (f, g))
    # the mesh's flat iterator, as programs.get passes it: every program gets every device
    loaded = compile_cache.load_programs("k", shard.mesh.devices.flat)
    assert loaded is not None and len(loaded) == 2
    np.testing.assert_array_equal(loaded[0](x), f(x))  # the same program: bit equality
    np.testing.assert_array_equal(loaded[1](x), g(x))
    assert loaded[0](x).sharding.is_equivalent_to(NamedSharding(shard.mesh, P("members")), 1)
    assert compile_cache.load_programs("missing", shard.mesh.devices.flat) is None


def test_a_corrupt_file_warns_and_is_removed(monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(compile_cache._STATE, "root", str(tmp_path))
    path = tmp_path / "programs" / "bad.pkl"
    path.parent.mkdir()
    path.write_bytes(b"not a pickle")
    with caplog.at_level("WARNING", logger="wdjax"):
        assert compile_cache.load_programs("bad", jax.devices()) is None
    assert "did not load" in caplog.text and not path.exists()


def test_eviction_keeps_the_most_recently_used(monkeypatch, tmp_path):
    monkeypatch.setattr(compile_cache, "MAX_PROGRAM_FILES", 3)
    for i in range(5):
        p = tmp_path / f"{i}.pkl"
        p.write_bytes(b"x")
        os.utime(p, (1000 + i, 1000 + i))
    compile_cache._evict(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2.pkl", "3.pkl", "4.pkl"]


def test_an_unwritable_directory_is_refused_naming_the_flag():
    with pytest.raises(ValueError, match="--compile-cache / WDJAX_COMPILE_CACHE: cannot create"):
        compile_cache.configure("/proc/no-such-dir/cache")


# --- end to end, in fresh processes --------------------------------------------------------------

SWEEP = [sys.executable, "-m", "wdjax", "sweep", "--seeds", "2", "--epochs", "2", "--batch-size",
         "64", "--hidden", "16,16"]  # fmt: skip


def _env(home, **extra):
    drop = ("WDJAX_COMPILE_CACHE", "XDG_CACHE_HOME", "JAX_COMPILATION_CACHE_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(HOME=str(home), XLA_FLAGS=child_xla_flags(), **extra)
    return env


def _start(out, env, strengths):
    argv = [*SWEEP, "--strength", strengths, "--out", str(out)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return err


def test_concurrent_runs_share_the_default_cache_and_a_repeat_loads_it(tmp_path):
    home = tmp_path / "home"
    env = _env(home)
    # two processes compile the same programs at once into an empty cache (the default place)
    a, b = (_start(tmp_path / n, env, "1e-3,1e-2") for n in ("a", "b"))
    errs = [_finish(a), _finish(b)]
    for err in errs:  # no torn reads or writes, by JAX's layer or ours
        assert "did not load" not in err and "could not save" not in err
        assert "persistent compilation cache" not in err.lower()  # JAX's warnings
    assert (tmp_path / "a" / "metrics.csv").read_text() == (
        tmp_path / "b" / "metrics.csv"
    ).read_text()
    root = home / ".cache" / "wdjax"
    assert len(list((root / "programs").glob("*.pkl"))) == 1 and any((root / "jax").iterdir())
    # a new process, new λ values: loads the programs and starts training at once
    err = _finish(_start(tmp_path / "c", env, "1e-4,1e-1"))
    assert "loaded the compiled programs from the compile cache" in err
    # ... and trains exactly as a fresh compile of the same program does
    _finish(_start(tmp_path / "d", _env(home, WDJAX_COMPILE_CACHE="off"), "1e-4,1e-1"))
    c, d = ((tmp_path / n / "metrics.csv").read_text() for n in ("c", "d"))
    assert c == d
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["startup_seconds"] > 0
    # a corrupt entry: reported, removed, compiled afresh (JAX's layer serves it), same results
    (entry,) = (root / "programs").glob("*.pkl")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    err = _finish(_start(tmp_path / "e", env, "1e-4,1e-1"))
    assert "did not load" in err and (tmp_path / "e" / "metrics.csv").read_text() == c
    # ... and not saved again: an executable JAX loaded from its cache serializes without its
    # kernels (the next process would fail with "Function ... not found"); e itself trained
    # through JAX's layer, as the next run will
    assert not entry.exists() and not list((root / "programs").glob("*.pkl"))
