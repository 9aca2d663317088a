"""LSTM variants in pure Array-API code: projections, peepholes, a cell clip, coupled gates.

One layer and one direction, forward (:func:`variant_scan`), forward with a tape
(:func:`variant_scan_train`) and backward (:func:`variant_scan_backward`), with the signatures
of :func:`lstm_xp._functional.layer_scan` and its training pair plus two weights (``weight_hr``
and ``peephole``, None when unused) and the :class:`VariantOptions` (bound once per model).

Per step, gates in PyTorch's order i, f, g, o, ``z`` the pre-activations with the bias::

    z_i += p_i * c_{t-1},  z_f += p_f * c_{t-1}              peepholes (ONNX semantics)
    z_i, z_f, z_g = clip(z_i), clip(z_f), clip(z_g)             cell clip (ONNX: every
    i = sigmoid(z_i);  f = 1 - i if input_forget else sigmoid(z_f);   activation's input)
    g = tanh(z_g);  c_t = f * c_{t-1} + i * g
    z_o += p_o * c_t;  o = sigmoid(clip(z_o))
    m = o * tanh(c_t);  h_t = m @ W_hr^T if proj_size else m      (LSTMP, PyTorch)

With ``layer_norm`` (Ba, Kiros & Hinton 2016, section 3.1: normalise the summed inputs of
a recurrent layer at every step), ``z`` becomes ``LN(z; a_g, b_g)`` over its 4H values and
the cell's output nonlinearity reads ``LN(c_t; a_c, b_c)`` over its H values, where
``LN(v; a, b) = a * (v - mean(v)) / sqrt(var(v) + 1e-5) + b`` per sequence, with learned
gains ``ln_gates_weight`` (4H,), ``ln_cell_weight`` (H,) (initially 1) and biases
``ln_gates_bias``, ``ln_cell_bias`` (initially 0). It combines with ``proj_size``; with
peepholes, the clip or coupled gates it is refused (no common definition of the mix).

``clip(z) = min(max(z, -clip), clip)`` and its derivative 1 inside, 0 outside; the clip
applies to the gates' pre-activations, not to the cell state (checked against ONNX
Runtime, whose outputs differ when the cell is clipped before its tanh). With
``input_forget`` the forget gate reads neither its weights nor ``p_f`` (as in ONNX Runtime):
their gradients are zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._backend import device as device_of
from ._backprop import split_by_length
from ._checks import check_flag, check_real
from ._functional import input_projection, sigmoid
from ._typing import Array, Namespace
from .errors import ConfigError


@dataclass(frozen=True)
class VariantOptions:
    """The cell options of a model (defaults: the plain LSTM).

    Attributes
    ----------
    proj_size : int
        0, or the size ``P < H`` of the projected hidden state (``weight_hr`` (P, H)).
    peephole : bool
        Peephole weights ``p_i, p_f, p_o`` (a (3H,) ``peephole`` vector, in that order).
    clip : float or None
        Cell clip threshold, as ONNX's ``clip`` attribute.
    input_forget : bool
        Couple the gates: ``f = 1 - i`` (ONNX's ``input_forget``).
    layer_norm : bool
        Layer normalisation of the gate pre-activations and of the cell state (see above).
    """

    proj_size: int = 0
    peephole: bool = False
    clip: float | None = None
    input_forget: bool = False
    layer_norm: bool = False

    def names(self) -> frozenset[str]:
        """The options that differ from the plain LSTM."""
        return frozenset(name for name, on in (
            ("proj_size", self.proj_size > 0), ("peephole", self.peephole),
            ("clip", self.clip is not None), ("input_forget", self.input_forget),
            ("layer_norm", self.layer_norm)) if on)


@dataclass
class VariantTape:
    """What :func:`variant_scan_backward` needs of one layer and direction (see
    :class:`lstm_xp._backprop.LayerTape`); ``raw`` holds the clipped gates' pre-activations
    (T, B, 4H) when there is a clip, ``cells`` the cell states (T, B, H)."""

    x: Array
    weight_ih: Array
    weight_hh: Array
    bias: Array | None
    weight_hr: Array | None
    peephole: Array | None
    gates: Array
    cells: Array
    raw: Array | None
    hidden_in: Array
    h0: Array
    c0: Array
    reverse: bool
    lengths: Array | None
    ln: tuple[Array, ...] | None = None
    normed: list[Any] | None = None  # per step: (z_hat, 1/sigma_z, c_hat, 1/sigma_c)


def variant_options(hidden: int, proj_size: Any, peephole: Any, clip: Any,
                    input_forget: Any, layer_norm: Any = False) -> VariantOptions:
    """Check the cell options' types, ranges and combinations (see :class:`lstm_xp.LSTM`)."""
    if isinstance(proj_size, bool) or not isinstance(proj_size, int) or \
            not 0 <= proj_size < hidden:
        raise ConfigError(f"proj_size must be an integer in 0..hidden_size-1 = 0..{hidden - 1} "
                          f"(0: no projection); got {proj_size!r}.")
    if clip is not None:
        clip = check_real("clip", clip, 0.0, math.inf, low_open=True)
    options = VariantOptions(int(proj_size), check_flag("peephole", peephole), clip,
                             check_flag("input_forget", input_forget),
                             check_flag("layer_norm", layer_norm))
    mixed = sorted(options.names() & {"peephole", "clip", "input_forget"})
    if options.layer_norm and mixed:
        raise ConfigError(f"layer_norm=True does not combine with {', '.join(mixed)}: "
                          "normalised gates with peepholes, a clip or coupled gates have no "
                          "common definition. It combines with proj_size, layers, "
                          "bidirectional and direction.")
    return options


#: Every option's value for the plain LSTM (``direction`` included).
DEFAULT_OPTIONS: dict[str, Any] = {"proj_size": 0, "peephole": False, "clip": None,
                                   "input_forget": False, "direction": "forward",
                                   "layer_norm": False}

_LN_EPS = 1e-5
#: The layer-norm parameters, in the order ``step`` takes them.
LN_KINDS = ("ln_gates_weight", "ln_gates_bias", "ln_cell_weight", "ln_cell_bias")


def _normalise(xp: Namespace, v: Array) -> tuple[Array, Array]:
    """``(v - mean) / sqrt(var + eps)`` over the last axis, and ``1 / sqrt(var + eps)``
    (B, 1)."""
    centred = v - xp.mean(v, axis=-1, keepdims=True)
    inv = 1.0 / xp.sqrt(xp.mean(centred * centred, axis=-1, keepdims=True) + _LN_EPS)
    return centred * inv, inv


def _normalise_backward(xp: Namespace, d_hat: Array, hat: Array, inv: Array) -> Array:
    """The gradient with respect to ``v`` of :func:`_normalise`'s output, given the gradient
    ``d_hat`` with respect to it."""
    return inv * (d_hat - xp.mean(d_hat, axis=-1, keepdims=True)
                  - hat * xp.mean(d_hat * hat, axis=-1, keepdims=True))


def _clip(xp: Namespace, z: Array, clip: float | None) -> Array:
    return z if clip is None else xp.clip(z, min=-clip, max=clip)


def _inside(xp: Namespace, z: Array, clip: float | None) -> Array | None:
    """The derivative of :func:`_clip`: 1 inside the interval, 0 outside (None: no clip)."""
    return None if clip is None else xp.astype(xp.abs(z) <= clip, z.dtype)


def step(xp: Namespace, z: Array, c: Array, weight_hr: Array | None, peep: Array | None,
         o: VariantOptions, ln: tuple[Array, ...] | None = None,
         ) -> tuple[Array, Array, tuple[Array, ...], Array, tuple[Array, ...] | None]:
    """One step: ``(h_t, c_t, (i, f, g, o), raw, normed)``, ``raw`` the (B, 4H)
    pre-activations before the clip (with the peepholes), ``normed`` with ``layer_norm`` the
    normalised gates and cell and their ``1 / sigma`` (else None). ``ln`` holds the four
    layer-norm parameters (gates' gain and bias, cell's gain and bias)."""
    hidden = c.shape[-1]
    normed = None
    if ln is not None:
        z_hat, z_inv = _normalise(xp, z)
        z = ln[0] * z_hat + ln[1]
    zi, zf = z[..., :hidden], z[..., hidden : 2 * hidden]
    zg, zo = z[..., 2 * hidden : 3 * hidden], z[..., 3 * hidden :]
    if peep is not None:
        zi = zi + peep[:hidden] * c
        zf = zf + peep[hidden : 2 * hidden] * c
    i = sigmoid(xp, _clip(xp, zi, o.clip))
    f = 1.0 - i if o.input_forget else sigmoid(xp, _clip(xp, zf, o.clip))
    g = xp.tanh(_clip(xp, zg, o.clip))
    c_new = f * c + i * g
    if peep is not None:
        zo = zo + peep[2 * hidden :] * c_new
    out = sigmoid(xp, _clip(xp, zo, o.clip))
    cell_out = c_new  # the cell itself is not clipped (as in ONNX Runtime)
    if ln is not None:
        c_hat, c_inv = _normalise(xp, c_new)
        cell_out = ln[2] * c_hat + ln[3]
        normed = (z_hat, z_inv, c_hat, c_inv)
    m = out * xp.tanh(cell_out)
    h_new = m if weight_hr is None else m @ xp.matrix_transpose(weight_hr)
    return h_new, c_new, (i, f, g, out), xp.concat([zi, zf, zg, zo], axis=-1), normed


def _walk(xp: Namespace, x: Array, weight_ih: Array, weight_hh: Array, bias: Array | None,
          h0: Array, c0: Array, weight_hr: Array | None, peep: Array | None,
          ln: tuple[Array, ...] | None, options: VariantOptions, reverse: bool,
          lengths: Array | None, record: bool,
          ) -> tuple[Array, Array, Array, dict[str, list[Any]]]:
    proj = input_projection(xp, x, weight_ih, bias)
    w_hh_t = xp.matrix_transpose(weight_hh)
    steps = x.shape[0]
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    outputs: list[Array] = [None] * steps
    kept: dict[str, list[Any]] = {k: [None] * steps
                                  for k in ("gates", "cells", "raw", "h_in", "normed")}
    h, c = h0, c0
    for t in order:
        h_new, c_new, acts, raw, normed = step(xp, proj[t, ...] + h @ w_hh_t, c, weight_hr,
                                               peep, options, ln)
        if record:
            kept["h_in"][t] = h
            kept["gates"][t] = xp.concat(acts, axis=-1)
            kept["raw"][t] = raw
            kept["normed"][t] = normed
        if lengths is None:
            h, c, outputs[t] = h_new, c_new, h_new
        else:
            valid = xp.expand_dims(lengths > t, axis=1)
            h, c = xp.where(valid, h_new, h), xp.where(valid, c_new, c)
            outputs[t] = xp.where(valid, h_new, xp.zeros_like(h_new))
        if record:
            kept["cells"][t] = c
    return xp.stack(outputs, axis=0), h, c, kept


def _ln(*params: Array | None) -> tuple[Array, ...] | None:
    return None if params[0] is None else tuple(params)


def variant_scan(xp: Namespace, x: Array, weight_ih: Array, weight_hh: Array,
                 bias: Array | None, h0: Array, c0: Array, weight_hr: Array | None = None,
                 peephole: Array | None = None, ln_gates_weight: Array | None = None,
                 ln_gates_bias: Array | None = None, ln_cell_weight: Array | None = None,
                 ln_cell_bias: Array | None = None, *, options: VariantOptions,
                 reverse: bool = False,
                 lengths: Array | None = None) -> tuple[Array, Array, Array]:
    """One layer, one direction, with the variant cell. ``h0`` is (B, P) with a projection,
    ``c0`` (B, H); returns ``y`` (T, B, P or H), ``h_n``, ``c_n``."""
    y, h, c, _ = _walk(xp, x, weight_ih, weight_hh, bias, h0, c0, weight_hr, peephole,
                       _ln(ln_gates_weight, ln_gates_bias, ln_cell_weight, ln_cell_bias),
                       options, reverse, lengths, record=False)
    return y, h, c


def variant_scan_train(xp: Namespace, x: Array, weight_ih: Array, weight_hh: Array,
                       bias: Array | None, h0: Array, c0: Array, weight_hr: Array | None = None,
                       peephole: Array | None = None, ln_gates_weight: Array | None = None,
                       ln_gates_bias: Array | None = None, ln_cell_weight: Array | None = None,
                       ln_cell_bias: Array | None = None, *, options: VariantOptions,
                       reverse: bool = False, lengths: Array | None = None,
                       ) -> tuple[Array, Array, Array, VariantTape]:
    """:func:`variant_scan` with the tape :func:`variant_scan_backward` reads."""
    ln = _ln(ln_gates_weight, ln_gates_bias, ln_cell_weight, ln_cell_bias)
    y, h, c, kept = _walk(xp, x, weight_ih, weight_hh, bias, h0, c0, weight_hr, peephole, ln,
                          options, reverse, lengths, record=True)
    tape = VariantTape(x, weight_ih, weight_hh, bias, weight_hr, peephole,
                       xp.stack(kept["gates"], axis=0), xp.stack(kept["cells"], axis=0),
                       xp.stack(kept["raw"], axis=0) if options.clip is not None else None,
                       xp.stack(kept["h_in"], axis=0), h0, c0, reverse, lengths, ln,
                       kept["normed"] if ln is not None else None)
    return y, h, c, tape


def variant_scan_backward(xp: Namespace, tape: VariantTape, dy: Array, dh_n: Array | None,
                          dc_n: Array | None, *, options: VariantOptions,
                          ) -> tuple[Array, Array, Array, dict[str, Array]]:
    """Gradients of one layer and direction: ``dx`` (T, B, I), ``dh0``, ``dc0``, and
    ``weight_ih``, ``weight_hh``, ``bias`` (both PyTorch biases), ``weight_hr``,
    ``peephole`` where the layer has them."""
    steps, batch, features = tape.x.shape
    hidden = tape.c0.shape[-1]
    size_h = tape.h0.shape[-1]
    clip = options.clip
    dh = xp.zeros_like(tape.h0) if dh_n is None else dh_n
    dc = xp.zeros_like(tape.c0) if dc_n is None else dc_n
    peep = tape.peephole
    order = range(steps) if tape.reverse else range(steps - 1, -1, -1)
    dzs: list[Array] = [None] * steps
    dhs: list[Array] = [None] * steps  # gradient into each step's h_t (for weight_hr)
    ms: list[Array] = [None] * steps
    d_peep = [xp.zeros_like(tape.c0) for _ in range(3)]
    gates_zero = xp.zeros((batch, 4 * hidden), dtype=tape.c0.dtype, device=device_of(tape.c0))
    d_ln = [gates_zero, gates_zero, xp.zeros_like(tape.c0), xp.zeros_like(tape.c0)]
    for t in order:
        earlier = t + 1 if tape.reverse else t - 1
        c_prev = tape.cells[earlier, ...] if 0 <= earlier < steps else tape.c0
        c_t = tape.cells[t, ...]
        act = tape.gates[t, ...]
        i, f = act[..., :hidden], act[..., hidden : 2 * hidden]
        g, o = act[..., 2 * hidden : 3 * hidden], act[..., 3 * hidden :]
        raw = tape.raw
        inside = [None] * 4 if raw is None else \
            [_inside(xp, raw[t, ..., k * hidden : (k + 1) * hidden], clip) for k in range(4)]
        dh_step, dc_step, dh_pass, dc_pass = split_by_length(xp, tape.lengths, t, dh, dc,
                                                             dy[t, ...])
        normed: Any = None if tape.normed is None else tape.normed[t]
        ln = tape.ln
        cell_out = c_t if ln is None else ln[2] * normed[2] + ln[3]
        tc = xp.tanh(cell_out)
        dhs[t], ms[t] = dh_step, o * tc
        dm = dh_step if tape.weight_hr is None else dh_step @ tape.weight_hr
        d_out = dm * o * (1.0 - tc * tc)  # into the output tanh's input
        if ln is not None:  # cell_out = a_c * c_hat + b_c, c_hat = LN(c_t)
            d_ln[2] = d_ln[2] + d_out * normed[2]
            d_ln[3] = d_ln[3] + d_out
            d_out = _normalise_backward(xp, d_out * ln[2], normed[2], normed[3])
        dc_t = dc_step + d_out
        dz_o = dm * tc * o * (1.0 - o)
        if inside[3] is not None:
            dz_o = dz_o * inside[3]
        if peep is not None:
            dc_t = dc_t + dz_o * peep[2 * hidden :]
            d_peep[2] = d_peep[2] + dz_o * c_t
        d_i = dc_t * g
        d_f = dc_t * c_prev
        if options.input_forget:
            d_i = d_i - d_f
            dz_f = xp.zeros_like(d_f)
        else:
            dz_f = d_f * f * (1.0 - f)
            if inside[1] is not None:
                dz_f = dz_f * inside[1]
        dz_i = d_i * i * (1.0 - i)
        dz_g = dc_t * i * (1.0 - g * g)
        if inside[0] is not None:
            dz_i, dz_g = dz_i * inside[0], dz_g * inside[2]
        dc = dc_t * f
        if peep is not None:
            dc = dc + dz_i * peep[:hidden] + dz_f * peep[hidden : 2 * hidden]
            d_peep[0] = d_peep[0] + dz_i * c_prev
            d_peep[1] = d_peep[1] + dz_f * c_prev
        dz = xp.concat([dz_i, dz_f, dz_g, dz_o], axis=-1)
        if ln is not None:  # the gates read a_g * z_hat + b_g, z_hat = LN(z)
            d_ln[0] = d_ln[0] + dz * normed[0]
            d_ln[1] = d_ln[1] + dz
            dz = _normalise_backward(xp, dz * ln[0], normed[0], normed[1])
        dzs[t] = dz
        dh = dz @ tape.weight_hh
        if dh_pass is not None:
            dh, dc = dh + dh_pass, dc + dc_pass
    rows = steps * batch
    dz_all = xp.reshape(xp.stack(dzs, axis=0), (rows, 4 * hidden))
    dz_t = xp.matrix_transpose(dz_all)
    grads = {
        "weight_ih": dz_t @ xp.reshape(tape.x, (rows, features)),
        "weight_hh": dz_t @ xp.reshape(tape.hidden_in, (rows, size_h)),
    }
    if tape.bias is not None:
        grads["bias"] = xp.sum(dz_all, axis=0)
    if tape.weight_hr is not None:
        grads["weight_hr"] = (xp.matrix_transpose(xp.reshape(xp.stack(dhs, axis=0),
                                                             (rows, size_h)))
                              @ xp.reshape(xp.stack(ms, axis=0), (rows, hidden)))
    if peep is not None:
        grads["peephole"] = xp.concat([xp.sum(d, axis=0) for d in d_peep], axis=0)
    if tape.ln is not None:
        for name, d in zip(LN_KINDS, d_ln, strict=True):
            grads[name] = xp.sum(d, axis=0)
    dx = xp.reshape(dz_all @ tape.weight_ih, (steps, batch, features))
    return dx, dh, dc, grads
