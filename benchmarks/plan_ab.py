"""Ways of sharing threads, call by call in one process: which plan a rule should pick.

Usage: ``python benchmarks/plan_ab.py [--seconds S] [--block S] [--ort] VARIANTS B,T,I,H ...``,
where
``VARIANTS`` is a JSON object of named settings of :mod:`lstm_xp.kernels.numba_scan`'s
plan constants (``"threads"`` for :func:`lstm_xp.set_num_threads`), e.g.
``'{"now": {}, "no small split": {"MIN_SMALL_BATCH": 1000000000}}'``.

Each variant is the same compiled code on the same model with other constants (setting one
forgets the plans and prepared calls made before: the untimed call before each timed one, or
a block's first three, makes them anew), so the comparison has none of the code-placement
bias that two copies of the package show side by side (4-6 % at two shapes of an A/A run on
this guest, ``RESULTS.md``). The variants take turns for ``--seconds`` a shape, the order
flipped each round; each timed call follows an untimed one of the same variant (a model
called back to back). The first variant is the reference: the table gives each variant's
median time and the median over rounds of its time / the reference's (below 1: faster).
``--ort`` adds ONNX Runtime (``allow_spinning`` off, see ``paired_ort.py``).

With ``--block S`` each turn is S seconds of back-to-back calls instead (after three
untimed ones), its median one sample. Use it where a variant splits calls between threads
and another does not: the pool's threads linger after a split call (``lstm_xp.kernels._pool``,
about 1.5 ms), and a one-thread call right after one ran 10-20 % slower than in a block of
its own on the 2-vCPU guest, which made the split look better than it is.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import lstm_xp
from lstm_xp import LSTM
from lstm_xp.bench import contenders
from lstm_xp.bench.runner import input_for
from lstm_xp.kernels import numba_scan


def _describe(shape: tuple[int, int, int, int], threads: int) -> str:
    """The plan :func:`numba_scan.plan` makes for ``shape`` now: rows or units, and sizes."""
    batch, steps, size_in, hidden = shape
    by_rows, slices = numba_scan.plan(steps, batch, size_in, hidden, True, threads=threads)
    return ("rows " if by_rows else "units ") + "+".join(str(b - a) for a, b in slices)


def compare(shape: tuple[int, int, int, int], variants: dict[str, dict[str, Any]],
            seconds: float, ort: bool, block: float = 0.0) -> dict[str, Any]:
    """Every variant (and ONNX Runtime) on ``shape`` in turns: plans, times, ratios."""
    x = input_for(shape, "float32")
    model = LSTM(shape[2], shape[3], seed=0)
    names = {k for v in variants.values() for k in v if k != "threads"}
    defaults = {k: getattr(numba_scan, k) for k in names}
    plans: dict[str, str] = {}
    threads = lstm_xp.get_num_threads()  # for the variants that do not set it

    def setting(values: dict[str, Any]) -> Callable[[], Any]:
        def run() -> Any:
            for k in names:  # only where it changes: a setting set forgets every plan
                value = values.get(k, defaults[k])
                if getattr(numba_scan, k) != value:
                    setattr(numba_scan, k, value)
            lstm_xp.set_num_threads(values.get("threads", threads))
            return model(x)
        return run

    runs = {name: setting(values) for name, values in variants.items()}
    for name, values in variants.items():
        runs[name]()  # leaves the variant's constants set, which _describe's plan reads
        plans[name] = _describe(shape, values.get("threads", threads))
    if ort:
        runs["onnxruntime"] = contenders.onnxruntime_lstm(spinning=False).prepare(
            shape, "float32", x)
    times: dict[str, list[float]] = {name: [] for name in runs}
    try:
        end, turn = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            order = list(runs) if turn % 2 == 0 else list(runs)[::-1]
            turn += 1
            for name in order:
                times[name].append(_turn(runs[name], block))
    finally:
        for k, v in defaults.items():
            setattr(numba_scan, k, v)
        lstm_xp.set_num_threads(threads)
    reference = np.array(times[next(iter(variants))])
    return {"shape": shape, "plans": plans, "rounds": len(reference),
            "ms": {n: float(np.median(t)) * 1e3 for n, t in times.items()},
            "ratio": {n: float(np.median(np.array(t) / reference)) for n, t in times.items()}}


def _turn(run: Callable[[], Any], block: float) -> float:
    """One sample of ``run``: one call after an untimed one, or (``block`` seconds) the
    median of the calls back to back for that long after three untimed ones."""
    for _ in range(1 if block <= 0 else 3):
        run()
    samples = []
    stop = time.perf_counter() + block
    while True:
        t0 = time.perf_counter()
        run()
        samples.append(time.perf_counter() - t0)
        if t0 >= stop:
            return float(np.median(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", type=json.loads)
    parser.add_argument("shapes", nargs="+")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--ort", action="store_true")
    parser.add_argument("--block", type=float, default=0.0)
    args = parser.parse_args()
    for spec in args.shapes:
        values = [int(v) for v in spec.split(",")]
        if len(values) != 4:
            parser.error(f"a shape is B,T,I,H (four integers); got {spec!r}")
        batch, steps, size_in, hidden = values
        result = compare((batch, steps, size_in, hidden), args.variants, args.seconds, args.ort,
                         args.block)
        cells = "  ".join(f"{n} {result['plans'].get(n, '')} {ms:.3f} ms ({result['ratio'][n]:.2f})"
                          for n, ms in result["ms"].items())
        print(f"{spec} ({result['rounds']} rounds): {cells}", flush=True)


if __name__ == "__main__":
    main()
