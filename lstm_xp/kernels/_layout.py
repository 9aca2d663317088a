"""Gate layout, and the sorted batch order for lengths, shared by the fused NumPy kernels.

The fused kernels reorder the four gate blocks from PyTorch's (i, f, g, o) to (o, i, f, g) and
halve the rows of the three sigmoid gates. Then one ``tanh`` over all four blocks gives
``tanh(z/2)`` for the sigmoid gates (``sigmoid(z) = 0.5 * tanh(z/2) + 0.5``) and ``tanh(z)``
for the candidate, and the sigmoid gates (o, i, f) sit side by side. Halving is exact in binary
floating point, so the pre-activations equal the reference's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Position, in PyTorch's order (i, f, g, o), of each block of the fused order (o, i, f, g).
FUSED_ORDER = (3, 0, 1, 2)


def fused_permutation(hidden: int) -> np.ndarray:
    """Row indices that take a (4H, ...) PyTorch-ordered matrix to the fused order."""
    return np.concatenate([np.arange(k * hidden, (k + 1) * hidden) for k in FUSED_ORDER])


def fused_scale(hidden: int, dtype: Any) -> np.ndarray:
    """Per-row factor in the fused order: 0.5 for o, i, f; 1 for g."""
    scale = np.full(4 * hidden, 0.5, dtype=dtype)
    scale[3 * hidden :] = 1.0
    return scale


def sorted_prefix(
    lengths: Any, steps: int
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``(order, counts, sorted_lengths)``: the batch order that sorts sequences longest first
    (stable), how many of them still run at each of the ``steps`` steps (T,), and their
    lengths in that order. The running sequences are then a prefix of the sorted batch.
    ``order`` is None when the batch is already in that order (B = 1, equal lengths): the
    kernels then take slices instead of gathers."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    counts = np.count_nonzero(sorted_lengths[None, :] > np.arange(steps)[:, None], axis=1)
    if np.array_equal(order, np.arange(len(order))):
        return None, counts, sorted_lengths
    return order, counts, sorted_lengths


def stacked_width(features: int, hidden: int, has_bias: bool) -> int:
    """``K``, the columns of :func:`stacked_weights`: ``I + H`` (+ 1 with a bias) rounded up
    to a multiple of 8."""
    return -(-(features + hidden + has_bias) // 8) * 8


def stacked_weights(
    weight_ih: np.ndarray, weight_hh: np.ndarray, bias: np.ndarray | None, dtype: Any
) -> np.ndarray:
    """``[W_ih W_hh b 0...]`` (4H, K) in the fused gate order with the sigmoid rows halved,
    ``K = I + H (+ 1 with a bias)`` rounded up to a multiple of 8 with zero columns (the
    product is as fast, and the bias needs no separate addition)."""
    hidden, features = weight_hh.shape[1], weight_ih.shape[1]
    out = np.zeros((4 * hidden, stacked_width(features, hidden, bias is not None)),
                   dtype=dtype)
    scale = fused_scale(hidden, dtype)
    for k, source in enumerate(FUSED_ORDER):
        rows, src = slice(k * hidden, (k + 1) * hidden), slice(source * hidden,
                                                               (source + 1) * hidden)
        np.multiply(weight_ih[src], scale[k * hidden], out=out[rows, :features])
        np.multiply(weight_hh[src], scale[k * hidden], out=out[rows, features:features + hidden])
        if bias is not None:
            np.multiply(bias[src], scale[k * hidden], out=out[rows, features + hidden])
    return out


def fused_step(
    gates: np.ndarray, sig: np.ndarray, i: np.ndarray, f: np.ndarray, g: np.ndarray,
    c_prev: np.ndarray, c: np.ndarray, ig: np.ndarray, tanh_c: np.ndarray,
) -> None:
    """One step's nonlinearities and cell update on views of a fused (o, i, f, g) gate block
    of pre-activations (sigmoid rows halved), in place: ``gates`` become activations (``sig``
    is their (o, i, f) rows), ``c <- f*c_prev + i*g`` (``c`` may be ``c_prev``), ``ig`` is
    scratch and ``tanh_c <- tanh(c)`` (may be ``ig``)."""
    np.tanh(gates, out=gates)  # tanh(z/2) for o, i, f (rows halved); tanh(z) for g
    sig *= 0.5
    sig += 0.5
    np.multiply(f, c_prev, out=c)
    np.multiply(i, g, out=ig)
    c += ig
    np.tanh(c, out=tanh_c)
