"""state_dict / load_state_dict / to()."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_xp import LSTM, LSTMCell, StateDictError


def test_names_and_shapes():
    model = LSTM(3, 5, 2, bidirectional=True)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "weight_ih_l0": (20, 3), "weight_hh_l0": (20, 5), "bias_ih_l0": (20,), "bias_hh_l0": (20,),
        "weight_ih_l0_reverse": (20, 3), "weight_hh_l0_reverse": (20, 5),
        "bias_ih_l0_reverse": (20,), "bias_hh_l0_reverse": (20,),
        "weight_ih_l1": (20, 10), "weight_hh_l1": (20, 5), "bias_ih_l1": (20,), "bias_hh_l1": (20,),
        "weight_ih_l1_reverse": (20, 10), "weight_hh_l1_reverse": (20, 5),
        "bias_ih_l1_reverse": (20,), "bias_hh_l1_reverse": (20,),
    }
    assert set(LSTMCell(3, 5).state_dict()) == {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}


def test_load_round_trip_changes_outputs(case, to_np, rng):
    src = LSTM(3, 4, 2, seed=1, init="pytorch")
    dst = LSTM(3, 4, 2, seed=2, **case.model_kwargs)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    assert not np.allclose(to_np(dst(x)[0]), src(x)[0])
    dst.load_state_dict(src.state_dict())  # NumPy arrays into any backend
    np.testing.assert_allclose(to_np(dst(x)[0]), src(x)[0], rtol=1e-5, atol=1e-6)
    again = LSTM(3, 4, 2, seed=3, **case.model_kwargs)
    again.load_state_dict(dst.state_dict())  # arrays of the model's own namespace
    for k, v in dst.state_dict().items():
        np.testing.assert_array_equal(to_np(again.state_dict()[k]), to_np(v))


def test_load_copies(rng):
    model = LSTM(2, 3, seed=0)
    sd = {k: np.array(v) for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    sd["weight_ih_l0"][...] = 99.0
    assert not np.any(model.state_dict()["weight_ih_l0"] == 99.0)


def test_load_casts_other_float_precision():
    model = LSTM(2, 3, seed=0)
    sd64 = {k: np.asarray(v, dtype=np.float64) * 2 for k, v in model.state_dict().items()}
    model.load_state_dict(sd64)
    w = model.state_dict()["weight_hh_l0"]
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, sd64["weight_hh_l0"].astype(np.float32))


@pytest.mark.parametrize("fault", ["missing", "extra", "shape", "int", "foreign"])
def test_load_errors_leave_model_unchanged(fault):
    model = LSTM(2, 3, 2, seed=0)
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    sd = {k: np.array(v) * 0 for k, v in model.state_dict().items()}
    if fault == "missing":
        del sd["bias_hh_l1"]
        match = "missing \\['bias_hh_l1'\\]"
    elif fault == "extra":
        sd["weight_ih_l2"] = np.zeros((12, 3), np.float32)
        match = "unexpected \\['weight_ih_l2'\\]"
    elif fault == "shape":
        sd["weight_hh_l1"] = np.zeros((12, 4), np.float32)
        match = "weight_hh_l1.*shape \\(12, 4\\); expected \\(12, 3\\)"
    elif fault == "int":
        sd["bias_ih_l1"] = np.zeros(12, dtype=np.int64)
        match = "bias_ih_l1.*dtype int64"
    else:
        torch = pytest.importorskip("torch")
        sd["bias_ih_l1"] = torch.zeros(12)
        match = "bias_ih_l1.*torch"
    with pytest.raises(StateDictError, match=match):
        model.load_state_dict(sd)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_to_makes_an_independent_copy(case, to_np, rng):
    model = LSTM(3, 4, 2, bidirectional=True, seed=5)
    moved = model.to(backend=case.backend, device=case.device)
    assert moved.backend == case.backend and model.backend == "numpy"
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(to_np(moved(x)[0]), model(x)[0], rtol=1e-5, atol=1e-6)
    back = moved.to(backend="numpy")
    np.testing.assert_array_equal(back.state_dict()["weight_hh_l1_reverse"],
                                  model.state_dict()["weight_hh_l1_reverse"])
    back.load_state_dict({k: v * 0 for k, v in back.state_dict().items()})
    assert np.any(model.state_dict()["weight_ih_l0"] != 0)


def test_to_dtype():
    model = LSTM(3, 4, seed=5)
    m64 = model.to(dtype="float64")
    assert m64.state_dict()["weight_ih_l0"].dtype == np.float64
    np.testing.assert_array_equal(m64.state_dict()["weight_ih_l0"].astype(np.float32),
                                  model.state_dict()["weight_ih_l0"])


def test_replaced_parameters_are_used_by_the_next_call(rng):
    """The model groups its parameters once and keeps them until one is replaced:
    update_parameters, load_state_dict and to() each change what the next call computes,
    exactly as a fresh model with those parameters computes it."""
    model = LSTM(3, 4, 2, seed=1)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    model(x)  # groups and keeps the first parameters
    other = LSTM(3, 4, 2, seed=7)
    model.update_parameters({"weight_hh_l1": other.state_dict()["weight_hh_l1"]})
    mixed = LSTM(3, 4, 2, seed=1)
    mixed.load_state_dict({**mixed.state_dict(),
                           "weight_hh_l1": other.state_dict()["weight_hh_l1"]})
    np.testing.assert_array_equal(model(x)[0], mixed(x)[0])
    model.load_state_dict(other.state_dict())
    np.testing.assert_array_equal(model(x)[0], other(x)[0])
    twin = model.to(dtype="float64")
    np.testing.assert_allclose(twin(x)[0], other(x)[0], rtol=1e-5, atol=1e-6)
    assert twin(x)[0].dtype == np.float64
