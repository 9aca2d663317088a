"""Alternative implementations of :func:`lstm_xp._functional.layer_scan` for one backend.

A kernel has exactly the reference's signature and results (tests hold them equal); a model
picks one once, at construction, through :func:`select_scan`.

| backend | kernel |
|---|---|
| numpy | :func:`.numpy_fused.layer_scan_numpy`: gates as columns, one product, 10 calls a step |
| cupy | :func:`.cupy_fused.layer_scan_cupy`: one GEMM and one fused elementwise kernel a step |
| jax | :func:`.jax_scan.layer_scan_jax`: the loop as ``jax.lax.scan`` under ``jax.jit`` |
| others | the pure Array-API reference |

Training has its own pair, picked by :func:`select_train`: on NumPy,
:mod:`.numpy_train` (gates as columns, the tape written in place); elsewhere the pure
:func:`lstm_xp._backprop.layer_scan_train` and :func:`lstm_xp._backprop.layer_scan_backward`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._backend import Backend
from .._backprop import layer_scan_backward, layer_scan_train
from .._functional import LayerScan, layer_scan, lstm_forward
from ..errors import ConfigError

#: Values accepted by ``kernel=``.
KERNELS = ("auto", "pure")


def _check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ConfigError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}.")


def select_scan(backend: Backend, kernel: str = "auto") -> LayerScan:
    """The layer scan a model on ``backend`` runs.

    Parameters
    ----------
    kernel : {"auto", "pure"}
        ``"auto"``: the backend's fused kernel where there is one, else the reference.
        ``"pure"``: always the pure Array-API reference.
    """
    _check_kernel(kernel)
    if kernel == "pure":
        return layer_scan
    if backend.name == "numpy":
        from .numpy_fused import layer_scan_numpy

        return layer_scan_numpy
    if backend.name == "cupy":
        from .cupy_fused import layer_scan_cupy

        return layer_scan_cupy
    if backend.name == "jax":
        from .jax_scan import layer_scan_jax

        return layer_scan_jax
    return layer_scan


def select_forward(backend: Backend, kernel: str = "auto") -> Callable[..., Any]:
    """The stacked forward pass (``lstm_forward``'s signature) a model on ``backend`` runs:
    for JAX with ``kernel="auto"``, the whole pass compiled by ``jax.jit``; else
    :func:`lstm_xp._functional.lstm_forward`."""
    if kernel == "auto" and backend.name == "jax":
        from .jax_scan import lstm_forward_jax

        return lstm_forward_jax
    return lstm_forward


def select_train(
    backend: Backend, kernel: str = "auto"
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The ``(scan_train, scan_backward)`` pair a model on ``backend`` trains with (the
    signatures of :func:`lstm_xp._backprop.layer_scan_train` and ``layer_scan_backward``):
    the fused NumPy pair for NumPy with ``kernel="auto"``, else the pure one."""
    _check_kernel(kernel)
    if kernel == "auto" and backend.name == "numpy":
        from .numpy_train import NumpyTrainer

        trainer = NumpyTrainer()  # one workspace per model
        return trainer.scan_train, trainer.scan_backward
    return layer_scan_train, layer_scan_backward
