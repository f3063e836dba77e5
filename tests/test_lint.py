"""The codebase passes ruff (configured in pyproject.toml)."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ruff():
    exe = pathlib.Path(sys.executable).with_name("ruff")
    return str(exe) if exe.exists() else shutil.which("ruff")


@pytest.mark.skipif(_ruff() is None, reason="ruff not installed (pip install -e '.[test]')")
def test_ruff_check_passes():
    out = subprocess.run([_ruff(), "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_sweep_orchestration_stays_short():
    """``runner.sweep`` reads top to bottom: at most 60 lines, docstring included."""
    import inspect

    from wdjax.run import runner

    assert len(inspect.getsource(runner.sweep).splitlines()) <= 60


def _wdjax_imports(path: pathlib.Path) -> set[str]:
    """The wdjax modules and packages a file imports (``from wdjax.x import y`` -> ``wdjax.x``,
    ``from wdjax import x`` -> ``wdjax.x``), at any depth of the file (lazy imports count)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wdjax"):
            found |= {f"{node.module}.{a.name}" if node.module == "wdjax" else node.module
                      for a in node.names}  # fmt: skip
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("wdjax")}
    return found


# Each layer and what it may import (besides itself): arrows point one way.
LAYERS = {
    "core": set(),
    "data": {"core"},
    "engine": {"core"},
    "analysis": {"core"},
    "run": {"core", "data", "engine", "analysis"},
    "study": {"core", "data", "engine", "analysis", "run"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def test_layers_import_only_the_layers_below_them():
    package = ROOT / "wdjax"
    wrong = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if rel.name in ("__init__", "__main__") and rel.parent == pathlib.Path("wdjax"):
            continue  # the public API re-exports every layer; __main__ is the CLI's entry
        layer = _layer(".".join(rel.parts))
        for imported in _wdjax_imports(path):
            other = _layer(imported)
            if other != layer and other not in LAYERS[layer]:
                wrong.append(f"{rel} ({layer}) imports {imported} ({other})")
    assert not wrong, "\n".join(wrong)


def test_no_library_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "wdjax").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}  # fmt: skip
    assert not long, long


FORBIDDEN = ("wdjax.run.runner", "wdjax.engine.programs", "wdjax.engine.devices",
             "wdjax.engine.compile_cache")  # fmt: skip


def test_studies_are_short_scripts_on_the_public_toolkit():
    """Each study: ≤ 250 lines, a module docstring of ≤ 20 lines, nothing from the runner, the
    programs, the devices or the compile cache, and no private name of the library."""
    import ast

    wrong = []
    for path in sorted((ROOT / "experiments").glob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        doc = ast.get_docstring(tree, clean=False) or ""
        if len(text.splitlines()) > 250 or len(doc.splitlines()) > 20:
            wrong.append(
                f"{path.name}: {len(text.splitlines())} lines, docstring {len(doc.splitlines())}"
            )
        for imported in _wdjax_imports(path):
            if imported.startswith(FORBIDDEN) or any(
                p.startswith("_") for p in imported.split(".")
            ):
                wrong.append(f"{path.name} imports {imported}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wdjax"):
                wrong += [
                    f"{path.name} imports {a.name}" for a in node.names if a.name.startswith("_")
                ]
    assert not wrong, "\n".join(wrong)


def test_every_public_name_resolves():
    import wdjax

    missing = [name for name in wdjax.__all__ if not hasattr(wdjax, name)]
    assert not missing, missing
