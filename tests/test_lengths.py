"""Variable-length batches (lengths and masks), per-sample resets and chunked streaming."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_lstm

from lstm_xp import LSTM, DTypeError, LengthsError, ShapeError

TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-12)}


def _reference_padded(model, x, lengths, to_np, state=None):
    """Each sequence alone, truncated to its length, through the independent reference."""
    params = {k: to_np(v) for k, v in model.state_dict().items()}
    D, L, H = model.num_directions, model.num_layers, model.hidden_size
    T, B, _ = x.shape
    y = np.zeros((T, B, D * H))
    h_n = np.zeros((D * L, B, H))
    c_n = np.zeros((D * L, B, H))
    for b, n in enumerate(lengths):
        h0 = None if state is None else state[0][:, b:b + 1]
        c0 = None if state is None else state[1][:, b:b + 1]
        if n == 0:
            h_n[:, b] = 0 if h0 is None else h0[:, 0]
            c_n[:, b] = 0 if c0 is None else c0[:, 0]
            continue
        ry, rh, rc = reference_lstm(x[:n, b:b + 1], params, L, model.bidirectional, h0, c0)
        y[:n, b] = ry[:, 0]
        h_n[:, b], c_n[:, b] = rh[:, 0], rc[:, 0]
    return y, h_n, c_n


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_lengths_match_reference(case, to_np, rng, precision, bidirectional, with_state):
    dtype = case.dtype(precision)
    T, B, I, H = 7, 6, 3, 4
    model = LSTM(I, H, 2, bidirectional=bidirectional, init="pytorch", seed=3, dtype=dtype,
                 **case.model_kwargs)
    lengths = np.array([3, 7, 1, 5, 7, 0])  # unsorted, with 1, T and 0
    x = rng.standard_normal((T, B, I)).astype(precision)
    D = 2 if bidirectional else 1
    state = tuple(rng.standard_normal((2 * D, B, H)).astype(precision) for _ in range(2)) \
        if with_state else None
    y, (h, c) = model(x, state, lengths)
    ry, rh, rc = _reference_padded(model, x, lengths, to_np, state)
    np.testing.assert_allclose(to_np(y), ry, **TOL[precision])
    np.testing.assert_allclose(to_np(h), rh, **TOL[precision])
    np.testing.assert_allclose(to_np(c), rc, **TOL[precision])


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_lengths_equal_torch_packed_sequences(rng, batch_first, with_state):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    T, B, I, H = 9, 7, 4, 5
    model = LSTM(I, H, 2, bidirectional=True, batch_first=batch_first, dtype="float64",
                 init="pytorch", seed=4)
    twin = torch.nn.LSTM(I, H, 2, bidirectional=True, batch_first=batch_first,
                         dtype=torch.float64)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    lengths = rng.permutation(np.array([1, T, 4, 6, T, 2, 8]))
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    state = tuple(rng.standard_normal((4, B, H)) for _ in range(2)) if with_state else None
    y, (h, c) = model(x, state, lengths)
    packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                  batch_first=batch_first, enforce_sorted=False)
    with torch.no_grad():
        out, (th, tc) = twin(packed, None if state is None else tuple(map(torch.from_numpy, state)))
    ty, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    assert np.max(np.abs(y - ty.numpy())) <= 1e-12
    assert np.max(np.abs(h - th.numpy())) <= 1e-12
    assert np.max(np.abs(c - tc.numpy())) <= 1e-12


def test_mask_equals_lengths(case, to_np, rng):
    T, B = 6, 4
    model = LSTM(3, 4, bidirectional=True, batch_first=True, seed=5, **case.model_kwargs)
    lengths = np.array([6, 2, 0, 4])
    mask = np.arange(T)[None, :] < lengths[:, None]
    x = rng.standard_normal((B, T, 3)).astype(np.float32)
    by_len = model(x, lengths=lengths)
    by_mask = model(x, mask=mask)
    for a, b in zip((by_len[0], *by_len[1]), (by_mask[0], *by_mask[1]), strict=True):
        np.testing.assert_array_equal(to_np(a), to_np(b))


def test_full_lengths_equal_no_lengths(case, to_np, rng):
    model = LSTM(3, 4, 2, bidirectional=True, seed=6, **case.model_kwargs)
    x = rng.standard_normal((5, 3, 3)).astype(np.float32)
    a = model(x)
    b = model(x, lengths=[5, 5, 5])
    for u, v in zip((a[0], *a[1]), (b[0], *b[1]), strict=True):
        np.testing.assert_array_equal(to_np(u), to_np(v))


def test_unbatched_lengths(to_np, rng):
    model = LSTM(3, 4, seed=7, dtype="float64")
    x = rng.standard_normal((6, 3))
    y, (h, _) = model(x, lengths=4)
    y4, (h4, _) = model(x[:4])
    np.testing.assert_allclose(y[:4], y4, rtol=1e-14)
    np.testing.assert_array_equal(y[4:], 0.0)
    np.testing.assert_allclose(h, h4, rtol=1e-14)
    assert model(x, mask=np.arange(6) < 4)[0].shape == (6, 4)


def test_lengths_as_model_arrays(case, to_np, rng):
    model = LSTM(2, 3, seed=8, **case.model_kwargs)
    dev_lengths = model.xp.asarray(np.array([2, 4], np.int32), device=model.device)
    x = rng.standard_normal((4, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(to_np(model(x, lengths=dev_lengths)[0]),
                                  to_np(model(x, lengths=[2, 4])[0]))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lengths=[1, 2], mask=np.ones((2, 4), bool)), LengthsError, "lengths or mask, not both"),
    (dict(lengths=[5, 2]), LengthsError, r"0\.\.T = 0\.\.4; sequence 0 has length 5"),
    (dict(lengths=[2, -1]), LengthsError, "sequence 1 has length -1"),
    (dict(lengths=[2, 3, 4]), ShapeError, r"lengths has shape \(3,\); expected \(2,\)"),
    (dict(lengths=[2.0, 3.0]), DTypeError, "lengths must be integers; got dtype float64"),
    (dict(lengths=[True, False]), DTypeError, "lengths must be integers; got dtype bool"),
    (dict(mask=np.array([[1, 1, 0, 1], [1, 0, 0, 0]], bool)), LengthsError,
     "not right-padded: row 0"),
    (dict(mask=np.ones((4, 2), bool)), ShapeError, r"mask has shape \(4, 2\); expected \(2, 4\)"),
    (dict(mask=np.ones((2, 4))), DTypeError, "mask must be boolean; got dtype float64"),
    (dict(reset=[1, 0]), DTypeError, "reset must be boolean"),
    (dict(reset=[True]), ShapeError, r"reset has shape \(1,\); expected \(2,\)"),
])
def test_errors(kwargs, error, match):
    model = LSTM(3, 4)
    with pytest.raises(error, match=match):
        model(np.zeros((4, 2, 3)), **kwargs)


def test_reset_zeroes_selected_streams(case, to_np, rng):
    model = LSTM(3, 4, 2, seed=9, dtype=case.dtype("float64"), **case.model_kwargs)
    x1 = rng.standard_normal((5, 2, 3))
    x2 = rng.standard_normal((4, 2, 3))
    _, state = model(x1)
    y, (h, _) = model(x2, state, reset=[False, True])
    y_cont, (h_cont, _) = model(x2[:, :1], tuple(s[:, :1, ...] for s in state))
    np.testing.assert_allclose(to_np(h)[:, :1], to_np(h_cont), **TOL["float64"])
    y_new, (h_new, _) = model(x2[:, 1:])
    np.testing.assert_allclose(to_np(y)[:, :1], to_np(y_cont), **TOL["float64"])
    np.testing.assert_allclose(to_np(y)[:, 1:], to_np(y_new), **TOL["float64"])
    np.testing.assert_allclose(to_np(h)[:, 1:], to_np(h_new), **TOL["float64"])


@settings(max_examples=30, deadline=None)
@given(data=st.data(), T=st.integers(2, 12), B=st.integers(1, 4), L=st.integers(1, 2),
       use_lengths=st.booleans())
def test_chunked_streaming_equals_one_call(data, T, B, L, use_lengths):
    rng = np.random.default_rng(T * 100 + B)
    model = LSTM(3, 4, L, dtype="float64", init="pytorch", seed=10)
    x = rng.standard_normal((T, B, 3))
    lengths = rng.integers(0, T + 1, size=B) if use_lengths else np.full(B, T)
    cuts = sorted(data.draw(st.sets(st.integers(1, T - 1), max_size=4)))
    y_whole, (h_whole, c_whole) = model(x, lengths=lengths)
    state, ys = None, []
    for a, b in zip([0, *cuts], [*cuts, T], strict=True):
        chunk_lengths = np.clip(lengths - a, 0, b - a)
        y, state = model(x[a:b], state, lengths=chunk_lengths)
        ys.append(y)
    np.testing.assert_allclose(np.concatenate(ys), y_whole, **TOL["float64"])
    np.testing.assert_allclose(state[0], h_whole, **TOL["float64"])
    np.testing.assert_allclose(state[1], c_whole, **TOL["float64"])


@pytest.mark.parametrize("kernel", ["auto", "pure"])
def test_padding_of_nan_and_inf_counts_for_nothing_in_training(case, to_np, rng, kernel):
    """The input past each length may hold anything: outputs, final state, the input's
    gradient and every weight's gradient are those of zero padding (and finite), in both
    directions over 2 layers; the input's gradient there is zero."""
    T, B, I, H = 6, 4, 3, 5
    lengths = np.array([6, 2, 0, 4])
    past = np.arange(T)[:, None] >= lengths[None, :]  # (T, B)
    x = rng.standard_normal((T, B, I))
    x[past] = 0.0
    dirty = x.copy()
    dirty[past] = np.array([np.nan, np.inf, -np.inf])
    dy = rng.standard_normal((T, B, 2 * H))  # not zero past the lengths either
    dtype = case.dtype("float64")
    results = []
    for inputs in (x, dirty):
        model = LSTM(I, H, 2, bidirectional=True, seed=3, dtype=dtype, kernel=kernel,
                     **case.model_kwargs)
        y, (h, c), tape = model.forward_train(inputs, lengths=lengths)
        dx, _, grads = model.backward(tape, dy)
        results.append([to_np(a) for a in (y, h, c, dx, *(grads[k] for k in sorted(grads)))])
    for clean, got in zip(*results, strict=True):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, clean, rtol=1e-12, atol=1e-12)
    assert np.all(results[1][3][past] == 0)
