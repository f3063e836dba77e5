"""Test-wide settings: fake CPU devices for sharding tests, strict rank promotion, hermetic caches;
the uninterrupted CLI run that the Ctrl-C and kill tests share."""

import os
import subprocess
import sys
import tempfile
import types

# Must be set before JAX initialises its backends (equinox's tests do the same). Added to the
# user's own XLA_FLAGS (a GPU user's, or a numerics switch such as .ci/run's), never replacing them.
_DEVICES = "--xla_force_host_platform_device_count=4"
_flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICES[:-1])]
os.environ["XLA_FLAGS"] = " ".join([*_flags, _DEVICES])
os.environ.setdefault("WDJAX_OFFLINE", "1")  # tests are hermetic: never touch the network
# Caches written by tests go to a throwaway folder, never to ~/tensorflow_datasets.
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="wdjax-tests-tfds-")
# No compile cache in the user's home either: off for this process and the CLI runs it starts
# (tests/test_compile_cache.py turns it on in a temporary directory for its own subprocesses).
os.environ["WDJAX_COMPILE_CACHE"] = "off"

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402
from helpers import INTERRUPTIBLE, child_env  # noqa: E402

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


# Which tests see other bits under another XLA:CPU setting (.ci/numerics_bits.py, docs/testing.md).
if os.environ.get("WDJAX_TEST_DIGESTS"):
    from bitdigest import pytest_runtest_protocol  # noqa: E402, F401
