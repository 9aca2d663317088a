"""A call's arrays on the way in and out: the caller's layout, lengths, masks and resets.

Inside, the library works in one layout: sequences ``(T, B, F)`` and states ``(S, B, H)``
(``S = D*L`` for a model's state). A :class:`CallLayout` records how the caller laid out one
call (``batch_first``, or unbatched) and converts both ways, so that inputs, outputs, the
initial and final states and their gradients all go through the same two conversions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._backend import as_host, host_integers, is_host_input
from ._typing import Array, Namespace
from .errors import LengthsError, ShapeError

if TYPE_CHECKING:
    from ._module import Module


@dataclass(frozen=True)
class CallLayout:
    """How the caller lays out one call's arrays.

    Attributes
    ----------
    batch_first : bool
        Sequences are ``(B, T, F)`` rather than ``(T, B, F)``.
    batched : bool
        False for an unbatched call: sequences ``(T, F)``, states ``(S, H)``.
    """

    batch_first: bool
    batched: bool

    def sequence_in(self, xp: Namespace, a: Array) -> Array:
        """The caller's sequence -> ``(T, B, F)``."""
        if not self.batched:
            return xp.expand_dims(a, axis=1)
        return xp.permute_dims(a, (1, 0, 2)) if self.batch_first else a

    def sequence_out(self, xp: Namespace, a: Array) -> Array:
        """``(T, B, F)`` -> the caller's layout (inverse of :meth:`sequence_in`)."""
        if not self.batched:
            return a[:, 0, :]
        return xp.permute_dims(a, (1, 0, 2)) if self.batch_first else a

    def state_shape(self, stacked: int, batch: int, hidden: int) -> tuple[int, ...]:
        """A state's shape as the caller gives it: ``(S, B, H)``, or ``(S, H)`` unbatched."""
        return (stacked, batch, hidden) if self.batched else (stacked, hidden)

    def state_in(self, xp: Namespace, a: Array) -> Array:
        """The caller's state -> ``(S, B, H)``."""
        return a if self.batched else xp.expand_dims(a, axis=1)

    def state_out(self, xp: Namespace, a: Array) -> Array:
        """``(S, B, H)`` -> the caller's layout."""
        return a if self.batched else a[:, 0, :]

    def sequence_text(self) -> str:
        return "(B, T, F)" if self.batch_first else "(T, B, F)"


_LAYOUTS = {(first, batched): CallLayout(first, batched)
            for first in (False, True) for batched in (False, True)}


def sequence_input(module: Module, X: Any, batch_first: bool,
                   features: int) -> tuple[Array, CallLayout]:
    """Validate a sequence ``X`` and return it as ``(T, B, F)`` with the call's layout."""
    x = module._as_array(X, "X")
    if x.ndim not in (2, 3):
        expected = "(B, T, I)" if batch_first else "(T, B, I)"
        raise ShapeError(
            f"X must be {expected} or unbatched (T, I) with I={features}; got an "
            f"array of shape {tuple(x.shape)}."
        )
    layout = _LAYOUTS[batch_first, x.ndim == 3]
    x = layout.sequence_in(module.xp, x)
    steps, batch, size = x.shape
    if size != features:
        raise ShapeError(
            f"X has {size} features on its last axis; this model expects "
            f"input_size={features} (X shape {tuple(x.shape)} as (T, B, I))."
        )
    if steps == 0 or batch == 0:
        raise ShapeError(f"X must hold at least one step and one sequence; got (T, B) = "
                         f"({steps}, {batch}).")
    return x, layout


def sequence_lengths(module: Module, lengths: Any, mask: Any, steps: int, batch: int,
                     batched: bool) -> Array | None:
    """Validate ``lengths`` or ``mask``; return lengths as an integer array of the model's
    namespace, or None when every sequence runs all T steps.

    The checks read a few scalars back (a device synchronisation on a GPU), once per call
    and before the time loop.
    """
    if lengths is None and mask is None:
        return None
    if lengths is not None and mask is not None:
        raise LengthsError("pass lengths or mask, not both: they say the same thing, and "
                           "neither is taken over the other.")
    xp = module.xp
    if mask is not None:
        m = module._as_array(mask, "mask", kind="bool")
        expected: tuple[int, ...] = (batch, steps) if batched else (steps,)
        if tuple(m.shape) != expected:
            raise ShapeError(f"mask has shape {tuple(m.shape)}; expected {expected} "
                             f"({'(B, T)' if batched else '(T,)'}).")
        m = xp.reshape(m, (batch, steps))
        valid = xp.sum(xp.astype(m, xp.int32), axis=1)
        padded = xp.arange(steps, device=module.device)[None, :] < valid[:, None]
        wrong = xp.any(m != padded, axis=1)
        if bool(xp.any(wrong)):
            row = int(xp.argmax(xp.astype(wrong, xp.int32)))
            raise LengthsError(
                f"mask is not right-padded: row {row} has a True after a False; each row "
                "must be True for its valid steps, then False to the end. Pass lengths "
                "instead.")
    else:
        # Host lengths are range-checked as Python integers (and then need no reductions
        # through the namespace: 10-20 us of a call); others on their device.
        host = _check_host_lengths(as_host(lengths, "lengths"), steps) \
            if is_host_input(lengths) else None
        valid = module._as_array(lengths, "lengths", kind="integral")
        expected = (batch,) if batched else ()
        if tuple(valid.shape) != expected and not (not batched and valid.shape == (1,)):
            raise ShapeError(f"lengths has shape {tuple(valid.shape)}; expected {expected} "
                             "(one length per sequence).")
        valid = xp.reshape(valid, (batch,))
        if host is not None:
            return None if all(n == steps for n in host) else valid
        outside = (valid < 0) | (valid > steps)
        if bool(xp.any(outside)):
            row = int(xp.argmax(xp.astype(outside, xp.int32)))
            raise LengthsError(f"lengths must lie in 0..T = 0..{steps}; sequence {row} has "
                               f"length {int(valid[row])}.")
    if bool(xp.all(valid == steps)):
        return None  # nothing is padded: the plain path is exact and fastest
    return valid


def _check_host_lengths(lengths: Any, steps: int) -> list[int] | None:
    """Range-check host lengths in Python integers, before any cast: cast first, and a length
    of 2**32 + 3 would wrap around to 3 and pass. Returns them, or None for data that is
    not integers (left to the dtype check)."""
    values = host_integers(lengths)
    for row, value in enumerate(values or []):
        if not 0 <= value <= steps:
            raise LengthsError(f"lengths must lie in 0..T = 0..{steps}; sequence {row} has "
                               f"length {value}.")
    return values


def reset_factor(module: Module, reset: Any, batch: int, batched: bool) -> Array:
    """``reset`` as a (1, B, 1) array of the model's dtype: 0 where the state is reset."""
    xp = module.xp
    r = module._as_array(reset, "reset", kind="bool")
    expected = (batch,) if batched else ()
    if tuple(r.shape) != expected:
        raise ShapeError(f"reset has shape {tuple(r.shape)}; expected {expected}.")
    return xp.astype(~xp.reshape(r, (1, batch, 1)), module.dtype)
