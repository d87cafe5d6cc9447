#!/usr/bin/env bash
# Speed check of grouped training on one GPU, in about 8 minutes on an H200: images/s
# of vgg, small_vgg, cifarnet (and logreg) for K = 1, 8, 24, 120 runs per compiled
# program (whole-epoch loop, data on the device), TF32 at every K, then bf16 and full
# float32 at each model's best K, and the projected wall time of each full 120-run grid.
#
#   scripts/gpu_check.sh                 # on the GPU machine; extra options go to
#   scripts/gpu_check.sh --budget 300    # scripts/benchmark.py gpu (see its --help)
#   scripts/gpu_check.sh --tiny          # tiny sizes, runs on a CPU in seconds (CI)
#
# PYTHON picks the interpreter (default python3). Results: stdout; with OUT set, also
# $OUT/gpu_check.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# let the groups take most of the GPU's memory (JAX preallocates 75% by default)
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
export PYTHONUNBUFFERED=1
if [ -n "${OUT:-}" ]; then
    "$PYTHON" scripts/benchmark.py gpu "$@" 2>&1 | tee "$OUT/gpu_check.txt"
else
    exec "$PYTHON" scripts/benchmark.py gpu "$@"
fi
