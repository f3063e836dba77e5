"""The run directory: files a finished run leaves, and the checks before a run starts."""

import json

import numpy as np
import pytest

from wdjax.run import runner as S
from wdjax.run.config import ConfigError, SweepConfig

BASE = SweepConfig(epochs=2, batch_size=64, strengths=(1e-4,), lrs=(1e-2,), seeds=1)


def test_run_directory_files(tmp_path):
    out = tmp_path / "run"
    res = S.sweep(BASE, out=str(out), strengths=(1e-4, 1e-2), seeds=2)
    for f in (
        "config.json",
        "metrics.csv",
        "summary.json",
        "meta.json",
        "params.npz",
        "accuracy_vs_strength.png",
        "curves.png",
    ):
        assert (out / f).stat().st_size > 0, f
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    for col in (
        "member",
        "strength",
        "lr",
        "seed",
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "weight_l2",
        "weight_l1",
        "sparsity",
        "diverged",
    ):
        assert col in header
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 4 * 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["members"] == 4 and meta["compile_seconds"] >= 0 and meta["run_seconds"] > 0
    assert meta["epoch_program_bytes"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["members"]) == 4 and summary["diverged"] == []
    loaded = S.load_result(str(out))
    np.testing.assert_allclose(loaded.history["test_acc"], res.history["test_acc"])


def test_a_run_made_before_a_setting_existed_resumes_with_its_default(tmp_path):
    out = tmp_path / "run"
    S.sweep(BASE, out=str(out))
    saved = json.loads((out / "config.json").read_text())
    del saved["mask"], saved["schedule"]  # as an older wdjax wrote it
    (out / "config.json").write_text(json.dumps(saved))
    again = S.sweep(BASE, out=str(out), resume=True)  # finished: reloaded, not refused
    assert again.history["val_loss"].shape == (1, 2)
    with pytest.raises(ConfigError, match="^resume: .*mask"):
        S.sweep(BASE, out=str(out), resume=True, mask="hidden")
