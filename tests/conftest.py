"""Shared fixtures: one ``xp`` fixture over every backend that works on this machine.

Each case carries the arguments that build a model there (``backend=``, ``device=``) and what
the device offers. Cases whose library is missing, or whose GPU does not answer, are kept and
skipped with the reason, so a run says what it did not check.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from lstm_xp._backend import _probe_cupy, resolve_backend, to_numpy


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
        return precision


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cases() -> list[Any]:
    cases: list[Any] = [BackendCase("numpy", "numpy")]
    if _installed("array_api_strict"):
        cases += [
            BackendCase("strict", "array_api_strict"),
            # A non-default device catches a forgotten device= in the core.
            BackendCase("strict-device1", "array_api_strict", "device1"),
            BackendCase("strict-no_float64", "array_api_strict", "no_float64", float64=False),
        ]
    else:
        cases.append(pytest.param(BackendCase("strict", "array_api_strict"), marks=pytest.mark.skip(
            reason="array-api-strict not installed (pip install lstm-xp[test])")))
    if _installed("torch"):
        import torch

        cases.append(BackendCase("torch-cpu", "torch", "cpu"))
        if torch.cuda.is_available():
            cases.append(pytest.param(BackendCase("torch-cuda", "torch", "cuda:0"),
                                      marks=pytest.mark.gpu))
    else:
        cases.append(pytest.param(BackendCase("torch-cpu", "torch", "cpu"),
                                  marks=pytest.mark.skip(reason="torch not installed")))
    if _installed("jax"):
        import jax

        # float64 checks on JAX need x64; the model passes dtype= everywhere, so this global
        # switch changes nothing else the tests rely on.
        jax.config.update("jax_enable_x64", True)
        cases.append(BackendCase("jax", "jax"))
    else:
        cases.append(pytest.param(BackendCase("jax", "jax"),
                                  marks=pytest.mark.skip(reason="jax not installed")))
    usable, why = _probe_cupy(0)
    cupy_case = BackendCase("cupy", "cupy", None)
    if usable:
        cases.append(pytest.param(cupy_case, marks=pytest.mark.gpu))
    else:
        cases.append(pytest.param(cupy_case, marks=pytest.mark.skip(reason=f"cupy: {why}")))
    return cases


CASES = _cases()


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def xp(request: pytest.FixtureRequest) -> BackendCase:
    """Every backend and device that works here (others are skipped with the reason)."""
    return request.param


@pytest.fixture
def to_np():
    """Copy any backend's array to NumPy."""
    return to_numpy


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
