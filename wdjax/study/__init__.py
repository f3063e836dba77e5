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
    by_strength,
    ci,
    command,
    finish,
    fmt_ci,
    fmt_pm,
    load_data,
    mean_std,
    overrides,
    parse_args,
    pm,
    pyplot,
    read_summary,
    save_figure,
    setup,
    with_std,
    write_table,
)
from wdjax.study.verdicts import NO_DIFFERENCE, outcome, verdict

__all__ = [
    "NO_DIFFERENCE",
    "Context",
    "Option",
    "Report",
    "Run",
    "by_strength",
    "ci",
    "command",
    "finish",
    "fmt_ci",
    "fmt_pm",
    "header",
    "interval",
    "load_data",
    "main",
    "mean_std",
    "option",
    "outcome",
    "overrides",
    "parse_args",
    "pm",
    "pyplot",
    "read_summary",
    "rise",
    "save_figure",
    "select",
    "setup",
    "verdict",
    "versions",
    "with_std",
    "write_table",
]
