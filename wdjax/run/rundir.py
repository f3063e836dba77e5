"""A sweep's run directory: start or resume it, describe the run, write and reload results.

::

    config.json     the SweepConfig (a resumed run must match it)
    metrics.csv     long format: one row per member and epoch
    summary.json    per member: final metrics, best epochs; diverged members; the best setting
                    (lowest mean validation loss over seeds and folds) and its ties
    table.csv/.md   per (strength, lr): mean, std, n and 95 % t interval over seeds and folds
    meta.json       versions, backend, devices, dataset, compile/run/checkpoint seconds, steps/s
    params.npz      final parameters, leading member axis
    checkpoints/    the last checkpoint while the run is unfinished (wdjax.checkpoints)
    *.png           figures (wdjax.plots)

Files are written atomically (:func:`wdjax.files.atomic_write_bytes`).
"""

import dataclasses
import importlib.metadata
import json
import os
import platform
import sys

import jax
import numpy as np

from wdjax import data as D
from wdjax import files
from wdjax.analysis import tables
from wdjax.engine import programs
from wdjax.run.config import ConfigError, SweepConfig

__all__ = ["check_fingerprint", "fingerprint", "load", "meta", "prepare", "write", "write_config"]


def prepare(out: str, cfg: SweepConfig, resume: bool) -> bool:
    """Check ``out`` before any work; True if it already holds this finished run (resume).

    A new run needs a folder that holds no run; ``resume`` needs the same config. Temporary
    files left by a killed write (``.tmp-*``) are removed.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"out: {out!r} is a file; name a folder (new, or a run to resume)", "out")
    config_path = os.path.join(out, "config.json")
    if not resume:
        if os.path.exists(config_path):
            raise ConfigError(f"out: {out!r} already holds a run: pass resume=True (--resume) "
                              "to continue it, or choose a new folder", "out")  # fmt: skip
        return False
    if not os.path.exists(config_path):
        raise ConfigError(f"resume: {out!r} holds no run (no config.json); drop resume "
                          "(--resume) to start one", "resume")  # fmt: skip

    def normal(c: SweepConfig) -> dict:  # settings a config.json lacks (older runs) = defaults
        return json.loads(json.dumps(c.to_json()))

    saved, now = normal(SweepConfig.from_json(files.read_json(config_path))), normal(cfg)
    diff = [f.name for f in dataclasses.fields(cfg) if saved.get(f.name) != now.get(f.name)]
    if diff:
        raise ConfigError(f"resume: the run in {out!r} was made with different settings "
                          f"({', '.join(diff)}); use the same settings or a new out",
                          "resume")  # fmt: skip
    for name in os.listdir(out):
        if name.startswith(".tmp-"):
            os.unlink(os.path.join(out, name))
    finished = os.path.exists(os.path.join(out, "summary.json"))
    return finished and not os.path.isdir(os.path.join(out, "checkpoints"))


def write_config(out: str, cfg: SweepConfig, hooks: dict | None = None) -> None:
    """``config.json``: the config, and under ``"hooks"`` the Python-object arguments of
    :func:`wdjax.sweep` by name (:func:`wdjax.run.hooks.describe`), when any was given."""
    files.write_json(
        os.path.join(out, "config.json"), {**cfg.to_json(), **({"hooks": hooks} if hooks else {})}
    )


def fingerprint(cfg: SweepConfig, params_like) -> dict:
    """What a resumed run must train again: the model and optimizer by name (config.json holds
    only names for Python objects) and every parameter's path and shape."""
    flat = jax.tree_util.tree_flatten_with_path(params_like)[0]
    shapes = {jax.tree_util.keystr(p, simple=True, separator="/"): list(x.shape) for p, x in flat}
    d = cfg.to_json()
    return {"model": d["model"], "optimizer": d["optimizer"], "params": shapes}


def check_fingerprint(out: str, fp: dict, resume: bool) -> None:
    """Write ``fingerprint.json`` for a new run; on resume, refuse another model or optimizer
    (``model=`` / ``optimizer=`` must be given again: a Python object is not in config.json)."""
    path = os.path.join(out, "fingerprint.json")
    if not resume or not os.path.exists(path):
        files.write_json(path, fp)
        return
    saved = files.read_json(path)
    diff = [k for k in ("model", "optimizer") if saved[k] != fp[k]]
    if saved["params"] != fp["params"]:
        gone = sorted(set(saved["params"]) - set(fp["params"]))
        other = sorted(
            k for k in fp["params"] if saved["params"].get(k, fp["params"][k]) != fp["params"][k]
        )
        new = sorted(set(fp["params"]) - set(saved["params"]))
        diff.append(f"parameters: missing {gone or 'none'}, other shapes {other or 'none'}, "
                    f"new {new or 'none'}")  # fmt: skip
    if diff:
        raise ConfigError(f"resume: the run in {out!r} was made with another model or "
                          f"optimizer ({'; '.join(diff)}); pass the same model= and optimizer= "
                          "again, or start a new out", "resume")  # fmt: skip


def meta(cfg: SweepConfig, mesh, progs: programs.Programs, run_s: float, steps: int, ds) -> dict:
    """What ran where: versions, devices, chunking, seconds, the epoch program's memory, data."""
    import flax
    import optax

    return {
        "versions": {
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib"), "flax": flax.__version__,
            "optax": optax.__version__, "numpy": np.__version__,
        },
        "backend": jax.default_backend(),
        "devices": [str(d) for d in mesh.devices.flat],
        "process_count": jax.process_count(),
        "members": cfg.num_members,
        "chunk_size": progs.chunk,
        "chunks": -(-cfg.num_members // progs.chunk),
        "compile_seconds": progs.seconds,
        "run_seconds": run_s,
        "member_steps_per_second": steps / run_s if run_s > 0 else None,
        "epoch_program_bytes": programs.program_bytes(progs.epoch),  # per device
        "epoch_memory": programs.memory_breakdown(progs.epoch),
        "dataset": D.describe(ds),  # name, sizes, source path, files' sha256, cache entry
        "platform": platform.platform(),
        "argv": sys.argv,
    }  # fmt: skip


def write(out: str, members, history, summary, meta_: dict, params, records=None) -> None:
    """The finished run's files (process 0); ``records`` (``sweep(record=...)``) in
    ``records.npz``."""
    from wdjax.analysis import plots

    files.write_csv(os.path.join(out, "metrics.csv"), files.metric_rows(members, history))
    files.write_json(os.path.join(out, "summary.json"), summary)
    tables.write_table(out, tables.table_rows(members, history), summary)
    files.write_json(os.path.join(out, "meta.json"), meta_)
    if params is not None:
        files.save_params(os.path.join(out, "params.npz"), params)
    if records:
        files.save_params(os.path.join(out, "records.npz"), records)
    plots.sweep_figures(out)


def load(out: str) -> tuple:
    """A finished run directory: ``(config, members, history, summary, meta, params)``, the
    history rebuilt from metrics.csv."""
    cfg = SweepConfig.from_json(files.read_json(os.path.join(out, "config.json")))
    rows = files.read_csv(os.path.join(out, "metrics.csv"))
    members = cfg.members()
    epochs = max(r["epoch"] for r in rows)
    skip = {"member", "strength", "lr", "seed", "fold", "epoch"}
    names = [k for k in rows[0] if k not in skip]
    history = {n: np.zeros((len(members), epochs), bool if isinstance(rows[0][n], bool) else float)
               for n in names}  # fmt: skip
    for r in rows:
        for n in names:
            history[n][r["member"], r["epoch"] - 1] = r[n]
    params_path = os.path.join(out, "params.npz")
    params = files.load_params(params_path) if os.path.exists(params_path) else None
    summary = files.read_json(os.path.join(out, "summary.json"))
    meta_ = files.read_json(os.path.join(out, "meta.json"))
    return cfg, members, history, summary, meta_, params
