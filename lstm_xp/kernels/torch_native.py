"""PyTorch's own fused LSTM (oneDNN on the CPU, cuDNN on CUDA) run on the model's weights.

A whole-stack kernel: one call of torch's RNN primitive (``torch._VF.lstm``, what
``torch.nn.LSTM.forward`` calls, with the weights passed in rather than held by a module, so
concurrent calls share nothing) runs every layer and direction. Lengths go through PyTorch's
packed sequences. Training records the autograd graph as the tape and ``backward`` asks
autograd for the gradients of the input, the initial state and every weight.

What PyTorch's kernel does not do the same way falls back to the pure kernel for that call:
a reverse-direction model, inter-layer dropout (lstm-xp draws its own seeded masks), a
sequence of length 0 (packed sequences refuse them), and float16 on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._typing import Array, Namespace
from .base import Layers, LayerwiseKernel
from .pure import make as make_pure


@dataclass
class _TorchTape:
    """The autograd graph of one forward pass: its outputs and the leaves they depend on."""

    outputs: tuple[Any, Any, Any]
    leaves: list[Any]
    weights_per_layer: list[list[int]]  # number of flat weights per layer and direction
    has_bias: bool


def _flat(layers: Layers) -> tuple[list[Any], bool]:
    """PyTorch's flat weight list (per layer and direction: w_ih, w_hh[, b_ih, b_hh])."""
    flat: list[Any] = []
    has_bias = layers[0][0][2] is not None
    for directions in layers:
        for w_ih, w_hh, b_ih, b_hh, *_ in directions:
            flat += [w_ih, w_hh] + ([b_ih, b_hh] if has_bias else [])
    return flat, has_bias


def _cudnn_layout(flat: list[Any], has_bias: bool, layers: int,
                  bidirectional: bool) -> list[Any]:
    """``flat`` as cuDNN wants it on a GPU: copies laid out in one contiguous buffer (what
    ``torch.nn.LSTM.flatten_parameters`` does to a module's own weights). Given weights that
    are not, cuDNN compacts them at every call and warns each time. The model's parameters
    stay untouched; on the CPU, or where cuDNN does not run, ``flat`` is returned as it is."""
    first = flat[0]
    if not (first.is_cuda and torch._use_cudnn_rnn_flatten_weight()
            and torch.backends.cudnn.is_acceptable(first)):
        return flat
    from torch.backends.cudnn.rnn import get_cudnn_mode

    copies = [w.detach().clone() for w in flat]  # the flattening re-points these to its buffer
    hidden, size_in = first.shape[0] // 4, first.shape[1]
    with torch.cuda.device_of(first), torch.no_grad():  # it changes the copies in place
        torch._cudnn_rnn_flatten_weight(copies, 4 if has_bias else 2, size_in,
                                        get_cudnn_mode("LSTM"), hidden, 0, layers, False,
                                        bidirectional)
    return copies


class TorchNativeKernel:
    """``torch.nn.LSTM``'s kernel behind lstm-xp's kernel interface."""

    name = "torch-native"

    def __init__(self, reverse: bool = False) -> None:
        self.reverse = reverse
        self._pure = make_pure(reverse)

    def _falls_back(self, x: Array, lengths: Array | None,
                    dropout_masks: Sequence[Array | None] | None = None) -> bool:
        if self.reverse or dropout_masks is not None:
            return True
        if x.dtype == torch.float16 and x.device.type == "cpu":
            return True
        return lengths is not None and bool(torch.any(lengths == 0))

    def _run(self, x: Any, h0: Any, c0: Any, flat: list[Any], has_bias: bool, layers: int,
             bidirectional: bool, lengths: Any, train: bool = False) -> tuple[Any, Any, Any]:
        # cuDNN runs its backward only after a forward in training mode (dropout is 0 here,
        # so both modes compute the same outputs), and refuses a state that is a strided view
        h0, c0 = h0.contiguous(), c0.contiguous()
        if lengths is None:
            y, h_n, c_n = torch._VF.lstm(x, (h0, c0), flat, has_bias, layers, 0.0, train,
                                         bidirectional, False)
            return y, h_n, c_n
        rnn = torch.nn.utils.rnn
        packed = rnn.pack_padded_sequence(x, lengths.to("cpu", torch.int64),
                                          enforce_sorted=False)
        order, back = packed.sorted_indices, packed.unsorted_indices
        data, h_n, c_n = torch._VF.lstm(packed.data, packed.batch_sizes,
                                        (h0[:, order], c0[:, order]), flat, has_bias, layers,
                                        0.0, train, bidirectional)
        out = rnn.PackedSequence(data, packed.batch_sizes, order, back)
        y, _ = rnn.pad_packed_sequence(out, total_length=x.shape[0])
        return y, h_n[:, back], c_n[:, back]

    def forward(self, xp: Namespace, x: Array, layers: Layers, h0: Array, c0: Array,
                lengths: Array | None = None) -> tuple[Array, Array, Array]:
        if self._falls_back(x, lengths):
            return self._pure.forward(xp, x, layers, h0, c0, lengths)
        flat, has_bias = _flat(layers)
        flat = _cudnn_layout(flat, has_bias, len(layers), len(layers[0]) == 2)
        with torch.no_grad():
            return self._run(x, h0, c0, flat, has_bias, len(layers), len(layers[0]) == 2,
                             lengths)

    def forward_train(self, xp: Namespace, x: Array, layers: Layers, h0: Array, c0: Array,
                      lengths: Array | None = None,
                      dropout_masks: Sequence[Array | None] | None = None,
                      ) -> tuple[Array, Array, Array, Any]:
        if self._falls_back(x, lengths, dropout_masks):
            return self._pure.forward_train(xp, x, layers, h0, c0, lengths, dropout_masks)
        flat, has_bias = _flat(layers)
        flat = _cudnn_layout(flat, has_bias, len(layers), len(layers[0]) == 2)
        leaves = [a.detach().requires_grad_(True) for a in (x, h0, c0, *flat)]
        with torch.enable_grad():
            y, h_n, c_n = self._run(leaves[0], leaves[1], leaves[2], leaves[3:], has_bias,
                                    len(layers), len(layers[0]) == 2, lengths, train=True)
        per = [[4 if has_bias else 2] * len(d) for d in layers]
        return y.detach(), h_n.detach(), c_n.detach(), _TorchTape((y, h_n, c_n), leaves, per,
                                                                   has_bias)

    def backward(self, xp: Namespace, tape: Any, dy: Array, dh_n: Array | None,
                 dc_n: Array | None) -> tuple[Array, Array, Array, list[list[dict[str, Array]]]]:
        if not isinstance(tape, _TorchTape):
            return self._pure.backward(xp, tape, dy, dh_n, dc_n)
        y, h_n, c_n = tape.outputs
        found = torch.autograd.grad(
            (y, h_n, c_n), tape.leaves,
            (dy, torch.zeros_like(h_n) if dh_n is None else dh_n,
             torch.zeros_like(c_n) if dc_n is None else dc_n), allow_unused=True)
        grads = [torch.zeros_like(leaf) if g is None else g
                 for g, leaf in zip(found, tape.leaves, strict=True)]
        dx, dh0, dc0, flat = grads[0], grads[1], grads[2], grads[3:]
        layer_grads: list[list[dict[str, Array]]] = []
        k = 0
        for counts in tape.weights_per_layer:
            layer_grads.append([])
            for count in counts:
                g = {"weight_ih": flat[k], "weight_hh": flat[k + 1]}
                if tape.has_bias:
                    g["bias"] = flat[k + 2]  # the gradient of either bias (they are equal)
                layer_grads[-1].append(g)
                k += count
        return dx, dh0, dc0, layer_grads


def make(reverse: bool = False) -> TorchNativeKernel | LayerwiseKernel:
    return TorchNativeKernel(reverse)
