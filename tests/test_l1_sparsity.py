"""experiments/l1_sparsity.py's helpers (in the study and in wdjax.study.pruning) against
hand-computed values (the study end to end runs in tests/test_experiments.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_all_equal, load_script

import wdjax
from wdjax.study import pruning

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
    s = pruning.structure(pruning.dense_kernels(mlp(k0, k1, head)))
    assert s["units_removed"] == 2 and s["pixels_removed"] == 1
    np.testing.assert_array_equal(s["alive_pixels"], [True, True, False])
    # kept: 2 pixels × 1 unit + 1 × 1 + 1 × 2 outputs = 5 of 6 + 4 + 4 = 14 multiply-adds
    assert s["macs_removed"] == pytest.approx(1 - 5 / 14)
    assert s["sparsity"] == pytest.approx(6 / 14)  # zeros: 4 in k0, 1 in k1, 1 in head


def test_structure_of_a_unit_whose_outgoing_row_is_zero():
    k0 = [[1.0, 2.0], [3.0, 4.0]]
    k1 = [[1.0, 1.0], [0.0, 0.0]]  # unit b of layer 1 feeds nothing: unused
    head = [[0.0, 0.0], [1.0, 1.0]]  # unit c of layer 2 feeds nothing: unused
    s = pruning.structure(pruning.dense_kernels(mlp(k0, k1, head)))
    assert s["units_removed"] == 2 and s["pixels_removed"] == 0
    # kept: 2·1 + 1·1 + 1·2 = 5 of 4 + 4 + 4 = 12; a unit with every weight non-zero stays
    assert s["macs_removed"] == pytest.approx(1 - 5 / 12)
    full = pruning.structure(
        pruning.dense_kernels(mlp(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))))
    )
    assert full["macs_removed"] == 0 and full["units_removed"] == 0 and full["sparsity"] == 0


def test_prune_like_zeroes_each_hidden_kernels_smallest_weights_as_often_as_the_target():
    params = mlp([[0.5, -3.0], [2.0, -0.1]], [[1.0, 2.0], [-4.0, 0.2]], [[0.01, 5.0], [6.0, 7.0]])
    target = mlp([[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]])
    got = pruning.prune_like(params, target)
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


T2 = 4.302652729911275  # t_{0.975, 2}
OPEN = dict.fromkeys(ls.METRICS, (-np.inf, np.inf))


def test_arm_rows_pair_by_replicate_against_dense_and_the_l1_arm():
    reps = fake_reps([1.0, 2.0, 4.0], {"l1_prox": [[1.5, 3.0], [2.5, 4.0], [4.5, 6.0]],
                                       "prune": [[2.0, 3.0], [2.5, 6.0], [5.5, 6.0]]})  # fmt: skip
    rows = ls.arm_rows(reps, "prune", (1e-4, 1e-3), OPEN)
    assert [r["strength"] for r in rows] == [1e-4, 1e-3] and rows[0]["n"] == 3
    assert rows[0]["test_loss_mean"] == pytest.approx(10 / 3)
    assert rows[0]["test_loss_diff"] == pytest.approx((1.0 + 0.5 + 1.5) / 3)  # vs dense
    assert rows[1]["test_acc_vs_l1_diff"] == pytest.approx((0 + 2 + 0) / 3)  # vs l1_prox, same λ
    half = T2 * np.std([0, 2, 0], ddof=1) / np.sqrt(3)
    assert rows[1]["test_acc_vs_l1_diff_hi"] == pytest.approx(2 / 3 + half)
    assert "test_loss_vs_l1_diff" not in ls.arm_rows(reps, "l1_prox", (1e-4, 1e-3), OPEN)[0]


def test_bounded_intervals_stay_in_the_quantitys_range():
    # units removed 0, 0, 7 over 3 replicates: mean 7/3, t interval 7/3 ± T2·s/√3 goes below 0
    x, half = [0.0, 0.0, 7.0], T2 * np.std([0.0, 0.0, 7.0], ddof=1) / np.sqrt(3)
    assert 7 / 3 - half < 0  # the old unclipped interval left the range (issue 24)
    assert pruning.bounded(x, (0, 128)) == pytest.approx([7 / 3, 0.0, 7 / 3 + half])
    assert pruning.bounded([0.98, 0.99, 1.0], (0, 1))[2] == 1.0  # an accuracy: ≤ 1
    # a paired difference of accuracies: clipped to ± the range's width only
    d = pruning.bounded([0.5, 0.6, 0.7], (0, 1), base=[0.4, 0.4, 0.4])
    assert d == pytest.approx([0.2, 0.2 - T2 * 0.1 / np.sqrt(3), 0.2 + T2 * 0.1 / np.sqrt(3)])
    reps = fake_reps([0.0] * 3, {"prune": [[0.0], [0.0], [7.0]], "l1_prox": [[0.0]] * 3})
    rows = ls.arm_rows(reps, "prune", (1.0,), dict(OPEN, units_removed=(0, 128)))
    assert rows[0]["units_removed_lo"] == 0.0 and rows[0]["test_acc_lo"] < 0  # OPEN: unclipped


def test_own_choices_take_each_replicates_largest_lambda_within_the_tolerance():
    val = [[0.30, 0.31, 0.33, 0.40], [0.30, 0.33, 0.335, 0.40], [0.5, 0.6, 0.7, 0.8]]
    # dense 0.30 (limit 0.315), 0.32 (0.336), 0.40 (0.42): picks 1, 2, none
    assert pruning.own_choices(val, [0.30, 0.32, 0.40], 0.05) == [1, 2, None]


def test_overall_outcome_of_a_claim_over_levels():
    assert pruning.overall(["reproduced", "inconclusive"]) == "reproduced"
    assert pruning.overall(["contradicted", "inconclusive"]) == "contradicted"
    assert pruning.overall(["reproduced", "contradicted"]) == "inconclusive"
    assert pruning.overall(["inconclusive"] * 3) == "inconclusive"


def test_claim_pairs_by_replicate_per_level_with_the_rule():
    # a − b accuracy per replicate: level 0 +0.10, +0.11, +0.12 (above 0); level 1 ±: straddles
    reps = fake_reps([0.0] * 3, {"a": [[0.90, 0.5], [0.91, 0.6], [0.92, 0.4]],
                                 "b": [[0.80, 0.5], [0.80, 0.5], [0.80, 0.5]]})  # fmt: skip
    c = pruning.claim(reps, "a", "b", "higher", dict.fromkeys(ls.METRICS, (0, 1)))
    half = T2 * 0.01 / np.sqrt(3)
    assert c["levels"][0]["test_acc"] == pytest.approx([0.11, 0.11 - half, 0.11 + half])
    assert [x["outcome"] for x in c["levels"]] == ["reproduced", "inconclusive"]
    assert c["verdict"] == "reproduced" and c["levels"][0]["sparsity"] == pytest.approx(0.91)
    assert pruning.claim(reps, "a", "b", "lower", dict.fromkeys(ls.METRICS, (0, 1)))["verdict"] == (
        "contradicted")  # fmt: skip


def test_zeros_after_falls_geometrically_in_density_to_the_target():
    # 100 weights, 90 zeros in 3 rounds: density 0.1^(1/3) = 0.464, 0.1^(2/3) = 0.215, 0.1
    assert pruning.zeros_after(90, 100, 3) == [54, 78, 90]
    assert pruning.zeros_after(90, 100, 1) == [90] and pruning.zeros_after(0, 7, 2) == [0, 0]
    assert pruning.zeros_after(64, 64, 2) == [64, 64]


def test_iterative_prune_like_reaches_the_targets_count_and_keeps_earlier_zeros():
    w = np.arange(1.0, 101.0).reshape(10, 10) * np.where(np.arange(100) % 2, 1, -1).reshape(10, 10)
    params = mlp(w, np.ones((10, 2)), np.ones((2, 2)))
    target = mlp(np.where(np.abs(w) <= 90, 0.0, 1.0), np.ones((10, 2)), np.ones((2, 2)))
    p1 = pruning.prune_like(params, target, k=1, rounds=3)
    assert int((p1["dense_0"]["kernel"] == 0).sum()) == 54  # the 54 smallest |w|: 1 … 54
    np.testing.assert_array_equal(p1["dense_0"]["kernel"] == 0, np.abs(w) <= 54)
    p1["dense_0"]["kernel"][9, 9] = 0.0  # retraining kept that zero; |w| = 100 was the largest
    p2 = pruning.prune_like(p1, target, k=2, rounds=3)
    assert int((p2["dense_0"]["kernel"] == 0).sum()) == 78 and p2["dense_0"]["kernel"][9, 9] == 0
    p3 = pruning.prune_like(p2, target, k=3, rounds=3)
    assert int((p3["dense_0"]["kernel"] == 0).sum()) == 90
    one = pruning.prune_like(params, target)  # one shot: the same count at once
    np.testing.assert_array_equal(one["dense_0"]["kernel"] == 0, np.abs(w) <= 90)
