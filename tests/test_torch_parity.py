"""Parity with ``torch.nn.LSTM`` and ``torch.nn.LSTMCell`` (the oracle), where torch is here."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_xp import LSTM, LSTMCell

torch = pytest.importorskip("torch")

# The bar: <= 1e-5 in float32 and <= 1e-12 in float64, as max absolute difference.
MAX_ERR = {"float32": 1e-5, "float64": 1e-12}
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def _torch_twin(model, precision):
    twin = torch.nn.LSTM(model.input_size, model.hidden_size, model.num_layers, bias=model.bias,
                         batch_first=model.batch_first, bidirectional=model.bidirectional,
                         dtype=TORCH_DTYPE[precision])
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("init", ["pytorch", "keras", "xavier"])
def test_lstm_equals_torch(rng, precision, num_layers, bidirectional, batch_first, with_state,
                           init):
    T, B, I, H = 9, 4, 5, 7
    model = LSTM(I, H, num_layers, bidirectional=bidirectional, batch_first=batch_first,
                 dtype=precision, init=init, seed=11)
    twin = _torch_twin(model, precision)
    D = 2 if bidirectional else 1
    shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(shape).astype(precision)
    state = None
    if with_state:
        state = tuple(rng.standard_normal((D * num_layers, B, H)).astype(precision)
                      for _ in range(2))
    y, (h, c) = model(x, state)
    with torch.no_grad():
        ty, (th, tc) = twin(torch.from_numpy(x),
                            None if state is None else tuple(map(torch.from_numpy, state)))
    for ours, theirs in ((y, ty), (h, th), (c, tc)):
        assert ours.shape == tuple(theirs.shape)
        assert np.max(np.abs(ours - theirs.numpy())) <= MAX_ERR[precision]


def test_lstm_unbatched_equals_torch(rng):
    model = LSTM(3, 4, 2, bidirectional=True, dtype="float64", init="pytorch", seed=1)
    twin = _torch_twin(model, "float64")
    x = rng.standard_normal((6, 3))
    y, (h, c) = model(x)
    with torch.no_grad():
        ty, (th, tc) = twin(torch.from_numpy(x))
    for ours, theirs in ((y, ty), (h, th), (c, tc)):
        assert ours.shape == tuple(theirs.shape)
        assert np.max(np.abs(ours - theirs.numpy())) <= MAX_ERR["float64"]


def test_torch_backend_equals_torch_module(rng):
    """The Array-API core running on torch tensors agrees with torch's own kernel."""
    model = LSTM(5, 6, 2, bidirectional=True, backend="torch", dtype="float64", seed=2)
    twin = torch.nn.LSTM(5, 6, 2, bidirectional=True, dtype=torch.float64)
    twin.load_state_dict(model.state_dict())
    x = torch.from_numpy(rng.standard_normal((8, 3, 5)))
    y, _ = model(x)
    assert isinstance(y, torch.Tensor)
    with torch.no_grad():
        assert torch.max(torch.abs(y - twin(x)[0])).item() <= MAX_ERR["float64"]


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_cell_equals_torch(rng, precision):
    cell = LSTMCell(5, 4, init="pytorch", dtype=precision, seed=3)
    twin = torch.nn.LSTMCell(5, 4, dtype=TORCH_DTYPE[precision])
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in cell.state_dict().items()})
    x = rng.standard_normal((3, 5)).astype(precision)
    h0, c0 = (rng.standard_normal((3, 4)).astype(precision) for _ in range(2))
    h, c = cell(x, (h0, c0))
    with torch.no_grad():
        th, tc = twin(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    assert np.max(np.abs(h - th.numpy())) <= MAX_ERR[precision]
    assert np.max(np.abs(c - tc.numpy())) <= MAX_ERR[precision]


def test_state_dict_names_and_shapes_equal_torch():
    model = LSTM(3, 5, 3, bidirectional=True, seed=0)
    twin = torch.nn.LSTM(3, 5, 3, bidirectional=True)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    assert ours == theirs
    assert list(ours) == list(theirs)  # same order too
