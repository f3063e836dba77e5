"""Prose for a study's generated write-up (``write_up(summary)``, scripts/studies_docs.py).

Every number a write-up prints must be held by the committed results at the precision printed
(scripts/docs_numbers.py): format values straight from the summary with these helpers, never
numbers computed in the prose (a ratio, a count, a value ×60) that the results do not hold.
Negative numbers print with the minus sign "−" (U+2212).
"""

from wdjax.study.toolkit import fmt_ci

__all__ = ["chain", "ci", "join", "num", "says"]


def _minus(text: str) -> str:
    return text.replace("-", "−").replace("e−", "e-")  # exponents keep the ASCII hyphen


def num(x: float, digits: int | None = None) -> str:
    """``x`` with ``digits`` decimals, or 3 significant digits (``0.000464``, ``4.64e-05``)."""
    return _minus(f"{x:.3g}" if digits is None else f"{x:.{digits}f}")


def ci(mean: float, lo: float, hi: float, digits: int = 4) -> str:
    """``mean [lo, hi]`` with ``digits`` decimals, signed when the interval straddles 0."""
    return _minus(fmt_ci(mean, lo, hi, digits))


def chain(items) -> str:
    """``a → b → c``."""
    return " → ".join(str(x) for x in items)


def join(items) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [str(x) for x in items]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def says(checks: dict) -> str:
    """A rule's verdict over named checks: ``"reproduced"`` (all hold), ``"contradicted"`` (none),
    ``"not tested"`` (no checks), else ``"reproduced in part, not for a and b"`` naming the
    checks that fail, or ``"reproduced in part, only for c"`` naming those that hold where they
    are fewer (the shorter list)."""
    if not checks:
        return "not tested"
    bad = [k for k, ok in checks.items() if not ok]
    good = [k for k, ok in checks.items() if ok]
    if not bad or not good:
        return "contradicted" if bad else "reproduced"
    if len(good) < len(bad):
        return f"reproduced in part, only for {join(good)}"
    return f"reproduced in part, not for {join(bad)}"
