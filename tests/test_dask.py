"""Batch inference on Dask: a real LocalCluster with worker processes, bound to 127.0.0.1."""

from __future__ import annotations

import os
import pickle
import signal
import time

import numpy as np
import pytest

from lstm_xp import LSTM, ShapeError

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
lstm_dask = pytest.importorskip("lstm_xp.dask")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0",
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_cluster_equals_single_process(client, rng, batch_first, with_lengths):
    model = LSTM(3, 5, 2, bidirectional=True, batch_first=batch_first, dtype="float64",
                 init="pytorch", seed=2)
    T, B = 7, 23
    x = rng.standard_normal((B, T, 3) if batch_first else (T, B, 3))
    lengths = rng.integers(0, T + 1, size=B) if with_lengths else None
    chunks = (6, T, 3) if batch_first else (T, 6, 3)
    out = lstm_dask.forward(model, da.from_array(x, chunks=chunks), lengths)
    b_axis = 0 if batch_first else 1
    assert out.chunks[b_axis] == (6, 6, 6, 5)
    got = client.compute(out).result()
    want, _ = model(x, lengths=lengths)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_time_and_feature_chunks_are_merged(rng):
    model = LSTM(4, 3, dtype="float64", seed=3)
    x = rng.standard_normal((9, 8, 4))
    out = lstm_dask.forward(model, da.from_array(x, chunks=(3, 4, 2)))
    assert out.chunks == ((9,), (4, 4), (3,))
    np.testing.assert_allclose(out.compute(scheduler="synchronous"), model(x)[0], rtol=1e-12)


def test_weights_travel_once_not_per_task(rng):
    model = LSTM(16, 64, 2, bidirectional=True, seed=4)
    weight_bytes = sum(v.nbytes for v in model.state_dict().values())
    x = rng.standard_normal((5, 64, 16)).astype(np.float32)
    out = lstm_dask.forward(model, da.from_array(x, chunks=(5, 2, 16)))  # 32 tasks
    graph = dict(out.__dask_graph__())
    size = len(pickle.dumps(graph))
    assert len(graph) >= 64
    # Once: the weights plus the input chunks and small per-task records. Per task, it would be
    # 32 copies (more than 30x the weights).
    assert size < 2 * weight_bytes + x.nbytes * 2, (size, weight_bytes)


def test_errors(rng):
    model = LSTM(3, 4)
    with pytest.raises(ShapeError, match=r"dask\.array\.Array"):
        lstm_dask.forward(model, np.zeros((2, 3, 3)))
    with pytest.raises(ShapeError, match="I=3"):
        lstm_dask.forward(model, da.zeros((2, 3, 5), chunks=(2, 1, 5)))
    with pytest.raises(ShapeError, match=r"lengths has shape \(2,\)"):
        lstm_dask.forward(model, da.zeros((2, 3, 3), chunks=(2, 1, 3)), da.zeros(2, chunks=1))


def test_cupy_chunks(rng):
    from lstm_xp._backend import probe_cupy

    usable, why = probe_cupy(0)
    if not usable:
        pytest.skip(f"cupy: {why}")
    import cupy

    model = LSTM(3, 4, dtype="float64", seed=5)
    x = rng.standard_normal((6, 8, 3))
    out = lstm_dask.forward(model, da.from_array(x, chunks=(6, 4, 3)).map_blocks(cupy.asarray))
    got = out.compute(scheduler="synchronous")
    assert type(got).__module__.startswith("cupy")
    np.testing.assert_allclose(cupy.asnumpy(got), model(x)[0], rtol=1e-12)


def test_killed_worker_loses_and_duplicates_nothing(client, rng):
    """Kill a worker process mid-computation: the job completes and equals the reference."""
    model = LSTM(4, 64, dtype="float64", seed=6)
    T, B = 20_000, 32
    # Generated on the workers, chunk by chunk: the graph stays small.
    X = da.random.default_rng(7).standard_normal((T, B, 4), chunks=(T, 2, 4))
    want, _ = model(X.compute(scheduler="synchronous"))
    future = client.compute(lstm_dask.forward(model, X))
    deadline = time.monotonic() + 30
    while not client.processing() or not any(client.processing().values()):
        assert time.monotonic() < deadline, "the computation never started"
        time.sleep(0.05)
    time.sleep(0.3)
    assert not future.done(), "the job finished before the worker could be killed"
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    os.kill(pids[victim], signal.SIGKILL)
    got = future.result(timeout=300)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
