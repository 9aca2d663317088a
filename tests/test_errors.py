"""Every error at the edge: a specific exception whose message says what was expected, what
was given and what to do."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_xp import (
    LSTM,
    BackendMismatchError,
    ConfigError,
    DeviceUnavailableError,
    DTypeError,
    InvalidDeviceError,
    LSTMCell,
    LSTMXPError,
    ShapeError,
    UnknownBackendError,
)


def test_unknown_backend():
    with pytest.raises(UnknownBackendError, match=r"unknown backend 'tensorflow'.*'numpy'"):
        LSTM(3, 5, backend="tensorflow")
    with pytest.raises(UnknownBackendError, match="got int 3"):
        LSTM(3, 5, backend=3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_size=0), "input_size must be a positive integer; got 0"),
    (dict(hidden_size=-2), "hidden_size must be a positive integer; got -2"),
    (dict(num_layers=0), "num_layers must be a positive integer; got 0"),
    (dict(hidden_size=2.5), "hidden_size must be a positive integer; got 2.5"),
    (dict(input_size=True), "input_size must be a positive integer; got True"),
    (dict(init="he"), "unknown init 'he'; expected one of xavier, pytorch, keras"),
])
def test_bad_config(kwargs, match):
    args = dict(input_size=3, hidden_size=5) | kwargs
    with pytest.raises(ConfigError, match=match):
        LSTM(**args)


@pytest.mark.parametrize("dtype", ["int32", "float8", "complex64", "bfloat16"])
def test_unknown_dtype(dtype):
    expected = f"dtype must be one of float16, float32, float64; got '{dtype}'"
    with pytest.raises(DTypeError, match=expected):
        LSTM(3, 5, dtype=dtype)


def test_dtype_missing_on_device():
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(DTypeError, match="has no float64; it offers float32"):
        LSTM(3, 5, backend="array_api_strict", device=strict.Device("no_float64"), dtype="float64")
    with pytest.raises(DTypeError, match="has no float16"):
        LSTM(3, 5, backend="array_api_strict", dtype="float16")


def test_jax_float64_needs_x64(monkeypatch):
    pytest.importorskip("jax")
    monkeypatch.setattr("lstm_xp._backend.adapters.jax_x64_enabled", lambda: False)
    with pytest.raises(DTypeError, match="jax_enable_x64"):
        LSTM(3, 5, backend="jax", dtype="float64")


def test_bad_devices():
    with pytest.raises(InvalidDeviceError, match="runs on device 'cpu' only; got device='cuda:0'"):
        LSTM(3, 5, device="cuda:0")
    with pytest.raises(InvalidDeviceError, match="non-negative int or 'cuda:N'"):
        LSTM(3, 5, backend="cupy", device="tpu")


def test_torch_gpu_that_is_not_there():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("torch sees a CUDA device here")
    with pytest.raises(DeviceUnavailableError, match=r"torch sees 0 CUDA device.*device='cpu'"):
        LSTM(3, 5, backend="torch", device="cuda:0")


@pytest.mark.parametrize("shape,match", [
    ((4,), r"X must be \(T, B, I\) or unbatched \(T, I\) with I=3; got an array of shape \(4,\)"),
    ((2, 3, 4, 3), r"got an array of shape \(2, 3, 4, 3\)"),
    ((4, 2, 7), "X has 7 features on its last axis; this model expects input_size=3"),
    ((4, 7), "X has 7 features"),
    ((0, 2, 3), r"at least one step and one sequence; got \(T, B\) = \(0, 2\)"),
])
def test_bad_input_shape(shape, match):
    with pytest.raises(ShapeError, match=match):
        LSTM(3, 5)(np.zeros(shape))


@pytest.mark.parametrize("value", [np.zeros((4, 2, 3), dtype=np.int64), np.zeros((4, 3), bool),
                                   [[1, 2, 3]], np.zeros((4, 3), np.complex64)])
def test_integer_boolean_complex_input(value):
    expected = r"expected real floating data.*cast them to a float dtype"
    with pytest.raises(DTypeError, match=expected):
        LSTM(3, 5)(value)


def test_integer_input_of_model_namespace(case):
    model = LSTM(3, 5, **case.model_kwargs)
    ints = model.xp.zeros((4, 3), dtype=model.xp.int32, device=model.device)
    with pytest.raises(DTypeError, match="int32"):
        model(ints)


def test_array_of_another_library():
    torch = pytest.importorskip("torch")
    expected = r"torch array.*backend 'numpy'.*backend='torch'"
    with pytest.raises(BackendMismatchError, match=expected):
        LSTM(3, 5)(torch.zeros(4, 3))


def test_array_on_another_device():
    strict = pytest.importorskip("array_api_strict")
    model = LSTM(3, 5, backend="array_api_strict")
    x = strict.zeros((4, 3), dtype=strict.float32, device=strict.Device("device1"))
    with pytest.raises(BackendMismatchError, match=r"device1.*model is on.*CPU_DEVICE.*Move it"):
        model(x)


def test_not_an_array():
    with pytest.raises(BackendMismatchError, match=r"must be an array.*got object"):
        LSTM(3, 5)(object())


@pytest.mark.parametrize("batched", [True, False])
def test_bad_state_shape(batched):
    model = LSTM(3, 5, 2, bidirectional=True)
    x = np.zeros((4, 2, 3)) if batched else np.zeros((4, 3))
    good = (4, 2, 5) if batched else (4, 5)
    bad = (2, 2, 5) if batched else (2, 5)
    with pytest.raises(ShapeError, match=rf"h0 has shape \({bad[0]}, .*expected \({good[0]}, "):
        model(x, (np.zeros(bad), np.zeros(good)))
    with pytest.raises(ShapeError, match="c0 has shape"):
        model(x, (np.zeros(good), np.zeros(bad)))
    with pytest.raises(ShapeError, match="state must be a pair"):
        model(x, np.zeros(good))


def test_step_errors():
    with pytest.raises(ConfigError, match=r"bidirectional.*model\.forward_sequence"):
        LSTM(3, 5, bidirectional=True).forward(np.zeros((3, 1)))
    model = LSTM(3, 5, 2)
    with pytest.raises(ShapeError, match=r"column \(3, 1\), a vector \(3,\) or a batch"):
        model.forward(np.zeros((4, 1)))
    expected = r"h_prev has shape \(5, 1\).*\(2, 5, 1\) with a leading layer"
    with pytest.raises(ShapeError, match=expected):
        model.forward(np.zeros((3, 1)), np.zeros((5, 1)), np.zeros((5, 1)))


def test_cell_errors():
    cell = LSTMCell(3, 5)
    with pytest.raises(ShapeError, match=r"x must be \(B, 3\) or \(3,\); got shape \(2, 4\)"):
        cell(np.zeros((2, 4)))
    with pytest.raises(ShapeError, match=r"h has shape \(5,\); expected \(2, 5\)"):
        cell(np.zeros((2, 3)), (np.zeros(5), np.zeros((2, 5))))


def test_all_errors_share_a_base_and_builtin_classes():
    for exc in (UnknownBackendError, ConfigError, ShapeError):
        assert issubclass(exc, LSTMXPError) and issubclass(exc, ValueError)
    assert issubclass(DTypeError, TypeError) and issubclass(BackendMismatchError, TypeError)
