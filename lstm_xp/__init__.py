"""lstm-xp: an LSTM written once against the Python Array API standard.

The same gate code runs on NumPy (the default), CuPy (NVIDIA GPUs), PyTorch, JAX and
array-api-strict; the backend is picked when the model is built::

    from lstm_xp import LSTM
    model = LSTM(3, 5, backend="auto")   # CuPy if a GPU answers, else NumPy (and says so)

Importing this package imports NumPy and array-api-compat only.
"""

from ._backend import BACKENDS, BackendStatus, available_backends
from ._threads import get_num_threads, set_num_threads
from .cell import LSTMCell
from .errors import (
    AllocationError,
    BackendMismatchError,
    BackendNotInstalledError,
    ConfigError,
    DeviceUnavailableError,
    DTypeError,
    InvalidDeviceError,
    LabelError,
    LengthsError,
    LSTMXPError,
    ModelFileError,
    ShapeError,
    StateDictError,
    TapeError,
    UnknownBackendError,
)
from .lstm import LSTM
from .train import SGD, Adam, Linear, clip_grad_norm, mse_loss, softmax_cross_entropy

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "LSTM",
    "SGD",
    "Adam",
    "AllocationError",
    "BackendMismatchError",
    "BackendNotInstalledError",
    "BackendStatus",
    "ConfigError",
    "DTypeError",
    "DeviceUnavailableError",
    "InvalidDeviceError",
    "LSTMCell",
    "LSTMXPError",
    "LabelError",
    "LengthsError",
    "Linear",
    "ModelFileError",
    "ShapeError",
    "StateDictError",
    "TapeError",
    "UnknownBackendError",
    "__version__",
    "available_backends",
    "clip_grad_norm",
    "get_num_threads",
    "mse_loss",
    "set_num_threads",
    "softmax_cross_entropy",
]
