"""Keras 3 ``LSTM``: ``kernel`` (in, 4H), ``recurrent_kernel`` (H, 4H), one ``bias`` (4H);
gates i, f, c, o (the same order as PyTorch's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._backend import to_numpy
from .._naming import config_of, suffix
from ..errors import StateDictError
from ._common import Params, one_bias


def to_keras_weights(params: Mapping[str, np.ndarray], num_layers: int,
                     bidirectional: bool) -> list[list[np.ndarray]]:
    """Per layer, what ``layer.set_weights`` takes: ``[kernel, recurrent_kernel, bias]`` for an
    ``LSTM`` layer, forward then backward (six arrays) for a ``Bidirectional(LSTM)``."""
    out = []
    for k in range(num_layers):
        weights: list[np.ndarray] = []
        for d in range(2 if bidirectional else 1):
            s = suffix(k, d)
            weights += [params[f"weight_ih{s}"].T.copy(), params[f"weight_hh{s}"].T.copy(),
                        one_bias(params, s)]
        out.append(weights)
    return out


def from_keras_weights(layers: Sequence[Any]) -> tuple[dict[str, Any], Params]:
    """Configuration and parameters from per-layer Keras weights (or Keras layers: anything
    with ``get_weights()``), as :func:`to_keras_weights` lays them out."""
    if hasattr(layers, "get_weights"):  # one layer on its own
        layers = [layers]
    for layer in layers if isinstance(layers, (list, tuple)) else []:
        _refuse_other_layers(layer)
    try:
        weights = [list(layer.get_weights()) if hasattr(layer, "get_weights") else list(layer)
                   for layer in layers]
    except TypeError as exc:
        raise StateDictError(f"from_keras takes Keras LSTM layers or their get_weights() "
                             f"lists, one per stacked layer; got {type(layers).__name__}.") from exc
    if not weights:
        raise StateDictError("from_keras needs at least one layer's weights.")
    sizes = {len(w) for w in weights}
    if not sizes <= {3, 6} or len(sizes) != 1:
        raise StateDictError(
            "each Keras layer must give [kernel, recurrent_kernel, bias] (LSTM) or six arrays "
            f"(Bidirectional(LSTM)); got {[len(w) for w in weights]} arrays per layer.")
    bidirectional = sizes == {6}
    params: Params = {}
    for k, w in enumerate(weights):
        for d in range(2 if bidirectional else 1):
            kernel, recurrent, bias = (to_numpy(a) for a in w[3 * d : 3 * d + 3])
            hidden = recurrent.shape[0] if recurrent.ndim == 2 else 0
            if kernel.ndim != 2 or recurrent.shape != (hidden, 4 * hidden) \
                    or kernel.shape[1] != 4 * hidden or bias.shape != (4 * hidden,):
                raise StateDictError(
                    f"Keras layer {k}: expected kernel (in, 4H), recurrent_kernel (H, 4H), bias "
                    f"(4H,); got {kernel.shape}, {recurrent.shape}, {bias.shape}.")
            s = suffix(k, d)
            params[f"weight_ih{s}"] = kernel.T.copy()
            params[f"weight_hh{s}"] = recurrent.T.copy()
            params[f"bias_ih{s}"] = bias.copy()
            params[f"bias_hh{s}"] = np.zeros_like(bias)
    return config_of(params), params


def _refuse_other_layers(layer: Any) -> None:
    """A Keras layer whose weights alone would make another model: reversed time
    (``go_backwards``, whose outputs Keras returns in reversed order), other activations,
    or a Bidirectional wrapper that does not concatenate."""
    if not hasattr(layer, "get_weights"):
        return  # plain weight lists carry no such settings
    mode = getattr(layer, "merge_mode", "concat")
    if mode != "concat":
        raise StateDictError(f"Keras Bidirectional layer {layer.name!r} merges with "
                             f"{mode!r}; lstm-xp concatenates the two directions.")
    for cell in (getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None),
                 layer):
        if cell is None or not hasattr(cell, "recurrent_activation"):
            continue
        if getattr(cell, "go_backwards", False) and cell is layer:
            raise StateDictError(f"Keras layer {layer.name!r} has go_backwards=True (outputs in "
                                 "reversed order); build LSTM(..., direction='reverse') and "
                                 "flip its outputs instead.")
        names = (getattr(cell.activation, "__name__", str(cell.activation)),
                 getattr(cell.recurrent_activation, "__name__", str(cell.recurrent_activation)))
        if names != ("tanh", "sigmoid"):
            raise StateDictError(f"Keras layer {cell.name!r} uses activation={names[0]!r}, "
                                 f"recurrent_activation={names[1]!r}; lstm-xp implements "
                                 "tanh and sigmoid only.")

