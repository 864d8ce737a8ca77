#!/usr/bin/env bash
# The device script (issue 22 part 8): one self-timed run of <= 9 minutes on one GPU that writes CSVs to OUT_DIR:
# (a) the benchmark's smoke profile through run_paper on CUDA, (b) training throughput at 3x32x32 of every registered
# model (the harness as is, + cudnn.benchmark, + bf16/channels_last, a sync-free ceiling), (c) 1, 2 and 4 processes
# sharing the GPU, (d) unit costs at paper width. Fashion-MNIST (the only dataset a GPU machine has) is padded and
# tiled to 3x32x32. Also gpu_check.log and nvidia-smi.txt.
#
#   scripts/gpu_check.sh OUT_DIR                        # on a machine with CUDA
#   scripts/gpu_check.sh OUT_DIR --tiny --device cpu    # tiny, on the CPU: checks the script (make test)
#
# Extra options go to benchmarks/device_check.py (--budget, --parts, --batch, --steps, ...). The run stops itself at
# --budget seconds (default 500); the outer timeout (540 s) is a backstop. The previous per-paper check is still
# benchmarks/gpu_check.py.
set -euo pipefail
out=${1:?usage: scripts/gpu_check.sh OUT_DIR [options of benchmarks/device_check.py]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
[ -x "$py" ] || py=python3
mkdir -p "$out"
{ nvidia-smi || echo "no nvidia-smi"; } > "$out/nvidia-smi.txt" 2>&1
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" timeout 540 "$py" "$here/benchmarks/device_check.py" --out "$out" "$@" \
  2>&1 | tee "$out/gpu_check.log"
