"""Generate the studies' write-ups (docs/studies/) and figures (docs/figures/) from the committed
results (results/studies/): one command, byte-identical on every run.

Usage: ``python scripts/studies_docs.py [--results results/studies] [--docs docs/studies]
[--figures docs/figures] [--check]``.

A study ``experiments/<name>.py`` whose ``<results>/<name>/summary.json`` is committed takes one
of two routes:

* **Generated** (the study defines ``write_up(summary) -> str`` and ``figure(summary)`` -> a
  matplotlib figure): ``<docs>/<name>.md`` is written whole: the title, the question and claim
  (the module docstring's first paragraph and its ``Claim:`` paragraph), the setup (a table of the
  summary's header: command, dataset, replicates, selection, run time, versions, the rules fixed
  before the run), the results (``table.md``), the figure and "What it shows" (``write_up``). The
  figure is drawn again from the summary (never copied from the PNG the run wrote) and saved as
  ``<figures>/<name>.png`` without the PNG metadata that changes between runs, so two runs give
  the same bytes. Every number in the write-up's prose must be held by the results
  (``scripts/docs_numbers.py`` states the rule); one that is not stops the command before it
  writes anything, naming the number and its sentence.
* **Marked** (no ``write_up``/``figure`` yet): the text between ``<!-- study:<name>:begin -->``
  and ``<!-- study:<name>:end -->`` becomes the command, ``table.md`` and the run's own figure
  (copied); the text around it is kept.

A study without committed results keeps its write-up as it is, which must say "Results not yet
in the repository". ``--check`` writes nothing and exits 1 when a write-up or a figure differs
from what the command would write (or a number is not held).
"""

import argparse
import importlib.util
import io
import json
import os
import sys

import docs_numbers

from wdjax import files

STUDIES = (
    ("tutorial_mlp", "1. The tutorial's MLP, measured"),
    ("lambda_curve", "2. Test accuracy and loss against λ"),
    ("l1_sparsity", "3. L1 and real sparsity"),
    ("decoupling", "4. Decoupled weight decay: learning rate × λ"),
    ("versus_dropout_batchnorm", "5. Weight decay vs dropout vs BatchNorm"),
    ("batchnorm_equilibrium", "6. BatchNorm and rotational equilibrium"),
    ("select_lambda", "7. Choosing λ: cross-validation vs one split"),
    ("overhead", "8. Does weight decay slow training?"),
    ("lambda_scaling", "9. Choosing λ without a grid: the AdamW timescale"),
    ("decay_variants", "10. Decay variants of 2025: cautious decay and AdamC"),
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = "python scripts/studies_docs.py"
NOT_YET = "Results not yet in the repository"
PNG_METADATA = {"Software": None}  # matplotlib's version: the one PNG text that varies by run


def markers(name: str) -> tuple[str, str]:
    return f"<!-- study:{name}:begin -->", f"<!-- study:{name}:end -->"


def study_module(name: str, experiments: str = os.path.join(ROOT, "experiments")):
    """``experiments/<name>.py`` imported by path (None when there is no such file)."""
    path = os.path.join(experiments, f"{name}.py")
    if not os.path.exists(path):
        return None
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_bytes(fig) -> bytes:
    """``fig`` as PNG bytes (laid out tight unless it has a layout engine, 110 dpi, no varying
    metadata), then closed."""
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png", metadata=PNG_METADATA)
    plt.close(fig)
    return buf.getvalue()


def paragraphs(doc: str) -> list[str]:
    """A docstring's paragraphs, each on one line."""
    return [" ".join(p.split()) for p in (doc or "").strip().split("\n\n") if p.strip()]


def claim(module) -> tuple[str, str]:
    """(question, claim): the docstring's first paragraph and its ``Claim:`` paragraph."""
    ps = paragraphs(module.__doc__)
    found = [p.removeprefix("Claim:").strip() for p in ps if p.startswith("Claim:")]
    return (ps[0] if ps else ""), (found[0][:1].upper() + found[0][1:] if found else "")


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def setup_table(summary: dict) -> str:
    """The summary's header as a two-column table (numbers there are settings, not results)."""
    v = summary.get("versions") or {}
    rows = [("command", f"`{summary.get('command', '')}`"),
            ("dataset", summary.get("dataset")), ("replicates", summary.get("replicates")),
            ("selected by", summary.get("selected_by")),
            ("run time", f"{summary.get('seconds', float('nan')):.0f} s"
             + (f" (sweeps {summary['sweep_seconds']:.0f} s)" if "sweep_seconds" in summary
                else "")),
            ("versions", "`" + " · ".join(f"{k} {x}" for k, x in v.items()) + "`")]  # fmt: skip
    rows += [(f"rule: {k}", x) for k, x in (summary.get("rules") or {}).items()]
    lines = ["| setting | value |", "|---|---|"]
    return "\n".join(lines + [f"| {_cell(k)} | {_cell(x)} |" for k, x in rows if x is not None])


def generated(name: str, title: str, module, summary: dict, table: str, fig_rel: str) -> str:
    """The whole write-up of a study on the generated route."""
    question, claimed = claim(module)
    head = [f"# {title}", f"<!-- generated by `{COMMAND}` from results/studies/{name}/; edit "
            f"experiments/{name}.py (write_up, figure), not this file -->"]  # fmt: skip
    head += [f"**Question.** {question}"] if question else []
    head += [f"**Claim.** {claimed}"] if claimed else []
    body = ["## Setup", setup_table(summary), "## Results", table.strip(), f"![{name}]({fig_rel})",
            "## What it shows", module.write_up(summary).strip()]  # fmt: skip
    return "\n\n".join(head + body) + "\n"


def marked(text: str, name: str, summary: dict, table: str, fig_rel: str | None) -> str:
    """A write-up's text with the study's marked region set from its results (appended when
    the markers are absent)."""
    command = summary.get("command") or f"python experiments/{name}.py"
    parts = [f"```bash\n{command}\n```", table.strip()]
    parts += [f"![{name}]({fig_rel})"] if fig_rel else []
    parts.append(f"Produced by `python experiments/{name}.py`; regenerate it with `{COMMAND}`.")
    body = "\n" + "\n\n".join(p for p in parts if p) + "\n"
    begin, end = markers(name)
    if begin in text and end in text:
        i, j = text.index(begin) + len(begin), text.index(end)
        if j < i:
            raise ValueError(f"{name}: the end marker precedes the begin marker")
        return text[:i] + body + text[j:]
    if begin in text or end in text:
        raise ValueError(f"{name}: only one of the two markers is present")
    return text.rstrip("\n") + f"\n\n{begin}{body}{end}\n"


def _read(path: str, mode: str = "r"):
    if not os.path.exists(path):
        return None
    with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
        return f.read()


def plan(args) -> tuple[dict, list[str]]:
    """({path: bytes} the command writes, [problems]) for every study."""
    out, problems = {}, []
    rel = os.path.relpath(args.figures, args.docs).replace(os.sep, "/")
    for name, title in STUDIES:
        d, doc = os.path.join(args.results, name), os.path.join(args.docs, f"{name}.md")
        summary = _read(os.path.join(d, "summary.json"))
        if summary is None:
            if NOT_YET not in (_read(doc) or NOT_YET):
                problems.append(f"{doc}: {name} has no results in {d}; say '{NOT_YET}' in it")
            continue
        summary = json.loads(summary)
        table, fig_path = _read(os.path.join(d, "table.md")) or "", f"{name}.png"
        module = study_module(name, args.experiments)
        if module is not None and hasattr(module, "write_up") and hasattr(module, "figure"):
            text = generated(name, title, module, summary, table, f"{rel}/{fig_path}")
            bad = docs_numbers.unheld(text, d)
            problems += [f"{doc}: {n.text!r} is held by no result in {d}, in: {n.context}"
                         for n in bad]  # fmt: skip
            out[os.path.join(args.figures, fig_path)] = png_bytes(module.figure(summary))
        else:
            run_fig = _read(os.path.join(d, summary.get("figure") or fig_path), "rb")
            if run_fig is not None:
                out[os.path.join(args.figures, fig_path)] = run_fig
            old = _read(doc) or f"# {title}\n"
            text = marked(old, name, summary, table, f"{rel}/{fig_path}" if run_fig else None)
        out[doc] = text.encode("utf-8")
    return out, problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    p.add_argument("--results", default=os.path.join(ROOT, "results", "studies"))
    p.add_argument("--docs", default=os.path.join(ROOT, "docs", "studies"))
    p.add_argument("--figures", default=os.path.join(ROOT, "docs", "figures"))
    p.add_argument("--experiments", default=os.path.join(ROOT, "experiments"))
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if out of date")
    args = p.parse_args(argv)
    out, problems = plan(args)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    stale = sorted(path for path, data in out.items() if _read(path, "rb") != data)
    if args.check:
        for path in stale:
            print(f"{path}: out of date; run {COMMAND}", file=sys.stderr)
        return int(bool(stale))
    for path in stale:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        files.atomic_write_bytes(path, out[path])
    print(f"{COMMAND}: wrote {len(stale)} of {len(out)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
