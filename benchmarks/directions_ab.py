"""A bidirectional model's directions side by side against one after the other, call by call
in one process (the numba kernel).

Usage: ``python benchmarks/directions_ab.py [--seconds S] [--layers L] [--train]
[--always] B,T,I,H ...``.

The same model runs with its kernel's ``side_by_side`` as the kernel chose it
(:func:`lstm_xp.kernels.numba_scan.directions`; with ``--always``, side by side without
its rule: :func:`lstm_xp.kernels._pool.side_by_side`) and as
:func:`lstm_xp._functional.one_after_another`, the two taking turns for ``--seconds`` a
shape, by the model's full path (its shorter way for plain calls runs the directions
with the kernel's own rule, whatever ``side_by_side`` says); each sample is the fastest of
3 back-to-back calls after an untimed one. Before
timing, both give the same bits (asserted). With ``--train``, a training step
(``forward_train`` and ``backward`` with all-ones output gradients). The table gives each
way's median and the median over rounds of side by side / one after the other (below 1:
side by side is faster); where the kernel's rule runs the directions one after the other,
both columns time the same thing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lstm_xp import LSTM
from lstm_xp._functional import one_after_another
from lstm_xp.bench.runner import input_for
from lstm_xp.kernels._pool import side_by_side


def _always(calls: Any, shape: Any, dtype: Any) -> list[Any]:
    """Side by side whatever the shape (the kernel's rule left out)."""
    return side_by_side(calls)


def _step(model: LSTM, x: np.ndarray, train: bool) -> Callable[[], Any]:
    """One inference call, or one training step, of ``model`` on ``x``: its outputs."""
    if not train:
        return lambda: model(x)[0]
    ones = np.ones((*x.shape[:2], 2 * model.hidden_size), x.dtype)

    def step() -> Any:
        _, _, tape = model.forward_train(x)
        return model.backward(tape, ones)[2]["weight_hh_l0"]

    return step


def compare(shape: tuple[int, int, int, int], layers: int, train: bool,
            seconds: float, always: bool = False) -> tuple[float, float, float]:
    """Medians (s) one after the other and side by side, and the median ratio."""
    _, _, size_in, hidden = shape
    model = LSTM(size_in, hidden, num_layers=layers, bidirectional=True, seed=0)
    x = input_for(shape, "float32")
    model._plain = None  # the full path, which runs the directions as its kernel says
    kernel = model._kernel
    kernel_way = kernel.side_by_side
    chosen = _always if always else kernel.side_by_side
    step = _step(model, x, train)
    outputs = []
    for way in (one_after_another, chosen):
        kernel.side_by_side = way
        outputs.append(step())
    np.testing.assert_array_equal(*outputs)
    times: dict[Any, list[float]] = {one_after_another: [], chosen: []}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for way, samples in times.items():
            kernel.side_by_side = way
            step()
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                step()
                best = min(best, time.perf_counter() - start)
            samples.append(best)
    kernel.side_by_side = kernel_way
    after, side = times[one_after_another], times[chosen]
    ratio = statistics.median(s / a for a, s in zip(after, side, strict=True))
    return statistics.median(after), statistics.median(side), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shapes", nargs="+", help="B,T,I,H")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--always", action="store_true")
    args = parser.parse_args()
    print("| (B, T, I, H) | one after the other ms | side by side ms | side / after |")
    print("|---|---|---|---|")
    for text in args.shapes:
        shape = tuple(int(v) for v in text.split(","))
        after, side, ratio = compare(shape, args.layers, args.train, args.seconds,
                                     args.always)
        print(f"| {shape} | {after * 1e3:.3f} | {side * 1e3:.3f} | {ratio:.3f} |", flush=True)


if __name__ == "__main__":
    main()
