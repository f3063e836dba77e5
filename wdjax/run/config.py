"""Sweep configuration: each setting's type, default, help, flag and check in one place.

A sweep's *members* are the Cartesian product strengths × learning rates × seeds (× folds), in that
order, so member ``m`` has ``strength = strengths[m // (L·S·F)]`` and so on. Everything that varies
across members is data (traced arrays in the compiled step); everything else is static and decides
the compiled program.

Every field is declared with :func:`setting`: its default, help text, command-line flag, a parser
from the flag's text and, where no library function already guards it, a check. The CLI
(:mod:`wdjax.cli`) is generated from these declarations, and :func:`wdjax.run.build.build` runs
the checks and then builds the objects themselves (model, optimizer, schedule, mask), so a new field
is one declaration plus its use. Errors name the field (``strengths: ...``); the CLI alone turns
it into the flag (:func:`flag_message`). :class:`SweepConfig` is what a run's
results depend on (``config.json``, compared on resume); :class:`RunOptions` is how one run is
executed (output folder, checkpoints, devices, logging) and may change between resumes.
"""

import dataclasses
import itertools
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from wdjax.errors import ConfigError
from wdjax.masks import DEFAULT_MASK


def setting(default, help: str, *, flag: str | None = None, parse: Callable | None = None,
            check: Callable | None = None):  # fmt: skip
    """A config field: ``default``; ``help``; ``flag`` (default ``--field-name``); ``parse``
    (text -> value, raising ValueError; default from the default's type); ``check`` (value ->
    None, or a message saying what the value must be)."""
    meta = {"help": help, "flag": flag, "parse": parse, "check": check}
    return dataclasses.field(default=default, metadata=meta)


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


# --- parsers (text -> value) and checks (value -> message or None) -------------------------------


def parse_grid(text: str, argument: str = "strengths") -> tuple[float, ...]:
    """Parse ``"1e-3,1e-2"`` (a list) or ``"1e-6:1e-1:32"`` (32 log-spaced values, ends included).

    ``"0,1e-4:1e-1:8"`` mixes both (comma-separated items, each a value or a log range). A range
    must ascend (``LOW:HIGH:COUNT`` with LOW <= HIGH): a descending one is refused, not reversed.
    Errors are :class:`ConfigError` naming ``argument`` (the field the grid is for).
    """
    values = []
    for item in filter(None, (i.strip() for i in str(text).split(","))):
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
                f"{argument}: cannot parse {item!r}; give numbers separated by commas or a log "
                "range LOW:HIGH:COUNT such as 1e-6:1e-1:32",
                argument,
            ) from None
        if not (lo > 0 and hi > 0 and n >= 1):
            raise ConfigError(
                f"{argument}: log range {item!r} needs LOW > 0, HIGH > 0 and COUNT ≥ 1 "
                "(use a plain 0 item, e.g. '0,1e-6:1e-1:32', to include λ = 0)",
                argument,
            )
        if lo > hi:
            raise ConfigError(
                f"{argument}: the range {item} descends; write it ascending, "
                f"{parts[1]}:{parts[0]}:{parts[2]}",
                argument,
            )
        values.extend(np.geomspace(lo, hi, n).tolist() if n > 1 else [lo])
    if not values:
        raise ConfigError(f"{argument}: the grid is empty; give at least one value", argument)
    return tuple(values)


def _axes(text: str) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """``"b1=0.8,0.9;b2=0.99,0.999"`` -> ``(("b1", (0.8, 0.9)), ("b2", (0.99, 0.999)))``."""
    axes = []
    for item in filter(None, (i.strip() for i in text.split(";"))):
        name, sep, values = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"{item!r} is not NAME=VALUES (e.g. b1=0.8,0.9,0.95)")
        axes.append((name.strip(), parse_grid(values, "axes")))
    return tuple(axes)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def _optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _count_or_fraction(text: str) -> int | float:
    v = float(text)
    if v >= 1 and v != int(v):
        raise ValueError(f"{text!r} is neither a fraction in [0, 1) nor a whole count")
    return int(v) if v >= 1 else v


def _at_least(low: int, optional: bool = False) -> Callable:
    def check(v):
        if optional and v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
            return f"must be an integer ≥ {low}"
        return None

    return check


def _finite_grid(positive: bool) -> Callable:
    def check(values):
        if len(values) == 0:
            return "is empty: give at least one value"
        for v in values:
            if not isinstance(v, int | float | np.floating | np.integer) or not math.isfinite(v):
                return f"has {v!r}: every value must be a finite number"
            if v < 0 or (positive and v == 0):
                return f"has {v!r}: every value must be {'> 0' if positive else '≥ 0'}"
        for a, b in zip(values, values[1:], strict=False):
            if b < a:  # a descending grid is refused, not sorted: say the order to write
                return f"has {a!r} before {b!r}: give the grid in ascending order, " + repr(
                    tuple(sorted(values))
                )
        return None

    return check


def _one_of(*choices: str) -> Callable:
    return lambda v: None if v in choices else f"choose one of {choices}"


def _known_dataset(name) -> str | None:
    from wdjax.data.sources import DATASETS

    if name in DATASETS or str(name).startswith("emnist/"):
        return None
    return f"is unknown; choose one of {DATASETS} (or emnist/<config>)"


def _every(text) -> str | None:
    if not re.fullmatch(r"\d+(\.\d+)?[sm]|\d+", str(text)) or float(str(text).rstrip("sm")) <= 0:
        return "give a count of epochs (e.g. 5) or a time (e.g. 60s, 10m) greater than 0"
    return None


# --- the two configs ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep's results depend on. Defaults: the tutorial's MLP on ``digits``."""

    dataset: str = setting(
        "digits",
        "digits (embedded, offline), fashion_mnist / mnist / kmnist (idx files, e.g. apt-get "
        "install dataset-fashion-mnist) or a TFDS name",
        check=_known_dataset,
    )
    data_dir: str | None = setting(
        None, "TFDS data_dir (default $TFDS_DATA_DIR, else ~/tensorflow_datasets)", parse=str
    )
    raw_dir: str | None = setting(
        None,
        "mnist, fashion_mnist, kmnist: a folder holding the 4 original idx files (.gz or not); "
        "default $WDJAX_RAW_DIR",
        parse=str,
    )
    model: Any = setting(
        "mlp", "mlp, cnn or resnet (from Python also a Linen module or an NNX module factory)"
    )
    hidden: tuple[int, ...] = setting((64, 64), "MLP hidden widths, e.g. 64,64", parse=_ints)
    dropout: float = setting(0.0, "dropout rate in [0, 1)")
    batchnorm: bool = setting(False, "BatchNorm after each hidden layer")
    optimizer: Any = setting(
        "adam",
        "sgd, momentum or adam, with --reg (from Python also an optimizer factory "
        "(learning_rate, strength, **traced) -> optax.GradientTransformation)",
    )
    reg: str = setting(
        "wd", "none, l1, l2, wd, wd_paper, l1_prox, elastic_net_prox or group_lasso_prox"
    )
    strengths: tuple[float, ...] = setting(
        (1e-4,),
        "λ grid: 0,1e-4,1e-3 or a log range 1e-6:1e-1:32",
        flag="--strength",
        parse=lambda t: parse_grid(t, "strengths"),
        check=_finite_grid(positive=False),
    )
    lrs: tuple[float, ...] = setting(
        (1e-3,),
        "learning-rate grid (same syntax)",
        flag="--lr",
        parse=lambda t: parse_grid(t, "lrs"),
        check=_finite_grid(positive=True),
    )
    axes: tuple = setting(
        (),
        "further grid axes: traced keyword arguments of the optimizer, e.g. b1=0.8,0.9,0.95 "
        "(several: separate with ';'); values as for --strength",
        flag="--set",
        parse=_axes,
    )
    mask: str = setting(
        DEFAULT_MASK,
        "what the regularizer acts on: kernels (every weight matrix), hidden (every kernel but "
        "the output layer's, as the tutorial's Keras code), or a regular expression over "
        "parameter paths such as 'dense_[01]/kernel' (wdjax.penalties)",
    )
    schedule: str = setting("constant", "learning-rate schedule: constant, cosine, step or sgdr")
    warmup_epochs: float = setting(0.0, "schedule: linear warm-up length (epochs)")
    warmup_init: float = setting(0.0, "schedule: warm-up start, as a fraction of the peak lr")
    alpha: float = setting(0.0, "cosine, sgdr: final learning rate as a fraction of the peak")
    decay_epochs: tuple[float, ...] = setting(
        (), "step: epochs at which the lr is multiplied by --decay-factor, e.g. 30,60",
        parse=lambda t: tuple(float(v) for v in t.split(",") if v.strip()),
    )  # fmt: skip
    decay_factor: float = setting(0.1, "step: the factor at each --decay-epochs boundary")
    restart_epochs: float | None = setting(
        None, "sgdr: length of the first cosine period (epochs)", parse=float
    )
    restart_mult: int = setting(1, "sgdr: each period is this many times longer than the last")
    eval_every: int = setting(
        1,
        "evaluate validation and test every N epochs and at the last (other epochs record NaN; "
        "evaluation is a large share of an epoch on big validation and test sets)",
        check=_at_least(1),
    )
    seeds: int = setting(1, "number of seeds (first_seed .. first_seed+N-1)", check=_at_least(1))
    first_seed: int = setting(0, "the first seed (replicates of a study use disjoint seeds)")
    folds: int = setting(1, "k-fold cross-validation (members per point)", check=_at_least(1))
    l1_ratio: float = setting(0.5, "elastic net: l1 = λ·ρ, l2 = λ·(1−ρ)")
    groups: str = setting(
        "incoming",
        "group_lasso_prox: incoming (a group per unit's incoming weights, a kernel column) or "
        "outgoing (per input pixel or unit's outgoing weights, a kernel row)",
        check=_one_of("incoming", "outgoing"),
    )
    momentum: float = setting(0.9, "momentum coefficient μ (optimizer momentum)")
    epochs: int = setting(10, "epochs", check=_at_least(1))
    batch_size: int = setting(128, "batch size", check=_at_least(1))
    train_size: int | None = setting(
        None, "subset of the training pool (default: all)", parse=_optional_int
    )
    val_size: float = setting(
        0.1,
        "validation: a fraction in [0, 1) of the training pool or a whole count; 0: no "
        "validation set (the best setting is then chosen by training loss)",
        parse=_count_or_fraction,
    )
    label_noise: float = setting(0.0, "fraction of training labels flipped")
    data_seed: int = setting(0, "batch order, splits, noise")
    standardize: bool = setting(False, "standardize pixels by the training split's statistics")
    chunk_size: int | None = setting(
        None, "members per compiled call (memory)", parse=_optional_int, check=_at_least(1, True)
    )
    dtype: str = setting(
        "float32",
        "float32, or float64 (turns on jax_enable_x64 for the process: exact comparisons)",
        check=_one_of("float32", "float64"),
    )

    @property
    def num_members(self) -> int:
        n = len(self.strengths) * len(self.lrs) * self.seeds * self.folds
        return n * math.prod(len(v) for _, v in self.axes)

    def members(self) -> list[dict]:
        """One dict per member: ``member, strength, lr``, each ``--set`` axis, ``seed, fold``
        (grid order: strengths outermost, then lrs, the axes, seeds, folds)."""
        names = [name for name, _ in self.axes]
        seeds = range(self.first_seed, self.first_seed + self.seeds)
        grid = itertools.product(self.strengths, self.lrs, *(v for _, v in self.axes),
                                 seeds, range(self.folds))  # fmt: skip
        return [
            dict(
                member=m,
                strength=float(p[0]),
                lr=float(p[1]),
                **{n: float(v) for n, v in zip(names, p[2:-2], strict=True)},
                seed=p[-2],
                fold=p[-1],
            )  # fmt: skip
            for m, p in enumerate(grid)
        ]

    def optimizer_hyper(self) -> dict:
        """Keyword arguments passed through to :func:`wdjax.make_optimizer`."""
        hyper = {}
        if self.optimizer == "momentum":
            hyper["momentum"] = self.momentum
        if self.reg == "elastic_net_prox":
            hyper["l1_ratio"] = self.l1_ratio
        if self.reg == "group_lasso_prox" and self.groups != "incoming":
            hyper["groups"] = self.groups
        return hyper

    def schedule_params(self) -> dict:
        """Keyword arguments of :func:`wdjax.schedules.make` for this schedule (set ones)."""
        from wdjax import schedules

        names = schedules.PARAMS.get(self.schedule, ())
        given = {n: getattr(self, n) for n in names}
        return {k: v for k, v in given.items() if v is not None and v != ()}

    def to_json(self) -> dict:
        """A JSON-ready dict; a model or optimizer given as a Python object is recorded by
        name (:func:`wdjax.engine.adapters.describe`, the factory's qualified name)."""
        from wdjax.engine import adapters

        d = dataclasses.asdict(self)
        if not isinstance(self.model, str):
            d["model"] = adapters.describe(self.model)
        if not isinstance(self.optimizer, str):
            d["optimizer"] = f"factory:{adapters.qualified_name(self.optimizer)}"
        d["axes"] = [[name, list(values)] for name, values in self.axes]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "SweepConfig":
        """From ``to_json``'s dict (lists back to tuples, by the fields' declared types)."""
        tuples = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, tuple)}
        d = {k: tuple(v) if k in tuples and v is not None else v for k, v in d.items()}
        d["axes"] = tuple((name, tuple(values)) for name, values in d.get("axes", ()))
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How one run executes: where it writes, checkpoints, devices, logging (not results)."""

    out: str | None = setting(None, "run directory (default results/<timestamp>)", parse=str)
    resume: bool = setting(False, "continue the run in --out from its checkpoint")
    checkpoint_every: str = setting(
        "60s",
        "save a checkpoint every N epochs (e.g. 5) or every T seconds/minutes (60s, 10m); one "
        "is also saved when the run is interrupted",
        parse=str,
        check=_every,
    )
    cpu_devices: int | None = setting(
        None,
        "on CPU, run members as this many concurrent programs (default: 2 per core, at most 8; "
        "1: one program); ignored on accelerators and in multi-process runs",
        parse=_optional_int,
        check=_at_least(1, True),
    )
    compile_cache: str | None = setting(
        None,
        "directory of the persistent compile caches, or 'off' (default: $WDJAX_COMPILE_CACHE, "
        "else $XDG_CACHE_HOME/wdjax or ~/.cache/wdjax): a repeat run of the same shape skips "
        "compiling",
        parse=str,
    )
    coordinator: str | None = setting(None, "HOST:PORT of process 0 (multi-process)", parse=str)
    num_processes: int | None = setting(None, "process count", parse=_optional_int)
    process_id: int | None = setting(None, "this process's index", parse=_optional_int)
    quiet: bool = setting(False, "no progress bar; warnings and errors only")
    verbose: bool = setting(False, "debug messages (compile, cache, checkpoints)")


def check_fields(obj) -> None:
    """Run each field's own ``check``; raise ConfigError naming the first bad field."""
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        value = getattr(obj, f.name)
        message = check(value) if check else None
        if message:
            raise ConfigError(f"{f.name}: {f.name} is {value!r}: {message}", f.name)


def flag_message(err: ConfigError) -> str:
    """``err``'s message for the command line: its leading argument name (a field of
    :class:`SweepConfig` or :class:`RunOptions`) replaced by that setting's flag."""
    text, name = str(err), getattr(err, "argument", None)
    flags = {f.name: flag_of(f) for c in (SweepConfig, RunOptions) for f in dataclasses.fields(c)}
    if name in flags and text.startswith(f"{name}:"):
        return flags[name] + text[len(name) :]
    return text
