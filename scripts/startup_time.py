"""How soon a repeat run of the main job starts training: compile caches off, JAX's alone, wdjax's.

Each run is a new process of README's main job with new λ values (the same program shape), one
epoch (the schedule is constant, so the epoch count does not enter the program). The CLI records
``startup_seconds`` (data loaded → the first epoch's program called) and ``compile_seconds`` in
``meta.json``; the process's wall time is measured here. Three settings, interleaved round by
round so that load changes hit all alike:

* ``off``: ``--compile-cache off`` (every run traces, lowers and compiles);
* ``jax``: JAX's persistent cache alone at its defaults (``JAX_COMPILATION_CACHE_DIR``, the 1 s
  minimum compile time: the epoch program is cached, init and the batch order are not), wdjax's
  off — what README recommended before wdjax had its own;
* ``wdjax``: the default (:mod:`wdjax.compile_cache`: serialized programs + JAX's cache).

Each cache is warmed by one run first (reported as ``cold``). Usage (from the repository root)::

    python scripts/startup_time.py --rounds 5 --out results/startup_time.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

MAIN_JOB = ["sweep", "--reg", "wd", "--seeds", "3", "--lr", "1e-2", "--epochs", "1", "--quiet"]


def run(mode: str, cache: str, out: str, shift: int) -> dict:
    """One new process of the main job; its startup, compile and wall seconds."""
    drop = ("WDJAX_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if mode == "jax":
        env.update(WDJAX_COMPILE_CACHE="off", JAX_COMPILATION_CACHE_DIR=os.path.join(cache, "jax"))
    else:
        env["WDJAX_COMPILE_CACHE"] = "off" if mode == "off" else cache
    lo = -6 - shift * 0.01  # new λ values every run: same shape, new values
    argv = [sys.executable, "-m", "wdjax", *MAIN_JOB, "--strength", f"{10**lo:.4g}:1e-1:32",
            "--out", out]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    return {"startup": meta["startup_seconds"], "compile": meta["compile_seconds"], "wall": wall}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default="results/startup_time.json")
    a = p.parse_args(argv)
    if a.rounds < 1:
        sys.exit("startup_time.py: error: --rounds must be >= 1")
    modes = ("off", "jax", "wdjax")
    rows = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        caches = {m: os.path.join(tmp, m) for m in modes}
        cold = {m: run(m, caches[m], os.path.join(tmp, f"{m}-cold"), 0) for m in modes[1:]}
        for r in range(a.rounds):
            for m in modes:
                rows[m].append(run(m, caches[m], os.path.join(tmp, f"{m}-{r}"), r + 1))
    load = os.getloadavg()
    med = {m: {k: statistics.median(x[k] for x in rows[m]) for k in rows[m][0]} for m in modes}
    command = "python scripts/startup_time.py " + " ".join(argv or sys.argv[1:])
    result = {"rounds": rows, "cold": cold, "median": med, "loadavg_end": load, "command": command}
    print(f"main job, new process, new λ values; medians of {a.rounds} interleaved rounds (s):")
    print(f"{'cache':8} {'startup':>8} {'compile':>8} {'wall':>7}   (startup min–max)")
    for m in modes:
        lo, hi = min(x["startup"] for x in rows[m]), max(x["startup"] for x in rows[m])
        print(f"{m:8} {med[m]['startup']:8.2f} {med[m]['compile']:8.2f} {med[m]['wall']:7.2f}"
              f"   ({lo:.2f}–{hi:.2f})")  # fmt: skip
    for m, c in cold.items():
        s = f"startup {c['startup']:.2f}, compile {c['compile']:.2f}, wall {c['wall']:.2f}"
        print(f"cold {m}: {s}")
    print(f"load average at the end {tuple(round(v, 2) for v in load)}")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
