#!/usr/bin/env bash
# Run every study in experiments/ in smoke mode (seconds each) into a temporary directory.
#
# Usage: scripts/smoke_studies.sh [OUT_DIR]    (default: a fresh mktemp -d; PYTHON overrides the
# interpreter, default .venv/bin/python). Studies run in the README's order. A study passes when it exits 0 and wrote what every study
# writes (wdjax.study.finish): summary.json with figure and command, table.md, table.csv and the
# figure. Exits 1 if any study failed; prints one line per study.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
OUT="${1:-$(mktemp -d -t wdjax-smoke-XXXXXX)}"
mkdir -p "$OUT"
ORDER="tutorial_mlp lambda_curve l1_sparsity decoupling versus_dropout_batchnorm \
batchnorm_equilibrium select_lambda overhead lambda_scaling decay_variants"
names=""
for n in $ORDER; do [ -f "experiments/$n.py" ] && names="$names $n"; done
for f in experiments/*.py; do  # any other study, alphabetically
  n="$(basename "$f" .py)"
  case " $ORDER " in *" $n "*) ;; *) names="$names $n" ;; esac
done
CHECK='import json, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "summary.json")))
files = ["table.md", "table.csv", s["figure"]]
sys.exit(not (s["command"] and all(os.path.getsize(os.path.join(d, f)) for f in files)))'
failed=0
for n in $names; do
  start=$SECONDS
  if "$PY" "experiments/$n.py" --smoke --out "$OUT/$n" >"$OUT/$n.log" 2>&1 \
      && "$PY" -c "$CHECK" "$OUT/$n" >>"$OUT/$n.log" 2>&1; then
    echo "ok    $n ($((SECONDS - start)) s)"
  else
    echo "FAIL  $n ($((SECONDS - start)) s): see $OUT/$n.log"
    tail -n 20 "$OUT/$n.log" | sed 's/^/      /'
    failed=1
  fi
done
echo "results in $OUT"
exit $failed
