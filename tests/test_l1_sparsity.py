"""experiments/l1_sparsity.py's own helpers against hand-computed values (the study end to end
runs in tests/test_experiments.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_all_equal, load_script

import wdjax

ls = load_script("experiments/l1_sparsity.py")


def mlp(k0, k1, head):
    """A params tree shaped like the study's MLP (biases of ones)."""

    def layer(k):
        k = np.asarray(k, np.float32)
        return {"kernel": k, "bias": np.ones(k.shape[1], np.float32)}

    return {"dense_0": layer(k0), "dense_1": layer(k1), "head": layer(head)}


def test_structure_removes_constant_and_unused_units_to_a_fixed_point():
    # 3 pixels -> 2 units -> 2 units -> 2 outputs.
    k0 = [[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]  # pixel 2 unused; unit b has no input: constant
    k1 = [[1.0, 0.0], [5.0, 3.0]]  # unit d is fed only by b (removed): constant in turn
    head = [[1.0, 1.0], [4.0, 0.0]]
    s = ls.structure(ls.dense_kernels(mlp(k0, k1, head)))
    assert s["units_removed"] == 2 and s["pixels_removed"] == 1
    np.testing.assert_array_equal(s["alive_pixels"], [True, True, False])
    # kept: 2 pixels × 1 unit + 1 × 1 + 1 × 2 outputs = 5 of 6 + 4 + 4 = 14 multiply-adds
    assert s["macs_removed"] == pytest.approx(1 - 5 / 14)
    assert s["sparsity"] == pytest.approx(6 / 14)  # zeros: 4 in k0, 1 in k1, 1 in head


def test_structure_of_a_unit_whose_outgoing_row_is_zero():
    k0 = [[1.0, 2.0], [3.0, 4.0]]
    k1 = [[1.0, 1.0], [0.0, 0.0]]  # unit b of layer 1 feeds nothing: unused
    head = [[0.0, 0.0], [1.0, 1.0]]  # unit c of layer 2 feeds nothing: unused
    s = ls.structure(ls.dense_kernels(mlp(k0, k1, head)))
    assert s["units_removed"] == 2 and s["pixels_removed"] == 0
    # kept: 2·1 + 1·1 + 1·2 = 5 of 4 + 4 + 4 = 12; a unit with every weight non-zero stays
    assert s["macs_removed"] == pytest.approx(1 - 5 / 12)
    full = ls.structure(ls.dense_kernels(mlp(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2)))))
    assert full["macs_removed"] == 0 and full["units_removed"] == 0 and full["sparsity"] == 0


def test_prune_like_zeroes_each_hidden_kernels_smallest_weights_as_often_as_the_target():
    params = mlp([[0.5, -3.0], [2.0, -0.1]], [[1.0, 2.0], [-4.0, 0.2]], [[0.01, 5.0], [6.0, 7.0]])
    target = mlp([[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]])
    got = ls.prune_like(params, target)
    np.testing.assert_array_equal(got["dense_0"]["kernel"], [[0.0, -3.0], [2.0, 0.0]])
    np.testing.assert_array_equal(got["dense_1"]["kernel"], [[1.0, 2.0], [-4.0, 0.0]])
    assert_trees_all_equal(got["head"], params["head"])  # the output layer is not pruned
    assert_trees_all_equal(got["dense_0"]["bias"], params["dense_0"]["bias"])


def test_held_strategy_is_the_strategy_from_a_dense_start_and_holds_zeros_when_fine_tuning():
    w = {"dense_0": {"kernel": jnp.array([[0.5, -1.0], [2.0, 0.3]]), "bias": jnp.zeros(2)},
         "head": {"kernel": jnp.array([[1.0, 0.0], [0.0, 1.0]]), "bias": jnp.zeros(2)}}  # fmt: skip
    g = jax.tree.map(lambda x: jnp.full_like(x, 0.7), w)
    held = ls.Held("l1_prox")(1e-2, 1e-1)
    plain = wdjax.make_optimizer("adam", 1e-2, "l1_prox", 1e-1, mask="hidden")
    assert_trees_all_equal(held.update(g, held.init(w), w)[0], plain.update(g, plain.init(w), w)[0])
    start = jax.tree.map(lambda x: x, w)
    start["dense_0"]["kernel"] = start["dense_0"]["kernel"].at[0, 1].set(0.0)
    tx = ls.Held("l1_prox")(1e-2, 0.0)  # fine-tuning: Adam, zeros of the hidden kernels held
    state, p = tx.init(start), start
    for _ in range(3):
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
    assert p["dense_0"]["kernel"][0, 1] == 0.0
    moved = np.asarray(p["dense_0"]["kernel"]) != np.asarray(start["dense_0"]["kernel"])
    np.testing.assert_array_equal(moved, [[True, False], [True, True]])
    assert p["head"]["kernel"][0, 1] != 0.0  # head zeros are not held (not pruned)


def fake_reps(dense, arms):
    """Replicates: ``dense`` [R] values of every metric; ``arms`` {arm: [R, λ]} likewise."""
    reps = []
    for r, base in enumerate(dense):
        rep = {"dense": [dict.fromkeys(ls.METRICS, float(base))]}
        for arm, v in arms.items():
            rep[arm] = [dict.fromkeys(ls.METRICS, float(x)) for x in np.asarray(v)[r]]
        reps.append(rep)
    return reps


def test_arm_rows_pair_by_replicate_against_dense_and_the_l1_arm():
    reps = fake_reps([1.0, 2.0, 4.0], {"l1_prox": [[1.5, 3.0], [2.5, 4.0], [4.5, 6.0]],
                                       "prune": [[2.0, 3.0], [2.5, 6.0], [5.5, 6.0]]})  # fmt: skip
    rows = ls.arm_rows(reps, "prune", (1e-4, 1e-3))
    assert [r["strength"] for r in rows] == [1e-4, 1e-3] and rows[0]["n"] == 3
    assert rows[0]["test_loss_mean"] == pytest.approx(10 / 3)
    assert rows[0]["test_loss_diff"] == pytest.approx((1.0 + 0.5 + 1.5) / 3)  # vs dense
    assert rows[1]["test_acc_vs_l1"] == pytest.approx((0 + 2 + 0) / 3)  # vs l1_prox, same λ
    half = 4.302652729911275 * np.std([0, 2, 0], ddof=1) / np.sqrt(3)  # t_{0.975, 2}
    assert rows[1]["test_acc_vs_l1_hi"] == pytest.approx(2 / 3 + half)
    assert "test_loss_vs_l1" not in ls.arm_rows(reps, "l1_prox", (1e-4, 1e-3))[0]


def test_choose_takes_the_largest_lambda_within_the_validation_tolerance():
    rows = [{"val_loss_mean": v} for v in (0.30, 0.31, 0.33, 0.40)]
    assert ls.choose(rows, {"val_loss_mean": 0.30}, 0.05) == 1  # 0.31 ≤ 0.315 < 0.33
    assert ls.choose(rows, {"val_loss_mean": 0.32}, 0.05) == 2
    assert ls.choose(rows, {"val_loss_mean": 0.20}, 0.05) is None


def test_macs_of_the_tutorial_mlp():
    cfg = wdjax.SweepConfig(hidden=(64, 64))
    assert ls.macs(cfg, (28, 28, 1)) == 784 * 64 + 64 * 64 + 64 * 10 == 54912
