"""Every fused kernel equals the pure Array-API reference it replaces."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from calls import flat

from lstm_xp import LSTM, ConfigError
from lstm_xp.kernels import REGISTRY, kernel_report


def test_kernel_choice(case):
    """kernel="auto" picks the backend's fast kernel (the registry's first that runs there),
    "pure" the reference, and the model says which it runs."""
    model = LSTM(2, 3, **case.model_kwargs)
    numba = importlib.util.find_spec("numba") is not None  # the numba extra comes first
    expected = {"numpy": "numba" if numba else "numpy-fused", "cupy": "cupy-fused",
                "jax": "jax-jit", "torch": "torch-native"}
    assert model.kernel == expected.get(case.backend, "pure")
    assert LSTM(2, 3, kernel="pure", **case.model_kwargs).kernel == "pure"
    assert LSTM(2, 3, kernel=model.kernel, **case.model_kwargs).kernel == model.kernel


def test_unknown_and_foreign_kernels_are_refused():
    with pytest.raises(ConfigError, match="kernel must be 'auto' or one of numba, "
                                          "numpy-fused, cupy-fused, jax-jit, torch-native, "
                                          "pure; got 'mkl'"):
        LSTM(2, 3, kernel="mkl")
    with pytest.raises(ConfigError, match="kernel 'jax-jit' runs on backend jax, not 'numpy'; "
                                          "kernels for 'numpy': numba, numpy-fused, pure"):
        LSTM(2, 3, kernel="jax-jit")


def test_to_reselects_the_kernel(case):
    """A copy on another backend runs that backend's kernel; a pure model stays pure."""
    model = LSTM(2, 3).to(backend=case.backend, device=case.device)
    assert model.kernel == LSTM(2, 3, **case.model_kwargs).kernel
    pure = LSTM(2, 3, kernel="pure").to(backend=case.backend, device=case.device)
    assert pure.kernel == "pure"


def test_kernel_registry_is_reported(case):
    """`lstm-xp backends` lists, per backend, every kernel and why the others do not run."""
    rows = {name: (usable, why) for name, usable, why in kernel_report(case.backend)}
    assert set(rows) == {entry.name for entry in REGISTRY}
    assert rows["pure"][0]
    for entry in REGISTRY:
        if not entry.runs_on(case.backend):
            assert not rows[entry.name][0] and "only" in rows[entry.name][1]


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 1, 3, 5), (5, 4, 6, 8), (3, 33, 2, 17)])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_fused_equals_pure(kernel_case, to_np, rng, precision, shape, bidirectional,
                           with_state, with_lengths):
    """Every registered kernel other than the reference gives the reference's results."""
    case, kernel = kernel_case
    dtype = case.dtype(precision)
    T, B, I, H = shape
    kwargs = dict(bidirectional=bidirectional, init="pytorch", seed=9, dtype=dtype,
                  **case.model_kwargs)
    fused = LSTM(I, H, 2, kernel=kernel, **kwargs)
    pure = LSTM(I, H, 2, kernel="pure", **kwargs)
    assert (fused.kernel, pure.kernel) == (kernel, "pure")
    D = 2 if bidirectional else 1
    x = rng.standard_normal((T, B, I)).astype(precision)
    state = tuple(rng.standard_normal((2 * D, B, H)).astype(precision) for _ in range(2)) \
        if with_state else None
    lengths = rng.integers(0, T + 1, size=B) if with_lengths else None
    tol = dict(rtol=1e-6, atol=1e-6) if precision == "float32" else dict(rtol=1e-13, atol=1e-14)
    if precision == "float32" and case.id == "torch-cuda":
        # cuDNN's own activations and sums: 2e-6 off seen on an H200 (TF32, 4e-5, stays out)
        tol = dict(rtol=1e-5, atol=1e-5)
    for a, b in zip(*(flat(m(x, state, lengths)) for m in (fused, pure)), strict=True):
        np.testing.assert_allclose(to_np(a), to_np(b), **tol)


def test_numpy_kernel_on_odd_sizes_and_prefixes(rng):
    """Sizes that leave zero rows in the stacked weights, B = 1, and lengths whose running
    prefixes shrink and grow: the column views of every prefix size equal the reference."""
    for (T, B, I, H), lengths in [((7, 1, 1, 1), None), ((11, 5, 9, 3), [11, 0, 4, 4, 10]),
                                  ((6, 3, 16, 8), [1, 6, 2]), ((1, 2, 3, 4), [0, 0]),
                                  ((2, 1, 1, 1), [1]), ((3, 2, 2, 2), [0, 3]),
                                  ((70, 1, 3, 8), None), ((70, 1, 3, 8), [69])]:
        model = LSTM(I, H, bidirectional=True, dtype="float64", seed=1)
        pure = LSTM(I, H, bidirectional=True, dtype="float64", seed=1, kernel="pure")
        x = rng.standard_normal((T, B, I))
        state = tuple(rng.standard_normal((2, B, H)) for _ in range(2))
        lengths = None if lengths is None else np.array(lengths)
        for a, b in zip(flat(model(x, state, lengths)), flat(pure(x, state, lengths)),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_numpy_kernel_does_not_modify_inputs(rng):
    model = LSTM(3, 4, 2, seed=2)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    h0 = rng.standard_normal((2, 2, 4)).astype(np.float32)
    c0 = rng.standard_normal((2, 2, 4)).astype(np.float32)
    copies = [a.copy() for a in (x, h0, c0)]
    before = {k: v.copy() for k, v in model.state_dict().items()}
    model(x, (h0, c0))
    for a, b in zip((x, h0, c0), copies, strict=True):
        np.testing.assert_array_equal(a, b)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_numpy_kernel_zeroes_outputs_of_a_chunk_where_nothing_runs(rng):
    """Streaming can hand the kernel a chunk in which every sequence has already ended. Its
    outputs must be zeros, not whatever the reused memory held: run a full chunk first so
    that the allocator has non-zero memory of the same size to give back."""
    model = LSTM(3, 4, dtype="float64", seed=0)
    for _ in range(5):
        model(rng.standard_normal((1, 2, 3)))  # outputs of shape (1, 2, 4), then freed
        x, h0 = rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 4))
        y, (h, c) = model(x, (h0, 2 * h0), lengths=np.array([0, 0]))
        assert np.all(y == 0.0)
        np.testing.assert_array_equal(h, h0)
        np.testing.assert_array_equal(c, 2 * h0)


def _torch_devices() -> list[Any]:
    torch_cuda = (importlib.util.find_spec("torch") is not None
                  and importlib.import_module("torch").cuda.is_available())
    cuda = pytest.param("cuda:0", marks=pytest.mark.gpu if torch_cuda else pytest.mark.skip(
        reason="torch sees no CUDA device"))
    return ["cpu", cuda]


@pytest.mark.parametrize("device", _torch_devices())
def test_torch_native_kernel_and_its_fallbacks(rng, device):
    """backend="torch" runs torch's own LSTM kernel (oneDNN on the CPU, cuDNN on CUDA); what it
    does differently (a reverse model, dropout, a length of 0, float16 on the CPU) runs the
    pure path for that call, and every result equals the pure kernel's."""
    torch = pytest.importorskip("torch")
    kwargs = dict(backend="torch", device=device, dtype="float64", seed=5, init="pytorch")
    T, B, I, H = 6, 3, 2, 4
    x = torch.from_numpy(rng.standard_normal((T, B, I))).to(device)
    dy = torch.from_numpy(rng.standard_normal((T, B, 2 * H))).to(device)
    for extra, lengths in [({}, None), ({}, [6, 2, 5]), ({}, [6, 0, 5]),
                           ({"dropout": 0.3}, None)]:
        native = LSTM(I, H, 2, bidirectional=True, **kwargs, **extra)
        pure = LSTM(I, H, 2, bidirectional=True, kernel="pure", **kwargs, **extra)
        assert native.kernel == "torch-native"
        lens = None if lengths is None else torch.tensor(lengths, device=device)
        results = []
        for m in (native, pure):  # equal seeds: the same dropout masks
            out, (h, c), tape = m.forward_train(x, lengths=lens)
            dx, (dh0, dc0), grads = m.backward(tape, dy, (h * 0 + 1, None))
            results.append([out, h, c, dx, dh0, dc0, *(grads[k] for k in sorted(grads))])
        for a, b in zip(*results, strict=True):
            np.testing.assert_allclose(a.detach().cpu().numpy(), b.detach().cpu().numpy(),
                                       rtol=1e-10, atol=1e-12)
    reverse = LSTM(I, H, direction="reverse", **kwargs)
    want = LSTM(I, H, direction="reverse", kernel="pure", **kwargs)(x)[0]
    np.testing.assert_allclose(reverse(x)[0].cpu().numpy(), want.cpu().numpy(), rtol=1e-12)
    half = LSTM(I, H, backend="torch", device=device, dtype="float16", seed=5)
    single = LSTM(I, H, backend="torch", device=device, dtype="float32", seed=5)
    got = half(x.half())[0]
    assert got.dtype == torch.float16
    np.testing.assert_allclose(got.float().cpu().numpy(), single(x.float())[0].cpu().numpy(),
                               atol=5e-3)
