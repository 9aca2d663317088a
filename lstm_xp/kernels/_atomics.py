"""Atomic operations on int64 array elements for compiled (numba) code, and the spin wait
built on them with which the threads of one layer scan share its steps.

numba has no CPU atomics of its own; these are LLVM's (``atomicrmw`` and atomic loads and
stores, sequentially consistent), emitted through :func:`numba.extending.intrinsic`, so the
wait is correct on any CPU numba targets (x86-64 and ARM alike), not only on x86's strong
memory order. A plain load in a spin loop would also be wrong: the compiler may hoist it.
"""

from __future__ import annotations

import os
from typing import Any

import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


def _int64_array(ary: Any) -> bool:
    """Whether a numba type is an int64 array (what these operations take)."""
    return isinstance(ary, types.Array) and ary.dtype == types.int64


def _element_pointer(context: Any, builder: Any, aryty: Any, ary: Any, index: Any) -> Any:
    array = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, array, [index])


@intrinsic
def atomic_add(typingctx: Any, ary: Any, index: Any, value: Any) -> Any:
    """``ary[index] += value`` atomically; returns the value before (int64 arrays only)."""
    if not _int64_array(ary):
        return None
    sig = types.int64(ary, index, value)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty, _, valuety = signature.args
        ptr = _element_pointer(context, builder, aryty, args[0], args[1])
        addend = context.cast(builder, args[2], valuety, types.int64)
        return builder.atomic_rmw("add", ptr, addend, "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx: Any, ary: Any, index: Any) -> Any:
    """``ary[index]``, read atomically (never hoisted out of a loop)."""
    if not _int64_array(ary):
        return None
    sig = types.int64(ary, index)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return sig, codegen


@intrinsic
def atomic_store(typingctx: Any, ary: Any, index: Any, value: Any) -> Any:
    """``ary[index] = value``, written atomically."""
    if not _int64_array(ary):
        return None
    sig = types.void(ary, index, value)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty, _, valuety = signature.args
        ptr = _element_pointer(context, builder, aryty, args[0], args[1])
        builder.store_atomic(context.cast(builder, args[2], valuety, types.int64), ptr,
                             "seq_cst", 8)
        return context.get_dummy_value()

    return sig, codegen


#: Whether the C library's ``sched_yield`` is there to call (POSIX); elsewhere a waiting
#: thread spins without yielding.
HAS_SCHED_YIELD = os.name == "posix"


@intrinsic
def yield_cpu(typingctx: Any) -> Any:
    """``sched_yield()``: let another thread have this core (a no-op without it)."""
    sig = types.void()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        if HAS_SCHED_YIELD:
            fnty = ir.FunctionType(ir.IntType(32), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty, "sched_yield"),
                         [])
        return context.get_dummy_value()

    return sig, codegen


#: Spins of a waiting thread before it starts yielding its core at each look.
SPINS_BEFORE_YIELD = 1000


@numba.njit(inline="always", cache=True, nogil=True)
def wait_at_least(sync, index, value):  # pragma: no cover - compiled
    """Wait until ``sync[index]`` (an int64 array element that other threads increase) is
    at least ``value``; what the threads that increased it wrote before is then visible
    here (the operations are sequentially consistent). After
    :data:`SPINS_BEFORE_YIELD` looks the thread yields its core at each further look: a
    thread of another pool spinning on the same core (OpenBLAS's, after a NumPy product)
    would otherwise hold it for a whole time slice."""
    spins = 0
    while atomic_load(sync, index) < value:
        spins += 1
        if spins > SPINS_BEFORE_YIELD:
            yield_cpu()


@numba.njit(inline="always", cache=True, nogil=True)
def take(sync, first, round_, count, home, turn):  # pragma: no cover - compiled
    """The item of ``count`` a thread looks at on its ``turn``-th try in round ``round_``,
    starting from its own (``home``), and whether it gets it: the item, or -1 if another
    thread has it. The claims are ``sync[first + round_ * count + item]``, 0 to start, and
    only one atomic increment of each finds 0; with one item nothing is claimed (one
    thread, and ``sync`` may be empty)."""
    item = home + turn
    if item >= count:
        item -= count
    if count > 1 and atomic_add(sync, first + round_ * count + item, 1) > 0:
        return -1
    return item
