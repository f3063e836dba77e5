"""Regenerate README.md's study sections from the studies' result directories.

Usage: ``python scripts/studies_readme.py [--results results/studies] [--readme README.md]
[--figures docs/figures] [--check]``.

For each study (the issue's order 1..8) whose ``<results>/<name>/summary.json`` exists, the text
between ``<!-- study:<name>:begin -->`` and ``<!-- study:<name>:end -->`` in the README becomes:
the command (``summary["command"]``), the study's ``table.md``, its figure
(``summary["figure"]``, copied to ``<figures>/<name>.png``) and a line saying how it was produced.
Everything outside the markers (the human-written sentence on what a study shows) is kept. A
study without markers gets a new ``### <title>`` section, placed after the previous study's
section (or at the end of a ``## Studies`` section, created at the end of the README if absent).
Studies without results are left as they are. Running it twice changes nothing the second time.
``--check`` writes nothing and exits 1 when the README (or a figure) is out of date.
"""

import argparse
import json
import os
import re
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
        f"Produced by `python experiments/{name}.py`; regenerate this section with "
        "`python scripts/studies_readme.py`."
    )
    return "\n" + "\n\n".join(parts) + "\n"


def _section_start(text: str, begin: str) -> int:
    """Offset of the ``### `` heading above a begin marker (else the marker itself)."""
    i = text.index(begin)
    h = text.rfind("\n### ", 0, i)
    return h + 1 if h >= 0 else i


def _insert_new(text: str, name: str, title: str, body: str) -> str:
    begin, end = markers(name)
    section = f"### {title}\n\n{begin}{body}{end}\n"
    names = [n for n, _ in STUDIES]
    k = names.index(name)
    for prev in reversed(names[:k]):  # right after the previous study's section
        if markers(prev)[1] in text:
            j = text.index(markers(prev)[1]) + len(markers(prev)[1])
            nxt = re.compile(r"^#{2,3} ", re.M).search(text, j)  # its human text ends there
            j = nxt.start() if nxt else len(text)
            return text[:j].rstrip("\n") + "\n\n" + section + "\n" + text[j:].lstrip("\n")
    for later in names[k + 1 :]:  # right before the next study's section
        if markers(later)[0] in text:
            j = _section_start(text, markers(later)[0])
            return text[:j] + section + "\n" + text[j:]
    m = re.search(r"^## Studies[^\n]*\n", text, re.M)
    if m is None:
        return text.rstrip("\n") + "\n\n## Studies\n\n" + section
    nxt = re.compile(r"^## ", re.M).search(text, m.end())
    j = nxt.start() if nxt else len(text)
    return text[:j].rstrip("\n") + "\n\n" + section + ("\n" + text[j:] if nxt else "")


def update(text: str, bodies: dict) -> str:
    """README text with each study's marked region set to ``bodies[name]`` (added if absent)."""
    for name, title in STUDIES:
        if name not in bodies:
            continue
        begin, end = markers(name)
        if begin in text and end in text:
            i, j = text.index(begin) + len(begin), text.index(end)
            if j < i:
                raise ValueError(f"README: the end marker of {name!r} precedes its begin marker")
            text = text[:i] + bodies[name] + text[j:]
        elif begin in text or end in text:
            raise ValueError(f"README: only one of the two markers of {name!r} is present")
        else:
            text = _insert_new(text, name, title, bodies[name])
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    p.add_argument("--results", default=os.path.join(ROOT, "results", "studies"))
    p.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    p.add_argument("--figures", default=os.path.join(ROOT, "docs", "figures"))
    p.add_argument("--check", action="store_true", help="exit 1 if anything is out of date")
    args = p.parse_args(argv)
    readme_dir = os.path.dirname(os.path.abspath(args.readme))
    bodies, copies = {}, []
    for name, _ in STUDIES:
        d = os.path.join(args.results, name)
        if not os.path.exists(os.path.join(d, "summary.json")):
            print(f"{name}: no results in {d}; section left as it is", file=sys.stderr)
            continue
        with open(os.path.join(d, "summary.json")) as f:
            fig = json.load(f).get("figure")
        rel = None
        if fig and os.path.exists(os.path.join(d, fig)):
            dst = os.path.join(args.figures, f"{name}.png")
            copies.append((os.path.join(d, fig), dst))
            rel = os.path.relpath(dst, readme_dir).replace(os.sep, "/")
        bodies[name] = render(name, d, rel)
    with open(args.readme, encoding="utf-8") as f:
        old = f.read()
    new = update(old, bodies)
    stale = [dst for src, dst in copies if not _same(src, dst)]
    if args.check:
        out_of_date = (new != old) or bool(stale)
        print("README out of date" if out_of_date else "README up to date", file=sys.stderr)
        return int(out_of_date)
    for src, dst in copies:
        if dst in stale:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
    if new != old:
        files.atomic_write_bytes(args.readme, new.encode("utf-8"))
    print(f"updated {len(bodies)} study sections in {args.readme}", file=sys.stderr)
    return 0


def _same(a: str, b: str) -> bool:
    if not os.path.exists(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


if __name__ == "__main__":
    sys.exit(main())
