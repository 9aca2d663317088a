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
        if getattr(source, "proj_size", 0):
            raise StateDictError("torch.nn.LSTM with proj_size > 0 is not supported.")
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
                           bidirectional=config["bidirectional"], dtype=dtype)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    return module
