"""Type names shared by every module.

The Array API standard has no runtime type for "an array of some namespace", so these are
aliases of ``Any`` that say, in a signature, what a value is meant to be.
"""

from __future__ import annotations

from typing import Any, TypeAlias

#: An array of the model's namespace (NumPy, CuPy, torch, JAX, array-api-strict, ...).
Array: TypeAlias = Any
#: An Array API namespace module (``array_api_compat.numpy``, ``jax.numpy``, ...).
Namespace: TypeAlias = Any
#: A device in a library's own terms (``"cpu"``, a ``cupy.cuda.Device``, a ``torch.device``).
Device: TypeAlias = Any
#: One layer and direction: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` (4H,)
#: or None, ``bias_hh`` (4H,) or None.
LayerWeights: TypeAlias = tuple[Array, Array, "Array | None", "Array | None"]
