"""Command line: ``python -m wdjax sweep [flags]`` (also installed as ``wdjax``).

Example: 32 log-spaced decoupled weight-decay strengths × 3 seeds of the tutorial MLP on the
embedded ``digits`` dataset, in one compiled call per epoch::

    python -m wdjax sweep --reg wd --strength 1e-6:1e-1:32 --seeds 3

The flags are generated from :class:`wdjax.SweepConfig` and :class:`wdjax.run.config.RunOptions`
(one declaration per setting: help, default, parser, check, ``--help`` section, metavar), with
argparse: ``tyro`` or ``ml_collections`` config flags would add a dependency and still need this
module's parsers (log-range grids, ``none``, negative values), so they would not remove code.
``--config FILE`` reads a run's ``config.json`` or a JSON/TOML file of settings; flags beside it
override it. Library errors name their argument (``strengths: ...``); :func:`error_line` names its
flag instead (``--strength: ...``), from one table (:data:`FLAGS`). Bad input prints one
``error:`` line and exits with status 2, before any compilation. Ctrl-C stops at the next epoch
boundary, saves a checkpoint and prints the command that continues the run (exit 130); a second
Ctrl-C stops at once and says which checkpoint, if any, is kept (exit 130).
"""

import argparse
import dataclasses
import datetime
import logging
import os
import re
import shlex
import sys

from wdjax.run import settings_file
from wdjax.run.config import (
    GROUPS,
    ConfigError,
    RunOptions,
    SweepConfig,
    check_fields,
    flag_of,
    metavar_of,
)
from wdjax.run.settings_file import FIELDS, parse_value

log = logging.getLogger("wdjax")

#: Library argument name -> flag: the settings (``sweep()``'s keyword arguments among them:
#: ``out``, ``resume``, ``checkpoint_every``) and their flags, from their declarations.
FLAGS = {name: flag_of(f) for name, f in FIELDS.items()}

EXAMPLES = """examples:
  wdjax sweep --reg wd --strength 1e-6:1e-1:32 --seeds 3
      32 log-spaced weight-decay strengths x 3 seeds of the MLP on digits
  wdjax sweep --dataset fashion_mnist --model cnn --reg l1_prox --strength 0,1e-5:1e-2:8 \\
      --set b1=0.8,0.9 --schedule cosine --epochs 20 --out runs/l1
  wdjax sweep --config runs/l1/config.json --seeds 5 --out runs/l1_seeds
      the settings of a finished run, with 5 seeds
  wdjax sweep --config runs/l1/config.json --out runs/l1 --resume
      continue a stopped run
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2, no usage dump
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=28)


def _help(field: dataclasses.Field) -> str:
    """The field's help, its default said once (none where the help says it or there is none)."""
    text, d = field.metadata["help"], field.default
    shown = ",".join(map(str, d)) if isinstance(d, tuple) else d
    shown = ("on" if d else "off") if isinstance(d, bool) else shown
    if "default" not in text and shown not in (None, ""):
        text += f" (default: {shown})"
    return text.replace("%", "%%")


def _add(group, field: dataclasses.Field) -> None:
    if isinstance(field.default, bool):
        group.add_argument(flag_of(field), dest=field.name, action=argparse.BooleanOptionalAction,
                           default=None, help=_help(field))  # fmt: skip
        return
    group.add_argument(flag_of(field), dest=field.name, default=None, metavar=metavar_of(field),
                       help=_help(field))  # fmt: skip


def _version() -> str:
    import importlib.metadata

    import wdjax

    return f"wdjax {wdjax.__version__} (jax {importlib.metadata.version('jax')})"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wdjax", formatter_class=_Formatter,
                description="Weight decay and L1/L2 regularization sweeps in JAX.")  # fmt: skip
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    s = sub.add_parser(
        "sweep",
        help="train a grid of regularization strengths (x learning rates x seeds) in one program",
        description="Train every member of a grid (strengths x learning rates x --set axes x "
        "seeds x folds)\nin one compiled program per epoch; write the results to --out.",
        usage="%(prog)s [--config FILE] [FLAG ...]",
        epilog=EXAMPLES,
        formatter_class=_Formatter,
    )
    groups = {name: s.add_argument_group(name) for name in GROUPS}
    config_help = (
        "read settings from a run's config.json or a JSON/TOML file of settings (keys: the "
        "settings' names, e.g. strengths); flags given beside it override it"
    )
    groups["run"].add_argument("--config", metavar="FILE", help=config_help)
    groups["run"].add_argument("-v", dest="verbose", action="store_const", const=True,
                               default=None, help="same as --verbose")  # fmt: skip
    for field in FIELDS.values():
        _add(groups[field.metadata["group"]], field)
    return p


def _from_args(cls, args: argparse.Namespace, settings: dict):
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in settings.items() if k in names}
    given |= {f.name: parse_value(f, getattr(args, f.name)) for f in dataclasses.fields(cls)
              if getattr(args, f.name) is not None}  # fmt: skip
    return cls(**given)


def _join_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--lr -1e-3`` -> ``--lr=-1e-3``: argparse takes a value starting with '-' for a flag."""
    takes_value = {o for a in parser._actions for o in a.option_strings if a.nargs is None}
    takes_value |= {o for a in _sweep(parser)._actions for o in a.option_strings
                    if a.nargs is None and a.const is None}  # fmt: skip
    out, i = [], 0
    while i < len(argv):
        if argv[i] in takes_value and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _sweep(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return parser._subparsers._group_actions[0].choices["sweep"]


def parse(argv: list[str]) -> tuple[SweepConfig, RunOptions]:
    """Command line -> (config, options), both checked field by field (ConfigError otherwise):
    defaults, then the ``--config`` file's settings, then the flags given."""
    parser = build_parser()
    args = parser.parse_args(_join_values(list(argv), parser))
    settings = settings_file.load(args.config) if args.config else {}
    cfg, opts = _from_args(SweepConfig, args, settings), _from_args(RunOptions, args, settings)
    if args.config:
        settings_file.check_replayable(cfg, args.config)
    check_fields(opts)
    check_fields(cfg)
    return cfg, opts


def error_line(e: Exception) -> str:
    """``error: --flag: ...`` for an error naming a library argument (``.argument``, or its
    message's first word: ``strengths: ...``); other messages as they are."""
    text = str(e)
    lead = re.match(r"(\w+): ", text)
    name = getattr(e, "argument", None) or (lead and lead.group(1))
    if name in FLAGS and not text.startswith("--"):
        text = f"{FLAGS[name]}: {text.removeprefix(name + ': ')}"
    return f"error: {text}"


def resume_command(argv: list[str], out: str) -> str:
    """The command that continues this run: the same flags, ``--out`` and ``--resume``."""
    argv = list(argv)
    if "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv += ["--out", out]
    if "--resume" not in argv:
        argv.append("--resume")
    return "python -m wdjax " + shlex.join(argv)


def _setup(cfg: SweepConfig, opts: RunOptions) -> None:
    """Process-wide settings, before JAX starts: logging, float64, CPU split, processes."""
    handler = logging.StreamHandler(sys.stderr)  # wdjax's own messages (not JAX's)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.WARNING if opts.quiet else logging.DEBUG if opts.verbose else logging.INFO)
    import jax

    if cfg.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from wdjax.engine import compile_cache

    try:
        given = opts.compile_cache
        compile_cache.configure(compile_cache.default_root() if given is None else given)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    given = [opts.coordinator is not None, opts.num_processes is not None,
             opts.process_id is not None]  # fmt: skip
    if any(given) and not all(given):
        raise ConfigError(
            "--coordinator: --coordinator, --num-processes and --process-id go together: "
            "give all three (or none for a single process)"
        )
    if all(given):
        # CPU processes need a collectives implementation (GPU/TPU ignore it). Asking for the
        # backend here would initialise XLA before jax.distributed may.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(opts.coordinator, opts.num_processes, opts.process_id)
    elif opts.cpu_devices is not None or min(cfg.chunk_size or cfg.num_members,
                                             cfg.num_members) >= 2:  # fmt: skip
        from wdjax.engine.devices import use_cpu_devices

        try:  # one member runs on one device (a split CPU runs that ~20 % slower)
            use_cpu_devices(opts.cpu_devices)
        except ConfigError:
            if opts.cpu_devices is not None:  # asked for explicitly: say why it cannot be done
                raise


def dataset_line(d: dict) -> str:
    """One line naming the data a run used: ``meta["dataset"]`` (:func:`wdjax.data.describe`)."""
    shape = "x".join(map(str, d["image_shape"]))
    cached = f", read from the cache {d['cache']}" if d.get("cache") else ""
    files = len(d.get("sha256") or {})
    hashed = f", {files} files' sha256 in meta.json" if files else ""
    return (
        f"dataset {d['name']}: {d['train']} train / {d['val']} val / {d['test']} test images of "
        f"{shape}, {d['num_classes']} classes, from {d['source'] or 'data given in memory'}"
        f"{cached}{hashed}"
    )


def _report(result, out: str) -> None:
    from wdjax.analysis import tables

    s = result.summary
    if "dataset" in result.meta:  # runs made before meta recorded it have none
        print(dataset_line(result.meta["dataset"]))
    start = result.meta.get("startup_seconds")
    began = "" if start is None else f", training began {start:.2f}s after the data loaded"
    print(f"{result.config.num_members} members, {result.meta['run_seconds']:.1f}s "
          f"(compile {result.meta['compile_seconds']:.1f}s{began}) -> {out}")  # fmt: skip
    print(tables.markdown_table(tables.table_rows(result.members, result.history), s))
    if s["best_member"] is None:
        print("no setting can be selected: every setting has a diverged member")
    else:
        best, setting = s["members"][s["best_member"]], s["best_setting"]
        ties = f" ({len(s['ties'])} settings tie)" if len(s["ties"]) > 1 else ""
        where = ", ".join(f"{'λ' if k == 'strength' else k}={v:.3g}" for k, v in setting.items()
                          if k not in ("mean", "n", "members"))  # fmt: skip
        print(f"best setting by mean final {s['selected_by']} over {setting['n']} members"
              f"{ties}: {where}; its best member "
              f"{best['member']} (seed {best['seed']}): test acc {best['final']['test_acc']:.4f}, "
              f"test loss {best['final']['test_loss']:.4f}")  # fmt: skip
    if s["diverged"]:
        print(f"diverged members (frozen at the start of their diverging epoch): {s['diverged']}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from wdjax.data import DatasetError
    from wdjax.run import interrupts, runner

    out = None
    try:
        try:
            cfg, opts = parse(argv)
        except SystemExit as e:  # argparse: --help (0) or its own one-line error (2)
            return e.code
        _setup(cfg, opts)
        out = opts.out or os.path.join("results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
        interrupts.resume_hint = resume_command(argv, out)  # (what a second Ctrl-C prints)
        result = runner.sweep(cfg, out=out, resume=opts.resume, progress=not opts.quiet,
                              checkpoint_every=opts.checkpoint_every)  # fmt: skip
    except (ConfigError, DatasetError) as e:
        print(error_line(e), file=sys.stderr)
        return 2
    except runner.Interrupted as e:
        print(f"\n{e}; continue with: {resume_command(argv, out)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        resumable = out and os.path.exists(os.path.join(out, "config.json"))
        again = f"continue with: {resume_command(argv, out)}" if resumable else "run it again"
        print(f"\ninterrupted before the next checkpoint (any earlier one is kept); {again}",
              file=sys.stderr)  # fmt: skip
        return 130
    _report(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
