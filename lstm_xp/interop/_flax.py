"""Flax ``LSTMCell``: kernels ``ii/if/ig/io`` (in, H) without bias, ``hi/hf/hg/ho`` (H, H)
with bias."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._backend import to_numpy
from .._naming import suffix
from ..errors import StateDictError
from ._common import Params, blocks, one_bias

_FLAX_GATES = ("i", "f", "g", "o")  # Flax names blocks ii/if/ig/io and hi/hf/hg/ho


def to_flax_params(params: Mapping[str, np.ndarray], name: str) -> dict[str, dict[str, Any]]:
    """One layer/direction as ``flax.linen.LSTMCell`` parameters: kernels ``ii/if/ig/io`` (in, H)
    without bias, ``hi/hf/hg/ho`` (H, H) with bias (the sum of both PyTorch biases)."""
    hidden = params[f"weight_hh{name}"].shape[1]
    w_ih = blocks(params[f"weight_ih{name}"], hidden)
    w_hh = blocks(params[f"weight_hh{name}"], hidden)
    bias = blocks(one_bias(params, name), hidden)
    out: dict[str, dict[str, Any]] = {}
    for k, gate in enumerate(_FLAX_GATES):
        out[f"i{gate}"] = {"kernel": w_ih[k].T.copy()}
        out[f"h{gate}"] = {"kernel": w_hh[k].T.copy(), "bias": bias[k].copy()}
    return out


def from_flax_params(cells: Sequence[Mapping[str, Any]], bidirectional: bool) -> Params:
    """Parameters from Flax ``LSTMCell`` parameter dicts, one per layer and direction in
    PyTorch's order (layer 0 forward, layer 0 backward, layer 1 forward, ...)."""
    per_layer = 2 if bidirectional else 1
    if not cells or len(cells) % per_layer:
        raise StateDictError(f"expected a multiple of {per_layer} Flax cells; got {len(cells)}.")
    params: Params = {}
    for index, cell in enumerate(cells):
        cell = cell.get("params", cell)
        try:
            w_ih = [to_numpy(cell[f"i{g}"]["kernel"]).T for g in _FLAX_GATES]
            w_hh = [to_numpy(cell[f"h{g}"]["kernel"]).T for g in _FLAX_GATES]
            bias = [to_numpy(cell[f"h{g}"]["bias"]) for g in _FLAX_GATES]
        except (KeyError, TypeError) as exc:
            raise StateDictError(
                f"Flax cell {index} lacks {exc}; expected ii/if/ig/io {{'kernel'}} and "
                "hi/hf/hg/ho {'kernel', 'bias'}.") from exc
        s = suffix(index // per_layer, index % per_layer)
        params[f"weight_ih{s}"] = np.concatenate(w_ih, axis=0)
        params[f"weight_hh{s}"] = np.concatenate(w_hh, axis=0)
        params[f"bias_ih{s}"] = np.zeros_like(np.concatenate(bias))
        params[f"bias_hh{s}"] = np.concatenate(bias)
    return params
