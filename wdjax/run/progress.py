"""Progress of a sweep: a tqdm bar on a terminal, one log line per epoch elsewhere.

The runner reports each finished epoch as a dict (chunk, chunks, epoch, epochs, members, elapsed,
eta, and the chunk's members aggregated: mean train loss, mean and best validation accuracy).
``progress=True`` shows it with :class:`Bar`; a callable receives the dicts instead. Status
messages (loading, compiling, checkpoints) go to the ``wdjax`` logger, which the CLI prints.
"""

import logging
import math
import sys

import numpy as np

log = logging.getLogger("wdjax")

__all__ = ["Bar", "epoch_info"]


def _nan_stat(fn, x) -> float:
    x = np.asarray(x, float)
    return float(fn(x)) if np.isfinite(x).any() else math.nan


def epoch_info(chunk, chunks, epoch, epochs, members, elapsed, done, total, metrics) -> dict:
    """One epoch's report; ``metrics`` maps names to the chunk's [members] values this epoch;
    ``done``/``total`` count epochs over all chunks (done in this session, for the rate)."""
    val = metrics.get("val_acc", np.full(members, np.nan))
    return dict(
        chunk=chunk + 1, chunks=chunks, epoch=epoch + 1, epochs=epochs, members=members,
        elapsed=elapsed, eta=elapsed / max(done, 1) * (total - done) if done else math.nan,
        train_loss=_nan_stat(lambda v: np.nanmean(v[np.isfinite(v)]), metrics["train_loss"]),
        val_acc=_nan_stat(lambda v: np.nanmean(v[np.isfinite(v)]), val),
        best_val_acc=_nan_stat(lambda v: np.nanmax(v[np.isfinite(v)]), val),
    )  # fmt: skip


class Bar:
    """``progress=True``: tqdm on a terminal (stderr), else one ``logging`` line per epoch."""

    def __init__(self, total_epochs: int):
        self.tty = sys.stderr.isatty()
        self.bar = None
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_epochs, unit="epoch", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, info: dict) -> None:
        text = (f"chunk {info['chunk']}/{info['chunks']} ({info['members']} members) epoch "
                f"{info['epoch']}/{info['epochs']}: train loss {info['train_loss']:.4f}, val acc "
                f"mean {info['val_acc']:.4f} best {info['best_val_acc']:.4f}")  # fmt: skip
        if self.bar is None:
            log.info("%s (%.1fs, ETA %.1fs)", text, info["elapsed"], info["eta"])
            return
        self.bar.set_description(f"chunk {info['chunk']}/{info['chunks']}", refresh=False)
        self.bar.set_postfix(loss=f"{info['train_loss']:.4f}", val_acc=f"{info['val_acc']:.4f}",
                             best=f"{info['best_val_acc']:.4f}", refresh=False)  # fmt: skip
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
