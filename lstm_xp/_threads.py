"""How many threads the compiled CPU kernel (``numba``) may split one call between.

Every core this process may run on, by default, but two ways of sharing them behave
differently:

- **By sequences** (a call with at least 4 sequences a thread): each thread runs the whole
  time loop for its slice of the batch and never waits for another, so a core taken by
  something else slows only that core's slice. On by default, as torch's and ONNX
  Runtime's threads are.
- **By hidden units** (smaller batches): the threads meet at a barrier after every step and
  need their cores to themselves. Right after a NumPy product, OpenBLAS's idle threads spin
  on those cores for up to ~0.1 s, and a 2-thread call at (B, T, I, H) = (4, 100, 128, 256)
  then took 105 ms instead of 2-3 ms (a tenth of the calls still took ~0.1 s with the
  barrier yielding its core). So this runs only when threads were asked for: where nothing
  else computes on the cores (an inference server, a benchmark), with
  ``set_num_threads("auto")`` or ``LSTM_XP_NUM_THREADS=auto`` (or a number) in the
  environment, read when the count is first needed.

``set_num_threads(1)`` (or ``LSTM_XP_NUM_THREADS=1``) keeps every call on its caller's
thread. This module imports no array library.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ConfigError

#: ``(threads, asked)``: the count and whether it was asked for (an environment variable or
#: :func:`set_num_threads`); None until the environment is read.
_SETTING: tuple[int, bool] | None = None
_LOCK = threading.Lock()


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


def _setting() -> tuple[int, bool]:
    global _SETTING
    setting = _SETTING  # read once: a tuple is replaced whole, never changed
    if setting is not None:
        return setting
    with _LOCK:
        if _SETTING is None:
            text = os.environ.get("LSTM_XP_NUM_THREADS", "")
            _SETTING = (thread_count(text), bool(text.strip()))
        return _SETTING


def get_num_threads() -> int:
    """Threads the compiled CPU kernel may split one call between (see the module)."""
    return _setting()[0]


def threads_asked_for() -> bool:
    """Whether the thread count was set (``LSTM_XP_NUM_THREADS`` or
    :func:`set_num_threads`): only then do small calls split their hidden units between
    threads that meet after every step (see the module)."""
    return _setting()[1]


def set_num_threads(threads: int | str) -> int:
    """Let the compiled CPU kernel split a call between up to ``threads`` threads (a positive
    int, or ``"auto"`` for every core this process may run on), both ways (see the module);
    returns the previous count. Calls already running keep theirs.

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
    previous = get_num_threads()
    with _LOCK:
        _SETTING = (count, True)
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
