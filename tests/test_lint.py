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
