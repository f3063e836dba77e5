"""Test-wide JAX settings: fake CPU devices for sharding tests, strict rank promotion."""

import os
import tempfile

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

# Which tests see other bits under another XLA:CPU setting (.ci/numerics_bits.py, docs/testing.md).
if os.environ.get("WDJAX_TEST_DIGESTS"):
    from bitdigest import pytest_runtest_protocol  # noqa: E402, F401
