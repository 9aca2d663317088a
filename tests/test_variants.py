"""The LSTM variants: projections, peepholes, a cell clip, coupled gates, a reverse direction.

Each is checked against the independent float64 reference (tests/reference.py, written from
the definitions), its gradients against central finite differences, projections against
torch.nn.LSTM (outputs and autograd), and the ONNX attributes against onnxruntime.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from gradcheck import central_difference, rel_err
from reference import reference_lstm

from lstm_xp import LSTM, ConfigError

VARIANTS = [
    dict(proj_size=2),
    dict(peephole=True),
    dict(clip=0.7),
    dict(input_forget=True),
    dict(direction="reverse"),
    dict(peephole=True, input_forget=True),
    dict(proj_size=3, peephole=True, clip=0.9),
    dict(proj_size=2, peephole=True, clip=1.2, input_forget=True, direction="reverse"),
    dict(layer_norm=True),
    dict(layer_norm=True, proj_size=2, direction="reverse"),
]


def _id(kw):
    return "-".join(f"{k}={v}" for k, v in kw.items())


def _random_weights(model, rng, scale=1.0):
    """Random values for every parameter, peepholes included (they start at zero)."""
    model.load_state_dict({k: scale * rng.standard_normal(tuple(v.shape))
                           for k, v in model.state_dict().items()})
    return model


def _reference_options(kw):
    return dict(clip=kw.get("clip"), input_forget=kw.get("input_forget", False),
                reverse=kw.get("direction") == "reverse")


@pytest.mark.parametrize("kw", VARIANTS, ids=_id)
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
def test_variants_equal_the_reference(case, to_np, rng, kw, layers, bidirectional):
    if bidirectional and kw.get("direction") == "reverse":
        pytest.skip("direction='reverse' is for unidirectional models")
    T, B, I, H = 6, 3, 4, 5
    dtype = case.dtype("float64")
    model = _random_weights(LSTM(I, H, layers, bidirectional=bidirectional, dtype="float64",
                                 seed=0, **kw), rng, 0.8)
    on_backend = model.to(backend=case.backend, device=case.device, dtype=dtype)
    assert on_backend.kernel == ("pure" if set(kw) - {"direction"} else
                                 LSTM(2, 3, **case.model_kwargs).kernel)
    D, P = 2 if bidirectional else 1, kw.get("proj_size") or H
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((D * layers, B, P)), rng.standard_normal((D * layers, B, H))
    y, (h, c) = on_backend(x, (h0, c0))
    ry, rh, rc = reference_lstm(x, model.state_dict(), layers, bidirectional, h0, c0,
                                **_reference_options(kw))
    assert to_np(y).shape == (T, B, D * P) and to_np(h).shape == (D * layers, B, P)
    for got, want in ((y, ry), (h, rh), (c, rc)):
        np.testing.assert_allclose(to_np(got), want, rtol=1e-11, atol=1e-12)


def _loss(model, x, state, r, d_state, lengths):
    y, (h, c) = model(x, state, lengths)
    return np.sum(y * r) + np.sum(h * d_state[0]) + np.sum(c * d_state[1])


@pytest.mark.parametrize("kw", VARIANTS, ids=_id)
@pytest.mark.parametrize("bidirectional,lengths", [(False, None), (True, [4, 1, 0])])
def test_variant_gradients_match_finite_differences(rng, kw, bidirectional, lengths):
    if bidirectional and kw.get("direction") == "reverse":
        pytest.skip("direction='reverse' is for unidirectional models")
    T, B, I, H, L = 4, 3, 3, 4, 2
    model = _random_weights(LSTM(I, H, L, bidirectional=bidirectional, dtype="float64",
                                 seed=1, **kw), rng, 0.7)
    D, P = 2 if bidirectional else 1, kw.get("proj_size") or H
    x = rng.standard_normal((T, B, I))
    state = (rng.standard_normal((D * L, B, P)), rng.standard_normal((D * L, B, H)))
    r = rng.standard_normal((T, B, D * P))
    d_state = (rng.standard_normal((D * L, B, P)), rng.standard_normal((D * L, B, H)))
    lengths = None if lengths is None else np.array(lengths)
    _, _, tape = model.forward_train(x, state, lengths)
    dx, (dh0, dc0), grads = model.backward(tape, r, d_state)

    def f():
        return _loss(model, x, state, r, d_state, lengths)

    assert rel_err(dx, central_difference(x, f)) <= 1e-6
    assert rel_err(dh0, central_difference(state[0], f)) <= 1e-6
    assert rel_err(dc0, central_difference(state[1], f)) <= 1e-6
    params = model.state_dict()
    assert set(grads) == set(params)
    for name, p in params.items():
        assert rel_err(grads[name], central_difference(p, f)) <= 1e-6, name


def test_clip_bounds_the_gates_and_its_gradient_stops_outside(rng):
    """With a tiny clip every pre-activation is clipped: the weights then get no gradient
    through the gates, and the outputs do not depend on the weights at all."""
    model = _random_weights(LSTM(3, 4, dtype="float64", clip=1e-9, seed=0), rng, 3.0)
    x = rng.standard_normal((5, 2, 3))
    y, _ = model(x)
    y2, _ = model(10 * x)
    np.testing.assert_allclose(y, y2, atol=1e-8)
    out, _, tape = model.forward_train(x)
    _, _, grads = model.backward(tape, np.ones_like(out))
    assert np.max(np.abs(grads["weight_ih_l0"])) < 1e-6


@pytest.mark.parametrize("layers,bidirectional,batch_first", [(1, False, False), (2, True, True)])
def test_projections_equal_torch_outputs_and_autograd(rng, layers, bidirectional, batch_first):
    torch = pytest.importorskip("torch")
    T, B, I, H, P = 5, 3, 4, 6, 3
    D = 2 if bidirectional else 1
    ref = torch.nn.LSTM(I, H, layers, bidirectional=bidirectional, batch_first=batch_first,
                        proj_size=P, dtype=torch.float64)
    model = LSTM.from_torch(ref)
    assert (model.proj_size, model.kernel, model.output_size) == (P, "pure", P)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    h0, c0 = rng.standard_normal((D * layers, B, P)), rng.standard_normal((D * layers, B, H))
    tx = torch.tensor(x, requires_grad=True)
    th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (h0, c0))
    ty, (th, tc) = ref(tx, (th0, tc0))
    y, (h, c), tape = model.forward_train(x, (h0, c0))
    for got, want in ((y, ty), (h, th), (c, tc)):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-12, atol=1e-12)
    r = rng.standard_normal(y.shape)
    (ty * torch.tensor(r)).sum().backward()
    dx, (dh0, dc0), grads = model.backward(tape, r)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dh0, th0.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dc0, tc0.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    back = model.to_torch()
    assert back.proj_size == P
    for name, value in ref.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name].numpy(), value.numpy())


def test_reverse_reads_the_sequence_backwards(rng):
    """A reverse model equals the forward model with the same weights over each sequence
    reversed within its own length, outputs flipped back; every kernel runs it."""
    T, B, I, H = 7, 3, 2, 4
    x = rng.standard_normal((T, B, I))
    lengths = np.array([7, 3, 5])
    kwargs = dict(num_layers=2, dtype="float64", seed=3, init="pytorch")
    fwd = LSTM(I, H, **kwargs)
    for kernel in ("auto", "pure"):
        rev = LSTM(I, H, direction="reverse", kernel=kernel, **kwargs)
        y, (h, c) = rev(x, lengths=lengths)
        for b, n in enumerate(lengths):
            yb, (hb, cb) = fwd(x[:n, b : b + 1][::-1].copy())
            np.testing.assert_allclose(y[:n, b], yb[::-1, 0], rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(h[:, b], hb[:, 0], rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(c[:, b], cb[:, 0], rtol=1e-12, atol=1e-13)
            assert np.all(y[n:, b] == 0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(proj_size=4), r"proj_size must be an integer in 0..hidden_size-1 = 0..3"),
    (dict(proj_size=-1), "proj_size must be an integer"),
    (dict(proj_size=True), "proj_size must be an integer"),
    (dict(clip=0.0), r"clip must be in \(0, inf"),
    (dict(clip="1"), "clip must be a number"),
    (dict(peephole="yes"), "peephole must be True or False"),
    (dict(input_forget=1), "input_forget must be True or False"),
    (dict(direction="backward"), "direction must be 'forward' or 'reverse'"),
    (dict(direction="reverse", bidirectional=True), "already has both directions"),
    (dict(peephole=True, kernel="numpy-fused"), "does not run peephole"),
    (dict(layer_norm=True, peephole=True), "layer_norm=True does not combine with peephole"),
    (dict(layer_norm=True, clip=1.0, input_forget=True),
     "does not combine with clip, input_forget"),
    (dict(layer_norm="on"), "layer_norm must be True or False"),
])
def test_variant_arguments_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LSTM(3, 4, **kwargs)


@pytest.mark.parametrize("kw", [dict(peephole=True), dict(direction="reverse"),
                                dict(proj_size=2)])
def test_the_seed_step_refuses_variants(kw):
    with pytest.raises(ConfigError, match="forward\\(\\) is the seed's step"):
        LSTM(3, 4, **kw).forward(np.zeros((3, 1)))


def test_variants_save_and_load(tmp_path, rng):
    for kw in VARIANTS:
        model = _random_weights(LSTM(3, 4, 2, seed=0, **kw), rng)
        loaded = LSTM.load(model.save(tmp_path / "m.npz"))
        assert loaded.options() == model.options()
        x = rng.standard_normal((5, 2, 3)).astype(np.float32)
        np.testing.assert_array_equal(loaded(x)[0], model(x)[0])


# -- ONNX ----------------------------------------------------------------------------------------
ONNX_VARIANTS = [kw for kw in VARIANTS if "proj_size" not in kw and "layer_norm" not in kw] + [
    dict(peephole=True, clip=0.5, bidirectional=True)]


@pytest.mark.parametrize("kw", ONNX_VARIANTS, ids=_id)
def test_onnx_export_of_variants_runs_in_onnxruntime(tmp_path, rng, kw):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _random_weights(LSTM(3, 4, 2, seed=0, **kw), rng, 0.8)
    path = model.to_onnx(tmp_path / "m.onnx")
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y, y_h, y_c = session.run(None, {"X": x})
    want_y, (want_h, want_c) = model(x)
    for got, want in ((y, want_y), (y_h, want_h), (y_c, want_c)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    back = LSTM.from_onnx(path)
    options = back.options()
    if model.clip is not None:  # ONNX stores attributes in float32
        assert options.pop("clip") == pytest.approx(model.clip, rel=1e-7)
    assert options == {k: v for k, v in model.options().items() if k in options}
    np.testing.assert_allclose(back(x)[0], want_y, rtol=1e-6, atol=1e-7)


def _hand_written(tmp_path, rng, *, direction, clip, input_forget, peephole, layout=0):
    """An LSTM node written with onnx.helper directly (not by to_onnx)."""
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    D = 2 if direction == "bidirectional" else 1
    H, I = 4, 3
    arrays = {"W": rng.standard_normal((D, 4 * H, I)), "R": rng.standard_normal((D, 4 * H, H)),
              "B": rng.standard_normal((D, 8 * H)), "P": rng.standard_normal((D, 3 * H))}
    inits = [onnx.numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()
             if n != "P" or peephole]
    inputs = ["X", "W", "R", "B"] + (["", "", "", "P"] if peephole else [])
    attrs = dict(hidden_size=H, direction=direction, input_forget=int(input_forget),
                 activations=["Sigmoid", "Tanh", "Tanh"] * D, layout=layout)
    if clip is not None:
        attrs["clip"] = clip
    node = h.make_node("LSTM", inputs, ["Y", "Y_h", "Y_c"], **attrs)
    shape = [2, 6, I] if layout else [6, 2, I]
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("X", onnx.TensorProto.FLOAT,
                                                                shape)],
                         [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                          for n in ("Y", "Y_h", "Y_c")], inits)
    path = tmp_path / "hand.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 14)]), str(path))
    return path


@pytest.mark.parametrize("direction,clip,input_forget,peephole", [
    *itertools.product(["forward", "reverse", "bidirectional"], [None, 0.6], [False, True],
                       [False, True])])
def test_hand_written_onnx_lstm_nodes_import_exactly(tmp_path, rng, direction, clip,
                                                     input_forget, peephole):
    """ONNX LSTM nodes written by hand, every attribute combination lstm-xp imports: the
    imported model reproduces onnxruntime (and onnx's reference evaluator, which ignores
    clip and input_forget, where neither is set)."""
    ort = pytest.importorskip("onnxruntime")
    from onnx.reference import ReferenceEvaluator

    path = _hand_written(tmp_path, rng, direction=direction, clip=clip,
                         input_forget=input_forget, peephole=peephole)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    y, y_h, y_c = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"X": x})
    model = LSTM.from_onnx(path)
    got_y, (got_h, got_c) = model(x)
    D = 2 if direction == "bidirectional" else 1
    # ONNX's Y is [T, D, B, H]; the library's outputs are (T, B, D*H).
    np.testing.assert_allclose(got_y, y.transpose(0, 2, 1, 3).reshape(6, 2, D * 4),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_h, y_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_c, y_c, rtol=1e-5, atol=1e-6)
    if clip is None and not input_forget:
        ref_y, _, _ = ReferenceEvaluator(str(path)).run(None, {"X": x})
        np.testing.assert_allclose(got_y, ref_y.transpose(0, 2, 1, 3).reshape(6, 2, D * 4),
                                   rtol=1e-5, atol=1e-6)


def test_batch_first_onnx_layout_imports(tmp_path, rng):
    """layout=1 (batch-first tensors): onnxruntime refuses it, onnx's reference evaluator
    runs it and is the oracle."""
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    path = _hand_written(tmp_path, rng, direction="forward", clip=None, input_forget=False,
                         peephole=True, layout=1)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    y, y_h, _ = ReferenceEvaluator(str(path)).run(None, {"X": x})
    model = LSTM.from_onnx(path)
    assert model.batch_first
    got, (got_h, _) = model(x)
    np.testing.assert_allclose(got, y.reshape(2, 6, 4), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_h, y_h.transpose(1, 0, 2), rtol=1e-5, atol=1e-6)


def test_onnx_refuses_non_default_activations_and_projections(tmp_path, rng):
    onnx = pytest.importorskip("onnx")
    from lstm_xp import StateDictError

    path = _hand_written(tmp_path, rng, direction="forward", clip=None, input_forget=False,
                         peephole=False)
    proto = onnx.load(str(path))
    for attr in proto.graph.node[0].attribute:
        if attr.name == "activations":
            attr.strings[1] = b"Relu"
    onnx.save(proto, str(path))
    with pytest.raises(StateDictError, match="activations"):
        LSTM.from_onnx(path)
    with pytest.raises(ConfigError, match="ONNX's LSTM operator has no projection"):
        LSTM(3, 4, proj_size=2).to_onnx(tmp_path / "p.onnx")
    with pytest.raises(ConfigError, match="ONNX's LSTM operator has no equivalent of "
                                          "layer_norm"):
        LSTM(3, 4, layer_norm=True).to_onnx(tmp_path / "p.onnx")


# -- LSTMCell ------------------------------------------------------------------------------------
CELL_VARIANTS = [kw for kw in VARIANTS if "direction" not in kw]


@pytest.mark.parametrize("kw", [{}, *CELL_VARIANTS], ids=lambda kw: _id(kw) or "plain")
def test_cell_variants_equal_the_reference_and_save(case, to_np, rng, tmp_path, kw):
    from reference import _run_direction

    from lstm_xp import LSTMCell

    I, H, B = 3, 5, 2
    cell = LSTMCell(I, H, dtype="float64", seed=0, **kw)
    cell.load_state_dict({k: 0.8 * rng.standard_normal(tuple(v.shape))
                          for k, v in cell.state_dict().items()})
    P = kw.get("proj_size") or H
    x, h, c = rng.standard_normal((B, I)), rng.standard_normal((B, P)), rng.standard_normal((B, H))
    p = cell.state_dict()
    ln = None if "ln_gates_weight" not in p else tuple(
        p[n] for n in ("ln_gates_weight", "ln_gates_bias", "ln_cell_weight", "ln_cell_bias"))
    want = [_run_direction(x[b : b + 1], p["weight_ih"], p["weight_hh"], p["bias_ih"],
                           p["bias_hh"], h[b], c[b], p.get("weight_hr"), p.get("peephole"),
                           kw.get("clip"), kw.get("input_forget", False), ln)
            for b in range(B)]
    moved = cell.to(backend=case.backend, device=case.device, dtype=case.dtype("float64"))
    got_h, got_c = moved(x, (h, c))
    np.testing.assert_allclose(to_np(got_h), np.array([w[1] for w in want]), rtol=1e-12,
                               atol=1e-13)
    np.testing.assert_allclose(to_np(got_c), np.array([w[2] for w in want]), rtol=1e-12,
                               atol=1e-13)
    loaded = LSTMCell.load(cell.save(tmp_path / "cell.npz"))
    assert loaded.config() == cell.config()
    np.testing.assert_array_equal(loaded(x, (h, c))[0], cell(x, (h, c))[0])


def test_cell_and_model_files_are_not_mixed_up(tmp_path):
    from lstm_xp import LSTMCell, ModelFileError

    cell_file = LSTMCell(3, 4).save(tmp_path / "cell.npz")
    model_file = LSTM(3, 4).save(tmp_path / "model.npz")
    with pytest.raises(ModelFileError, match=r"holds an lstm-xp LSTMCell.*LSTMCell\.load"):
        LSTM.load(cell_file)
    with pytest.raises(ModelFileError, match="holds an lstm-xp LSTM, not an LSTMCell"):
        LSTMCell.load(model_file)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_onnx_sequence_lens_fed_at_run_time_are_the_models_lengths(tmp_path, rng, direction):
    """An LSTM node whose sequence_lens is a graph input imports; feeding the same lengths
    as lengths= gives onnxruntime's outputs (zero past each length, the state at each
    sequence's own last step, the backward direction starting there)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = _hand_written(tmp_path, rng, direction=direction, clip=None, input_forget=False,
                         peephole=True)
    proto = onnx.load(str(path))
    node = proto.graph.node[0]
    node.input[4] = "lens"
    proto.graph.input.append(onnx.helper.make_tensor_value_info("lens", onnx.TensorProto.INT32,
                                                                [2]))
    onnx.save(proto, str(path))
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    lens = np.array([6, 3], np.int32)
    y, y_h, y_c = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"X": x, "lens": lens})
    got_y, (got_h, got_c) = LSTM.from_onnx(path)(x, lengths=lens)
    D = 2 if direction == "bidirectional" else 1
    np.testing.assert_allclose(got_y, y.transpose(0, 2, 1, 3).reshape(6, 2, D * 4),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_h, y_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_c, y_c, rtol=1e-5, atol=1e-6)


def test_version_1_files_load_as_plain_models(tmp_path, rng):
    """Files of format version 1 (before the variants) have no option keys: they load as
    the plain LSTM they were."""
    import json

    model = LSTM(3, 4, 2, seed=0)
    path = model.save(tmp_path / "v1.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    schema = json.loads(arrays["__lstm_xp_schema__"].tobytes())
    for key in ("proj_size", "peephole", "clip", "input_forget", "direction", "layer_norm"):
        del schema[key]
    schema["format_version"] = 1
    arrays["__lstm_xp_schema__"] = np.frombuffer(json.dumps(schema).encode(), np.uint8)
    np.savez(path, **arrays)
    loaded = LSTM.load(path)
    assert loaded.options() == model.options()
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x)[0], model(x)[0])
