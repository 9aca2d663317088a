"""What :class:`~lstm_xp.LSTM` and :class:`~lstm_xp.LSTMCell` share: a backend chosen once at
construction, named parameters in PyTorch's layout, ``state_dict`` / ``load_state_dict`` /
``to``, and the conversion of user arrays at the edge.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from . import _backend
from ._checks import check_seed
from ._init import INITS, init_params
from .errors import (
    AllocationError,
    BackendMismatchError,
    ConfigError,
    DTypeError,
    ShapeError,
    StateDictError,
)
from .kernels._frozen import freeze, is_frozen

# NumPy's dtype.kind letter for each Array-API dtype kind the models accept.
_HOST_KIND = {"real floating": "f", "integral": "iu", "bool": "b"}
_KIND_WORD = {"integral": "integers", "bool": "boolean"}

#: What ``dtype=None`` (and leaving ``dtype`` out) means for a new model.
DEFAULT_DTYPE = "float32"


F = TypeVar("F", bound=Callable[..., Any])
_M = TypeVar("_M", bound="Module")


def on_device(method: F, name: str | None = None) -> F:
    """Run a model method inside its backend's device context (a CUDA device for CuPy,
    where arrays are created and kernels launched; nothing for libraries that honour
    ``device=``); out of memory, an :class:`AllocationError` that names the method as
    ``name`` (default: its own name; a private method behind a public one names that)."""

    @functools.wraps(method)
    def placed(self: Module, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._backend.context():
                return method(self, *args, **kwargs)
        except AllocationError:
            raise
        except MemoryError as exc:
            raise out_of_memory(self, name or method.__name__, exc) from exc

    return placed  # type: ignore[return-value]


def out_of_memory(module: Module, method: str, exc: MemoryError) -> AllocationError:
    """The :class:`AllocationError` that says what to do when ``method`` ran out of memory
    (``exc``, a plain :class:`MemoryError`)."""
    return AllocationError(
        f"{type(module).__name__}.{method} ran out of memory ({exc}). Pass smaller batches, "
        "or a long sequence in chunks with the state carried from one to the next, or use a "
        "device with more memory.")


class Module:
    """Base of the recurrent modules: backend, dtype, parameters and their (de)serialisation.

    Subclasses fill ``self._params`` (name -> array of ``self.xp`` on ``self.device``; a
    dict replaced whole, never changed in place, so that a cache may hold on to it) through
    :meth:`_init_params` and define :meth:`_param_shapes`.
    """

    _params: dict[str, Any]

    def __init__(self, backend: Any, device: Any, dtype: Any, init: str, seed: int | None):
        if not isinstance(init, str) or init not in INITS:
            raise ConfigError(f"unknown init {init!r}; expected one of {', '.join(INITS)}.")
        self.seed = check_seed(seed)
        self._backend = _backend.resolve_backend(backend, device)
        # dtype=None means the documented default, never the library's own (float64 on NumPy).
        self._dtype = self._backend.resolve_dtype(DEFAULT_DTYPE if dtype is None else dtype)
        self.init = init
        self._params = {}

    # -- what the model runs on --------------------------------------------------------------
    @property
    def backend(self) -> str:
        """Name of the backend in use: ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ..."""
        return self._backend.name

    @property
    def backend_reason(self) -> str:
        """Why this backend was chosen (with ``backend="auto"``: what the GPU probe found)."""
        return self._backend.reason

    @property
    def xp(self) -> Any:
        """The Array API namespace the model computes with."""
        return self._backend.xp

    @property
    def device(self) -> Any:
        """The device parameters and results live on, in the backend's own terms."""
        return self._backend.device

    @property
    def dtype(self) -> Any:
        """The floating dtype of parameters and results (a dtype of :attr:`xp`)."""
        return self._dtype

    # -- parameters --------------------------------------------------------------------------
    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _init_params(self, layers: list[tuple[str, int]], hidden_size: int, bias: bool,
                     bias_init: str = "default", chrono_max: float | None = None,
                     proj_size: int = 0, peephole: bool = False,
                     layer_norm: bool = False) -> None:
        """Draw parameters for each ``(suffix, input_size)`` on the host and move them here."""
        try:
            self._set_params(init_params(self.init, self.seed, layers, hidden_size, bias,
                                         bias_init, chrono_max, proj_size, peephole,
                                         layer_norm))
        except MemoryError as exc:
            count = sum(math.prod(s) for s in self._param_shapes().values())
            raise AllocationError(
                f"{type(self).__name__} parameters of these sizes ({count:,} values, drawn in "
                f"float64 on the host) cannot be allocated ({exc}). Check input_size and "
                "hidden_size.") from exc

    def _set_params(self, host: Mapping[str, Any]) -> None:
        """Make the host arrays ``host`` the parameters, on this device in this dtype."""
        self._params = {n: self._backend.from_numpy(v, self._dtype) for n, v in host.items()}

    def state_dict(self) -> dict[str, Any]:
        """Parameters by name, in ``torch.nn.LSTM``'s names, layout and gate order (i, f, g, o).

        Returns
        -------
        dict
            Arrays of :attr:`xp` on :attr:`device` (the model's own arrays: copy them before
            writing into them). For :class:`LSTM` the keys are ``weight_ih_l{k}`` (4H, I or D*H),
            ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (4H,), and the same
            with ``_reverse`` for the backward direction.
        """
        return dict(self._params)

    def host_params(self) -> dict[str, Any]:
        """Every parameter copied to a new host NumPy array, keyed like :meth:`state_dict`
        (what files, other frameworks and pickles receive)."""
        return {k: _backend.to_numpy(v) for k, v in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Replace every parameter from ``state_dict``.

        Values may be NumPy arrays or arrays of the model's namespace (on any of its devices);
        floating values of another precision are cast to the model's dtype, as
        ``torch.nn.Module.load_state_dict`` does. Everything is checked before anything is
        assigned: on error the model is unchanged.

        Raises
        ------
        StateDictError
            Missing or unexpected names, wrong shapes, non-floating dtypes, or arrays of another
            library.
        """
        expected = self._param_shapes()
        missing = sorted(set(expected) - set(state_dict))
        extra = sorted(set(state_dict) - set(expected))
        if missing or extra:
            raise StateDictError(
                f"state_dict does not match this {type(self).__name__}: missing {missing}, "
                f"unexpected {extra}. Expected exactly {sorted(expected)}."
            )
        staged: dict[str, Any] = {}
        for name, shape in expected.items():
            value = state_dict[name]
            if self._backend.owns(value):
                host = _backend.to_numpy(value)
            elif _backend.is_numpy_array(value):
                host = _backend.as_host(value)
            else:
                raise StateDictError(
                    f"state_dict[{name!r}] is a {type(value).__module__}.{type(value).__name__}; "
                    f"expected a NumPy array or an array of the model's backend "
                    f"({self.backend!r}). Convert it to NumPy first."
                )
            if tuple(host.shape) != shape:
                raise StateDictError(
                    f"state_dict[{name!r}] has shape {tuple(host.shape)}; expected {shape}."
                )
            if host.dtype.kind != "f":
                raise StateDictError(
                    f"state_dict[{name!r}] has dtype {host.dtype}; expected a floating dtype "
                    f"(the model's is {_backend.dtype_name(self._dtype)})."
                )
            staged[name] = host
        self._set_params(staged)

    def check_values(self, values: Mapping[str, Any], what: str = "parameter") -> None:
        """Check that every entry of ``values`` could replace the parameter of its name: a
        known name, an array of the model's namespace on its device, of the parameter's shape
        and the model's dtype.

        Raises
        ------
        StateDictError
            Naming the entry, what was expected and what was given.
        """
        if not isinstance(values, Mapping):
            raise StateDictError(f"{what}s must be a dict of arrays keyed like state_dict(); "
                                 f"got {type(values).__name__}.")
        shapes = self._param_shapes()
        for name, value in values.items():
            if name not in shapes:
                raise StateDictError(f"unknown {what} {name!r}; this model has parameters "
                                     f"{sorted(shapes)}.")
            if (not self._backend.owns(value) or not self._backend.is_on_device(value)
                    or tuple(value.shape) != shapes[name] or value.dtype != self._dtype):
                raise StateDictError(
                    f"{what} {name!r} must be a {self.backend} array of shape "
                    f"{shapes[name]} and dtype {_backend.dtype_name(self._dtype)} on "
                    f"{self.device!r}; got {type(value).__name__} "
                    f"{tuple(getattr(value, 'shape', ()))} "
                    f"{getattr(value, 'dtype', '')}. Use load_state_dict to convert.")

    def update_parameters(self, values: Mapping[str, Any]) -> None:
        """Replace some parameters by arrays already in the model's namespace, device, dtype
        and shape (what optimisers do each step; no host round trip, no copy).

        Raises
        ------
        StateDictError
            For an unknown name or an array of another shape, dtype, library or device; then
            no parameter is changed.
        """
        self.check_values(values)
        self._params = {**self._params, **values}  # a new dict: caches keyed on it see it

    def to(self, backend: Any = None, device: Any = None, dtype: Any = None) -> Module:
        """A copy of this model on another backend, device or dtype; ``self`` is unchanged.

        Parameters
        ----------
        backend : str or namespace, optional
            Default: this model's backend.
        device : optional
            Default: this model's device when the backend is unchanged, else the new backend's
            default device.
        dtype : optional
            Default: this model's dtype.
        """
        same_backend = backend is None
        target = _backend.resolve_backend(
            self._backend.xp if same_backend else backend,
            self.device if same_backend and device is None else device,
        )
        new_dtype = target.resolve_dtype(
            _backend.dtype_name(self._dtype) if dtype is None else dtype)
        clone = object.__new__(type(self))  # not copy.copy: that would pickle the parameters
        clone.__dict__.update(self.__dict__)
        clone.__dict__.pop("_grouped", None)  # this model's parameters, grouped
        clone._backend = target
        clone._dtype = new_dtype
        clone._params = {n: target.from_numpy(v, new_dtype)
                         for n, v in self.host_params().items()}
        if self._params_frozen():
            clone._freeze_params()
        clone._placed()
        return clone

    def frozen(self: _M) -> _M:
        """A copy of this model for inference, whose weights cannot be changed in place.

        On the NumPy backend the copy's parameters are read-only arrays over immutable
        memory (NumPy refuses to make them writable again), so that a kernel may derive
        things from them once: the compiled ``numba`` kernel packs them into its panels at
        the copy's first call of each way of splitting a call and keeps the panels while the
        arrays live (about the weights' size again), where for ordinary arrays it packs them
        at every call, as it cannot know that nobody wrote into them (an ONNX Runtime session
        also packs once, when it loads). That is most of a short call's fixed cost:
        ``benchmarks/RESULTS.md``. The copy's results are the same bits as this model's.
        Its copies (:meth:`to` onto NumPy, ``copy.deepcopy``, pickle) are frozen too.
        Replacing its parameters (``load_state_dict``, an optimiser's step) gives it
        ordinary arrays again. On other backends the copy is an ordinary one. ``self`` is
        unchanged.
        """
        clone = cast(_M, self.to())
        clone._freeze_params()
        return clone

    def _freeze_params(self) -> None:
        """Make the NumPy parameters frozen copies (:func:`.kernels._frozen.freeze`)."""
        self._params = {n: freeze(v) if _backend.is_numpy_array(v) else v
                        for n, v in self._params.items()}

    def _params_frozen(self) -> bool:
        """Whether every parameter is frozen (:meth:`frozen`'s, never replaced since)."""
        return bool(self._params) and all(is_frozen(v) for v in self._params.values())

    # -- copies and pickles --------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """What pickle and ``copy.deepcopy`` keep: the backend by name and device (it is
        resolved again when loaded, so a pickle moves between machines), the parameters as
        NumPy arrays, and everything else as it is."""
        state = self.__dict__.copy()
        state.pop("_kernel", None)  # rebuilt by _placed
        state.pop("_grouped", None)  # a cache of the parameters (LSTM._layers)
        state["_backend"] = self._backend.spec()
        state["_dtype"] = _backend.dtype_name(self._dtype)
        state["_params"] = self.host_params()
        state["_frozen"] = self._params_frozen()  # frozen again when loaded
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        backend = _backend.from_spec(state.pop("_backend"))
        dtype = state.pop("_dtype")
        params = state.pop("_params")
        frozen = state.pop("_frozen", False)
        self.__dict__.update(state)
        self._backend = backend
        self._dtype = backend.resolve_dtype(dtype)
        self._set_params(params)
        if frozen:
            self._freeze_params()
        self._placed()

    def _placed(self) -> None:
        """Called once the backend is set, at construction and by :meth:`to`: choose what
        depends on it (a fused kernel, say)."""

    # -- arrays at the edge ------------------------------------------------------------------
    def _as_array(self, value: Any, what: str, kind: str = "real floating") -> Any:
        """Convert a user array to the model's namespace and device.

        NumPy arrays and (nested) Python sequences are copied to the model's device. Arrays of
        the model's namespace must already be on its device. ``kind`` is the dtype kind the
        array must have: ``"real floating"`` (cast to the model's dtype), ``"integral"``
        (converted to int32 when copied from the host) or ``"bool"``.

        Raises
        ------
        BackendMismatchError
            An array of another library, or on another device.
        DTypeError
            Data of another kind (integer or boolean where floats are expected, say).
        """
        b = self._backend
        xp = b.xp
        if b.owns(value):
            if not b.is_on_device(value):
                raise BackendMismatchError(
                    f"{what} is on device {b.device_of(value)!r}, but the model is on "
                    f"{b.device!r}. Move it there first, or build the model on that device "
                    f"(model.to(device=...))."
                )
            if kind == "real floating" and value.dtype == self._dtype:
                return value  # the common case, without isdtype's 1.2 us
            if not xp.isdtype(value.dtype, kind):
                raise self._refuse_dtype(what, value.dtype, kind)
            if kind == "real floating" and value.dtype != self._dtype:
                with b.context():
                    value = xp.astype(value, self._dtype)
            return value
        if _backend.is_host_input(value):
            host = _backend.as_host(value, what)
            if host.dtype.kind not in _HOST_KIND[kind]:
                raise self._refuse_dtype(what, host.dtype, kind)
            target = {"real floating": self._dtype, "integral": xp.int32, "bool": xp.bool}[kind]
            return b.from_numpy(host, target)
        lib = _backend.library_of(value)
        if lib is not None:
            raise BackendMismatchError(
                f"{what} is a {lib} array, but the model runs on backend {self.backend!r}. "
                f"Pass a NumPy array or a {self.backend} array, or build the model with "
                f"backend={lib!r} (or model.to(backend={lib!r}))."
            )
        raise BackendMismatchError(
            f"{what} must be an array (NumPy, a Python sequence, or the model's backend); "
            f"got {type(value).__name__}."
        )

    def _pair(self, value: Any, names: tuple[str, str], expected: Any, *,
              what: str, optional: bool = False, hint: str = "") -> list[Any]:
        """Check a pair of arrays (a state ``(h, c)``, or its gradient) and convert both.

        Each must have shape ``expected`` (or ``expected[k]`` when it is a pair of shapes:
        with a projection ``h`` and ``c`` differ); with ``optional`` either may be None (kept
        as None). ``what`` names the pair in messages, ``hint`` explains ``expected``.
        """
        shapes = list(expected) if expected and isinstance(expected[0], tuple) \
            else [expected, expected]
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ShapeError(f"{what} must be a pair ({names[0]}, {names[1]}); got "
                             f"{type(value).__name__}.")
        out: list[Any] = []
        for name, item, shape in zip(names, value, shapes, strict=True):
            if item is None and optional:
                out.append(None)
                continue
            a = self._as_array(item, name)
            if tuple(a.shape) != tuple(shape):
                raise ShapeError(f"{name} has shape {tuple(a.shape)}; expected {tuple(shape)}"
                                 f"{hint}.")
            out.append(a)
        return out

    def _refuse_dtype(self, what: str, dtype: Any, kind: str) -> DTypeError:
        if kind != "real floating":
            return DTypeError(f"{what} must be {_KIND_WORD[kind]}; got dtype {dtype}.")
        return DTypeError(
            f"{what} has dtype {dtype}; expected real floating data (the model computes in "
            f"{_backend.dtype_name(self._dtype)}). Integer, boolean and complex inputs are "
            "refused rather than guessed at: cast them to a float dtype first."
        )

    def _placement(self) -> str:
        return (f"backend={self.backend!r}, device={self.device!r}, "
                f"dtype={_backend.dtype_name(self._dtype)!r}")

