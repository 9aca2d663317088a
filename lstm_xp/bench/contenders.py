"""What ``lstm-xp bench`` times: lstm-xp on each backend and device, its peers, and the GEMM floor.

A contender's ``prepare(shape, dtype, x_host)`` builds everything outside the timed region and
returns a function that runs one float forward pass over the whole sequence and waits for the
device. A contender that cannot run here raises :class:`Unavailable` with the reason.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import Backend, resolve_backend
from .._threads import thread_count, thread_setting
from ..errors import LSTMXPError
from ..kernels._layout import stacked_width
from ..lstm import LSTM
from .seed_baseline import SeedLSTM

Shape = tuple[int, int, int, int]  # (B, T, I, H)
Runner = Callable[[], Any]


class Unavailable(Exception):
    """This contender cannot run on this machine; the message says why."""


@dataclass
class Contender:
    """Something to time.

    Attributes
    ----------
    name : str
        Label in tables and plots, e.g. ``"lstm-xp numpy cpu"``, ``"torch.nn.LSTM cpu"``.
    kind : {"lstm-xp", "peer", "floor"}
    device : str
        ``"cpu"`` or a GPU's name, to compare like with like.
    prepare : callable
        ``prepare(shape, dtype, x_host) -> run``.
    memory : callable or None
        ``memory(shape, dtype, x_host) -> peak bytes beyond inputs and outputs``.
    """

    name: str
    kind: str
    device: str
    prepare: Callable[[Shape, str, np.ndarray], Runner]
    memory: Callable[[Shape, str, np.ndarray], int | None] | None = None


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"{module} is not installed") from exc


# -- lstm-xp ---------------------------------------------------------------------------------
def padded_lengths(shape: Shape, kind: str) -> np.ndarray | None:
    """Per-sequence lengths for the variable-length timings.

    ``"none"``: no lengths. ``"one-short"``: every sequence full but the last, one step shorter,
    the worst case for overhead (all the work, plus the bookkeeping). ``"random"``: uniform
    in [T/2, T], a typical padded batch.
    """
    batch, steps, _, _ = shape
    if kind == "none":
        return None
    if kind == "one-short":
        lengths = np.full(batch, steps)
        lengths[-1] = steps - 1
        return lengths
    return np.random.default_rng(batch).integers(steps // 2, steps + 1, size=batch)


def lstm_xp(backend: str, device: Any = None, kernel: str = "auto",
            lengths: str = "none", threads: str | None = None,
            frozen: bool = False) -> Contender:
    """lstm-xp's forward on ``backend``/``device``; ``kernel="pure"`` forces the reference path;
    ``lengths`` passes per-sequence lengths (see :func:`padded_lengths`); ``threads``, for the
    ``numba`` kernel, its thread count as ``LSTM_XP_NUM_THREADS`` spells it (``"auto"``);
    ``frozen``: the model's frozen copy (:meth:`lstm_xp.LSTM.frozen`, weights packed once)."""
    b, where = _resolve(backend, device)
    label = (f"lstm-xp {b.name} {where}" + ("" if kernel == "auto" else f" ({kernel})")
             + _lengths_label(lengths)
             + ("" if threads is None else f" LSTM_XP_NUM_THREADS={threads}")
             + (" frozen" if frozen else ""))

    def build(shape: Shape, dtype: str, x_host: np.ndarray) -> tuple[LSTM, Any]:
        _, _, size_in, hidden = shape
        model = LSTM(size_in, hidden, backend=b.xp, device=b.device, dtype=dtype, seed=0,
                     kernel=kernel)
        if frozen:
            model = model.frozen()
        return model, b.from_numpy(x_host, model.dtype)

    def call(model: LSTM, x: Any, valid: Any) -> Any:
        if threads is None:  # no context to enter: it took 1-2 us of a 60 us call
            return model(x, lengths=valid)[0]
        with _kernel_threads(threads):
            y, _ = model(x, lengths=valid)
        return y

    def prepare(shape: Shape, dtype: str, x_host: np.ndarray) -> Runner:
        model, x = build(shape, dtype, x_host)
        valid = padded_lengths(shape, lengths)

        def run() -> Any:
            y = call(model, x, valid)
            b.synchronize(y)
            return y

        return run

    def memory(shape: Shape, dtype: str, x_host: np.ndarray) -> int | None:
        model, x = build(shape, dtype, x_host)
        # A call's work buffers count, though the compiled kernel keeps them between calls.
        scan = sys.modules.get("lstm_xp.kernels.numba_scan")
        if scan is not None:
            scan.release_work()
        return b.adapter.peak_bytes(lambda: call(model, x, None), b.device)

    return Contender(label, "lstm-xp", where, prepare, memory)


def _kernel_threads(threads: str | None) -> AbstractContextManager[None]:
    """The compiled kernel's thread count as ``LSTM_XP_NUM_THREADS=threads`` sets it, for
    the calls inside (restored after, for contenders timed in one process)."""
    return thread_setting(None if threads is None else thread_count(threads))


def _resolve(backend: str, device: Any) -> tuple[Backend, str]:
    """The backend and a label of its device, or :class:`Unavailable` with the reason."""
    try:
        b = resolve_backend(backend, device)
    except LSTMXPError as exc:
        raise Unavailable(str(exc)) from exc
    return b, b.label()


# -- peers -----------------------------------------------------------------------------------
def _torch_on(device: str) -> tuple[Any, str]:
    """torch, and a label for ``device`` (with the GPU's name), or :class:`Unavailable`."""
    torch = _optional("torch")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise Unavailable("torch sees no CUDA device")
    label = device if device == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"
    return torch, label


def _torch_lengths(torch: Any, shape: Shape, lengths: str) -> Callable[[Any, Any], Any]:
    """``module(x)``'s output as ``torch.nn.LSTM`` gives it for the sequences of
    :func:`padded_lengths` (``lengths``): through a packed sequence (its one way to take
    lengths; the packing and unpacking timed with it), padded back to (T, B, H)."""
    valid = padded_lengths(shape, lengths)
    if valid is None:
        return lambda module, x: module(x)[0]
    rnn = torch.nn.utils.rnn
    lengths_cpu = torch.from_numpy(valid)  # pack_padded_sequence takes them on the CPU

    def forward(module: Any, x: Any) -> Any:
        packed = rnn.pack_padded_sequence(x, lengths_cpu, enforce_sorted=False)
        return rnn.pad_packed_sequence(module(packed)[0], total_length=shape[1])[0]

    return forward


def _lengths_label(lengths: str) -> str:
    return "" if lengths == "none" else f" lengths={lengths}"


def torch_lstm(device: str = "cpu", lengths: str = "none") -> Contender:
    """``torch.nn.LSTM`` (oneDNN on the CPU, cuDNN on CUDA), in inference mode; with
    ``lengths`` (see :func:`padded_lengths`), through packed sequences."""
    torch, label = _torch_on(device)

    def prepare(shape: Shape, dtype: str, x_host: np.ndarray) -> Runner:
        _, _, size_in, hidden = shape
        tdtype = getattr(torch, dtype)
        module = torch.nn.LSTM(size_in, hidden, dtype=tdtype, device=device).eval()
        x = torch.from_numpy(x_host.astype(dtype)).to(device)
        forward = _torch_lengths(torch, shape, lengths)

        def run() -> Any:
            with torch.inference_mode():
                y = forward(module, x)
            if device != "cpu":
                torch.cuda.synchronize(device)
            return y

        return run

    memory = None
    if device != "cpu":
        def memory(shape: Shape, dtype: str, x_host: np.ndarray) -> int:
            run = prepare(shape, dtype, x_host)
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            y = run()
            peak = torch.cuda.max_memory_allocated(device)
            return int(peak - base - y.element_size() * y.numel())
    return Contender(f"torch.nn.LSTM {label}{_lengths_label(lengths)}", "peer", label,
                     prepare, memory)


def onnxruntime_lstm(spinning: bool = True, lengths: str = "none") -> Contender:
    """ONNX Runtime's ``LSTM`` operator on the CPU (its own MLAS GEMM); ``spinning`` False
    makes its idle threads sleep at once (``session.intra_op.allow_spinning``), for timing it
    in one process beside another library, whose threads its spinning would slow; with
    ``lengths`` (see :func:`padded_lengths`), the operator's ``sequence_lens``."""
    onnx = _optional("onnx")
    ort = _optional("onnxruntime")

    def prepare(shape: Shape, dtype: str, x_host: np.ndarray) -> Runner:
        if dtype != "float32":
            raise Unavailable("ONNX Runtime's CPU LSTM kernel is float32 only")
        _, _, size_in, hidden = shape
        rng = np.random.default_rng(0)
        k = 1 / np.sqrt(hidden)
        w = rng.uniform(-k, k, (1, 4 * hidden, size_in)).astype(np.float32)
        r = rng.uniform(-k, k, (1, 4 * hidden, hidden)).astype(np.float32)
        bias = np.zeros((1, 8 * hidden), np.float32)
        constants = [(w, "W"), (r, "R"), (bias, "B")]
        valid = padded_lengths(shape, lengths)
        if valid is not None:
            constants.append((valid.astype(np.int32), "sequence_lens"))
        h = onnx.helper
        graph = h.make_graph(
            [h.make_node("LSTM", ["X", *(n for _, n in constants)], ["Y"],
                         hidden_size=hidden)],
            "lstm",
            [h.make_tensor_value_info("X", onnx.TensorProto.FLOAT, list(x_host.shape))],
            [h.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
            [onnx.numpy_helper.from_array(a, n) for a, n in constants],
        )
        model = h.make_model_gen_version(graph, opset_imports=[h.make_opsetid("", 14)])
        options = ort.SessionOptions()
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        x = np.ascontiguousarray(x_host, dtype=np.float32)
        return lambda: session.run(None, {"X": x})[0]

    label = ("onnxruntime LSTM op cpu" + ("" if spinning else " (no spinning)")
             + _lengths_label(lengths))
    return Contender(label, "peer", "cpu", prepare)


def seed() -> Contender:
    """The seed's algorithm (per-gate matrices, column vectors, loops over steps and batch)."""

    def prepare(shape: Shape, dtype: str, x_host: np.ndarray) -> Runner:
        _, _, size_in, hidden = shape
        model = SeedLSTM(size_in, hidden, dtype=np.dtype(dtype), seed=0)
        x = x_host.astype(dtype)
        return lambda: model.forward_batch(x)

    return Contender("seed (NumPy, per-gate, column vectors)", "peer", "cpu", prepare)


# -- the floor -------------------------------------------------------------------------------
def gemm_floor(backend: str = "numpy", device: Any = None) -> Contender:
    """The matrix products an LSTM cannot avoid, timed alone on ``backend``, in the layout
    the fused NumPy kernel uses: T products ``(4H, K) @ (K, B)`` of the stacked weights with
    each step's input and hidden state as columns, ``K = I + H + 1`` rounded up to 8.

    (Until the fused kernel moved to that layout, the floor was the input projection
    ``(T*B, I) @ (I, 4H)`` and T - 1 products ``(B, H) @ (H, 4H)``: with OpenBLAS that
    orientation is 1.5x to 2.7x slower at B = 16 to 64, and the kernel came in below it.)"""
    b, where = _resolve(backend, device)

    def prepare(shape: Shape, dtype: str, x_host: np.ndarray) -> Runner:
        batch, steps, size_in, hidden = shape
        rng = np.random.default_rng(0)
        dt = b.resolve_dtype(dtype)
        width = stacked_width(size_in, hidden, has_bias=True)
        w_cat = b.from_numpy(rng.standard_normal((4 * hidden, width)), dt)
        cols = b.from_numpy(rng.standard_normal((width, batch)), dt)
        xp = b.xp

        def run() -> Any:
            with b.context():
                for _ in range(steps):
                    out = xp.matmul(w_cat, cols)
            b.synchronize(out)
            return out

        return run

    return Contender(f"GEMM floor {b.name} {where}", "floor", where, prepare)


# -- training steps --------------------------------------------------------------------------
def lstm_xp_train(backend: str, device: Any = None, kernel: str = "auto",
                  lengths: str = "none") -> Contender:
    """One training step of lstm-xp: ``forward_train`` and ``backward`` with the gradient of
    the sum of the outputs (``d_outputs`` all ones); ``kernel="pure"`` for the pure path;
    ``lengths`` as :func:`lstm_xp` takes them."""
    b, where = _resolve(backend, device)

    def prepare(shape: Shape, dtype: str, x_host: np.ndarray) -> Runner:
        _, _, size_in, hidden = shape
        model = LSTM(size_in, hidden, backend=b.xp, device=b.device, dtype=dtype, seed=0,
                     kernel=kernel)
        x = b.from_numpy(x_host, model.dtype)
        ones = b.from_numpy(np.ones((*x_host.shape[:2], hidden)), model.dtype)
        valid = padded_lengths(shape, lengths)

        def run() -> Any:
            _, _, tape = model.forward_train(x, lengths=valid)
            _, _, grads = model.backward(tape, ones)
            b.synchronize(grads["weight_hh_l0"])
            return grads

        return run

    label = f"lstm-xp train step {b.name} {where}" + ("" if kernel == "auto" else
                                                        f" ({kernel})") + _lengths_label(lengths)
    return Contender(label, "lstm-xp", where, prepare)


def train_gemm_floor() -> Contender:
    """The matrix products of one training step, timed alone with NumPy in the layout the
    fused NumPy training pass uses (gates as columns, ``K = I + H + 1`` rounded up to 8):
    T forward ``(4H, K) @ (K, B)``, T backward ``(H, 4H) @ (4H, B)``, the weight gradients
    ``(4H, T*B) @ (T*B, K)`` and the input gradient ``(T*B, 4H) @ (4H, I)``."""

    def prepare(shape: Shape, dtype: str, x_host: np.ndarray) -> Runner:
        batch, steps, size_in, hidden = shape
        rng = np.random.default_rng(0)
        width = stacked_width(size_in, hidden, has_bias=True)

        def normal(*dims: int) -> np.ndarray:
            return rng.standard_normal(dims).astype(dtype)

        w_cat, w_hh_t, w_ih = normal(4 * hidden, width), normal(hidden, 4 * hidden), \
            normal(4 * hidden, size_in)
        inputs, dz = normal(width, steps * batch), normal(4 * hidden, steps * batch)
        act, dh = normal(4 * hidden, batch), normal(hidden, batch)

        def run() -> Any:
            for t in range(steps):
                np.matmul(w_cat, inputs[:, t * batch : (t + 1) * batch], out=act)
            for t in range(steps):
                np.matmul(w_hh_t, dz[:, t * batch : (t + 1) * batch], out=dh)
            return dz @ inputs.T, dz.T @ w_ih

        return run

    return Contender("GEMM floor of a train step numpy cpu", "floor", "cpu", prepare)


def torch_train(device: str = "cpu", lengths: str = "none") -> Contender:
    """One training step of ``torch.nn.LSTM`` with autograd: forward, ``outputs.sum()``,
    backward, gradients of the input and every parameter; ``lengths`` as
    :func:`torch_lstm` takes them."""
    torch, label = _torch_on(device)

    def prepare(shape: Shape, dtype: str, x_host: np.ndarray) -> Runner:
        _, _, size_in, hidden = shape
        module = torch.nn.LSTM(size_in, hidden, dtype=getattr(torch, dtype), device=device)
        x = torch.from_numpy(x_host.astype(dtype)).to(device).requires_grad_(True)
        forward = _torch_lengths(torch, shape, lengths)

        def run() -> Any:
            module.zero_grad(set_to_none=True)
            x.grad = None
            y = forward(module, x)
            y.sum().backward()
            if device != "cpu":
                torch.cuda.synchronize(device)
            return x.grad

        return run

    return Contender(f"torch.nn.LSTM train step {label}{_lengths_label(lengths)}", "peer",
                     label, prepare)


#: Contender factories by the name a spec ``[name, *args]`` uses.
FACTORIES: dict[str, Callable[..., Contender]] = {
    "lstm_xp": lstm_xp,
    "torch": torch_lstm,
    "onnxruntime": onnxruntime_lstm,
    "seed": seed,
    "floor": gemm_floor,
    "lstm_xp_train": lstm_xp_train,
    "torch_train": torch_train,
    "train_floor": train_gemm_floor,
}


def make(spec: list[Any] | tuple[Any, ...]) -> Contender:
    """Build the contender a spec names, e.g. ``["lstm_xp", "numpy", None, "pure"]``."""
    name, *args = spec
    return FACTORIES[name](*args)
