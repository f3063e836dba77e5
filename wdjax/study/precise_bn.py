"""Final weights evaluated in inference mode with BatchNorm's population statistics (PreciseBN).

Used by experiments/versus_dropout_batchnorm.py (moved here from the study when its comparisons
and generated write-up grew past the study files' 250 lines). A sweep keeps parameters, not
BatchNorm's running averages, and :func:`wdjax.evaluate` uses freshly initialized statistics; this
evaluates every member of a :class:`wdjax.SweepResult` with dropout off and BatchNorm normalizing
by the training set's mean and biased variance (Wu & Johnson 2021, "Rethinking 'Batch' in
BatchNorm": PreciseBN), computed in one training-mode pass over the whole training set from
zero running averages: after it the running averages hold (1 − momentum)·(mean, variance).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

import wdjax
from wdjax.engine.models import BN_MOMENTUM

__all__ = ["final_eval"]


def final_eval(res, ds) -> dict:
    """``{eval_<split>_loss, eval_<split>_acc: [K]}`` for the train, val and test splits of
    ``ds``: every member of ``res`` (``res.params`` with a leading member axis) in inference
    mode, BatchNorm on the training set's population statistics."""
    cfg, splits = res.config, ("train", "val", "test")
    model = wdjax.make_model(cfg.model, ds.num_classes, hidden=cfg.hidden, batchnorm=cfg.batchnorm)
    out = _eval_program(model)(res.params, *(jnp.asarray(getattr(ds, f"{a}_{s}"))
                                             for s in splits for a in "xy"))  # fmt: skip
    return {f"eval_{s}_{m}": np.asarray(out[i][j], float)
            for i, s in enumerate(splits) for j, m in enumerate(("loss", "acc"))}  # fmt: skip


@functools.cache
def _eval_program(model):
    def member(params, *xy):
        variables = {"params": params}
        if model.batchnorm:
            init = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), xy[0])
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), init["batch_stats"])
            _, new = model.apply({"params": params, "batch_stats": zeros}, xy[0], train=True,
                                 mutable=["batch_stats"])  # fmt: skip
            variables["batch_stats"] = jax.tree.map(lambda v: v / (1 - BN_MOMENTUM),
                                                    new["batch_stats"])  # fmt: skip
        zs = [(model.apply(variables, x, train=False), y)
              for x, y in zip(xy[::2], xy[1::2], strict=True)]  # fmt: skip
        return [(wdjax.cross_entropy(z, y), wdjax.accuracy(z, y)) for z, y in zs]

    return jax.jit(lambda params, *data: jax.lax.map(lambda p: member(p, *data), params))
