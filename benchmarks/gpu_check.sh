#!/usr/bin/env bash
# One prepared run on a machine with an NVIDIA GPU (the device tool). Writes $OUT/gpu.log (all
# output) and $OUT/results.tgz (the benchmark folders). Stages, each under its own timeout so
# that a slow one cannot eat the next:
#   1. versions, the backends and kernels lstm-xp sees;
#   2. the tests marked gpu (CuPy and torch-CUDA cases, cuDNN through the torch-native kernel);
#   3. forward benchmark: CuPy (fused and pure) and torch (cuDNN and pure) beside torch.nn.LSTM
#      on the same GPU; 4. the same for a training step; 5. the numba kernel on this machine's
#   many CPU cores beside torch and ONNX Runtime, its speed at 1, 2, 4, ... threads, and a
#   bidirectional layer's directions side by side or one after the other;
#   6. long sequences for peak memory.
# Needs array-api-compat and array-api-strict wheels in .whl/ (the device README says how).
# The benches run one round (--rounds 1): each round starts every contender's process again
# (CUDA set-up included), and the stages' timeouts were sized for one.
set -u
OUT=${OUT:-/tmp/gpu-out}
WORK=/tmp/gpu-work
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/gpu.log") 2>&1
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX must not take the GPU
export NUMBA_CACHE_DIR=/tmp/numba-cache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
stage() { echo; echo "=== $1 ($(date +%T))"; }

stage "1. machine"
nvidia-smi -L; nproc
python3 - <<'PY'
import cupy, numpy, torch
print("cupy", cupy.__version__, "numpy", numpy.__version__, "torch", torch.__version__,
      "cuda", torch.cuda.is_available(), "cudnn", torch.backends.cudnn.version())
import lstm_xp
from lstm_xp.kernels import kernel_report
for k, v in lstm_xp.available_backends().items():
    print(f"{k:18s} {v.usable} {v.reason}")
for b in ("numpy", "cupy", "torch"):
    print(b, [(n, ok) for n, ok, _ in kernel_report(b)])
PY

stage "2. tests marked gpu"
timeout 150 python3 -m pytest tests -q -p no:cacheprovider -m gpu --maxfail=60 --tb=line -W \
  "ignore::DeprecationWarning" 2>&1 | tail -80

SHAPES="1,100,32,64 16,100,128,256 64,50,256,512 256,50,512,512 1024,50,512,512"
stage "3. forward on the GPU"
timeout 140 python3 -m lstm_xp bench --rounds 1 --backends cupy,torch --peers torch --pure --repeats 5 \
  --max-seconds 2 --shapes $SHAPES --out "$WORK/forward" 2>&1 | grep -v '^\[' | grep -v 'median '

stage "4. training step on the GPU"
timeout 60 python3 -m lstm_xp bench --rounds 1 --train --backends cupy,torch --peers torch --repeats 5 \
  --max-seconds 2 --shapes $SHAPES --out "$WORK/train" 2>&1 | grep -v '^\[' | grep -v 'median '

stage "5. numba on $(nproc) CPU cores"
timeout 70 python3 -m lstm_xp bench --rounds 1 --backends numpy --peers torch,onnxruntime --repeats 5 \
  --max-seconds 2 --shapes 1,100,32,64 8,100,128,256 64,50,256,512 256,50,512,512 \
  --out "$WORK/cpu" 2>&1 | grep -v '^\[' | grep -v 'median '
grep -H . /sys/devices/system/cpu/cpu0/cache/index*/{level,size} 2>/dev/null
timeout 60 python3 benchmarks/thread_sweep.py 8,100,128,256 64,50,256,512 256,50,512,512
# A bidirectional layer's directions side by side (8 threads each on 16 cores) against one after
# the other (16 each): measured on 2 vCPUs only so far.
timeout 30 python3 benchmarks/directions_ab.py --seconds 3 16,100,128,256 64,50,256,512

stage "6. long sequences"
timeout 40 python3 -m lstm_xp bench --rounds 1 --backends cupy --peers torch --repeats 3 --max-seconds 4 \
  --shapes 1,10000,32,64 16,10000,128,256 --out "$WORK/long" 2>&1 | grep -v '^\[' \
  | grep -v 'median '

stage "done"
tar czf "$OUT/results.tgz" -C "$WORK" .
