"""The kernel registry: which implementations of the LSTM a backend can run.

A kernel (:class:`~.base.Kernel`) runs the whole stack forward, forward with a tape, and
backward. Every backend can run ``"pure"``, the Array-API reference; the others are faster
implementations for one backend, tested equal to it. A model picks one once, at construction
(:func:`select_kernel`): with ``kernel="auto"`` the first entry of :data:`REGISTRY` that runs on
its backend and whose requirements are installed.

Adding a kernel: one file with a ``make()`` that returns the kernel, and one line in
:data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from .._backend import Backend
from .._variants import VariantOptions
from ..errors import ConfigError
from .base import Kernel, LayerwiseKernel, StackTape

__all__ = ["REGISTRY", "Kernel", "KernelEntry", "LayerwiseKernel", "StackTape",
           "kernel_report", "kernels_for", "select_kernel"]


@dataclass(frozen=True)
class KernelEntry:
    """One registered kernel.

    Attributes
    ----------
    name : str
        What ``kernel=`` takes and :attr:`lstm_xp.LSTM.kernel` reports.
    backends : tuple of str
        The backends it runs on; empty for every backend.
    factory : str
        ``"module:function"``, imported only when a model picks the kernel; the function
        returns a new kernel (one per model: a kernel may keep per-model workspaces).
    summary : str
        One line for ``lstm-xp backends``.
    requires : tuple of (module, extra)
        Libraries beyond the backend's own, and the lstm-xp extra that installs each.
    variants : bool
        Whether it runs the cell variants (projections, peepholes, clip, coupled gates); a
        model with one falls back to the kernels that do. Every kernel runs
        ``direction="reverse"``.
    """

    name: str
    backends: tuple[str, ...]
    factory: str
    summary: str
    requires: tuple[tuple[str, str], ...] = ()
    variants: bool = False

    def runs_on(self, backend: str) -> bool:
        return not self.backends or backend in self.backends

    def missing(self) -> str | None:
        """Why the kernel cannot be built here (a missing library), or None."""
        for module, extra in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"needs {module}: pip install lstm-xp[{extra}]"
        return None

    def build(self, reverse: bool = False, variants: VariantOptions | None = None) -> Kernel:
        module, function = self.factory.split(":")
        make = getattr(importlib.import_module(module), function)
        kernel: Kernel = make(reverse, variants) if self.variants else make(reverse)
        return kernel


#: Every kernel, in the order ``kernel="auto"`` prefers them.
REGISTRY: tuple[KernelEntry, ...] = (
    KernelEntry("numba", ("numpy",), "lstm_xp.kernels.numba_scan:make",
                "compiled time loop and training pass, packed weights (threads: "
                "LSTM_XP_NUM_THREADS); float16 runs numpy-fused",
                requires=(("numba", "numba"),)),
    KernelEntry("numpy-fused", ("numpy",), "lstm_xp.kernels.numpy_fused:make",
                "gates as columns, one product and ~10 in-place calls a step; fused training"),
    KernelEntry("cupy-fused", ("cupy",), "lstm_xp.kernels.cupy_fused:make",
                "one cuBLAS GEMM and one elementwise CUDA kernel a step; pure training"),
    KernelEntry("jax-jit", ("jax",), "lstm_xp.kernels.jax_scan:make",
                "the whole forward pass as lax.scan under jax.jit; pure (eager) training"),
    KernelEntry("torch-native", ("torch",), "lstm_xp.kernels.torch_native:make",
                "torch.nn.LSTM's own kernel (oneDNN, cuDNN) on the model's weights; autograd "
                "for training"),
    KernelEntry("pure", (), "lstm_xp.kernels.pure:make",
                "the pure Array-API reference (every backend, every variant)", variants=True),
)

_BY_NAME = {entry.name: entry for entry in REGISTRY}


def kernels_for(backend: str) -> list[KernelEntry]:
    """The registered kernels that run on ``backend`` (installed or not), in preference order."""
    return [entry for entry in REGISTRY if entry.runs_on(backend)]


def kernel_report(backend: str) -> list[tuple[str, bool, str]]:
    """Every registered kernel as ``(name, usable, why)`` for ``backend``: the reason one is
    not usable (another backend's, or a library missing), or what it does."""
    rows = []
    for entry in REGISTRY:
        if not entry.runs_on(backend):
            rows.append((entry.name, False, f"runs on {', '.join(entry.backends)} only"))
            continue
        missing = entry.missing()
        rows.append((entry.name, missing is None, missing or entry.summary))
    return rows


def select_kernel(backend: Backend, kernel: str = "auto", *, reverse: bool = False,
                  variants: VariantOptions | None = None) -> Kernel:
    """Build the kernel a model on ``backend`` runs.

    Parameters
    ----------
    kernel : str
        ``"auto"``: the first registered kernel that runs on the backend, is installed and
        runs the model's variants. ``"pure"``: the Array-API reference. Any other registered
        name: that kernel.
    reverse : bool
        The model reads sequences backwards.
    variants : VariantOptions, optional
        The model's cell options; a model with any runs on a kernel with ``variants``.

    Raises
    ------
    ConfigError
        An unknown name, or a kernel that does not run on this backend, is not installed, or
        does not run the model's variants.
    """
    needs = sorted(variants.names()) if variants is not None else []
    if not isinstance(kernel, str):
        raise ConfigError(f"kernel must be 'auto' or one of {', '.join(_BY_NAME)}; got "
                          f"{type(kernel).__name__} {kernel!r}.")
    if kernel == "auto":  # "pure" runs everywhere, so the search always ends
        return next(e for e in kernels_for(backend.name) if e.missing() is None
                    and (e.variants or not needs)).build(reverse, variants)
    entry = _BY_NAME.get(kernel)
    if entry is None:
        raise ConfigError(f"kernel must be 'auto' or one of {', '.join(_BY_NAME)}; got "
                          f"{kernel!r}.")
    if not entry.runs_on(backend.name):
        usable = [e.name for e in kernels_for(backend.name)]
        raise ConfigError(f"kernel {kernel!r} runs on backend {', '.join(entry.backends)}, not "
                          f"{backend.name!r}; kernels for {backend.name!r}: "
                          f"{', '.join(usable)} (or 'auto').")
    missing = entry.missing()
    if missing is not None:
        raise ConfigError(f"kernel {kernel!r} {missing}; or pass kernel='auto'.")
    if needs and not entry.variants:
        raise ConfigError(f"kernel {kernel!r} does not run {', '.join(needs)}; the 'pure' "
                          "kernel does (kernel='auto' picks it for such a model).")
    return entry.build(reverse, variants)
