"""Checkpoints: the schedule, a save/restore round trip, and nothing left behind by a kill."""

import dataclasses
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest
from helpers import child_env

from wdjax.run import runner as S
from wdjax.run.checkpoints import Checkpoints, parse_every
from wdjax.run.config import SweepConfig

BASE = SweepConfig(epochs=3, batch_size=64, strengths=(1e-4, 1e-2), lrs=(1e-2,))


def test_every_parses_epochs_seconds_and_minutes():
    assert parse_every("5") == (5, None)
    assert parse_every("60s") == (None, 60.0)
    assert parse_every("1.5m") == (None, 90.0)


def test_due_by_epochs_and_by_time(tmp_path, monkeypatch):
    by_epochs = Checkpoints(str(tmp_path), "2")
    assert [by_epochs.due(s) for s in range(1, 6)] == [False, True, False, True, False]
    assert by_epochs.due(3, asked=True)
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    by_time = Checkpoints(str(tmp_path), "30s")
    clock[0] = 129.0
    assert not by_time.due(1)
    clock[0] = 130.0
    assert by_time.due(2)


def test_save_restore_round_trip_keeps_the_last_only(tmp_path):
    ck = Checkpoints(str(tmp_path), "1")
    states = {"w": np.arange(6.0, dtype=np.float32).reshape(2, 3), "n": np.array([1, 2], np.int32)}
    hist = {"val_loss": np.ones((2, 1))}
    ck.save(1, (0, 1), states, hist, None, None)
    states2 = jax.tree.map(lambda x: x + 1, states)
    ck.save(2, (0, 2), states2, hist, {"val_loss": np.zeros((2, 3))}, {"k": np.ones(2)})
    ck.close()
    assert os.listdir(ck.path) == ["2"]  # max_to_keep=1
    again = Checkpoints(str(tmp_path), "1")
    chunk, epoch, got, h, done, params = again.restore(states)
    assert (chunk, epoch) == (0, 2)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(states2), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(done["val_loss"], np.zeros((2, 3)))
    assert np.array_equal(params["k"], np.ones(2))
    again.delete()
    assert not os.path.exists(ck.path)


def test_resume_removes_what_a_killed_write_left(tmp_path):
    # A kill during a save leaves Orbax's temporary folder (renamed into place only when
    # complete) and, during a results write, a .tmp- file: both go when the run resumes.
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        S.sweep(BASE, out=str(out), progress=_interrupt_after(2), checkpoint_every="1",
                devices=jax.devices()[:1])  # fmt: skip
    ckpts = out / "checkpoints"
    (ckpts / "7.orbax-checkpoint-tmp-1234").mkdir()
    (ckpts / "7.orbax-checkpoint-tmp-1234" / "half").write_bytes(b"x" * 100)
    (out / ".tmp-abcmetrics.csv").write_text("half")
    with pytest.raises(KeyboardInterrupt):  # resumed (Orbax started: cleaned), stopped again
        S.sweep(BASE, out=str(out), resume=True, progress=_interrupt_after(1),
                checkpoint_every="1", devices=jax.devices()[:1])  # fmt: skip
    assert ckpts.is_dir() and [p for p in out.rglob("*") if "tmp" in p.name] == []
    S.sweep(BASE, out=str(out), resume=True, devices=jax.devices()[:1])
    assert [p for p in out.rglob("*") if "tmp" in p.name] == [] and not ckpts.exists()


def _interrupt_after(n):
    seen = []

    def cb(info):
        seen.append(info)
        if len(seen) == n:
            raise KeyboardInterrupt

    return cb


@pytest.mark.xdist_group("uninterrupted")  # shares uninterrupted_run (conftest.py)
def test_kill_9_then_resume_ends_as_an_uninterrupted_run(tmp_path, uninterrupted_run):
    run = [*uninterrupted_run.command, "--checkpoint-every", "1"]
    cut = tmp_path / "cut"
    proc = subprocess.Popen([*run, "--out", str(cut)], env=child_env(), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    for line in proc.stderr:  # saving every epoch: a kill now often lands inside a save
        if "epoch 3/" in line:
            proc.send_signal(signal.SIGKILL)
            break
    assert proc.wait(timeout=60) == -signal.SIGKILL
    subprocess.run([*run, "--out", str(cut), "--resume", "--quiet"], env=child_env(), check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    assert [p for p in cut.rglob("*") if "tmp" in p.name] == []
    full = uninterrupted_run.out  # no checkpoint at all: saving changes no bit either
    assert (cut / "metrics.csv").read_bytes() == (full / "metrics.csv").read_bytes()


def test_dataclass_default_checkpoint_cadence_is_time_based():
    from wdjax.run.config import RunOptions

    every = {f.name: f.default for f in dataclasses.fields(RunOptions)}["checkpoint_every"]
    assert parse_every(every)[1] is not None  # a time: short runs never wait on a save
