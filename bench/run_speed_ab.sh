#!/usr/bin/env bash
# The A/B runs of docs/speed.md: quiet, then loaded (2 single-threaded numpy matmul loops), each
# configuration in its own process, alternating, repeated. Needs /work/tfbench (TensorFlow) and a
# quiet machine. Output: runs/speed_ab_{quiet,loaded}.{json,log}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REPEATS=${REPEATS:-2}
SECONDS_EACH=${SECONDS_EACH:-10}
mkdir -p runs
$PY bench/bench_train_ab.py --mode quiet --repeats "$REPEATS" --seconds "$SECONDS_EACH" \
    --options "${QUIET_OPTIONS:-base,retain,passive,auto,bf16,bf16-auto}" \
    --json runs/speed_ab_quiet.json 2>&1 | tee runs/speed_ab_quiet.log
$PY bench/bench_train_ab.py --mode loaded --repeats "$REPEATS" --seconds "$SECONDS_EACH" \
    --options "${LOADED_OPTIONS:-base,passive,intra1,auto,bf16-auto}" \
    --json runs/speed_ab_loaded.json 2>&1 | tee runs/speed_ab_loaded.log
