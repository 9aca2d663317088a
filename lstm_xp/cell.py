""":class:`LSTMCell`: one LSTM layer advanced one step at a time, like ``torch.nn.LSTMCell``."""

from __future__ import annotations

from typing import Any

from . import interop
from ._backend import dtype_name, to_numpy
from ._checks import check_flag, check_size
from ._functional import cell_step, summed_bias
from ._module import Module, on_device
from ._naming import cell_param_shapes
from ._typing import Array
from .errors import ShapeError, StateDictError


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
        self.bias = check_flag("bias", bias)
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

    @classmethod
    def from_torch(cls, module_or_state_dict: Any, *, backend: Any = "numpy", device: Any = None,
                   dtype: Any = None) -> LSTMCell:
        """A cell with the weights of a ``torch.nn.LSTMCell`` (or its ``state_dict()``);
        ``dtype`` defaults to the weights' own."""
        params = interop.from_torch_cell(module_or_state_dict)
        w_ih, w_hh = params["weight_ih"], params["weight_hh"]
        if w_ih.ndim != 2 or w_hh.ndim != 2:
            raise StateDictError(f"weight_ih and weight_hh must be matrices; got shapes "
                                 f"{w_ih.shape} and {w_hh.shape}.")
        cell = cls(int(w_ih.shape[1]), int(w_hh.shape[1]), bias="bias_ih" in params,
                   backend=backend, device=device,
                   dtype=dtype_name(w_ih.dtype) if dtype is None else dtype, seed=0)
        cell.load_state_dict(params)
        return cell

    def to_torch(self) -> Any:
        """A ``torch.nn.LSTMCell`` (on the CPU) with this cell's weights."""
        return interop.to_torch_cell({k: to_numpy(v) for k, v in self._params.items()})

