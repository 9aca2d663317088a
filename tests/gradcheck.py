"""Central finite differences, for checking backpropagation (float64)."""

from __future__ import annotations

import numpy as np


def central_difference(array, f, eps=1e-6):
    """d f / d array by central differences, nudging ``array`` in place (and restoring it)."""
    grad = np.zeros_like(array)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + eps
        up = f()
        array[idx] = old - eps
        down = f()
        array[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


def rel_err(a, b):
    """Largest absolute difference relative to the largest entry of ``b`` (at least 1e-3)."""
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-3)
