"""The seed's layout: ``Wf/Wi/WC/Wo`` (H, H+in) over ``vstack(h, x)``, column biases."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._backend import to_numpy
from ..errors import StateDictError
from ._common import Params, blocks, one_bias

_SEED_NAMES = (("Wi", "bi"), ("Wf", "bf"), ("WC", "bC"), ("Wo", "bo"))  # torch order i, f, g, o


def to_seed_params(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A one-layer unidirectional model in the seed's layout: ``Wf, Wi, WC, Wo`` (H, H+I) over
    ``vstack(h, x)`` and column biases ``bf, bi, bC, bo`` (H, 1)."""
    hidden = params["weight_hh_l0"].shape[1]
    w_ih = blocks(params["weight_ih_l0"], hidden)
    w_hh = blocks(params["weight_hh_l0"], hidden)
    bias = blocks(one_bias(params, "_l0"), hidden)
    out = {}
    for k, (w_name, b_name) in enumerate(_SEED_NAMES):
        out[w_name] = np.concatenate([w_hh[k], w_ih[k]], axis=1)
        out[b_name] = bias[k][:, None].copy()
    return out


def from_seed_params(source: Any) -> Params:
    """Parameters from the seed's ``Wf, Wi, WC, Wo, bf, bi, bC, bo`` (a mapping, or an object
    with those attributes, such as the seed's own ``LSTM``)."""
    get = source.__getitem__ if isinstance(source, Mapping) else lambda n: getattr(source, n)
    try:
        arrays = {n: to_numpy(get(n)) for pair in _SEED_NAMES for n in pair}
    except (KeyError, AttributeError) as exc:
        raise StateDictError(f"the seed's layout needs Wf, Wi, WC, Wo, bf, bi, bC, bo; missing "
                             f"{exc}.") from exc
    hidden = arrays["bf"].shape[0]
    for w_name, b_name in _SEED_NAMES:
        w, b = arrays[w_name], arrays[b_name]
        if w.ndim != 2 or w.shape[0] != hidden or w.shape[1] <= hidden or b.shape != (hidden, 1):
            raise StateDictError(
                f"seed weights: expected {w_name} (H, H+I) and {b_name} (H, 1) with H={hidden}; "
                f"got {w.shape} and {b.shape}.")
    return {
        "weight_ih_l0": np.concatenate([arrays[w][:, hidden:] for w, _ in _SEED_NAMES]),
        "weight_hh_l0": np.concatenate([arrays[w][:, :hidden] for w, _ in _SEED_NAMES]),
        "bias_ih_l0": np.concatenate([arrays[b][:, 0] for _, b in _SEED_NAMES]),
        "bias_hh_l0": np.zeros(4 * hidden, arrays["bf"].dtype),
    }
