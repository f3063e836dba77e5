"""A study's whole command line in one call: :func:`main`.

A study module is three functions::

    def get_config() -> dict:          # the full study: SweepConfig fields and the study's knobs
    def smoke(config) -> dict:         # what the tiny version (--smoke, seconds) overrides
    def run(ctx: study.Context) -> study.Report

    if __name__ == "__main__":
        study.main(get_config, run, smoke=smoke)

Knobs a user may change from the command line are declared in the config with
:func:`option` (``epochs_scale=study.option(1.0, "scale every condition's epochs")`` gives
``--epochs-scale``), never parsed by hand. Reserved knobs: ``replicates`` (``--replicates``),
``selected_by`` (how the study selects, e.g. ``"val_loss"``) and ``rules`` (a dict of what is fixed
before the run: predictions, margins, estimators); all three go into the summary's header.

:func:`main` parses the flags every study has (:func:`wdjax.study.toolkit.parse_args`, plus
``--stale`` for saved arms of another config: :mod:`wdjax.study.arms`), applies the smoke overrides
and the command line, runs ``run(ctx)`` and writes the standard ending
(:func:`wdjax.study.toolkit.finish`): ``summary.json`` = the header (``replicates``, ``dataset``,
``selected_by``, ``rules``, ``versions`` of python/jax/flax/optax/wdjax; with arms run by
:meth:`Context.sweeps`, ``sweep_seconds`` (their sweeps' wall time, loaded ones included: a resumed
run's total) and ``arms_loaded``; then ``figure``, ``command``, ``seconds``) and the study's
keys, ``table.md``/``table.csv``, ``<name>.png``.
"""

import argparse
import dataclasses
import os
import platform
from importlib import metadata
from typing import Any, NamedTuple

from wdjax.errors import ConfigError
from wdjax.run.config import SweepConfig
from wdjax.study import arms as arms_lib
from wdjax.study import toolkit

__all__ = ["Context", "Option", "Report", "header", "main", "option", "versions"]


class Option(NamedTuple):
    """A knob the command line may set (:func:`option`)."""

    default: Any
    help: str
    parse: Any  # text -> value; None: the default's type (bool: --flag / --no-flag)


def option(default, help: str, *, parse=None) -> Option:
    """Declare a study knob as ``--its-name`` on the command line (see the module docstring)."""
    return Option(default, help, parse)


class Report(NamedTuple):
    """What ``run(ctx)`` returns: the study's summary keys, its table and its figure."""

    summary: dict
    columns: list
    rows: list
    figure: Any  # a matplotlib figure, saved as <name>.png


@dataclasses.dataclass
class Context:
    """One invocation of a study (a :class:`wdjax.study.toolkit.Run`, plus the arm loop)."""

    name: str  # experiments/<name>.py
    out: str  # results directory (exists)
    smoke: bool
    config: SweepConfig  # SweepConfig defaults <- get_config <- smoke <- command line
    knobs: dict  # the study's own settings, options resolved
    argv: list | None
    t0: float
    stale: str = "refuse"
    arms: dict = dataclasses.field(default_factory=dict)  # (arm, r) -> "loaded"/"trained", s

    @property
    def replicates(self) -> int:
        return self.knobs["replicates"]

    def sweeps(self, arms: dict, replicates: int | None = None, **kw) -> dict:
        """``{arm: [result per replicate]}`` (:func:`wdjax.study.arms.run`), saved and resumable
        under ``<out>/arms``; one progress line per (arm, replicate)."""

        def say(arm, r, res, loaded):
            self.arms[(arm, r)] = ("loaded" if loaded else "trained", res.seconds)
            print(f"{self.name}: {arm} replicate {r} {self.arms[(arm, r)][0]}", flush=True)

        n = self.replicates if replicates is None else replicates
        return arms_lib.run(self.out, arms, n, stale=self.stale, on_done=say, **kw)


def versions() -> dict:
    """The versions a result was made with: python, jax, jaxlib, flax, optax, numpy, wdjax."""
    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    import wdjax

    out["wdjax"] = wdjax.__version__
    return out


def header(ctx: Context) -> dict:
    """The summary keys every study has (the module docstring), before its own."""
    k = ctx.knobs
    head = dict(replicates=k.get("replicates"), dataset=ctx.config.dataset,
                selected_by=k.get("selected_by"), rules=k.get("rules", {}),
                versions=versions())  # fmt: skip
    if ctx.arms:  # a resumed run's ``seconds`` is this invocation's; these cover every arm
        head["sweep_seconds"] = float(sum(s for _, s in ctx.arms.values()))
        head["arms_loaded"] = sum(how == "loaded" for how, _ in ctx.arms.values())
    return head


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _add_options(p, options: dict) -> None:
    for key, o in options.items():
        if isinstance(o.default, bool) and o.parse is None:
            p.add_argument(_flag(key), dest=f"opt_{key}", default=o.default, help=o.help,
                           action=argparse.BooleanOptionalAction)  # fmt: skip
        else:
            parse = o.parse or (type(o.default) if o.default is not None else str)
            p.add_argument(_flag(key), dest=f"opt_{key}", default=o.default, type=parse,
                           help=f"{o.help} (default {o.default!r})")  # fmt: skip


def _configure(get_config, smoke, is_smoke: bool) -> tuple[dict, dict]:
    """(config with options as plain defaults, {key: Option}) after the smoke overrides."""
    cfg = dict(get_config())
    if is_smoke and smoke is not None:
        extra = smoke(cfg)
        unknown = sorted(set(extra) - set(cfg) - {f.name for f in dataclasses.fields(SweepConfig)})
        if unknown:
            raise ConfigError(f"smoke: overrides {', '.join(unknown)}, which get_config does not "
                              "declare; declare them in get_config first")  # fmt: skip
        opts = {k: v for k, v in cfg.items() if isinstance(v, Option)}
        cfg.update({k: opts[k]._replace(default=v) if k in opts and not isinstance(v, Option)
                    else v for k, v in extra.items()})  # fmt: skip
    options = {k: v for k, v in cfg.items() if isinstance(v, Option)}
    fields = {f.name for f in dataclasses.fields(SweepConfig)}
    clash = sorted(set(options) & (fields | {"replicates"}))
    if clash:
        raise ConfigError(f"option {', '.join(clash)}: the standard flags set it; declare it as "
                          "a plain value")  # fmt: skip
    return {k: (v.default if isinstance(v, Option) else v) for k, v in cfg.items()}, options


def context(get_config, smoke=None, argv=None, *, name=None, doc=None) -> Context:
    """The :class:`Context` :func:`main` runs: flags parsed, config resolved, ``out`` created."""
    g = getattr(get_config, "__globals__", {})
    name = name or os.path.splitext(os.path.basename(g.get("__file__", "study")))[0]
    doc = doc if doc is not None else g.get("__doc__") or name
    p = toolkit.parser(doc, name)
    p.add_argument(
        "--stale",
        choices=arms_lib.STALE,
        default="refuse",
        help="a saved arm of another config: refuse (default) or recompute it",
    )
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--smoke", action="store_true")
    cfg, options = _configure(get_config, smoke, pre.parse_known_args(argv)[0].smoke)
    _add_options(p, options)
    args = p.parse_args(argv)
    for key in options:
        cfg[key] = getattr(args, f"opt_{key}")
    run = toolkit.from_args(args, name, cfg, argv)
    return Context(run.name, run.out, run.smoke, run.config, run.knobs, argv, run.t0, args.stale)


def main(get_config, run, smoke=None, argv=None) -> dict:
    """Run a study from its command line and write its ending; returns the summary written."""
    ctx = context(get_config, smoke, argv)
    report = run(ctx)
    head = header(ctx)
    clash = sorted(k for k in set(head) & set(report.summary) if head[k] != report.summary[k])
    if clash:
        raise ValueError(f"summary: {', '.join(clash)} belong to the header; leave them out")
    summary = {**head, **report.summary}
    return toolkit.finish(ctx, summary, report.columns, report.rows, report.figure,
                          f"{ctx.name}.png")  # fmt: skip
