"""An independent float64 LSTM for checking the library, written from the equations.

It does not call lstm-xp. Unlike the library it loops over batch elements, keeps the four gates
as separate matrices (like the seed), uses the textbook sigmoid ``1 / (1 + exp(-z))``, and walks
the backward direction over a reversed copy of the sequence.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _run_direction(xs, w_ih, w_hh, b_ih, b_hh, h, c):
    """One sequence ``xs`` (T, I) through one layer; returns hidden states (T, H) and (h, c)."""
    hidden = w_hh.shape[1]
    w = {g: (w_ih[k * hidden:(k + 1) * hidden], w_hh[k * hidden:(k + 1) * hidden],
             b_ih[k * hidden:(k + 1) * hidden] + b_hh[k * hidden:(k + 1) * hidden])
         for k, g in enumerate("ifgo")}
    hs = []
    for x in xs:
        pre = {g: wi @ x + wh @ h + b for g, (wi, wh, b) in w.items()}
        i, f, o = _sigmoid(pre["i"]), _sigmoid(pre["f"]), _sigmoid(pre["o"])
        g = np.tanh(pre["g"])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.array(hs), h, c


def reference_lstm(x, params, num_layers, bidirectional, h0=None, c0=None):
    """Reference forward pass.

    Parameters
    ----------
    x : (T, B, I) array
    params : dict
        ``torch.nn.LSTM``-named parameters (biases may be absent: zero).
    h0, c0 : (L*D, B, H) arrays or None

    Returns
    -------
    y (T, B, D*H), h_n (L*D, B, H), c_n (L*D, B, H), all float64.
    """
    x = np.asarray(x, dtype=np.float64)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    steps, batch, _ = x.shape
    dirs = 2 if bidirectional else 1
    hidden = p["weight_hh_l0"].shape[1]
    zeros = np.zeros((num_layers * dirs, batch, hidden))
    h0 = zeros if h0 is None else np.asarray(h0, dtype=np.float64)
    c0 = zeros if c0 is None else np.asarray(c0, dtype=np.float64)
    y = np.zeros((steps, batch, dirs * hidden))
    h_n = np.zeros_like(zeros)
    c_n = np.zeros_like(zeros)
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
                inp = seq[::-1] if d else seq
                hs, h, c = _run_direction(inp, w_ih, w_hh, b_ih, b_hh, h0[k, b], c0[k, b])
                outs.append(hs[::-1] if d else hs)
                h_n[k, b], c_n[k, b] = h, c
            seq = np.concatenate(outs, axis=1)
        y[:, b, :] = seq
    return y, h_n, c_n


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
