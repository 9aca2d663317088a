"""A compiled layer scan (numba): the whole time loop in machine code, on the caller's thread
or split between threads (:mod:`lstm_xp._threads`).

Same signature and results as :func:`lstm_xp._functional.layer_scan` (tests hold them equal),
for float32 and float64 at every size (float16 runs the fused NumPy scan). At small batch
sizes a NumPy step is a dozen library calls of a few microseconds each, so the calls, not the
arithmetic, are the time; and NumPy's BLAS repacks the weights at every call. Here one
compiled call runs the layer:

- **Products**: a call with enough rows (``T * B``, :func:`packs`) first packs its
  weights into panels (:func:`_pack`, BLAS's layout: one vector of columns a panel, each a
  contiguous strip; about 0.25 ns an element, once a call, into 64-byte aligned memory),
  then every product is :func:`_packed_product`'s: blocks of 3-6 rows against a panel with
  the running sums in registers (LLVM vector IR, :mod:`._simd`), 70-95 GFLOP/s on one core
  of a 2.45 GHz Zen 3 EPYC (AVX2; OpenBLAS's SGEMM reaches 73-89 there), 1.3x-2.7x the dot
  products over the weights as they are (:func:`_matmul_nt`, blocks of dot products
  along the inner dimension, finished together), which the calls with fewer rows keep
  (no packing). The input is projected ``STEPS_AHEAD`` steps at a time, onto the bias; a
  step's recurrent product adds onto its rows.
- **Element-wise passes**: activations and the state update in separate loops over
  contiguous rows. float32 uses a rational approximation of ``tanh`` (13/6 degree, Eigen's
  coefficients, clamped at +-7.9, ``tanh(x) = x`` below 4e-4), in vectors of 8 written
  out in LLVM IR (:func:`._simd.tanh32_span`: LLVM's own vectoriser left most of these
  loops scalar; a span's last vector overlaps the one before, so that only spans under 8
  go one by one), within 1e-6 relative of ``numpy.tanh`` over the whole range, denormals
  included (tests); float64 calls the exact ``tanh``.
- **Threads**, two ways (:func:`plan`). A batch with :data:`MIN_ROWS_PER_THREAD` sequences
  a thread is split by sequences, as ONNX Runtime does: each thread runs the whole time
  loop for its slice, reading one shared packed copy of the weights (which the threads
  pack together as they start, one weight each), and waits for the others only there and
  at the end (in compiled code: :func:`._pool.run_claimed`). Smaller batches (and, for
  inference on 2-3 threads, batches whose slices would take more blocks of rows through
  each panel than the whole batch takes a thread split by units: :data:`FEWER_BLOCKS`)
  split the hidden units into one chunk a thread, as oneDNN does: the chunk's four gates
  for every sequence, from its rows of the weights only (at H = 256 the 1 MiB of
  recurrent weights do not fit in one core's L2 cache; halves do). Not into chunks under
  :data:`NARROW_UNITS` in inference, though, where a batch can be split by sequences with
  fewer a thread (:data:`MIN_SMALL_ROWS_PER_THREAD`); in a short call, not at all.
  The threads claim each step's chunks (:func:`_scan_units`), their own first: a thread
  that is late or lost its core has its chunks done by the others, so a call never waits
  for a thread that is not running, and the results are the same bits whoever ran which
  chunk. The hidden state is double-buffered, so one wait a step suffices. No BLAS thread
  pool is involved (two pools on the same cores thrash).
- **Training**: :mod:`.numba_train` runs the same loop, threads as for inference,
  writing a tape, and a compiled backward walk.
- **Small calls**: a model's plain call (:func:`plain_forward`) that runs on the caller's
  thread alone is one compiled call that also makes its work buffers and copies of the
  state (:func:`_run_alone`): at one step the Python and NumPy calls around the scan had
  been most of the time. A model's call (any number of layers, one direction or two, a
  state and lengths given or not) is prepared once a shape (:func:`_quick_call`: each
  layer's plan, its weights as the scan takes them), so that what is left around the
  compiled code is a lookup, the checks of the state and lengths, and the outputs'
  allocation; a layer split by sequences keeps its parts' arguments joined with work
  buffers of its own (:class:`_QuickSplit`).

Compiled code is cached on disk (``cache=True``); in a read-only install numba keeps it in its
user-wide cache directory instead (or ``NUMBA_CACHE_DIR``). The first call in a process with
an empty cache compiles (seconds; ``benchmarks/RESULTS.md`` has the figure).
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
import types
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np

from .._functional import ScanShape, one_after_another
from .._threads import get_num_threads, thread_shares
from ._atomics import atomic_add, take, wait_at_least
from ._frozen import DerivedCache, is_frozen
from ._pool import arrive, is_pool_thread, linger, run_claimed, run_parts, side_by_side
from ._simd import (
    REGISTER_BYTES,
    ROW_PANELS,
    TANH32_CLAMP,
    TANH32_LANES,
    TANH32_LINEAR,
    TANH32_P,
    TANH32_Q,
    TILE_BYTES,
    WITHOUT_REFCOUNTS,
    dot1x8,
    dot2x4,
    dot3x4,
    outer1,
    outer2,
    outer3,
    outer3_halves,
    outer4,
    outer5,
    outer6,
    stack_sums,
    tanh32_span,
    transpose8,
)
from ._workspace import aligned_arrays, compiled_operand
from .base import LayerwiseKernel
from .numpy_fused import layer_scan_numpy

#: Steps whose input is projected in one product, at most ...
STEPS_AHEAD = 16
#: ... and as many as keep a thread's projection block within this many elements (128 KiB
#: in float32): a block of 16 steps at (B, H) = (16, 256), 1 MiB, pushed the recurrent
#: weights out of a core's L2 cache (21 ms against 15 ms for 100 steps, one thread).
PROJ_ELEMENTS = 1 << 15
#: The most inputs (``K``) one pass of :func:`_packed_product` sums over: a panel's strip
#: of them, 16 KiB in float32 on AVX2, stays in L1 cache beside the rows' inputs.
DEPTH = 320
#: Rows of :func:`_packed_product`'s blocks of 6 that go over every panel before the next
#: rows do: their inputs, at most :data:`DEPTH` each, stay in L2 cache (96 KiB in float32).
ROW_BLOCK = 96
#: A call packs its weights into panels (:func:`_pack`) where the rows it multiplies them by
#: save more than the packing costs (:func:`packs`), else it computes dot products from the
#: weights as they are (:func:`_matmul_nt`). One Zen 3 core, float32, per output column of
#: a weight of ``K`` inputs: packing took about ``0.25 K`` ns, and each row's product
#: ``2.5 + 0.007 K`` ns less packed than as dot products (whose sums are finished at the
#: end of each block, at any ``K``), (K, 4H) from (32, 128) to (256, 2048), weights in
#: cache: in those units (rows of ``K + 360``), the packing's cost is ``PACK_COST_ROWS``
#: rows of ``K`` (0: every call packs; a huge number: none) ...
PACK_COST_ROWS = 45
#: ... and more for larger weights: times ``1 + M / PACK_COST_SCALE_MIB`` for ``M`` MiB of
#: them, up to ``PACK_COST_MAX_MIB`` (packing 4 MiB took 1 ns an element). In one process,
#: packed and dot-product plans taking turns in blocks of 0.3 s (``plan_ab.py --block``),
#: 6-9 rounds, 2 threads of the Zen 3 guest, time dot / packed against the rows a call
#: brings (its saving over the inputs packed, in the units above): (I, H) = (32, 64) 0.94
#: and 1.01 at 38 and 42; (64, 128) 1.02 at 33, 1.09-1.16 at 56-73; (128, 256) 0.84-0.91
#: at 40-56, 1.00-1.14 at 63-90; (256, 512) 0.64-0.97 at 30-89, 0.93 at 115 ((8, 8, 256,
#: 512)), 0.98-1.03 at 91-106. The rule's cost: 46, 49, 60, 105.
PACK_COST_SCALE_MIB = 4.5
PACK_COST_MAX_MIB = 8
#: Each row's saving, in those units, beyond ``K``.
PACK_ROW_EXTRA = 360
#: A call splits its batch between threads when each gets this many sequences (each
#: thread then runs its own time loop, never waiting for another; all of them read one
#: packed copy of the weights) ...
MIN_ROWS_PER_THREAD = 4
#: ... and this much work (matrix-product FLOPs of its slice) ...
MIN_FLOPS_PER_THREAD = 15_000_000
#: ... else its hidden units in chunks that the threads claim step by step, at least this
#: many units a chunk ...
MIN_UNITS_PER_THREAD = 32
#: ... this much work a chunk and step (at (B, I, H) = (1, 64, 128), 98,000 FLOPs a chunk,
#: two chunks took 392-436 us for 100 steps against 502-690 for one; at (2, 32, 64),
#: 49,000, 308-339 against 221-236) ...
MIN_CHUNK_STEP_FLOPS = 64_000
#: ... and this much in the whole call (handing a part to the pool takes ~10 us) ...
MIN_CHUNK_CALL_FLOPS = 4_000_000
#: ... or, for inference of more than one step whose weights are beyond L2
#: (:data:`L2_SLICE_BYTES`), this much: packing them is most of a short call's work, and
#: each chunk packs only its own columns. With the pool's threads lingering (:mod:`._pool`),
#: in one process, the plans in blocks of 0.2-0.25 s taking turns (``benchmarks/plan_ab.py
#: --block``, 2-3 runs), time of two chunks / one thread on the 2-vCPU Zen 3 guest, MFLOP a
#: call in brackets: (1, 3, 128, 256) (2.4) 0.69, 0.75, 0.78, 1.10; (1, 4 | 5 | 10, 128, 256)
#: (3.1-7.9) 0.62-0.89; (1, 2 | 3, 256, 256) (2.1, 3.1) 0.69-0.83; (1, 2, 256, 512) (6.3)
#: 0.61; (2, 2, 128, 256) (3.1) 0.79, 0.83, 1.09, 1.13; and against the split by sequences
#: (2, 3, 128, 256) 0.64-0.75, (4, 2, 128, 256) 0.78-0.85. One step, from a zero state (the
#: recurrent weights not packed): (1, 1, 256, 512) 0.83, 1.01, 1.33, so not. At H = 128
#: (weights within L2) two chunks lost: (1, 12 | 20, 64, 128) 1.11-1.19.
MIN_WIDE_CHUNK_CALL_FLOPS = 1_000_000
#: ... and, for inference with chunks narrower than :data:`NARROW_UNITS`, this much (a
#: step's gate arithmetic at (5, T, 32, 64) did not shrink when two 32-unit chunks split
#: it, in ``benchmarks/RESULTS.md``'s profile; the products did). Pair by pair on 2
#: threads of the Zen 3 guest, 2-7 runs a shape, (B, T, 32, 64) (7.4-34.4 MFLOP a call):
#: one thread as fast as the split or faster (1.00x-1.09x) by the median of the runs at
#: B = 3-8, T = 50 and B = 3-7, T = 100, but at (4, 100, 32, 64) (the split 1.03x faster;
#: the split by sequences below takes it, faster than both); the split 1.16x faster at
#: (5, 200, 32, 64) (49 MFLOP). 48-unit chunks ((4, 100, 32, 96) and (6, 100, 32, 96))
#: were 1.09x-1.10x faster than one thread. Where the batch can be split by sequences
#: instead (below), it is, whatever the call's size: in one process, the two plans
#: alternating call by call, 3-4 s a shape, the split by sequences took 0.60x-0.87x the
#: time of 2 narrow chunks at (B, T, 32, 64 | 80) with B = 3-7, T = 200-1,000 (44-344
#: MFLOP a call; ONNX Runtime, which splits by sequences, was about as fast as that
#: split), where a chunk's step is under :data:`NARROW_CHUNK_STEP_FLOPS`. With one
#: sequence the chunks stay: (1, 1000, 256, 64) took 1.30x as long on one thread.
MIN_NARROW_CHUNK_CALL_FLOPS = 40_000_000
NARROW_UNITS = 48
#: Narrow chunks with less work a step than this give way to the split by sequences (the
#: 0.60x-0.87x above: 74,000-172,000 FLOPs a chunk and step). With more, the two ran
#: level or either way: the split by sequences at 0.86x-0.95x the speed at
#: (5, 50-1,000, 256, 64) (410,000; 3 + 2 sequences against 5 a chunk with half the
#: weights), 0.94x-1.01x at (4 | 6, 50-500, 256, 64), 1.10x-1.47x at (7, 50, 128, 80),
#: (6, 200, 256, 80) and (6, 500, 64, 80), 0.92x and 1.22x in two runs at
#: (5, 200, 128, 64) (246,000); so there the chunks stay, as before.
NARROW_CHUNK_STEP_FLOPS = 200_000
#: Inference that neither rule splits (too few sequences a thread, or narrow chunks) is
#: still split by sequences with this many sequences a thread ...
MIN_SMALL_ROWS_PER_THREAD = 1
#: ... in a batch of this many at least ...
MIN_SMALL_BATCH = 2
#: ... and this much work a thread (products' FLOPs), up to :data:`NARROW_SMALL_UNITS`
#: hidden units this much. Once the pool's threads linger after a part (:mod:`._pool`), a
#: split cost 20-30 us a call less; in one process, the two plans in blocks of 0.3 s taking
#: turns (``RESULTS.md``), time split / one thread on the 2-vCPU Zen 3 guest, MFLOP a
#: thread in brackets: at H = 20-32, (8, 50, 20, 20) (1.28) 0.75-0.81, (16, 10, 32, 32)
#: (1.3) 0.82, (32, 5, 32, 32) (1.3) 0.88, (3, 50, 32, 32) (1.23, 2 + 1) 0.96-1.02; below,
#: (64, 2, 32, 32) (1.05) 1.02-1.14, (8, 30, 20, 20) (0.77) 0.96-1.06, (8, 10, 32, 32)
#: (0.65) 1.00, (6, 10, 32, 32) (0.49) 1.36, (2, 50, 20, 20) (0.32) 1.11-1.24. At H = 64-128,
#: (4, 50, 32, 64) (4.9) 0.63-0.72, (2, 100, 32, 64) (4.9, 1 + 1) 0.70-0.76, (8, 4, 64, 128)
#: (3.1) 0.75, (16, 4, 64, 64) (2.1) 0.78, (4, 20, 32, 64) (1.97) 0.78-0.82, (4, 4, 128,
#: 128) (2.1) 0.98, (3, 8, 128, 128) (3.1, 2 + 1) 1.00-1.09; below, (4, 10, 64, 64) (1.3)
#: 0.88-1.10, (8, 5, 64, 64) (1.3) 0.88-1.01, (6, 5, 64, 64) (0.98) 1.14, (2, 20, 32, 64)
#: (0.98) 0.97, (2, 10, 32, 64) (0.49) 1.23. (Before, with the threads waking in the
#: queue: from 6 MFLOP, 4.5 up to 32 units, and batches of 3 or more; from then to the
#: prepared splits, :class:`_QuickSplit`, 1.6 MFLOP, 1.2 up to 32 units.) Once a split
#: call's Python took 15-20 us less (:class:`_QuickSplit`), ``plan_ab.py --block 0.3``
#: against those thresholds, time split / one thread, in two runs: the guest ran in two
#: states, in one of which the split calls took 0.93x-1.10x the time (one thread's calls
#: were then faster too), in the other 0.75x-0.87x: (4, 10, 32, 64) (0.98) 1.01 | 0.82,
#: (6, 5, 64, 64) (0.98) 1.08 | 0.87, (2, 20, 32, 64) (0.98, 1 + 1) 1.05 | 0.86, (4, 10,
#: 64, 64) (1.3) 0.96 | 0.78, (8, 5, 64, 64) (1.3) 0.93 | 0.78, (4, 4, 64, 128) (1.57) 1.10
#: | 0.80, (8, 2, 64, 128) (1.57) 1.10 | 0.80; up to 32 units, (4, 20, 32, 32) (0.66) 1.01
#: | 0.85, (8, 10, 32, 32) and (16, 5, 32, 32) (0.65) 1.01-1.02 | 0.85, (8, 30, 20, 20)
#: (0.77) 0.75 in both. Below, in earlier runs: (4, 6 | 8, ..., 64) (0.79) 0.84-1.30, (2, 14,
#: 32, 64) (0.69) 0.95-1.18, (2, 10 | 4, 5, 32, 64) (0.49) 1.32-1.33, (6, 10, 32, 32) (0.49)
#: 1.15.
MIN_SMALL_FLOPS_PER_THREAD = 900_000
MIN_NARROW_SMALL_FLOPS_PER_THREAD = 650_000
NARROW_SMALL_UNITS = 32


def l2_bytes(default: int = 512 * 1024) -> int:
    """The L2 cache of one core, in bytes, as Linux reports it (``default`` elsewhere)."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2":
                continue
            size = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
        digits = size.rstrip("KM")
        if digits.isdigit() and int(digits) > 0:
            return int(digits) * scale
    return default


#: The batch split gives every thread all the weights, streamed from a shared cache at each
#: step; chunks of units give each thread a slice, which stays in its own L2 cache when it
#: fits in this many bytes (the core's L2, :func:`l2_bytes`). So the units split wins where
#: it puts more threads to work, or as many (at least :data:`MANY_THREADS`) with a slice
#: that fits where the whole does not: on a 16-core Xeon host, (8, 100, 128, 256) ran in
#: 2.2-2.4 ms split by units on 8 or 16 threads against 5.1-5.3 ms by sequences (2 parts),
#: (64, 50, 256, 512) in 13.0-33.8 against 21.8-42.2 ms on 16 to 4 threads. On 2 cores of a
#: Zen 3 the batch split was as fast or faster (0.59x-1.06x the time).
L2_SLICE_BYTES = l2_bytes()
MANY_THREADS = 4
#: Inference whose units split in two (measured on 2 threads) has chunks
#: under this many units, and :data:`NARROW_UNITS` or more (narrower ones have their own
#: rule above), and a batch under 2 * :data:`MIN_ROWS_PER_THREAD` (the batches measured),
#: splits by sequences from 2 a thread instead, where the slices
#: differ by at most a third (a batch of 5 on 2 threads does not: 3 + 2 ran 0.96x-1.07x
#: the time). In one process, the plans taking turns call by call (``plan_ab.py``, two
#: runs): at (4 | 6 | 7, 50-1,000, 32-128, 96 | 112) 0.77x-0.95x the time of 2 chunks of
#: 48-56 units; at H = 128 (chunks of 64) 0.94x-1.00x, and at H = 256 with B = 7 1.05x.
MID_UNITS = 64
#: ... with at least this many sequences (and :data:`MIN_SMALL_FLOPS_PER_THREAD`) a thread.
MIN_MID_ROWS_PER_THREAD = 2
#: With weights beyond L2 the units split also wins where it gives each thread at most
#: this fraction of the blocks of rows (:func:`row_blocks`) a panel goes through that the
#: batch split gives the busiest thread: each block is one pass of the panel's inputs, and
#: a thread of the units split reads half the weights. 2 threads of the Zen 3 guest, (B,
#: 100, 128, 256), units against sequences paired call by call, 700-1,800 pairs each: B =
#: 14, 16, 18 (7, 8, 9 rows a thread: blocks 4 + 3, 4 + 4, 6 + 3; by units 6 + 4 + 4,
#: 6 + 6 + 4, 6 + 6 + 6, three blocks for two threads) 1.05x-1.08x faster by units; B = 8,
#: 9, 10, 12, 20, 24, 32 (as many blocks a thread either way) 1.03x faster to 1.12x slower;
#: (16, 100, 256, 512) 1.075x faster; (64, 50, 256, 512), 5.5 blocks against 6, 1.03x
#: slower. With weights within L2 ((16, 200, 64, 128)), 1.06x slower. Not for training: its
#: steps write the tape, and its backward walk waits twice a step; at B = 14 and 16 a
#: training step ran 1.03x slower by units. Measured on 2 threads; from
#: :data:`MANY_THREADS` on, the rule above alone.
FEWER_BLOCKS = 0.8

_f32 = np.float32


_P = tuple(_f32(c) for c in TANH32_P)
_Q = tuple(_f32(c) for c in TANH32_Q)
_CLAMP = _f32(TANH32_CLAMP)
_LINEAR = _f32(TANH32_LINEAR)


@numba.njit(inline="always", fastmath=True, error_model="numpy", cache=True, nogil=True)
def tanh32(x):  # pragma: no cover - compiled
    """float32 tanh as a rational function of x (clamped where tanh is 1 in float32), one
    entry: :func:`._simd.tanh32_span`'s function, for spans too short for its vectors."""
    a = min(max(x, -_CLAMP), _CLAMP)
    x2 = a * a
    p = _P[0]
    for k in range(1, 7):
        p = p * x2 + _P[k]
    q = _Q[0]
    for k in range(1, 4):
        q = q * x2 + _Q[k]
    return x if abs(x) < _LINEAR else p * a / q


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def tanh32_array(z, out, vectors):  # pragma: no cover - compiled
    """``out = tanh(z)`` for 1-D float32 arrays as the scan computes it (for tests): in
    vectors of :data:`._simd.TANH32_LANES` if ``vectors`` (fewer entries: one by one), else
    all one by one (:func:`tanh32`)."""
    if vectors:
        out[:] = z
        _tanh_of(out, 0, out.shape[0], _f32(1), True)
    else:
        for k in range(z.shape[0]):
            out[k] = tanh32(z[k])


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def _tanh_of(v, first, last, scale, approximate):  # pragma: no cover - compiled
    """``v[first:last] = tanh(scale * v[first:last])``, :func:`tanh32` if ``approximate``.
    Two loops, not one loop choosing per entry: LLVM did not unswitch that one, and the call
    to ``tanh`` it kept stopped the approximate branch from vectorising (5x slower)."""
    if approximate:
        tanh32_span(v, first, last - first, scale)
        if last - first < TANH32_LANES:  # too few for a vector: one by one
            for r in range(first, last):
                v[r] = tanh32(scale * v[r])
    else:
        for r in range(first, last):
            v[r] = np.tanh(scale * v[r])


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True, inline="always")
def _put_sums(sums, w, r, a, first_a, rows_a, rows_w, k_vec, out, first_out,
              column):  # pragma: no cover - compiled
    """``out[first_out + i, column + j]`` = ``sums[rows_w * i + j]`` (a dot block's sums of
    rows ``first_a + i`` of ``a`` and ``r + j`` of ``w`` up to ``k_vec``) plus the rest of
    their inner dimension."""
    for i in range(rows_a):
        a_i = a[first_a + i]
        out_i = out[first_out + i]
        for j in range(rows_w):
            acc = sums[rows_w * i + j]
            for k in range(k_vec, w.shape[1]):
                acc += w[r + j, k] * a_i[k]
            out_i[column + j] = acc


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def _matmul_nt(w, first_r, last_r, a, first_a, rows, out, first_out,
               first_col):  # pragma: no cover - compiled
    """``out[first_out + n, first_col + r - first_r] = a[first_a + n] . w[r]`` for ``n`` in
    ``range(rows)`` and ``r`` in ``range(first_r, last_r)``: a slice of ``a @ w.T``.

    For the few rows of a call that does not pack its weights: each block of 4 rows of
    ``w`` is read once from wherever it is, and every row of ``a`` goes by it while it is
    in L1 cache, in threes (:func:`._simd.dot3x4`, 12 registers of running sums) and the
    rest in pairs (:func:`._simd.dot2x4`, 8; 4 rows as 2 + 2); one row alone against 8
    rows of ``w`` at once (:func:`._simd.dot1x8`, 8); the sums of a block are finished
    together. One Zen 3 core, float32, (rows, K, N) = (3-16, 32-256, 256-1024): threes
    0.80x the time of a pair and a row at 3 rows, 0.89x-0.96x at 6-16. The inner dimension
    past the last whole vector, and the rows of ``w`` past the last block, in plain loops."""
    inner = w.shape[1]
    zero = w.dtype.type(0)
    width = REGISTER_BYTES // w.itemsize  # elements in a vector of the dot blocks
    k_vec = inner // width * width
    sums = stack_sums(w)
    shift = first_col - first_r
    block = 8 if rows == 1 else 4
    last_block = first_r + (last_r - first_r) // block * block
    if rows == 1:
        for r in range(first_r, last_block, 8):
            dot1x8(w, r, a, first_a, k_vec, sums)
            _put_sums(sums, w, r, a, first_a, 1, 8, k_vec, out, first_out, shift + r)
    else:
        triples = rows // 3 * 3
        if rows - triples == 1:  # 4 rows left: two pairs
            triples -= 3
        for r in range(first_r, last_block, 4):
            for n in range(0, triples, 3):
                dot3x4(w, r, a, first_a + n, k_vec, sums)
                _put_sums(sums, w, r, a, first_a + n, 3, 4, k_vec, out, first_out + n,
                          shift + r)
            for n in range(triples, rows, 2):
                dot2x4(w, r, a, first_a + n, k_vec, sums)
                _put_sums(sums, w, r, a, first_a + n, 2, 4, k_vec, out, first_out + n,
                          shift + r)
    for m in range(rows):  # rows of w past the blocks
        a_m = a[first_a + m]
        out_m = out[first_out + m]
        for r in range(last_block, last_r):
            w_r = w[r]
            acc = zero
            for k in range(inner):
                acc += w_r[k] * a_m[k]
            out_m[shift + r] = acc


def panels_for(units: int, dtype: Any) -> tuple[int, int]:
    """``(P, C)``: the panels of packed weights for ``units`` hidden units (``4 * units``
    columns) in ``dtype`` (:func:`panel_shape`)."""
    return panel_shape(4 * units, dtype)


def used_panels(columns: int, width: int) -> int:
    """The panels of ``width`` columns that hold ``columns`` columns (the rest, padding up to
    a multiple of :data:`._simd.ROW_PANELS`, are zero): what :func:`_packed_product`
    computes."""
    return -(-columns // width)


_used_panels = numba.njit(inline="always", cache=True, nogil=True)(used_panels)


@numba.njit(inline="always", cache=True, nogil=True)
def _widest_panels(chunks, per_unit, width):  # pragma: no cover - compiled
    """:func:`used_panels` of the widest of ``chunks`` (K, 2) (``(first, last)`` units
    each, ``per_unit`` columns a unit, panels of ``width``): a narrower chunk's panels past
    its own columns are zero, so the products may take as many for every chunk. (Worked
    out for each chunk at each step instead, calls at (1, 100, 64, 128) took 1.02x-1.06x
    the time.)"""
    widest = 0
    for k in range(chunks.shape[0]):
        widest = max(widest, chunks[k, 1] - chunks[k, 0])
    return _used_panels(per_unit * widest, width)


def panel_shape(columns: int, dtype: Any) -> tuple[int, int]:
    """``(P, C)``: panels for ``columns`` columns in ``dtype``, ``C`` columns each
    (:data:`._simd.TILE_BYTES`), ``P`` a multiple of :data:`._simd.ROW_PANELS`."""
    width = TILE_BYTES // np.dtype(dtype).itemsize
    group = ROW_PANELS * width
    return -(-columns // group) * ROW_PANELS, width


#: Rows :func:`_pack_columns` copies a panel at a time (their 64-byte pieces of a panel,
#: 1 KiB in float32, written together).
PACK_ROWS = 16


@numba.njit(cache=True, nogil=True)
def _pack_columns(w, packed):  # pragma: no cover - compiled
    """``packed`` (P, K, C) <- ``w`` (K, N) in panels of ``C`` columns: column ``n`` is
    ``packed[n // C, :, n % C]``; columns past ``N`` are zero (for ``a @ w``). Blocks of
    :data:`PACK_ROWS` rows, each over the panels: the writes of a block land in a few
    places, not in every panel's (row by row over every panel, a gate gradient's 64
    pieces went to pages 100 KiB apart, 2 GB/s; the weights' packing at (K, N) =
    (1024, 256) took 256 us that way, 204 in blocks)."""
    width = packed.shape[2]
    columns = w.shape[1]
    for r0 in range(0, packed.shape[1], PACK_ROWS):
        r1 = min(packed.shape[1], r0 + PACK_ROWS)
        for p in range(packed.shape[0]):
            c0 = p * width
            filled = max(0, min(width, columns - c0))
            panel = packed[p]
            for j in range(r0, r1):
                source = w[j]
                target = panel[j]
                for c in range(filled):
                    target[c] = source[c0 + c]
                for c in range(filled, width):
                    target[c] = 0


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def _pack(w, first, last, packed, panel0, panel1):  # pragma: no cover - compiled
    """Panels ``panel0:panel1`` of ``packed`` (P, K, C) <- the columns of units
    ``first:last`` of each gate of ``w.T`` (``w`` (4H, K)), in panels of ``C`` columns
    (:func:`panels_for`; the whole of it: ``0:P``): column ``n = q * U + u`` (gate ``q``,
    unit ``first + u``, ``U = last - first``) is entry ``packed[n // C, :, n % C]``;
    columns past ``4U`` are zero. Each 8 columns of a panel
    that are 8 consecutive rows of ``w`` (one gate's units) go in 8 x 8 transposed blocks
    (:data:`._simd.transpose8`: 2-2.7x faster in float32, 10.7 against 4.0 us for both
    weights at (I, H) = (32, 64), a tenth of a call of 100 steps), the rest one by one."""
    hidden = w.shape[0] // 4
    units = last - first
    width = packed.shape[2]
    depth = w.shape[1]
    blocked = depth - depth % 8
    total = 4 * units
    for p in range(panel0, panel1):
        panel = packed[p]
        for column in range(0, width, 8):
            n = p * width + column
            q = n // units
            u = n - q * units
            if n + 8 <= total and u + 8 <= units:
                row = q * hidden + first + u
                for k in range(0, blocked, 8):
                    transpose8(w, row, k, panel, k, column)
                for k in range(blocked, depth):
                    for c in range(8):
                        panel[k, column + c] = w[row + c, k]
                continue
            for c in range(8):
                if n + c < total:
                    q = (n + c) // units
                    source = w[q * hidden + first + n + c - q * units]
                    for k in range(depth):
                        panel[k, column + c] = source[k]
                else:  # the padding
                    for k in range(depth):
                        panel[k, column + c] = 0


@numba.njit(cache=True, nogil=True)
def _packed_product(packed, used, a, first_a, rows, out, first_out,
                    ):  # pragma: no cover - compiled
    """``out[first_out + m, :used * C] += a[first_a + m] @ W[:, :used * C]`` for ``m`` in
    ``range(rows)``, ``W`` (K, P * C) the columns :func:`_pack` put in ``packed``; the
    rest of ``out`` as it was. ``used`` (at most ``P``): the panels that hold the columns
    a caller reads (:func:`used_panels`; ``P`` is rounded up to a multiple of
    :data:`._simd.ROW_PANELS` for the groups of 1 or 2 rows, and the panels past the
    columns are zero: at H = 50, 4H = 200 columns in 16 panels of 16 where 13 hold them,
    computing those took a fifth of the products). Blocks of 6 rows, then
    the 3-5 rows left in one block or two (7 more than a multiple of 6 as 4 + 3, 8 as
    4 + 4, which ran 5-7 % faster than 6 + 2), all against one panel while it is in L1
    cache (:data:`._simd.outer6` to :data:`._simd.outer4`), a block of 3 against three
    half panels at a time, those that start in the panel (:data:`._simd.outer3_halves`;
    the last 2 or 4 halves, if any, as whole panels, :data:`._simd.outer3`); 1 or 2 rows
    alone against 2 or 4 panels at a time (:data:`._simd.outer2`, :data:`._simd.outer1`).
    (The rows left over had gone over every panel in a pass of their own, reading the
    weights from beyond L2 cache again: 100 steps of 5 sequences at (I, H) = (128, 256),
    one thread, took 6.0-6.7 ms as 4 + 1 rows, 5.0-5.4 as one block of 5; of 3, 5.1-5.5
    as 3 rows against 2 panels, 3.7-3.8 against one.)
    ``K`` over :data:`DEPTH` goes in even chunks, each over every panel before the next (a
    panel's strip of 512 rows filled all of a 32 KiB L1 cache), and more than
    :data:`ROW_BLOCK` rows of 6-blocks in blocks, each over every panel before the next
    (BLAS's blocking; the rest go with the last); each entry still sums along ``k`` in
    order, so the bits do not change."""
    inner = packed.shape[1]
    width = packed.shape[2]
    panels = used
    sixes, first_tail, second_tail = _row_blocks(rows)
    chunks = -(-inner // DEPTH)
    for chunk in range(chunks):
        k0, k1 = inner * chunk // chunks, inner * (chunk + 1) // chunks
        if rows < 3:  # 1 or 2 rows alone, against several panels at once
            for group in range(0, panels, ROW_PANELS):
                if rows == 1:
                    outer1(packed, group, a, first_a, k0, k1, out, first_out, group * width)
                else:
                    for p in range(group, min(group + ROW_PANELS, panels), 2):
                        outer2(packed, p, a, first_a, k0, k1, out, first_out, p * width)
            continue
        # The block of 3 rows (if any) takes the 3 half panels that start in this panel,
        # and the next panel's halves with them, so that the 6-row blocks find that panel
        # in L1 (a pass behind them instead, (15, 100, 128, 256) on 2 threads ran at 1.01x
        # and 0.94x of outer3's speed in two runs; ahead, 1.02x).
        threes = 2 * panels // 3 - (2 * panels % 3 == 1)
        done = 0
        r0 = 0
        while True:  # each block of rows' inputs stays in L2
            r1 = min(sixes, r0 + ROW_BLOCK)
            last = r1 == sixes
            for p in range(panels):
                column = p * width
                for n in range(r0, r1, 6):
                    outer6(packed, p, a, first_a + n, k0, k1, out, first_out + n, column)
                if not last:
                    continue
                n = sixes
                for size in (first_tail, second_tail):  # one call site a kernel
                    if size == 5:
                        outer5(packed, p, a, first_a + n, k0, k1, out, first_out + n, column)
                    elif size == 4:
                        outer4(packed, p, a, first_a + n, k0, k1, out, first_out + n, column)
                    elif size == 3:
                        while done < threes and 3 * done <= 2 * p + 1:
                            outer3_halves(packed, 3 * done, a, first_a + n, k0, k1, out,
                                          first_out + n, 3 * done * (width // 2))
                            done += 1
                        if 2 * p >= 3 * threes:
                            outer3(packed, p, a, first_a + n, k0, k1, out, first_out + n,
                                   column)
                    n += size
            if last:
                break
            r0 = r1


def row_blocks(rows: int) -> tuple[int, int, int]:
    """How :func:`_packed_product` splits ``rows`` (3 or more): ``(sixes, first, second)``,
    the rows in blocks of 6, then a block of ``first`` and one of ``second`` rows (3-5 each,
    or 0: none; 7 left as 4 + 3, 8 as 4 + 4). Compiled as ``_row_blocks``; plain Python
    for :func:`block_count` (a compiled function called from Python first took 0.3 s to
    load)."""
    sixes = rows // 6 * 6
    left = rows - sixes
    if 0 < left < 3 and sixes > 0:
        return sixes - 6, 4, left + 2
    return sixes, left, 0


_row_blocks = numba.njit(inline="always", cache=True, nogil=True)(row_blocks)


#: Where :func:`_scan_units`'s claims start in its ``sync`` array, past the count of chunks
#: done (a cache line of its own: every thread polls it); where
#: :func:`_packed_product_call` counts its blocks done.
CLAIMS = 8


@numba.njit(cache=True, nogil=True)
def _packed_product_call(packed, used, a, first_a, rows, out, first_out, sync, block, zero,
                         home, bell):  # pragma: no cover - compiled
    """:func:`_packed_product` (its first ``used`` panels) for ``rows`` rows, in blocks of
    ``block`` rows that calls sharing ``sync`` (int64, at least ``CLAIMS + 1`` entries, all
    0 to start) claim one at a time (``sync[0]``), so that threads sharing a product each
    take blocks until none are left (a thread on a slower core takes fewer, one that has
    not started takes none),
    and count as done (``sync[CLAIMS]``); the call with ``home`` 0 returns once every
    block is done, the others as soon as none is left to claim (nobody need wait for
    them). With ``zero``, each block's rows of ``out`` are zeroed first (``out = a @ W``
    rather than ``+=``), by the thread that then computes them. Each entry is the same bits
    whichever block computed it. ``home`` 0 rings the pool's ``bell`` as it starts, the
    others linger on it at their end (:mod:`._pool`; empty: neither). (Its own function
    also for tests; one call site of the product.)"""
    seen = arrive(bell, home)
    blocks = -(-rows // block)
    while True:
        claimed = atomic_add(sync, 0, 1)
        if claimed >= blocks:
            break
        first = claimed * block
        count = min(block, rows - first)
        if zero:
            for r in range(first_out + first, first_out + first + count):
                for n in range(out.shape[1]):
                    out[r, n] = 0
        _packed_product(packed, used, a, first_a + first, count, out, first_out + first)
        atomic_add(sync, CLAIMS, 1)
    if home == 0:
        wait_at_least(sync, CLAIMS, blocks)
    else:
        linger(bell, seen)


# Inlined into the scan in numba's IR: compiled as a function of its own, LLVM optimised
# the product in it and then again in the scan (a cold first call 24.8 s against 27.2;
# the same speed within 1.3 % at eight shapes that do or do not pack).
@numba.njit(cache=True, nogil=True, inline="always")
def _gate_product(w, first, last, a, first_a, rows, out):  # pragma: no cover - compiled
    """``out[:rows]`` = the columns of units ``first:last`` of each gate of
    ``a[first_a:first_a + rows] @ w.T`` (one product when the thread has every unit)."""
    hidden = w.shape[0] // 4
    units = last - first
    whole = units == hidden
    # One call site, every argument an int64: each further site or literal argument was
    # one more copy of the product for LLVM to compile (3-4 s each).
    for q in range(1 if whole else 4):
        low = q * hidden + first
        high = 4 * hidden if whole else low + units
        _matmul_nt(w, low, high, a, first_a, rows, out, np.int64(0), q * units)


@numba.njit(inline="always", cache=True, nogil=True)
def _running_rows(lengths, t):  # pragma: no cover - compiled
    """1 + the last row whose sequence runs at time ``t`` (``lengths[i] > t``), or 0: the
    rows a step's products need (all of a prefix of rows sorted longest first)."""
    rows = lengths.shape[0]
    while rows > 0 and lengths[rows - 1] <= t:
        rows -= 1
    return rows


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True, **WITHOUT_REFCOUNTS)
def _scan_units(x2, w_ih, w_hh, bias, bias_hh, hs, h0, c0, h_n, c, y, column, lengths, rows0,
                chunks,
                home, reverse, approximate, known_zero, prepacked, proj, gates, cs, bias_own,
                packed_ih, packed_hh, sync, tape_gates, tape_cells, tape_tanh,
                bell):  # pragma: no cover - compiled
    """The layer scan for sequences ``rows0:rows0 + B`` of the batch, their hidden units
    in ``K`` chunks, ``chunks`` (K, 2) their ``(first, last)`` ranges. Calls with
    disjoint ranges of sequences (and one chunk) run side by side without meeting.

    With more than one chunk, several calls (``home`` 0, 1, ...: one per thread, the same
    arguments otherwise) share the work of each step by claiming its chunks: at step ``t``
    each call claims its own chunk first (``sync[CLAIMS + t * K + chunk]``, an atomic
    increment that only one call sees at 0), computes it, then claims any other chunk of the
    step not yet taken, and counts each chunk it finished in ``sync[0]``; before step
    ``t + 1`` it waits until all ``K * (t + 1)`` chunks are done. A thread that started late
    or lost its core finds its chunks taken and catches up, so no call ever waits for a
    thread that is not running (a barrier after each step did: 105 ms instead of 2-3 when
    a core was busy elsewhere), while with both running each keeps computing its own chunk
    and keeps that chunk's weights in its core's cache. Every chunk is computed the same
    way whoever claims it, so the results are the same bits however the threads ran.
    ``home`` 0 returns once every chunk of the last step is done; the others may return
    earlier (and their caller need not wait for them: ``sync`` is this call's own).

    With one chunk and ``sync`` not empty, the call is part ``home`` of a call split by
    sequences (:func:`run_claimed`), its ``S`` parts sharing ``sync`` (``CLAIMS + 3 * S``
    entries, all 0 to start) and one packed copy of the weights (``packed_ih[0]``,
    ``packed_hh[0]``): the part first claims itself (``sync[CLAIMS + 2 * S + home]``; a
    part found claimed returns at once, another thread runs it), then the packing is
    claimed in ``2 * S`` pieces, slice ``s`` of each weight's panels (``sync[CLAIMS + 2 * s
    + w]``, the part's own slice first, so that each thread packs its share of both
    weights: one weight a thread, the larger one at (I, H) = (256, 512) had taken 2/3 of
    the time), each counted in ``sync[0]``, and no part starts its steps before all are
    packed; each part counts itself done in ``sync[1]`` once its outputs and cell
    states are written. So a thread that starts late packs nothing twice and waits for no
    one, and the caller's thread packs while the others wake up.

    ``x2`` (T * N, I) the input of the whole batch (N sequences), ``w_ih`` (4H, I),
    ``w_hh`` (4H, H), ``bias`` (4H,) plus ``bias_hh`` (4H,) where not empty (either may
    be empty: nothing; the sum made here, where NumPy's had taken 4 us of a small call,
    the same bits); ``hs`` (2 * B, H) the hidden state of this call's B
    sequences (rows ``rows0:rows0 + B`` of the batch), double-buffered (round 0 copies
    their rows of ``h0`` (N, H) into rows ``0:B``, a step reads one half and writes the
    other, so one wait a step suffices), their final state written into their rows of
    ``h_n`` (N, H); their cell state from their rows of ``c0`` (N, H), the final one into
    their rows of ``c`` (N, H) (``h0`` and ``c0`` empty, (0, *): a zero state, made
    here, as NumPy's zeros had taken 2-3 us of a small call); where their rows of ``h0``
    are all zero, the first
    step skips its recurrent product, which adds only zeros for finite weights: a fifth to
    two thirds of one step's arithmetic, and with one step the recurrent weights' packing
    (``known_zero``: the caller's word that every part's are, the only one a part of a
    split by sequences takes for the shared packing, else looked for); ``y`` (T, N, W) the
    whole output, this call's rows written in columns ``column:column + H`` (a
    bidirectional layer's directions each write their half of one array). (The state's
    copies in and out had been NumPy's, around the call: 5-9 us of a split call.)
    ``lengths`` (B,) int64 (T when none were given; a step's products go through the rows
    up to the last sequence still running, all of them in a batch sorted longest first,
    :func:`length_order`). Work buffers, one of each per chunk
    (``U`` the most units a chunk has, ``S`` steps projected at once): ``proj`` (K, S * B,
    W), ``gates`` (K, B, 4U), ``cs`` (K, B, U) and ``bias_own`` (K, 4U) (the chunk's
    columns of c and its entries of the bias, contiguous: the loops over strided views did
    not vectorise). With ``packed_ih`` (K, P, I, C) and ``packed_hh`` (K, P, H, C) not
    empty, the chunk's columns of the weights are packed in them (:func:`_pack`,
    ``P * C >= 4U``; in round 0, by whichever thread claims the chunk, or the part, as
    above; with ``prepacked`` they hold them already, packed once for frozen weights,
    and ``w_ih`` and ``w_hh`` are not read), and the products are
    :func:`_packed_product`'s, which add into ``proj`` (``W = P * C``) in place: the bias
    first, then the input's projection, then a step's recurrent product onto its rows
    (``gates`` is not used); empty, the products are
    :func:`_gate_product`'s dot products over the weights as they are (``W = 4U``; those
    need the whole batch: ``B = N``). Nothing is allocated and nothing raises (a thread
    that stopped with a chunk claimed would leave the others waiting).

    For training, the tape of :class:`.numba_train.RowTape`, in rows of the whole batch:
    ``tape_gates`` (T, N, 4H) the activations i, f, g, o, ``tape_cells`` (T + 1, N, H) the
    cell states (slot 0 the initial one, slot T in reverse, filled by the caller),
    ``tape_tanh`` (T, N, H) their tanh; at a step past a sequence's length only its cell
    state (the one kept); for inference all three are (0, 0, 0).

    The input is projected ``S`` steps at a time (one product over all their rows, so even
    one sequence fills the 4-row blocks of :func:`_matmul_nt`); per step the recurrent
    product, then the activations in passes over contiguous rows that LLVM vectorises (one
    fused pass over the gates did not: 3x slower at H = 64), ``tanh`` of the halved
    pre-activation for the sigmoid gates (i, f, o) and of the whole for g."""
    batch = hs.shape[0] // 2
    hidden = hs.shape[1]
    steps, everyone = y.shape[0], y.shape[1]
    count_chunks = chunks.shape[0]
    claiming = count_chunks > 1
    ahead = proj.shape[1] // batch
    half = x2.dtype.type(0.5)
    one = x2.dtype.type(1)
    nothing = x2.dtype.type(0)
    biased, summed, stated = bias.shape[0] > 0, bias_hh.shape[0] > 0, h0.shape[0] > 0
    zero = np.int64(0)  # an int64 like the other calls' indices: a literal 0 compiled anew
    record = tape_gates.shape[0] > 0
    packed = packed_hh.shape[1] > 0
    sharing = not claiming and sync.shape[0] > 0  # a part of a split by sequences
    own = home if claiming else 0  # the chunk a thread looks at first (a part: its only one)
    parts = (sync.shape[0] - CLAIMS) // 3  # S, for a part of a split by sequences
    if sharing and atomic_add(sync, CLAIMS + 2 * parts + home, 1) > 0:
        return  # another thread runs this part
    # The pool's bell (see ._pool): rung by the caller's thread, watched after a worker's part
    # from what it said as the part started (the caller had rung it for this call before).
    seen = arrive(bell, home)
    # A zero state's recurrent product is zero: the first step skips it, and one step alone
    # never needs the recurrent weights packed. Looked for here unless the caller knows
    # (NumPy's any() took 1-2 us, 5 % of a call at (B, T, I, H) = (1, 1, 32, 64)); but the
    # parts of a split by sequences pack one shared copy, which only the caller's word
    # may leave out. (h0 is never written: every thread finds the same.)
    known_zero = known_zero or not stated
    zero_state = known_zero
    if not zero_state:
        zero_state = True
        for i in range(rows0, rows0 + batch):
            for u in range(hidden):
                if h0[i, u] != 0:
                    zero_state = False
    recurrent = steps > 1 or not (known_zero if sharing else zero_state)
    # The shared copy: piece 2s + w is slice s of weight w's panels.
    if sharing and packed and not prepacked:
        for turn in range(2 * parts):
            piece = take(sync, CLAIMS, 0, 2 * parts, 2 * home, turn)
            if piece < 0:
                continue
            part = piece // 2
            target = packed_hh[0] if piece % 2 else packed_ih[0]
            count = target.shape[0]
            if piece % 2 == 0 or recurrent:
                _pack(w_hh if piece % 2 else w_ih, zero, hidden, target,
                      count * part // parts, count * (part + 1) // parts)
            atomic_add(sync, 0, 1)
        wait_at_least(sync, 0, 2 * parts)
    for turn in range(count_chunks):  # round 0: each chunk's weights, bias and state
        k = take(sync, CLAIMS, 0, count_chunks, own, turn)
        if k < 0:
            continue  # another thread has it
        first, last = chunks[k, 0], chunks[k, 1]
        units = last - first
        if packed and not sharing and not prepacked:
            _pack(w_ih, first, last, packed_ih[k], zero, packed_ih.shape[1])
            if recurrent:
                _pack(w_hh, first, last, packed_hh[k], zero, packed_hh.shape[1])
        for q in range(4):
            for u in range(units):
                j = q * hidden + first + u
                b_j = bias[j] if biased else nothing
                if summed:
                    b_j += bias_hh[j]
                bias_own[k, q * units + u] = b_j
        for i in range(batch):
            cs_i, hs_i = cs[k, i], hs[i]
            if stated:
                h0_i, c0_i = h0[rows0 + i], c0[rows0 + i]
                for u in range(units):
                    cs_i[u] = c0_i[first + u]
                    hs_i[first + u] = h0_i[first + u]
            else:
                for u in range(units):
                    cs_i[u] = nothing
                    hs_i[first + u] = nothing
        if claiming:
            atomic_add(sync, 0, 1)
    # One chunk: its views made once (made at each step, they cost 10 % at H = 32).
    proj_0, cs_0, bias_0 = proj[0], cs[0], bias_own[0]
    # The panels the products take (a narrower chunk's entries of proj past its own
    # columns are zero too).
    used = _widest_panels(chunks, 4, packed_hh.shape[3]) if packed else 0
    packed_ih_0, packed_hh_0 = packed_ih[0], packed_hh[0]
    for start in range(0, steps, ahead):
        count = min(ahead, steps - start)
        low = steps - start - count if reverse else start  # the block's first time index
        # The rows the block's steps compute: up to the last sequence still running at its
        # earliest time (the rows past it have ended; at a later time, fewer run).
        reach = _running_rows(lengths, low)
        for s in range(count):
            walked = start + s
            t = steps - 1 - walked if reverse else walked
            now = (walked % 2) * batch  # the half of hs holding the state before step t
            then = batch - now
            running = _running_rows(lengths, t)
            if claiming:  # every chunk of the round before is done
                wait_at_least(sync, 0, (walked + 1) * count_chunks)
            for turn in range(count_chunks):  # round walked + 1: the step
                k = take(sync, CLAIMS, walked + 1, count_chunks, own, turn)
                if k < 0:
                    continue
                first, last = chunks[k, 0], chunks[k, 1]
                units = last - first
                if claiming:
                    proj_k, cs_k, bias_k = proj[k], cs[k], bias_own[k]
                    packed_ih_k, packed_hh_k = packed_ih[k], packed_hh[k]
                else:
                    proj_k, cs_k, bias_k = proj_0, cs_0, bias_0
                    packed_ih_k, packed_hh_k = packed_ih_0, packed_hh_0
                if s == 0:  # the block's input projection, onto the bias
                    if packed:
                        for r in range(count * batch):
                            row = proj_k[r]
                            for n in range(4 * units):
                                row[n] = bias_k[n]
                            for n in range(4 * units, row.shape[0]):
                                row[n] = 0
                        # The whole batch, every row running: the block's rows are
                        # contiguous, one product; else one product a step, of the rows
                        # that run. (One call site: each is a copy to compile.)
                        whole = batch == everyone and reach == batch
                        for b in range(1 if whole else count if reach > 0 else 0):
                            _packed_product(packed_ih_k, used, x2,
                                            (low + b) * everyone + rows0,
                                            count * batch if whole else reach, proj_k,
                                            b * batch)
                    else:
                        _gate_product(w_ih, first, last, x2, low * batch, count * batch,
                                      proj_k)
                product = walked > 0 or not zero_state
                if packed:
                    if running > 0 and product:  # past the last row running: state kept
                        _packed_product(packed_hh_k, used, hs, now, running, proj_k,
                                        (t - low) * batch)
                elif product:
                    _gate_product(w_hh, first, last, hs, now, batch, gates[k])
                for i in range(batch):
                    h_old = hs[now + i, first:last]
                    h_new = hs[then + i, first:last]
                    y_t = y[t, rows0 + i, column + first:column + last]
                    if t >= lengths[i]:  # past this sequence's end: state kept, output zero
                        for u in range(units):
                            h_new[u] = h_old[u]
                            y_t[u] = 0
                        if record:  # the cell state kept (what a reverse walk starts from)
                            tape_c = tape_cells[t if reverse else t + 1, rows0 + i]
                            c_i = cs_k[i]
                            for u in range(units):
                                tape_c[first + u] = c_i[u]
                        continue
                    g = proj_k[(t - low) * batch + i]
                    if not packed:
                        p = g
                        g = gates[k, i]
                        if product:
                            for r in range(4 * units):
                                g[r] += p[r] + bias_k[r]
                        else:
                            for r in range(4 * units):
                                g[r] = p[r] + bias_k[r]
                    # i, f, o: sigmoid(z) = (1 + tanh(z / 2)) / 2; g: tanh(z)
                    _tanh_of(g, zero, 2 * units, half, approximate)
                    _tanh_of(g, 2 * units, 3 * units, one, approximate)
                    _tanh_of(g, 3 * units, 4 * units, half, approximate)
                    c_i = cs_k[i]
                    for u in range(units):
                        cn = (half * g[units + u] + half) * c_i[u] + \
                            (half * g[u] + half) * g[2 * units + u]
                        c_i[u] = cn
                        h_new[u] = cn
                    if record:  # a pass a gate: LLVM left one pass over all five scalar
                        tape_g = tape_gates[t, rows0 + i]
                        for q in range(4):
                            g_q = g[q * units:(q + 1) * units]
                            tape_q = tape_g[q * hidden + first:q * hidden + last]
                            if q == 2:
                                for u in range(units):
                                    tape_q[u] = g_q[u]
                            else:
                                for u in range(units):
                                    tape_q[u] = half * g_q[u] + half
                        tape_c = tape_cells[t if reverse else t + 1, rows0 + i, first:last]
                        for u in range(units):
                            tape_c[u] = h_new[u]
                    _tanh_of(h_new, zero, units, one, approximate)
                    if record:
                        tape_t = tape_tanh[t, rows0 + i]
                        for u in range(units):
                            tape_t[first + u] = h_new[u]
                    for u in range(units):
                        hn = (half * g[3 * units + u] + half) * h_new[u]
                        h_new[u] = hn
                        y_t[u] = hn
                if claiming:
                    atomic_add(sync, 0, 1)
    if claiming:
        if home > 0:
            linger(bell, seen)
            return
        wait_at_least(sync, 0, (steps + 1) * count_chunks)  # every chunk done
    for k in range(count_chunks):  # the cell states, out
        first = chunks[k, 0]
        for i in range(batch):
            c_i, cs_i = c[rows0 + i], cs[k, i]
            for u in range(chunks[k, 1] - first):
                c_i[first + u] = cs_i[u]
    final = (steps % 2) * batch  # the half of hs the last step wrote
    for i in range(batch):
        h_i, hs_i = h_n[rows0 + i], hs[final + i]
        for u in range(hidden):
            h_i[u] = hs_i[u]
    if sharing:
        atomic_add(sync, 1, 1)
        if home > 0:
            linger(bell, seen)


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
    """Compiled version of :func:`lstm_xp._functional.layer_scan` (same shapes); ``h_n``
    and ``c_n`` are new arrays (the fused NumPy scan's too)."""
    if not use_compiled(x.dtype):
        return layer_scan_numpy(xp, x, weight_ih, weight_hh, bias, h0, c0, reverse=reverse,
                                lengths=lengths)
    return _run(x, weight_ih, weight_hh, bias, h0, c0, reverse, lengths, _NO_TAPE[x.dtype])


def plain_forward(X: Any, layers: Any, state: Any = None, lengths: Any = None, *,
                  reverse: bool = False) -> Any:
    """A model's forward pass over ``X`` (T, B, I), its ``layers`` (L layers of D
    directions: the stack of :func:`lstm_xp._functional.stack_forward`, without dropout),
    from ``state`` (default zeros) with ``lengths`` (default: every step), for calls that
    pass nothing else (:attr:`.base.LayerwiseKernel.plain`): ``(y, (h_n, c_n))``, ``y``
    (T, B, D*H), ``h_n`` and ``c_n`` (L*D, B, H). None unless ``X`` is a C-ordered NumPy
    array of the weights' dtype (float32 or float64) and of their input size, with a step
    and a sequence at least; ``state`` a pair of NumPy arrays (L*D, B, H) of that dtype
    (:func:`_plain_state`); and ``lengths`` NumPy or Python integers (B,) in 0..T
    (:func:`_plain_lengths`): these need no conversion, and anything else (an error
    included) is the full path's to check and report. The model's full path took 14 us
    more of a 27 us call at (B, T, I, H) = (1, 1, 16, 32) (validation, a zero state of the
    model's namespace, the stack of one layer), where ONNX Runtime's whole call takes 14
    us; with a state, 17 us more of a 33 us call, and with lengths 44 of 60; two layers, 81
    us against 20 for one. Each layer's directions run as the full path runs them
    (:func:`directions`), so the bits are the full path's.

    A call with ``layers`` a :class:`lstm_xp._naming.LayerList` (a model's) runs as
    :func:`_quick_call` prepared it for its shape, at the first such call, where it takes
    the call."""
    if type(X) is np.ndarray:
        memo = getattr(layers, "memo", None)
        if memo is not None:
            key = (X.shape, X.dtype, reverse, get_num_threads(), _settings_epoch)
            run = memo.get(key)
            if run is None:
                if len(memo) >= QUICK_ENTRIES:
                    memo.clear()
                run = memo[key] = _quick_call(X, layers, reverse)
            flags = X.flags
            if run is not _not_quick and flags.c_contiguous and flags.writeable:
                done = run(X, state, lengths)
                if done is not None:
                    return done
    if not (type(X) is np.ndarray and _takes(X, layers[0][0][0]) and X.flags.c_contiguous):
        return None
    steps, batch = X.shape[0], X.shape[1]
    hidden = layers[0][0][1].shape[1]
    count = len(layers) * len(layers[0])  # L * D
    if state is None:  # a zero state: made where a layer's scan needs one (_plain_scan)
        h0 = c0 = None
    else:
        pair = _plain_state(state, (count, batch, hidden), X.dtype)
        if pair is None:
            return None
        h0, c0 = pair
    taken, valid = (True, None) if lengths is None else _plain_lengths(lengths, steps, batch)
    if not taken:
        return None
    if count == 1:  # one layer, one direction: its results as they come
        y, h, c = _plain_scan(X, layers[0][0], h0, c0, 0, reverse, valid)
        return y, (h[None], c[None])
    h_n = np.empty((count, batch, hidden), X.dtype)
    c_n = np.empty_like(h_n)
    x = X
    for index, pair_of in enumerate(layers):
        ways = len(pair_of)
        # Two directions write their halves of one output (joining them after took 47-130
        # us at (B, T, H) = (8, 100, 128)).
        joined = np.empty((steps, batch, 2 * hidden), X.dtype) if ways > 1 else None
        calls = [functools.partial(_plain_scan, x, weights, h0, c0, index * ways + d,
                                   reverse or d == 1, valid, None if joined is None else
                                   (joined, d * hidden))
                 for d, weights in enumerate(pair_of)]
        outs = directions(calls, (steps, batch, x.shape[2], hidden), X.dtype) \
            if ways > 1 else [calls[0]()]
        for d, (_, h, c) in enumerate(outs):
            h_n[index * ways + d], c_n[index * ways + d] = h, c
        x = outs[0][0]  # the whole output of both directions
    return x, (h_n, c_n)


def _takes(X: np.ndarray, first: np.ndarray) -> bool:
    """Whether the plain way takes the array ``X`` (its memory order aside) for a stack
    whose first weight is ``first``: (T, B, I) with a step and a sequence at least, of the
    weights' dtype and input size, a dtype the compiled scan runs."""
    return (X.ndim == 3 and X.dtype == first.dtype and X.shape[2] == first.shape[1]
            and X.shape[0] > 0 and X.shape[1] > 0 and use_compiled(X.dtype))


#: The calls :func:`_quick_call` prepared that a model keeps, at most (its memo then starts
#: anew).
QUICK_ENTRIES = 16


def _quick_call(X: np.ndarray, layers: Any, reverse: bool) -> Callable[..., Any]:
    """:func:`plain_forward`'s call of ``layers`` (L layers of D directions) over an input of
    ``X``'s shape and dtype, C-ordered and writable, prepared: a function of the input, the
    state (None: zeros) and the lengths (None: every step) that returns ``(y, (h_n, c_n))``,
    the same bits as :func:`plain_forward`'s other way, or None for a state or lengths that
    way must take (:func:`_quick_stack`); each layer's plan, its weights as the compiled
    scan takes them and its other arguments decided once (:func:`_quick_layer`), and whether
    a bidirectional layer's directions run side by side (:func:`directions`). The model
    keeps it in its layers' memo (so that nothing outlives the arrays it was made for), by
    shape and the module's settings (:class:`_Settings`). In one process, taking turns in
    blocks of 0.15 s (the 2-vCPU Zen 3 guest, its slower state), the plain call from a zero
    state took 12.6 against 25.9 us at (B, T, I, H) = (1, 1, 32, 64), 81.5 against 96.7 at
    (3, 3, 64, 128) (one thread), 178.5 against 188.5 at (16, 20, 32, 32) (split by
    sequences), 131 against 149 at (1, 3, 128, 256) (by units); from a state given, 18.4
    against 29.0 at (1, 1, 32, 64), and two layers 20.9 against 54.9 (in the other way, the
    layers' states copied into the stack's, their plans and operands at every call), 145
    against 190 at (3, 3, 64, 128); a bidirectional layer 28.2 against 65.1 at (1, 1, 32,
    64), 648 against 705 at (4, 20, 64, 128); with lengths, one sequence a step short, 17.4
    against 27.7 at (1, 1, 32, 64), 110 against 127 at (4, 10, 32, 64) (the lengths' checks,
    7 us of it, and :func:`length_order`'s, 3 us). :func:`_not_quick` (the other way) for an
    input the plain way does not take, and where any layer's weights would need copies
    (:func:`_quick_layer`)."""
    if not _takes(X, layers[0][0][0]):
        return _not_quick
    steps, batch, _ = X.shape
    dtype = X.dtype
    hidden = layers[0][0][1].shape[1]
    threads = get_num_threads()
    ways = len(layers[0])
    side = ways > 1 and directions_side_by_side((steps, batch, X.shape[2], hidden), dtype)
    shares = thread_shares(threads, ways) if side else (threads,) * ways
    stack = []
    splits = []  # how the layers' plans split the batch, for length_order
    features = X.shape[2]
    for pair_of in layers:
        runs = []
        for d, weights in enumerate(pair_of):
            prepared = _quick_layer(steps, batch, features, dtype, weights,
                                    reverse or d == 1, d * hidden, shares[d])
            if prepared is None:
                return _not_quick
            run, call = prepared
            runs.append(run)
            splits.append((call.by_rows, call.slices))
        stack.append(tuple(runs))
        features = ways * hidden
    whole = functools.partial(_quick_stack, tuple(stack), side, tuple(set(splits)),
                              (steps, batch, ways * hidden), (len(stack) * ways, batch, hidden),
                              dtype, _NO_STATE[dtype])
    run = stack[0][0]
    if len(stack) > 1 or ways > 1:
        return whole
    if isinstance(run, _QuickSplit):
        return functools.partial(_split_one, run, _NO_STATE[dtype], whole)
    if not (isinstance(run, functools.partial) and run.func is _quick_alone):
        return whole
    tail, shape, _, full = run.args
    return functools.partial(_quick_one, tail, shape, dtype, full, _NO_STATE[dtype], whole)


def _quick_layer(steps: int, batch: int, features: int, dtype: np.dtype, weights: Any,
                 reverse: bool, column: int, threads: int,
                 ) -> tuple[Callable[..., np.ndarray], _CallPlan] | None:
    """One layer's direction in :func:`_quick_call`, on ``threads`` threads: its plan and a
    function ``run(x, out, h_n, c_n, h0, c0, zero, lengths)`` of its input ``x`` (T, B, I),
    C-ordered, that writes the final state into ``h_n`` and ``c_n`` (B, H) and returns the
    output ``y`` (T, B, H), or ``out`` (T, B, W) where it is not None, this direction's
    output written into its columns ``column:column + H``, from the state ``h0``, ``c0``
    (B, H; C-ordered writable arrays, or empty (0, 0) arrays with ``zero``: the caller's
    word that they are zero), each sequence ``lengths`` (B,) int64 steps (None: every
    step), on the caller's thread alone (:func:`_quick_alone`), split by sequences
    (:class:`_QuickSplit`) or by units (:func:`_quick_units`). It keeps the weights as
    they are, never a copy (the model's in-place changes to them are seen), so None where
    the compiled scan needs copies of them: arrays not C-ordered or not of the input's
    dtype, and not frozen."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights[:4]
    hidden = weight_hh.shape[1]
    call = _plan_of(steps, batch, features, hidden, dtype, threads, True, False)
    operands, panels, frozen = _operands(call, weight_ih, weight_hh, bias_ih, bias_hh,
                                         features, hidden, dtype)
    given = (weight_ih, weight_hh, bias_ih, bias_hh)
    if not all(a is b or b is None or is_frozen(b) for a, b in zip(operands, given, strict=True)):
        return None
    key = (call, features, hidden, frozen)
    if call.by_rows:
        return _QuickSplit(call, key, operands, panels, reverse, column,
                           (steps * batch, features)), call
    args = None if len(call.chunks) > 1 else \
        _alone_args(call, operands, panels, frozen, features, hidden, dtype)
    if args is None:
        return functools.partial(_quick_units, call, key, operands, panels,
                                 (reverse, dtype == np.float32), len(panels) > 0, column,
                                 (steps * batch, features), _NO_TAPE[dtype]), call
    return functools.partial(_quick_alone, (column, reverse, *args), (steps, batch, hidden),
                             dtype, call.full_lengths), call


def _not_quick(X: np.ndarray, state: Any, lengths: Any) -> None:
    """:func:`_quick_call`'s word that a call takes :func:`plain_forward`'s other way."""
    return None


def _quick_stack(stack: tuple[tuple[Callable[..., np.ndarray], ...], ...], side: bool,
                 splits: tuple[tuple[bool, Any], ...], joined: tuple[int, int, int],
                 shape: tuple[int, int, int], dtype: np.dtype, none: np.ndarray,
                 X: np.ndarray, state: Any, lengths: Any) -> Any:
    """A prepared call (:func:`_quick_call`): ``stack`` its layers' directions' runs
    (:func:`_quick_layer`), ``side`` whether two run side by side (:func:`directions`),
    ``splits`` how their plans split the batch (``(by_rows, slices)``), ``joined`` the
    shape of a bidirectional layer's output (T, B, 2H), ``shape`` the state's (L*D, B, H),
    ``none`` an empty state; ``(y, (h_n, c_n))``, or None where ``state`` is neither None
    nor a pair of C-ordered writable arrays (L*D, B, H) of ``dtype`` (any other the other
    way checks, copies or reports; numba would compile the scan anew for another array
    type), or ``lengths`` neither None nor what :func:`_plain_lengths` takes, or lengths
    that a layer would run in another order (:func:`length_order`: the other way sorts
    them)."""
    valid = None
    if lengths is not None:
        taken, valid = _plain_lengths(lengths, joined[0], joined[1])
        if not taken:
            return None
        if valid is not None and any(length_order(valid, by_rows, slices) is not None
                                     for by_rows, slices in splits):
            return None
    if state is not None:
        pair = _plain_state(state, shape, dtype)
        if pair is None:
            return None
        h0, c0 = pair
        if not _scan_reads(h0, c0):
            return None
    states = np.empty((2, *shape), dtype)
    h_n, c_n = states[0], states[1]
    x = X
    k = 0  # the layer and direction: row k of the state
    for runs in stack:
        if len(runs) == 1:
            if state is None:
                x = runs[0](x, None, h_n[k], c_n[k], none, none, True, valid)
            else:
                x = runs[0](x, None, h_n[k], c_n[k], h0[k], c0[k], False, valid)
            k += 1
            continue
        # Both directions write their halves of one output, as the other way's.
        out = np.empty(joined, dtype)
        calls = [functools.partial(run, x, out, h_n[k + d], c_n[k + d],
                                   *((none, none, True) if state is None else
                                     (h0[k + d], c0[k + d], False)), valid)
                 for d, run in enumerate(runs)]
        if side:
            side_by_side(calls)
        else:
            for call in calls:
                call()
        x = out
        k += len(runs)
    return x, (h_n, c_n)


def _quick_one(tail: tuple[Any, ...], shape: tuple[int, int, int], dtype: np.dtype,
               full: np.ndarray, none: np.ndarray, whole: Callable[..., Any], X: np.ndarray,
               state: Any, lengths: Any) -> Any:
    """A prepared call of one layer and direction on the caller's thread alone
    (:func:`_quick_alone`'s arguments up to ``full``): from zeros, every sequence running
    every step (the benchmark's call, and a server's first), ``whole``'s results (its
    :func:`_quick_stack`) without its loop over layers (1.1 us of an 11 us call at (B, T,
    I, H) = (1, 1, 32, 64), in one process); any other call is ``whole``'s."""
    if state is not None or lengths is not None:
        return whole(X, state, lengths)
    states = np.empty((2, 1, shape[1], shape[2]), dtype)
    y = np.empty(shape, dtype)
    _scan_alone(X, y, states[0, 0], states[1, 0], none, none, True, full, *tail)
    return y, (states[0], states[1])


def _quick_alone(tail: tuple[Any, ...], shape: tuple[int, int, int], dtype: np.dtype,
                 full: np.ndarray, x: np.ndarray, out: np.ndarray | None, h_n: np.ndarray,
                 c_n: np.ndarray, h0: np.ndarray, c0: np.ndarray, zero: bool,
                 lengths: np.ndarray | None) -> np.ndarray:
    """A prepared layer on the caller's thread alone (:func:`_run_alone`'s); ``tail``
    :func:`_scan_alone`'s arguments from ``column`` on, ``full`` the lengths of a batch
    running every step."""
    y = np.empty(shape, dtype) if out is None else out
    _scan_alone(x, y, h_n, c_n, h0, c0, zero, full if lengths is None else lengths, *tail)
    return y


#: The largest work buffers (bytes) that a :class:`_QuickSplit` keeps for its calls (as
#: a thread keeps its "small" ones, :data:`WORK_CACHE_BYTES`); a call that needs more
#: takes them from its thread's cache (:func:`_split`): at such sizes the Python around the
#: compiled scan is under 1 % of a call.
SPLIT_ONE_BYTES = 1 << 21
#: ... and all of them together at most this many (a thread's cache keeps up to 4 sets of
#: 2 MiB: a model called at many shapes, each layer and direction its own prepared split,
#: would otherwise keep a set for each); a set that would go over goes to its thread's cache
#: (:func:`_keep_work`), as before the prepared splits.
SPLIT_HELD_BYTES = 1 << 23
#: The :class:`_QuickSplit` calls alive, whose kept buffers :func:`release_work` drops, ...
_QUICK_SPLITS: weakref.WeakSet[_QuickSplit] = weakref.WeakSet()
#: ... the bytes of buffers they keep (:data:`SPLIT_HELD_BYTES`), and how many times
#: :func:`release_work` has dropped them (a call that took a set before then puts it back
#: as a new one).
_QUICK_HELD = [0, 0]
_QUICK_SPLITS_LOCK = threading.Lock()


def _unhold_locked(held: list[int]) -> None:
    """Take a :class:`_QuickSplit`'s kept bytes ``held[0]`` off :data:`_QUICK_HELD`; the
    caller holds :data:`_QUICK_SPLITS_LOCK`."""
    _QUICK_HELD[0] -= held[0]
    held[0] = 0


def _unhold(held: list[int]) -> None:
    """:func:`_unhold_locked` under the lock (a :class:`_QuickSplit` was dropped)."""
    with _QUICK_SPLITS_LOCK:
        _unhold_locked(held)


class _QuickSplit:
    """A prepared layer split by sequences (:func:`_run_split`'s, the same bits): a function
    ``run(x, out, h_n, c_n, h0, c0, zero, lengths)`` as :func:`_quick_layer` describes it,
    ``rows`` the input's shape as (T * B, I). Each part's arguments of :func:`_scan_units`
    that do not change from call to call are joined once with the work buffers they name
    (:func:`_joined_parts`; :func:`_split` joins them at every call).

    The work buffers are this object's, not the calling thread's (:func:`_work_for`):
    each call takes a set off :attr:`spares` (``list.pop``, one operation under the
    interpreter's lock, so no two calls take the same set) or makes one, and puts it back
    after; :func:`release_work` empties :attr:`spares`, buffers over
    :data:`SPLIT_ONE_BYTES` are never kept here (:attr:`large`), and none beyond
    :data:`SPLIT_HELD_BYTES` for all such calls together. At (B, T, I, H) =
    (4, 1, 32, 64), split in two, :func:`_quick_stack` and :func:`_split` had taken 23 us
    of a 55 us call in Python on the 2-vCPU Zen 3 guest (each part's 31 arguments 5 us,
    the thread's cache of work buffers 4 us, NumPy's allocations 4 us)."""

    def __init__(self, call: _CallPlan, key: tuple[Any, ...], operands: tuple[np.ndarray, ...],
                 panels: list[np.ndarray], reverse: bool, column: int,
                 rows: tuple[int, int]) -> None:
        self.call, self.key, self.operands, self.panels = call, key, operands, panels
        self.reverse, self.column, self.rows = reverse, column, rows
        self.y_shape = (call.steps, call.batch, key[2])
        self.spares: list[tuple[_Work, list[tuple[Any, ...]]]] = []
        self.large = False  # buffers over SPLIT_ONE_BYTES: every call is _split's
        self.held = [0]  # bytes of the sets in spares and in calls (_QUICK_HELD)
        with _QUICK_SPLITS_LOCK:
            _QUICK_SPLITS.add(self)
        weakref.finalize(self, _unhold, self.held)

    def _keep(self, work: _Work, joined: list[tuple[Any, ...]]) -> None:
        """Keep a set of buffers that is not counted yet in :data:`_QUICK_HELD`, or give
        it to the thread's cache where that would go over :data:`SPLIT_HELD_BYTES`."""
        with _QUICK_SPLITS_LOCK:
            kept = _QUICK_HELD[0] + work.nbytes <= SPLIT_HELD_BYTES
            if kept:
                _QUICK_HELD[0] += work.nbytes
                self.held[0] += work.nbytes
        if kept:
            self.spares.append((work, joined))
        else:
            _keep_work(self.key, work)

    def __call__(self, x: np.ndarray, out: np.ndarray | None, h_n: np.ndarray, c: np.ndarray,
                 h0: np.ndarray, c0: np.ndarray, zero: bool,
                 lengths: np.ndarray | None) -> np.ndarray:
        zero = zero or not h0.any()
        if self.large:
            return _split(self.call, self.key, self.operands, self.panels, x.reshape(self.rows),
                          h0, c0, zero, self.reverse, None if out is None else (out, self.column),
                          h_n, c, lengths)
        releases = _QUICK_HELD[1]
        try:
            work, joined = self.spares.pop()
            counted = True
        except IndexError:
            counted = False
            work = _work_for(self.key)
            if work.nbytes > SPLIT_ONE_BYTES:
                _keep_work(self.key, work)
                self.large = True
                return self(x, out, h_n, c, h0, c0, zero, lengths)
            joined = _joined_parts(work, self.operands, self.panels, self.column, self.reverse,
                                   self.call.dtype)
        # Without ``out`` the layer is a direction alone, whose columns start at 0.
        y = np.empty(self.y_shape, x.dtype) if out is None else out
        sync = np.zeros(CLAIMS + 3 * len(joined), np.int64)
        run_claimed(_scan_units, _parts(joined, x.reshape(self.rows), h0, c0, h_n, c, y, zero,
                                        sync, lengths), sync, CLAIMS + 2 * len(joined), 1)
        if counted and releases == _QUICK_HELD[1]:
            self.spares.append((work, joined))
        else:
            self._keep(work, joined)
        return y


def _split_one(run: _QuickSplit, none: np.ndarray, whole: Callable[..., Any], X: np.ndarray,
               state: Any, lengths: Any) -> Any:
    """A prepared call of one layer and direction split by sequences (``run``), from zeros
    or a state given, every sequence running every step: ``whole``'s results (its
    :func:`_quick_stack`) without its checks and its loop over layers; any other call is
    ``whole``'s. ``none`` an empty state."""
    if lengths is not None:
        return whole(X, state, lengths)
    dtype, shape = run.call.dtype, (1, run.call.batch, run.key[2])
    if state is None:
        h0 = c0 = none
    else:
        pair = _plain_state(state, shape, dtype)
        if pair is None or not _scan_reads(*pair):
            return whole(X, state, lengths)
        h0, c0 = pair[0][0], pair[1][0]
    states = np.empty((2, *shape), dtype)
    y = run(X, None, states[0, 0], states[1, 0], h0, c0, state is None, None)
    return y, (states[0], states[1])


def _quick_units(call: _CallPlan, key: tuple[Any, ...], operands: tuple[np.ndarray, ...],
                 panels: list[np.ndarray], flags: tuple[bool, bool], prepacked: bool,
                 column: int, rows: tuple[int, int], tape: tuple[np.ndarray, ...],
                 x: np.ndarray, out: np.ndarray | None, h_n: np.ndarray, c_n: np.ndarray,
                 h0: np.ndarray, c0: np.ndarray, zero: bool,
                 lengths: np.ndarray | None) -> np.ndarray:
    """A prepared layer of a plan that does not split by sequences (:func:`_run`'s);
    ``key`` the work buffers' (the hidden size from it), ``flags`` :func:`_scan_units`'
    ``(reverse, approximate)``, ``rows`` the input's shape as (T * B, I), ``tape`` no
    tape."""
    steps, batch, _ = x.shape
    work = _work_for(key)
    y = np.empty((steps, batch, key[2]), x.dtype) if out is None else out
    _by_units(call, work, (x.reshape(rows), *operands, work.states[0][0], h0, c0, h_n, c_n,
                           y, column, call.full_lengths if lengths is None else lengths,
                           0, call.chunks),
              (*flags, zero, prepacked, *_with(work.parts[0], panels)), tape)
    _keep_work(key, work)
    return y


def _plain_scan(x: np.ndarray, weights: Any, h0: Any, c0: Any, k: int,
                reverse: bool, lengths: np.ndarray | None,
                out: tuple[np.ndarray, int] | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`plain_forward`'s scan of one layer and direction, ``weights`` its tuple, from
    the state ``h0[k]``, ``c0[k]`` ((L*D, B, H) arrays given), or a zero one where
    ``h0`` is None (made only for :func:`_run`: the shorter ways make theirs in compiled
    code, as they sum the biases); its outputs into ``out`` as :func:`_run` writes them."""
    w_ih, w_hh, b_ih, b_hh = weights[:4]
    steps, batch, features = x.shape
    dtype = x.dtype
    call = _plan_of(steps, batch, features, w_hh.shape[1], dtype, get_num_threads(), True,
                    False)
    if lengths is None:
        quick = _run_split if call.by_rows else _run_alone if len(call.chunks) == 1 else None
        if quick is not None:
            h, c = (_NO_STATE[dtype],) * 2 if h0 is None else (h0[k], c0[k])
            done = quick(call, x, w_ih, w_hh, b_ih, b_hh, h, c, reverse, h0 is None, out)
            if done is not None:
                return done
    if h0 is None:
        h = c = np.zeros((batch, w_hh.shape[1]), dtype)
    else:
        h, c = h0[k], c0[k]
    bias = None if b_ih is None else b_ih + b_hh
    return _run(x, w_ih, w_hh, bias, h, c, reverse, lengths, _NO_TAPE[dtype],
                known_zero=h0 is None or None, call=call, out=out)


def _scan_reads(h0: np.ndarray, c0: np.ndarray) -> bool:
    """Whether the compiled scan takes the state ``h0``, ``c0`` as it is: C-ordered writable
    arrays (numba would compile the scan anew for any other array type, ~10 s)."""
    return (h0.flags.c_contiguous and h0.flags.writeable
            and c0.flags.c_contiguous and c0.flags.writeable)


def _plain_state(state: Any, shape: tuple[int, int, int],
                 dtype: np.dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """``(h0, c0)`` from a state ``(h, c)`` of NumPy arrays of ``shape`` (L*D, B, H) and
    ``dtype`` (read, never written: :func:`_run` copies them), or None for any other."""
    if not (type(state) in (tuple, list) and len(state) == 2):
        return None
    h, c = state
    if not all(type(a) is np.ndarray and a.shape == shape and a.dtype == dtype
               for a in (h, c)):
        return None
    return h, c


def _plain_lengths(lengths: Any, steps: int, batch: int) -> tuple[bool, np.ndarray | None]:
    """``(True, lengths as int64 (B,))``, or ``(True, None)`` where every sequence runs all
    ``steps``, for a NumPy integer array or a Python sequence of ints, (B,), in 0..T
    (checked before any cast, as the full path does, so that nothing wraps around);
    ``(False, None)`` for anything else."""
    if not isinstance(lengths, (np.ndarray, list, tuple)):
        return False, None
    host = np.asarray(lengths)
    if host.shape != (batch,) or host.dtype.kind not in "iu":
        return False, None
    if batch <= 64:  # Python's min and max of a few: 0.1 us, NumPy's reductions 1.3 each
        values = host.tolist()
        shortest, longest = min(values), max(values)
    else:
        shortest, longest = int(host.min()), int(host.max())
    if shortest < 0 or longest > steps:
        return False, None
    return True, None if shortest == steps else host.astype(np.int64)


#: The arguments of a call with one chunk and no claims, and of one that writes no tape
#: (empty: nothing is ever written into them; not flagged read-only, which numba would
#: compile the scan for again, ~10 s).
_NO_SYNC = np.empty(0, np.int64)
#: No bias (or no second bias) for the compiled scan; no state (a zero one).
_NO_BIAS = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}
_NO_STATE = {np.dtype(t): np.empty((0, 0), t) for t in (np.float32, np.float64)}
_NO_TAPE = {np.dtype(t): (np.empty((0, 0, 0), t),) * 3 for t in (np.float32, np.float64)}


#: A batch with lengths runs sorted (:func:`length_order`) when that spares at least this
#: fraction of the rows its steps' products go through in the order given.
SORT_SAVING = 0.1


def length_order(lengths: np.ndarray, by_rows: bool, slices: Any) -> np.ndarray | None:
    """The order to run a batch with ``lengths`` (B,) in, split as :func:`plan` says
    (``by_rows``: into ``slices``, ``(first, last)`` ranges of rows; else the whole batch
    on each thread): the batch sorted longest first and dealt round-robin, so that each
    slice runs longest first (its steps' products then go through only the rows still
    running, :func:`_scan_units`) and the slices get as much work as each other. None where
    that spares less than :data:`SORT_SAVING` of the rows the products would go through in
    the order given (in each slice, up to the last row still running)."""
    if lengths.shape[0] < 2:
        return None
    if not by_rows:
        slices = ((0, lengths.shape[0]),)
    if lengths.shape[0] <= 64:  # Python's loops over a few: NumPy's calls took 10 us
        values = lengths.tolist()
        given = 0
        for first, last in slices:
            longest = 0
            for value in reversed(values[first:last]):
                longest = value if value > longest else longest
                given += longest
        total = sum(values)
    else:
        given = sum(int(np.maximum.accumulate(lengths[first:last][::-1]).sum())
                    for first, last in slices)
        total = int(lengths.sum())
    if total > (1 - SORT_SAVING) * given:
        return None
    order = np.argsort(-lengths, kind="stable")
    return np.concatenate([order[j::len(slices)] for j in range(len(slices))])


def caller_order(a: np.ndarray, order: np.ndarray, axis: int = 0) -> np.ndarray:
    """``a`` computed in ``order`` along ``axis`` (its entry ``n`` the caller's
    ``order[n]``), back in the caller's order (a new array)."""
    out = np.empty_like(a)
    out[(slice(None),) * axis + (order,)] = a
    return out


def _run(x: np.ndarray, weight_ih: np.ndarray, weight_hh: np.ndarray, bias: np.ndarray | None,
         h0: np.ndarray, c0: np.ndarray, reverse: bool, lengths: np.ndarray | None,
         tape: tuple[np.ndarray, np.ndarray, np.ndarray], threads: int | None = None,
         lockstep: bool | None = None, known_zero: bool | None = None,
         call: _CallPlan | None = None, out: tuple[np.ndarray, int] | None = None,
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The compiled layer scan, its threads as :func:`plan` shares ``threads`` of them
    (default: :func:`lstm_xp.get_num_threads`; ``call``: the plan, where the caller has it
    already): ``(y, h_n, c_n)``, ``y`` written into columns ``column:column + H`` of
    ``out = (Y, column)`` where given (``Y`` (T, B, W) then returned whole), and ``tape``'s
    arrays filled when they are not empty (see :func:`_scan_units`; ``known_zero``: whether
    ``h0`` is all zero, True where the caller knows, looked for here where the call
    splits by sequences when None). Without a tape, a batch with
    ``lengths`` runs in :func:`length_order` where that spares work (the results in the
    caller's order); a tape is written in the order given.

    The Python around the compiled loop is kept short (at (B, T, I, H) = (1, 100, 16, 32)
    it had been 28 us against the loop's 38): the plan comes from a cache of shapes
    (:func:`_call_plan`), the work buffers from the calling thread's own cache
    (:func:`_work_for`)."""
    steps, batch, features = x.shape
    hidden = weight_hh.shape[1]
    dtype = x.dtype
    x2 = compiled_operand(x).reshape(steps * batch, features)
    w_ih = np.ascontiguousarray(weight_ih)
    w_hh = np.ascontiguousarray(weight_hh)
    b = _NO_BIAS[dtype] if bias is None else compiled_operand(bias)
    h0, c0 = compiled_operand(h0, dtype), compiled_operand(c0, dtype)  # read, never written
    h_n = np.empty((batch, hidden), dtype)
    c = np.empty((batch, hidden), dtype)
    if call is None:
        call = _plan_of(steps, batch, features, hidden, dtype,
                        get_num_threads() if threads is None else threads,
                        True if lockstep is None else lockstep, tape[0].shape[0] > 0)
    valid = call.full_lengths if lengths is None else np.asarray(lengths, dtype=np.int64)
    order = None if lengths is None or tape[0].shape[0] > 0 else \
        length_order(valid, call.by_rows, call.slices)
    if order is not None:  # the sequences in the order that spares work
        x2 = x[:, order].reshape(steps * batch, features)
        h0, c0, valid = h0[order], c0[order], valid[order]
    y, column = out if out is not None and order is None else \
        (np.empty((steps, batch, hidden), dtype), 0)
    frozen = is_frozen(w_ih) and is_frozen(w_hh)
    key = (call, features, hidden, frozen)
    work = _work_for(key)
    panels: list[np.ndarray] = []  # the frozen weights' panels, packed once
    if frozen:
        w_ih, w_hh, *panels = _frozen_weights(w_ih, w_hh, call, features, hidden)
    approximate = dtype == np.float32
    prepacked = len(panels) > 0
    if known_zero is None:  # the parts of a split by sequences need to know
        known_zero = call.by_rows and not h0.any()
    if call.by_rows:  # independent slices of the batch, each on its own thread
        parts = len(work.parts)  # sync: the claims of the packing's pieces, then the parts'
        sync = np.zeros(CLAIMS + 3 * parts, np.int64)
        run_claimed(_scan_units, [
            (x2, w_ih, w_hh, b, _NO_BIAS[dtype], hs, h0, c0, h_n, c, y, column,
             valid[low:high], low,
             call.chunks, home, reverse, approximate, known_zero, prepacked,
             *_with(buffers, panels), sync, *tape)
            for home, ((hs, (low, high)), buffers)
            in enumerate(zip(work.states, work.parts, strict=True))], sync, CLAIMS + 2 * parts,
            1)
    else:
        _by_units(call, work, (x2, w_ih, w_hh, b, _NO_BIAS[dtype], work.states[0][0], h0, c0,
                               h_n, c, y, column, valid, 0, call.chunks),
                  (reverse, approximate, known_zero, prepacked, *_with(work.parts[0], panels)),
                  tape)
    _keep_work(key, work)
    if order is not None:
        y, h_n, c = caller_order(y, order, 1), caller_order(h_n, order), caller_order(c, order)
        if out is not None:
            out[0][:, :, out[1]:out[1] + hidden] = y
            y = out[0]
    return y, h_n, c


def _by_units(call: _CallPlan, work: _Work, head: tuple[Any, ...], rest: tuple[Any, ...],
              tape: tuple[np.ndarray, ...]) -> None:
    """:func:`_scan_units` for a plan ``call`` that does not split by sequences, ``head``
    its arguments up to ``chunks``, ``rest`` from ``reverse`` to the work buffers: on
    the caller's thread alone (one chunk), or its chunks of units claimed step by step by
    as many threads."""
    if len(call.chunks) == 1:
        run_parts(_scan_units, [(*head, 0, *rest, _NO_SYNC, *tape)], bell=True)
        return
    steps = head[0].shape[0] // call.batch
    sync = np.zeros(CLAIMS + (steps + 1) * len(call.chunks), np.int64)
    # Only the caller's own part is waited for: it returns once every chunk is done,
    # whichever thread did it, and a thread that starts late finds nothing left.
    run_parts(_scan_units, [(*head, home, *rest, sync, *tape)
                            for home in range(len(call.chunks))], wait=False, bell=True)


def _run_split(call: _CallPlan, x: np.ndarray, weight_ih: np.ndarray, weight_hh: np.ndarray,
               bias_ih: np.ndarray | None, bias_hh: np.ndarray | None, h0: np.ndarray,
               c0: np.ndarray, reverse: bool, known_zero: bool,
               out: tuple[np.ndarray, int] | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`_run` for an inference call whose plan ``call`` splits it by sequences, every
    sequence running every step: the same bits from fewer Python operations, each part's
    arguments that depend only on the plan kept with the work buffers (:attr:`_Work.heads`).
    Python's operations after the compiled scan has run take 2-3x their time back to back
    (a NumPy sum of two biases 4 us against 1.3): :func:`_run`'s way, a call split in two
    took 1-3 us more at (B, T, I, H) = (8, 50, 20, 20), (64, 10, 32, 32), (16, 20, 32, 32)
    (in one process, taking turns). Arguments as
    :func:`_run_alone`'s (``known_zero`` False: ``h0`` is looked at here); None, for
    :func:`_run` to take, where ``x`` or the state is not a writable C-ordered array (numba
    would compile the call anew for its type)."""
    if not x.flags.writeable or (not known_zero and not _scan_reads(h0, c0)):
        return None
    steps, batch, features = x.shape
    operands, panels, frozen = _operands(call, weight_ih, weight_hh, bias_ih, bias_hh,
                                         features, weight_hh.shape[1], x.dtype)
    states = np.empty((2, batch, weight_hh.shape[1]), x.dtype)  # (one array: 2 us less)
    y = _split(call, (call, features, weight_hh.shape[1], frozen), operands, panels,
               x.reshape(steps * batch, features), h0, c0, known_zero or not h0.any(),
               reverse, out, states[0], states[1])
    return y, states[0], states[1]


def _split(call: _CallPlan, key: tuple[Any, ...], operands: tuple[np.ndarray, ...],
           panels: list[np.ndarray], x2: np.ndarray, h0: np.ndarray, c0: np.ndarray,
           zero: bool, reverse: bool, out: tuple[np.ndarray, int] | None, h_n: np.ndarray,
           c: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """:func:`_run_split`'s call once its arguments are checked: ``operands`` and
    ``panels`` from :func:`_operands`, ``key`` the work buffers' (:func:`_work_for`), ``x2``
    (T * B, I) the input, ``zero`` whether ``h0`` is all zero, ``lengths`` (B,) int64 each
    sequence's steps (None: every step): the output ``y``, the final state written into
    ``h_n`` and ``c`` (B, H). (The hidden size from ``key``: frozen weights' ``operands``
    are empty.)"""
    batch, hidden, dtype = call.batch, key[2], x2.dtype
    steps = x2.shape[0] // batch
    work = _work_for(key)
    y, column = (np.empty((steps, batch, hidden), dtype), 0) if out is None else out
    joined = _joined_parts(work, operands, panels, column, reverse, dtype)
    sync = np.zeros(CLAIMS + 3 * len(joined), np.int64)
    run_claimed(_scan_units, _parts(joined, x2, h0, c0, h_n, c, y, zero, sync, lengths),
                sync, CLAIMS + 2 * len(joined), 1)
    _keep_work(key, work)
    return y


def _joined_parts(work: _Work, operands: tuple[np.ndarray, ...], panels: list[np.ndarray],
                  column: int, reverse: bool, dtype: np.dtype) -> list[tuple[Any, ...]]:
    """Each part of a call split by sequences: its arguments of :func:`_scan_units` that
    depend on the weights (``operands``, ``panels``), the plan and the work buffers
    ``work`` only, in the runs between the call's own (:func:`_parts`), and its slice of
    the batch."""
    w_ih, w_hh, b_ih, b_hh = operands
    approximate = dtype == np.float32
    return [((w_ih, w_hh, b_ih, b_hh, hs), (column, *head, reverse, approximate),
             (len(panels) > 0, *_with(buffers, panels)), _NO_TAPE[dtype], rows)
            for (hs, rows), head, buffers in zip(work.states, work.heads, work.parts,
                                                 strict=True)]


def _parts(joined: list[tuple[Any, ...]], x2: np.ndarray, h0: np.ndarray, c0: np.ndarray,
           h_n: np.ndarray, c: np.ndarray, y: np.ndarray, zero: bool, sync: np.ndarray,
           lengths: np.ndarray | None) -> list[tuple[Any, ...]]:
    """The parts' arguments of :func:`_scan_units` for :func:`run_claimed`: ``joined``
    (:func:`_joined_parts`) with the call's own arrays, and each part's slice of
    ``lengths`` where given (else the plan's, every step)."""
    if lengths is None:
        return [(x2, *weights, h0, c0, h_n, c, y, *middle, zero, *buffers, sync, *tape)
                for weights, middle, buffers, tape, _ in joined]
    return [(x2, *weights, h0, c0, h_n, c, y, middle[0], lengths[low:high], *middle[2:], zero,
             *buffers, sync, *tape)
            for weights, middle, buffers, tape, (low, high) in joined]


def _operands(call: _CallPlan, weight_ih: np.ndarray, weight_hh: np.ndarray,
              bias_ih: np.ndarray | None, bias_hh: np.ndarray | None, features: int,
              hidden: int, dtype: np.dtype) -> tuple[tuple[np.ndarray, ...],
                                                     list[np.ndarray], bool]:
    """What the compiled scan of plan ``call`` takes of a layer's weights: ``((w_ih,
    w_hh, b_ih, b_hh), panels, frozen)``, the weights C-ordered (frozen ones
    (:func:`._frozen.is_frozen`): :func:`_frozen_weights`, and ``panels`` their packed
    copies where the plan packs, else empty), the biases as :func:`_biases` makes them."""
    frozen = is_frozen(weight_ih) and is_frozen(weight_hh)
    panels: list[np.ndarray] = []
    if frozen:
        w_ih, w_hh, *panels = _frozen_weights(weight_ih, weight_hh, call, features, hidden)
    else:
        w_ih, w_hh = np.ascontiguousarray(weight_ih), np.ascontiguousarray(weight_hh)
    return (w_ih, w_hh, *_biases(bias_ih, bias_hh, dtype)), panels, frozen


def _biases(bias_ih: np.ndarray | None, bias_hh: np.ndarray | None,
            dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The two biases as :func:`_scan_units` takes them (summed there): C-ordered arrays of
    ``dtype``, empty for none."""
    if bias_ih is None:
        return _NO_BIAS[dtype], _NO_BIAS[dtype]
    return compiled_operand(bias_ih, dtype), compiled_operand(bias_hh, dtype)


#: Bytes of packed weights that :func:`_run_alone` packs into buffers of the call's own;
#: calls with more take :func:`_run`, whose work buffers are kept from call to call (fresh
#: memory costs its pages' first touch on every call, 0.4-0.6 ms for 6.6 MiB).
ALONE_PACKED_BYTES = 1 << 21
#: The packed weights of a call that packs its own (:func:`_scan_alone`): none.
_NO_PANELS = {np.dtype(t): np.empty((1, 0, 0, 0), t) for t in (np.float32, np.float64)}


def _run_alone(call: _CallPlan, x: np.ndarray, weight_ih: np.ndarray, weight_hh: np.ndarray,
               bias_ih: np.ndarray | None, bias_hh: np.ndarray | None, h0: np.ndarray,
               c0: np.ndarray, reverse: bool, known_zero: bool,
               out: tuple[np.ndarray, int] | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`_run` for an inference call whose plan ``call`` runs it on the caller's
    thread alone, every sequence for every step: ``(y, h_n, c_n)`` (``y`` into ``out`` as
    :func:`_run` writes it), the same bits, from one compiled call (:func:`_scan_alone`)
    that makes its own work buffers and copies of the state, where :func:`_run` makes a
    dozen NumPy and Python calls of 0.2-2 us each around the compiled scan (at (B, T, I, H)
    = (1, 1, 32, 64) the model's call took 13.2 us this way against 18.1). The biases
    ``bias_ih`` and ``bias_hh`` (4H,) are summed in the compiled code (both None: none);
    ``h0`` and ``c0`` (B, H) are read, not written (``known_zero``: the caller's word that
    they are zero; then they may be empty, (0, 0), and are not read). None, for :func:`_run` to
    take, where the weights it would pack are over :data:`ALONE_PACKED_BYTES` (frozen
    weights come packed) or the state is not a C-ordered writable array (numba would
    compile the call anew for its type)."""
    steps, batch, features = x.shape
    hidden = weight_hh.shape[1]
    dtype = x.dtype
    if not known_zero and not _scan_reads(h0, c0):
        return None
    args = _alone_args(call, *_operands(call, weight_ih, weight_hh, bias_ih, bias_hh,
                                        features, hidden, dtype), features, hidden, dtype)
    if args is None:
        return None
    y, column = (np.empty((steps, batch, hidden), dtype), 0) if out is None else out
    states = np.empty((2, batch, hidden), dtype)
    _scan_alone(compiled_operand(x), y, states[0], states[1], h0, c0, known_zero,
                call.full_lengths, column, reverse, *args)
    return y, states[0], states[1]


def _alone_args(call: _CallPlan, operands: tuple[np.ndarray, ...], panels: list[np.ndarray],
                frozen: bool, features: int, hidden: int,
                dtype: np.dtype) -> tuple[Any, ...] | None:
    """:func:`_scan_alone`'s arguments after ``reverse``, which depend on the weights and the
    plan only (``operands``, ``panels`` and ``frozen`` from :func:`_operands`), or None where
    the call would pack more than :data:`ALONE_PACKED_BYTES` of weights itself."""
    count, width = call.panels
    if panels:
        packed_ih, packed_hh = panels
    else:
        packed_ih = packed_hh = _NO_PANELS[dtype]
        if not frozen and count * width * (features + hidden) * dtype.itemsize > \
                ALONE_PACKED_BYTES:
            return None
    return (*operands, count, width, packed_ih, packed_hh, dtype == np.float32, call.ahead)


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def _scan_alone(x, y, h_n, c, h0, c0, known_zero, lengths, column, reverse, w_ih, w_hh, bias,
                bias_hh, panels, width, packed_ih, packed_hh, approximate,
                ahead):  # pragma: no cover - compiled
    """:func:`_scan_units` for the whole batch of ``x`` (T, B, I) on the calling thread,
    one chunk of every unit, each sequence ``lengths`` (B,) int64 steps, with work buffers
    of its own (what :func:`_make_work` makes for such a call), from the state ``h0`` and ``c0``
    (B, H; copied; empty: zero), the outputs into columns ``column:column + H`` of ``y``
    (T, B, W), the final state into ``h_n`` and ``c`` (B, H);
    ``bias`` and ``bias_hh`` as :func:`_scan_units` takes them. ``panels`` 0: no packing
    (dot products over the weights as they are); else the weights in ``panels`` panels
    of ``width`` columns, packed here, or already in ``packed_ih`` (1, P, I, C) and
    ``packed_hh`` (1, P, H, C) where those are not empty (frozen weights; ``w_ih`` and
    ``w_hh`` are then not read). (The arguments that depend on the weights alone follow
    ``reverse``: :func:`_alone_args`.)"""
    steps, batch, features = x.shape
    hidden = h_n.shape[1]
    x2 = x.reshape((steps * batch, features))
    dtype = x2.dtype
    hs = np.empty((2 * batch, hidden), dtype)
    chunks = np.empty((1, 2), np.int64)
    chunks[0, 0] = 0
    chunks[0, 1] = hidden
    cs = np.empty((1, batch, hidden), dtype)
    bias_own = np.empty((1, 4 * hidden), dtype)
    prepacked = packed_hh.shape[1] > 0
    if panels == 0:
        proj = np.empty((1, ahead * batch, 4 * hidden), dtype)
        gates = np.empty((1, batch, 4 * hidden), dtype)
    else:  # the projection block and any panels to pack, each on a 64-byte boundary
        gates = np.empty((1, 0, 0), dtype)
        align = 64 // x2.itemsize
        sizes = (panels * width * ahead * batch, 0 if prepacked else panels * features * width,
                 0 if prepacked else panels * hidden * width)
        rounded = [-(-n // align) * align for n in sizes]
        raw = np.empty(rounded[0] + rounded[1] + rounded[2] + align, dtype)
        start = (-raw.ctypes.data % 64) // x2.itemsize
        proj = raw[start:start + sizes[0]].reshape((1, ahead * batch, panels * width))
        if not prepacked:
            start += rounded[0]
            packed_ih = raw[start:start + sizes[1]].reshape((1, panels, features, width))
            start += rounded[1]
            packed_hh = raw[start:start + sizes[2]].reshape((1, panels, hidden, width))
    tape = np.empty((0, 0, 0), dtype)
    _scan_units(x2, w_ih, w_hh, bias, bias_hh, hs, h0, c0, h_n, c, y, column, lengths,
                np.int64(0),
                chunks, np.int64(0), reverse, approximate, known_zero, prepacked, proj, gates,
                cs, bias_own, packed_ih, packed_hh, np.empty(0, np.int64), tape, tape, tape,
                np.empty(0, np.int64))


@dataclass(frozen=True)
class _CallPlan:
    """How :func:`_run` runs ``steps`` steps of ``batch`` sequences of ``dtype``: split by
    sequences into ``slices`` between threads (``by_rows``), or its hidden units in
    ``chunks`` (K, 2) (``(first, last)`` each) that as many threads share (one chunk: the
    caller's thread alone); the input projected ``ahead`` steps at a time, the weights
    packed (``pack``), and the lengths when none are given (``full_lengths``); the arrays
    are shared by every call and never written. Plans compare equal only for the same
    ``steps``: a plan keys its work buffers (:func:`_work_for`), which keep a split call's
    ``full_lengths`` (:attr:`_Work.heads`), so that a call of 20 steps that took the buffers
    of an otherwise equal plan of 16 ran each sequence 16 steps, its last outputs and its
    final state wrong (from commit f19f21e to this fix)."""

    steps: int
    batch: int
    by_rows: bool
    slices: tuple[tuple[int, int], ...]
    ahead: int
    pack: bool
    dtype: np.dtype
    chunks: np.ndarray = field(compare=False, hash=False)
    full_lengths: np.ndarray = field(compare=False, hash=False)
    #: What packed weights of this plan look like: None without packing, else the chunks'
    #: ranges (one, ``(0, H)``, where the call splits by sequences) and the dtype.
    layout: Any = field(compare=False, hash=False, default=None)
    #: ``(P, C)``, the panels of a chunk's (or the whole layer's) packed weights
    #: (:func:`panels_for`); ``(0, 0)`` without packing.
    panels: tuple[int, int] = field(compare=False, hash=False, default=(0, 0))


#: The plans made (:func:`_plan_of`), by shape, under the module's settings as they are
#: (any change to the module's attributes empties it: :class:`_Settings`) ...
_PLANS: dict[tuple[Any, ...], _CallPlan] = {}
#: ... at most this many (then it starts anew).
PLAN_ENTRIES = 1024


def _plan_of(steps: int, batch: int, features: int, hidden: int, dtype: np.dtype,
             threads: int, lockstep: bool, training: bool) -> _CallPlan:
    """:func:`_call_plan` under the module's settings as they are now (one lookup: the
    tuple of every setting, as :func:`_call_plan`'s key, had taken 1.7 us of a small
    call)."""
    key = (steps, batch, features, hidden, dtype, threads, lockstep, training)
    call = _PLANS.get(key)
    if call is not None:
        return call
    epoch = _settings_epoch
    call = _call_plan(*key, (
        STEPS_AHEAD, PROJ_ELEMENTS, PACK_COST_ROWS, PACK_COST_SCALE_MIB, PACK_COST_MAX_MIB,
        PACK_ROW_EXTRA, MIN_ROWS_PER_THREAD, MIN_FLOPS_PER_THREAD, MIN_UNITS_PER_THREAD,
        MIN_CHUNK_STEP_FLOPS, MIN_CHUNK_CALL_FLOPS, MIN_WIDE_CHUNK_CALL_FLOPS,
        MIN_NARROW_CHUNK_CALL_FLOPS, NARROW_UNITS, NARROW_CHUNK_STEP_FLOPS,
        MIN_SMALL_ROWS_PER_THREAD, MIN_SMALL_BATCH, MIN_SMALL_FLOPS_PER_THREAD,
        MIN_NARROW_SMALL_FLOPS_PER_THREAD, NARROW_SMALL_UNITS, L2_SLICE_BYTES, MANY_THREADS,
        FEWER_BLOCKS, MID_UNITS, MIN_MID_ROWS_PER_THREAD))
    if epoch == _settings_epoch:  # no setting changed meanwhile (another thread's)
        if len(_PLANS) >= PLAN_ENTRIES:
            _PLANS.clear()
        _PLANS[key] = call
    return call


@functools.lru_cache(maxsize=256)
def _call_plan(steps: int, batch: int, features: int, hidden: int, dtype: np.dtype,
               threads: int, lockstep: bool, training: bool, tunables: tuple[int, ...],
               ) -> _CallPlan:
    """The :class:`_CallPlan` of a shape (cached: computing it took 5-9 us a call), for the
    module's settings ``tunables`` (a cached plan never outlives a change to them);
    ``training`` for a pass that writes a tape (see :func:`plan`)."""
    # From the whole layer's size, so that the blocks do not depend on the split.
    ahead = max(1, min(steps, STEPS_AHEAD, PROJ_ELEMENTS // (4 * hidden * batch)))
    pack = packs(steps, batch, features, hidden, np.dtype(dtype).itemsize)
    by_rows, slices = plan(steps, batch, features, hidden, pack, lockstep, threads,
                           np.dtype(dtype).itemsize, training)
    chunks = np.array([(0, hidden)] if by_rows else slices, np.int64).reshape(-1, 2)
    # Shared by every call of the plan and never written; writable all the same: numba
    # compiles the scan anew for a read-only array (and calls with lengths pass writable).
    full = np.full(batch, steps, np.int64)
    layout = (tuple(map(tuple, chunks.tolist())), np.dtype(dtype)) if pack else None
    units = int((chunks[:, 1] - chunks[:, 0]).max())
    return _CallPlan(steps, batch, by_rows, tuple(slices), ahead, pack, np.dtype(dtype), chunks,
                     full, layout, panels_for(units, dtype) if pack else (0, 0))


#: The panels of frozen weights (:func:`._frozen.is_frozen`), packed once for each layout.
_FROZEN = DerivedCache()
_NO_WEIGHTS = {np.dtype(t): np.empty((0, 0), t) for t in (np.float32, np.float64)}


def _frozen_weights(w_ih: np.ndarray, w_hh: np.ndarray, call: _CallPlan, features: int,
                    hidden: int) -> tuple[np.ndarray, ...]:
    """What :func:`_scan_units` takes for frozen ``w_ih`` and ``w_hh``, made once for each
    layout of plan ``call`` and kept while the arrays live: with packing, empty weights
    (not read) and their panels, ``packed_ih`` (K, P, I, C) and ``packed_hh`` (K, P, H, C),
    one set for the whole of them (K = 1) where the call splits by sequences, else one per
    chunk of units; without, writable copies of the weights (a read-only array would have
    the scan compiled anew for its type), never written."""
    return _FROZEN.get(w_ih, w_hh, call.layout, _pack_frozen, call, features, hidden)


def _pack_frozen(w_ih: np.ndarray, w_hh: np.ndarray, call: _CallPlan, features: int,
                 hidden: int) -> tuple[np.ndarray, ...]:
    """:func:`_frozen_weights`' value (packed from writable copies of the weights, for the
    same reason)."""
    w_ih, w_hh = compiled_operand(w_ih), compiled_operand(w_hh)
    if not call.pack:
        return w_ih, w_hh
    chunks = call.chunks.tolist()  # (0, H) alone where the call splits by sequences
    panels, width = call.panels
    packed_ih, packed_hh = aligned_arrays(
        [(len(chunks), panels, features, width), (len(chunks), panels, hidden, width)],
        call.dtype)
    for k, (first, last) in enumerate(chunks):
        _pack(w_ih, first, last, packed_ih[k], 0, panels)
        _pack(w_hh, first, last, packed_hh[k], 0, panels)
    empty = _NO_WEIGHTS[call.dtype]
    return empty, empty, packed_ih, packed_hh


def _with(buffers: tuple[Any, ...], panels: list[np.ndarray]) -> tuple[Any, ...]:
    """A part's work buffers (:class:`_Work`), its packed weights ``panels`` where given."""
    return (*buffers[:4], *panels) if panels else buffers


@dataclass
class _Work:
    """One call's work buffers (see :func:`_scan_units`): ``states`` the double-buffered
    hidden states and the sequences each holds (one per slice of sequences, or one for
    the whole batch); ``parts`` the buffers ``(proj, gates, cs, bias_own, packed_ih,
    packed_hh)`` of each slice of sequences (their packed weights one shared copy,
    which they fill together), or of the chunks of units (one entry)."""

    states: list[tuple[np.ndarray, tuple[int, int]]]
    parts: list[tuple[Any, ...]]
    nbytes: int
    #: For a call split by sequences: each slice's arguments of :func:`_scan_units` after
    #: ``column`` when no lengths are given, ``(lengths, rows0, chunks, home)``.
    heads: list[tuple[Any, ...]] = field(default_factory=list)


def _make_work(call: _CallPlan, features: int, hidden: int, frozen: bool = False) -> _Work:
    """New work buffers for a call of plan ``call``; for ``frozen`` weights, whose panels
    are kept elsewhere (:func:`_frozen_weights`), none for packed weights."""
    dtype, ahead, pack, batch = call.dtype, call.ahead, call.pack, call.batch
    count = len(call.chunks)
    kept = 0 if frozen else 1  # panels of packed weights: none for frozen weights
    units = int(max(last - first for first, last in call.chunks))
    none3, none4 = np.empty((count, 0, 0), dtype), np.empty((count, 0, 0, 0), dtype)

    def own_shapes(size: int) -> list[tuple[int, ...]]:
        """The shapes of ``(cs, bias_own)`` for ``size`` sequences, a pair for each chunk."""
        return [(count, size, units), (count, 4 * units)]

    def own(size: int) -> tuple[Any, ...]:
        """``(cs, bias_own)`` for ``size`` sequences."""
        return tuple(np.empty(shape, dtype) for shape in own_shapes(size))

    if call.by_rows:  # one packed copy of the weights, each slice its projection block
        panels, width = call.panels  # of all H units: one chunk
        slices = call.slices
        # Each slice's buffers too from one allocation, each on a cache line of its own: as
        # NumPy arrays of their own (16-48 bytes past a line), calls at (48 | 64 | 128,
        # 20-100, 10-50, 50-100) took 1.01x-1.07x the time.
        w_ih_p, w_hh_p, *rest = aligned_arrays(
            [(kept * panels, features, width), (kept * panels, hidden, width)]
            + [shape for low, high in slices for shape in [
                (1, ahead * (high - low), panels * width), (2 * (high - low), hidden),
                *own_shapes(high - low)]], dtype)
        states = [(rest[4 * n + 1], slice_) for n, slice_ in enumerate(slices)]
        parts = [(rest[4 * n], none3, rest[4 * n + 2], rest[4 * n + 3], w_ih_p[None],
                  w_hh_p[None]) for n in range(len(slices))]
    elif pack:  # each chunk its packed weights and projection block
        panels, width = call.panels
        packed_ih, packed_hh, proj = aligned_arrays(
            [(count, kept * panels, features, width), (count, kept * panels, hidden, width),
             (count, ahead * batch, panels * width)], dtype)
        states = [(np.empty((2 * batch, hidden), dtype), (0, batch))]
        parts = [(proj, none3, *own(batch), packed_ih, packed_hh)]
    else:  # dot products over the weights as they are
        states = [(np.empty((2 * batch, hidden), dtype), (0, batch))]
        parts = [(np.empty((count, ahead * batch, 4 * units), dtype),
                  np.empty((count, batch, 4 * units), dtype), *own(batch), none4, none4)]
    arrays = [a for part in parts for a in part] + [hs for hs, _ in states]
    heads = [(call.full_lengths[low:high], low, call.chunks, home)
             for home, (_, (low, high)) in enumerate(states)] if call.by_rows else []
    return _Work(states, parts, _footprint(arrays), heads)


def _footprint(arrays: list[np.ndarray]) -> int:
    """Bytes of the allocations behind ``arrays`` (views of one counted once)."""
    roots = {}
    for a in arrays:
        while isinstance(a.base, np.ndarray):
            a = a.base
        roots[id(a)] = a.nbytes
    return sum(roots.values())


#: Each thread keeps the work buffers of its last few call shapes (:func:`_work_for`), at
#: most this many ...
WORK_CACHE_ENTRIES = 4
#: ... of which only the most recent may be over this many bytes ...
WORK_CACHE_BYTES = 1 << 21
#: ... and none over this many (larger calls allocate theirs). Fresh buffers cost their
#: pages' first touch: at (B, I, H) = (64, 256, 512) the 6.6 MiB of a call (the packed
#: weights, most of it) took 0.4-0.6 ms of a 2-8 ms call of 1-5 steps.
WORK_CACHE_LARGE_BYTES = 1 << 25
_LOCAL = threading.local()


def _work_for(key: tuple[Any, ...]) -> _Work:
    """Work buffers for a call: the calling thread's own cached ones for ``key``, taken out
    of its cache for the call (so that nothing else can use them meanwhile), else new ones.
    A thread runs one call at a time, so no two calls ever share buffers; threads that
    split a call use its caller's."""
    cache: dict[tuple[Any, ...], _Work] | None = getattr(_LOCAL, "work", None)
    work = None if cache is None else cache.pop(key, None)
    return _make_work(*key) if work is None else work


def _keep_work(key: tuple[Any, ...], work: _Work) -> None:
    """Put a call's work buffers back in its thread's cache (the most recent last, the
    oldest dropped past :data:`WORK_CACHE_ENTRIES`), unless they are over
    :data:`WORK_CACHE_LARGE_BYTES`; one over :data:`WORK_CACHE_BYTES` replaces any other
    such entry (a thread holds at most one large set of buffers)."""
    if work.nbytes > WORK_CACHE_LARGE_BYTES:
        return
    cache = getattr(_LOCAL, "work", None)
    if cache is None:
        cache = _LOCAL.work = {}
        if is_pool_thread():
            _POOL_CACHES.append(cache)
    # Copies of the keys and items: release_work may empty a pool thread's cache meanwhile.
    if work.nbytes > WORK_CACHE_BYTES:
        for other, kept in list(cache.items()):
            if kept.nbytes > WORK_CACHE_BYTES:
                cache.pop(other, None)
    cache[key] = work
    if len(cache) > WORK_CACHE_ENTRIES:
        for oldest in list(cache)[:-WORK_CACHE_ENTRIES]:
            cache.pop(oldest, None)


#: The caches of the pool's threads, which run a bidirectional layer's second direction
#: (:func:`directions`) with buffers of their own and never end.
_POOL_CACHES: list[dict[tuple[Any, ...], _Work]] = []


def release_work() -> None:
    """Drop the calling thread's cached work buffers (:func:`_keep_work`), and those the
    pool's threads keep: a thread holds up to :data:`WORK_CACHE_LARGE_BYTES` plus
    :data:`WORK_CACHE_ENTRIES` - 1 times :data:`WORK_CACHE_BYTES` until it ends or this is
    called; the next call allocates anew. (A call a pool thread runs meanwhile keeps its
    buffers, and puts them back after.)"""
    _LOCAL.work = {}
    for cache in list(_POOL_CACHES):
        cache.clear()
    with _QUICK_SPLITS_LOCK:
        for split in list(_QUICK_SPLITS):
            split.spares.clear()
            _unhold_locked(split.held)
        _QUICK_HELD[1] += 1


def packs(steps: int, batch: int, features: int, hidden: int, itemsize: int = 4) -> bool:
    """Whether a call of ``steps`` steps of ``batch`` sequences packs its weights
    (:data:`PACK_COST_ROWS`): the input weights meet ``T * B`` rows, the recurrent ones
    ``(T - 1) * B`` (from a zero state, the first step has no recurrent product, and one
    step does not pack them)."""
    recurrent = (steps - 1) * batch
    inputs = features + (hidden if recurrent else 0)  # of the weights packed
    mib = min(PACK_COST_MAX_MIB, 4 * hidden * inputs * itemsize / (1 << 20))
    saving = (steps * batch * (features + PACK_ROW_EXTRA)
              + recurrent * (hidden + PACK_ROW_EXTRA))
    return saving >= PACK_COST_ROWS * (1 + mib / PACK_COST_SCALE_MIB) * inputs


def use_compiled(dtype: Any) -> bool:
    """Whether the compiled scan runs ``dtype`` (float32, float64), or the fused NumPy one
    (float16)."""
    return dtype in (np.float32, np.float64)


def plan(steps: int, batch: int, features: int, hidden: int, packed: bool,
         lockstep: bool = True, threads: int | None = None, itemsize: int = 4,
         training: bool = False) -> tuple[bool, list[tuple[int, int]]]:
    """How one layer scan shares up to ``threads`` threads (default
    :func:`lstm_xp.get_num_threads`): ``(True, row ranges)`` splits the batch
    (:func:`row_slices`; packed weights, at least :data:`MIN_ROWS_PER_THREAD` sequences and
    :data:`MIN_FLOPS_PER_THREAD` a thread), else ``(False, unit ranges)``
    (:func:`unit_slices`, at least :data:`MIN_UNITS_PER_THREAD` units,
    :data:`MIN_CHUNK_STEP_FLOPS` a step and :data:`MIN_CHUNK_CALL_FLOPS` a call each
    (:data:`MIN_WIDE_CHUNK_CALL_FLOPS` for inference with weights beyond L2),
    the threads sharing each step's chunks of units; unless ``lockstep`` is False);
    inference (with ``lockstep``) that neither splits, or only into chunks narrower than
    :data:`NARROW_UNITS` with under :data:`NARROW_CHUNK_STEP_FLOPS` a step, by sequences
    with :data:`MIN_SMALL_ROWS_PER_THREAD` and :data:`MIN_SMALL_FLOPS_PER_THREAD` a thread
    (:data:`MIN_NARROW_SMALL_FLOPS_PER_THREAD` up to :data:`NARROW_SMALL_UNITS` units;
    :data:`MIN_SMALL_BATCH` at least), else narrow chunks from
    :data:`MIN_NARROW_CHUNK_CALL_FLOPS` a call on; inference of fewer than 2 *
    :data:`MIN_ROWS_PER_THREAD` sequences that would go in two chunks of
    :data:`NARROW_UNITS` up to :data:`MID_UNITS` units, by sequences from
    :data:`MIN_MID_ROWS_PER_THREAD` a thread, the slices within a third of each other.
    Where both apply,
    the units split is taken as :data:`L2_SLICE_BYTES` says, and for inference (not
    ``training``) as :data:`FEWER_BLOCKS` says. One range: the caller's thread alone."""
    limit = get_num_threads() if threads is None else threads
    step = 8 * batch * hidden * (features + hidden)  # FLOPs of one step's products
    weights = 4 * hidden * (features + hidden) * itemsize
    wide = not training and steps > 1 and weights > L2_SLICE_BYTES
    least = MIN_WIDE_CHUNK_CALL_FLOPS if wide else MIN_CHUNK_CALL_FLOPS
    by_units = min(limit, hidden // MIN_UNITS_PER_THREAD, step // MIN_CHUNK_STEP_FLOPS,
                   steps * step // least) if lockstep else 1
    narrow = not training and by_units > 1 and hidden // by_units < NARROW_UNITS
    if narrow and steps * step < MIN_NARROW_CHUNK_CALL_FLOPS:
        by_units = 1
    small_chunks = narrow and step // by_units < NARROW_CHUNK_STEP_FLOPS
    by_rows = min(limit, steps * step // MIN_FLOPS_PER_THREAD, batch // MIN_ROWS_PER_THREAD)
    if (lockstep and not training and by_units == 2
            and batch < 2 * MIN_ROWS_PER_THREAD and NARROW_UNITS <= hidden // by_units < MID_UNITS):
        mid = min(limit, batch // MIN_MID_ROWS_PER_THREAD,
                  steps * step // MIN_SMALL_FLOPS_PER_THREAD)
        if mid > 1 and 3 * -(-batch // mid) <= 4 * (batch // mid):
            by_rows = mid
    if lockstep and not training and (by_units <= 1 or small_chunks) and by_rows <= 1:
        small = MIN_NARROW_SMALL_FLOPS_PER_THREAD if hidden <= NARROW_SMALL_UNITS else \
            MIN_SMALL_FLOPS_PER_THREAD
        by_rows = min(limit, steps * step // small,
                      batch // MIN_SMALL_ROWS_PER_THREAD if batch >= MIN_SMALL_BATCH else 1)
    slice_fits = by_units >= MANY_THREADS and weights // by_units <= L2_SLICE_BYTES < weights
    if packed and by_rows > 1 and by_rows >= by_units:
        slices = row_slices(batch, by_rows)
        fewer_blocks = (not training and 1 < by_units < MANY_THREADS
                        and weights > L2_SLICE_BYTES
                        and block_count(batch) / by_units <= FEWER_BLOCKS * max(
                            block_count(last - first) for first, last in slices))
        if not ((by_rows == by_units and slice_fits) or fewer_blocks):
            return True, slices
    return False, unit_slices(hidden, max(1, by_units))


def block_count(rows: int) -> int:
    """How many blocks of rows :func:`_packed_product` takes ``rows`` rows in (1 for 1 or 2
    rows, which go against several panels at once)."""
    if rows < 3:
        return 1
    sixes, first_tail, second_tail = row_blocks(rows)
    return sixes // 6 + (first_tail > 0) + (second_tail > 0)


def row_slices(batch: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``(first, last)`` ranges of sequences covering ``batch``, as
    even as they go, the larger first: the caller's thread runs the first, and the pool's
    threads start later (with the smaller first, as before, odd batches ran 1.01x-1.20x slower:
    (5-11, 50-100, 32-256, 64-256), (33, 100, 128, 256), (65, 50, 256, 512), pair by pair
    on 2 threads of the Zen 3 guest; the same bits)."""
    sizes = [batch // parts + (n < batch % parts) for n in range(parts)]
    return list(itertools.pairwise(itertools.accumulate(sizes, initial=0)))


def unit_slices(hidden: int, threads: int) -> list[tuple[int, int]]:
    """``threads`` contiguous ``(first, last)`` ranges of hidden units covering ``hidden``,
    sizes multiples of 4 (the blocks of :func:`_matmul_nt`), any remainder on the last."""
    size = -(-hidden // threads)
    size = -(-size // 4) * 4
    return [(first, min(first + size, hidden)) for first in range(0, hidden, size)]


#: A bidirectional layer's directions run side by side only where each one's work is at
#: least this many FLOPs of products, counting :data:`STEP_WORK` for each step: handing a
#: direction to the pool's thread and waiting for it costs tens of microseconds. In one
#: process, call by call on 2 threads (``benchmarks/directions_ab.py``), side by side took
#: 1.75x the time at (1, 1, 32, 64), 1.60x at (1, 10, 32, 64), 1.07x at (1, 50, 32, 64)
#: (7.5 million), 1.20x and 1.06x at (8, 1 | 2, 128, 256) (6.4 and 12.8 million), and
#: 0.85x-1.03x at (1, 100, 32, 64) (14.9 million; 0.89x the median of five runs); from
#: there on 0.71x-0.97x: (2 | 1, 100 | 200, 32, 64), (4, 20, 64, 128), (1, 30 | 100, 128 |
#: 64, 256 | 128), (8, 10, 128, 256); (8, 4, 128, 256) (25.6 million) 1.02x.
SIDE_BY_SIDE_MIN_WORK = 14_000_000
#: A step's own cost in :data:`SIDE_BY_SIDE_MIN_WORK`'s count (1-2 us a step at H = 32-64,
#: one thread, whatever the products): a direction's time depends on its steps as well.
STEP_WORK = 100_000
#: ... and in a forward pass, only where each direction's weights take at most this many
#: bytes: side by side, two sets of them go through the shared cache at once, and at 6 MiB
#: a direction side by side was no faster: (64, 50, 256, 512) 0.88x, 1.03x, 1.04x, 1.06x
#: the time in four runs, (128, 50, 256, 512) 0.88x and 1.05x, (16, 100, 256, 512) 0.95x,
#: 1.02x and 1.04x; at 1.5 MiB and under it was faster or the same (:func:`directions`).
SIDE_BY_SIDE_BYTES = 3 << 20


def directions(calls: Sequence[Callable[[], Any]], shape: ScanShape | None,
               dtype: Any) -> list[Any]:
    """The scans ``calls`` of a bidirectional layer's directions (each of ``shape`` (T, B,
    I, H), I None in a backward pass, and ``dtype``): side by side
    (:func:`._pool.side_by_side`) where :data:`SIDE_BY_SIDE_MIN_WORK` and
    :data:`SIDE_BY_SIDE_BYTES` say, except in float16 (the fused NumPy scan, which holds
    the interpreter's lock); else one after the other. In one process, call by call on 2
    threads (``benchmarks/directions_ab.py``, four or five runs), side by side took a
    median 0.89x-0.95x the time of one after the other at (1 | 4 | 8 | 16, 100, 32-128,
    64-256) (single runs from 0.86x to 1.03x), 1.00x at (32, 100, 128, 256); two layers
    0.93x-0.95x; a training step 0.82x-0.96x."""
    if shape is None or not directions_side_by_side(shape, dtype):
        return one_after_another(calls)
    return side_by_side(calls)


def directions_side_by_side(shape: ScanShape, dtype: Any) -> bool:
    """Whether :func:`directions` runs a bidirectional layer's scans of ``shape`` (T, B, I,
    H; I None in a backward pass) and ``dtype`` side by side."""
    dtype = np.dtype(dtype)
    if not use_compiled(dtype):
        return False
    steps, batch, features, hidden = shape
    backward = features is None
    width = hidden if features is None else features  # a backward pass: about as wide
    work = (8 * batch * hidden * (width + hidden) + STEP_WORK) * steps * (2 if backward else 1)
    weights = 4 * hidden * (width + hidden) * dtype.itemsize
    return work >= SIDE_BY_SIDE_MIN_WORK and (backward or weights <= SIDE_BY_SIDE_BYTES)


def make(reverse: bool = False) -> LayerwiseKernel:
    """Compiled inference and training (float32, float64; :mod:`.numba_train`)."""
    from .numba_train import CompiledTrainer  # it builds on this module

    trainer = CompiledTrainer()
    return LayerwiseKernel("numba", layer_scan_numba, trainer.scan_train,
                           trainer.scan_backward, reverse, fresh_state=True,
                           plain=functools.partial(plain_forward, reverse=reverse),
                           side_by_side=directions)


#: Bumped whenever one of this module's attributes is set (:class:`_Settings`): the plans
#: and the prepared calls (:func:`_quick_call`) made before are not used after.
_settings_epoch = 0


class _Settings(types.ModuleType):
    """This module's type: setting an attribute of it (a tunable such as
    :data:`PACK_COST_ROWS`, from a test or a tuning run) forgets every plan and prepared
    call made under the old values, so that a call never runs on a plan of settings that
    are gone."""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        self.__dict__["_settings_epoch"] += 1
        _PLANS.clear()


sys.modules[__name__].__class__ = _Settings
