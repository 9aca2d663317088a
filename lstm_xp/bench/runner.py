"""Run the benchmark grid: every contender on every shape, side by side, medians over repeats."""

from __future__ import annotations

import platform
import sys
import time
from typing import Any, TextIO

import numpy as np

from .. import __version__
from .._backend.adapters import ADAPTERS
from .._threads import cores
from ..kernels import kernel_report, kernels_for
from . import contenders as c
from .cells import (  # noqa: F401  (the names the runner has always offered)
    DEFAULT_GRID,
    MIN_SAMPLE_S,
    QUICK_GRID,
    BenchConfig,
    Measurement,
    Shape,
    input_for,
    lstm_flops,
    time_runner,
)
from .progress import Progress
from .turns import Turns, WorkerTurns, spec_name

#: A first call that took this many seconds more than the fastest sample of its turn is
#: reported as the run goes (the compiled kernel's compile took 23-31 s with numba's cache
#: empty, a silent wait otherwise; a call that is slow every time, the seed's at a large
#: shape, is not what the note is for).
SLOW_FIRST_CALL_S = 1.0


def _first_call_extra_s(m: Measurement) -> float:
    """The seconds the first call of ``m``'s turn took beyond the turn's fastest sample (0
    for a turn that made no first call)."""
    if m.first_call_s is None:
        return 0.0
    return m.first_call_s - min(m.times_s, default=0.0)


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
            if not train and kernels[:1] == ["numba"]:
                # a frozen copy: the weights packed once, not at every call (LSTM.frozen)
                specs.append([ours, name, device, "auto", "none", None, True])
                if cores() > 1:  # one thread: what its threads gain (lstm_xp._threads)
                    specs.append([ours, name, device, "numba", "none", "1"])
            if config.pure and _has_fast_kernel(name):
                specs.append([ours, name, device, "pure"])
            for kind in config.lengths:
                specs.append([ours, name, device, "auto", kind])
            if not train and name in ADAPTERS and ADAPTERS[name].accelerator:
                specs.append(["floor", name, device])  # its own GEMM floor
    specs.append(["train_floor"] if train else ["floor", "numpy"])
    # The peers over whole sequences, then with each kind of lengths timed.
    lengths: list[list[str]] = [[], *([kind] for kind in config.lengths)]
    if "torch" in config.peers:
        peer = "torch_train" if train else "torch"
        specs += [[peer, device, *kind] for device in ("cpu", "cuda:0") for kind in lengths]
    if not train and "onnxruntime" in config.peers:
        specs += [["onnxruntime", True, *kind] for kind in lengths]
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


def repeats_a_round(repeats: int, rounds: int) -> int:
    """The timed samples each of ``rounds`` turns takes for ``repeats`` in all (rounded up)."""
    return max(1, -(-repeats // max(1, rounds)))


def run_bench(config: BenchConfig, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the grid and return a JSON-ready dict: machine, versions, config and measurements.
    ``progress``: where to show how far it is (a bar on a terminal with ``rich``).

    The contenders take turns shape by shape: at each shape, ``config.rounds`` rounds in
    which each contender times its share of the repeats and of ``max_seconds`` (memory in
    the first), the order rotated a round (A B C, B C A, C A B, ...), ``config.pause_s``
    between turns; a cell's median is over the samples of all its rounds. On a shared
    machine whose speed drifts (a 2-vCPU guest ran the same call at 8.5 ms for a while,
    then at 15, and switched every few seconds), timing each contender in one stretch, or
    over the whole grid a round, compared them at different speeds of the machine; turns
    at one shape seconds apart meet the same speeds. With ``config.isolate`` each contender
    runs in a worker process of its own for the whole run (:class:`.turns.WorkerTurns`)."""
    specs = contender_specs(config)
    rounds = max(1, config.rounds)
    repeats = repeats_a_round(config.repeats, rounds)
    seconds = config.max_seconds / rounds
    skipped: dict[str, str] = {}
    players = _start(specs, config, skipped)
    loads = {player.name: player.load_s for player in players.values()}
    cells: dict[tuple[str, int], Measurement] = {}  # (spec's name, shape's index)
    try:
        with Progress(rounds * len(players) * len(config.shapes), progress) as bar:
            last_turn = None
            for index, shape in enumerate(config.shapes):
                for turn in range(rounds):
                    names = list(players)
                    for name in names[turn % len(names):] + names[:turn % len(names)]:
                        if name not in players:  # its worker exited in this round
                            continue
                        cell = cells.get((name, index))
                        if cell is not None and cell.skipped:  # it cannot run this shape
                            bar.advance(1, name)
                            continue
                        if last_turn is not None:
                            time.sleep(max(0.0, config.pause_s - (time.perf_counter()
                                                                   - last_turn)))
                        bar.step(f"{players[name].name} (B, T, I, H)={tuple(shape)} "
                                 f"round {turn + 1}")
                        try:
                            m = _take_turn(players[name], cells, (name, index), repeats,
                                           seconds, config.memory and turn == 0)
                            extra = _first_call_extra_s(m)
                            if extra > SLOW_FIRST_CALL_S:
                                bar.note(f"    {m.contender}: its first call at {m.shape} took "
                                         f"{m.first_call_s:.1f} s, {extra:.1f} s more than a "
                                         "sample (a kernel compiled or loaded from a cache; "
                                         "not in the medians)")
                        except c.Unavailable as exc:
                            _drop(players, name, str(exc), cells, skipped, bar)
                            bar.advance((len(config.shapes) - index) * rounds - turn - 1, name)
                        finally:
                            last_turn = time.perf_counter()
                for name, player in players.items():
                    cell = cells.get((name, index))
                    if cell is not None and cell.median_s:
                        bar.note(f"    {player.name}: median {cell.median_s * 1e3:.3f} ms "
                                 f"over {len(cell.times_s)} samples")
    finally:
        for player in players.values():
            player.release()
        for player in players.values():
            player.close()
    order = {spec_name(spec): n for n, spec in enumerate(specs)}
    results = [cells[key] for key in sorted(cells, key=lambda k: (order[k[0]], k[1]))]
    return {
        "lstm_xp_version": __version__,
        "machine": machine_info(),
        "config": config.as_dict(),
        "results": [m.as_dict() for m in results],
        "skipped": skipped,
        # Seconds each contender took to load (its library imported), by its name.
        "load_s": loads,
    }


def _take_turn(player: Turns | WorkerTurns, cells: dict[tuple[str, int], Measurement],
               key: tuple[str, int], repeats: int, seconds: float,
               memory: bool) -> Measurement:
    """One turn of ``player`` at the shape of ``key`` (its name, the shape's index): its
    samples and its turn's median join the cell's (a new cell on its first turn). Returns
    the turn's own measurement."""
    m = player.turn(key[1], repeats, seconds, memory)
    kept = cells.setdefault(key, m)
    if kept is not m:
        kept.times_s += m.times_s
        kept.turns_s += m.turns_s
    return m


def _start(specs: list[list[Any]], config: BenchConfig,
           skipped: dict[str, str]) -> dict[str, Turns | WorkerTurns]:
    """The contenders that run here, by name (:func:`.turns.spec_name`) in the specs'
    order; those that cannot go in ``skipped`` with the reason. Each worker is started
    and waited for before the next, so that each one's ``load_s`` is its own (started
    together, a worker's imports shared the cores with the others')."""
    players: dict[str, Turns | WorkerTurns] = {}
    for spec in specs:
        name = spec_name(spec)
        try:
            if config.isolate:
                worker = WorkerTurns(spec, config)
                worker.ready()
                players[name] = worker
            else:
                players[name] = Turns(spec, config)
        except c.Unavailable as exc:
            skipped[name] = str(exc)
    return players


def _drop(players: dict[str, Turns | WorkerTurns], name: str, why: str,
          cells: dict[tuple[str, int], Measurement], skipped: dict[str, str],
          bar: Progress) -> None:
    """Take a contender whose worker exited out of the run: its cells so far stay; one
    that has none is reported skipped."""
    player = players.pop(name)
    player.close()
    if not any(key[0] == name and m.times_s for key, m in cells.items()):
        skipped[name] = why
    bar.note(f"skipping {player.name} from here on: {why}")


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
