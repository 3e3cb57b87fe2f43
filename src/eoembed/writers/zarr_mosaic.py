"""A root-level mosaic of a Zarr export whose regions share one grid.

When every region has the same CRS and cell size and their origins sit on one lattice, and
their union holds at most :data:`MAX_UNION_RATIO` times the regions' cells (a sparse set of
far-apart regions would be mostly empty), the store's root also gets ``embedding`` ``(dim,
mosaic_y, mosaic_x)`` float32 (NaN where no region; int8 regions dequantised with their own
scales) with ``mosaic_x``/``mosaic_y`` cell-centre coordinates and ``spatial_ref``, so
``xarray.open_zarr(store)`` opens the mosaic directly (georeferenced: ``.rio.crs``).

The mosaic's dimensions are ``mosaic_y``/``mosaic_x``, not ``y``/``x``: a DataTree requires
every group to align with its parents' coordinates, and the region groups' own ``y``/``x``
differ, so this keeps ``xarray.open_datatree(store, engine="zarr")`` opening every region
under the mosaic. The coordinates carry CF ``axis``/``standard_name`` attributes, which
rioxarray uses to find them. Where regions overlap, the later region (by id) fills the cells
the earlier left NaN or overwrites them.

Derived, like consolidated metadata: written to a temporary store, its arrays moved into the
root when whole, removed when a writer opens the store (resume) and rebuilt on close.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eoembed.writers.base import TMP_PREFIX
from eoembed.writers.netcdf import EMBEDDING, dequantize_dataset

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["MAX_UNION_RATIO", "MOSAIC_ARRAYS", "remove_mosaic", "write_mosaic"]

MAX_UNION_RATIO = 4.0
"""Most cells the mosaic may hold per region cell; sparser exports get no mosaic."""
X, Y = "mosaic_x", "mosaic_y"
MOSAIC_ARRAYS = (EMBEDDING, "dim", X, Y, "spatial_ref")
"""The root-level arrays of the mosaic (never record groups: those are groups)."""
_CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class _Region:
    name: str
    crs: str
    left: float
    top: float
    res_x: float
    res_y: float
    width: int
    height: int


def remove_mosaic(store: Path) -> None:
    """Delete the mosaic's root arrays (an export being added to, or a mosaic being rebuilt)."""
    for name in MOSAIC_ARRAYS:
        if (store / name).is_dir():
            shutil.rmtree(store / name)


def _region(name: str, ds: xr.Dataset) -> _Region | None:
    crs = ds.rio.crs
    t = ds.rio.transform()
    if crs is None or t.b != 0 or t.d != 0 or t.e >= 0:
        return None
    return _Region(name, crs.to_string(), t.c, t.f, t.a, -t.e, ds.sizes["x"], ds.sizes["y"])


def _shared_grid(regions: Sequence[_Region]) -> tuple[float, float, int, int] | None:
    """(left, top, width, height) of the union when every region is on one lattice."""
    first = regions[0]
    for r in regions:
        if r.crs != first.crs or not (
            math.isclose(r.res_x, first.res_x, rel_tol=1e-9)
            and math.isclose(r.res_y, first.res_y, rel_tol=1e-9)
        ):
            return None
        for offset, res in ((r.left - first.left, r.res_x), (r.top - first.top, r.res_y)):
            if abs(offset / res - round(offset / res)) > 1e-6:
                return None
    left = min(r.left for r in regions)
    top = max(r.top for r in regions)
    width = round((max(r.left + r.width * r.res_x for r in regions) - left) / first.res_x)
    height = round((top - min(r.top - r.height * r.res_y for r in regions)) / first.res_y)
    if width * height > MAX_UNION_RATIO * sum(r.width * r.height for r in regions):
        return None
    return left, top, width, height


def write_mosaic(store: Path, datasets: dict[str, xr.Dataset]) -> bool:
    """Write the root mosaic of ``datasets`` (id -> region) if they share a grid; say if so."""
    import xarray as xr
    import zarr

    if not datasets or set(datasets) & set(MOSAIC_ARRAYS):
        return False
    regions = [_region(name, ds) for name, ds in datasets.items()]
    if any(r is None for r in regions):
        return False
    placed = [r for r in regions if r is not None]
    shared = _shared_grid(placed)
    if shared is None:
        return False
    left, top, width, height = shared
    res_x, res_y, crs = placed[0].res_x, placed[0].res_y, placed[0].crs
    dim = next(iter(datasets.values())).sizes["dim"]

    coords = xr.Dataset(coords={
        "dim": np.arange(dim),
        Y: (Y, top - (np.arange(height) + 0.5) * res_y, {
            "axis": "Y", "standard_name": "projection_y_coordinate",
            "long_name": "y coordinate of projection (cell centre)"}),
        X: (X, left + (np.arange(width) + 0.5) * res_x, {
            "axis": "X", "standard_name": "projection_x_coordinate",
            "long_name": "x coordinate of projection (cell centre)"}),
    })
    from affine import Affine

    coords = coords.rio.write_crs(crs).rio.write_transform(
        Affine(res_x, 0.0, left, 0.0, -res_y, top)
    )
    side = max(16, int(math.sqrt(_CHUNK_BYTES / 4 / dim)))
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, suffix=".zarr", dir=store.parent))
    try:
        shutil.rmtree(tmp)
        coords.to_zarr(tmp, zarr_format=3, mode="w-", consolidated=False)
        group = zarr.open_group(str(tmp), mode="a", zarr_format=3)
        array = group.create_array(
            EMBEDDING, shape=(dim, height, width), chunks=(dim, min(side, height),
                                                           min(side, width)),
            dtype="float32", fill_value=np.nan, dimension_names=["dim", Y, X],
            attributes={
                "long_name": "embedding mosaic of every region (NaN where none)",
                "units": "1", "grid_mapping": "spatial_ref", "coordinates": "spatial_ref",
            },
        )
        for name, r in zip(datasets, placed, strict=True):
            row = round((top - r.top) / res_y)
            col = round((r.left - left) / res_x)
            window = (slice(None), slice(row, row + r.height), slice(col, col + r.width))
            values = np.asarray(dequantize_dataset(datasets[name])[EMBEDDING].values,
                                dtype=np.float32)
            current = array[window]
            array[window] = np.where(np.isnan(values), current, values)
        remove_mosaic(store)
        for name in MOSAIC_ARRAYS:
            (tmp / name).replace(store / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True
