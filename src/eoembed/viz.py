"""Pictures for people: the input's true colour beside a PCA-to-RGB view of a grid embedding.

matplotlib (the ``plot`` extra) is imported only by :func:`save_comparison_png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["RGB_BANDS", "pca_rgb", "rgb_from_patch", "save_comparison_png"]

RGB_BANDS = ("B04", "B03", "B02")
"""Sentinel-2 red, green, blue."""


def _stretch(channels: np.ndarray) -> np.ndarray:
    """Per-channel 2-98 percentile stretch of ``(..., c)`` values to [0, 1]."""
    flat = channels.reshape(-1, channels.shape[-1])
    lo, hi = np.percentile(flat, [2, 98], axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    out: np.ndarray = np.clip((channels - lo) / span, 0.0, 1.0)
    return out


def pca_rgb(grid: np.ndarray) -> np.ndarray:
    """Colour each cell of a grid embedding by its first three principal components.

    Args:
        grid: ``(D, h, w)`` features.

    Returns:
        ``(h, w, 3)`` floats in [0, 1]: the centred features projected on their first three
        principal axes (numpy SVD), each stretched between its 2nd and 98th percentiles.
        Missing components (fewer than three cells or dimensions) are black.
    """
    d, h, w = grid.shape
    x = np.nan_to_num(grid.reshape(d, h * w).T.astype(np.float64))
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    components = x @ vt[:3].T
    if components.shape[1] < 3:
        components = np.pad(components, ((0, 0), (0, 3 - components.shape[1])))
    return _stretch(components.reshape(h, w, 3))


def rgb_from_patch(patch: xr.DataArray) -> np.ndarray:
    """True colour of a ``(band, y, x)`` patch holding bands B04, B03 and B02.

    Returns:
        ``(y, x, 3)`` floats in [0, 1], each channel stretched between its 2nd and 98th
        percentiles.
    """
    rgb = np.stack([patch.sel(band=b).values for b in RGB_BANDS], axis=-1)
    return _stretch(np.nan_to_num(rgb.astype(np.float64)))


def _extent(da: xr.DataArray) -> tuple[float, float, float, float]:
    """``(left, right, bottom, top)`` ground extent of a raster, from its x/y coordinates.

    This is what ``imshow(extent=...)`` takes, so rasters of different resolutions over the
    same ground overlay exactly.
    """
    res_x, res_y = (abs(float(r)) for r in da.rio.resolution())
    xs, ys = np.asarray(da["x"].values), np.asarray(da["y"].values)
    return (
        float(xs.min()) - res_x / 2,
        float(xs.max()) + res_x / 2,
        float(ys.min()) - res_y / 2,
        float(ys.max()) + res_y / 2,
    )


def save_comparison_png(
    patch: xr.DataArray, grid_embedding: xr.DataArray, path: str | Path, title: str = ""
) -> Path:
    """Write a PNG of the input's true colour beside the grid embedding's PCA colours.

    Both panels are drawn in the rasters' CRS (metres) over the same ground extent, so a
    cell of the embedding sits over the pixels it was computed from.

    Args:
        patch: ``(band, y, x)`` input with bands B04, B03, B02, georeferenced.
        grid_embedding: ``(dim, y, x)`` grid embedding on the same CRS.
        path: where to write the PNG.
        title: a title above both panels.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4), sharex=True, sharey=True)
    try:
        axes[0].imshow(rgb_from_patch(patch), extent=_extent(patch), interpolation="nearest")
        axes[0].set_title("input (B04, B03, B02)")
        axes[1].imshow(
            pca_rgb(np.asarray(grid_embedding.values)), extent=_extent(grid_embedding),
            interpolation="nearest",
        )
        dims, h, w = grid_embedding.shape
        axes[1].set_title(f"embedding: {dims} dims, {h}x{w} cells, PCA to RGB")
        crs = patch.rio.crs
        for ax in axes:
            ax.set_xlabel(f"x, m ({crs.to_string() if crs else 'no CRS'})")
            ax.ticklabel_format(useOffset=False, style="plain")
            ax.tick_params(labelsize=7)
        axes[0].set_ylabel("y, m")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
