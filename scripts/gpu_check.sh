#!/usr/bin/env bash
# The GPU path in <= 5 minutes on one GPU: each paper's methods at full width on Fashion-MNIST with a short
# recipe, the originals' images/s with and without channels_last / bf16 autocast. Timings go to OUT_DIR
# (gpu_check.csv, gpu_check.log, nvidia-smi.txt).
#
#   scripts/gpu_check.sh OUT_DIR                 # on a machine with CUDA
#   scripts/gpu_check.sh OUT_DIR --tiny          # tiny models on the CPU: checks the script
#
# Extra options go to benchmarks/gpu_check.py (--papers, --steps, --method-steps, --budget, ...).
set -euo pipefail
out=${1:?usage: scripts/gpu_check.sh OUT_DIR [options of benchmarks/gpu_check.py]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
[ -x "$py" ] || py=python3
mkdir -p "$out"
{ nvidia-smi || echo "no nvidia-smi"; } > "$out/nvidia-smi.txt" 2>&1
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" timeout 300 "$py" "$here/benchmarks/gpu_check.py" --out "$out" "$@" \
  2>&1 | tee "$out/gpu_check.log"
