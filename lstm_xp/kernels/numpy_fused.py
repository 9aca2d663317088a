"""A fused NumPy layer scan: the reference's results with fewer, larger, in-place calls.

Same signature and results as :func:`lstm_xp._functional.layer_scan` (tests hold them equal).
What it does differently, and why:

- One buffer ``Z`` of shape (B, 5H) holds the gates in the order (o, i, f, g) and, after them,
  the cell state ``c``. The recurrent GEMM writes straight into ``Z[:, :4H]`` (BLAS takes the
  row stride), one ``tanh`` covers all four gates (sigmoid rows are pre-halved, see
  :mod:`._layout`), and because ``[i, f]`` and ``[g, c]`` are adjacent, ``i*g`` and ``f*c``
  are one multiply. A step is 9 NumPy calls with no temporaries: at B = 1 each call costs about
  as much as the arithmetic, so the count is what matters.
- The input projection is computed in chunks of steps whose size is bounded (``_CHUNK_BYTES``),
  and outputs are written in place: memory beyond inputs and outputs stays O(B*H) however long
  the sequence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._layout import fused_permutation, fused_scale

# Largest input-projection block held at once. Big enough that the chunk's GEMM runs at full
# speed (>= a few hundred rows), small enough to stay in cache-friendly territory.
_CHUNK_BYTES = 32 * 2**20


def _fused_weights(weight_ih, weight_hh, bias, dtype):
    hidden = weight_hh.shape[1]
    perm = fused_permutation(hidden)
    scale = fused_scale(hidden, dtype)[:, None]
    w_ih_t = np.ascontiguousarray((weight_ih[perm] * scale).T)  # (I, 4H)
    w_hh_t = np.ascontiguousarray((weight_hh[perm] * scale).T)  # (H, 4H)
    b = None if bias is None else bias[perm] * scale[:, 0]
    return w_ih_t, w_hh_t, b


def layer_scan_numpy(
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
    """Fused NumPy version of :func:`lstm_xp._functional.layer_scan` (same shapes)."""
    if lengths is None:
        return _scan(x, weight_ih, weight_hh, bias, h0, c0, reverse, None)
    # Sort sequences longest first (stable), so that the sequences still running at any step
    # are a prefix of the batch: padded steps cost nothing, and nothing needs masking.
    order = np.argsort(-np.asarray(lengths), kind="stable")
    sorted_lengths = np.asarray(lengths)[order]
    counts = np.count_nonzero(sorted_lengths[None, :] > np.arange(x.shape[0])[:, None], axis=1)
    y_s, h_s, c_s = _scan(x[:, order], weight_ih, weight_hh, bias, h0[order], c0[order],
                          reverse, counts)
    y = np.empty_like(y_s)
    y[:, order] = y_s
    h = np.empty_like(h_s)
    h[order] = h_s
    c = np.empty_like(c_s)
    c[order] = c_s
    return y, h, c


def _scan(x, weight_ih, weight_hh, bias, h0, c0, reverse, counts):
    """The time loop. ``counts[t]``: how many leading sequences are still running at step
    ``t`` (None: all of them)."""
    steps, batch, features = x.shape
    hidden = weight_hh.shape[1]
    dtype = x.dtype
    w_ih_t, w_hh_t, b = _fused_weights(weight_ih, weight_hh, bias, dtype)

    z = np.empty((batch, 5 * hidden), dtype=dtype)
    tanh_c = np.empty((batch, hidden), dtype=dtype)
    z[:, 4 * hidden :] = c0
    views: dict[int, tuple[np.ndarray, ...]] = {}

    def rows(n: int) -> tuple[np.ndarray, ...]:
        """Views of the first n rows of the work buffers (made once per distinct n)."""
        if n not in views:
            zn = z[:n]
            views[n] = (zn[:, : 4 * hidden], zn[:, : 3 * hidden], zn[:, :hidden],
                        zn[:, hidden : 3 * hidden], zn[:, 3 * hidden :],
                        zn[:, 3 * hidden : 4 * hidden], zn[:, 4 * hidden :], tanh_c[:n])
        return views[n]

    if counts is None:
        y = np.empty((steps, batch, hidden), dtype=dtype)
        state = None  # h is the previous output row itself
        h = h0
    else:
        y = np.zeros((steps, batch, hidden), dtype=dtype)  # zero past each length
        state = np.array(h0, dtype=dtype, copy=True)  # h of every sequence, running or not
        h = state

    chunk = max(1, min(steps, _CHUNK_BYTES // max(1, batch * 4 * hidden * dtype.itemsize)))
    starts = range(0, steps, chunk)
    for start in reversed(starts) if reverse else starts:
        stop = min(start + chunk, steps)
        proj = x[start:stop].reshape(-1, features) @ w_ih_t
        if b is not None:
            proj += b
        proj = proj.reshape(stop - start, batch, 4 * hidden)
        for t in range(stop - 1, start - 1, -1) if reverse else range(start, stop):
            n = batch if counts is None else int(counts[t])
            if n == 0:
                continue
            gates, sig, o_gate, i_f, g_c, i_g, c, tc = rows(n)
            np.matmul(h if n == batch else h[:n], w_hh_t, out=gates)
            gates += proj[t - start] if n == batch else proj[t - start, :n]
            np.tanh(gates, out=gates)
            sig *= 0.5
            sig += 0.5
            np.multiply(i_f, g_c, out=g_c)  # [i*g, f*c]
            np.add(i_g, c, out=c)  # c' = f*c + i*g
            np.tanh(c, out=tc)
            out = y[t] if n == batch else y[t, :n]
            np.multiply(o_gate, tc, out=out)
            if state is None:
                h = out
            else:
                state[:n] = out
    h_n = (h if state is None else state).copy()
    return y, h_n, z[:, 4 * hidden :].copy()
