"""Persistent compilation caches: a repeat sweep of the same shape starts training at once.

Two layers, both under one root directory (on by default for the CLI and :func:`wdjax.sweep`):

* ``<root>/programs``: wdjax's own cache of a sweep's three compiled programs (init, batch order,
  epoch), serialized executables (``jax.experimental.serialize_executable``). A hit skips
  tracing and lowering too, which JAX's cache cannot: JAX looks its cache up by the lowered
  program, after ~1 CPU-second of tracing and lowering the sweep's epoch. It is used only for
  built-in engines (models from :data:`wdjax.MODELS`, strategies by name, masks by spec
  string), whose ``repr`` names everything that shapes the program; the key hashes that
  ``repr`` with the data shapes, chunk, devices, the source of every ``wdjax`` module, the
  jax/jaxlib versions, the x64 and matmul-precision settings, ``XLA_FLAGS`` and the host CPU's
  model and feature flags. Files are written atomically (temp file + rename), so processes that
  share the directory see a whole file or none; a file that fails to load is reported and
  compiled afresh. At most :data:`MAX_PROGRAM_FILES` files are kept (oldest use evicted). Only
  programs compiled in this process are saved: an XLA:CPU executable that JAX loaded from its own
  cache serializes without its kernels' code (a later process fails at the first call with
  "Function ... not found"), so a compile during which JAX reported a cache hit is not saved
  (:func:`jax_cache_hits` counts them).
* ``<root>/jax``: JAX's persistent cache (keyed by the lowered program, so it also serves custom
  models and optimizers), with ``jax_persistent_cache_min_compile_time_secs`` lowered to
  :data:`MIN_COMPILE_SECONDS` so that the small programs (init, batch order: 0.3–0.7 s here)
  are cached too, and a size limit (:data:`MAX_JAX_BYTES`), which also makes JAX take a file
  lock around every read and write (the ``filelock`` package) so that concurrent processes
  never read a half-written entry. A JAX cache directory the user set already
  (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is.

The root: ``WDJAX_COMPILE_CACHE`` (a directory, or ``off``), else ``$XDG_CACHE_HOME/wdjax``, else
``~/.cache/wdjax``; the CLI's ``--compile-cache DIR|off`` and :func:`configure` set it for the
process. A cached executable is the same program as a fresh compile: results are bit-identical
(tests/test_compile_cache.py). The cache is trusted code: do not point it at a directory others
can write to.
"""

import glob
import hashlib
import importlib.metadata
import logging
import os
import pathlib
import pickle
import platform
import sys

import jax

from wdjax import files

__all__ = ["MAX_JAX_BYTES", "MAX_PROGRAM_FILES", "MIN_COMPILE_SECONDS", "configure", "ensure",
           "load_programs", "program_key", "root", "save_programs"]  # fmt: skip

log = logging.getLogger("wdjax")

ENV = "WDJAX_COMPILE_CACHE"
OFF = ("off", "0", "false", "no", "none")
MIN_COMPILE_SECONDS = 0.1
MAX_JAX_BYTES = 2 << 30
MAX_PROGRAM_FILES = 64
FORMAT = 2  # bump when the file layout changes, or to disown every file written before
_STATE: dict = {}  # "root": the configured root (None: off); absent until decided


def default_root(environ=None) -> str | None:
    """The root from the environment: ``WDJAX_COMPILE_CACHE`` (``off`` → None), else the user's
    cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``) + ``/wdjax``."""
    env = os.environ if environ is None else environ
    value = env.get(ENV)
    if value is not None:
        return None if value.strip().lower() in OFF or not value.strip() else value
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "wdjax")


def configure(path: str | None) -> str | None:
    """Set this process's cache root (``None`` or ``"off"``: no caching); call it before the
    first sweep. Returns the root in use. A JAX cache directory set earlier by anyone else, and
    a JAX cache already in use, are left as they are (JAX reads its setting once)."""
    if path is not None and str(path).strip().lower() in OFF:
        path = None
    if path is not None:
        path = os.path.abspath(os.path.expanduser(str(path)))
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise ValueError(
                f"--compile-cache / {ENV}: cannot create the cache directory {path!r} ({e}); "
                "give a writable directory, or 'off'"
            ) from None
        if jax.config.jax_compilation_cache_dir is None:
            jax.config.update("jax_compilation_cache_dir", os.path.join(path, "jax"))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
            jax.config.update("jax_compilation_cache_max_size", MAX_JAX_BYTES)
    _STATE["root"] = path
    return path


def ensure() -> str | None:
    """The root in use, configured from the environment on the first call (what a sweep calls)."""
    if "root" not in _STATE:
        configure(default_root())
    return _STATE["root"]


def root() -> str | None:
    """The configured root (None when off or not yet configured)."""
    return _STATE.get("root")


# --- wdjax's program cache -----------------------------------------------------------------------


def _count_hit(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _STATE["hits"] = _STATE.get("hits", 0) + 1


def jax_cache_hits() -> int:
    """How many compiles JAX served from its persistent cache in this process so far."""
    if "listening" not in _STATE:
        _STATE["listening"] = True
        jax.monitoring.register_event_listener(_count_hit)
    return _STATE.get("hits", 0)


def _source_digest() -> str:
    if "source" not in _STATE:
        h = hashlib.sha256()
        package = os.path.dirname(os.path.dirname(__file__))  # wdjax/, every layer of it
        for path in sorted(glob.glob(os.path.join(package, "**", "*.py"), recursive=True)):
            h.update(os.path.relpath(path, package).encode() + b"\0")
            h.update(pathlib.Path(path).read_bytes())
        _STATE["source"] = h.hexdigest()
    return _STATE["source"]


def _host_cpu() -> str:
    """The CPU model and feature flags (an executable compiled for one CPU may not run on
    another: XLA:CPU compiles for the host's instruction set)."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def builtin(engine) -> bool:
    """Whether ``engine``'s ``repr`` determines its program: a wdjax model, a named strategy, a
    mask given by spec string (no user code whose ``repr`` could hide a change)."""
    from wdjax.engine import models
    from wdjax.factories import Strategy

    module = getattr(engine.model, "module", None)
    return (
        type(module).__module__ == models.__name__
        and isinstance(engine.optimizer, Strategy)
        and (engine.optimizer.mask is None or isinstance(engine.optimizer.mask, str))
    )


def program_key(engine, shapes, chunk: int, devices, axes) -> str | None:
    """The file name of a sweep's programs, or None where the program cache does not apply
    (off, a custom model or optimizer, several processes)."""
    if ensure() is None or jax.process_count() > 1 or not builtin(engine):
        return None
    parts = [
        FORMAT, repr(engine), shapes, chunk, devices, axes, _source_digest(),
        jax.__version__, importlib.metadata.version("jaxlib"), sys.version,
        jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision,
        os.environ.get("XLA_FLAGS", ""), _host_cpu(),
    ]  # fmt: skip
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:40]


def _path(key: str) -> str:
    return os.path.join(_STATE["root"], "programs", f"{key}.pkl")


def save_programs(key: str, compiled: tuple) -> None:
    """Write the compiled (init, order, epoch) under ``key`` (atomically; failures only warn)."""
    from jax.experimental import serialize_executable

    try:
        blob = pickle.dumps([serialize_executable.serialize(c) for c in compiled])
        files.atomic_write_bytes(_path(key), blob)
        _evict(os.path.dirname(_path(key)))
    except Exception as e:  # noqa: BLE001 - a cache that cannot write must not stop a sweep
        log.warning("compile cache: could not save the compiled programs (%s); continuing", e)


def load_programs(key: str, devices) -> tuple | None:
    """The (init, order, epoch) saved under ``key`` on ``devices``, or None (miss, or a file
    that does not load: reported, removed and compiled afresh by the caller)."""
    from jax.experimental import serialize_executable

    path = _path(key)
    try:
        blob = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("compile cache: cannot read %s (%s); compiling", path, e)
        return None
    devices = list(devices)
    try:
        parts = pickle.loads(blob)
        out = tuple(
            serialize_executable.deserialize_and_load(p, i, o, execution_devices=devices)
            for p, i, o in parts
        )
    except Exception as e:  # noqa: BLE001 - any failure to load means: compile afresh
        log.warning("compile cache: %s did not load (%s: %s); compiling afresh", path,
                    type(e).__name__, e)  # fmt: skip
        _unlink(path)
        return None
    os.utime(path)  # its last use, for eviction
    return out


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _evict(directory: str) -> None:
    """Keep the :data:`MAX_PROGRAM_FILES` most recently used files."""
    files = []
    for p in glob.glob(os.path.join(directory, "*.pkl")):
        try:
            files.append((os.path.getmtime(p), p))
        except OSError:  # removed by another process meanwhile
            pass
    for _, p in sorted(files)[:-MAX_PROGRAM_FILES]:
        _unlink(p)
