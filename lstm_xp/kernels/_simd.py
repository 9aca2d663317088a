"""Blocks of matrix products written in LLVM's vector IR for compiled (numba) code.

The dot blocks (:data:`dot3x4`, :data:`dot2x4`, :data:`dot1x8`) sum ``na`` rows of ``a``
against ``nw`` rows of ``w`` (``na * nw`` of 8 or 12) over ``k`` in ``[0, k_end)``, one
register of :data:`REGISTER_BYTES` at a time, and write the sums to a buffer. What numba's
own loop cannot do: finish the vectors of partial sums together, a tree of additions of
shuffled pairs, where LLVM's vectorised loop ends each running sum on its own; for one row
against 8 weight rows that is most of the work at small H.

:data:`outer6` to :data:`outer1` are the other form, for weights packed
into panels (``(P, K, C)``: panel ``p`` holds output columns ``p * C`` to ``p * C + C``, its
row ``k`` their weights on input ``k``; ``C`` is one vector, :data:`TILE_BYTES`, so a
panel is one contiguous strip): ``rows`` rows of ``a`` against one panel, or a few rows against
2 or :data:`ROW_PANELS` of them. Each step along ``k`` is one vector load of each panel, one
broadcast element of each row of ``a``, and a fused multiply-add into each running sum,
which stays in a register; no reduction at the end (a BLAS micro-kernel's shape). Every
output entry is then the same sequence of multiply-adds along ``k`` whichever block
computed it, so the result does not depend on how rows or columns are split between blocks
or threads. (Panels of 4 vectors, their rows 256 bytes apart, ran 15-25% slower: a strip of
one vector's columns then used a quarter of the L1 cache's sets, and did not stay there.)

The IR is generic (``<16 x float>``, ``llvm.fma``): LLVM splits it into the registers of
whatever CPU numba compiles for (AVX-512, AVX2, NEON).
"""

from __future__ import annotations

import os
from typing import Any

import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ..errors import ConfigError


def _has_avx512() -> bool:
    try:
        return "+avx512f" in llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # a host LLVM cannot describe
        return False


#: The environment variable that lays the blocks out for the other registers than this
#: CPU's ("32": AVX2's, "64": AVX-512's), so that a machine without AVX-512 can test that
#: layout (LLVM splits the wider vectors, slowly). numba's on-disk cache does not know of
#: it, so it needs ``NUMBA_CACHE_DIR`` set to a directory of its own.
REGISTER_BYTES_VARIABLE = "LSTM_XP_REGISTER_BYTES"


def _register_bytes() -> int:
    """This CPU's vector register in bytes (64 with AVX-512, else 32), or the one
    :data:`REGISTER_BYTES_VARIABLE` names."""
    host = 64 if _has_avx512() else 32
    asked = os.environ.get(REGISTER_BYTES_VARIABLE, "")
    if not asked:
        return host
    if asked not in ("32", "64"):
        raise ConfigError(f"{REGISTER_BYTES_VARIABLE} must be 32 or 64 (bytes of a vector "
                          f"register), not {asked!r}; unset it to use this CPU's ({host})")
    if int(asked) != host and not getattr(numba.config, "CACHE_DIR", ""):
        raise ConfigError(
            f"{REGISTER_BYTES_VARIABLE}={asked} lays the compiled kernels out for other "
            f"registers than this CPU's ({host} bytes), and numba's cache of them does not "
            "know of it: set NUMBA_CACHE_DIR to a directory of its own for such runs")
    return int(asked)


#: Bytes of one vector register (AVX2 32, AVX-512 64): a dot block's running sums, one
#: register each, so that they and the loaded rows fit in the 16 registers of AVX2 (with
#: 64-byte vectors, two registers each, 4 x 4 blocks spilled sums to the stack at every
#: step: 13-15 GFLOP/s at (rows, K, N) = (4, 256, 1024) on one Zen 3 core).
REGISTER_BYTES = _register_bytes()
#: Bytes of the columns of a panel, one block's width: 2 registers of running sums a row
#: on AVX2 (64 bytes) and on AVX-512 (128); 4 rows, 8 sums, are just enough to hide the
#: latency of the multiply-adds (4 cycles, 2 a cycle), 6 rows leave room.
TILE_BYTES = 2 * REGISTER_BYTES
#: Panels :data:`outer1` takes at once: one row against 4 panels keeps 8 registers of sums.
ROW_PANELS = 4


def _byte_offset(builder: Any, pointer: Any, offset: Any, element: Any) -> Any:
    """``pointer`` moved ``offset`` bytes on, as a pointer to ``element``."""
    base = builder.bitcast(pointer, ir.IntType(8).as_pointer())
    return builder.bitcast(builder.gep(base, [offset]), element.as_pointer())


def _row_pointer(builder: Any, array: Any, row: Any, element: Any) -> Any:
    offset = builder.mul(row, builder.extract_value(array.strides, 0))
    return _byte_offset(builder, array.data, offset, element)


def _row_pointers(builder: Any, array: Any, first: Any, count: int, element: Any) -> list[Any]:
    """Pointers to the starts of ``array``'s ``count`` rows from row ``first`` (int64)."""
    i64 = ir.IntType(64)
    return [_row_pointer(builder, array, builder.add(first, i64(i)), element)
            for i in range(count)]


def _unpack(context: Any, builder: Any, signature: Any, args: Any) -> list[Any]:
    """An intrinsic's arguments for its code: arrays as numba's array structures, the
    rest as int64 (indices, counts), floats as they are."""
    values = []
    for ty, value in zip(signature.args, args, strict=True):
        if isinstance(ty, types.Array):
            values.append(context.make_array(ty)(context, builder, value))
        elif isinstance(ty, types.Float):
            values.append(value)
        else:
            values.append(context.cast(builder, value, ty, types.int64))
    return values


def _broadcast(builder: Any, value: Any, vector: Any) -> Any:
    """``value`` (a scalar) in every lane of a ``vector`` (its type)."""
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), value, ir.IntType(32)(0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vector.count), [0] * vector.count)
    return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined), zeros)


def _fma(builder: Any, vector: Any) -> Any:
    """LLVM's fused multiply-add on ``vector`` (a vector of float or double)."""
    bits = 32 if isinstance(vector.element, ir.FloatType) else 64
    return cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [vector] * 3),
        f"llvm.fma.v{vector.count}f{bits}")


def _sum_loop(builder: Any, name: str, k_end: Any, step: int, initial: list[Any],
              body: Any, k_first: Any = None) -> list[Any]:
    """A loop over ``k`` in ``range(k_first, k_end, step)`` (``k_first`` an int64, default
    0) carrying the values ``initial``:
    ``body(k, sums)`` emits one step and returns the new sums. Returns the sums after the
    last step, with the builder placed after the loop."""
    i64 = ir.IntType(64)
    entry = builder.basic_block
    head = builder.append_basic_block(f"{name}.head")
    step_block = builder.append_basic_block(f"{name}.body")
    done = builder.append_basic_block(f"{name}.done")
    builder.branch(head)
    builder.position_at_end(head)
    k = builder.phi(i64)
    k.add_incoming(i64(0) if k_first is None else k_first, entry)
    sums = []
    for value in initial:
        phi = builder.phi(value.type)
        phi.add_incoming(value, entry)
        sums.append(phi)
    builder.cbranch(builder.icmp_signed("<", k, k_end), step_block, done)
    builder.position_at_end(step_block)
    new = body(k, sums)
    end = builder.basic_block
    k.add_incoming(builder.add(k, i64(step)), end)
    for phi, value in zip(sums, new, strict=True):
        phi.add_incoming(value, end)
    builder.branch(head)
    builder.position_at_end(done)
    return sums


def _sum_together(builder: Any, vectors: list[Any], width: int) -> list[Any]:
    """``n`` vectors (a power of two, at least ``width``) of ``width`` partial sums ->
    ``n / width`` vectors holding the ``n`` totals in order. Each level adds the low and
    high halves of every group of lanes of a pair of vectors, so a vector's groups halve in
    size and the pair becomes one vector."""
    group = width
    index = ir.IntType(32)
    while group > 1 and len(vectors) > 1:
        half = group // 2
        low = [g * group + j for g in range(width // group) for j in range(half)]
        low += [width + m for m in low]
        high = [m + half for m in low]
        take_low = ir.Constant(ir.VectorType(index, width), low)
        take_high = ir.Constant(ir.VectorType(index, width), high)
        vectors = [builder.fadd(builder.shuffle_vector(x, y, take_low),
                                builder.shuffle_vector(x, y, take_high), flags=("fast",))
                   for x, y in zip(vectors[0::2], vectors[1::2], strict=True)]
        group = half
    return vectors


def _dot_block(rows_a: int, rows_w: int, vector_bytes: int = REGISTER_BYTES) -> Any:
    """The intrinsic for blocks of ``rows_a`` rows of ``a`` times ``rows_w`` rows of ``w``,
    ``rows_a * rows_w`` vectors of ``vector_bytes`` of running sums (at most 16), their
    totals written to the first ``rows_a * rows_w`` entries of a buffer of 16 (as many
    entries as a vector has lanes, or the next power of two, are written)."""

    @intrinsic
    def dot_block(typingctx: Any, w: Any, first_w: Any, a: Any, first_a: Any, k_end: Any,
                  out: Any) -> Any:
        arrays = (w, a, out)
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in arrays):
            return None
        if not (w.dtype == a.dtype == out.dtype and w.dtype in (types.float32, types.float64)):
            return None
        width = vector_bytes // (w.dtype.bitwidth // 8)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            w_arr, w0, a_arr, a0, k_last, o_arr = _unpack(context, builder, signature, args)
            element = context.get_data_type(signature.args[0].dtype)
            vector = ir.VectorType(element, width)
            i64 = ir.IntType(64)
            w_rows = _row_pointers(builder, w_arr, w0, rows_w, element)
            a_rows = _row_pointers(builder, a_arr, a0, rows_a, element)
            fma = _fma(builder, vector)
            zero = ir.Constant(vector, [ir.Constant(element, 0.0)] * width)

            align = vector_bytes // width  # aligned to the element only

            def load(row: Any, k: Any) -> Any:
                pointer = builder.bitcast(builder.gep(row, [k]), vector.as_pointer())
                return builder.load(pointer, align=align)

            def step(k: Any, sums: list[Any]) -> list[Any]:
                a_vec = [load(p, k) for p in a_rows]
                new = list(sums)
                for j, row in enumerate(w_rows):  # one row of w live at a time
                    w_j = load(row, k)
                    for i in range(rows_a):
                        m = i * rows_w + j
                        new[m] = builder.call(fma, [w_j, a_vec[i], sums[m]])
                return new

            count = rows_a * rows_w
            sums = _sum_loop(builder, "dot", k_last, width, [zero] * count, step)
            # The tree of additions pairs vectors: up to a power of two with zeros, and at
            # least one vector's worth (its lanes each one total at the end).
            padded = list(sums) + [zero] * (max(width, 1 << (count - 1).bit_length()) - count)
            for n, total in enumerate(_sum_together(builder, padded, width)):
                target = builder.gep(o_arr.data, [i64(n * width)])
                builder.store(total, builder.bitcast(target, vector.as_pointer()),
                              align=align)
            return context.get_dummy_value()

        return types.void(w, first_w, a, first_a, k_end, out), codegen

    return dot_block


def _outer_block(rows: int, panels: int, split: int = 1) -> Any:
    """The intrinsic for ``rows`` rows of ``a`` times ``panels`` consecutive panels (one
    vector of :data:`TILE_BYTES` each, at every ``k``); with ``split`` > 1, times
    ``panels`` consecutive parts of panels, ``split`` parts to a panel (part ``v`` the
    columns ``v % split`` of panel ``v // split``; ``panel`` counts parts then)."""

    @intrinsic
    def outer_block(typingctx: Any, packed: Any, panel: Any, a: Any, first_a: Any,
                    k_first: Any, k_end: Any, out: Any, first_out: Any, out_column: Any,
                    ) -> Any:
        arrays = ((packed, 3), (a, 2), (out, 2))
        if not all(isinstance(t, types.Array) and t.layout == "C" and t.ndim == n
                   for t, n in arrays):
            return None
        if not (packed.dtype == a.dtype == out.dtype
                and packed.dtype in (types.float32, types.float64)):
            return None
        width = TILE_BYTES // (packed.dtype.bitwidth // 8) // split

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            p_arr, panel0, a_arr, a0, k0, k_end, o_arr, o0, o_column = _unpack(
                context, builder, signature, args)
            dtype = signature.args[0].dtype
            element = context.get_data_type(dtype)
            vector = ir.VectorType(element, width)
            i64 = ir.IntType(64)
            # Row k of part v + g is `bases[g] + k * k_stride` bytes (its own strip).
            bases = []
            for g in range(panels):
                part = builder.add(panel0, i64(g))
                row = builder.sdiv(part, i64(split)) if split > 1 else part
                base = _row_pointer(builder, p_arr, row, element)
                if split > 1:
                    column = builder.mul(builder.srem(part, i64(split)), i64(width))
                    base = builder.gep(base, [column])
                bases.append(base)
            k_stride = builder.extract_value(p_arr.strides, 1)
            a_rows = _row_pointers(builder, a_arr, a0, rows, element)
            o_rows = [builder.gep(row, [builder.add(o_column, i64(g * width))])
                      for row in _row_pointers(builder, o_arr, o0, rows, element)
                      for g in range(panels)]
            align = dtype.bitwidth // 8  # aligned to the element only
            fma = _fma(builder, vector)

            def step(k: Any, sums: list[Any]) -> list[Any]:
                offset = builder.mul(k, k_stride)
                w_vec = [builder.load(_byte_offset(builder, base, offset, vector), align=align)
                         for base in bases]
                new = []
                for r, row in enumerate(a_rows):
                    a_k = _broadcast(builder, builder.load(builder.gep(row, [k])), vector)
                    new += [builder.call(fma, [w_vec[g], a_k, sums[r * panels + g]])
                            for g in range(panels)]
                return new

            start = [builder.load(builder.bitcast(p, vector.as_pointer()), align=align)
                     for p in o_rows]
            sums = _sum_loop(builder, "outer", k_end, 1, start, step, k0)
            for pointer, total in zip(o_rows, sums, strict=True):
                builder.store(total, builder.bitcast(pointer, vector.as_pointer()), align=align)
            return context.get_dummy_value()

        return (types.void(packed, panel, a, first_a, k_first, k_end, out, first_out,
                           out_column), codegen)

    return outer_block


#: ``out[first_out + i, out_column + c] += a[first_a + i, k_first:k_end] .
#: packed[panel, k_first:k_end, c]`` for ``i < 6`` and ``c`` the panel's columns (12 registers of
#: sums: 77 GFLOP/s against 69 for 4 rows at (K, 4H) = (256, 1024), one Zen 3 core) ...
outer6 = _outer_block(6, 1)
#: ... for ``i < 5``, ``i < 4`` and ``i < 3`` (the rows blocks of 6 leave over) ...
outer5 = _outer_block(5, 1)
outer4 = _outer_block(4, 1)
#: (3 rows against 2 panels, 12 registers of sums and 4 of weights, spilled: 40 GFLOP/s
#: against 55-64 against one panel.)
outer3 = _outer_block(3, 1)
#: ``outer3`` against 3 half panels from half ``panel`` on (part ``v`` is half ``v % 2`` of
#: panel ``v // 2``): 9 registers of sums, where one panel's 6 wait on the multiply-adds'
#: latency. One Zen 3 core, (rows, K, N) = (3, 128 | 256, 512 | 1024): 62-79 GFLOP/s
#: against 54-69; 7 rows (4 + 3) 81-89 against 77-82.
outer3_halves = _outer_block(3, 3, 2)
#: ... and for 1 or 2 rows, against several panels at once (8 registers of sums; against
#: one panel, 2 or 4, they wait on the multiply-adds' latency), columns ``c`` of panel
#: ``panel + g`` landing at ``out_column + g * C + c``: 2 rows against 2 panels, one row
#: against :data:`ROW_PANELS`.
outer2 = _outer_block(2, 2)
outer1 = _outer_block(1, ROW_PANELS)

#: ``out[i * 4 + j] = a[first_a + i, :k_end] . w[first_w + j, :k_end]``, i < 2, j < 4.
dot2x4 = _dot_block(2, 4)
#: ``out[i * 4 + j]`` as above for i < 3.
dot3x4 = _dot_block(3, 4)
#: ``out[j] = a[first_a, :k_end] . w[first_w + j, :k_end]``, j < 8.
dot1x8 = _dot_block(1, 8)


def _refcount_free() -> dict[str, bool]:
    """numba's option to compile a function without its memory manager's reference counts,
    where this numba has it (``_nrt``, an internal option: an unknown one would fail the
    first call, not the import)."""
    try:
        from numba.core.cpu import CPUTargetOptions
    except ImportError:  # pragma: no cover - another numba layout
        return {}
    return {"_nrt": False} if hasattr(CPUTargetOptions, "_nrt") else {}


#: Options for the hot compiled loops, which allocate nothing: numba counts references to
#: the parent array of every view a function makes (an atomic add and subtract a view), and
#: the scan and the backward walk make a dozen views a row; a loop of 400 rows of the
#: scan's state update took 47 us counting, 20 without. Their callees compile the same way
#: (hence :func:`stack_sums` for the one that needed an array of its own).
WITHOUT_REFCOUNTS: dict[str, Any] = _refcount_free()


@intrinsic
def stack_sums(typingctx: Any, like: Any) -> Any:
    """A 1-D array of 16 entries of ``like``'s dtype in the calling function's stack frame
    (uninitialised, no memory manager: valid while that call runs), for :data:`dot4x4`'s
    and :data:`dot1x16`'s sums in functions compiled without numba's reference counting
    (which cannot allocate)."""
    if not (isinstance(like, types.Array) and like.dtype in (types.float32, types.float64)):
        return None
    array_type = types.Array(like.dtype, 1, "C")

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        element = context.get_data_type(like.dtype)
        data = cgutils.alloca_once(builder, element, size=16)
        array = context.make_array(array_type)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(element))
        context.populate_array(array, data=data,
                               shape=[context.get_constant(types.intp, 16)],
                               strides=[itemsize], itemsize=itemsize, meminfo=None)
        return array._getvalue()

    return array_type(like), codegen


# The masks of an 8 x 8 transpose in three rounds of shuffles of two vectors: interleave the
# pairs of rows, then pairs of pairs, then the 128-bit halves (what unpcklps/unpckhps,
# shufps and vperm2f128 do on AVX; LLVM picks the instructions of the CPU it compiles for).
_INTERLEAVE = ([0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15])
_PAIRS = ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
_HALVES = ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])


@intrinsic
def transpose8(typingctx: Any, w: Any, first_w: Any, k: Any, out: Any, first_out: Any,
               column: Any) -> Any:
    """``out[first_out + j, column + i] = w[first_w + i, k + j]`` for ``i, j < 8``: an 8 x 8
    block of ``w`` transposed into ``out`` (both 2-D, of one dtype, their rows contiguous:
    C-ordered, or row slices of C-ordered arrays, which the caller checks), for packing
    weights into panels and the backward pass's transposes. float32 goes through registers
    (8 vector loads, 24 shuffles, 8 vector stores; the element-by-element copy was bound by
    its 64 single stores); float64, element by element."""
    if not all(isinstance(t, types.Array) and t.ndim == 2 and t.layout in "CA"
               for t in (w, out)):
        return None
    if not (w.dtype == out.dtype and w.dtype in (types.float32, types.float64)):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        w_arr, w0, k0, o_arr, o0, c0 = _unpack(context, builder, signature, args)
        dtype = signature.args[0].dtype
        element = context.get_data_type(dtype)
        align = dtype.bitwidth // 8
        sources = [builder.gep(p, [k0]) for p in _row_pointers(builder, w_arr, w0, 8, element)]
        targets = [builder.gep(p, [c0]) for p in _row_pointers(builder, o_arr, o0, 8, element)]
        if dtype == types.float64:
            i64 = ir.IntType(64)
            for i, source in enumerate(sources):
                for j, target in enumerate(targets):
                    value = builder.load(builder.gep(source, [i64(j)]), align=align)
                    builder.store(value, builder.gep(target, [i64(i)]), align=align)
            return context.get_dummy_value()
        vector = ir.VectorType(element, 8)
        lanes = ir.VectorType(ir.IntType(32), 8)

        def mix(a: Any, b: Any, mask: list[int]) -> Any:
            return builder.shuffle_vector(a, b, ir.Constant(lanes, mask))

        rows = [builder.load(builder.bitcast(p, vector.as_pointer()), align=align)
                for p in sources]
        pairs = [mix(rows[i], rows[i + 1], m) for i in range(0, 8, 2) for m in _INTERLEAVE]
        quads = [mix(pairs[a], pairs[a + 2], m) for a in (0, 1, 4, 5) for m in _PAIRS]
        columns = [mix(quads[j], quads[j + 4], m) for m in _HALVES for j in range(4)]
        for value, target in zip(columns, targets, strict=True):
            builder.store(value, builder.bitcast(target, vector.as_pointer()), align=align)
        return context.get_dummy_value()

    return types.void(w, first_w, k, out, first_out, column), codegen


#: :func:`tanh32_span`'s rational function: ``tanh(x) ~ x * P(x^2) / Q(x^2)`` for ``|x|``
#: up to :data:`TANH32_CLAMP` (where float32's tanh is 1), ``x`` itself below
#: :data:`TANH32_LINEAR` (Eigen's coefficients, highest power first).
TANH32_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
            5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
            4.89352455891786e-03)
TANH32_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
            4.89352518554385e-03)
TANH32_CLAMP = 7.90531110763549805
TANH32_LINEAR = 4e-4
#: float32 entries :func:`tanh32_span` takes at a time: one AVX2 register. (16, two
#: registers a vector, ran the scan 1.01x-1.05x slower at H = 20-64: a span of 20 took two
#: vectors of 16, and the function's constants no longer fitted in the registers.)
TANH32_LANES = 8


@intrinsic
def tanh32_span(typingctx: Any, v: Any, first: Any, count: Any, scale: Any) -> Any:
    """``v[first:first + n] = tanh(scale * v[first:first + n])`` for ``v`` a contiguous 1-D
    float32 array and ``n = count`` from :data:`TANH32_LANES` entries on (``n = 0`` below:
    the caller does those): the rational function in vectors of :data:`TANH32_LANES`, the
    last one over the last of them, overlapping the one before where ``count`` is not a
    multiple (computed from the entries as they were before the others, and stored after
    them: each entry's lanes compute the same function of the same input, so an entry
    either vector writes is the same bits; one by one, the entries past the last whole
    vector had taken 24 of 160 entries at H = 40, 3 calls a row). (float64 arrays get the
    same function, as accurate as float32's: the scan computes their tanh exactly and never
    asks, but its one compiled body types both branches.) Written out because LLVM's loop
    vectoriser left most of the scan's activation loops scalar (3.7 ns an entry where
    vectors take under 1)."""
    if not (isinstance(v, types.Array) and v.ndim == 1 and v.layout == "C"
            and v.dtype in (types.float32, types.float64)):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        vty = signature.args[0]
        array, start, total, _ = _unpack(context, builder, signature, args)
        element = context.get_data_type(vty.dtype)
        vector = ir.VectorType(element, TANH32_LANES)
        i64 = ir.IntType(64)
        whole = builder.mul(builder.sdiv(total, i64(TANH32_LANES)), i64(TANH32_LANES))
        base = builder.gep(array.data, [start])  # layout C: contiguous
        factor = context.cast(builder, args[3], signature.args[3], vty.dtype)
        scale_vec = _broadcast(builder, factor, vector)
        fma = _fma(builder, vector)
        fast = ("nnan", "ninf", "nsz", "contract")  # no "arcp": keep the exact division

        def splat(value: float) -> Any:
            return ir.Constant(vector, [ir.Constant(element, value)] * TANH32_LANES)

        def polynomial(coefficients: tuple[float, ...], x2: Any) -> Any:
            total = splat(coefficients[0])
            for c in coefficients[1:]:
                total = builder.call(fma, [total, x2, splat(c)])
            return total

        align = vty.dtype.bitwidth // 8

        def at(k: Any) -> Any:
            return builder.bitcast(builder.gep(base, [k]), vector.as_pointer())

        def tanh(pointer: Any) -> Any:
            x = builder.fmul(builder.load(pointer, align=align), scale_vec, flags=fast)
            clamped = builder.select(builder.fcmp_ordered(">", x, splat(TANH32_CLAMP)),
                                     splat(TANH32_CLAMP), x)
            clamped = builder.select(builder.fcmp_ordered("<", clamped, splat(-TANH32_CLAMP)),
                                     splat(-TANH32_CLAMP), clamped)
            x2 = builder.fmul(clamped, clamped, flags=fast)
            ratio = builder.fdiv(builder.fmul(polynomial(TANH32_P, x2), clamped, flags=fast),
                                 polynomial(TANH32_Q, x2), flags=fast)
            small = builder.and_(
                builder.fcmp_ordered("<", x, splat(TANH32_LINEAR)),
                builder.fcmp_ordered(">", x, splat(-TANH32_LINEAR)))
            return builder.select(small, x, ratio)

        def step(k: Any, sums: list[Any]) -> list[Any]:
            pointer = at(k)
            builder.store(tanh(pointer), pointer, align=align)
            return []

        # The last vector's entries, where they overlap the whole vectors: computed first.
        last = builder.sub(total, i64(TANH32_LANES))
        overlap = builder.and_(builder.icmp_signed(">=", last, i64(0)),
                               builder.icmp_signed("!=", whole, total))
        kept = cgutils.alloca_once(builder, vector)
        with builder.if_then(overlap):
            builder.store(tanh(at(last)), kept)
        _sum_loop(builder, "tanh", whole, TANH32_LANES, [], step)
        with builder.if_then(overlap):
            builder.store(builder.load(kept), at(last), align=align)
        return context.get_dummy_value()

    return types.void(v, first, count, scale), codegen
