"""Shared fixtures: every backend that works on this machine, and every fast kernel.

- ``case``: a :class:`BackendCase` (what builds a model there: ``backend=``, ``device=``, and
  what the device offers), over every backend and device lstm-xp knows. Cases whose library is
  missing, or whose GPU does not answer, are kept and skipped with the reason, so a run says
  what it did not check.
- ``xp``: the Array API namespace of ``case``.
- ``kernel_case``: ``(case, kernel name)`` for every registered kernel other than the pure
  reference, on every backend it runs on: the tests that hold a kernel equal to the reference.
- ``@pytest.mark.skip_backend("jax", reason="...")``: skip a test on named backends, saying why.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from lstm_xp._backend import probe_cupy, resolve_backend, to_numpy
from lstm_xp.kernels import REGISTRY


@dataclass(frozen=True)
class BackendCase:
    """A backend and device to run a test on."""

    id: str
    backend: str
    device_name: str | None = None
    float64: bool = True

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """``backend=`` and ``device=`` for :class:`lstm_xp.LSTM`."""
        return {"backend": self.backend, "device": self.device}

    @property
    def device(self) -> Any:
        if self.backend == "array_api_strict" and self.device_name is not None:
            import array_api_strict

            return array_api_strict.Device(self.device_name)
        return self.device_name

    @property
    def xp(self) -> Any:
        return resolve_backend(self.backend, self.device).xp

    def dtype(self, precision: str) -> str:
        """``precision`` where the device has it; skip the test otherwise."""
        if precision == "float64" and not self.float64:
            pytest.skip(f"{self.id} has no float64")
        if precision == "float16" and self.backend == "array_api_strict":
            pytest.skip("the standard has no float16")
        return precision


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _skipped(case: BackendCase, reason: str) -> Any:
    return pytest.param(case, marks=pytest.mark.skip(reason=reason), id=case.id)


def _cases() -> list[Any]:
    cases: list[Any] = [BackendCase("numpy", "numpy")]
    strict = [BackendCase("strict", "array_api_strict"),
              # A non-default device catches a forgotten device= in the core.
              BackendCase("strict-device1", "array_api_strict", "device1"),
              BackendCase("strict-no_float64", "array_api_strict", "no_float64", float64=False)]
    if _installed("array_api_strict"):
        cases += strict
    else:
        cases.append(_skipped(strict[0], "array-api-strict not installed "
                                         "(pip install lstm-xp[test])"))
    if _installed("torch"):
        import torch

        cases.append(BackendCase("torch-cpu", "torch", "cpu"))
        if torch.cuda.is_available():
            # cuDNN's RNNs multiply in TF32 by PyTorch's default (about 3 significant digits);
            # the torch-native kernel follows that switch, as torch.nn.LSTM does. Off here,
            # so that float32 results are held to float32 tolerances against the reference.
            torch.backends.cudnn.allow_tf32 = False
            cases.append(pytest.param(BackendCase("torch-cuda", "torch", "cuda:0"),
                                      marks=pytest.mark.gpu, id="torch-cuda"))
    else:
        cases.append(_skipped(BackendCase("torch-cpu", "torch", "cpu"), "torch not installed"))
    jax_case = BackendCase("jax", "jax")
    cases.append(jax_case if _installed("jax") else _skipped(jax_case, "jax not installed"))
    usable, why = probe_cupy(0)
    cupy_case = BackendCase("cupy", "cupy", None)
    cases.append(pytest.param(cupy_case, marks=pytest.mark.gpu, id="cupy") if usable
                 else _skipped(cupy_case, f"cupy: {why}"))
    return cases


CASES = _cases()


def _kernel_cases() -> list[Any]:
    """Every (backend case, kernel) where the kernel is not the reference and runs there."""
    out = []
    for param in CASES:
        case = param.values[0] if hasattr(param, "values") else param
        marks = param.marks if hasattr(param, "marks") else ()
        for entry in REGISTRY:
            if entry.name == "pure" or not entry.runs_on(case.backend):
                continue
            missing = entry.missing()
            extra = (pytest.mark.skip(reason=f"kernel {entry.name} {missing}"),) if missing \
                else ()
            out.append(pytest.param((case, entry.name), marks=(*marks, *extra),
                                    id=f"{case.id}-{entry.name}"))
    return out


KERNEL_CASES = _kernel_cases()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "skip_backend(*names, reason): skip the test on these backends, saying why")


@pytest.fixture(scope="session", autouse=True)
def jax_x64():
    """float64 checks on JAX need its global x64 switch: on for the session, restored after.
    Models pass dtype= everywhere, so nothing else the tests rely on changes."""
    if not _installed("jax"):
        yield
        return
    import jax

    before = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest) -> BackendCase:
    """Every backend and device that works here (others are skipped with the reason)."""
    backend_case: BackendCase = request.param
    for marker in request.node.iter_markers("skip_backend"):
        if backend_case.backend in marker.args:
            pytest.skip(marker.kwargs["reason"])
    return backend_case


@pytest.fixture
def xp(case: BackendCase) -> Any:
    """The Array API namespace of ``case``."""
    return case.xp


@pytest.fixture(params=KERNEL_CASES)
def kernel_case(request: pytest.FixtureRequest) -> tuple[BackendCase, str]:
    """A backend case and the name of a fast kernel that runs there."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def to_np():
    """Copy any backend's array to NumPy."""
    return to_numpy


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
