"""The one builder: a :class:`~wdjax.SweepConfig` -> its model, optimizer, schedule, mask, engine.

Every route from a setting to the compiled step goes through :func:`build`: ``sweep()`` calls
it through :func:`validate` before any data is loaded or any file is written (with the
dataset's nominal image shape and 10 classes), then again with the loaded data's shapes and
step count, and the engine it returns is the one compiled. So the checks are the library's own,
run on the objects the sweep trains with; no second construction path exists.

Errors are :class:`~wdjax.errors.ConfigError` whose message starts with the config field (the
argument a Python user typed: ``strengths: ...``, ``mask: ...``) and whose ``argument`` is that
name. A library function names its own argument (``learning_rate``); each call below knows which
field it passed as which argument, and renames the error accordingly (the command line alone
turns a field into its flag: :func:`wdjax.run.cli.error_line`).
"""

import contextlib
import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import optax

from wdjax.errors import ConfigError, ConfigTypeError, named
from wdjax.run.config import SweepConfig, check_fields

__all__ = ["Built", "build", "validate"]

NOMINAL_STEPS = 1000  # steps per epoch a schedule is checked with before the data are known
_TRACED = (  # a traced hyperparameter used as a Python value
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)
_TRACED_MESSAGE = (
    "the factory uses its learning_rate/strength as a Python value, but a sweep passes them "
    "traced (one program for every member); build schedules from it with jnp operations or use "
    "the sweep's schedule= setting"
)

# Arguments of the library calls below -> the config field each call passes as it.
_DATA = {"name": "dataset", "seed": "data_seed"}
_MODEL = {"name": "model"}
_SCHEDULE = {"kind": "schedule", "steps_per_epoch": "schedule"}
_OPTIMIZER = {"learning_rate": "lrs", "strength": "strengths"}


@dataclasses.dataclass(frozen=True)
class Built:
    """What a config builds: the engine and its parts (``mask``: the spec after ``"hidden"`` is
    resolved from the model's call order, the one the optimizer receives)."""

    model: Any  # a wdjax.engine.adapters.Linen / NNX
    optimizer: Any  # an optimizer factory (learning_rate, strength, **traced) -> transform
    schedule: Any  # a wdjax.Schedule
    mask: Any  # a spec string (or, from Python, a callable or pytree of bools)
    engine: Any  # a wdjax.Engine


@contextlib.contextmanager
def _naming(fields: dict, default: str):
    """Errors raised inside, renamed to the config field of the argument they name (the
    call's ``fields``, else the argument itself when it is a field, else ``default``)."""
    try:
        yield
    except _TRACED:  # (TypeErrors too) said by _check_traced
        raise
    except (ValueError, TypeError) as e:
        argument = getattr(e, "argument", None)
        names = {f.name for f in dataclasses.fields(SweepConfig)}
        field = fields.get(argument, argument if argument in names else default)
        text = str(e)
        if not text.startswith(f"{field}:"):
            text = f"{field}: {text}"
        raise (ConfigTypeError if isinstance(e, TypeError) else ConfigError)(text, field) from None


def _dtype(cfg: SweepConfig) -> None:
    if cfg.dtype == "float64" and not jax.config.jax_enable_x64:
        raise named("dtype", "float64 needs jax_enable_x64: run under jax.enable_x64(True) (the "
                    "CLI turns it on)")  # fmt: skip


def _model(cfg: SweepConfig, num_classes: int):
    from wdjax.engine import adapters, models

    with _naming(_MODEL, "model"):
        if isinstance(cfg.model, str):
            return adapters.as_model(models.make_model(
                cfg.model, num_classes, hidden=cfg.hidden, dropout=cfg.dropout,
                batchnorm=cfg.batchnorm))  # fmt: skip
        return adapters.as_model(cfg.model)


def _schedule(cfg: SweepConfig, steps_per_epoch: int):
    from wdjax import schedules
    from wdjax.engine.engine import Schedule

    with _naming(_SCHEDULE, "schedule"):  # the schedule's own checks
        schedules.make(cfg.schedule, steps_per_epoch, cfg.epochs, **cfg.schedule_params())
    if cfg.schedule == "constant":  # no step counts in the program: runs of any length
        return Schedule()  # share it (the compile cache is keyed on the engine)
    params = tuple(sorted(cfg.schedule_params().items()))
    return Schedule(cfg.schedule, steps_per_epoch, cfg.epochs, params)


def _mask(cfg: SweepConfig, model, x_example):
    """The mask spec, checked, with ``"hidden"`` resolved from the model's call order."""
    from wdjax import masks
    from wdjax.engine import adapters

    if not isinstance(cfg.mask, str):  # from Python: a callable or pytree, checked when traced
        return cfg.mask
    with _naming({}, "mask"):
        masks.mask_from_spec(cfg.mask)
        if x_example is None:
            return cfg.mask
        return adapters.resolve_mask_spec(cfg.mask, model, x_example)


def _factory(cfg: SweepConfig, mask: str):
    """The optimizer factory: a named strategy, or the config's factory (given the mask when
    it takes ``mask``; a non-default mask for one that does not is refused)."""
    from wdjax.engine import adapters
    from wdjax.factories import Strategy, WithMask, takes_mask
    from wdjax.masks import DEFAULT_MASK

    if isinstance(cfg.optimizer, str):
        return Strategy(cfg.optimizer, cfg.reg, tuple(sorted(cfg.optimizer_hyper().items())), mask)
    if not callable(cfg.optimizer):
        raise named("optimizer", f"{cfg.optimizer!r} is neither a name nor a factory (lr, "
                    "strength, **traced) -> optax.GradientTransformation")  # fmt: skip
    if takes_mask(cfg.optimizer):
        return WithMask(cfg.optimizer, mask)
    if cfg.mask != DEFAULT_MASK:
        name = adapters.qualified_name(cfg.optimizer)
        raise named("mask", f"{cfg.mask!r} would not reach the optimizer factory {name}, which "
                    "takes no mask keyword: give the factory a `mask` parameter (it then "
                    "receives the mask as a callable params -> bools) or leave mask at its "
                    f"default {DEFAULT_MASK!r}")  # fmt: skip
    return cfg.optimizer


def _extra(cfg: SweepConfig, member: dict) -> dict:
    """The member's ``--set`` values the optimizer takes (schedule ones go to the schedule)."""
    from wdjax import schedules

    on_schedule = schedules.PARAMS.get(cfg.schedule, ())
    return {k: member[k] for k, _ in cfg.axes if k not in on_schedule}


def _check_keywords(factory, extra: dict) -> None:
    """Every ``axes`` name is a keyword the optimizer takes."""
    from wdjax.factories import Strategy, WithMask
    from wdjax.optim import make_optimizer

    if isinstance(factory, Strategy):
        target, args = make_optimizer, (factory.optimizer, 1.0, factory.reg, 0.0)
        kw = {**dict(factory.hyper), **extra}
    elif isinstance(factory, WithMask):
        target, args, kw = factory.factory, (1.0, 0.0), {**extra, "mask": None}
    else:
        target, args, kw = factory, (1.0, 0.0), extra
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # no signature to check against: the call will say
        return
    try:
        signature.bind(*args, **kw)
    except TypeError as e:
        raise named("axes", f"the optimizer does not take {sorted(extra)}: {e}") from None


def _check_settings(cfg: SweepConfig, factory) -> None:
    """Build each setting's transform with concrete values (the library's value checks)."""
    fields = {**_OPTIMIZER, **{name: "axes" for name, _ in cfg.axes}}
    for m in cfg.members()[:: cfg.seeds * cfg.folds]:  # one member per setting
        extra = _extra(cfg, m)
        _check_keywords(factory, extra)
        with _naming(fields, "optimizer"):
            tx = factory(m["lr"], m["strength"], **extra)
        if not isinstance(tx, optax.GradientTransformation):
            raise named("optimizer", f"the factory returned {type(tx).__name__}, not an "
                        "optax.GradientTransformation", type_error=True)  # fmt: skip


def _abstract_hyper(cfg: SweepConfig):
    from wdjax.engine.engine import Hyper

    f, i = jnp.dtype(cfg.dtype), jnp.int32
    s = jax.ShapeDtypeStruct
    return Hyper(s((), f), s((), f), s((), i), s((), i), {n: s((), f) for n, _ in cfg.axes})


def _check_traced(cfg: SweepConfig, engine, x_example) -> None:
    """Trace the member's model init and transform (init, and one update for a factory not
    wdjax's own) with abstract hyperparameters, as the compiled program will: a mask that
    selects nothing, or a factory that needs concrete values, is caught here."""
    from wdjax.factories import Strategy

    h = _abstract_hyper(cfg)
    try:
        if x_example is None:  # no parameter tree before the data: the construction only
            with _naming(_OPTIMIZER, "optimizer"):
                jax.eval_shape(lambda h: (engine.tx(h), jnp.zeros(()))[1], h)
            return
        with _naming({}, "model"):
            params = jax.eval_shape(lambda x: engine.model.init(jax.random.key(0), x)[0],
                                    x_example)  # fmt: skip
        with _naming(_OPTIMIZER, "optimizer"):
            state = jax.eval_shape(lambda h, p: engine.tx(h).init(p), h, params)
            if not isinstance(engine.optimizer, Strategy):
                jax.eval_shape(lambda h, s, p: engine.tx(h).update(p, s, p), h, state, params)
    except _TRACED:
        raise named("optimizer", _TRACED_MESSAGE) from None


def build(cfg: SweepConfig, *, num_classes: int | None = None, x_example=None,
          steps_per_epoch: int | None = None) -> Built:  # fmt: skip
    """Build a config's model, optimizer factory, schedule, mask and :class:`~wdjax.Engine`,
    running every check of the library on them; nothing is loaded, compiled or written.

    Args:
      cfg: the config.
      num_classes: the model's outputs (default 10: parameter paths do not depend on it).
      x_example: an input batch (an array or ``jax.ShapeDtypeStruct``, e.g. ``[1, H, W, C]``):
        the model's parameter tree is traced on it (``jax.eval_shape``), to resolve
        ``mask="hidden"`` and check the mask and optimizer on the real tree. None: the
        dataset's image shape where it is known before loading (:data:`wdjax.data.sources.
        IMAGE_SHAPES`), else those checks wait for the data.
      steps_per_epoch: sizes a schedule given in epochs (default: a nominal 1,000).

    Raises:
      ConfigError: the first bad setting; the message starts with its field name, which is
        also the error's ``argument``.
    """
    from wdjax import data
    from wdjax.data.sources import image_shape
    from wdjax.engine.engine import Engine

    check_fields(cfg)
    _dtype(cfg)
    with _naming(_DATA, "dataset"):
        data.check_args(cfg.dataset, cfg.val_size, cfg.train_size, cfg.label_noise,
                        cfg.data_seed)  # fmt: skip
    if x_example is None and (shape := image_shape(cfg.dataset)) is not None:
        x_example = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    model = _model(cfg, 10 if num_classes is None else num_classes)
    schedule = _schedule(cfg, steps_per_epoch or NOMINAL_STEPS)
    mask = _mask(cfg, model, x_example)
    factory = _factory(cfg, mask)
    _check_settings(cfg, factory)
    engine = Engine(model, factory, cfg.batch_size, cfg.dtype, schedule, cfg.eval_every)
    _check_traced(cfg, engine, x_example)
    return Built(model, factory, schedule, mask, engine)


def validate(cfg: SweepConfig, x_example=None) -> Built:
    """:func:`build` before the data are loaded (nominal sizes): raise :class:`ConfigError`
    naming the first bad setting; nothing loaded, compiled or written."""
    return build(cfg, x_example=x_example)
