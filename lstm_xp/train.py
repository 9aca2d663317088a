"""Small, honest training utilities, in pure Array-API code like the rest.

- :class:`Linear`: a dense readout with its backward pass.
- :func:`mse_loss`, :func:`softmax_cross_entropy`: a loss and its gradient, together.
- :class:`SGD` (with momentum) and :class:`Adam`: update modules in place from gradient dicts
  keyed like their ``state_dict()``.
- :func:`clip_grad_norm`: rescale gradients to a maximum global norm.

Each works on every backend: the arrays' own namespace does the arithmetic, on their device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._backend import array_namespace, as_host, device, is_numpy_array
from ._checks import check_flag, check_real, check_size
from ._init import init_linear
from ._module import Module, on_device
from ._typing import Array
from .errors import BackendMismatchError, ConfigError, LabelError, ShapeError, TapeError

Grads = Mapping[str, Array]


# -- a dense readout -------------------------------------------------------------------------
@dataclass
class LinearTape:
    """The input a :class:`Linear` saw, for its backward pass."""

    x: Array


class Linear(Module):
    """``y = x @ weight.T + bias`` over the last axis.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    backend, device, dtype, init, seed
        As for :class:`lstm_xp.LSTM`. ``weight`` is (out, in), ``bias`` (out,).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 backend: Any = "numpy", device: Any = None, dtype: Any = "float32",
                 init: str = "xavier", seed: int | None = None) -> None:
        self.in_features = check_size("in_features", in_features)
        self.out_features = check_size("out_features", out_features)
        self.bias = check_flag("bias", bias)
        super().__init__(backend, device, dtype, init, seed)
        self._set_params(init_linear(init, seed, self.in_features, self.out_features, self.bias))

    def __repr__(self) -> str:
        return (f"Linear({self.in_features}, {self.out_features}, bias={self.bias}, "
                f"{self._placement()})")

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def __call__(self, x: Any) -> Array:
        """``x`` of shape (..., in) -> (..., out)."""
        return self.forward_train(x)[0]

    @on_device
    def forward_train(self, x: Any) -> tuple[Array, LinearTape]:
        xa = self._as_array(x, "x")
        if xa.ndim < 1 or xa.shape[-1] != self.in_features:
            raise ShapeError(f"x must be (..., {self.in_features}); got shape "
                             f"{tuple(xa.shape)}.")
        y = xa @ self.xp.matrix_transpose(self._params["weight"])
        if self.bias:
            y = y + self._params["bias"]
        return y, LinearTape(xa)

    @on_device
    def backward(self, tape: LinearTape, dy: Any) -> tuple[Array, dict[str, Array]]:
        """Gradients with respect to the input (its shape) and to ``weight`` and ``bias``."""
        if not isinstance(tape, LinearTape):
            raise TapeError(f"tape must be the LinearTape that forward_train returned; got "
                            f"{type(tape).__name__}.")
        xp = self.xp
        d = self._as_array(dy, "dy")
        expected = (*tape.x.shape[:-1], self.out_features)
        if tuple(d.shape) != expected:
            raise ShapeError(f"dy has shape {tuple(d.shape)}; expected {expected}.")
        rows = 1
        for n in tape.x.shape[:-1]:
            rows *= n
        d2 = xp.reshape(d, (rows, self.out_features))
        x2 = xp.reshape(tape.x, (rows, self.in_features))
        grads = {"weight": xp.matrix_transpose(d2) @ x2}
        if self.bias:
            grads["bias"] = xp.sum(d2, axis=0)
        return d @ self._params["weight"], grads


# -- losses ----------------------------------------------------------------------------------
def _alongside(ref: Array, value: Any, dtype: Any = None) -> Array:
    """``value`` as an array of ``ref``'s namespace, on its device (NumPy arrays and Python
    sequences are converted; arrays of that namespace are used as they are)."""
    xp = _namespace(ref, "the loss's first argument")
    try:
        if array_namespace(value) is xp:
            return value
    except TypeError:
        pass
    if isinstance(value, (list, tuple)) or is_numpy_array(value):
        return xp.asarray(as_host(value), dtype=dtype, device=device(ref))
    raise BackendMismatchError(f"expected an array of {getattr(xp, '__name__', xp)}, a NumPy "
                               f"array or a Python sequence; got {type(value).__name__}.")


def _namespace(value: Any, what: str) -> Any:
    """The namespace of array ``value``, or a :class:`BackendMismatchError` naming it."""
    try:
        return array_namespace(value)
    except TypeError as exc:
        raise BackendMismatchError(f"{what} must be an array of the model's library (what the "
                                   f"model or a Linear returned); got "
                                   f"{type(value).__name__}.") from exc


def mse_loss(pred: Array, target: Array) -> tuple[Array, Array]:
    """Mean squared error over every element, and its gradient with respect to ``pred``.

    Returns
    -------
    loss : 0-d array
    d_pred : array shaped like ``pred``
    """
    xp = _namespace(pred, "pred")
    target = _alongside(pred, target, pred.dtype)
    if tuple(target.shape) != tuple(pred.shape):
        raise ShapeError(f"target has shape {tuple(target.shape)}; pred has "
                         f"{tuple(pred.shape)}.")
    diff = pred - target
    n = math.prod(pred.shape)
    return xp.sum(diff * diff) / n, diff * (2.0 / n)


def softmax_cross_entropy(logits: Array, labels: Array) -> tuple[Array, Array]:
    """Mean cross-entropy of ``logits`` (B, C) against integer class ``labels`` (B,), and its
    gradient ``(softmax(logits) - onehot(labels)) / B``. Numerically stable (log-sum-exp).

    Raises
    ------
    LabelError
        A label outside ``0..C-1``.
    """
    xp = _namespace(logits, "logits")
    if logits.ndim != 2:
        raise ShapeError(f"logits must be (B, C); got shape {tuple(logits.shape)}.")
    batch, classes = logits.shape
    labels = _alongside(logits, labels)
    if tuple(labels.shape) != (batch,) or not xp.isdtype(labels.dtype, "integral"):
        raise ShapeError(f"labels must be ({batch},) integers; got {tuple(labels.shape)} "
                         f"{labels.dtype}.")
    outside = (labels < 0) | (labels >= classes)
    if bool(xp.any(outside)):  # one scalar read back, before the loss is computed
        row = int(xp.argmax(xp.astype(outside, xp.int32)))
        raise LabelError(f"labels must lie in 0..C-1 = 0..{classes - 1} (logits have C = "
                         f"{classes} classes); label {row} is {int(labels[row])}.")
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    exp = xp.exp(shifted)
    total = xp.sum(exp, axis=1, keepdims=True)
    log_probs = shifted - xp.log(total)
    onehot = xp.astype(xp.expand_dims(labels, axis=1)
                       == xp.arange(classes, device=device(logits)), logits.dtype)
    loss = -xp.sum(onehot * log_probs) / batch
    return loss, (exp / total - onehot) / batch


# -- gradients -------------------------------------------------------------------------------
def clip_grad_norm(grads: Sequence[Grads],
                   max_norm: float) -> tuple[list[dict[str, Array]], float]:
    """Rescale every gradient by ``min(1, max_norm / global_norm)``.

    Parameters
    ----------
    grads : sequence of dicts
        One dict per module (as :meth:`LSTM.backward` and :meth:`Linear.backward` return).

    Returns
    -------
    clipped : list of dicts
    global_norm : float
        The norm before clipping (one scalar read back from the device).
    """
    max_norm = check_real("max_norm", max_norm, 0.0, math.inf, low_open=True)
    if isinstance(grads, Mapping) or not all(isinstance(g, Mapping) for g in grads):
        raise ConfigError("clip_grad_norm takes a list of gradient dicts, one per module (as "
                          "backward returns them); wrap a single dict in a list.")
    squares = 0.0
    for g in grads:
        for a in g.values():
            xp = array_namespace(a)
            squares = squares + float(xp.sum(a * a))
    norm = math.sqrt(squares)
    scale = min(1.0, max_norm / (norm + 1e-12))
    return [{k: a * scale for k, a in g.items()} for g in grads], norm


class _Optimizer:
    """Updates modules in place (through ``update_parameters``) from gradient dicts.

    A step is all or nothing: every gradient is checked, and every new parameter and moment
    computed, before anything is changed; a step that raises leaves the modules and the
    optimiser's state (step count, moments) as they were.
    """

    #: Names of the per-parameter state this optimiser keeps (moments, velocities).
    slots: tuple[str, ...] = ()

    def __init__(self, modules: Sequence[Module], lr: float) -> None:
        self.lr = check_real("lr", lr, 0.0, math.inf, low_open=True)
        self.modules = list(modules)
        for module in self.modules:
            if not isinstance(module, Module):
                raise ConfigError(f"an optimiser updates lstm-xp modules (LSTM, LSTMCell, "
                                  f"Linear); got {type(module).__name__}.")
        self.steps = 0
        self._state: dict[str, dict[tuple[int, str], Array]] = {n: {} for n in self.slots}

    def step(self, grads: Sequence[Grads]) -> None:
        """Apply one update; ``grads[i]`` holds gradients for ``modules[i]`` (a subset of its
        parameters may be given), each of its parameter's shape, dtype, library and device.

        Raises
        ------
        ConfigError
            Not one gradient dict per module.
        StateDictError
            A gradient under an unknown name or of the wrong shape, dtype, library or device.
        """
        if isinstance(grads, Mapping) or len(grads) != len(self.modules):
            given = "a dict" if isinstance(grads, Mapping) else f"{len(grads)}"
            raise ConfigError(f"expected a list of {len(self.modules)} gradient dicts (one per "
                              f"module); got {given}.")
        for module, g in zip(self.modules, grads, strict=True):
            module.check_values(g, what="gradient")
        step = self.steps + 1
        new_params: list[dict[str, Array]] = []
        new_state: dict[str, dict[tuple[int, str], Array]] = {n: {} for n in self.slots}
        for index, (module, g) in enumerate(zip(self.modules, grads, strict=True)):
            params = module.state_dict()
            with module._backend.context():
                staged = {}
                for name, grad in g.items():
                    key = (index, name)
                    old = {n: self._state[n].get(key) for n in self.slots}
                    staged[name], slots = self._update(params[name], grad, old, step)
                    for n, value in slots.items():
                        new_state[n][key] = value
            new_params.append(staged)
        # Everything is computed: now commit.
        for module, staged in zip(self.modules, new_params, strict=True):
            module.update_parameters(staged)
        for n in self.slots:
            self._state[n].update(new_state[n])
        self.steps = step

    def _update(self, param: Array, grad: Array, state: dict[str, Array | None],
                step: int) -> tuple[Array, dict[str, Array]]:
        """The new parameter and the new values of :attr:`slots` (the old ones in
        ``state``, None before the first step)."""
        raise NotImplementedError


class SGD(_Optimizer):
    """Stochastic gradient descent with optional (heavy-ball) momentum, as ``torch.optim.SGD``:
    ``v = momentum * v + g``, ``p -= lr * v``."""

    slots = ("velocity",)

    def __init__(self, modules: Sequence[Module], lr: float, momentum: float = 0.0) -> None:
        super().__init__(modules, lr)
        self.momentum = check_real("momentum", momentum, 0.0, 1.0)

    def _update(self, param: Array, grad: Array, state: dict[str, Array | None],
                step: int) -> tuple[Array, dict[str, Array]]:
        if not self.momentum:
            return param - grad * self.lr, {}
        v = state["velocity"]
        grad = grad if v is None else v * self.momentum + grad
        return param - grad * self.lr, {"velocity": grad}


class Adam(_Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, as ``torch.optim.Adam``."""

    slots = ("m", "v")

    def __init__(self, modules: Sequence[Module], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(modules, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError(f"betas must be a pair (beta1, beta2); got {betas!r}.")
        self.beta1 = check_real("betas[0]", betas[0], 0.0, 1.0)
        self.beta2 = check_real("betas[1]", betas[1], 0.0, 1.0)
        self.eps = check_real("eps", eps, 0.0, math.inf)

    def _update(self, param: Array, grad: Array, state: dict[str, Array | None],
                step: int) -> tuple[Array, dict[str, Array]]:
        xp = array_namespace(param)
        m, v = state["m"], state["v"]
        m = grad * (1 - self.beta1) if m is None else m * self.beta1 + grad * (1 - self.beta1)
        g2 = grad * grad
        v = g2 * (1 - self.beta2) if v is None else v * self.beta2 + g2 * (1 - self.beta2)
        m_hat = m / (1 - self.beta1**step)
        v_hat = v / (1 - self.beta2**step)
        return param - self.lr * m_hat / (xp.sqrt(v_hat) + self.eps), {"m": m, "v": v}
