"""The seed's algorithm, re-implemented as the benchmarks' baseline.

Our own code for what the tutorial LSTM in ``../shared/seed/`` does: four separate gate
matrices ``(H, H + I)`` applied to the column vector ``concat(h, x)``, a Python loop over time
steps and, for a batch, over batch elements. It is deliberately the slow, readable starting
point the library is measured against; nothing else uses it.
"""

from __future__ import annotations

import numpy as np


class SeedLSTM:
    """Per-gate weights over ``concat(h, x)``, one column vector at a time.

    Parameters
    ----------
    input_size, hidden_size : int
    dtype : numpy dtype, default float32
    seed : int, optional
    """

    def __init__(self, input_size: int, hidden_size: int, dtype=np.float32, seed=None):
        rng = np.random.default_rng(seed)
        self.hidden_size = hidden_size
        shape = (hidden_size, hidden_size + input_size)
        # forget, input, candidate, output: one matrix and one column bias per gate
        self.weights = [rng.standard_normal(shape).astype(dtype) * 0.1 for _ in range(4)]
        self.biases = [np.zeros((hidden_size, 1), dtype) for _ in range(4)]

    @staticmethod
    def _sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    def step(self, x_col, h_col, c_col):
        """One step: ``x_col`` (I, 1), ``h_col`` and ``c_col`` (H, 1) -> new ``(h, c)``."""
        z = np.concatenate((h_col, x_col), axis=0)
        (wf, wi, wc, wo), (bf, bi, bc, bo) = self.weights, self.biases
        f = self._sigmoid(wf @ z + bf)
        i = self._sigmoid(wi @ z + bi)
        candidate = np.tanh(wc @ z + bc)
        c_col = f * c_col + i * candidate
        o = self._sigmoid(wo @ z + bo)
        return o * np.tanh(c_col), c_col

    def forward_batch(self, X):
        """``X`` (T, B, I) -> hidden states (T, B, H), looping over batch elements and steps."""
        steps, batch, _ = X.shape
        out = np.empty((steps, batch, self.hidden_size), X.dtype)
        for b in range(batch):
            h = np.zeros((self.hidden_size, 1), X.dtype)
            c = np.zeros_like(h)
            for t in range(steps):
                h, c = self.step(X[t, b][:, None], h, c)
                out[t, b] = h[:, 0]
        return out
