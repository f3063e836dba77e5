"""Host side: run directories, atomic writes, checkpoints for resume, metric tables.

A run directory holds::

    config.json     the SweepConfig (a resumed run must match it)
    metrics.csv     long format: one row per member and epoch
    summary.json    per member: final metrics, best epoch; diverged members; best member
    meta.json       versions, backend, devices, compile/run seconds, steps/s
    checkpoint.npz  member states + metrics so far (removed when the run completes)
    *.png           figures (wdjax.plots)

Every file is written to a temporary name in the same directory and moved into place with
``os.replace``, so a kill leaves either the old or the new file, never half of one.
"""

import csv
import io
import json
import os
import tempfile

import jax
import numpy as np

CSV_FIRST = (
    "member",
    "strength",
    "lr",
    "seed",
    "fold",
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "weight_l2",
    "weight_l1",
    "sparsity",
    "dead_units",
    "diverged",
)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + os.replace)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def write_csv(path, rows: list[dict]) -> None:
    """Write rows as CSV with the standard columns first (then the rest, sorted)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cols = [c for c in CSV_FIRST if c in keys] + sorted(k for k in keys if k not in CSV_FIRST)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_bytes(path, buf.getvalue().encode())


def read_csv(path) -> list[dict]:
    """Read a metrics.csv back, converting numeric fields."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        conv = {}
        for k, v in r.items():
            if v in ("True", "False"):
                conv[k] = v == "True"
            else:
                try:
                    conv[k] = int(v)
                except ValueError:
                    try:
                        conv[k] = float(v)
                    except ValueError:
                        conv[k] = v
        out.append(conv)
    return out


# --- checkpoints ----------------------------------------------------------------------------------


def save_checkpoint(path, *, chunk, epoch, states, history, done, done_params) -> None:
    """Save the current chunk's states (host arrays) and everything recorded so far.

    ``history`` holds the current chunk's ``[K_chunk, epoch]`` arrays; ``done`` the finished chunks'
    ``[K_done, E]`` arrays and ``done_params`` their final parameters (concatenated along members,
    ``None`` before the first chunk finishes).
    """
    arrays = {f"state/{i:04d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(states))}
    if done_params is not None:
        leaves = jax.tree.leaves(done_params)
        arrays.update({f"done_params/{i:04d}": np.asarray(x) for i, x in enumerate(leaves)})
    arrays.update({f"history/{k}": np.asarray(v) for k, v in history.items()})
    arrays.update({f"done/{k}": np.asarray(v) for k, v in (done or {}).items()})
    arrays["chunk"] = np.asarray(chunk)
    arrays["epoch"] = np.asarray(epoch)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path, states_like):
    """Inverse of :func:`save_checkpoint`; ``states_like`` gives the tree structure.

    Returns ``(chunk, epoch, states, history, done, done_params)``.
    """
    tree = jax.tree.structure(states_like)
    params_tree = jax.tree.structure(states_like.params)
    with np.load(path) as z:
        states = jax.tree.unflatten(tree, [z[f"state/{i:04d}"] for i in range(tree.num_leaves)])
        done_params = None
        if "done_params/0000" in z.files:
            leaves = [z[f"done_params/{i:04d}"] for i in range(params_tree.num_leaves)]
            done_params = jax.tree.unflatten(params_tree, leaves)
        history = {k[len("history/") :]: z[k] for k in z.files if k.startswith("history/")}
        done = {k[len("done/") :]: z[k] for k in z.files if k.startswith("done/")} or None
        chunk, epoch = int(z["chunk"]), int(z["epoch"])
    return chunk, epoch, states, history, done, done_params


def save_params(path, params) -> None:
    """Save a parameter pytree (nested dicts of arrays) as ``.npz`` with ``/``-joined keys."""
    flat = {}
    for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        flat["/".join(str(getattr(k, "key", k)) for k in p)] = np.asarray(leaf)
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
