#!/usr/bin/env bash
# The README's reproduction runs, one at a time, each under the shared lock so that other long jobs
# on this machine can interleave. Usage (from the repo root):
#   nohup bash agnn/reproduce.sh > agnn/runs/reproduce.log 2>&1 &
# A run whose summary.json exists is skipped; an interrupted one continues with --resume.
# One torch thread: on a shared 2-core machine, two intra-op threads slow down badly when the
# other core is busy.
set -u
mkdir -p agnn/runs
export REPRO_DATA_MIRROR=${REPRO_DATA_MIRROR:-$(cd .. && pwd)/shared/data}
PY=${PY:-.venv/bin/python}
LOCK=${LOCK:-/tmp/repro-train.lock}
SEEDS=${SEEDS:-"0 1 2"}
THREADS=${THREADS:-1}
jobs=()
for seed in $SEEDS; do jobs+=("ucs authors $seed" "warm authors $seed" "ics built $seed"); done
for seed in $SEEDS; do jobs+=("ucs built $seed" "warm built $seed"); done
for job in "${jobs[@]}"; do
  set -- $job
  out="agnn/runs/${1}_${2}_s${3}"
  if [ -f "$out/summary.json" ]; then echo "skip $out (done)"; continue; fi
  echo "==> $(date -u +%H:%M:%S) $out"
  flock "$LOCK" "$PY" -m agnn.main --mode "$1" --graph "$2" --seed "$3" --epochs 20 --out "$out" \
    --threads "$THREADS" --no-progress --resume > "$out.log" 2>&1 || echo "FAILED $out (see $out.log)"
  tail -n 14 "$out.log"
done
echo "all done $(date -u +%H:%M:%S)"
