"""Forward pass on every backend against the independent float64 reference."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_cell, reference_lstm

from lstm_xp import LSTM, LSTMCell

TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-12)}


def _params_np(model, to_np):
    return {k: to_np(v) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (2, True), (1, True)])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_matches_reference(case, to_np, rng, precision, num_layers, bidirectional, with_state,
                           batch_first):
    dtype = case.dtype(precision)
    T, B, I, H = 5, 3, 4, 6
    model = LSTM(I, H, num_layers, bidirectional=bidirectional, batch_first=batch_first,
                 init="pytorch", seed=7, dtype=dtype, **case.model_kwargs)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((T, B, I))
    state = None
    if with_state:
        state = (rng.standard_normal((D * num_layers, B, H)),
                 rng.standard_normal((D * num_layers, B, H)))
    X = np.swapaxes(x, 0, 1) if batch_first else x
    y, (h_n, c_n) = model(X.astype(precision), None if state is None else
                          tuple(s.astype(precision) for s in state))
    assert model.xp is case.xp and model.backend == case.backend
    y = to_np(y)
    assert y.dtype == np.dtype(precision)
    assert y.shape == ((B, T, D * H) if batch_first else (T, B, D * H))
    assert h_n.shape == c_n.shape == (D * num_layers, B, H)
    # The reference sees exactly the values the model saw (rounded to the model's dtype).
    ry, rh, rc = reference_lstm(x.astype(precision), _params_np(model, to_np), num_layers,
                                bidirectional, *(None, None) if state is None else
                                tuple(s.astype(precision) for s in state))
    if batch_first:
        ry = np.swapaxes(ry, 0, 1)
    np.testing.assert_allclose(y, ry, **TOL[precision])
    np.testing.assert_allclose(to_np(h_n), rh, **TOL[precision])
    np.testing.assert_allclose(to_np(c_n), rc, **TOL[precision])


def _same_device(a, b):
    # cupy.cuda.Device objects compare by identity: compare their ids too.
    return a == b or getattr(a, "id", object()) == getattr(b, "id", object())


def test_outputs_stay_on_model_device(case):
    model = LSTM(2, 3, seed=0, **case.model_kwargs)
    y, (h, c) = model(np.ones((4, 2, 2)))
    for a in (y, h, c):
        assert array_api_compat.array_namespace(a) is model.xp
        assert _same_device(array_api_compat.device(a), model.device)


def test_unbatched_equals_batch_of_one(case, to_np, rng):
    model = LSTM(3, 4, 2, bidirectional=True, seed=1, **case.model_kwargs)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    y1, (h1, c1) = model(x)
    yb, (hb, cb) = model(x[:, None, :])
    assert y1.shape == (6, 8) and h1.shape == (4, 4)
    np.testing.assert_array_equal(to_np(y1), to_np(yb)[:, 0, :])
    np.testing.assert_array_equal(to_np(h1), to_np(hb)[:, 0, :])
    np.testing.assert_array_equal(to_np(c1), to_np(cb)[:, 0, :])


def test_no_bias(case, to_np, rng):
    model = LSTM(3, 4, 2, bias=False, seed=2, **case.model_kwargs)
    assert not any(k.startswith("bias") for k in model.state_dict())
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    ry, _, _ = reference_lstm(x, _params_np(model, to_np), 2, False)
    np.testing.assert_allclose(to_np(model(x)[0]), ry, **TOL["float32"])


def test_strict_gives_numpy_outputs(to_np, rng):
    pytest.importorskip("array_api_strict")
    x = rng.standard_normal((7, 3, 4)).astype(np.float32)
    ref = LSTM(4, 5, 2, bidirectional=True, seed=3)
    strict = ref.to(backend="array_api_strict")
    np.testing.assert_allclose(to_np(strict(x)[0]), ref(x)[0], rtol=1e-6, atol=1e-7)


def test_step_api_equals_sequence(case, to_np, rng):
    """forward() step by step through a stacked model equals one call over the sequence."""
    L, T, B, I, H = 3, 6, 2, 3, 4
    model = LSTM(I, H, L, init="pytorch", seed=4, **case.model_kwargs)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y, (h_n, c_n) = model(x)
    h = c = np.zeros((L, B, H), np.float32)
    for t in range(T):
        h, c = model.forward(x[t], h, c)
        np.testing.assert_allclose(to_np(h)[-1], to_np(y)[t], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_np(h), to_np(h_n), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_np(c), to_np(c_n), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["column", "vector", "batch"])
def test_step_layouts(case, to_np, rng, layout):
    I, H = 3, 5
    model = LSTM(I, H, init="pytorch", seed=5, **case.model_kwargs)
    x = rng.standard_normal(I).astype(np.float32)
    h0 = rng.standard_normal(H).astype(np.float32)
    c0 = rng.standard_normal(H).astype(np.float32)
    shape = {"column": lambda v: v[:, None], "vector": lambda v: v, "batch": lambda v: v[None, :]}
    h, c = model.forward(*(shape[layout](v) for v in (x, h0, c0)))
    assert h.shape == c.shape == shape[layout](h0).shape
    rh, rc = reference_cell(x[None, :], h0[None, :], c0[None, :], _params_np(model, to_np), "_l0")
    np.testing.assert_allclose(to_np(h).reshape(-1), rh[0], **TOL["float32"])
    np.testing.assert_allclose(to_np(c).reshape(-1), rc[0], **TOL["float32"])


def test_step_default_state_is_zero(to_np, rng):
    model = LSTM(2, 3, 2, seed=0)
    x = rng.standard_normal((4, 2)).astype(np.float32)
    h, c = model.forward(x)
    h2, c2 = model.forward(x, np.zeros((2, 4, 3)), np.zeros((2, 4, 3)))
    assert h.shape == (2, 4, 3)
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(c, c2)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_cell_matches_reference(case, to_np, rng, precision):
    dtype = case.dtype(precision)
    cell = LSTMCell(4, 3, init="pytorch", seed=6, dtype=dtype, **case.model_kwargs)
    x = rng.standard_normal((2, 4)).astype(precision)
    h0 = rng.standard_normal((2, 3)).astype(precision)
    c0 = rng.standard_normal((2, 3)).astype(precision)
    h, c = cell(x, (h0, c0))
    rh, rc = reference_cell(x, h0, c0, _params_np(cell, to_np))
    np.testing.assert_allclose(to_np(h), rh, **TOL[precision])
    np.testing.assert_allclose(to_np(c), rc, **TOL[precision])
    hu, _ = cell(x[0], (h0[0], c0[0]))
    assert hu.shape == (3,)
    np.testing.assert_allclose(to_np(hu), rh[0], **TOL[precision])
    hz, _ = cell(x)
    rz, _ = reference_cell(x, np.zeros((2, 3)), np.zeros((2, 3)), _params_np(cell, to_np))
    np.testing.assert_allclose(to_np(hz), rz, **TOL[precision])


@pytest.mark.skip_backend("array_api_strict", reason="the standard has no float16")
def test_float16(case, to_np, rng):
    x = rng.standard_normal((5, 2, 3))
    m16 = LSTM(3, 4, 2, dtype="float16", seed=8, **case.model_kwargs)
    y16 = to_np(m16(x)[0])
    assert y16.dtype == np.float16
    ry, _, _ = reference_lstm(x.astype(np.float16), _params_np(m16, to_np), 2, False)
    np.testing.assert_allclose(y16, ry, atol=1e-2)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 5), B=st.integers(1, 3), I=st.integers(1, 4), H=st.integers(1, 4),
       L=st.integers(1, 2), bidirectional=st.booleans(), seed=st.integers(0, 2**31 - 1),
       with_state=st.booleans())
def test_random_shapes_match_reference(T, B, I, H, L, bidirectional, seed, with_state):
    rng = np.random.default_rng(seed)
    model = LSTM(I, H, L, bidirectional=bidirectional, dtype="float64", init="pytorch", seed=seed)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((T, B, I))
    state = (rng.standard_normal((D * L, B, H)), rng.standard_normal((D * L, B, H))) \
        if with_state else None
    y, (h, c) = model(x, state)
    ry, rh, rc = reference_lstm(x, model.state_dict(), L, bidirectional,
                                *(state if state else (None, None)))
    np.testing.assert_allclose(y, ry, **TOL["float64"])
    np.testing.assert_allclose(h, rh, **TOL["float64"])
    np.testing.assert_allclose(c, rc, **TOL["float64"])
