"""Weights in and out of PyTorch, Keras 3, ONNX, Flax and the seed."""

from __future__ import annotations

import os

import numpy as np
import pytest
from seedcode import seed_class

from lstm_xp import LSTM, ConfigError, StateDictError


def _model(**kw):
    args = dict(num_layers=2, bidirectional=True, init="pytorch", seed=21)
    args.update(kw)
    return LSTM(4, 5, **args)


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def _assert_same_function(a, b, x, tol=0.0):
    ya, (ha, ca) = a(x)
    yb, (hb, cb) = b(x)
    for u, v in ((ya, yb), (ha, hb), (ca, cb)):
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


# -- PyTorch ---------------------------------------------------------------------------------
def test_torch_round_trip_is_bit_exact(rng):
    pytest.importorskip("torch")
    model = _model(batch_first=True)
    module = model.to_torch()
    assert module.batch_first and module.bidirectional and module.num_layers == 2
    back = LSTM.from_torch(module)
    assert back.batch_first
    _assert_same_weights(model, back)
    from_sd = LSTM.from_torch(module.state_dict())
    _assert_same_weights(model, from_sd)
    assert not from_sd.batch_first  # a bare state dict does not say


def test_torch_outputs_agree(rng):
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(4, 5, 2, bidirectional=True)
    model = LSTM.from_torch(module, backend="numpy")
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    with torch.no_grad():
        ty, (th, tc) = module(torch.from_numpy(x))
    y, (h, c) = model(x)
    for ours, theirs in ((y, ty), (h, th), (c, tc)):
        assert np.max(np.abs(ours - theirs.numpy())) <= 1e-5


def test_torch_projection_is_imported_and_other_variants_are_refused_on_export():
    """proj_size comes across (tests/test_variants.py checks outputs and gradients); options
    torch.nn.LSTM lacks are refused rather than dropped."""
    torch = pytest.importorskip("torch")
    assert LSTM.from_torch(torch.nn.LSTM(3, 4, proj_size=2)).proj_size == 2
    for kw in (dict(peephole=True), dict(clip=1.0), dict(input_forget=True),
               dict(direction="reverse")):
        with pytest.raises(ConfigError, match=r"torch\.nn\.LSTM has no equivalent"):
            LSTM(3, 4, **kw).to_torch()
        with pytest.raises(ConfigError, match="Keras' LSTM layer has no equivalent"):
            LSTM(3, 4, **kw).to_keras()


# -- Keras 3 ---------------------------------------------------------------------------------
def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras runs on {keras.backend.backend()}, these tests use KERAS_BACKEND=torch")
    return keras


def _keras_stack(keras, model, T):
    layers = []
    for _ in range(model.num_layers):
        lstm = keras.layers.LSTM(model.hidden_size, return_sequences=True, return_state=False)
        layers.append(keras.layers.Bidirectional(lstm) if model.bidirectional else lstm)
    net = keras.Sequential([keras.Input((T, model.input_size)), *layers])
    for layer, weights in zip(layers, model.to_keras(), strict=True):
        layer.set_weights(weights)
    return net, layers


@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_outputs_agree(rng, bidirectional):
    keras = _keras()
    model = _model(batch_first=True, bidirectional=bidirectional)
    T = 7
    net, layers = _keras_stack(keras, model, T)
    x = rng.standard_normal((3, T, 4)).astype(np.float32)
    theirs = keras.ops.convert_to_numpy(net(x))
    ours, _ = model(x)
    assert np.max(np.abs(ours - theirs)) <= 1e-5
    back = LSTM.from_keras(layers)
    _assert_same_function(model, back, x, tol=1e-6)


def test_keras_round_trip_is_bit_exact_for_single_bias():
    model = _model()
    once = LSTM.from_keras(model.to_keras(), batch_first=False)
    twice = LSTM.from_keras(once.to_keras(), batch_first=False)
    _assert_same_weights(once, twice)
    for k, v in model.state_dict().items():
        if k.startswith("weight"):
            np.testing.assert_array_equal(once.state_dict()[k], v)
    kernel, recurrent, bias = model.to_keras()[1][:3]
    assert kernel.shape == (10, 20) and recurrent.shape == (5, 20) and bias.shape == (20,)


def test_keras_bad_weights():
    with pytest.raises(StateDictError, match="six arrays"):
        LSTM.from_keras([[np.zeros((3, 8)), np.zeros((2, 8))]])
    with pytest.raises(StateDictError, match=r"expected kernel \(in, 4H\)"):
        LSTM.from_keras([[np.zeros((3, 8)), np.zeros((2, 8)), np.zeros(7)]])


# -- ONNX ------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("initial_state", [False, True])
def test_onnx_export_runs_in_reference_and_onnxruntime(tmp_path, rng, batch_first,
                                                       initial_state):
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    model = _model(batch_first=batch_first)
    path = model.to_onnx(tmp_path / "lstm.onnx", initial_state=initial_state)
    x = rng.standard_normal((3, 6, 4) if batch_first else (6, 3, 4)).astype(np.float32)
    feeds = {"X": x}
    state = None
    if initial_state:
        state = tuple(rng.standard_normal((4, 3, 5)).astype(np.float32) for _ in range(2))
        feeds.update(h0=state[0], c0=state[1])
    y, (h, c) = model(x, state)
    runners = [ReferenceEvaluator(str(path)).run]
    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runners.append(session.run)
    except ImportError:
        pass
    for run in runners:
        ty, th, tc = run(None, feeds)
        assert ty.shape == y.shape
        for ours, theirs in ((y, ty), (h, th), (c, tc)):
            assert np.max(np.abs(ours - theirs)) <= 1e-5
    back = LSTM.from_onnx(path)
    assert back.batch_first == batch_first
    _assert_same_weights(model, back)


def test_onnx_no_bias_round_trip(tmp_path):
    pytest.importorskip("onnx")
    model = _model(bias=False, bidirectional=False, num_layers=3)
    _assert_same_weights(model, LSTM.from_onnx(model.to_onnx(tmp_path / "m.onnx")))


def test_onnx_export_asks_for_the_oldest_ir_version_of_its_opset(tmp_path):
    """ONNX's versioning table pairs opset 14 with IR version 7 (onnx 1.9): a file marked
    with the newest IR version the installed onnx knows is refused by an ONNX Runtime a
    release behind it ("Unsupported model IR version")."""
    onnx = pytest.importorskip("onnx")
    path = _model().to_onnx(tmp_path / "m.onnx")
    assert onnx.load(str(path)).ir_version == 7


def test_onnx_garbage_file(tmp_path):
    pytest.importorskip("onnx")
    from lstm_xp.io import ModelFileError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xffnot a protobuf" * 10)
    with pytest.raises((ModelFileError, StateDictError), match=r"bad\.onnx|no LSTM node"):
        LSTM.from_onnx(bad)


# -- Flax ------------------------------------------------------------------------------------
def _flax_cell_step(p, x, h, c):
    """One step of ``flax.linen.LSTMCell``, written from its documented equations."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    dense_i = lambda n: x @ p[n]["kernel"]  # noqa: E731
    dense_h = lambda n: h @ p[n]["kernel"] + p[n]["bias"]  # noqa: E731
    i = sig(dense_i("ii") + dense_h("hi"))
    f = sig(dense_i("if") + dense_h("hf"))
    g = np.tanh(dense_i("ig") + dense_h("hg"))
    o = sig(dense_i("io") + dense_h("ho"))
    c = f * c + i * g
    return o * np.tanh(c), c


def test_flax_layout_and_round_trip(rng):
    model = LSTM(4, 5, dtype="float64", init="pytorch", seed=3)
    (cell,) = model.to_flax()
    assert cell["ii"]["kernel"].shape == (4, 5) and "bias" not in cell["ii"]
    assert cell["hf"]["kernel"].shape == (5, 5) and cell["hf"]["bias"].shape == (5,)
    x = rng.standard_normal((2, 4))
    h0, c0 = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    fh, fc = _flax_cell_step(cell, x, h0, c0)
    h, c = model.forward(x, h0, c0)
    np.testing.assert_allclose(h, fh, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(c, fc, rtol=1e-12, atol=1e-13)
    back = LSTM.from_flax({"params": cell})
    np.testing.assert_allclose(back.forward(x, h0, c0)[0], h, rtol=1e-13)
    again = LSTM.from_flax(back.to_flax())
    _assert_same_weights(back, again)
    stacked = _model()
    _assert_same_function(stacked, LSTM.from_flax(stacked.to_flax(), bidirectional=True),
                          rng.standard_normal((5, 2, 4)).astype(np.float32), tol=1e-6)


def test_flax_bad_params():
    with pytest.raises(StateDictError, match="lacks"):
        LSTM.from_flax({"ii": {"kernel": np.zeros((2, 3))}})


# -- the seed --------------------------------------------------------------------------------
def test_seed_import_matches_the_seeds_own_forward(rng):
    Seed = seed_class()
    np.random.seed(0)  # noqa: NPY002 -- the seed's class draws from NumPy's global generator
    seed = Seed(3, 5)
    for b in (seed.bf, seed.bi, seed.bC, seed.bo):
        b[:] = rng.standard_normal(b.shape)  # make the biases count
    model = LSTM.from_seed(seed, dtype="float64")
    x = rng.standard_normal((3, 1))
    h0, c0 = rng.standard_normal((5, 1)), rng.standard_normal((5, 1))
    sh, sc = seed.forward(x, h0, c0)
    h, c = model.forward(x, h0, c0)
    np.testing.assert_allclose(h, sh, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(c, sc, rtol=1e-12, atol=1e-13)
    X = rng.standard_normal((6, 3))
    np.testing.assert_allclose(model.forward_sequence(X), seed.forward_sequence(X),
                               rtol=1e-12, atol=1e-13)
    exported = model.to_seed()
    for name in ("Wf", "Wi", "WC", "Wo", "bf", "bi", "bC", "bo"):
        np.testing.assert_array_equal(exported[name], getattr(seed, name))


def test_seed_errors():
    with pytest.raises(ConfigError, match="one layer and one direction"):
        _model().to_seed()
    with pytest.raises(StateDictError, match="missing"):
        LSTM.from_seed({"Wf": np.zeros((2, 5))})


@pytest.mark.parametrize("kwargs,match", [
    (dict(go_backwards=True), "go_backwards=True"),
    (dict(activation="relu"), "activation='relu'"),
    (dict(recurrent_activation="hard_sigmoid"), "recurrent_activation='hard_sigmoid'"),
])
def test_keras_layers_lstm_xp_would_not_reproduce_are_refused(kwargs, match):
    keras = _keras()
    layer = keras.layers.LSTM(4, return_sequences=True, **kwargs)
    keras.Sequential([keras.Input((5, 3)), layer])
    with pytest.raises(StateDictError, match=match):
        LSTM.from_keras([layer])
    sum_layer = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True),
                                           merge_mode="sum")
    keras.Sequential([keras.Input((5, 3)), sum_layer])
    with pytest.raises(StateDictError, match="merges with 'sum'"):
        LSTM.from_keras([sum_layer])
