"""Write small Cloud-Optimised GeoTIFFs from arrays, like odc-stac's ``with_temp_tiff``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from affine import Affine

__all__ = ["make_cog"]


def make_cog(
    path: str | os.PathLike[str],
    array: np.ndarray,
    crs: str,
    transform: Affine,
    nodata: float | None = None,
    *,
    blocksize: int = 256,
    compress: str = "deflate",
) -> Path:
    """Write ``array`` as a COG at ``path`` and return the path.

    Args:
        path: where to write (parent folders are created).
        array: ``(y, x)`` for one band or ``(band, y, x)``; its dtype is kept.
        crs: the CRS, anything rasterio accepts (``"EPSG:32618"``).
        transform: the affine transform of the top-left pixel corner.
        nodata: the nodata value to record in the file, if any.
        blocksize: internal tile size in pixels (a power of two, >= 16).
        compress: GDAL compression.
    """
    import numpy as np
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile

    data = np.asarray(array)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"array must be (y, x) or (band, y, x), got shape {data.shape}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data)
        with mem.open() as tmp:
            rasterio.shutil.copy(
                tmp, out, driver="COG", blocksize=blocksize, compress=compress,
                overview_resampling="nearest",
            )
    return out
