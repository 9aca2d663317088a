"""The compiled (numba) training pass: forward with a tape, and the backward walk, both in
machine code; the products over all steps at once in NumPy.

Same signatures and results as :func:`lstm_xp._backprop.layer_scan_train` and
``layer_scan_backward`` (tests hold them equal). Where :mod:`.numpy_train` keeps the gates as
(4H, B) columns for OpenBLAS's per-step products, here everything is in rows, (B, ...), the
layout the compiled scan (:mod:`.numba_scan`) computes in:

- **Forward**: :func:`.numba_scan._scan_units` writes each step's activations (PyTorch's
  gate order i, f, g, o), cell state and its tanh into the tape as it goes, each row
  contiguous, its batch or its hidden units split between threads as for inference.
- **Backward**: :func:`_walk_back` walks the steps in reverse, split between threads as
  the forward pass is: by sequences, each thread over its slice of the batch without
  meeting the others (a sequence's gradient needs only its own rows), or (small batches)
  by hidden units, the threads claiming each step's chunks in two rounds. Per step one
  fused pass over the tape's rows turns the activations into the gate gradient ``dz`` in
  place (no per-step NumPy calls, no derivative factors stored for all steps first), then
  ``dh = dz @ W_hh`` is :func:`.numba_scan._packed_product` against ``W_hh`` packed once
  a call.
- **Gradients of the weights** after the walk, one product over all steps' rows
  (``[x | h_prev | 1]^T dz``, the bias's the sum of ``dz``'s rows; ``dz`` packed into
  panels by the walk as it goes), and ``dz @ W_ih`` for the input, both
  :func:`.numba_scan._packed_product`'s with the rows split between threads. All in
  PyTorch's order: nothing to permute. No OpenBLAS anywhere in the pass (see
  :func:`CompiledTrainer.scan_backward`).

Tape per layer and direction (:class:`RowTape`): ``4*T*B*H`` activations, ``(T + 1)*B*H``
cell states, ``T*B*H`` of their tanh and of the hidden states each step read, and a copy of
the input (``T*B*I``). With ``lengths``, a sequence's steps past its end are in the tape but
not walked: the forward pass keeps its state there, the backward pass its state's gradient
(its gate gradient zero), and the weights' gradient leaves those steps' rows out of its
product (:func:`_kept_rows`); the batch runs in :func:`.numba_scan.length_order` (the tape
in that order) where that spares work, since a step's products go through the rows up to
the last sequence still running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from .._threads import get_num_threads
from ..errors import TapeError
from ._atomics import atomic_add, take, wait_at_least
from ._pool import NO_BELL, arrive, linger, run_parts
from ._simd import TILE_BYTES, WITHOUT_REFCOUNTS, transpose8
from ._workspace import aligned_empty, compiled_operand
from .numba_scan import (
    _NO_SYNC,
    CLAIMS,
    _pack_columns,
    _packed_product,
    _packed_product_call,
    _run,
    _running_rows,
    _widest_panels,
    caller_order,
    length_order,
    panel_shape,
    plan,
    use_compiled,
    used_panels,
)
from .numpy_train import FusedTape, NumpyTrainer


@dataclass
class RowTape:
    """What :meth:`CompiledTrainer.scan_backward` needs, every array in rows.

    Attributes
    ----------
    x : (T * B, I)
        The layer's input, copied.
    weight_ih : (4H, I), weight_hh : (4H, H)
        The weights used, copied (an optimiser may update the model's before the backward
        pass).
    has_bias : bool
    gates : (T, B, 4H)
        Activations i, f, g, o of every step (PyTorch's order).
    cells : (T + 1, B, H)
        Cell states, the initial one in slot 0 (slot T in reverse).
    tanh_cells : (T, B, H)
        ``tanh`` of each step's new cell state.
    h_prev : (T, B, H)
        The hidden state each step started from.
    lengths : (B,) int64
        Each sequence's length (T when none were given).
    order : (B,) int64 or None
        With lengths, the order the batch ran in (:func:`.numba_scan.length_order`): row
        ``n`` of every array above is the caller's sequence ``order[n]``; None: the
        caller's order.
    reverse : bool
    """

    x: np.ndarray
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    has_bias: bool
    gates: np.ndarray | None
    cells: np.ndarray
    tanh_cells: np.ndarray
    h_prev: np.ndarray
    lengths: np.ndarray
    order: np.ndarray | None
    reverse: bool


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True,
             **WITHOUT_REFCOUNTS)
def _walk_back(dz, cells, tanh_cells, dy, lengths, packed_hh, dh, dc, rows0, reverse,
               chunks, home, sync, packed_dz, slots, bell):  # pragma: no cover - compiled
    """The backward walk for sequences ``rows0:rows0 + b`` of the batch (``b`` the rows of
    ``dc``), their hidden units in ``K`` chunks, ``chunks`` (K, 2) the ``(first, last)``
    of each. Calls with disjoint ranges of sequences (and one chunk) run side by side;
    with more than one chunk, calls with ``home`` 0, 1, ... (the same arguments otherwise)
    share each step's chunks as :func:`.numba_scan._scan_units` shares its steps (claims
    and the count of chunks done in ``sync``), in two rounds a step: the chunk's gate
    gradients, then once every chunk's are done, its columns of ``dh = dz @ W_hh`` (which
    read all of them). ``home`` 0 returns once every round is done; it rings the pool's
    ``bell`` as it starts, and the others linger on it at their end (:mod:`._pool`; empty:
    neither).

    ``dz`` (T, N, 4H): the tape's activations (i, f, g, o) in, each step's gate gradient
    out (the pre-activations' gradient), in place; ``cells`` (T + 1, N, H) and
    ``tanh_cells`` (T, N, H) from the tape; ``dy`` (T, N, H) the outputs' gradient;
    ``lengths`` (N,) int64 each sequence's (T when none were given): at a step past it the
    sequence's gate gradient is zero, and its state's gradient passes through unchanged
    (the forward pass kept the state, and its output there is zero whatever the weights);
    ``packed_hh`` (K, P, 4H, C) each chunk's columns of ``W_hh`` (4H, H) in panels
    (:func:`.numba_scan._pack_columns`). ``dh`` (K, b, P * C) holds each chunk's units'
    gradient of the last hidden state on entry (zero past them) and of the first on
    return, ``dc`` (b, H) likewise for the cell state.

    The weights' gradient products read the gate gradients too, and the walk writes them
    for them while they are in cache: ``packed_dz`` (P, R, C) gets each row of ``dz`` in
    :func:`.numba_scan._pack_columns`'s panels (zero past 4H), tape row ``t * N + n`` as
    row ``slots[t * N + n]`` (``slots`` empty: row ``t * N + n``; -1: left out, a step past
    the sequence's end). (A pass of its own after the walk, packing read ``dz`` from beyond
    L2 cache again.)"""
    steps, hidden = tanh_cells.shape[0], tanh_cells.shape[2]
    batch = dc.shape[0]
    one = dz.dtype.type(1)
    count_chunks = chunks.shape[0]
    claiming = count_chunks > 1
    # The panels the products of dh take (a narrower chunk's entries of dh past its own
    # columns stay zero).
    used = _widest_panels(chunks, 1, packed_hh.shape[3])
    seen = arrive(bell, home)
    for walked in range(steps):
        t = walked if reverse else steps - 1 - walked
        before = t + 1 if reverse else t  # the cells slot this step started from
        for phase in range(2):  # the gate gradients, then dh = dz @ W_hh
            now = 2 * walked + phase
            if claiming:  # every chunk of the round before is done
                wait_at_least(sync, 0, now * count_chunks)
            for turn in range(count_chunks):
                k = take(sync, CLAIMS, now, count_chunks, home, turn)
                if k < 0:
                    continue  # another thread has it
                first, last = chunks[k, 0], chunks[k, 1]
                dh_k = dh[k]
                if phase == 1:  # the rows past the last one running pass dh on as it is
                    running = _running_rows(lengths[rows0:rows0 + batch], t)
                    if running > 0:
                        _packed_product(packed_hh[k], used, dz[t], rows0, running, dh_k, 0)
                else:
                    for n in range(batch):
                        row = rows0 + n
                        z = dz[t, row]
                        units = last - first
                        slot = t * dz.shape[1] + row
                        if slots.shape[0] > 0:
                            slot = slots[slot]
                        if t >= lengths[row]:  # past its end: dz zero, dh and dc kept
                            for q in range(4):
                                for u in range(q * hidden + first, q * hidden + last):
                                    z[u] = 0
                            if slot >= 0:
                                _pack_gates(z, first, last, packed_dz, slot)
                            continue
                        c_prev = cells[before, row]
                        tc = tanh_cells[t, row]
                        d_y = dy[t, row]
                        dh_n = dh_k[n]
                        dc_n = dc[n]
                        # In passes over few arrays each, which LLVM vectorises (one pass
                        # over all nine stayed scalar); d_h and d_c kept in dh_n and dc_n.
                        d_hs, d_cs = dh_n[:units], dc_n[first:last]
                        zi, zf = z[first:last], z[hidden + first:hidden + last]
                        zg, zo = z[2 * hidden + first:2 * hidden + last], \
                            z[3 * hidden + first:3 * hidden + last]
                        tcs = tc[first:last]
                        for u in range(units):
                            d_h = d_y[first + u] + d_hs[u]
                            d_hs[u] = d_h
                            d_cs[u] = d_cs[u] + d_h * zo[u] * (one - tcs[u] * tcs[u])
                        for u in range(units):
                            o = zo[u]
                            zo[u] = d_hs[u] * tcs[u] * o * (one - o)
                        for u in range(units):
                            i = zi[u]
                            g = zg[u]
                            zi[u] = d_cs[u] * g * i * (one - i)
                            zg[u] = d_cs[u] * i * (one - g * g)
                        cps = c_prev[first:last]
                        for u in range(units):
                            f = zf[u]
                            zf[u] = d_cs[u] * cps[u] * f * (one - f)
                            d_cs[u] = d_cs[u] * f
                        for u in range(dh_n.shape[0]):
                            dh_n[u] = 0
                        if slot >= 0:
                            _pack_gates(z, first, last, packed_dz, slot)
                if claiming:
                    atomic_add(sync, 0, 1)
    if claiming and home == 0:  # the caller's thread: back once every round is done
        wait_at_least(sync, 0, 2 * steps * count_chunks)
    if home > 0:
        linger(bell, seen)


@numba.njit(inline="always", cache=True, nogil=True)
def _pack_gates(z, first, last, packed, slot):  # pragma: no cover - compiled
    """Units ``first:last`` of each gate of the row ``z`` (4H,) into row ``slot`` of
    ``packed`` (P, R, C) (:func:`.numba_scan._pack_columns`'s panels: column ``j`` is
    ``packed[j // C, slot, j % C]``), zero past 4H in the last panel that holds columns
    (with the last unit). A whole row goes a panel's piece at a time, in copies of a
    constant length (each piece's own loop, of a length known only as it ran, cost as
    much as a pass of its own over the rows)."""
    width = packed.shape[2]
    columns = z.shape[0]
    hidden = columns // 4
    if first == 0 and last == hidden:
        pieces = columns // width
        for p in range(pieces):
            target = packed[p, slot]
            source = z[p * width:(p + 1) * width]
            for c in range(TILE_BYTES // 4 if z.itemsize == 4 else TILE_BYTES // 8):
                target[c] = source[c]
        j0 = pieces * width
    else:
        for q in range(4):
            j = q * hidden + first
            while j < q * hidden + last:
                p = j // width
                end = min(q * hidden + last, (p + 1) * width)
                target = packed[p, slot]
                for k in range(j, end):
                    target[k - p * width] = z[k]
                j = end
        if last < hidden:
            return
        j0 = columns
    if columns % width == 0:  # no panel part filled
        return
    p = columns // width  # the part-filled panel: the rest of the row, then the padding
    target = packed[p, slot]
    for c in range(j0 - p * width, width):
        target[c] = z[p * width + c] if p * width + c < columns else 0


class CompiledTrainer:
    """The compiled training pair (see the module), with :meth:`scan_train` and
    :meth:`scan_backward` the signatures of :func:`lstm_xp._backprop.layer_scan_train` and
    ``layer_scan_backward``; in float16, the fused NumPy pair
    (:class:`.numpy_train.NumpyTrainer`), sharing its workspace."""

    def __init__(self) -> None:
        self.fused = NumpyTrainer()
        self.workspace = self.fused.workspace

    def scan_train(self, xp: Any, x: np.ndarray, weight_ih: np.ndarray,
                   weight_hh: np.ndarray, bias: np.ndarray | None, h0: np.ndarray,
                   c0: np.ndarray, *, reverse: bool = False,
                   lengths: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, RowTape | FusedTape]:
        if not use_compiled(x.dtype):
            return self.fused.scan_train(xp, x, weight_ih, weight_hh, bias, h0, c0,
                                         reverse=reverse, lengths=lengths)
        take = self.workspace.take
        steps, batch, features = x.shape
        hidden = weight_hh.shape[1]
        dtype = x.dtype
        gates = take((steps, batch, 4 * hidden), dtype)
        valid = np.full(batch, steps, np.int64) if lengths is None else \
            np.array(lengths, dtype=np.int64)
        order = None
        if lengths is not None:  # the batch in the order that spares work, as inference
            by_rows, slices = plan(steps, batch, features, hidden, True,
                                   itemsize=dtype.itemsize, training=True)
            order = length_order(valid, by_rows, slices)
        if order is not None:  # the tape in that order; the results in the caller's
            x, h0, c0, valid = x[:, order], h0[order], c0[order], valid[order]
        tape = RowTape(self._copy(x, dtype, (steps * batch, features)),
                       self._copy(weight_ih, dtype), self._copy(weight_hh, dtype),
                       bias is not None, gates,
                       take((steps + 1, batch, hidden), dtype),
                       take((steps, batch, hidden), dtype),
                       take((steps, batch, hidden), dtype), valid, order, reverse)
        tape.cells[steps if reverse else 0] = c0
        # Threads as for inference: what runs between training steps (a loss, an
        # optimiser, a layer in NumPy) may leave OpenBLAS's idle threads spinning on the
        # cores, but split by sequences a thread never waits for another, and split by
        # units a thread that lost its core has its chunks done by the others (behind a
        # barrier every step, this pass had taken 74-103 ms at (4, 100, 128, 256) against
        # 6.6 ms).
        y, h_n, c_n = _run(x, weight_ih, weight_hh, bias, h0, c0, reverse, valid,
                           (gates, tape.cells, tape.tanh_cells))
        h_prev = tape.h_prev
        if reverse:
            h_prev[:-1], h_prev[-1] = y[1:], h0
            # A shorter sequence's last step in the walk (t = length - 1) starts from h0:
            # the steps past its end kept it (and output zero).
            short = np.flatnonzero((valid > 0) & (valid < steps))
            h_prev[valid[short] - 1, short] = h0[short]
        else:
            h_prev[1:], h_prev[0] = y[:-1], h0
        if order is not None:
            return (caller_order(y, order, 1), caller_order(h_n, order),
                    caller_order(c_n, order), tape)
        return y, h_n, c_n, tape

    def _copy(self, a: np.ndarray, dtype: np.dtype,
              shape: tuple[int, ...] | None = None) -> np.ndarray:
        """A copy of ``a`` in ``dtype`` in an array of the workspace (see
        :meth:`scan_backward`), reshaped to ``shape`` (one copy, whatever ``a``'s
        strides)."""
        out = self.workspace.take(a.shape if shape is None else shape, dtype)
        out.reshape(a.shape)[...] = a
        return out

    def scan_backward(self, xp: Any, tape: RowTape | FusedTape, dy: np.ndarray,
                      dh_n: np.ndarray | None, dc_n: np.ndarray | None,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Compiled version of :func:`lstm_xp._backprop.layer_scan_backward` (same
        shapes), for tapes of :meth:`scan_train`'s compiled pass. The tape's arrays go back
        to the workspace: a second backward pass over the same tape raises
        :class:`~lstm_xp.errors.TapeError`."""
        if isinstance(tape, FusedTape):
            return self.fused.scan_backward(xp, tape, dy, dh_n, dc_n)
        if tape.gates is None:
            raise TapeError("this tape has already been through a backward pass; run "
                            "forward_train again for another one.")
        dz = tape.gates
        steps, batch, hidden4 = dz.shape
        hidden = hidden4 // 4
        dtype = dz.dtype
        features = tape.x.shape[1]
        order = tape.order
        if order is not None:  # the gradients in, in the tape's order
            dy = dy[:, order]
            dh_n, dc_n = (None if d is None else d[order] for d in (dh_n, dc_n))
        dy_rows = compiled_operand(dy, dtype)
        # Every scratch array from the workspace, as the tape's are: fresh ones of these
        # sizes came from the operating system as untouched pages (after other calls had
        # freed memory in some orders: 1,200-1,500 page faults a step at (B, T, I, H) =
        # (4, 100, 128, 256), 3-4 us each, a third of the step).
        scratch = self.workspace.take
        # The weights' gradients, transposed: [x | h_prev | 1]^T @ dz (the row of ones
        # for the bias's: the sum of dz's rows), dz packed by the walk (the rows inside the
        # sequences only, :func:`_kept_rows`); then dx = dz @ W_ih. In this module's
        # products, not OpenBLAS's: its idle threads spin on both cores for a while after a
        # product, and the next forward pass's threads, sharing those cores, took twice as
        # long.
        kept = _kept_rows(tape.lengths, steps)
        rows = steps * batch if kept is None else kept.shape[0]
        p4, c4 = panel_shape(hidden4, dtype)
        packed_dz = scratch((p4, rows, c4), dtype)
        slots = _slots(kept, steps * batch)
        dh0, dc0, packed_hh = self._walk(scratch, tape, dz, dy_rows, dh_n, dc_n, packed_dz,
                                         slots)
        dz2 = dz.reshape(steps * batch, hidden4)
        stacked = features + hidden
        inputs_t = scratch((stacked + tape.has_bias, rows), dtype)
        inputs_t[stacked:] = 1
        sources = [tape.x, tape.h_prev.reshape(steps * batch, hidden)]
        taken = []
        if kept is not None:  # the rows of steps inside their sequences only
            taken = sources = [np.take(a, kept, axis=0, out=scratch((rows, a.shape[1]), dtype))
                               for a in sources]
        _transpose_into(sources[0], inputs_t[:features])
        _transpose_into(sources[1], inputs_t[features:stacked])
        d_w = _product(inputs_t, packed_dz, hidden4,
                       scratch((inputs_t.shape[0], p4 * c4), dtype))
        grads = {"weight_ih": np.empty((hidden4, features), dtype),
                 "weight_hh": np.empty((hidden4, hidden), dtype)}
        _transpose_into(d_w[:features, :hidden4], grads["weight_ih"])
        _transpose_into(d_w[features:stacked, :hidden4], grads["weight_hh"])
        if tape.has_bias:
            grads["bias"] = d_w[stacked, :hidden4].copy()
        panels, width = panel_shape(features, dtype)
        packed_ih = scratch((panels, hidden4, width), dtype)
        _pack_columns(tape.weight_ih, packed_ih)
        # dx, the caller's: written in place when the panels have no padding, else copied
        # out of a padded scratch product.
        padded = panels * width != features
        dx_all = _product(dz2, packed_ih, features,
                          scratch((steps * batch, panels * width), dtype)
                          if padded else aligned_empty((steps * batch, features), dtype))
        dx = (dx_all[:, :features].copy() if padded else dx_all).reshape(steps, batch, features)
        self.workspace.give(tape.gates, tape.cells, tape.tanh_cells, tape.h_prev, tape.x,
                            tape.weight_ih, tape.weight_hh, packed_dz, packed_hh, inputs_t,
                            d_w, packed_ih, *taken, *([dx_all] if padded else []))
        tape.gates = None
        if order is not None:
            return (caller_order(dx, order, 1), caller_order(dh0, order),
                    caller_order(dc0, order), grads)
        return dx, dh0, dc0, grads

    @staticmethod
    def _walk(scratch: Any, tape: RowTape, dz: np.ndarray, dy: np.ndarray,
              dh_n: np.ndarray | None, dc_n: np.ndarray | None, packed_dz: np.ndarray,
              slots: np.ndarray,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The backward walk (:func:`_walk_back`), the batch split between threads by
        sequences or by hidden units as the forward pass splits it (:func:`plan`): the
        gate gradients in place of the activations in ``dz`` (``tape.gates``) and in
        ``packed_dz``'s panels (rows as ``slots`` says); returns ``dh0`` and ``dc0``
        (B, H) and the packed ``W_hh`` (from ``scratch``, :meth:`.Workspace.take`)."""
        steps, batch, hidden4 = dz.shape
        hidden = hidden4 // 4
        dtype = dz.dtype
        by_rows, slices = plan(steps, batch, hidden, hidden, True, itemsize=dtype.itemsize,
                               training=True)
        chunks = [(0, hidden)] if by_rows else slices
        parts = [(0, batch)] if not by_rows else slices
        units = max(last - first for first, last in chunks)
        panels, width = panel_shape(units, dtype)
        packed_hh = scratch((len(chunks), panels, hidden4, width), dtype)
        for k, (first, last) in enumerate(chunks):
            _pack_columns(compiled_operand(tape.weight_hh[:, first:last]), packed_hh[k])
        dh = [aligned_empty((len(chunks), high - low, panels * width), dtype)
              for low, high in parts]
        for (low, high), d in zip(parts, dh, strict=True):
            d[...] = 0
            if dh_n is not None:
                for k, (first, last) in enumerate(chunks):
                    d[k, :, :last - first] = dh_n[low:high, first:last]
        dc = np.zeros((batch, hidden), dtype) if dc_n is None else \
            np.array(dc_n, dtype=dtype, order="C")
        table = np.array(chunks, np.int64)
        head = (dz, tape.cells, tape.tanh_cells, dy, tape.lengths, packed_hh)
        tail = (packed_dz, slots)
        if by_rows:  # each slice of sequences on its own thread
            run_parts(_walk_back, [(*head, d, dc[low:high], low, tape.reverse, table, 0,
                                    _NO_SYNC, *tail, NO_BELL)
                                   for (low, high), d in zip(parts, dh, strict=True)])
            dh0 = np.concatenate([d[0, :, :hidden] for d in dh])
        else:  # the chunks of units, claimed round by round (one chunk: this thread alone)
            sync = np.zeros(CLAIMS + 2 * steps * len(chunks), np.int64)
            run_parts(_walk_back, [(*head, dh[0], dc, 0, tape.reverse, table, home, sync,
                                    *tail)
                                   for home in range(len(chunks))], wait=False, bell=True)
            dh0 = np.concatenate([dh[0][k, :, :last - first]
                                  for k, (first, last) in enumerate(chunks)], axis=1)
        return dh0, dc, packed_hh


_EVERY_ROW = np.empty(0, np.int64)  # every row of the tape in the packed gate gradients
#: The weights' gradient leaves the steps past the sequences' ends out of its product where
#: they are at least this fraction of the tape's rows (their gate gradients are zero).
KEEP_SAVING = 0.05


def _kept_rows(lengths: np.ndarray, steps: int) -> np.ndarray | None:
    """The rows ``t * B + n`` of a tape of ``steps`` steps with ``lengths`` (B,) that lie
    inside their sequences (``t < lengths[n]``), in order; None (every row) where leaving
    the others out spares less than :data:`KEEP_SAVING` of the rows."""
    batch = lengths.shape[0]
    if int(lengths.sum()) > (1 - KEEP_SAVING) * steps * batch:
        return None
    return np.flatnonzero((np.arange(steps)[:, None] < lengths[None, :]).ravel())


def _slots(kept: np.ndarray | None, count: int) -> np.ndarray:
    """Where :func:`_walk_back` puts each of a tape's ``count`` rows in the packed gate
    gradients: ``kept`` (:func:`_kept_rows`) in order, the others nowhere (-1); every row
    in its place where ``kept`` is None (an empty array)."""
    if kept is None:
        return _EVERY_ROW
    slots = np.full(count, -1, np.int64)
    slots[kept] = np.arange(kept.shape[0])
    return slots


#: Side of the square tiles :func:`_transpose_into` copies (a tile's rows of the source and
#: of the destination stay in L1 cache while it is copied).
TILE = 16


@numba.njit(cache=True, nogil=True)
def _transpose_into(src, dst):  # pragma: no cover - compiled
    """``dst[...] = src.T`` for ``src`` (K, N) and a C-contiguous ``dst`` (N, K), in square
    tiles of :data:`TILE`, on the caller's thread (two threads gained nothing measurable at
    these sizes). NumPy's copy of a transposed array read or wrote a cache line for every
    entry: 4.6-7 ns an entry at the sizes of the backward pass (at (B, T, I, H) =
    (4, 100, 128, 256) its transposes took 2.4 of its 14 ms)."""
    rows, columns = src.shape
    done_rows = 0
    if src.strides[1] == src.itemsize and dst.strides[1] == dst.itemsize:
        # Rows contiguous: 8 x 8 blocks in registers (:data:`._simd.transpose8`), two side by
        # side so that each row of dst gets whole cache lines: 0.85-1.8 ns an entry in the
        # tiles below, ~0.2 in blocks (float32).
        done_rows = rows - rows % 16
        blocked_columns = columns - columns % 8
        for i0 in range(0, done_rows, 16):
            for j0 in range(0, blocked_columns, 8):
                transpose8(src, i0, j0, dst, j0, i0)
                transpose8(src, i0 + 8, j0, dst, j0, i0 + 8)
            for j in range(blocked_columns, columns):
                row = dst[j]
                for i in range(i0, i0 + 16):
                    row[i] = src[i, j]
    for i0 in range(done_rows, rows, TILE):
        i1 = min(rows, i0 + TILE)
        for j0 in range(0, columns, TILE):
            for j in range(j0, min(columns, j0 + TILE)):
                row = dst[j]
                for i in range(i0, i1):
                    row[i] = src[i, j]


def _product(a: np.ndarray, packed: np.ndarray, columns: int, out: np.ndarray) -> np.ndarray:
    """``out`` (M, P * C) <- ``a`` (M, K) ``@ w``, ``w`` (K, N) packed by
    :func:`.numba_scan._pack_columns` (``packed`` (P, K, C)), its ``columns`` (N) columns
    (zero past them); returns ``out``. The rows in
    blocks that the threads claim (:func:`.numba_scan._packed_product_call`; blocks of at
    least 6 rows, about four a thread, at most 96), each thread zeroing its blocks' rows of
    the result before it sums into them. Split evenly instead, one thread had waited ~5 ms for
    the other at (B, T, I, H) = (16, 100, 128, 256) (the cores ran at 70 and 48
    GFLOP/s)."""
    rows = a.shape[0]
    threads = max(1, min(get_num_threads(), rows // 16))
    block = 6 * max(1, min(16, rows // (24 * threads)))
    sync = np.zeros(CLAIMS + 1, np.int64)
    # The caller's part returns once every block is done, whoever did it; a thread that
    # starts late finds none left.
    used = used_panels(columns, packed.shape[2])
    run_parts(_packed_product_call, [(packed, used, a, 0, rows, out, 0, sync, block, True,
                                      home)
                                     for home in range(threads)], wait=False, bell=True)
    return out
