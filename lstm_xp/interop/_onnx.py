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
# Peepholes: ours are (p_i, p_f, p_o), ONNX's P is (p_i, p_o, p_f).
_ONNX_PEEPHOLES = (0, 2, 1)
_DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")


def to_onnx_model(params: Mapping[str, np.ndarray], config: Mapping[str, Any],
                  opset: int = 14, initial_state: bool = False) -> Any:
    """An ONNX model built on the standard ``LSTM`` operator, one node per layer.

    Inputs: ``X`` as the library takes it (``(T, B, I)``, or ``(B, T, I)`` with
    ``batch_first``) and, with ``initial_state``, ``h0`` and ``c0`` (L*D, B, H); without, the
    state starts at zero. Outputs: ``Y`` with the library's ``outputs`` shape and layout,
    ``Y_h`` and ``Y_c`` (L*D, B, H). Peepholes become the operator's ``P`` input, ``clip``,
    ``input_forget`` and ``direction="reverse"`` its attributes (ONNX has no projection).
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
        if config.get("peephole"):
            p = np.stack([reorder(params["peephole" + s], hidden, _ONNX_PEEPHOLES)
                          for s in suffixes])
            inits.append(numpy_helper.from_array(p, f"P{k}"))
            inputs += ([] if initial_state else ["", "", ""]) + [f"P{k}"]
        attrs: dict[str, Any] = {"hidden_size": hidden, "direction": (
            "bidirectional" if dirs == 2 else config.get("direction", "forward"))}
        if config.get("clip") is not None:
            attrs["clip"] = float(config["clip"])
        if config.get("input_forget"):
            attrs["input_forget"] = 1
        nodes.append(helper.make_node("LSTM", inputs, [f"Y{k}", f"Yh{k}", f"Yc{k}"], **attrs))
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
    # The oldest IR version that carries the opset, not the newest the installed onnx knows:
    # an ONNX Runtime a release behind refuses files of an IR version it does not know.
    model = helper.make_model_gen_version(graph, producer_name="lstm-xp",
                                          opset_imports=[helper.make_opsetid("", opset)])
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
    settings = []
    for k, node in enumerate(lstm_nodes):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        _refuse_unimplemented(node, attrs, set(inits))
        settings.append(_node_settings(node, attrs))
        hidden = settings[-1]["hidden_size"]
        try:
            w, r = inits[node.input[1]], inits[node.input[2]]
            b = inits[node.input[3]] if len(node.input) > 3 and node.input[3] else None
            p = inits[node.input[7]] if len(node.input) > 7 and node.input[7] else None
        except KeyError as exc:
            raise StateDictError(f"LSTM node {k}: weight {exc} is not an initialiser.") from exc
        for d in range(w.shape[0]):
            s = suffix(k, d)
            params["weight_ih" + s] = reorder(w[d], hidden, to_torch)
            params["weight_hh" + s] = reorder(r[d], hidden, to_torch)
            if b is not None:
                params["bias_ih" + s] = reorder(b[d, : 4 * hidden], hidden, to_torch)
                params["bias_hh" + s] = reorder(b[d, 4 * hidden :], hidden, to_torch)
            if p is not None:
                params["peephole" + s] = reorder(p[d], hidden, _ONNX_PEEPHOLES)
    first = settings[0]
    for k, other in enumerate(settings[1:], 1):
        differ = sorted(key for key in first if key != "hidden_size" and other[key] != first[key])
        if differ:
            raise StateDictError(f"LSTM nodes 0 and {k} differ in {differ}: an lstm-xp model "
                                 "has one setting for all its layers.")
    config = config_of(params)
    meta = {p.key: p.value for p in model.metadata_props}
    config.update(
        bidirectional=first["direction"] == "bidirectional",
        direction="reverse" if first["direction"] == "reverse" else "forward",
        clip=first["clip"], input_forget=first["input_forget"],
        batch_first=first["layout"] == 1 or meta.get("lstm_xp.batch_first", "False") == "True")
    return config, params


def _node_settings(node: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """An LSTM node's attributes as lstm-xp options, refusing what it does not implement."""
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    if "hidden_size" not in attrs:
        raise StateDictError(f"LSTM node {node.name!r} has no hidden_size attribute.")
    direction = text(attrs.get("direction", b"forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        raise StateDictError(f"LSTM node {node.name!r} has direction {direction!r}.")
    dirs = 2 if direction == "bidirectional" else 1
    activations = [text(a).lower() for a in attrs.get("activations", [])]
    if activations and activations != list(_DEFAULT_ACTIVATIONS) * dirs:
        raise StateDictError(f"LSTM node {node.name!r} sets activations {activations}; lstm-xp "
                             f"implements the default ones only ({list(_DEFAULT_ACTIVATIONS)} "
                             "per direction).")
    for unsupported in ("activation_alpha", "activation_beta"):
        if attrs.get(unsupported):
            raise StateDictError(f"LSTM node {node.name!r} sets {unsupported}, which lstm-xp "
                                 "does not implement.")
    clip = attrs.get("clip")
    return {"hidden_size": int(attrs["hidden_size"]), "direction": direction,
            "clip": None if clip is None else float(clip),
            "input_forget": bool(attrs.get("input_forget", 0)),
            "layout": int(attrs.get("layout", 0))}


# What to_onnx_model writes around the LSTM nodes: they move axes, never values.
_LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Identity", "Concat", "Slice"})
# Optional inputs of the LSTM operator, by position, that lstm-xp imports only in one form.
_OPTIONAL_INPUTS = {4: "sequence_lens", 5: "initial_h", 6: "initial_c", 7: "P (peepholes)"}


def _refuse_unimplemented(node: Any, attrs: dict[str, Any], constants: set[str]) -> None:
    """Refuse an LSTM node whose outputs an lstm-xp model would not reproduce: a silently
    different model is worse than an error."""
    for index, what in _OPTIONAL_INPUTS.items():
        if len(node.input) <= index or not node.input[index]:
            continue
        name = node.input[index]
        if index in (4, 5, 6) and name not in constants:
            continue  # fed at run time: the imported model takes lengths= and state=
        if index == 7 and name in constants:
            continue  # peepholes stored in the file: imported as the model's peephole
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
