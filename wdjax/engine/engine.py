"""The pure training engine: member state, one train step, a scanned epoch, vmapped over members.

Data flow (one compiled training call per epoch, after a small one for the batch order)::

    (data_seed, epoch) ─> jit(batch_order) ─> rows [steps, B] ─┐
    members' state [K, ...] ───────────────────────────────────┤
    hyperparameters [K] ───────────────────────────────────────┼─> jit(scan over steps(
    data arrays (on device) ───────────────────────────────────┘     vmap over members(step)))
                                                                     ─> state, metrics [K]

Each member has its own initial parameters and dropout stream, both derived from its ``seed``
(``fold_in(key(seed), 0)`` for init, ``fold_in(fold_in(key(seed), 1), step)`` for dropout), and its
own optimizer state. The order of training batches comes from the run-level ``data_seed``
(``permutation(fold_in(key(data_seed), epoch), n)``), shared by all members, so member k equals a
standalone run with member k's hyperparameters and one batch feeds every member.

The model is any Flax model behind :mod:`wdjax.adapters` (Linen or NNX). The optimizer is rebuilt
*inside* the traced step by an optimizer factory ``(learning_rate, strength, **traced) ->
optax.GradientTransformation`` (:class:`Strategy` for the named strategies of
:func:`wdjax.make_optimizer`, or any function of the user's) from the member's traced ``strength``,
``lr`` and extra hyperparameters, so new values of the same count never recompile; state holds
arrays only. A member whose loss or parameters turn non-finite during an epoch is flagged
``diverged`` and put back to its state at the start of that epoch, frozen there; the others go on
unaffected. A :class:`wdjax.engine.recording.Recording` engine also records a function of each
step (``sweep(record=...)``); this plain engine records nothing.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from wdjax import schedules
from wdjax.engine import adapters
from wdjax.engine import metrics as M

EVAL_BATCH = 1024


class Hyper(NamedTuple):
    """Per-member hyperparameters (leading member axis in a sweep)."""

    strength: jax.Array  # [] float: regularization strength λ
    lr: jax.Array  # [] float: learning rate
    seed: jax.Array  # [] int32: init + dropout seed
    fold: jax.Array  # [] int32: cross-validation fold (0 without folds)
    extra: Any = None  # {name: [] float}: further traced arguments of the optimizer factory


class MemberState(NamedTuple):
    """One member's training state: arrays only (no optimizer objects, no keys)."""

    params: Any  # nested dicts of arrays, Linen-style paths (for NNX too, see wdjax.adapters)
    batch_stats: Any  # the model's non-parameter state (BatchNorm statistics); {} without
    opt_state: Any
    step: jax.Array  # [] int32: optimizer steps taken
    diverged: jax.Array  # [] bool: loss or parameters became non-finite (frozen since)


class Data(NamedTuple):
    """Device arrays of one run. ``pool`` rows are indexed by per-fold index arrays."""

    x_pool: jax.Array  # [P, H, W, C]
    y_pool: jax.Array  # [P] int32
    train_idx: jax.Array  # [F, N] int32 rows of the pool each fold trains on
    val_idx: jax.Array  # [F, V] int32 rows each fold validates on (V may be 0)
    x_test: jax.Array  # [T, H, W, C]
    y_test: jax.Array  # [T] int32


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The learning-rate multiplier η(t) of a run (:mod:`wdjax.schedules`), hashable.

    ``params`` are the schedule's settings; any of them may instead come traced per member in
    ``Hyper.extra`` (a ``--set`` axis). With the named ``wd_paper`` strategy η multiplies both
    the step α and the decay λ (``make_optimizer(..., schedule=η)``); otherwise the learning rate
    is ``peak·η(t)``, which the prox thresholds use too (``wd_corrected``: ``peak_lr=peak``).
    """

    kind: str = "constant"
    steps_per_epoch: int = 1
    epochs: int = 1
    params: tuple = ()  # sorted (name, value) pairs

    def eta(self, traced: dict):
        kw = {**dict(self.params), **{k: v for k, v in traced.items() if k in self.names}}
        return schedules.make(self.kind, self.steps_per_epoch, self.epochs, **kw)

    @property
    def names(self) -> tuple:
        return schedules.PARAMS[self.kind]


@dataclasses.dataclass(frozen=True)
class Engine:
    """Static description of the compiled program (hashable: it keys the compile cache)."""

    model: Any  # a wdjax.engine.adapters.Linen / NNX (or a Linen module, wrapped on construction)
    optimizer: Any  # an optimizer factory (learning_rate, strength, **traced) -> transform
    batch_size: int
    dtype: str = "float32"
    schedule: Schedule = Schedule()
    eval_every: int = 1  # > 1: train_epoch takes a traced `evaluate` flag (see train_epoch)

    def __post_init__(self):
        object.__setattr__(self, "model", adapters.as_model(self.model))

    def tx(self, h: Hyper) -> optax.GradientTransformation:
        """The member's transform, built from its traced hyperparameters (and schedule)."""
        extra = dict(h.extra or {})
        if self.schedule.kind == "constant":
            return self.optimizer(h.lr, h.strength, **extra)
        eta = self.schedule.eta(extra)
        extra = {k: v for k, v in extra.items() if k not in self.schedule.names}
        reg = getattr(self.optimizer, "reg", None)
        if reg == "wd_paper":  # decay η(t)·λ, step η(t)·α
            return self.optimizer(h.lr, h.strength, schedule=eta, **extra)
        if reg == "wd_corrected":  # AdamC: the member's lr is the schedule's peak γ_max
            extra.setdefault("peak_lr", h.lr)
        return self.optimizer(schedules.learning_rate(h.lr, eta), h.strength, **extra)

    def lr_in_effect(self, h: Hyper, step):
        """The step size of step ``step`` (the peak times η; the peak without a schedule)."""
        if self.schedule.kind == "constant":
            return h.lr
        return h.lr * self.schedule.eta(dict(h.extra or {}))(step)

    # --- one member -----------------------------------------------------------------------------

    def init(self, h: Hyper, x_example) -> MemberState:
        """Initial state of one member from its seed (parameters cast to ``dtype``)."""
        key = jax.random.fold_in(jax.random.key(h.seed), 0)
        params, state = self.model.init(key, x_example)
        dtype = jnp.dtype(self.dtype)
        params = jax.tree.map(lambda p: p.astype(dtype), params)
        state = jax.tree.map(lambda p: p.astype(dtype), state)
        opt_state = self.tx(h).init(params)
        return MemberState(params, state, opt_state, jnp.zeros((), jnp.int32), jnp.zeros((), bool))

    def apply(self, params, batch_stats, x, *, train, key=None):
        """Logits and the model's updated non-parameter state (unchanged when not training)."""
        return self.model.apply(params, batch_stats, x, train, key)

    def step_and_grads(self, state: MemberState, h: Hyper, x_B, y_B):
        """One optimizer step of one member on batch (x_B, y_B): (state, (loss, acc), gradient).

        The step is not guarded: a non-finite loss or gradient flows into the new state.
        :meth:`epoch` checks each member once per epoch and puts a diverged member back to its
        state at the start of the epoch (a per-step keep-or-replace select would cost several
        extra passes over every state buffer on every step).
        """
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(h.seed), 1), state.step)
        x_B = x_B.astype(jnp.dtype(self.dtype))

        def loss_fn(params):
            logits, bs = self.apply(params, state.batch_stats, x_B, train=True, key=key)
            return M.cross_entropy(logits, y_B), (logits, bs)

        (loss, (logits, bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = self.tx(h).update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = MemberState(params, bs, opt_state, state.step + 1, state.diverged)
        return new, (loss, M.accuracy(logits, y_B)), grads

    def step(self, state: MemberState, h: Hyper, x_B, y_B):
        """One optimizer step of one member on batch (x_B, y_B); returns (state, (loss, acc)).
        The docstring of :meth:`step_and_grads` says more."""
        new, metrics, _ = self.step_and_grads(state, h, x_B, y_B)
        return new, metrics

    def recorded_step(self, state: MemberState, h: Hyper, x_B, y_B, last=None):
        """:meth:`step` and its records (``{}``: nothing is recorded; see
        :class:`wdjax.engine.recording.Recording`). ``last``: whether this is the epoch's last
        step (an unbatched traced bool, or None)."""
        del last
        new, metrics = self.step(state, h, x_B, y_B)
        return new, metrics, {}

    def scan_inputs(self, order_SxB):
        """What the epoch's scan runs over: the batch rows (a recording engine adds a flag)."""
        return order_SxB

    def records_out(self, records) -> dict:
        """The epoch's records as metrics (none: nothing is recorded)."""
        del records
        return {}

    def evaluate(self, state: MemberState, x_N, y_N):
        """Mean loss and accuracy over (x_N, y_N) in fixed-size batches (NaN when N = 0)."""
        n = x_N.shape[0]
        if n == 0:
            nan = jnp.full((), jnp.nan, jnp.dtype(self.dtype))
            return nan, nan
        eb = min(EVAL_BATCH, n)
        nb = -(-n // eb)
        pad = nb * eb - n
        x = jnp.pad(x_N, [(0, pad)] + [(0, 0)] * (x_N.ndim - 1)).reshape(nb, eb, *x_N.shape[1:])
        y = jnp.pad(y_N, (0, pad)).reshape(nb, eb)
        w = (jnp.arange(nb * eb) < n).reshape(nb, eb)

        def body(acc, xyw):
            xb, yb, wb = xyw
            logits, _ = self.apply(
                state.params, state.batch_stats, xb.astype(jnp.dtype(self.dtype)), train=False
            )
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
            hit = jnp.argmax(logits, -1) == yb
            hits = jnp.sum(wb & hit, dtype=jnp.int32)
            return (acc[0] + jnp.sum(jnp.where(wb, ce, 0)), acc[1] + hits), None

        zero = jnp.zeros((), jnp.dtype(self.dtype))
        (loss, hits), _ = jax.lax.scan(body, (zero, jnp.zeros((), jnp.int32)), (x, y, w))
        return loss / n, hits / n

    # --- many members ---------------------------------------------------------------------------

    def init_members(self, hyper: Hyper, x_example):
        """Initial states of every member, one after another (``lax.map``).

        Initialization runs once per sweep; a sequential map keeps its compile time independent
        of the member count (vmapping threefry over K keys compiled ~10 s at K = 96 here).
        """
        return jax.lax.map(lambda h: self.init(h, x_example), hyper)

    def batch_order(self, data_seed, epoch, n: int):
        """Rows of each training step of one epoch, ``[steps, batch]`` int32 (into ``train_idx``).

        ``permutation(fold_in(key(data_seed), epoch), n)``, cut to whole batches: the last
        incomplete batch is dropped (as Keras' ``drop_remainder`` would). Shared by all members.
        """
        steps = n // self.batch_size
        key = jax.random.fold_in(jax.random.key(data_seed), epoch)
        order = jax.random.permutation(key, n)[: steps * self.batch_size]
        return order.reshape(steps, self.batch_size).astype(jnp.int32)

    def epoch(self, states: MemberState, hyper: Hyper, data: Data, data_seed, epoch):
        """One epoch, :meth:`train_epoch`, in the batch order :meth:`batch_order` gives."""
        order_SxB = self.batch_order(data_seed, epoch, data.train_idx.shape[1])
        return self.train_epoch(states, hyper, data, order_SxB)

    def train_epoch(self, states: MemberState, hyper: Hyper, data: Data, order_SxB,
                    evaluate=None):  # fmt: skip
        """Train every member for one epoch, then evaluate; returns (states, metrics [K]).

        ``evaluate``: None evaluates validation and test (the program has no conditional); a
        traced bool evaluates them only when True (``lax.cond``: the work is skipped, the
        metrics are NaN), for sweeps with ``eval_every`` > 1.

        ``order_SxB`` holds the rows (into ``data.train_idx``) of each step's batch. The sweep
        computes it in a program of its own (:meth:`batch_order`), so the epoch program has no
        shuffle kernels to compile.

        Divergence is settled once per epoch: a member whose training loss turned non-finite on
        any step, or whose parameters are non-finite at the end, is put back to its parameters,
        statistics and step count at the start of the epoch and flagged ``diverged``; a member
        already flagged is put back every epoch, so it stays frozen at its last finite
        epoch-end state. Its optimizer state is left as computed (it is never used again).
        ``train_loss``/``train_acc`` average the steps before the first non-finite loss.
        """
        folds = data.train_idx.shape[0]
        shared = folds == 1  # one batch feeds every member: layer 1 is one large matmul
        start = (states.params, states.batch_stats, states.step)

        def body(carry, xs):
            states, live, sums = carry
            rows_B, last = xs if isinstance(xs, tuple) else (xs, None)
            step = functools.partial(self.recorded_step, last=last)
            if shared:
                rows = data.train_idx[0, rows_B]
                xb, yb = data.x_pool[rows], data.y_pool[rows]
                states, (loss, acc), rec = jax.vmap(step, in_axes=(0, 0, None, None))(
                    states, hyper, xb, yb
                )
            else:

                def member(s, h):
                    rows = data.train_idx[h.fold, rows_B]
                    return step(s, h, data.x_pool[rows], data.y_pool[rows])

                states, (loss, acc), rec = jax.vmap(member)(states, hyper)
            live = live & jnp.isfinite(loss)
            sums = (
                sums[0] + jnp.where(live, loss, 0),
                sums[1] + jnp.where(live, acc, 0),
                sums[2] + live,
            )
            return (states, live, sums), rec

        k = hyper.seed.shape[0]
        dt = jnp.dtype(self.dtype)
        zeros = (jnp.zeros(k, dt), jnp.zeros(k, dt), jnp.zeros(k, jnp.int32))
        carry = (states, ~states.diverged, zeros)
        xs = self.scan_inputs(order_SxB)
        (states, live, (loss_sum, acc_sum, count)), rec = jax.lax.scan(body, carry, xs)
        ok = live & jax.vmap(_all_finite)(states.params)
        params, batch_stats, step = jax.tree.map(
            lambda new, old: jax.vmap(jnp.where)(ok, new, old),
            (states.params, states.batch_stats, states.step), start,
        )  # fmt: skip
        states = states._replace(params=params, batch_stats=batch_stats, step=step, diverged=~ok)
        out = {
            "train_loss": jnp.where(count > 0, loss_sum / jnp.maximum(count, 1), jnp.nan),
            "train_acc": jnp.where(count > 0, acc_sum / jnp.maximum(count, 1), jnp.nan),
        }
        out.update(self.eval_members(states, hyper, data, evaluate))
        out.update(self.records_out(rec))
        return states, out

    def eval_members(self, states: MemberState, hyper: Hyper, data: Data, evaluate=None):
        """Validation/test loss and accuracy (NaN where ``evaluate`` is False) and weight
        statistics of every member ([K] each)."""

        def member(s, h, rows_V):
            def both():  # the validation gather inside: an epoch that skips evaluation skips it
                x_val, y_val = data.x_pool[rows_V], data.y_pool[rows_V]
                return self.evaluate(s, x_val, y_val), self.evaluate(s, data.x_test, data.y_test)

            if evaluate is None:
                val, test = both()
            else:
                skipped = jax.tree.map(lambda v: jnp.full(v.shape, jnp.nan, v.dtype),
                                       jax.eval_shape(both))  # fmt: skip
                val, test = jax.lax.cond(evaluate, both, lambda: skipped)
            out = {
                "val_loss": val[0],
                "val_acc": val[1],
                "test_loss": test[0],
                "test_acc": test[1],
                "diverged": s.diverged,
                "step": s.step,
                "lr": self.lr_in_effect(h, jnp.maximum(s.step - 1, 0)),  # the last step's
            }
            out.update(M.weight_stats(s.params))
            return out

        if data.val_idx.shape[0] == 1:  # one validation set shared by all members: gather once
            return jax.vmap(member, in_axes=(0, 0, None))(states, hyper, data.val_idx[0])
        return jax.vmap(member)(states, hyper, data.val_idx[hyper.fold])


def _all_finite(tree):
    """True iff every element of every leaf is finite: x·0 is 0 for finite x and NaN for ±inf
    or NaN, and a sum of zeros is exactly 0 (one float sum per leaf, which XLA:CPU runs as a
    library reduction, instead of an is-finite pass and a two-stage boolean reduction)."""
    sums = [jnp.sum(x * 0) for x in jax.tree.leaves(tree)]
    return jnp.isfinite(sum(sums)) if sums else jnp.array(True)
