"""wdjax.plots: figures from a run directory, coloured by λ, titled from config.json."""

import os
import stat

import matplotlib.colors as mcolors
import numpy as np
import pytest

from wdjax import files
from wdjax.analysis import plots

STRENGTHS = (0.0, 1e-5, 1e-3, 1e-1)
LRS = (1e-3, 1e-2)
CONFIG = dict(dataset="fashion_mnist", model="cnn", optimizer="sgd", reg="l2", strengths=STRENGTHS,
              lrs=LRS, seeds=3, folds=1, epochs=4)  # fmt: skip


def members(strengths=STRENGTHS, lrs=LRS, seeds=3):
    keys = [(s, lr, seed) for s in strengths for lr in lrs for seed in range(seeds)]
    return [dict(member=m, strength=s, lr=lr, seed=seed, fold=0) for m, (s, lr, seed) in
            enumerate(keys)]  # fmt: skip


def make_run(path, strengths=STRENGTHS, config=CONFIG, epochs=4):
    """A run directory holding metrics.csv (and config.json unless ``config`` is None)."""
    ms = members(strengths)
    k = len(ms)
    s = np.array([m["strength"] for m in ms])[:, None]
    curve = 0.2 + s + 1.0 / np.arange(1, epochs + 1)[None, :] + 0.01 * (np.arange(k) % 3)[:, None]
    h = dict(train_loss=curve, val_loss=curve * 1.1, val_acc=1 - curve / 3, test_loss=curve * 1.2,
             test_acc=1 - curve / 2.5, diverged=np.zeros((k, epochs), bool))  # fmt: skip
    h["diverged"][-1, -1] = True
    os.makedirs(path, exist_ok=True)
    files.write_csv(os.path.join(path, "metrics.csv"), files.metric_rows(ms, h))
    if config is not None:
        files.write_json(os.path.join(path, "config.json"), config)
    return str(path)


def rows_and_config(run_dir):
    return files.read_csv(os.path.join(run_dir, "metrics.csv")), plots.read_config(run_dir)


def test_sweep_figures_are_written_readable(tmp_path):
    run = make_run(tmp_path / "run")
    paths = plots.sweep_figures(run)
    assert [os.path.basename(p) for p in paths] == ["accuracy_vs_strength.png", "curves.png"]
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask
    assert not [f for f in os.listdir(run) if f.startswith(".tmp")]


def test_curves_are_one_line_per_setting_coloured_by_log_lambda(tmp_path):
    fig = plots.curves_figure(*rows_and_config(make_run(tmp_path)))
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(axes) == 3 and len(bars) == 1
    assert bars[0].get_yscale() == "log"
    np.testing.assert_allclose(bars[0].get_ylim(), (1e-5, 1e-1))
    lines = axes[0].get_lines()
    assert len(lines) == len(STRENGTHS) * len(LRS)  # means over 3 seeds, not 24 members
    black = [ln for ln in lines if mcolors.to_rgba(ln.get_color()) == mcolors.to_rgba("black")]
    assert len(black) == len(LRS)  # λ = 0, once per learning rate
    assert {ln.get_linestyle() for ln in lines} == {"-", "--"}
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert legend[0].startswith("λ = 0") and "lr=0.01" in legend


def test_curve_means_leave_out_diverged_members(tmp_path):
    rows, _ = rows_and_config(make_run(tmp_path))
    curves = plots.setting_curves(rows, "val_loss")
    ep, mean = curves[(0.1, 0.01)]
    last = [r["val_loss"] for r in rows if r["strength"] == 0.1 and r["lr"] == 0.01
            and r["epoch"] == 4 and not r["diverged"]]  # fmt: skip
    assert list(ep) == [1, 2, 3, 4] and len(last) == 2
    assert mean[-1] == pytest.approx(np.mean(last))


@pytest.mark.parametrize("make", [plots.curves_figure, plots.strength_figure])
def test_titles_name_the_run_from_its_config(tmp_path, make):
    title = make(*rows_and_config(make_run(tmp_path))).get_suptitle()
    for word in ("fashion_mnist", "cnn", "sgd", "reg=l2", "0.001", "0.01", "3 seeds"):
        assert word in title
    untitled = make(
        *rows_and_config(make_run(tmp_path / "my_run", config=None)), str(tmp_path / "my_run")
    )
    assert "my_run" in untitled.get_suptitle()


def test_no_colour_bar_without_a_positive_lambda(tmp_path):
    run = make_run(tmp_path, strengths=(0.0,), config=dict(CONFIG, strengths=(0.0,)))
    fig = plots.curves_figure(*rows_and_config(run))
    assert [ax.get_label() for ax in fig.axes].count("<colorbar>") == 0
    assert plots.strength_norm([0.0]) is None
    norm = plots.strength_norm([0.0, 1e-3])
    assert norm.vmin < 1e-3 < norm.vmax  # one λ: a decade wide around it


def test_strength_figure_keeps_lambda_zero_as_a_reference_line(tmp_path):
    fig = plots.strength_figure(*rows_and_config(make_run(tmp_path)))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    rows, _ = rows_and_config(make_run(tmp_path))
    for lr in LRS:
        (line,) = [ln for ln in ax.get_lines() if ln.get_label() == f"λ=0, lr={lr:g}"]
        final = [r["test_acc"] for r in rows if r["strength"] == 0 and r["lr"] == lr
                 and r["epoch"] == 4]  # fmt: skip
        assert len(final) == 3 and line.get_xdata()[0] <= 1e-5  # spans the axis: axhline
        np.testing.assert_allclose(line.get_ydata(), np.mean(final))


def test_mean_std_by_leaves_out_non_finite_values():
    rows = [dict(x=1, y=v, g="a") for v in (1.0, 2.0, 3.0, float("nan"))]
    xs, mean, std, n = plots.mean_std_by(rows, "x", "y", "g")["a"]
    assert list(xs) == [1] and mean[0] == 2.0 and std[0] == 1.0 and n[0] == 3
