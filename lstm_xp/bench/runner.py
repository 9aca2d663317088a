"""Run the benchmark grid: every contender on every shape, side by side, medians over repeats."""

from __future__ import annotations

import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import numpy as np

from .. import __version__
from . import contenders as c

Shape = tuple[int, int, int, int]

#: (B, T, I, H): the grid of the issue, float32 forward over the whole sequence.
DEFAULT_GRID: tuple[Shape, ...] = ((1, 100, 32, 64), (16, 100, 128, 256), (64, 50, 256, 512),
                                   (256, 50, 512, 512))
#: A small grid that finishes in well under a minute on a laptop CPU.
QUICK_GRID: tuple[Shape, ...] = ((1, 20, 16, 32), (8, 20, 32, 64), (32, 20, 64, 128))


def lstm_flops(shape: Shape) -> int:
    """Matrix-product FLOPs of one single-layer forward pass: 2 * T * B * 4H * (I + H)."""
    batch, steps, size_in, hidden = shape
    return 2 * steps * batch * 4 * hidden * (size_in + hidden)


@dataclass
class Measurement:
    """One contender on one shape."""

    contender: str
    kind: str
    device: str
    shape: Shape
    times_s: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    skipped: str | None = None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.times_s) if self.times_s else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        t = self.median_s
        out["median_s"] = t
        out["sequences_per_s"] = self.shape[0] / t if t else None
        out["gflops"] = lstm_flops(self.shape) / t / 1e9 if t else None
        return out


@dataclass
class BenchConfig:
    """What to run. ``backends`` are lstm-xp backend names; ``peers`` a subset of
    ``("torch", "onnxruntime", "seed")``."""

    shapes: Sequence[Shape] = DEFAULT_GRID
    backends: Sequence[str] = ("numpy", "cupy", "torch", "jax")
    peers: Sequence[str] = ("torch", "onnxruntime", "seed")
    dtype: str = "float32"
    repeats: int = 7
    max_seconds: float = 6.0  # per contender and shape: stop repeating once past this
    pure: bool = False  # also time the pure Array-API path beside the chosen kernel
    memory: bool = True


def build_contenders(config: BenchConfig, log: Callable[[str], None]) -> list[c.Contender]:
    """Every contender that can run here; the others are logged with the reason."""
    makers: list[tuple[str, Callable[[], c.Contender]]] = []
    for name in config.backends:
        if name == "cupy":
            makers.extend(_cupy_makers())
        else:
            makers.append((f"lstm-xp {name}", lambda n=name: c.lstm_xp(n)))
            if config.pure and name == "numpy":
                makers.append(("lstm-xp numpy (pure)", lambda: c.lstm_xp("numpy", kernel="pure")))
    makers.append(("GEMM floor numpy", lambda: c.gemm_floor("numpy")))
    if "torch" in config.peers:
        makers.append(("torch.nn.LSTM cpu", lambda: c.torch_lstm("cpu")))
        makers.append(("torch.nn.LSTM cuda", lambda: c.torch_lstm("cuda:0")))
    if "onnxruntime" in config.peers:
        makers.append(("onnxruntime", c.onnxruntime_lstm))
    if "seed" in config.peers:
        makers.append(("seed", c.seed))
    found = []
    for label, make in makers:
        try:
            found.append(make())
        except c.Unavailable as exc:
            log(f"skipping {label}: {exc}")
    return found


def _cupy_makers() -> list[tuple[str, Callable[[], c.Contender]]]:
    """lstm-xp and the GEMM floor on every CUDA device that answers (none without cupy)."""
    from .._backend import _probe_cupy

    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        count = 0
    makers: list[tuple[str, Callable[[], c.Contender]]] = []
    for i in range(max(count, 1)):
        if count and not _probe_cupy(i)[0]:
            continue
        makers.append((f"lstm-xp cupy:{i}", lambda i=i: c.lstm_xp("cupy", i)))
        makers.append((f"lstm-xp cupy:{i} (pure)", lambda i=i: c.lstm_xp("cupy", i, "pure")))
        makers.append((f"GEMM floor cupy:{i}", lambda i=i: c.gemm_floor("cupy", i)))
    return makers


def time_runner(run: Callable[[], Any], repeats: int, max_seconds: float) -> list[float]:
    """Two warm-up calls, then up to ``repeats`` timed calls (at least 3, or until
    ``max_seconds`` have been spent)."""
    spent = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        run()
        spent += time.perf_counter() - t0
        if spent > max_seconds:
            break
    times: list[float] = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and sum(times) > max_seconds:
            break
    return times


def run_bench(config: BenchConfig, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the grid and return a JSON-ready dict: machine, versions, config and measurements."""

    def log(msg: str) -> None:
        if progress is not None:
            print(msg, file=progress, flush=True)

    contenders = build_contenders(config, log)
    total = len(contenders) * len(config.shapes)
    results: list[Measurement] = []
    done = 0
    rng = np.random.default_rng(0)
    for shape in config.shapes:
        batch, steps, size_in, _ = shape
        x_host = rng.standard_normal((steps, batch, size_in)).astype(config.dtype)
        for contender in contenders:
            done += 1
            m = Measurement(contender.name, contender.kind, contender.device, tuple(shape))
            log(f"[{done}/{total}] {contender.name} (B, T, I, H)={shape} ...")
            try:
                run = contender.prepare(shape, config.dtype, x_host)
                m.times_s = time_runner(run, config.repeats, config.max_seconds)
                if config.memory and contender.memory is not None:
                    m.peak_bytes = contender.memory(shape, config.dtype, x_host)
            except c.Unavailable as exc:
                m.skipped = str(exc)
            results.append(m)
            if m.median_s is not None:
                log(f"    median {m.median_s * 1e3:.3f} ms over {len(m.times_s)} runs")
    return {
        "lstm_xp_version": __version__,
        "machine": machine_info(),
        "config": {**asdict(config), "shapes": [list(s) for s in config.shapes]},
        "results": [m.as_dict() for m in results],
    }


def machine_info() -> dict[str, Any]:
    """Where the figures were measured: CPU, cores, Python and library versions."""
    import os

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for name in ("torch", "onnxruntime", "jax", "cupy", "array_api_strict"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", "?")
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads",
                                                "architecture")}
                        for p in threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
