"""The `numerics` marker is on exactly the tests docs/testing.md lists (measured by
.ci/numerics_bits.py), and no module marks all its tests at once."""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _marked() -> set[str]:
    found = set()
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and "pytestmark" in ast.unparse(node.targets[0]):
                assert "numerics" not in ast.unparse(node.value), f"{path.name}: module-wide mark"
            if isinstance(node, ast.FunctionDef):
                if any(ast.unparse(d) == "pytest.mark.numerics" for d in node.decorator_list):
                    found.add(f"{path.name}::{node.name}")
    return found


def test_the_numerics_marker_is_on_the_tests_docs_testing_lists():
    doc = (ROOT / "docs" / "testing.md").read_text()
    section = doc.split("<!-- numerics list -->")[1]
    listed = set(re.findall(r"^- `(test_\w+\.py::test_\w+)`", section, flags=re.M))
    marked = _marked()
    assert listed, "docs/testing.md lists no numerics tests"
    assert marked == listed, (
        f"marked, not listed: {sorted(marked - listed)}; listed, not marked: "
        f"{sorted(listed - marked)} (run .ci/numerics_bits.py; docs/testing.md)"
    )
