"""A sweep's checkpoints, with Orbax: save every N epochs or T seconds, keep the last, resume.

A checkpoint holds where the sweep stands (chunk, epoch within it), the members' states of the
running chunk, its metric history so far, and the finished chunks' histories and final
parameters: everything :func:`wdjax.sweep` needs to continue bit-identically (the same compiled
programs run on the same values). It lives in ``<run>/checkpoints/<step>/`` (step = epochs
trained, all chunks counted) and is written by ``orbax.checkpoint.CheckpointManager``
(``max_to_keep=1``): to a temporary folder renamed into place when complete, so a kill leaves the
previous checkpoint whole; temporary folders of an interrupted save are removed when the manager
next starts (``cleanup_tmp_directories``). Saves are asynchronous: training goes on while Orbax
writes, and :meth:`Checkpoints.close` waits for the last one.

``every`` is ``"N"`` (every N epochs) or ``"Ts"`` / ``"Tm"`` (when T seconds / minutes have passed
since the last save, checked at epoch ends). The default, ``"60s"``, keeps checkpointing under
5 % of training time on the main job (README, Performance) while losing at most a minute of work.
"""

import os
import shutil
import time

import jax
import numpy as np

__all__ = ["Checkpoints", "parse_every"]


def parse_every(every: str) -> tuple[int | None, float | None]:
    """``"5"`` -> (5 epochs, None); ``"60s"`` -> (None, 60.0); ``"10m"`` -> (None, 600.0)."""
    text = str(every)
    if text.endswith("s") or text.endswith("m"):
        return None, float(text[:-1]) * (60.0 if text.endswith("m") else 1.0)
    return int(text), None


class Checkpoints:
    """Checkpoints of one run directory. With several processes every process decides with
    process 0 when one is due (gathering the states is a collective); ``write`` (process 0)
    saves."""

    def __init__(self, run_dir: str, every: str = "60s", write: bool = True):
        self.path = os.path.abspath(os.path.join(run_dir, "checkpoints"))
        self.epochs, self.seconds = parse_every(every)
        self.write = write
        self.last = time.monotonic()
        self.save_seconds = 0.0  # time spent in save calls (what training waited for)
        self._manager = None

    def _mgr(self):
        if self._manager is None:  # orbax takes ~2 s to import: only when a checkpoint is used
            import orbax.checkpoint as ocp

            os.makedirs(self.path, exist_ok=True)  # (orbax: not with active_processes)
            options = ocp.CheckpointManagerOptions(
                max_to_keep=1,
                create=False,
                cleanup_tmp_directories=True,
                multiprocessing_options=ocp.options.MultiprocessingOptions(
                    primary_host=jax.process_index(), active_processes={jax.process_index()}
                ),
            )
            self._manager = ocp.CheckpointManager(self.path, options=options)
        return self._manager

    def exists(self) -> bool:
        return os.path.isdir(self.path) and self._mgr().latest_step() is not None

    def due(self, step: int, asked: bool = False) -> bool:
        """Whether a checkpoint is due after ``step`` epochs (all chunks counted), or ``asked``
        for; the same answer in every process (process 0's)."""
        if self.epochs is not None:
            due = asked or step % self.epochs == 0
        else:
            due = asked or time.monotonic() - self.last >= self.seconds
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            due = bool(multihost_utils.broadcast_one_to_all(np.bool_(due)))
        return due

    def save(self, step: int, position: tuple[int, int], states, history, done, params) -> None:
        """Save (asynchronously) where the sweep stands: ``position`` = (chunk, epoch) to resume
        at, the running chunk's ``states`` and ``history``, finished chunks' ``done`` history and
        final ``params`` (host numpy trees; None or {} where there is nothing yet)."""
        import orbax.checkpoint as ocp

        self.last = time.monotonic()
        if not self.write:
            return
        t = time.perf_counter()
        tree = {
            "position": np.asarray(position, np.int64),
            "states": jax.tree.leaves(states) if states is not None else [],
            "history": history or {},
            "done": done or {},
            "params": params or {},
        }
        self._mgr().save(step, args=ocp.args.StandardSave(tree), force=True)
        self.last = time.monotonic()
        self.save_seconds += time.perf_counter() - t

    def restore(self, states_like):
        """The latest checkpoint: ``(chunk, epoch, states, history, done, params)``, ``states``
        unflattened like ``states_like`` (a pytree of arrays or ShapeDtypeStructs)."""
        import orbax.checkpoint as ocp

        mgr = self._mgr()
        tree = mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore())
        chunk, epoch = (int(v) for v in tree["position"])
        leaves = [np.asarray(x) for x in tree["states"]]
        states = jax.tree.unflatten(jax.tree.structure(states_like), leaves) if leaves else None
        return chunk, epoch, states, tree["history"], tree["done"] or None, tree["params"] or None

    def close(self) -> None:
        """Wait for a save in flight to finish."""
        if self._manager is not None:
            t = time.perf_counter()
            self._manager.wait_until_finished()
            self.save_seconds += time.perf_counter() - t

    def delete(self) -> None:
        """Remove every checkpoint (the run finished and its results are written)."""
        self.close()
        if self._manager is not None:
            self._manager.close()
            self._manager = None
        shutil.rmtree(self.path, ignore_errors=True)
