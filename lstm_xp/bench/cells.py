"""One cell of the benchmark, a contender at a shape: what a run times (:class:`BenchConfig`),
how a cell is timed (:func:`time_runner`) and what it measured (:class:`Measurement`)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

Shape = tuple[int, int, int, int]

#: (B, T, I, H): the grid of the issue, float32 forward over the whole sequence.
DEFAULT_GRID: tuple[Shape, ...] = ((1, 100, 32, 64), (16, 100, 128, 256), (64, 50, 256, 512),
                                   (256, 50, 512, 512))
#: A small grid that finishes in well under a minute on a laptop CPU.
QUICK_GRID: tuple[Shape, ...] = ((1, 20, 16, 32), (8, 20, 32, 64), (32, 20, 64, 128))


def lstm_flops(shape: Shape, mode: str = "forward") -> int:
    """Matrix-product FLOPs of one single-layer forward pass, 2 * T * B * 4H * (I + H); a
    training step (``mode="train"``) does three times that (the forward pass, the gradient
    of the inputs and hidden states, the gradient of the weights)."""
    batch, steps, size_in, hidden = shape
    return (3 if mode == "train" else 1) * 2 * steps * batch * 4 * hidden * (size_in + hidden)


@dataclass
class Measurement:
    """One contender on one shape."""

    contender: str
    kind: str
    device: str
    shape: Shape
    times_s: list[float] = field(default_factory=list)
    #: The median of each turn's samples, in the order of the rounds (see
    #: :func:`lstm_xp.bench.report.paired_ratio`).
    turns_s: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    skipped: str | None = None
    mode: str = "forward"
    #: Kept out of the samples, for the turn that built the contender at this shape: the
    #: seconds its ``prepare`` took (the model and its input) and its first call (where a
    #: compiled kernel compiles, or loads its machine code from the disk cache).
    setup_s: float | None = None
    first_call_s: float | None = None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.times_s) if self.times_s else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """The measurement :meth:`as_dict` wrote (its derived entries ignored)."""
        names = [f.name for f in fields(cls) if f.name in data]  # older files lack some
        return cls(**{**{k: data[k] for k in names}, "shape": tuple(data["shape"])})

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        t = self.median_s
        out["median_s"] = t
        out["sequences_per_s"] = self.shape[0] / t if t else None
        out["gflops"] = lstm_flops(self.shape, self.mode) / t / 1e9 if t else None
        return out


#: A timed sample lasts at least this long: shorter calls are repeated within one sample.
MIN_SAMPLE_S = 0.02
#: A turn's warm-up calls last at least this long together. On the 2-vCPU guest of
#: ``benchmarks/RESULTS.md`` every library's calls ran slow for the first 5-20 ms after
#: 0.15 s idle (the pause between turns): at (B, T, I, H) = (8, 100, 64, 128) lstm-xp's
#: first three calls took 2.4x-2.6x, 1.3x-1.5x and 1.1x-1.25x the time of a call 20 ms
#: on, ONNX Runtime's 2.3x-2.4x, 1.2x-1.35x and 1.0x-1.06x (two runs each). With one
#: warm-up call, a turn's first sample fell in that stretch and measured how fast each
#: library got going again rather than its speed.
WARMUP_S = 0.05


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
    isolate: bool = True  # each contender in its own process
    # The contenders take turns this many times at each shape, each time for its share of
    # the repeats: see :func:`lstm_xp.bench.runner.run_bench`.
    rounds: int = 1
    # Seconds between one contender's turn and the next one's: thread pools that spin
    # after a call (OpenBLAS's, ONNX Runtime's) keep the cores busy for ~0.1 s, and a
    # contender timed within 20 ms of ONNX Runtime's or the GEMM floor's turn ran 1.4x-1.5x
    # slower (16, 100, 128, 256) than 0.1-0.3 s after.
    pause_s: float = 0.15
    # Each turn's warm-up lasts at least this long (:data:`WARMUP_S`, :func:`time_runner`).
    warmup_s: float = WARMUP_S
    lengths: Sequence[str] = ()  # also time with lengths: "one-short", "random"
    mode: str = "forward"  # or "train": forward_train + backward against torch autograd

    def as_dict(self) -> dict[str, Any]:
        """The config as JSON writes it (shapes as lists; :meth:`from_dict` reads it)."""
        return {**asdict(self), "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchConfig:
        return cls(**{**data, "shapes": [tuple(s) for s in data["shapes"]]})


def time_runner(run: Callable[[], Any], repeats: int, max_seconds: float,
                min_sample_s: float = MIN_SAMPLE_S, warmups: int = 2,
                warmup_s: float = WARMUP_S) -> list[float]:
    """Untimed warm-up calls, ``warmups`` of them (at least 1) and more until they have
    lasted ``warmup_s`` together, then up to ``repeats`` timed samples (at least 3, or
    until ``max_seconds`` have been spent); each sample is the mean time of ``n``
    back-to-back calls, ``n`` chosen from the last warm-up so that a sample lasts
    ``min_sample_s``. The garbage collector runs once before the warm-up and is held off
    until the last sample (as :mod:`timeit` holds it off). One call per sample measured a
    sub-millisecond call with the caches a ``gc.collect()`` had just cooled: 0.55 ms
    against 0.07 ms a call in a loop. A collection before each sample cooled them for
    every sample: in a process with numba loaded (113,000 objects) it took 22-37 ms on one
    thread, and lstm-xp's next call at (B, T, I, H) = (8, 100, 64, 128) took 3.0 ms
    against 1.3 in a loop (its second thread's core idle meanwhile), where ONNX Runtime's
    process has a fraction of the objects."""
    times: list[float] = []
    gc.collect()
    gc.disable()
    try:
        spent, last, done = 0.0, 0.0, 0
        while done < max(1, warmups) or spent < warmup_s:
            t0 = time.perf_counter()
            run()
            last = time.perf_counter() - t0
            spent += last
            done += 1
            if spent > max_seconds:
                break
        calls = max(1, min(1000, int(min_sample_s / max(last, 1e-9))))
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                run()
            times.append((time.perf_counter() - t0) / calls)
            if len(times) >= 3 and sum(times) * calls > max_seconds:
                break
    finally:
        gc.enable()
    return times


def input_for(shape: Sequence[int], dtype: str) -> np.ndarray:
    """The input of a shape, ``(T, B, I)``: the same for every contender."""
    batch, steps, size_in, _ = shape
    rng = np.random.default_rng(list(shape))
    return rng.standard_normal((steps, batch, size_in)).astype(dtype)
