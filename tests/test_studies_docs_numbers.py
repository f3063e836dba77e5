"""The number checker (scripts/docs_numbers.py) on made-up text and fake results, and the worked
example: experiments/lambda_curve.py's write-up from a smoke run passes it and regenerates
byte-identical."""

import copy
import json
import pathlib
import shutil
import sys

import numpy as np
import pytest
from helpers import load_script

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT / "scripts") not in sys.path:  # the generator imports docs_numbers from its folder
    sys.path.insert(0, str(ROOT / "scripts"))
pytestmark = pytest.mark.xdist_group("studies")  # shares the smoke runs (conftest.py)
dn = load_script("scripts/docs_numbers.py")
sd = load_script("scripts/studies_docs.py")


def _texts(markdown):
    return [n.text for n in dn.numbers(markdown)]


def test_only_prose_numbers_count():
    text = """# 2. A title with 2024 and 13

Prose with 0.0203 and −10.4 points, 1,000 images, 4.6e-05 and 0.09–0.10 at 95 % (n = 5).
Names are not numbers: l1, f32, n1000_noise0.2, jax-0.10 stays 0.10.

| 0.777 | table cells do not count |
|---|---|

`0.888` in code, [0.999 in a link](https://x.org/1.234), ![fig 0.555](a/0.444.png)
(Krogh & Hertz 1992, "A simple weight decay", p. 0.333) cites; arXiv:1711.05101 is an id.
<!-- 0.222 in a comment -->

```
0.111 in a block
```
"""
    prose = ["13", "0.0203", "10.4", "1,000", "4.6e-05", "0.09", "0.10", "0.10", "0.10"]
    assert _texts(text) == prose  # jax-0.10: a hyphen is not a letter


def test_number_values_and_precision():
    (a, b, c, d) = dn.numbers("values 0.0203, 1,000, 4.6e-05 and 20 %")
    assert (a.value, a.half) == (0.0203, pytest.approx(5e-5))
    assert (b.value, b.half) == (1000.0, 0.5)
    assert (c.value, c.half) == (pytest.approx(4.6e-5), pytest.approx(5e-7))
    assert d.value == 20.0 and d.percent and not a.percent
    e, f, g = dn.numbers("gains +0.36 [+0.10, +0.61] points")
    assert e.percent and f.percent and g.percent


def test_held_at_the_printed_precision_up_to_sign_and_percent():
    held = [0.02031, -0.104, 1000, 4.64e-05, 0.2, 0.0036]
    ok = ("0.0203 from 0.02031; the interval is −0.104 wide; n = 1,000 images; λ = 4.6e-05; "
          "20 % flipped labels; accuracy gains 0.36 points.")  # fmt: skip
    assert dn.unheld(ok, held=held) == []
    for bad in ("0.0204", "−0.103", "1,001", "4.7e-05", "0.2036", "36 images"):
        (n,) = dn.unheld(f"Made up: {bad}.", held=held)
        assert n.text == bad.lstrip("−").split()[0] and n.context == f"Made up: {bad}."
    assert [n.text for n in dn.unheld("0.36 in prose, no percent", held=held)] == ["0.36"]


def test_values_read_every_committed_file_kind(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"a": [0.5, {"b": -2.25}], "s": "7.75"}))
    arm = tmp_path / "arms" / "wd"
    arm.mkdir(parents=True)
    (arm / "r0.json").write_text(json.dumps({"config": {"val_size": 10000}, "ok": True}))
    np.savez(arm / "r0.npz", val_loss=np.array([[0.3125, np.nan]], np.float32))
    (tmp_path / "table.csv").write_text("x,y\n+0.0203 [0.0100, 0.0300],n=600\n")
    assert dn.values(str(tmp_path)).tolist() == [0.01, 0.0203, 0.03, 0.3125, 0.5, 2.25, 600,
                                                 10000]  # fmt: skip
    bad = dn.unheld("Held: 2.25, 0.312, 10,000, 0.0203. Not held: 7.75.", str(tmp_path))
    assert [n.text for n in bad] == ["7.75"]  # strings in JSON are not results


def test_a_file_git_ignores_is_not_a_result(tmp_path):
    """A run's ignored intermediate (batchnorm_equilibrium's per-unit norms) is absent from a
    fresh clone, so a number only it holds must not pass the check beside the run either."""
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/arms/mechanism/*.npz\n")
    (tmp_path / "summary.json").write_text(json.dumps({"a": 0.5}))
    for arm, value in (("mechanism", 355.0), ("kept", 19.0)):
        (tmp_path / "arms" / arm).mkdir(parents=True)
        np.savez(tmp_path / "arms" / arm / "r0.npz", seconds=np.array([value]))
    assert dn.values(str(tmp_path)).tolist() == [0.5, 19.0]
    assert [n.text for n in dn.unheld("It took 355 s, then 19 more.", str(tmp_path))] == ["355"]


# --- the worked example: lambda_curve -------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(study_smoke, tmp_path_factory):
    """lambda_curve's smoke run (conftest.py's ``study_smoke``, shared with test_experiments.py)
    copied to results/studies/lambda_curve of a temporary folder."""
    lc = load_script("experiments/lambda_curve.py")
    root = tmp_path_factory.mktemp("lc")
    shutil.copytree(study_smoke("lambda_curve")[0], root / "res" / "lambda_curve")
    return lc, root


def _generate(root, *extra):
    return sd.main(["--results", str(root / "res"), "--docs", str(root / "docs" / "studies"),
                    "--figures", str(root / "docs" / "figures"), *extra])  # fmt: skip


def test_lambda_curve_writeup_from_a_smoke_run_is_checked_and_byte_identical(smoke):
    _, root = smoke
    assert _generate(root) == 0  # refuses (1) when a number is not held
    doc = root / "docs" / "studies" / "lambda_curve.md"
    fig = root / "docs" / "figures" / "lambda_curve.png"
    text, png = doc.read_text(), fig.read_bytes()
    assert dn.unheld(text, str(root / "res" / "lambda_curve")) == []
    assert "## What it shows\n\n**Baseline.** λ = 0's validation" in text and "**The U: " in text
    assert "epoch 2 of 2" in text  # the smoke: 2 epochs, validation lowest at the last
    assert _generate(root, "--check") == 0
    doc.unlink()
    fig.unlink()
    assert _generate(root) == 0
    assert doc.read_text() == text and fig.read_bytes() == png


def _grid(summary):
    """The smoke's noisy condition as n = 600 and 1,200 × 0 % and 20 % noise (cosine, noisy
    validation labels), with chosen λ set so that every rule has something to say."""
    c0 = summary["conditions"][0]
    grid = summary["strengths"]
    out = []
    for n, p, pick in ((600, 0.0, 2), (600, 0.2, 2), (1200, 0.0, 1), (1200, 0.2, 0)):
        c = copy.deepcopy(c0)
        c.update(train_size=n, label_noise=p, val_labels="noisy" if p else "clean")
        c["label"] = f"n={n}, noise={p:.0%}, cosine"
        for reg, r in c["regs"].items():
            for x in (r, r["early"]):
                x.update(best_index=pick, best_strength=grid[reg][pick])
        out.append(c)
    return dict(summary, conditions=out)


def test_lambda_curve_writeup_of_a_full_grid_prints_only_held_numbers(smoke, tmp_path):
    lc, root = smoke
    summary = _grid(json.loads((root / "res" / "lambda_curve" / "summary.json").read_text()))
    res = tmp_path / "res"
    res.mkdir()
    (res / "summary.json").write_text(json.dumps(summary))
    text = lc.write_up(summary)
    assert "**Size: reproduced.** The chosen λ as n grows: wd final cosine 31.6 → 0.01; " in text
    assert "**Noise, a larger λ: contradicted;" in text  # the same or a smaller λ with noise
    assert "wd at n=1200, noise=20%, cosine: λ 0.01 → 0, Δ accuracy " in text
    assert "epoch 2 of 2" in text and "The first version (U and size reproduced;" in text
    assert dn.unheld(text, str(res)) == []
    tampered = text.replace("epoch 2 of 2", "epoch 2 of 37", 1)
    assert [n.text for n in dn.unheld(tampered, str(res))] == ["37"]
