"""Which tests compare other bits under .ci/run's XLA:CPU settings: the `numerics` marker's list.

    python .ci/numerics_bits.py [PYTEST ARGS...]     (default: -m numerics tests)

Runs the tests once under the default XLA:CPU kernels and once under each setting .ci/run uses,
with WDJAX_TEST_DIGESTS set (tests/bitdigest.py: a digest of every value each test compares),
then prints the tests whose digests differ from the default's under either setting (their results
depend on the CPU's kernel choices), and the others that compare floats against a tolerance
(another CPU may move them): the `numerics` marker is the union (docs/testing.md).
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = [
    "",
    "--xla_cpu_experimental_ynn_fusion_type=",
    "--xla_cpu_experimental_ynn_fusion_type=dot",
]


def digests(flags: str, args: list[str], folder: Path) -> dict[str, dict]:
    out = folder / f"digests{len(list(folder.iterdir()))}.jsonl"
    env = dict(os.environ, WDJAX_TEST_DIGESTS=str(out), XLA_FLAGS=flags)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    print(f"+ XLA_FLAGS={flags!r} {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL)
    lines = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return {x["test"]: x for x in lines}


def main() -> None:
    args = sys.argv[1:] or ["-m", "numerics", "tests"]
    with tempfile.TemporaryDirectory() as tmp:
        base, *others = (digests(f, args, Path(tmp)) for f in SETTINGS)
    report(base, others)


def report(base: dict[str, dict], others: list[dict[str, dict]]) -> None:
    changed = sorted(
        t for t in base if any(base[t]["digest"] != o.get(t, {}).get("digest") for o in others)
    )
    tolerance = sorted(t for t in base if base[t]["tolerance"] and t not in changed)
    print(f"# {len(changed)} of {len(base)} tests compare other bits under another setting:")
    for t in changed:
        under = [f or "(default)" for f, o in zip(SETTINGS[1:], others, strict=True)
                 if base[t]["digest"] != o.get(t, {}).get("digest")]  # fmt: skip
        print(f"{t}  under {' and '.join(under)}")
    print(f"# {len(tolerance)} more compare floats against a tolerance with the same bits:")
    print("\n".join(tolerance))


if __name__ == "__main__":
    main()
