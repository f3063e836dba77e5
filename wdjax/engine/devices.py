"""Device choice for a sweep: CPU splitting, the member mesh, memory limits, host <-> device.

Members are sharded over a 1-D mesh named ``members``. On XLA:CPU one program leaves cores idle
(the member-batched matmuls and the optimizer's elementwise passes run on one thread), so a host
can be split into several JAX CPU devices that run members as concurrent programs
(:func:`use_cpu_devices`); :func:`for_members` then takes as many as split a chunk of members with
little padding. With several processes (``jax.distributed``) every process holds the full host
arrays and :func:`put` / :func:`to_host` move them to and from global arrays.
"""

import math
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from wdjax.errors import ConfigError

__all__ = [
    "default_cpu_devices",
    "for_members",
    "memory_limit",
    "mesh_shardings",
    "put",
    "to_host",
    "use_cpu_devices",
]


def default_cpu_devices() -> int:
    """The CPU device count :func:`use_cpu_devices` picks: two per usable core, at most 8."""
    return min(8, 2 * len(os.sched_getaffinity(0)))


def use_cpu_devices(n: int | None = None) -> int:
    """Split the host CPU into ``n`` JAX devices, so a sweep's members run as ``n`` concurrent
    programs (call before JAX initializes its backends, e.g. first thing in a script).

    Measured on 2 cores (docs/performance.md): 4 devices trained the tutorial MLP sweep 1.2-1.5x
    faster per member than one. The data are replicated on every device (host memory grows by
    one copy of the data per device). Results agree with one device to float rounding.

    Args:
      n: device count (default: :func:`default_cpu_devices`). An
        ``XLA_FLAGS=--xla_force_host_platform_device_count`` already set takes precedence.

    Returns:
      The number of CPU devices requested (or already set by ``XLA_FLAGS``).

    Raises:
      ConfigError: ``n`` < 1, or JAX's backends are already initialized.
    """
    if n is not None and n < 1:
        raise ConfigError(f"cpu_devices: cpu devices must be at least 1, got {n}", "cpu_devices")
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return int(flags.split("xla_force_host_platform_device_count=")[1].split()[0])
    n = default_cpu_devices() if n is None else n
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError as e:
        raise ConfigError(
            f"cpu_devices: cannot split the CPU into {n} devices: JAX's backends are already "
            f"initialized ({e}); call wdjax.use_cpu_devices() before any JAX computation",
            "cpu_devices",
        ) from None
    return n


def for_members(chunk: int) -> list:
    """All devices; on one process's CPU devices, the most that split ``chunk`` members with at
    most 25 % padding (so K = 1 runs on one device, not as K padded copies on K devices)."""
    devices = jax.devices()
    if jax.process_count() > 1 or devices[0].platform != "cpu":
        return devices
    fits = [d for d in range(1, len(devices) + 1) if math.ceil(chunk / d) * d <= 1.25 * chunk]
    return devices[: max(fits)]


def mesh_shardings(devices) -> tuple[NamedSharding, NamedSharding]:
    """(members sharded over ``devices``, replicated) on a 1-D mesh named ``members``."""
    mesh = Mesh(np.array(devices), ("members",))
    return NamedSharding(mesh, P("members")), NamedSharding(mesh, P())


def memory_limit(device) -> int:
    """Bytes one device may use: the accelerator's limit, or the host RAM shared by CPU devices."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return ram // max(1, len(jax.local_devices()))


def put(x, sharding):
    """A global array from a host array that every process holds in full."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def to_host(tree):
    """Host numpy copies of a pytree of (global) arrays; a collective with several processes."""
    if jax.process_count() > 1:
        tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)
