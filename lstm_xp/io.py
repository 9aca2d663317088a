"""lstm-xp's own file format: one ``.npz`` file, safe to load.

The file holds every parameter as a plain NumPy array under its PyTorch name, and a JSON schema
(stored as bytes in a ``uint8`` array, never pickled) with the sizes, layer count, direction,
dtype, gate order, format version and a SHA-256 of every parameter. Loading uses
``numpy.load(..., allow_pickle=False)``: no code from the file is ever run. Writes go to a
temporary file in the same folder, then an atomic rename: a failure never leaves half a file
at the path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._naming import param_shapes
from ._variants import DEFAULT_OPTIONS
from .errors import ModelFileError

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "load", "save", "write_atomic"]

FORMAT = "lstm-xp"
FORMAT_VERSION = 2  # 2: the variants' options (version 1 files load as plain LSTMs)
_SCHEMA_KEY = "__lstm_xp_schema__"
_CONFIG_KEYS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                "bidirectional")
#: Options beyond the sizes, with what a version 1 file (which has none) means.
OPTION_DEFAULTS: dict[str, Any] = dict(DEFAULT_OPTIONS)
OPTION_KEYS = tuple(OPTION_DEFAULTS)


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def write_atomic(path: str | os.PathLike[str], payload: bytes | None = None,
                 write: Any = None) -> Path:
    """Write ``payload`` (or call ``write(file)``) into a temporary file beside ``path``, then
    rename it over ``path``: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # say which path was asked for, not the temporary file's
        raise _write_error(exc, path, f" (its folder {path.parent} must exist and be "
                                      "writable)") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            if write is not None:
                write(f)
            elif payload is not None:
                f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise _write_error(exc, path) from exc
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _write_error(exc: OSError, path: Path, hint: str = "") -> OSError:
    """``exc`` again (same class and errno), naming ``path`` rather than a temporary file."""
    if exc.errno is None:
        return type(exc)(f"cannot write {path}: {exc}{hint}")
    return type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}{hint}", str(path))


def save(path: str | os.PathLike[str], params: Mapping[str, np.ndarray],
         config: Mapping[str, Any], dtype: str, kind: str = "LSTM") -> Path:
    """Write ``params`` and the schema to ``path`` atomically. Returns the path.

    ``kind`` is ``"LSTM"`` or ``"LSTMCell"`` (whose ``config`` has no layers, direction or
    layout: one layer, one direction)."""
    path = Path(path)
    if kind == "LSTMCell":
        config = {**config, "num_layers": 1, "batch_first": False, "bidirectional": False}
    schema = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": kind,
        **{k: config[k] for k in _CONFIG_KEYS},
        **{k: config.get(k, v) for k, v in OPTION_DEFAULTS.items()},
        "dtype": dtype,
        "gate_order": "ifgo",
        "layout": "torch.nn.LSTM",
        "sha256": {name: _digest(a) for name, a in params.items()},
    }
    arrays = {name: np.ascontiguousarray(a) for name, a in params.items()}
    arrays[_SCHEMA_KEY] = np.frombuffer(json.dumps(schema).encode("utf-8"), dtype=np.uint8)
    return write_atomic(path, write=lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def load(path: str | os.PathLike[str],
         kind: str = "LSTM") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a file written by :func:`save`.

    Returns
    -------
    (schema, params)

    Raises
    ------
    FileNotFoundError, PermissionError
        As the operating system says (subclasses of ``OSError``).
    ModelFileError
        For anything wrong with the contents; the message names the file.
    """
    path = Path(path)
    data = path.read_bytes()  # OSError (missing file, ...) passes through unchanged

    def bad(why: str) -> ModelFileError:
        return ModelFileError(f"{path}: {why}")

    if not data.startswith(_ZIP_MAGIC):  # what np.load would otherwise take for a pickle
        raise bad(f"not an lstm-xp model file: {_describe(data)}, where LSTM.save() writes a "
                  "NumPy .npz (zip) archive.")

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = list(npz.files)
            if _SCHEMA_KEY not in names:
                raise bad("not an lstm-xp model file (no schema); expected a file written by "
                          "LSTM.save().")
            arrays = {name: npz[name] for name in names}
    except ModelFileError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise bad("holds pickled objects, which lstm-xp never writes and never loads; "
                      "refusing it.") from exc
        raise bad(f"corrupted or truncated ({exc}).") from exc
    except Exception as exc:
        # A damaged archive can fail in many ways (BadZipFile, zlib.error, EOFError, an
        # "unsupported compression method" NotImplementedError, ...); all mean the same here.
        raise bad(f"corrupted or truncated ({type(exc).__name__}: {exc}).") from exc
    try:
        schema = json.loads(arrays.pop(_SCHEMA_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"its schema is not valid JSON ({exc}).") from exc
    if not isinstance(schema, dict) or schema.get("format") != FORMAT:
        raise bad(f"not an lstm-xp model file (format {schema.get('format')!r}).")
    version = schema.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise bad(f"written in format version {version!r}, newer than this lstm-xp reads "
                  f"({FORMAT_VERSION}). Upgrade lstm-xp to load it.")
    missing = [k for k in (*_CONFIG_KEYS, "dtype", "sha256") if k not in schema]
    if version >= 2:
        missing += [k for k in OPTION_KEYS if k not in schema]
    if missing:
        raise bad(f"its schema lacks {missing}.")
    for key, default in OPTION_DEFAULTS.items():
        schema.setdefault(key, default)
    found = schema.get("class", "LSTM")
    if found != kind:
        raise bad(f"it holds an lstm-xp {found}, not an {kind}: load it with "
                  f"lstm_xp.{found}.load.")
    _check_schema(schema, bad)
    digests = schema["sha256"]
    if set(digests) != set(arrays):
        raise bad(f"its schema lists parameters {sorted(digests)} but the file holds "
                  f"{sorted(arrays)}.")
    for name, array in arrays.items():
        if array.dtype.name != schema["dtype"]:
            raise bad(f"parameter {name!r} has dtype {array.dtype}, the schema says "
                      f"{schema['dtype']}.")
        if _digest(array) != digests[name]:
            raise bad(f"parameter {name!r} does not match its checksum: the file is corrupted.")
    # The sizes the schema claims must be those of the arrays, before anything is built.
    expected = param_shapes(schema["input_size"], schema["hidden_size"], schema["num_layers"],
                            schema["bidirectional"], schema["bias"], schema["proj_size"],
                            schema["peephole"], schema["layer_norm"])
    if kind == "LSTMCell":  # the one layer's names, without the _l0 suffix
        expected = {name.removesuffix("_l0"): shape for name, shape in expected.items()}
    if set(expected) != set(arrays):
        raise bad(f"its schema describes parameters {sorted(expected)} but the file holds "
                  f"{sorted(arrays)}.")
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != shape:
            raise bad(f"parameter {name!r} has shape {tuple(arrays[name].shape)}; its schema "
                      f"(sizes {[schema[k] for k in _CONFIG_KEYS[:3]]}) says {shape}.")
    return schema, arrays


_ZIP_MAGIC = b"PK\x03\x04"


def _describe(data: bytes) -> str:
    """What a file that is no .npz archive looks like, from its first bytes."""
    if not data:
        return "the file is empty"
    if data.startswith(b"\x93NUMPY"):
        return "it is a single NumPy .npy array"
    if data[:1] == b"\x80":
        return "it holds a Python pickle, which lstm-xp never loads"
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it starts with the bytes {head[:8]!r}"
    if all(c.isprintable() or c.isspace() for c in text):
        first = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"it is a text file (it starts {first!r})"
    return f"it starts with the bytes {head[:8]!r}"


def _check_schema(schema: dict[str, Any], bad: Any) -> None:
    """Types and ranges of the schema's entries (a hand-edited or damaged file)."""
    for key in ("input_size", "hidden_size", "num_layers"):
        value = schema[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(f"its schema's {key} must be a positive integer; got {value!r}.")
    for key in ("bias", "batch_first", "bidirectional"):
        if not isinstance(schema[key], bool):
            raise bad(f"its schema's {key} must be true or false; got {schema[key]!r}.")
    proj = schema["proj_size"]
    if isinstance(proj, bool) or not isinstance(proj, int) or proj < 0:
        raise bad(f"its schema's proj_size must be a non-negative integer; got {proj!r}.")
    for key in ("peephole", "input_forget", "layer_norm"):
        if not isinstance(schema[key], bool):
            raise bad(f"its schema's {key} must be true or false; got {schema[key]!r}.")
    clip = schema["clip"]
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))):
        raise bad(f"its schema's clip must be a number or null; got {clip!r}.")
    if schema["direction"] not in ("forward", "reverse"):
        raise bad(f"its schema's direction must be 'forward' or 'reverse'; got "
                  f"{schema['direction']!r}.")
    if schema["dtype"] not in ("float16", "float32", "float64"):
        raise bad(f"its schema's dtype must be float16, float32 or float64; got "
                  f"{schema['dtype']!r}.")
    if not isinstance(schema["sha256"], dict):
        raise bad(f"its schema's sha256 must map parameter names to digests; got "
                  f"{type(schema['sha256']).__name__}.")
