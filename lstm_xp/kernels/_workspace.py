"""Arrays a training pass keeps from one call to the next, arrays aligned to cache lines, and
arrays the compiled kernels take as they are."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np


class Workspace:
    """Arrays kept from one training step to the next.

    A training step allocates tens of MiB of tape and scratch arrays. Fresh ones come from
    the operating system as untouched pages, and the page faults cost as much as the
    arithmetic (measured: 4,000 faults and about a third of a step at B = 16). Arrays handed
    back here after a backward pass are reused by the next step instead.

    Pooled bytes never exceed the most that was in use at once, so the pool costs no more
    than one step's peak; it is freed with the model that owns it. Safe for threads: a lock
    guards the pool, so two training calls at once never get the same array.
    """

    def __init__(self) -> None:
        self._free: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
        self._in_use = 0
        self._peak = 0
        self._pooled = 0
        self._lock = threading.Lock()

    @property
    def pooled_bytes(self) -> int:
        """Bytes held for reuse now."""
        return self._pooled

    @property
    def peak_bytes(self) -> int:
        """The most bytes that were in use at once (the pool's bound)."""
        return self._peak

    def pooled_shapes(self) -> list[tuple[tuple[int, ...], str]]:
        """``(shape, dtype string)`` of each array held for reuse."""
        with self._lock:
            return [key for key, stack in self._free.items() for _ in stack]

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised C-contiguous array starting on a cache line
        (:func:`aligned_empty`: the compiled products read packed panels from these): a
        pooled one if there is one."""
        key = (tuple(shape), np.dtype(dtype).str)
        with self._lock:
            stack = self._free.get(key)
            array = stack.pop() if stack else None
            if array is not None:
                self._pooled -= array.nbytes
        if array is None:
            array = aligned_empty(shape, dtype)
        with self._lock:
            self._in_use += array.nbytes
            self._peak = max(self._peak, self._in_use)
        return array

    def give(self, *arrays: np.ndarray) -> None:
        """Hand arrays from :meth:`take` back; their contents are garbage from now on."""
        with self._lock:
            for array in arrays:
                self._in_use -= array.nbytes
                key = (array.shape, array.dtype.str)
                self._free.setdefault(key, []).append(array)
                self._free[key] = self._free.pop(key)  # most recently used last
                self._pooled += array.nbytes
            while self._pooled > self._peak:  # evict the least recently used shapes
                key = next(iter(self._free))
                stack = self._free.pop(key)
                self._pooled -= sum(a.nbytes for a in stack)


def compiled_operand(a: Any, dtype: Any = None) -> np.ndarray:
    """``a`` as a C-ordered NumPy array (of ``dtype`` where given) that the compiled kernels
    take without being compiled anew: a copy where it is read-only. numba types a read-only
    array apart from a writable one, so the first call with one (an input from
    ``np.frombuffer`` or a read-only memory map, say) compiled the whole scan again: 11 s."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.writeable else a.copy()


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An empty C-ordered array whose data start on a 64-byte boundary (a cache line):
    vector loads from packed panels NumPy had placed 16 bytes past one cost 20-30% of the
    product's speed, each load spanning two lines."""
    return aligned_arrays([shape], dtype)[0]


def aligned_arrays(shapes: Sequence[tuple[int, ...]], dtype: Any) -> list[np.ndarray]:
    """:func:`aligned_empty` for each of ``shapes``, all in one allocation (each array
    starting on its own 64-byte boundary): one NumPy call and one address lookup instead of
    one each, a few microseconds a small call."""
    dtype = np.dtype(dtype)
    starts, end = [], 0
    for shape in shapes:
        starts.append(end)
        end += -(-math.prod(shape) * dtype.itemsize // 64) * 64  # numpy.prod took 5 us
    raw = np.empty(end + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    # The ndarray constructor over the buffer: half the time of a slice, view and reshape.
    return [np.ndarray(shape, dtype, raw, skip + start)
            for shape, start in zip(shapes, starts, strict=True)]
