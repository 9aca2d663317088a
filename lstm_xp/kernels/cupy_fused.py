"""A fused CuPy layer scan: per step one cuBLAS GEMM and one elementwise kernel.

Same signature and results as :func:`lstm_xp._functional.layer_scan` (tests hold them equal on
a GPU). The pure path launches about a dozen kernels per step (slices, adds, four activations,
the state update); here one ``ElementwiseKernel`` reads the GEMM's gates and the step's input
projection, applies all four nonlinearities, updates ``c`` and writes ``h`` straight into the
output sequence. The input projection is one GEMM per bounded chunk of steps, so device memory
beyond inputs and outputs stays O(B*H). Nothing is copied to the host inside the time loop and
nothing synchronises.
"""

from __future__ import annotations

import functools
from typing import Any

import cupy

from .._backprop import layer_scan_backward, layer_scan_train
from .base import LayerwiseKernel

_CHUNK_BYTES = 64 * 2**20

# Gate blocks arrive in PyTorch's order (i, f, g, o) here: the kernel indexes them directly,
# so the weights need no reordering. Half and float compute in float, double in double.
_PREAMBLE = r"""
template <typename T> struct lstm_acc { typedef float type; };
template <> struct lstm_acc<double> { typedef double type; };
"""

_OPERATION = r"""
typedef lstm_acc<T>::type A;
const int b = i / H;
const int j = i - b * H;
const ptrdiff_t row = (ptrdiff_t)b * 4 * H;
const A half = 0.5;
A zi = (A)gates[row + j] + (A)proj[row + j];
A zf = (A)gates[row + H + j] + (A)proj[row + H + j];
A zg = (A)gates[row + 2 * H + j] + (A)proj[row + 2 * H + j];
A zo = (A)gates[row + 3 * H + j] + (A)proj[row + 3 * H + j];
A ig = half * tanh(half * zi) + half;
A fg = half * tanh(half * zf) + half;
A gg = tanh(zg);
A og = half * tanh(half * zo) + half;
A cn = fg * (A)c_prev + ig * gg;
c_next = (T)cn;
h = (T)(og * tanh(cn));
"""


_MASKED_TAIL = r"""
if (t < (long long)lengths[b]) {
    c_next = (T)cn;
    h_next = (T)(og * tanh(cn));
    y = h_next;
} else {  // past this sequence's length: keep the state, output zero
    c_next = c_prev;
    h_next = h_prev;
    y = (T)0;
}
"""


@functools.cache
def _cell_kernel() -> Any:
    return cupy.ElementwiseKernel(
        "raw T gates, raw T proj, T c_prev, int32 H",
        "T h, T c_next",
        _OPERATION,
        "lstm_xp_fused_cell",
        preamble=_PREAMBLE,
    )


@functools.cache
def _masked_cell_kernel() -> Any:
    body = _OPERATION.rsplit("c_next = (T)cn;", 1)[0] + _MASKED_TAIL
    return cupy.ElementwiseKernel(
        "raw T gates, raw T proj, T c_prev, T h_prev, raw L lengths, int32 t, int32 H",
        "T y, T h_next, T c_next",
        body,
        "lstm_xp_fused_cell_masked",
        preamble=_PREAMBLE,
    )


def layer_scan_cupy(
    xp: Any,
    x: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias: Any | None,
    h0: Any,
    c0: Any,
    *,
    reverse: bool = False,
    lengths: Any | None = None,
) -> tuple[Any, Any, Any]:
    """Fused CuPy version of :func:`lstm_xp._functional.layer_scan` (same shapes)."""
    steps, batch, features = x.shape
    hidden = weight_hh.shape[1]
    dtype = x.dtype
    w_ih_t = cupy.ascontiguousarray(weight_ih.T)  # (I, 4H), gate order i, f, g, o
    w_hh_t = cupy.ascontiguousarray(weight_hh.T)  # (H, 4H)

    y = cupy.empty((steps, batch, hidden), dtype=dtype)
    gates = cupy.empty((batch, 4 * hidden), dtype=dtype)
    c_a = cupy.ascontiguousarray(c0).copy()
    c_b = cupy.empty_like(c_a)
    h = cupy.ascontiguousarray(h0)
    if lengths is not None:
        masked = _masked_cell_kernel()
        lengths = cupy.ascontiguousarray(lengths)
        h = h.copy()
        h_b = cupy.empty_like(h)
    else:
        kernel = _cell_kernel()

    chunk = max(1, min(steps, _CHUNK_BYTES // max(1, batch * 4 * hidden * dtype.itemsize)))
    starts = range(0, steps, chunk)
    for start in reversed(starts) if reverse else starts:
        stop = min(start + chunk, steps)
        proj = cupy.matmul(x[start:stop].reshape(-1, features), w_ih_t)
        if bias is not None:
            proj += bias
        proj = proj.reshape(stop - start, batch, 4 * hidden)
        for t in range(stop - 1, start - 1, -1) if reverse else range(start, stop):
            cupy.matmul(h, w_hh_t, out=gates)
            if lengths is None:
                h = y[t]
                kernel(gates, proj[t - start], c_a, hidden, h, c_b)
            else:
                masked(gates, proj[t - start], c_a, h, lengths, t, hidden, y[t], h_b, c_b)
                h, h_b = h_b, h
            c_a, c_b = c_b, c_a
    return y, h.copy(), c_a


def make(reverse: bool = False) -> LayerwiseKernel:
    """The fused CuPy kernel for inference; training runs the pure pair."""
    return LayerwiseKernel("cupy-fused", layer_scan_cupy, layer_scan_train, layer_scan_backward,
                           reverse)
