""":class:`LSTMCell`: one LSTM layer advanced one step at a time, like ``torch.nn.LSTMCell``."""

from __future__ import annotations

from typing import Any

from ._functional import cell_step, summed_bias
from ._module import Module, check_size, on_device
from ._naming import cell_param_shapes
from ._typing import Array
from .errors import ShapeError


class LSTMCell(Module):
    """One LSTM layer advanced one step at a time, like ``torch.nn.LSTMCell``.

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool, default True
    backend, device, dtype, init, seed
        As for :class:`~lstm_xp.LSTM`.

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
        return cell_param_shapes(self.input_size, self.hidden_size, self.bias)

    @on_device
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
            h, c = (a if batched else xp.expand_dims(a, axis=0) for a in
                    self._pair(state, ("h", "c"), shape if batched else shape[1:],
                               what="state"))
        p = self._params
        h, c = cell_step(xp, xa, h, c, p["weight_ih"], p["weight_hh"],
                         summed_bias(p.get("bias_ih"), p.get("bias_hh")))
        if not batched:
            h, c = h[0, ...], c[0, ...]
        return h, c
