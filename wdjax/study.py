"""Host-side helpers shared by the studies in ``experiments/`` (argument parsing, outputs).

A study module defines ``get_config(smoke=False) -> dict`` and ``main(argv=None)``; ``main``
calls :func:`parse_args`, runs sweeps, and writes into its results directory::

    summary.json   headline numbers under the names the study's docstring lists
    table.md       the table README shows (markdown), table.csv the same as CSV
    *.png          figures (the first one listed in summary["figure"] goes to README)

Everything is written atomically (:mod:`wdjax.results`).
"""

import argparse
import csv
import io
import os
import sys

import numpy as np

from wdjax import results


def parse_args(doc: str, name: str, argv=None) -> argparse.Namespace:
    """``--smoke``, ``--out`` (default ``results/studies/<name>``), ``--dataset``, ``--data-dir``,
    ``--seeds`` (override), ``--label-noise``, ``--train-size``."""
    p = argparse.ArgumentParser(description=doc.strip().split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny version (seconds) for tests")
    p.add_argument("--out", default=os.path.join("results", "studies", name))
    p.add_argument("--dataset", default="digits", help="digits (offline) or a TFDS name")
    p.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR"))
    p.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    p.add_argument("--label-noise", type=float, default=None)
    p.add_argument("--train-size", type=int, default=None)
    return p.parse_args(argv)


def setup(doc: str, name: str, get_config, argv=None):
    """A study's command line → ``(args, config, overrides)``; creates ``args.out``.

    ``config = get_config(args.smoke)``; ``overrides`` are the :class:`wdjax.SweepConfig` fields the
    command line sets, except ``--seeds``, which replaces ``config["seeds"]``.
    """
    args = parse_args(doc, name, argv)
    cfg, over = get_config(args.smoke), overrides(args)
    if "seeds" in over:
        cfg["seeds"] = over.pop("seeds")
    os.makedirs(args.out, exist_ok=True)
    return args, cfg, over


def overrides(args: argparse.Namespace) -> dict:
    """The :class:`wdjax.SweepConfig` fields a study's command line sets."""
    out = {"dataset": args.dataset, "data_dir": args.data_dir}
    for field in ("seeds", "label_noise", "train_size"):
        if getattr(args, field) is not None:
            out[field] = getattr(args, field)
    return out


def mean_std(x, axis=0):
    """(mean, std) ignoring NaNs (std is the population std over seeds, ddof=0)."""
    x = np.asarray(x, float)
    return np.nanmean(x, axis=axis), np.nanstd(x, axis=axis)


def fmt_pm(mean, std, digits=4) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def write_table(out: str, columns: list[str], rows: list[list]) -> None:
    """``table.md`` (markdown) and ``table.csv`` from a header and rows of cells."""
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    results.atomic_write_bytes(os.path.join(out, "table.md"), ("\n".join(md) + "\n").encode())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    results.atomic_write_bytes(os.path.join(out, "table.csv"), buf.getvalue().encode())


def write_summary(out: str, summary: dict) -> None:
    results.write_json(os.path.join(out, "summary.json"), summary)


def save_figure(fig, path: str) -> str:
    """Save a matplotlib figure atomically as PNG and close it."""
    from wdjax.plots import save

    return save(fig, path)


def command(name: str, argv=None) -> str:
    """The shell command that reproduces a study run (``python experiments/<name>.py ...``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([f"python experiments/{name}.py", *args])


def by_strength(res, name: str, epoch: int = -1) -> np.ndarray:
    """``res.history[name]`` at ``epoch`` as ``[strengths, rest]`` (rest = lrs × seeds × folds).

    Members are in grid order (strengths outermost), so row ``i`` holds every member with
    ``res.config.strengths[i]``.
    """
    x = np.asarray(res.history[name], float)[:, epoch]
    return x.reshape(len(res.config.strengths), -1)


def read_summary(path: str) -> dict | None:
    """A study's ``summary.json`` (``path`` is the file or its directory); None if absent."""
    if os.path.isdir(path):
        path = os.path.join(path, "summary.json")
    return results.read_json(path) if os.path.exists(path) else None
