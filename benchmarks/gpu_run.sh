#!/usr/bin/env bash
# Run ON THE GPU MACHINE from the repo root, after benchmarks/gpu_prepare.sh ran on the development
# machine and with `.whl` and `build/anchor` carried along:
#
#   bash benchmarks/gpu_run.sh              # project benchmark + anchor script, ~6-8 min on one H100/H200
#   SWEEP=1 bash benchmarks/gpu_run.sh      # also the anchor batch-size sweep (several minutes more)
#
# Extra arguments go to `python -m benchmarks.train` (e.g. --configs 1,3). Writes bench-train.json,
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
"$PY" -c 'import torch, transformers, datasets; print("torch", torch.__version__, "transformers", transformers.__version__, "datasets", datasets.__version__)'

"$PY" -m benchmarks.train --with-anchor --anchor-script build/anchor/anchor_train_step.py \
    --output "$OUT/bench-train.json" "$@" 2>&1 | tee "$OUT/bench-train.log"

if [ "${SWEEP:-0}" = 1 ]; then
    OUT="$OUT" "$PY" build/anchor/anchor_trainer_sweep.py 2>&1 | tee "$OUT/anchor-sweep.log"
fi
