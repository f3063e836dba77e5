"""The settings' parsers (a flag's text -> a value) and checks (a value -> None, or a message
saying what it must be), used by the declarations in :mod:`wdjax.run.config`."""

import math
import re
from collections.abc import Callable

import numpy as np

from wdjax.errors import ConfigError

__all__ = ["parse_grid"]


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
