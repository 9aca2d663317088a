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

from .errors import ModelFileError

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "load", "save", "write_atomic"]

FORMAT = "lstm-xp"
FORMAT_VERSION = 1
_SCHEMA_KEY = "__lstm_xp_schema__"
_CONFIG_KEYS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                "bidirectional")


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def write_atomic(path: str | os.PathLike[str], payload: bytes | None = None,
                 write: Any = None) -> Path:
    """Write ``payload`` (or call ``write(file)``) into a temporary file beside ``path``, then
    rename it over ``path``: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if write is not None:
                write(f)
            elif payload is not None:
                f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save(path: str | os.PathLike[str], params: Mapping[str, np.ndarray],
         config: Mapping[str, Any], dtype: str) -> Path:
    """Write ``params`` and the schema to ``path`` atomically. Returns the path."""
    path = Path(path)
    schema = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": "LSTM",
        **{k: config[k] for k in _CONFIG_KEYS},
        "dtype": dtype,
        "gate_order": "ifgo",
        "layout": "torch.nn.LSTM",
        "sha256": {name: _digest(a) for name, a in params.items()},
    }
    arrays = {name: np.ascontiguousarray(a) for name, a in params.items()}
    arrays[_SCHEMA_KEY] = np.frombuffer(json.dumps(schema).encode("utf-8"), dtype=np.uint8)
    return write_atomic(path, write=lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def load(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
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
    if missing:
        raise bad(f"its schema lacks {missing}.")
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
    return schema, arrays
