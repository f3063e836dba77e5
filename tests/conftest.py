"""Test-wide settings: fake CPU devices for sharding tests, strict rank promotion, hermetic caches;
the runs several test modules share (the uninterrupted CLI run of the Ctrl-C and kill tests, each
study's smoke run).

Under pytest-xdist (README's test line: ``-n 2``) a session fixture is made once per worker, so the
tests that share one carry the same ``xdist_group`` mark and run on one worker (``--dist
loadgroup``). A test module's own module- or session-scoped fixture gets the same treatment without
a mark (:func:`pytest_collection_modifyitems`): its users are grouped by the fixture's name, so a
shared run (bench's quick run, a prepared TFDS folder, a simulation) is made once, not on both
workers."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import types

# Must be set before JAX initialises its backends (equinox's tests do the same). Added to the
# user's own XLA_FLAGS (a GPU user's, or a numerics switch such as .ci/run's), never replacing them.
_DEVICES = "--xla_force_host_platform_device_count=4"
_flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICES[:-1])]
# XLA:CPU compiles each program single-threaded here (unless XLA_FLAGS says otherwise), as
# OMP_NUM_THREADS=1 under pytest-xdist: the workers already fill the cores (README's -n 2), and
# splitting every program's LLVM module to compile its parts in parallel only added work (the
# suite's CPU time -10 %). A compile-time setting, not a kernel choice: the 44 `numerics` cases,
# and the 316 tests of 12 modules digested both ways (test_models, test_runner, test_optim, ...),
# compare the same bits with and without it (.ci/numerics_bits.py's digests, 2026-12-08).
_SPLIT = "--xla_cpu_parallel_codegen_split_count"
if not any(f.startswith(_SPLIT) for f in _flags):
    _flags.append(f"{_SPLIT}=1")
os.environ["XLA_FLAGS"] = " ".join([*_flags, _DEVICES])
os.environ.setdefault("WDJAX_OFFLINE", "1")  # tests are hermetic: never touch the network
# Caches written by tests go to a throwaway folder, never to ~/tensorflow_datasets.
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="wdjax-tests-tfds-")
# No compile cache in the user's home either: off for this process and the CLI runs it starts
# (tests/test_compile_cache.py turns it on in a temporary directory for its own subprocesses).
os.environ["WDJAX_COMPILE_CACHE"] = "off"
# ... but one JAX compilation cache for the whole session, in a throwaway folder made by the first
# process (pytest-xdist's workers and the CLI runs tests start inherit it): a program compiled once
# is loaded, not compiled again, by every later test, worker or CLI run that builds it (most of
# the suite's time is XLA compiling). The executable loaded is the one compiled, so the bits are
# the same. tests/test_compile_cache.py's runs leave it out. Only programs that took 0.3 s or
# more to compile are written (a sweep's epoch and init): each write takes the cache's lock and
# lists the whole folder (JAX's size limit), and the suite's ~2,000 single-operation compiles of
# eager jnp code (~0.05 s each) made the folder large and the workers wait on each other's lock
# (the suite: about 600 -> 466 s on the 2-core machine; docs/testing.md, "Time").
if not os.environ.get("WDJAX_TEST_JAX_CACHE"):
    os.environ["WDJAX_TEST_JAX_CACHE"] = tempfile.mkdtemp(prefix="wdjax-tests-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["WDJAX_TEST_JAX_CACHE"], ignore_errors=True)
os.environ.update(
    JAX_COMPILATION_CACHE_DIR=os.environ["WDJAX_TEST_JAX_CACHE"],
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.3",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    # a size limit makes JAX lock each entry it reads or writes (workers share the folder)
    JAX_COMPILATION_CACHE_MAX_SIZE=str(8 << 30),
)

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402
from helpers import INTERRUPTIBLE, child_env, load_script  # noqa: E402

# The run the Ctrl-C and kill tests interrupt (tests/test_cli.py, tests/test_checkpoints.py): long
# enough that a signal sent at epoch 3 lands mid-run; each test adds --out and its cadence.


@pytest.fixture(scope="session")
def uninterrupted_run(tmp_path_factory):
    """``INTERRUPTIBLE`` run once, uninterrupted and without a checkpoint (``--checkpoint-every
    1000s``), for every test that compares an interrupted-then-resumed run with it: ``.out``
    (its folder), ``.command`` (``python -m wdjax`` and ``INTERRUPTIBLE``, without --out)."""
    command = [sys.executable, "-m", "wdjax", *INTERRUPTIBLE]
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run([*command, "--checkpoint-every", "1000s", "--out", str(out), "--quiet"],
                   env=child_env(), check=True, capture_output=True, timeout=300)  # fmt: skip
    return types.SimpleNamespace(out=out, command=command)


NEEDS: dict = {}  # a study that reads another study's summary.json beside its --out


@pytest.fixture(scope="session")
def study_smoke(tmp_path_factory):
    """``study_smoke(name)`` → (results directory, what ``main`` returned): each study's
    ``--smoke`` run once per session into one temporary results folder, so a study that reads
    another's summary (``NEEDS``) finds it beside its own ``--out``, as in ``results/studies/``.
    Its users carry ``pytest.mark.xdist_group("studies")``."""
    root, done = tmp_path_factory.mktemp("studies"), {}

    def run(name):
        if name in NEEDS:
            run(NEEDS[name])
        if name not in done:
            out = root / name
            done[name] = out, load_script(f"experiments/{name}.py").main(
                ["--smoke", "--out", str(out)])  # fmt: skip
        return done[name]

    return run


def pytest_collection_modifyitems(config, items):
    """Group the users of each module- or session-scoped fixture defined in a test module (not
    here: this file's carry their marks) with ``xdist_group("<module>::<fixture>")``; a test that
    already has a group keeps it."""
    import pytest

    for item in items:
        if item.get_closest_marker("xdist_group") or not hasattr(item, "_fixtureinfo"):
            continue
        for name in item.fixturenames:
            defs = item._fixtureinfo.name2fixturedefs.get(name) or ()
            shared = [d for d in defs if d.scope in ("module", "session") and d.baseid]
            if shared and shared[-1].baseid.endswith(".py"):  # defined in a test module
                item.add_marker(pytest.mark.xdist_group(f"{shared[-1].baseid}::{name}"))
                break
    # The longest group first (each study's smoke run, one after another on one worker): a worker
    # that takes it last would run on alone after the other has finished.
    items.sort(key=lambda item: _group(item) != "studies")


def _group(item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    return None if mark is None else (mark.args[0] if mark.args else mark.kwargs.get("name"))


# Which tests see other bits under another XLA:CPU setting (.ci/numerics_bits.py, docs/testing.md).
if os.environ.get("WDJAX_TEST_DIGESTS"):
    from bitdigest import pytest_runtest_protocol  # noqa: E402, F401
