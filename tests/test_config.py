"""SweepConfig: every bad setting is refused before any work, with its flag in the message."""

import json

import pytest

from wdjax.engine import programs
from wdjax.run import runner as S
from wdjax.run.build import validate
from wdjax.run.config import ConfigError, SweepConfig, parse_grid

BASE = SweepConfig(epochs=2, batch_size=64, strengths=(1e-4,), lrs=(1e-2,), seeds=1)


@pytest.mark.parametrize(
    "overrides, flag",
    [
        (dict(strengths=()), "strengths"),
        (dict(strengths=(-1.0,)), "strengths"),
        (dict(lrs=(float("nan"),)), "lrs"),
        (dict(lrs=(0.0,)), "lrs"),
        (dict(model="vgg"), "model"),
        (dict(reg="l3"), "reg"),
        (dict(optimizer="lion"), "optimizer"),
        (dict(dataset="imagenet_nope"), "dataset"),
        (dict(batch_size=100_000), "batch_size"),
        (dict(seeds=0), "seeds"),
        (dict(label_noise=1.5), "label_noise"),
        (dict(reg="none", strengths=(0.0, 1e-3)), "strengths"),
    ],
)
def test_bad_input_fails_before_compiling(monkeypatch, overrides, flag):
    def no_compile(*a, **k):
        raise AssertionError("compiled despite bad input")

    monkeypatch.setattr(programs, "get", no_compile)
    with pytest.raises(ConfigError) as e:
        S.sweep(BASE, **overrides)
    assert str(e.value).startswith(flag + ":") and e.value.argument == flag, str(e.value)


def test_parse_grid_lists_and_log_ranges():
    assert parse_grid("0,1e-3", "strengths") == (0.0, 1e-3)
    g = parse_grid("1e-6:1e-1:6", "strengths")
    assert len(g) == 6 and g[0] == pytest.approx(1e-6) and g[-1] == pytest.approx(1e-1)
    assert g[1] / g[0] == pytest.approx(10.0)
    assert parse_grid("0, 1e-2:1e-1:2", "strengths") == pytest.approx((0.0, 1e-2, 1e-1))
    for bad in ("", "a", "1e-6:1e-1", "0:1:3", "1e-3:1e-1:0", "1e-1:1e-3:3"):
        with pytest.raises(ConfigError, match="^strengths: "):
            parse_grid(bad, "strengths")


def test_config_round_trips_through_json():
    cfg = SweepConfig(hidden=(8, 4), strengths=(0.0, 1e-3), lrs=(1e-2,), train_size=100)
    assert SweepConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg


def test_every_message_starts_with_the_field_it_names():
    cases = {"dropout": dict(dropout=1.5), "hidden": dict(hidden=(0,)),
             "momentum": dict(optimizer="momentum", momentum=1.0),
             "l1_ratio": dict(reg="elastic_net_prox", l1_ratio=2.0),
             "val_size": dict(val_size=-1), "train_size": dict(train_size=0),
             "chunk_size": dict(chunk_size=0), "dtype": dict(dtype="float16"),
             "warmup_epochs": dict(schedule="cosine", warmup_epochs=10.0),
             "schedule": dict(schedule="linear"), "axes": dict(axes=(("b9", (0.5,)),)),
             "data_seed": dict(data_seed=1.5)}  # fmt: skip
    for field, overrides in cases.items():
        with pytest.raises(ConfigError) as e:
            validate(SweepConfig(**overrides))
        assert str(e.value).startswith(field + ":"), (field, str(e.value))
        assert e.value.argument == field
