"""What an interval lets a study say, by rules fixed before the run.

:func:`verdict` reads one 95 % interval of a difference (or of an estimate against a reference
value ``ref``, e.g. a predicted slope):

1. with an equivalence margin ``m`` fixed before the run: ``"equivalent"`` when the interval lies
   inside ref ± m (two one-sided tests at the same level; Schuirmann 1987, *J. Pharmacokinet.
   Biopharm.* 15:657);
2. ``"lower"`` / ``"higher"`` when it excludes ref (hi < ref / lo > ref);
3. else ``"no detectable difference at this n"``: absence of evidence, not of an effect;
4. a NaN bound: ``"undefined"``.

:func:`outcome` turns it into the study-level label, given the prediction stated in the config
(``"lower"``, ``"higher"`` or ``"equivalent"``): ``"reproduced"`` when the verdict is the
prediction, ``"contradicted"`` when it rules the prediction out (the opposite direction; an effect
predicted but equivalence shown; equivalence predicted but the interval wholly outside the margin),
else ``"inconclusive"``.
"""

import numpy as np

__all__ = ["NO_DIFFERENCE", "PREDICTIONS", "bounds", "outcome", "verdict"]

NO_DIFFERENCE = "no detectable difference at this n"
PREDICTIONS = ("lower", "higher", "equivalent")


def bounds(interval) -> tuple[float, float]:
    """``(lo, hi)`` of an interval given as ``(lo, hi)``, ``[mean, lo, hi]`` or an object with
    ``lo`` and ``hi`` (a :class:`wdjax.analysis.stats.Summary`)."""
    if hasattr(interval, "lo") and hasattr(interval, "hi"):
        return float(interval.lo), float(interval.hi)
    values = [float(v) for v in interval]
    if len(values) not in (2, 3):
        raise ValueError(f"interval: give (lo, hi) or [mean, lo, hi], got {len(values)} values")
    return values[-2], values[-1]


def _check_margin(margin) -> None:
    if margin is not None and not (np.isfinite(margin) and margin > 0):
        raise ValueError(f"margin: give a positive number fixed before the run (or None), got "
                         f"{margin!r}")  # fmt: skip


def verdict(interval, margin: float | None = None, *, ref: float = 0.0) -> str:
    """``"equivalent"``, ``"lower"``, ``"higher"``, :data:`NO_DIFFERENCE` or ``"undefined"``: the
    rules of the module docstring, in that order.

    Example: ``verdict((-0.03, 0.01))`` is ``"no detectable difference at this n"``;
    ``verdict((-0.03, 0.01), margin=0.05)`` is ``"equivalent"``; ``verdict([0.5, 0.4, 0.6],
    ref=0.3)`` is ``"higher"``.
    """
    _check_margin(margin)
    lo, hi = bounds(interval)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undefined"
    if margin is not None and ref - margin < lo and hi < ref + margin:
        return "equivalent"
    if hi < ref:
        return "lower"
    if lo > ref:
        return "higher"
    return NO_DIFFERENCE


def outcome(interval, prediction: str, margin: float | None = None, *, ref: float = 0.0) -> str:
    """``"reproduced"``, ``"contradicted"`` or ``"inconclusive"`` for a ``prediction`` in
    :data:`PREDICTIONS` (``"equivalent"`` needs a ``margin``); see the module docstring."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction: give one of {', '.join(PREDICTIONS)}, got {prediction!r}")
    if prediction == "equivalent" and margin is None:
        raise ValueError("margin: a prediction of equivalence needs a margin fixed before the run")
    v = verdict(interval, margin, ref=ref)
    if v == prediction:
        return "reproduced"
    if v in ("undefined", NO_DIFFERENCE):
        return "inconclusive"
    if prediction == "equivalent":
        lo, hi = bounds(interval)
        return "contradicted" if hi < ref - margin or lo > ref + margin else "inconclusive"
    return "contradicted"  # the other direction, or equivalence where an effect was predicted
