"""Run the benchmark grid: every contender on every shape, side by side, medians over repeats."""

from __future__ import annotations

import gc
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TextIO

import numpy as np

from .. import __version__
from .._backend.adapters import ADAPTERS
from .._threads import cores
from ..kernels import kernel_report, kernels_for
from . import contenders as c
from .progress import Progress

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
    peak_bytes: int | None = None
    skipped: str | None = None
    mode: str = "forward"

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.times_s) if self.times_s else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        t = self.median_s
        out["median_s"] = t
        out["sequences_per_s"] = self.shape[0] / t if t else None
        out["gflops"] = lstm_flops(self.shape, self.mode) / t / 1e9 if t else None
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
    isolate: bool = True  # each contender in its own process
    # The contenders take turns this many times, each time for its share of the repeats
    # (a fresh process each turn when isolated): see :func:`run_bench`.
    rounds: int = 1
    lengths: Sequence[str] = ()  # also time with lengths: "one-short", "random"
    mode: str = "forward"  # or "train": forward_train + backward against torch autograd


def contender_specs(config: BenchConfig) -> list[list[Any]]:
    """What to time, as JSON-ready specs ``[factory, *args]`` (see ``contenders.FACTORIES``)."""
    train = config.mode == "train"
    ours = "lstm_xp_train" if train else "lstm_xp"
    specs: list[list[Any]] = []
    for name in config.backends:
        kernels = _usable_kernels(name)
        for device in _devices(name):
            specs.append([ours, name, device])
            for kernel in kernels[1:]:  # e.g. numpy-fused beside numba
                specs.append([ours, name, device, kernel])
            if not train and kernels[:1] == ["numba"] and cores() > 1:
                # the same kernel on one thread: what its threads gain (lstm_xp._threads)
                specs.append([ours, name, device, "numba", "none", "1"])
            if config.pure and _has_fast_kernel(name):
                specs.append([ours, name, device, "pure"])
            if train:
                continue
            for kind in config.lengths:
                specs.append([ours, name, device, "auto", kind])
            if name in ADAPTERS and ADAPTERS[name].accelerator:  # its own GEMM floor
                specs.append(["floor", name, device])
    specs.append(["train_floor"] if train else ["floor", "numpy"])
    if "torch" in config.peers:
        peer = "torch_train" if train else "torch"
        specs += [[peer, "cpu"], [peer, "cuda:0"]]
    if not train and "onnxruntime" in config.peers:
        specs.append(["onnxruntime"])
    if not train and "seed" in config.peers:
        specs.append(["seed"])
    return specs


def _usable_kernels(backend: str) -> list[str]:
    """The fast kernels that run on ``backend`` here, the one ``kernel="auto"`` picks first
    (the pure path, timed only with ``pure``, left out)."""
    return [name for name, ok, _ in kernel_report(backend) if ok and name != "pure"]


def _has_fast_kernel(backend: str) -> bool:
    return any(entry.name != "pure" for entry in kernels_for(backend))


def _devices(backend: str) -> list[Any]:
    """The ``device=`` values to time ``backend`` on (for CuPy every GPU, or device 0 alone
    when CuPy or a driver is missing: it then reports why it is skipped)."""
    adapter = ADAPTERS.get(backend)
    return adapter.bench_devices() if adapter is not None else [None]


#: A timed sample lasts at least this long: shorter calls are repeated within one sample.
MIN_SAMPLE_S = 0.02


def time_runner(run: Callable[[], Any], repeats: int, max_seconds: float,
                min_sample_s: float = MIN_SAMPLE_S) -> list[float]:
    """Two warm-up calls, then up to ``repeats`` timed samples (at least 3, or until
    ``max_seconds`` have been spent); each sample is the mean time of ``n`` back-to-back calls,
    ``n`` chosen from the warm-ups so that a sample lasts ``min_sample_s``, with the garbage
    collector run before and held off during it (as :mod:`timeit` does). One call per sample
    measured a sub-millisecond call with the caches a ``gc.collect()`` had just cooled:
    0.55 ms against 0.07 ms a call in a loop."""
    spent, last = 0.0, 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        run()
        last = time.perf_counter() - t0
        spent += last
        if spent > max_seconds:
            break
    calls = max(1, min(1000, int(min_sample_s / max(last, 1e-9))))
    times: list[float] = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            for _ in range(calls):
                run()
            times.append((time.perf_counter() - t0) / calls)
        finally:
            gc.enable()
        if len(times) >= 3 and sum(times) * calls > max_seconds:
            break
    return times


def input_for(shape: Sequence[int], dtype: str) -> np.ndarray:
    """The input of a shape, ``(T, B, I)``: the same for every contender."""
    batch, steps, size_in, _ = shape
    rng = np.random.default_rng(list(shape))
    return rng.standard_normal((steps, batch, size_in)).astype(dtype)


def measure(spec: list[Any], config: BenchConfig,
            progress: Progress) -> list[Measurement] | str:
    """Time one contender on every shape; the reason instead if it cannot run here."""
    try:
        contender = c.make(spec)
    except c.Unavailable as exc:
        return str(exc)
    out = []
    for raw in config.shapes:  # lists when the config came through JSON
        shape: Shape = (int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]))
        m = Measurement(contender.name, contender.kind, contender.device, shape,
                        mode=config.mode)
        progress.step(f"{contender.name} (B, T, I, H)={tuple(shape)}")
        x_host = input_for(shape, config.dtype)
        try:
            run = contender.prepare(shape, config.dtype, x_host)
            m.times_s = time_runner(run, config.repeats, config.max_seconds)
            if config.memory and contender.memory is not None:
                m.peak_bytes = contender.memory(shape, config.dtype, x_host)
            progress.note(f"    median {(m.median_s or 0.0) * 1e3:.3f} ms over "
                          f"{len(m.times_s)} samples")
        except c.Unavailable as exc:
            m.skipped = str(exc)
        out.append(m)
    return out


def _measure_turn(spec: Sequence[Any], config: BenchConfig,
                  progress: Progress) -> list[Measurement] | str:
    """One contender's turn: :func:`measure`, in its own process when ``config.isolate``."""
    if not config.isolate:
        return measure(list(spec), config, progress)
    label = " ".join(str(a) for a in spec if a is not None)
    progress.advance(0, label)
    got = _measure_isolated(spec, config, progress)
    progress.advance(len(config.shapes), label)
    return got


def _measure_isolated(spec: Sequence[Any], config: BenchConfig,
                      progress: Progress) -> list[Measurement] | str:
    """:func:`measure` in a fresh Python process, so that one library's thread pool (torch's
    OpenMP workers spin after each call, say) cannot slow the next library down. The worker
    prints its own lines unless ``progress`` draws a bar."""
    request = {"spec": list(spec), "config": _config_dict(config), "start": progress.done,
               "total": progress.total, "quiet": progress.quiet_workers}
    proc = subprocess.run([sys.executable, "-m", "lstm_xp.bench.worker"],
                          input=json.dumps(request), capture_output=False,
                          stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        return f"worker for {spec} failed with exit code {proc.returncode}"
    answer = json.loads(proc.stdout)
    if isinstance(answer, str):
        return answer
    names = [f.name for f in fields(Measurement)]
    return [Measurement(**{**{k: a[k] for k in names}, "shape": tuple(a["shape"])})
            for a in answer]


def _config_dict(config: BenchConfig) -> dict[str, Any]:
    return {**asdict(config), "shapes": [list(s) for s in config.shapes]}


def repeats_a_round(repeats: int, rounds: int) -> int:
    """The timed samples each of ``rounds`` turns takes for ``repeats`` in all (rounded up)."""
    return max(1, -(-repeats // max(1, rounds)))


def run_bench(config: BenchConfig, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the grid and return a JSON-ready dict: machine, versions, config and measurements.
    ``progress``: where to show how far it is (a bar on a terminal with ``rich``).

    With ``config.rounds`` above 1 the contenders take turns: each round times every
    contender on every shape for its share of the repeats and of ``max_seconds``, and a
    cell's samples from all rounds make its median (memory is measured in the first round).
    On a shared machine whose speed drifts over seconds (a 2-vCPU guest ran the same call
    at 8.5 ms for a while, then at 15), timing each contender in one stretch compared
    them at different speeds of the machine; taking turns spreads the drift over all."""
    specs = contender_specs(config)
    rounds = max(1, config.rounds)
    share = replace(config, repeats=repeats_a_round(config.repeats, rounds),
                    max_seconds=config.max_seconds / rounds)
    cells: dict[tuple[str, int], Measurement] = {}  # (spec, shape's index): all rounds
    skipped: dict[str, str] = {}
    with Progress(rounds * len(specs) * len(config.shapes), progress) as bar:
        for turn in range(rounds):
            for spec in specs:
                name = " ".join(str(a) for a in spec)
                if name in skipped:
                    bar.advance(len(config.shapes), name)
                    continue
                got = _measure_turn(spec, share if turn == 0 else replace(share, memory=False),
                                    bar)
                if isinstance(got, str):  # a later round's failure keeps the first's cells
                    if turn == 0:
                        skipped[name] = got
                    bar.note(f"skipping {name}: {got}")
                    continue
                for index, m in enumerate(got):
                    kept = cells.setdefault((name, index), m)
                    if kept is not m:
                        kept.times_s += m.times_s
    results = list(cells.values())
    return {
        "lstm_xp_version": __version__,
        "machine": machine_info(),
        "config": _config_dict(config),
        "results": [m.as_dict() for m in results],
        "skipped": skipped,
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
    from importlib.metadata import PackageNotFoundError, version

    for name in ("torch", "onnxruntime", "jax", "cupy-cuda12x", "cupy-cuda13x",
                 "array-api-strict", "array-api-compat"):
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            pass
    info["env"] = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                              "OMP_NUM_THREADS") if k in os.environ}
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
