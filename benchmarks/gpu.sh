#!/usr/bin/env bash
# The speed comparison on a CUDA device, in under 10 minutes (issues 8 and 15): meta-training (ours
# against learn2learn and higher, the floor; loop against vmap), the latency of adapting one task,
# bursts of adaptations with the workers on the device (batched against one task a message; the
# loop against the vmap over tasks), and hot predictions over HTTP (the API predicts on the CPU:
# its figure is the machine's cores, beside the device's workers).
# Writes benchmarks/results/gpu-*.{md,json} (and copies them to $OUT when set, for the device tool).
#
#   benchmarks/gpu.sh                 # CUDA device 0, the issue's setting (meta-batch 32)
#   DEVICE=cuda:1 benchmarks/gpu.sh
#
# Needs a Python with the CUDA build of torch 2.13.0 and this project installed (`pip install -e .`
# after the CUDA torch, see README Deployment), plus benchmarks/install_thirdparty.sh for the
# libraries (skipped with a note when they are missing). Omniglot from ../shared/datasets when it is
# there; otherwise the meta-training comparison runs on random images of the same shape.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DEVICE=${DEVICE:-cuda:0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=PASSIVE
"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if ok else 'NO CUDA DEVICE'); sys.exit(0 if ok else 1)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import higher" 2>/dev/null || benchmarks/install_thirdparty.sh || echo "third-party libraries not installed: their columns are skipped"

step() { echo "== $*"; local t0=$SECONDS; timeout 240 "$PY" "$@" || echo "!! failed or timed out: $*"; echo "   ($((SECONDS - t0)) s)"; }
step benchmarks/meta_training_speed.py --device "$DEVICE" --threads 1 --iterations 10 --name gpu-meta_training_speed
step benchmarks/adaptation_speed.py --device "$DEVICE" --repeats 300 --name gpu-adaptation_speed
if [ -d ../shared/datasets/omniglot ]; then
  step benchmarks/meta_batch_modes.py --device "$DEVICE" --meta-batch 32 --steps 10 --name gpu-meta_batch_modes
else
  echo "== meta_batch_modes skipped: no ../shared/datasets/omniglot"
fi
step benchmarks/adaptation_burst.py --device "$DEVICE" --repeats 1 --name gpu-adaptation_burst
step benchmarks/http_predictions.py --seconds 5 --repeats 1 --tasks 1000 --levels 10,1000 --no-locust --name gpu-http_predictions
if [ -n "${OUT:-}" ]; then cp benchmarks/results/gpu-*.md benchmarks/results/gpu-*.json benchmarks/results/gpu-*.png "$OUT"/ 2>/dev/null || true; fi
echo "results: benchmarks/results/gpu-*.md"
