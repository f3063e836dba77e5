"""Small local test helpers (optax's own test_utils style: no chex dependency)."""

import jax
import jax.numpy as jnp
import numpy as np


def assert_trees_all_close(actual, expected, rtol=1e-6, atol=0.0):
    """Assert two pytrees have the same structure and leafwise-close values."""
    a_leaves, a_def = jax.tree.flatten(actual)
    e_leaves, e_def = jax.tree.flatten(expected)
    assert a_def == e_def, f"tree structures differ:\n{a_def}\n{e_def}"
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves, strict=True)):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, f"leaf {i}: shape {a.shape} != {e.shape}"
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"leaf {i}")


def assert_trees_all_equal(actual, expected):
    """Assert two pytrees are bitwise equal (same structure, shapes, values)."""
    assert_trees_all_close(actual, expected, rtol=0.0, atol=0.0)


def tree_zero_pattern(tree):
    """Boolean pytree: where the leaves are exactly zero."""
    return jax.tree.map(lambda x: np.asarray(jnp.asarray(x) == 0), tree)
