"""Exceptions raised by lstm-xp.

Every exception derives from :class:`LSTMXPError` and from the built-in class a caller would
expect (``ValueError`` for bad values, ``TypeError`` for bad types, ``ImportError`` for a missing
library, ``RuntimeError`` for a device that does not answer), so ``except ValueError`` keeps
working. Messages say what was expected, what was given, and what to do.
"""

from __future__ import annotations


class LSTMXPError(Exception):
    """Base class of every error raised by lstm-xp."""


class UnknownBackendError(LSTMXPError, ValueError):
    """``backend=`` names no backend lstm-xp knows."""


class BackendNotInstalledError(LSTMXPError, ImportError):
    """The library behind a backend is not installed; the message names the extra to install."""


class DeviceUnavailableError(LSTMXPError, RuntimeError):
    """A device was asked for (a CUDA GPU, say) that is absent or does not run code."""


class InvalidDeviceError(LSTMXPError, ValueError):
    """``device=`` is not a device of the chosen backend."""


class ShapeError(LSTMXPError, ValueError):
    """An input or state array has the wrong rank or size."""


class DTypeError(LSTMXPError, TypeError):
    """An array has a dtype the model cannot take (integer, boolean, complex), or the backend or
    device lacks the requested dtype."""


class BackendMismatchError(LSTMXPError, TypeError):
    """An array belongs to another array library, or lives on another device, than the model."""


class ConfigError(LSTMXPError, ValueError):
    """A constructor argument is out of range: a non-positive size, an unknown initialiser."""


class LengthsError(LSTMXPError, ValueError):
    """Sequence lengths out of range, a mask that is not right-padded, or both given."""


class StateDictError(LSTMXPError, ValueError):
    """A state dict has missing, unexpected, mis-shaped or mis-typed entries."""


class TapeError(LSTMXPError, RuntimeError):
    """A training tape was handed to ``backward`` a second time (a tape serves one backward
    pass, like a PyTorch graph without ``retain_graph``), or to another model than the one
    that recorded it, or is no tape at all."""


class ModelFileError(LSTMXPError, ValueError):
    """A model file that cannot be trusted: truncated, corrupted, not an lstm-xp file, written
    by a newer format version, or holding pickled objects."""


class LabelError(LSTMXPError, ValueError):
    """Class labels outside ``0..C-1`` (a loss would otherwise read a wrong or no class)."""


class AllocationError(LSTMXPError, MemoryError):
    """Parameters or a pass need more memory than can be allocated; the message gives the
    sizes that asked for it."""
