"""What checkpointing costs the main job: interleaved A/B pairs against a run that writes nothing.

Usage::

    python scripts/checkpoint_cost.py [--pairs 5] [--every 60s,1] [--out FILE.json]

Each pair runs README's main job (32 λ × 3 seeds of the tutorial MLP on digits, 30 epochs, the CPU
split as the CLI splits it) twice in this process, in alternating order: once with ``out=None``
(no files, no checkpoints) and once writing a run directory with ``checkpoint_every=E`` for each
E given. Compiled programs are cached, so every run measures training only (``meta``'s
``run_seconds``, which includes checkpoint saves but not writing the final files). Reported per E:
the median over pairs of run_seconds(with checkpoints) / run_seconds(without), and the share of
training time spent inside save calls (``meta["checkpoint_seconds"]``, measured in the process).
"""

import argparse
import os
import statistics
import sys
import tempfile

import wdjax
from wdjax import files


def main_job() -> wdjax.SweepConfig:
    """README's main job (the first command in README.md)."""
    strengths = wdjax.parse_grid("1e-6:1e-1:32", "--strength")
    return wdjax.SweepConfig(reg="wd", strengths=strengths, seeds=3, lrs=(1e-2,), epochs=30)


def one_pair(cfg, every: list[str], flip: bool, root: str) -> dict:
    """run_seconds without checkpoints and with each cadence (and seconds spent saving)."""
    runs = [None, *every][::-1] if flip else [None, *every]
    got = {}
    for e in runs:
        if e is None:
            got["none"] = (wdjax.sweep(cfg).meta["run_seconds"], 0.0)
            continue
        out = tempfile.mkdtemp(dir=root)
        os.rmdir(out)
        meta = wdjax.sweep(cfg, out=out, checkpoint_every=e).meta
        got[e] = (meta["run_seconds"], meta["checkpoint_seconds"])
    return got


def summarize(pairs: list[dict], every: list[str]) -> dict:
    """Per cadence: median ratio to the run without checkpoints, and the save-time share."""
    out = {}
    for e in every:
        ratios = [p[e][0] / p["none"][0] for p in pairs]
        shares = [p[e][1] / p[e][0] for p in pairs]
        out[e] = {"ratios": ratios, "median_ratio": statistics.median(ratios),
                  "save_share": shares, "median_save_share": statistics.median(shares)}  # fmt: skip
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--every", default="60s,1", help="checkpoint cadences to compare")
    p.add_argument("--out", default="results/checkpoint_cost.json")
    args = p.parse_args(argv)
    if args.pairs < 1:
        p.error("--pairs: give at least 1")
    wdjax.use_cpu_devices()
    cfg, every = main_job(), args.every.split(",")
    with tempfile.TemporaryDirectory() as root:
        wdjax.sweep(cfg)  # compile once; every timed run below reuses the programs
        pairs = [one_pair(cfg, every, flip=i % 2 == 1, root=root) for i in range(args.pairs)]
    report = {"pairs": pairs, "summary": summarize(pairs, every), "argv": sys.argv}
    for e, s in report["summary"].items():
        print(f"checkpoint_every={e}: median ratio {s['median_ratio']:.3f} "
              f"(pairs: {', '.join(f'{r:.3f}' for r in s['ratios'])}), "
              f"save calls {100 * s['median_save_share']:.1f} % of training time")  # fmt: skip
    files.write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
