#!/usr/bin/env bash
# Speed check of grouped training on one GPU, in at most 8 minutes: scripts/benchmark.py
# gpu's three phases (its --help says more), most important first:
#   auto   for vgg, small_vgg, cifarnet, logreg: the group --group-size auto makes of each
#          grid from this GPU's free memory, timed: does it fit, what XLA plans for it
#   epoch  one full cifarnet epoch (391 steps, 10,000 validation images) at highest
#          (full float32, the configs') and at the GPU's default (TF32)
#   sweep  K = 1, 8, 24, 120 runs per program at TF32, then bf16 and highest at each
#          model's best K; the projected wall time of each full 120-run grid
# The measured rates are kept for run_grid's cost line (experiments/engines/devices.py).
#
#   scripts/gpu_check.sh                 # on the GPU machine; extra options go to
#   scripts/gpu_check.sh --phases auto,epoch   # scripts/benchmark.py gpu
#   scripts/gpu_check.sh --tiny          # tiny sizes, runs on a CPU in seconds (CI)
#
# Time: no measurement starts after --budget (LIMIT - 60) seconds, nor one predicted to
# end after it (its FLOPs at 30% of the GPU's peak plus the model's compile time so far);
# at LIMIT seconds (GPU_CHECK_SECONDS, default 450) the check gets SIGINT and prints the
# summary of what it measured; 15 s later it is killed. So the command ends within
# 465 s (+ the interpreter's start), inside 8 minutes.
#
# PYTHON picks the interpreter (default python3). Results: stdout; with OUT set, also
# $OUT/gpu_check.txt, the table rows as docs/benchmarks.md takes them in
# $OUT/gpu_check.md, and the kept rates in $OUT/rates.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LIMIT=${GPU_CHECK_SECONDS:-450}
# let the groups take most of the GPU's memory (JAX preallocates 75% by default)
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
export PYTHONUNBUFFERED=1
check() {
    timeout --preserve-status --signal=INT --kill-after=15 "$LIMIT" \
        "$PYTHON" scripts/benchmark.py gpu --budget $((LIMIT - 60)) "$@"
}
if [ -n "${OUT:-}" ]; then
    check --markdown "$OUT/gpu_check.md" "$@" 2>&1 | tee "$OUT/gpu_check.txt"
    rates=$("$PYTHON" -c "from experiments.engines.devices import rates_path; print(rates_path())")
    if [ -f "$rates" ]; then cp "$rates" "$OUT/rates.json"; fi
else
    check "$@"
fi
