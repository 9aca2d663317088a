"""What a kernel is: one object that runs the whole stack forward, forward with a tape, and
backward, and the default kernel that composes per-layer scans.

A model holds one :class:`Kernel`, chosen once at construction from the registry in
:mod:`lstm_xp.kernels`. Arrays arrive validated, in the library's layout: ``x`` (T, B, I),
states (L*D, B, H), lengths (B,) integers or None, all of the model's namespace and device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._backprop import lstm_backward
from .._functional import SideBySide, one_after_another, stack_forward
from .._typing import Array, LayerWeights, Namespace

Layers = Sequence[Sequence[LayerWeights]]


class Kernel(Protocol):
    """The three entry points of a kernel (whole stack, every layer and direction).

    ``name`` is what :attr:`lstm_xp.LSTM.kernel` reports. ``forward_train`` returns a tape of
    the kernel's own making, which only that kernel's ``backward`` reads.
    """

    name: str

    def forward(self, xp: Namespace, x: Array, layers: Layers, h0: Array, c0: Array,
                lengths: Array | None = None) -> tuple[Array, Array, Array]:
        """``y`` (T, B, D*H), ``h_n`` and ``c_n`` (L*D, B, H)."""
        ...

    def forward_train(self, xp: Namespace, x: Array, layers: Layers, h0: Array, c0: Array,
                      lengths: Array | None = None,
                      dropout_masks: Sequence[Array | None] | None = None,
                      ) -> tuple[Array, Array, Array, Any]:
        """:meth:`forward` with inter-layer dropout, and the tape ``backward`` needs."""
        ...

    def backward(self, xp: Namespace, tape: Any, dy: Array, dh_n: Array | None,
                 dc_n: Array | None) -> tuple[Array, Array, Array, list[list[dict[str, Array]]]]:
        """``dx`` (T, B, I), ``dh0`` and ``dc0`` (L*D, B, H), and per layer and direction the
        gradients ``weight_ih``, ``weight_hh`` and (with a bias) ``bias``."""
        ...


@dataclass
class StackTape:
    """The tape of a :class:`LayerwiseKernel`: each layer and direction's scan tape, and the
    dropout masks used between layers."""

    layers: list[list[Any]]
    dropout_masks: Sequence[Array | None] | None


@dataclass
class LayerwiseKernel:
    """A kernel made of per-layer scans, stacked by :func:`lstm_xp._functional.stack_forward`.

    Attributes
    ----------
    name : str
    reverse : bool
        The model reads sequences backwards (``direction="reverse"``).
    scan : callable
        One layer, one direction, inference (:func:`lstm_xp._functional.layer_scan`'s
        signature).
    scan_train, scan_backward : callables
        The same with a tape, and its backward
        (:func:`lstm_xp._backprop.layer_scan_train` and ``layer_scan_backward``'s signatures).
    fresh_state : bool
        ``scan`` returns its final ``h`` and ``c`` as new arrays that nothing else holds
        (see :func:`lstm_xp._functional.stack_forward`'s ``fresh``).
    plain : callable or None
        A shorter way through for the commonest call, where the kernel has one:
        ``plain(X, layers, state, lengths)`` runs a model's stack (no projection, sequences
        first) over ``X`` (T, B, I) from ``state`` (None: zeros) with ``lengths`` (None:
        every step) and returns what the model's call does, ``(y, (h_n, c_n))``, or None
        when its arguments are not arrays it takes as they are (then the model's full path
        runs, and reports any error).
    side_by_side : callable
        Runs the scans of a layer's two directions, which share nothing
        (:func:`lstm_xp._functional.stack_forward`'s argument): one after the other by
        default; a kernel whose scans release the interpreter's lock may run them at once,
        each on its share of the threads.
    """

    name: str
    scan: Callable[..., tuple[Array, Array, Array]]
    scan_train: Callable[..., tuple[Array, Array, Array, Any]]
    scan_backward: Callable[..., tuple[Array, Array, Array, dict[str, Array]]]
    reverse: bool = False
    fresh_state: bool = False
    plain: Callable[[Any, Layers, Any, Any], Any] | None = None
    side_by_side: SideBySide = one_after_another

    def forward(self, xp: Namespace, x: Array, layers: Layers, h0: Array, c0: Array,
                lengths: Array | None = None) -> tuple[Array, Array, Array]:
        y, h_n, c_n, _ = stack_forward(xp, x, layers, h0, c0, self.scan, lengths,
                                       reverse=self.reverse, fresh=self.fresh_state,
                                       side_by_side=self.side_by_side)
        return y, h_n, c_n

    def forward_train(self, xp: Namespace, x: Array, layers: Layers, h0: Array, c0: Array,
                      lengths: Array | None = None,
                      dropout_masks: Sequence[Array | None] | None = None,
                      ) -> tuple[Array, Array, Array, StackTape]:
        y, h_n, c_n, tapes = stack_forward(xp, x, layers, h0, c0, self.scan_train, lengths,
                                           dropout_masks, self.reverse,
                                           side_by_side=self.side_by_side)
        return y, h_n, c_n, StackTape(tapes, dropout_masks)

    def backward(self, xp: Namespace, tape: StackTape, dy: Array, dh_n: Array | None,
                 dc_n: Array | None) -> tuple[Array, Array, Array, list[list[dict[str, Array]]]]:
        return lstm_backward(xp, tape.layers, dy, dh_n, dc_n, tape.dropout_masks,
                             self.scan_backward, self.side_by_side)
