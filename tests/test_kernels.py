"""Every fused kernel equals the pure Array-API reference it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_xp import LSTM, ConfigError
from lstm_xp._functional import layer_scan
from lstm_xp.kernels import select_scan


def test_kernel_choice(xp):
    model = LSTM(2, 3, **xp.model_kwargs)
    expected = {"numpy": "layer_scan_numpy", "cupy": "layer_scan_cupy",
                "jax": "layer_scan_jax"}.get(xp.backend, "layer_scan")
    assert model._scan.__name__ == expected
    assert LSTM(2, 3, kernel="pure", **xp.model_kwargs)._scan is layer_scan
    with pytest.raises(ConfigError, match="kernel must be one of auto, pure; got 'numba'"):
        LSTM(2, 3, kernel="numba")


def test_to_reselects_the_kernel(xp):
    model = LSTM(2, 3).to(backend=xp.backend, device=xp.device)
    assert model._scan is select_scan(model._backend)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 1, 3, 5), (5, 4, 6, 8), (3, 33, 2, 17)])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_fused_equals_pure(xp, to_np, rng, precision, shape, bidirectional, with_state,
                           with_lengths):
    dtype = xp.dtype(precision)
    T, B, I, H = shape
    kwargs = dict(bidirectional=bidirectional, init="pytorch", seed=9, dtype=dtype,
                  **xp.model_kwargs)
    fused = LSTM(I, H, 2, **kwargs)
    pure = LSTM(I, H, 2, kernel="pure", **kwargs)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((T, B, I)).astype(precision)
    state = tuple(rng.standard_normal((2 * D, B, H)).astype(precision) for _ in range(2)) \
        if with_state else None
    lengths = rng.integers(0, T + 1, size=B) if with_lengths else None
    tol = dict(rtol=1e-6, atol=1e-6) if precision == "float32" else dict(rtol=1e-13, atol=1e-14)
    for a, b in zip(*(_flat(m(x, state, lengths)) for m in (fused, pure)), strict=True):
        np.testing.assert_allclose(to_np(a), to_np(b), **tol)


def _flat(result):
    y, (h, c) = result
    return y, h, c


def test_numpy_kernel_on_odd_sizes_and_prefixes(rng):
    """Sizes that leave zero rows in the stacked weights, B = 1, and lengths whose running
    prefixes shrink and grow: the column views of every prefix size equal the reference."""
    for (T, B, I, H), lengths in [((7, 1, 1, 1), None), ((11, 5, 9, 3), [11, 0, 4, 4, 10]),
                                  ((6, 3, 16, 8), [1, 6, 2]), ((1, 2, 3, 4), [0, 0]),
                                  ((2, 1, 1, 1), [1]), ((3, 2, 2, 2), [0, 3]),
                                  ((70, 1, 3, 8), None), ((70, 1, 3, 8), [69])]:
        model = LSTM(I, H, bidirectional=True, dtype="float64", seed=1)
        pure = LSTM(I, H, bidirectional=True, dtype="float64", seed=1, kernel="pure")
        x = rng.standard_normal((T, B, I))
        state = tuple(rng.standard_normal((2, B, H)) for _ in range(2))
        lengths = None if lengths is None else np.array(lengths)
        for a, b in zip(_flat(model(x, state, lengths)), _flat(pure(x, state, lengths)),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_numpy_kernel_does_not_modify_inputs(rng):
    model = LSTM(3, 4, 2, seed=2)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    h0 = rng.standard_normal((2, 2, 4)).astype(np.float32)
    c0 = rng.standard_normal((2, 2, 4)).astype(np.float32)
    copies = [a.copy() for a in (x, h0, c0)]
    before = {k: v.copy() for k, v in model.state_dict().items()}
    model(x, (h0, c0))
    for a, b in zip((x, h0, c0), copies, strict=True):
        np.testing.assert_array_equal(a, b)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_numpy_kernel_zeroes_outputs_of_a_chunk_where_nothing_runs(rng):
    """Streaming can hand the kernel a chunk in which every sequence has already ended. Its
    outputs must be zeros, not whatever the reused memory held: run a full chunk first so
    that the allocator has non-zero memory of the same size to give back."""
    model = LSTM(3, 4, dtype="float64", seed=0)
    for _ in range(5):
        model(rng.standard_normal((1, 2, 3)))  # outputs of shape (1, 2, 4), then freed
        x, h0 = rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 4))
        y, (h, c) = model(x, (h0, 2 * h0), lengths=np.array([0, 0]))
        assert np.all(y == 0.0)
        np.testing.assert_array_equal(h, h0)
        np.testing.assert_array_equal(c, 2 * h0)
