"""The numba kernel's forward time at each thread count, in one process (a many-core check).

Usage: ``python benchmarks/thread_sweep.py [B,T,I,H ...]``. For each shape and each count in
1, 2, 4, ... up to the machine's cores, prints the median of 7 timed model calls (after two
warm-ups) and the speed-up over one thread.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from lstm_xp import LSTM
from lstm_xp._threads import cores, set_num_threads


def median_ms(model: LSTM, x: np.ndarray, repeats: int = 7) -> float:
    for _ in range(2):
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv: list[str]) -> None:
    shapes = [tuple(int(v) for v in s.split(",")) for s in argv] or [(8, 100, 128, 256)]
    counts = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= cores()]
    for b, t, i, h in shapes:
        model = LSTM(i, h, seed=0)
        x = np.random.default_rng(0).standard_normal((t, b, i)).astype(np.float32)
        base = None
        for n in counts:
            set_num_threads(n)
            ms = median_ms(model, x)
            base = base or ms
            print(f"({b}, {t}, {i}, {h}) threads {n:3d}: {ms:9.3f} ms  x{base / ms:5.2f}",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
