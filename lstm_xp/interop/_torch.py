"""PyTorch ``nn.LSTM``: lstm-xp's own layout, so converting is copying (and checking)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._backend import to_numpy
from .._naming import config_of
from ..errors import StateDictError
from ._common import Params, require


def from_torch_module(module_or_state_dict: Any) -> tuple[dict[str, Any], Params]:
    """Configuration and NumPy parameters of a ``torch.nn.LSTM`` or of its state dict."""
    source = module_or_state_dict
    config: dict[str, Any] = {}
    if hasattr(source, "state_dict") and hasattr(source, "hidden_size"):
        if not hasattr(source, "num_layers"):  # nn.LSTMCell: one step, no layers
            raise StateDictError(
                f"LSTM.from_torch takes a torch.nn.LSTM; got {type(source).__name__}. For a "
                "torch.nn.LSTMCell use lstm_xp.LSTMCell.from_torch.")
        config["batch_first"] = bool(source.batch_first)
        source = source.state_dict()
    params = {k: to_numpy(v) for k, v in source.items()}
    config.update(config_of(params))
    return config, params


def to_torch_module(config: Mapping[str, Any], params: Params) -> Any:
    """A ``torch.nn.LSTM`` (on the CPU) with ``config``'s sizes (as
    :meth:`lstm_xp.LSTM.config` gives them) and the NumPy ``params``."""
    torch = require("torch", "torch")
    dtype = getattr(torch, next(iter(params.values())).dtype.name)
    module = torch.nn.LSTM(config["input_size"], config["hidden_size"], config["num_layers"],
                           bias=config["bias"], batch_first=config["batch_first"],
                           bidirectional=config["bidirectional"],
                           proj_size=config.get("proj_size", 0), dtype=dtype)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    return module


def from_torch_cell(module_or_state_dict: Any) -> Params:
    """NumPy parameters of a ``torch.nn.LSTMCell`` or of its state dict (``weight_ih``
    (4H, I), ``weight_hh`` (4H, H), optional ``bias_ih``, ``bias_hh``)."""
    source = module_or_state_dict
    if hasattr(source, "state_dict"):
        if hasattr(source, "num_layers"):
            raise StateDictError(
                f"LSTMCell.from_torch takes a torch.nn.LSTMCell; got {type(source).__name__}. "
                "For a torch.nn.LSTM use lstm_xp.LSTM.from_torch.")
        source = source.state_dict()
    params = {k: to_numpy(v) for k, v in source.items()}
    if "weight_ih" not in params or "weight_hh" not in params:
        raise StateDictError("a torch.nn.LSTMCell state dict needs weight_ih and weight_hh; "
                             f"got keys {sorted(params)}.")
    return params


def to_torch_cell(params: Params) -> Any:
    """A ``torch.nn.LSTMCell`` (on the CPU) holding the NumPy ``params``."""
    torch = require("torch", "torch")
    w_ih = params["weight_ih"]
    module = torch.nn.LSTMCell(w_ih.shape[1], params["weight_hh"].shape[1],
                               bias="bias_ih" in params, dtype=getattr(torch, w_ih.dtype.name))
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    return module
