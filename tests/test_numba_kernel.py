"""The compiled (numba) kernel: its threads, how they share steps, and the bits a call gets.

The kernel's results against the reference at ordinary sizes are in test_kernels.py (every
registered kernel); here the paths only larger calls take are forced at small sizes.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import threading
import time

import hypothesis
import numpy as np
import pytest
from calls import assert_results_close, flat, together
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import lstm_xp
from lstm_xp import LSTM, ConfigError
from lstm_xp._threads import thread_setting
from lstm_xp.kernels._workspace import aligned_arrays

numba_scan = pytest.importorskip("lstm_xp.kernels.numba_scan")
atomics = pytest.importorskip("lstm_xp.kernels._atomics")
_pool = pytest.importorskip("lstm_xp.kernels._pool")
numba_train = pytest.importorskip("lstm_xp.kernels.numba_train")
_simd = pytest.importorskip("lstm_xp.kernels._simd")


@pytest.fixture
def threaded(monkeypatch):
    """Split every compiled call between ``threads`` threads, however small (and run a
    bidirectional layer's directions side by side)."""

    def use(threads):
        lstm_xp.set_num_threads(threads)
        for name in ("MIN_FLOPS_PER_THREAD", "MIN_UNITS_PER_THREAD", "MIN_CHUNK_STEP_FLOPS",
                     "MIN_CHUNK_CALL_FLOPS", "MIN_NARROW_CHUNK_CALL_FLOPS",
                     "MIN_SMALL_FLOPS_PER_THREAD", "MIN_NARROW_SMALL_FLOPS_PER_THREAD",
                     "SIDE_BY_SIDE_MIN_WORK"):
            monkeypatch.setattr(numba_scan, name, 1)

    with thread_setting(None):  # restores the setting
        yield use


@pytest.fixture(params=["packed", "dot"])
def products(request, monkeypatch):
    """Both forms of the kernel's products, whatever the call's size: the weights packed
    into panels (:func:`numba_scan._pack`) or dot products over them as they are."""
    monkeypatch.setattr(numba_scan, "PACK_COST_ROWS", 0 if request.param == "packed" else 10**9)
    return request.param


@pytest.fixture(params=["units", "rows"])
def split(request, monkeypatch):
    """Both ways a threaded call shares its threads, whatever the batch: each thread a
    slice of the hidden units, or (packed weights) a slice of the sequences."""
    for name in ("MIN_ROWS_PER_THREAD", "MIN_SMALL_ROWS_PER_THREAD"):
        monkeypatch.setattr(numba_scan, name, 1 if request.param == "rows" else 10**9)
    return request.param


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(9, 1, 3, 8), (6, 5, 4, 13), (37, 3, 2, 24), (4, 6, 70, 9)])
def test_threaded_scan_equals_the_reference(threaded, products, split, rng, threads,
                                            precision, shape):
    """Units split between threads that meet after every step (with hidden sizes that leave
    a slice of other than 4 units), or sequences split between threads that do not meet;
    lengths, both directions, a given state, 2 layers, and inputs wider than the hidden
    size; the results equal the pure reference. Split by sequences, each is the same bits
    as on one thread (the threads compute every sequence as one thread does)."""
    threaded(threads)
    T, B, I, H = shape
    kwargs = dict(bidirectional=True, seed=5, dtype=precision)
    fast, pure = LSTM(I, H, 2, **kwargs), LSTM(I, H, 2, kernel="pure", **kwargs)
    by_rows, slices = numba_scan.plan(T, B, I, H, products == "packed")
    assert fast.kernel == "numba" and len(slices) > 1
    assert slices == (numba_scan.row_slices(B, min(B, threads)) if by_rows
                      else numba_scan.unit_slices(H, threads))
    assert by_rows == (split == "rows" and products == "packed" and B > 1)
    x = rng.standard_normal((T, B, I)).astype(precision)
    state = tuple(rng.standard_normal((4, B, H)).astype(precision) for _ in range(2))
    tol = dict(rtol=1e-6, atol=1e-6) if precision == "float32" else dict(rtol=1e-13, atol=1e-14)
    for lengths in (None, rng.integers(0, T + 1, size=B)):
        got = flat(fast(x, state, lengths))
        for a, b in zip(got, flat(pure(x, state, lengths)), strict=True):
            np.testing.assert_allclose(a, b, **tol)
        if by_rows:
            lstm_xp.set_num_threads(1)
            for a, b in zip(got, flat(fast(x, state, lengths)), strict=True):
                np.testing.assert_array_equal(a, b)
            lstm_xp.set_num_threads(threads)


@pytest.mark.parametrize("steps", [1, 3])
def test_a_zero_initial_state_skips_the_first_recurrent_product(threaded, products, split,
                                                                 rng, steps):
    """From a zero hidden state (none given, or zeros) the first step leaves out its
    recurrent product, and a single step the recurrent weights' packing; a state that is
    zero but for one entry, or a zero hidden state beside a cell state that is not, goes
    through the product. Each equals the pure reference: two layers, both directions,
    with lengths that end sequences before the first step and at it."""
    threaded(2)
    T, B, I, H = steps, 5, 6, 16
    kwargs = dict(bidirectional=True, seed=7)
    fast, pure = LSTM(I, H, 2, **kwargs), LSTM(I, H, 2, kernel="pure", **kwargs)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    one_entry = np.zeros((4, B, H), np.float32)
    one_entry[1, 3, 5] = 0.5
    cells = rng.standard_normal((4, B, H)).astype(np.float32)
    zeros = np.zeros((4, B, H), np.float32)
    for state in (None, (zeros, zeros), (one_entry, zeros), (zeros, cells)):
        for lengths in (None, np.array([T, 0, 1, T, 0])):
            assert_results_close(fast(x, state, lengths), pure(x, state, lengths),
                                 rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_one_model_called_from_several_threads_while_its_calls_are_threaded(threaded, split,
                                                                            rng, bidirectional):
    """Calls from several Python threads at once, each of which splits itself between the
    kernel's threads (by units: they take turns with those threads; by sequences: their
    jobs share the pool; a bidirectional layer's directions side by side), from zeros, from
    a state of its own and with lengths of its own (the prepared calls that the model
    shares, numba_scan._quick_call): every caller gets exactly the bits it gets alone."""
    threaded(2)
    model = LSTM(6, 16, 2, seed=2, bidirectional=bidirectional)
    count = 2 * model.num_directions
    calls = []
    for b in (1, 2, 3, 4, 5, 6):
        x = rng.standard_normal((30, b, 6)).astype(np.float32)
        state = tuple(rng.standard_normal((count, b, 16)).astype(np.float32) for _ in range(2))
        lengths = sorted(rng.integers(0, 31, b).tolist(), reverse=b % 2 == 0)
        calls += [(x,), (x, state), (x, None, lengths)]
    alone = [flat(model(*args)) for args in calls]
    results = together(len(calls), 5, lambda i: flat(model(*calls[i])))
    for a, b in zip(alone, results, strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)


def test_training_calls_from_several_threads_while_they_are_split(threaded, split, rng):
    """Compiled training passes from several Python threads at once, each splitting its
    batch (by sequences, or its hidden units in claimed chunks) between the kernel's threads
    (forward, backward walk and the weights' gradient products): every caller gets exactly
    its gradients alone, and its forward outputs."""
    threaded(2)
    model = LSTM(5, 12, 2, bidirectional=True, seed=6)
    inputs = [(rng.standard_normal((9, b, 5)).astype(np.float32),
               rng.standard_normal((9, b, 24)).astype(np.float32)) for b in (2, 3, 5, 8)]

    def step(i):
        x, dy = inputs[i]
        out, _, tape = model.forward_train(x)
        dx, (dh0, dc0), grads = model.backward(tape, dy)
        return out, dx, dh0, dc0, grads

    alone = [step(i) for i in range(len(inputs))]
    shared = together(len(inputs), 3, step)
    for a, b in zip(alone, shared, strict=True):
        for x, y in zip(a[:4], b[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        assert a[4].keys() == b[4].keys()
        for k in a[4]:
            np.testing.assert_array_equal(a[4][k], b[4][k], err_msg=k)


def test_claimed_chunks_run_once_each_and_in_step_order():
    """The scan's way of sharing steps (:func:`numba_scan._scan_units`), alone: 3 threads,
    one of them starting late, claim the 4 chunks of each of 3,000 rounds. Each chunk of a
    round is computed exactly once, and only after every chunk of the round before: a wait
    that let a thread through early would see an older round in a chunk's slot (and a
    hoisted load would hang, which the join's timeout catches)."""
    import numba

    @numba.njit(nogil=True)
    def share(slots, home, rounds, sync):
        chunks = slots.shape[0]
        done = wrong = 0
        for r in range(rounds):
            atomics.wait_at_least(sync, 0, r * chunks)
            for turn in range(chunks):
                k = (home + turn) % chunks
                if atomics.atomic_add(sync, 8 + r * chunks + k, 1) > 0:
                    continue
                for other in range(chunks):  # the round before is complete everywhere
                    if slots[other] < r:
                        wrong += 1
                slots[k] = r + 1
                done += 1
                atomics.atomic_add(sync, 0, 1)
        return done, wrong

    chunks, rounds = 4, 3000
    slots, sync = np.zeros(chunks, np.int64), np.zeros(8 + chunks * rounds, np.int64)
    share(np.zeros(1, np.int64), 0, 1, np.zeros(9, np.int64))  # compile first
    results = [(-1, -1)] * 3

    def run(home):
        if home == 2:
            time.sleep(0.01)
        results[home] = share(slots, home, rounds, sync)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not any(w.is_alive() for w in workers)
    assert [wrong for _, wrong in results] == [0, 0, 0]
    assert sum(done for done, _ in results) == chunks * rounds
    assert list(slots) == [rounds] * chunks and sync[0] == chunks * rounds
    assert np.all(sync[8:] >= 1)  # every chunk of every round claimed


def test_atomic_add_counts_every_increment():
    import numba

    @numba.njit(nogil=True)
    def bump(counter, times):
        for _ in range(times):
            atomics.atomic_add(counter, 0, 1)

    counter = np.zeros(1, np.int64)
    bump(counter, 1)
    workers = [threading.Thread(target=bump, args=(counter, 100_000)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert counter[0] == 1 + 4 * 100_000


def test_unit_slices_and_thread_counts():
    assert numba_scan.unit_slices(256, 2) == [(0, 128), (128, 256)]
    assert numba_scan.unit_slices(13, 3) == [(0, 8), (8, 13)]  # multiples of 4 but the last
    assert numba_scan.unit_slices(5, 1) == [(0, 5)]
    for hidden in range(1, 40):
        for threads in range(1, 5):
            slices = numba_scan.unit_slices(hidden, threads)
            assert slices[0][0] == 0 and slices[-1][1] == hidden and len(slices) <= threads
            assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))
            assert all(first % 4 == 0 for first, _ in slices)
    assert numba_scan.unit_slices(256, 4)[-1] == (192, 256)
    assert numba_scan.row_slices(17, 3) == [(0, 6), (6, 12), (12, 17)]  # larger first
    for batch in range(1, 40):
        for parts in range(1, min(batch, 6) + 1):
            slices = numba_scan.row_slices(batch, parts)
            sizes = [last - first for first, last in slices]
            assert slices[0][0] == 0 and slices[-1][1] == batch and len(slices) == parts
            assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))
            assert sizes == sorted(sizes, reverse=True) and sizes[0] - sizes[-1] <= 1


def test_how_a_call_shares_its_threads(monkeypatch):
    """By sequences whenever each thread gets 4 (and the weights are packed), unless units
    put more threads to work or give each a slice of the weights that fits its L2 cache,
    or (inference, weights beyond L2) give each thread fewer blocks of rows; else by
    units (unless the caller says not to); neither without enough work (more for narrow
    chunks in inference, where a batch that neither splits may still split by sequences
    with fewer of them a thread)."""
    plan = numba_scan.plan
    monkeypatch.setattr(numba_scan, "L2_SLICE_BYTES", 512 * 1024)  # whatever this machine's
    with thread_setting(2):
        assert plan(100, 1, 32, 64, True) == (False, [(0, 64)])  # too little work to share
        assert plan(100, 1, 64, 128, True) == (False, [(0, 64), (64, 128)])
        assert plan(2, 1, 64, 128, True) == (False, [(0, 128)])  # too little a call
        assert plan(12, 1, 64, 128, True) == (False, [(0, 128)])  # 2.4 MFLOP
        # ... but from 1 MFLOP a call (2 a thread) where the weights are beyond L2 (here
        # 1.5 MiB): inference of more than one step
        assert plan(3, 1, 128, 256, True) == (False, [(0, 128), (128, 256)])  # 2.4
        assert plan(3, 2, 128, 256, True) == (False, [(0, 128), (128, 256)])  # not 1 + 1
        assert plan(3, 1, 128, 256, True, training=True) == (False, [(0, 256)])
        assert plan(1, 1, 256, 512, True) == (False, [(0, 512)])  # 3.1: one step
        assert plan(1, 1, 128, 256, True) == (False, [(0, 256)])  # 0.8
        # Chunks of 32 units (under NARROW_UNITS) in inference: only where the batch does
        # not split by sequences (below), and from 40 MFLOP a call
        assert plan(1000, 1, 256, 64, True) == (False, [(0, 32), (32, 64)])  # 164
        # ... or where a chunk's step has 200,000 FLOPs or more (here 409,600)
        assert plan(1000, 5, 256, 64, True) == (False, [(0, 32), (32, 64)])
        assert plan(50, 5, 32, 64, True, training=True) == (False, [(0, 32), (32, 64)])
        # Two chunks of 48-63 units in inference, under 8 sequences: by sequences from 2 a
        # thread, the slices within a third of each other (not 3 + 2)
        assert plan(100, 4, 32, 96, True) == (True, [(0, 2), (2, 4)])
        assert plan(300, 7, 64, 112, True) == (True, [(0, 4), (4, 7)])
        assert plan(200, 5, 64, 96, True) == (False, [(0, 48), (48, 96)])
        assert plan(100, 4, 128, 128, True) == (False, [(0, 64), (64, 128)])  # 64: wide
        assert plan(100, 4, 32, 96, True, training=True) == (False, [(0, 48), (48, 96)])
        assert plan(8, 7, 128, 96, True) == (True, [(0, 4), (4, 7)])  # 9.6 MFLOP
        assert plan(1, 7, 128, 96, True) == (False, [(0, 96)])  # 1.2: 0.6 a thread
        # Neither rule splits, or only into narrow chunks: by sequences, 0.9 MFLOP a
        # thread at least (one sequence a thread will do, in a batch of 2 at least)
        assert plan(100, 4, 32, 64, True) == (True, [(0, 2), (2, 4)])  # 9.8 a thread
        assert plan(100, 7, 32, 64, True) == (True, [(0, 4), (4, 7)])  # narrow chunks
        assert plan(200, 5, 32, 64, True) == (True, [(0, 3), (3, 5)])  # 49.2: not chunks
        assert plan(1000, 6, 32, 64, True) == (True, [(0, 3), (3, 6)])
        assert plan(100, 16, 16, 32, True) == (True, [(0, 8), (8, 16)])  # 32 units: none
        assert plan(40, 5, 32, 64, True) == (True, [(0, 3), (3, 5)])  # 4.9
        assert plan(20, 4, 32, 64, True) == (True, [(0, 2), (2, 4)])  # 1.97
        assert plan(4, 16, 64, 64, True) == (True, [(0, 8), (8, 16)])  # 2.1
        assert plan(10, 4, 64, 64, True) == (True, [(0, 2), (2, 4)])  # 1.3
        assert plan(5, 6, 64, 64, True) == (True, [(0, 3), (3, 6)])  # 0.98
        assert plan(10, 4, 32, 64, True) == (True, [(0, 2), (2, 4)])  # 0.98
        assert plan(8, 4, 32, 64, True) == (False, [(0, 64)])  # 0.79
        assert plan(3, 6, 64, 64, True) == (False, [(0, 64)])  # 0.59
        assert plan(100, 2, 32, 64, True) == (True, [(0, 1), (1, 2)])  # 4.9, 1 + 1
        assert plan(20, 2, 32, 64, True) == (True, [(0, 1), (1, 2)])  # 0.98
        assert plan(10, 2, 32, 64, True) == (False, [(0, 64)])  # 0.49
        assert plan(1000, 1, 32, 64, True) == (False, [(0, 64)])  # one sequence stays whole
        # ... from 0.65 MFLOP a thread at H <= 32
        assert plan(50, 8, 20, 20, True) == (True, [(0, 4), (4, 8)])  # 1.28
        assert plan(5, 32, 32, 32, True) == (True, [(0, 16), (16, 32)])  # 1.3
        assert plan(30, 8, 20, 20, True) == (True, [(0, 4), (4, 8)])  # 0.77
        assert plan(20, 4, 32, 32, True) == (True, [(0, 2), (2, 4)])  # 0.66
        assert plan(10, 6, 32, 32, True) == (False, [(0, 32)])  # 0.49
        assert plan(10, 8, 48, 48, True) == (True, [(0, 4), (4, 8)])  # 1.5, H = 48
        assert plan(100, 4, 32, 64, True, training=True) == (False, [(0, 32), (32, 64)])
        assert plan(100, 4, 32, 64, False) == (False, [(0, 64)])  # rows need packed weights
        # Blocks of rows through a panel: 1-6 rows one, 7 (4 + 3) to 12 (6 + 6) two, ...
        assert [numba_scan.block_count(r) for r in range(1, 16)] == [1] * 6 + [2] * 6 + [3] * 3
        # 16 sequences: 8 a thread in blocks of 4 + 4, or all 16 in 6 + 6 + 4 by units,
        # three blocks for two threads; the weights (1.5 MiB) do not fit in L2
        assert plan(100, 16, 128, 256, True) == (False, [(0, 128), (128, 256)])
        assert plan(100, 16, 128, 256, True, training=True) == (True, [(0, 8), (8, 16)])
        assert plan(100, 16, 64, 128, True) == (True, [(0, 8), (8, 16)])  # 384 KiB: fit
        assert plan(100, 24, 128, 256, True) == (True, [(0, 12), (12, 24)])  # 2 blocks each
        assert plan(50, 64, 256, 512, True)[0] is True  # 5.5 blocks a thread against 6
        assert plan(100, 8, 128, 256, True) == (True, [(0, 4), (4, 8)])
        assert plan(100, 64, 128, 256, False)[0] is False  # rows need packed weights
        assert plan(100, 7, 128, 256, True) == (False, [(0, 128), (128, 256)])
        assert plan(100, 1, 128, 256, True) == (False, [(0, 128), (128, 256)])
        assert plan(100, 7, 128, 256, True, lockstep=False) == (False, [(0, 256)])
        assert plan(100, 64, 128, 256, True, threads=1) == (False, [(0, 256)])
    with thread_setting(16):  # many cores: units where that puts more threads to work ...
        assert plan(100, 8, 128, 256, True) == (False, [(k, k + 32) for k in range(0, 256, 32)])
        assert plan(100, 64, 128, 256, True) == (True, [(k, k + 4) for k in range(0, 64, 4)])
        # ... or as many, each with a slice of the weights that fits its L2 cache
        # (6 MiB of float32 weights in 16 slices of 384 KiB; of float64, 768 KiB)
        units = (False, [(k, k + 32) for k in range(0, 512, 32)])
        assert plan(50, 64, 256, 512, True) == units
        assert plan(50, 64, 256, 512, True, itemsize=8) == (True, [(k, k + 4)
                                                                  for k in range(0, 64, 4)])
        monkeypatch.setattr(numba_scan, "L2_SLICE_BYTES", 2 * 1024 * 1024)  # ... (per core)
        assert plan(50, 64, 256, 512, True, threads=4) == (False, [(k, k + 128)
                                                                   for k in range(0, 512, 128)])
        assert plan(50, 64, 256, 512, True, threads=2)[0] is True  # 2 threads: by sequences


def test_l2_size_is_read_or_defaulted(monkeypatch, tmp_path):
    """The L2 size as Linux's sysfs writes it ("512K", "2048K", "2M"), else the default."""
    cache = tmp_path / "cache"
    for index, (level, size) in enumerate([("1", "32K"), ("2", "2048K"), ("3", "32M")]):
        (cache / f"index{index}").mkdir(parents=True)
        (cache / f"index{index}" / "level").write_text(level + "\n")
        (cache / f"index{index}" / "size").write_text(size + "\n")
    real_path = numba_scan.Path
    monkeypatch.setattr(numba_scan, "Path", lambda p: cache if "cpu0/cache" in p else real_path(p))
    assert numba_scan.l2_bytes() == 2048 * 1024
    (cache / "index1" / "size").write_text("1M\n")
    (cache / "index1" / "level").write_text("2\n")
    assert numba_scan.l2_bytes() == 1024 * 1024  # index1 now comes first
    monkeypatch.setattr(numba_scan, "Path", lambda p: tmp_path / "none")
    assert numba_scan.l2_bytes(default=12345) == 12345


_FORK_SCRIPT = """
import multiprocessing, sys
import numpy as np
import lstm_xp.kernels.numba_scan as ns
import lstm_xp
from lstm_xp import LSTM, ConfigError
lstm_xp.set_num_threads(2)
ns.MIN_FLOPS_PER_THREAD = ns.MIN_UNITS_PER_THREAD = ns.MIN_CHUNK_STEP_FLOPS = 1
ns.MIN_CHUNK_CALL_FLOPS = ns.MIN_NARROW_CHUNK_CALL_FLOPS = ns.MIN_SMALL_FLOPS_PER_THREAD = 1
ns.MIN_NARROW_SMALL_FLOPS_PER_THREAD = 1
model = LSTM(5, 16, seed=3)
x = np.random.default_rng(0).standard_normal((12, 3, 5)).astype(np.float32)
expected = model(x)[0]  # starts the pool in the parent
with multiprocessing.get_context("fork").Pool(1) as pool:
    got = pool.apply_async(model, (x,)).get(timeout=60)[0]
sys.exit(0 if np.array_equal(got, expected) else 3)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_runs_threaded_calls():
    """A child forked after the parent used the kernel's threads (multiprocessing's fork
    start, Dask's process workers) has none of the parent's pool threads; its threaded
    calls must still finish, with the parent's result. In a fresh interpreter: forking this
    test process, with JAX's and torch's threads in it, would trip their own fork checks."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], timeout=300, check=False)
    assert done.returncode == 0


def test_thread_count_from_the_environment_and_set_num_threads(monkeypatch):
    from lstm_xp import _threads

    monkeypatch.setattr(_threads, "_SETTING", None)  # not read yet
    monkeypatch.delenv("LSTM_XP_NUM_THREADS", raising=False)
    assert lstm_xp.get_num_threads() == _threads.cores()
    monkeypatch.setattr(_threads, "_SETTING", None)
    monkeypatch.setenv("LSTM_XP_NUM_THREADS", "3")
    assert lstm_xp.get_num_threads() == 3
    monkeypatch.setenv("LSTM_XP_NUM_THREADS", "5")
    assert lstm_xp.get_num_threads() == 3  # read once
    assert lstm_xp.set_num_threads("auto") == 3 and lstm_xp.get_num_threads() == _threads.cores()
    assert lstm_xp.set_num_threads(2) == _threads.cores() and lstm_xp.get_num_threads() == 2
    for bad in (0, -1, 1.5, True, "two", None):
        with pytest.raises(ConfigError, match="positive int or 'auto'"):
            lstm_xp.set_num_threads(bad)
    assert lstm_xp.get_num_threads() == 2  # unchanged by the refusals
    assert _threads.thread_count("auto") == _threads.cores()
    assert _threads.thread_count(" 2 ") == 2 and _threads.thread_count("") == _threads.cores()
    for bad in ("0", "-2", "two"):
        with pytest.warns(RuntimeWarning, match="LSTM_XP_NUM_THREADS must be a positive"):
            assert _threads.thread_count(bad) == 1


def test_the_hot_loops_compile_without_reference_counts():
    """The scan and the backward walk make a dozen array views a row, and numba counted
    references to each view's parent array (atomic adds): where numba has the option to
    leave them out (every version this package takes), both compile without them, and so
    their callees (the dot-product form's sums live on the stack, ``_simd.stack_sums``: such
    a function cannot allocate). Their results are the other tests' business; this one fails
    if a change of numba, or of the decorators, quietly brings the counts back."""
    from numba.core.cpu import CPUTargetOptions

    assert hasattr(CPUTargetOptions, "_nrt")
    assert numba_scan.WITHOUT_REFCOUNTS == {"_nrt": False}
    for function in (numba_scan._scan_units, numba_train._walk_back):
        assert function.targetoptions.get("_nrt") is False


def test_the_weights_gradient_keeps_the_rows_inside_the_sequences():
    """The rows ``t * B + n`` of the tape with ``t < lengths[n]``, in order, counted by
    hand; None (every row) where leaving the others out spares under KEEP_SAVING of them."""
    assert numba_train._kept_rows(np.array([2, 0, 3]), 3).tolist() == [0, 2, 3, 5, 8]
    assert numba_train._kept_rows(np.array([40, 40, 39]), 40) is None  # 1 of 120 rows out
    assert numba_train._kept_rows(np.array([3, 3]), 3) is None


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("lengths", [None, [7, 0, 3], [7, 7, 6]])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_walk_packs_the_gate_gradients_for_the_weights_product(threaded, split, rng,
                                                                   precision, lengths,
                                                                   threads):
    """The backward walk leaves each gate gradient it computes (the tape's rows, in place)
    in the weights' product's panels as well: the first panels' row j (those that hold
    4H = 20 columns) holds columns p*C:(p+1)*C of the row kept[j] (row j where every row
    is kept: no lengths, or few steps past them), zero past 4H, whatever they held before.
    On one thread and split by sequences or by units."""
    threaded(threads)
    T, B, I, H = 7, 3, 4, 5
    trainer = numba_train.CompiledTrainer()
    x = rng.standard_normal((T, B, I)).astype(precision)
    w_ih, w_hh = (rng.standard_normal((4 * H, n)).astype(precision) for n in (I, H))
    bias = rng.standard_normal(4 * H).astype(precision)
    h0, c0 = (rng.standard_normal((B, H)).astype(precision) for _ in range(2))
    valid = None if lengths is None else np.array(lengths)
    *_, tape = trainer.scan_train(np, x, w_ih, w_hh, bias, h0, c0, lengths=valid)
    dy = rng.standard_normal((T, B, H)).astype(precision)
    kept = numba_train._kept_rows(tape.lengths, T)
    assert (kept is None) == (lengths != [7, 0, 3])
    rows = T * B if kept is None else kept.shape[0]
    panels, width = numba_scan.panel_shape(4 * H, precision)
    packed = np.full((panels, rows, width), np.nan, precision)
    trainer._walk(trainer.workspace.take, tape, tape.gates, dy, None, None, packed,
                  numba_train._slots(kept, T * B))
    dz = tape.gates.reshape(T * B, 4 * H)
    assert np.abs(dz).max() > 0.01  # gradients, not activations left as they were
    used = numba_scan.used_panels(4 * H, width)
    flat = packed[:used].transpose(1, 0, 2).reshape(rows, used * width)
    np.testing.assert_array_equal(flat[:, :4 * H], dz if kept is None else dz[kept])
    assert not flat[:, 4 * H:].any()


@pytest.mark.parametrize("lengths", [None, [11, 0, 6], [4, 11, 1], [11, 7, 0]])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_compiled_training_pass_equals_the_reference(threaded, products, split, rng, threads,
                                                     precision, lengths):
    """The compiled training pass (the forward pass writing its tape, the backward walk
    and products reading it): the outputs and every gradient equal the pure path's, on one
    thread and split by units or by sequences, both directions, with and without a bias,
    from a given state, and with lengths (unsorted, 0 and T among them; the outputs'
    gradient is not zero past them, and must not count): run in the order that spares work
    (the first two), or as given (the last, already longest first)."""
    threaded(threads)
    T, B, I, H = 11, 3, 5, 14
    if lengths is not None:
        lengths = np.array(lengths)
    tol = dict(rtol=2e-5, atol=2e-6) if precision == "float32" else \
        dict(rtol=1e-11, atol=1e-13)
    for bias in (True, False):
        kwargs = dict(bidirectional=True, dtype=precision, seed=8, bias=bias)
        fast, pure = LSTM(I, H, 2, **kwargs), LSTM(I, H, 2, kernel="pure", **kwargs)
        x = rng.standard_normal((T, B, I)).astype(precision)
        state = tuple(rng.standard_normal((4, B, H)).astype(precision) for _ in range(2))
        dy = rng.standard_normal((T, B, 2 * H)).astype(precision)
        dh = tuple(rng.standard_normal((4, B, H)).astype(precision) for _ in range(2))
        results = []
        for model in (fast, pure):
            out, (h_n, c_n), tape = model.forward_train(x, state, lengths)
            if model is fast:  # the compiled pass's own tapes, not the fused NumPy pair's
                tapes = [t for layer in tape.recorded.layers for t in layer]
                assert all(isinstance(t, numba_train.RowTape) for t in tapes)
                # Sorted where that spares work: with the whole batch on a thread or split
                # by units, unless already longest first (split 2 + 1 by sequences, the
                # first two are not worth it).
                reordered = lengths is not None and list(lengths) != sorted(lengths)[::-1]
                if threads == 1 or split == "units":
                    assert all((t.order is not None) == reordered for t in tapes)
            results.append((out, h_n, c_n, *model.backward(tape, dy, dh)))
        (o1, h1, c1, dx1, ds1, g1), (o2, h2, c2, dx2, ds2, g2) = results
        for a, b in [(o1, o2), (h1, h2), (c1, c2), (dx1, dx2), (ds1[0], ds2[0]),
                     (ds1[1], ds2[1])]:
            np.testing.assert_allclose(a, b, **tol)
        assert g1.keys() == g2.keys()
        for k in g1:
            np.testing.assert_allclose(g1[k], g2[k], **tol, err_msg=k)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize(("hidden", "inner", "first", "last"),
                         [(13, 5, 0, 13), (24, 7, 8, 20), (40, 3, 4, 40), (70, 33, 0, 70),
                          (9, 700, 0, 9),  # the last in chunks along the inner dimension
                          (32, 64, 0, 32), (64, 40, 16, 48)])  # all in 8 x 8 blocks
def test_packed_weights_and_their_product(rng, precision, hidden, inner, first, last):
    """The panels hold each gate's columns of units first:last of ``w.T`` in gate-major
    order, zero past them; their product adds ``a @ W`` onto ``out`` for row counts that
    leave every remainder of the 4-row blocks, read from an offset row of ``a`` into an
    offset row of ``out``. Checked against NumPy in float64; and each row's result is the
    same bits whichever block computed it (the threads split rows between calls)."""
    w = rng.standard_normal((4 * hidden, inner)).astype(precision)
    units = last - first
    columns = np.concatenate([w[q * hidden + first:q * hidden + last] for q in range(4)]).T
    panels, width = numba_scan.panels_for(units, precision)
    packed = np.full((panels, inner, width), np.nan, precision)
    numba_scan._pack(w, first, last, packed, 0, panels)
    in_slices = np.full_like(packed, np.nan)  # as threads pack it: slices of the panels
    for low, high in [(0, 1), (1, panels // 2), (panels // 2, panels)]:
        numba_scan._pack(w, first, last, in_slices, low, high)
    assert np.array_equal(in_slices, packed)
    flat = packed.transpose(1, 0, 2).reshape(inner, panels * width)
    assert np.array_equal(flat[:, :4 * units], columns)
    assert not flat[:, 4 * units:].any()
    tol = 1e-5 if precision == "float32" else 1e-12
    for rows in range(1, 17):  # every mix of blocks of 3-6 rows, and 1 or 2 rows alone
        a = rng.standard_normal((rows + 3, inner)).astype(precision)
        out = rng.standard_normal((rows + 2, panels * width)).astype(precision)
        expected = out.astype(np.float64)
        expected[2:2 + rows] += a[1:1 + rows].astype(np.float64) @ flat.astype(np.float64)
        alone = out.copy()
        _product_into(packed, a, 1, rows, out, 2)
        np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * inner)
        for m in range(rows):  # one row at a time: outer1 only
            _product_into(packed, a, 1 + m, 1, alone, 2 + m)
        assert np.array_equal(alone, out)
    rows = 2 * numba_scan.ROW_BLOCK + 7  # blocks of rows over every panel, then the rest
    a = rng.standard_normal((rows, inner)).astype(precision)
    out = np.zeros((rows, panels * width), precision)
    _product_into(packed, a, 0, rows, out, 0)
    expected = a.astype(np.float64) @ flat.astype(np.float64)
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * inner)
    # Over the panels that hold the columns only: the same bits there, the rest untouched.
    used = numba_scan.used_panels(4 * units, width)
    assert (used - 1) * width < 4 * units <= used * width <= panels * width
    for rows in (1, 2, 3, 7, 2 * numba_scan.ROW_BLOCK + 7):
        a = rng.standard_normal((rows, inner)).astype(precision)
        start = rng.standard_normal((rows, panels * width)).astype(precision)
        whole, part = start.copy(), start.copy()
        _product_into(packed, a, 0, rows, whole, 0)
        _product_into(packed, a, 0, rows, part, 0, used=used)
        assert np.array_equal(part[:, :used * width], whole[:, :used * width])
        assert np.array_equal(part[:, used * width:], start[:, used * width:])


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("vector_bytes", [32, 64])
def test_dot_blocks_at_either_register_width(rng, precision, vector_bytes):
    """Each dot block's sums, with vectors of AVX2's 32 bytes and AVX-512's 64 (whichever
    this CPU has: LLVM splits a wider vector), equal a float64 product over the whole
    vectors of the inner dimension, from the rows asked for."""
    import numba

    tol = 1e-5 if precision == "float32" else 1e-12
    lanes = vector_bytes // np.dtype(precision).itemsize
    for rows_a, rows_w in ((2, 4), (3, 4), (1, 8)):
        block = _simd._dot_block(rows_a, rows_w, vector_bytes)

        @numba.njit
        def run(w, first_w, a, first_a, k_end, sums, block=block):
            block(w, first_w, a, first_a, k_end, sums)

        w = rng.standard_normal((rows_w + 3, 5 * lanes + 3)).astype(precision)
        a = rng.standard_normal((rows_a + 2, 5 * lanes + 3)).astype(precision)
        sums = np.full(16, np.nan, precision)
        run(w, 3, a, 2, 5 * lanes, sums)
        whole = slice(0, 5 * lanes)
        expected = a[2:, whole].astype(np.float64) @ w[3:, whole].astype(np.float64).T
        np.testing.assert_allclose(sums[:rows_a * rows_w], expected.ravel(), rtol=tol,
                                   atol=tol * lanes)


#: The tests that run again with the kernels laid out for the other registers.
OTHER_LAYOUT_TESTS = ("equals_the_reference or their_product or over_the_weights or walk_packs"
                      " or claimed_blocks or dot_blocks")


def test_the_layout_for_the_other_registers_gives_the_same_results(tmp_path):
    """The kernels laid out for the other vector registers than this CPU's (AVX-512's 64
    bytes on AVX2, AVX2's 32 on AVX-512: _simd.REGISTER_BYTES_VARIABLE; LLVM splits wider
    vectors) pass this module's tests of the products, the scans and the training pass
    (float64 references), in a process of their own with a numba cache of its own. A
    dot-product block gave wrong sums with AVX-512's registers once, which no test on the
    AVX2 machines had run. Refused without a cache directory of its own."""
    import subprocess
    import sys
    from pathlib import Path

    other = str(96 - _simd.REGISTER_BYTES)  # 32 <-> 64
    env = dict(os.environ, **{_simd.REGISTER_BYTES_VARIABLE: other})
    env.pop("NUMBA_CACHE_DIR", None)
    probe = [sys.executable, "-c", "import lstm_xp.kernels._simd as s; "
             "print(s.REGISTER_BYTES, s.TILE_BYTES)"]
    refused = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "NUMBA_CACHE_DIR" in refused.stderr
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    laid_out = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=300)
    assert laid_out.stdout.split() == [other, str(2 * int(other))], laid_out.stderr
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
         f"({OTHER_LAYOUT_TESTS}) and not other_registers"],
        env=env, capture_output=True, text=True, timeout=1800, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed is not None and int(passed.group(1)) >= 100, done.stdout[-2000:]


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("inner", [3, 8, 21, 64])
def test_dot_products_over_the_weights_as_they_are(rng, precision, inner):
    """_matmul_nt writes a[first_a + n] . w[r] into out[first_out + n, first_col + r -
    first_r] for 1-9 rows of a, ranges of w's rows that fill blocks of 8 or 4 or leave
    rows over, inner sizes under a vector and with a vector's tail, against a float64
    product; the rest of out is untouched."""
    tol = 1e-5 if precision == "float32" else 1e-12
    w = rng.standard_normal((53, inner)).astype(precision)
    for rows in range(1, 10):
        a = rng.standard_normal((rows + 2, inner)).astype(precision)
        for first_r, last_r in ((0, 53), (3, 35), (8, 12), (40, 47)):
            out = rng.standard_normal((rows + 3, 60)).astype(precision)
            expected = out.copy()
            product = a[2:].astype(np.float64) @ w[first_r:last_r].astype(np.float64).T
            expected[1:1 + rows, 5:5 + last_r - first_r] = product
            numba_scan._matmul_nt(w, first_r, last_r, a, 2, rows, out, 1, 5)
            np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * inner)
            untouched = np.ones(out.shape, bool)
            untouched[1:1 + rows, 5:5 + last_r - first_r] = False
            assert np.array_equal(out[untouched], expected[untouched])


def _product_into(packed, a, first_a, rows, out, first_out, block=None, used=None):
    """``out[first_out:first_out + rows] += a[first_a:first_a + rows] @ W``, one thread,
    over the first ``used`` panels (default: all)."""
    numba_scan._packed_product_call(packed, packed.shape[0] if used is None else used, a,
                                    first_a, rows, out, first_out,
                                    np.zeros(numba_scan.CLAIMS + 1, np.int64), block or rows,
                                    False, 0, _pool.NO_BELL)


def test_a_product_shared_in_claimed_blocks_equals_it_on_one_thread(rng):
    """Threads claiming blocks of rows (zeroing theirs first) compute exactly the rows one
    thread computes in one call, for block sizes that leave a short last block, and every
    row is written (the result's rows start as NaN)."""

    w = rng.standard_normal((70, 45)).astype(np.float32)
    panels, width = numba_scan.panel_shape(45, np.float32)
    packed = np.full((panels, 70, width), np.nan, np.float32)
    numba_scan._pack_columns(w, packed)
    a = rng.standard_normal((100, 70)).astype(np.float32)
    alone = np.zeros((100, packed.shape[0] * packed.shape[2]), np.float32)
    _product_into(packed, a, 0, 100, alone, 0)
    for block in (6, 12, 48, 100):
        out = np.full_like(alone, np.nan)
        sync = np.zeros(numba_scan.CLAIMS + 1, np.int64)
        part = (packed, panels, a, 0, 100, out, 0, sync, block, True)
        together(3, 1, lambda i, part=part: numba_scan._packed_product_call(*part, i,
                                                                            _pool.NO_BELL))
        assert np.array_equal(out, alone)
        blocks = -(-100 // block)
        assert sync[0] >= blocks and sync[numba_scan.CLAIMS] == blocks  # each block once
    with thread_setting(2):
        out = np.full_like(alone, np.nan)
        assert numba_train._product(a, packed, 45, out) is out  # 3 panels of the 4
        np.testing.assert_array_equal(out, alone)


def test_aligned_arrays_start_on_cache_lines_and_do_not_overlap():
    shapes = [(3, 5, 16), (7, 9), (1,), (0, 4), (2, 3)]
    for dtype in (np.float32, np.float64):
        arrays = aligned_arrays(shapes, dtype)
        assert [a.shape for a in arrays] == shapes
        for k, a in enumerate(arrays):
            assert a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
            assert a.ctypes.data % 64 == 0
            a[...] = k
        for k, a in enumerate(arrays):  # each kept its own values: no two overlap
            assert np.all(a == k)


@pytest.mark.parametrize("frozen", [False, True])
def test_the_split_by_sequences_work_buffers_start_on_cache_lines_apart(frozen):
    """Each slice's buffers (projection block, hidden and cell states, bias) and the shared
    packed weights start on 64-byte boundaries and share no byte: a slice's writes never
    touch a cache line another thread writes. (Each state as its own NumPy array, at 16-48
    bytes past a line, calls split by sequences at H = 40-100 took 1.01x-1.07x the time.)"""
    for batch, steps, size_in, hidden in [(48, 100, 40, 96), (128, 20, 50, 50), (9, 400, 30, 13)]:
        call = numba_scan._plan_of(steps, batch, size_in, hidden, np.dtype(np.float32), 2,
                                   True, False)
        assert call.by_rows and len(call.slices) == 2
        work = numba_scan._make_work(call, size_in, hidden, frozen)
        arrays = [hs for hs, _ in work.states] + [a for part in work.parts[:1] for a in part
                                                  if a.size] + \
            [a for part in work.parts[1:] for a in part[:4] if a.size]
        spans = sorted((a.ctypes.data, a.ctypes.data + a.nbytes) for a in arrays)
        assert all(start % 64 == 0 for start, _ in spans)
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
        assert [(low, high) for _, (low, high) in work.states] == list(call.slices)
        for (hs, (low, high)), part in zip(work.states, work.parts, strict=True):
            assert hs.shape == (2 * (high - low), hidden)
            assert part[2].shape == (1, high - low, hidden)  # cs
            assert part[3].shape == (1, 4 * hidden)  # bias_own


def test_calls_of_other_shapes_between_them_reuse_no_stale_buffers(rng):
    """A thread keeps the work buffers of its last few call shapes: calls of every batch
    size, length, direction and width, in an order that takes buffers back from the cache,
    each equal the pure reference (a buffer of the wrong size, or one still holding a
    previous call's state, would show); the cache stays within its bounds."""
    shapes = [(7, 1, 5, 12), (1, 1, 5, 12), (7, 2, 5, 12), (30, 3, 5, 12), (7, 1, 5, 12),
              (1, 2, 5, 12), (9, 1, 5, 33), (30, 3, 5, 12), (1, 1, 5, 12), (7, 2, 5, 12)]
    models = {}
    for T, B, I, H in shapes:
        if H not in models:
            models[H] = [LSTM(I, H, bidirectional=True, seed=H, kernel=k)
                         for k in ("auto", "pure")]
        fast, pure = models[H]
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        state = tuple(rng.standard_normal((2, B, H)).astype(np.float32) for _ in range(2))
        got = fast._forward(x, state, None, None, None)  # the full path: _run, its cache
        assert_results_close(got, pure(x, state), rtol=1e-6, atol=1e-6)
        cache = numba_scan._LOCAL.work
        assert 0 < len(cache) <= numba_scan.WORK_CACHE_ENTRIES
        assert all(w.nbytes <= numba_scan.WORK_CACHE_LARGE_BYTES for w in cache.values())
        assert sum(w.nbytes > numba_scan.WORK_CACHE_BYTES for w in cache.values()) <= 1


def test_a_call_owns_what_it_returns(rng):
    """What a call returns is its own: the next call (which reuses the thread's work
    buffers) leaves it as it was, and the final state is no view of the state given."""
    for B, I, H in [(1, 5, 12), (3, 4, 64)]:
        model = LSTM(I, H, seed=3)
        x = rng.standard_normal((6, B, I)).astype(np.float32)
        state = tuple(rng.standard_normal((1, B, H)).astype(np.float32) for _ in range(2))
        given = tuple(s.copy() for s in state)
        first = flat(model(x, state))
        kept = [a.copy() for a in first]
        model(x[::-1].copy(), (state[1], state[0]))
        for a, b in zip(first, kept, strict=True):
            np.testing.assert_array_equal(a, b)
        first[1][...] = 7
        first[2][...] = 7
        for s, g in zip(state, given, strict=True):
            np.testing.assert_array_equal(s, g)


def _full_path(model: LSTM, x: np.ndarray) -> np.ndarray:
    """``model(x)[0]`` by the full path (the kernel's layer scans, :func:`numba_scan._run`
    and its work cache; a plain call on one thread takes :func:`numba_scan._run_alone`)."""
    return model._forward(x, None, None, None, None)[0]


def test_calls_too_large_for_the_cache_are_not_kept(monkeypatch, rng):
    monkeypatch.setattr(numba_scan, "WORK_CACHE_BYTES", 0)
    monkeypatch.setattr(numba_scan, "WORK_CACHE_LARGE_BYTES", 0)
    numba_scan._LOCAL.work = {}
    model = LSTM(4, 8, seed=1)
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    first = _full_path(model, x)
    assert numba_scan._LOCAL.work == {}
    np.testing.assert_array_equal(_full_path(model, x), first)
    monkeypatch.undo()
    _full_path(model, x)
    assert numba_scan._LOCAL.work  # kept under the usual bounds


def test_released_work_buffers_are_allocated_anew(rng):
    model = LSTM(4, 8, seed=1)
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    first = _full_path(model, x)
    assert numba_scan._LOCAL.work
    numba_scan.release_work()
    assert numba_scan._LOCAL.work == {}
    np.testing.assert_array_equal(_full_path(model, x), first)
    assert numba_scan._LOCAL.work


def test_a_thread_keeps_one_large_set_of_buffers(monkeypatch, rng):
    """Buffers over ``WORK_CACHE_BYTES`` are kept, the latest such set only, beside the
    small ones; a call that takes the large set back gets the pure path's results."""
    small, large = LSTM(4, 8, seed=1), LSTM(6, 48, seed=2)
    pure = LSTM(6, 48, seed=2, kernel="pure")
    xs = [(B, rng.standard_normal((5, B, 6)).astype(np.float32)) for B in (3, 9, 3)]
    x_small = rng.standard_normal((5, 2, 4)).astype(np.float32)
    numba_scan._LOCAL.work = {}
    _full_path(small, x_small)
    sizes = {w.nbytes for w in numba_scan._LOCAL.work.values()}
    monkeypatch.setattr(numba_scan, "WORK_CACHE_BYTES", max(sizes))  # the rest are large
    for B, x in xs:
        _full_path(large, x)
        cache = numba_scan._LOCAL.work
        kept = [w.nbytes > numba_scan.WORK_CACHE_BYTES for w in cache.values()]
        assert len(cache) == 2 and sum(kept) == 1 and not kept[0]  # the small set, first
        assert next(reversed(cache))[0].batch == B  # the latest large set
    for _, x in xs:  # the cached set again, then one made anew
        np.testing.assert_allclose(_full_path(large, x), pure(x)[0], rtol=1e-5, atol=1e-6)


def test_transposes_of_every_shape_and_layout(rng):
    """The backward pass's transposes (in 8 x 8 blocks where rows are contiguous, else in
    tiles) equal NumPy's, for sizes that leave partial blocks and tiles, row slices of
    larger arrays on either side, a source with strided rows, and both precisions."""

    for rows, columns in [(1, 1), (5, 17), (16, 16), (33, 70), (700, 300), (48, 1024)]:
        for dtype in (np.float32, np.float64):
            wide = rng.standard_normal((rows, columns + 9)).astype(dtype)
            tall = np.full((columns + 5, rows + 7), np.nan, dtype)
            every_other = rng.standard_normal((rows, 2 * columns)).astype(dtype)[:, ::2]
            for src in (wide[:, :columns], np.ascontiguousarray(wide[:, 3:3 + columns]),
                        every_other):
                for dst in (np.full((columns, rows), np.nan, dtype), tall[2:2 + columns, :rows]):
                    numba_train._transpose_into(src, dst)
                    np.testing.assert_array_equal(dst, src.T)


@pytest.mark.parametrize("hidden", [14, 64])
def test_training_split_by_units_gives_one_threads_bits(threaded, split, rng, hidden):
    """A training step's forward pass and backward walk split into chunks of units (or
    slices of sequences) compute every entry as one thread does: outputs, input and state
    gradients and the weights' gradients are the same bits, in both directions."""
    T, B, I = 7, 3, 5
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = rng.standard_normal((T, B, 2 * hidden)).astype(np.float32)
    dh = tuple(rng.standard_normal((2, B, hidden)).astype(np.float32) for _ in range(2))
    results = []
    for threads in (1, 2):
        threaded(threads)
        model = LSTM(I, hidden, bidirectional=True, seed=4)
        out, state, tape = model.forward_train(x)
        dx, ds, grads = model.backward(tape, dy, dh)
        results.append([out, *state, dx, *ds, *(grads[k] for k in sorted(grads))])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_calls_with_and_without_lengths_share_one_compiled_scan(rng):
    """Arrays the kernel shares between calls (the plan's chunks and full lengths, the
    empty tape) must not be flagged read-only: numba types a read-only array apart and
    would compile the whole scan again (~10 s) for calls with lengths."""
    model = LSTM(5, 12, seed=2)
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    model(x)
    model(x, lengths=np.array([6, 2, 4]))
    signatures = numba_scan._scan_units.signatures
    assert signatures and all("readonly" not in str(t) for sig in signatures for t in sig)


def _with_the_worker_held(work):
    """``work()`` on a thread of its own while the pool's worker (the only one, with two
    threads) is busy with another job until ``work`` is done: its result, or what it
    raised, raised here; fails if it did not finish within 60 s (it waited for the
    worker)."""
    release, freed = threading.Event(), threading.Event()
    _pool.pool(1).submit(lambda: (release.wait(60), freed.set()))
    got: list = []

    def run():
        try:
            got.append(work())
        except BaseException as exc:  # raised below, on the test's thread
            got.append(exc)

    try:
        caller = threading.Thread(target=run)
        caller.start()
        caller.join(timeout=60)
        assert not caller.is_alive(), "the call waited for the held-up worker"
    finally:
        release.set()
        assert freed.wait(60)
    if isinstance(got[0], BaseException):
        raise got[0]
    return got[0]


def test_a_split_call_never_waits_for_a_thread_that_is_not_running(threaded, split, rng):
    """The pool's only worker is held up by another job for the whole call: a call split
    into chunks of units or slices of sequences (inference, and a training step's forward
    pass, backward walk and products) must finish anyway, its caller doing every part (a
    barrier after each step, or a part handed to that thread, would wait for it for ever),
    with the bits of one thread."""
    threaded(2)
    model = LSTM(5, 64, seed=9)
    x = rng.standard_normal((12, 2, 5)).astype(np.float32)
    dy = rng.standard_normal((12, 2, 64)).astype(np.float32)
    T, B, I, H = 12, 2, 5, 64
    assert numba_scan.plan(T, B, I, H, True) == ((True, [(0, 1), (1, 2)]) if split == "rows"
                                                 else (False, [(0, 32), (32, 64)]))

    def step():
        out, _, tape = model.forward_train(x)
        dx, _, grads = model.backward(tape, dy)
        return model(x)[0], out, dx, grads["weight_hh_l0"]

    held_up = _with_the_worker_held(step)
    threaded(1)
    for a, b in zip(held_up, step(), strict=True):
        np.testing.assert_array_equal(a, b)


#: The stacks the shorter way covers: one or two layers, one direction either way or two.
STACKS = [{"direction": "forward"}, {"direction": "reverse"}, {"num_layers": 2},
          {"num_layers": 2, "direction": "reverse"}, {"bidirectional": True},
          {"num_layers": 2, "bidirectional": True}]


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("bias", [True, False])
def test_the_plain_call_is_the_full_paths_result(rng, precision, stack, bias):
    """A call with nothing but a plain (T, B, I) array takes the kernel's shorter way
    (numba_scan.plain_forward) and returns the full path's bits; what that way does not take
    (another dtype, a strided array, a list, unbatched input) returns None there and runs
    the full path, with the same results."""
    model = LSTM(5, 12, **stack, bias=bias, dtype=precision, seed=4)
    assert model._plain is not None
    x = rng.standard_normal((7, 3, 5)).astype(precision)
    plain = model._plain(x, model._layers())
    assert plain is not None
    full = model._forward(x, None, None, None, None)
    got = model(x)
    for a, b, c in zip((plain[0], *plain[1]), (full[0], *full[1]), (got[0], *got[1]),
                       strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, b)
    other = "float64" if precision == "float32" else "float32"
    for refused in (x.astype(other), np.asfortranarray(x), x[:, ::2], x.tolist(), x[:, 0],
                    x[:0], x.reshape(7, 3, 5, 1)[..., 0][:, :, :4]):
        assert model._plain(refused, model._layers()) is None
    np.testing.assert_array_equal(model(x.tolist())[0], full[0])
    np.testing.assert_array_equal(model(np.asfortranarray(x))[0], full[0])
    tol = 1e-6 if precision == "float32" else 1e-13  # one sequence: other blocks of sums
    np.testing.assert_allclose(model(x[:, 0])[0], full[0][:, 0], rtol=tol, atol=tol)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("stack", STACKS)
def test_the_plain_call_takes_a_state_and_lengths_with_the_full_paths_result(
        rng, precision, stack):
    """A state of NumPy arrays (L*D, B, H) of the model's dtype and lengths of NumPy or
    Python integers (B,) also take the shorter way, with the full path's bits, and the
    state given is not written; any other state or lengths (errors included) return None
    there, and the model's call then reports them as before."""
    model = LSTM(5, 12, **stack, dtype=precision, seed=4)
    layers = model._layers()
    x = rng.standard_normal((7, 4, 5)).astype(precision)
    count = model.num_layers * model.num_directions
    state = tuple(rng.standard_normal((count, 4, 12)).astype(precision) for _ in range(2))
    kept = [a.copy() for a in state]
    for lengths in (None, [7, 0, 3, 7], np.array([2, 7, 7, 1], np.int32), (7, 7, 7, 7),
                    np.array([5, 5, 5, 5], np.uint8)):
        for given in (None, state, list(state)):
            plain = model._plain(x, layers, given, lengths)
            assert plain is not None
            full = model._forward(x, given, lengths, None, None)
            got = model(x, given, lengths)
            for a, b, c in zip((plain[0], *plain[1]), (full[0], *full[1]),
                               (got[0], *got[1]), strict=True):
                assert a.shape == b.shape and a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)
                np.testing.assert_array_equal(c, b)
    for a, b in zip(state, kept, strict=True):
        np.testing.assert_array_equal(a, b)
    other = "float64" if precision == "float32" else "float32"
    h, c = state
    for refused in (h, (h,), (h, c, c), (h, c.astype(other)), (h[0], c[0]), (h.tolist(), c),
                    (h[:, :2], c[:, :2]), (np.asfortranarray(h), c[..., :6])):
        assert model._plain(x, layers, refused, None) is None
    for refused in ([8, 1, 1, 1], [-1, 1, 1, 1], [1, 1, 1], np.array([1.0, 1, 1, 1]),
                    np.ones(4, bool), 3, [[1, 1, 1, 1]], [2**70, 1, 1, 1], "1111"):
        assert model._plain(x, layers, None, refused) is None
    with pytest.raises(lstm_xp.LengthsError, match=r"0\.\.T"):
        model(x, lengths=[8, 1, 1, 1])
    with pytest.raises(lstm_xp.LengthsError, match=r"0\.\.T"):
        model(x, lengths=[2**70, 1, 1, 1])
    with pytest.raises(lstm_xp.ShapeError, match="h0 has shape"):
        model(x, (h[0], c[0]))
    with pytest.raises(lstm_xp.DTypeError):
        model(x, lengths=np.array([1.0, 1, 1, 1]))
    # A state in other forms still runs, by the full path, to the same result.
    np.testing.assert_array_equal(model(x, (h.tolist(), c.astype(other)))[0],
                                  model(x, (h, c.astype(other).astype(precision)))[0])


#: (T, B) of calls the plan runs on the caller's thread alone: one step, one sequence, more
#: of both (each packed or not: the ``products`` fixture).
ALONE = [(1, 1), (1, 5), (6, 1), (7, 3), (30, 2)]


def _counting_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls of numba_scan._run from here on (in a list's length)."""
    runs: list[int] = []
    real = numba_scan._run

    def counted(*args, **kwargs):
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(numba_scan, "_run", counted)
    return runs


def _takes_the_shorter_way(model, ordinary, x, states, runs):
    """``model(x, state)`` for each of ``states`` does not call _run (counted in ``runs``),
    and gives the full path's bits (whose scans are _run's) and ``ordinary``'s; the states
    given are not written."""
    kept = [None if state is None else [a.copy() for a in state] for state in states]
    for given, before in zip(states, kept, strict=True):
        del runs[:]
        got = model(x, given)
        assert not runs, x.shape
        full = model._forward(x, given, None, None, None)
        assert runs
        for a, b, c in zip(flat(got), flat(full), flat(ordinary(x, given)), strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
        for a, b in zip(given or (), before or (), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("frozen", [False, True])
def test_a_call_on_one_thread_takes_the_compiled_call_alone(monkeypatch, rng, precision,
                                                            stack, frozen, products):
    """A plain call the plan runs on the caller's thread alone (every sequence to the end)
    is one compiled call (numba_scan._run_alone: _run is not called), with the full path's
    bits, from a zero state or one given (not written), with and without biases, packed or
    not, and for a frozen copy (its panels packed once) the ordinary model's bits."""
    runs = _counting_runs(monkeypatch)
    for bias in (True, False):
        model = LSTM(5, 12, **stack, bias=bias, dtype=precision, seed=4)
        ordinary = model
        if frozen:
            model = model.frozen()
        count = model.num_layers * model.num_directions
        for T, B in ALONE:
            x = rng.standard_normal((T, B, 5)).astype(precision)
            state = tuple(rng.standard_normal((count, B, 12)).astype(precision)
                          for _ in range(2))
            _takes_the_shorter_way(model, ordinary, x, (None, state), runs)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("frozen", [False, True])
def test_a_call_split_by_sequences_takes_the_shorter_way(threaded, monkeypatch, rng,
                                                         precision, stack, frozen):
    """A plain call the plan splits by sequences (2 or 3 threads, every sequence to the
    end) goes without _run (numba_scan._run_split), with the full path's bits, from a zero
    state or one given (not written, zero or not), with and without biases, and for a
    frozen copy the ordinary model's bits; a read-only input or state takes _run, the
    same bits again."""
    monkeypatch.setattr(numba_scan, "MIN_ROWS_PER_THREAD", 1)
    monkeypatch.setattr(numba_scan, "PACK_COST_ROWS", 0)  # the split needs packed weights
    runs = _counting_runs(monkeypatch)
    for threads in (2, 3):
        threaded(threads)
        for bias in (True, False):
            ordinary = LSTM(5, 12, **stack, bias=bias, dtype=precision, seed=4)
            model = ordinary.frozen() if frozen else ordinary
            count = model.num_layers * model.num_directions
            for T, B in ((1, 3), (6, 4), (9, 7)):
                assert numba_scan._plan_of(T, B, 5, 12, np.dtype(precision), threads, True,
                                           False).by_rows
                x = rng.standard_normal((T, B, 5)).astype(precision)
                state = tuple(rng.standard_normal((count, B, 12)).astype(precision)
                              for _ in range(2))
                zero = tuple(np.zeros_like(a) for a in state)
                _takes_the_shorter_way(model, ordinary, x, (None, state, zero), runs)
                read_only = x.copy()
                read_only.flags.writeable = False
                held = state[0].copy()
                held.flags.writeable = False
                for args in ((read_only, state), (x, (held, state[1]))):
                    del runs[:]
                    for a, b in zip(flat(model(*args)), flat(model._forward(*args, None, None,
                                                                           None)),
                                    strict=True):
                        np.testing.assert_array_equal(a, b)
                    assert runs


def test_what_the_compiled_call_alone_leaves_to_run(monkeypatch, rng):
    """A state that is not a C-ordered writable array, a call with lengths, and weights
    over ALONE_PACKED_BYTES to pack take _run, with the same results; a read-only input is
    copied. None of them compiles the call alone for another type."""
    model = LSTM(5, 12, seed=4)
    runs = _counting_runs(monkeypatch)
    x = rng.standard_normal((7, 3, 5)).astype(np.float32)
    h, c = (rng.standard_normal((1, 3, 12)).astype(np.float32) for _ in range(2))
    expected = model._forward(x, (h, c), None, None, None)
    signatures = len(numba_scan._scan_alone.signatures)
    frozen_h = h.copy()
    frozen_h.flags.writeable = False
    for state in ((frozen_h, c), (h, np.asfortranarray(c.transpose(1, 0, 2)).transpose(1, 0, 2))):
        del runs[:]
        for a, b in zip(flat(model(x, state)), flat(expected), strict=True):
            np.testing.assert_array_equal(a, b)
        assert runs
    del runs[:]
    other = model._plain(x, list(model._layers()), (h, c), [7, 6, 7])
    np.testing.assert_array_equal(other[0][:, 0], expected[0][:, 0])
    assert runs  # the other way; the prepared call takes lengths (test_a_prepared_stack_...)
    read_only = x.copy()
    read_only.flags.writeable = False
    del runs[:]
    for a, b in zip(flat(model(read_only, (h, c))), flat(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not runs
    monkeypatch.setattr(numba_scan, "ALONE_PACKED_BYTES", 0)
    del runs[:]
    # The other way (layers without a memo) takes _run; the prepared call, the work buffers
    # kept from call to call without it.
    for a, b in zip(flat(model._plain(x, list(model._layers()), (h, c), None)), flat(expected),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert runs
    for a, b in zip(flat(model(x, (h, c))), flat(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _prepared_ways(model) == ["_quick_units"]
    assert len(numba_scan._scan_alone.signatures) == signatures


def _plan_the_way(way, threaded, monkeypatch):
    """Plans that run small calls ``way``: on the caller's thread alone (the defaults), or
    on 2 threads split by sequences or by units (weights packed)."""
    if way != "alone":
        threaded(2)
        monkeypatch.setattr(numba_scan, "PACK_COST_ROWS", 0)
        for name in ("MIN_ROWS_PER_THREAD", "MIN_SMALL_ROWS_PER_THREAD"):
            monkeypatch.setattr(numba_scan, name, 1 if way == "split" else 10**9)


@pytest.mark.parametrize("way", ["alone", "split", "units"])
def test_calls_of_other_lengths_in_turn_each_run_every_step(threaded, monkeypatch, rng, way):
    """Calls of 3, 4, 6, 4 and 3 steps in turn, whose plans differ in their step count only
    (the input projected 2 steps at a time in each), on the caller's thread alone, split by
    sequences or by units, the prepared way and the other, from zeros, from a state given
    and with lengths, and training steps: each runs every step of its own, its outputs,
    final state and gradients the pure kernel's. (A split call once took the work buffers
    of an equal plan of fewer steps, kept from the call before, and with them its lengths:
    each sequence stopped there, and the steps after it were never computed.)"""
    _plan_the_way(way, threaded, monkeypatch)
    monkeypatch.setattr(numba_scan, "STEPS_AHEAD", 2)
    model = LSTM(5, 12, seed=3)
    pure = LSTM(5, 12, kernel="pure", seed=3)
    close = functools.partial(assert_results_close, rtol=1e-5, atol=1e-6)
    for steps in (3, 4, 6, 4, 3):
        x = rng.standard_normal((steps, 4, 5)).astype(np.float32)
        close(model(x), pure(x))
        assert _prepared_ways(model) == [f"_quick_{way}"]
        close(model._plain(x, list(model._layers())), pure(x))
        state = tuple(rng.standard_normal((1, 4, 12)).astype(np.float32) for _ in range(2))
        close(model(x, state), pure(x, state))
        lengths = rng.integers(1, steps + 1, size=4)
        close(model(x, lengths=lengths), pure(x, lengths=lengths))
        y, _, tape = model.forward_train(x)
        expected_y, _, pure_tape = pure.forward_train(x)
        np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-6)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        grads, expected = model.backward(tape, dy)[2], pure.backward(pure_tape, dy)[2]
        assert grads.keys() == expected.keys()
        for name in grads:
            np.testing.assert_allclose(grads[name], expected[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("way", ["alone", "split", "units"])
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@hypothesis.given(calls=st.lists(st.tuples(st.integers(1, 7), st.integers(2, 6),
                                st.sampled_from(["zeros", "state", "lengths"])),
                      min_size=2, max_size=5))
def test_any_calls_in_turn_give_the_pure_kernels_results(threaded, monkeypatch, way, calls):
    """One model (and one thread's kept work buffers) called in turn with drawn step
    counts, batch sizes, states and lengths, on each way of running a call (the plans of
    several step counts alike: 2 steps projected at a time): each call's outputs and final
    state are the pure kernel's, whatever the calls before it left behind."""
    _plan_the_way(way, threaded, monkeypatch)
    monkeypatch.setattr(numba_scan, "STEPS_AHEAD", 2)
    numba_scan.release_work()  # only this example's calls leave buffers behind
    model, pure = LSTM(3, 8, seed=5), LSTM(3, 8, kernel="pure", seed=5)
    rng = np.random.default_rng(len(calls))
    for steps, batch, kind in calls:
        x = rng.standard_normal((steps, batch, 3)).astype(np.float32)
        state = None if kind != "state" else \
            tuple(rng.standard_normal((1, batch, 8)).astype(np.float32) for _ in range(2))
        lengths = None if kind != "lengths" else rng.integers(0, steps + 1, size=batch)
        assert_results_close(model(x, state, lengths=lengths), pure(x, state, lengths=lengths),
                             rtol=1e-5, atol=1e-6)


def _prepared_ways(model):
    """How the layers' directions of a model's latest prepared call run
    (numba_scan._quick_layer)."""
    run = list(model._layers().memo.values())[-1]
    if run.func in (numba_scan._quick_one, numba_scan._split_one):  # one layer, else whole
        run = run.args[-1]
    assert run.func is numba_scan._quick_stack
    return ["_quick_split" if isinstance(way, numba_scan._QuickSplit) else way.func.__name__
            for layer in run.args[0] for way in layer]


def _quick_splits(model):
    """The prepared layers split by sequences (numba_scan._QuickSplit) of a model's latest
    prepared call, and that call."""
    run = list(model._layers().memo.values())[-1]
    whole = run.args[-1] if run.func is numba_scan._split_one else run
    splits = [way for layer in whole.args[0] for way in layer
              if isinstance(way, numba_scan._QuickSplit)]
    return splits, run


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("stack", [dict(), dict(num_layers=2), dict(bidirectional=True)])
def test_layers_split_by_sequences_run_their_own_prepared_way(threaded, monkeypatch, rng,
                                                              precision, stack):
    """Layers whose calls split by sequences run as numba_scan._QuickSplit prepared them
    (one layer and direction also without numba_scan._quick_stack: _split_one): from
    zeros, from a state given (zero, and not), with lengths (run in the order given, and
    in an order that spares work), and as a frozen copy, each call's outputs and final
    state are the full path's bits and within rounding of the pure kernel's; a state the
    prepared ways do not take (not C-ordered) takes the full path. With work buffers over
    SPLIT_ONE_BYTES a layer takes its thread's (_split): the same bits. (A bidirectional
    layer's directions one after the other, each split.)"""
    _plan_the_way("split", threaded, monkeypatch)
    monkeypatch.setattr(numba_scan, "SIDE_BY_SIDE_MIN_WORK", 10**18)
    model = LSTM(5, 12, dtype=precision, seed=4, **stack)
    pure = LSTM(5, 12, dtype=precision, kernel="pure", seed=4, **stack)
    tol = dict(rtol=1e-6, atol=1e-6) if precision == "float32" else dict(rtol=1e-13, atol=1e-13)
    count = model.num_layers * model.num_directions
    x = rng.standard_normal((6, 4, 5)).astype(precision)
    state = tuple(rng.standard_normal((count, 4, 12)).astype(precision) for _ in range(2))
    zeros = tuple(np.zeros((count, 4, 12), precision) for _ in range(2))
    strided = tuple(np.asfortranarray(a) for a in state)
    kept, sorted_ = [6, 3, 5, 2], [6, 2, 0, 5]  # run in the order given; sorted first
    for runs in (model, model.frozen()):
        for args in ((x,), (x, state), (x, zeros), (x, strided), (x, None, kept),
                     (x, state, kept), (x, state, sorted_)):
            full = (*args, None, None)[:3]
            got = runs(*args)
            splits, run = _quick_splits(runs)
            assert len(splits) == count
            expected = runs._forward(*full, None, None)
            for a, b, c in zip(flat(got), flat(expected), flat(pure(*args)), strict=True):
                np.testing.assert_array_equal(a, b)
                np.testing.assert_allclose(a, c, **tol)
        if count == 1:
            assert run.func is numba_scan._split_one
    assert all(len(s.spares) == 1 and not s.large for s in splits)  # one set, used again
    monkeypatch.setattr(numba_scan, "SPLIT_ONE_BYTES", 0)
    large = LSTM(5, 12, dtype=precision, seed=4, **stack)
    for _ in range(2):
        for args in ((x, state), (x, None, kept)):
            for a, b in zip(flat(large(*args)), flat(model(*args)), strict=True):
                np.testing.assert_array_equal(a, b)
    splits, _ = _quick_splits(large)
    assert all(s.large and not s.spares for s in splits)


@pytest.mark.parametrize("layers", [1, 2])
def test_layers_split_by_sequences_called_from_several_threads(threaded, monkeypatch, rng,
                                                               layers):
    """Calls of one shape from several Python threads at once share one model's prepared
    layers (numba_scan._QuickSplit) and their kept work buffers (a set a call, taken and
    put back): every caller gets exactly the bits it gets alone; the buffers kept are at
    most one set a thread, and release_work drops them."""
    _plan_the_way("split", threaded, monkeypatch)
    model = LSTM(6, 16, layers, seed=2)
    calls = [(rng.standard_normal((20, 5, 6)).astype(np.float32),) for _ in range(3)]
    calls += [(x, tuple(rng.standard_normal((layers, 5, 16)).astype(np.float32)
                        for _ in range(2)))
              for x, in calls]
    alone = [flat(model(*args)) for args in calls]
    results = together(len(calls), 20, lambda i: flat(model(*calls[i])))
    for a, b in zip(alone, results, strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)
    splits, _ = _quick_splits(model)
    assert len(splits) == layers and all(1 <= len(s.spares) <= len(calls) for s in splits)
    numba_scan.release_work()
    assert not any(s.spares for s in splits)
    for a, b in zip(flat(model(*calls[0])), alone[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_prepared_splits_keep_at_most_their_bytes_all_together(threaded, monkeypatch, rng):
    """The work buffers that all prepared splits (numba_scan._QuickSplit) keep together are
    bounded by SPLIT_HELD_BYTES: with room for one set, a second model's split keeps its
    set in the thread's cache instead (the same bits); a model that goes, or release_work,
    gives its bytes back, and the next call keeps its set again (counted anew where
    release_work ran while it was in a call)."""
    import gc

    _plan_the_way("split", threaded, monkeypatch)
    x = rng.standard_normal((20, 5, 6)).astype(np.float32)
    first, second = LSTM(6, 16, seed=1), LSTM(6, 16, seed=2)
    alone = flat(first(x))
    size = _quick_splits(first)[0][0].held[0]
    assert size > 0
    monkeypatch.setattr(numba_scan, "SPLIT_HELD_BYTES", size)  # room for one set
    numba_scan.release_work()
    assert numba_scan._QUICK_HELD[0] == 0
    second(x)
    (kept,), _ = _quick_splits(second)
    assert kept.held[0] == size and numba_scan._QUICK_HELD[0] == size and kept.spares
    for a, b in zip(flat(first(x)), alone, strict=True):  # over the bound: the thread's
        np.testing.assert_array_equal(a, b)
    (over,), _ = _quick_splits(first)
    assert over.held[0] == 0 and not over.spares and over.key in numba_scan._LOCAL.work
    del second, kept
    gc.collect()
    assert numba_scan._QUICK_HELD[0] == 0
    first(x)
    assert over.held[0] == size and over.spares and numba_scan._QUICK_HELD[0] == size
    real = numba_scan.run_claimed

    def releasing(*args):  # release_work while a call runs: its set goes back counted
        numba_scan.release_work()
        return real(*args)

    monkeypatch.setattr(numba_scan, "run_claimed", releasing)
    for _ in range(2):
        first(x)
    (split,), _ = _quick_splits(first)
    assert split.held[0] == size == numba_scan._QUICK_HELD[0] and split.spares


@pytest.mark.parametrize("way", ["alone", "split", "units"])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_a_prepared_call_sees_the_weights_as_they_are_now(threaded, monkeypatch, rng, way,
                                                          precision):
    """A model's plain call from a zero state is prepared once for its shape
    (numba_scan._quick_call, kept in the model's layers' memo): on the caller's thread
    alone, split by sequences, or by units. It keeps the model's own arrays, so weights and
    biases changed in place are seen by the next call, which equals the full path's bits
    and the pure kernel's results for the new weights; parameters replaced get a new
    memo."""
    _plan_the_way(way, threaded, monkeypatch)
    model = LSTM(5, 12, dtype=precision, seed=4)
    x = rng.standard_normal((6, 4, 5)).astype(precision)
    model(x)
    prepared = list(model._layers().memo.values())
    assert len(prepared) == 1 and _prepared_ways(model) == [f"_quick_{way}"]
    tol = dict(rtol=1e-6, atol=1e-6) if precision == "float32" else dict(rtol=1e-13, atol=1e-13)
    for name, scale in (("weight_ih_l0", 1.5), ("weight_hh_l0", -0.75), ("bias_hh_l0", 2.0)):
        model._params[name][...] *= scale  # in place: the same arrays
        got = model(x)
        assert list(model._layers().memo.values()) == prepared  # the same prepared call
        pure = LSTM(5, 12, dtype=precision, kernel="pure", seed=0)
        pure.load_state_dict(model.state_dict())
        for a, b, c in zip(flat(got), flat(model._forward(x, None, None, None, None)),
                           flat(pure(x)), strict=True):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(a, c, **tol)
    layers = model._layers()
    model.load_state_dict(pure.state_dict())
    assert model._layers() is not layers and not model._layers().memo


#: Lengths of a batch of 4 sequences of 6 steps: every step (None), a zero and short ones
#: in an order no plan sorts (numba_scan.length_order), one short, and an order sorted.
LENGTHS = (None, [6, 5, 3, 0], [6, 6, 5, 6], [0, 6, 2, 6])


@pytest.mark.parametrize("way", ["alone", "split", "units"])
@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("ways", ["forward", "one after the other", "side by side"])
def test_a_prepared_stack_runs_from_a_given_state(threaded, monkeypatch, rng, way, precision,
                                                  ways):
    """A stack of layers (three of one direction, or two bidirectional ones, their
    directions one after the other or side by side, one thread each) is prepared once for
    its shape too, each layer's way decided then, and the same prepared call runs from a
    zero state and from one given (zero or not; never written), with lengths or without:
    its results are the other way's bits (layers without a memo), the full path's, and
    the pure kernel's values, and a later layer's weights changed in place are seen.
    Lengths that a layer's plan runs sorted take the other way."""
    _plan_the_way(way, threaded, monkeypatch)
    side = ways == "side by side"
    monkeypatch.setattr(numba_scan, "SIDE_BY_SIDE_MIN_WORK", 0 if side else 10**18)
    stack = dict(num_layers=3) if ways == "forward" else dict(num_layers=2, bidirectional=True)
    model = LSTM(5, 12, **stack, dtype=precision, seed=4)
    pure = LSTM(5, 12, **stack, dtype=precision, kernel="pure", seed=0)
    count = model.num_layers * model.num_directions
    x = rng.standard_normal((6, 4, 5)).astype(precision)
    given = tuple(rng.standard_normal((count, 4, 12)).astype(precision) for _ in range(2))
    zero = tuple(np.zeros_like(a) for a in given)
    tol = dict(rtol=1e-6, atol=1e-6) if precision == "float32" else dict(rtol=1e-13, atol=1e-13)
    # Side by side on 2 threads, each direction has one: on its thread alone.
    expected = ["_quick_alone" if side and lstm_xp.get_num_threads() < 4 else f"_quick_{way}"]
    runs = _counting_runs(monkeypatch)
    for change in (None, "weight_hh_l1", "bias_ih_l1"):
        if change is not None:
            model._params[change][...] *= -0.5  # in place: the same arrays
        pure.load_state_dict(model.state_dict())
        for state, lengths in itertools.product((None, given, zero), LENGTHS):
            kept = None if state is None else tuple(a.copy() for a in state)
            del runs[:]
            got = model(x, state, lengths)
            assert _prepared_ways(model) == expected * count
            # The prepared call ran, but for lengths that the other way sorts (its _run).
            assert bool(runs) == (lengths == LENGTHS[-1])
            other = model._plain(x, list(model._layers()), state, lengths)
            full = model._forward(x, state, None if lengths is None else np.array(lengths),
                                  None, None)
            for a, b, c, d in zip(flat(got), flat(other), flat(full),
                                  flat(pure(x, state, lengths)), strict=True):
                assert a.shape == d.shape and a.dtype == d.dtype
                np.testing.assert_array_equal(a, b)
                np.testing.assert_array_equal(a, c)
                np.testing.assert_allclose(a, d, **tol)
            for a, b in zip(state or (), kept or (), strict=True):
                np.testing.assert_array_equal(a, b)
    assert len(model._layers().memo) == 1


def test_a_setting_changed_forgets_the_plans_and_prepared_calls(monkeypatch, rng):
    """Setting any of numba_scan's attributes (a tunable) empties its plans and keeps a
    model's calls prepared before from running: the next call plans anew, under the new
    value (here: packing its weights where it had not), with the same results."""
    model = LSTM(5, 12, seed=4)
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    monkeypatch.setattr(numba_scan, "PACK_COST_ROWS", 10**9)
    before = model(x)
    plan = numba_scan._plan_of(3, 2, 5, 12, np.dtype(np.float32), lstm_xp.get_num_threads(),
                               True, False)
    assert not plan.pack and numba_scan._PLANS
    monkeypatch.setattr(numba_scan, "PACK_COST_ROWS", 0)
    assert not numba_scan._PLANS
    after = model(x)
    assert len(model._layers().memo) == 2  # one per setting
    assert numba_scan._plan_of(3, 2, 5, 12, np.dtype(np.float32), lstm_xp.get_num_threads(),
                               True, False).pack
    assert_results_close(before, after, rtol=1e-6, atol=1e-6)


def test_weights_the_compiled_scan_would_copy_are_not_prepared(rng):
    """Layers whose weights the compiled scan takes only as copies (not C-ordered, or of
    another dtype than the input's biases) get no prepared call, so that each call reads
    them as they are then; the results equal the pure kernel's."""
    model = LSTM(5, 12, seed=4)
    pure = LSTM(5, 12, kernel="pure", seed=4)
    w_ih, w_hh, b_ih, b_hh = model._layers()[0][0]
    strided = np.asfortranarray(w_hh)
    layers = type(model._layers())([[(w_ih, strided, b_ih, b_hh.astype(np.float64))]])
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    got = numba_scan.plain_forward(x, layers)
    assert list(layers.memo.values()) == [numba_scan._not_quick]
    strided *= 0.5
    got = numba_scan.plain_forward(x, layers)
    pure._params["weight_hh_l0"][...] *= 0.5
    assert_results_close(got, pure(x), rtol=1e-6, atol=1e-6)


def test_models_the_plain_call_does_not_cover():
    """Batch-first and projected models keep the full path (and models with variants, which
    another kernel runs)."""
    for kwargs in ({"batch_first": True}, {"proj_size": 3}, {"peephole": True}):
        assert LSTM(5, 6, **kwargs)._plain is None, kwargs
    assert LSTM(5, 6, kernel="numpy-fused")._plain is None


def test_the_plain_call_reports_memory_as_the_full_path_does(monkeypatch, rng):
    """Out of memory on the shorter way or the full path: one AllocationError, naming the
    method the user called."""
    model = LSTM(5, 6, seed=0)

    def no_memory(*args, **kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr(numba_scan, "_run", no_memory)
    monkeypatch.setattr(numba_scan, "_scan_alone", no_memory)
    x = rng.standard_normal((4, 2, 5)).astype(np.float32)
    # The shorter way on one thread, and through _run; the full path (another dtype).
    for call, lengths in ((x, None), (x, [4, 3]), (x.astype(np.float64), None)):
        with pytest.raises(lstm_xp.AllocationError, match=r"LSTM.__call__ ran out of memory"):
            model(call, lengths=lengths)


@pytest.mark.parametrize("way", ["alone", "split", "units"])
def test_inference_memory_beyond_the_output_does_not_grow_with_the_steps(threaded, monkeypatch,
                                                                           rng, way):
    """The issue's memory target: a forward call keeps O(B * H) beyond its input and output
    (the packed weights and work buffers), whatever T. The peak that ``tracemalloc`` sees
    (numba's allocations included) beyond the output, with the kept work buffers dropped
    first so that they count, at 20 and at 400 steps (both past the 16 steps projected at a
    time), on one thread and split either way: it grows by at most 32 bytes a step (the
    units split's claim counters, 2 int64 a step and chunk), where a step's output is 768
    bytes and a per-step gate tape would be 3 KiB."""
    import tracemalloc

    threaded(1)  # alone at any step count; the other ways take 2 threads
    _plan_the_way(way, threaded, monkeypatch)
    model = LSTM(16, 32, seed=0)
    beyond = []
    for steps in (20, 400):
        x = rng.standard_normal((steps, 6, 16)).astype(np.float32)
        model(x)  # compiled and planned
        numba_scan.release_work()
        tracemalloc.start()
        try:
            y, _ = model(x)
            beyond.append(tracemalloc.get_traced_memory()[1] - y.nbytes)
        finally:
            tracemalloc.stop()
    assert y.nbytes == 400 * 6 * 32 * 4
    assert 0 < beyond[0] and beyond[1] - beyond[0] <= 32 * 380, beyond


def test_run_claimed_runs_each_part_once_and_returns_when_all_are_done():
    """The split by sequences' way of handing out its parts (:func:`_pool.run_claimed`),
    alone: compiled parts that claim themselves, 2 to 5 of them, 200 calls each, with the
    pool's worker free and held up (the caller then runs every part), the parts ringing
    the pool's bell and lingering after as the scan's do. Each part runs exactly once a
    call, and the call returns only once every part has counted itself done (its result
    written before); the first part gets the bell, the caller's other parts an empty one."""
    import numba

    @numba.njit(nogil=True)
    def part(sync, p, runs, results, work, bell):
        if atomics.atomic_add(sync, 8 + p, 1) > 0:
            return
        seen = _pool.arrive(bell, p)
        total = 0
        for k in range(work * (p + 1)):
            total += k % 7
        results[p] = total + 1 if p > 0 or bell.shape[0] == 2 else -1
        atomics.atomic_add(runs, p, 1)
        atomics.atomic_add(sync, 1, 1)
        if p > 0:
            _pool.linger(bell, seen)

    part(np.zeros(9, np.int64), 0, np.zeros(1, np.int64), np.zeros(1, np.int64), 1,
         _pool.NO_BELL)

    def calls(count):
        for _ in range(200):
            sync, runs = np.zeros(8 + count, np.int64), np.zeros(count, np.int64)
            results = np.zeros(count, np.int64)
            _pool.run_claimed(part, [(sync, p, runs, results, 2000) for p in range(count)],
                              sync, 8, 1)
            assert list(runs) == [1] * count and sync[1] == count
            assert np.all(results > 0)  # every part's result there when the call returns

    for count in (2, 3, 5):
        calls(count)
    _with_the_worker_held(lambda: calls(3))


def test_a_lingering_thread_wakes_at_the_bell_and_gives_up_after_its_looks():
    """:func:`_pool.linger` returns once the bell has rung (here with looks for hours: a
    thread still watching after 60 s fails the test), at once where it rang before, after
    its looks where it never rings, and at once without a bell."""
    bell = np.array([5, 1 << 40], np.int64)
    waiter = threading.Thread(target=_pool.linger, args=(bell, np.int64(5)))
    waiter.start()
    time.sleep(0.01)
    assert waiter.is_alive()  # still watching: nothing rang
    _pool.ring(bell)
    waiter.join(timeout=60)
    assert not waiter.is_alive() and bell[0] == 6
    _pool.linger(bell, np.int64(5))  # rang since: returns at once (or the test hangs)
    _pool.linger(np.array([6, 100], np.int64), np.int64(6))  # 100 looks, no ring
    _pool.linger(_pool.NO_BELL, np.int64(0))
    _pool.ring(_pool.NO_BELL)  # nothing to ring


def test_a_worker_lingering_after_a_part_takes_the_next_job_from_python():
    """A pool thread that lingers after a compiled part (here for hours: the bell's looks
    raised) still runs a job handed over from Python at once (:meth:`submit` rings the bell
    unless the job's caller will): of two parts of :func:`_pool.run_parts`, each waits for
    the other to start, so the call finishes only if both run at the same time. (The
    compiled call's first part waits for the second to start, so that the worker runs it.)"""
    import numba

    @numba.njit(nogil=True)
    def part(sync, p, bell):
        if atomics.atomic_add(sync, 8 + p, 1) > 0:
            return
        seen = _pool.arrive(bell, p)
        if p == 0:
            atomics.wait_at_least(sync, 9, 1)
        atomics.atomic_add(sync, 1, 1)
        if p > 0:
            _pool.linger(bell, seen)

    both = threading.Barrier(2, timeout=30)
    looks = _pool.BELL[1]
    try:
        _pool.BELL[1] = 1 << 40
        for _ in range(3):
            sync = np.zeros(10, np.int64)
            _pool.run_claimed(part, [(sync, p) for p in range(2)], sync, 8, 1)
            assert sync[1] == 2
            assert _pool.run_parts(lambda k: both.wait() + k, [(0,), (1,)]) in (0, 1)
    finally:
        _pool.BELL[1] = looks
        _pool.ring(_pool.BELL)  # let a thread still lingering go


def test_run_parts_runs_each_part_once_and_raises_what_a_part_raised():
    """Every part runs exactly once (whichever thread claims it), the first part's result
    comes back once all have finished, and an exception of any part reaches the caller
    after the others have finished."""
    ran = []
    lock = threading.Lock()

    def part(k, fail=False):
        time.sleep(0.001 * (k % 3))
        with lock:
            ran.append(k)
        if fail:
            raise ValueError(f"part {k}")
        return k * 10

    for count in (2, 3, 5):
        ran.clear()
        assert _pool.run_parts(part, [(k,) for k in range(count)]) == 0
        assert sorted(ran) == list(range(count))
        ran.clear()
        with pytest.raises(ValueError, match="part 1"):
            _pool.run_parts(part, [(k, k == 1) for k in range(count)])
        assert sorted(ran) == list(range(count))


def test_the_order_that_spares_work():
    """Each slice longest first, the sorted batch dealt round-robin (the slices' sizes those
    of row_slices); None where sorting spares too little."""
    lengths = np.array([3, 9, 0, 9, 5, 1, 7])
    for parts in (1, 2, 3):
        slices = numba_scan.row_slices(len(lengths), parts)
        order = numba_scan.length_order(lengths, True, slices)
        assert sorted(order) == list(range(len(lengths)))
        for first, last in slices:
            ran = lengths[order[first:last]]
            assert list(ran) == sorted(ran, reverse=True)
        sums = [lengths[order[first:last]].sum() for first, last in slices]
        assert max(sums) - min(sums) <= 9  # at most one sequence's worth apart
    units = [(0, 4), (4, 8)]  # split by hidden units: every thread has the whole batch
    assert numba_scan.length_order(np.sort(lengths)[::-1].copy(), False, units) is None
    assert numba_scan.length_order(np.array([9, 9, 9, 9, 9, 8, 9]), False, units) is None  # 2 %
    assert list(numba_scan.length_order(np.array([1, 9]), False, units)) == [1, 0]  # 10 of 18


def test_the_order_is_chosen_by_the_rows_it_spares(rng):
    """length_order sorts exactly where the rows the steps' products go through in the
    order given (counted step by step: up to each slice's last sequence still running)
    exceed the rows sorted (the lengths' sum) by SORT_SAVING of them, for batches of a few
    (Python's loops) and of many (NumPy's)."""
    sorted_ = 0
    for _ in range(400):
        batch = int(rng.choice([int(rng.integers(2, 65)), int(rng.integers(65, 300))]))
        steps = int(rng.integers(1, 30))
        lengths = rng.integers(0, steps + 1, batch)
        if rng.random() < 0.5:  # nearly sorted: a sequence or two out of place
            lengths = np.sort(lengths)[::-1].copy()
            lengths[rng.integers(0, batch, 2)] = rng.integers(0, steps + 1, 2)
        parts = int(rng.integers(1, 4))
        slices = numba_scan.row_slices(batch, parts)
        by_rows = bool(rng.random() < 0.5)
        given = 0
        for first, last in slices if by_rows else ((0, batch),):
            for t in range(steps):
                running = np.flatnonzero(lengths[first:last] > t)
                given += running[-1] + 1 if running.size else 0
        spares = lengths.sum() <= (1 - numba_scan.SORT_SAVING) * given
        assert (numba_scan.length_order(lengths, by_rows, slices) is not None) == spares
        sorted_ += spares
    assert 40 < sorted_ < 360  # both answers were asked for


@pytest.mark.parametrize("threads", [1, 2])
def test_a_sorted_batch_gives_the_bits_of_the_order_given(threaded, products, split, rng,
                                                         monkeypatch, threads):
    """Inference with lengths run longest first (its steps' products over the rows still
    running) gives every sequence the bits it gets in the order given, in both directions;
    both against the reference."""
    threaded(threads)
    T, B, I, H = 9, 5, 3, 10
    lengths = np.array([2, 9, 0, 6, 3])
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    state = tuple(rng.standard_normal((2, B, H)).astype(np.float32) for _ in range(2))
    model = LSTM(I, H, bidirectional=True, seed=6)
    results = []
    for saving in (0.0, 2.0):  # sorted whenever it spares anything; never
        monkeypatch.setattr(numba_scan, "SORT_SAVING", saving)
        results.append(flat(model(x, state, lengths)))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
    pure = LSTM(I, H, bidirectional=True, seed=6, kernel="pure")
    for a, b in zip(results[0], flat(pure(x, state, lengths)), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_a_worker_moves_off_its_callers_cpu_and_stays_within_its_own():
    """keep_off takes the calling thread off a CPU, within the CPUs it may use; where
    nothing is to change (one CPU, an unknown one, one not allowed) its affinity stays."""
    assert _pool.away_from(-1, {0, 1}) is None
    assert _pool.away_from(2, {0, 1}) is None
    assert _pool.away_from(0, {0}) is None
    assert _pool.away_from(1, {0, 1, 3}) == {0, 3}
    if not hasattr(os, "sched_setaffinity") or _pool.current_cpu() < 0:
        pytest.skip("no sched_getcpu / sched_setaffinity here (not Linux)")
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("one CPU: nowhere to move")
    result: dict = {}

    def on_a_thread():  # a thread of its own: the test's affinity is left alone
        here = _pool.current_cpu()
        _pool.keep_off(here, set(allowed))
        result["left"], result["now"] = here, os.sched_getaffinity(0)
        time.sleep(0.01)
        result["cpu"] = _pool.current_cpu()

    worker = threading.Thread(target=on_a_thread)
    worker.start()
    worker.join(timeout=30)
    assert result["now"] == set(allowed) - {result["left"]}
    assert result["cpu"] != result["left"] and result["cpu"] in allowed
    assert os.sched_getaffinity(0) == allowed


def test_a_pool_thread_reads_its_cpu_after_a_wake_up_and_once_in_a_while_otherwise(
        monkeypatch):
    """A pool thread checks whether it runs on its job's caller's CPU (and moves off it)
    for the job it was woken for, and otherwise once in :data:`_pool.CPU_CHECK_EVERY` jobs
    taken without sleeping (reading the CPU cost 2-2.5 us of a split call): 1 + 70 jobs, the
    70 queued while the first ran, one check each time it counts."""
    checks = []
    monkeypatch.setattr(_pool, "current_cpu", lambda: 5)  # caller and thread on CPU 5
    monkeypatch.setattr(_pool, "_CPU_READ", {})  # no reading kept from before
    monkeypatch.setattr(_pool, "keep_off", lambda cpu, allowed: checks.append(cpu))
    workers = _pool._Workers(1)
    ident = []
    try:
        started, release, done = threading.Event(), threading.Event(), threading.Event()
        workers.submit(lambda: (ident.append(threading.get_ident()), started.set(),
                                release.wait(30)))
        assert started.wait(30)
        ran = []
        for n in range(70):
            workers.submit(ran.append, n)
        workers.submit(done.set)
        release.set()
        assert done.wait(30)
    finally:
        workers.close()
        _pool._POOL_THREADS.difference_update(ident)  # not the pool's: its ident may recur
    assert ran == list(range(70))
    assert checks == [5, 5]  # the woken first job, and the 64th taken without a wake-up


def test_a_callers_cpu_is_read_again_once_its_last_reading_is_old(monkeypatch):
    """:func:`_pool.caller_cpu`: one reading a thread within :data:`_pool.CPU_READ_AGE_S`,
    each thread its own, a new one once the last is that old."""
    readings = itertools.count()
    monkeypatch.setattr(_pool, "current_cpu", lambda: next(readings))
    monkeypatch.setattr(_pool, "_CPU_READ", {})
    monkeypatch.setattr(_pool, "CPU_READ_AGE_S", 60.0)
    first = _pool.caller_cpu()
    assert _pool.caller_cpu() == first  # not read again
    other = []
    thread = threading.Thread(target=lambda: other.append(_pool.caller_cpu()))
    thread.start()
    thread.join(30)
    assert other == [first + 1]  # its own reading
    monkeypatch.setattr(_pool, "CPU_READ_AGE_S", 0.0)
    assert _pool.caller_cpu() == first + 2  # old: read again


def test_read_only_arrays_do_not_have_the_kernels_compiled_anew(rng):
    """An input, a state and gradients that are read-only (``np.frombuffer``, a read-only
    memory map) give the results of writable ones, and no compiled function gains a
    signature with a read-only array (numba compiles anew for one: 11 s for the scan)."""
    import numba

    def read_only(a):
        a = np.array(a)
        a.flags.writeable = False
        return a

    model = LSTM(5, 12, seed=3)
    x = rng.standard_normal((6, 4, 5)).astype(np.float32)
    state = tuple(rng.standard_normal((1, 4, 12)).astype(np.float32) for _ in range(2))
    dy = rng.standard_normal((6, 4, 12)).astype(np.float32)
    want = flat(model(x, state))
    for a, b in zip(flat(model(read_only(x), tuple(map(read_only, state)))), want, strict=True):
        np.testing.assert_array_equal(a, b)
    _, _, tape = model.forward_train(read_only(x))
    dx, _, grads = model.backward(tape, read_only(dy))
    _, _, tape = model.forward_train(x)
    dx_want, _, grads_want = model.backward(tape, dy)
    np.testing.assert_array_equal(dx, dx_want)
    for name in grads_want:
        np.testing.assert_array_equal(grads[name], grads_want[name])
    compiled = [f for module in (numba_scan, numba_train) for f in vars(module).values()
                if isinstance(f, numba.core.registry.CPUDispatcher)]
    read_only = [(f.__name__, sig) for f in compiled for sig in f.signatures
                 if any(isinstance(t, numba.types.Array) and not t.mutable for t in sig)]
    assert read_only == []
