"""Prediction maps as GeoTIFFs: class codes or values on georeferenced grids, and mosaics.

Classes are written as their own integer values when they are integers (``uint8`` with
nodata 255 when they fit in 0..254, else ``int32``), otherwise as codes 0..k-1 with the
labels in the ``classes`` tag (JSON). Values are ``float32`` with NaN nodata. Every file
carries the head's kind, task and embedder in its tags.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.errors import SpecError
from eoembed.grid import Grid

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

__all__ = ["MapEncoding", "mosaic", "rasterize_footprints", "write_geotiff"]


@dataclass
class MapEncoding:
    """How predictions become raster values: dtype, nodata and (for classes) their codes."""

    dtype: str
    nodata: float
    classes: list[Any] | None = None
    codes: dict[Any, int] | None = None

    @classmethod
    def for_task(cls, task: str, classes: Sequence[Any] | None) -> MapEncoding:
        """Float values for regression; integers for classes (see the module docstring)."""
        if task == "regression" or not classes:
            return cls("float32", float("nan"))
        labels = list(classes)
        if all(isinstance(c, int) and not isinstance(c, bool) for c in labels):
            if all(0 <= c <= 254 for c in labels):
                return cls("uint8", 255, labels, {c: c for c in labels})
            return cls("int32", float(np.iinfo(np.int32).min), labels, {c: c for c in labels})
        return cls("uint16", 65535, labels, {c: i for i, c in enumerate(labels)})

    def encode(self, predictions: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Predictions (values or class labels) as raster values; invalid cells as nodata."""
        predictions = np.asarray(predictions)
        if self.codes is None:
            if predictions.dtype == object:
                flat = [np.nan if v is None else float(v) for v in predictions.ravel().tolist()]
                predictions = np.asarray(flat, dtype=np.float64).reshape(predictions.shape)
            out = predictions.astype(np.float32)
        else:
            flat = [self.codes.get(_plain(v), -1) for v in predictions.ravel().tolist()]
            codes = np.asarray(flat, dtype=np.int64).reshape(predictions.shape)
            out = np.where(codes < 0, self.nodata, codes).astype(self.dtype)
        if valid is not None:
            out = np.where(valid, out, np.asarray(self.nodata, dtype=out.dtype))
        result: np.ndarray = out
        return result

    def empty(self, shape: tuple[int, int]) -> np.ndarray:
        """An all-nodata array."""
        return np.full(shape, self.nodata, dtype=self.dtype)

    def is_nodata(self, values: np.ndarray) -> np.ndarray:
        """Where ``values`` hold nodata."""
        if math.isnan(self.nodata):
            return np.asarray(np.isnan(values), dtype=bool)
        return np.asarray(values == self.nodata, dtype=bool)

    def tags(self) -> dict[str, str]:
        """GeoTIFF tags describing the values."""
        if self.classes is None:
            return {"values": "predicted values"}
        return {"values": "predicted classes", "classes": json.dumps(self.classes),
                "codes": json.dumps({str(k): v for k, v in (self.codes or {}).items()})}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def write_geotiff(path: str | Path, values: np.ndarray, grid: Grid, encoding: MapEncoding,
                  tags: dict[str, Any] | None = None) -> Path:
    """Write one band of encoded ``values`` on ``grid`` (tiled, DEFLATE)."""
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = values.shape
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": 1,
        "dtype": encoding.dtype, "crs": grid.crs, "transform": grid.transform,
        "nodata": encoding.nodata, "compress": "DEFLATE",
    }
    if width >= 256 and height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    tmp = path.with_name(f".tmp-{path.name}")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(values.astype(encoding.dtype), 1)
        dst.update_tags(**encoding.tags(), **{k: v if isinstance(v, str) else json.dumps(v)
                                               for k, v in (tags or {}).items()})
    tmp.replace(path)
    return path


def mosaic(
    maps: Sequence[tuple[np.ndarray, Grid]], encoding: MapEncoding
) -> tuple[np.ndarray, Grid]:
    """One array over the union of ``maps`` (same CRS and pixel size); the first value wins.

    Grids eoembed makes are snapped to multiples of their resolution, so they paste exactly;
    others are resampled (nearest) onto the mosaic grid.

    Raises:
        SpecError: maps in different CRSs or pixel sizes (write one file per region instead).
    """
    if not maps:
        raise SpecError("maps", 0, allowed="at least one region")
    crs = {g.crs for _, g in maps}
    resolution = {round(g.resolution, 6) for _, g in maps}
    if len(crs) > 1 or len(resolution) > 1:
        raise SpecError("out", "one GeoTIFF", allowed="a folder (one GeoTIFF per region)",
                        reason=f"the regions lie on {len(crs)} CRSs and {len(resolution)} pixel "
                        "sizes; a mosaic needs one of each")
    res = maps[0][1].resolution
    left = min(g.left for _, g in maps)
    top = max(g.top for _, g in maps)
    right = max(g.bounds[2] for _, g in maps)
    bottom = min(g.bounds[1] for _, g in maps)
    width = max(1, round((right - left) / res))
    height = max(1, round((top - bottom) / res))
    target = Grid(next(iter(crs)), left, top, res, width, height)
    out = encoding.empty(target.shape)
    for values, grid in maps:
        col = (grid.left - left) / res
        row = (top - grid.top) / res
        if abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6:
            r0, c0 = round(row), round(col)
            window = out[r0:r0 + grid.height, c0:c0 + grid.width]
            fill = encoding.is_nodata(window) & ~encoding.is_nodata(values)
            window[fill] = values[fill]
        else:
            _paste_resampled(out, target, values, grid, encoding)
    return out, target


def _paste_resampled(out: np.ndarray, target: Grid, values: np.ndarray, grid: Grid,
                     encoding: MapEncoding) -> None:
    from rasterio.warp import Resampling, reproject

    tmp = encoding.empty(target.shape)
    reproject(source=values, destination=tmp, src_transform=grid.transform, src_crs=grid.crs,
              dst_transform=target.transform, dst_crs=target.crs, src_nodata=encoding.nodata,
              dst_nodata=encoding.nodata, resampling=Resampling.nearest)
    fill = encoding.is_nodata(out) & ~encoding.is_nodata(tmp)
    out[fill] = tmp[fill]


def rasterize_footprints(footprints: Sequence[BaseGeometry], values: np.ndarray, crs: str,
                         resolution: float, encoding: MapEncoding) -> tuple[np.ndarray, Grid]:
    """Pooled predictions burnt onto a ``resolution`` grid in ``crs`` covering the footprints.

    Footprints are in lon/lat; where they overlap, the first one wins.
    """
    import shapely
    from rasterio.features import rasterize

    from eoembed.grid import reproject_geometry

    projected = [reproject_geometry(f, "EPSG:4326", crs) for f in footprints]
    bounds = shapely.total_bounds(projected)
    grid = Grid.snapped(crs, (bounds[0], bounds[1], bounds[2], bounds[3]), resolution)
    if grid.width * grid.height > 20_000 * 20_000:
        raise SpecError("resolution_m", resolution, allowed="a coarser pixel size",
                        reason=f"the map would be {grid.width} x {grid.height} pixels")
    # Burn row numbers (last shape wins, so the list is reversed: the first footprint wins).
    shapes = [(geom, i + 1) for i, geom in reversed(list(enumerate(projected)))]
    index = rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=0,
                      dtype="int32")
    lookup = np.concatenate([encoding.empty((1, 1)).ravel(), np.asarray(values)])
    return lookup[index].astype(encoding.dtype), grid
