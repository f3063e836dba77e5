"""The one builder: every bad argument refused before any data load, compile or file, in the
argument names a Python user typed (issue 22, item 6 and defects 2-6)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdjax
from wdjax import data as D
from wdjax import masks
from wdjax.engine import programs
from wdjax.factories import Strategy, WithMask
from wdjax.run import cli, runner
from wdjax.run.build import build, validate
from wdjax.run.cli import error_line
from wdjax.run.config import ConfigError, SweepConfig, parse_grid

TINY = SweepConfig(hidden=(8,), epochs=1, batch_size=32, train_size=64, val_size=32,
                   strengths=(1e-3,), lrs=(1e-2,))  # fmt: skip


@pytest.fixture
def no_work(monkeypatch):
    """Fail on any data load or compile: refusals must come before both."""

    def forbidden(*a, **k):
        raise AssertionError("work started despite bad input")

    monkeypatch.setattr(D, "load", forbidden)
    monkeypatch.setattr(programs, "get", forbidden)


def _refused(argument: str, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        runner.sweep(TINY, **kw)
    assert e.value.argument == argument and str(e.value).startswith(f"{argument}: "), str(e.value)
    return str(e.value)


def test_sweep_errors_name_the_python_argument_not_the_flag(tmp_path, no_work):
    (tmp_path / "file").write_text("")
    assert "is a file" in _refused("out", out=str(tmp_path / "file"))
    _refused("checkpoint_every", checkpoint_every="x")
    _refused("strengths", strengths=(-1.0,))
    _refused("momentum", optimizer="momentum", momentum=1.5)
    _refused("dataset", dataset="imagenet_nope")


def test_the_command_line_maps_each_argument_to_its_flag_from_the_declarations():
    pairs = [("strengths", "--strength"), ("lrs", "--lr"), ("out", "--out"),
             ("checkpoint_every", "--checkpoint-every"), ("axes", "--set")]  # fmt: skip
    for argument, flag in pairs:
        err = ConfigError(f"{argument}: bad", argument)
        assert error_line(err) == f"error: {flag}: bad"
    assert error_line(ConfigError("no argument: kept")) == "error: no argument: kept"


def test_a_mask_that_selects_nothing_is_refused_before_the_data_and_leaves_no_folder(
    tmp_path, no_work
):
    out = tmp_path / "run"
    text = _refused("mask", mask="nomatch", out=str(out))
    assert "selects no leaf" in text
    assert not out.exists()


def test_cli_mask_nomatch_is_one_error_line_exit_2_and_out_untouched(tmp_path, capsys, no_work):
    out = tmp_path / "run"
    code = cli.main(["sweep", "--mask", "nomatch", "--out", str(out), "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --mask: ") and err.count("\n") == 1, err
    assert not out.exists()


def test_a_factory_without_mask_and_a_non_default_mask_is_refused(no_work):
    def factory(learning_rate, strength):
        return optax.chain(optax.add_decayed_weights(strength), optax.sgd(learning_rate))

    text = _refused("mask", optimizer=factory, mask="dense_0/kernel")
    assert "takes no mask keyword" in text


def test_a_factory_that_takes_mask_receives_the_configs_mask():
    def factory(learning_rate, strength, mask=None):  # decoupled decay on the masked leaves
        return optax.chain(optax.add_decayed_weights(strength, mask), optax.sgd(learning_rate))

    cfg = dataclasses.replace(TINY, optimizer=factory, mask="head/kernel")
    built = build(cfg)
    assert built.optimizer == WithMask(factory, "head/kernel")
    params = {"dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
              "head": {"kernel": jnp.full((3, 2), 2.0), "bias": jnp.ones(2)}}  # fmt: skip
    tx = built.optimizer(0.5, 0.1)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    # u = -lr * λ * w on the selected leaf (head/kernel) only: -0.5 * 0.1 * 2 = -0.1
    np.testing.assert_allclose(updates["head"]["kernel"], np.full((3, 2), -0.1), rtol=1e-6)
    for leaf in (updates["dense_0"]["kernel"], updates["dense_0"]["bias"], updates["head"]["bias"]):
        np.testing.assert_array_equal(leaf, 0.0)


def test_a_factory_using_a_traced_hyperparameter_as_a_python_value_is_named(no_work):
    def factory(learning_rate, strength):
        schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, 10, 100)
        return optax.adamw(schedule, weight_decay=strength)

    text = _refused("optimizer", optimizer=factory)
    assert "as a Python value" in text and "schedule=" in text


def test_a_descending_range_is_refused_with_the_ascending_one(capsys, tmp_path, no_work):
    with pytest.raises(ConfigError) as e:
        parse_grid("1e-1:1e-6:8", "strengths")
    assert str(e.value) == "strengths: the range 1e-1:1e-6:8 descends; write it ascending, " \
                           "1e-6:1e-1:8"  # fmt: skip
    code = cli.main(["sweep", "--strength", "1e-1:1e-6:8", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --strength: the range 1e-1:1e-6:8 descends")
    assert "(1e-06, 0.1)" in _refused("strengths", strengths=(1e-1, 1e-6))
    assert not (tmp_path / "r").exists()


def test_the_mask_default_is_spelled_once():
    assert SweepConfig().mask == Strategy("adam", "wd").mask == masks.DEFAULT_MASK


def test_validate_and_sweep_build_the_engine_the_sweep_compiles(monkeypatch):
    seen = {}

    def capture(engine, *a, **k):
        seen["engine"] = engine
        raise KeyboardInterrupt  # stop before compiling

    monkeypatch.setattr(programs, "fit", capture)
    cfg = dataclasses.replace(TINY, schedule="cosine", warmup_epochs=0.5)
    with pytest.raises(KeyboardInterrupt):
        runner.sweep(cfg)
    ds = D.load(cfg.dataset, train_size=cfg.train_size, val_size=cfg.val_size)
    expected = build(cfg, num_classes=ds.num_classes, x_example=ds.x_train[:1],
                     steps_per_epoch=cfg.train_size // cfg.batch_size).engine  # fmt: skip
    assert seen["engine"] == expected
    assert validate(cfg).engine.model == expected.model


def test_wdjax_build_is_not_a_second_path():
    assert not hasattr(wdjax.Engine, "from_config")
