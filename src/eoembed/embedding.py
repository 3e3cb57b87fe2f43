"""The result type: numbers plus everything needed to reproduce and place them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr

__all__ = ["Embedding"]


@dataclass
class Embedding:
    """``data``: a float32 ``(D,)`` vector (pooled) or a ``(dim, y, x)`` DataArray (grid).

    ``meta``: model id and weights revision, provider and scene ids, every spec, input shape,
    package version and timings, as plain JSON types.
    """

    data: np.ndarray | xr.DataArray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_grid(self) -> bool:
        """Whether this is a georeferenced grid rather than a pooled vector."""
        return bool(self.meta.get("output", {}).get("mode") == "grid")

    def numpy(self) -> np.ndarray:
        """The values as a numpy array, whatever the output mode."""
        import numpy as np

        return np.asarray(self.data)
