"""Pure Array-API math of the LSTM: written once, for every standard namespace.

Every function takes the namespace ``xp`` as its first argument and uses nothing outside the
Array API standard, so it runs unchanged on NumPy, CuPy, PyTorch, JAX and array-api-strict.
Arrays are created only from other arrays, so they stay on their inputs' device.

Shapes: ``T`` time steps, ``B`` batch, ``I`` input features, ``H`` hidden units, gates fused
along a ``4H`` axis in PyTorch's order i, f, g, o:

    i = sigmoid(x W_ii^T + h W_hi^T + b_i)        input gate
    f = sigmoid(x W_if^T + h W_hf^T + b_f)        forget gate
    g = tanh   (x W_ig^T + h W_hg^T + b_g)        candidate cell (the seed's C~)
    o = sigmoid(x W_io^T + h W_ho^T + b_o)        output gate
    c' = f * c + i * g
    h' = o * tanh(c')
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ._typing import Array, LayerWeights, Namespace


def summed_bias(bias_ih: Array | None, bias_hh: Array | None) -> Array | None:
    """The one bias the gates need: PyTorch keeps two (``bias_ih + bias_hh``), or None."""
    return None if bias_ih is None else bias_ih + bias_hh


def sigmoid(xp: Namespace, z: Array) -> Array:
    """Logistic sigmoid as ``0.5 * tanh(z / 2) + 0.5``.

    The standard has no sigmoid; ``1 / (1 + exp(-z))`` overflows ``exp`` for large negative
    ``z`` (a warning in NumPy, ``inf`` in float16 from ``|z| > 11``). ``tanh`` saturates
    instead, so any finite ``z`` gives a value in [0, 1] with no warning and no NaN.
    """
    return 0.5 * xp.tanh(0.5 * z) + 0.5


def cell_activations(
    xp: Namespace, gates: Array, c: Array
) -> tuple[Array, Array, tuple[Array, Array, Array, Array]]:
    """Gate nonlinearities and state update for one step, with the activations.

    Parameters
    ----------
    gates : array, shape (B, 4H)
        Pre-activations in gate order i, f, g, o.
    c : array, shape (B, H)
        Cell state before the step.

    Returns
    -------
    h, c : arrays, shape (B, H)
        Hidden and cell state after the step.
    (i, f, g, o) : arrays, shape (B, H)
        The gate activations (what backpropagation needs).
    """
    hidden = c.shape[-1]
    i = sigmoid(xp, gates[..., :hidden])
    f = sigmoid(xp, gates[..., hidden : 2 * hidden])
    g = xp.tanh(gates[..., 2 * hidden : 3 * hidden])
    o = sigmoid(xp, gates[..., 3 * hidden :])
    c_new = f * c + i * g
    return o * xp.tanh(c_new), c_new, (i, f, g, o)


def cell_update(xp: Namespace, gates: Array, c: Array) -> tuple[Array, Array]:
    """:func:`cell_activations` without the activations: the new ``(h, c)``, each (B, H)."""
    h, c_new, _ = cell_activations(xp, gates, c)
    return h, c_new


def step_state(
    xp: Namespace, lengths: Array | None, t: Any, h_new: Array, c_new: Array, h: Array,
    c: Array, zeros: Array | None,
) -> tuple[Array, Array, Array]:
    """The state after step ``t`` and the step's output, honouring ``lengths``.

    Without lengths: ``(h_new, c_new, h_new)``. With lengths (B,), sequences with
    ``t >= lengths[b]`` keep their state ``(h, c)`` and output ``zeros`` (B, H).
    """
    if lengths is None:
        return h_new, c_new, h_new
    valid = xp.expand_dims(lengths > t, axis=1)  # (B, 1)
    return (xp.where(valid, h_new, h), xp.where(valid, c_new, c),
            xp.where(valid, h_new, zeros))


def zero_padding(xp: Namespace, x: Array, lengths: Array, device: Any) -> Array:
    """``x`` (T, B, I) with every step past its sequence's length (``lengths`` (B,)) zero.

    The forward pass ignores those steps, but a training pass multiplies their inputs by
    their (zero) gate gradients for the weights' gradient: padding of NaN or inf would
    make it NaN.
    """
    valid = xp.arange(x.shape[0], device=device)[:, None] < lengths[None, :]  # (T, B)
    return xp.where(valid[:, :, None], x, xp.zeros_like(x))


def cell_step(
    xp: Namespace,
    x: Array,
    h: Array,
    c: Array,
    weight_ih: Array,
    weight_hh: Array,
    bias: Array | None,
) -> tuple[Array, Array]:
    """One LSTM step from an input ``x`` of shape (B, I) and state ``h``, ``c`` of shape (B, H).

    ``weight_ih`` is (4H, I), ``weight_hh`` (4H, H), ``bias`` (4H,) or None (the sum of
    PyTorch's ``bias_ih`` and ``bias_hh``). Returns the new ``(h, c)``, each (B, H).
    """
    gates = x @ xp.matrix_transpose(weight_ih) + h @ xp.matrix_transpose(weight_hh)
    if bias is not None:
        gates = gates + bias
    return cell_update(xp, gates, c)


def input_projection(xp: Namespace, x: Array, weight_ih: Array, bias: Array | None) -> Array:
    """Input contribution to the gates of every step in one matmul.

    ``x`` (T, B, I) and ``weight_ih`` (4H, I) give (T, B, 4H), bias included.
    """
    steps, batch, features = x.shape
    proj = xp.reshape(x, (steps * batch, features)) @ xp.matrix_transpose(weight_ih)
    if bias is not None:
        proj = proj + bias
    return xp.reshape(proj, (steps, batch, proj.shape[-1]))


class LayerScan(Protocol):
    """Signature shared by :func:`layer_scan` and the fused kernels in ``lstm_xp.kernels``."""

    def __call__(
        self,
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
    ) -> tuple[Array, Array, Array]: ...


def layer_scan(
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
) -> tuple[Array, Array, Array]:
    """Run one layer in one direction over a whole sequence (the reference implementation).

    Parameters
    ----------
    x : array, shape (T, B, I)
    weight_ih : array, shape (4H, I)
    weight_hh : array, shape (4H, H)
    bias : array, shape (4H,), or None
    h0, c0 : arrays, shape (B, H)
    reverse : bool
        Walk the sequence from its last step to its first (the backward direction); outputs
        stay aligned with the input's time axis.
    lengths : integer array, shape (B,), optional
        Valid steps per sequence (0..T), in any order. Steps at ``t >= lengths[b]`` leave
        sequence ``b``'s state unchanged and output zeros, so the forward direction stops at
        each sequence's own last step and the backward direction starts there, as for
        PyTorch's packed sequences.

    Returns
    -------
    y : array, shape (T, B, H)
        Hidden state after every step (zero past each sequence's length).
    h_n, c_n : arrays, shape (B, H)
        State after the last valid step walked.
    """
    proj = input_projection(xp, x, weight_ih, bias)
    w_hh_t = xp.matrix_transpose(weight_hh)
    steps = x.shape[0]
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    outputs: list[Array] = [None] * steps
    zeros = None if lengths is None else xp.zeros_like(h0)
    h, c = h0, c0
    for t in order:
        h_new, c_new = cell_update(xp, proj[t, ...] + h @ w_hh_t, c)
        h, c, outputs[t] = step_state(xp, lengths, t, h_new, c_new, h, c, zeros)
    return xp.stack(outputs, axis=0), h, c


#: The shape ``(T, B, I, H)`` of a layer's scans, I None in a backward pass.
ScanShape = tuple[int, int, int | None, int]
#: How a stack runs the independent scans of a layer's directions: ``side_by_side(calls,
#: shape, dtype)``, ``calls`` a list of callables without arguments, returns their results
#: in order; ``shape`` (:data:`ScanShape`) and ``dtype`` those of each scan.
SideBySide = Callable[[Sequence[Callable[[], Any]], ScanShape | None, Any], list[Any]]


def one_after_another(calls: Sequence[Callable[[], Any]], shape: ScanShape | None = None,
                      dtype: Any = None) -> list[Any]:
    """Each of ``calls`` in turn on the calling thread: their results, in order."""
    return [call() for call in calls]


def stack_forward(
    xp: Namespace,
    x: Array,
    layers: Sequence[Sequence[LayerWeights]],
    h0: Array,
    c0: Array,
    scan: Callable[..., tuple[Any, ...]] = layer_scan,
    lengths: Array | None = None,
    dropout_masks: Sequence[Array | None] | None = None,
    reverse: bool = False,
    fresh: bool = False,
    side_by_side: SideBySide = one_after_another,
) -> tuple[Array, Array, Array, list[list[Any]]]:
    """Stacked, optionally bidirectional LSTM over a sequence: the loop over layers and
    directions that inference and training share.

    Parameters
    ----------
    x : array, shape (T, B, I)
    layers : sequence over layers of sequences over directions (1 or 2) of
        ``(weight_ih, weight_hh, bias_ih, bias_hh)`` (biases None when absent). Layer 0 takes
        I features, later layers D*H.
    h0, c0 : arrays, shape (L*D, B, H)
        Initial state, indexed ``layer * D + direction`` as in ``torch.nn.LSTM``.
    scan : callable
        Runs one layer in one direction with :func:`layer_scan`'s signature: :func:`layer_scan`
        or a fused kernel (returning ``(y, h, c)``), or a training scan such as
        :func:`lstm_xp._backprop.layer_scan_train` (returning ``(y, h, c, tape)``).
    lengths : integer array, shape (B,), optional
        Valid steps per sequence, see :func:`layer_scan`.
    dropout_masks : sequence of arrays (T, B, D*H) or None, optional
        ``dropout_masks[k]``, already scaled by 1/(1-p), multiplies layer ``k``'s output before
        layer ``k + 1`` reads it (training only; None: no dropout there).
    reverse : bool
        A unidirectional stack that reads the sequence backwards (``direction="reverse"``):
        every layer walks from the last step to the first.
    fresh : bool
        ``scan`` returns ``h`` and ``c`` as new arrays that nothing else holds, so a one-layer
        stack's are returned without a copy.
    side_by_side : callable
        Runs a layer's directions, ``scan`` called with each direction's arguments (a list
        of calls without arguments; and the shape ``(T, B, I, H)`` and dtype of each), and
        returns their results in order: one after the other by default, or at once on
        threads of their own (see :attr:`lstm_xp.kernels.base.LayerwiseKernel.side_by_side`).

    Layers with the variants' two extra weights (``weight_hr``, ``peephole``, see
    :mod:`lstm_xp._variants`) pass them to ``scan`` after ``c0``.

    Returns
    -------
    y : array, shape (T, B, D*H)
        Last layer's hidden states, forward direction first along the feature axis.
    h_n, c_n : arrays, shape (L*D, B, H)
    tapes : list over layers of lists over directions
        What ``scan`` returned beyond ``(y, h, c)``, or None.
    """
    h_n: list[Array] = []
    c_n: list[Array] = []
    tapes: list[list[Any]] = []
    layer_input = x
    for index, directions in enumerate(layers):
        calls = []
        for direction, weights in enumerate(directions):
            extra: list[Array]
            w_ih, w_hh, b_ih, b_hh, *extra = weights
            k = index * len(directions) + direction
            calls.append(functools.partial(
                scan, xp, layer_input, w_ih, w_hh, summed_bias(b_ih, b_hh), h0[k, ...],
                c0[k, ...], *extra, reverse=direction == 1 or reverse, lengths=lengths))
        outs: list[Array] = []
        tapes.append([])
        steps, batch, features = layer_input.shape
        shape = (steps, batch, features, directions[0][1].shape[0] // 4)
        for y, h, c, *tape in side_by_side(calls, shape, layer_input.dtype):
            outs.append(y)
            h_n.append(h)
            c_n.append(c)
            tapes[-1].append(tape[0] if tape else None)
        layer_input = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
        if dropout_masks is not None and index < len(layers) - 1 \
                and dropout_masks[index] is not None:
            layer_input = layer_input * dropout_masks[index]
    return layer_input, _stacked(xp, h_n, fresh), _stacked(xp, c_n, fresh), tapes


def _stacked(xp: Namespace, arrays: list[Array], fresh: bool = False) -> Array:
    """``xp.stack(arrays)``, a new array; one array is copied with a new leading axis instead
    (3x cheaper than NumPy's stack, which at B = 1 and T = 1 was a sixth of a call). A copy,
    as a stack is: a scan may hand back an array the caller also holds (its ``h0``); unless
    the scan's arrays are ``fresh`` (its own new ones: the copies took 3 us of a 75 us
    call)."""
    if len(arrays) == 1:
        return arrays[0][None, ...] if fresh else xp.asarray(arrays[0], copy=True)[None, ...]
    return xp.stack(arrays, axis=0)
