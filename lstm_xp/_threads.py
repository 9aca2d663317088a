"""How many threads the compiled CPU kernel (``numba``) may split one call between.

Every core this process may run on, by default, shared one of two ways (the kernel picks,
:func:`lstm_xp.kernels.numba_scan.plan`):

- **By sequences** (a call with at least 4 sequences a thread): each thread runs the whole
  time loop for its slice of the batch and never waits for another, as ONNX Runtime's
  threads do; each slice goes to whichever thread claims it first, the caller included,
  so a pool thread busy elsewhere holds no call up.
- **By hidden units** (smaller batches with enough work a step): each step's units come in
  one chunk a thread, and the threads claim the chunks step by step. Each thread takes its
  own chunk first (so its part of the weights stays in its core's cache), then any chunk of
  the step nobody has taken, then waits for the step's last chunk. A thread that starts
  late or loses its core (to OpenBLAS's idle threads spinning for up to ~0.1 s after a
  NumPy product, say) finds its chunks done by the others and catches up, so a call never
  waits for a thread that is not running; a barrier after every step did, and such a call
  took 105 ms instead of 2-3 ms. A call still waits for a chunk whose thread lost its core
  in the middle of it, so with the other cores busy it can take longer than on one thread
  (``benchmarks/RESULTS.md`` has the figures).

The two directions of a bidirectional layer share nothing: where each has enough work
(:func:`lstm_xp.kernels.numba_scan.directions`) they run side by side, each on its share of
the threads (:func:`thread_shares`; one each on 2 cores), and split within it as above
(:func:`lstm_xp.kernels._pool.side_by_side`), inference and training alike.

Either way a call's results are the same bits whichever threads ran it, and
``set_num_threads(1)`` (or ``LSTM_XP_NUM_THREADS=1`` in the environment, read when the count
is first needed) keeps every call on its caller's thread. This module imports no array
library.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ConfigError

#: The thread count (from ``LSTM_XP_NUM_THREADS`` or :func:`set_num_threads`); None until
#: the environment is read.
_SETTING: int | None = None
_LOCK = threading.Lock()


class _Share(threading.local):
    """A thread's own count while it runs a part of a call that already shares the threads
    (:func:`share_of_threads`); None elsewhere. (A class default: ``getattr`` with a default
    on a bare ``threading.local`` took 0.6 us a call where the attribute was missing.)"""

    count: int | None = None


_HERE = _Share()


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1


def thread_count(text: str) -> int:
    """Threads for a ``LSTM_XP_NUM_THREADS`` value: a positive integer, or ``auto`` for
    :func:`cores`; empty, :func:`cores` (with a warning, and 1, for anything else)."""
    text = text.strip()
    if not text or text.lower() == "auto":
        return cores()
    if text.isdigit() and int(text) > 0:
        return int(text)
    warnings.warn(f"LSTM_XP_NUM_THREADS must be a positive integer or 'auto'; got {text!r}, "
                  "using 1 thread", RuntimeWarning, stacklevel=2)
    return 1


def get_num_threads() -> int:
    """Threads the compiled CPU kernel may split one call between (see the module); on a
    thread that runs one of several parts of a call side by side (the two directions of a
    bidirectional layer), that part's share (:func:`share_of_threads`)."""
    share = _HERE.count
    return _setting() if share is None else share


def _setting() -> int:
    """The process's thread count (read from the environment the first time)."""
    global _SETTING
    setting = _SETTING  # read once: another thread may replace it
    if setting is not None:
        return setting
    with _LOCK:
        if _SETTING is None:
            _SETTING = thread_count(os.environ.get("LSTM_XP_NUM_THREADS", ""))
        return _SETTING


def set_num_threads(threads: int | str) -> int:
    """Let the compiled CPU kernel split a call between up to ``threads`` threads (a positive
    int, or ``"auto"`` for every core this process may run on; see the module); returns
    the previous count. Calls already running keep theirs.

    Raises
    ------
    ConfigError
        For anything but a positive int or ``"auto"``.
    """
    global _SETTING
    if isinstance(threads, str) and threads.strip().lower() == "auto":
        count = cores()
    elif isinstance(threads, int) and not isinstance(threads, bool) and threads > 0:
        count = threads
    else:
        raise ConfigError(f"set_num_threads takes a positive int or 'auto'; got {threads!r}.")
    previous = _setting()
    with _LOCK:
        _SETTING = count
    return previous


@contextmanager
def thread_setting(threads: int | str | None) -> Iterator[None]:
    """:func:`set_num_threads` (``threads``) for the calls inside, the setting before it
    restored after (None: as it is)."""
    global _SETTING
    before = _setting()
    if threads is not None:
        set_num_threads(threads)
    try:
        yield
    finally:
        with _LOCK:
            _SETTING = before


def thread_shares(threads: int, parts: int) -> list[int]:
    """``threads`` shared between ``parts`` parts that run side by side, as even as they go
    (the larger first), one thread each at least."""
    return [max(1, threads // parts + (n < threads % parts)) for n in range(parts)]


@contextmanager
def share_of_threads(threads: int) -> Iterator[None]:
    """:func:`get_num_threads` is ``threads`` on the calling thread for the calls inside
    (the part of a call that runs beside others), as before after."""
    before = _HERE.count
    _HERE.count = threads
    try:
        yield
    finally:
        _HERE.count = before
