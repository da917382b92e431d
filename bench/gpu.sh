#!/usr/bin/env bash
# The GPU checks of the whole toolkit on a machine with CUDA, in under 8 minutes, ending in one table.
#
#   bash bench/gpu.sh            # after `make test` built .venv (needs a CUDA build of torch: TORCH_VERSION=...)
#
# 1. the tests that need CUDA; 2. step cost of every method on ResNet-18 at CIFAR size (digits32, 3x32x32),
# bf16 autocast and channels-last; 3. surface points/s against loss-landscapes; 4. Hessian eigenvalues
# against PyHessian; 5. training under torchrun on every visible GPU against one. Full reports land in
# bench/results/gpu/; the summary table is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "bench/gpu.sh: no CUDA device (torch.cuda.is_available() is False): nothing to measure" >&2
  exit 2
fi
$PY -m pip install -q loss-landscapes==3.0.6 pyhessian==0.1 >/dev/null 2>&1 || echo "(loss-landscapes/pyhessian not installed: those rows will fail)"
GPU=$($PY -c "import torch; print(torch.cuda.get_device_name(0), 'x', torch.cuda.device_count())")
ROWS=()

step() {  # step NAME REPORT COMMAND...: runs it with a time limit, records status and seconds
  local name=$1 report=$2; shift 2
  local t0=$SECONDS status=ok
  timeout 150 "$@" >"$OUT/$name.log" 2>&1 || status="FAILED ($?)"
  ROWS+=("| $name | $status | $((SECONDS - t0)) | $report |")
}

step cuda-tests "$OUT/cuda-tests.log" $PY -m pytest -q tests/test_problem.py -k cuda -p no:cacheprovider
step step-cost "$OUT/step_cost-cuda-resnet18.md" $PY bench/step_cost.py --device cuda --bf16 --model resnet18 \
  --width 64 --rounds 5 --steps 3 --out "$OUT"
step surface "$OUT/surface-cuda-resnet18.md" $PY bench/surface.py --device cuda --model resnet18 --width 64 \
  --dataset digits32 --samples 1000 --steps 21 --rounds 2 --out "$OUT"
step hessian "$OUT/hessian-cuda.md" $PY bench/hessian.py --device cuda --width 64 --reps 2 --out "$OUT"
step fp16-train "$OUT/fp16-train.log" $PY -m landscape.apps.cli train --method sam --model resnet18 \
  --model-arg width=16 --dataset digits32 --epochs 2 --precision fp16 --device cuda --out "$OUT/fp16-run" --no-progress
step torchrun "$OUT/distributed-cuda.md" $PY bench/distributed.py --device cuda --model resnet18 --width 64 --bf16 \
  --rounds 2 --steps 10 --out "$OUT"

echo
echo "## GPU checks on $GPU ($(date -u +%Y-%m-%d))"
echo
echo "| check | status | seconds | report |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
for f in "$OUT"/*.md; do echo; cat "$f"; done
