"""Sentinel-2 true colour for models trained on 8-bit RGB photographs (RemoteCLIP, SatMAE).

Such models saw 0..1 RGB, not reflectances: B04/B03/B02 digital numbers are divided by
``rgb_max`` (the DN shown as full brightness; 3000, i.e. reflectance 0.3, a common
true-colour stretch), clipped to [0, 1], then standardised with the model's own mean/std.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eoembed.embedders.torch_embedder import TorchOptions
from eoembed.errors import ModelArgumentError

__all__ = ["DEFAULT_RGB_MAX", "RGBStretchOptions", "stretch_rgb"]

DEFAULT_RGB_MAX = 3000.0
"""Sentinel-2 DN (reflectance x 10000) shown as full brightness by default."""


@dataclass(frozen=True)
class RGBStretchOptions(TorchOptions):
    """``rgb_max``: Sentinel-2 DN mapped to 1.0 before clipping to [0, 1] (the RGB stretch)."""

    rgb_max: float = DEFAULT_RGB_MAX

    def validate(self, model_id: str) -> None:
        """``rgb_max`` must be a positive DN."""
        if not self.rgb_max > 0:
            raise ModelArgumentError(
                f"model {model_id!r} argument rgb_max={self.rgb_max!r} must be > 0"
            )


def stretch_rgb(
    pixels: np.ndarray, rgb_max: float, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """``(..., 3, H, W)`` DN -> ``/ rgb_max`` clipped to [0, 1] -> ``(x - mean) / std``."""
    x: np.ndarray = np.clip(pixels.astype(np.float32) / np.float32(rgb_max), 0.0, 1.0)
    x -= np.asarray(mean, np.float32)[:, None, None]
    x /= np.asarray(std, np.float32)[:, None, None]
    return x
