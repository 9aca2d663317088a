"""Frozen models (``LSTM.frozen``): weights that cannot change, packed once by the compiled
kernel, and the same results as the model they were copied from."""

from __future__ import annotations

import copy
import gc
import pickle

import numpy as np
import pytest
from calls import flat, together
from reference import assert_float64_reference

from lstm_xp import LSTM
from lstm_xp._threads import thread_setting
from lstm_xp.kernels._frozen import DerivedCache, freeze, is_frozen


def test_freeze_copies_into_an_array_nobody_can_write():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    f = freeze(a)
    np.testing.assert_array_equal(f, a)
    assert f.dtype == a.dtype and f.shape == a.shape and is_frozen(f) and is_frozen(f[1:])
    with pytest.raises(ValueError, match="read-only"):
        f[0, 0] = 1
    with pytest.raises(ValueError, match="WRITEABLE"):
        f.flags.writeable = True
    a[0, 0] = 99  # the copy does not follow its source
    assert f[0, 0] == 0


def test_a_read_only_view_of_a_writable_array_is_not_frozen():
    """Its values can still change through its base: a kernel must not keep anything
    derived from it."""
    a = np.zeros((4, 4), np.float32)
    view = a.view()
    view.flags.writeable = False
    assert not is_frozen(a) and not is_frozen(view)
    assert not is_frozen(np.frombuffer(bytearray(16), np.float32))
    assert not is_frozen([1.0, 2.0])


def test_derived_cache_makes_a_value_once_and_drops_it_with_its_arrays():
    cache = DerivedCache()
    made = []

    def make(a, b, tag):
        made.append(tag)
        return (a.sum() + b.sum(), tag)

    a, b = freeze(np.ones(3)), freeze(np.full(3, 2.0))
    assert cache.get(a, b, "k", make, 1) == (9.0, 1)
    assert cache.get(a, b, "k", make, 2) == (9.0, 1)  # kept: make not called again
    assert cache.get(a, b, "other", make, 3) == (9.0, 3)
    assert made == [1, 3] and len(cache) == 2
    del a
    gc.collect()
    assert len(cache) == 0


@pytest.fixture
def compiled():
    pytest.importorskip("numba")
    return pytest.importorskip("lstm_xp.kernels.numba_scan")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1, 3, 8), (5, 2, 4, 96), (7, 9, 6, 40), (3, 16, 5, 64)])
def test_a_frozen_model_gives_the_same_bits(compiled, monkeypatch, rng, threads, precision,
                                            shape):
    """With and without a state and lengths, on one thread and split (by units or by
    sequences, as the plan says at these sizes with the thresholds lowered), and with the
    weights packed or used as they are (T * B under 8): the frozen copy's outputs are the
    original's bits, twice in a row (the second from the kept panels)."""
    for name in ("MIN_FLOPS_PER_THREAD", "MIN_CHUNK_STEP_FLOPS", "MIN_CHUNK_CALL_FLOPS",
                 "MIN_SMALL_FLOPS_PER_THREAD", "MIN_NARROW_SMALL_FLOPS_PER_THREAD",
                 "MIN_NARROW_CHUNK_CALL_FLOPS"):
        monkeypatch.setattr(compiled, name, 1)
    T, B, I, H = shape
    with thread_setting(threads):
        model = LSTM(I, H, seed=3, dtype=precision)
        frozen = model.frozen()
        assert frozen.kernel == "numba"
        x = rng.standard_normal((T, B, I)).astype(precision)
        state = tuple(rng.standard_normal((1, B, H)).astype(precision) for _ in range(2))
        lengths = rng.integers(0, T + 1, size=B)
        for args in ((x,), (x, state), (x, state, lengths), (x, None, lengths)):
            want = flat(model(*args))
            for _ in range(2):
                for a, b in zip(flat(frozen(*args)), want, strict=True):
                    np.testing.assert_array_equal(a, b)


def test_a_frozen_model_matches_the_float64_reference(compiled, rng):
    T, B, I, H = 6, 12, 5, 24
    frozen = LSTM(I, H, seed=4, dtype="float64").frozen()
    assert_float64_reference(frozen, rng.standard_normal((T, B, I)))


def test_the_weights_are_packed_once_and_dropped_with_the_model(compiled, monkeypatch, rng):
    packs = []
    real = compiled._pack_frozen
    monkeypatch.setattr(compiled, "_pack_frozen",
                        lambda *args: packs.append(1) or real(*args))
    frozen = LSTM(16, 32, seed=1).frozen()
    x = rng.standard_normal((10, 8, 16)).astype(np.float32)
    before = len(compiled._FROZEN)
    for _ in range(3):
        frozen(x)
    assert len(packs) == 1 and len(compiled._FROZEN) == before + 1
    frozen(x[:, :2])  # another plan: its own layout of panels, if it packs
    del frozen
    gc.collect()
    assert len(compiled._FROZEN) == before


def test_the_original_stays_writable_and_a_replaced_parameter_is_followed(compiled, rng):
    """Writing into the original does not reach the copy; replacing the copy's parameters
    (as load_state_dict and optimisers do) gives it ordinary arrays, and its next call
    runs on them, not on panels kept from the old ones."""
    model = LSTM(8, 16, seed=2)
    frozen = model.frozen()
    x = rng.standard_normal((12, 8, 8)).astype(np.float32)
    before = flat(frozen(x))
    model.state_dict()["weight_hh_l0"][...] *= 2  # the original's own array
    for a, b in zip(flat(frozen(x)), before, strict=True):
        np.testing.assert_array_equal(a, b)
    other = LSTM(8, 16, seed=9)
    frozen.load_state_dict(other.state_dict())
    assert not is_frozen(frozen.state_dict()["weight_hh_l0"])
    for a, b in zip(flat(frozen(x)), flat(other(x)), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="read-only"):
        model.frozen().state_dict()["weight_ih_l0"][0, 0] = 0.0


def _all_frozen(model):
    return all(is_frozen(v) for v in model.state_dict().values())


def test_copies_of_a_frozen_model_are_frozen_and_a_thawed_one_is_not(rng):
    """pickle, deepcopy and to() (onto NumPy, another dtype included) keep the copy frozen,
    with the same results; once its parameters were replaced, its copies are ordinary."""
    model = LSTM(6, 20, seed=8)
    frozen = model.frozen()
    x = rng.standard_normal((5, 3, 6)).astype(np.float32)
    want = flat(frozen(x))
    for copy_ in (pickle.loads(pickle.dumps(frozen)), copy.deepcopy(frozen), frozen.to()):
        assert _all_frozen(copy_)
        for a, b in zip(flat(copy_(x)), want, strict=True):
            np.testing.assert_array_equal(a, b)
    wider = frozen.to(dtype="float64")
    assert _all_frozen(wider)
    assert wider.state_dict()["weight_hh_l0"].dtype == np.float64
    assert not _all_frozen(pickle.loads(pickle.dumps(model)))
    frozen.load_state_dict(model.state_dict())
    assert not _all_frozen(frozen)
    assert not _all_frozen(pickle.loads(pickle.dumps(frozen)))
    assert not _all_frozen(frozen.to())


def test_threads_sharing_a_frozen_model_each_get_their_own_result(compiled, rng):
    """Several threads make the copy's first calls at once (the panels are packed under a
    lock) and go on calling it: each gets exactly its single-threaded result."""
    frozen = LSTM(12, 48, seed=6).frozen()
    inputs = [rng.standard_normal((9, b, 12)).astype(np.float32) for b in (8, 8, 3, 16)]
    want = [flat(LSTM(12, 48, seed=6)(x)) for x in inputs]
    got = together(len(inputs), 20, lambda i: flat(frozen(inputs[i])))
    for result, expected in zip(got, want, strict=True):
        for a, b in zip(result, expected, strict=True):
            np.testing.assert_array_equal(a, b)


def test_frozen_works_on_every_backend(case, to_np, rng):
    """Elsewhere than NumPy the copy is an ordinary one, and gives the model's results."""
    model = LSTM(4, 6, seed=1, backend=case.backend, device=case.device)
    frozen = model.frozen()
    assert frozen.backend == model.backend and frozen is not model
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    y_model, _ = model(x)
    y_frozen, _ = frozen(x)
    np.testing.assert_allclose(to_np(y_frozen), to_np(y_model), rtol=1e-6, atol=1e-7)


def test_a_frozen_model_trains_like_the_model(compiled, rng):
    """A training step on the copy (its forward pass from the kept panels) gives the model's
    outputs and gradients."""
    T, B, I, H = 5, 8, 6, 16
    model = LSTM(I, H, seed=7)
    frozen = model.frozen()
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    steps = []
    for m in (model, frozen):
        out, _, tape = m.forward_train(x)
        dx, _, grads = m.backward(tape, dy)
        steps.append((out, dx, grads))
    (out_a, dx_a, g_a), (out_b, dx_b, g_b) = steps
    np.testing.assert_array_equal(out_b, out_a)
    np.testing.assert_allclose(dx_b, dx_a, rtol=1e-6, atol=1e-6)
    assert g_a.keys() == g_b.keys()
    for name in g_a:
        np.testing.assert_allclose(g_b[name], g_a[name], rtol=1e-6, atol=1e-6)
