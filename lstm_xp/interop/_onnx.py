"""ONNX's standard ``LSTM`` operator: ``W`` [D, 4H, in], ``R`` [D, 4H, H], ``B`` [D, 8H] =
[Wb, Rb]; gates i, o, f, c."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._naming import config_of, suffix
from ..errors import ModelFileError, StateDictError
from ._common import Params, inverse, reorder, require

# Torch order is (i, f, g, o): the torch gate index of each ONNX block (i, o, f, c).
_ONNX_FROM_TORCH = (0, 3, 1, 2)


def to_onnx_model(params: Mapping[str, np.ndarray], config: Mapping[str, Any],
                  opset: int = 14, initial_state: bool = False) -> Any:
    """An ONNX model built on the standard ``LSTM`` operator, one node per layer.

    Inputs: ``X`` as the library takes it (``(T, B, I)``, or ``(B, T, I)`` with
    ``batch_first``) and, with ``initial_state``, ``h0`` and ``c0`` (L*D, B, H); without, the
    state starts at zero. Outputs: ``Y`` with the library's ``outputs`` shape and layout,
    ``Y_h`` and ``Y_c`` (L*D, B, H).
    """
    onnx = require("onnx", "onnx")
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
        suffixes = [suffix(k, d) for d in range(dirs)]
        w = np.stack([reorder(params["weight_ih" + s], hidden, _ONNX_FROM_TORCH)
                      for s in suffixes])
        r = np.stack([reorder(params["weight_hh" + s], hidden, _ONNX_FROM_TORCH)
                      for s in suffixes])
        inputs = [x, f"W{k}", f"R{k}"]
        inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(r, f"R{k}")]
        if config["bias"]:
            b = np.stack([np.concatenate([
                reorder(params["bias_ih" + s], hidden, _ONNX_FROM_TORCH),
                reorder(params["bias_hh" + s], hidden, _ONNX_FROM_TORCH)]) for s in suffixes])
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
    onnx = require("onnx", "onnx")
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    lstm_nodes = [n for n in model.graph.node if n.op_type == "LSTM"]
    if not lstm_nodes:
        raise StateDictError("the ONNX graph has no LSTM node.")
    others = sorted({n.op_type for n in model.graph.node} - _LAYOUT_OPS - {"LSTM"})
    if others:
        raise StateDictError(
            f"the ONNX graph computes more than a stack of LSTM layers: it has {others} "
            f"nodes besides LSTM and the layout nodes lstm-xp writes ({sorted(_LAYOUT_OPS)}). "
            "from_onnx imports LSTM stacks only; import the LSTM part of the graph, or run "
            "the whole graph with onnxruntime.")
    to_torch = inverse(_ONNX_FROM_TORCH)
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
        _refuse_unimplemented(node, attrs, set(inits))
        bidirectional = direction == "bidirectional"
        if "hidden_size" not in attrs:
            raise StateDictError(f"LSTM node {node.name!r} has no hidden_size attribute.")
        hidden = int(attrs["hidden_size"])
        try:
            w, r = inits[node.input[1]], inits[node.input[2]]
            b = inits[node.input[3]] if len(node.input) > 3 and node.input[3] else None
        except KeyError as exc:
            raise StateDictError(f"LSTM node {k}: weight {exc} is not an initialiser.") from exc
        for d in range(w.shape[0]):
            s = suffix(k, d)
            params["weight_ih" + s] = reorder(w[d], hidden, to_torch)
            params["weight_hh" + s] = reorder(r[d], hidden, to_torch)
            if b is not None:
                params["bias_ih" + s] = reorder(b[d, : 4 * hidden], hidden, to_torch)
                params["bias_hh" + s] = reorder(b[d, 4 * hidden :], hidden, to_torch)
    config = config_of(params)
    config["bidirectional"] = bidirectional
    meta = {p.key: p.value for p in model.metadata_props}
    config["batch_first"] = meta.get("lstm_xp.batch_first", "False") == "True"
    return config, params


# What to_onnx_model writes around the LSTM nodes: they move axes, never values.
_LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Identity", "Concat", "Slice"})
# Optional inputs of the LSTM operator, by position, that lstm-xp cannot import yet.
_OPTIONAL_INPUTS = {4: "sequence_lens", 5: "initial_h", 6: "initial_c", 7: "P (peepholes)"}


def _refuse_unimplemented(node: Any, attrs: dict[str, Any], constants: set[str]) -> None:
    """Refuse an LSTM node whose outputs an lstm-xp model would not reproduce: a silently
    different model is worse than an error."""
    if int(attrs.get("layout", 0)) != 0:
        raise StateDictError(f"LSTM node {node.name!r} has layout={attrs['layout']} "
                             "(batch-first tensors), which from_onnx does not import yet.")
    for index, what in _OPTIONAL_INPUTS.items():
        if len(node.input) <= index or not node.input[index]:
            continue
        name = node.input[index]
        if index in (5, 6) and name not in constants:
            continue  # a state fed at run time: the imported model takes it as state=
        where = "a constant in the file" if name in constants else "an input of the graph"
        raise StateDictError(f"LSTM node {node.name!r} has input {what} ({name!r}, {where}), "
                             "which from_onnx does not import yet: the imported model would "
                             "compute something else.")


def read_onnx(path: Any) -> tuple[dict[str, Any], Params]:
    """Configuration and parameters of the ONNX file at ``path`` (see
    :func:`from_onnx_model`).

    Raises
    ------
    lstm_xp.ModelFileError
        The file is not a readable ONNX model.
    OSError
        The file cannot be read.
    """
    onnx = require("onnx", "onnx")
    try:
        proto = onnx.load(str(path))
    except OSError:
        raise
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelFileError(f"{path}: not a readable ONNX file ({exc}).") from exc
    return from_onnx_model(proto)
