"""Model calls while the cores are not the model's alone: the case a thread split must survive.

    python benchmarks/contention.py 4 100 128 256 [--calls 60]
    LSTM_XP_NUM_THREADS=1 python benchmarks/contention.py 4 100 128 256   # one thread

Times ``--calls`` forward calls of a float32 model of shape (B, T, I, H) three ways: quiet;
with a 512x512 NumPy product before each call (OpenBLAS's threads then spin on every core for
a while); and beside a second process that keeps one core busy (``while True: pass``).
Prints the median, 90th percentile and slowest call of each, in ms.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from lstm_xp import LSTM


def timed(model: LSTM, x: np.ndarray, before: Callable[[], object], calls: int) -> str:
    """``calls`` model calls, ``before()`` ahead of each (not timed): median / p90 / max."""
    times = []
    for _ in range(calls):
        before()
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return f"median {np.median(ms):.2f}  p90 {np.percentile(ms, 90):.2f}  max {ms.max():.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", type=int, nargs=4, metavar=("B", "T", "I", "H"))
    parser.add_argument("--calls", type=int, default=60)
    args = parser.parse_args()
    batch, steps, size_in, hidden = args.shape
    model = LSTM(size_in, hidden, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, size_in)).astype(np.float32)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    model(x)  # compiled (or loaded from the cache) before the timing
    print(f"(B, T, I, H) = {tuple(args.shape)}, kernel {model.kernel}")
    print("quiet                 ", timed(model, x, lambda: None, args.calls))
    print("after a NumPy product ", timed(model, x, lambda: a @ a, args.calls))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        print("beside a busy process ", timed(model, x, lambda: None, args.calls))
    finally:
        busy.kill()
        busy.wait()


if __name__ == "__main__":
    main()
