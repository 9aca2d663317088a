"""The numba kernel's forward time at each thread count, in one process (a many-core check).

Usage: ``python benchmarks/thread_sweep.py [B,T,I,H ...]``. For each shape and each count in
1, 2, 4, ... up to the machine's cores, prints the median of 7 samples (the benchmark's
:func:`lstm_xp.bench.runner.time_runner`: warm-ups for 50 ms, each sample the mean of back-to-back
calls) and the speed-up over one thread.
"""

from __future__ import annotations

import functools
import statistics
import sys

import numpy as np

from lstm_xp import LSTM
from lstm_xp._threads import cores, set_num_threads
from lstm_xp.bench.runner import time_runner


def main(argv: list[str]) -> None:
    shapes = [tuple(int(v) for v in s.split(",")) for s in argv] or [(8, 100, 128, 256)]
    counts = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= cores()]
    for b, t, i, h in shapes:
        model = LSTM(i, h, seed=0)
        x = np.random.default_rng(0).standard_normal((t, b, i)).astype(np.float32)
        run = functools.partial(model, x)
        base = None
        for n in counts:
            set_num_threads(n)
            ms = 1e3 * statistics.median(time_runner(run, 7, 6.0))
            base = base or ms
            print(f"({b}, {t}, {i}, {h}) threads {n:3d}: {ms:9.3f} ms  x{base / ms:5.2f}",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
