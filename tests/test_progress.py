"""Progress: each epoch's report aggregates the members, and off a terminal it is one log line."""

import logging
import math

import numpy as np

from wdjax.run.progress import Bar, epoch_info


def test_epoch_info_aggregates_members_ignoring_diverged_ones():
    metrics = {"train_loss": np.array([1.0, 3.0, np.nan]), "val_acc": np.array([0.5, 0.7, np.inf])}
    info = epoch_info(0, 2, 4, 10, 3, elapsed=6.0, done=3, total=20, metrics=metrics)
    assert (info["chunk"], info["chunks"], info["epoch"], info["epochs"]) == (1, 2, 5, 10)
    assert info["train_loss"] == 2.0 and info["val_acc"] == 0.6 and info["best_val_acc"] == 0.7
    assert info["eta"] == 6.0 / 3 * 17
    none = epoch_info(0, 1, 0, 1, 1, 1.0, 1, 1, {"train_loss": np.array([np.nan])})
    assert math.isnan(none["train_loss"]) and math.isnan(none["val_acc"])


def test_off_a_terminal_each_epoch_is_one_log_line(caplog):
    bar = Bar(total_epochs=2)  # pytest captures stderr: not a terminal
    assert bar.bar is None
    info = epoch_info(0, 1, 0, 2, 4, 1.0, 1, 2, {"train_loss": np.ones(4), "val_acc": np.ones(4)})
    with caplog.at_level(logging.INFO, logger="wdjax"):
        bar(info)
        bar(dict(info, epoch=2))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "epoch 1/2" in lines[0] and "epoch 2/2" in lines[1]
    assert "train loss 1.0000" in lines[0] and "\r" not in lines[0]
    bar.close()
