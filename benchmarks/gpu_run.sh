#!/usr/bin/env bash
# Run ON THE GPU MACHINE from the repo root, after benchmarks/gpu_prepare.sh ran on the development
# machine and with `.whl` and `build/anchor` carried along:
#
#   bash benchmarks/gpu_run.sh              # anchor script + all six configurations, ~8-9 min on one H100/H200
#   SWEEP=1 bash benchmarks/gpu_run.sh      # also the anchor batch-size sweep (several minutes more)
#
# The configurations run most-wanted first (the project default, then the two lean-step candidates beside
# it, then the recipe's), so a run cut off at the device's time limit keeps the comparison that matters;
# the last 8 steps of each run under torch.profiler, untimed. Extra arguments go to
# `python -m benchmarks.train` (e.g. --configs 3,5). Writes bench-train.json, bench-train-<config>-profile.txt,
# bench-train.log and nvidia-smi.txt (and anchor_trainer_sweep.json) under $OUT, else under build/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build}
mkdir -p "$OUT"
PY=${PY:-python3}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.txt" || true
"$PY" -c 'import torch, transformers, datasets, accelerate, sklearn; print("torch", torch.__version__, "transformers", transformers.__version__, "datasets", datasets.__version__, "accelerate", accelerate.__version__)'

"$PY" -m benchmarks.train --with-anchor --anchor-script build/anchor/anchor_train_step.py \
    --configs 3,5,6,1,2,4 --profile-steps 8 --output "$OUT/bench-train.json" "$@" 2>&1 | tee "$OUT/bench-train.log"

if [ "${SWEEP:-0}" = 1 ]; then
    OUT="$OUT" "$PY" build/anchor/anchor_trainer_sweep.py 2>&1 | tee "$OUT/anchor-sweep.log"
fi
