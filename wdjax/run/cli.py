"""Command line: ``python -m wdjax sweep [flags]`` (also installed as ``wdjax``).

Example: 32 log-spaced decoupled weight-decay strengths × 3 seeds of the tutorial MLP on the
embedded ``digits`` dataset, in one compiled call per epoch::

    python -m wdjax sweep --reg wd --strength 1e-6:1e-1:32 --seeds 3

The flags are generated from :class:`wdjax.SweepConfig` and :class:`wdjax.run.config.RunOptions`
(one declaration per setting: help, default, parser, check). Bad input prints one ``error:`` line
naming the flag and exits with status 2, before any compilation. Ctrl-C stops at the next epoch
boundary, saves a checkpoint and prints the command that continues the run (exit 130); a second
Ctrl-C stops at once.
"""

import argparse
import dataclasses
import datetime
import logging
import os
import shlex
import sys

from wdjax.run.config import (
    ConfigError,
    RunOptions,
    SweepConfig,
    check_fields,
    flag_message,
    flag_of,
)

log = logging.getLogger("wdjax")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2, no usage dump
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _add(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
    help_text = field.metadata["help"]
    if isinstance(field.default, bool):
        action = argparse.BooleanOptionalAction
        parser.add_argument(flag_of(field), dest=field.name, action=action, default=None,
                            help=f"{help_text} (default: {field.default})")  # fmt: skip
        return
    shown = ",".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
    parser.add_argument(flag_of(field), dest=field.name, default=None, metavar="VALUE",
                        help=f"{help_text} (default: {shown})")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wdjax", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("sweep", help="train a grid of regularization strengths in one program")
    s.add_argument("-v", dest="verbose", action="store_const", const=True, default=None,
                   help="same as --verbose")  # fmt: skip
    for cls in (SweepConfig, RunOptions):
        for field in dataclasses.fields(cls):
            _add(s, field)
    return p


def _parse_value(field: dataclasses.Field, value):
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


def _from_args(cls, args: argparse.Namespace):
    given = {f.name: _parse_value(f, getattr(args, f.name)) for f in dataclasses.fields(cls)
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
    """Command line -> (config, options), both checked field by field (ConfigError otherwise)."""
    parser = build_parser()
    args = parser.parse_args(_join_values(list(argv), parser))
    cfg, opts = _from_args(SweepConfig, args), _from_args(RunOptions, args)
    check_fields(opts)
    check_fields(cfg)
    return cfg, opts


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
    from wdjax.run.runner import Interrupted, sweep

    out = None
    try:
        try:
            cfg, opts = parse(argv)
        except SystemExit as e:  # argparse: --help (0) or its own one-line error (2)
            return e.code
        _setup(cfg, opts)
        out = opts.out or os.path.join("results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
        result = sweep(cfg, out=out, resume=opts.resume, progress=not opts.quiet,
                       checkpoint_every=opts.checkpoint_every)  # fmt: skip
    except (ConfigError, DatasetError) as e:
        print(f"error: {flag_message(e)}", file=sys.stderr)
        return 2
    except Interrupted as e:
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
