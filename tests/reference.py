"""An independent float64 LSTM for checking the library, written from the equations.

It does not call lstm-xp. Unlike the library it loops over batch elements, keeps the four gates
as separate matrices (like the seed), uses the textbook sigmoid ``1 / (1 + exp(-z))``, and walks
the backward direction over a reversed copy of the sequence.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _layer_norm(v, gain, bias):
    return gain * (v - v.mean()) / np.sqrt(v.var() + 1e-5) + bias


def _run_direction(xs, w_ih, w_hh, b_ih, b_hh, h, c, w_hr=None, peephole=None, clip=None,
                   input_forget=False, ln=None):
    """One sequence ``xs`` (T, I) through one layer; returns hidden states (T, H) and (h, c).

    The variants, written from their definitions (ONNX's operator for the peepholes ``p_i,
    p_f, p_o``, the clip of every gate's input and ``f = 1 - i``; PyTorch's LSTMP for
    ``w_hr``; Ba et al.'s layer normalisation of the summed gate inputs and of the cell with
    ``ln = (gates gain, gates bias, cell gain, cell bias)``)."""
    hidden = w_hh.shape[0] // 4
    w = {g: (w_ih[k * hidden:(k + 1) * hidden], w_hh[k * hidden:(k + 1) * hidden],
             b_ih[k * hidden:(k + 1) * hidden] + b_hh[k * hidden:(k + 1) * hidden])
         for k, g in enumerate("ifgo")}
    p = dict(zip("ifo", np.split(np.zeros(3 * hidden) if peephole is None else peephole, 3),
                 strict=True))

    def clipped(z):
        return z if clip is None else np.clip(z, -clip, clip)

    hs = []
    for x in xs:
        pre = {g: wi @ x + wh @ h + b for g, (wi, wh, b) in w.items()}
        if ln is not None:  # normalise the 4H summed inputs together
            z = _layer_norm(np.concatenate([pre[g] for g in "ifgo"]), ln[0], ln[1])
            pre = dict(zip("ifgo", np.split(z, 4), strict=True))
        i = _sigmoid(clipped(pre["i"] + p["i"] * c))
        f = 1.0 - i if input_forget else _sigmoid(clipped(pre["f"] + p["f"] * c))
        g = np.tanh(clipped(pre["g"]))
        c = f * c + i * g
        o = _sigmoid(clipped(pre["o"] + p["o"] * c))
        h = o * np.tanh(c if ln is None else _layer_norm(c, ln[2], ln[3]))
        if w_hr is not None:
            h = w_hr @ h
        hs.append(h)
    return np.array(hs), h, c


def reference_lstm(x, params, num_layers, bidirectional, h0=None, c0=None, *, clip=None,
                   input_forget=False, reverse=False):
    """Reference forward pass.

    Parameters
    ----------
    x : (T, B, I) array
    params : dict
        ``torch.nn.LSTM``-named parameters (biases may be absent: zero), with
        ``weight_hr_l{k}`` for a projection and ``peephole_l{k}`` for peepholes.
    h0, c0 : (L*D, B, P or H) and (L*D, B, H) arrays or None
    clip, input_forget : the variants' options
    reverse : a unidirectional stack that reads the sequence backwards

    Returns
    -------
    y (T, B, D*P), h_n (L*D, B, P), c_n (L*D, B, H), all float64 (P = H without projection).
    """
    x = np.asarray(x, dtype=np.float64)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    steps, batch, _ = x.shape
    dirs = 2 if bidirectional else 1
    hidden = p["weight_hh_l0"].shape[0] // 4
    out = p["weight_hr_l0"].shape[0] if "weight_hr_l0" in p else hidden
    h0 = np.zeros((num_layers * dirs, batch, out)) if h0 is None \
        else np.asarray(h0, dtype=np.float64)
    c0 = np.zeros((num_layers * dirs, batch, hidden)) if c0 is None \
        else np.asarray(c0, dtype=np.float64)
    y = np.zeros((steps, batch, dirs * out))
    h_n = np.zeros_like(h0)
    c_n = np.zeros_like(c0)
    for b in range(batch):
        seq = x[:, b, :]
        for layer in range(num_layers):
            outs = []
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w_ih, w_hh = p["weight_ih" + sfx], p["weight_hh" + sfx]
                b_ih = p.get("bias_ih" + sfx, np.zeros(4 * hidden))
                b_hh = p.get("bias_hh" + sfx, np.zeros(4 * hidden))
                k = layer * dirs + d
                backwards = d == 1 or reverse
                inp = seq[::-1] if backwards else seq
                ln = None if "ln_gates_weight" + sfx not in p else tuple(
                    p[n + sfx] for n in ("ln_gates_weight", "ln_gates_bias", "ln_cell_weight",
                                         "ln_cell_bias"))
                hs, h, c = _run_direction(inp, w_ih, w_hh, b_ih, b_hh, h0[k, b], c0[k, b],
                                          p.get("weight_hr" + sfx), p.get("peephole" + sfx),
                                          clip, input_forget, ln)
                outs.append(hs[::-1] if backwards else hs)
                h_n[k, b], c_n[k, b] = h, c
            seq = np.concatenate(outs, axis=1)
        y[:, b, :] = seq
    return y, h_n, c_n


def assert_float64_reference(model, x, num_layers=1, bidirectional=False):
    """A float64 ``model``'s call on ``x`` gives :func:`reference_lstm`'s ``(y, h_n, c_n)``
    from its parameters within 1e-12."""
    y, (h, c) = model(x)
    want = reference_lstm(x, model.host_params(), num_layers, bidirectional)
    for got, expected in zip((y, h, c), want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


def reference_cell(x, h, c, params, suffix=""):
    """One step for a batch: x (B, I), h and c (B, H). Returns (h, c)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    hidden = p["weight_hh" + suffix].shape[1]
    hs, cs = [], []
    for b in range(x.shape[0]):
        _, hb, cb = _run_direction(
            np.asarray(x[b:b + 1], dtype=np.float64), p["weight_ih" + suffix],
            p["weight_hh" + suffix], p.get("bias_ih" + suffix, np.zeros(4 * hidden)),
            p.get("bias_hh" + suffix, np.zeros(4 * hidden)), np.asarray(h[b], np.float64),
            np.asarray(c[b], np.float64))
        hs.append(hb)
        cs.append(cb)
    return np.array(hs), np.array(cs)
