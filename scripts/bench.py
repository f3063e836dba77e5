"""Benchmark: wdjax's vmapped λ sweep against its own sequential runs, Keras and PyTorch (issue 6).

One run on one machine prints one table and writes it as JSON. It measures

1. the float32 matmul peak: a jitted ``N×N×N`` product (N = 2048), median of ``--repeats``;
2. ``mlp``: wdjax's sweep of the tutorial MLP (784→64→64→10, Adam, ``--reg`` wd or l1, batch 128)
   on synthetic MNIST-shaped data (60,000 × 28×28×1 made in memory: content does not change the
   work) at K = 1, 8, 32, 128 members: s per epoch of the whole sweep, s per member-epoch, model
   GFLOP/s and % of the peak, compile s, whether new λ values recompile, and memory (the compiled
   epoch's ``memory_analysis()`` against the arrays it must hold; process RSS growth over the
   post-compile baseline); plus the sequential baseline (K = 8 single-member sweeps, one after
   another);
3. ``cnn``: the small CNN (Conv32 → pool → Conv64 → pool → Dense128 → Dense10) on 10,000 synthetic
   examples at K = 1, 8; ``digits``: the default MLP on the embedded ``digits`` (K = 1, 32, 128),
   where per-step overhead, not arithmetic, dominates;
4. ``keras`` / ``torch`` (the optional ``bench`` extra): the same models trained by Keras 3
   ``model.fit`` (JAX backend) and by a plain PyTorch eager loop (``AdamW`` default and
   ``fused=True``), K = 1 and K = 8 one after another, for every model section selected (for the
   CNN: PyTorch's default AdamW, and Keras at K = 1 only, its XLA:CPU convolutions being slow);
5. the ratio check (with ``mlp`` and a peer): ``--rounds`` rounds, each timing the MLP sweep at
   K = ``--round-k`` (32) and then every peer at K = 1, back to back; the ratios per round and
   their median; with ``cnn`` too, the same for the CNN sweep at K = ``--cnn-round-k`` (8)
   (JSON ``cnn_rounds``). The table's rows are measured minutes apart, and single timings here
   drift by ±20 % over minutes; the two sides of a round's ratio are about a minute apart.

Timings are medians over warm epochs: the first epoch of every run (and every peer model) is
dropped, so ``--epochs`` must be at least 2. Model FLOPs are a labelled convention (defined in
``bench_common.py``, which ``profile_step.py`` shares): 6 × weights × examples for an MLP (an
over-count of about 1.4×: layer 1's input gradient is never computed) and 3 × forward FLOPs for
the CNN. The machine is whatever runs the script: state its load.

How to run (from the repository root)::

    pip install -e '.[bench]'              # optional peers: keras>=3.6, torch==2.13.0 (CPU wheel)
    python scripts/bench.py                 # everything; ~18 min on 2 cores
    python scripts/bench.py --quick         # tiny sizes, a smoke test in seconds
    python scripts/bench.py --sections mlp,torch --epochs 5 --out results/mlp-vs-torch.json
    python scripts/bench.py --gpu           # on an accelerator: the preset below, <= 8 min
    python scripts/bench.py --ks 1,8,32,128,1024 --sections mlp    # e.g. on an accelerator

``--gpu`` is the accelerator preset (refused on a CPU backend, where K = 1,024 would take hours):
the MLP at K = 1, 32, 256, 1,024 and the CNN at K = 1, 8, 64, a 4-member sequential baseline, an
8192³ matmul peak (float32 at JAX's default matmul precision, i.e. TF32 on NVIDIA tensor cores,
as the sweeps run), no peers (their loops here run on the CPU) and no ratio check; explicit flags
override it. Off the CPU nothing CPU-specific is set: no split-CPU child, no CPU compile options.

The JSON (``--out``, default ``results/bench.json``) holds ``meta``, ``peak``, ``rows`` (one per
table line), ``memory`` (per K of the tutorial MLP), ``ratios``, ``rounds`` (the ratio check, or
null) and ``notes``; it is rewritten after every model section (``meta.complete`` false until the
end), so an interrupted run keeps its rows.
"""

import argparse
import dataclasses
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_common import mlp_true_flops, mlp_weights, model_flops, synthetic, train_only

import wdjax
from wdjax import files
from wdjax.run.build import build

SECTIONS = ("mlp", "cnn", "digits", "keras", "torch")
MODEL_SECTIONS = ("mlp", "cnn", "digits")
PEER_REGS = ("wd", "l1")
SYNTHETIC_NOTE = "synthetic data: content does not change the work"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run (``--quick`` shrinks every one of them)."""

    sections: tuple[str, ...] = SECTIONS
    ks: tuple[int, ...] = (1, 8, 32, 128)
    cnn_ks: tuple[int, ...] = (1, 8)
    digits_ks: tuple[int, ...] = (1, 32, 128)
    peer_ks: tuple[int, ...] = (1, 8)
    seq_k: int = 8
    n_train: int = 60_000
    cnn_n_train: int = 10_000
    epochs: int = 3
    repeats: int = 10
    matmul_n: int = 2048
    reg: str = "wd"
    devices: int | None = None  # None: wdjax's default mesh
    cpu_devices: int | None = None  # CPU devices of the split rows (None: 2 per core, at most 8)
    rounds: int = 3  # rounds of the back-to-back ratio check (0: none)
    round_k: int = 32  # members of the sweep in the ratio check
    cnn_round_k: int = 8  # members of the CNN sweep in its ratio check
    child: bool = False  # internal: this process measures the split rows for its parent
    peak_gflops: float | None = None  # internal: the parent's peak, for a child's %peak
    out: str | None = "results/bench.json"
    quick: bool = False


QUICK = dict(
    ks=(1, 2),
    cnn_ks=(1, 2),
    digits_ks=(1, 2),
    peer_ks=(1, 2),
    seq_k=2,
    n_train=512,
    cnn_n_train=256,
    epochs=2,
    repeats=3,
    matmul_n=256,
    rounds=2,
    round_k=2,
    cnn_round_k=2,
)
GPU = dict(
    sections=("mlp", "cnn"),
    ks=(1, 32, 256, 1024),
    cnn_ks=(1, 8, 64),
    seq_k=4,
    matmul_n=8192,
    rounds=0,
)


@dataclasses.dataclass
class Workload:
    """One model on one dataset, as wdjax and the peers train it (batch 128, Adam, lr 1e-3)."""

    name: str  # row label
    kind: str  # "mlp" or "cnn"
    data: wdjax.Dataset
    hidden: tuple[int, ...]  # MLP widths (unused by the CNN)
    ks: tuple[int, ...]  # sweep sizes
    batch: int = 128

    @property
    def steps(self) -> int:
        return self.data.x_train.shape[0] // self.batch  # the last incomplete batch is dropped

    @property
    def examples(self) -> int:
        return self.steps * self.batch

    @property
    def flops(self) -> int:
        """Model FLOPs of one member-epoch (the convention of ``bench_common.model_flops``)."""
        d = self.data
        return model_flops(self.kind, d.image_shape, d.num_classes, self.hidden) * self.examples


def workload(name: str, plan: Plan) -> Workload:
    """The workload of model section ``name`` (``mlp``, ``cnn`` or ``digits``) at ``plan``'s sizes:
    synthetic MNIST-shaped data for the first two, the embedded ``digits`` for the last."""
    if name == "mlp":
        return Workload("mlp 784-64-64-10", "mlp", synthetic(plan.n_train), (64, 64), plan.ks)
    if name == "cnn":
        return Workload("cnn (small)", "cnn", synthetic(plan.cnn_n_train), (), plan.cnn_ks)
    digits = train_only(wdjax.load("digits"))
    return Workload("mlp digits 64-64-64-10", "mlp", digits, (64, 64), plan.digits_ks)


# --- host measurements ---------------------------------------------------------------------------


def _log(msg: str) -> None:
    """Progress on stderr (the table goes to stdout at the end)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _proc_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux)
        return True
    except OSError:
        return False


def matmul_peak(n: int, repeats: int) -> dict:
    """Float32 GFLOP/s of a jitted ``n×n @ n×n`` (median of ``repeats`` after one warm call)."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t)
    s = statistics.median(times)
    return {"n": n, "repeats": repeats, "seconds": s, "gflops": 2 * n**3 / s / 1e9}


# --- wdjax ---------------------------------------------------------------------------------------


def _grid(k: int, shift: float = 1.0) -> tuple[float, ...]:
    return tuple(float(v) * shift for v in np.geomspace(1e-5, 1e-2, k))


def run_sweep(w: Workload, plan: Plan, strengths, epochs: int) -> dict:
    """One ``wdjax.sweep``: warm epoch times (from the progress hook), compile s, peak RSS."""
    stamps, rss = [], []

    def progress(_info):
        stamps.append(time.perf_counter())
        rss.append(_proc_status("VmRSS") or 0)

    t0 = time.perf_counter()
    res = wdjax.sweep(
        data=w.data,
        model=w.kind,
        hidden=w.hidden,
        optimizer="adam",
        reg=plan.reg,
        strengths=tuple(strengths),
        lrs=(1e-3,),
        batch_size=w.batch,
        epochs=epochs,
        devices=None if plan.devices is None else jax.devices()[: plan.devices],
        progress=progress,
    )
    wall = time.perf_counter() - t0
    return {
        "epoch_s": [float(t) for t in np.diff(stamps)],
        "compile_s": float(res.meta["compile_seconds"]),
        "wall_s": wall,
        "rss_max": max(rss) if rss else None,
        "finite": bool(np.all(np.isfinite(res.history["train_loss"]))),
        "epoch_memory": res.meta.get("epoch_memory"),
        "devices": len(res.meta["devices"]),
    }


def _row(w: Workload, framework: str, how: str, k: int, member_s: float, peak: float, **extra):
    gflops = w.flops / member_s / 1e9
    return dict(
        model=w.name,
        framework=framework,
        how=how,
        k=k,
        s_per_epoch=k * member_s,
        s_per_member_epoch=member_s,
        gflops=gflops,
        pct_peak=100 * gflops / peak,
        peak_gflops=peak,
        **extra,
    )


def bench_wdjax(w: Workload, plan: Plan, peak: float, memory: bool) -> tuple[list, list]:
    """wdjax sweep rows for every K of ``w``, and (if ``memory``) a memory record per K."""
    rows, mems = [], []
    for k in w.ks:
        _log(f"{w.name}: wdjax sweep K={k}")
        a = run_sweep(w, plan, _grid(k), plan.epochs)
        b, growth = _second_call(w, plan, k)
        s = statistics.median(a["epoch_s"])
        extra = dict(compile_s=a["compile_s"], recompile_s=b["compile_s"])
        extra.update(finite=a["finite"], devices=a["devices"])
        rows.append(_row(w, "wdjax", "sweep", k, s / k, peak, **extra))
        if memory:
            mems.append(memory_record(w, plan, k, growth, a["epoch_memory"], a["devices"]))
    return rows, mems


def _second_call(w: Workload, plan: Plan, k: int) -> tuple[dict, int | None]:
    """A 1-epoch sweep with new λ values of the same count (it must not recompile), and the growth
    of the peak RSS during it over the RSS just before it (None where Linux does not tell)."""
    gc.collect()
    base = _proc_status("VmRSS")
    reset = _reset_peak_rss()
    b = run_sweep(w, plan, _grid(k, 2.0), 1)
    hwm = _proc_status("VmHWM") if reset else b["rss_max"]
    return b, None if base is None or hwm is None else hwm - base


def bench_sequential(w: Workload, plan: Plan, peak: float) -> dict:
    """K = ``plan.seq_k`` members trained one after another by single-member sweeps."""
    epoch_s, wall = [], 0.0
    _log(f"{w.name}: wdjax sequential, {plan.seq_k} single-member sweeps")
    for lam in _grid(plan.seq_k):
        r = run_sweep(w, plan, (lam,), plan.epochs)
        epoch_s += r["epoch_s"]
        wall += r["wall_s"]
    s = statistics.median(epoch_s)
    wall_s = wall / (plan.seq_k * plan.epochs)
    return _row(w, "wdjax", "sequential", plan.seq_k, s, peak, wall_s_per_member_epoch=wall_s)


def memory_record(w: Workload, plan: Plan, k: int, rss_growth, stats: dict | None,
                  devices: int = 1) -> dict:  # fmt: skip
    """The compiled epoch's memory per device (``meta["epoch_memory"]`` of the sweep) against
    what one device must hold: the data (replicated) + its K / devices members' state."""
    d = w.data
    n_rows = d.x_train.shape[0] + d.x_val.shape[0]
    data_bytes = sum(np.asarray(x).nbytes for x in d[:6]) + 4 * n_rows  # + index arrays
    state_bytes = member_state_bytes(w, plan)
    rec = {"k": k, "rss_growth_bytes": rss_growth, "devices": devices}
    rec.update(
        data_bytes=data_bytes,
        state_bytes_per_member=state_bytes,
        need_bytes=data_bytes + -(-k // devices) * state_bytes,
    )
    if stats is not None:
        rec.update(
            arguments=stats["arguments"],
            outputs=stats["outputs"],
            temporaries=stats["temporaries"],
            aliased=stats["aliased"],
            compiled_bytes=stats["total"],
            ratio=stats["total"] / rec["need_bytes"],
        )
    return rec


def member_state_bytes(w: Workload, plan: Plan) -> int:
    """Bytes of one member's state in wdjax's engine: params, optimizer state, counters."""
    cfg = wdjax.SweepConfig(model=w.kind, hidden=w.hidden, reg=plan.reg, batch_size=w.batch)
    engine = build(cfg, num_classes=w.data.num_classes).engine
    h = wdjax.Hyper(jnp.float32(1e-4), jnp.float32(1e-3), jnp.int32(0), jnp.int32(0))
    state = jax.eval_shape(engine.init, h, jnp.zeros((1, *w.data.image_shape), jnp.float32))
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))


# --- peers ---------------------------------------------------------------------------------------


def keras_model(w: Workload, plan: Plan, lam: float):
    """The Keras 3 model of ``w``, compiled with Adam(W) as wdjax trains it (``lam``: its λ)."""
    import keras

    reg = keras.regularizers.L1(lam) if plan.reg == "l1" else None
    dense = dict(kernel_regularizer=reg)
    if w.kind == "mlp":
        layers = [keras.layers.Flatten()]
        layers += [keras.layers.Dense(h, activation="relu", **dense) for h in w.hidden]
    else:
        conv = dict(kernel_size=3, padding="same", activation="relu", kernel_regularizer=reg)
        layers = [
            keras.layers.Conv2D(32, **conv),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, **conv),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu", **dense),
        ]
    model = keras.Sequential(
        [keras.Input(w.data.image_shape), *layers, keras.layers.Dense(w.data.num_classes, **dense)]
    )
    if plan.reg == "wd":
        opt = keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=lam)
        opt.exclude_from_weight_decay(var_names=["bias"])
    else:
        opt = keras.optimizers.Adam(learning_rate=1e-3)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
    return model


def keras_member(w: Workload, plan: Plan, lam: float, epochs: int) -> list[float]:
    """Epoch times of one Keras ``model.fit`` (JAX backend) of the same model and optimizer."""
    import keras

    model = keras_model(w, plan, lam)
    stamps = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            stamps.append([time.perf_counter()])

        def on_epoch_end(self, epoch, logs=None):
            stamps[-1].append(time.perf_counter())

    x, y = w.data.x_train[: w.examples], w.data.y_train[: w.examples]
    model.fit(x, y, batch_size=w.batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[Clock()])
    return [b - a for a, b in stamps]


def torch_model(w: Workload):
    """The PyTorch model of ``w`` (channels first), initialized from PyTorch's global seed."""
    from torch import nn

    classes = w.data.num_classes
    h, wd, c = w.data.image_shape
    if w.kind == "mlp":
        dims = [h * wd * c, *w.hidden]
        layers = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(dims[-1], classes))
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (h // 4) * (wd // 4), 128),
        nn.ReLU(),
        nn.Linear(128, classes),
    )


def torch_member(w: Workload, plan: Plan, lam: float, epochs: int, fused: bool) -> list[float]:
    """Epoch times of a plain PyTorch eager loop (AdamW; ``fused`` kernels or the default)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = torch_model(w)
    kernels = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    decay = lam if plan.reg == "wd" else 0.0
    groups = [{"params": kernels, "weight_decay": decay}, {"params": biases, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, fused=fused or None)
    x = torch.from_numpy(np.ascontiguousarray(w.data.x_train.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(w.data.y_train.astype(np.int64))
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        order = torch.randperm(x.shape[0], generator=gen)
        for i in range(w.steps):
            rows = order[i * w.batch : (i + 1) * w.batch]
            loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
            if plan.reg == "l1":
                loss = loss + lam * sum(p.abs().sum() for p in kernels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return times


def available_peers(plan: Plan) -> tuple[list[str], list[str]]:
    """Peer frameworks selected and importable, and notes: those skipped, and torch's threads."""
    peers, notes = [], []
    for name in ("keras", "torch"):
        if name not in plan.sections:
            continue
        if plan.reg not in PEER_REGS:
            notes.append(f"{name} skipped: peers implement --reg {'/'.join(PEER_REGS)} only")
            continue
        try:
            _import_peer(name)
        except ImportError as err:
            notes.append(f"{name} skipped ({err}): pip install -e '.[bench]'")
            continue
        peers.append(name)
    if "torch" in peers:
        import torch

        notes.append(f"torch threads: {torch.get_num_threads()}")
    return peers, notes


def _import_peer(name: str) -> None:
    """Import peer ``name`` (Keras on its JAX backend); ImportError where it cannot run."""
    if name == "torch":
        import torch  # noqa: F401

        return
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        raise ImportError(f"Keras backend is {keras.backend.backend()!r}, not 'jax'")


def bench_peers(w: Workload, plan: Plan, peak: float, peers) -> list[dict]:
    """K = ``plan.peer_ks`` models trained one after another by each peer framework."""
    rows = []
    for framework, how, ks, train in _peer_variants(w, plan, peers, plan.epochs):
        for k in ks:
            _log(f"{w.name}: {framework} {how}, {k} model(s) one after another")
            runs = [train(lam) for lam in _grid(k)]
            warm = [t for r in runs for t in r[1:]]
            first = statistics.median(r[0] for r in runs) - statistics.median(warm)
            rows.append(
                _row(w, framework, how, k, statistics.median(warm), peak, first_epoch_extra_s=first)
            )
    return rows


def _peer_variants(w: Workload, plan: Plan, peers, epochs: int) -> list[tuple]:
    """(framework, how, Ks, train(λ) -> epoch seconds) of every peer that trains ``w``."""
    opt = "AdamW" if plan.reg == "wd" else "Adam + L1 loss"
    ks, cnn = plan.peer_ks, w.kind == "cnn"
    variants = []
    if "keras" in peers:  # XLA:CPU convolutions make Keras' CNN slow: K = 1 only
        keras_ks = (1,) if cnn else ks
        variants.append(("keras", "model.fit (jax)", keras_ks,
                         lambda lam: keras_member(w, plan, lam, epochs)))  # fmt: skip
    if "torch" in peers:
        variants.append(("torch", f"eager, {opt}", ks,
                         lambda lam: torch_member(w, plan, lam, epochs, fused=False)))  # fmt: skip
        if not cnn:  # the fused optimizer matters where per-step overhead does (not the CNN)
            fused = lambda lam: torch_member(w, plan, lam, epochs, fused=True)  # noqa: E731
            variants.append(("torch", f"eager, {opt}(fused)", ks, fused))
    return variants


# --- the ratio check -----------------------------------------------------------------------------


def bench_rounds(w: Workload, plan: Plan, peak: float, peers, section: str = "mlp") -> dict | None:
    """The ratio check: ``plan.rounds`` rounds, each timing wdjax's sweep of model section
    ``section`` at K = ``round_k`` (``cnn_round_k`` for the CNN; on the split CPU where the
    benchmark splits it) and then every peer at K = 1, back to back.

    A single timing here drifts by ±20 % over minutes, and the table's rows are measured minutes
    apart; the two sides of a round's ratio are a minute apart at most. Returns the per-round
    seconds per member-epoch, the per-round ratios (peer s / sweep s) and their medians; None
    without peers.
    """
    if plan.rounds < 1 or not peers:
        return None
    k, n = plan.cnn_round_k if section == "cnn" else plan.round_k, split_devices(plan)
    how = f"sweep, {n} CPU devices" if n else "sweep"
    sweep = f"wdjax {how}"
    variants = _peer_variants(w, plan, peers, plan.epochs)
    rounds = []
    for i in range(plan.rounds):
        _log(f"ratio round {i + 1}/{plan.rounds}: wdjax {how} K={k}, then each peer at K=1")
        times = {sweep: _round_sweep(w, plan, peak, n, section, k)}
        for framework, peer_how, _, train in variants:
            times[f"{framework} {peer_how}"] = statistics.median(train(_grid(1)[0])[1:])
        rounds.append(times)
    faster = {name: [r[name] / r[sweep] for r in rounds] for name in rounds[0] if name != sweep}
    return {
        "model": w.name,
        "k": k,
        "how": how,
        "seconds_per_member_epoch": rounds,
        "faster": faster,
        "median_faster": {name: statistics.median(v) for name, v in faster.items()},
    }


def _round_sweep(w: Workload, plan: Plan, peak: float, split: int, section: str, k: int) -> float:
    """Seconds per member-epoch of wdjax's sweep of ``section`` at K = ``k``: in a child process
    on ``split`` CPU devices, or in this one when ``split`` is 0."""
    sub = dataclasses.replace(plan, ks=(k,), cnn_ks=(k,))
    if split:
        rows, _ = bench_split(section, sub, peak)
    else:
        rows, _ = bench_wdjax(dataclasses.replace(w, ks=sub.ks), sub, peak, memory=False)
    return rows[0]["s_per_member_epoch"]


# --- the split CPU (a child process) -------------------------------------------------------------


def split_devices(plan: Plan) -> int:
    """CPU devices of the split rows: 0 (none) off CPU or when asked for 1."""
    if jax.default_backend() != "cpu":
        return 0
    n = plan.cpu_devices or wdjax.engine.devices.default_cpu_devices()
    return n if n > 1 else 0


def bench_split(name: str, plan: Plan, peak: float) -> tuple[list, list]:
    """The wdjax sweep rows of section ``name`` measured by a child process whose CPU is split
    into N devices (JAX fixes the device count at start-up, so it cannot be this process)."""
    n = split_devices(plan)
    if not n:
        return [], []
    _log(f"{name}: wdjax sweep on {n} CPU devices (child process)")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "child.json")
        argv = [*_child_argv(name, plan, n, peak), "--out", out]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        child = files.read_json(out)
    for r in child["rows"]:
        r["how"] = f"sweep, {n} CPU devices"
    for m in child["memory"]:
        m["how"] = f"{n} CPU devices"
    return child["rows"], child["memory"]


def _child_argv(name: str, plan: Plan, n: int, peak: float) -> list[str]:
    """The command line of the child that measures section ``name`` on ``n`` CPU devices."""
    argv = [sys.executable, os.path.abspath(__file__), "--child", "--sections", name,
            "--cpu-devices", str(n), "--peak-gflops", str(peak), "--reg", plan.reg,
            "--epochs", str(plan.epochs), "--n-train", str(plan.n_train),
            "--cnn-n-train", str(plan.cnn_n_train)]  # fmt: skip
    for flag in ("ks", "cnn_ks", "digits_ks"):
        argv += [_flag(flag), ",".join(map(str, getattr(plan, flag)))]
    return argv


def run_child(plan: Plan) -> dict:
    """The wdjax sweep rows (and memory) of the one selected model section, for the parent."""
    name = plan.sections[0]
    rows, memory = bench_wdjax(workload(name, plan), plan, plan.peak_gflops, memory=name == "mlp")
    return {"meta": {"devices": len(jax.devices())}, "rows": rows, "memory": memory}


# --- report --------------------------------------------------------------------------------------


def ratios(rows: list[dict]) -> list[dict]:
    """How many times faster per member-epoch each wdjax sweep is than each baseline.

    Baselines are the other rows of the same model that are not sweeps (the sequential run and
    the peers), each at its largest K.
    """
    sweeps = [r for r in rows if r["framework"] == "wdjax" and r["how"].startswith("sweep")]
    base = {}
    for r in rows:
        if r not in sweeps:
            key = (r["model"], r["framework"], r["how"])
            if key not in base or r["k"] > base[key]["k"]:
                base[key] = r
    out = []
    for r in sweeps:
        for (model, framework, how), b in base.items():
            if model == r["model"]:
                faster = b["s_per_member_epoch"] / r["s_per_member_epoch"]
                out.append(dict(model=model, k=r["k"], how=r["how"], vs=f"{framework} {how}",
                                vs_k=b["k"], faster=faster))  # fmt: skip
    return out


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(result: dict) -> str:
    """The human-readable table of a result dict (as written to JSON)."""
    lines = _row_lines(result["rows"])
    if result["memory"]:
        lines += ["", *_memory_lines(result["memory"])]
    if result["ratios"]:
        lines += ["", *_ratio_lines(result["ratios"])]
    for key in ("rounds", "cnn_rounds"):
        if result.get(key):
            lines += ["", *_rounds_lines(result[key])]
    lines += ["", *("note: " + n for n in result["notes"])]
    return "\n".join(lines)


def _row_lines(rows: list[dict]) -> list[str]:
    head = (
        f"{'model':<22} {'framework / how':<30} {'K':>5} {'s/epoch':>9} {'s/mem-ep':>9} "
        f"{'GFLOP/s':>8} {'%peak':>6} {'compile':>8} {'recomp':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<22} {r['framework'] + ' ' + r['how']:<30} {r['k']:>5} "
            f"{r['s_per_epoch']:>9.3f} {r['s_per_member_epoch']:>9.4f} {r['gflops']:>8.1f} "
            f"{r['pct_peak']:>6.1f} "
            f"{_fmt(r.get('compile_s', r.get('first_epoch_extra_s')), '8.2f'):>8} "
            f"{_fmt(r.get('recompile_s'), '7.2f'):>7}"
        )
    return lines


def _memory_lines(memory: list[dict]) -> list[str]:
    lines = [
        "memory (tutorial MLP; MiB, per device): compiled epoch = args + outputs + temps - "
        "aliased; must hold = data + (K / devices) x member state"
    ]
    for m in memory:
        mib = {k: (v / 2**20 if isinstance(v, int | float) else None) for k, v in m.items()}
        lines.append(
            f"  K={m['k']:<5} {m.get('how', 'one process'):>15}  "
            f"devices {m.get('devices', 1)}  compiled "
            f"{_fmt(mib.get('compiled_bytes'), '8.1f')}  must hold {mib['need_bytes']:8.1f} "
            f"(data {mib['data_bytes']:.1f} + K/devices x state "
            f"{m['state_bytes_per_member'] / 2**10:.1f} KiB)  ratio "
            f"{_fmt(m.get('ratio'), '.2f')}  RSS growth {_fmt(mib['rss_growth_bytes'], '.1f')}"
        )
    return lines


def _ratio_lines(qs: list[dict]) -> list[str]:
    groups = {}
    for q in qs:
        groups.setdefault((q["model"], q.get("how", "sweep"), q["k"]), []).append(q)
    lines = ["wdjax sweep, times faster per member-epoch than (baseline s / sweep s):"]
    for (model, how, k), group in groups.items():
        parts = ", ".join(f"{q['vs']} {q['faster']:.2f}x" for q in group)
        lines.append(f"  {model} {how} K={k}: {parts}")
    return lines


def _rounds_lines(rounds: dict) -> list[str]:
    n = len(rounds["seconds_per_member_epoch"])
    lines = [
        f"ratio check, {n} rounds back to back ({rounds['model']}: wdjax {rounds['how']} "
        f"K={rounds['k']}, then each peer at K=1; peer s / sweep s per round, and the median):"
    ]
    for name, each in rounds["faster"].items():
        per = " ".join(f"{x:.2f}x" for x in each)
        lines.append(f"  {name}: {per}  median {rounds['median_faster'][name]:.2f}x")
    sweep = [r[f"wdjax {rounds['how']}"] for r in rounds["seconds_per_member_epoch"]]
    lines.append("  wdjax s/member-epoch per round: " + " ".join(f"{s:.4f}" for s in sweep))
    return lines


# --- one run, top to bottom ----------------------------------------------------------------------


def run(plan: Plan, save=None) -> dict:
    """Run every selected section of ``plan``; returns the result dict.

    ``save(result)``, if given, is called after every model section (``meta["complete"]`` false)
    and once at the end (true), so an interrupted run keeps what it measured.
    """
    if plan.child:
        return run_child(plan)
    load0, t0 = os.getloadavg(), time.perf_counter()
    _log(f"matmul peak ({plan.matmul_n}^3 float32)")
    peak = matmul_peak(plan.matmul_n, plan.repeats)
    peers, peer_notes = available_peers(plan)
    result = new_result(plan, peak, load0, setup_notes(plan, peak) + peer_notes)
    models = [s for s in MODEL_SECTIONS if s in plan.sections] or ["mlp"]  # peers need a model
    for name in models:
        measure_section(result, plan, name, peers, first=name == models[0])
        checkpoint(result, t0, save)
    if {"mlp", "cnn"} & set(plan.sections):
        ratio_check(result, plan, peers)
        checkpoint(result, t0, save)
    finish(result, plan, load0)
    checkpoint(result, t0, save)
    return result


def new_result(plan: Plan, peak: dict, load0, notes: list[str]) -> dict:
    """The result dict before any model section (``meta["complete"]`` false)."""
    meta = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "versions": _versions(),
        "argv": sys.argv,
        "plan": dataclasses.asdict(plan),
        "loadavg_start": load0,
        "complete": False,
    }
    keys = ("meta", "peak", "rows", "memory", "ratios", "rounds", "cnn_rounds", "notes")
    return dict(zip(keys, (meta, peak, [], [], [], None, None, notes), strict=True))


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "keras", "torch"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def setup_notes(plan: Plan, peak: dict) -> list[str]:
    """The notes that say what the table's columns mean (data, peak, FLOPs, timings, rows)."""
    in_dim = 28 * 28
    overcount = 6 * mlp_weights(in_dim, (64, 64), 10) / mlp_true_flops(in_dim, (64, 64), 10)
    return [
        f"{SYNTHETIC_NOTE} (uniform noise, random labels); no validation/test rows, so an epoch "
        "times training (+ per-member weight statistics) only",
        f"peak: jitted {plan.matmul_n}^3 float32 matmul, median of {plan.repeats}, measured "
        f"before each model section (%peak uses it): first {peak['gflops']:.1f} GFLOP/s",
        "model FLOPs: MLP 6 x weights x examples per member-epoch (a convention: it over-counts "
        f"the tutorial MLP's real work {overcount:.2f}x, layer 1's input gradient is never "
        "computed); CNN 3 x forward FLOPs",
        f"s/epoch and s/member-epoch: medians over warm epochs ({plan.epochs} per run, the first "
        "dropped); peers train K models one after another (s/epoch = K x s/member-epoch)",
        "compile: seconds of wdjax's first call at this K (peers: first epoch minus a warm one); "
        "recomp: a second call with new λ values (0.00 = no recompile)",
        "'sweep' rows: one process with one device per accelerator (one CPU device); 'sweep, N "
        "CPU devices': a child process with the CPU split into N JAX devices "
        "(wdjax.use_cpu_devices, as the CLI does), members sharded over the most of them that "
        "pad K by at most 25 %; the peers and the peak run unsplit (a split process runs a "
        "single-device program ~20 % slower)",
    ]


def measure_section(result: dict, plan: Plan, name: str, peers, first: bool) -> None:
    """Add the rows of model section ``name``: wdjax's (if the section is selected) and the peers'.
    The matmul peak is measured again before every section but the first (load drifts)."""
    w = workload(name, plan)
    peak = result["peak"]["gflops"] if first else section_peak(result["peak"], plan, name)
    if name in plan.sections:
        measure_wdjax(result, plan, name, w, peak)
    result["rows"] += bench_peers(w, plan, peak, peers)


def section_peak(peak: dict, plan: Plan, name: str) -> float:
    """The matmul peak measured now, before section ``name``; kept in ``peak``'s sections."""
    _log(f"matmul peak before {name}")
    gflops = matmul_peak(plan.matmul_n, plan.repeats)["gflops"]
    peak.setdefault("gflops_sections", {})[name] = gflops
    return gflops


def measure_wdjax(result: dict, plan: Plan, name: str, w: Workload, peak: float) -> None:
    """Add wdjax's rows of section ``name``: the sweep in this process, on the split CPU, and (for
    the tutorial MLP) the sequential baseline; memory records of the tutorial MLP."""
    rows, memory = bench_wdjax(w, plan, peak, memory=name == "mlp")
    split_rows, split_memory = bench_split(name, plan, peak)
    result["rows"] += rows + split_rows
    result["memory"] += memory + split_memory
    if name == "mlp":
        seq = bench_sequential(w, plan, peak)
        result["rows"].append(seq)
        result["notes"].append(
            f"sequential: {plan.seq_k} single-member sweeps one after another; with each "
            f"call's overhead (data to device, init) {seq['wall_s_per_member_epoch']:.4f} "
            "s per member-epoch"
        )


def ratio_check(result: dict, plan: Plan, peers) -> None:
    """Run the ratio checks (:func:`bench_rounds`): the MLP's into ``result["rounds"]``, the
    CNN's (with the ``cnn`` section) into ``result["cnn_rounds"]``; or note their absence."""
    peak = result["peak"]["gflops"]
    if "mlp" in plan.sections:
        result["rounds"] = bench_rounds(workload("mlp", plan), plan, peak, peers)
    if "cnn" in plan.sections:
        result["cnn_rounds"] = bench_rounds(workload("cnn", plan), plan, peak, peers, "cnn")
    if result["rounds"] is None and result["cnn_rounds"] is None and plan.rounds:
        result["notes"].append("ratio check skipped: no peer to compare with")


def finish(result: dict, plan: Plan, load0) -> None:
    """Add the closing notes (memory, the peak over the run, load average); mark it complete."""
    peak, notes = result["peak"], result["notes"]
    if result["memory"]:
        notes.append(
            "memory: compiled = the epoch executable's memory_analysis() per device; must hold = "
            "data as stored (+ int32 index arrays, replicated on every device) + K / devices x "
            "member state (params, optimizer state, counters); "
            "RSS growth = peak RSS during the second (1-epoch, no-recompile) call over the RSS "
            "just before it, after compile (includes that call's copy of the data to the device)"
        )
    peak["gflops_end"] = matmul_peak(plan.matmul_n, plan.repeats)["gflops"]
    before = "".join(f"before {k} {v:.1f}, " for k, v in peak.get("gflops_sections", {}).items())
    notes += [
        f"peak (GFLOP/s) {before}at the end {peak['gflops_end']:.1f}",
        f"load average (1, 5, 15 min) at start {tuple(round(v, 2) for v in load0)}, at end "
        f"{tuple(round(v, 2) for v in os.getloadavg())}; {os.cpu_count()} CPUs",
    ]
    result["meta"]["complete"] = True


def checkpoint(result: dict, t0: float, save) -> None:
    """Bring ``result``'s ratios and run time up to date, then ``save(result)`` if given."""
    result["ratios"] = ratios(result["rows"])
    result["meta"].update(loadavg_end=os.getloadavg(), seconds=time.perf_counter() - t0)
    if save is not None:
        save(result)


# --- command line --------------------------------------------------------------------------------

SIZE_FLAGS = {  # comma lists of positive integers
    "ks": "members of the tutorial MLP sweep (default 1,8,32,128)",
    "cnn_ks": "members of the CNN sweep (default 1,8)",
    "digits_ks": "members of the digits sweep (default 1,32,128)",
    "peer_ks": "models the peers train one after another (default 1,8)",
}
COUNT_FLAGS = {  # integers: (the least value, help)
    "seq_k": (1, "members of the sequential baseline (default 8)"),
    "n_train": (1, "synthetic MLP examples (default 60000)"),
    "cnn_n_train": (1, "synthetic CNN examples (default 10000)"),
    "epochs": (2, "epochs per run, the first not timed (default 3)"),
    "repeats": (1, "matmul repeats for the peak (default 10)"),
    "matmul_n": (1, "matmul size for the peak (default 2048)"),
    "devices": (1, "devices to shard members over (default: wdjax's choice)"),
    "cpu_devices": (1, "CPU devices of the extra 'sweep, N CPU devices' rows, measured in a "
                    "child process (default 2 per core, at most 8; 1: no such rows)"),
    "rounds": (0, "rounds of the ratio check: the MLP sweep at K = --round-k, then each peer at "
               "K = 1, back to back, repeated (default 3; 0: none)"),
    "round_k": (1, "members of the ratio check's sweep (default 32)"),
    "cnn_round_k": (1, "members of the CNN ratio check's sweep (default 8; with --sections cnn)"),
}  # fmt: skip


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """bench.py's flags; those left out (None) take :class:`Plan`'s value (``--quick``'s)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds")
    p.add_argument(
        "--gpu",
        action="store_true",
        help="the accelerator preset (MLP K=1,32,256,1024; CNN K=1,8,64; no peers)",
    )
    p.add_argument("--sections", help=f"comma list from {','.join(SECTIONS)} (default: all)")
    for field, help_ in SIZE_FLAGS.items():
        p.add_argument(_flag(field), help=help_)
    for field, (_, help_) in COUNT_FLAGS.items():
        p.add_argument(_flag(field), type=int, help=help_)
    p.add_argument("--reg", default="wd", help="regularizer of every run: wd (default) or l1 ...")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--peak-gflops", type=float, help=argparse.SUPPRESS)
    p.add_argument("--out", help="JSON path (default results/bench.json; '' writes none)")
    return p


def parse_args(argv=None) -> Plan:
    """The :class:`Plan` of a command line; raises ValueError naming a bad flag and its fix."""
    plan = Plan(**_plan_fields(build_parser().parse_args(argv)))
    _check_plan(plan)
    return plan


def _plan_fields(a: argparse.Namespace) -> dict:
    """:class:`Plan`'s fields given on the command line (over ``QUICK`` with ``--quick``)."""
    if a.quick and a.gpu:
        raise ValueError("--quick and --gpu: choose one preset (--quick is the CPU smoke test)")
    if a.gpu and jax.default_backend() == "cpu":
        raise ValueError(
            "--gpu: JAX's backend is cpu; the preset (K up to 1,024) is for an "
            "accelerator: drop --gpu, or install jax with CUDA/TPU support"
        )
    kw = dict(QUICK) if a.quick else dict(GPU) if a.gpu else {}
    kw.update(quick=a.quick, reg=a.reg, child=a.child, peak_gflops=a.peak_gflops)
    if a.sections is not None:
        kw["sections"] = _sections(a.sections)
    for field in SIZE_FLAGS:
        if getattr(a, field) is not None:
            kw[field] = _ints(getattr(a, field), _flag(field))
    for field, (low, _) in COUNT_FLAGS.items():
        if getattr(a, field) is not None:
            kw[field] = _at_least(getattr(a, field), low, _flag(field))
    if a.reg not in wdjax.STRATEGIES:
        raise ValueError(f"--reg {a.reg!r}: choose one of {', '.join(wdjax.STRATEGIES)}")
    if a.out is not None:
        kw["out"] = a.out or None
    return kw


def _sections(text: str) -> tuple[str, ...]:
    secs = tuple(s.strip() for s in text.split(",") if s.strip())
    if not secs or any(s not in SECTIONS for s in secs):
        raise ValueError(f"--sections {text!r}: choose from {','.join(SECTIONS)}")
    return secs


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} {text!r}: give positive integers separated by commas") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag} {text!r}: give positive integers separated by commas, e.g. 1,8")
    return values


def _at_least(value: int, low: int, flag: str) -> int:
    if value < low:
        why = " (the first epoch is not timed)" if flag == "--epochs" else ""
        raise ValueError(f"{flag} {value}: give an integer >= {low}{why}")
    return value


def _check_plan(plan: Plan) -> None:
    """Checks across flags, and against this machine's devices (after a child splits its CPU)."""
    n_min = min(plan.n_train, plan.cnn_n_train)
    if n_min < 128:
        raise ValueError(f"--n-train/--cnn-n-train {n_min}: give at least one batch (128)")
    if plan.child:  # split this process's CPU before anything asks JAX for its devices
        try:
            wdjax.use_cpu_devices(plan.cpu_devices)
        except wdjax.ConfigError as err:
            raise ValueError(f"--cpu-devices {plan.cpu_devices}: {err}") from None
    if plan.devices is not None and plan.devices > len(jax.devices()):
        raise ValueError(f"--devices {plan.devices}: only {len(jax.devices())} available")


def main(argv=None) -> dict:
    try:
        plan = parse_args(argv)
    except ValueError as err:
        sys.exit(f"bench.py: error: {err}")
    result = run(plan, save=(lambda r: files.write_json(plan.out, r)) if plan.out else None)
    if plan.child:
        files.write_json(plan.out, result)
        return result
    print(table(result))
    if plan.out:
        print(f"\nwrote {plan.out}")
    return result


if __name__ == "__main__":
    main()
