"""wdjax.results: atomic files, CSV round trip, per-setting tables, choice of the best setting."""

import math
import os
import stat

import numpy as np
import pytest

from wdjax import files
from wdjax.analysis import tables

NAN = float("nan")
T2 = 4.302653  # t_{0.975, 2}


def grid(strengths, lrs=(0.01,), seeds=2):
    """Members in grid order (strength outermost), as SweepConfig.members() lists them."""
    keys = [(s, lr, seed) for s in strengths for lr in lrs for seed in range(seeds)]
    return [dict(member=m, strength=s, lr=lr, seed=seed, fold=0) for m, (s, lr, seed) in
            enumerate(keys)]  # fmt: skip


def history(final_val_loss, epochs=3, **final):
    """A [K, epochs] history whose last epoch has the given values (others: val_loss + 1)."""
    k = len(final_val_loss)
    h = {name: np.full((k, epochs), 0.5) for name in ("train_loss", "val_acc", "test_loss")}
    h["val_loss"] = np.full((k, epochs), 1.0)
    h["val_loss"][:, -1] = final_val_loss
    for name, values in final.items():
        h.setdefault(name, np.full((k, epochs), 0.5))[:, -1] = values
    h["diverged"] = np.zeros((k, epochs), bool)
    return h


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_mode_open_would(tmp_path, umask, mask, mode):
    umask(mask)
    path = tmp_path / "sub" / "a.json"
    files.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_atomic_write_leaves_no_temp_and_the_old_file_on_error(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        files.atomic_write_bytes(path, "not bytes")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write_bytes(path, b"new")
    assert os.listdir(tmp_path) == ["a.json"] and path.read_bytes() == b"old"


def test_csv_round_trip(tmp_path):
    members = grid((0.0, 1e-3), seeds=1)
    h = {"val_loss": np.array([[0.1, 1 / 3], [NAN, math.inf]]), "diverged": np.array(
        [[False, False], [False, True]]), "step": np.array([[10, 20], [10, 20]])}  # fmt: skip
    rows = files.metric_rows(members, h)
    files.write_csv(tmp_path / "m.csv", rows)
    back = files.read_csv(tmp_path / "m.csv")
    assert [list(r) for r in back][0][:6] == ["member", "strength", "lr", "seed", "fold", "epoch"]
    for r, b in zip(rows, back, strict=True):
        assert b.keys() == r.keys()
        for k, v in r.items():
            assert type(b[k]) is type(v) and (b[k] == v or (math.isnan(v) and math.isnan(b[k])))


def test_table_rows_by_hand(tmp_path):
    members = grid((0.0, 0.1), seeds=3)
    h = history([1.0, 2.0, 3.0, 0.5, 0.5, 0.5], test_acc=[0.9, 0.8, 0.7, 0.6, 0.6, 0.6])
    rows = tables.table_rows(members, h)
    assert [(r["strength"], r["lr"], r["n"], r["diverged"]) for r in rows] == [
        (0.0, 0.01, 3, 0), (0.1, 0.01, 3, 0)]  # fmt: skip
    r = rows[0]  # val loss 1, 2, 3: mean 2, std 1, interval 2 ± t_{0.975,2}/√3, a loss: >= 0
    assert (r["val_loss_mean"], r["val_loss_std"]) == (2.0, 1.0)
    assert 2 - T2 / math.sqrt(3) < 0 and r["val_loss_lo"] == 0.0
    assert r["val_loss_hi"] == pytest.approx(2 + T2 / math.sqrt(3), abs=1e-6)
    assert r["test_acc_mean"] == pytest.approx(0.8) and r["test_acc_std"] == pytest.approx(0.1)
    assert rows[1]["val_loss_std"] == 0.0 and rows[1]["val_loss_lo"] == 0.5
    paths = tables.write_table(str(tmp_path), rows, tables.summarize(members, h))
    assert [os.path.basename(p) for p in paths] == ["table.csv", "table.md"]
    back = files.read_csv(tmp_path / "table.csv")
    assert back[0]["val_loss_mean"] == 2.0 and list(back[0]) == list(rows[0])
    md = (tmp_path / "table.md").read_text()
    assert "| 0 | 0.01 | 3 | 0 | 2 ± 1 [0, 4.484] |" in md
    assert "| best |" in md and "validation loss" in md


def test_intervals_of_bounded_quantities_stay_in_their_range():
    # Issue 22, defect 7: accuracies 1, 1, 0.97 (mean 0.99, std 0.0173): the Student-t interval
    # 0.99 ± 4.303·0.0173/√3 = [0.947, 1.033] leaves [0, 1]; a loss 0.01, 0.02, 0.3 leaves [0, ∞).
    members = grid((0.0,), seeds=3)
    h = history([0.01, 0.02, 0.3], test_acc=[1.0, 1.0, 0.97], sparsity=[0.0, 0.0, 0.03],
                weight_l2=[5.0, 6.0, 7.0], extra=[0.01, 0.02, 0.3])  # fmt: skip
    (r,) = tables.table_rows(members, h)
    half = T2 * np.std([1.0, 1.0, 0.97], ddof=1) / math.sqrt(3)
    assert 0.99 + half > 1 and r["test_acc_hi"] == 1.0
    assert r["test_acc_lo"] == pytest.approx(0.99 - half, abs=1e-6)
    assert r["test_acc_mean"] == pytest.approx(0.99) and r["val_loss_lo"] == 0.0
    assert r["sparsity_lo"] == 0.0 and 0 < r["sparsity_hi"] <= 1
    (extra,) = tables.table_rows(members, h, metrics=("extra",))
    assert extra["extra_lo"] < 0  # a column of unknown range is not clipped
    for key in ("val_loss", "test_acc", "sparsity", "weight_l2"):
        assert r[f"{key}_lo"] <= r[f"{key}_mean"] <= r[f"{key}_hi"]
    md = tables.markdown_table([r])
    assert f"[{0.99 - half:.4g}, 1]" in md
    assert "clipped to each quantity's range (accuracy and sparsity to [0, 1]; losses" in md


def test_one_seed_has_no_interval_and_a_diverged_member_voids_its_setting(tmp_path):
    members = grid((0.0, 0.1, 1.0), seeds=1)
    h = history([0.4, 0.3, 0.2])
    h["diverged"][2, 1:] = True
    rows = tables.table_rows(members, h)
    assert rows[0]["val_loss_mean"] == 0.4 and math.isnan(rows[0]["val_loss_lo"])
    assert math.isnan(rows[0]["val_loss_std"]) and math.isnan(rows[0]["val_loss_hi"])
    assert rows[2]["diverged"] == 1 and math.isnan(rows[2]["test_loss_mean"])
    md = tables.markdown_table(rows)
    assert "| 0 | 0.01 | 1 | 0 | 0.4 |" in md and "| 1 | 0.01 | 1 | 1 | — |" in md
    assert "n = 1" in md


def test_summarize_selects_the_lowest_mean_validation_loss():
    # λ=0 holds the single best member (0.1), the best accuracy and the best test loss, but the
    # λ=0.1 setting has the lowest mean validation loss.
    members = grid((0.0, 0.1, 1.0))
    h = history([0.5, 0.1, 0.2, 0.2, 0.3, 0.4], val_acc=[0.99, 0.99, 0.5, 0.5, 0.5, 0.5],
                test_loss=[0.01, 0.01, 0.9, 0.9, 0.9, 0.9])  # fmt: skip
    s = tables.summarize(members, h)
    assert s["selected_by"] == "val_loss"
    assert s["best_setting"] == dict(strength=0.1, lr=0.01, mean=0.2, n=2, members=[2, 3])
    assert s["ties"] == [dict(strength=0.1, lr=0.01, mean=0.2)]
    assert s["best_member"] == 2  # equal final val losses in the setting: the lowest id
    assert s["diverged"] == [] and s["excluded"] == []
    assert len(s["members"]) == 6 and s["members"][1]["final"]["val_loss"] == 0.1


def test_summarize_reports_ties_in_grid_order():
    members = grid((0.0, 0.1, 1.0))
    h = history([0.5, 0.5, 0.375, 0.125, 0.25, 0.25])  # means 0.5, 0.25, 0.25 exactly
    s = tables.summarize(members, h)
    assert [(t["strength"], t["mean"]) for t in s["ties"]] == [(0.1, 0.25), (1.0, 0.25)]
    assert s["best_setting"]["strength"] == 0.1 and s["best_member"] == 3
    h["val_loss"][5, -1] = 0.25 * (1 + 1e-9)
    assert len(tables.summarize(members, h)["ties"]) == 1
    assert len(tables.summarize(members, h, tie_rtol=1e-6)["ties"]) == 2


def test_summarize_never_selects_a_diverged_or_non_finite_setting():
    members = grid((0.0, 0.1, 1.0, 10.0))
    h = history([0.01, 0.01, NAN, 0.2, math.inf, 0.1, 0.3, 0.3])
    h["diverged"][1, 2:] = True  # frozen at finite values that would otherwise win
    s = tables.summarize(members, h)
    assert s["best_setting"]["strength"] == 10.0 and s["best_member"] == 6
    assert s["diverged"] == [1]
    assert s["excluded"] == [dict(strength=0.0, lr=0.01, diverged=1),
                             dict(strength=0.1, lr=0.01, diverged=0),
                             dict(strength=1.0, lr=0.01, diverged=0)]  # fmt: skip
    h["diverged"][:] = True
    s = tables.summarize(members, h)
    assert s["best_setting"] is None and s["best_member"] is None and s["ties"] == []
    assert "no setting is selectable" in tables.markdown_table(tables.table_rows(members, h), s)


def test_without_validation_selection_uses_the_training_loss():
    members = grid((0.0, 0.1))
    h = history([NAN] * 4, val_acc=[NAN] * 4, train_loss=[0.3, 0.3, 0.2, 0.1],
                test_loss=[0.0, 0.0, 1.0, 1.0])  # fmt: skip
    h["val_loss"][:] = NAN
    h["val_acc"][:] = NAN
    h["train_loss"][3] = [0.5, 0.05, 0.1]
    s = tables.summarize(members, h)
    assert s["selected_by"] == "train_loss" and s["best_setting"]["strength"] == 0.1
    assert s["best_member"] == 3
    m = s["members"][3]
    assert m["best_val_loss"] is None and m["best_val_loss_epoch"] is None
    assert m["best_epoch"] == 2 and m["best_val_acc"] is None  # lowest training loss
    assert "no validation set" in tables.markdown_table(tables.table_rows(members, h), s)


def test_per_member_best_epochs():
    members = grid((0.0,), seeds=1)
    h = history([0.4])
    h["val_loss"][0] = [0.5, 0.3, 0.4]
    h["val_acc"][0] = [0.1, NAN, 0.9]
    m = tables.summarize(members, h)["members"][0]
    assert (m["best_val_loss_epoch"], m["best_val_loss"]) == (2, 0.3)
    assert (m["best_epoch"], m["best_val_acc"]) == (3, 0.9)


def test_params_round_trip(tmp_path):
    params = {"Dense_0": {"kernel": np.ones((2, 3)), "bias": np.zeros(3)}, "head": {"b": 1.0}}
    files.save_params(tmp_path / "p.npz", params)
    with np.load(tmp_path / "p.npz") as z:
        assert sorted(z.files) == ["Dense_0/bias", "Dense_0/kernel", "head/b"]
    back = files.load_params(tmp_path / "p.npz")
    np.testing.assert_array_equal(back["Dense_0"]["kernel"], params["Dense_0"]["kernel"])
    assert back["head"]["b"] == 1.0
