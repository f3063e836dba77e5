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
        ["--results", str(tmp_path / "res"), "--readme", str(tmp_path / "README.md"),
         "--figures", str(tmp_path / "docs" / "figures"), *extra]
    )  # fmt: skip


README = """# proj

intro

## Studies

### 2. λ curve

Human sentence about study 2.

<!-- study:lambda_curve:begin -->
OLD CONTENT
<!-- study:lambda_curve:end -->

## Layout

tail
"""


def test_markers_replaced_and_missing_sections_added(sr, tmp_path):
    res = tmp_path / "res"
    for name, v in (("lambda_curve", 111), ("tutorial_mlp", 222), ("select_lambda", 777)):
        _fake_result(res, name, v)
    (tmp_path / "README.md").write_text(README)
    assert _run(sr, tmp_path) == 0
    text = (tmp_path / "README.md").read_text()
    assert "OLD CONTENT" not in text and "| 111 | 2 |" in text
    assert "Human sentence about study 2." in text  # outside the markers: kept
    assert text.startswith("# proj\n\nintro\n") and text.rstrip().endswith("tail")
    # study 1 goes before study 2, study 7 after it; both inside "## Studies", before "## Layout"
    order = [text.index(s) for s in ("### 1.", "### 2.", "### 7.", "## Layout")]
    assert order == sorted(order)
    for name in ("tutorial_mlp", "lambda_curve", "select_lambda"):
        begin, end = sr.markers(name)
        body = text[text.index(begin) : text.index(end)]
        assert f"python experiments/{name}.py --x" in body
        assert f"![{name}](docs/figures/{name}.png)" in body
        assert "regenerate this section with `python scripts/studies_readme.py`" in body
        fig = tmp_path / "docs" / "figures" / f"{name}.png"
        assert fig.read_bytes() == b"\x89PNG fake " + name.encode()
    assert "decoupling" not in text  # no results: no section
    # idempotent, and --check agrees
    assert _run(sr, tmp_path, "--check") == 0
    assert _run(sr, tmp_path) == 0
    assert (tmp_path / "README.md").read_text() == text
    # new numbers: --check notices, a rerun rewrites only the marked region
    (res / "lambda_curve" / "table.md").write_text("| a | b |\n|---|---|\n| 999 | 2 |\n")
    assert _run(sr, tmp_path, "--check") == 1
    assert (tmp_path / "README.md").read_text() == text
    _run(sr, tmp_path)
    assert (tmp_path / "README.md").read_text() == text.replace("| 111 |", "| 999 |")


def test_studies_heading_created_when_absent(sr, tmp_path):
    _fake_result(tmp_path / "res", "overhead", 8)
    (tmp_path / "README.md").write_text("# proj\n\nno studies yet\n")
    _run(sr, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# proj\n\nno studies yet\n\n## Studies\n\n### 8.")
    assert sr.markers("overhead")[0] in text and "| 8 | 2 |" in text


def test_broken_markers_raise(sr):
    begin, _ = sr.markers("overhead")
    with pytest.raises(ValueError, match="overhead"):
        sr.update(f"x\n{begin}\n", {"overhead": "body"})
