"""Backend choice: names, namespaces, auto with its fallback, lazy imports, the GPU probe."""

from __future__ import annotations

import logging
import subprocess
import sys
import types

import numpy as np
import pytest

import lstm_xp
from lstm_xp import LSTM, BackendNotInstalledError, DeviceUnavailableError
from lstm_xp._backend import probe_cupy, resolve_backend

GPU_USABLE, GPU_WHY = probe_cupy(0)


def test_import_is_lazy():
    code = ("import sys, lstm_xp; m = lstm_xp.LSTM(2, 3); m([[0.0, 1.0]]); "
            "print(sorted(k for k in ('cupy', 'torch', 'jax', 'array_api_strict') "
            "if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_available_backends_reports_everything():
    report = lstm_xp.available_backends()
    assert set(report) == set(lstm_xp.BACKENDS)
    assert report["numpy"].usable and np.__version__ in report["numpy"].reason
    for name, status in report.items():
        assert isinstance(status.usable, bool) and status.reason, name
    if not GPU_USABLE:
        assert not report["cupy"].usable
        assert report["cupy"].reason


def test_missing_library_names_the_extra(monkeypatch):
    for module in ("torch", "jax", "jax.numpy", "cupy", "array_api_strict"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    probe_cupy.cache_clear()
    try:
        for name, extra in (("torch", "torch"), ("jax", "jax"), ("cupy", "cupy"),
                            ("array_api_strict", "test")):
            with pytest.raises(BackendNotInstalledError, match=rf"pip install lstm-xp\[{extra}\]"):
                LSTM(3, 5, backend=name)
        assert not lstm_xp.available_backends()["torch"].usable
        # auto still works, and says why it did not pick CuPy
        assert LSTM(3, 5, backend="auto").backend == "numpy"
    finally:
        probe_cupy.cache_clear()


@pytest.mark.skipif(GPU_USABLE, reason="a CUDA device answers here")
def test_cupy_without_gpu_is_a_clear_error():
    with pytest.raises((DeviceUnavailableError, BackendNotInstalledError)) as info:
        LSTM(3, 5, backend="cupy")
    message = str(info.value)
    assert "auto" in message and "numpy" in message


@pytest.mark.skipif(GPU_USABLE, reason="a CUDA device answers here")
def test_auto_falls_back_to_numpy_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="lstm_xp"):
        model = LSTM(3, 5, backend="auto")
    assert model.backend == "numpy"
    assert "fell back to NumPy" in model.backend_reason
    records = [r for r in caplog.records if r.name == "lstm_xp" and r.levelno == logging.INFO]
    assert records and "numpy" in records[0].getMessage()
    y, _ = model(np.zeros((2, 3)))
    assert isinstance(y, np.ndarray)


def _fake_cupy(count_error=None, count=1, kernel_error=None):
    """A stand-in for the cupy module, enough for the probe to take each of its branches."""
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: (_ for _ in ()).throw(count_error) if count_error else count,
        getDeviceProperties=lambda i: {"name": b"Fake GPU"},
    )

    class Device:
        def __init__(self, i):
            self.id = i

        def __enter__(self):
            if kernel_error:
                raise kernel_error
            return self

        def __exit__(self, *exc):
            return False

    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime, Device=Device),
                                 float32=np.float32, arange=np.arange, ones=np.ones,
                                 asnumpy=np.asarray)


@pytest.mark.parametrize("fake,reason", [
    (dict(count_error=RuntimeError("cudaErrorInsufficientDriver")), "cudaErrorInsufficientDriver"),
    (dict(count=0), "no device"),
    (dict(kernel_error=RuntimeError("nvrtc missing")), "nvrtc missing"),
])
def test_probe_reports_each_failure(monkeypatch, fake, reason):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(**fake))
    probe_cupy.cache_clear()
    try:
        usable, why = probe_cupy(0)
        assert not usable and reason in why
        with pytest.raises(DeviceUnavailableError, match=reason):
            resolve_backend("cupy")
        assert resolve_backend("auto").name == "numpy"
    finally:
        probe_cupy.cache_clear()


def test_probe_accepts_a_device_that_runs_code(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    probe_cupy.cache_clear()
    try:
        usable, why = probe_cupy(0)
        assert usable and "Fake GPU" in why
        assert not probe_cupy(3)[0]  # only one device
    finally:
        probe_cupy.cache_clear()


def test_namespace_objects_are_accepted():
    import array_api_compat.numpy as compat_np

    assert LSTM(2, 3, backend=np).backend == "numpy"
    assert LSTM(2, 3, backend=compat_np).backend == "numpy"
    strict = pytest.importorskip("array_api_strict")
    model = LSTM(2, 3, backend=strict, device=strict.Device("device1"))
    assert model.backend == "array_api_strict" and model.device == strict.Device("device1")
    assert model(np.zeros((4, 2)))[0].device == strict.Device("device1")


def test_strict_device_by_name():
    strict = pytest.importorskip("array_api_strict")
    model = LSTM(2, 3, backend="array_api_strict", device="device1")
    assert model.device == strict.Device("device1")


def test_auto_with_cpu_device_is_numpy():
    model = LSTM(2, 3, backend="auto", device="cpu")
    assert model.backend == "numpy" and "device='cpu'" in model.backend_reason


def test_backend_names_are_normalised():
    assert LSTM(2, 3, backend="NumPy").backend == "numpy"
    pytest.importorskip("array_api_strict")
    assert LSTM(2, 3, backend="array-api-strict").backend == "array_api_strict"
