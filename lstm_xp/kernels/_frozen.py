"""Weights that cannot change, and what a kernel derives from them once.

:func:`freeze` copies a NumPy array into one that cannot be written: read-only and over an
immutable ``bytes`` object, so that NumPy refuses to make it writable again (setting
``flags.writeable = True`` raises). For such arrays (:func:`is_frozen`) a kernel may keep what
it derives from them, packed panels say, for as long as they live (:class:`DerivedCache`),
where for ordinary arrays it must derive it again at every call: a caller may have written
into them since (``LSTM.frozen`` makes a model whose weights are frozen).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np


def freeze(a: np.ndarray) -> np.ndarray:
    """A frozen copy of ``a``: same values, shape and dtype, C-ordered, and never writable."""
    a = np.ascontiguousarray(a)
    return np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape)


def is_frozen(a: Any) -> bool:
    """Whether ``a`` is a NumPy array whose values can never change: a view of an immutable
    ``bytes`` object (what :func:`freeze` makes; NumPy keeps such views read-only). A
    read-only view of a writable array is not: its base may still be written. (Asked at
    every call of the compiled kernel: the array's flags alone took 0.3 us to read.)"""
    if type(a) is not np.ndarray:
        return False
    base = a.base
    while type(base) is np.ndarray:
        base = base.base
    return type(base) is bytes


class DerivedCache:
    """Values derived from pairs of frozen arrays (:func:`is_frozen`), by the arrays'
    identities and a key; an entry goes as soon as one of its arrays is collected, so an
    identity is never taken for another array's. Thread-safe: a value is made once (under
    the cache's lock), and a value handed out is never changed. (A lookup takes well under
    a microsecond: it is paid at every call, a one-step call at small sizes takes 20 us.)"""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, int, Hashable], tuple[weakref.ref, weakref.ref, Any]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, first: np.ndarray, second: np.ndarray, key: Hashable,
            make: Callable[..., Any], *args: Any) -> Any:
        """The value for ``first`` and ``second`` (frozen) and ``key``: the kept one, else
        ``make(first, second, *args)``'s, kept from then on."""
        index = (id(first), id(second), key)
        entry = self._entries.get(index)
        if entry is not None and entry[0]() is first and entry[1]() is second:
            return entry[2]
        with self._lock:
            entry = self._entries.get(index)
            if entry is not None and entry[0]() is first and entry[1]() is second:
                return entry[2]
            value = make(first, second, *args)
            entries = self._entries

            def drop(_: weakref.ref, index: tuple[int, int, Hashable] = index) -> None:
                entries.pop(index, None)

            entries[index] = (weakref.ref(first, drop), weakref.ref(second, drop), value)
            return value
