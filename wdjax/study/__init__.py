"""The study toolkit: what every study in ``experiments/`` shares. It sits above the run layer.

* :func:`main` (:mod:`wdjax.study.cli`): the command line, config + smoke overrides, the ending;
* :mod:`wdjax.study.arms`: the replicate × arm loop with common random numbers, resumable;
* :mod:`wdjax.study.replicates`: replicate configs, per-setting values and tables;
* :mod:`wdjax.analysis.selection` (re-exported: :func:`select`, :func:`rise`): λ chosen on
  validation loss, averaged and per replicate, Breiman's one-SE set; the validation minimum;
* :func:`verdict` and :func:`outcome` (:mod:`wdjax.study.verdicts`): rules fixed before the run;
* :mod:`wdjax.study.toolkit`: the older pieces (setup, finish, formatting) the studies share.
"""

from wdjax.analysis.selection import interval, rise, select
from wdjax.study.cli import Context, Option, Report, header, main, option, versions
from wdjax.study.toolkit import (
    Run,
    ci,
    command,
    finish,
    fmt_ci,
    initial_params,
    load_data,
    overrides,
    parse_args,
    pyplot,
    save_figure,
    setup,
    write_table,
)
from wdjax.study.verdicts import NO_DIFFERENCE, outcome, verdict

__all__ = [
    "NO_DIFFERENCE",
    "Context",
    "Option",
    "Report",
    "Run",
    "ci",
    "command",
    "finish",
    "fmt_ci",
    "header",
    "initial_params",
    "interval",
    "load_data",
    "main",
    "option",
    "outcome",
    "overrides",
    "parse_args",
    "pyplot",
    "rise",
    "save_figure",
    "select",
    "setup",
    "verdict",
    "versions",
    "write_table",
]
