"""The user-facing models: :class:`LSTM` (stacked, optionally bidirectional, whole sequences)
and :class:`LSTMCell` (one layer, one step).

Both validate and convert arrays at the edge, then hand pure Array-API math
(:mod:`lstm_xp._functional`, or a fused kernel chosen once at construction) arrays of one
namespace on one device. Results come back in the model's namespace, on its device.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import interop
from . import io as model_io
from ._backend import dtype_name, to_numpy
from ._backprop import lstm_backward, lstm_forward_train
from ._functional import LayerWeights, cell_step, summed_bias
from ._init import dropout_generator, dropout_mask
from ._module import Module, check_size
from .errors import ConfigError, LengthsError, ShapeError, TapeError
from .kernels import select_forward, select_scan, select_train

Array = Any


@dataclass
class _Run:
    """A forward pass's validated inputs: x (T, B, I), h0 and c0 (D*L, B, H), lengths (B,) or
    None, the reset factor (1, B, 1) or None, and whether the input was batched."""

    x: Array
    h0: Array
    c0: Array
    lengths: Array | None
    keep: Array | None
    batched: bool


@dataclass
class Tape:
    """What :meth:`LSTM.backward` needs from :meth:`LSTM.forward_train`.

    ``layers[k][d]`` is the :class:`~lstm_xp._backprop.LayerTape` of layer ``k``, direction
    ``d`` (a :class:`~lstm_xp.kernels.numpy_train.FusedTape` on the fused NumPy path);
    ``dropout_masks`` the inter-layer masks used; ``run`` the validated inputs;
    ``scan_backward`` the backward of the layer scan that wrote the tapes.
    """

    layers: list[list[Any]]
    dropout_masks: list[Array | None] | None
    run: _Run
    outputs_shape: tuple[int, ...]
    scan_backward: Callable[..., Any]
    used: bool = False


class LSTM(Module):
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
    kernel : {"auto", "pure"}, default "auto"
        ``"auto"`` runs the backend's fused kernel where one exists (NumPy, CuPy), chosen once
        here; ``"pure"`` always runs the pure Array-API reference. Both give the same results
        to floating-point rounding.
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
    ) -> None:
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1); got {dropout!r}.")
        self.dropout = float(dropout)
        super().__init__(backend, device, dtype, init, seed)
        self._init_params(self._layer_specs(), self.hidden_size, self.bias, bias_init,
                          chrono_max)
        self._dropout_rng = dropout_generator(seed)
        self.kernel = kernel
        self._placed()

    def _placed(self) -> None:
        if hasattr(self, "_dropout_rng"):  # a copy made by to() gets its own dropout stream
            self._dropout_rng = copy.deepcopy(self._dropout_rng)
        self._scan = select_scan(self._backend, self.kernel)
        self._forward = select_forward(self._backend, self.kernel)
        self._scan_train, self._scan_backward = select_train(self._backend, self.kernel)

    @property
    def num_directions(self) -> int:
        """``D``: 2 for a bidirectional model, else 1."""
        return 2 if self.bidirectional else 1

    def __repr__(self) -> str:
        return (f"LSTM({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bias={self.bias}, batch_first={self.batch_first}, "
                f"bidirectional={self.bidirectional}, {self._placement()})")

    # -- parameters --------------------------------------------------------------------------
    def _layer_specs(self) -> list[tuple[str, int]]:
        """``(name suffix, input size)`` per layer and direction, in torch's order."""
        specs = []
        for k in range(self.num_layers):
            size = self.input_size if k == 0 else self.num_directions * self.hidden_size
            specs.append((f"_l{k}", size))
            if self.bidirectional:
                specs.append((f"_l{k}_reverse", size))
        return specs

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        gates = 4 * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        for suffix, size in self._layer_specs():
            shapes["weight_ih" + suffix] = (gates, size)
            shapes["weight_hh" + suffix] = (gates, self.hidden_size)
            if self.bias:
                shapes["bias_ih" + suffix] = (gates,)
                shapes["bias_hh" + suffix] = (gates,)
        return shapes

    def _layers(self) -> list[list[LayerWeights]]:
        """Weights grouped per layer and direction: ``(weight_ih, weight_hh, bias_ih,
        bias_hh)``, the biases None without ``bias``."""
        p = self._params
        grouped: list[list[LayerWeights]] = [[] for _ in range(self.num_layers)]
        for k, (suffix, _) in enumerate(self._layer_specs()):
            grouped[k // self.num_directions].append(
                (p["weight_ih" + suffix], p["weight_hh" + suffix],
                 p.get("bias_ih" + suffix), p.get("bias_hh" + suffix)))
        return grouped

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
        with self._backend.context():
            run = self._prepare(X, state, lengths, mask, reset)
            y, h_n, c_n = self._forward(self.xp, run.x, self._layers(), run.h0, run.c0,
                                        self._scan, run.lengths)
            return self._user_layout(y, h_n, c_n, run.batched)

    def _prepare(self, X: Any, state: Any, lengths: Any, mask: Any, reset: Any) -> _Run:
        """Validate and convert everything a forward pass takes (see :meth:`__call__`)."""
        x, batched = self._sequence_input(X)
        steps, batch = x.shape[0], x.shape[1]
        h0, c0 = self._initial_state(state, batch, batched)
        keep = None
        if reset is not None:
            keep = self._reset_input(reset, batch, batched)
            h0, c0 = h0 * keep, c0 * keep
        valid = self._lengths_input(lengths, mask, steps, batch, batched)
        return _Run(x, h0, c0, valid, keep, batched)

    def _user_layout(self, y: Array, h_n: Array, c_n: Array,
                     batched: bool) -> tuple[Array, tuple[Array, Array]]:
        """(T, B, D*H) outputs and (D*L, B, H) states -> the layout the caller used."""
        if not batched:
            return y[:, 0, :], (h_n[:, 0, :], c_n[:, 0, :])
        if self.batch_first:
            y = self.xp.permute_dims(y, (1, 0, 2))
        return y, (h_n, c_n)

    # -- training ----------------------------------------------------------------------------
    def forward_train(
        self,
        X: Any,
        state: tuple[Any, Any] | None = None,
        lengths: Any = None,
        *,
        mask: Any = None,
        reset: Any = None,
    ) -> tuple[Array, tuple[Array, Array], Tape]:
        """:meth:`__call__` for training: also returns the tape :meth:`backward` needs.

        Applies inter-layer ``dropout``. On NumPy (``kernel="auto"``) it runs the fused
        training pass of :mod:`lstm_xp.kernels.numpy_train`; elsewhere, and with
        ``kernel="pure"``, the pure Array-API path. Both give the same gradients.

        Memory: the pure tape holds, per layer and direction, the gate activations
        (4*T*B*H values), the cell states (T*B*H) and the hidden state each step started from
        (T*B*H), plus references to the layer inputs and the weights used: 6*T*B*H values.
        The fused NumPy tape holds the activations (4*T*B*H), the cell states and their tanh
        (2*T*B*H) and a copy of each step's input and hidden state (T*B*(I + H), rows padded to
        a multiple of 8): about 7*T*B*H + T*B*I values. Its arrays are kept by the model after
        ``backward`` and reused by the next training step (no more than one step's peak).

        Returns
        -------
        outputs, (h_n, c_n)
            As :meth:`__call__`.
        tape : Tape
        """
        xp = self.xp
        with self._backend.context():
            run = self._prepare(X, state, lengths, mask, reset)
            masks = self._dropout_masks(run.x.shape[0], run.x.shape[1])
            y, h_n, c_n, tapes = lstm_forward_train(xp, run.x, self._layers(), run.h0, run.c0,
                                                    run.lengths, masks, self._scan_train)
            outputs, final = self._user_layout(y, h_n, c_n, run.batched)
        return outputs, final, Tape(tapes, masks, run, tuple(outputs.shape),
                                    self._scan_backward)

    def _dropout_masks(self, steps: int, batch: int) -> list[Array | None] | None:
        if self.dropout == 0.0 or self.num_layers == 1:
            return None
        shape = (steps, batch, self.num_directions * self.hidden_size)
        return [self._backend.from_numpy(dropout_mask(self._dropout_rng, shape, self.dropout),
                                         self.dtype) for _ in range(self.num_layers - 1)]

    def backward(
        self, tape: Tape, d_outputs: Any, d_state: tuple[Any, Any] | None = None
    ) -> tuple[Array, tuple[Array, Array], dict[str, Array]]:
        """Backpropagation through time.

        Parameters
        ----------
        tape : Tape
            From :meth:`forward_train`. The gradients are those of that forward pass, with the
            weights it used, even if the parameters have changed since. A tape serves one
            backward pass (a second raises :class:`~lstm_xp.errors.TapeError`): on NumPy its
            arrays are reused by the next training step.
        d_outputs : array
            Gradient of the loss with respect to ``outputs``, in their shape and layout.
        d_state : (dh_n, dc_n), optional
            Gradient with respect to ``(h_n, c_n)``; either may be None (zero).

        Returns
        -------
        dX : array
            Gradient with respect to ``X``, in ``X``'s layout.
        (dh0, dc0) : arrays
            Gradient with respect to the initial state, in the state's layout (zero where
            ``reset`` zeroed it).
        grads : dict
            Gradient of every parameter, keyed like :meth:`state_dict`.

        Notes
        -----
        Truncated BPTT: run a long sequence in chunks, passing each chunk's ``(h_n, c_n)`` as
        the next chunk's ``state``. Each chunk's ``backward`` stops at its first step, so the
        gradient is cut at chunk boundaries while the state carries on::

            state = None
            for chunk in chunks:                      # (T_chunk, B, I) each
                out, state, tape = model.forward_train(chunk, state)
                loss, d_out = loss_fn(out)
                _, _, grads = model.backward(tape, d_out)
                optimiser.step([grads])
        """
        xp = self.xp
        run = tape.run
        if tape.used:
            raise TapeError("this tape has already been through backward(); a tape serves one "
                            "backward pass: run forward_train again, or sum the output "
                            "gradients and call backward once.")
        with self._backend.context():
            dy = self._as_array(d_outputs, "d_outputs")
            if tuple(dy.shape) != tape.outputs_shape:
                raise ShapeError(f"d_outputs has shape {tuple(dy.shape)}; expected the outputs' "
                                 f"shape {tape.outputs_shape}.")
            if not run.batched:
                dy = xp.expand_dims(dy, axis=1)
            elif self.batch_first:
                dy = xp.permute_dims(dy, (1, 0, 2))
            dh_n, dc_n = self._state_gradient(d_state, run)
            tape.used = True  # the fused NumPy backward recycles the tape's arrays
            dx, dh0, dc0, layer_grads = lstm_backward(xp, tape.layers, dy, dh_n, dc_n,
                                                      tape.dropout_masks, tape.scan_backward)
            if run.keep is not None:
                dh0, dc0 = dh0 * run.keep, dc0 * run.keep
            grads: dict[str, Array] = {}
            for k, (suffix, _) in enumerate(self._layer_specs()):
                g = layer_grads[k // self.num_directions][k % self.num_directions]
                grads["weight_ih" + suffix] = g["weight_ih"]
                grads["weight_hh" + suffix] = g["weight_hh"]
                if self.bias:
                    grads["bias_ih" + suffix] = g["bias"]
                    grads["bias_hh" + suffix] = g["bias"]
            if not run.batched:
                return dx[:, 0, :], (dh0[:, 0, :], dc0[:, 0, :]), grads
            if self.batch_first:
                dx = xp.permute_dims(dx, (1, 0, 2))
            return dx, (dh0, dc0), grads

    def _state_gradient(self, d_state: Any, run: _Run) -> tuple[Array | None, Array | None]:
        if d_state is None:
            return None, None
        if not isinstance(d_state, (tuple, list)) or len(d_state) != 2:
            raise ShapeError(f"d_state must be a pair (dh_n, dc_n); got {type(d_state).__name__}.")
        expected = tuple(run.h0.shape) if run.batched else (run.h0.shape[0], run.h0.shape[2])
        out = []
        for name, value in zip(("dh_n", "dc_n"), d_state, strict=True):
            if value is None:
                out.append(None)
                continue
            a = self._as_array(value, name)
            if tuple(a.shape) != expected:
                raise ShapeError(f"{name} has shape {tuple(a.shape)}; expected {expected}.")
            out.append(a if run.batched else self.xp.expand_dims(a, axis=1))
        return out[0], out[1]

    def forward_sequence(self, X: Any, state: tuple[Any, Any] | None = None) -> Array:
        """The seed's sequence API: outputs only.

        ``X`` of shape ``(T, I)`` (as in the seed) gives ``(T, D*H)``; batched inputs give what
        :meth:`__call__` gives.
        """
        return self(X, state)[0]

    def _sequence_input(self, X: Any) -> tuple[Array, bool]:
        """Validate ``X`` and return it as ``(T, B, I)`` with whether it was batched."""
        x = self._as_array(X, "X")
        xp = self.xp
        if x.ndim == 2:
            batched = False
            x = xp.expand_dims(x, axis=1)
        elif x.ndim == 3:
            batched = True
            if self.batch_first:
                x = xp.permute_dims(x, (1, 0, 2))
        else:
            layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ShapeError(
                f"X must be {layout} or unbatched (T, I) with I={self.input_size}; got an "
                f"array of shape {tuple(x.shape)}."
            )
        steps, batch, features = x.shape
        if features != self.input_size:
            raise ShapeError(
                f"X has {features} features on its last axis; this model expects "
                f"input_size={self.input_size} (X shape {tuple(x.shape)} as (T, B, I))."
            )
        if steps == 0 or batch == 0:
            raise ShapeError(f"X must hold at least one step and one sequence; got (T, B) = "
                             f"({steps}, {batch}).")
        return x, batched

    def _lengths_input(self, lengths: Any, mask: Any, steps: int, batch: int,
                       batched: bool) -> Array | None:
        """Validate ``lengths`` or ``mask``; return lengths as an integer array of the model's
        namespace, or None when every sequence runs all T steps.

        The checks read a few scalars back (a device synchronisation on a GPU), once per call
        and before the time loop.
        """
        if lengths is None and mask is None:
            return None
        if lengths is not None and mask is not None:
            raise LengthsError("pass lengths or mask, not both: they say the same thing, and "
                               "neither is taken over the other.")
        xp = self.xp
        if mask is not None:
            m = self._as_array(mask, "mask", kind="bool")
            expected = (batch, steps) if batched else (steps,)
            if tuple(m.shape) != expected:
                raise ShapeError(f"mask has shape {tuple(m.shape)}; expected {expected} "
                                 f"({'(B, T)' if batched else '(T,)'}).")
            m = xp.reshape(m, (batch, steps))
            valid = xp.sum(xp.astype(m, xp.int32), axis=1)
            padded = xp.arange(steps, device=self.device)[None, :] < valid[:, None]
            wrong = xp.any(m != padded, axis=1)
            if bool(xp.any(wrong)):
                row = int(xp.argmax(xp.astype(wrong, xp.int32)))
                raise LengthsError(
                    f"mask is not right-padded: row {row} has a True after a False; each row "
                    "must be True for its valid steps, then False to the end. Pass lengths "
                    "instead.")
        else:
            valid = self._as_array(lengths, "lengths", kind="integral")
            expected = (batch,) if batched else ()
            if tuple(valid.shape) != expected and not (not batched and valid.shape == (1,)):
                raise ShapeError(f"lengths has shape {tuple(valid.shape)}; expected {expected} "
                                 "(one length per sequence).")
            valid = xp.reshape(valid, (batch,))
            outside = (valid < 0) | (valid > steps)
            if bool(xp.any(outside)):
                row = int(xp.argmax(xp.astype(outside, xp.int32)))
                raise LengthsError(f"lengths must lie in 0..T = 0..{steps}; sequence {row} has "
                                   f"length {int(valid[row])}.")
        if bool(xp.all(valid == steps)):
            return None  # nothing is padded: the plain path is exact and fastest
        return valid

    def _reset_input(self, reset: Any, batch: int, batched: bool) -> Array:
        """``reset`` as a (1, B, 1) array of the model's dtype: 0 where the state is reset."""
        r = self._as_array(reset, "reset", kind="bool")
        expected = (batch,) if batched else ()
        if tuple(r.shape) != expected:
            raise ShapeError(f"reset has shape {tuple(r.shape)}; expected {expected}.")
        return self.xp.astype(~self.xp.reshape(r, (1, batch, 1)), self.dtype)

    def _initial_state(self, state: Any, batch: int, batched: bool) -> tuple[Array, Array]:
        xp = self.xp
        shape = (self.num_directions * self.num_layers, batch, self.hidden_size)
        if state is None:
            zeros = xp.zeros(shape, dtype=self.dtype, device=self.device)
            return zeros, zeros
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ShapeError(f"state must be a pair (h0, c0); got {type(state).__name__}.")
        expected = shape if batched else (shape[0], shape[2])
        out = []
        for name, value in zip(("h0", "c0"), state, strict=True):
            a = self._as_array(value, name)
            if tuple(a.shape) != expected:
                raise ShapeError(
                    f"{name} has shape {tuple(a.shape)}; expected {expected} "
                    f"(num_directions*num_layers, {'batch, ' if batched else ''}hidden_size)."
                )
            out.append(a if batched else xp.expand_dims(a, axis=1))
        return out[0], out[1]

    # -- one step (the seed's API) -----------------------------------------------------------
    def forward(self, x: Any, h_prev: Any = None, c_prev: Any = None) -> tuple[Array, Array]:
        """Advance every layer by one time step (the seed's ``forward``).

        Parameters
        ----------
        x : array
            ``(I, 1)`` column vector (the seed's layout), ``(I,)``, or a batch ``(B, I)``.
            For ``input_size == 1`` a ``(1, 1)`` input counts as a column when ``h_prev`` is
            a column ``(H, 1)``, otherwise as a batch of one.
        h_prev, c_prev : array, optional
            The state in the same layout as ``x``: ``(H, 1)``, ``(H,)`` or ``(B, H)``; with
            ``num_layers > 1`` a leading layer axis: ``(L, H, 1)``, ``(L, H)``, ``(L, B, H)``.
            Default: zeros.

        Returns
        -------
        h, c : arrays
            The new state, in the layout of ``h_prev``.

        Raises
        ------
        ConfigError
            On a bidirectional model: its backward direction needs the whole sequence.
        """
        if self.bidirectional:
            raise ConfigError(
                "forward() advances one time step, but a bidirectional LSTM's backward "
                "direction needs the whole sequence. Call model(X) or model.forward_sequence(X)."
            )
        xp = self.xp
        with self._backend.context():
            xa = self._as_array(x, "x")
            layout = self._step_layout(xa, h_prev)
            if layout == "vector":
                xa = xp.expand_dims(xa, axis=0)
            elif layout == "column":
                xa = xp.matrix_transpose(xa)
            batch = xa.shape[0]
            h = self._step_state_in(h_prev, "h_prev", layout, batch)
            c = self._step_state_in(c_prev, "c_prev", layout, batch)
            hs, cs = [], []
            layer_input = xa
            for k, directions in enumerate(self._layers()):
                w_ih, w_hh, b_ih, b_hh = directions[0]
                h_k, c_k = cell_step(xp, layer_input, h[k, ...], c[k, ...], w_ih, w_hh,
                                     summed_bias(b_ih, b_hh))
                hs.append(h_k)
                cs.append(c_k)
                layer_input = h_k
            h_out = self._step_state_out(xp.stack(hs, axis=0), layout)
            c_out = self._step_state_out(xp.stack(cs, axis=0), layout)
        return h_out, c_out

    def _step_layout(self, x: Array, h_prev: Any) -> str:
        size = self.input_size
        if x.ndim == 1 and x.shape[0] == size:
            return "vector"
        if x.ndim == 2 and tuple(x.shape) == (size, 1):
            h_shape = tuple(getattr(h_prev, "shape", ()))
            h_is_column = len(h_shape) >= 2 and h_shape[-2:] == (self.hidden_size, 1)
            if size != 1 or h_is_column:
                return "column"
        if x.ndim == 2 and x.shape[1] == size:
            return "batch"
        raise ShapeError(
            f"x must be a column ({size}, 1), a vector ({size},) or a batch (B, {size}); got "
            f"shape {tuple(x.shape)}."
        )

    def _step_state_in(self, value: Any, name: str, layout: str, batch: int) -> Array:
        """User step state -> ``(L, B, H)``."""
        xp = self.xp
        layers, hidden = self.num_layers, self.hidden_size
        if value is None:
            return xp.zeros((layers, batch, hidden), dtype=self.dtype, device=self.device)
        base = {"column": (hidden, 1), "vector": (hidden,), "batch": (batch, hidden)}[layout]
        expected = (layers, *base) if layers > 1 else base
        a = self._as_array(value, name)
        if tuple(a.shape) != expected:
            stacked = " with a leading layer axis" if layers > 1 else ""
            raise ShapeError(f"{name} has shape {tuple(a.shape)}; for x in {layout} layout "
                             f"expected {expected}{stacked}.")
        if layers == 1:
            a = xp.expand_dims(a, axis=0)
        if layout == "column":
            return xp.permute_dims(a, (0, 2, 1))
        if layout == "vector":
            return xp.expand_dims(a, axis=1)
        return a

    def _step_state_out(self, a: Array, layout: str) -> Array:
        """``(L, B, H)`` -> the user's layout (inverse of :meth:`_step_state_in`)."""
        if layout == "column":
            a = self.xp.permute_dims(a, (0, 2, 1))
        elif layout == "vector":
            a = a[:, 0, :]
        return a[0, ...] if self.num_layers == 1 else a


    # -- weights in and out -------------------------------------------------------------------
    @classmethod
    def _from_params(cls, config: dict[str, Any], params: dict[str, Any], backend: Any,
                     device: Any, dtype: Any) -> LSTM:
        """A model with ``config``'s sizes holding ``params`` (NumPy, PyTorch names)."""
        if dtype is None:
            dtype = dtype_name(next(iter(params.values())).dtype)
        model = cls(config["input_size"], config["hidden_size"], config["num_layers"],
                    bias=config["bias"], batch_first=config.get("batch_first", False),
                    bidirectional=config["bidirectional"], backend=backend, device=device,
                    dtype=dtype, seed=0)
        model.load_state_dict(params)
        return model

    def _numpy_params(self) -> dict[str, Any]:
        return {k: to_numpy(v) for k, v in self._params.items()}

    def _config(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias,
                "batch_first": self.batch_first, "bidirectional": self.bidirectional}

    @classmethod
    def from_torch(cls, module_or_state_dict: Any, *, backend: Any = "numpy", device: Any = None,
                   dtype: Any = None) -> LSTM:
        """A model with the weights of a ``torch.nn.LSTM`` (or its ``state_dict()``).

        Sizes, layers, direction and ``batch_first`` come from the module (from the names and
        shapes of a state dict); ``dtype`` defaults to the weights' own.
        """
        config, params = interop.from_torch_module(module_or_state_dict)
        return cls._from_params(config, params, backend, device, dtype)

    def to_torch(self) -> Any:
        """A ``torch.nn.LSTM`` (on the CPU) with this model's configuration and weights."""
        return interop.to_torch_module(self)

    @classmethod
    def from_keras(cls, layers: Any, *, batch_first: bool = True, backend: Any = "numpy",
                   device: Any = None, dtype: Any = None) -> LSTM:
        """A model from Keras 3 layers (``LSTM`` or ``Bidirectional(LSTM)``, one per stacked
        layer) or their ``get_weights()`` lists ``[kernel, recurrent_kernel, bias]``.

        Keras' single bias becomes ``bias_ih`` (``bias_hh`` is zero). ``batch_first``
        defaults to True because Keras layers take ``(B, T, I)``.
        """
        config, params = interop.from_keras_weights(layers)
        config["batch_first"] = batch_first
        return cls._from_params(config, params, backend, device, dtype)

    def to_keras(self) -> list[list[Any]]:
        """Per layer, the NumPy arrays ``layer.set_weights()`` takes: ``[kernel,
        recurrent_kernel, bias]``, or six (forward then backward) for ``Bidirectional``.
        The bias is ``bias_ih + bias_hh``."""
        return interop.to_keras_weights(self._numpy_params(), self.num_layers,
                                        self.bidirectional)

    @classmethod
    def from_flax(cls, cells: Any, *, bidirectional: bool = False, batch_first: bool = False,
                  backend: Any = "numpy", device: Any = None, dtype: Any = None) -> LSTM:
        """A model from ``flax.linen.LSTMCell`` parameters: one dict, or a list of them per
        layer and direction in PyTorch's order (layer 0 forward, layer 0 backward, ...)."""
        cells = [cells] if isinstance(cells, dict) else list(cells)
        params = interop.from_flax_params(cells, bidirectional)
        config = {**interop.torch_config(params), "batch_first": batch_first}
        return cls._from_params(config, params, backend, device, dtype)

    def to_flax(self) -> list[dict[str, Any]]:
        """``flax.linen.LSTMCell`` parameter dicts, one per layer and direction in PyTorch's
        order. Flax's cells have one bias (on the ``h*`` kernels): ``bias_ih + bias_hh``."""
        params = self._numpy_params()
        return [interop.to_flax_params(params, s) for s, _ in self._layer_specs()]

    @classmethod
    def from_seed(cls, source: Any, *, backend: Any = "numpy", device: Any = None,
                  dtype: Any = None) -> LSTM:
        """A one-layer model from the seed's ``Wf, Wi, WC, Wo, bf, bi, bC, bo`` (a mapping or
        an object with those attributes, such as the seed's own ``LSTM``)."""
        params = interop.from_seed_params(source)
        return cls._from_params(interop.torch_config(params), params, backend, device, dtype)

    def to_seed(self) -> dict[str, Any]:
        """The seed's layout (one layer, one direction only): ``Wf, Wi, WC, Wo`` (H, H+I)
        and ``bf, bi, bC, bo`` (H, 1), with ``b? = bias_ih + bias_hh``."""
        if self.num_layers != 1 or self.bidirectional:
            raise ConfigError("the seed's layout holds one layer and one direction; this model "
                              f"has num_layers={self.num_layers}, "
                              f"bidirectional={self.bidirectional}.")
        return interop.to_seed_params(self._numpy_params())

    def to_onnx(self, path: Any, *, opset: int = 14, initial_state: bool = False) -> Any:
        """Write an ONNX model built on the standard ``LSTM`` operator to ``path`` (atomically).

        Its first output ``Y`` has the shape and layout of this model's ``outputs``; ``Y_h``
        and ``Y_c`` are ``(D*L, B, H)``. With ``initial_state`` it takes ``h0`` and ``c0``
        inputs, else the state starts at zero. Returns the path.
        """
        model = interop.to_onnx_model(self._numpy_params(), self._config(), opset,
                                      initial_state)
        return model_io.write_atomic(path, model.SerializeToString())

    @classmethod
    def from_onnx(cls, path: Any, *, backend: Any = "numpy", device: Any = None,
                  dtype: Any = None) -> LSTM:
        """A model from the weights of an ONNX file made of standard ``LSTM`` nodes."""
        onnx = interop._require("onnx", "onnx")
        try:
            proto = onnx.load(str(path))
        except OSError:
            raise
        except Exception as exc:  # protobuf's DecodeError and friends
            raise model_io.ModelFileError(f"{path}: not a readable ONNX file ({exc}).") from exc
        config, params = interop.from_onnx_model(proto)
        return cls._from_params(config, params, backend, device, dtype)

    def save(self, path: Any) -> Any:
        """Save weights and configuration to one ``.npz`` file, atomically; see
        :mod:`lstm_xp.io`. Returns the path."""
        return model_io.save(path, self._numpy_params(), self._config(),
                             dtype_name(self._dtype))

    @classmethod
    def load(cls, path: Any, *, backend: Any = "numpy", device: Any = None,
             dtype: Any = None) -> LSTM:
        """Load a model written by :meth:`save` onto ``backend``/``device``.

        Raises
        ------
        lstm_xp.io.ModelFileError
            Truncated, corrupted, pickled, or written by a newer format version.
        OSError
            The file cannot be read.
        """
        schema, params = model_io.load(path)
        return cls._from_params(schema, params, backend, device, dtype or schema["dtype"])


class LSTMCell(Module):
    """One LSTM layer advanced one step at a time, like ``torch.nn.LSTMCell``.

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool, default True
    backend, device, dtype, init, seed
        As for :class:`LSTM`.

    Notes
    -----
    Parameters are ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` and ``bias_hh``
    (4H,), gate order i, f, g, o.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        backend: Any = "numpy",
        device: Any = None,
        dtype: Any = "float32",
        init: str = "xavier",
        seed: int | None = None,
    ) -> None:
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.bias = bool(bias)
        super().__init__(backend, device, dtype, init, seed)
        self._init_params([("", self.input_size)], self.hidden_size, self.bias)

    def __repr__(self) -> str:
        return (f"LSTMCell({self.input_size}, {self.hidden_size}, bias={self.bias}, "
                f"{self._placement()})")

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        gates, hidden = 4 * self.hidden_size, self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (gates, self.input_size),
                                              "weight_hh": (gates, hidden)}
        if self.bias:
            shapes.update(bias_ih=(gates,), bias_hh=(gates,))
        return shapes

    def __call__(self, x: Any, state: tuple[Any, Any] | None = None) -> tuple[Array, Array]:
        """Advance one step.

        Parameters
        ----------
        x : array, shape (B, I) or (I,)
        state : (h, c), optional
            Each ``(B, H)``, or ``(H,)`` for unbatched ``x``. Default: zeros.

        Returns
        -------
        h, c : arrays, shape (B, H) or (H,)
        """
        xp = self.xp
        with self._backend.context():
            xa = self._as_array(x, "x")
            if xa.ndim not in (1, 2) or xa.shape[-1] != self.input_size:
                raise ShapeError(f"x must be (B, {self.input_size}) or ({self.input_size},); "
                                 f"got shape {tuple(xa.shape)}.")
            batched = xa.ndim == 2
            if not batched:
                xa = xp.expand_dims(xa, axis=0)
            shape = (xa.shape[0], self.hidden_size)
            if state is None:
                h = c = xp.zeros(shape, dtype=self.dtype, device=self.device)
            else:
                if not isinstance(state, (tuple, list)) or len(state) != 2:
                    raise ShapeError(f"state must be a pair (h, c); got {type(state).__name__}.")
                h, c = (self._cell_state(v, name, shape, batched)
                        for v, name in zip(state, "hc", strict=True))
            p = self._params
            bias = p["bias_ih"] + p["bias_hh"] if self.bias else None
            h, c = cell_step(xp, xa, h, c, p["weight_ih"], p["weight_hh"], bias)
            if not batched:
                h, c = h[0, ...], c[0, ...]
        return h, c

    def _cell_state(self, value: Any, name: str, shape: tuple[int, int], batched: bool) -> Array:
        a = self._as_array(value, name)
        expected = shape if batched else shape[1:]
        if tuple(a.shape) != expected:
            raise ShapeError(f"state {name} has shape {tuple(a.shape)}; expected {expected}.")
        return a if batched else self.xp.expand_dims(a, axis=0)
