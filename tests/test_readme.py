"""README's "Bring your own model and optimizer" examples run as written."""

import importlib.util
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _examples() -> list[str]:
    text = README.read_text()
    section = text.split("## Bring your own model and optimizer")[1].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_its_three_examples():
    assert len(_examples()) == 3


@pytest.mark.parametrize("index", [0, 1, 2], ids=["nnx", "linen_lion", "ask_tell"])
def test_example_runs_as_written(index, capsys):
    code = _examples()[index]
    if "import optuna" in code and importlib.util.find_spec("optuna") is None:
        pytest.skip("optuna not installed (optional 'tune' extra)")
    exec(compile(code, f"README example {index}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    assert printed.strip(), "an example prints its result"
