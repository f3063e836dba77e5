"""Host side of the studies in ``experiments/``: command line, configuration, the shared ending.

A study module defines ``get_config(smoke=False) -> dict`` and ``main(argv=None) -> dict``. The
dict holds what the study changes from :class:`wdjax.SweepConfig`'s defaults (keys that are its
fields) and the study's own knobs (any other key). ``main`` starts with :func:`setup`, runs its
sweeps from ``run.config`` (overriding only the fields it varies), and ends with :func:`finish`,
which writes into the study's results directory::

    summary.json   headline numbers under the names the study's docstring lists, plus
                   ``figure``, ``command`` (the shell command that reproduces the run), ``seconds``
    table.md       the table README shows (markdown), table.csv the same as CSV
    <figure>.png   the figure README shows (``summary["figure"]``)

Everything is written atomically (:mod:`wdjax.files`).
"""

import argparse
import csv
import dataclasses
import io
import os
import sys
import time
from typing import NamedTuple

from wdjax import files
from wdjax.data import load
from wdjax.run.config import SweepConfig


class Run(NamedTuple):
    """One invocation of a study: what it runs and where it writes."""

    name: str  # the study's module name, experiments/<name>.py
    out: str  # results directory (exists)
    smoke: bool  # --smoke: the tiny version
    config: SweepConfig  # SweepConfig defaults <- the study's get_config <- the command line
    knobs: dict  # the study's own settings: the keys of get_config that are not SweepConfig fields
    argv: list | None  # as passed to main (None: sys.argv[1:])
    t0: float  # time.perf_counter() at setup


def parse_args(doc: str, name: str, argv=None) -> argparse.Namespace:
    """``--smoke``, ``--out`` (default ``results/studies/<name>``), ``--dataset``, ``--data-dir``,
    ``--seeds``, ``--label-noise``, ``--train-size``, ``--replicates`` (each replaces the study's
    value; the dataset defaults to the study's: ``fashion_mnist`` at full size, ``digits`` in
    smoke mode)."""
    return parser(doc, name).parse_args(argv)


def parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The flags every study has (:func:`parse_args`), for a caller to add its own to."""
    p = argparse.ArgumentParser(description=(doc or name).strip().split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny version (seconds) for tests")
    p.add_argument("--out", default=os.path.join("results", "studies", name))
    p.add_argument("--dataset", default=None,
                   help="the study's dataset (fashion_mnist; digits with --smoke), or mnist, "
                        "kmnist, digits, a TFDS name")  # fmt: skip
    p.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR"))
    p.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    p.add_argument("--label-noise", type=float, default=None)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument(
        "--replicates",
        type=int,
        default=None,
        help="override the number of replicates (studies that have them)",
    )
    return p


def overrides(args: argparse.Namespace) -> dict:
    """The :class:`wdjax.SweepConfig` fields a study's command line sets."""
    out = {"data_dir": args.data_dir}
    for field in ("dataset", "seeds", "label_noise", "train_size"):
        if getattr(args, field) is not None:
            out[field] = getattr(args, field)
    return out


def setup(doc: str, name: str, get_config, argv=None) -> Run:
    """A study's command line → :class:`Run`; creates its results directory.

    ``get_config(smoke)`` is split into SweepConfig fields, applied over the defaults, and the
    study's knobs; the command line's settings (:func:`overrides`) replace the study's.
    """
    args = parse_args(doc, name, argv)
    return from_args(args, name, get_config(args.smoke), argv)


def from_args(args: argparse.Namespace, name: str, cfg: dict, argv=None) -> Run:
    """:func:`setup` from parsed flags and the study's resolved config dict."""
    fields = {f.name for f in dataclasses.fields(SweepConfig)}
    config = SweepConfig(**{**{k: v for k, v in cfg.items() if k in fields}, **overrides(args)})
    knobs = {k: v for k, v in cfg.items() if k not in fields}
    if args.replicates is not None:
        if "replicates" not in knobs:
            raise SystemExit(f"--replicates: {name} has no replicates; leave the flag out")
        if args.replicates < 2:
            raise SystemExit("--replicates: give at least 2 (an interval needs n - 1 >= 1)")
        knobs["replicates"] = args.replicates
    os.makedirs(args.out, exist_ok=True)
    return Run(name, args.out, args.smoke, config, knobs, argv, time.perf_counter())


def load_data(config: SweepConfig):
    """The :class:`wdjax.Dataset` a sweep of ``config`` trains on (its data fields applied)."""
    return load(config.dataset, data_dir=config.data_dir, raw_dir=config.raw_dir,
                val_size=config.val_size, train_size=config.train_size,
                label_noise=config.label_noise, seed=config.data_seed,
                standardize=config.standardize)  # fmt: skip


def initial_params(config: SweepConfig, data) -> dict:
    """The parameters every member of a sweep of ``config`` starts from (seed ``first_seed``, in
    ``dtype``), drawn as :func:`wdjax.sweep` draws them: e.g. to start a sweep from a mapped copy
    of them (``sweep(init_params=...)``). ``data``: the :class:`wdjax.Dataset` (:func:`load_data`).
    """
    import jax.numpy as jnp

    from wdjax.engine.engine import Hyper
    from wdjax.run.build import build

    x = data.x_train[:1]
    h = Hyper(jnp.float32(0), jnp.float32(config.lrs[0]), jnp.int32(config.first_seed),
              jnp.int32(0))  # fmt: skip
    return build(config, num_classes=data.num_classes, x_example=x).engine.init(h, x).params


def finish(run: Run, summary: dict, columns: list[str], rows: list[list], fig, figure: str):
    """The end of every study: ``table.md``/``table.csv`` from ``columns`` and ``rows``, the
    matplotlib ``fig`` saved as ``<out>/<figure>``, and ``summary.json``: ``summary`` plus
    ``figure``, ``command`` and ``seconds`` (since :func:`setup`). Returns the summary written."""
    write_table(run.out, columns, rows)
    save_figure(fig, os.path.join(run.out, figure))
    summary = dict(summary, figure=figure, command=command(run.name, run.argv),
                   seconds=time.perf_counter() - run.t0)  # fmt: skip
    files.write_json(os.path.join(run.out, "summary.json"), summary)
    return summary


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (figures go to files only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fmt_ci(mean, lo, hi, digits=3) -> str:
    """``mean [lo, hi]`` (a 95 % interval) with ``digits`` decimals; signed when it straddles 0."""
    sign = "+" if min(lo, mean) < 0 else ""
    return f"{mean:{sign}.{digits}f} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"


def ci(row: dict, key: str, digits=3) -> str:
    """``row[key_mean] [row[key_lo], row[key_hi]]`` of a :func:`replicates.table` row, or
    the paired difference ``row[key_diff] [key_diff_lo, key_diff_hi]`` when ``key`` ends in
    ``_diff``."""
    if key.endswith("_diff"):
        return fmt_ci(row[key], row[key + "_lo"], row[key + "_hi"], digits)
    return fmt_ci(row[key + "_mean"], row[key + "_lo"], row[key + "_hi"], digits)


def write_table(out: str, columns: list[str], rows: list[list]) -> None:
    """``table.md`` (markdown) and ``table.csv`` from a header and rows of cells."""
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    files.atomic_write_bytes(os.path.join(out, "table.md"), ("\n".join(md) + "\n").encode())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    files.atomic_write_bytes(os.path.join(out, "table.csv"), buf.getvalue().encode())


def save_figure(fig, path: str) -> str:
    """Save a matplotlib figure atomically as PNG and close it."""
    from wdjax.analysis.plots import save

    return save(fig, path)


def command(name: str, argv=None) -> str:
    """The shell command that reproduces a study run (``python experiments/<name>.py ...``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([f"python experiments/{name}.py", *args])
