"""Blocks of matrix products written in LLVM's vector IR for compiled (numba) code.

:func:`dot_block` sums ``na`` rows of ``a`` against ``nw`` rows of ``w`` (``na * nw = 16``)
over ``k`` in ``[0, k_end)``, one vector of 64 bytes at a time, and writes the 16 sums to a
buffer. What numba's own loop cannot do: finish the 16 vectors of partial sums together, a
tree of 15 additions of shuffled pairs, where LLVM's vectorised loop ends each running sum on
its own (16 reductions of 4 steps each); for one row against 16 weight rows that is most of
the work at small H.

:data:`outer4` and :data:`outer1` are the other form, for weights packed into panels
(``(P, K, C)``: panel ``p`` holds output columns ``p * C`` to ``p * C + C``, its row ``k``
their weights on input ``k``, contiguous): ``rows`` rows of ``a`` against one vector of a
panel's columns. Each step along ``k`` is one vector load of the panel, one broadcast
element of each row of ``a``, and ``rows`` fused multiply-adds into running sums that stay
in registers; no reduction at the end (a BLAS micro-kernel's shape). Every output entry is
then the same sequence of multiply-adds along ``k`` whichever block computed it, so the
result does not depend on how rows or columns are split between blocks or threads.

The IR is generic (``<16 x float>``, ``llvm.fma``): LLVM splits it into the registers of
whatever CPU numba compiles for (AVX-512, AVX2, NEON).
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

#: Bytes of one vector of partial sums.
VECTOR_BYTES = 64
def _has_avx512() -> bool:
    try:
        return "+avx512f" in llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # a host LLVM cannot describe
        return False


#: Bytes of the columns one 4-row block of :data:`outer4` covers: 4 x 2 registers of
#: running sums (enough to hide the latency of the multiply-adds: 4 cycles, 2 a cycle) on
#: AVX2 (``4 x 64``) and on AVX-512 (``4 x 128``) ...
TILE_BYTES = 128 if _has_avx512() else 64
#: ... and of one panel row of packed weights: one row against a whole panel
#: (:data:`outer1`) keeps 8 registers of sums.
PANEL_BYTES = 4 * TILE_BYTES


def lanes(dtype: Any) -> int:
    """Elements of ``dtype`` in one vector (16 float32, 8 float64)."""
    return VECTOR_BYTES // (4 if dtype == types.float32 else 8)


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


def _fma(builder: Any, vector: Any) -> Any:
    """LLVM's fused multiply-add on ``vector`` (a vector of float or double)."""
    bits = 32 if isinstance(vector.element, ir.FloatType) else 64
    return cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [vector] * 3),
        f"llvm.fma.v{vector.count}f{bits}")


def _sum_loop(builder: Any, name: str, k_end: Any, step: int, initial: list[Any],
              body: Any) -> list[Any]:
    """A loop over ``k`` in ``range(0, k_end, step)`` carrying the values ``initial``:
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
    k.add_incoming(i64(0), entry)
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
    """16 vectors of ``width`` partial sums -> ``16 / width`` vectors holding the 16 totals
    in order. Each level adds the low and high halves of every group of lanes of a pair of
    vectors, so a vector's groups halve in size and the pair becomes one vector."""
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


def _dot_block(rows_a: int, rows_w: int) -> Any:
    """The intrinsic for blocks of ``rows_a`` rows of ``a`` times ``rows_w`` rows of ``w``."""

    @intrinsic
    def dot_block(typingctx: Any, w: Any, first_w: Any, a: Any, first_a: Any, k_end: Any,
                  out: Any) -> Any:
        arrays = (w, a, out)
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in arrays):
            return None
        if not (w.dtype == a.dtype == out.dtype and w.dtype in (types.float32, types.float64)):
            return None
        width = lanes(w.dtype)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            wty, wrty, aty, arty, kty, oty = signature.args
            w_arr = context.make_array(wty)(context, builder, args[0])
            a_arr = context.make_array(aty)(context, builder, args[2])
            o_arr = context.make_array(oty)(context, builder, args[5])
            element = context.get_data_type(wty.dtype)
            vector = ir.VectorType(element, width)
            i64 = ir.IntType(64)
            w0 = context.cast(builder, args[1], wrty, types.int64)
            a0 = context.cast(builder, args[3], arty, types.int64)
            k_last = context.cast(builder, args[4], kty, types.int64)
            w_rows = _row_pointers(builder, w_arr, w0, rows_w, element)
            a_rows = _row_pointers(builder, a_arr, a0, rows_a, element)
            fma = _fma(builder, vector)
            zero = ir.Constant(vector, [ir.Constant(element, 0.0)] * width)

            def load(row: Any, k: Any) -> Any:  # aligned to the element only
                pointer = builder.bitcast(builder.gep(row, [k]), vector.as_pointer())
                return builder.load(pointer, align=VECTOR_BYTES // width)

            def step(k: Any, sums: list[Any]) -> list[Any]:
                w_vec = [load(p, k) for p in w_rows]
                a_vec = [load(p, k) for p in a_rows]
                return [builder.call(fma, [w_vec[m % rows_w], a_vec[m // rows_w], sums[m]])
                        for m in range(rows_a * rows_w)]

            sums = _sum_loop(builder, "dot", k_last, width, [zero] * (rows_a * rows_w), step)
            for n, total in enumerate(_sum_together(builder, list(sums), width)):
                target = builder.gep(o_arr.data, [i64(n * width)])
                builder.store(total, builder.bitcast(target, vector.as_pointer()),
                              align=VECTOR_BYTES // width)
            return context.get_dummy_value()

        return types.void(w, first_w, a, first_a, k_end, out), codegen

    return dot_block


def _outer_block(rows: int, columns_bytes: int) -> Any:
    """The intrinsic for ``rows`` rows of ``a`` times ``columns_bytes`` of a panel."""

    @intrinsic
    def outer_block(typingctx: Any, packed: Any, panel: Any, column: Any, a: Any,
                    first_a: Any, k_end: Any, out: Any, first_out: Any, out_column: Any,
                    ) -> Any:
        arrays = ((packed, 3), (a, 2), (out, 2))
        if not all(isinstance(t, types.Array) and t.layout == "C" and t.ndim == n
                   for t, n in arrays):
            return None
        if not (packed.dtype == a.dtype == out.dtype
                and packed.dtype in (types.float32, types.float64)):
            return None
        single = packed.dtype == types.float32
        width = columns_bytes // (4 if single else 8)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            tys = signature.args
            p_arr, a_arr, o_arr = (context.make_array(tys[n])(context, builder, args[n])
                                   for n in (0, 3, 6))
            element = context.get_data_type(tys[0].dtype)
            vector = ir.VectorType(element, width)

            def index(n: int) -> Any:
                return context.cast(builder, args[n], tys[n], types.int64)

            # Row k of the panel, column `column`, is `base + k * k_stride` bytes.
            base = builder.gep(_row_pointer(builder, p_arr, index(1), element), [index(2)])
            k_stride = builder.extract_value(p_arr.strides, 1)
            a_rows = _row_pointers(builder, a_arr, index(4), rows, element)
            o_rows = [builder.gep(row, [index(8)])
                      for row in _row_pointers(builder, o_arr, index(7), rows, element)]
            align = 4 if single else 8  # aligned to the element only
            fma = _fma(builder, vector)
            undef = ir.Constant(vector, ir.Undefined)
            lane0 = ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width)

            def step(k: Any, sums: list[Any]) -> list[Any]:
                w_k = _byte_offset(builder, base, builder.mul(k, k_stride), vector)
                w_vec = builder.load(w_k, align=align)
                new = []
                for row, total in zip(a_rows, sums, strict=True):
                    one = builder.insert_element(undef, builder.load(builder.gep(row, [k])),
                                                 ir.IntType(32)(0))
                    new.append(builder.call(
                        fma, [w_vec, builder.shuffle_vector(one, undef, lane0), total]))
                return new

            start = [builder.load(builder.bitcast(p, vector.as_pointer()), align=align)
                     for p in o_rows]
            sums = _sum_loop(builder, "outer", index(5), 1, start, step)
            for pointer, total in zip(o_rows, sums, strict=True):
                builder.store(total, builder.bitcast(pointer, vector.as_pointer()), align=align)
            return context.get_dummy_value()

        return (types.void(packed, panel, column, a, first_a, k_end, out, first_out,
                           out_column), codegen)

    return outer_block


#: ``out[first_out + i, out_column + c] += a[first_a + i, :k_end] .
#: packed[panel, :k_end, column + c]`` for ``i < 4`` and ``c`` in a vector of
#: :data:`TILE_BYTES` ...
outer4 = _outer_block(4, TILE_BYTES)
#: ... and for one row against a whole panel (:data:`PANEL_BYTES`).
outer1 = _outer_block(1, PANEL_BYTES)

#: ``out[i * 4 + j] = a[first_a + i, :k_end] . w[first_w + j, :k_end]``, i, j < 4.
dot4x4 = _dot_block(4, 4)
#: ``out[j] = a[first_a, :k_end] . w[first_w + j, :k_end]``, j < 16.
dot1x16 = _dot_block(1, 16)
