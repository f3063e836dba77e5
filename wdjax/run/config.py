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
it into the flag (:func:`wdjax.run.cli.error_line`). :class:`SweepConfig` is what a run's
results depend on (``config.json``, compared on resume); :class:`RunOptions` is how one run is
executed (output folder, checkpoints, devices, logging) and may change between resumes.
"""

import dataclasses
import itertools
import math
from collections.abc import Callable
from functools import partial
from typing import Any

from wdjax.errors import ConfigError
from wdjax.masks import DEFAULT_MASK
from wdjax.run.parsing import (
    _at_least,
    _axes,
    _count_or_fraction,
    _every,
    _finite_grid,
    _ints,
    _known_dataset,
    _one_of,
    _optional_int,
    parse_grid,
)


def setting(default, help: str, *, flag: str | None = None, parse: Callable | None = None,
            check: Callable | None = None, group: str = "run",
            metavar: str | None = None):  # fmt: skip
    """A config field: ``default``; ``help``; ``flag`` (default ``--field-name``); ``parse``
    (text -> value, raising ValueError; default: the default's type); ``check`` (value -> None
    or what it must be); ``group`` (its ``--help`` section); ``metavar`` (:func:`metavar_of`)."""
    meta = dict(help=help, flag=flag, parse=parse, check=check, group=group, metavar=metavar)
    return dataclasses.field(default=default, metadata=meta)


#: The sections of ``wdjax sweep --help``, in order; ``_data`` ... declare a section's settings.
GROUPS = ("data", "model", "optimizer and regularizer", "schedule", "grid", "run", "devices")
_data, _model, _optim, _schedule, _grid, _run, _devices = (
    partial(setting, group=g) for g in GROUPS
)


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def metavar_of(field: dataclasses.Field) -> str | None:
    """What a flag takes (``--help``): the declared ``metavar``, else from the field's type."""
    if field.metadata.get("metavar") or isinstance(field.default, bool):
        return field.metadata.get("metavar")
    names = {int: "N", float: "FLOAT", str: "NAME", Any: "NAME"}
    kinds = [t for t in getattr(field.type, "__args__", (field.type,)) if t in names]
    tail = ",..." if getattr(field.type, "__origin__", None) is tuple else ""
    return names[kinds[0]] + tail if len(kinds) == 1 else None


# --- the two configs ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep's results depend on. Defaults: the tutorial's MLP on ``digits``."""

    dataset: str = _data(
        "digits",
        "digits (embedded, offline), fashion_mnist / mnist / kmnist (idx files, e.g. apt-get "
        "install dataset-fashion-mnist) or a TFDS name",
        check=_known_dataset,
    )
    data_dir: str | None = _data(
        None, "TFDS data_dir (default $TFDS_DATA_DIR, else ~/tensorflow_datasets)", parse=str,
        metavar="DIR",
    )  # fmt: skip
    raw_dir: str | None = _data(
        None,
        "mnist, fashion_mnist, kmnist: a folder holding the 4 original idx files (.gz or not); "
        "default $WDJAX_RAW_DIR",
        parse=str,
        metavar="DIR",
    )
    model: Any = _model(
        "mlp", "mlp, cnn or resnet (from Python also a Linen module or an NNX module factory)"
    )
    hidden: tuple[int, ...] = _model((64, 64), "MLP hidden widths, e.g. 64,64", parse=_ints)
    dropout: float = _model(0.0, "dropout rate in [0, 1)")
    batchnorm: bool = _model(False, "BatchNorm after each hidden layer")
    optimizer: Any = _optim(
        "adam",
        "sgd, momentum or adam, with --reg (from Python also an optimizer factory "
        "(learning_rate, strength, **traced) -> optax.GradientTransformation)",
    )
    reg: str = _optim(
        "wd",
        "none, l1, l2, wd, wd_paper, l1_prox, elastic_net_prox, group_lasso_prox, cautious_wd "
        "(decay where update and weight agree in sign) or wd_corrected (AdamC: γ_t²/γ_max decay "
        "on hidden kernels under a schedule; the peak is --lr)",
    )
    strengths: tuple[float, ...] = _grid(
        (1e-4,),
        "λ grid: 0,1e-4,1e-3 or a log range 1e-6:1e-1:32",
        flag="--strength",
        parse=lambda t: parse_grid(t, "strengths"),
        check=_finite_grid(positive=False),
        metavar="GRID",
    )
    lrs: tuple[float, ...] = _grid(
        (1e-3,),
        "learning-rate grid (same syntax)",
        flag="--lr",
        parse=lambda t: parse_grid(t, "lrs"),
        check=_finite_grid(positive=True),
        metavar="GRID",
    )
    axes: tuple = _grid(
        (),
        "further grid axes: traced keyword arguments of the optimizer, e.g. b1=0.8,0.9,0.95 "
        "(several: separate with ';'); values as for --strength",
        flag="--set",
        parse=_axes,
        metavar="NAME=GRID",
    )
    mask: str = _optim(
        DEFAULT_MASK,
        "what the regularizer acts on: kernels (every weight matrix), hidden (every kernel but "
        "the output layer's, as the tutorial's Keras code), or a regular expression over "
        "parameter paths such as 'dense_[01]/kernel' (wdjax.penalties)",
        metavar="SPEC",
    )
    schedule: str = _schedule("constant", "learning-rate schedule: constant, cosine, step or sgdr")
    warmup_epochs: float = _schedule(0.0, "schedule: linear warm-up length (epochs)")
    warmup_init: float = _schedule(0.0, "schedule: warm-up start, as a fraction of the peak lr")
    alpha: float = _schedule(0.0, "cosine, sgdr: final learning rate as a fraction of the peak")
    decay_epochs: tuple[float, ...] = _schedule(
        (), "step: epochs at which the lr is multiplied by --decay-factor, e.g. 30,60",
        parse=lambda t: tuple(float(v) for v in t.split(",") if v.strip()),
    )  # fmt: skip
    decay_factor: float = _schedule(0.1, "step: the factor at each --decay-epochs boundary")
    restart_epochs: float | None = _schedule(
        None, "sgdr: length of the first cosine period (epochs)", parse=float
    )
    restart_mult: int = _schedule(1, "sgdr: each period is this many times longer than the last")
    eval_every: int = _run(
        1,
        "evaluate validation and test every N epochs and at the last (other epochs record NaN; "
        "evaluation is a large share of an epoch on big validation and test sets)",
        check=_at_least(1),
    )
    seeds: int = _grid(1, "number of seeds (first_seed .. first_seed+N-1)", check=_at_least(1))
    first_seed: int = _grid(0, "the first seed (replicates of a study use disjoint seeds)")
    folds: int = _grid(1, "k-fold cross-validation (members per point)", check=_at_least(1))
    l1_ratio: float = _optim(0.5, "elastic net: l1 = λ·ρ, l2 = λ·(1−ρ)")
    groups: str = _optim(
        "incoming",
        "group_lasso_prox: incoming (a group per unit's incoming weights, a kernel column) or "
        "outgoing (per input pixel or unit's outgoing weights, a kernel row)",
        check=_one_of("incoming", "outgoing"),
    )
    momentum: float = _optim(0.9, "momentum coefficient μ (optimizer momentum)")
    epochs: int = _optim(10, "epochs", check=_at_least(1))
    batch_size: int = _data(128, "batch size", check=_at_least(1))
    train_size: int | None = _data(
        None, "subset of the training pool (default: all)", parse=_optional_int
    )
    val_size: float = _data(
        0.1,
        "validation: a fraction in [0, 1) of the training pool or a whole count; 0: no "
        "validation set (the best setting is then chosen by training loss)",
        parse=_count_or_fraction,
        metavar="FRACTION|N",
    )
    label_noise: float = _data(0.0, "fraction of training labels flipped")
    data_seed: int = _data(0, "batch order, splits, noise")
    standardize: bool = _data(False, "standardize pixels by the training split's statistics")
    chunk_size: int | None = _devices(
        None, "members per compiled call (memory)", parse=_optional_int, check=_at_least(1, True)
    )
    dtype: str = _model(
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
        """From ``to_json``'s dict (lists back to tuples, by the fields' declared types); a
        ``"hooks"`` entry (sweep's Python-object arguments, by name) is not a setting."""
        d = {k: v for k, v in d.items() if k != "hooks"}
        tuples = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, tuple)}
        d = {k: tuple(v) if k in tuples and v is not None else v for k, v in d.items()}
        d["axes"] = tuple((name, tuple(values)) for name, values in d.get("axes", ()))
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How one run executes: where it writes, checkpoints, devices, logging (not results)."""

    out: str | None = _run(
        None, "run directory (default results/<timestamp>)", parse=str, metavar="DIR"
    )
    resume: bool = _run(False, "continue the run in --out from its checkpoint")
    checkpoint_every: str = _run(
        "60s",
        "save a checkpoint every N epochs (e.g. 5) or every T seconds/minutes (60s, 10m); one "
        "is also saved when the run is interrupted",
        parse=str,
        check=_every,
        metavar="EVERY",
    )
    cpu_devices: int | None = _devices(
        None,
        "on CPU, run members as this many concurrent programs (default: 2 per core, at most 8; "
        "1: one program); ignored on accelerators and in multi-process runs",
        parse=_optional_int,
        check=_at_least(1, True),
    )
    compile_cache: str | None = _run(
        None,
        "directory of the persistent compile caches, or 'off' (default: $WDJAX_COMPILE_CACHE, "
        "else $XDG_CACHE_HOME/wdjax or ~/.cache/wdjax): a repeat run of the same shape skips "
        "compiling",
        parse=str,
        metavar="DIR|off",
    )
    coordinator: str | None = _devices(
        None, "process 0's address (multi-process)", parse=str, metavar="HOST:PORT"
    )
    num_processes: int | None = _devices(None, "process count", parse=_optional_int)
    process_id: int | None = _devices(None, "this process's index", parse=_optional_int)
    quiet: bool = _run(False, "no progress bar; warnings and errors only")
    verbose: bool = _run(False, "debug messages (compile, cache, checkpoints)")


def check_fields(obj) -> None:
    """Run each field's own ``check``; raise ConfigError naming the first bad field."""
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        value = getattr(obj, f.name)
        message = check(value) if check else None
        if message:
            raise ConfigError(f"{f.name}: {f.name} is {value!r}: {message}", f.name)
