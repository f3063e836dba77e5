"""Command line: ``python -m wdjax sweep [flags]`` (also installed as ``wdjax``).

Example: 32 log-spaced decoupled weight-decay strengths × 3 seeds of the tutorial MLP on the
embedded ``digits`` dataset, in one compiled call per epoch::

    python -m wdjax sweep --reg wd --strength 1e-6:1e-1:32 --seeds 3

User errors (bad flags, a dataset that is not prepared offline) print one ``error:`` line and exit
with status 2, before any compilation.
"""

import argparse
import datetime
import os
import sys

from wdjax.config import ConfigError, SweepConfig, parse_grid


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    d = SweepConfig()
    p = argparse.ArgumentParser(prog="wdjax", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "sweep",
        help="train a grid of regularization strengths in one program",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = s.add_argument
    a(
        "--dataset",
        default=d.dataset,
        help="digits (embedded, offline), fashion_mnist / mnist / kmnist (idx files, e.g. apt-get "
        "install dataset-fashion-mnist) or a TFDS name",
    )
    a("--data-dir", default=os.environ.get("TFDS_DATA_DIR"), help="TFDS data_dir")
    a(
        "--raw-dir",
        default=None,
        help="mnist, fashion_mnist, kmnist: a folder holding the 4 original idx files (.gz or "
        "not); default $WDJAX_RAW_DIR",
    )
    a("--model", default=d.model, help="mlp, cnn or resnet")
    a("--hidden", type=_ints, default=d.hidden, help="MLP hidden widths, e.g. 64,64")
    a("--optimizer", default=d.optimizer, help="sgd, momentum or adam")
    a("--momentum", type=float, default=d.momentum, help="momentum coefficient μ")
    a(
        "--reg",
        default=d.reg,
        help="none, l1, l2, wd, wd_paper, l1_prox, elastic_net_prox, group_lasso_prox",
    )
    a("--strength", default="1e-4", help="λ grid: 0,1e-4,1e-3 or a log range 1e-6:1e-1:32")
    a("--lr", default="1e-3", help="learning-rate grid (same syntax)")
    a("--seeds", type=int, default=d.seeds, help="number of seeds (0..N-1)")
    a("--folds", type=int, default=d.folds, help="k-fold cross-validation (members per point)")
    a("--l1-ratio", type=float, default=d.l1_ratio, help="elastic net: l1 = λ·ρ, l2 = λ·(1−ρ)")
    a("--epochs", type=int, default=d.epochs)
    a("--batch-size", type=int, default=d.batch_size)
    a("--dropout", type=float, default=d.dropout)
    a("--batchnorm", action="store_true")
    a("--train-size", type=int, default=None, help="subset of the training pool")
    a("--val-size", type=float, default=d.val_size, help="validation: a fraction or a count")
    a(
        "--label-noise",
        type=float,
        default=d.label_noise,
        help="fraction of training labels flipped",
    )
    a("--data-seed", type=int, default=d.data_seed, help="batch order, splits, noise")
    a(
        "--dtype",
        default=d.dtype,
        help="float32, or float64 (turns on jax_enable_x64 for this process: exact comparisons)",
    )
    a("--chunk-size", type=int, default=None, help="members per compiled call (memory)")
    a(
        "--cpu-devices",
        type=int,
        default=None,
        help="on CPU, run members as this many concurrent programs (default: 2 per core, at most "
        "8; 1: one program); ignored on accelerators and in multi-process runs",
    )
    a("--out", default=None, help="run directory (default results/<timestamp>)")
    a("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    a("--coordinator", default=None, help="HOST:PORT of process 0 (multi-process runs)")
    a("--num-processes", type=int, default=None)
    a("--process-id", type=int, default=None)
    a("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args) -> SweepConfig:
    val = args.val_size
    return SweepConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        raw_dir=args.raw_dir,
        model=args.model,
        hidden=tuple(args.hidden),
        dropout=args.dropout,
        batchnorm=args.batchnorm,
        optimizer=args.optimizer,
        reg=args.reg,
        strengths=parse_grid(args.strength, "--strength"),
        lrs=parse_grid(args.lr, "--lr"),
        seeds=args.seeds,
        folds=args.folds,
        l1_ratio=args.l1_ratio,
        momentum=args.momentum,
        epochs=args.epochs,
        batch_size=args.batch_size,
        train_size=args.train_size,
        val_size=int(val) if val >= 1 else val,
        label_noise=args.label_noise,
        data_seed=args.data_seed,
        chunk_size=args.chunk_size,
        dtype=args.dtype,
    )


def _distributed(args) -> None:
    given = [
        args.coordinator is not None,
        args.num_processes is not None,
        args.process_id is not None,
    ]
    if not any(given):
        return
    if not all(given):
        raise ConfigError(
            "--coordinator, --num-processes and --process-id go together: "
            "give all three (or none for a single process)"
        )
    import jax

    # CPU processes need a collectives implementation (GPU/TPU ignore it). Asking for the backend
    # here would initialise XLA before jax.distributed may.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def _cpu_devices(args, cfg: SweepConfig) -> None:
    from wdjax.runner import use_cpu_devices

    if args.num_processes is not None:
        return
    if args.cpu_devices is None and min(cfg.chunk_size or cfg.num_members, cfg.num_members) < 2:
        return  # one member runs on one device, and a split CPU runs that ~20 % slower
    try:
        use_cpu_devices(args.cpu_devices)
    except ConfigError:
        if args.cpu_devices is not None:  # asked for explicitly: say why it cannot be done
            raise  # (the default is best effort: JAX may already run in this process)


def dataset_line(d: dict) -> str:
    """One line naming the data a run used: ``meta["dataset"]`` (:func:`wdjax.data.describe`)."""
    shape = "x".join(map(str, d["image_shape"]))
    cached = f", read from the cache {d['cache']}" if d.get("cache") else ""
    files = len(d.get("sha256") or {})
    hashed = f", {files} files' sha256 in meta.json" if files else ""
    return (
        f"dataset {d['name']}: {d['train']} train / {d['val']} val / {d['test']} test images of "
        f"{shape}, {d['num_classes']} classes, from {d['source'] or 'data given in memory'}"
        f"{cached}{hashed}"
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from wdjax.data import DatasetError
    from wdjax.runner import sweep

    try:
        cfg = config_from_args(args)
        if cfg.dtype == "float64":
            import jax

            jax.config.update("jax_enable_x64", True)
        _cpu_devices(args, cfg)
        _distributed(args)
        out = args.out or os.path.join("results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
        result = sweep(cfg, out=out, resume=args.resume, progress=not args.quiet)
    except (ConfigError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = result.summary
    best = s["members"][s["best_member"]]
    if "dataset" in result.meta:  # runs made before meta recorded it have none
        print(dataset_line(result.meta["dataset"]))
    print(
        f"{cfg.num_members} members, {result.meta['run_seconds']:.1f}s "
        f"(compile {result.meta['compile_seconds']:.1f}s) -> {out}"
    )
    print(
        f"best by {s['selected_by']}: member {best['member']} (λ={best['strength']:.3g}, "
        f"lr={best['lr']:.3g}, seed {best['seed']}): test acc {best['final']['test_acc']:.4f}, "
        f"test loss {best['final']['test_loss']:.4f}"
    )
    if s["diverged"]:
        print(f"diverged members (frozen at the start of their diverging epoch): {s['diverged']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
