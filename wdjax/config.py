"""Sweep configuration: one frozen dataclass, grid parsing, and validation before any work.

A sweep's *members* are the Cartesian product strengths × learning rates × seeds (× folds), in that
order, so member ``m`` has ``strength = strengths[m // (L·S·F)]`` and so on. Everything that varies
across members is data (traced arrays in the compiled step); everything else is static and decides
the compiled program.
"""

import dataclasses
import itertools
import math
from collections.abc import Sequence

import numpy as np


class ConfigError(ValueError):
    """A sweep setting is invalid; the message names the setting (and its CLI flag) and the fix."""


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything that defines a sweep. Defaults reproduce the tutorial's MLP on ``digits``."""

    dataset: str = "digits"
    data_dir: str | None = None
    raw_dir: str | None = None  # mnist / fashion_mnist / kmnist idx files (see wdjax.idx)
    model: str = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    dropout: float = 0.0
    batchnorm: bool = False
    optimizer: str = "adam"
    reg: str = "wd"
    strengths: tuple[float, ...] = (1e-4,)
    lrs: tuple[float, ...] = (1e-3,)
    seeds: int = 1
    folds: int = 1
    l1_ratio: float = 0.5
    momentum: float = 0.9
    epochs: int = 10
    batch_size: int = 128
    train_size: int | None = None
    val_size: float = 0.1
    label_noise: float = 0.0
    data_seed: int = 0
    standardize: bool = False
    chunk_size: int | None = None
    dtype: str = "float32"

    @property
    def num_members(self) -> int:
        return len(self.strengths) * len(self.lrs) * self.seeds * self.folds

    def members(self) -> list[dict]:
        """One dict per member: ``member, strength, lr, seed, fold`` (grid order)."""
        grid = itertools.product(self.strengths, self.lrs, range(self.seeds), range(self.folds))
        return [
            dict(member=m, strength=float(s), lr=float(lr), seed=seed, fold=f)
            for m, (s, lr, seed, f) in enumerate(grid)
        ]

    def optimizer_hyper(self) -> dict:
        """Keyword arguments passed through to :func:`wdjax.make_optimizer`."""
        hyper = {}
        if self.optimizer == "momentum":
            hyper["momentum"] = self.momentum
        if self.reg == "elastic_net_prox":
            hyper["l1_ratio"] = self.l1_ratio
        return hyper

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "SweepConfig":
        d = dict(d)
        for k in ("hidden", "strengths", "lrs"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)


def parse_grid(text: str, flag: str) -> tuple[float, ...]:
    """Parse ``"1e-3,1e-2"`` (a list) or ``"1e-6:1e-1:32"`` (32 log-spaced values, ends included).

    ``"0,1e-4:1e-1:8"`` mixes both (comma-separated items, each a value or a log range).
    """
    values = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        try:
            if len(parts) == 1:
                values.append(float(parts[0]))
                continue
            if len(parts) != 3:
                raise ValueError
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise ConfigError(
                f"{flag}: cannot parse {item!r}; give numbers separated by commas or a log range "
                "LOW:HIGH:COUNT such as 1e-6:1e-1:32"
            ) from None
        if not (lo > 0 and hi > 0 and n >= 1):
            raise ConfigError(
                f"{flag}: log range {item!r} needs LOW > 0, HIGH > 0 and COUNT ≥ 1 "
                "(use a plain 0 item, e.g. '0,1e-6:1e-1:32', to include λ = 0)"
            )
        values.extend(np.geomspace(lo, hi, n).tolist() if n > 1 else [lo])
    if not values:
        raise ConfigError(f"{flag}: the grid is empty; give at least one value")
    return tuple(values)


def _check_values(values: Sequence[float], name: str, flag: str, positive: bool) -> None:
    if len(values) == 0:
        raise ConfigError(f"{name} ({flag}) is empty: give at least one value")
    for v in values:
        if not isinstance(v, int | float | np.floating | np.integer) or not math.isfinite(v):
            raise ConfigError(f"{name} ({flag}) has {v!r}: every value must be a finite number")
        if v < 0 or (positive and v == 0):
            need = "> 0" if positive else "≥ 0"
            raise ConfigError(f"{name} ({flag}) has {v!r}: every value must be {need}")


def validate(cfg: SweepConfig) -> None:
    """Raise :class:`ConfigError` naming the first bad setting; no data loaded, nothing compiled."""
    from wdjax import data, models, optim  # local: keep config importable on its own

    if cfg.model not in models.MODELS:
        raise ConfigError(
            f"model (--model) {cfg.model!r} is unknown; choose one of {models.MODELS}"
        )
    if cfg.optimizer not in optim.OPTIMIZERS:
        raise ConfigError(
            f"optimizer (--optimizer) {cfg.optimizer!r} is unknown; "
            f"choose one of {optim.OPTIMIZERS}"
        )
    if cfg.reg not in optim.STRATEGIES:
        raise ConfigError(f"reg (--reg) {cfg.reg!r} is unknown; choose one of {optim.STRATEGIES}")
    name = cfg.dataset
    if name not in data.DATASETS and not name.startswith("emnist/"):
        raise ConfigError(f"dataset (--dataset) {name!r} is unknown; choose one of {data.DATASETS}")
    _check_values(cfg.strengths, "strengths", "--strength", positive=False)
    _check_values(cfg.lrs, "lrs", "--lr", positive=True)
    if cfg.reg == "none" and any(s != 0 for s in cfg.strengths):
        raise ConfigError(
            "strengths (--strength) must be 0 with reg (--reg) 'none': members would be labelled "
            "with a λ they do not use; pass --strength 0 or choose a regularizer"
        )
    ints = dict(
        seeds=("--seeds", 1),
        epochs=("--epochs", 1),
        batch_size=("--batch-size", 1),
        folds=("--folds", 1),
    )
    for field, (flag, low) in ints.items():
        v = getattr(cfg, field)
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < low:
            raise ConfigError(f"{field} ({flag}) is {v!r}: it must be an integer ≥ {low}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"dropout (--dropout) is {cfg.dropout!r}: it must be in [0, 1)")
    if not 0.0 <= cfg.label_noise <= 1.0:
        raise ConfigError(
            f"label_noise (--label-noise) is {cfg.label_noise!r}: it must be in [0, 1]"
        )
    if not 0.0 <= cfg.l1_ratio <= 1.0:
        raise ConfigError(f"l1_ratio (--l1-ratio) is {cfg.l1_ratio!r}: it must be in [0, 1]")
    if cfg.train_size is not None and cfg.train_size < 1:
        raise ConfigError(f"train_size (--train-size) is {cfg.train_size!r}: give a positive count")
    if cfg.chunk_size is not None and cfg.chunk_size < 1:
        raise ConfigError(f"chunk_size (--chunk-size) is {cfg.chunk_size!r}: give a positive count")
    if cfg.dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype is {cfg.dtype!r}: choose 'float32' or 'float64'")
    if cfg.dtype == "float64":
        import jax

        if not jax.config.jax_enable_x64:
            raise ConfigError(
                "dtype='float64' needs jax_enable_x64: run under jax.enable_x64(True)"
            )
    if any(h < 1 for h in cfg.hidden):
        raise ConfigError(f"hidden (--hidden) is {cfg.hidden!r}: every width must be ≥ 1")
