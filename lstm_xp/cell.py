""":class:`LSTMCell`: one LSTM layer advanced one step at a time, like ``torch.nn.LSTMCell``."""

from __future__ import annotations

from typing import Any

from . import interop
from . import io as model_io
from ._backend import dtype_name
from ._checks import check_flag, check_size
from ._functional import cell_step, summed_bias
from ._module import Module, on_device
from ._naming import cell_param_shapes
from ._typing import Array
from ._variants import step as variant_step
from ._variants import variant_options
from .errors import ShapeError, StateDictError


class LSTMCell(Module):
    """One LSTM layer advanced one step at a time, like ``torch.nn.LSTMCell``.

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool, default True
    backend, device, dtype, init, seed
        As for :class:`~lstm_xp.LSTM`.
    proj_size, peephole, clip, input_forget
        The cell variants, as for :class:`~lstm_xp.LSTM` (with ``proj_size`` the state ``h``
        has ``proj_size`` features).

    Notes
    -----
    Parameters are ``weight_ih`` (4H, I), ``weight_hh`` (4H, H or P), ``bias_ih`` and
    ``bias_hh`` (4H,), gate order i, f, g, o; with the variants ``weight_hr`` (P, H) and
    ``peephole`` (3H,).
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
        proj_size: int = 0,
        peephole: bool = False,
        clip: float | None = None,
        input_forget: bool = False,
        layer_norm: bool = False,
    ) -> None:
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.bias = check_flag("bias", bias)
        self.variants = variant_options(self.hidden_size, proj_size, peephole, clip,
                                        input_forget, layer_norm)
        super().__init__(backend, device, dtype, init, seed)
        self._init_params([("", self.input_size)], self.hidden_size, self.bias,
                          proj_size=self.variants.proj_size, peephole=self.variants.peephole,
                          layer_norm=self.variants.layer_norm)

    def __repr__(self) -> str:
        return (f"LSTMCell({self.input_size}, {self.hidden_size}, bias={self.bias}, "
                f"{self._placement()})")

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        return cell_param_shapes(self.input_size, self.hidden_size, self.bias,
                                 self.variants.proj_size, self.variants.peephole,
                                 self.variants.layer_norm)

    def config(self) -> dict[str, Any]:
        """Sizes and options: ``input_size``, ``hidden_size``, ``bias``, ``proj_size``,
        ``peephole``, ``clip``, ``input_forget``."""
        v = self.variants
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "bias": self.bias, "proj_size": v.proj_size, "peephole": v.peephole,
                "clip": v.clip, "input_forget": v.input_forget, "layer_norm": v.layer_norm}

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
        batch = xa.shape[0]
        shapes = [(batch, self.variants.proj_size or self.hidden_size),
                  (batch, self.hidden_size)]
        if state is None:
            h, c = (xp.zeros(s, dtype=self.dtype, device=self.device) for s in shapes)
        else:
            h, c = (a if batched else xp.expand_dims(a, axis=0) for a in
                    self._pair(state, ("h", "c"), shapes if batched else [s[1:] for s in shapes],
                               what="state"))
        p = self._params
        bias = summed_bias(p.get("bias_ih"), p.get("bias_hh"))
        if self.variants.names():
            z = xa @ xp.matrix_transpose(p["weight_ih"]) + h @ xp.matrix_transpose(p["weight_hh"])
            z = z if bias is None else z + bias
            ln = None if not self.variants.layer_norm else \
                tuple(p[k] for k in ("ln_gates_weight", "ln_gates_bias", "ln_cell_weight",
                                     "ln_cell_bias"))
            h, c, *_ = variant_step(xp, z, c, p.get("weight_hr"), p.get("peephole"),
                                    self.variants, ln)
        else:
            h, c = cell_step(xp, xa, h, c, p["weight_ih"], p["weight_hh"], bias)
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
        return interop.to_torch_cell(self.host_params())

    def save(self, path: Any) -> Any:
        """Save weights, sizes and options to one ``.npz`` file, atomically (the format of
        :meth:`lstm_xp.LSTM.save`, marked as a cell). Returns the path."""
        return model_io.save(path, self.host_params(),
                             self.config(), dtype_name(self._dtype), kind="LSTMCell")

    @classmethod
    def load(cls, path: Any, *, backend: Any = "numpy", device: Any = None,
             dtype: Any = None) -> LSTMCell:
        """Load a cell written by :meth:`save` onto ``backend``/``device``.

        Raises
        ------
        lstm_xp.ModelFileError
            Truncated, corrupted, not a cell's file, or from a newer format version.
        """
        schema, params = model_io.load(path, kind="LSTMCell")
        cell = cls(schema["input_size"], schema["hidden_size"], schema["bias"],
                   backend=backend, device=device, dtype=dtype or schema["dtype"], seed=0,
                   proj_size=schema["proj_size"], peephole=schema["peephole"],
                   clip=schema["clip"], input_forget=schema["input_forget"],
                   layer_norm=schema["layer_norm"])
        cell.load_state_dict(params)
        return cell

