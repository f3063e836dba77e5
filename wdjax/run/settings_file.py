"""``--config FILE``: settings from a run's ``config.json`` or a JSON/TOML file of settings.

Keys are the settings' names (:class:`~wdjax.SweepConfig` and
:class:`~wdjax.run.config.RunOptions` fields); values are as ``SweepConfig.to_json`` writes them
(lists for tuples, ``[[name, [values]], ...]`` for ``axes``) or a flag's text in the flag's syntax
(``strengths = "1e-6:1e-1:32"``). A model or optimizer recorded as a Python object (by name,
e.g. ``factory:mod.fn``) cannot be rebuilt from a file: that is refused in one line.
"""

import dataclasses
import difflib
import json
import re
import tomllib
from typing import Any

from wdjax.run.config import ConfigError, RunOptions, SweepConfig, flag_of, parse_grid

__all__ = ["FIELDS", "check_replayable", "load", "parse_value"]

#: Every setting's field, by name.
FIELDS = {f.name: f for cls in (SweepConfig, RunOptions) for f in dataclasses.fields(cls)}


def parse_value(field: dataclasses.Field, value):
    """A flag's text (or a BooleanOptionalAction's bool) -> the field's value."""
    if isinstance(value, bool):
        return value
    parse = field.metadata.get("parse") or type(field.default)
    try:
        return parse(value)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{flag_of(field)}: cannot read {value!r} ({e})") from None


# How to_json records a Python object (a model, an optimizer factory): by name, not replayable.
_OBJECT = re.compile(r"(linen|nnx|factory|function|object):")
_WHAT = {bool: "true or false", int: "a whole number", float: "a number", str: "a name",
         Any: "a name"}  # fmt: skip


def _kind_ok(value, kind) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, {int: int, float: int | float}.get(kind, str))


def _axes_value(value, where: str) -> tuple:
    """config.json's ``[[name, [values]], ...]`` or a TOML table ``{name = [values]}`` (values
    may be a grid's text, as for ``--set``)."""
    pairs = list(value.items()) if isinstance(value, dict) else value
    if isinstance(pairs, list) and all(
        isinstance(p, list | tuple) and len(p) == 2 and isinstance(p[0], str)
        and (isinstance(p[1], str) or all(_kind_ok(v, float) for v in p[1]))
        for p in pairs
    ):  # fmt: skip
        return tuple(
            (n, parse_grid(v, "--set") if isinstance(v, str) else tuple(v)) for n, v in pairs
        )
    raise ConfigError(f"{where}: axes is {value!r}: give [[NAME, [values]], ...] or a table "
                      "NAME = [values]")  # fmt: skip


def _file_value(field: dataclasses.Field, value, where: str):
    """A value from a settings file -> the field's value (text in the flag's syntax is parsed)."""
    hint = field.type
    kinds = [t for t in getattr(hint, "__args__", (hint,)) if t is not type(None)]
    if value is None and (field.default is None or type(None) in getattr(hint, "__args__", ())):
        return None
    if field.name == "axes":
        return _axes_value(value, where)
    if isinstance(value, str) and kinds[0] not in (str, Any, bool):  # strengths = "1e-6:1e-1:8"
        try:
            return parse_value(field, value)
        except ConfigError as e:
            text = str(e).removeprefix(flag_of(field) + ": ")
            raise ConfigError(f"{where}: {field.name}: {text}") from None
    many = getattr(hint, "__origin__", None) is tuple
    if many and isinstance(value, list) and all(_kind_ok(v, kinds[0]) for v in value):
        return tuple(value)
    if not many and _kind_ok(value, kinds[0]):
        return value
    what = f"a list of {_WHAT[kinds[0]]}s, or the flag's text" if many else _WHAT[kinds[0]]
    raise ConfigError(f"{where}: {field.name} is {value!r}: give {what}")


def load(path: str) -> dict:
    """A settings file -> {setting name: value}: a run's ``config.json``, or a JSON or TOML
    (``.toml``) file whose keys are settings' names (:class:`SweepConfig` and
    :class:`RunOptions` fields) and whose values are as in ``config.json`` or a flag's text."""
    where = f"--config: {path}"
    toml = path.endswith(".toml")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f) if toml else json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist; give a run's config.json or a settings file"
                          ) from None  # fmt: skip
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: cannot read it as {'TOML' if toml else 'JSON'} ({e}); "
                          "give a run's config.json or a .json / .toml file") from None  # fmt: skip
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: holds {type(raw).__name__}, not a table of settings")
    if raw.get("hooks"):  # a run made with sweep(init_params=..., record=...): named only
        from wdjax.run.hooks import not_reproducible

        raise ConfigError(f"{where}: {not_reproducible(raw).removeprefix('config: ')}")
    settings = {}
    for key, value in raw.items():
        if key not in FIELDS:
            if isinstance(value, str) and _OBJECT.match(value):
                raise ConfigError(
                    f"{where}: {key} records a Python object ({value}); a file cannot rebuild "
                    f"it: pass {key}= to wdjax.sweep from Python"
                )
            close = difflib.get_close_matches(key, FIELDS, 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown setting {key!r}{hint}; keys are the settings' names, as in a "
                "run's config.json (e.g. strengths, lrs, epochs)"
            )
        settings[key] = _file_value(FIELDS[key], value, where)
    return settings


def check_replayable(cfg: SweepConfig, path: str) -> None:
    """Refuse a model or optimizer that the file records by name only (a Python object)."""
    for field in (f for f in dataclasses.fields(cfg) if f.type is Any):  # model, optimizer
        value, name = getattr(cfg, field.name), field.name
        if isinstance(value, str) and _OBJECT.match(value):
            raise ConfigError(
                f"--config: {path} records {name} as a Python object ({value}), which a file "
                f"cannot rebuild: give {flag_of(field)} NAME beside it, or pass {name}= to "
                "wdjax.sweep"
            )
