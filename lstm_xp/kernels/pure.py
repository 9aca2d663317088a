"""The pure Array-API kernel: the reference every other kernel is tested against, and the one
kernel that runs every variant (projections, peepholes, clip, coupled gates)."""

from __future__ import annotations

import functools

from .._backprop import layer_scan_backward, layer_scan_train
from .._functional import layer_scan
from .._variants import VariantOptions, variant_scan, variant_scan_backward, variant_scan_train
from .base import LayerwiseKernel


def make(reverse: bool = False, variants: VariantOptions | None = None) -> LayerwiseKernel:
    """The reference: :func:`lstm_xp._functional.layer_scan` and its training pair, or the
    variant cell of :mod:`lstm_xp._variants` with ``variants`` bound."""
    if variants is None or not variants.names():
        return LayerwiseKernel("pure", layer_scan, layer_scan_train, layer_scan_backward,
                               reverse)
    return LayerwiseKernel("pure", functools.partial(variant_scan, options=variants),
                           functools.partial(variant_scan_train, options=variants),
                           functools.partial(variant_scan_backward, options=variants), reverse)
