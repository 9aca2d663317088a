"""Helpers every layout converter uses: gate blocks, reordering, optional imports."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import BackendNotInstalledError

Params = dict[str, np.ndarray]


def blocks(a: np.ndarray, hidden: int) -> list[np.ndarray]:
    return [a[k * hidden : (k + 1) * hidden] for k in range(4)]


def reorder(a: np.ndarray, hidden: int, order: Sequence[int]) -> np.ndarray:
    """Stack the gate blocks of ``a`` (4H along axis 0) in ``order`` (indices of torch blocks)."""
    parts = blocks(a, hidden)
    return np.concatenate([parts[k] for k in order], axis=0)


def inverse(order: Sequence[int]) -> tuple[int, ...]:
    inv = [0] * len(order)
    for position, k in enumerate(order):
        inv[k] = position
    return tuple(inv)


def require(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"this needs {module!r}, which is not installed ({exc}). Install it with "
            f"`pip install lstm-xp[{extra}]`.") from exc


def one_bias(params: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """The single bias (4H,) of layer/direction ``name`` (a suffix such as ``"_l0"``) for
    layouts with one: ``bias_ih + bias_hh``, or zeros for a model without biases."""
    if f"bias_ih{name}" in params:
        return params[f"bias_ih{name}"] + params[f"bias_hh{name}"]
    w_hh = params[f"weight_hh{name}"]
    return np.zeros(w_hh.shape[0], w_hh.dtype)
