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

Cost: every close decides from each group's ``zarr.json`` (its ``output_grid`` attribute,
about 0.2 ms a region) and only then reads the regions' values, once each, so an export that
gets no mosaic costs a JSON read per region. A mosaic duplicates the data as float32 (4x an
int8 export), so past :data:`MAX_MOSAIC_BYTES` none is written and a warning says so.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eoembed.writers.base import TMP_PREFIX
from eoembed.writers.netcdf import EMBEDDING, dequantize_dataset

__all__ = ["MAX_MOSAIC_BYTES", "MAX_UNION_RATIO", "MOSAIC_ARRAYS", "remove_mosaic",
           "write_mosaic"]

_LOG = logging.getLogger(__name__)

MAX_MOSAIC_BYTES = 8 << 30
"""Largest root mosaic written (float32 bytes): a 768-dim mosaic of about 1,650 x 1,650 cells."""

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


def _region(store: Path, name: str) -> _Region | None:
    """Where group ``name`` lies, from its ``output_grid`` attribute (no array is opened)."""
    try:
        meta = json.loads((store / name / "zarr.json").read_text(encoding="utf-8"))
        grid = meta["attributes"]["output_grid"]
        a, b, c, d, e, f = (float(v) for v in list(grid["transform"])[:6])
        crs, width, height = str(grid["crs"]), int(grid["width"]), int(grid["height"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if b != 0 or d != 0 or e >= 0 or a <= 0:
        return None
    return _Region(name, crs, c, f, a, -e, width, height)


def _dim(store: Path, name: str) -> int | None:
    """The group's embedding dimension, from its array's ``zarr.json``."""
    try:
        meta = json.loads((store / name / EMBEDDING / "zarr.json").read_text(encoding="utf-8"))
        return int(meta["shape"][0])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


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


def write_mosaic(store: Path, groups: Sequence[str]) -> bool:
    """Write the root mosaic of the record ``groups`` if they share a grid; say if so.

    Regions are placed from their metadata; values are read (once each) only when a mosaic is
    written.
    """
    import xarray as xr
    import zarr

    if not groups or set(groups) & set(MOSAIC_ARRAYS):
        return False
    regions = [_region(store, name) for name in groups]
    if any(r is None for r in regions):
        return False
    placed = [r for r in regions if r is not None]
    dims = {_dim(store, name) for name in groups}
    if len(dims) != 1 or None in dims:
        return False
    shared = _shared_grid(placed)
    if shared is None:
        return False
    left, top, width, height = shared
    res_x, res_y, crs = placed[0].res_x, placed[0].res_y, placed[0].crs
    dim = int(next(iter(dims)) or 0)
    if dim * width * height * 4 > MAX_MOSAIC_BYTES:
        _LOG.warning(
            "%s: no root mosaic of %d regions (%d x %d cells x %d dims is more than %d GiB);"
            " open the regions with xarray.open_datatree or the export's STAC catalogue",
            store, len(groups), width, height, dim, MAX_MOSAIC_BYTES >> 30,
        )
        return False

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
        for r in placed:
            row = round((top - r.top) / res_y)
            col = round((r.left - left) / res_x)
            window = (slice(None), slice(row, row + r.height), slice(col, col + r.width))
            with xr.open_dataset(store, group=r.name, engine="zarr",
                                 consolidated=False) as ds:
                values = np.asarray(dequantize_dataset(ds)[EMBEDDING].values, dtype=np.float32)
            current = array[window]
            array[window] = np.where(np.isnan(values), current, values)
        remove_mosaic(store)
        for name in MOSAIC_ARRAYS:
            (tmp / name).replace(store / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True
