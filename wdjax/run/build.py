"""Checks of a whole config: the library's own checks run on the objects it would build."""

import dataclasses
import re
from collections.abc import Callable

from wdjax.errors import ConfigError
from wdjax.run.config import SweepConfig, check_fields, flag_of

# Argument names of the guarded library functions -> the config field they come from.
_MODEL_ARGS = {"model": "model", "hidden": "hidden", "dropout": "dropout", "batchnorm": "batchnorm"}
_OPTIM_ARGS = {"optimizer": "optimizer", "reg": "reg", "learning_rate": "lrs",
               "strength": "strengths", "momentum": "momentum", "l1_ratio": "l1_ratio",
               "groups": "groups", "keyword": "axes"}  # fmt: skip
_SCHEDULE_ARGS = {"schedule": "schedule", "warmup_epochs": "warmup_epochs",
                  "warmup_init": "warmup_init", "alpha": "alpha", "decay_epochs": "decay_epochs",
                  "decay_factor": "decay_factor", "restart_epochs": "restart_epochs",
                  "restart_mult": "restart_mult", "kind": "schedule"}  # fmt: skip
_DATA_ARGS = {"name": "dataset", "val_size": "val_size", "train_size": "train_size",
              "label_noise": "label_noise", "seed": "data_seed"}  # fmt: skip


def _guarded(call: Callable, args: dict[str, str]) -> None:
    """Run a library function's own checks; its error names an argument: say which flag."""
    try:
        call()
    except (ValueError, TypeError) as e:
        text = str(e)
        hits = [
            (m.start(), f) for a, f in args.items() for m in [re.search(rf"\b{a}\b", text)] if m
        ]
        field = min(hits)[1] if hits else next(iter(args.values()))
        flag = flag_of(next(f for f in dataclasses.fields(SweepConfig) if f.name == field))
        raise ConfigError(f"{flag}: {text}") from None


def _model(cfg: SweepConfig):
    from wdjax.engine import adapters, models

    if isinstance(cfg.model, str):
        return models.make_model(cfg.model, 10, hidden=cfg.hidden, dropout=cfg.dropout,
                                 batchnorm=cfg.batchnorm)  # fmt: skip
    return adapters.as_model(cfg.model)


def _optimizer(cfg: SweepConfig, member: dict):
    """The member's transform, built as the engine builds it (its checks run)."""
    import optax

    from wdjax import optim, schedules

    on_schedule = schedules.PARAMS.get(cfg.schedule, ())  # (checked with the schedule)
    extra = {k: member[k] for k, _ in cfg.axes if k not in on_schedule}
    lr, strength = member["lr"], member["strength"]
    if isinstance(cfg.optimizer, str):
        kw = {**cfg.optimizer_hyper(), **extra}
        return optim.make_optimizer(cfg.optimizer, lr, cfg.reg, strength, mask=cfg.mask, **kw)
    tx = cfg.optimizer(lr, strength, **extra)
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"optimizer: the factory returned {type(tx).__name__}, not an "
                        "optax.GradientTransformation")  # fmt: skip
    return tx


def _schedule(cfg: SweepConfig):
    """The schedule's own checks, with epochs sized at a nominal 1,000 steps (the engine builds
    it with the run's real step count; only a restart period that rounds to 0 steps there can
    still fail, while tracing)."""
    from wdjax import schedules

    return schedules.make(cfg.schedule, 1000, cfg.epochs, **cfg.schedule_params())


def _mask(cfg: SweepConfig):
    from wdjax import masks

    return masks.mask_from_spec(cfg.mask)


def validate(cfg: SweepConfig) -> None:
    """Raise :class:`ConfigError` naming the first bad setting; no data loaded, nothing compiled."""
    from wdjax import data

    check_fields(cfg)
    if cfg.dtype == "float64":
        import jax

        if not jax.config.jax_enable_x64:
            raise ConfigError(
                "--dtype: float64 needs jax_enable_x64: run under jax.enable_x64(True) "
                "(the CLI turns it on)"
            )
    _guarded(lambda: _model(cfg), _MODEL_ARGS)
    _guarded(lambda: _mask(cfg), {"mask": "mask"})
    _guarded(lambda: _schedule(cfg), _SCHEDULE_ARGS)
    for m in cfg.members()[:: cfg.seeds * cfg.folds]:  # one member per setting
        _guarded(lambda m=m: _optimizer(cfg, m), _OPTIM_ARGS)
    _guarded(
        lambda: data.check_args(
            cfg.dataset, cfg.val_size, cfg.train_size, cfg.label_noise, cfg.data_seed
        ),  # fmt: skip
        _DATA_ARGS,
    )
