"""Initialisers: their distributions, and bit-identical weights on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_xp import LSTM


@pytest.mark.parametrize("init", ["xavier", "pytorch", "keras"])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_same_seed_same_weights_everywhere(case, to_np, init, precision):
    dtype = case.dtype(precision)
    ref = LSTM(4, 6, 2, bidirectional=True, init=init, seed=42, dtype=dtype)
    model = LSTM(4, 6, 2, bidirectional=True, init=init, seed=42, dtype=dtype, **case.model_kwargs)
    for name, value in ref.state_dict().items():
        np.testing.assert_array_equal(to_np(model.state_dict()[name]), value, err_msg=name)


def test_seeds_differ_and_none_is_random():
    a = LSTM(3, 4, seed=1).state_dict()["weight_ih_l0"]
    b = LSTM(3, 4, seed=2).state_dict()["weight_ih_l0"]
    c = LSTM(3, 4).state_dict()["weight_ih_l0"]
    d = LSTM(3, 4).state_dict()["weight_ih_l0"]
    assert not np.array_equal(a, b)
    assert not np.array_equal(c, d)


def test_xavier_is_glorot_uniform_with_zero_bias():
    I, H = 64, 128
    p = LSTM(I, H, init="xavier", seed=0, dtype="float64").state_dict()
    for name, fan_in in (("weight_ih_l0", I), ("weight_hh_l0", H)):
        w = p[name]
        limit = np.sqrt(6.0 / (fan_in + 4 * H))
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.98 * limit
        # Uniform on [-a, a] has variance a^2 / 3.
        assert w.var() == pytest.approx(limit**2 / 3, rel=0.05)
    assert not p["bias_ih_l0"].any() and not p["bias_hh_l0"].any()


def test_pytorch_init_bounds():
    H = 50
    p = LSTM(7, H, init="pytorch", seed=0, dtype="float64").state_dict()
    k = 1 / np.sqrt(H)
    for name, w in p.items():
        assert np.abs(w).max() <= k, name
        assert w.var() == pytest.approx(k**2 / 3, rel=0.2), name


def test_keras_init():
    I, H = 5, 8
    p = LSTM(I, H, init="keras", seed=0, dtype="float64").state_dict()
    rec = p["weight_hh_l0"].T  # Keras' recurrent_kernel (H, 4H): orthonormal rows
    np.testing.assert_allclose(rec @ rec.T, np.eye(H), atol=1e-12)
    total = p["bias_ih_l0"] + p["bias_hh_l0"]  # Keras' single bias
    np.testing.assert_array_equal(total[H:2 * H], 1.0)  # forget gate (order i, f, g, o)
    np.testing.assert_array_equal(np.delete(total, np.s_[H:2 * H]), 0.0)
    limit = np.sqrt(6.0 / (I + 4 * H))
    assert np.abs(p["weight_ih_l0"]).max() <= limit
