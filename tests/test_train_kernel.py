"""The fused NumPy training pass equals the pure Array-API pair it replaces."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lstm_xp import LSTM, TapeError
from lstm_xp._backprop import layer_scan_backward, layer_scan_train
from lstm_xp.kernels._workspace import Workspace
from lstm_xp.kernels.numpy_train import FusedTape, NumpyTrainer

CONFIGS = list(itertools.product(
    [1, 2],  # num_layers
    [False, True],  # bidirectional
    [False, True],  # batch_first
    [False, True],  # initial state and upstream d_state
))


def _step(model, x, state, dy, d_state, lengths=None):
    out, final, tape = model.forward_train(x, state, lengths)
    dx, d_state0, grads = model.backward(tape, dy, d_state)
    return out, final, dx, d_state0, grads


def _assert_steps_equal(a, b, tol):
    (out_a, fin_a, dx_a, ds_a, g_a), (out_b, fin_b, dx_b, ds_b, g_b) = a, b
    for u, v in [(out_a, out_b), (dx_a, dx_b), *zip(fin_a, fin_b, strict=True),
                 *zip(ds_a, ds_b, strict=True)]:
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)
    assert g_a.keys() == g_b.keys()
    for name in g_b:
        scale = max(1.0, float(np.max(np.abs(g_b[name]))))
        np.testing.assert_allclose(g_a[name], g_b[name], rtol=tol, atol=tol * scale,
                                   err_msg=name)


@pytest.mark.parametrize("precision,tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,with_state", CONFIGS)
def test_fused_training_equals_pure(rng, precision, tol, num_layers, bidirectional,
                                    batch_first, with_state):
    # T = 21 walks past several of the backward pass's 8-step copies, and not a whole number.
    T, B, I, H = 21, 3, 5, 6
    D = 2 if bidirectional else 1
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                  dtype=precision, init="pytorch", seed=2)
    fused, pure = LSTM(I, H, kernel="numpy-fused", **kwargs), LSTM(I, H, kernel="pure", **kwargs)
    assert fused.kernel == "numpy-fused"
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(precision)
    dy = rng.standard_normal((B, T, D * H) if batch_first else (T, B, D * H)).astype(precision)
    state = d_state = None
    if with_state:
        state = tuple(rng.standard_normal((num_layers * D, B, H)).astype(precision)
                      for _ in range(2))
        d_state = tuple(rng.standard_normal((num_layers * D, B, H)).astype(precision)
                        for _ in range(2))
    _assert_steps_equal(_step(fused, x, state, dy, d_state), _step(pure, x, state, dy, d_state),
                        tol)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (9, 2, 3, 4), (17, 4, 13, 7)])
def test_layer_pair_equals_pure_pair(rng, reverse, with_bias, shape):
    """One layer and direction, against the pure functions directly; sizes that are not
    multiples of 8 exercise the zero padding of the stacked weights."""
    T, B, I, H = shape
    x = rng.standard_normal((T, B, I))
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    bias = rng.standard_normal(4 * H) if with_bias else None
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dy, dh_n, dc_n = (rng.standard_normal(s) for s in [(T, B, H), (B, H), (B, H)])
    trainer = NumpyTrainer()
    y, h, c, tape = trainer.scan_train(np, x, w_ih, w_hh, bias, h0, c0, reverse=reverse)
    ry, rh, rc, rtape = layer_scan_train(np, x, w_ih, w_hh, bias, h0, c0, reverse=reverse)
    assert isinstance(tape, FusedTape)
    for u, v in [(y, ry), (h, rh), (c, rc)]:
        np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-13)
    got = trainer.scan_backward(np, tape, dy, dh_n, dc_n)
    want = layer_scan_backward(np, rtape, dy, dh_n, dc_n)
    for u, v in zip(got[:3], want[:3], strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
    assert got[3].keys() == want[3].keys() == ({"weight_ih", "weight_hh"} |
                                               ({"bias"} if with_bias else set()))
    for name in want[3]:
        np.testing.assert_allclose(got[3][name], want[3][name], rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [[9, 9, 9], [9, 4, 0], [0, 0, 0], [1, 9, 5], [3, 3, 7]])
def test_layer_pair_with_lengths_equals_pure_pair(rng, reverse, lengths):
    """Unsorted lengths, zeros, all full: the sorted-prefix walk equals the pure masked one,
    outputs (zero past each length), final states and every gradient."""
    T, B, I, H = 9, 3, 2, 4
    lengths = np.array(lengths)
    x = rng.standard_normal((T, B, I))
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    bias = rng.standard_normal(4 * H)
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dy, dh_n, dc_n = (rng.standard_normal(s) for s in [(T, B, H), (B, H), (B, H)])
    trainer = NumpyTrainer()
    *got, tape = trainer.scan_train(np, x, w_ih, w_hh, bias, h0, c0, reverse=reverse,
                                    lengths=lengths)
    *want, rtape = layer_scan_train(np, x, w_ih, w_hh, bias, h0, c0, reverse=reverse,
                                    lengths=lengths)
    for u, v in zip(got, want, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-13)
    got = trainer.scan_backward(np, tape, dy, dh_n, dc_n)
    want = layer_scan_backward(np, rtape, dy, dh_n, dc_n)
    for u, v in zip(got[:3], want[:3], strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
    for name in want[3]:
        np.testing.assert_allclose(got[3][name], want[3][name], rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lengths_mask_and_reset_equal_the_pure_path(rng, bidirectional):
    T, B, I, H = 12, 4, 3, 5
    D = 2 if bidirectional else 1
    kwargs = dict(num_layers=2, bidirectional=bidirectional, batch_first=True, seed=5,
                  dtype="float64")
    fused, pure = LSTM(I, H, **kwargs), LSTM(I, H, kernel="pure", **kwargs)
    x = rng.standard_normal((B, T, I))
    state = tuple(rng.standard_normal((2 * D, B, H)) for _ in range(2))
    d_state = tuple(rng.standard_normal((2 * D, B, H)) for _ in range(2))
    dy = rng.standard_normal((B, T, D * H))
    lengths = np.array([12, 0, 7, 12])
    _assert_steps_equal(_step(fused, x, state, dy, d_state, lengths),
                        _step(pure, x, state, dy, d_state, lengths), 1e-12)
    mask = np.arange(T)[None, :] < np.array([3, 12, 1, 8])[:, None]
    results = []
    for model in (fused, pure):
        out, final, tape = model.forward_train(x, state, mask=mask, reset=[True, False] * 2)
        results.append((out, final, *model.backward(tape, dy, d_state)))
    _assert_steps_equal(*results, 1e-12)


def test_reused_buffers_leak_nothing(rng, monkeypatch):
    """The workspace hands out arrays with stale contents: poison every array it hands out
    with NaN, over steps of changing shapes, and each step must still equal the pure path."""
    taken = {"fresh": 0, "pooled": 0}
    take = Workspace.take

    def poisoned(self, shape, dtype):
        pooled_before = self.pooled_bytes
        array = take(self, shape, dtype)
        taken["pooled" if self.pooled_bytes < pooled_before else "fresh"] += 1
        array.fill(np.nan)
        return array

    monkeypatch.setattr(Workspace, "take", poisoned)
    fused = LSTM(4, 5, 2, bidirectional=True, seed=3, dtype="float64")
    pure = LSTM(4, 5, 2, bidirectional=True, seed=3, dtype="float64", kernel="pure")
    for T, B, lengths in [(6, 3, None), (9, 2, [9, 4]), (6, 3, None), (6, 3, [0, 6, 2])]:
        x = rng.standard_normal((T, B, 4))
        dy = rng.standard_normal((T, B, 10))
        lengths = None if lengths is None else np.array(lengths)
        _assert_steps_equal(_step(fused, x, None, dy, None, lengths),
                            _step(pure, x, None, dy, None, lengths), 1e-12)
    assert taken["pooled"] > 0, "the second step of a shape should find its arrays pooled"


@pytest.mark.parametrize("padded", [True, False])  # dx from a padded product, or in place
def test_a_compiled_step_takes_its_scratch_arrays_from_the_workspace(rng, monkeypatch,
                                                                     padded):
    """The compiled pass's tape and the backward pass's scratch arrays (packed weights and
    gate gradients, transposed inputs, the weights' product) come from the workspace: the
    second step of a shape allocates none of them afresh, and what it returns is the
    caller's own (the third step leaves the second's results as they were)."""
    if LSTM(5, 16).kernel != "numba":
        pytest.skip("the compiled kernel is not installed")
    from lstm_xp.kernels.numba_scan import panel_shape

    panels, width = panel_shape(1, np.float32)  # one group of panels: the fewest columns
    size_in = 5 if padded else panels * width
    taken = []
    take = Workspace.take

    def counted(self, shape, dtype):
        pooled_before = self.pooled_bytes
        array = take(self, shape, dtype)
        taken.append(self.pooled_bytes < pooled_before)
        return array

    monkeypatch.setattr(Workspace, "take", counted)
    model = LSTM(size_in, 16, seed=0)
    x = rng.standard_normal((7, 3, size_in)).astype(np.float32)
    dy = rng.standard_normal((7, 3, 16)).astype(np.float32)
    _step(model, x, None, dy, None)
    first = len(taken)
    second = _step(model, x, None, dy, None)
    kept = [np.copy(a) for a in (second[0], second[2], *second[4].values())]
    # Tape (4 + copies of x and both weights), packed W_hh, W_ih and dz, the inputs
    # transposed, the weights' product, and dx's product when its panels are padded.
    assert first == (13 if padded else 12)
    assert len(taken) == 2 * first and all(taken[first:]), "every take of step 2 pooled"
    third = _step(model, 2 * x, None, dy, None)
    for before, now in zip(kept, (second[0], second[2], *second[4].values()), strict=True):
        np.testing.assert_array_equal(before, now)
    assert not np.array_equal(third[2], second[2])


def test_workspace_reuses_and_stays_bounded():
    pool = Workspace()
    a = pool.take((4, 5), np.float32)
    pool.give(a)
    assert pool.take((4, 5), np.float32) is a  # the same array comes back
    b = pool.take((4, 5), np.float64)
    assert b is not a and b.dtype == np.float64
    pool.give(a, b)
    # Many shapes, one at a time: what is pooled never exceeds the most ever in use at once.
    for n in range(1, 50):
        pool.give(pool.take((n, 7), np.float64))
        assert pool.pooled_bytes <= pool.peak_bytes
    assert pool.pooled_bytes == sum(np.prod(shape) * np.dtype(dtype).itemsize
                                    for shape, dtype in pool.pooled_shapes())


def test_outputs_do_not_share_memory_with_the_tape(rng):
    model = LSTM(3, 4, seed=0, dtype="float64")
    x, dy = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 4))
    out, (h, c), tape = model.forward_train(x)
    _, _, want = model.backward(tape, dy)
    out, (h, c), tape = model.forward_train(x)
    out[...] = 7.0  # the caller scribbles on what it was given
    h[...] = 7.0
    c[...] = 7.0
    _, _, got = model.backward(tape, dy)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("kernel", ["auto", "pure"])
def test_a_tape_serves_one_backward_pass(rng, kernel):
    model = LSTM(3, 4, seed=0, kernel=kernel)
    out, _, tape = model.forward_train(rng.standard_normal((5, 2, 3)))
    model.backward(tape, np.ones_like(out))
    with pytest.raises(TapeError, match="already been through backward"):
        model.backward(tape, np.ones_like(out))
    with pytest.raises(RuntimeError):  # TapeError is a RuntimeError too
        model.backward(tape, np.ones_like(out))


def test_a_failed_backward_leaves_the_tape_usable(rng):
    model = LSTM(3, 4, seed=0)
    out, _, tape = model.forward_train(rng.standard_normal((5, 2, 3)))
    with pytest.raises(ValueError, match="d_outputs has shape"):
        model.backward(tape, np.ones((5, 2, 3)))
    dx, _, _ = model.backward(tape, np.ones_like(out))
    assert dx.shape == (5, 2, 3) and np.all(np.isfinite(dx))


def test_training_runs_the_models_kernel(case, rng, to_np):
    """forward_train's tape comes from the model's kernel, and models of either kernel give
    the same gradients on every backend."""
    kwargs = dict(dtype=case.dtype("float64"), seed=4, **case.model_kwargs)
    fast, pure = LSTM(2, 3, **kwargs), LSTM(2, 3, kernel="pure", **kwargs)
    x = rng.standard_normal((4, 2, 2))
    _, _, tape = fast.forward_train(x)
    assert tape.kernel.name == fast.kernel
    dy = np.ones((4, 2, 3))
    _, _, g_fast = fast.backward(tape, dy)
    _, _, tape_pure = pure.forward_train(x)
    _, _, g_pure = pure.backward(tape_pure, dy)
    for name in g_pure:
        np.testing.assert_allclose(to_np(g_fast[name]), to_np(g_pure[name]), rtol=1e-12,
                                   atol=1e-12)


def test_backward_leaves_the_callers_arrays_alone(rng):
    """With B = 1, dh_n.T is contiguous: a view of it must not become a work buffer."""
    model = LSTM(2, 3, 2, seed=0, dtype="float64")
    _, _, tape = model.forward_train(rng.standard_normal((4, 1, 2)))
    dy = rng.standard_normal((4, 1, 3))
    d_state = (rng.standard_normal((2, 1, 3)), rng.standard_normal((2, 1, 3)))
    copies = [a.copy() for a in (dy, *d_state)]
    model.backward(tape, dy, d_state)
    for before, after in zip(copies, (dy, *d_state), strict=True):
        np.testing.assert_array_equal(before, after)


TINY = list(itertools.product([(1, 1, 1, 1), (3, 1, 1, 1), (3, 2, 3, 1), (1, 2, 1, 2)],
                              [1, 2], [False, True], [False, True], [False, True],
                              [False, True]))


@pytest.mark.parametrize("shape,num_layers,bidirectional,batch_first,with_state,with_lengths",
                         TINY)
def test_size_one_axes_equal_pure_and_own_their_outputs(rng, shape, num_layers, bidirectional,
                                                         batch_first, with_state,
                                                         with_lengths):
    """H = 1, B = 1, T = 1, I = 1 make many views contiguous, where a copy would be a view:
    the fused pass must still equal the pure one, and a step's outputs must not change when
    the next step reuses the workspace."""
    T, B, I, H = shape
    D = 2 if bidirectional else 1
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                  dtype="float64", seed=1, init="pytorch")
    fused, pure = LSTM(I, H, **kwargs), LSTM(I, H, kernel="pure", **kwargs)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    dy = rng.standard_normal((B, T, D * H) if batch_first else (T, B, D * H))
    state = tuple(rng.standard_normal((num_layers * D, B, H)) for _ in range(2)) \
        if with_state else None
    d_state = (rng.standard_normal((num_layers * D, B, H)), None)
    lengths = rng.integers(0, T + 1, size=B) if with_lengths else None
    first = _step(fused, x, state, dy, d_state, lengths)
    kept = [a.copy() for a in (first[0], *first[1])]
    second = _step(fused, 2 * x, state, dy, d_state, lengths)  # reuses the workspace
    for before, now in zip(kept, (first[0], *first[1]), strict=True):
        np.testing.assert_array_equal(before, now)
    _assert_steps_equal(first, _step(pure, x, state, dy, d_state, lengths), 1e-12)
    _assert_steps_equal(second, _step(pure, 2 * x, state, dy, d_state, lengths), 1e-12)
