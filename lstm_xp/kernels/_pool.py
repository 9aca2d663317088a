"""The threads that share a compiled call's parts (:mod:`.numba_scan`, :mod:`.numba_train`),
and the two ways a call hands its parts to them.

One process-wide pool of worker threads takes jobs off one queue. No call ever waits for a
worker to start: each part is claimed by whichever thread comes for it first, the caller
included, so a worker that is busy with another call's part (or has no core) holds nothing
up; the caller then runs the part itself. :func:`run_parts` claims parts in Python and
collects their results and exceptions; :func:`run_claimed` is for compiled parts that claim
themselves and count themselves done in an int64 array, so that the caller waits for them in
compiled code, without the interpreter's lock.

Compiled parts that take the pool's bell (:data:`BELL`, their last argument) also hand the
next call's parts over without a wake-up: the part on the caller's thread rings it as it
starts (:func:`ring`), and a pool thread that has finished its part stays in compiled code,
watching the bell for a while (:func:`linger`), before it goes back to Python to take its
next job. On the 2-vCPU guest a worker asleep in the queue ran a job's first line 10 us
after it was queued when it had just finished one, 21 us after 0.2 ms idle and 70-100 us
after 2-20 ms (the hypervisor wakes its vCPU), and a worker's return to the interpreter at
the end of its part could hold the caller up for the interpreter's lock. Calls split in two
by sequences, the threads lingering against not, taking turns in one process: 0.87x the
time at (B, T, I, H) = (8, 50, 20, 20) and (16, 20, 32, 32), 0.70x at (8, 1, 20, 20); a
split by units 0.93x at (1, 100, 64, 128).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np

from .._threads import get_num_threads, share_of_threads, thread_shares
from ._atomics import atomic_add, atomic_load, wait_at_least, yield_cpu

#: How many looks at the bell a pool thread takes after its part before it goes back to
#: waiting in the queue: each look yields the core to any other thread that wants it
#: (``sched_yield``), 0.3 us a look on the 2-vCPU guest, so about 1.5 ms there. A training
#: step's phases come further apart than back-to-back inference calls: 5,000 looks against
#: 1,000, taking turns in one process, 0.97x the time of training steps at (1, 100, 32, 64),
#: (8, 50, 20, 20), (16, 20, 32, 32), 0.99x at (4, 100, 128, 256), (128, 20, 50, 50);
#: inference back to back 1.00x.
LINGER_LOOKS = 5000
#: The pool's bell: ``[count, looks]``, a count that the part of a split call on the
#: caller's thread increases as it starts (:func:`ring`), and that a pool thread watches
#: for up to ``looks`` looks once it has finished a part (:func:`linger`; 0: none, the
#: threads wait in the queue at once). Parts run by the caller's thread other than the
#: first take :data:`NO_BELL` (they must not linger: nothing would ring for them).
BELL = np.array([0, LINGER_LOOKS], np.int64)
NO_BELL = np.zeros(0, np.int64)


def _cpu_reader() -> Any:
    """The C library's ``sched_getcpu`` (the CPU the calling thread runs on), or None where
    it or ``os.sched_setaffinity`` is missing (not Linux)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        getcpu = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):
        return None
    getcpu.restype, getcpu.argtypes = ctypes.c_int, []
    return getcpu


_GETCPU = _cpu_reader()


def current_cpu() -> int:
    """The CPU the calling thread runs on, or -1 where that cannot be read."""
    return -1 if _GETCPU is None else int(_GETCPU())


#: How long a thread's CPU, once read for a job it hands out (:func:`caller_cpu`), is taken
#: as where it runs: calls back to back (a split call of 50-200 us) read it once a
#: millisecond, the first after a pause at once (a thread that slept may wake elsewhere).
CPU_READ_AGE_S = 1e-3
#: The last reading of each thread's CPU: ``{thread: (time.monotonic(), cpu)}``.
_CPU_READ: dict[int, tuple[float, int]] = {}


def caller_cpu() -> int:
    """The calling thread's CPU (:func:`current_cpu`), read anew where this thread's last
    reading is :data:`CPU_READ_AGE_S` old or more (see :data:`CPU_CHECK_EVERY`)."""
    me, now = threading.get_ident(), time.monotonic()
    read = _CPU_READ.get(me)
    if read is not None and now - read[0] < CPU_READ_AGE_S:
        return read[1]
    if len(_CPU_READ) > 1024:  # threads that ended
        _CPU_READ.clear()
    cpu = current_cpu()
    _CPU_READ[me] = (now, cpu)
    return cpu


def away_from(cpu: int, allowed: set[int]) -> set[int] | None:
    """The CPUs a worker may run on to keep off ``cpu`` (its caller's), of ``allowed``; None
    where there is nothing to change (``cpu`` unknown or not allowed, or the only one)."""
    if cpu < 0 or cpu not in allowed or len(allowed) < 2:
        return None
    return allowed - {cpu}


def keep_off(cpu: int, allowed: set[int]) -> None:
    """Move the calling thread off ``cpu`` and keep it off (its affinity: ``allowed``
    without ``cpu``; nothing where :func:`away_from` says so, or the system refuses).

    A worker woken on the CPU of the thread that handed it a part would share that CPU
    with it: the other thread then ran both parts, or the two took turns. On the 2-vCPU
    guest that happened for tens of calls after the process had been idle for 0.2 s or
    more (the kernel's scheduler placing the woken worker beside its waker), the split
    calls running at one thread's speed; a worker that moves itself away ran bursts of
    calls after 0.3-1 s idle 1.5x-2x faster at (B, T, I, H) = (8, 100, 64, 128),
    (1, 100, 128, 256), (5 | 6, 100, 32, 64), and the same back to back."""
    cpus = away_from(cpu, allowed)
    if cpus is not None:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:  # a CPU set the system no longer allows: stay where it is
            pass


#: A pool thread that takes its jobs without sleeping between them (each queued while it
#: lingered after the last) reads its CPU once in this many of them; one woken for a job,
#: at once. (A reading, ``sched_getcpu`` through ctypes, took 2-2.5 us on the 2-vCPU guest
#: in a call's midst, on the way to the part. With :func:`caller_cpu`, against both CPUs
#: read at every job, taking turns in one process: split calls at (B, T, I, H) =
#: (16, 20, 32, 32), (8, 5, 64, 128), (4, 50, 32, 64), (2, 100, 32, 64), (16, 10, 128, 256)
#: 0.985x-0.992x the time, one-step calls split in two 0.94x.)
CPU_CHECK_EVERY = 64


class _Workers:
    """``count`` daemon threads, each running the jobs ``(function, args)`` of one queue in
    turn, first moving off the CPU of the thread that submitted the job where it finds itself
    there (:func:`keep_off`, within the CPUs it started with): after a wake-up, where the
    scheduler may have put it beside the thread that woke it, and every
    :data:`CPU_CHECK_EVERY` jobs otherwise; ``close`` lets them finish theirs and stop. A
    job's result is dropped, and so is what it raises: :func:`run_parts` catches its parts'
    exceptions itself, and the compiled parts never raise. (A
    :class:`concurrent.futures.ThreadPoolExecutor` made a future, a lock and a condition for
    each job: 2-10 % of a whole call at (B, T, I, H) = (8, 100, 64, 128) to (5, 50, 32, 64),
    measured pair by pair against this pool.)"""

    def __init__(self, count: int) -> None:
        self.count = count
        self._jobs: queue.SimpleQueue[tuple[Any, tuple[Any, ...], int] | None] = \
            queue.SimpleQueue()
        for n in range(count):
            threading.Thread(target=self._serve, name=f"lstm-xp-{n}", daemon=True).start()

    def _serve(self) -> None:
        _POOL_THREADS.add(threading.get_ident())
        take, look = self._jobs.get, self._jobs.get_nowait
        allowed = set(os.sched_getaffinity(0)) if _GETCPU is not None else set()
        unchecked = CPU_CHECK_EVERY  # jobs since this thread last read its CPU
        while True:
            try:  # a job queued while this thread lingered in its last part
                job = look()
                unchecked += 1
            except queue.Empty:
                job = take()
                unchecked = CPU_CHECK_EVERY  # woken: maybe beside the thread that woke it
            if job is None:
                break
            function, args, caller = job
            if caller >= 0 and unchecked >= CPU_CHECK_EVERY:
                unchecked = 0
                if current_cpu() == caller:
                    keep_off(caller, allowed)
            try:
                function(*args)
            except BaseException:  # dropped, as the class's docstring says
                pass

    def submit(self, function: Any, *args: Any, rung: bool = False) -> None:
        """Queue ``function(*args)`` for the next free thread, and ring the bell for any
        thread that lingers (unless the job's caller will: ``rung``)."""
        self._jobs.put((function, args, caller_cpu()))
        if not rung:
            ring(BELL)

    def close(self) -> None:
        """Stop every thread once the jobs queued before are done."""
        for _ in range(self.count):
            self._jobs.put(None)


_POOL: _Workers | None = None
_POOL_LOCK = threading.Lock()
#: The identities of the pool's threads (which never end; :func:`is_pool_thread`).
_POOL_THREADS: set[int] = set()


def is_pool_thread() -> bool:
    """Whether the calling thread is one of the pool's."""
    return threading.get_ident() in _POOL_THREADS


def _forget_threads() -> None:
    """In a forked child: the parent's pool threads do not exist there (a job sent to them
    would never start: the caller would run every part itself, and the pool's queue grow
    with each call), and a lock another parent thread held stays held; start afresh."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()
    _POOL_THREADS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)


def pool(workers: int) -> _Workers:
    """The process-wide pool, with at least ``workers`` threads (the caller runs one part
    itself); a smaller one is closed and replaced. Parts of concurrent calls queue for its
    threads. (A job handed to a pool that another thread has just replaced may never run:
    every way of handing out parts here lets the caller run a part that no thread took.)"""
    global _POOL
    current = _POOL  # the quick way, without the lock (split calls 0.99x the time)
    if current is not None and current.count >= workers:
        return current
    with _POOL_LOCK:
        if _POOL is None or _POOL.count < workers:
            if _POOL is not None:
                _POOL.close()
            _POOL = _Workers(workers)
        return _POOL


def run_parts(function: Any, parts: list[tuple[Any, ...]], wait: bool = True,
              bell: bool = False) -> Any:
    """``function(*args)`` once for each of ``parts``, on the caller's thread and the pool's
    (:func:`pool`): the result of the first part once every part has run, raising what
    any raised. Each part is claimed by whichever thread comes for it first, the caller
    included. With ``wait`` False, for parts that share their work among themselves and
    need none of the others to have run (:func:`.numba_scan._scan_units`'s claimed chunks,
    :func:`.numba_scan._packed_product_call`'s blocks): the first runs on the caller's
    thread, the others are handed to the pool and not waited for; with ``bell`` too,
    ``function`` takes :data:`BELL` as its last argument (appended here), rings it in its
    first part and lingers after the others (see the module's docstring)."""
    if len(parts) == 1:
        return function(*parts[0], NO_BELL) if bell else function(*parts[0])
    workers = pool(len(parts) - 1)
    if not wait:
        tail = (BELL,) if bell else ()
        for args in parts[1:]:
            workers.submit(function, *args, *tail, rung=bell)
        return function(*parts[0], *tail)
    count = len(parts)
    claims = itertools.count()  # next() on these is atomic under the GIL
    finishing = itertools.count(1)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []
    # Released by whichever thread finishes the last part: a bare lock, where an event for
    # each part took 6 us of the 40 that handing out two parts cost.
    all_done = threading.Lock()
    all_done.acquire()

    def claim() -> None:
        while (k := next(claims)) < count:
            try:
                results[k] = function(*parts[k])
            except BaseException as exc:  # re-raised on the caller's thread
                failures.append(exc)
            finally:
                if next(finishing) == count:
                    all_done.release()

    for _ in parts[1:]:
        workers.submit(claim)
    claim()
    all_done.acquire()
    if failures:
        raise failures[0]
    return results[0]


def run_claimed(function: Any, parts: list[tuple[Any, ...]], sync: Any, claimed: int,
                done: int) -> None:
    """``function(*args, bell)`` for each of ``parts``, compiled parts that claim
    themselves: part ``p`` increments ``sync[claimed + p]`` first and returns at once if it
    was not 0 (another thread runs it), and increments ``sync[done]`` once its results are
    written; they raise nothing. The first part runs on the caller's thread and rings
    ``bell`` (:data:`BELL`) as it starts, the others are handed to the pool and linger on it
    at their end (see the module's docstring); the caller then runs any that no thread has
    claimed yet (with :data:`NO_BELL`), and returns once all are done, waiting in compiled
    code (a worker that finished its part signals the caller at once, not after taking the
    interpreter's lock to release a Python one: that had taken 15-25 us of a call)."""
    if len(parts) > 1:
        workers = pool(len(parts) - 1)
        for args in parts[1:]:
            workers.submit(function, *args, BELL, rung=True)
    function(*parts[0], BELL)
    for p in range(1, len(parts)):
        if sync[claimed + p] == 0:  # not started: here, unless a worker claims it first
            function(*parts[p], NO_BELL)
    wait_for(sync, done, len(parts))


def side_by_side(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Each of ``calls`` (callables without arguments: the scans of a bidirectional layer's
    directions, which share nothing) at once, on the caller's thread and the pool's, each
    with its share of :func:`lstm_xp.get_num_threads` (:func:`.thread_shares`; its own
    splits within it): their results, in order, raising what any raised. One thread, or one
    call: one after the other on the caller's thread.

    Each direction then runs whole on its own threads, with no step of one waiting for the
    other's; one after the other, a direction split between both threads waits for both at
    every step (by hidden units) or for the slower at its end (by sequences)."""
    threads = get_num_threads()
    if threads < 2 or len(calls) < 2:
        return [call() for call in calls]
    shares = thread_shares(threads, len(calls))
    pool(threads - 1)  # workers for each call's own parts as well
    results: list[Any] = [None] * len(calls)

    def part(n: int) -> None:
        with share_of_threads(shares[n]):
            results[n] = calls[n]()

    run_parts(part, [(n,) for n in range(len(calls))])
    return results


@numba.njit(cache=True, nogil=True)
def wait_for(sync, index, value):  # pragma: no cover - compiled
    """:func:`._atomics.wait_at_least`, called from Python (without the interpreter's lock)."""
    wait_at_least(sync, index, value)


@numba.njit(inline="always", cache=True, nogil=True)
def arrive(bell, home):  # pragma: no cover - compiled
    """A compiled part's start: the one on the caller's thread (``home`` 0) rings ``bell``
    (:func:`ring`); each returns the count it then reads, which :func:`linger` at the part's
    end waits to see change (the caller had rung for this call before; 0 where ``bell`` is
    empty)."""
    if bell.shape[0] == 0:
        return 0
    if home == 0:
        atomic_add(bell, 0, 1)
    return atomic_load(bell, 0)


@numba.njit(cache=True, nogil=True)
def ring(bell):  # pragma: no cover - compiled
    """Tell any pool thread that lingers (:func:`linger`) that there is work: ``bell[0]``
    plus one (nothing where ``bell`` is empty)."""
    if bell.shape[0] > 0:
        atomic_add(bell, 0, 1)


@numba.njit(inline="always", cache=True, nogil=True)
def linger(bell, seen):  # pragma: no cover - compiled
    """Watch ``bell[0]`` until it is no longer ``seen`` (a call has started whose parts
    may be queued for this thread), for at most ``bell[1]`` looks, yielding the core at
    each (nothing where ``bell`` is empty)."""
    if bell.shape[0] > 0:
        for _ in range(bell[1]):
            if atomic_load(bell, 0) != seen:
                return
            yield_cpu()
