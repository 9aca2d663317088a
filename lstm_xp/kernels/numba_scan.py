"""A compiled layer scan (numba) for one sequence or a few small ones: the whole time loop in
machine code.

Same signature and results as :func:`lstm_xp._functional.layer_scan` (tests hold them equal).
At small batch sizes a NumPy step is a dozen library calls of a few microseconds each on a
few hundred numbers, so the calls, not the arithmetic, are the time. Here the input
projection of all steps is one BLAS product (NumPy's), and the recurrence runs in one
compiled loop: per step a matrix-vector product per sequence written as plain loops, then
the activations and the state update in separate passes over contiguous buffers, which LLVM
vectorises (one fused pass over the gates did not vectorise: 3x slower at H = 64), nothing
allocated. The loops read the recurrent weights once per sequence and step, where BLAS reads
them once per step, so they win only while ``B * H`` is small (measured on the benchmark
machine, in one process: 9x the fused NumPy scan at (B, H) = (1, 32), 6.2x at (1, 64), 2.6x
at (1, 128), 1.6x at (1, 256), 1.3x-1.4x at (8, 64) and (1, 512), 1.15x at (2, 256); 0.8x at
B * H = 1024). Above :data:`MAX_WORK` the scan is :mod:`.numpy_fused`'s, whose one product a
step uses all of OpenBLAS.

float32 uses a rational approximation of ``tanh`` (13/6 degree, Eigen's coefficients, clamped
at +-7.9, ``tanh(x) = x`` below 4e-4) that vectorises; it stays within 1e-6 relative of
``numpy.tanh`` over the whole range, denormals included (tests). float64 calls the exact
``tanh``. float16 runs the fused NumPy scan.

Compiled code is cached on disk (``cache=True``); in a read-only install numba keeps it in its
user-wide cache directory instead (or ``NUMBA_CACHE_DIR``). The first call in a process with
an empty cache compiles (seconds; ``benchmarks/RESULTS.md`` has the figure).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from .base import LayerwiseKernel
from .numpy_fused import layer_scan_numpy
from .numpy_train import NumpyTrainer

#: ``B * H`` up to this runs the compiled loop; more runs the fused NumPy scan (see above).
MAX_WORK = 512

_f32 = np.float32


@numba.njit(inline="always", fastmath=True, error_model="numpy", cache=True, nogil=True)
def tanh32(x):  # pragma: no cover - compiled
    """float32 tanh as a rational function of x (clamped where tanh is 1 in float32)."""
    a = min(max(x, _f32(-7.90531110763549805)), _f32(7.90531110763549805))
    x2 = a * a
    p = _f32(-2.76076847742355e-16)
    p = p * x2 + _f32(2.00018790482477e-13)
    p = p * x2 + _f32(-8.60467152213735e-11)
    p = p * x2 + _f32(5.12229709037114e-08)
    p = p * x2 + _f32(1.48572235717979e-05)
    p = p * x2 + _f32(6.37261928875436e-04)
    p = p * x2 + _f32(4.89352455891786e-03)
    p = p * a
    q = _f32(1.19825839466702e-06)
    q = q * x2 + _f32(1.18534705686654e-04)
    q = q * x2 + _f32(2.26843463243900e-03)
    q = q * x2 + _f32(4.89352518554385e-03)
    return x if abs(x) < _f32(4e-4) else p / q


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def tanh32_array(z, out):  # pragma: no cover - compiled
    """:func:`tanh32` over a 1-D float32 array (for tests and benchmarks)."""
    for k in range(z.shape[0]):
        out[k] = tanh32(z[k])


@numba.njit(inline="always", fastmath=True, error_model="numpy", cache=True, nogil=True)
def _act(x, approximate):  # pragma: no cover - compiled
    # approximate is the same for a whole call: LLVM unswitches the loops on it.
    return tanh32(x) if approximate else np.tanh(x)


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def _loop(proj, w_hh, h, c, y, lengths, reverse, approximate):  # pragma: no cover - compiled
    """The recurrence: ``proj`` (T, B, 4H) input projection with the bias, ``w_hh`` (4H, H),
    ``h``, ``c`` (B, H) updated in place, ``y`` (T, B, H) written; ``lengths`` (B,) int64
    (all T when none); ``approximate``: :func:`tanh32` (float32) or the exact tanh."""
    steps, batch, hidden4 = proj.shape
    hidden = hidden4 // 4
    gates = np.empty(hidden4, dtype=proj.dtype)
    acts = np.empty(hidden4, dtype=proj.dtype)
    cell = np.empty(hidden, dtype=proj.dtype)
    half = proj.dtype.type(0.5)
    for walked in range(steps):
        t = steps - 1 - walked if reverse else walked
        for b in range(batch):
            if t >= lengths[b]:  # past this sequence's end: state kept, output zero
                for j in range(hidden):
                    y[t, b, j] = 0
                continue
            for r in range(hidden4):
                acc = proj[t, b, r]
                for k in range(hidden):
                    acc += w_hh[r, k] * h[b, k]
                gates[r] = acc
            # Activations in two passes over contiguous memory, which LLVM vectorises:
            # tanh(z/2) for the sigmoid gates i, f, o and tanh(z) for g, then the update.
            for r in range(hidden4):
                z = gates[r]
                if r < 2 * hidden or r >= 3 * hidden:
                    z = half * z
                acts[r] = _act(z, approximate)
            for j in range(hidden):
                ig = half * acts[j] + half
                fg = half * acts[hidden + j] + half
                cn = fg * c[b, j] + ig * acts[2 * hidden + j]
                c[b, j] = cn
                cell[j] = cn
            for j in range(hidden):
                cell[j] = _act(cell[j], approximate)
            for j in range(hidden):
                y[t, b, j] = (half * acts[3 * hidden + j] + half) * cell[j]
            for j in range(hidden):
                h[b, j] = y[t, b, j]



def layer_scan_numba(
    xp: Any,
    x: np.ndarray,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias: np.ndarray | None,
    h0: np.ndarray,
    c0: np.ndarray,
    *,
    reverse: bool = False,
    lengths: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compiled version of :func:`lstm_xp._functional.layer_scan` (same shapes)."""
    steps, batch, features = x.shape
    if batch * weight_hh.shape[1] > MAX_WORK or x.dtype not in (np.float32, np.float64):
        return layer_scan_numpy(xp, x, weight_ih, weight_hh, bias, h0, c0, reverse=reverse,
                                lengths=lengths)
    proj = (x.reshape(steps * batch, features) @ weight_ih.T).reshape(steps, batch, -1)
    if bias is not None:
        proj += bias
    h = np.array(h0, dtype=x.dtype, order="C")
    c = np.array(c0, dtype=x.dtype, order="C")
    y = np.empty((steps, batch, weight_hh.shape[1]), dtype=x.dtype)
    valid = np.full(batch, steps, np.int64) if lengths is None else \
        np.asarray(lengths, dtype=np.int64)
    _loop(proj, np.ascontiguousarray(weight_hh), h, c, y, valid, reverse,
          x.dtype == np.float32)
    return y, h, c


def make(reverse: bool = False) -> LayerwiseKernel:
    """Compiled inference where ``B * H`` is small; training runs the fused NumPy pass."""
    trainer = NumpyTrainer()
    return LayerwiseKernel("numba", layer_scan_numba, trainer.scan_train,
                           trainer.scan_backward, reverse)
