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

from ._backend import array_namespace, device
from ._init import init_linear
from ._module import Module, check_size, on_device
from ._typing import Array
from .errors import ConfigError, ShapeError

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
        self.bias = bool(bias)
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
    xp = array_namespace(ref)
    try:
        if array_namespace(value) is xp:
            return value
    except TypeError:
        pass
    return xp.asarray(value, dtype=dtype, device=device(ref))


def mse_loss(pred: Array, target: Array) -> tuple[Array, Array]:
    """Mean squared error over every element, and its gradient with respect to ``pred``.

    Returns
    -------
    loss : 0-d array
    d_pred : array shaped like ``pred``
    """
    xp = array_namespace(pred)
    target = _alongside(pred, target, pred.dtype)
    if tuple(target.shape) != tuple(pred.shape):
        raise ShapeError(f"target has shape {tuple(target.shape)}; pred has "
                         f"{tuple(pred.shape)}.")
    diff = pred - target
    n = math.prod(pred.shape)
    return xp.sum(diff * diff) / n, diff * (2.0 / n)


def softmax_cross_entropy(logits: Array, labels: Array) -> tuple[Array, Array]:
    """Mean cross-entropy of ``logits`` (B, C) against integer class ``labels`` (B,), and its
    gradient ``(softmax(logits) - onehot(labels)) / B``. Numerically stable (log-sum-exp)."""
    xp = array_namespace(logits)
    if logits.ndim != 2:
        raise ShapeError(f"logits must be (B, C); got shape {tuple(logits.shape)}.")
    batch, classes = logits.shape
    labels = _alongside(logits, labels)
    if tuple(labels.shape) != (batch,) or not xp.isdtype(labels.dtype, "integral"):
        raise ShapeError(f"labels must be ({batch},) integers; got {tuple(labels.shape)} "
                         f"{labels.dtype}.")
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
    if not max_norm > 0:
        raise ConfigError(f"max_norm must be positive; got {max_norm!r}.")
    squares = 0.0
    for g in grads:
        for a in g.values():
            xp = array_namespace(a)
            squares = squares + float(xp.sum(a * a))
    norm = math.sqrt(squares)
    scale = min(1.0, max_norm / (norm + 1e-12))
    return [{k: a * scale for k, a in g.items()} for g in grads], norm


class _Optimizer:
    """Updates modules in place (through ``update_parameters``) from gradient dicts."""

    def __init__(self, modules: Sequence[Module], lr: float) -> None:
        if not lr > 0:
            raise ConfigError(f"lr must be positive; got {lr!r}.")
        self.modules = list(modules)
        self.lr = float(lr)
        self.steps = 0

    def step(self, grads: Sequence[Grads]) -> None:
        """Apply one update; ``grads[i]`` holds gradients for ``modules[i]`` (a subset of its
        parameters may be given)."""
        if len(grads) != len(self.modules):
            raise ConfigError(f"expected {len(self.modules)} gradient dicts (one per module); "
                              f"got {len(grads)}.")
        self.steps += 1
        for index, (module, g) in enumerate(zip(self.modules, grads, strict=True)):
            params = module.state_dict()
            with module._backend.context():
                module.update_parameters(
                    {name: self._update(index, name, params[name], grad)
                     for name, grad in g.items()})

    def _update(self, index: int, name: str, param: Array, grad: Array) -> Array:
        raise NotImplementedError


class SGD(_Optimizer):
    """Stochastic gradient descent with optional (heavy-ball) momentum, as ``torch.optim.SGD``:
    ``v = momentum * v + g``, ``p -= lr * v``."""

    def __init__(self, modules: Sequence[Module], lr: float, momentum: float = 0.0) -> None:
        super().__init__(modules, lr)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1); got {momentum!r}.")
        self.momentum = float(momentum)
        self._velocity: dict[tuple[int, str], Array] = {}

    def _update(self, index: int, name: str, param: Array, grad: Array) -> Array:
        if self.momentum:
            key = (index, name)
            v = self._velocity.get(key)
            grad = grad if v is None else v * self.momentum + grad
            self._velocity[key] = grad
        return param - grad * self.lr


class Adam(_Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, as ``torch.optim.Adam``."""

    def __init__(self, modules: Sequence[Module], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(modules, lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ConfigError(f"betas must be in [0, 1); got {betas!r}.")
        self.eps = float(eps)
        self._m: dict[tuple[int, str], Array] = {}
        self._v: dict[tuple[int, str], Array] = {}

    def _update(self, index: int, name: str, param: Array, grad: Array) -> Array:
        xp = array_namespace(param)
        key = (index, name)
        m = self._m.get(key)
        v = self._v.get(key)
        m = grad * (1 - self.beta1) if m is None else m * self.beta1 + grad * (1 - self.beta1)
        g2 = grad * grad
        v = g2 * (1 - self.beta2) if v is None else v * self.beta2 + g2 * (1 - self.beta2)
        self._m[key], self._v[key] = m, v
        m_hat = m / (1 - self.beta1**self.steps)
        v_hat = v / (1 - self.beta2**self.steps)
        return param - self.lr * m_hat / (xp.sqrt(v_hat) + self.eps)
