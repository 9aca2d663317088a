"""A compiled JAX layer scan: the time loop as ``jax.lax.scan`` under ``jax.jit``.

Same signature and results as :func:`lstm_xp._functional.layer_scan` (tests hold them equal).
Run eagerly, the pure path dispatches a dozen small JAX operations per step, each with
Python-side overhead; here XLA compiles the whole loop once per shape and dtype (the first call
at a new shape pays the compilation) and runs it without returning to Python.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from .._backprop import layer_scan_backward, layer_scan_train
from .._functional import cell_update, input_projection, stack_forward, step_state
from .base import LayerwiseKernel


@functools.partial(jax.jit, static_argnames=("reverse", "masked"))
def _scan(x, weight_ih, weight_hh, bias, h0, c0, lengths, *, reverse, masked):
    steps = x.shape[0]
    proj = input_projection(jnp, x, weight_ih, bias)
    w_hh_t = weight_hh.T

    def step(carry, inputs):
        h, c = carry
        p_t, t = inputs
        h_new, c_new = cell_update(jnp, p_t + h @ w_hh_t, c)  # the reference's gate math
        h, c, y = step_state(jnp, lengths if masked else None, t, h_new, c_new, h, c,
                             jnp.zeros_like(h_new) if masked else None)
        return (h, c), y

    (h, c), ys = jax.lax.scan(step, (h0, c0), (proj, jnp.arange(steps)), reverse=reverse)
    return ys, h, c


def layer_scan_jax(
    xp: Any,
    x: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias: Any | None,
    h0: Any,
    c0: Any,
    *,
    reverse: bool = False,
    lengths: Any | None = None,
) -> tuple[Any, Any, Any]:
    """Compiled JAX version of :func:`lstm_xp._functional.layer_scan` (same shapes)."""
    # Placeholders are derived from the inputs so that they live on the same device.
    if bias is None:
        bias = weight_ih[:, 0] * 0
    masked = lengths is not None
    if not masked:
        lengths = (x[0, 0, 0] * 0).astype(jnp.int32)  # unused when not masked
    return _scan(x, weight_ih, weight_hh, bias, h0, c0, lengths, reverse=reverse,
                 masked=masked)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("scan", "reverse"))
def _forward(xp: Any, x: Any, layers: Any, h0: Any, c0: Any, lengths: Any, *, scan: Any,
             reverse: bool):
    y, h_n, c_n, _ = stack_forward(xp, x, layers, h0, c0, scan, lengths, reverse=reverse)
    return y, h_n, c_n


def lstm_forward_jax(xp: Any, x: Any, layers: Any, h0: Any, c0: Any, scan: Any = None,
                     lengths: Any = None, reverse: bool = False) -> tuple[Any, Any, Any]:
    """:func:`lstm_xp._functional.stack_forward` compiled whole by ``jax.jit`` (bias sums,
    state slicing, layer stacking and every layer's scan in one XLA program, one per shape).
    ``layers`` as plain lists (a model's :class:`lstm_xp._naming.LayerList` is no pytree
    JAX knows)."""
    return _forward(xp, x, [list(layer) for layer in layers], h0, c0, lengths,
                    scan=scan or layer_scan_jax,
                    reverse=reverse)


class JaxKernel(LayerwiseKernel):
    """Inference compiled whole (:func:`lstm_forward_jax`); training runs the pure pair,
    eagerly."""

    def forward(self, xp: Any, x: Any, layers: Any, h0: Any, c0: Any,
                lengths: Any = None) -> tuple[Any, Any, Any]:
        return lstm_forward_jax(xp, x, layers, h0, c0, self.scan, lengths, self.reverse)


def make(reverse: bool = False) -> JaxKernel:
    return JaxKernel("jax-jit", layer_scan_jax, layer_scan_train, layer_scan_backward, reverse)
