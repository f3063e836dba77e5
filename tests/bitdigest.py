"""Which tests see other bits: a digest of every value a test compares (``WDJAX_TEST_DIGESTS``).

With ``WDJAX_TEST_DIGESTS=FILE``, ``conftest.py`` loads this module, which wraps the places a test
looks at numbers: host copies of a ``jax.Array`` that go through Python (``float()``, ``int()``,
``bool()``, ``.item()``, ``.tolist()``, printing), numpy's and ``jax.numpy``'s comparisons
(``np.testing.assert_*``, ``np.allclose``, ``np.array_equal``, ...), ``pytest.approx`` and the
comparison helpers of ``helpers.py``. Each argument's leaves are hashed (dtype, shape and bytes),
and each test appends one JSON line to FILE: its node id, how many values it compared, a digest
of their sorted hashes (sorted: independent of the order of the comparisons), and whether it
compared floats against a tolerance (``assert_allclose`` with a tolerance, ``approx``, ...).
``.ci/numerics_bits.py`` runs the suite once per XLA:CPU setting and lists the tests whose digests
differ: those are the tests the ``numerics`` marker keeps (docs/testing.md).
"""

import functools
import hashlib
import json
import os
import sys
import time

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import numpy.testing as npt
import pytest
from jax._src import array as jax_array

_seen: list[str] = []
_tolerance: list[bool] = []  # a test compared floats against a tolerance (not for equality)
# The comparisons that take a tolerance, and the keywords whose zero makes them exact.
_WITH_TOLERANCE = {"assert_allclose": ("rtol", "atol"), "assert_trees_all_close": ("rtol", "atol"),
                   "assert_array_almost_equal": (), "assert_almost_equal": (), "allclose": (),
                   "isclose": (), "assert_trees_close_to_scale": (), "rel_error": (),
                   "approx": ()}  # fmt: skip


def _hash(x) -> bool:
    """Hash a numeric value; True if it holds floats."""
    try:
        a = np.ascontiguousarray(np.asarray(x))
    except Exception:  # noqa: BLE001 -- not a number (a string, a message): nothing to hash
        return False
    if a.dtype.kind in "biufc":
        _seen.append(hashlib.blake2b(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest())
    return a.dtype.kind in "fc"


def _record(*values) -> bool:
    floats = False
    for v in values:
        if isinstance(v, (str, bytes, type(None))):
            continue
        for leaf in jax.tree.leaves(v):
            floats |= _hash(leaf)
    return floats


def _wrap(fn, n_args=2):
    exact_if_zero = _WITH_TOLERANCE.get(fn.__name__)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        floats = _record(*args[:n_args])
        if floats and exact_if_zero is not None:
            tols = [kwargs[k] for k in exact_if_zero if k in kwargs]
            if not (exact_if_zero and len(tols) == len(exact_if_zero) and not any(tols)):
                _tolerance.append(True)
        return fn(*args, **kwargs)

    return wrapped


def _install() -> None:
    host_value = jax_array.ArrayImpl._value.fget

    def hashed_host_value(self):
        value = host_value(self)
        _hash(value)
        return value

    jax_array.ArrayImpl._value = property(hashed_host_value)
    for module, names in [
        (npt, ["assert_allclose", "assert_array_equal", "assert_array_almost_equal",
               "assert_almost_equal", "assert_equal", "assert_array_less"]),
        (np, ["allclose", "isclose", "array_equal"]),
        (jnp, ["allclose", "isclose", "array_equal"]),
        (helpers, ["assert_trees_all_close", "assert_trees_close_to_scale", "rel_error",
                   "tree_zero_pattern"]),
    ]:  # fmt: skip
        for name in names:
            setattr(module, name, _wrap(getattr(module, name)))
    approx_module = sys.modules[pytest.approx.__module__]  # _pytest.approx (pytest 9)
    for cls in list(vars(approx_module).values()):
        if isinstance(cls, type) and cls.__module__ == approx_module.__name__:
            if "__eq__" in vars(cls):  # (self, actual); approx() below hashes the expected
                cls.__eq__ = _wrap(cls.__eq__)
    pytest.approx = _wrap(pytest.approx, n_args=1)


_install()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _seen.clear()
    _tolerance.clear()
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        digest = hashlib.blake2b("".join(sorted(_seen)).encode()).hexdigest()[:32]
        seconds = round(time.perf_counter() - start, 2)
        line = {"test": item.nodeid, "values": len(_seen), "digest": digest,
                "tolerance": bool(_tolerance), "seconds": seconds}  # fmt: skip
        with open(os.environ["WDJAX_TEST_DIGESTS"], "a") as f:
            f.write(json.dumps(line) + "\n")
