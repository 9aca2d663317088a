"""The one module that knows array-library names.

A backend string (``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ``"array_api_strict"``,
``"auto"``) or an Array API namespace object becomes a :class:`Backend`: the namespace ``xp``, a
canonical device, and the reason it was chosen. Libraries are imported lazily, here and only here;
``import lstm_xp`` imports neither CuPy, PyTorch nor JAX. Everything else in the package receives
``xp`` and a device and is written against the standard.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from .errors import (
    BackendNotInstalledError,
    DeviceUnavailableError,
    DTypeError,
    InvalidDeviceError,
    UnknownBackendError,
)

logger = logging.getLogger("lstm_xp")

#: Backend names accepted by ``backend=``, besides ``"auto"`` and a namespace object.
BACKENDS: tuple[str, ...] = ("numpy", "cupy", "torch", "jax", "array_api_strict")

# What to ``pip install`` for each backend: the extra of lstm-xp, and the library itself.
_EXTRA = {"cupy": "cupy", "torch": "torch", "jax": "jax", "array_api_strict": "test"}
_PIP_NAME = {
    "cupy": "cupy-cuda12x",
    "torch": "torch",
    "jax": "jax",
    "array_api_strict": "array-api-strict",
}

FLOAT_DTYPES: tuple[str, ...] = ("float16", "float32", "float64")


@dataclass(frozen=True)
class Backend:
    """An array namespace bound to one device.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ``"array_api_strict"``, or the module
        name of another standard namespace.
    xp : module
        The Array API namespace (array-api-compat's wrapper where the library needs one).
    device : object
        The device in the backend's own terms, canonicalised to what
        ``array_api_compat.device`` reports for an array made there.
    reason : str
        Why this backend was chosen (interesting for ``backend="auto"``).
    """

    name: str
    xp: Any = field(repr=False)
    device: Any
    reason: str = field(default="", compare=False)

    # -- placement ---------------------------------------------------------------------------
    def context(self) -> contextlib.AbstractContextManager[Any]:
        """Context in which arrays are created and kernels launched on this device.

        CuPy's array-api-compat wrapper ignores ``device=`` when creating arrays, so CuPy work
        runs inside ``cupy.cuda.Device(i)``; other libraries honour ``device=`` and need nothing.
        """
        if self.name == "cupy":
            return self.device  # a cupy.cuda.Device is itself a context manager
        return contextlib.nullcontext()

    def from_numpy(self, array: np.ndarray, dtype: Any) -> Any:
        """Copy a host array to this backend's device, cast to ``dtype`` (an ``xp`` dtype)."""
        # Cast on the host: a device may lack float64 (array-api-strict's "no_float64", JAX
        # without x64), and a GPU transfer of the final dtype moves fewer bytes.
        host = np.ascontiguousarray(array, dtype=np.dtype(dtype_name(dtype)))
        with self.context():
            return self.xp.asarray(host, device=self.device, copy=True)

    def synchronize(self, *arrays: Any) -> None:
        """Wait until work producing ``arrays`` (and, on a GPU, all queued work) has finished.

        Needed for honest timings: CuPy, torch on CUDA and JAX return before the device is done.
        """
        if self.name == "cupy":
            self.device.synchronize()
        elif self.name == "torch" and getattr(self.device, "type", "cpu") == "cuda":
            importlib.import_module("torch").cuda.synchronize(self.device)
        elif self.name == "jax":
            for a in arrays:
                a.block_until_ready()

    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this backend's namespace (any device)."""
        if not array_api_compat.is_array_api_obj(x):
            return False
        try:
            return array_api_compat.array_namespace(x) is self.xp
        except TypeError:
            return False

    def device_of(self, x: Any) -> Any:
        """The device ``x`` lives on."""
        return array_api_compat.device(x)

    def is_on_device(self, x: Any) -> bool:
        """True when array ``x`` lives on this backend's device."""
        where = array_api_compat.device(x)
        if where == self.device:
            return True
        # cupy.cuda.Device objects may compare by identity; compare their ids.
        return getattr(where, "id", object()) == getattr(self.device, "id", object())

    # -- dtypes ------------------------------------------------------------------------------
    def float_dtypes(self) -> dict[str, Any]:
        """Floating dtypes this namespace offers on this device, by name."""
        info = getattr(self.xp, "__array_namespace_info__", None)
        names: dict[str, Any] = {}
        if info is not None:
            try:
                names = dict(info().dtypes(device=self.device, kind="real floating"))
            except Exception:  # a namespace whose info() does not take these arguments
                names = {}
        if not names:
            names = {n: getattr(self.xp, n) for n in ("float32", "float64") if hasattr(self.xp, n)}
        # float16 is outside the standard; offer it where the library has it.
        if "float16" not in names and self.name != "array_api_strict":
            half = getattr(self.xp, "float16", None)
            if half is not None:
                names["float16"] = half
        if self.name == "jax" and not _jax_x64_enabled():
            names.pop("float64", None)
        return names

    def resolve_dtype(self, dtype: Any) -> Any:
        """Turn ``"float32"``, a NumPy dtype or an ``xp`` dtype into this namespace's dtype.

        Raises
        ------
        DTypeError
            For a name that is not a float dtype, or one this backend/device does not offer.
        """
        name = dtype_name(dtype)
        if name not in FLOAT_DTYPES:
            raise DTypeError(
                f"dtype must be one of {', '.join(FLOAT_DTYPES)}; got {dtype!r}. "
                "Pass dtype='float32' (the default) or 'float64'."
            )
        offered = self.float_dtypes()
        if name not in offered:
            hint = ""
            if self.name == "jax" and name == "float64":
                hint = " Enable it with jax.config.update('jax_enable_x64', True) before building."
            raise DTypeError(
                f"backend {self.name!r} on device {self.device!r} has no {name}; it offers "
                f"{', '.join(sorted(offered)) or 'no floating dtype'}.{hint} "
                "Choose another dtype or device."
            )
        return offered[name]


# -- dtype names ---------------------------------------------------------------------------------
def dtype_name(dtype: Any) -> str:
    """Best-effort canonical name of a dtype given as str, NumPy dtype or any library's dtype."""
    if isinstance(dtype, str):
        return dtype
    try:
        return np.dtype(dtype).name
    except TypeError:
        pass
    text = str(dtype)  # torch.float32, array_api_strict.float32, dtype('float32') ...
    for name in (*FLOAT_DTYPES, "bfloat16", "int", "uint", "bool", "complex"):
        if name in text:
            return name
    return text


def _jax_x64_enabled() -> bool:
    jax = sys.modules.get("jax")
    return bool(jax is not None and jax.config.read("jax_enable_x64"))


# -- host conversion ---------------------------------------------------------------------------
def is_numpy_array(x: Any) -> bool:
    """True for a NumPy ndarray or NumPy scalar (never imports another library)."""
    return isinstance(x, (np.ndarray, np.generic))


def as_host(value: Any) -> np.ndarray:
    """A NumPy array, nested Python sequence or scalar as a NumPy array (no copy if possible)."""
    return np.asarray(value)


def is_host_input(value: Any) -> bool:
    """True for what is converted on the host: NumPy arrays, Python sequences and numbers."""
    return is_numpy_array(value) or isinstance(value, (list, tuple, int, float, bool))


def library_of(x: Any) -> str | None:
    """Name of the array library ``x`` belongs to, or None when ``x`` is no array."""
    checks = (
        ("numpy", array_api_compat.is_numpy_array),
        ("cupy", array_api_compat.is_cupy_array),
        ("torch", array_api_compat.is_torch_array),
        ("jax", array_api_compat.is_jax_array),
        ("dask", array_api_compat.is_dask_array),
    )
    for name, check in checks:
        if check(x):
            return name
    if array_api_compat.is_array_api_obj(x):
        return type(x).__module__.split(".")[0]
    return None


def to_numpy(x: Any) -> np.ndarray:
    """Copy any supported array (NumPy, CuPy, torch, JAX, array-api-strict, ...) to a new
    host NumPy array."""
    lib = library_of(x)
    if lib == "numpy":
        return np.array(x, copy=True)
    if lib == "cupy":
        return x.get()
    if lib == "torch":
        return x.detach().cpu().numpy().copy()
    if lib == "jax":
        return np.array(x, copy=True)
    try:  # array-api-strict and other DLPack exporters, on any of their devices
        return np.array(np.from_dlpack(x), copy=True)
    except (TypeError, BufferError, RuntimeError, AttributeError):
        return np.array(x, copy=True)


# -- resolution ------------------------------------------------------------------------------
def _import(name: str) -> Any:
    """Import a backend library, or say which extra brings it."""
    module = {"numpy": "numpy", "cupy": "cupy", "torch": "torch", "jax": "jax.numpy",
              "array_api_strict": "array_api_strict"}[name]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"backend={name!r} needs the {_PIP_NAME[name]!r} package, which is not installed "
            f"({exc}). Install it with `pip install lstm-xp[{_EXTRA[name]}]`, or use "
            "backend='numpy' (always available) or backend='auto'."
        ) from exc


def _namespace(name: str) -> Any:
    lib = _import(name)
    if name == "numpy":
        return importlib.import_module("array_api_compat.numpy")
    if name == "cupy":
        return importlib.import_module("array_api_compat.cupy")
    if name == "torch":
        return importlib.import_module("array_api_compat.torch")
    return array_api_compat.array_namespace(lib.empty(0))  # jax.numpy, array_api_strict


def _cupy_index(device: Any) -> int:
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
def _probe_cupy(index: int) -> tuple[bool, str]:
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


def _canonical_device(name: str, xp: Any, device: Any) -> Any:
    """Validate ``device`` for backend ``name`` and return the device arrays report."""
    if name == "numpy":
        if device not in (None, "cpu"):
            raise InvalidDeviceError(
                f"backend 'numpy' runs on device 'cpu' only; got device={device!r}. "
                "Use backend='cupy' or backend='torch' for a GPU."
            )
        return "cpu"
    if name == "cupy":
        index = _cupy_index(device)
        usable, why = _probe_cupy(index)
        if not usable:
            raise DeviceUnavailableError(
                f"backend='cupy' needs a working CUDA device, but {why}. Use backend='auto' "
                "to fall back to NumPy when no GPU answers, or backend='numpy'."
            )
        cupy = importlib.import_module("cupy")
        return cupy.cuda.Device(index)
    if name == "torch":
        torch = importlib.import_module("torch")
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
    if name == "jax":
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
    # array_api_strict and any other standard namespace
    info = xp.__array_namespace_info__() if hasattr(xp, "__array_namespace_info__") else None
    if device is None:
        return info.default_device() if info is not None else array_api_compat.device(xp.empty(0))
    if info is not None:
        devices = list(info.devices())
        # Devices are objects; also accept the name they print with, e.g. "device1".
        by_name = {str(d).split("'")[1] if "'" in str(d) else str(d): d for d in devices}
        if isinstance(device, str) and device in by_name:
            return by_name[device]
        if device not in devices:
            raise InvalidDeviceError(
                f"backend {name!r} has devices {devices}; got device={device!r}."
            )
    return device


def _name_of_namespace(xp: Any) -> str:
    checks = (
        ("numpy", array_api_compat.is_numpy_namespace),
        ("cupy", array_api_compat.is_cupy_namespace),
        ("torch", array_api_compat.is_torch_namespace),
        ("jax", array_api_compat.is_jax_namespace),
        ("array_api_strict", array_api_compat.is_array_api_strict_namespace),
    )
    for name, check in checks:
        if check(xp):
            return name
    return getattr(xp, "__name__", type(xp).__name__)


def resolve_backend(backend: Any = "numpy", device: Any = None) -> Backend:
    """Turn ``backend=`` and ``device=`` into a :class:`Backend`.

    Parameters
    ----------
    backend : str or namespace
        ``"numpy"`` (default), ``"cupy"``, ``"torch"``, ``"jax"``, ``"array_api_strict"``,
        ``"auto"`` (CuPy when a CUDA device runs a test kernel, else NumPy), or an Array API
        namespace object such as ``array_api_strict`` or ``array_api_compat.numpy``.
    device : object, optional
        In the backend's own terms: CuPy an int or ``"cuda:N"``; torch ``"cpu"`` or
        ``"cuda:N"``; JAX a ``jax.Device`` or ``"cpu"``/``"gpu:N"``; array-api-strict a
        ``Device`` or its name. With ``"auto"`` it applies to CuPy only; the NumPy fallback
        runs on ``"cpu"``.

    Raises
    ------
    UnknownBackendError, BackendNotInstalledError, DeviceUnavailableError, InvalidDeviceError
    """
    if isinstance(backend, str):
        key = backend.strip().lower().replace("-", "_")
        if key == "auto":
            return _resolve_auto(device)
        if key not in BACKENDS:
            raise UnknownBackendError(
                f"unknown backend {backend!r}; expected one of "
                f"{', '.join(repr(b) for b in (*BACKENDS, 'auto'))}, or an Array API namespace."
            )
        if key == "cupy":
            # Check the device argument, the library and the GPU before touching
            # array-api-compat's CuPy wrapper, so each failure gets its own clear error.
            _cupy_index(device)
            _import("cupy")
            _canonical_device("cupy", None, device)
        xp = _namespace(key)
        reason = f"backend={backend!r} was asked for"
    elif _looks_like_namespace(backend):
        xp = array_api_compat.array_namespace(backend.empty(0))
        key = _name_of_namespace(xp)
        if key == "cupy":
            _import("cupy")
        reason = f"namespace {getattr(backend, '__name__', backend)!r} was passed"
    else:
        raise UnknownBackendError(
            f"backend must be a name ({', '.join(BACKENDS)}, 'auto') or an Array API namespace "
            f"module; got {type(backend).__name__} {backend!r}."
        )
    canonical = _canonical_device(key, xp, device)
    return Backend(key, xp, canonical, reason)


def _looks_like_namespace(obj: Any) -> bool:
    return all(hasattr(obj, attr) for attr in ("empty", "asarray", "tanh", "matmul"))


def _resolve_auto(device: Any) -> Backend:
    usable, why = (False, "device='cpu' was asked for") if device == "cpu" \
        else _probe_cupy(_cupy_index(device))
    if usable:
        backend = Backend("cupy", _namespace("cupy"), _canonical_device("cupy", None, device),
                          f"auto: {why}")
    else:
        backend = Backend("numpy", _namespace("numpy"), "cpu",
                          f"auto: fell back to NumPy on the CPU because {why}")
    logger.info("lstm-xp backend %s: %s", backend.name, backend.reason)
    return backend


class BackendStatus(NamedTuple):
    """Whether a backend can be used on this machine, and why (or why not)."""

    usable: bool
    reason: str


def available_backends() -> dict[str, BackendStatus]:
    """Report every backend lstm-xp knows as usable or not, with the reason.

    This imports each installed library (that is what it checks), so it is slower than
    ``import lstm_xp``, which imports none of them.

    Returns
    -------
    dict of str to BackendStatus
        Keys ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ``"array_api_strict"``.
    """
    report: dict[str, BackendStatus] = {}
    for name in BACKENDS:
        try:
            lib = _import(name)
        except BackendNotInstalledError:
            report[name] = BackendStatus(
                False, f"not installed: pip install lstm-xp[{_EXTRA.get(name, name)}]")
            continue
        version = getattr(lib, "__version__", None) or getattr(
            sys.modules.get(name.split(".")[0]), "__version__", "?")
        if name == "cupy":
            usable, why = _probe_cupy(0)
            report[name] = BackendStatus(usable, f"cupy {version}: {why}")
            continue
        detail = ""
        if name == "torch":
            cuda = lib.cuda.is_available()
            detail = f"; CUDA {'available' if cuda else 'not available'}"
        report[name] = BackendStatus(True, f"{name} {version} on the CPU{detail}")
    return report
