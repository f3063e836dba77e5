"""scripts/studies_docs.py on fake results and fake studies, and the committed results' rules:
small, full runs only, un-ignored, and their write-ups up to date."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from helpers import load_script

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT / "scripts") not in sys.path:  # the generator imports docs_numbers from its folder
    sys.path.insert(0, str(ROOT / "scripts"))
sd = load_script("scripts/studies_docs.py")

STUDY = '''"""How big is the effect of x?

Claim: x lowers the loss (Someone 2001).

Command: python experiments/{name}.py
"""

from wdjax import study


def write_up(summary):
    return f"The loss falls by {{summary['drop']:.3f}}{extra}."


def figure(summary):
    plt = study.pyplot()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [summary["drop"], 0.0])
    return fig
'''


def _fake(tmp_path, name, *, drop=0.1234, extra="", module=True, figure=b"\x89PNG run"):
    """A study ``name`` with results (summary ``drop``); a generated-route module unless
    ``module`` is False; ``extra`` is appended to its write-up sentence."""
    d = tmp_path / "res" / name
    d.mkdir(parents=True, exist_ok=True)
    summary = {"drop": drop, "replicates": 5, "dataset": "digits", "figure": "run.png",
               "command": f"python experiments/{name}.py --x", "seconds": 61.0,
               "rules": {"interval": "95 % t"}, "versions": {"jax": "0.10.2"}}  # fmt: skip
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "table.md").write_text(f"| a | b |\n|---|---|\n| {drop} | 2 |\n")
    (d / "run.png").write_bytes(figure)
    exp = tmp_path / "experiments"
    exp.mkdir(exist_ok=True)
    if module:
        (exp / f"{name}.py").write_text(STUDY.format(name=name, extra=extra))
    return d


def _run(tmp_path, *extra):
    return sd.main(
        ["--results", str(tmp_path / "res"), "--docs", str(tmp_path / "docs" / "studies"),
         "--figures", str(tmp_path / "docs" / "figures"),
         "--experiments", str(tmp_path / "experiments"), *extra]
    )  # fmt: skip


def _doc(tmp_path, name):
    return tmp_path / "docs" / "studies" / f"{name}.md"


def _fig(tmp_path, name):
    return tmp_path / "docs" / "figures" / f"{name}.png"


def test_generated_writeup_has_its_parts_and_regenerates_byte_identical(tmp_path):
    _fake(tmp_path, "lambda_curve")
    assert _run(tmp_path) == 0
    text = _doc(tmp_path, "lambda_curve").read_text()
    assert text.startswith("# 2. Test accuracy and loss against λ\n")
    assert "**Question.** How big is the effect of x?" in text
    assert "**Claim.** X lowers the loss (Someone 2001)." in text
    parts = ["## Setup", "`python experiments/lambda_curve.py --x`", "| rule: interval | 95 % t |",
             "## Results", "| 0.1234 | 2 |", "![lambda_curve](../figures/lambda_curve.png)",
             "## What it shows\n\nThe loss falls by 0.123.\n"]  # fmt: skip
    assert [text.index(p) for p in parts] == sorted(text.index(p) for p in parts)
    png = _fig(tmp_path, "lambda_curve").read_bytes()
    assert png.startswith(b"\x89PNG") and png != b"\x89PNG run"  # drawn again, not copied
    assert b"Software" not in png  # no metadata that varies by run
    assert _run(tmp_path, "--check") == 0
    assert _run(tmp_path) == 0
    assert _doc(tmp_path, "lambda_curve").read_text() == text
    assert _fig(tmp_path, "lambda_curve").read_bytes() == png  # byte-identical figure
    _fake(tmp_path, "lambda_curve", drop=0.5)  # new results: --check notices, writes nothing
    assert _run(tmp_path, "--check") == 1
    assert _doc(tmp_path, "lambda_curve").read_text() == text
    assert _run(tmp_path) == 0
    assert "The loss falls by 0.500." in _doc(tmp_path, "lambda_curve").read_text()
    assert _fig(tmp_path, "lambda_curve").read_bytes() != png


def test_png_bytes_are_the_same_for_the_same_figure_and_carry_no_software_text():
    plt = pytest.importorskip("matplotlib.pyplot")

    def draw():
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1, 2], [3, 1, 2])
        return fig

    a, b = sd.png_bytes(draw()), sd.png_bytes(draw())
    assert a == b and b"tEXt" not in a
    fig = draw()
    buf = __import__("io").BytesIO()
    fig.savefig(buf, dpi=110, format="png")  # matplotlib's default writes its version
    assert b"Software" in buf.getvalue()


def test_a_writeup_citing_a_number_no_result_holds_stops_the_command(tmp_path, capsys):
    _fake(tmp_path, "lambda_curve", extra=", from 0.4321")
    assert _run(tmp_path) == 1
    err = capsys.readouterr().err
    assert "'0.4321' is held by no result" in err and "The loss falls by 0.123, from 0.4321" in err
    assert not _doc(tmp_path, "lambda_curve").exists()  # nothing written
    assert _run(tmp_path, "--check") == 1


def test_marked_route_replaces_only_the_marked_region(tmp_path):
    _fake(tmp_path, "tutorial_mlp", module=False, drop=111)
    _fake(tmp_path, "overhead", module=False, drop=222)
    doc = _doc(tmp_path, "tutorial_mlp")
    doc.parent.mkdir(parents=True)
    begin, end = sd.markers("tutorial_mlp")
    doc.write_text(f"# 1. MLP\n\nHuman text.\n\n{begin}\nOLD\n{end}\n\ntail\n")
    assert _run(tmp_path) == 0
    text = doc.read_text()
    assert text.startswith("# 1. MLP\n\nHuman text.\n") and text.rstrip().endswith("tail")
    assert "OLD" not in text and "| 111 | 2 |" in text
    assert f"regenerate it with `{sd.COMMAND}`" in text
    assert _fig(tmp_path, "tutorial_mlp").read_bytes() == b"\x89PNG run"  # the run's own figure
    created = _doc(tmp_path, "overhead").read_text()  # no write-up yet: created, markers appended
    assert (
        created.startswith("# 8. Does weight decay slow training?\n") and "| 222 | 2 |" in created
    )
    assert _run(tmp_path, "--check") == 0


def test_a_writeup_without_results_must_say_so(tmp_path, capsys):
    doc = _doc(tmp_path, "decoupling")
    doc.parent.mkdir(parents=True)
    doc.write_text("# 4. Decoupling\n\nNumbers from somewhere.\n")
    (tmp_path / "res").mkdir()
    assert _run(tmp_path, "--check") == 1
    assert f"say '{sd.NOT_YET}'" in capsys.readouterr().err
    doc.write_text(f"# 4. Decoupling\n\n> **{sd.NOT_YET}.**\n")
    assert _run(tmp_path, "--check") == 0 and _run(tmp_path) == 0
    assert doc.read_text() == f"# 4. Decoupling\n\n> **{sd.NOT_YET}.**\n"  # kept as it is


def test_broken_markers_raise():
    begin, _ = sd.markers("overhead")
    with pytest.raises(ValueError, match="overhead"):
        sd.marked(f"x\n{begin}\n", "overhead", {}, "", None)


# --- the committed results ------------------------------------------------------------------

MB = 1 << 20


def oversized(folder, per_file=5 * MB, total=50 * MB, files=None) -> list[str]:
    """The files over ``per_file`` bytes under ``folder`` (or among ``files``), and the folder if
    over ``total``."""
    files = pathlib.Path(folder).rglob("*") if files is None else files
    sizes = {p: p.stat().st_size for p in files if p.is_file()}
    big = [f"{p} is {s / MB:.1f} MB (over {per_file / MB:g})" for p, s in sizes.items()
           if s > per_file]  # fmt: skip
    if sum(sizes.values()) > total:
        big.append(f"{folder} holds {sum(sizes.values()) / MB:.1f} MB (over {total / MB:g})")
    return big


def test_the_size_rule_flags_a_big_file_and_a_big_folder(tmp_path):
    for i, size in enumerate((5 * MB, 5 * MB + 1, 3 * MB)):
        with open(tmp_path / f"f{i}", "wb") as f:
            f.truncate(size)
    assert oversized(tmp_path, total=100 * MB) == [f"{tmp_path / 'f1'} is 5.0 MB (over 5)"]
    assert oversized(tmp_path, per_file=6 * MB, total=12 * MB) == [
        f"{tmp_path} holds 13.0 MB (over 12)"
    ]


def committed(folder) -> list | None:
    """The files git tracks (or has staged) under ``folder``; None outside a git checkout. An
    ignored intermediate a run leaves there (.gitignore) is not committed, so it does not count."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--", str(folder)],
                             capture_output=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_committed_study_results_are_small():
    folder = ROOT / "results" / "studies"
    assert not folder.exists() or oversized(folder, files=committed(folder)) == []


def test_committed_study_results_are_full_runs():
    for path in sorted((ROOT / "results" / "studies").glob("*/summary.json")):
        assert "--smoke" not in json.loads(path.read_text()).get("command", ""), path


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="not a git checkout")  # fmt: skip
def test_only_results_studies_is_unignored():
    def ignored(path):
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert ignored("results/20260101-000000/summary.json") and ignored("results/bench.json")
    assert not ignored("results/studies/lambda_curve/summary.json")
    assert not ignored("results/studies/lambda_curve/arms/n1000_noise0_wd/r0.npz")


def test_committed_writeups_are_up_to_date():
    """The one command's ``--check`` on the repository itself: every write-up with committed
    results regenerates byte-identical (figures included), every other says it has none."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "studies_docs.py"), "--check"],
                         cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
