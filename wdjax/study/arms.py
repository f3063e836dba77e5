"""The replicate × arm loop with common random numbers, saved as it goes and resumable by arm.

An *arm* is one sweep config (e.g. one regularizer with its λ grid). Replicate ``r`` of every arm
runs :func:`wdjax.study.replicates.replicate_configs`'s ``r``-th config: initial weights from seeds
``first_seed + r·seeds …``, and ``data_seed + r`` for the validation split, training subset,
batch order and label noise. Every arm of a replicate shares those draws (common random numbers),
so differences between arms are paired by replicate.

Each (arm, replicate) is saved the moment it finishes, under ``<out>/arms/<arm>/``::

    r<k>.npz    its history: one ``[members, epochs]`` array per metric
    r<k>.json   its config (SweepConfig.to_json), members and ``seconds`` (the sweep's wall
                time); written last: the "done" mark

A later run with the same ``out`` loads what is there and trains the rest, so an interrupted
study resumes by arm. A saved result whose config differs from the one asked for (data_dir and
raw_dir aside: where the data is read from does not change it) is refused with the differing
fields named (``stale="refuse"``), or trained again and overwritten (``stale="recompute"``, said on
stderr). The check covers the config, not the code: after changing the library, start a new
``out``.
"""

import io
import json
import os
import re
import sys
import time
from typing import NamedTuple

import numpy as np

from wdjax import files
from wdjax.errors import ConfigError
from wdjax.run.config import SweepConfig
from wdjax.study.replicates import replicate_configs

__all__ = ["STALE", "ArmResult", "config_diff", "load", "run", "save"]

STALE = ("refuse", "recompute")
IGNORED = ("data_dir", "raw_dir")  # where the data comes from, not what it is
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


class ArmResult(NamedTuple):
    """What a study keeps of one sweep: enough for :mod:`wdjax.study.replicates`' tables."""

    config: SweepConfig
    members: list  # dicts: member, strength, lr, seed, fold, ...
    history: dict  # metric -> float array [members, epochs]
    seconds: float = float("nan")  # wall time of the sweep that made it (saved with it)


def _normal(cfg: SweepConfig) -> dict:
    d = json.loads(json.dumps(cfg.to_json()))
    return {k: v for k, v in d.items() if k not in IGNORED}


def config_diff(saved: dict, cfg: SweepConfig) -> list[str]:
    """The fields where a saved ``config`` (JSON) and ``cfg`` differ, data location aside."""
    now = _normal(cfg)
    saved = _normal(SweepConfig.from_json(saved))
    return sorted(k for k in now.keys() | saved.keys() if now.get(k) != saved.get(k))


def _paths(out: str, arm: str, r: int) -> tuple[str, str]:
    base = os.path.join(out, "arms", arm, f"r{r}")
    return base + ".json", base + ".npz"


def save(out: str, arm: str, r: int, res, seconds: float = float("nan")) -> ArmResult:
    """Write replicate ``r`` of ``arm`` (a :class:`wdjax.SweepResult` or :class:`ArmResult`)
    that took ``seconds`` to make."""
    meta_path, npz_path = _paths(out, arm, r)
    os.makedirs(os.path.dirname(meta_path), exist_ok=True)
    history = {k: np.asarray(v) for k, v in res.history.items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, **history)
    files.atomic_write_bytes(npz_path, buf.getvalue())
    meta = {"config": res.config.to_json(), "members": list(res.members), "seconds": seconds}
    files.write_json(meta_path, meta)
    return ArmResult(res.config, files.read_json(meta_path)["members"], history, seconds)


def load(out: str, arm: str, r: int, cfg: SweepConfig, stale: str = "refuse") -> ArmResult | None:
    """Replicate ``r`` of ``arm`` as saved, None when absent (or stale and ``stale="recompute"``);
    a saved result of another config with ``stale="refuse"`` raises ConfigError."""
    meta_path, npz_path = _paths(out, arm, r)
    if not os.path.exists(meta_path):
        return None
    meta = files.read_json(meta_path)
    diff = config_diff(meta["config"], cfg)
    if diff:
        what = f"{meta_path} was made by another config ({', '.join(diff)} differ)"
        if stale == "refuse":
            raise ConfigError(f"--stale: {what}; pass --stale recompute to train it again, or "
                              "choose a new --out")  # fmt: skip
        print(f"recomputing arm {arm!r} replicate {r}: {what}", file=sys.stderr, flush=True)
        return None
    with np.load(npz_path) as z:
        history = {k: z[k] for k in z.files}
    return ArmResult(cfg, meta["members"], history, meta.get("seconds", float("nan")))


def _check(arms: dict, n: int, stale: str) -> None:
    if stale not in STALE:
        raise ConfigError(f"--stale: give one of {', '.join(STALE)}, got {stale!r}")
    if n < 1:
        raise ConfigError(f"--replicates: give at least 1, got {n}")
    for arm, cfg in arms.items():
        if not _NAME.match(str(arm)):
            raise ConfigError(f"arm {arm!r}: name it with letters, digits and _.=+- (a folder)")
        if not isinstance(cfg, SweepConfig):
            raise ConfigError(f"arm {arm!r}: give a SweepConfig, got {type(cfg).__name__}")


def run(out: str | None, arms: dict, n: int, *, stale: str = "refuse", on_done=None,
        **sweep_kw) -> dict:  # fmt: skip
    """``{arm: [ArmResult per replicate]}``: every arm × replicate, loaded when saved under
    ``out`` (None: nothing saved), else swept and saved. Every argument is checked before any
    training. Replicates run outermost, so an interruption leaves whole replicates of every arm.

    Args:
      out: the study's output folder.
      arms: ``{name: SweepConfig}`` (names become folder names).
      n: replicates.
      stale: what to do with a saved result of another config: ``"refuse"`` or ``"recompute"``.
      on_done: called as ``on_done(arm, r, result, loaded)`` after each (e.g. a progress line).
      **sweep_kw: passed to :func:`wdjax.sweep` (``data``, ``progress``, ``devices``); a
        callable ``data`` is called with each replicate's config and gives that replicate's
        :class:`wdjax.Dataset` (e.g. validation labels kept clean under label noise), built
        only for the replicates trained.
    """
    from wdjax.run.runner import sweep

    _check(arms, n, stale)
    reps = {arm: replicate_configs(cfg, n) for arm, cfg in arms.items()}
    done = {arm: [None] * n for arm in arms}
    for r in range(n):
        for arm in arms:
            cfg = reps[arm][r]
            res = load(out, arm, r, cfg, stale) if out else None
            loaded = res is not None
            if not loaded:
                t0 = time.perf_counter()
                data = sweep_kw.get("data")
                kw = dict(sweep_kw, data=data(cfg)) if callable(data) else sweep_kw
                res = sweep(cfg, **kw)
                dt = time.perf_counter() - t0
                res = (save(out, arm, r, res, dt) if out
                       else ArmResult(cfg, res.members, res.history, dt))  # fmt: skip
            done[arm][r] = res
            if on_done is not None:
                on_done(arm, r, res, loaded)
    return done
