"""Reading one band of one file onto a grid, with GDAL doing the resampling."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

if TYPE_CHECKING:
    from eoembed.grid import Grid

__all__ = ["GDAL_ENV", "read_onto_grid"]

GDAL_ENV = {
    # Don't list remote directories on open, merge neighbouring range requests, cache blocks.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.jp2,.TIF,.TIFF,.JP2",
    "VSI_CACHE": "TRUE",
}


def choose_resampling(method: str, native_res: float, target_res: float) -> Resampling:
    """``auto`` keeps pixel values when upsampling and averages when downsampling."""
    if method != "auto":
        return Resampling[method]
    return Resampling.average if native_res < target_res * (1 - 1e-9) else Resampling.nearest


def native_resolution(src: rasterio.io.DatasetReader, grid: Grid) -> float:
    """The file's pixel size in the grid CRS's units (metres), whatever the file's CRS.

    A lon/lat file's ``res`` is in degrees; comparing it with metres would always look like
    downsampling, so the file's pixel size is measured in the grid CRS instead.
    """
    from rasterio.crs import CRS
    from rasterio.warp import calculate_default_transform

    if src.crs is None or src.crs == CRS.from_user_input(grid.crs):
        return float(abs(src.res[0]))
    transform, _, _ = calculate_default_transform(
        src.crs, grid.crs, src.width, src.height, *src.bounds
    )
    return float(abs(transform.a))


def read_onto_grid(
    href: str, grid: Grid, *, resampling: str = "auto", nodata: float | None = None
) -> np.ndarray:
    """Band 1 of ``href`` warped onto ``grid`` as float32, NaN where there is no data.

    Only the blocks under the grid are read. Pixels equal to ``nodata`` (or the file's own
    nodata value) and pixels outside the file become NaN.
    """
    with rasterio.Env(**GDAL_ENV), rasterio.open(href) as src:
        src_nodata = src.nodata if src.nodata is not None else nodata
        method = choose_resampling(resampling, native_resolution(src, grid), grid.resolution)
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=method,
            src_nodata=src_nodata,
            nodata=src_nodata if src_nodata is not None else 0,
            add_alpha=src_nodata is None,
            # Warp in float32: averaged or interpolated integer pixels keep their fractions.
            dtype="float32",
        ) as vrt:
            if src_nodata is None:
                data, alpha = vrt.read((1, vrt.count)).astype(np.float32)
                data[alpha == 0] = np.nan
                out: np.ndarray = data
                return out
            band = vrt.read(1, masked=True)
            filled: np.ndarray = np.ma.filled(band.astype(np.float32), np.nan)
            return filled
