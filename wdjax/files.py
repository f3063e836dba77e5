"""Files of a run directory and of the studies: atomic writes, JSON, CSV, parameters.

Every file is written to a temporary name in the same directory and moved into place with
``os.replace``, so a kill leaves either the old or the new file, never half of one; files get
the mode a plain ``open`` would give them (0o666 & ~umask: 0644 under the usual umask 022).
A leaf utility: it imports nothing from wdjax, so the data, engine and run layers all use it.
"""

import csv
import io
import json
import os
import tempfile

import jax
import numpy as np

# fmt: off
CSV_FIRST = (
    "member", "strength", "lr", "seed", "fold", "epoch",
    "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
    "weight_l2", "weight_l1", "sparsity", "dead_units", "diverged",
)
# fmt: on


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + os.replace).

    The file gets mode 0o666 & ~umask, as ``open(path, "wb")`` would (mkstemp's is 0o600); on
    any error the temporary file is removed and an existing ``path`` is left as it was.
    """
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask, read without setting it where Linux allows (no race with threads)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1], 8) for x in f if x.startswith("Umask:"))
    except (OSError, StopIteration):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def read_json(path):
    with open(path) as f:
        return json.load(f)


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serializable: {type(x)}")


def metric_rows(members: list[dict], history: dict[str, np.ndarray]) -> list[dict]:
    """Long-format rows from per-member info and ``history[name] -> [K, E]`` arrays."""
    num_epochs = next(iter(history.values())).shape[1] if history else 0
    rows = []
    for m, info in enumerate(members):
        for e in range(num_epochs):
            row = dict(info, epoch=e + 1)
            for name, arr in history.items():
                v = arr[m, e]
                row[name] = bool(v) if arr.dtype == bool else v.item()
            rows.append(row)
    return rows


def write_csv(path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Write rows as CSV: ``columns`` in order, else the standard columns first, then the rest
    sorted. Floats are written with ``repr`` (read back exactly, NaN as ``nan``)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cols = columns or [c for c in CSV_FIRST if c in keys] + sorted(
        k for k in keys if k not in CSV_FIRST
    )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_bytes(path, buf.getvalue().encode())


def read_csv(path) -> list[dict]:
    """Read a CSV written by :func:`write_csv` back, converting bools, ints and floats."""
    with open(path) as f:
        return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _parse(v: str):
    if v in ("True", "False"):
        return v == "True"
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


# --- tables ---------------------------------------------------------------------------------------


def save_params(path, params) -> None:
    """Save a parameter pytree (nested dicts of arrays) as ``.npz`` with ``/``-joined keys."""
    flat = {}
    for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        flat[jax.tree_util.keystr(p, simple=True, separator="/")] = np.asarray(leaf)
    buf = io.BytesIO()
    np.savez(buf, **flat)
    atomic_write_bytes(path, buf.getvalue())


def load_params(path) -> dict:
    """Inverse of :func:`save_params`: nested dicts of numpy arrays."""
    out: dict = {}
    with np.load(path) as z:
        for key in z.files:
            node = out
            *parents, leaf = key.split("/")
            for k in parents:
                node = node.setdefault(k, {})
            node[leaf] = z[key]
    return out
