"""Batch inference beyond one process or machine, on Dask.

``forward(model, X)`` maps the model over the batch chunks of a Dask array with
``dask.array.blockwise``. The weights travel once: they are one ``dask.delayed`` object in the
graph that every task depends on (the distributed scheduler ships it to each worker once), not
a copy embedded in every task. Each worker process rebuilds the model once per weights object
and keeps it. NumPy chunks run on the NumPy backend; CuPy chunks (``X.map_blocks(cupy.asarray)``)
run on the CuPy backend, on the worker's current GPU: run one worker per GPU.

Sequences are independent, so only the batch axis may be split: time and feature axes are
rechunked into one chunk each (a time axis in pieces would need the state passed from piece to
piece, which is a sequential dependency, not parallel work).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from typing import Any

from ._backend import BACKENDS, as_host, library_of
from .errors import ShapeError

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised where dask is absent
    from .errors import BackendNotInstalledError

    raise BackendNotInstalledError(
        f"lstm_xp.dask needs dask ({exc}). Install it with `pip install lstm-xp[dask]`."
    ) from exc

_CACHE: OrderedDict[tuple[str, str], Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def _payload(model: Any) -> dict[str, Any]:
    """What a worker needs to rebuild ``model``: its layout and NumPy weights."""
    return {
        "token": uuid.uuid4().hex,
        "batch_first": model.batch_first,
        "options": {k: v for k, v in model.options().items()
                    if k not in ("proj_size", "peephole", "layer_norm")},  # from the names
        "params": model.host_params(),
    }


def _worker_model(payload: dict[str, Any], backend: str) -> Any:
    """The model for ``payload`` on this worker and backend, built once and cached."""
    from .lstm import LSTM

    key = (payload["token"], backend)
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is not None:
            _CACHE.move_to_end(key)
            return model
    model = LSTM.from_state_dict(payload["params"], batch_first=payload["batch_first"],
                                 backend=backend, **payload["options"])
    with _CACHE_LOCK:
        _CACHE[key] = model
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return model


def _run_chunk(x: Any, lengths: Any, payload: dict[str, Any]) -> Any:
    """One batch chunk: outputs in the chunk's own array library."""
    library = library_of(x)  # CuPy chunks run on the CuPy backend, on this worker's GPU
    backend = library if library in BACKENDS else "numpy"
    model = _worker_model(payload, backend)
    y, _ = model(x, lengths=lengths)
    return y


def forward(model: Any, X: Any, lengths: Any = None) -> Any:
    """Outputs of ``model`` over a Dask array of sequences, computed chunk by chunk.

    Parameters
    ----------
    model : lstm_xp.LSTM
    X : dask.array.Array
        ``(T, B, I)``, or ``(B, T, I)`` for a ``batch_first`` model, chunked along the batch
        axis (other axes are rechunked into one chunk). Chunks may be NumPy or CuPy arrays.
    lengths : array of shape (B,), optional
        Valid steps per sequence (a NumPy array or a Dask array); rechunked to match ``X``'s
        batch chunks.

    Returns
    -------
    dask.array.Array
        ``(T, B, D*H)`` (``(B, T, D*H)`` with ``batch_first``) with ``X``'s batch chunks.
    """
    if not isinstance(X, da.Array):
        raise ShapeError(f"X must be a dask.array.Array; got {type(X).__name__}. Wrap it with "
                         "dask.array.from_array(X, chunks=...) along the batch axis.")
    if X.ndim != 3 or X.shape[2] != model.input_size:
        raise ShapeError(f"X must be {'(B, T, I)' if model.batch_first else '(T, B, I)'} with "
                         f"I={model.input_size}; got shape {X.shape}.")
    b_axis = 0 if model.batch_first else 1
    t_axis = 1 - b_axis
    X = X.rechunk({t_axis: -1, 2: -1})
    index = "bti" if model.batch_first else "tbi"
    out_index = index.replace("i", "h")
    width = model.num_directions * model.output_size
    if lengths is None:
        lengths_arg: tuple[Any, Any] = (None, None)
    else:
        if not isinstance(lengths, da.Array):
            host = as_host(lengths, "lengths")
            if host.shape != (X.shape[b_axis],):
                raise ShapeError(f"lengths has shape {host.shape}; expected "
                                 f"({X.shape[b_axis]},), one per sequence of X.")
            lengths = da.from_array(host, chunks=(X.chunks[b_axis],))
        if lengths.shape != (X.shape[b_axis],):
            raise ShapeError(f"lengths has shape {lengths.shape}; expected ({X.shape[b_axis]},).")
        lengths_arg = (lengths.rechunk((X.chunks[b_axis],)), "b")
    weights = dask.delayed(_payload(model), pure=True, traverse=False)
    meta = X._meta
    out_meta = meta.reshape((0, 0, 0)).astype(model.state_dict()["weight_hh_l0"].dtype)
    return da.blockwise(
        _run_chunk, out_index,
        X, index,
        *lengths_arg,
        weights, None,
        new_axes={"h": width},
        concatenate=True,
        meta=out_meta,
    )
