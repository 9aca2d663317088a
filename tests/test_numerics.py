"""Numerical robustness: the stable sigmoid and saturated inputs."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_xp import LSTM
from lstm_xp._functional import sigmoid


@pytest.mark.parametrize("precision", ["float16", "float32", "float64"])
def test_sigmoid_is_stable(case, xp, to_np, precision):
    case.dtype(precision)
    ns = xp
    z_host = np.concatenate([np.linspace(-1e4, 1e4, 101), [-1e4, -50.0, -11.5, 0.0, 11.5, 1e4]])
    z = ns.asarray(z_host.astype(precision), device=case.device)
    s = to_np(sigmoid(ns, z))  # pytest turns any overflow warning into an error
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
    ref = 1 / (1 + np.exp(-np.clip(z_host, -700, 700)))
    tol = {"float16": 1e-3, "float32": 1e-6, "float64": 1e-15}[precision]
    np.testing.assert_allclose(s, ref, atol=tol)


@pytest.mark.parametrize("precision", ["float16", "float32"])
def test_saturated_model_has_no_nan(case, to_np, precision):
    case.dtype(precision)
    model = LSTM(2, 3, dtype=precision, seed=0, **case.model_kwargs)
    sd = {k: np.full(tuple(v.shape), 1.0) for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    # Pre-activations of +-1e4 (2 inputs of 5e3 each times unit weights), then of -1e4.
    x = np.array([[5e3, 5e3], [-5e3, -5e3], [5e3, -5e3]])
    y, (h, c) = model(x)
    for a in (y, h, c):
        assert np.all(np.isfinite(to_np(a)))
    np.testing.assert_allclose(to_np(y)[0], np.tanh(1.0), rtol=1e-3)


@pytest.mark.parametrize("vectors", [True, False])
def test_compiled_float32_tanh_is_within_1e6_of_exact(vectors):
    """The numba kernel's rational tanh (float32), in vectors and one entry at a time:
    within 1e-6 relative of the exact tanh over |z| up to 1e4, tiny and denormal inputs
    included (there it returns z itself)."""
    numba_scan = pytest.importorskip("lstm_xp.kernels.numba_scan")
    tiny = np.array([1e-45, -1e-45, 1e-40, -3e-39, 1.2e-38, 1e-20, 1e-8, 3.9e-4, 4.1e-4],
                    np.float32)
    z = np.concatenate([np.linspace(-1e4, 1e4, 200001, dtype=np.float32),
                        np.linspace(-10, 10, 200001, dtype=np.float32), tiny, -tiny,
                        np.float32([0.0, -0.0])])
    got = np.empty_like(z)
    numba_scan.tanh32_array(z, got, vectors)
    exact = np.tanh(z.astype(np.float64))
    rel = np.abs(got - exact) / np.maximum(np.abs(exact), np.finfo(np.float32).tiny)
    assert np.max(rel) <= 1e-6, float(z[np.argmax(rel)])
    assert np.all(np.abs(got) <= 1.0)


def test_compiled_float32_tanh_of_a_span_of_any_length_in_place(rng):
    """The scan's tanh of a span ``v[first:last]`` in place (scaled): from a vector's
    entries on (``TANH32_LANES``, 8) all in vectors, the last vector overlapping the one
    before where the span is not a multiple of 8: every entry the bits it gets inside a whole
    vector (computed from its value as it was, not twice), the entries outside the span
    untouched; shorter spans one by one, within 1e-6 of the exact tanh."""
    numba_scan = pytest.importorskip("lstm_xp.kernels.numba_scan")
    from lstm_xp.kernels._simd import TANH32_LANES as lanes
    z = (rng.standard_normal(4 * 64) * 3).astype(np.float32)
    for scale in (np.float32(0.5), np.float32(1.0)):
        whole = z.copy()  # every entry inside a whole vector
        numba_scan._tanh_of(whole, 0, whole.shape[0], scale, True)
        for first in (0, 3, 16):
            for count in [*range(1, 40), 47, 48, 49, 63, 65]:
                v = z.copy()
                numba_scan._tanh_of(v, first, first + count, scale, True)
                span = slice(first, first + count)
                assert np.array_equal(np.delete(v, np.r_[span]), np.delete(z, np.r_[span]))
                if count >= lanes:
                    assert np.array_equal(v[span], whole[span]), (first, count)
                else:
                    exact = np.tanh(scale * z[span].astype(np.float64))
                    np.testing.assert_allclose(v[span], exact, rtol=1e-6, atol=1e-7)
