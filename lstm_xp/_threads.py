"""How many threads the compiled CPU kernel (``numba``) may split one call between.

One by default. The threads meet at a barrier after every step and need their cores to
themselves: right after a NumPy product, OpenBLAS's idle threads spin on those cores for up
to ~0.1 s, and a 2-thread call at (B, T, I, H) = (4, 100, 128, 256) then took 105 ms instead
of 2-3 ms (a tenth of the calls still took ~0.1 s with the barrier yielding its core). Opt in
where nothing else computes on the cores (an inference server, a benchmark): with
``set_num_threads("auto")``, or ``LSTM_XP_NUM_THREADS=auto`` (or a number) in the
environment, read when the count is first needed. This module imports no array library.
"""

from __future__ import annotations

import os
import threading
import warnings

from .errors import ConfigError

_LIMIT: int | None = None  # None: not read from the environment yet
_LOCK = threading.Lock()


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1


def thread_count(text: str) -> int:
    """Threads for a ``LSTM_XP_NUM_THREADS`` value: a positive integer, or ``auto`` for
    :func:`cores`; empty, 1 (with a warning, and 1, for anything else)."""
    text = text.strip()
    if not text:
        return 1
    if text.lower() == "auto":
        return cores()
    if text.isdigit() and int(text) > 0:
        return int(text)
    warnings.warn(f"LSTM_XP_NUM_THREADS must be a positive integer or 'auto'; got {text!r}, "
                  "using 1 thread", RuntimeWarning, stacklevel=2)
    return 1


def get_num_threads() -> int:
    """Threads the compiled CPU kernel may split one call between (see the module)."""
    global _LIMIT
    with _LOCK:
        if _LIMIT is None:
            _LIMIT = thread_count(os.environ.get("LSTM_XP_NUM_THREADS", ""))
        return _LIMIT


def set_num_threads(threads: int | str) -> int:
    """Let the compiled CPU kernel split a call between up to ``threads`` threads (a positive
    int, or ``"auto"`` for every core this process may run on); returns the previous count.
    Calls already running keep theirs.

    Raises
    ------
    ConfigError
        For anything but a positive int or ``"auto"``.
    """
    global _LIMIT
    if isinstance(threads, str) and threads.strip().lower() == "auto":
        count = cores()
    elif isinstance(threads, int) and not isinstance(threads, bool) and threads > 0:
        count = threads
    else:
        raise ConfigError(f"set_num_threads takes a positive int or 'auto'; got {threads!r}.")
    previous = get_num_threads()
    with _LOCK:
        _LIMIT = count
    return previous
