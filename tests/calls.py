"""Helpers for the tests that call models: a call's results as one flat tuple, and the same
work on several Python threads started together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np


def flat(result: Any) -> tuple[Any, Any, Any]:
    """``(y, h_n, c_n)`` from a model's ``(y, (h_n, c_n))``."""
    y, (h, c) = result
    return y, h, c


def assert_results_close(got: Any, expected: Any, rtol: float, atol: float) -> None:
    """Two model results ``(y, (h_n, c_n))`` equal within ``rtol`` and ``atol``, array by
    array (``got`` None, a call that did not run, fails)."""
    assert got is not None
    for a, b in zip(flat(got), flat(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def together(count: int, rounds: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` ``rounds`` times on each of ``count`` Python threads started together;
    the last result of each (asserting that every thread finished: a deadlock would not,
    and that none raised: what they raised is in the assertion's message)."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            start.wait()
            for _ in range(rounds):
                results[i] = work(i)
        except Exception as exc:  # reported below, on the caller's thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "a call did not finish (deadlock)"
    assert not errors, errors
    return results
