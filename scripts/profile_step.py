"""Time and profile the compiled sweep epoch, op by op (the tool behind the performance notes).

Builds the program ``wdjax.sweep`` runs (``Engine.epoch``: a scan over steps of the vmapped
member step; the sweep computes the batch order in a small program of its own, this one inside)
for one model and optimizer on synthetic MNIST-shaped data, times warm epochs, and with
``--trace`` records one epoch with ``jax.profiler`` and prints the XLA ops (thunks) that took the
most time per step. ::

    python scripts/profile_step.py --members 32                  # tutorial MLP, Adam + wd
    python scripts/profile_step.py --members 32 --trace --top 25
    python scripts/profile_step.py --model cnn --members 8 --steps 10 --trace
    python scripts/profile_step.py --members 32 --compiler-option xla_backend_optimization_level=1
    python scripts/profile_step.py --members 32 --matmuls    # the MLP step's GEMM shapes alone
    python scripts/profile_step.py --members 32 --cpu-devices 4 --devices 1,2,4   # CPU devices A/B
    git show REV:wdjax/engine.py > /tmp/train_rev.py                      # an older engine ...
    python scripts/profile_step.py --members 32 --baseline /tmp/train_rev.py   # ... timed A/B

``--baseline FILE`` loads another version of ``wdjax/engine.py`` and times its epoch interleaved
with the current one (epoch by epoch, same process, same data), which is how changes to the engine
are measured on a noisy machine. ``--compiler-option`` passes XLA options to the epoch's compile
(repeatable), to try a flag on one program without setting ``XLA_FLAGS`` for the process.

Per-op times come from the profiler's host trace: they include its overhead (the sum exceeds the
untraced step time by ~5-10 %), and library calls that finish asynchronously on the thread pool
(Eigen dots) can be under-reported. Timings on a shared machine are noisy: compare variants in one
run, by the minimum over ``--rounds``.
"""

import argparse
import collections
import functools
import glob
import gzip
import importlib.util
import json
import os
import statistics
import tempfile
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from bench_common import model_flops, synthetic

import wdjax
from wdjax.engine import engine as train
from wdjax.run.build import build as build_config

BATCH = 128


def _option(text: str):
    name, _, value = text.partition("=")
    if not name or not value:
        raise argparse.ArgumentTypeError(f"--compiler-option wants NAME=VALUE, got {text!r}")
    for cast in (int, float):
        try:
            return name, cast(value)
        except ValueError:
            pass
    return name, {"true": True, "false": False}.get(value.lower(), value)


def build_parser() -> argparse.ArgumentParser:
    """profile_step.py's flags (``--compiler-option`` values typed: int, float, bool or str)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mlp", choices=wdjax.MODELS)
    p.add_argument("--hidden", default="64,64", help="MLP widths (default 64,64: the tutorial's)")
    p.add_argument("--optimizer", default="adam", choices=wdjax.OPTIMIZERS)
    p.add_argument("--reg", default="wd", choices=wdjax.STRATEGIES)
    p.add_argument("--members", type=int, default=32, help="K, members trained at once")
    p.add_argument("--steps", type=int, default=100, help="steps per timed epoch (batch 128)")
    p.add_argument("--rounds", type=int, default=6, help="timed epochs (the first is dropped)")
    p.add_argument("--trace", action="store_true", help="profile one epoch and list the top ops")
    p.add_argument("--top", type=int, default=30, help="ops to list with --trace")
    p.add_argument("--matmuls", action="store_true",
                   help="also time the MLP step matmul shapes alone, and the peak")  # fmt: skip
    p.add_argument("--cpu-devices", type=int, help="split the CPU (wdjax.use_cpu_devices)")
    p.add_argument("--devices", default="1",
                   help="comma list of device counts to shard members over, timed A/B")  # fmt: skip
    p.add_argument("--baseline", metavar="FILE", help="another wdjax/engine.py to time A/B")
    p.add_argument("--compiler-option", type=_option, action="append", default=[],
                   metavar="NAME=VALUE", help="XLA option for the epoch (repeatable)")  # fmt: skip
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """The flags of a command line, checked before any work (exits with status 2 on a bad one);
    ``--cpu-devices`` splits the CPU here, before anything asks JAX for its devices."""
    p = build_parser()
    args = p.parse_args(argv)
    for flag, value in (("--members", args.members), ("--steps", args.steps)):
        if value < 1:
            p.error(f"{flag} must be at least 1, got {value}")
    if args.rounds < 2:
        p.error(f"--rounds must be at least 2 (the first epoch is not timed), got {args.rounds}")
    if args.baseline and not os.path.isfile(args.baseline):
        p.error(f"--baseline {args.baseline}: no such file (git show REV:wdjax/engine.py > FILE)")
    try:
        args.devices = tuple(int(d) for d in args.devices.split(","))
    except ValueError:
        p.error(f"--devices wants a comma list of integers, got {args.devices!r}")
    _check_devices(p, args)
    return args


def _check_devices(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.cpu_devices is not None:
        try:
            wdjax.use_cpu_devices(args.cpu_devices)  # before anything asks JAX for devices
        except wdjax.ConfigError as err:
            p.error(str(err))
    if min(args.devices) < 1 or max(args.devices) > len(jax.devices()):
        p.error(f"--devices {args.devices}: this process has {len(jax.devices())} devices "
                "(more CPU devices: --cpu-devices N)")  # fmt: skip
    if args.members % max(args.devices):
        p.error(f"--members {args.members} must split evenly over --devices {args.devices}")


def load_train(path: str):
    """A engine module from another file (it imports the rest of wdjax as installed)."""
    spec = importlib.util.spec_from_file_location("wdjax_train_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Build(NamedTuple):
    """One engine's compiled epoch and the arguments it runs on (``states`` donated each call)."""

    epoch: Any  # the compiled Engine.epoch(states, hyper, data, fold, epoch)
    states: Any  # MemberState with a leading member axis
    hyper: Any  # Hyper, one row per member
    data: Any  # Data on the device(s)
    compile_s: float


def build(args, train_module=train, devices: int = 1) -> Build:
    """The compiled epoch of ``train_module``'s engine for the requested model on synthetic data
    (``bench_common.synthetic``), members sharded over the first ``devices`` devices."""
    Engine, Hyper = train_module.Engine, train_module.Hyper
    cfg = wdjax.SweepConfig(model=args.model, optimizer=args.optimizer, reg=args.reg,
                            hidden=_hidden(args), batch_size=BATCH)  # fmt: skip
    b = build_config(cfg, num_classes=10)
    engine = Engine(b.model, b.optimizer, cfg.batch_size, cfg.dtype, b.schedule, cfg.eval_every)
    data, x = _data(train_module.Data, args)
    k = args.members
    hyper = Hyper(jnp.full(k, 1e-4), jnp.full(k, 1e-3), jnp.arange(k, dtype=jnp.int32),
                  jnp.zeros(k, jnp.int32))  # fmt: skip
    states = jax.jit(engine.init_members)(hyper, x[:1])
    if devices > 1:
        states, hyper, data = _shard(states, hyper, data, devices)
    t = time.perf_counter()
    epoch = (
        jax.jit(engine.epoch, donate_argnums=0)
        .lower(states, hyper, data, 0, 0)
        .compile(compiler_options=dict(args.compiler_option) or None)
    )
    return Build(epoch, states, hyper, data, time.perf_counter() - t)


def _hidden(args) -> tuple[int, ...]:
    return tuple(int(h) for h in args.hidden.split(","))


def _data(Data, args):
    """(``Data`` of ``args.steps`` batches of synthetic training rows, one fold, no validation or
    test rows; the images ``x``)."""
    shape = (32, 32, 3) if args.model == "resnet" else (28, 28, 1)
    n = BATCH * args.steps
    ds = synthetic(n, shape)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    data = Data(x, y, jnp.arange(n, dtype=jnp.int32)[None], jnp.zeros((1, 0), jnp.int32),
                x[:0], y[:0])  # fmt: skip
    return data, x


def _shard(states, hyper, data, devices: int):
    """Members' states and hyperparameters split over the first ``devices`` devices; data on all."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("members",))
    spec = jax.sharding.PartitionSpec
    members = jax.sharding.NamedSharding(mesh, spec("members"))
    states, hyper = jax.device_put((states, hyper), members)
    return states, hyper, jax.device_put(data, jax.sharding.NamedSharding(mesh, spec()))


def step_flops(args) -> float:
    """Model FLOPs of one member-step (batch 128) in bench's convention
    (``bench_common.model_flops``: 6 × weights, biases excluded, per example) for the MLP; NaN for
    the other models, whose GFLOP/s are not printed."""
    if args.model != "mlp":
        return float("nan")
    return float(model_flops("mlp", (28, 28, 1), 10, _hidden(args)) * BATCH)


def _best_seconds(f, *args, repeats: int = 20) -> float:
    jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t)
    return best


def time_matmuls(k: int, batch: int = 128, hidden: int = 64, inputs: int = 784) -> list:
    """[(label, GFLOP/s)] for the matmuls of one vmapped MLP step at K members, alone."""
    ones = functools.partial(jnp.ones, dtype=jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    bmm = jax.jit(lambda a, b: jnp.einsum("kbi,kio->kbo", a, b))
    wide = k * hidden
    cases = [
        ("peak: 2048 x 2048 x 2048", mm, (ones((2048, 2048)), ones((2048, 2048)))),
        (f"layer 1 forward: {batch} x {inputs} x {wide}", mm,
         (ones((batch, inputs)), ones((inputs, wide)))),
        (f"layer 1 weight grad as x^T dh: {inputs} x {batch} x {wide}", mm,
         (ones((inputs, batch)), ones((batch, wide)))),
        (f"layer 1 weight grad as dh^T x: {wide} x {batch} x {inputs}", mm,
         (ones((wide, batch)), ones((batch, inputs)))),
        (f"layer 2, batched over members: {k} x ({batch} x {hidden} x {hidden})", bmm,
         (ones((k, batch, hidden)), ones((k, hidden, hidden)))),
    ]  # fmt: skip
    out = []
    for label, f, args in cases:
        m, n = args[0].shape[-2], args[1].shape[-1]
        flops = 2.0 * m * args[0].shape[-1] * n * (k if args[0].ndim == 3 else 1)
        out.append((label, flops / _best_seconds(f, *args) / 1e9))
    return out


def trace_ops(epoch, states, hyper, data, steps: int):
    """{op name: (µs per step, calls per step)} from a profiled epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp, create_perfetto_trace=True)
        states, out = epoch(states, hyper, data, 0, 99)
        jax.block_until_ready(out)
        jax.profiler.stop_trace()
        path = sorted(glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True))[-1]
        with gzip.open(path) as f:
            events = json.load(f)["traceEvents"]
    total, calls = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") == "X" and not name.startswith(("ThunkExecutor", "$", "Slinky", "Pjit")):
            total[name] += e["dur"]
            calls[name] += 1
    return {k: (v / steps, calls[k] / steps) for k, v in total.items()}


def build_all(args) -> dict[str, Build]:
    """The builds to time side by side: the current engine on each ``--devices`` count, then the
    ``--baseline`` engine (one device)."""
    builds = {}
    for d in args.devices:
        builds["current" if d == 1 else f"current on {d} devices"] = build(args, devices=d)
    if args.baseline:
        builds["baseline"] = build(args, load_train(args.baseline))
    return builds


def time_epochs(builds: dict[str, Build], rounds: int) -> dict[str, list[float]]:
    """Seconds of ``rounds`` epochs of every build, interleaved (round by round, build by build);
    each build's states are replaced by the ones its epoch returns (the old ones are donated)."""
    times = {name: [] for name in builds}
    for r in range(rounds):
        for name, b in builds.items():
            t = time.perf_counter()
            states, out = b.epoch(b.states, b.hyper, b.data, 0, r)
            jax.block_until_ready(out)
            times[name].append(time.perf_counter() - t)
            builds[name] = b._replace(states=states)
    return times


def report_steps(args, builds: dict[str, Build], times: dict[str, list[float]]) -> dict:
    """Print each build's step times (warm epochs) and their ratios to the first; returns
    {build: minimum seconds per step}."""
    flops = step_flops(args) * args.members
    result = {}
    for name, b in builds.items():
        warm = times[name][1:]
        step_min, step_med = min(warm) / args.steps, statistics.median(warm) / args.steps
        result[name] = step_min
        print(f"{name}: {args.model} {args.optimizer}+{args.reg} K={args.members} on "
              f"{jax.devices()[0]}: epoch compile {b.compile_s:.2f} s; per step min "
              f"{step_min * 1e3:.2f} ms, median {step_med * 1e3:.2f} ms; per member-step "
              f"{step_min / args.members * 1e3:.3f} ms; model {flops / step_min / 1e9:.1f} "
              "GFLOP/s (6·weights·examples)")  # fmt: skip
    first = next(iter(result))
    for name in list(result)[1:]:
        print(f"{name} / {first} step time (minima): {result[name] / result[first]:.2f}")
    return result


def report_trace(args, b: Build) -> None:
    """Profile one epoch of ``b`` and print the ``args.top`` ops that took the most time."""
    ops = trace_ops(b.epoch, b.states, b.hyper, b.data, args.steps)
    per_step = sum(us for us, c in ops.values() if c >= 1)
    print(f"traced ops executed every step: {per_step / 1e3:.2f} ms per step in all")
    for name, (us, c) in sorted(ops.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"{us / 1e3:8.3f} ms/step {c:6.2f}x  {name}")


def main(argv=None) -> dict:
    """Build, time and report (``--matmuls``, ``--trace`` after); returns {build: s per step}."""
    args = parse_args(argv)
    builds = build_all(args)
    result = report_steps(args, builds, time_epochs(builds, args.rounds))
    if args.matmuls:
        for label, gflops in time_matmuls(args.members):
            print(f"{gflops:8.1f} GFLOP/s  {label}")
    if args.trace:
        report_trace(args, next(iter(builds.values())))
    return result


if __name__ == "__main__":
    main()
