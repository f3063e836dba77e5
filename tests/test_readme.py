"""README stays short with its two commands; docs/sweeps.md's "Bring your own model and optimizer"
examples run as written."""

import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SWEEPS = ROOT / "docs" / "sweeps.md"


def _examples() -> list[str]:
    text = SWEEPS.read_text()
    section = text.split("## Bring your own model and optimizer")[1].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_its_three_examples():
    assert len(_examples()) == 3


@pytest.mark.parametrize("index", [0, 1, 2], ids=["nnx", "linen_lion", "ask_tell"])
def test_example_runs_as_written(index, capsys):
    code = _examples()[index]
    if "import optuna" in code and importlib.util.find_spec("optuna") is None:
        pytest.skip("optuna not installed (optional 'tune' extra)")
    exec(compile(code, f"docs/sweeps.md example {index}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    assert printed.strip(), "an example prints its result"


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200
    commands = [i for i, line in enumerate(lines) if line.startswith("python3 -m venv .venv && ")]
    assert len(commands) == 2  # the main job first, then the test line .ci/run greps
    assert "-m wdjax sweep" in lines[commands[0]]
    ci = (ROOT / ".ci" / "run").read_text()
    pattern = re.search(r"grep -m1 -E '([^']+)' README.md", ci).group(1)
    assert re.match(pattern, lines[commands[1]])
    assert lines[commands[1]].endswith("-m pytest -n 2 --dist loadgroup tests")  # both cores


def test_every_relative_link_in_readme_and_docs_resolves():
    for page in [README, *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: {target}"


def test_the_adamw_line_equals_optax_adamw_with_the_decay_mask():
    """README: ``make_optimizer("adam", ..., reg="wd", ...)  # == optax.adamw(..., mask=...)``;
    wdjax never decays biases, so plain ``optax.adamw`` (which decays every leaf) is not it."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import wdjax

    line = re.search(r"^\w+ = (wdjax\.make_optimizer\(.*?\))\s+# == (optax\.adamw\(.*\))$",
                     README.read_text(), flags=re.M)  # fmt: skip
    assert line, "README's make_optimizer(...) # == optax.adamw(...) line"
    scope = {"wdjax": wdjax, "optax": optax}
    ours, theirs = (eval(expr, scope) for expr in line.groups())
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(0), 4)
        params = {"dense_0": {"kernel": jax.random.normal(keys[0], (5, 4), jnp.float64),
                              "bias": jax.random.normal(keys[1], (4,), jnp.float64)},
                  "head": {"kernel": jax.random.normal(keys[2], (4, 3), jnp.float64),
                           "bias": jnp.ones(3, jnp.float64)}}  # fmt: skip

        def run(tx, steps=5):
            p, state = params, tx.init(params)
            for t in range(steps):  # a gradient that changes with the step and the parameters
                g = jax.tree.map(lambda w, t=t: jnp.sin(w * (t + 1)) + 0.1 * w, p)
                u, state = tx.update(g, state, p)
                p = optax.apply_updates(p, u)
            return p

        got, want = run(ours), run(theirs)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(a, b)  # the same ops in the same order: bit equal
        plain = run(optax.adamw(1e-3, weight_decay=1e-4))
        assert not np.array_equal(plain["head"]["bias"], got["head"]["bias"])
