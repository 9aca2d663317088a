"""Backpropagation through time and the training utilities."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from gradcheck import central_difference, rel_err

from lstm_xp import (
    LSTM,
    SGD,
    Adam,
    ConfigError,
    Linear,
    ShapeError,
    clip_grad_norm,
    mse_loss,
    softmax_cross_entropy,
)
from lstm_xp._init import dropout_generator

CASES = [  # (num_layers, bidirectional, batch_first, with_state, with_d_state, lengths)
    (1, False, False, False, False, None),
    (2, False, True, True, True, None),
    (2, True, False, True, False, None),
    (2, True, True, False, True, None),
    (2, True, False, True, True, [4, 2, 3]),
    (1, False, True, False, True, [1, 4, 0]),
]


def _setup(rng, L, bidirectional, batch_first, with_state, with_d_state, lengths, dropout=0.0):
    T, B, I, H = 4, 3, 3, 4
    D = 2 if bidirectional else 1
    model = LSTM(I, H, L, bidirectional=bidirectional, batch_first=batch_first,
                 dtype="float64", init="pytorch", seed=1, dropout=dropout)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    state = tuple(rng.standard_normal((D * L, B, H)) for _ in range(2)) if with_state else None
    r = rng.standard_normal((B, T, D * H) if batch_first else (T, B, D * H))
    d_state = tuple(rng.standard_normal((D * L, B, H)) for _ in range(2)) if with_d_state \
        else None
    return model, x, state, r, d_state, None if lengths is None else np.array(lengths)


def _loss(model, x, state, r, d_state, lengths, seed=None):
    """The scalar whose gradient backward() computes: <outputs, r> + <state_n, d_state>."""
    if seed is not None:
        model._dropout_rng = dropout_generator(seed)  # the same dropout masks every time
        y, (h, c), _ = model.forward_train(x, state, lengths)
    else:
        y, (h, c) = model(x, state, lengths)
    total = np.sum(y * r)
    if d_state is not None:
        total += np.sum(h * d_state[0]) + np.sum(c * d_state[1])
    return total


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_finite_differences(rng, case):
    model, x, state, r, d_state, lengths = _setup(rng, *case)
    _, _, tape = model.forward_train(x, state, lengths)
    dx, (dh0, dc0), grads = model.backward(tape, r, d_state)
    f = lambda: _loss(model, x, state, r, d_state, lengths)  # noqa: E731
    assert rel_err(dx, central_difference(x, f)) <= 1e-6
    if state is not None:
        assert rel_err(dh0, central_difference(state[0], f)) <= 1e-6
        assert rel_err(dc0, central_difference(state[1], f)) <= 1e-6
    params = model.state_dict()  # the model's own arrays: nudging them changes the model
    assert set(grads) == set(params)
    for name, p in params.items():
        assert rel_err(grads[name], central_difference(p, f)) <= 1e-6, name


def test_dropout_gradients_match_finite_differences(rng):
    model, x, state, r, d_state, lengths = _setup(rng, 2, True, False, True, True, None,
                                                  dropout=0.4)
    model._dropout_rng = dropout_generator(7)
    _, _, tape = model.forward_train(x, state, lengths)
    dx, _, grads = model.backward(tape, r, d_state)
    f = lambda: _loss(model, x, state, r, d_state, lengths, seed=7)  # noqa: E731
    assert rel_err(dx, central_difference(x, f)) <= 1e-6
    for name in ("weight_ih_l0", "weight_hh_l1_reverse"):
        assert rel_err(grads[name], central_difference(model.state_dict()[name], f)) <= 1e-6
    assert tape.dropout_masks is not None and np.any(tape.dropout_masks[0] == 0)


def test_dropout_is_off_at_inference_and_seeded(rng):
    x = rng.standard_normal((5, 2, 3))
    a = LSTM(3, 4, 2, dropout=0.5, dtype="float64", seed=3)
    b = LSTM(3, 4, 2, dropout=0.5, dtype="float64", seed=3)
    np.testing.assert_array_equal(a(x)[0], LSTM(3, 4, 2, dtype="float64", seed=3)(x)[0])
    np.testing.assert_array_equal(a.forward_train(x)[0], b.forward_train(x)[0])
    assert not np.array_equal(a.forward_train(x)[0], a(x)[0])
    twin = a.to(backend="numpy")  # its own dropout stream, continuing from the same point
    np.testing.assert_array_equal(twin.forward_train(x)[0], a.forward_train(x)[0])
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\)"):
        LSTM(3, 4, dropout=1.0)


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_torch_autograd(rng, case):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    model, x, state, r, d_state, lengths = _setup(rng, *case)
    _, _, tape = model.forward_train(x, state, lengths)
    dx, (dh0, dc0), grads = model.backward(tape, r, d_state)

    twin = torch.nn.LSTM(model.input_size, model.hidden_size, model.num_layers,
                         bidirectional=model.bidirectional, batch_first=model.batch_first,
                         dtype=torch.float64)
    twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tstate = None if state is None else tuple(
        torch.from_numpy(s.copy()).requires_grad_(True) for s in state)
    T = x.shape[1] if model.batch_first else x.shape[0]
    if lengths is not None and lengths.min() == 0:
        pytest.skip("torch's packed sequences refuse zero lengths")
    if lengths is None:
        ty, (th, tc) = twin(tx, tstate)
    else:
        packed = pack_padded_sequence(tx, torch.from_numpy(lengths),
                                      batch_first=model.batch_first, enforce_sorted=False)
        out, (th, tc) = twin(packed, tstate)
        ty, _ = pad_packed_sequence(out, batch_first=model.batch_first, total_length=T)
    loss = (ty * torch.from_numpy(r)).sum()
    if d_state is not None:
        loss = loss + (th * torch.from_numpy(d_state[0])).sum() \
            + (tc * torch.from_numpy(d_state[1])).sum()
    loss.backward()
    assert np.max(np.abs(dx - tx.grad.numpy())) <= 1e-10
    if state is not None:
        assert np.max(np.abs(dh0 - tstate[0].grad.numpy())) <= 1e-10
        assert np.max(np.abs(dc0 - tstate[1].grad.numpy())) <= 1e-10
    for name, p in twin.named_parameters():
        assert np.max(np.abs(grads[name] - p.grad.numpy())) <= 1e-10, name


def test_backward_on_every_backend(case, to_np, rng):
    """The pure-standard backward gives NumPy's gradients on every namespace and device."""
    precision = case.dtype("float64") if case.float64 else "float32"
    tol = 1e-10 if precision == "float64" else 2e-4
    kwargs = dict(bidirectional=True, init="pytorch", seed=4, dtype=precision)
    ref = LSTM(3, 4, 2, **kwargs)
    model = LSTM(3, 4, 2, **kwargs, **case.model_kwargs)
    x = rng.standard_normal((5, 2, 3)).astype(precision)
    r = rng.standard_normal((5, 2, 8)).astype(precision)
    lengths = np.array([5, 3])
    results = []
    for m in (ref, model):
        _, _, tape = m.forward_train(x, None, lengths, reset=[True, False])
        results.append(m.backward(tape, r))
    (rdx, (rdh, _), rg), (dx, (dh, _), g) = results
    np.testing.assert_allclose(to_np(dx), rdx, rtol=tol, atol=tol)
    np.testing.assert_allclose(to_np(dh), rdh, rtol=tol, atol=tol)
    assert np.all(to_np(dh)[:, 0] == 0)  # reset sample: no gradient reaches its initial state
    for name in rg:
        np.testing.assert_allclose(to_np(g[name]), rg[name], rtol=tol, atol=tol, err_msg=name)


def test_tape_holds_gates_and_cells(rng):
    x = rng.standard_normal((6, 2, 3))
    _, _, tape = LSTM(3, 4, 2, bidirectional=True, seed=0, kernel="pure").forward_train(x)
    for layer in tape.recorded.layers:
        for t in layer:
            assert t.gates.shape == (6, 2, 16) and t.cells.shape == (6, 2, 4)
            assert t.hidden_in.shape == (6, 2, 4)
    # The fused NumPy tape: gates and cells as columns, plus one slot for the initial state;
    # input columns [x; h; 1] padded to 8 rows (layer 0: 3 + 4 + 1; layer 1: 8 + 4 + 1 -> 16).
    _, _, tape = LSTM(3, 4, 2, bidirectional=True, seed=0, kernel="numpy-fused",
                      ).forward_train(x)
    for width, layer in zip((8, 16), tape.recorded.layers, strict=True):
        for t in layer:
            assert t.gates.shape == (6, 16, 2) and t.cells.shape == (7, 4, 2)
            assert t.tanh_cells.shape == (6, 4, 2) and t.inputs.shape == (width, 7, 2)
    # The compiled tape (numba, where installed): rows, the input and the weights copied.
    if importlib.util.find_spec("numba") is None:
        return
    _, _, tape = LSTM(3, 4, 2, bidirectional=True, seed=0, kernel="numba").forward_train(x)
    for features, layer in zip((3, 8), tape.recorded.layers, strict=True):
        for t in layer:
            assert t.gates.shape == (6, 2, 16) and t.cells.shape == (7, 2, 4)
            assert t.tanh_cells.shape == (6, 2, 4) and t.h_prev.shape == (6, 2, 4)
            assert t.x.shape == (12, features) and t.weight_hh.shape == (16, 4)


def test_backward_errors(rng):
    model = LSTM(3, 4, seed=0)
    _, _, tape = model.forward_train(rng.standard_normal((5, 2, 3)))
    with pytest.raises(ShapeError, match=r"d_outputs has shape \(5, 2, 3\).*\(5, 2, 4\)"):
        model.backward(tape, np.zeros((5, 2, 3)))
    with pytest.raises(ShapeError, match=r"dh_n has shape"):
        model.backward(tape, np.zeros((5, 2, 4)), (np.zeros((2, 4)), None))


def test_unbatched_backward(rng):
    model = LSTM(3, 4, 2, dtype="float64", seed=0)
    x = rng.standard_normal((5, 3))
    _, _, tape = model.forward_train(x)
    dx, (dh0, _), _ = model.backward(tape, np.ones((5, 4)))
    _, _, tape_b = model.forward_train(x[:, None, :])
    dxb, (dhb, _), _ = model.backward(tape_b, np.ones((5, 1, 4)))
    assert dx.shape == (5, 3) and dh0.shape == (2, 4)
    np.testing.assert_allclose(dx, dxb[:, 0], rtol=1e-14)
    np.testing.assert_allclose(dh0, dhb[:, 0], rtol=1e-14)


# -- utilities -------------------------------------------------------------------------------
def test_linear_and_losses_match_finite_differences(rng):
    lin = Linear(3, 2, dtype="float64", init="pytorch", seed=0)
    x = rng.standard_normal((4, 5, 3))
    target = rng.standard_normal((4, 5, 2))
    y, tape = lin.forward_train(x)
    _, dy = mse_loss(y, target)
    dx, grads = lin.backward(tape, dy)
    f = lambda: float(mse_loss(lin(x), target)[0])  # noqa: E731
    assert rel_err(dx, central_difference(x, f)) <= 1e-6
    for name, p in lin.state_dict().items():
        assert rel_err(grads[name], central_difference(p, f)) <= 1e-6
    logits = rng.standard_normal((6, 4))
    labels = np.array([0, 3, 1, 1, 2, 0])
    _, dlogits = softmax_cross_entropy(logits, labels)
    g = lambda: float(softmax_cross_entropy(logits, labels)[0])  # noqa: E731
    assert rel_err(dlogits, central_difference(logits, g)) <= 1e-6


def test_losses_match_torch(rng):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((6, 4)) * 30  # large: needs the stable log-sum-exp
    labels = np.array([0, 3, 1, 1, 2, 0])
    ce, _ = softmax_cross_entropy(logits, labels)
    ref = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
    assert abs(float(ce) - ref.item()) <= 1e-12
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    ref = torch.nn.functional.mse_loss(torch.from_numpy(a), torch.from_numpy(b))
    assert abs(float(mse_loss(a, b)[0]) - ref.item()) <= 1e-14


@pytest.mark.parametrize("which", ["sgd", "momentum", "adam"])
def test_optimisers_match_torch(rng, which):
    torch = pytest.importorskip("torch")
    lin = Linear(3, 2, dtype="float64", seed=0)
    twin = torch.nn.Linear(3, 2, dtype=torch.float64)
    twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in lin.state_dict().items()})
    if which == "adam":
        ours, theirs = Adam([lin], lr=0.05), torch.optim.Adam(twin.parameters(), lr=0.05)
    else:
        m = 0.9 if which == "momentum" else 0.0
        ours = SGD([lin], lr=0.1, momentum=m)
        theirs = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=m)
    for _ in range(5):
        grads = {k: rng.standard_normal(v.shape) for k, v in lin.state_dict().items()}
        ours.step([grads])
        for name, p in twin.named_parameters():
            p.grad = torch.from_numpy(grads[name].copy())
        theirs.step()
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(lin.state_dict()[name], p.detach().numpy(), rtol=1e-12,
                                   atol=1e-14)


def test_optimisers_on_every_backend(case, to_np, rng):
    lin = Linear(3, 2, seed=0, **case.model_kwargs)
    ref = Linear(3, 2, seed=0)
    grads = {k: rng.standard_normal(tuple(v.shape)).astype(np.float32)
             for k, v in ref.state_dict().items()}
    dev_grads = {k: lin._backend.from_numpy(v, lin.dtype) for k, v in grads.items()}
    Adam([ref], lr=0.1).step([grads])
    Adam([lin], lr=0.1).step([dev_grads])
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(to_np(lin.state_dict()[k]), v, rtol=1e-5, atol=1e-6)


def test_clip_grad_norm():
    grads = [{"a": np.full(4, 3.0)}, {"b": np.full(1, 4.0), "c": np.zeros(2)}]
    clipped, norm = clip_grad_norm(grads, 5.0)
    assert norm == pytest.approx(np.sqrt(4 * 9 + 16))
    total = np.sqrt(sum(np.sum(a * a) for g in clipped for a in g.values()))
    assert total == pytest.approx(5.0)
    same, _ = clip_grad_norm(grads, 100.0)
    np.testing.assert_array_equal(same[0]["a"], grads[0]["a"])
    with pytest.raises(ConfigError):
        clip_grad_norm(grads, 0)


def test_update_parameters_checks():
    from lstm_xp import StateDictError

    lin = Linear(3, 2)
    with pytest.raises(StateDictError, match="unknown parameter"):
        lin.update_parameters({"nope": np.zeros(2, np.float32)})
    with pytest.raises(StateDictError, match=r"shape \(2, 3\)"):
        lin.update_parameters({"weight": np.zeros((3, 3), np.float32)})


def test_chrono_bias_init():
    T = 100
    model = LSTM(2, 50, bias_init="chrono", chrono_max=T, seed=0, dtype="float64")
    b = model.state_dict()["bias_ih_l0"] + model.state_dict()["bias_hh_l0"]
    forget, inp = b[50:100], b[:50]
    assert np.all(forget >= 0) and np.all(forget <= np.log(T - 1))
    np.testing.assert_array_equal(inp, -forget)
    np.testing.assert_array_equal(b[100:], 0.0)
    unit = LSTM(2, 5, bias_init="unit_forget", seed=0).state_dict()
    np.testing.assert_array_equal((unit["bias_ih_l0"] + unit["bias_hh_l0"])[5:10], 1.0)
    with pytest.raises(ConfigError, match="chrono_max"):
        LSTM(2, 5, bias_init="chrono")
    with pytest.raises(ConfigError, match="unknown bias_init"):
        LSTM(2, 5, bias_init="ones")


# -- the adding problem ----------------------------------------------------------------------
def _adding_module():
    path = Path(__file__).resolve().parents[1] / "examples" / "adding_problem.py"
    spec = importlib.util.spec_from_file_location("adding_problem", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_adding_problem_data():
    adding = _adding_module()
    x, lengths, y = adding.adding_batch(np.random.default_rng(0), 256, 40)
    assert x.shape == (256, int(lengths.max()), 2) and lengths.min() >= 40
    assert lengths.max() <= 44
    markers = x[..., 1]
    assert np.all(np.sum(markers == 1.0, axis=1) == 2)
    assert np.all(np.argmax(markers == 1.0, axis=1) < 10)
    marked = np.where(markers == 1.0, x[..., 0], 0.0).sum(axis=1)
    np.testing.assert_allclose(y, 0.5 + marked / 4, rtol=1e-6)
    rows = np.arange(256)
    assert np.all(markers[rows, lengths - 1] == -1.0)


def test_adding_problem_really_learns():
    """A short version: the test MSE must end far below the constant predictor's 1/24."""
    adding = _adding_module()
    result = adding.train(T=12, steps=300, batch=32, hidden=16, lr=0.02, seed=0,
                          progress=False)
    assert result.test_mse < 0.25 / 24, result


def test_linear_and_losses_on_every_backend(case, to_np, rng):
    precision = "float64" if case.float64 else "float32"
    tol = 1e-12 if precision == "float64" else 1e-5
    ref = Linear(3, 4, dtype=precision, init="pytorch", seed=2)
    lin = Linear(3, 4, dtype=precision, init="pytorch", seed=2, **case.model_kwargs)
    x = rng.standard_normal((5, 3)).astype(precision)
    labels = np.array([0, 3, 1, 2, 2])
    target = rng.standard_normal((5, 4)).astype(precision)
    results = []
    for m in (ref, lin):
        y, tape = m.forward_train(x)
        ce, d_ce = softmax_cross_entropy(y, labels)
        mse, d_mse = mse_loss(y, target)
        dx, grads = m.backward(tape, d_ce + d_mse)
        results.append((float(ce), float(mse), to_np(dx), {k: to_np(v) for k, v in grads.items()}))
    (rce, rmse, rdx, rg), (ce, mse, dx, g) = results
    assert ce == pytest.approx(rce, rel=tol) and mse == pytest.approx(rmse, rel=tol)
    np.testing.assert_allclose(dx, rdx, rtol=tol, atol=tol)
    for k in rg:
        np.testing.assert_allclose(g[k], rg[k], rtol=tol, atol=tol)


def test_truncated_bptt_as_documented(rng):
    """Chunks carry the state on; each chunk's backward stops at its first step. The chunk's
    gradients equal those of a fresh call whose initial state is the carried one."""
    model = LSTM(3, 4, 2, dtype="float64", seed=3)
    x = rng.standard_normal((12, 2, 3))
    state, grads = None, []
    for chunk in (x[:5], x[5:9], x[9:]):
        out, state, tape = model.forward_train(chunk, state)
        _, _, g = model.backward(tape, np.ones_like(out))
        grads.append(g)
    # The last chunk alone, from the state the first two left behind:
    _, carried = model(x[:9])
    out, _, tape = model.forward_train(x[9:], carried)
    _, _, g_last = model.backward(tape, np.ones_like(out))
    for name in g_last:
        np.testing.assert_allclose(grads[-1][name], g_last[name], rtol=1e-12, atol=1e-14)
