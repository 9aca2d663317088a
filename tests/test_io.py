"""lstm-xp's own file format: round trips, atomic writes, and every way a file can be bad."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lstm_xp import LSTM
from lstm_xp import io as model_io
from lstm_xp.io import ModelFileError


@pytest.fixture
def saved(tmp_path):
    model = LSTM(3, 4, 2, bidirectional=True, batch_first=True, init="pytorch", seed=5)
    return model, model.save(tmp_path / "model.npz")


def test_round_trip_is_bit_exact(case, to_np, saved, rng):
    model, path = saved
    loaded = LSTM.load(path, **case.model_kwargs)
    assert loaded.backend == case.backend
    assert (loaded.num_layers, loaded.bidirectional, loaded.batch_first) == (2, True, True)
    for k, v in model.state_dict().items():
        got = to_np(loaded.state_dict()[k])
        assert got.dtype == v.dtype
        np.testing.assert_array_equal(got, v)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(to_np(loaded(x)[0]), model(x)[0], rtol=1e-5, atol=1e-6)


def test_float64_and_no_bias(tmp_path):
    model = LSTM(2, 3, bias=False, dtype="float64", seed=1)
    loaded = LSTM.load(model.save(tmp_path / "m.npz"))
    assert loaded.state_dict()["weight_hh_l0"].dtype == np.float64 and not loaded.bias
    assert LSTM.load(tmp_path / "m.npz", dtype="float32").state_dict()[
        "weight_hh_l0"].dtype == np.float32


def test_failed_write_leaves_old_file_and_no_temporary(saved, monkeypatch):
    _, path = saved
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        LSTM(3, 4, seed=9).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("tenth", range(10))
def test_truncated_file(saved, tenth):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * tenth // 10])
    with pytest.raises(ModelFileError, match=r"model\.npz"):
        LSTM.load(path)


def test_flipped_bytes_are_caught_or_harmless(saved):
    """A flipped byte either makes loading fail with ModelFileError or (in bytes nothing
    reads, such as a zip timestamp) leaves the weights exactly as saved."""
    model, path = saved
    data = path.read_bytes()
    positions = np.unique(np.linspace(0, len(data) - 1, 97).astype(int))
    failures = 0
    for pos in positions:
        corrupt = bytearray(data)
        corrupt[pos] ^= 0xFF
        path.write_bytes(bytes(corrupt))
        try:
            loaded = LSTM.load(path)
        except ModelFileError as exc:
            assert "model.npz" in str(exc)
            failures += 1
            continue
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(loaded.state_dict()[k], v)
    assert failures > len(positions) // 2


def test_flipped_weight_byte_fails_the_checksum(saved):
    model, path = saved
    data = bytearray(path.read_bytes())
    needle = model.state_dict()["weight_hh_l1_reverse"].tobytes()[:16]
    pos = bytes(data).find(needle)
    assert pos > 0
    data[pos + 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"corrupted|checksum"):
        LSTM.load(path)


def _rewrite(path, schema_update=None, extra=None):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    schema = json.loads(arrays["__lstm_xp_schema__"].tobytes())
    schema.update(schema_update or {})
    arrays["__lstm_xp_schema__"] = np.frombuffer(json.dumps(schema).encode(), np.uint8)
    arrays.update(extra or {})
    np.savez(path, **arrays)


def test_newer_format_version(saved):
    _, path = saved
    _rewrite(path, {"format_version": model_io.FORMAT_VERSION + 1})
    with pytest.raises(ModelFileError, match=r"newer than this lstm-xp reads.*Upgrade"):
        LSTM.load(path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __lstm_xp_schema__=np.array([{"format": "lstm-xp"}], dtype=object))
    with pytest.raises(ModelFileError, match="pickled objects"):
        LSTM.load(path)


def test_not_an_lstm_xp_file(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, weight_ih_l0=np.zeros((4, 2)))
    with pytest.raises(ModelFileError, match="not an lstm-xp model file"):
        LSTM.load(path)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match=r"text\.npz"):
        LSTM.load(text)


def test_schema_and_contents_disagree(saved):
    _, path = saved
    _rewrite(path, extra={"weight_ih_l9": np.zeros((16, 3), np.float32)})
    with pytest.raises(ModelFileError, match="schema lists parameters"):
        LSTM.load(path)


def test_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        LSTM.load(tmp_path / "nope.npz")
