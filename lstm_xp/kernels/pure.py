"""The pure Array-API kernel: the reference every other kernel is tested against."""

from __future__ import annotations

from .._backprop import layer_scan_backward, layer_scan_train
from .._functional import layer_scan
from .base import LayerwiseKernel


def make() -> LayerwiseKernel:
    """The reference: :func:`lstm_xp._functional.layer_scan` and its training pair."""
    return LayerwiseKernel("pure", layer_scan, layer_scan_train, layer_scan_backward)
