"""Throughput of lstm_xp.dask.forward with 1 and 2 worker processes (one BLAS thread each).

    python benchmarks/dask_scaling.py [--batch 2048] [--repeats 5]

Prints the median time for each worker count and the scaling efficiency
t(1) / (2 * t(2)). The input is generated on the workers; the result is reduced to one number
per sequence, so the timing is the LSTM work plus Dask's scheduling.
"""

from __future__ import annotations

import argparse
import statistics
import time

import dask.array as da
from distributed import Client, LocalCluster

from lstm_xp import LSTM
from lstm_xp.dask import forward


def time_with(workers: int, model: LSTM, args: argparse.Namespace) -> list[float]:
    with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0",
                      env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                           "MKL_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        X = da.random.default_rng(0).standard_normal(
            (args.steps, args.batch, args.input), chunks=(args.steps, args.chunk, args.input),
            dtype="float32").persist()
        client.compute(forward(model, X)[-1].sum(axis=-1)).result()  # warm-up: weights, BLAS
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            client.compute(forward(model, X)[-1].sum(axis=-1)).result()
            times.append(time.perf_counter() - start)
        return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = LSTM(args.input, args.hidden, seed=0)
    medians = {}
    for workers in (1, 2):
        times = time_with(workers, model, args)
        medians[workers] = statistics.median(times)
        print(f"{workers} worker(s): median {medians[workers]:.3f} s over {len(times)} runs "
              f"({args.batch / medians[workers]:.0f} sequences/s); all: "
              + ", ".join(f"{t:.3f}" for t in times))
    print(f"scaling efficiency with 2 workers: {medians[1] / (2 * medians[2]):.2f}")


if __name__ == "__main__":
    main()
