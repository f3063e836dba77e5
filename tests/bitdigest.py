"""Which tests see other bits: a digest of every value a test compares (``WDJAX_TEST_DIGESTS``).

With ``WDJAX_TEST_DIGESTS=FILE``, ``conftest.py`` loads this module, which wraps the places a test
looks at numbers: host copies of a ``jax.Array`` that go through Python (``float()``, ``int()``,
``bool()``, ``.item()``, ``.tolist()``, printing), numpy's and ``jax.numpy``'s comparisons
(``np.testing.assert_*``, ``np.allclose``, ``np.array_equal``, ...), ``pytest.approx`` and the
comparison helpers of ``helpers.py``. Each argument's leaves are hashed (dtype, shape and bytes),
and each test appends one JSON line to FILE: its node id, how many values it compared, and a
digest of their sorted hashes (sorted: independent of the order of the comparisons).
``.ci/numerics_bits.py`` runs the suite once per XLA:CPU setting and lists the tests whose digests
differ: those are the tests the ``numerics`` marker keeps (docs/testing.md).
"""

import functools
import hashlib
import json
import os
import sys

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import numpy.testing as npt
import pytest
from jax._src import array as jax_array

_seen: list[str] = []


def _hash(x) -> None:
    try:
        a = np.ascontiguousarray(np.asarray(x))
    except Exception:  # noqa: BLE001 -- not a number (a string, a message): nothing to hash
        return
    if a.dtype.kind in "biufc":
        _seen.append(hashlib.blake2b(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest())


def _record(*values) -> None:
    for v in values:
        if isinstance(v, (str, bytes, type(None))):
            continue
        for leaf in jax.tree.leaves(v):
            _hash(leaf)


def _wrap(fn, n_args=2):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        _record(*args[:n_args])
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
    try:
        return (yield)
    finally:
        digest = hashlib.blake2b("".join(sorted(_seen)).encode()).hexdigest()[:32]
        line = {"test": item.nodeid, "values": len(_seen), "digest": digest}
        with open(os.environ["WDJAX_TEST_DIGESTS"], "a") as f:
            f.write(json.dumps(line) + "\n")
