"""Batch inference of an lstm-xp model over many sequences with Dask.

On a LocalCluster of worker processes (bound to 127.0.0.1):

    python examples/dask_inference.py --workers 2 --batch 4096

On an existing cluster (for example one ``dask worker`` per GPU on several machines):

    python examples/dask_inference.py --scheduler tcp://10.0.0.5:8786 --cupy

Sequences are generated on the workers chunk by chunk (``dask.array.random``), run through the
model with ``lstm_xp.dask.forward``, and reduced to one number per sequence, so nothing large
crosses the network.
"""

from __future__ import annotations

import argparse
import time

import dask.array as da
from distributed import Client, LocalCluster

from lstm_xp import LSTM
from lstm_xp.dask import forward


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scheduler", help="address of an existing scheduler")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=256, help="sequences per task")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cupy", action="store_true", help="move chunks to each worker's GPU")
    args = parser.parse_args(argv)

    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0",
                               worker_dashboard_address="127.0.0.1:0",
                               env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
        client = Client(cluster)
    print(client)
    model = LSTM(64, 128, num_layers=2, seed=0)
    X = da.random.default_rng(0).standard_normal(
        (args.steps, args.batch, 64), chunks=(args.steps, args.chunk, 64), dtype="float32")
    if args.cupy:
        import cupy

        X = X.map_blocks(cupy.asarray)
    outputs = forward(model, X)
    last_mean = outputs[-1].mean(axis=-1)  # (B,): one number per sequence
    start = time.perf_counter()
    result = client.compute(last_mean).result()
    seconds = time.perf_counter() - start
    print(f"{args.batch} sequences of {args.steps} steps in {seconds:.2f} s "
          f"({args.batch / seconds:.0f} sequences/s); first results {result[:4]}")
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
