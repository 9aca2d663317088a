"""Training by backpropagation through time: :meth:`LSTM.forward_train` records a
:class:`Tape`, :meth:`LSTM.backward` turns it into gradients.

The model's kernel does the work (its ``forward_train`` and ``backward``); this mixin checks
what comes in, keeps the tape bound to the model that recorded it, and converts gradients
back to the caller's layout and the parameters' names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._functional import zero_padding
from ._init import dropout_mask
from ._module import on_device
from ._naming import named_grads
from ._typing import Array
from .errors import ShapeError, TapeError
from .kernels import Kernel

if TYPE_CHECKING:
    from .lstm import _Run


@dataclass
class Tape:
    """What :meth:`LSTM.backward` needs from :meth:`LSTM.forward_train`.

    ``recorded`` is the kernel's own tape (for the default kernels a
    :class:`~lstm_xp.kernels.StackTape`), ``kernel`` the kernel that recorded it, ``run`` the
    validated inputs of the forward pass, ``dropout_masks`` the inter-layer masks it applied
    (None without dropout).
    """

    recorded: Any
    kernel: Kernel
    run: _Run
    outputs_shape: tuple[int, ...]
    dropout_masks: list[Array | None] | None = None
    owner: object = None
    used: bool = False


class Training:
    """Mixin for :class:`~lstm_xp.LSTM` (it uses the model's kernel, layout and weights)."""

    if TYPE_CHECKING:  # provided by LSTM and Module
        xp: Any
        device: Any
        dtype: Any
        bias: bool
        dropout: float
        num_layers: int

        @property
        def num_directions(self) -> int: ...
        @property
        def output_size(self) -> int: ...
        hidden_size: int
        _kernel: Kernel
        _identity: object
        _backend: Any
        _dropout_rng: Any

        def _prepare(self, X: Any, state: Any, lengths: Any, mask: Any, reset: Any) -> _Run: ...
        def _layers(self) -> Any: ...
        def _as_array(self, value: Any, what: str, kind: str = ...) -> Any: ...
        def _pair(self, value: Any, names: tuple[str, str], expected: Any, *, what: str,
                  optional: bool = ..., hint: str = ...) -> list[Any]: ...

    @on_device
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

        Applies inter-layer ``dropout``. The model's kernel records the tape: on NumPy
        (``kernel="auto"``) the compiled pass of :mod:`lstm_xp.kernels.numba_train` (the
        fused NumPy pass of :mod:`lstm_xp.kernels.numpy_train` without numba, and in
        float16); on torch, torch's own LSTM with autograd; elsewhere, and with
        ``kernel="pure"``, the pure Array-API path. All give the same gradients. With
        ``lengths`` (or ``mask``), the input past each sequence's length counts for nothing,
        whatever it holds (NaN or inf included): its gradient there is zero.

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
        run = self._prepare(X, state, lengths, mask, reset)
        masks = self._dropout_masks(run.x.shape[0], run.x.shape[1])
        x = run.x if run.lengths is None else zero_padding(xp, run.x, run.lengths, self.device)
        y, h_n, c_n, recorded = self._kernel.forward_train(
            xp, x, self._layers(), run.h0, run.c0, run.lengths, masks)
        layout = run.layout
        outputs = layout.sequence_out(xp, y)
        final = (layout.state_out(xp, h_n), layout.state_out(xp, c_n))
        return outputs, final, Tape(recorded, self._kernel, run, tuple(outputs.shape), masks,
                                    self._identity)

    def _dropout_masks(self, steps: int, batch: int) -> list[Array | None] | None:
        if self.dropout == 0.0 or self.num_layers == 1:
            return None
        shape = (steps, batch, self.num_directions * self.output_size)
        return [self._backend.from_numpy(dropout_mask(self._dropout_rng, shape, self.dropout),
                                         self.dtype) for _ in range(self.num_layers - 1)]

    @on_device
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
        if not isinstance(tape, Tape):
            raise TapeError(f"tape must be the Tape that forward_train returned; got "
                            f"{type(tape).__name__}.")
        if tape.owner is not self._identity:
            raise TapeError("this tape was recorded by another model (a copy made by to(), "
                            "copy.deepcopy or pickle is another model); a tape's gradients "
                            "are those of the model that recorded it: call backward on that "
                            "model, or run forward_train on this one.")
        run = tape.run
        layout = run.layout
        if tape.used:
            raise TapeError("this tape has already been through backward(); a tape serves one "
                            "backward pass: run forward_train again, or sum the output "
                            "gradients and call backward once.")
        dy = self._as_array(d_outputs, "d_outputs")
        if tuple(dy.shape) != tape.outputs_shape:
            raise ShapeError(f"d_outputs has shape {tuple(dy.shape)}; expected the outputs' "
                             f"shape {tape.outputs_shape}.")
        dh_n = dc_n = None
        if d_state is not None:
            stacked, batch, _ = run.h0.shape
            shapes = (layout.state_shape(stacked, batch, self.output_size),
                      layout.state_shape(stacked, batch, self.hidden_size))
            dh_n, dc_n = (None if a is None else layout.state_in(xp, a) for a in
                          self._pair(d_state, ("dh_n", "dc_n"), shapes, what="d_state",
                                     optional=True))
        tape.used = True  # the fused NumPy backward recycles the tape's arrays
        dx, dh0, dc0, layer_grads = tape.kernel.backward(
            xp, tape.recorded, layout.sequence_in(xp, dy), dh_n, dc_n)
        if run.keep is not None:
            dh0, dc0 = dh0 * run.keep, dc0 * run.keep
        grads = named_grads(layer_grads, self.bias)
        return layout.sequence_out(xp, dx), (layout.state_out(xp, dh0),
                                             layout.state_out(xp, dc0)), grads
