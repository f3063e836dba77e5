"""scripts/studies_readme.py on a fake results directory and a temporary README."""

import importlib.util
import json
import os

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "studies_readme.py")


@pytest.fixture(scope="module")
def sr():
    spec = importlib.util.spec_from_file_location("studies_readme", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_result(results, name, value):
    d = results / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(
        json.dumps({"figure": "fig.png", "command": f"python experiments/{name}.py --x"})
    )
    (d / "table.md").write_text(f"| a | b |\n|---|---|\n| {value} | 2 |\n")
    (d / "fig.png").write_bytes(b"\x89PNG fake " + name.encode())


def _run(sr, tmp_path, *extra):
    return sr.main(
        ["--results", str(tmp_path / "res"), "--docs", str(tmp_path / "docs" / "studies"),
         "--figures", str(tmp_path / "docs" / "figures"), *extra]
    )  # fmt: skip


WRITEUP = """# 2. λ curve

Human sentence about study 2.

<!-- study:lambda_curve:begin -->
OLD CONTENT
<!-- study:lambda_curve:end -->

tail
"""


def _doc(tmp_path, name):
    return tmp_path / "docs" / "studies" / f"{name}.md"


def test_markers_replaced_and_missing_writeups_created(sr, tmp_path):
    res = tmp_path / "res"
    for name, v in (("lambda_curve", 111), ("tutorial_mlp", 222)):
        _fake_result(res, name, v)
    _doc(tmp_path, "lambda_curve").parent.mkdir(parents=True)
    _doc(tmp_path, "lambda_curve").write_text(WRITEUP)
    assert _run(sr, tmp_path) == 0
    text = _doc(tmp_path, "lambda_curve").read_text()
    assert "OLD CONTENT" not in text and "| 111 | 2 |" in text
    assert text.startswith("# 2. λ curve\n\nHuman sentence about study 2.\n")  # kept
    assert text.rstrip().endswith("tail")
    created = _doc(tmp_path, "tutorial_mlp").read_text()
    assert created.startswith("# 1. The tutorial's MLP, measured\n") and "| 222 | 2 |" in created
    for name in ("tutorial_mlp", "lambda_curve"):
        begin, end = sr.markers(name)
        doc = _doc(tmp_path, name).read_text()
        body = doc[doc.index(begin) : doc.index(end)]
        assert f"python experiments/{name}.py --x" in body
        assert f"![{name}](../figures/{name}.png)" in body
        assert "regenerate it with `python scripts/studies_readme.py`" in body
        fig = tmp_path / "docs" / "figures" / f"{name}.png"
        assert fig.read_bytes() == b"\x89PNG fake " + name.encode()
    assert not _doc(tmp_path, "decoupling").exists()  # no results: no write-up
    # idempotent, and --check agrees
    assert _run(sr, tmp_path, "--check") == 0
    assert _run(sr, tmp_path) == 0
    assert _doc(tmp_path, "lambda_curve").read_text() == text
    # new numbers: --check notices, a rerun rewrites only the marked region
    (res / "lambda_curve" / "table.md").write_text("| a | b |\n|---|---|\n| 999 | 2 |\n")
    assert _run(sr, tmp_path, "--check") == 1
    assert _doc(tmp_path, "lambda_curve").read_text() == text
    _run(sr, tmp_path)
    assert _doc(tmp_path, "lambda_curve").read_text() == text.replace("| 111 |", "| 999 |")


def test_broken_markers_raise(sr):
    begin, _ = sr.markers("overhead")
    with pytest.raises(ValueError, match="overhead"):
        sr.update(f"x\n{begin}\n", "overhead", "body")
