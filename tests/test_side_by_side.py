"""The directions of a bidirectional layer run side by side on the compiled kernel
(:func:`lstm_xp.kernels._pool.side_by_side`), each on its share of the threads: the same
bits as one after the other, the errors of either raised."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from calls import flat
from reference import assert_float64_reference

from lstm_xp import LSTM, get_num_threads, set_num_threads
from lstm_xp._functional import one_after_another
from lstm_xp._threads import share_of_threads, thread_setting, thread_shares


@pytest.mark.parametrize(("threads", "parts"), [(1, 2), (2, 2), (3, 2), (16, 2), (5, 3)])
def test_thread_shares_cover_the_threads_evenly(threads, parts):
    shares = thread_shares(threads, parts)
    assert len(shares) == parts
    assert min(shares) >= 1
    assert sum(shares) == max(threads, parts)
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)


def test_a_share_holds_on_its_own_thread_only():
    """Inside a share, the thread sees its share; other threads, and set_num_threads (which
    reports and replaces the process's count), see the process's count."""
    with thread_setting(4):
        seen = []
        with share_of_threads(1):
            assert get_num_threads() == 1
            other = threading.Thread(target=lambda: seen.append(get_num_threads()))
            other.start()
            other.join()
            assert set_num_threads(5) == 4
            assert get_num_threads() == 1
        assert seen == [4]
        assert get_num_threads() == 5


@pytest.fixture
def pool():
    pytest.importorskip("numba")
    from lstm_xp.kernels import _pool

    return _pool


def test_calls_run_at_once_each_with_its_share(pool):
    """Each call waits for the other at a barrier: one after the other, the first would
    time out."""
    meet = threading.Barrier(2, timeout=20)

    def call(n):
        def run():
            meet.wait()
            return n, get_num_threads(), threading.get_ident()
        return run

    with thread_setting(3):
        results = pool.side_by_side([call(0), call(1)])
    assert [r[0] for r in results] == [0, 1]
    assert [r[1] for r in results] == [2, 1]
    assert results[0][2] != results[1][2]


def test_one_thread_runs_them_in_turn_on_the_caller(pool):
    order = []
    with thread_setting(1):
        results = pool.side_by_side([lambda: order.append(threading.get_ident()) or 0,
                                     lambda: order.append(threading.get_ident()) or 1])
    assert results == [0, 1]
    assert order == [threading.get_ident()] * 2


def test_an_error_in_either_call_is_raised(pool):
    def fails():
        raise ValueError("the second direction failed")

    with thread_setting(2), pytest.raises(ValueError, match="second direction"):
        pool.side_by_side([lambda: 0, fails])


def _one_after_another(model, monkeypatch):
    """Both ways through the model (the full path, the shorter one) one after the other."""
    from lstm_xp.kernels import numba_scan

    monkeypatch.setattr(model._kernel, "side_by_side", one_after_another)
    monkeypatch.setattr(numba_scan, "directions", one_after_another)


@pytest.fixture
def any_size(pool, monkeypatch):
    """The numba kernel's rule runs the directions side by side at any size."""
    from lstm_xp.kernels import numba_scan

    monkeypatch.setattr(numba_scan, "SIDE_BY_SIDE_MIN_WORK", 0)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_side_by_side_gives_the_bits_of_one_after_another(any_size, monkeypatch, rng,
                                                          threads, precision):
    """Two bidirectional layers, with a state and lengths: inference (the full path and the
    shorter one) and a training step (every gradient)."""
    T, B, I, H = 9, 6, 5, 24
    x = rng.standard_normal((T, B, I)).astype(precision)
    state = tuple(rng.standard_normal((4, B, H)).astype(precision) for _ in range(2))
    lengths = rng.integers(0, T + 1, size=B)
    dy = rng.standard_normal((T, B, 2 * H)).astype(precision)
    results = []
    for together in (True, False):
        with thread_setting(threads):
            model = LSTM(I, H, num_layers=2, bidirectional=True, seed=5, dtype=precision)
            assert model.kernel == "numba"
            if not together:
                _one_after_another(model, monkeypatch)
            out = [*flat(model(x)), *flat(model(x, state, lengths)),
                   *flat(model._forward(x, state, lengths, None, None))]
            y, _, tape = model.forward_train(x, state, lengths)
            dx, (dh0, dc0), grads = model.backward(tape, dy, state)
            out += [y, dx, dh0, dc0, *grads.values()]
        results.append(out)
    assert len(results[0]) == len(results[1]) > 10
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_side_by_side_matches_the_float64_reference(any_size, rng):
    T, B, I, H = 7, 5, 4, 40
    with thread_setting(2):
        model = LSTM(I, H, num_layers=2, bidirectional=True, seed=6, dtype="float64")
        assert_float64_reference(model, rng.standard_normal((T, B, I)), 2, True)


def _side_by_side(numba_scan, shape, dtype, apart):
    """Whether the kernel's rule ran two calls for ``shape`` and ``dtype`` at once: they
    meet at a barrier where they do; in turn, the first waits in vain (two seconds: a
    thread slow to start may take a while; ``apart`` says which to expect) and breaks it."""
    meet = threading.Barrier(2, timeout=30 if apart else 2)

    def call():
        try:
            meet.wait()
        except threading.BrokenBarrierError:
            return False
        return True

    with thread_setting(2):
        met = numba_scan.directions([call, call], shape, np.dtype(dtype))
    assert met[0] == met[1]
    return met[0]


@pytest.mark.parametrize(("dtype", "limit", "apart"), [
    ("float32", 1 << 40, True),    # a direction's weights under the limit: side by side
    ("float32", 0, False),         # beyond it: in turn (forward passes)
    ("float64", 1 << 40, True),
    ("float16", 1 << 40, False),   # the fused NumPy scan holds the interpreter's lock
])
def test_which_directions_run_side_by_side(pool, monkeypatch, dtype, limit, apart):
    from lstm_xp.kernels import numba_scan

    monkeypatch.setattr(numba_scan, "SIDE_BY_SIDE_BYTES", limit)
    assert _side_by_side(numba_scan, (100, 32, 128, 256), dtype, apart) == apart
    backward = dtype != "float16"  # the weights' limit is the forward pass's
    assert _side_by_side(numba_scan, (100, 32, None, 256), dtype, backward) == backward
    assert _side_by_side(numba_scan, None, dtype, False) is False


@pytest.mark.parametrize(("shape", "apart"), [
    ((100, 8, 64, 128), True),      # 0.4 MiB of weights, 167 million FLOPs
    ((50, 64, 256, 512), False),    # 6 MiB
    ((50, 64, None, 512), True),    # backward
    ((1, 8, 128, 256), False),      # 6.4 million
    ((2, 8, 128, 256), False),      # 12.8 million
    ((50, 1, 32, 64), False),       # 7.5 million
    ((100, 1, 32, 64), True),       # 14.9 million
])
def test_the_limits_fall_between_the_sizes_measured(pool, shape, apart):
    from lstm_xp.kernels import numba_scan

    assert _side_by_side(numba_scan, shape, "float32", apart) == apart


def test_release_work_empties_the_pool_threads_caches_too(pool, rng):
    """A call run on a pool thread (as a bidirectional layer's second direction is) keeps its
    work buffers in that thread's cache, which never ends; release_work on any thread
    drops them, and the next call computes the same."""
    from lstm_xp.kernels import numba_scan

    model = LSTM(5, 16, seed=2)
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    want = model(x)[0]
    ran = threading.Event()
    got = []

    def job():
        got.append(model(x)[0])
        ran.set()

    pool.pool(1).submit(job)
    assert ran.wait(30)
    np.testing.assert_array_equal(got[0], want)
    assert any(len(cache) for cache in numba_scan._POOL_CACHES)
    numba_scan.release_work()
    assert not any(len(cache) for cache in numba_scan._POOL_CACHES)
    np.testing.assert_array_equal(model(x)[0], want)
