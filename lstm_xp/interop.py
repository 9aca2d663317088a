"""Weights in and out of other frameworks' layouts.

lstm-xp keeps PyTorch's layout (``weight_ih_l{k}`` (4H, in), ``weight_hh_l{k}`` (4H, H), two
biases, gate order i, f, g, o). The converters here are pure layout changes on NumPy arrays;
every one of them has an inverse, and round trips are bit-exact.

- PyTorch ``nn.LSTM``: ``weight_ih_l{k}`` (4H, in), ``weight_hh_l{k}`` (4H, H), ``bias_ih``
  and ``bias_hh``; gates i, f, g, o.
- Keras 3 ``LSTM``: ``kernel`` (in, 4H), ``recurrent_kernel`` (H, 4H), one ``bias`` (4H);
  gates i, f, c, o.
- ONNX ``LSTM``: ``W`` [D, 4H, in], ``R`` [D, 4H, H], ``B`` [D, 8H] = [Wb, Rb]; gates i, o, f, c.
- Flax ``LSTMCell``: kernels ``ii/if/ig/io`` (in, H) without bias, ``hi/hf/hg/ho`` (H, H) with
  bias.
- the seed: ``Wf/Wi/WC/Wo`` (H, H+in) over ``vstack(h, x)``, column biases ``bf/bi/bC/bo``.

Keras' and the seed's single bias is imported as ``bias_ih`` with ``bias_hh = 0`` and exported
as ``bias_ih + bias_hh``: a sum, so a PyTorch model exported to Keras and back keeps its
function (and its sum of biases) but not the split between the two.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._backend import to_numpy
from .errors import BackendNotInstalledError, StateDictError

Params = dict[str, np.ndarray]

# Torch order is (i, f, g, o). For each other framework: the torch gate index of each of its
# blocks, in its own order.
_ONNX_FROM_TORCH = (0, 3, 1, 2)  # ONNX (i, o, f, c)
_FLAX_GATES = ("i", "f", "g", "o")  # Flax names blocks ii/if/ig/io and hi/hf/hg/ho


def _blocks(a: np.ndarray, hidden: int) -> list[np.ndarray]:
    return [a[k * hidden : (k + 1) * hidden] for k in range(4)]


def _reorder(a: np.ndarray, hidden: int, order: Sequence[int]) -> np.ndarray:
    """Stack the gate blocks of ``a`` (4H along axis 0) in ``order`` (indices of torch blocks)."""
    blocks = _blocks(a, hidden)
    return np.concatenate([blocks[k] for k in order], axis=0)


def _inverse(order: Sequence[int]) -> tuple[int, ...]:
    inv = [0] * len(order)
    for position, k in enumerate(order):
        inv[k] = position
    return tuple(inv)


def _suffixes(num_layers: int, bidirectional: bool) -> list[str]:
    return [f"_l{k}{rev}" for k in range(num_layers) for rev in
            (("", "_reverse") if bidirectional else ("",))]


def _require(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"this needs {module!r}, which is not installed ({exc}). Install it with "
            f"`pip install lstm-xp[{extra}]`.") from exc


# -- inferring a configuration from PyTorch names ----------------------------------------------
def torch_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """``input_size``, ``hidden_size``, ``num_layers``, ``bias``, ``bidirectional`` from a
    PyTorch-named state dict."""
    layers = {int(m.group(1)) for k in params if (m := re.fullmatch(r"weight_ih_l(\d+)", k))}
    if "weight_ih_l0" not in params or "weight_hh_l0" not in params:
        raise StateDictError(
            "a torch.nn.LSTM state dict needs weight_ih_l0 and weight_hh_l0; got keys "
            f"{sorted(params)}.")
    if layers != set(range(len(layers))):
        raise StateDictError(f"layer indices must run 0..L-1; got {sorted(layers)}.")
    proj = [k for k in params if k.startswith("weight_hr")]
    if proj:
        raise StateDictError(f"LSTMs with projections (proj_size > 0, {proj}) are not supported.")
    w_ih, w_hh = params["weight_ih_l0"], params["weight_hh_l0"]
    return {
        "input_size": int(w_ih.shape[1]),
        "hidden_size": int(w_hh.shape[1]),
        "num_layers": len(layers),
        "bias": "bias_ih_l0" in params,
        "bidirectional": "weight_ih_l0_reverse" in params,
    }


# -- PyTorch ---------------------------------------------------------------------------------
def from_torch_module(module_or_state_dict: Any) -> tuple[dict[str, Any], Params]:
    """Configuration and NumPy parameters of a ``torch.nn.LSTM`` or of its state dict."""
    source = module_or_state_dict
    config: dict[str, Any] = {}
    if hasattr(source, "state_dict") and hasattr(source, "hidden_size"):
        if getattr(source, "proj_size", 0):
            raise StateDictError("torch.nn.LSTM with proj_size > 0 is not supported.")
        config["batch_first"] = bool(source.batch_first)
        source = source.state_dict()
    params = {k: to_numpy(v) for k, v in source.items()}
    config.update(torch_config(params))
    return config, params


def to_torch_module(model: Any) -> Any:
    """A ``torch.nn.LSTM`` with ``model``'s configuration and weights (on the CPU)."""
    torch = _require("torch", "torch")
    params = {k: to_numpy(v) for k, v in model.state_dict().items()}
    dtype = getattr(torch, next(iter(params.values())).dtype.name)
    module = torch.nn.LSTM(model.input_size, model.hidden_size, model.num_layers,
                           bias=model.bias, batch_first=model.batch_first,
                           bidirectional=model.bidirectional, dtype=dtype)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    return module


# -- Keras 3 ---------------------------------------------------------------------------------
def to_keras_weights(params: Mapping[str, np.ndarray], num_layers: int,
                     bidirectional: bool) -> list[list[np.ndarray]]:
    """Per layer, what ``layer.set_weights`` takes: ``[kernel, recurrent_kernel, bias]`` for an
    ``LSTM`` layer, forward then backward (six arrays) for a ``Bidirectional(LSTM)``."""
    out = []
    for k in range(num_layers):
        weights: list[np.ndarray] = []
        for suffix in _suffixes(1, bidirectional):
            s = f"_l{k}{suffix[3:]}"
            gates = params[f"weight_hh{s}"].shape[0]
            bias = (params[f"bias_ih{s}"] + params[f"bias_hh{s}"] if f"bias_ih{s}" in params
                    else np.zeros(gates, params[f"weight_hh{s}"].dtype))
            weights += [params[f"weight_ih{s}"].T.copy(), params[f"weight_hh{s}"].T.copy(), bias]
        out.append(weights)
    return out


def from_keras_weights(layers: Sequence[Any]) -> tuple[dict[str, Any], Params]:
    """Configuration and parameters from per-layer Keras weights (or Keras layers: anything
    with ``get_weights()``), as :func:`to_keras_weights` lays them out."""
    weights = [list(layer.get_weights()) if hasattr(layer, "get_weights") else list(layer)
               for layer in layers]
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
        for d, suffix in enumerate(("", "_reverse") if bidirectional else ("",)):
            kernel, recurrent, bias = (to_numpy(a) for a in w[3 * d : 3 * d + 3])
            hidden = recurrent.shape[0]
            if recurrent.shape != (hidden, 4 * hidden) or kernel.shape[1] != 4 * hidden \
                    or bias.shape != (4 * hidden,):
                raise StateDictError(
                    f"Keras layer {k}: expected kernel (in, 4H), recurrent_kernel (H, 4H), bias "
                    f"(4H,); got {kernel.shape}, {recurrent.shape}, {bias.shape}.")
            s = f"_l{k}{suffix}"
            params[f"weight_ih{s}"] = kernel.T.copy()
            params[f"weight_hh{s}"] = recurrent.T.copy()
            params[f"bias_ih{s}"] = bias.copy()
            params[f"bias_hh{s}"] = np.zeros_like(bias)
    return torch_config(params), params


# -- Flax ------------------------------------------------------------------------------------
def to_flax_params(params: Mapping[str, np.ndarray], suffix: str) -> dict[str, dict[str, Any]]:
    """One layer/direction as ``flax.linen.LSTMCell`` parameters: kernels ``ii/if/ig/io`` (in, H)
    without bias, ``hi/hf/hg/ho`` (H, H) with bias (the sum of both PyTorch biases)."""
    hidden = params[f"weight_hh{suffix}"].shape[1]
    w_ih = _blocks(params[f"weight_ih{suffix}"], hidden)
    w_hh = _blocks(params[f"weight_hh{suffix}"], hidden)
    has_bias = f"bias_ih{suffix}" in params
    bias = (_blocks(params[f"bias_ih{suffix}"] + params[f"bias_hh{suffix}"], hidden) if has_bias
            else [np.zeros(hidden, w_hh[0].dtype)] * 4)
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
        s = f"_l{index // per_layer}" + ("_reverse" if index % per_layer else "")
        params[f"weight_ih{s}"] = np.concatenate(w_ih, axis=0)
        params[f"weight_hh{s}"] = np.concatenate(w_hh, axis=0)
        params[f"bias_ih{s}"] = np.zeros_like(np.concatenate(bias))
        params[f"bias_hh{s}"] = np.concatenate(bias)
    return params


# -- the seed --------------------------------------------------------------------------------
_SEED_NAMES = (("Wi", "bi"), ("Wf", "bf"), ("WC", "bC"), ("Wo", "bo"))  # torch order i, f, g, o


def to_seed_params(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A one-layer unidirectional model in the seed's layout: ``Wf, Wi, WC, Wo`` (H, H+I) over
    ``vstack(h, x)`` and column biases ``bf, bi, bC, bo`` (H, 1)."""
    hidden = params["weight_hh_l0"].shape[1]
    w_ih = _blocks(params["weight_ih_l0"], hidden)
    w_hh = _blocks(params["weight_hh_l0"], hidden)
    bias = (_blocks(params["bias_ih_l0"] + params["bias_hh_l0"], hidden) if "bias_ih_l0" in params
            else [np.zeros(hidden, w_hh[0].dtype)] * 4)
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


# -- ONNX ------------------------------------------------------------------------------------
def to_onnx_model(params: Mapping[str, np.ndarray], config: Mapping[str, Any],
                  opset: int = 14, initial_state: bool = False) -> Any:
    """An ONNX model built on the standard ``LSTM`` operator, one node per layer.

    Inputs: ``X`` as the library takes it (``(T, B, I)``, or ``(B, T, I)`` with
    ``batch_first``) and, with ``initial_state``, ``h0`` and ``c0`` (L*D, B, H); without, the
    state starts at zero. Outputs: ``Y`` with the library's ``outputs`` shape and layout,
    ``Y_h`` and ``Y_c`` (L*D, B, H).
    """
    onnx = _require("onnx", "onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    hidden, layers = config["hidden_size"], config["num_layers"]
    dirs = 2 if config["bidirectional"] else 1
    dtype = next(iter(params.values())).dtype
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    nodes, inits = [], []
    x = "X"
    if config["batch_first"]:
        nodes.append(helper.make_node("Transpose", ["X"], ["X_tbi"], perm=[1, 0, 2]))
        x = "X_tbi"
    # h0/c0 come in as (L*D, B, H); each layer's node takes its D slices.
    y_h, y_c = [], []
    for k in range(layers):
        suffixes = [f"_l{k}", f"_l{k}_reverse"][:dirs]
        w = np.stack([_reorder(params["weight_ih" + s], hidden, _ONNX_FROM_TORCH)
                      for s in suffixes])
        r = np.stack([_reorder(params["weight_hh" + s], hidden, _ONNX_FROM_TORCH)
                      for s in suffixes])
        inputs = [x, f"W{k}", f"R{k}"]
        inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(r, f"R{k}")]
        if config["bias"]:
            b = np.stack([np.concatenate([
                _reorder(params["bias_ih" + s], hidden, _ONNX_FROM_TORCH),
                _reorder(params["bias_hh" + s], hidden, _ONNX_FROM_TORCH)]) for s in suffixes])
            inits.append(numpy_helper.from_array(b, f"B{k}"))
            inputs.append(f"B{k}")
        else:
            inputs.append("")
        if initial_state:
            starts = numpy_helper.from_array(np.array([k * dirs], np.int64), f"start{k}")
            ends = numpy_helper.from_array(np.array([(k + 1) * dirs], np.int64), f"end{k}")
            inits += [starts, ends]
            nodes += [helper.make_node("Slice", ["h0", f"start{k}", f"end{k}"], [f"h0_{k}"]),
                      helper.make_node("Slice", ["c0", f"start{k}", f"end{k}"], [f"c0_{k}"])]
            inputs += ["", f"h0_{k}", f"c0_{k}"]
        nodes.append(helper.make_node(
            "LSTM", inputs, [f"Y{k}", f"Yh{k}", f"Yc{k}"], hidden_size=hidden,
            direction="bidirectional" if dirs == 2 else "forward"))
        y_h.append(f"Yh{k}")
        y_c.append(f"Yc{k}")
        # Y is [T, D, B, H]: move D next to H and merge, giving the library's (T, B, D*H).
        nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"Yt{k}"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Yt{k}", "merge_shape"], [f"X{k + 1}"]))
        x = f"X{k + 1}"
    inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), "merge_shape"))
    if config["batch_first"]:
        nodes.append(helper.make_node("Transpose", [x], ["Y"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["Y"]))
    nodes.append(helper.make_node("Concat", y_h, ["Y_h"], axis=0))
    nodes.append(helper.make_node("Concat", y_c, ["Y_c"], axis=0))
    seq = ["B", "T"] if config["batch_first"] else ["T", "B"]
    state_shape = [layers * dirs, "B", hidden]
    graph_inputs = [helper.make_tensor_value_info("X", elem, [*seq, config["input_size"]])]
    if initial_state:
        graph_inputs += [helper.make_tensor_value_info("h0", elem, state_shape),
                         helper.make_tensor_value_info("c0", elem, state_shape)]
    graph = helper.make_graph(
        nodes, "lstm_xp", graph_inputs,
        [helper.make_tensor_value_info("Y", elem, [*seq, dirs * hidden]),
         helper.make_tensor_value_info("Y_h", elem, state_shape),
         helper.make_tensor_value_info("Y_c", elem, state_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="lstm-xp")
    model.metadata_props.add(key="lstm_xp.batch_first", value=str(bool(config["batch_first"])))
    onnx.checker.check_model(model)
    return model


def from_onnx_model(model: Any) -> tuple[dict[str, Any], Params]:
    """Configuration and parameters of a model made of standard ``LSTM`` nodes (as
    :func:`to_onnx_model` writes them), read from its initialisers."""
    onnx = _require("onnx", "onnx")
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    lstm_nodes = [n for n in model.graph.node if n.op_type == "LSTM"]
    if not lstm_nodes:
        raise StateDictError("the ONNX graph has no LSTM node.")
    inverse = _inverse(_ONNX_FROM_TORCH)
    params: Params = {}
    bidirectional = False
    for k, node in enumerate(lstm_nodes):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction == "reverse":
            raise StateDictError("a lone reverse-direction LSTM node has no lstm-xp equivalent.")
        for unsupported in ("activations", "clip", "input_forget"):
            if attrs.get(unsupported):
                raise StateDictError(f"LSTM node {node.name!r} sets {unsupported}, which lstm-xp "
                                     "does not implement.")
        bidirectional = direction == "bidirectional"
        hidden = int(attrs["hidden_size"])
        try:
            w, r = inits[node.input[1]], inits[node.input[2]]
            b = inits[node.input[3]] if len(node.input) > 3 and node.input[3] else None
        except KeyError as exc:
            raise StateDictError(f"LSTM node {k}: weight {exc} is not an initialiser.") from exc
        for d in range(w.shape[0]):
            s = f"_l{k}" + ("_reverse" if d else "")
            params["weight_ih" + s] = _reorder(w[d], hidden, inverse)
            params["weight_hh" + s] = _reorder(r[d], hidden, inverse)
            if b is not None:
                params["bias_ih" + s] = _reorder(b[d, : 4 * hidden], hidden, inverse)
                params["bias_hh" + s] = _reorder(b[d, 4 * hidden :], hidden, inverse)
    config = torch_config(params)
    config["bidirectional"] = bidirectional
    meta = {p.key: p.value for p in model.metadata_props}
    config["batch_first"] = meta.get("lstm_xp.batch_first", "False") == "True"
    return config, params
