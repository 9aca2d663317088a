"""The parameter-naming scheme, in one place: ``torch.nn.LSTM``'s names and shapes.

Layer ``k``, direction ``d`` owns ``weight_ih_l{k}`` (4H, in), ``weight_hh_l{k}`` (4H, H) and,
with a bias, ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (4H,); the backward direction (``d = 1``)
adds ``_reverse``. Layer 0 reads ``input_size`` features, later layers ``D*H``. Gate order
along the 4H axis is i, f, g, o. The model, the initialisers, backward's gradient dicts and
every converter in :mod:`lstm_xp.interop` name parameters through these functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._typing import Array, LayerWeights
from .errors import StateDictError

KINDS: tuple[str, ...] = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
#: The variants' parameters: the projection (P, H), as PyTorch names it, and the peepholes
#: p_i, p_f, p_o (3H,).
EXTRA_KINDS: tuple[str, ...] = ("weight_hr", "peephole", "ln_gates_weight", "ln_gates_bias",
                                "ln_cell_weight", "ln_cell_bias")


def suffix(layer: int, direction: int = 0) -> str:
    """``"_l{layer}"``, with ``"_reverse"`` for the backward direction."""
    return f"_l{layer}" + ("_reverse" if direction else "")


def suffixes(num_layers: int, bidirectional: bool) -> list[str]:
    """Every layer's and direction's suffix in PyTorch's order (l0, l0_reverse, l1, ...)."""
    dirs = 2 if bidirectional else 1
    return [suffix(k, d) for k in range(num_layers) for d in range(dirs)]


def layer_inputs(input_size: int, hidden_size: int, num_layers: int,
                 bidirectional: bool, proj_size: int = 0) -> list[tuple[str, int]]:
    """``(suffix, input size)`` per layer and direction, in PyTorch's order: layer 0 reads
    ``input_size``, later layers ``D * (proj_size or hidden_size)``."""
    dirs = 2 if bidirectional else 1
    out = proj_size or hidden_size
    return [(suffix(k, d), input_size if k == 0 else dirs * out)
            for k in range(num_layers) for d in range(dirs)]


def param_shapes(input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
                 bias: bool, proj_size: int = 0, peephole: bool = False,
                 layer_norm: bool = False) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape."""
    gates = 4 * hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for s, size in layer_inputs(input_size, hidden_size, num_layers, bidirectional,
                                proj_size):
        shapes["weight_ih" + s] = (gates, size)
        shapes["weight_hh" + s] = (gates, proj_size or hidden_size)
        if bias:
            shapes["bias_ih" + s] = (gates,)
            shapes["bias_hh" + s] = (gates,)
        if proj_size:
            shapes["weight_hr" + s] = (proj_size, hidden_size)
        if peephole:
            shapes["peephole" + s] = (3 * hidden_size,)
        if layer_norm:
            shapes["ln_gates_weight" + s] = shapes["ln_gates_bias" + s] = (gates,)
            shapes["ln_cell_weight" + s] = shapes["ln_cell_bias" + s] = (hidden_size,)
    return shapes


def cell_param_shapes(input_size: int, hidden_size: int, bias: bool, proj_size: int = 0,
                      peephole: bool = False,
                      layer_norm: bool = False) -> dict[str, tuple[int, ...]]:
    """An :class:`~lstm_xp.LSTMCell`'s parameters: one layer's, the names without a
    suffix."""
    return {name.removesuffix("_l0"): shape for name, shape in
            param_shapes(input_size, hidden_size, 1, False, bias, proj_size, peephole,
                         layer_norm).items()}


class LayerList(list[list[LayerWeights]]):
    """:func:`group_layers`' list, with a place for what a kernel derives from these very
    arrays: ``memo``, a dict the kernel alone reads and writes (the numba kernel's calls
    prepared for a shape, which keep these arrays, never copies of them). A model makes a
    new list whenever its parameters are replaced, so nothing kept outlives them."""

    def __init__(self, layers: Sequence[list[LayerWeights]]) -> None:
        super().__init__(layers)
        self.memo: dict[Any, Any] = {}


def group_layers(params: Mapping[str, Array], num_layers: int,
                 bidirectional: bool) -> list[list[LayerWeights]]:
    """Weights per layer and direction, ``(weight_ih, weight_hh, bias_ih, bias_hh)``, the
    biases None where the model has none; for a model with variant parameters
    (:data:`EXTRA_KINDS`) two more, ``weight_hr`` and ``peephole`` (None where unused).
    A :class:`LayerList`."""
    dirs = 2 if bidirectional else 1
    kinds = KINDS + EXTRA_KINDS if any(k + "_l0" in params for k in EXTRA_KINDS) else KINDS
    return LayerList([[tuple(params.get(kind + suffix(k, d)) for kind in kinds)  # type: ignore[misc]
                       for d in range(dirs)] for k in range(num_layers)])


def named_grads(layer_grads: Sequence[Sequence[Mapping[str, Array]]],
                bias: bool) -> dict[str, Array]:
    """Per-layer gradient dicts (``weight_ih``, ``weight_hh``, ``bias``) under the parameters'
    names. Both PyTorch biases get the gradient of their sum."""
    grads: dict[str, Array] = {}
    for k, directions in enumerate(layer_grads):
        for d, g in enumerate(directions):
            s = suffix(k, d)
            grads["weight_ih" + s] = g["weight_ih"]
            grads["weight_hh" + s] = g["weight_hh"]
            if bias:
                grads["bias_ih" + s] = g["bias"]
                grads["bias_hh" + s] = g["bias"]
            for kind in EXTRA_KINDS:
                if kind in g:
                    grads[kind + s] = g[kind]
    return grads


def config_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """``input_size``, ``hidden_size``, ``num_layers``, ``bias``, ``bidirectional`` read from a
    PyTorch-named state dict's names and shapes."""
    layers = {int(m.group(1)) for k in params if (m := re.fullmatch(r"weight_ih_l(\d+)", k))}
    if "weight_ih_l0" not in params or "weight_hh_l0" not in params:
        raise StateDictError(
            "a torch.nn.LSTM state dict needs weight_ih_l0 and weight_hh_l0; got keys "
            f"{sorted(params)}.")
    if layers != set(range(len(layers))):
        raise StateDictError(f"layer indices must run 0..L-1; got {sorted(layers)}.")
    w_ih, w_hh = params["weight_ih_l0"], params["weight_hh_l0"]
    if len(getattr(w_ih, "shape", ())) != 2 or len(getattr(w_hh, "shape", ())) != 2:
        raise StateDictError(f"weight_ih_l0 and weight_hh_l0 must be matrices; got shapes "
                             f"{getattr(w_ih, 'shape', None)} and "
                             f"{getattr(w_hh, 'shape', None)}.")
    proj = params.get("weight_hr_l0")
    return {
        "input_size": int(w_ih.shape[1]),
        "hidden_size": int(w_hh.shape[0]) // 4,
        "num_layers": len(layers),
        "bias": "bias_ih_l0" in params,
        "bidirectional": "weight_ih_l0_reverse" in params,
        "proj_size": 0 if proj is None else int(proj.shape[0]),
        "peephole": "peephole_l0" in params,
        "layer_norm": "ln_gates_weight_l0" in params,
    }
