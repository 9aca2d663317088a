"""Backpropagation through time, in pure Array-API code like the forward pass.

:func:`layer_scan_train` runs one layer in one direction like
:func:`lstm_xp._functional.layer_scan` and keeps a :class:`LayerTape`: the four gate
activations and the cell state of every step, and the hidden state carried into every step.
That is ``6*T*B*H`` values per layer and direction, plus references to the layer's input and
weights. :func:`layer_scan_backward` walks the steps in reverse and returns the gradients.

Per step, with ``dh`` and ``dc`` flowing into the state after the step::

    tc  = tanh(c_t)
    dc_t = dc + dh * o * (1 - tc^2)
    dz  = [dc_t * g * i(1-i), dc_t * c_{t-1} * f(1-f), dc_t * i * (1-g^2), dh * tc * o(1-o)]
    dh_{t-1} = dz @ W_hh,  dc_{t-1} = dc_t * f

and, once for all steps, ``dW_ih = dz^T x``, ``dW_hh = dz^T h_{t-1}``, ``db = sum(dz)``,
``dx = dz @ W_ih`` as single matrix products over the (T*B) rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._functional import (
    SideBySide,
    cell_activations,
    input_projection,
    one_after_another,
    step_state,
)
from ._typing import Array, Namespace


@dataclass
class LayerTape:
    """What the backward pass of one layer and direction needs.

    Attributes
    ----------
    x : (T, B, I) layer input
    weight_ih, weight_hh, bias : the weights the forward pass used
    gates : (T, B, 4H) activations i, f, g, o after their nonlinearities
    cells : (T, B, H) cell state after each step (carried unchanged past a sequence's length)
    hidden_in : (T, B, H) hidden state each step started from
    h0, c0 : (B, H) initial state
    reverse : bool
    lengths : (B,) integers or None
    """

    x: Array
    weight_ih: Array
    weight_hh: Array
    bias: Array | None
    gates: Array
    cells: Array
    hidden_in: Array
    h0: Array
    c0: Array
    reverse: bool
    lengths: Array | None


def layer_scan_train(
    xp: Namespace,
    x: Array,
    weight_ih: Array,
    weight_hh: Array,
    bias: Array | None,
    h0: Array,
    c0: Array,
    *,
    reverse: bool = False,
    lengths: Array | None = None,
) -> tuple[Array, Array, Array, LayerTape]:
    """:func:`lstm_xp._functional.layer_scan` that also returns a :class:`LayerTape`.

    Returns
    -------
    y : (T, B, H), h_n, c_n : (B, H), tape : LayerTape
    """
    proj = input_projection(xp, x, weight_ih, bias)
    w_hh_t = xp.matrix_transpose(weight_hh)
    steps = x.shape[0]
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    outputs: list[Array] = [None] * steps
    gates: list[Array] = [None] * steps
    cells: list[Array] = [None] * steps
    hidden_in: list[Array] = [None] * steps
    zeros = None if lengths is None else xp.zeros_like(h0)
    h, c = h0, c0
    for t in order:
        h_new, c_new, activations = cell_activations(xp, proj[t, ...] + h @ w_hh_t, c)
        hidden_in[t] = h
        gates[t] = xp.concat(activations, axis=-1)
        h, c, outputs[t] = step_state(xp, lengths, t, h_new, c_new, h, c, zeros)
        cells[t] = c
    tape = LayerTape(x, weight_ih, weight_hh, bias, xp.stack(gates, axis=0),
                     xp.stack(cells, axis=0), xp.stack(hidden_in, axis=0), h0, c0, reverse,
                     lengths)
    return xp.stack(outputs, axis=0), h, c, tape


def split_by_length(
    xp: Namespace, lengths: Array | None, t: int, dh: Array, dc: Array, dy_t: Array
) -> tuple[Array, Array, Array | None, Array | None]:
    """The gradients flowing into step ``t``: ``(dh_step, dc_step, dh_pass, dc_pass)``.

    Past a sequence's length the step copied its state: the gradient passes straight through
    (``*_pass``, added to the step's own gradients with respect to its inputs) and the step,
    whose output is a constant zero, gets none. Without lengths nothing passes (None).
    """
    dh_step = dh + dy_t
    if lengths is None:
        return dh_step, dc, None, None
    valid = xp.expand_dims(lengths > t, axis=1)
    return (xp.where(valid, dh_step, xp.zeros_like(dh)), xp.where(valid, dc, xp.zeros_like(dc)),
            xp.where(valid, xp.zeros_like(dh), dh), xp.where(valid, xp.zeros_like(dc), dc))


def layer_scan_backward(
    xp: Namespace, tape: LayerTape, dy: Array, dh_n: Array | None, dc_n: Array | None
) -> tuple[Array, Array, Array, dict[str, Array]]:
    """Gradients of one layer and direction.

    Parameters
    ----------
    tape : LayerTape
    dy : (T, B, H)
        Gradient with respect to the layer's outputs.
    dh_n, dc_n : (B, H) or None
        Gradient with respect to the final state.

    Returns
    -------
    dx : (T, B, I)
    dh0, dc0 : (B, H)
    grads : dict with ``weight_ih`` (4H, I), ``weight_hh`` (4H, H) and, with a bias,
        ``bias`` (4H,), the gradient of both PyTorch biases.
    """
    steps, batch, features = tape.x.shape
    hidden = tape.h0.shape[-1]
    dh = xp.zeros_like(tape.h0) if dh_n is None else dh_n
    dc = xp.zeros_like(tape.c0) if dc_n is None else dc_n
    order = range(steps) if tape.reverse else range(steps - 1, -1, -1)
    dzs: list[Array] = [None] * steps
    for t in order:
        earlier = t + 1 if tape.reverse else t - 1  # the step walked before t
        c_prev = tape.cells[earlier, ...] if 0 <= earlier < steps else tape.c0
        act = tape.gates[t, ...]
        i, f = act[..., :hidden], act[..., hidden : 2 * hidden]
        g, o = act[..., 2 * hidden : 3 * hidden], act[..., 3 * hidden :]
        dh_step, dc_step, dh_pass, dc_pass = split_by_length(xp, tape.lengths, t, dh, dc,
                                                             dy[t, ...])
        tc = xp.tanh(tape.cells[t, ...])
        dc_t = dc_step + dh_step * o * (1.0 - tc * tc)
        dz = xp.concat([
            dc_t * g * i * (1.0 - i),
            dc_t * c_prev * f * (1.0 - f),
            dc_t * i * (1.0 - g * g),
            dh_step * tc * o * (1.0 - o),
        ], axis=-1)
        dzs[t] = dz
        dh = dz @ tape.weight_hh
        dc = dc_t * f
        if dh_pass is not None:
            dh = dh + dh_pass
            dc = dc + dc_pass
    dz_all = xp.reshape(xp.stack(dzs, axis=0), (steps * batch, 4 * hidden))
    dz_t = xp.matrix_transpose(dz_all)
    grads = {
        "weight_ih": dz_t @ xp.reshape(tape.x, (steps * batch, features)),
        "weight_hh": dz_t @ xp.reshape(tape.hidden_in, (steps * batch, hidden)),
    }
    if tape.bias is not None:
        grads["bias"] = xp.sum(dz_all, axis=0)
    dx = xp.reshape(dz_all @ tape.weight_ih, (steps, batch, features))
    return dx, dh, dc, grads


def lstm_backward(
    xp: Namespace,
    tapes: list[list[Any]],
    dy: Array,
    dh_n: Array | None,
    dc_n: Array | None,
    dropout_masks: Sequence[Array | None] | None = None,
    scan_backward: Callable[..., Any] = layer_scan_backward,
    side_by_side: SideBySide = one_after_another,
) -> tuple[Array, Array, Array, list[list[dict[str, Array]]]]:
    """Backward pass of :func:`lstm_xp._functional.stack_forward` run with a training scan;
    ``scan_backward`` is the backward of the ``scan_train`` that made the tapes, and
    ``side_by_side`` runs a layer's directions (as ``stack_forward``'s does).

    Returns ``dx`` (T, B, I), ``dh0`` and ``dc0`` (L*D, B, H), and per layer and direction the
    parameter gradients of :func:`layer_scan_backward`.
    """
    num_dirs = len(tapes[0])
    grads: list[list[dict[str, Array]]] = [[] for _ in tapes]
    dh0: list[Array] = [None] * (len(tapes) * num_dirs)
    dc0: list[Array] = [None] * (len(tapes) * num_dirs)
    d_out = dy
    for index in range(len(tapes) - 1, -1, -1):
        hidden = d_out.shape[-1] // num_dirs
        calls = [functools.partial(
            scan_backward, xp, tape, d_out[..., direction * hidden : (direction + 1) * hidden],
            None if dh_n is None else dh_n[index * num_dirs + direction, ...],
            None if dc_n is None else dc_n[index * num_dirs + direction, ...])
            for direction, tape in enumerate(tapes[index])]
        d_in: Array = None
        shape = (d_out.shape[0], d_out.shape[1], None, hidden)  # the input's width unknown
        for direction, (dx, dh, dc, g) in enumerate(side_by_side(calls, shape, d_out.dtype)):
            k = index * num_dirs + direction
            d_in = dx if d_in is None else d_in + dx
            grads[index].append(g)
            dh0[k], dc0[k] = dh, dc
        if index > 0 and dropout_masks is not None and dropout_masks[index - 1] is not None:
            d_in = d_in * dropout_masks[index - 1]
        d_out = d_in
    return d_out, xp.stack(dh0, axis=0), xp.stack(dc0, axis=0), grads
