"""A fused NumPy layer scan: the reference's results with fewer, in-place calls.

Same signature and results as :func:`lstm_xp._functional.layer_scan` (tests hold them equal).
What it does differently, and why:

- Gates are kept in the order (o, i, f, g) with the sigmoid rows of the weights pre-halved
  (see :mod:`._layout`): one ``tanh`` over the whole (B, 4H) gate buffer serves all four gates,
  and one multiply-add pair over the contiguous (o, i, f) block finishes the three sigmoids.
- Every buffer is allocated once and written in place (``out=``): a step is 10 NumPy calls and
  no allocation. At B = 1 each call costs about as much as its arithmetic, so the count is
  what matters; at large B, outputs never alias their inputs, because NumPy copies an input
  that might overlap its output.
- The input projection is computed in chunks of at most ``_CHUNK_STEPS`` steps and
  ``_CHUNK_BYTES``, and outputs are written straight into the result: memory beyond inputs
  and outputs stays O(B*H) however long the sequence.
- With ``lengths``, sequences are sorted longest first, so the ones still running at any step
  are a prefix of the batch: padded steps cost nothing and nothing needs masking.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._layout import fused_permutation, fused_scale, sorted_prefix

# The input projection is computed for at most _CHUNK_STEPS steps and _CHUNK_BYTES at once:
# memory beyond inputs and outputs stays O(B*H) however long the sequence, and the chunk's
# GEMM still has hundreds of rows.
_CHUNK_STEPS = 64
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
    order, counts, _ = sorted_prefix(lengths, x.shape[0])
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

    gates_all = np.empty((batch, 4 * hidden), dtype=dtype)
    c_all = np.array(c0, dtype=dtype, copy=True)
    tmp_all = np.empty((batch, hidden), dtype=dtype)
    cache: dict[int, tuple[np.ndarray, ...]] = {}

    def rows(n: int) -> tuple[np.ndarray, ...]:
        """Views of the first n rows of the work buffers (made once per distinct n). Every
        output buffer is separate from the inputs it is computed from: NumPy copies an input
        that might overlap its output, which would cost more than the views save."""
        if n not in cache:
            g = gates_all[:n]
            cache[n] = (g, g[:, : 3 * hidden], g[:, :hidden], g[:, hidden : 2 * hidden],
                        g[:, 2 * hidden : 3 * hidden], g[:, 3 * hidden :], c_all[:n],
                        tmp_all[:n])
        return cache[n]

    # Zero past each length; with lengths the running sequences are a prefix of the batch.
    y = np.empty((steps, batch, hidden), dtype=dtype) if counts is None else \
        np.zeros((steps, batch, hidden), dtype=dtype)
    joined = None if counts is None else np.empty((batch, hidden), dtype=dtype)
    prev_y, prev_n = h0, batch if counts is None else 0

    chunk = max(1, min(steps, _CHUNK_STEPS,
                       _CHUNK_BYTES // max(1, batch * 4 * hidden * dtype.itemsize)))
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
            if n <= prev_n:  # every running sequence ran the step before: h is its output
                h = prev_y if n == batch else prev_y[:n]
            else:  # sequences start (the backward direction, or the first step) from h0
                joined[:prev_n] = prev_y[:prev_n]
                joined[prev_n:n] = h0[prev_n:n]
                h = joined[:n]
            gates, sig, o_gate, i_gate, f_gate, g_gate, c, tmp = rows(n)
            np.matmul(h, w_hh_t, out=gates)
            gates += proj[t - start] if n == batch else proj[t - start, :n]
            np.tanh(gates, out=gates)  # tanh(z/2) for o, i, f (rows halved); tanh(z) for g
            sig *= 0.5
            sig += 0.5
            c *= f_gate
            np.multiply(i_gate, g_gate, out=tmp)
            c += tmp  # c' = f*c + i*g
            np.tanh(c, out=tmp)
            prev_y, prev_n = y[t], n
            np.multiply(o_gate, tmp, out=prev_y if n == batch else prev_y[:n])
        proj = None  # free this chunk before the next one is computed
    if counts is None:
        return y, prev_y.copy(), c_all
    return y, _final_hidden(y, h0, counts, reverse), c_all


def _final_hidden(y, h0, counts, reverse):
    """Each sequence's hidden state after its last walked step (h0 for a length of 0)."""
    lengths = np.count_nonzero(np.arange(y.shape[1])[None, :] < counts[:, None], axis=0)
    h_n = np.array(h0, copy=True)
    rows = np.flatnonzero(lengths)
    h_n[rows] = y[0, rows] if reverse else y[lengths[rows] - 1, rows]
    return h_n
