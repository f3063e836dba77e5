"""sweep()'s hooks: record=, init_params=, parameter groups (optax.multi_transform), evaluate.

Checked against update rules written out (SGD: w' = w − lr·g) and standalone optax runs fed the
recorded gradients, never against the hooks themselves."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdjax
from wdjax.engine import programs
from wdjax.engine.engine import Engine
from wdjax.run import hooks
from wdjax.run.config import ConfigError, SweepConfig

CFG = SweepConfig(epochs=2, batch_size=256, strengths=(0.0,), lrs=(1e-2, 1e-1), seeds=1,
                  optimizer="sgd", reg="none", hidden=(16,))  # fmt: skip


def trees(before, after, grads, batch_stats):
    """Whole trees: enough to check the step rule leaf by leaf."""
    del batch_stats
    return {"before": before, "after": after, "grads": grads}


def flat_trees(before, after, grads, batch_stats):
    out = {}
    for name, t in trees(before, after, grads, batch_stats).items():
        for path, x in jax.tree_util.tree_flatten_with_path(t)[0]:
            out[f"{name}:{jax.tree_util.keystr(path, simple=True, separator='/')}"] = x
    return out


def norms(before, after, grads, batch_stats):
    def sq(t):
        return sum(jnp.sum(x**2) for x in jax.tree.leaves(t))

    moved = jax.tree.map(jnp.subtract, after, before)
    return {"grad_norm": jnp.sqrt(sq(grads)), "moved": jnp.sqrt(sq(moved))}


@pytest.mark.numerics
def test_record_every_step_sees_the_sgd_step_rule():
    res = wdjax.sweep(CFG, record=flat_trees, record_every="step")
    h = res.history
    k = "dense_0/kernel"
    assert h[f"before:{k}"].shape == (
        2,
        2,
        h["step"][0, 0],
        *res.params["dense_0"]["kernel"].shape[1:],
    )
    for m, lr in enumerate(CFG.lrs):  # w' = w − lr·g, every step, every leaf
        for name in ("dense_0/kernel", "dense_0/bias", "head/kernel"):
            b, a, g = (h[f"{x}:{name}"][m] for x in ("before", "after", "grads"))
            np.testing.assert_allclose(a, b - np.float32(lr) * g, rtol=1e-6, atol=1e-7)
            # consecutive steps chain: one step's after is the next step's before
            flat_b = b.reshape(-1, *b.shape[2:])
            flat_a = a.reshape(-1, *a.shape[2:])
            np.testing.assert_array_equal(flat_a[:-1], flat_b[1:])
        np.testing.assert_array_equal(
            h["after:head/kernel"][m, -1, -1], res.params["head"]["kernel"][m]
        )


@pytest.mark.numerics
def test_record_every_epoch_is_the_epochs_last_step():
    steps = wdjax.sweep(CFG, record=norms, record_every="step").history
    epochs = wdjax.sweep(CFG, record=norms).history
    assert epochs["grad_norm"].shape == (2, 2) and steps["grad_norm"].ndim == 3
    for name in ("grad_norm", "moved"):
        np.testing.assert_allclose(epochs[name], steps[name][:, :, -1], rtol=1e-6)
    # the moved distance of plain SGD is lr·‖g‖
    np.testing.assert_allclose(steps["moved"], np.float32(CFG.lrs)[:, None, None]
                               * steps["grad_norm"], rtol=1e-5)  # fmt: skip


def heavy_ball(learning_rate, strength):
    del strength
    return optax.sgd(learning_rate, momentum=0.9)


def trace(before, after, grads, batch_stats, opt_state):
    """A fifth argument: the optimizer state after the step (here optax.trace's buffer)."""
    del before, after, batch_stats
    (state, _) = opt_state
    return {"grad": grads["dense_0"]["kernel"], "trace": state.trace["dense_0"]["kernel"]}


def assert_heavy_ball(h, m, mu):
    """m_t = g_t + μ·m_{t−1} (optax.trace from zeros), step after step over the epochs."""
    g, got = (h[k][m].reshape(-1, *h[k].shape[3:]) for k in ("grad", "trace"))
    want = np.zeros_like(g[0])
    for t in range(g.shape[0]):
        want = g[t] + np.float32(mu) * want
        np.testing.assert_allclose(got[t], want, rtol=1e-5, atol=1e-7)


@pytest.mark.numerics
def test_record_with_opt_state_sees_the_heavy_ball_buffer():
    h = wdjax.sweep(CFG, optimizer=heavy_ball, record=trace, record_every="step").history
    for m in range(2):
        assert_heavy_ball(h, m, 0.9)


def flagged(learning_rate, strength, momentum):
    """A factory that needs a traced flag (a --set axis) to build its transform at all."""
    del strength
    return optax.sgd(learning_rate, momentum=momentum)


@pytest.mark.numerics
def test_check_builds_the_factory_with_the_configs_set_axes():
    """The check calls the factory with each axis's first value (it called it with none)."""
    cfg = dataclasses.replace(CFG, optimizer=flagged, axes=(("momentum", (0.9, 0.0)),))
    h = wdjax.sweep(cfg, record=trace, record_every="step").history
    for m, mu in enumerate((0.9, 0.0, 0.9, 0.0)):  # grid order: lrs, then the axis
        assert_heavy_ball(h, m, mu)
    got = wdjax.sweep(cfg, record=norms).history
    assert got["grad_norm"].shape == (4, 2) and np.all(np.isfinite(got["grad_norm"]))


@pytest.mark.numerics
def test_without_record_the_engine_and_its_program_are_todays():
    programs.clear_cache()
    wdjax.sweep(CFG)
    (key,) = programs._CACHE
    engine = key[0]
    assert type(engine) is Engine and "record" not in repr(engine)
    x = np.zeros((1, 8, 8, 1), np.float32)  # digits
    assert engine == wdjax.build(CFG, num_classes=10, x_example=x,
                                 steps_per_epoch=(1797 - 180) // 256).engine  # fmt: skip
    wdjax.sweep(CFG, record=norms)
    assert len(programs._CACHE) == 2  # the recording program is another one ...
    wdjax.sweep(CFG)
    assert len(programs._CACHE) == 2  # ... and a plain sweep reuses today's


@pytest.mark.numerics
def test_init_params_start_every_member_from_the_given_tree():
    first = wdjax.sweep(CFG)
    shared = jax.tree.map(lambda x: x[1], first.params)
    res = wdjax.sweep(CFG, init_params=shared, record=flat_trees, record_every="step")
    for name, x in (("dense_0/kernel", shared["dense_0"]["kernel"]),
                    ("head/bias", shared["head"]["bias"])):  # fmt: skip
        for m in range(2):
            np.testing.assert_array_equal(res.history[f"before:{name}"][m, 0, 0], x)
    stacked = wdjax.sweep(CFG, init_params=first.params, record=flat_trees, record_every="step")
    for m in range(2):
        np.testing.assert_array_equal(stacked.history["before:dense_0/kernel"][m, 0, 0],
                                      first.params["dense_0"]["kernel"][m])  # fmt: skip
    assert res.meta["init_params"].startswith("sha256:")


@pytest.mark.numerics
def test_init_params_on_members_sharded_over_several_devices():
    """The started states are put back on the member mesh (they came back unsharded, and the
    compiled epoch refused them when members spread over more than one device)."""
    cfg = dataclasses.replace(CFG, optimizer="adam", reg="wd", strengths=(1e-3,))
    one_device = dict(devices=jax.devices()[:1], record=norms)
    first = wdjax.sweep(cfg, **one_device)  # the parameters to start from; `one` reuses its program
    two = wdjax.sweep(cfg, init_params=first.params, devices=jax.devices()[:2], record=norms)
    one = wdjax.sweep(cfg, init_params=first.params, **one_device)
    for name in ("train_loss", "grad_norm"):  # two programs: to float32 rounding
        np.testing.assert_allclose(two.history[name], one.history[name], rtol=1e-5)


@pytest.mark.numerics
@pytest.mark.parametrize("bad, says", [
    (lambda p: {**p, "head": {"kernel": p["head"]["kernel"]}}, "missing ['head/bias']"),
    (lambda p: {**p, "head": {**p["head"], "kernel": p["head"]["kernel"][:3]}}, "head/kernel"),
    (lambda p: jax.tree.map(lambda x: np.stack([x] * 3), p), "one per member, 2 members"),
])  # fmt: skip
def test_init_params_of_another_tree_is_refused_before_anything_is_written(tmp_path, bad, says):
    p = jax.tree.map(lambda x: x[0], wdjax.sweep(CFG, epochs=1).params)
    out = str(tmp_path / "run")
    with pytest.raises(ConfigError, match="^init_params: ") as e:
        wdjax.sweep(CFG, out=out, init_params=bad(p))
    assert says in str(e.value) and "\n" not in str(e.value)
    assert not os.path.exists(os.path.join(out, "config.json"))


@pytest.mark.numerics
def test_hooks_are_recorded_by_name_and_resume_refuses_other_ones(tmp_path):
    out = str(tmp_path / "run")
    res = wdjax.sweep(CFG, out=out, record=norms, epochs=1)
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["hooks"] == {"record": f"{__name__}.norms", "record_every": "epoch"}
    assert SweepConfig.from_json(saved) == res.config
    assert "norms" in hooks.not_reproducible(saved) and hooks.not_reproducible({}) is None
    again = wdjax.load_result(out)
    np.testing.assert_array_equal(again.history["grad_norm"], res.history["grad_norm"])
    with pytest.raises(ConfigError, match="^resume: .*other record"):
        wdjax.sweep(CFG, out=out, resume=True, epochs=1)
    with pytest.raises(ConfigError, match="^record_every: "):
        wdjax.sweep(CFG, record=norms, record_every="batch")


@pytest.mark.numerics
def test_parameter_groups_head_on_fixed_adam_kernels_on_the_swept_lr():
    def labels(params):
        label = {name: "fixed" if name == "head" else "swept" for name in params}
        return {name: jax.tree.map(lambda _, n=name: label[n], sub)
                for name, sub in params.items()}  # fmt: skip

    def groups(learning_rate, strength):
        del strength
        return optax.multi_transform({"swept": optax.sgd(learning_rate),
                                      "fixed": optax.adam(1e-3)}, labels)  # fmt: skip

    res = wdjax.sweep(CFG, optimizer=groups, record=flat_trees, record_every="step")
    h = res.history
    for m, lr in enumerate(CFG.lrs):
        b, a, g = (h[f"{x}:dense_0/kernel"][m] for x in ("before", "after", "grads"))
        np.testing.assert_allclose(a, b - np.float32(lr) * g, rtol=1e-6, atol=1e-7)
        # the head: a standalone optax.adam(1e-3) fed the recorded gradients
        head = {n: h[f"before:head/{n}"][m, 0, 0] for n in ("kernel", "bias")}
        grads = {n: h[f"grads:head/{n}"][m].reshape(-1, *head[n].shape) for n in head}
        tx = optax.adam(1e-3)
        state = tx.init(head)
        for t in range(grads["kernel"].shape[0]):
            u, state = tx.update({n: grads[n][t] for n in head}, state, head)
            head = optax.apply_updates(head, u)
        for n in head:
            np.testing.assert_allclose(res.params["head"][n][m], head[n], rtol=1e-5, atol=1e-7)


@pytest.mark.numerics
def test_evaluate_scores_given_parameters_as_the_sweeps_evaluation():
    res = wdjax.sweep(CFG)
    got = wdjax.evaluate(CFG, res.params)
    for name in ("val_loss", "val_acc", "test_loss", "test_acc"):
        np.testing.assert_allclose(got[name], res.history[name][:, -1], rtol=1e-5)
    assert got["train_loss"].shape == (2,) and np.all(got["train_acc"] <= 1)
    one = wdjax.evaluate(CFG, jax.tree.map(lambda x: x[0], res.params))  # one tree, both members
    np.testing.assert_allclose(one["test_loss"], res.history["test_loss"][0, -1], rtol=1e-5)
    with pytest.raises(ConfigError, match="^params: "):
        wdjax.evaluate(CFG)
