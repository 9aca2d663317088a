"""The :class:`Adapter` base class: what lstm-xp needs to know about an array library, with
the standard's answer as the default. Each library's adapter overrides what differs."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from .._typing import Array, Device, Namespace
from ..errors import BackendNotInstalledError, InvalidDeviceError


class BackendStatus(NamedTuple):
    """Whether a backend can be used on this machine, and why (or why not)."""

    usable: bool
    reason: str


class Adapter:
    """What lstm-xp needs to know about one array library. Subclasses override the parts
    where their library differs from the standard."""

    #: The name used for ``backend=`` and in messages.
    name = ""
    #: The module to import, the package to ``pip install`` and the lstm-xp extra with it.
    module = ""
    pip_name = ""
    extra = ""
    #: Whether the library computes on an accelerator (the benchmark then times its own GEMM
    #: floor there too).
    accelerator = False
    #: Whether every array of the library lives on the one device it has (no device to check).
    single_device = False

    # -- the library and its namespace --------------------------------------------------------
    def library(self) -> Any:
        """Import the library, or say which extra brings it."""
        try:
            return importlib.import_module(self.module)
        except ImportError as exc:
            raise BackendNotInstalledError(
                f"backend={self.name!r} needs the {self.pip_name!r} package, which is not "
                f"installed ({exc}). Install it with `pip install lstm-xp[{self.extra}]`, or "
                "use backend='numpy' (always available) or backend='auto'."
            ) from exc

    #: array-api-compat's wrapper namespace for the library, where it needs one.
    compat = ""
    #: array-api-compat's ``is_*_namespace`` and ``is_*_array`` checks for the library.
    is_namespace: Callable[[Any], bool] = staticmethod(lambda xp: False)
    is_array: Callable[[Any], bool] = staticmethod(lambda x: False)

    def namespace(self) -> Namespace:
        """The Array API namespace to compute with."""
        lib = self.library()
        if self.compat:
            return importlib.import_module(self.compat)
        return array_api_compat.array_namespace(lib.empty(0))

    def owns_namespace(self, xp: Namespace) -> bool:
        return bool(self.is_namespace(xp))

    def owns_array(self, x: Any) -> bool:
        """True for an array of this library (never imports the library to find out)."""
        return self.loaded() and bool(self.is_array(x))

    def loaded(self) -> bool:
        """True when the library is already imported (checking an array never imports one)."""
        return self.module.split(".")[0] in sys.modules

    # -- devices -----------------------------------------------------------------------------
    def canonical_device(self, xp: Namespace, device: Any) -> Device:
        """Validate ``device`` and return it as arrays made there report it."""
        info = xp.__array_namespace_info__() if hasattr(xp, "__array_namespace_info__") else None
        if device is None:
            return (info.default_device() if info is not None
                    else array_api_compat.device(xp.empty(0)))
        if info is not None:
            devices = list(info.devices())
            # Devices are objects; also accept the name they print with, e.g. "device1".
            by_name = {str(d).split("'")[1] if "'" in str(d) else str(d): d for d in devices}
            if isinstance(device, str) and device in by_name:
                return by_name[device]
            if device not in devices:
                raise InvalidDeviceError(
                    f"backend {self.name!r} has devices {devices}; got device={device!r}.")
        return device

    def precheck(self, device: Any) -> None:
        """Refuse a malformed ``device=`` before the library is imported, and a device that
        does not answer before the namespace is built (default: nothing to check)."""

    def context(self, device: Device) -> contextlib.AbstractContextManager[Any]:
        """Context in which arrays are created and kernels launched on ``device``."""
        return contextlib.nullcontext()

    def synchronize(self, device: Device, arrays: Sequence[Array]) -> None:
        """Wait until work producing ``arrays`` has finished (for honest timings)."""

    def reference(self) -> str:
        """What names this library for ``backend=`` after a pickle round trip."""
        return self.name

    def device_spec(self, device: Device) -> Any:
        """``device`` as a plain value that :meth:`canonical_device` takes back (for pickling:
        device objects of most libraries do not pickle)."""
        text = str(device)
        return text.split("'")[1] if "'" in text else text

    def same_device(self, a: Device, b: Device) -> bool:
        return bool(a == b)

    def bench_devices(self) -> list[Any]:
        """The ``device=`` values the benchmark times this backend on."""
        return [None]

    def device_label(self, device: Device) -> str:
        """The device as tables and plots name it."""
        return str(device)

    def peak_bytes(self, fn: Callable[[], Array], device: Device) -> int | None:
        """Peak bytes allocated while ``fn`` runs, less its output; None where unmeasured."""
        return None

    # -- data --------------------------------------------------------------------------------
    def to_numpy(self, x: Array) -> np.ndarray:
        """A new host NumPy array with ``x``'s values."""
        try:  # DLPack exporters, on any of their devices
            return np.array(np.from_dlpack(x), copy=True)
        except (TypeError, BufferError, RuntimeError, AttributeError):
            return np.array(x, copy=True)

    def float_dtypes(self, xp: Namespace, device: Device) -> dict[str, Any]:
        """Floating dtypes the namespace offers on ``device``, by name."""
        info = getattr(xp, "__array_namespace_info__", None)
        names: dict[str, Any] = {}
        if info is not None:
            try:
                names = dict(info().dtypes(device=device, kind="real floating"))
            except Exception:  # a namespace whose info() does not take these arguments
                names = {}
        if not names:
            names = {n: getattr(xp, n) for n in ("float32", "float64") if hasattr(xp, n)}
        # float16 is outside the standard; offer it where the library has it.
        half = getattr(xp, "float16", None)
        if "float16" not in names and half is not None:
            names["float16"] = half
        return names

    def dtype_hint(self, name: str) -> str:
        """What to do when ``name`` is missing (a sentence, or empty)."""
        return ""

    def status(self) -> BackendStatus:
        """Usable here, and why, for :func:`lstm_xp.available_backends`."""
        try:
            lib = self.library()
        except BackendNotInstalledError:
            return BackendStatus(False, f"not installed: pip install lstm-xp[{self.extra}]")
        version = getattr(lib, "__version__", None) or getattr(
            sys.modules.get(self.module.split(".")[0]), "__version__", "?")
        return BackendStatus(True, f"{self.name} {version} on the CPU{self.status_detail(lib)}")

    def status_detail(self, lib: Any) -> str:
        return ""
