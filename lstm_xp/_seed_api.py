"""The seed's API on :class:`~lstm_xp.LSTM`: ``forward`` (one step, with the seed's column
vectors) and ``forward_sequence`` (outputs only).

The seed advanced one step from ``x`` (I, 1) and a state (H, 1); these methods accept that,
plain vectors (I,) and batches (B, I), and convert the state to and from the ``(L, B, H)``
layout that :func:`lstm_xp._functional.cell_step` is stacked over.
"""

from __future__ import annotations

from typing import Any

from ._functional import cell_step, summed_bias
from ._module import on_device
from ._typing import Array
from .errors import ConfigError, ShapeError


class SeedAPI:
    """Mixin for :class:`~lstm_xp.LSTM` (it uses the model's sizes, weights and backend)."""

    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    direction: str
    variants: Any
    xp: Any
    dtype: Any
    device: Any
    _backend: Any

    @on_device
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
        if self.direction != "forward" or self.variants.names():
            raise ConfigError(
                "forward() is the seed's step of the plain forward LSTM; this model has "
                f"direction={self.direction!r} and options "
                f"{sorted(self.variants.names()) or 'none'}. Call model(X) over the sequence.")
        xp = self.xp
        xa = self._as_array(x, "x")  # type: ignore[attr-defined]
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
        for k, directions in enumerate(self._layers()):  # type: ignore[attr-defined]
            w_ih, w_hh, b_ih, b_hh = directions[0]
            h_k, c_k = cell_step(xp, layer_input, h[k, ...], c[k, ...], w_ih, w_hh,
                                 summed_bias(b_ih, b_hh))
            hs.append(h_k)
            cs.append(c_k)
            layer_input = h_k
        h_out = self._step_state_out(xp.stack(hs, axis=0), layout)
        c_out = self._step_state_out(xp.stack(cs, axis=0), layout)
        return h_out, c_out

    def forward_sequence(self, X: Any, state: tuple[Any, Any] | None = None) -> Array:
        """The seed's sequence API: outputs only.

        ``X`` of shape ``(T, I)`` (as in the seed) gives ``(T, D*H)``; batched inputs give what
        ``model(X)`` gives.
        """
        return self(X, state)[0]  # type: ignore[operator]

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
        a = self._as_array(value, name)  # type: ignore[attr-defined]
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
