"""Weight initialisers, drawn on the host.

Every initialiser draws float64 values from a seeded ``numpy.random.Generator`` and returns NumPy
arrays in ``torch.nn.LSTM``'s layout (gate order i, f, g, o). The model casts and moves them to
its device afterwards, so the same seed gives bit-identical weights on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .errors import ConfigError

#: Names accepted by ``init=``.
INITS: tuple[str, ...] = ("xavier", "pytorch", "keras")

# Gate blocks along the 4H axis, in torch's order.
GATE_I, GATE_F, GATE_G, GATE_O = range(4)


def _glorot_uniform(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Glorot/Xavier uniform for a ``(rows, cols)`` matrix: U(-a, a), a = sqrt(6/(rows+cols)).

    Fans are those of the whole fused matrix, as Keras (``kernel`` of shape ``(in, 4H)``) and
    ``torch.nn.init.xavier_uniform_`` (``weight`` of shape ``(4H, in)``) compute them.
    """
    limit = math.sqrt(6.0 / (rows + cols))
    return rng.uniform(-limit, limit, size=(rows, cols))


def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A ``(rows, cols)`` matrix with orthonormal columns (rows >= cols) or rows, drawn like
    Keras' ``Orthogonal``: QR of a Gaussian matrix, signs fixed by R's diagonal."""
    tall = rows >= cols
    a = rng.standard_normal((rows, cols) if tall else (cols, rows))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return q if tall else q.T


def init_params(
    scheme: str, seed: int | None, layers: list[tuple[str, int]], hidden_size: int, bias: bool
) -> dict[str, np.ndarray]:
    """Draw every layer's parameters from one Generator seeded with ``seed``.

    ``layers`` lists ``(name suffix, input size)`` in drawing order; names are
    ``weight_ih{suffix}`` and so on, see :func:`init_layer`.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for suffix, input_size in layers:
        for name, value in init_layer(scheme, rng, input_size, hidden_size, bias).items():
            params[name + suffix] = value
    return params


def init_layer(
    scheme: str,
    rng: np.random.Generator,
    input_size: int,
    hidden_size: int,
    bias: bool,
) -> dict[str, np.ndarray]:
    """Draw one layer/direction's parameters.

    Parameters
    ----------
    scheme : {"xavier", "pytorch", "keras"}
        ``"xavier"``: Glorot uniform input and recurrent weights, zero biases (the seed's own
        recommendation). ``"pytorch"``: everything U(-1/sqrt(H), 1/sqrt(H)), as
        ``torch.nn.LSTM``. ``"keras"``: Glorot uniform input weights, orthogonal recurrent
        weights, zero biases except 1 on the forget gate (``unit_forget_bias``), carried by
        ``bias_ih`` so that ``bias_ih + bias_hh`` equals Keras' single bias.
    rng : numpy.random.Generator
    input_size, hidden_size : int
    bias : bool
        Whether to return the two bias vectors.

    Returns
    -------
    dict
        ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), and with ``bias`` ``bias_ih`` (4H,),
        ``bias_hh`` (4H,), all float64 NumPy arrays.
    """
    draw = _SCHEMES.get(scheme)
    if draw is None:
        raise ConfigError(f"unknown init {scheme!r}; expected one of {', '.join(INITS)}.")
    params = draw(rng, input_size, hidden_size)
    if not bias:
        params = {k: v for k, v in params.items() if not k.startswith("bias")}
    return params


def _xavier(rng: np.random.Generator, n_in: int, h: int) -> dict[str, np.ndarray]:
    return {
        "weight_ih": _glorot_uniform(rng, 4 * h, n_in),
        "weight_hh": _glorot_uniform(rng, 4 * h, h),
        "bias_ih": np.zeros(4 * h),
        "bias_hh": np.zeros(4 * h),
    }


def _pytorch(rng: np.random.Generator, n_in: int, h: int) -> dict[str, np.ndarray]:
    k = 1.0 / math.sqrt(h)
    return {
        "weight_ih": rng.uniform(-k, k, size=(4 * h, n_in)),
        "weight_hh": rng.uniform(-k, k, size=(4 * h, h)),
        "bias_ih": rng.uniform(-k, k, size=4 * h),
        "bias_hh": rng.uniform(-k, k, size=4 * h),
    }


def _keras(rng: np.random.Generator, n_in: int, h: int) -> dict[str, np.ndarray]:
    bias_ih = np.zeros(4 * h)
    bias_ih[GATE_F * h : (GATE_F + 1) * h] = 1.0
    return {
        # Keras draws kernel (in, 4H) and recurrent_kernel (H, 4H); ours are their transposes.
        "weight_ih": _glorot_uniform(rng, n_in, 4 * h).T.copy(),
        "weight_hh": _orthogonal(rng, h, 4 * h).T.copy(),
        "bias_ih": bias_ih,
        "bias_hh": np.zeros(4 * h),
    }


_SCHEMES: dict[str, Callable[[np.random.Generator, int, int], dict[str, np.ndarray]]] = {
    "xavier": _xavier,
    "pytorch": _pytorch,
    "keras": _keras,
}
