"""Cloud-Optimized GeoTIFF: one ``<id>.tif`` per grid record, one band per embedding dim.

Written with GDAL's COG driver through rasterio (tiled, DEFLATE with the floating-point or
integer predictor, overviews when the grid is larger than a tile), so any GIS opens it and
HTTP range reads work. Bands are described ``dim_000``...; float32 files use NaN as nodata.
Quantised files are int8 with GDAL's per-band ``scale`` (``value = stored * scale``, offset
0) and nodata -128, which GDAL-aware readers (``rioxarray.open_rasterio(mask_and_scale=
True)``, QGIS) apply themselves.

Metadata lives in its own GDAL metadata domain, ``EOEMBED``, one item per field: the record's
metadata, the ``emb:`` fields (as ``emb_dimensions``, ``emb_type``, ``emb_runtime_parameters``
...: GDAL item names cannot hold ``:``, see :mod:`eoembed.writers.gdal_metadata`) and the
export schema (``eoembed``, JSON). Read them by name with ``gdalinfo -mdd EOEMBED <file>`` or
rasterio's ``src.tags(ns="EOEMBED")``. Closing the writer (re)writes ``mosaic.vrt`` (one per
CRS), a VRT over every region file, so the whole export opens as one raster
(:mod:`eoembed.writers.vrt`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.grid import Grid
from eoembed.writers.base import (
    EmbeddingRecord,
    Writer,
    WrittenFile,
    list_complete,
)
from eoembed.writers.gdal_metadata import DOMAIN, from_gdal_metadata, to_gdal_metadata
from eoembed.writers.netcdf import cf_dataset, dequantize_dataset, file_attrs, grid_tree
from eoembed.writers.quantize import MISSING

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["COGWriter"]

_MAX_BLOCK = 512


def _blocksize(height: int, width: int) -> int:
    """Smallest multiple of 16 holding the grid, at most 512.

    GDAL pads every tile to the full block, and a COG block is ``count`` bands deep in pixel
    interleave: a 512 px block of 1024 float32 bands is 1 GiB in memory for a 8x8 grid.
    """
    side = max(height, width)
    return min(_MAX_BLOCK, max(16, -(-side // 16) * 16))


class COGWriter(Writer):
    """One Cloud-Optimized GeoTIFF per grid record: ``<id>.tif``."""

    name: ClassVar[str] = "cog"
    description: ClassVar[str] = "Cloud-Optimized GeoTIFF, one <id>.tif per region, band = dim"
    modes: ClassVar[frozenset[str]] = frozenset({"grid"})
    requires: ClassVar[tuple[str, ...]] = ("rasterio",)

    def write(self, records: Sequence[EmbeddingRecord]) -> list[WrittenFile]:
        """Write ``<id>.tif`` for each record (all or none of the batch)."""
        return self.write_each(records, lambda r: f"{r.id}.tif", self._write_one)

    def _write_one(self, record: EmbeddingRecord, tmp: Path) -> None:
        import rasterio

        grid = record.output_grid
        assert grid is not None  # checked by prepare()
        values = record.values
        dim, height, width = values.shape
        quantised = record.scale is not None
        profile: dict[str, Any] = {
            "driver": "COG",
            "width": width,
            "height": height,
            "count": dim,
            "dtype": values.dtype.name,
            "crs": grid.crs,
            "transform": grid.transform,
            "nodata": MISSING if quantised else float("nan"),
            "compress": "DEFLATE",
            "predictor": 2 if quantised else 3,
            "blocksize": _blocksize(height, width),
            "bigtiff": "IF_SAFER",
            # the COG driver copies a temporary GeoTIFF: carry the EOEMBED domain over
            "copy_src_mdd": "YES",
        }
        digits = len(str(dim - 1))
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(values)
            dst.descriptions = tuple(f"dim_{i:0{digits}d}" for i in range(dim))
            if record.scale is not None:
                dst.scales = tuple(float(s) for s in np.asarray(record.scale))
                dst.offsets = (0.0,) * dim
            dst.update_tags(ns=DOMAIN, **to_gdal_metadata(file_attrs(record, self.schema)))

    def close(self) -> None:
        """(Re)write the VRT mosaics over every complete region file (one per CRS)."""
        from eoembed.writers.vrt import write_mosaic_vrts

        write_mosaic_vrts(self.directory, self.list_files(self.directory))

    @classmethod
    def list_files(cls, directory: Path) -> list[str]:
        """Every complete ``<id>.tif`` in ``directory`` (the derived ``mosaic*.vrt`` is not one)."""
        return list_complete(Path(directory), "*.tif")

    @classmethod
    def load(cls, directory: Path, *, dequantize: bool = True) -> xr.DataTree:
        """All records as an ``xarray.DataTree`` (one child per id), read eagerly.

        Args:
            directory: the writer's folder.
            dequantize: return float32 values for int8 files (drops ``embedding_scale``).
        """
        import rasterio

        datasets: dict[str, xr.Dataset] = {}
        root: dict[str, Any] = {}
        for name in cls.list_files(Path(directory)):
            with rasterio.open(Path(directory) / name) as src:
                values = src.read()
                t = src.transform
                grid = Grid(src.crs.to_string(), t.c, t.f, t.a, src.width, src.height)
                # files written before the EOEMBED domain kept their tags in the default one
                tags = from_gdal_metadata(src.tags(ns=DOMAIN) or src.tags())
                scale = (
                    np.asarray(src.scales, dtype=np.float32) if values.dtype == np.int8 else None
                )
            tags.pop("AREA_OR_POINT", None)
            ds = cf_dataset(values, grid, tags, scale)
            datasets[name.removesuffix(".tif")] = dequantize_dataset(ds) if dequantize else ds
            if not root and "eoembed" in tags:
                root["eoembed"] = json.loads(tags["eoembed"])
        return grid_tree(datasets, root)
