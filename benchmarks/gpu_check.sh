#!/usr/bin/env bash
# One prepared run on a machine with an NVIDIA GPU (the device tool), writing into $OUT:
# the whole test suite with the CuPy and torch-CUDA cases enabled, then the benchmark on CuPy
# (fused kernel and pure path) beside torch.nn.LSTM (cuDNN) on the same GPU, then long
# sequences for peak memory. Needs array-api-compat and array-api-strict wheels in .whl/.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX must not take the GPU's memory
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi -L
python3 - <<'PY'
import cupy, numpy, torch
print("cupy", cupy.__version__, "numpy", numpy.__version__, "torch", torch.__version__,
      "cuda", torch.cuda.is_available())
import lstm_xp
for k, v in lstm_xp.available_backends().items():
    print(f"{k:18s} {v.usable} {v.reason}")
PY
timeout 180 python3 -m pytest tests -q -p no:cacheprovider --maxfail=25 \
  2>&1 | tee "$OUT/pytest-gpu.log" | tail -40
timeout 150 python3 -m lstm_xp bench --backends cupy,numpy,jax --peers torch --pure \
  --out "$OUT/bench" 2>&1 | grep -v '^\[' | grep -v 'median '
timeout 80 python3 -m lstm_xp bench --backends cupy --peers torch --repeats 3 --max-seconds 4 \
  --shapes 1,10000,32,64 16,10000,128,256 --out "$OUT/long" 2>&1 | grep -v '^\[' \
  | grep -v 'median '
