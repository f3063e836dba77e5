"""Regenerate the studies' write-ups in docs/studies/ from their result directories.

Usage: ``python scripts/studies_readme.py [--results results/studies] [--docs docs/studies]
[--figures docs/figures] [--check]``.

For each study whose ``<results>/<name>/summary.json`` exists, the text between
``<!-- study:<name>:begin -->`` and ``<!-- study:<name>:end -->`` in ``<docs>/<name>.md`` becomes:
the command (``summary["command"]``), the study's ``table.md``, its figure (``summary["figure"]``,
copied to ``<figures>/<name>.png``) and a line saying how it was produced. Everything outside the
markers (the human-written text on what a study shows) is kept; a write-up without markers gets
them appended, a missing write-up is created with the study's title. Studies without results are
left as they are. Running it twice changes nothing the second time. ``--check`` writes nothing and
exits 1 when a write-up (or a figure) is out of date.
"""

import argparse
import json
import os
import shutil
import sys

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
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def markers(name: str) -> tuple[str, str]:
    return f"<!-- study:{name}:begin -->", f"<!-- study:{name}:end -->"


def render(name: str, result_dir: str, figure_rel: str | None) -> str:
    """The text between a study's markers (without the markers)."""
    with open(os.path.join(result_dir, "summary.json")) as f:
        summary = json.load(f)
    command = summary.get("command") or f"python experiments/{name}.py"
    parts = [f"```bash\n{command}\n```"]
    table = os.path.join(result_dir, "table.md")
    if os.path.exists(table):
        with open(table) as f:
            parts.append(f.read().strip())
    if figure_rel:
        parts.append(f"![{name}]({figure_rel})")
    parts.append(
        f"Produced by `python experiments/{name}.py`; regenerate it with "
        "`python scripts/studies_readme.py`."
    )
    return "\n" + "\n\n".join(parts) + "\n"


def update(text: str, name: str, body: str) -> str:
    """A write-up's text with the study's marked region set to ``body`` (appended if absent)."""
    begin, end = markers(name)
    if begin in text and end in text:
        i, j = text.index(begin) + len(begin), text.index(end)
        if j < i:
            raise ValueError(f"{name}: the end marker precedes the begin marker")
        return text[:i] + body + text[j:]
    if begin in text or end in text:
        raise ValueError(f"{name}: only one of the two markers is present")
    return text.rstrip("\n") + f"\n\n{begin}{body}{end}\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    p.add_argument("--results", default=os.path.join(ROOT, "results", "studies"))
    p.add_argument("--docs", default=os.path.join(ROOT, "docs", "studies"))
    p.add_argument("--figures", default=os.path.join(ROOT, "docs", "figures"))
    p.add_argument("--check", action="store_true", help="exit 1 if anything is out of date")
    args = p.parse_args(argv)
    writes, copies = {}, []
    for name, title in STUDIES:
        d = os.path.join(args.results, name)
        if not os.path.exists(os.path.join(d, "summary.json")):
            print(f"{name}: no results in {d}; write-up left as it is", file=sys.stderr)
            continue
        with open(os.path.join(d, "summary.json")) as f:
            fig = json.load(f).get("figure")
        rel = None
        if fig and os.path.exists(os.path.join(d, fig)):
            dst = os.path.join(args.figures, f"{name}.png")
            copies.append((os.path.join(d, fig), dst))
            rel = os.path.relpath(dst, args.docs).replace(os.sep, "/")
        path = os.path.join(args.docs, f"{name}.md")
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else f"# {title}\n"
        new = update(old, name, render(name, d, rel))
        if new != old:
            writes[path] = new
    stale = [dst for src, dst in copies if not _same(src, dst)]
    if args.check:
        out_of_date = bool(writes) or bool(stale)
        print("write-ups out of date" if out_of_date else "write-ups up to date", file=sys.stderr)
        return int(out_of_date)
    for src, dst in copies:
        if dst in stale:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
    for path, text in writes.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        files.atomic_write_bytes(path, text.encode("utf-8"))
    print(f"updated {len(writes)} write-ups in {args.docs}", file=sys.stderr)
    return 0


def _same(a: str, b: str) -> bool:
    if not os.path.exists(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


if __name__ == "__main__":
    sys.exit(main())
