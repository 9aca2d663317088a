"""One small adapter per array library: the only code in lstm-xp that knows their names.

Each adapter says how to import its library (and which extra brings it), which namespace to
compute with, what a valid device is, how to place work on it and wait for it, how to copy
an array to the host, and the library's dtype quirks. Everything else in the package talks to
an adapter, never to a library: adding a library is one class here and one line in
:data:`ADAPTERS`. Libraries are imported lazily, when a model asks for them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from .._typing import Array, Device, Namespace
from ..errors import BackendNotInstalledError, DeviceUnavailableError, InvalidDeviceError


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

    def namespace(self) -> Namespace:
        """The Array API namespace to compute with."""
        return array_api_compat.array_namespace(self.library().empty(0))

    def owns_namespace(self, xp: Namespace) -> bool:
        raise NotImplementedError

    def owns_array(self, x: Any) -> bool:
        raise NotImplementedError

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


class NumpyAdapter(Adapter):
    name, module, pip_name, extra = "numpy", "numpy", "numpy", "numpy"

    def namespace(self) -> Namespace:
        return importlib.import_module("array_api_compat.numpy")

    def owns_namespace(self, xp: Namespace) -> bool:
        return bool(array_api_compat.is_numpy_namespace(xp))

    def owns_array(self, x: Any) -> bool:
        return bool(array_api_compat.is_numpy_array(x))

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

    def namespace(self) -> Namespace:
        self.library()
        return importlib.import_module("array_api_compat.cupy")

    def owns_namespace(self, xp: Namespace) -> bool:
        return bool(array_api_compat.is_cupy_namespace(xp))

    def owns_array(self, x: Any) -> bool:
        return self.loaded() and bool(array_api_compat.is_cupy_array(x))

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


class TorchAdapter(Adapter):
    name, module, pip_name, extra = "torch", "torch", "torch", "torch"

    def namespace(self) -> Namespace:
        self.library()
        return importlib.import_module("array_api_compat.torch")

    def owns_namespace(self, xp: Namespace) -> bool:
        return bool(array_api_compat.is_torch_namespace(xp))

    def owns_array(self, x: Any) -> bool:
        return self.loaded() and bool(array_api_compat.is_torch_array(x))

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

    def owns_namespace(self, xp: Namespace) -> bool:
        return bool(array_api_compat.is_jax_namespace(xp))

    def owns_array(self, x: Any) -> bool:
        return self.loaded() and bool(array_api_compat.is_jax_array(x))

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

    def owns_namespace(self, xp: Namespace) -> bool:
        return bool(array_api_compat.is_array_api_strict_namespace(xp))

    def owns_array(self, x: Any) -> bool:
        return self.loaded() and type(x).__module__.startswith("array_api_strict")

    def float_dtypes(self, xp: Namespace, device: Device) -> dict[str, Any]:
        names = super().float_dtypes(xp, device)
        names.pop("float16", None)  # the standard has none, and strict offers only that
        return names


class DaskAdapter(Adapter):
    """Dask arrays are recognised (for clear errors and host copies), not a ``backend=``."""

    name, module, pip_name, extra = "dask", "dask.array", "dask", "dask"

    def owns_namespace(self, xp: Namespace) -> bool:
        return bool(array_api_compat.is_dask_namespace(xp))

    def owns_array(self, x: Any) -> bool:
        return self.loaded() and bool(array_api_compat.is_dask_array(x))

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.array(x.compute(), copy=True)


class GenericAdapter(Adapter):
    """Any other standard namespace passed as ``backend=`` (no quirks known)."""

    def __init__(self, xp: Namespace) -> None:
        self._xp = xp
        self.name = getattr(xp, "__name__", type(xp).__name__)

    def namespace(self) -> Namespace:
        return self._xp

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
