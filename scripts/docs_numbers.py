"""Check every number in a write-up's prose against a study's committed results.

The rules, kept simple so a reader can apply them by hand:

* **What counts.** Every number in the prose of a markdown text: not in a table (a line that
  starts with ``|``), a code block or code span, a link or image (text and address), an HTML
  comment, or a citation (a parenthesis that holds a year, e.g. "(Krogh & Hertz 1992)"). A number
  is digits with an optional decimal part and exponent (``1,000``, ``0.0203``, ``4.6e-05``); its
  sign is dropped. Digits glued to a letter, ``_`` or ``.`` on their left (``l1``, ``f32``) are
  part of a name, not a number; "3.12.1" reads as 3.12 (put versions in code spans).
* **Exempt.** "95 %" (the intervals' level), years (a four-digit whole number from 1900 to 2099),
  arXiv ids, and small counts: whole numbers up to 12.
* **Held.** A printed number is held when some value of the results lies within half a unit of
  its last printed digit: "0.0203" is held by 0.02031 (and by -0.02031: signs are dropped),
  "1,000" by 1000, "4.6e-05" by 4.64e-05. A number followed by ``%`` or by "points" (with only
  numbers, signs, brackets and commas between, as in "+0.36 [+0.10, +0.61] points") is also held
  by a value 100 times smaller: "20 %" by 0.2.
* **The values.** Every number in the results folder: the numbers of each ``.json`` file
  (summary.json, the arms' ``r<k>.json``; strings are not read), every array of each ``.npz``
  (the per-replicate histories) and every number in each ``.csv`` cell (table.csv).

:func:`unheld` returns the numbers that break the rule, each with its sentence.
"""

import csv
import json
import os
import re
import subprocess
from typing import NamedTuple

import numpy as np

__all__ = ["Number", "check", "describe", "numbers", "prose", "unheld", "values"]

NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:[eE]([-+−]?\d+))?")
PERCENT = re.compile(r"[\s\d.,+\-−–\[\]]*?(%|points?\b)")
_REMOVE = [
    re.compile(r"```.*?```", re.S),  # code blocks
    re.compile(r"<!--.*?-->", re.S),  # comments
    re.compile(r"`[^`\n]*`"),  # code spans
    re.compile(r"!?\[[^\]\n]*\]\([^)\n]*\)"),  # links and images
    re.compile(r"^\|.*$", re.M),  # table lines
    re.compile(r"\([^()\n]*\b(?:19|20)\d\d\b[^()\n]*\)"),  # citations: a parenthesis with a year
    re.compile(r"arXiv:?\s*\d{4}\.\d{4,5}(?:v\d+)?", re.I),  # arXiv ids
    re.compile(r"(?<![\w.])95\s?%"),  # the intervals' level
]


class Number(NamedTuple):
    text: str  # as printed
    value: float  # its magnitude
    half: float  # half a unit of its last printed digit
    percent: bool  # followed by % or "points": a value 100 times smaller holds it too
    context: str  # the sentence around it


def prose(markdown: str) -> str:
    """``markdown`` with everything but prose blanked out (same length, so positions hold)."""
    for pattern in _REMOVE:
        markdown = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), markdown)
    return markdown


def numbers(markdown: str) -> list[Number]:
    """The numbers of ``markdown``'s prose that are not exempt (the module docstring)."""
    text = prose(markdown)
    out = []
    for m in NUMBER.finditer(text):
        whole, frac, exp = m.group(1), m.group(2) or "", m.group(3)
        decimals = len(frac) - 1 if frac else 0
        if exp is None and not frac and "," not in whole:
            n = int(whole)
            if n <= 12 or 1900 <= n <= 2099:
                continue
        power = int(exp.replace("−", "-")) if exp else 0
        value = float(whole.replace(",", "") + frac) * 10.0**power
        half = 0.5 * 10.0 ** (power - decimals)
        percent = PERCENT.match(text, m.end()) is not None
        dot = text.rfind(". ", 0, m.start())
        start = max(dot + 2 if dot >= 0 else 0, text.rfind("\n", 0, m.start()) + 1)
        end = min(i for i in (text.find(". ", m.end()), text.find("\n", m.end()), len(text))
                  if i >= 0)  # fmt: skip
        out.append(Number(m.group(0), value, half, percent, text[start:end].strip()))
    return out


def _json_numbers(x, out: list) -> None:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return
    if isinstance(x, int | float):
        out.append(float(x))
    elif isinstance(x, dict):
        for v in x.values():
            _json_numbers(v, out)
    elif isinstance(x, list | tuple):
        for v in x:
            _json_numbers(v, out)


def values(results_dir: str) -> np.ndarray:
    """Every value the committed results hold (the module docstring), as sorted magnitudes."""
    out: list = []
    arrays = []
    paths = [os.path.abspath(os.path.join(root, name))
             for root, dirs, names in sorted(os.walk(results_dir))
             for name in sorted(names)]  # fmt: skip
    skip = ignored(paths)  # an intermediate a run left that git ignores is not a committed result
    for path in (p for p in paths if p not in skip):
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                _json_numbers(json.load(f), out)
        elif path.endswith(".npz"):
            with np.load(path) as z:
                arrays += [np.asarray(z[k], float).ravel() for k in z.files
                           if np.issubdtype(z[k].dtype, np.number)]  # fmt: skip
        elif path.endswith(".csv"):
            with open(path, encoding="utf-8", newline="") as f:
                for row in csv.reader(f):
                    out += [n.value for cell in row for n in _cell_numbers(cell)]
    v = np.abs(np.concatenate([np.asarray(out, float), *arrays]))
    return np.sort(v[np.isfinite(v)])


def ignored(paths: list[str]) -> set[str]:
    """The ``paths`` git ignores (.gitignore), so a check gives the same answer in a fresh clone
    as beside the run that left them; none outside a git checkout."""
    if not paths:
        return set()
    try:
        proc = subprocess.run(["git", "check-ignore", "--stdin", "-z"], input="\0".join(paths),
                              capture_output=True, text=True,
                              cwd=os.path.dirname(paths[0]))  # fmt: skip
    except OSError:
        return set()
    return set(proc.stdout.split("\0")) - {""} if proc.returncode in (0, 1) else set()


def _cell_numbers(cell: str) -> list[Number]:
    return [Number(m.group(0), _parse(m.group(0)), 0.0, False, cell)
            for m in NUMBER.finditer(cell)]  # fmt: skip


def _parse(text: str) -> float:
    return float(text.replace(",", "").replace("−", "-"))


def _held(sorted_values: np.ndarray, lo: float, hi: float) -> bool:
    i = np.searchsorted(sorted_values, lo, side="left")
    return bool(i < len(sorted_values) and sorted_values[i] <= hi)


def check(number: Number, sorted_values: np.ndarray) -> bool:
    """Whether ``number`` is held by ``sorted_values`` (sorted magnitudes, :func:`values`)."""
    slack = 1e-9 * max(number.value, 1e-300)  # the printed value's own float error
    lo, hi = number.value - number.half - slack, number.value + number.half + slack
    if _held(sorted_values, lo, hi):
        return True
    return number.percent and _held(sorted_values, lo / 100, hi / 100)


def unheld(markdown: str, results_dir: str | None = None, *, held=None) -> list[Number]:
    """The numbers of ``markdown``'s prose that no value of ``results_dir`` holds (or of
    ``held``: magnitudes from :func:`values`); empty when every number is held."""
    v = values(results_dir) if held is None else np.sort(np.abs(np.asarray(held, float)))
    return [n for n in numbers(markdown) if not check(n, v)]


def describe(bad: list[Number]) -> str:
    """One line per unheld number: the number and its sentence."""
    return "\n".join(f"  {n.text!r} in: {n.context}" for n in bad)


if __name__ == "__main__":  # python scripts/docs_numbers.py WRITEUP.md RESULTS_DIR
    import sys

    bad = unheld(open(sys.argv[1], encoding="utf-8").read(), sys.argv[2])
    print(describe(bad) or "every number is held", file=sys.stderr)
    sys.exit(1 if bad else 0)
