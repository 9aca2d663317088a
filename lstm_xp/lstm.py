"""The user-facing sequence model, :class:`LSTM`: stacked, optionally bidirectional, over
whole sequences, with training by backpropagation through time.

A call validates and converts the caller's arrays at the edge (:mod:`lstm_xp._inputs`), hands
them to the model's kernel (:mod:`lstm_xp.kernels`, chosen once at construction) in the
library's layout, and converts the results back. The seed's one-step API comes from
:mod:`lstm_xp._seed_api`, the framework and file front-ends from :mod:`lstm_xp._exchange`.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

from ._checks import check_flag, check_real, check_size
from ._exchange import Exchange
from ._init import dropout_generator
from ._inputs import CallLayout, reset_factor, sequence_input, sequence_lengths
from ._module import Module, on_device, out_of_memory
from ._naming import group_layers, layer_inputs, param_shapes
from ._seed_api import SeedAPI
from ._training import Tape, Training
from ._typing import Array, LayerWeights
from ._variants import DEFAULT_OPTIONS, variant_options
from .cell import LSTMCell
from .errors import AllocationError, ConfigError
from .kernels import select_kernel

__all__ = ["LSTM", "LSTMCell", "Tape"]


@dataclass
class _Run:
    """A forward pass's validated inputs: x (T, B, I), h0 and c0 (D*L, B, H), lengths (B,) or
    None, the reset factor (1, B, 1) or None, and the caller's layout."""

    x: Array
    h0: Array
    c0: Array
    lengths: Array | None
    keep: Array | None
    layout: CallLayout


class LSTM(Module, Training, SeedAPI, Exchange):
    """A multi-layer, optionally bidirectional LSTM over whole sequences.

    Written once against the Python Array API standard: the same code runs on NumPy (the
    default), CuPy, PyTorch, JAX and array-api-strict; the backend is chosen here, once.
    Shapes, parameter names and gate order follow ``torch.nn.LSTM``.

    Parameters
    ----------
    input_size : int
        Features per time step, ``I``.
    hidden_size : int
        Hidden units per layer and direction, ``H``.
    num_layers : int, default 1
        Stacked layers, ``L``. Layer ``k > 0`` takes the ``D*H`` outputs of layer ``k - 1``.
    bias : bool, default True
        Whether each layer has the biases ``bias_ih`` and ``bias_hh`` (4H,).
    batch_first : bool, default False
        Inputs and outputs are ``(B, T, features)`` instead of ``(T, B, features)``. States are
        ``(D*L, B, H)`` either way, as in PyTorch.
    bidirectional : bool, default False
        Add a backward direction per layer (``D = 2``); outputs concatenate both directions.
    backend : str or namespace, default "numpy"
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ``"array_api_strict"``, ``"auto"``
        (CuPy when a CUDA device runs a test kernel, otherwise NumPy, logged at INFO level), or
        an Array API namespace module.
    device : optional
        In the backend's terms: CuPy an int or ``"cuda:N"``; torch ``"cpu"``/``"cuda:N"``;
        array-api-strict a ``Device``. Default: the backend's default device.
    dtype : {"float32", "float64", "float16"}, default "float32"
        float16 only where the backend has it (not array-api-strict).
    init : {"xavier", "pytorch", "keras"}, default "xavier"
        Weight initialiser, see :func:`lstm_xp._init.init_layer`.
    seed : int, optional
        Seed of the host NumPy Generator the weights are drawn from: the same seed gives
        bit-identical weights on every backend and device.
    kernel : str, default "auto"
        ``"auto"`` runs the backend's fastest installed kernel (``"numpy-fused"``,
        ``"cupy-fused"``, ``"jax-jit"``), chosen once here; ``"pure"`` always runs the pure
        Array-API reference; any name ``lstm-xp backends`` lists for the backend picks that
        kernel. All give the same results to floating-point rounding. :attr:`kernel` names
        the one in use.
    dropout : float, default 0
        Probability of zeroing each output of every layer but the last, in
        :meth:`forward_train` only (like ``torch.nn.LSTM``'s ``dropout``); masks come from a
        host generator seeded from ``seed``. Inference never drops.
    bias_init : {"default", "zeros", "unit_forget", "chrono"}, default "default"
        Gate biases: the initialiser's own, zeros, forget gate 1, or chrono initialisation
        (Tallec & Ollivier, 2018) with time scales up to ``chrono_max`` steps, which lets an
        LSTM learn dependencies over hundreds of steps; see :func:`lstm_xp._init.gate_biases`.
    chrono_max : float, optional
        Longest time scale for ``bias_init="chrono"``, e.g. the sequence length.
    proj_size : int, default 0
        LSTM with projections (LSTMP, as ``torch.nn.LSTM``'s ``proj_size``): the hidden
        state ``h`` is ``(o * tanh(c)) @ weight_hr.T`` of size ``P = proj_size < H``, with a
        ``weight_hr_l{k}`` (P, H) per layer and direction; outputs and ``h`` have P features,
        ``c`` keeps H.
    peephole : bool, default False
        Peephole connections as ONNX defines them: ``peephole_l{k}`` (3H,) holds
        ``p_i, p_f, p_o``; the input and forget gates see ``c_{t-1}``, the output gate
        ``c_t``. They start at zero.
    clip : float, optional
        Cell clip as ONNX's ``clip``: every gate's pre-activation is clipped to
        ``[-clip, clip]`` before its nonlinearity.
    input_forget : bool, default False
        Coupled input and forget gates (ONNX's ``input_forget``): ``f = 1 - i``.
    layer_norm : bool, default False
        Layer normalisation (Ba et al. 2016) of the gate pre-activations and of the cell
        state before the output tanh, with learned gains ``ln_gates_weight_l{k}`` (4H,),
        ``ln_cell_weight_l{k}`` (H,) and biases ``ln_gates_bias_l{k}``, ``ln_cell_bias_l{k}``;
        see :mod:`lstm_xp._variants`. Combines with ``proj_size``, not with peepholes, clip
        or coupled gates.
    direction : {"forward", "reverse"}, default "forward"
        ``"reverse"``: a unidirectional model that reads each sequence from its last step to
        its first (ONNX's ``direction="reverse"``); outputs stay aligned with the input's
        time axis. For both directions use ``bidirectional=True``.

    The variants (``proj_size``, ``peephole``, ``clip``, ``input_forget``, ``layer_norm``)
    run on the pure
    kernel (:attr:`kernel` says so), with training; ``direction`` runs on every kernel.

    Notes
    -----
    Inputs may be arrays of the model's namespace on its device, NumPy arrays, or nested Python
    sequences; the latter two are copied to the model's device. Floating inputs of another
    precision are cast to ``dtype``; integer, boolean and complex inputs are refused.

    Examples
    --------
    >>> from lstm_xp import LSTM
    >>> model = LSTM(3, 5, num_layers=2, seed=0)
    >>> outputs, (h_n, c_n) = model([[0.1, 0.2, 0.3]] * 4)   # unbatched (T=4, I=3)
    >>> outputs.shape, h_n.shape
    ((4, 5), (2, 5))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        backend: Any = "numpy",
        device: Any = None,
        dtype: Any = "float32",
        init: str = "xavier",
        seed: int | None = None,
        kernel: str = "auto",
        dropout: float = 0.0,
        bias_init: str = "default",
        chrono_max: float | None = None,
        proj_size: int = 0,
        peephole: bool = False,
        clip: float | None = None,
        input_forget: bool = False,
        direction: str = "forward",
        layer_norm: bool = False,
    ) -> None:
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.bias = check_flag("bias", bias)
        self.batch_first = check_flag("batch_first", batch_first)
        self.bidirectional = check_flag("bidirectional", bidirectional)
        self.dropout = check_real("dropout", dropout, 0.0, 1.0)
        self.variants = variant_options(self.hidden_size, proj_size, peephole, clip,
                                        input_forget, layer_norm)
        if direction not in ("forward", "reverse"):
            raise ConfigError(f"direction must be 'forward' or 'reverse'; got {direction!r}. "
                              "For both directions pass bidirectional=True.")
        if direction == "reverse" and self.bidirectional:
            raise ConfigError("direction='reverse' makes a unidirectional model read "
                              "backwards; a bidirectional model already has both directions.")
        self.direction = direction
        super().__init__(backend, device, dtype, init, seed)
        self._init_params(self._layer_inputs(), self.hidden_size, self.bias, bias_init,
                          chrono_max, self.proj_size, self.peephole, self.variants.layer_norm)
        self._dropout_rng = dropout_generator(seed)
        self._kernel_request = kernel
        self._placed()

    def _placed(self) -> None:
        if hasattr(self, "_dropout_rng"):  # a copy made by to() gets its own dropout stream
            self._dropout_rng = copy.deepcopy(self._dropout_rng)
        self._kernel = select_kernel(self._backend, self._kernel_request,
                                     reverse=self.direction == "reverse",
                                     variants=self.variants)
        # The kernel's shorter way through (see LayerwiseKernel.plain), for the models it
        # covers: sequences as (T, B, I), no projection.
        plain = getattr(self._kernel, "plain", None)
        self._plain = plain if not (self.batch_first or self.proj_size) else None
        self._identity = object()  # what this model's tapes are marked with

    @property
    def kernel(self) -> str:
        """Name of the kernel this model runs (``"numpy-fused"``, ``"pure"``, ...), chosen at
        construction; ``lstm-xp backends`` lists every kernel per backend."""
        return self._kernel.name

    @property
    def num_directions(self) -> int:
        """``D``: 2 for a bidirectional model, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def proj_size(self) -> int:
        """``P``, the size of the projected hidden state, or 0 (no projection)."""
        return self.variants.proj_size

    @property
    def peephole(self) -> bool:
        return self.variants.peephole

    @property
    def clip(self) -> float | None:
        return self.variants.clip

    @property
    def input_forget(self) -> bool:
        return self.variants.input_forget

    @property
    def output_size(self) -> int:
        """Features of ``h`` per direction: ``proj_size`` if set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def config(self) -> dict[str, Any]:
        """The sizes, layout and options that, with :meth:`state_dict`, define the model:
        ``input_size``, ``hidden_size``, ``num_layers``, ``bias``, ``batch_first``,
        ``bidirectional``, ``proj_size``, ``peephole``, ``clip``, ``input_forget``,
        ``direction``, ``layer_norm``."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias,
                "batch_first": self.batch_first, "bidirectional": self.bidirectional,
                **self.options()}

    def options(self) -> dict[str, Any]:
        """The options beyond the sizes (what :meth:`from_state_dict` cannot read from the
        weights' names): ``proj_size``, ``peephole``, ``clip``, ``input_forget``,
        ``direction``, ``layer_norm``."""
        return {"proj_size": self.proj_size, "peephole": self.peephole, "clip": self.clip,
                "input_forget": self.input_forget, "direction": self.direction,
                "layer_norm": self.variants.layer_norm}

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.options().items()
                        if v != DEFAULT_OPTIONS[k])
        return (f"LSTM({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bias={self.bias}, batch_first={self.batch_first}, "
                f"bidirectional={self.bidirectional}{extra}, {self._placement()})")

    # -- parameters --------------------------------------------------------------------------
    def _layer_inputs(self) -> list[tuple[str, int]]:
        return layer_inputs(self.input_size, self.hidden_size, self.num_layers,
                            self.bidirectional, self.proj_size)

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        return param_shapes(self.input_size, self.hidden_size, self.num_layers,
                            self.bidirectional, self.bias, self.proj_size, self.peephole,
                            self.variants.layer_norm)

    def _layers(self) -> list[list[LayerWeights]]:
        """Weights grouped per layer and direction: ``(weight_ih, weight_hh, bias_ih,
        bias_hh)``, the biases None without ``bias``.

        Grouped again only when the parameters were replaced (grouping took 3.7 us, a tenth
        of a small call's Python): the cache holds the dict of parameters it was made from,
        which is replaced whole, never changed in place (:class:`.Module`); holding it, no
        other dict can take its identity. (Keyed on the parameters' identities, the check
        took 0.7 us of a 20 us call.)"""
        params = self._params
        cached = self.__dict__.get("_grouped")
        if cached is None or cached[0] is not params:
            cached = (params, group_layers(params, self.num_layers, self.bidirectional))
            self._grouped = cached
        return cached[1]

    # -- whole sequences ---------------------------------------------------------------------
    def __call__(
        self,
        X: Any,
        state: tuple[Any, Any] | None = None,
        lengths: Any = None,
        *,
        mask: Any = None,
        reset: Any = None,
    ) -> tuple[Array, tuple[Array, Array]]:
        """Run the model over a sequence.

        Parameters
        ----------
        X : array
            ``(T, B, I)``, or ``(B, T, I)`` with ``batch_first``, or unbatched ``(T, I)``.
        state : (h0, c0), optional
            Each ``(D*L, B, H)``, or ``(D*L, H)`` for unbatched input. Default: zeros.
        lengths : integer array, shape (B,), optional
            Valid steps of each sequence, 0..T, in any order (no sorting needed); a Python int
            for unbatched input. Steps past a sequence's length are ignored: their outputs are
            zero, ``h_n``/``c_n`` hold the state at the sequence's own last valid step, and the
            backward direction starts there, exactly as for PyTorch's packed sequences. A
            length of 0 leaves that sequence's state as it came in.
        mask : boolean array, shape (B, T), optional
            Keras-style right-padded mask (``True`` for valid steps, then only ``False``), an
            alternative to ``lengths``: ``(T,)`` for unbatched input, ``(B, T)`` whatever
            ``batch_first`` says. Giving both ``lengths`` and ``mask`` is an error.
        reset : boolean array, shape (B,), optional
            For serving many streams in one batch: zero the incoming state of the sequences
            marked ``True`` (those that start anew in this call) before running.

        Returns
        -------
        outputs : array
            ``(T, B, D*H)`` (``(B, T, D*H)`` with ``batch_first``; ``(T, D*H)`` unbatched):
            the last layer's hidden state at every step, forward direction first.
        (h_n, c_n) : arrays
            ``(D*L, B, H)`` (``(D*L, H)`` unbatched): the state after the last step of every
            layer and direction, indexed ``layer * D + direction``.

        Notes
        -----
        Streaming: for a unidirectional model, feeding a sequence in chunks and passing each
        call's ``(h_n, c_n)`` as the next call's ``state`` gives the same outputs as one call
        over the whole sequence, for any split.
        """
        plain = self._plain
        if plain is not None and mask is None and reset is None:
            try:
                out = plain(X, self._layers(), state, lengths)
            except AllocationError:
                raise
            except MemoryError as exc:
                raise out_of_memory(self, "__call__", exc) from exc
            if out is not None:
                return out
        return self._forward(X, state, lengths, mask, reset)

    @functools.partial(on_device, name="__call__")
    def _forward(self, X: Any, state: tuple[Any, Any] | None, lengths: Any, mask: Any,
                 reset: Any) -> tuple[Array, tuple[Array, Array]]:
        """:meth:`__call__`'s full path: every input checked and converted, any kernel."""
        xp = self.xp
        run = self._prepare(X, state, lengths, mask, reset)
        y, h_n, c_n = self._kernel.forward(xp, run.x, self._layers(), run.h0, run.c0,
                                           run.lengths)
        layout = run.layout
        return layout.sequence_out(xp, y), (layout.state_out(xp, h_n),
                                            layout.state_out(xp, c_n))

    def _prepare(self, X: Any, state: Any, lengths: Any, mask: Any, reset: Any) -> _Run:
        """Validate and convert everything a forward pass takes (see :meth:`__call__`)."""
        xp = self.xp
        x, layout = sequence_input(self, X, self.batch_first, self.input_size)
        steps, batch = x.shape[0], x.shape[1]
        stacked = self.num_directions * self.num_layers
        if state is None:
            h0 = xp.zeros((stacked, batch, self.output_size), dtype=self.dtype,
                          device=self.device)
            c0 = h0 if not self.proj_size else \
                xp.zeros((stacked, batch, self.hidden_size), dtype=self.dtype,
                         device=self.device)
        else:
            expected = (layout.state_shape(stacked, batch, self.output_size),
                        layout.state_shape(stacked, batch, self.hidden_size))
            hint = (f" (num_directions*num_layers, {'batch, ' if layout.batched else ''}"
                    f"{'proj_size' if self.proj_size else 'hidden_size'} for h0, hidden_size "
                    "for c0)")
            h0, c0 = (layout.state_in(xp, a) for a in
                      self._pair(state, ("h0", "c0"), expected, what="state", hint=hint))
        keep = None
        if reset is not None:
            keep = reset_factor(self, reset, batch, layout.batched)
            h0, c0 = h0 * keep, c0 * keep
        valid = None if lengths is None and mask is None else \
            sequence_lengths(self, lengths, mask, steps, batch, layout.batched)
        return _Run(x, h0, c0, valid, keep, layout)

    # -- training ----------------------------------------------------------------------------
