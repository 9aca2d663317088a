"""Weights in and out of :class:`~lstm_xp.LSTM`: other frameworks, the seed, and files.

Each front-end turns a framework's layout into PyTorch-named NumPy parameters (through
:mod:`lstm_xp.interop`) and builds the model with :meth:`Exchange.from_state_dict`, or the
other way round from :meth:`~lstm_xp.LSTM.state_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import interop
from . import io as model_io
from ._backend import dtype_name, to_numpy
from ._checks import check_flag, check_size
from ._naming import config_of
from ._variants import DEFAULT_OPTIONS
from .errors import ConfigError, StateDictError


class Exchange:
    """Mixin for :class:`~lstm_xp.LSTM`: the ``from_*`` constructors, ``to_*``, save, load."""

    num_layers: int
    bidirectional: bool
    _dtype: Any
    if TYPE_CHECKING:  # provided by LSTM and Module
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...
        def state_dict(self) -> dict[str, Any]: ...
        def config(self) -> dict[str, Any]: ...
        def host_params(self) -> dict[str, Any]: ...

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], *, batch_first: bool = False,
                        backend: Any = "numpy", device: Any = None, dtype: Any = None,
                        **options: Any) -> Any:
        """A model whose sizes, layers and direction are read from the names and shapes of a
        PyTorch-layout ``state_dict``, holding its weights.

        Parameters
        ----------
        state_dict : mapping
            ``weight_ih_l0`` (4H, I), ``weight_hh_l0`` (4H, H), ... as
            :meth:`~lstm_xp.LSTM.state_dict` returns (NumPy arrays or arrays of ``backend``).
        batch_first : bool, default False
            Not recorded in a state dict: the layout of the new model's calls.
        backend, device : optional
            Where the model runs (see :class:`~lstm_xp.LSTM`).
        dtype : optional
            Default: the weights' own dtype.
        **options
            Other constructor arguments (``kernel=``, ``dropout=``, ``clip=``,
            ``input_forget=``, ``direction=``, ...); ``proj_size`` and ``peephole`` are read
            from the names (``weight_hr_l0``, ``peephole_l0``).
        """
        if not isinstance(state_dict, Mapping):
            raise StateDictError(f"state_dict must be a mapping of names to arrays; got "
                                 f"{type(state_dict).__name__}.")
        params = {k: to_numpy(v) for k, v in state_dict.items()}
        config = config_of(params)
        if dtype is None:
            dtype = dtype_name(next(iter(params.values())).dtype)
        for key in ("proj_size", "peephole", "layer_norm"):  # given by the names
            if key in options and options.pop(key) != config[key]:
                raise StateDictError(f"{key}={config[key]!r} by the state dict's names, but "
                                     f"{key} was given otherwise.")
        model = cls(config["input_size"], config["hidden_size"], config["num_layers"],
                    bias=config["bias"], batch_first=batch_first,
                    bidirectional=config["bidirectional"], backend=backend, device=device,
                    dtype=dtype, seed=0, proj_size=config["proj_size"],
                    peephole=config["peephole"], layer_norm=config["layer_norm"], **options)
        model.load_state_dict(params)  # type: ignore[attr-defined]
        return model

    # -- PyTorch -----------------------------------------------------------------------------
    @classmethod
    def from_torch(cls, module_or_state_dict: Any, *, backend: Any = "numpy", device: Any = None,
                   dtype: Any = None) -> Any:
        """A model with the weights of a ``torch.nn.LSTM`` (or its ``state_dict()``).

        Sizes, layers, direction and ``batch_first`` come from the module (from the names and
        shapes of a state dict); ``dtype`` defaults to the weights' own.
        """
        config, params = interop.from_torch_module(module_or_state_dict)
        return cls.from_state_dict(params, batch_first=config.get("batch_first", False),
                                   backend=backend, device=device, dtype=dtype)

    def to_torch(self) -> Any:
        """A ``torch.nn.LSTM`` (on the CPU) with this model's configuration and weights
        (``proj_size`` included)."""
        self._only_options("torch.nn.LSTM", allowed={"proj_size"})
        return interop.to_torch_module(self.config(), self.host_params())

    def _only_options(self, target: str, allowed: frozenset[str] | set[str] = frozenset()) -> None:
        """Refuse to export options that ``target`` has no equivalent for."""
        config = self.config()
        used = {k for k, v in DEFAULT_OPTIONS.items() if config[k] != v}
        extra = sorted(used - set(allowed))
        if extra:
            raise ConfigError(f"{target} has no equivalent of {', '.join(extra)}; this model "
                              "cannot be exported there without changing what it computes.")

    # -- Keras 3 -----------------------------------------------------------------------------
    @classmethod
    def from_keras(cls, layers: Any, *, batch_first: bool = True, backend: Any = "numpy",
                   device: Any = None, dtype: Any = None) -> Any:
        """A model from Keras 3 layers (``LSTM`` or ``Bidirectional(LSTM)``, one per stacked
        layer) or their ``get_weights()`` lists ``[kernel, recurrent_kernel, bias]``.

        Keras' single bias becomes ``bias_ih`` (``bias_hh`` is zero). ``batch_first``
        defaults to True because Keras layers take ``(B, T, I)``.
        """
        _, params = interop.from_keras_weights(layers)
        return cls.from_state_dict(params, batch_first=batch_first, backend=backend,
                                   device=device, dtype=dtype)

    def to_keras(self) -> list[list[Any]]:
        """Per layer, the NumPy arrays ``layer.set_weights()`` takes: ``[kernel,
        recurrent_kernel, bias]``, or six (forward then backward) for ``Bidirectional``.
        The bias is ``bias_ih + bias_hh``."""
        self._only_options("Keras' LSTM layer")
        return interop.to_keras_weights(self.host_params(), self.num_layers,
                                        self.bidirectional)

    # -- Flax --------------------------------------------------------------------------------
    @classmethod
    def from_flax(cls, cells: Any, *, bidirectional: bool = False, batch_first: bool = False,
                  backend: Any = "numpy", device: Any = None, dtype: Any = None) -> Any:
        """A model from ``flax.linen.LSTMCell`` parameters: one dict, or a list of them per
        layer and direction in PyTorch's order (layer 0 forward, layer 0 backward, ...)."""
        cells = [cells] if isinstance(cells, dict) else list(cells)
        params = interop.from_flax_params(cells, bidirectional)
        return cls.from_state_dict(params, batch_first=batch_first, backend=backend,
                                   device=device, dtype=dtype)

    def to_flax(self) -> list[dict[str, Any]]:
        """``flax.linen.LSTMCell`` parameter dicts, one per layer and direction in PyTorch's
        order. Flax's cells have one bias (on the ``h*`` kernels): ``bias_ih + bias_hh``."""
        from ._naming import suffixes

        self._only_options("Flax's LSTMCell")
        params = self.host_params()
        return [interop.to_flax_params(params, s)
                for s in suffixes(self.num_layers, self.bidirectional)]

    # -- the seed ----------------------------------------------------------------------------
    @classmethod
    def from_seed(cls, source: Any, *, backend: Any = "numpy", device: Any = None,
                  dtype: Any = None) -> Any:
        """A one-layer model from the seed's ``Wf, Wi, WC, Wo, bf, bi, bC, bo`` (a mapping or
        an object with those attributes, such as the seed's own ``LSTM``)."""
        return cls.from_state_dict(interop.from_seed_params(source), backend=backend,
                                   device=device, dtype=dtype)

    def to_seed(self) -> dict[str, Any]:
        """The seed's layout (one layer, one direction only): ``Wf, Wi, WC, Wo`` (H, H+I)
        and ``bf, bi, bC, bo`` (H, 1), with ``b? = bias_ih + bias_hh``."""
        self._only_options("the seed's LSTM")
        if self.num_layers != 1 or self.bidirectional:
            raise ConfigError("the seed's layout holds one layer and one direction; this model "
                              f"has num_layers={self.num_layers}, "
                              f"bidirectional={self.bidirectional}.")
        return interop.to_seed_params(self.host_params())

    # -- ONNX --------------------------------------------------------------------------------
    def to_onnx(self, path: Any, *, opset: int = 14, initial_state: bool = False) -> Any:
        """Write an ONNX model built on the standard ``LSTM`` operator to ``path`` (atomically).

        Its first output ``Y`` has the shape and layout of this model's ``outputs``; ``Y_h``
        and ``Y_c`` are ``(D*L, B, H)``. With ``initial_state`` it takes ``h0`` and ``c0``
        inputs, else the state starts at zero. Returns the path.
        """
        check_size("opset", opset)
        check_flag("initial_state", initial_state)
        if opset < 14:
            raise ConfigError(f"opset must be 14 or newer (lstm-xp writes version 14 of the LSTM "
                              f"operator); got {opset}.")
        if self.config()["proj_size"]:
            raise ConfigError("ONNX's LSTM operator has no projection (proj_size); export the "
                              "model with torch.onnx from to_torch(), or build it without.")
        self._only_options("ONNX's LSTM operator",
                           allowed={"peephole", "clip", "input_forget", "direction"})
        model = interop.to_onnx_model(self.host_params(), self.config(), opset,
                                      initial_state)
        return model_io.write_atomic(path, model.SerializeToString())

    @classmethod
    def from_onnx(cls, path: Any, *, backend: Any = "numpy", device: Any = None,
                  dtype: Any = None) -> Any:
        """A model from the weights of an ONNX file made of standard ``LSTM`` nodes."""
        config, params = interop.read_onnx(path)
        return cls.from_state_dict(params, batch_first=config["batch_first"], backend=backend,
                                   device=device, dtype=dtype, clip=config["clip"],
                                   input_forget=config["input_forget"],
                                   direction=config["direction"])

    # -- lstm-xp's own files -----------------------------------------------------------------
    def save(self, path: Any) -> Any:
        """Save weights and configuration to one ``.npz`` file, atomically; see
        :mod:`lstm_xp.io`. Returns the path."""
        return model_io.save(path, self.host_params(), self.config(),
                             dtype_name(self._dtype))

    @classmethod
    def load(cls, path: Any, *, backend: Any = "numpy", device: Any = None,
             dtype: Any = None) -> Any:
        """Load a model written by :meth:`save` onto ``backend``/``device``.

        Raises
        ------
        lstm_xp.ModelFileError
            Truncated, corrupted, pickled, or written by a newer format version.
        OSError
            The file cannot be read.
        """
        schema, params = model_io.load(path)
        return cls.from_state_dict(params, batch_first=schema["batch_first"], backend=backend,
                                   device=device, dtype=dtype or schema["dtype"],
                                   **{k: schema[k] for k in model_io.OPTION_KEYS})
