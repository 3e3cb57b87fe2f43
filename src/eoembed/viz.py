"""Pictures for people: input RGB beside a PCA-to-RGB view of a grid embedding."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["pca_rgb", "rgb_from_patch", "save_comparison_png"]


def _stretch(channels: np.ndarray) -> np.ndarray:
    """Per-channel 2-98 percentile stretch of ``(..., 3)`` to [0, 1]."""
    flat = channels.reshape(-1, channels.shape[-1])
    lo, hi = np.percentile(flat, [2, 98], axis=0)
    out: np.ndarray = np.clip((channels - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
    return out


def pca_rgb(grid: np.ndarray) -> np.ndarray:
    """``(D, h, w)`` features -> ``(h, w, 3)`` in [0, 1] from their first three principal axes."""
    d, h, w = grid.shape
    x = grid.reshape(d, -1).T.astype(np.float64)
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    components = x @ vt[:3].T
    if components.shape[1] < 3:
        components = np.pad(components, ((0, 0), (0, 3 - components.shape[1])))
    return _stretch(components.reshape(h, w, 3))


def rgb_from_patch(patch: xr.DataArray) -> np.ndarray:
    """``(band, y, x)`` with B04, B03, B02 -> ``(y, x, 3)`` true colour in [0, 1]."""
    rgb = np.stack([patch.sel(band=b).values for b in ("B04", "B03", "B02")], axis=-1)
    return _stretch(rgb.astype(np.float64))


def _extent(da: xr.DataArray) -> tuple[float, float, float, float]:
    left, bottom, right, top = da.rio.bounds()
    return (float(left), float(right), float(bottom), float(top))


def save_comparison_png(
    patch: xr.DataArray, grid: xr.DataArray, path: str | Path, title: str = ""
) -> Path:
    """Write the input's true colour beside the embedding's PCA colours, on one ground extent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4), sharex=True, sharey=True)
    axes[0].imshow(rgb_from_patch(patch), extent=_extent(patch), interpolation="nearest")
    axes[0].set_title("input (B04, B03, B02)")
    axes[1].imshow(pca_rgb(grid.values), extent=_extent(grid), interpolation="nearest")
    axes[1].set_title(f"embedding PCA ({grid.sizes['dim']} dims -> RGB)")
    for ax in axes:
        ax.set_xlabel(f"x ({patch.rio.crs.to_string()}, m)")
        ax.ticklabel_format(useOffset=False, style="plain")
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("y (m)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
