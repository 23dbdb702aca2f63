#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one command: the `gpu` tests and the GPU benchmarks.
#
#   bash bench/gpu_check.sh [OUTDIR]        (default OUTDIR: gpu_results; $OUT when set)
#
# Needs python3 with the core dependencies (torch + torchvision with CUDA, numpy, pandas, pyarrow, pillow,
# scikit-learn, scipy, typer, rich) and pytest; the package itself is used from this checkout (PYTHONPATH), so no
# install is needed on a machine that already has those (e.g. a stock PyTorch CUDA image). Every step runs even
# when an earlier one fails; the exit status is the number of failed steps. Logs go to OUTDIR/*.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_results}}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 AUDIT_NO_PROGRESS=1
PY=${PYTHON:-python3}
failed=0
step() {  # step NAME CMD...: run, log to OUTDIR/NAME.txt, count failures
    local name=$1; shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "== $name FAILED (exit $rc)"; failed=$((failed + 1)); }
}
step nvidia-smi nvidia-smi
step env "$PY" -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))"
# -p no:cacheprovider: the checkout may be read-only; -o addopts=: drop the default 'not gpu' filter
step gpu-tests "$PY" -m pytest -p no:cacheprovider -o addopts= -m gpu -q -ra tests/test_train_gpu.py
# ResNet-18/50 at 224 px: training and inference img/s with AMP vs fp32, compiled too, GPU utilization
step bench-models "$PY" bench/models.py --models resnet18,resnet50 --image-size 224 --batch-size 256 --compile
# our trainer vs a plain ImageFolder + DataLoader + fp32 loop on 256 px JPEG photos trained at 224 px
step bench-train-photos "$PY" bench/train.py --data photos --n 4000 --photo-size 256 --image-size 224 \
    --model resnet18 --batch-size 128 --epochs 3 --loader-workers 8 --threads 8 --rounds 2 --skip-lodo
# the same comparison on the demo (tiny images) with the k-fold LODO cost
step bench-train-demo "$PY" bench/train.py --device cuda --epochs 6 --loader-workers 8 --threads 8 --rounds 2
echo "== $failed step(s) failed; logs in $out/"
exit "$failed"
