"""Evaluation only: loss and accuracy of given parameters on a config's data, without training.

``wdjax.evaluate(config, params)`` builds the config's model and data exactly as
:func:`wdjax.sweep` does (same splits, folds and members) and reports, per member, the mean
cross-entropy and accuracy on its training rows, its validation rows and the test set
(:meth:`wdjax.Engine.evaluate`, the sweep's own evaluation). ``params`` is one parameter tree for
every member or one per member (leading member axis, e.g. ``SweepResult.params``). BatchNorm
statistics are the freshly initialized ones (a sweep's result holds parameters only).

Example::

    res = wdjax.sweep(cfg)
    scores = wdjax.evaluate(cfg, res.params)  # {"train_loss": [K], ..., "test_acc": [K]}
"""

import dataclasses
import functools

import jax
import numpy as np

from wdjax.engine.recording import start_members
from wdjax.run import hooks
from wdjax.run.build import build, validate
from wdjax.run.config import ConfigError, SweepConfig

__all__ = ["evaluate"]


def evaluate(config: SweepConfig | None = None, params=None, *, data=None,
             **overrides) -> dict:  # fmt: skip
    """``{train,val,test}_{loss,acc}``: ``[members]`` numpy arrays of ``params`` on the data.

    Args:
      config: a :class:`SweepConfig` (its members: strengths × lrs × seeds × folds; the folds
        choose each member's training and validation rows).
      params: the model's parameters, shared or with a leading member axis (required).
      data: a :class:`wdjax.Dataset` instead of loading ``config.dataset``.
      **overrides: fields of :class:`SweepConfig` replacing those of ``config``.
    """
    from wdjax.run import runner

    cfg = dataclasses.replace(config or SweepConfig(), **overrides)
    validate(cfg)
    if params is None:
        raise ConfigError("params: evaluate needs the parameters to evaluate")
    hooks.describe(params, None, "epoch")  # a tree of arrays
    ds = runner._dataset(cfg, data)
    host = runner.host_data(ds, cfg)
    members = cfg.members()
    k = len(members)
    engine = build(cfg, num_classes=ds.num_classes, x_example=host.x_pool[:1],
                   steps_per_epoch=host.train_idx.shape[1] // cfg.batch_size).engine  # fmt: skip
    _, start = hooks.check(engine, host.x_pool[:1], k, params, None, "epoch", cfg.axes)
    hyper = runner.hyper_arrays(members, k, cfg.dtype)
    states = jax.jit(engine.init_members)(hyper, host.x_pool[:1])
    states = start_members(engine, states, hyper, start.chunk(0, k, k))
    out = _scores(engine, states, hyper, host)
    return {name: np.asarray(v) for name, v in out.items()}


@functools.partial(jax.jit, static_argnums=0)
def _scores(engine, states, hyper, data):
    def member(s, h):
        def on(rows):
            return engine.evaluate(s, data.x_pool[rows], data.y_pool[rows])

        train, val = on(data.train_idx[h.fold]), on(data.val_idx[h.fold])
        test = engine.evaluate(s, data.x_test, data.y_test)
        return {f"{split}_{m}": v[i] for split, v in (("train", train), ("val", val),
                ("test", test)) for i, m in enumerate(("loss", "acc"))}  # fmt: skip

    return jax.vmap(member)(states, hyper)
