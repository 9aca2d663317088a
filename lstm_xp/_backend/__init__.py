"""Backends: an array library's namespace bound to one device.

A backend string (``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ``"array_api_strict"``,
``"auto"``) or an Array API namespace object becomes a :class:`Backend`: the namespace ``xp``, a
canonical device, the library's :class:`~.adapters.Adapter`, and the reason it was chosen. The
adapters (:mod:`.adapters`) are the only code that knows library names; everything else in the
package receives ``xp`` and a device and is written against the standard.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from .._typing import Array, Device, Namespace
from ..errors import DTypeError, ShapeError, UnknownBackendError
from .adapters import (
    ADAPTERS,
    BACKENDS,
    Adapter,
    BackendStatus,
    GenericAdapter,
    cupy_index,
    jax_x64_enabled,
    probe_cupy,
)

__all__ = [
    "BACKENDS",
    "FLOAT_DTYPES",
    "Backend",
    "BackendStatus",
    "array_namespace",
    "as_host",
    "available_backends",
    "device",
    "dtype_name",
    "host_integers",
    "is_flag",
    "is_host_input",
    "is_numpy_array",
    "jax_x64_enabled",
    "library_of",
    "probe_cupy",
    "resolve_backend",
    "to_numpy",
]

logger = logging.getLogger("lstm_xp")

FLOAT_DTYPES: tuple[str, ...] = ("float16", "float32", "float64")


@dataclass(frozen=True)
class Backend:
    """An array namespace bound to one device.

    Attributes
    ----------
    adapter : Adapter
        What lstm-xp knows about the library (placement, synchronisation, quirks).
    xp : module
        The Array API namespace (array-api-compat's wrapper where the library needs one).
    device : object
        The device in the backend's own terms, canonicalised to what
        ``array_api_compat.device`` reports for an array made there.
    reason : str
        Why this backend was chosen (interesting for ``backend="auto"``).
    """

    adapter: Adapter = field(repr=False)
    xp: Namespace = field(repr=False)
    device: Device
    reason: str = field(default="", compare=False)
    #: Array types found to belong to ``xp`` (a type's namespace never changes, and asking
    #: array-api-compat took 1.7 us, most of a small call's input checks).
    _owned_types: set[type] = field(default_factory=set, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        """``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ``"array_api_strict"``, or the
        module name of another standard namespace."""
        return self.adapter.name

    def context(self) -> contextlib.AbstractContextManager[Any]:
        """Context in which arrays are created and kernels launched on this device."""
        return self.adapter.context(self.device)

    def from_numpy(self, array: Any, dtype: Any) -> Array:
        """Copy a host array to this backend's device, cast to ``dtype`` (an ``xp`` dtype)."""
        # Cast on the host: a device may lack float64 (array-api-strict's "no_float64", JAX
        # without x64), and a GPU transfer of the final dtype moves fewer bytes.
        # np.asarray(order="C"), not np.ascontiguousarray: that makes a 0-d array 1-d.
        host = np.asarray(array, dtype=np.dtype(dtype_name(dtype)), order="C")
        with self.context():
            return self.xp.asarray(host, device=self.device, copy=True)

    def synchronize(self, *arrays: Array) -> None:
        """Wait until work producing ``arrays`` (and, on a GPU, all queued work) has finished.

        Needed for honest timings: CuPy, torch on CUDA and JAX return before the device is done.
        """
        self.adapter.synchronize(self.device, arrays)

    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this backend's namespace (any device)."""
        if type(x) in self._owned_types:
            return True
        if not array_api_compat.is_array_api_obj(x):
            return False
        try:
            owned = array_api_compat.array_namespace(x) is self.xp
        except TypeError:
            return False
        if owned:
            self._owned_types.add(type(x))
        return owned

    def device_of(self, x: Array) -> Device:
        """The device ``x`` lives on."""
        return array_api_compat.device(x)

    def is_on_device(self, x: Array) -> bool:
        """True when array ``x`` (of this backend's library) lives on this backend's device:
        always for a library of one device (asking array-api-compat was 0.6 us warm, and
        several times that within a model call)."""
        return self.adapter.single_device or \
            self.adapter.same_device(array_api_compat.device(x), self.device)

    def spec(self) -> tuple[str, Any, str]:
        """``(backend, device, reason)`` as plain values, from which :func:`from_spec`
        rebuilds this backend (models pickle their backend this way)."""
        return self.adapter.reference(), self.adapter.device_spec(self.device), self.reason

    def label(self) -> str:
        """The device as benchmark tables name it."""
        return self.adapter.device_label(self.device)

    def float_dtypes(self) -> dict[str, Any]:
        """Floating dtypes this namespace offers on this device, by name."""
        return self.adapter.float_dtypes(self.xp, self.device)

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
            raise DTypeError(
                f"backend {self.name!r} on device {self.device!r} has no {name}; it offers "
                f"{', '.join(sorted(offered)) or 'no floating dtype'}."
                f"{self.adapter.dtype_hint(name)} Choose another dtype or device."
            )
        return offered[name]


# -- dtype names and host data -------------------------------------------------------------------
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


def is_numpy_array(x: Any) -> bool:
    """True for a NumPy ndarray or NumPy scalar (never imports another library)."""
    return isinstance(x, (np.ndarray, np.generic))


def as_host(value: Any, what: str = "the input") -> np.ndarray:
    """A NumPy array, nested Python sequence or scalar as a NumPy array (no copy if possible).

    Raises
    ------
    ShapeError
        For a ragged nested sequence (rows of different lengths), which is no array.
    """
    try:
        return np.asarray(value)
    except ValueError as exc:  # "inhomogeneous shape after N dimensions"
        raise ShapeError(f"{what} is a nested sequence whose rows have different lengths "
                         f"({exc}); pass a rectangular array (pad the short rows).") from exc


def is_flag(value: Any) -> bool:
    """True for a Python or NumPy boolean (what a flag argument may be)."""
    return isinstance(value, (bool, np.bool_))


def host_integers(value: Any) -> list[int] | None:
    """The values of a host integer array or nested sequence of Python ints, as Python ints
    (arbitrarily large: nothing is cast), or None for anything else."""
    host = np.asarray(value) if is_host_input(value) else None
    if host is None or host.dtype.kind not in "iuO":
        return None
    values = host.ravel().tolist()
    if host.dtype.kind == "O" and not all(isinstance(v, int) and not isinstance(v, bool)
                                          for v in values):
        return None
    return [int(v) for v in values]


def is_host_input(value: Any) -> bool:
    """True for what is converted on the host: NumPy arrays, Python sequences and numbers."""
    return is_numpy_array(value) or isinstance(value, (list, tuple, int, float, bool))


# Arrays of a library without an adapter are copied through DLPack.
_ANY_LIBRARY = Adapter()


def _adapter_of_array(x: Any) -> Adapter | None:
    for adapter in ADAPTERS.values():
        if adapter.owns_array(x):
            return adapter
    return None


def library_of(x: Any) -> str | None:
    """Name of the array library ``x`` belongs to, or None when ``x`` is no array."""
    adapter = _adapter_of_array(x)
    if adapter is not None:
        return adapter.name
    if array_api_compat.is_array_api_obj(x):
        return type(x).__module__.split(".")[0]
    return None


def to_numpy(x: Any) -> np.ndarray:
    """Copy any supported array (NumPy, CuPy, torch, JAX, array-api-strict, ...) to a new
    host NumPy array."""
    return (_adapter_of_array(x) or _ANY_LIBRARY).to_numpy(x)


# -- resolution ------------------------------------------------------------------------------
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
        adapter = ADAPTERS[key]
        # Check the device argument, the library and the device before building the
        # namespace, so each failure gets its own clear error.
        adapter.precheck(device)
        adapter.library()
        xp = adapter.namespace()
        reason = f"backend={backend!r} was asked for"
    elif _looks_like_namespace(backend):
        try:
            xp = array_api_compat.array_namespace(backend.empty(0))
        except Exception as exc:  # empty() failed, or made something that is no array
            raise UnknownBackendError(
                f"backend {getattr(backend, '__name__', backend)!r} looks like an array "
                f"library but is no Array API namespace ({type(exc).__name__}: {exc}). Pass a "
                f"backend name ({', '.join(BACKENDS)}, 'auto') or a standard namespace such "
                "as array_api_strict.") from exc
        known = [ADAPTERS[n] for n in BACKENDS if ADAPTERS[n].owns_namespace(xp)]
        adapter = known[0] if known else GenericAdapter(xp)
        reason = f"namespace {getattr(backend, '__name__', backend)!r} was passed"
    else:
        raise UnknownBackendError(
            f"backend must be a name ({', '.join(BACKENDS)}, 'auto') or an Array API namespace "
            f"module; got {type(backend).__name__} {backend!r}."
        )
    return Backend(adapter, xp, adapter.canonical_device(xp, device), reason)


def array_namespace(*arrays: Any) -> Namespace:
    """The Array API namespace of ``arrays`` (array-api-compat's wrapper where needed)."""
    return array_api_compat.array_namespace(*arrays)


def device(x: Array) -> Device:
    """The device array ``x`` lives on."""
    return array_api_compat.device(x)


def from_spec(spec: tuple[str, Any, str]) -> Backend:
    """The backend :meth:`Backend.spec` describes, resolved again on this machine."""
    import dataclasses
    import importlib

    name, device, reason = spec
    backend: Any = name
    if name.startswith("module:"):
        backend = importlib.import_module(name.split(":", 1)[1])
    return dataclasses.replace(resolve_backend(backend, device), reason=reason)


def _looks_like_namespace(obj: Any) -> bool:
    return all(hasattr(obj, attr) for attr in ("empty", "asarray", "tanh", "matmul"))


def _resolve_auto(device: Any) -> Backend:
    gpu = ADAPTERS["cupy"]
    usable, why = (False, "device='cpu' was asked for") if device == "cpu" \
        else probe_cupy(cupy_index(device))
    if usable:
        xp = gpu.namespace()
        backend = Backend(gpu, xp, gpu.canonical_device(xp, device), f"auto: {why}")
    else:
        cpu = ADAPTERS["numpy"]
        backend = Backend(cpu, cpu.namespace(), "cpu",
                          f"auto: fell back to NumPy on the CPU because {why}")
    logger.info("lstm-xp backend %s: %s", backend.name, backend.reason)
    return backend


def available_backends() -> dict[str, BackendStatus]:
    """Report every backend lstm-xp knows as usable or not, with the reason.

    This imports each installed library (that is what it checks), so it is slower than
    ``import lstm_xp``, which imports none of them.

    Returns
    -------
    dict of str to BackendStatus
        Keys ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ``"array_api_strict"``.
    """
    return {name: ADAPTERS[name].status() for name in BACKENDS}
