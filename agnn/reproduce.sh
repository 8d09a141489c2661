#!/usr/bin/env bash
# The README's reproduction runs, one at a time, each under the shared lock so that other long jobs
# on this machine can interleave. Usage (from the repo root):
#   nohup bash agnn/reproduce.sh > agnn/runs/reproduce.log 2>&1 &
# A run whose summary.json exists is skipped; an interrupted one continues with --resume.
set -u
mkdir -p agnn/runs
PY=${PY:-.venv/bin/python}
LOCK=${LOCK:-/tmp/repro-train.lock}
SEEDS=${SEEDS:-"0 1 2"}
jobs=()
for seed in $SEEDS; do jobs+=("ucs authors $seed" "warm authors $seed" "ics built $seed"); done
for seed in $SEEDS; do jobs+=("ucs built $seed" "warm built $seed"); done
for job in "${jobs[@]}"; do
  set -- $job
  out="agnn/runs/${1}_${2}_s${3}"
  if [ -f "$out/summary.json" ]; then echo "skip $out (done)"; continue; fi
  echo "==> $(date -u +%H:%M:%S) $out"
  flock "$LOCK" "$PY" -m agnn.main --mode "$1" --graph "$2" --seed "$3" --epochs 20 --out "$out" \
    --no-progress --resume > "$out.log" 2>&1 || echo "FAILED $out (see $out.log)"
  tail -n 14 "$out.log"
done
echo "all done $(date -u +%H:%M:%S)"
