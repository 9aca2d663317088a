"""Weights in and out of other frameworks' layouts.

lstm-xp keeps PyTorch's layout (``weight_ih_l{k}`` (4H, in), ``weight_hh_l{k}`` (4H, H), two
biases, gate order i, f, g, o). The converters here are pure layout changes on NumPy arrays;
every one of them has an inverse, and round trips are bit-exact.

- PyTorch ``nn.LSTM``: ``weight_ih_l{k}`` (4H, in), ``weight_hh_l{k}`` (4H, H), ``bias_ih``
  and ``bias_hh``; gates i, f, g, o.
- Keras 3 ``LSTM``: ``kernel`` (in, 4H), ``recurrent_kernel`` (H, 4H), one ``bias`` (4H);
  gates i, f, c, o.
- ONNX ``LSTM``: ``W`` [D, 4H, in], ``R`` [D, 4H, H], ``B`` [D, 8H] = [Wb, Rb]; gates i, o, f, c.
- Flax ``LSTMCell``: kernels ``ii/if/ig/io`` (in, H) without bias, ``hi/hf/hg/ho`` (H, H) with
  bias.
- the seed: ``Wf/Wi/WC/Wo`` (H, H+in) over ``vstack(h, x)``, column biases ``bf/bi/bC/bo``.

Keras' and the seed's single bias is imported as ``bias_ih`` with ``bias_hh = 0`` and exported
as ``bias_ih + bias_hh``: a sum, so a PyTorch model exported to Keras and back keeps its
function (and its sum of biases) but not the split between the two.
"""

from __future__ import annotations

from ._common import require
from ._flax import from_flax_params, to_flax_params
from ._keras import from_keras_weights, to_keras_weights
from ._onnx import from_onnx_model, read_onnx, to_onnx_model
from ._seed import from_seed_params, to_seed_params
from ._torch import from_torch_cell, from_torch_module, to_torch_cell, to_torch_module

__all__ = [
           "from_flax_params",
           "from_keras_weights",
           "from_onnx_model",
           "from_seed_params",
           "from_torch_cell",
           "from_torch_module",
           "read_onnx",
           "require",
           "to_flax_params",
           "to_keras_weights",
           "to_onnx_model",
           "to_seed_params",
           "to_torch_cell",
           "to_torch_module",
]
