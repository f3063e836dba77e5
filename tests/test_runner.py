"""The sweep engine: member == standalone run; sharding, chunks, recompiles, resume, divergence."""

import dataclasses
import os

import jax
import numpy as np
import pytest
from helpers import (
    adam_drift,
    assert_trees_close_to_scale,
    tree_zero_pattern,
)

from wdjax.engine import engine as E
from wdjax.run import runner as S
from wdjax.run.build import build
from wdjax.run.config import ConfigError, SweepConfig

BASE = SweepConfig(epochs=2, batch_size=64, strengths=(1e-4,), lrs=(1e-2,), seeds=1)
# Sweeps compared with *other* programs (K=1, one device, whole chunk) run in float64 (see
# tests/helpers.py). Two epochs of digits at batch 64 are ≤ 50 steps of sums of ≤ 64 terms: Adam
# drifts by ≤ adam_drift(50, 1e-2, 64) ≈ 7e-7 of the scale (BatchNorm's 1/√(var + 1e-5) ≤ 316
# per layer, under momentum, stays below that). A member trained with another member's λ, seed
# or one step more is off by ~1e-2.
TRAJ_TOL = adam_drift(50, 1e-2, 64)
F64 = dict(dtype="float64")


def _member_params(res, k):
    return jax.tree.map(lambda x: x[k], res.params)


CASES = {
    "l1_prox": dict(optimizer="adam", reg="l1_prox", strengths=(0.0, 3e-3, 3e-2)),
    "wd": dict(optimizer="adam", reg="wd", strengths=(0.0, 1e-3, 1e-1)),
    "bn_dropout": dict(
        optimizer="momentum", reg="l2", strengths=(1e-4, 1e-2), batchnorm=True, dropout=0.2, seeds=2
    ),
}


@pytest.mark.numerics
@pytest.mark.parametrize("case", sorted(CASES))
def test_member_equals_standalone_run(case):
    cfg = dataclasses.replace(BASE, **CASES[case], **F64)
    with jax.enable_x64(True):
        res = S.sweep(cfg)
        ones = {k: S.sweep(cfg, strengths=(m["strength"],), seeds=1)
                for k, m in enumerate(res.members) if m["seed"] == 0}  # fmt: skip
    assert res.history["test_acc"].shape == (cfg.num_members, cfg.epochs)
    assert res.params["dense_0"]["kernel"].dtype == np.float64
    for k, one in ones.items():
        pk, p1 = _member_params(res, k), _member_params(one, 0)
        assert_trees_close_to_scale(pk, p1, TRAJ_TOL, err_msg=f"{case} member {k}")
        hist_k = {n: res.history[n][k] for n in ("train_loss", "test_loss", "val_loss")}
        hist_1 = {n: one.history[n][0] for n in ("train_loss", "test_loss", "val_loss")}
        assert_trees_close_to_scale(hist_k, hist_1, TRAJ_TOL, err_msg=f"{case} member {k}")
        # Exact zeros (l1_prox's soft threshold) are the same in both programs.
        for a, b in zip(jax.tree.leaves(tree_zero_pattern(pk)),
                        jax.tree.leaves(tree_zero_pattern(p1)), strict=True):  # fmt: skip
            np.testing.assert_array_equal(a, b)
    if case == "l1_prox":  # the strongest member really produced exact zeros (not vacuous)
        assert res.history["sparsity"][-1, -1] > 0.05


@pytest.mark.numerics
def test_sweep_equals_one_program_epochs():
    # The runner splits an epoch into two programs (batch order, compiled with the cheaper CPU
    # options, then Engine.train_epoch); the one-program Engine.epoch from the same initial states
    # is another program (XLA may fuse it differently): float64, TRAJ_TOL. A shifted or reused
    # batch order changes every step's batch, far beyond it.
    cfg = dataclasses.replace(BASE, strengths=(1e-4, 1e-2), optimizer="adam", reg="l1_prox", **F64)
    with jax.enable_x64(True):
        ds = S.D.load(cfg.dataset, val_size=cfg.val_size, seed=cfg.data_seed)
        res = S.sweep(cfg, data=ds, devices=jax.devices()[:1])
        engine = build(cfg, num_classes=ds.num_classes).engine
        data = jax.device_put(S.host_data(ds, cfg))
        hyper = S.hyper_arrays(res.members, len(res.members), cfg.dtype)
        states = jax.jit(engine.init_members)(hyper, data.x_pool[:1])
        outs, epoch_program = [], jax.jit(engine.epoch)  # one program, traced once
        for epoch in range(cfg.epochs):
            states, out = epoch_program(states, hyper, data, cfg.data_seed, epoch)
            outs.append(out)
    for epoch, out in enumerate(outs):
        for name in ("train_loss", "val_loss", "weight_l1"):
            assert_trees_close_to_scale(res.history[name][:, epoch], out[name], TRAJ_TOL)
        np.testing.assert_array_equal(res.history["test_acc"][:, epoch], out["test_acc"])
    assert_trees_close_to_scale(res.params, states.params, TRAJ_TOL)


def test_regularization_changes_results_monotonically():
    """Guard against λ being ignored: larger wd → smaller weights, at equal seeds."""
    res = S.sweep(BASE, reg="wd", strengths=(0.0, 1e-1, 1.0), epochs=3)
    l2 = res.history["weight_l2"][:, -1]
    assert l2[0] > l2[1] > l2[2]


@pytest.mark.numerics
def test_sharded_over_four_devices_equals_one_device():
    assert len(jax.devices()) == 4  # tests/conftest.py
    cfg = dataclasses.replace(BASE, strengths=(0.0, 1e-3, 1e-2, 1e-1, 1.0), **F64)
    with jax.enable_x64(True):
        four = S.sweep(cfg)
        one = S.sweep(cfg, devices=jax.devices()[:1])
    assert four.meta["devices"] != one.meta["devices"]
    assert_trees_close_to_scale(four.params, one.params, TRAJ_TOL)
    assert_trees_close_to_scale(four.history["test_loss"], one.history["test_loss"], TRAJ_TOL)


@pytest.mark.numerics
def test_chunked_equals_unchunked():
    cfg = dataclasses.replace(BASE, strengths=(0.0, 1e-3, 1e-2, 1e-1, 1.0), **F64)
    with jax.enable_x64(True):
        whole = S.sweep(cfg, devices=jax.devices()[:1])
        chunked = S.sweep(cfg, chunk_size=2, devices=jax.devices()[:1])
    assert chunked.meta["chunks"] == 3 and whole.meta["chunks"] == 1
    assert_trees_close_to_scale(chunked.params, whole.params, TRAJ_TOL)
    assert_trees_close_to_scale(chunked.history["test_loss"], whole.history["test_loss"], TRAJ_TOL)


class _Stop(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    cfg = dataclasses.replace(BASE, epochs=3, strengths=(1e-3, 1e-1, 1.0), chunk_size=2)
    full = S.sweep(cfg, out=str(tmp_path / "full"), devices=jax.devices()[:1])

    def stop_after(n):
        seen = []

        def cb(info):
            seen.append(info)
            if len(seen) == n:
                raise _Stop

        return cb

    out = str(tmp_path / "cut")
    for n in (2, 2):  # killed mid-chunk 1, then again mid-chunk 2 (after resuming)
        with pytest.raises(_Stop):
            S.sweep(
                cfg,
                out=out,
                resume=os.path.exists(out),
                progress=stop_after(n),
                devices=jax.devices()[:1],
                checkpoint_every="1",
            )
        assert os.path.isdir(os.path.join(out, "checkpoints"))
    resumed = S.sweep(cfg, out=out, resume=True, devices=jax.devices()[:1])
    assert not os.path.exists(os.path.join(out, "checkpoints"))
    for name in full.history:
        np.testing.assert_array_equal(resumed.history[name], full.history[name], err_msg=name)
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(full.params), strict=True):
        np.testing.assert_array_equal(a, b)
    with (
        open(os.path.join(out, "metrics.csv")) as f1,
        open(tmp_path / "full" / "metrics.csv") as f2,
    ):
        assert f1.read() == f2.read()
    # A finished run resumes to itself; a different config refuses to resume.
    again = S.sweep(cfg, out=out, resume=True)
    np.testing.assert_array_equal(again.history["test_acc"], full.history["test_acc"])
    with pytest.raises(ConfigError, match="^resume: .*epochs"):
        S.sweep(cfg, out=out, resume=True, epochs=4)
    with pytest.raises(ConfigError, match="^out: "):
        S.sweep(cfg, out=out)


@pytest.mark.numerics
def test_divergent_member_is_flagged_and_others_unaffected():
    # float64 (member 0 is compared with a K=1 program); lr = 1e300 overflows it at once.
    cfg = dataclasses.replace(BASE, optimizer="sgd", reg="l2", lrs=(1e-2, 1e300), **F64)
    with jax.enable_x64(True):
        res = S.sweep(cfg)
        alone = S.sweep(cfg, lrs=(1e-2,))
    assert res.summary["diverged"] == [1]
    assert res.history["diverged"][1].all() and not res.history["diverged"][0].any()
    assert all(np.isfinite(x[1]).all() for x in jax.tree.leaves(res.params))  # frozen, finite
    assert_trees_close_to_scale(_member_params(res, 0), _member_params(alone, 0), TRAJ_TOL)


def test_cross_validation_folds_are_members():
    cfg = dataclasses.replace(BASE, strengths=(1e-4, 1e-1), folds=3)
    res = S.sweep(cfg)
    assert res.history["val_acc"].shape == (6, 2)
    assert [m["fold"] for m in res.members] == [0, 1, 2, 0, 1, 2]
    # Different folds validate on different data: their validation losses differ.
    v = res.history["val_loss"][:3, -1]
    assert len(set(np.round(v, 6))) == 3


@pytest.mark.numerics
def test_a_cosine_member_equals_its_standalone_run_and_records_the_lr_in_effect():
    cfg = dataclasses.replace(BASE, epochs=3, schedule="cosine", warmup_epochs=1, alpha=0.1,
                              strengths=(1e-4, 1e-1), **F64)  # fmt: skip
    with jax.enable_x64(True):
        res = S.sweep(cfg)
        one = S.sweep(cfg, strengths=(1e-1,))
    assert_trees_close_to_scale(_member_params(res, 1), _member_params(one, 0), TRAJ_TOL)
    steps = res.history["step"][0]  # optimizer steps after each epoch
    total, warm = steps[-1], steps[0]  # 3 epochs; warm-up = 1 epoch
    t = steps - 1  # each epoch's last step
    cosine = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * (t - warm) / (total - warm)))
    eta = np.where(t < warm, t / warm, cosine)  # warm-up from 0, then cosine
    np.testing.assert_allclose(res.history["lr"][0], 1e-2 * np.array(eta), rtol=1e-12)
    assert [m["lr"] for m in res.members] == [1e-2, 1e-2]  # the peak stays in the settings


def test_wd_paper_under_a_schedule_decays_by_eta_lambda():
    """Loshchilov & Hutter: w ← w − η(t)·(α·g + λ·w) (SGD), η the schedule's multiplier."""
    cfg = SweepConfig(optimizer="sgd", reg="wd_paper", schedule="step", decay_epochs=(1.0,),
                      decay_factor=0.5, epochs=2)  # fmt: skip
    engine = build(cfg, num_classes=10, steps_per_epoch=2).engine
    alpha, lam = 0.1, 0.01
    h = E.Hyper(np.float64(lam), np.float64(alpha), np.int32(0), np.int32(0))
    with jax.enable_x64(True):
        w = {"dense": {"kernel": np.ones((2, 2)), "bias": np.ones(2)}}
        g = {"dense": {"kernel": np.full((2, 2), 0.5), "bias": np.full(2, 0.5)}}
        tx = engine.tx(h)
        state = tx.init(w)
        for t in range(4):
            eta = 0.5 if t >= 2 else 1.0
            k, b = w["dense"]["kernel"], w["dense"]["bias"]
            want = {"kernel": k - eta * (alpha * 0.5 + lam * k), "bias": b - eta * alpha * 0.5}
            u, state = tx.update(g, state, w)
            w = jax.tree.map(lambda a, b: np.asarray(a + b), w, u)
            np.testing.assert_allclose(w["dense"]["kernel"], want["kernel"], rtol=1e-14)
            np.testing.assert_allclose(w["dense"]["bias"], want["bias"], rtol=1e-14)


def test_mask_hidden_leaves_the_output_layer_unregularized():
    cfg = dataclasses.replace(BASE, reg="l1_prox", strengths=(10.0,), mask="hidden", epochs=1)
    res = S.sweep(cfg)
    p = _member_params(res, 0)
    assert np.all(p["dense_0"]["kernel"] == 0) and np.all(p["dense_1"]["kernel"] == 0)
    assert np.count_nonzero(p["head"]["kernel"]) > 0
    every = S.sweep(cfg, mask="kernels")
    assert np.all(_member_params(every, 0)["head"]["kernel"] == 0)
    assert res.config.to_json()["mask"] == "hidden"


@pytest.mark.numerics
def test_eval_every_skips_evaluation_between_and_changes_nothing_else():
    cfg = dataclasses.replace(BASE, epochs=5, strengths=(1e-4, 1e-2), **F64)
    with jax.enable_x64(True):
        every = S.sweep(cfg)
        third = S.sweep(cfg, eval_every=3)
    val = third.history["val_loss"]
    assert np.isnan(val[:, [0, 1, 3]]).all() and np.isfinite(val[:, [2, 4]]).all()  # 3 and last
    assert np.isnan(third.history["test_acc"][:, 0]).all()
    # Training is the same (a conditional around evaluation is another program: TRAJ_TOL).
    assert_trees_close_to_scale(third.params, every.params, TRAJ_TOL)
    for name in ("val_loss", "test_loss", "test_acc"):
        assert_trees_close_to_scale(third.history[name][:, [2, 4]], every.history[name][:, [2, 4]],
                                    TRAJ_TOL)  # fmt: skip
    assert third.summary["best_setting"] is not None  # selection reads the last epoch
