"""Which parameters form a model's output layer, read from the data flow of one traced call.

The model's apply is traced once (:func:`jax.make_jaxpr`, parameters as inputs, abstract
shapes: nothing is computed) and each value of the program is labelled, in program order, with

* ``act``: it depends on the input batch (an activation), not on parameters and constants alone;
* ``src``: the parameter leaves it depends on;
* ``last``: the parameter leaves of the *layers* whose result reaches it with no other layer in
  between.

A *layer* is a ``dot_general`` or a convolution of an activation with a value computed from
parameters alone (``x @ W``, ``W @ x``, ``conv(x, K)``, ``x @ (A @ B)``, a reshaped or cast
kernel): its ``last`` is the parameters that value comes from. A product of two activations
(attention's ``q·kᵀ``) is not a layer, and neither is a product with a constant that is not a
parameter (batch statistics, a fixed projection). Every other operation (bias add, activation
functions, normalization, pooling, sums) passes on the union of its inputs' labels.

The output layer is then the ``last`` of the model's output: every layer whose result reaches
the output without passing through another layer. For a chain of layers that is the last one
called. A second branch added to the head's result (``head(h) + proj(h)``) is an output layer
too, and so is a layer whose result skips past the head (``head(h) + h`` with ``h = proj(x)``):
their units feed the output directly, as the head's do. An output layer may hold no kernel
(a tied embedding's ``attend``): then every kernel is hidden. The rule reads data flow only, so it
does not depend on the layers' names, their sorted order or the order of the calls between
independent branches.

Calls into nested programs (``jit``, ``custom_jvp``/``custom_vjp`` functions, ``remat``) are
followed; ``cond`` joins its branches and ``scan``/``while`` loops are iterated to a fixed point.
Any other primitive that carries a program of its own cannot be followed and is refused.
"""

from typing import NamedTuple

import jax
from jax.extend import core as jcore

__all__ = ["output_layer"]

_LAYERS = ("dot_general", "conv_general_dilated")
_CALLS = ("jaxpr", "call_jaxpr", "fun_jaxpr")  # the program parameter of call-like primitives


class _Info(NamedTuple):
    act: bool = False  # depends on the input batch
    src: frozenset = frozenset()  # parameter leaves it depends on
    last: frozenset = frozenset()  # parameter leaves of the layers whose result reaches it


_CONST = _Info()


class Opaque(ValueError):
    """A primitive whose nested program the walk cannot follow."""


def _join(infos) -> _Info:
    infos = list(infos)
    return _Info(
        any(i.act for i in infos),
        frozenset().union(*(i.src for i in infos)),
        frozenset().union(*(i.last for i in infos)),
    )


def _layer(ins) -> _Info:
    a, b = ins[0], ins[1]
    weights = b if a.act else a
    if a.act != b.act and weights.src:  # activation times a value of parameters alone
        return _Info(True, a.src | b.src, weights.src)
    return _join(ins)


def _program(value):
    """(jaxpr, const labels) of a Jaxpr or ClosedJaxpr parameter."""
    if isinstance(value, jcore.ClosedJaxpr):
        return value.jaxpr, [_CONST] * len(value.consts)
    return value, [_CONST] * len(value.constvars)


def _run(program, ins) -> list:
    jaxpr, consts = _program(program)
    env = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, ins, strict=True))

    def read(v):
        return _CONST if isinstance(v, jcore.Literal) else env.get(v, _CONST)

    for eqn in jaxpr.eqns:
        outs = _eqn(eqn, [read(v) for v in eqn.invars])
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def _fixed_point(body, consts: list, carry: list, xs: list) -> tuple[list, list]:
    """Loop labels: the carry's labels on entry to any iteration (the initial ones joined with
    every iteration's, grown until they stop: a finite lattice), and the body's outputs there."""
    while True:
        outs = _run(body, consts + carry + xs)
        grown = [_join([c, o]) for c, o in zip(carry, outs, strict=False)]
        if grown == carry:
            return carry, outs
        carry = grown


def _eqn(eqn, ins) -> list:
    name, params, n_out = eqn.primitive.name, eqn.params, len(eqn.outvars)
    if name in _LAYERS:
        return [_layer(ins)]
    if name == "cond":
        index = ins[0]._replace(last=frozenset())
        branches = [_run(b, ins[1:]) for b in params["branches"]]
        return [_join([index, *outs]) for outs in zip(*branches, strict=True)]
    if name == "scan":
        nc, nk = params["num_consts"], params["num_carry"]
        entry, outs = _fixed_point(params["jaxpr"], ins[:nc], ins[nc : nc + nk], ins[nc + nk :])
        return outs if params["length"] > 0 else entry + outs[nk:]  # outs: after an iteration
    if name == "while":
        cc, bc = params["cond_nconsts"], params["body_nconsts"]
        entry, _ = _fixed_point(params["body_jaxpr"], ins[cc : cc + bc], ins[cc + bc :], [])
        return entry  # it may run no iteration
    for key in _CALLS:
        program = params.get(key)
        if program is not None and len(_program(program)[0].invars) == len(ins):
            return _run(program, ins)
    if any(isinstance(v, jcore.ClosedJaxpr | jcore.Jaxpr) for v in params.values()):
        raise Opaque(name)
    return [_join(ins)] * n_out


def output_layer(apply, params, state, x) -> set[int]:
    """Indices (into ``jax.tree.leaves(params)``) of the output layer's parameters.

    Args:
      apply: ``(params, state, x) -> output`` (an array or a pytree of them).
      params: the trainable parameters (arrays or :class:`jax.ShapeDtypeStruct`).
      state: the model's other variables (batch statistics): constants, not parameters.
      x: the input batch (an array or :class:`jax.ShapeDtypeStruct`).

    Returns:
      The leaves ``last`` holds at the output (module docstring); empty when no layer with
      parameters produces the output.

    Raises:
      Opaque: the program holds a primitive with a nested program the walk cannot follow.
    """
    closed = jax.make_jaxpr(apply)(params, state, x)
    n_params, n_state = len(jax.tree.leaves(params)), len(jax.tree.leaves(state))
    ins = [_Info(False, frozenset({i}), frozenset()) for i in range(n_params)]
    ins += [_CONST] * n_state + [_Info(True)] * (len(closed.jaxpr.invars) - n_params - n_state)
    outs = _run(closed, ins)
    return set(frozenset().union(*(o.last for o in outs)))
