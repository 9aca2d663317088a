"""CuPy, NVIDIA GPUs: the adapter, the device argument, and the probe that proves a GPU runs
code before a model is built on it."""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat
import numpy as np

from .._typing import Array, Device, Namespace
from ..errors import BackendNotInstalledError, DeviceUnavailableError, InvalidDeviceError
from .adapter import Adapter, BackendStatus


def cupy_index(device: Any) -> int:
    """The CUDA device index ``device=`` names for CuPy (None, an int, ``"cuda:N"``)."""
    if device is None:
        return 0
    if isinstance(device, bool):
        raise InvalidDeviceError(
            f"device for backend 'cupy' must be an int or 'cuda:N'; got {device!r}.")
    if isinstance(device, int):
        index = device
    elif isinstance(device, str) and device in ("cuda", "gpu"):
        index = 0
    elif isinstance(device, str) and device.startswith(("cuda:", "gpu:")):
        try:
            index = int(device.split(":", 1)[1])
        except ValueError:
            index = -1
    elif hasattr(device, "id"):  # a cupy.cuda.Device
        index = int(device.id)
    else:
        index = -1
    if index < 0:
        raise InvalidDeviceError(
            f"device for backend 'cupy' must be a non-negative int or 'cuda:N'; got {device!r}."
        )
    return index


@functools.cache
def probe_cupy(index: int) -> tuple[bool, str]:
    """Run one tiny elementwise kernel and one matmul on CUDA device ``index``.

    A CuPy wheel imports without a GPU, and a device can be present while NVRTC or cuBLAS is
    missing, so only running code proves the device usable. The answer is cached per device.

    Returns
    -------
    (usable, reason) : (bool, str)
    """
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as exc:
        return False, f"cupy is not installed ({exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver
        return False, f"CUDA is not available ({type(exc).__name__}: {exc})"
    if count == 0:
        return False, "CUDA reports no device"
    if index >= count:
        return False, f"CUDA device {index} does not exist (this machine has {count})"
    try:
        with cupy.cuda.Device(index):
            a = cupy.arange(4, dtype=cupy.float32)
            b = a * 2.0 + 1.0  # an elementwise kernel: needs NVRTC
            m = cupy.ones((4, 4), dtype=cupy.float32) @ b  # a GEMV: needs cuBLAS
            got = cupy.asnumpy(m)
            props = cupy.cuda.runtime.getDeviceProperties(index)
    except Exception as exc:
        return False, f"CUDA device {index} failed a test kernel ({type(exc).__name__}: {exc})"
    if not np.allclose(got, 16.0):
        return False, f"CUDA device {index} returned wrong results in a test kernel: {got}"
    gpu = props.get("name", b"?")
    gpu = gpu.decode() if isinstance(gpu, bytes) else str(gpu)
    return True, f"CUDA device {index} ({gpu}) ran a test kernel and a matmul"


class CupyAdapter(Adapter):
    name, module, pip_name, extra = "cupy", "cupy", "cupy-cuda12x", "cupy"
    accelerator = True
    compat = "array_api_compat.cupy"
    is_namespace = staticmethod(array_api_compat.is_cupy_namespace)
    is_array = staticmethod(array_api_compat.is_cupy_array)

    def precheck(self, device: Any) -> None:
        index = cupy_index(device)
        self.library()
        usable, why = probe_cupy(index)
        if not usable:
            raise DeviceUnavailableError(
                f"backend='cupy' needs a working CUDA device, but {why}. Use backend='auto' "
                "to fall back to NumPy when no GPU answers, or backend='numpy'."
            )

    def canonical_device(self, xp: Namespace, device: Any) -> Device:
        self.precheck(device)
        return self.library().cuda.Device(cupy_index(device))

    def context(self, device: Device) -> contextlib.AbstractContextManager[Any]:
        # array-api-compat's CuPy wrapper ignores device= when creating arrays, so CuPy work
        # runs inside cupy.cuda.Device(i), which is itself a context manager.
        return device

    def synchronize(self, device: Device, arrays: Sequence[Array]) -> None:
        device.synchronize()

    def device_spec(self, device: Device) -> Any:
        return int(device.id)

    def same_device(self, a: Device, b: Device) -> bool:
        # cupy.cuda.Device objects may compare by identity; compare their ids.
        return bool(a == b) or getattr(a, "id", object()) == getattr(b, "id", object())

    def bench_devices(self) -> list[Any]:
        try:
            count = self.library().cuda.runtime.getDeviceCount()
        except Exception:  # no driver, or no CuPy: device 0 then says why it is skipped
            count = 0
        return list(range(count)) or [0]

    def device_label(self, device: Device) -> str:
        name = self.library().cuda.runtime.getDeviceProperties(device.id)["name"]
        return f"cuda:{device.id} ({name.decode() if isinstance(name, bytes) else name})"

    def peak_bytes(self, fn: Callable[[], Array], device: Device) -> int | None:
        cupy = self.library()

        class PeakHook(cupy.cuda.MemoryHook):  # type: ignore[name-defined]
            name = "lstm_xp_peak"

            def __init__(self) -> None:
                self.live = self.peak = 0

            def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
                self.live += mem_size
                self.peak = max(self.peak, self.live)

            def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
                self.live -= mem_size

        hook = PeakHook()
        with device, hook:
            out = fn()
            device.synchronize()
        return int(hook.peak - out.nbytes)

    def to_numpy(self, x: Array) -> np.ndarray:
        return x.get()

    def status(self) -> BackendStatus:
        try:
            lib = self.library()
        except BackendNotInstalledError:
            return BackendStatus(False, f"not installed: pip install lstm-xp[{self.extra}]")
        usable, why = probe_cupy(0)
        return BackendStatus(usable, f"cupy {lib.__version__}: {why}")
