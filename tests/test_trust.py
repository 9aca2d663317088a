"""No silent wrong results, and a clear error for every bad input.

Each test here is a case that once gave a wrong answer silently, or a raw TypeError,
IndexError or MemoryError from deep inside, where a specific lstm-xp error belongs.
"""

from __future__ import annotations

import copy
import json
import pickle
import types

import numpy as np
import pytest
from calls import together

from lstm_xp import (
    LSTM,
    SGD,
    Adam,
    AllocationError,
    ConfigError,
    LabelError,
    LengthsError,
    Linear,
    LSTMCell,
    ModelFileError,
    ShapeError,
    StateDictError,
    TapeError,
    UnknownBackendError,
    softmax_cross_entropy,
)


# -- silently wrong, once ----------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [[2**32 + 3, 1], [2**70, 1], np.array([2**32 + 3, 1]),
                                     [-(2**32) + 2, 1]])
def test_lengths_are_range_checked_before_any_cast(lengths):
    """2**32 + 3 cast to int32 is 3, which would pass the range check and run 3 steps."""
    model = LSTM(3, 4)
    with pytest.raises(LengthsError, match=r"lengths must lie in 0..T = 0..5; sequence 0"):
        model(np.zeros((5, 2, 3)), lengths=lengths)


def test_backward_refuses_a_tape_from_another_model(rng):
    x = rng.standard_normal((4, 2, 3))
    a, b = LSTM(3, 4, seed=0), LSTM(3, 4, 2, seed=0)
    out, _, tape = a.forward_train(x)
    with pytest.raises(TapeError, match="recorded by another model"):
        b.backward(tape, np.ones_like(out))
    with pytest.raises(TapeError, match="recorded by another model"):
        copy.deepcopy(a).backward(tape, np.ones_like(out))
    with pytest.raises(TapeError, match="must be the Tape that forward_train returned"):
        a.backward({"layers": []}, np.ones_like(out))
    dx, _, grads = a.backward(tape, np.ones_like(out))  # its own model still takes it
    assert dx.shape == x.shape and set(grads) == set(a.state_dict())


@pytest.mark.parametrize("labels", [[0, 3], [-1, 0], [0, 7]])
def test_labels_outside_the_classes_are_refused(labels):
    logits = np.zeros((2, 3))
    with pytest.raises(LabelError, match=r"labels must lie in 0..C-1 = 0..2"):
        softmax_cross_entropy(logits, np.array(labels))
    loss, _ = softmax_cross_entropy(logits, np.array([0, 2]))
    np.testing.assert_allclose(loss, np.log(3.0))


@pytest.mark.parametrize("make", [lambda mods: Adam(mods, lr=0.1),
                                  lambda mods: SGD(mods, lr=0.1, momentum=0.9)])
def test_a_failed_optimiser_step_changes_nothing(rng, make):
    """Gradients that do not match fail before any state changes: the next correct step
    gives what it gives on a fresh optimiser."""
    def build():
        return [LSTM(2, 3, seed=1), Linear(3, 1, seed=2)]

    grads = [{k: np.full(v.shape, 0.5, np.float32) for k, v in m.state_dict().items()}
             for m in build()]
    bad = [dict(grads[0]), {"weight": np.ones((2, 2), np.float32)}]  # second module wrong
    modules, fresh = build(), build()
    opt, ref = make(modules), make(fresh)
    before = [copy.deepcopy(m.state_dict()) for m in modules]
    with pytest.raises(StateDictError, match=r"gradient 'weight' must be a numpy array of "
                                             r"shape \(1, 3\)"):
        opt.step(bad)
    assert opt.steps == 0
    for m, b in zip(modules, before, strict=True):
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v, b[k])
    with pytest.raises(ConfigError, match="list of 2 gradient dicts"):
        opt.step(grads[0])
    for _ in range(2):
        opt.step(grads)
        ref.step(grads)
    for m, r in zip(modules, fresh, strict=True):
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v, r.state_dict()[k])


# -- ONNX files lstm-xp would not reproduce are refused ------------------------------------------
def _onnx_lstm(tmp_path, *, extra_inputs=(), attrs=None, constants=(), after=None):
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    hidden, size_in = 3, 2
    rng = np.random.default_rng(0)
    inits = [onnx.numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, size_in))
                                          .astype(np.float32), "W"),
             onnx.numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, hidden))
                                          .astype(np.float32), "R")]
    for name, array in constants:
        inits.append(onnx.numpy_helper.from_array(array, name))
    inputs = ["X", "W", "R", *extra_inputs]
    nodes = [h.make_node("LSTM", inputs, ["Y", "Y_h"], hidden_size=hidden, **(attrs or {}))]
    out = "Y_h"
    if after is not None:
        nodes.append(h.make_node(after, ["Y_h", "Y_h"], ["Z"]))
        out = "Z"
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("X", onnx.TensorProto.FLOAT,
                                                               [4, 1, size_in])],
                         [h.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)], inits)
    path = tmp_path / "m.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 14)]), str(path))
    return path


@pytest.mark.parametrize("kind,match", [
    ("peephole", "P \\(peepholes\\) .*an input of the graph"),
    ("initial_h", "initial_h .*a constant in the file"),
    ("sequence_lens", "sequence_lens"),
    ("after", r"\['Add'\] nodes besides LSTM"),
])
def test_onnx_models_lstm_xp_would_not_reproduce_are_refused(tmp_path, kind, match):
    zeros = np.zeros((1, 1, 3), np.float32)
    options = {
        "peephole": dict(extra_inputs=["", "", "", "", "P"]),
        "initial_h": dict(extra_inputs=["", "", "h0"], constants=[("h0", zeros)]),
        "sequence_lens": dict(extra_inputs=["", "lens"],
                              constants=[("lens", np.array([2], np.int32))]),
        "after": dict(after="Add"),
    }[kind]
    path = _onnx_lstm(tmp_path, **options)
    with pytest.raises(StateDictError, match=match):
        LSTM.from_onnx(path)


def test_a_plain_onnx_lstm_still_imports(tmp_path):
    model = LSTM.from_onnx(_onnx_lstm(tmp_path))
    assert (model.input_size, model.hidden_size, model.num_layers) == (2, 3, 1)


# -- generic crashes where a specific error belongs --------------------------------------------
def _rewrite_schema(path, **changes):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    schema = json.loads(arrays["__lstm_xp_schema__"].tobytes())
    schema.update(changes)
    arrays["__lstm_xp_schema__"] = np.frombuffer(json.dumps(schema).encode(), np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("changes,match", [
    (dict(input_size=10**12), r"schema .*says \(16, 1000000000000\)"),
    (dict(input_size="3"), "input_size must be a positive integer; got '3'"),
    (dict(bidirectional="yes"), "bidirectional must be true or false"),
    (dict(num_layers=2), "schema describes parameters"),
    (dict(dtype="int8"), "dtype must be float16, float32 or float64"),
    (dict(sha256=[1, 2]), "sha256 must map parameter names"),
])
def test_model_files_whose_schema_lies_are_refused(tmp_path, changes, match):
    path = LSTM(3, 4, seed=0).save(tmp_path / "m.npz")
    _rewrite_schema(path, **changes)
    with pytest.raises(ModelFileError, match=match):
        LSTM.load(path)


def test_a_text_file_is_called_a_text_file(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("hello, these are notes\n")
    with pytest.raises(ModelFileError, match=r"it is a text file .*'hello, these are notes'"):
        LSTM.load(path)
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match="the file is empty"):
        LSTM.load(path)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ModelFileError, match=r"single NumPy \.npy array"):
        LSTM.load(tmp_path / "one.npy")


def test_save_errors_name_the_path_asked_for(tmp_path):
    target = tmp_path / "missing" / "m.npz"
    with pytest.raises(FileNotFoundError, match=rf"cannot write {target}") as info:
        LSTM(2, 3).save(target)
    assert ".tmp" not in str(info.value)


@pytest.mark.parametrize("order", [(1, 0, 2), (2, 0, 1), (0, 2, 1)])
def test_keras_weights_in_the_wrong_order(order):
    model = LSTM(3, 5, seed=0)
    weights = model.to_keras()[0]
    with pytest.raises(StateDictError, match=r"expected kernel \(in, 4H\)"):
        LSTM.from_keras([[weights[k] for k in order]])


def test_from_torch_with_a_cell_points_to_lstmcell(rng):
    torch = pytest.importorskip("torch")
    cell = torch.nn.LSTMCell(3, 4, dtype=torch.float64)
    with pytest.raises(StateDictError, match=r"LSTMCell\.from_torch"):
        LSTM.from_torch(cell)
    with pytest.raises(StateDictError, match=r"use lstm_xp\.LSTM\.from_torch"):
        LSTMCell.from_torch(torch.nn.LSTM(3, 4))
    ours = LSTMCell.from_torch(cell)
    x, h, c = (rng.standard_normal(s) for s in [(2, 3), (2, 4), (2, 4)])
    want = cell(*(torch.from_numpy(a) for a in (x,)), (torch.from_numpy(h), torch.from_numpy(c)))
    got = ours(x, (h, c))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.detach().numpy(), rtol=1e-12, atol=1e-12)
    back = ours.to_torch()
    for name, value in cell.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name].numpy(), value.numpy())


def test_dask_lengths_of_the_wrong_length():
    da = pytest.importorskip("dask.array")
    from lstm_xp.dask import forward

    X = da.zeros((5, 4, 3), chunks=(5, 2, 3))
    with pytest.raises(ShapeError, match=r"lengths has shape \(3,\); expected \(4,\)"):
        forward(LSTM(3, 2), X, [5, 5, 5])


@pytest.mark.parametrize("kwargs,match", [
    (dict(seed="a"), "seed must be None or a non-negative integer; got str 'a'"),
    (dict(seed=1.5), "seed must be None or a non-negative integer; got float 1.5"),
    (dict(seed=True), "seed must be None or a non-negative integer"),
    (dict(batch_first="False"), "batch_first must be True or False; got str 'False'"),
    (dict(bias="no"), "bias must be True or False"),
    (dict(bidirectional=None), "bidirectional must be True or False"),
    (dict(dropout="0.5"), "dropout must be a number; got str '0.5'"),
    (dict(kernel=["pure"]), "kernel must be 'auto' or one of"),
    (dict(bias_init="glorot"), "unknown bias_init 'glorot'"),
    (dict(bias=False, bias_init="glorot"), "unknown bias_init 'glorot'"),
    (dict(bias_init="chrono", chrono_max="100"), "needs chrono_max > 2"),
])
def test_constructor_arguments_of_the_wrong_type(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LSTM(3, 4, **kwargs)


@pytest.mark.parametrize("make,match", [
    (lambda m: SGD([m], lr="0.1"), "lr must be a number"),
    (lambda m: SGD([m], lr=0.1, momentum=1.0), r"momentum must be in \[0, 1\)"),
    (lambda m: Adam([m], betas=0.9), "betas must be a pair"),
    (lambda m: Adam([m], eps=-1.0), "eps must be in"),
    (lambda m: Adam(["not a module"]), "updates lstm-xp modules"),
])
def test_optimiser_arguments_of_the_wrong_type(make, match):
    with pytest.raises(ConfigError, match=match):
        make(LSTM(2, 3))


def test_an_object_that_is_no_namespace_as_backend():
    fake = types.SimpleNamespace(empty=lambda n: [], asarray=None, tanh=None, matmul=None)
    with pytest.raises(UnknownBackendError, match="looks like an array library but is no "
                                                  "Array API namespace"):
        LSTM(2, 3, backend=fake)


def test_ragged_nested_lists():
    with pytest.raises(ShapeError, match="X is a nested sequence whose rows have different "
                                         "lengths"):
        LSTM(3, 4)([[[0.0, 0.0, 0.0]], [[0.0, 0.0]]])


def test_sizes_too_large_to_allocate():
    with pytest.raises(AllocationError, match=r"8,000,008,000,000 values"):
        LSTM(10**6, 10**6)
    with pytest.raises(MemoryError):  # AllocationError is a MemoryError too
        LSTM(10**6, 10**6)


def test_a_python_bool_as_reset_for_an_unbatched_input(rng):
    model = LSTM(3, 4, seed=0, dtype="float64")
    x = rng.standard_normal((5, 3))
    state = (rng.standard_normal((1, 4)), rng.standard_normal((1, 4)))
    got = model(x, state, reset=True)
    want = model(x)  # reset: as from zeros
    for a, b in zip((got[0], *got[1]), (want[0], *want[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    y0 = want[0]
    y1, _ = model(x, state, reset=False)
    assert not np.allclose(y1, y0)


def test_dtype_none_means_float32():
    assert LSTM(3, 4, dtype=None).dtype == np.float32
    assert LSTMCell(3, 4, dtype=None).dtype == np.float32
    assert LSTM(3, 4, dtype="float64").to(dtype=None).dtype == np.float64  # to(): keep


# -- copies, pickles, threads ------------------------------------------------------------------
def test_models_pickle_and_deepcopy_on_every_backend(case, to_np, rng):
    model = LSTM(3, 4, 2, bidirectional=True, seed=1, dtype=case.dtype("float32"),
                 **case.model_kwargs)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    want = to_np(model(x)[0])
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert (other.backend, other.kernel, other.backend_reason) == \
            (model.backend, model.kernel, model.backend_reason)
        assert str(other.device) == str(model.device)
        np.testing.assert_array_equal(to_np(other(x)[0]), want)
        out, _, tape = other.forward_train(x)
        dx, _, _ = other.backward(tape, out * 0 + 1)
        assert dx.shape == x.shape
    cell = LSTMCell(3, 4, seed=2, **case.model_kwargs)
    h, _ = pickle.loads(pickle.dumps(cell))(x[0])
    np.testing.assert_array_equal(to_np(h), to_np(cell(x[0])[0]))


def test_optimisers_pickle_with_their_state(rng):
    model = LSTM(2, 3, seed=0)
    opt = Adam([model], lr=0.1)
    grads = [{k: np.ones(v.shape, np.float32) for k, v in model.state_dict().items()}]
    opt.step(grads)
    clone = pickle.loads(pickle.dumps(opt))
    opt.step(grads)
    clone.step(grads)
    assert clone.steps == opt.steps == 2
    for k, v in opt.modules[0].state_dict().items():
        np.testing.assert_array_equal(clone.modules[0].state_dict()[k], v)


@pytest.mark.parametrize("kernel", ["auto", "pure"])
def test_training_one_model_from_several_threads(rng, kernel):
    """The fused training pass reuses a workspace: calls from several threads at once must
    each get exactly their single-threaded gradients."""
    model = LSTM(4, 6, 2, bidirectional=True, seed=3, dtype="float64", kernel=kernel)
    shapes = [(7, 3), (5, 2), (9, 4), (7, 3)] * 2
    inputs = [(rng.standard_normal((T, B, 4)), rng.standard_normal((T, B, 12)))
              for T, B in shapes]

    def step(i):
        x, dy = inputs[i]
        out, _, tape = model.forward_train(x)
        dx, _, grads = model.backward(tape, dy)
        return out, dx, grads

    alone = [step(i) for i in range(len(inputs))]
    for _ in range(3):
        shared = together(len(inputs), 1, step)
        for (o1, d1, g1), (o2, d2, g2) in zip(alone, shared, strict=True):
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_array_equal(d1, d2)
            for k in g1:
                np.testing.assert_array_equal(g1[k], g2[k])


def test_inference_from_several_threads(case, to_np, rng):
    model = LSTM(3, 5, 2, seed=4, **case.model_kwargs)
    inputs = [rng.standard_normal((6, b, 3)).astype(np.float32) for b in (1, 2, 3, 4)]
    alone = [to_np(model(x)[0]) for x in inputs]
    shared = together(len(inputs), 1, lambda i: to_np(model(inputs[i])[0]))
    for a, b in zip(alone, shared, strict=True):
        np.testing.assert_array_equal(a, b)


def test_more_entry_points_check_their_arguments(tmp_path, rng):
    from lstm_xp import clip_grad_norm

    model = LSTM(2, 3, seed=0)
    grads = {k: np.ones(v.shape, np.float32) for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="list of gradient dicts"):
        clip_grad_norm(grads, 1.0)
    with pytest.raises(TapeError, match="LinearTape"):
        Linear(3, 1).backward(None, np.zeros((2, 1)))
    with pytest.raises(ConfigError, match="opset must be 14 or newer"):
        model.to_onnx(tmp_path / "m.onnx", opset=11)
    with pytest.raises(ConfigError, match="initial_state must be True or False"):
        model.to_onnx(tmp_path / "m.onnx", initial_state="yes")
    with pytest.raises(StateDictError, match="state_dict must be a mapping"):
        LSTM.from_state_dict([1, 2])
    _, norm = clip_grad_norm([grads], 1.0)
    assert norm == pytest.approx(np.sqrt(sum(v.size for v in grads.values())))
