"""One small adapter per array library: the only code in lstm-xp that knows their names.

Each adapter says how to import its library (and which extra brings it), which namespace to
compute with, what a valid device is, how to place work on it and wait for it, how to copy
an array to the host, and the library's dtype quirks. Everything else in the package talks to
an adapter, never to a library: adding a library is one class (here, or a module of its own
like :mod:`.cuda`) and one line in :data:`ADAPTERS`. Libraries are imported lazily, when a
model asks for them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat
import numpy as np

from .._typing import Array, Device, Namespace
from ..errors import DeviceUnavailableError, InvalidDeviceError
from .adapter import Adapter, BackendStatus
from .cuda import CupyAdapter, cupy_index, probe_cupy

__all__ = ["ADAPTERS", "BACKENDS", "Adapter", "BackendStatus", "CupyAdapter", "GenericAdapter",
           "cupy_index", "jax_x64_enabled", "probe_cupy"]


class NumpyAdapter(Adapter):
    name, module, pip_name, extra = "numpy", "numpy", "numpy", "numpy"
    single_device = True
    compat = "array_api_compat.numpy"
    is_namespace = staticmethod(array_api_compat.is_numpy_namespace)
    is_array = staticmethod(array_api_compat.is_numpy_array)

    def loaded(self) -> bool:
        return True

    def canonical_device(self, xp: Namespace, device: Any) -> Device:
        if device not in (None, "cpu"):
            raise InvalidDeviceError(
                f"backend 'numpy' runs on device 'cpu' only; got device={device!r}. "
                "Use backend='cupy' or backend='torch' for a GPU."
            )
        return "cpu"

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.array(x, copy=True)

    def peak_bytes(self, fn: Callable[[], Array], device: Device) -> int | None:
        import tracemalloc

        tracemalloc.start()
        try:
            out = fn()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return int(peak - np.asarray(out).nbytes)


class TorchAdapter(Adapter):
    name, module, pip_name, extra = "torch", "torch", "torch", "torch"
    compat = "array_api_compat.torch"
    is_namespace = staticmethod(array_api_compat.is_torch_namespace)
    is_array = staticmethod(array_api_compat.is_torch_array)

    def canonical_device(self, xp: Namespace, device: Any) -> Device:
        torch = self.library()
        try:
            dev = torch.device("cpu" if device is None else device)
        except (RuntimeError, TypeError) as exc:
            raise InvalidDeviceError(
                f"device for backend 'torch' must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}."
            ) from exc
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = 0 if dev.index is None else dev.index
            if index >= count:
                raise DeviceUnavailableError(
                    f"backend='torch' with device={device!r} needs CUDA device {index}, but "
                    f"torch sees {count} CUDA device(s). Use device='cpu'."
                )
        elif dev.type != "cpu":
            raise InvalidDeviceError(
                f"backend 'torch' supports devices 'cpu' and 'cuda:N'; got {device!r}."
            )
        return xp.empty(0, device=dev).device

    def bench_devices(self) -> list[Any]:
        torch = self.library()
        return [None] + (["cuda:0"] if torch.cuda.is_available() else [])

    def synchronize(self, device: Device, arrays: Sequence[Array]) -> None:
        if getattr(device, "type", "cpu") == "cuda":
            self.library().cuda.synchronize(device)

    def to_numpy(self, x: Array) -> np.ndarray:
        return x.detach().cpu().numpy().copy()

    def status_detail(self, lib: Any) -> str:
        return f"; CUDA {'available' if lib.cuda.is_available() else 'not available'}"


def jax_x64_enabled() -> bool:
    """Whether JAX computes in float64 (its global ``jax_enable_x64`` switch)."""
    jax = sys.modules.get("jax")
    return bool(jax is not None and jax.config.read("jax_enable_x64"))


class JaxAdapter(Adapter):
    name, module, pip_name, extra = "jax", "jax.numpy", "jax", "jax"
    is_namespace = staticmethod(array_api_compat.is_jax_namespace)
    is_array = staticmethod(array_api_compat.is_jax_array)

    def canonical_device(self, xp: Namespace, device: Any) -> Device:
        jax = importlib.import_module("jax")
        if device is None or not isinstance(device, str):
            dev = device
        else:
            platform, _, idx = device.partition(":")
            try:
                dev = jax.devices({"cuda": "gpu"}.get(platform, platform))[int(idx or 0)]
            except (RuntimeError, IndexError, ValueError) as exc:
                raise DeviceUnavailableError(
                    f"backend 'jax' has no device {device!r} ({exc}); it has {jax.devices()}."
                ) from exc
        if dev is None:
            dev = jax.devices()[0]
        return array_api_compat.device(xp.empty(0, device=dev))

    def synchronize(self, device: Device, arrays: Sequence[Array]) -> None:
        for a in arrays:
            a.block_until_ready()

    def device_spec(self, device: Device) -> Any:
        return f"{device.platform}:{device.id}"

    def float_dtypes(self, xp: Namespace, device: Device) -> dict[str, Any]:
        names = super().float_dtypes(xp, device)
        if not jax_x64_enabled():
            names.pop("float64", None)
        return names

    def dtype_hint(self, name: str) -> str:
        if name == "float64":
            return " Enable it with jax.config.update('jax_enable_x64', True) before building."
        return ""


class StrictAdapter(Adapter):
    name, module, pip_name, extra = "array_api_strict", "array_api_strict", "array-api-strict", \
        "test"
    is_namespace = staticmethod(array_api_compat.is_array_api_strict_namespace)
    is_array = staticmethod(lambda x: type(x).__module__.startswith("array_api_strict"))

    def float_dtypes(self, xp: Namespace, device: Device) -> dict[str, Any]:
        names = super().float_dtypes(xp, device)
        names.pop("float16", None)  # the standard has none, and strict offers only that
        return names


class DaskAdapter(Adapter):
    """Dask arrays are recognised (for clear errors and host copies), not a ``backend=``."""

    name, module, pip_name, extra = "dask", "dask.array", "dask", "dask"
    is_namespace = staticmethod(array_api_compat.is_dask_namespace)
    is_array = staticmethod(array_api_compat.is_dask_array)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.array(x.compute(), copy=True)


class GenericAdapter(Adapter):
    """Any other standard namespace passed as ``backend=`` (no quirks known)."""

    def __init__(self, xp: Namespace) -> None:
        self._xp = xp
        self.name = getattr(xp, "__name__", type(xp).__name__)

    def namespace(self) -> Namespace:
        return self._xp

    def reference(self) -> str:
        return f"module:{self.name}"  # imported again by name when unpickled

    def device_spec(self, device: Device) -> Any:
        return None  # the namespace's default device

    def owns_namespace(self, xp: Namespace) -> bool:
        return xp is self._xp

    def owns_array(self, x: Any) -> bool:
        try:
            return array_api_compat.array_namespace(x) is self._xp
        except TypeError:
            return False


#: The adapters of the libraries lstm-xp knows, by name; the first five are backends.
ADAPTERS: dict[str, Adapter] = {a.name: a for a in (
    NumpyAdapter(), CupyAdapter(), TorchAdapter(), JaxAdapter(), StrictAdapter(), DaskAdapter())}

#: Backend names accepted by ``backend=``, besides ``"auto"`` and a namespace object.
BACKENDS: tuple[str, ...] = ("numpy", "cupy", "torch", "jax", "array_api_strict")
