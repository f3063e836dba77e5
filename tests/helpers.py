"""Small local test helpers (optax's own test_utils style: no chex dependency).

Comparing two floating-point programs
-------------------------------------
Bit equality is asserted only where the *same* program runs on the same inputs (repeat runs,
resume, sharded copies of one program) or where the maths is exact (integer counts, masks, zero
patterns). Two *different* programs (another batching, member count, device count, layer
formulation, fusion, chunking) round differently, and XLA:CPU picks different kernels and
summation orders on different CPUs, so their agreement is bounded by error analysis, not tuned:

* every correctly rounded operation has relative error ``≤ u`` (unit roundoff: ``U32``/``U64``);
* a sum or dot product of ``n`` terms, in any order, is off by ``≤ γ_n·Σ|terms|`` with
  ``γ_n = n·u/(1 − n·u)`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
  §3.1), so two such programs differ by ``≤ 2·γ_n·Σ|terms|``.

The bound is on the *scale* of the computation, not on each element: an element that nearly
cancels keeps the absolute error of the terms it was summed from. Tolerances here are therefore
relative to a leaf's scale (:func:`assert_trees_close_to_scale`: ``max|a − e| ≤ tol·max|e|``) or
norm-wise (:func:`rel_error`), never an elementwise ``rtol``. Training trajectories compared
across programs run in float64 (``jax.enable_x64``), where the same analysis leaves many orders of
magnitude between rounding and the smallest effect a bug would have; each test states its ``n``.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

U32 = 2.0**-24  # float32 unit roundoff (half of np.finfo(np.float32).eps), 5.96e-8
U64 = 2.0**-53  # float64 unit roundoff, 1.11e-16


def gamma(n: int, u: float = U32) -> float:
    """Higham's ``γ_n = n·u/(1 − n·u)``: relative error bound of an ``n``-term sum, any order."""
    assert n * u < 1, (n, u)
    return n * u / (1 - n * u)


def adam_drift(steps: int, lr: float, n: int, eps: float = 1e-8, u: float = U64) -> float:
    """How far two programs' Adam trajectories may drift apart, relative to a scale of ~1.

    Per step the two programs' gradients differ by ``|Δg| ≤ 2·γ_n`` (sums of ``n`` terms of
    magnitude ≤ ~1); Adam's direction ``m̂/(√v̂ + eps)`` moves by ≤ ``|Δg|/eps`` (its derivative in
    ``g`` is ≤ ``1/eps``), times ``lr``, summed over ``steps``. SGD and momentum move less.
    """
    return steps * lr * 2 * gamma(n, u) / eps


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


def assert_trees_close_to_scale(actual, expected, tol, err_msg="", scale=None):
    """Per leaf: ``max|a − e| ≤ tol · s``, ``s`` the leaf's scale, standing in for ``Σ|terms|``.

    ``s`` is ``max|e|`` of the leaf, or ``max|·|`` of the matching leaf of ``scale`` (a pytree like
    ``expected``, e.g. the inputs, where the result itself may cancel to far below its terms).
    ``tol`` comes from the error analysis in this module's docstring (e.g. ``2·gamma(n)`` times
    the conditioning of what follows the sums); the call site says where it comes from.
    """
    a_leaves, a_def = jax.tree.flatten(actual)
    e_leaves, e_def = jax.tree.flatten(expected)
    assert a_def == e_def, f"tree structures differ:\n{a_def}\n{e_def}"
    s_leaves = e_leaves if scale is None else jax.tree.leaves(scale)
    assert len(s_leaves) == len(e_leaves), "scale must have a leaf for each leaf of expected"
    for i, (a, e, s) in enumerate(zip(a_leaves, e_leaves, s_leaves, strict=True)):
        a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
        assert a.shape == e.shape, f"leaf {i}: shape {a.shape} != {e.shape}"
        err = np.max(np.abs(a - e), initial=0.0)
        s = np.max(np.abs(np.asarray(s, np.float64)), initial=0.0)
        assert err <= tol * s, (
            f"{err_msg} leaf {i} {e.shape}: max|a - e| = {err:.3g} > {tol:.3g} x scale {s:.3g}"
            f" (relative {err / s if s else np.inf:.3g})"
        )


def rel_error(actual, expected) -> float:
    """Norm-wise relative error ``‖a − e‖₂ / ‖e‖₂`` over all leaves of two pytrees, in float64."""
    a = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(actual)])
    e = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(expected)])
    assert a.shape == e.shape, (a.shape, e.shape)
    return float(np.linalg.norm(a - e) / np.linalg.norm(e))


def child_xla_flags(devices=None) -> str:
    """``XLA_FLAGS`` for a child process: the parent's flags (a numerics switch from .ci/run, a GPU
    user's) with the fake CPU device count set to ``devices``, or removed when None."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    flags = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count=")]
    if devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    return " ".join(flags)


def child_env() -> dict:
    """The environment of a ``python -m wdjax`` child process: this one's, with the XLA flags of
    :func:`child_xla_flags` (no fake devices) and offline."""
    return dict(os.environ, XLA_FLAGS=child_xla_flags(devices=None), WDJAX_OFFLINE="1")


def tree_zero_pattern(tree):
    """Boolean pytree: where the leaves are exactly zero."""
    return jax.tree.map(lambda x: np.asarray(jnp.asarray(x) == 0), tree)


def load_script(path: str):
    """Import a file outside the package (``experiments/<name>.py``, ``scripts/<name>.py``) by
    its path from the repository root, as a fresh module each call."""
    import importlib.util
    import pathlib

    file = pathlib.Path(__file__).resolve().parents[1] / path
    spec = importlib.util.spec_from_file_location(f"{file.parent.name}_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NnxNet(nnx.Module):
    """A small NNX model (Linear 3→4, BatchNorm, Linear 4→2 named head) for mask/penalty tests."""

    def __init__(self, rngs: nnx.Rngs):
        self.dense_0 = nnx.Linear(3, 4, rngs=rngs)
        self.bn_0 = nnx.BatchNorm(4, rngs=rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)


# The run the Ctrl-C and kill tests interrupt and resume (conftest's session fixture
# ``uninterrupted_run`` trains it through once, for all of them).
INTERRUPTIBLE = ["sweep", "--strength", "1e-4,1e-2", "--epochs", "60", "--batch-size", "32",
                 "--lr", "1e-2", "--cpu-devices", "1"]  # fmt: skip
