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
#: Names accepted by ``bias_init=``.
BIAS_INITS: tuple[str, ...] = ("default", "zeros", "unit_forget", "chrono")

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
    scheme: str,
    seed: int | None,
    layers: list[tuple[str, int]],
    hidden_size: int,
    bias: bool,
    bias_init: str = "default",
    chrono_max: float | None = None,
    proj_size: int = 0,
    peephole: bool = False,
    layer_norm: bool = False,
) -> dict[str, np.ndarray]:
    """Draw every layer's parameters from one Generator seeded with ``seed``.

    ``layers`` lists ``(name suffix, input size)`` in drawing order; names are
    ``weight_ih{suffix}`` and so on, see :func:`init_layer`. ``bias_init`` then replaces the
    biases, see :func:`gate_biases`.
    """
    if not isinstance(bias_init, str) or bias_init not in BIAS_INITS:
        raise ConfigError(f"unknown bias_init {bias_init!r}; expected one of "
                          f"{', '.join(BIAS_INITS)}.")
    if bias_init == "chrono" and (chrono_max is None or isinstance(chrono_max, (bool, str))
                                  or not chrono_max > 2):
        raise ConfigError(f"bias_init='chrono' needs chrono_max > 2 (the longest time scale "
                          f"in steps, e.g. the sequence length); got {chrono_max!r}.")
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for suffix, input_size in layers:
        for name, value in init_layer(scheme, rng, input_size, hidden_size, bias).items():
            params[name + suffix] = value
        if proj_size:  # LSTMP: the recurrence reads the projected state (P), W_hr projects
            params["weight_hh" + suffix] = _matrix(scheme, rng, 4 * hidden_size, proj_size,
                                                   hidden_size)
            params["weight_hr" + suffix] = _matrix(scheme, rng, proj_size, hidden_size,
                                                   hidden_size)
        if peephole:  # p_i, p_f, p_o: zero, so that a new model starts as the plain LSTM
            params["peephole" + suffix] = np.zeros(3 * hidden_size)
        if layer_norm:  # gains 1, biases 0: normalisation alone, to begin with
            params["ln_gates_weight" + suffix] = np.ones(4 * hidden_size)
            params["ln_gates_bias" + suffix] = np.zeros(4 * hidden_size)
            params["ln_cell_weight" + suffix] = np.ones(hidden_size)
            params["ln_cell_bias" + suffix] = np.zeros(hidden_size)
        if bias and bias_init != "default":
            params["bias_ih" + suffix] = gate_biases(bias_init, rng, hidden_size, chrono_max)
            params["bias_hh" + suffix] = np.zeros(4 * hidden_size)
    return params


def _matrix(scheme: str, rng: np.random.Generator, rows: int, cols: int,
            hidden: int) -> np.ndarray:
    """A ``(rows, cols)`` weight of the variants, drawn like the scheme's others."""
    if scheme == "pytorch":
        k = 1.0 / math.sqrt(hidden)
        return rng.uniform(-k, k, size=(rows, cols))
    return _glorot_uniform(rng, rows, cols)


def gate_biases(kind: str, rng: np.random.Generator, hidden: int,
                chrono_max: float | None = None) -> np.ndarray:
    """A (4H,) bias in gate order i, f, g, o.

    ``"zeros"``; ``"unit_forget"``: 1 on the forget gate (Gers et al.; Keras' default);
    ``"chrono"``: Tallec & Ollivier (2018), forget bias ``log(U(1, chrono_max - 1))`` and input
    bias its negative, so that the cell's memory time scales spread over 1..``chrono_max``
    steps (set it to the longest dependency expected, such as the sequence length).
    """
    b = np.zeros(4 * hidden)
    if kind == "zeros":
        return b
    if kind == "unit_forget":
        b[GATE_F * hidden : (GATE_F + 1) * hidden] = 1.0
        return b
    if kind == "chrono":
        if chrono_max is None or not chrono_max > 2:
            raise ConfigError(f"bias_init='chrono' needs chrono_max > 2 (the longest time scale "
                              f"in steps, e.g. the sequence length); got {chrono_max!r}.")
        forget = np.log(rng.uniform(1.0, chrono_max - 1.0, size=hidden))
        b[GATE_F * hidden : (GATE_F + 1) * hidden] = forget
        b[GATE_I * hidden : (GATE_I + 1) * hidden] = -forget
        return b
    raise ConfigError(f"unknown bias_init {kind!r}; expected one of {', '.join(BIAS_INITS)}.")


def init_linear(scheme: str, seed: int | None, in_features: int, out_features: int,
                bias: bool) -> dict[str, np.ndarray]:
    """A dense layer's ``weight`` (out, in) and ``bias`` (out,): Glorot uniform and zero bias
    for ``"xavier"``/``"keras"``, U(-1/sqrt(in), 1/sqrt(in)) everywhere for ``"pytorch"``."""
    if scheme not in INITS:
        raise ConfigError(f"unknown init {scheme!r}; expected one of {', '.join(INITS)}.")
    rng = np.random.default_rng(seed)
    if scheme == "pytorch":
        k = 1.0 / math.sqrt(in_features)
        params = {"weight": rng.uniform(-k, k, size=(out_features, in_features)),
                  "bias": rng.uniform(-k, k, size=out_features)}
    else:
        params = {"weight": _glorot_uniform(rng, out_features, in_features),
                  "bias": np.zeros(out_features)}
    return params if bias else {"weight": params["weight"]}


def dropout_generator(seed: int | None) -> np.random.Generator:
    """The host generator dropout masks are drawn from (separate from the weights' stream)."""
    return np.random.default_rng(None if seed is None else [seed, 1])


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float) -> np.ndarray:
    """Inverted-dropout mask: 0 with probability ``p``, else ``1 / (1 - p)``."""
    return (rng.random(shape) >= p) / (1.0 - p)


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
