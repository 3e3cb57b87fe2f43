"""NumPy ``.npz`` (compressed), for users of plain numpy and of rs-embed's exports.

rs-embed writes ``np.savez_compressed`` archives with ``embedding__<model>`` (one region) or
``embeddings__<model>`` (stacked regions) and a JSON manifest beside them. eoembed keeps the
same stems without the model suffix (each folder holds one model) and puts the metadata
inside the archive as a JSON string, so one atomic rename makes a file complete. Every key
loads with ``np.load(path)`` (no pickle).

Pooled, one ``part-<seq>-<shortid>.npz`` per write:
    ``embeddings`` (n, dim) float32 or int8; ``embedding_scale`` (n,) float32 when int8;
    ``ids`` (n,);
    ``bbox`` (n, 4) lon/lat; ``footprints_wkb_hex`` (n,) hex WKB in OGC:CRS84;
    ``metadata``: JSON ``{"eoembed": schema, "emb": {...}, "records": [per record]}``.

Grid, one ``<id>.npz`` per record:
    ``embedding`` (dim, h, w); ``embedding_scale`` (dim,) when int8; ``transform`` (6,) rasterio
    order; ``crs``; ``x``/``y`` cell centres; ``metadata``: JSON (record, ``emb:``, schema);
    ``cell_valid_fraction`` (h, w) when the provider counted clear observations.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.grid import Grid
from eoembed.writers.base import (
    EmbeddingRecord,
    Writer,
    WrittenFile,
    list_complete,
    record_metadata,
    schema_metadata,
    stac_embedding_fields,
)
from eoembed.writers.netcdf import (
    CELL_VALID,
    cf_dataset,
    dequantize_dataset,
    file_attrs,
    grid_tree,
)
from eoembed.writers.quantize import dequantize as dequantize_values

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

__all__ = ["NpzWriter"]


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # A file object, because np.savez appends ".npz" to names that lack it (temp names).
    named: dict[str, Any] = arrays
    with path.open("wb") as fh:
        np.savez_compressed(fh, **named)


def _json(value: Any) -> np.ndarray:
    return np.array(json.dumps(value, default=str))


class NpzWriter(Writer):
    """Compressed ``.npz`` archives: pooled parts or one file per grid record."""

    name: ClassVar[str] = "npz"
    description: ClassVar[str] = "NumPy .npz (rs-embed style): pooled parts or <id>.npz grids"
    modes: ClassVar[frozenset[str]] = frozenset({"pooled", "grid"})
    requires: ClassVar[tuple[str, ...]] = ("numpy",)

    def write(self, records: Sequence[EmbeddingRecord]) -> list[WrittenFile]:
        """Pooled: one new part for the batch; grid: ``<id>.npz`` per record."""
        if self.schema.mode == "grid":
            return self.write_each(records, lambda r: f"{r.id}.npz", self._write_one)
        records = self.prepare(records)
        if not records:
            return []
        return [self.write_part([r.id for r in records], ".npz", self._pooled_writer(records))]

    def _pooled_writer(self, records: Sequence[EmbeddingRecord]) -> Callable[[Path], None]:
        import shapely

        geoms = shapely.from_wkb([r.footprint_wkb for r in records])
        arrays = {
            "embeddings": np.stack([r.values for r in records]),
            "ids": np.array([r.id for r in records]),
            "bbox": shapely.bounds(geoms).astype(np.float64),
            "footprints_wkb_hex": np.array(shapely.to_wkb(geoms, hex=True)).astype(str),
            "metadata": _json(
                {
                    "eoembed": schema_metadata(self.schema),
                    "emb": stac_embedding_fields(self.schema),
                    "records": [record_metadata(r) for r in records],
                }
            ),
        }
        if self.schema.quantization:
            arrays["embedding_scale"] = np.array([r.scale for r in records], dtype=np.float32)
        return lambda tmp: _save(tmp, arrays)

    def _write_one(self, record: EmbeddingRecord, tmp: Path) -> None:
        grid = record.output_grid
        assert grid is not None  # checked by prepare()
        arrays = {
            "embedding": record.values,
            "transform": np.array(list(grid.transform)[:6], dtype=np.float64),
            "crs": np.array(grid.crs),
            "x": grid.xs(),
            "y": grid.ys(),
            "metadata": _json(file_attrs(record, self.schema)),
        }
        if record.scale is not None:
            arrays["embedding_scale"] = np.asarray(record.scale, dtype=np.float32)
        if record.cell_valid_fraction is not None:
            arrays[CELL_VALID] = np.asarray(record.cell_valid_fraction, dtype=np.float32)
        _save(tmp, arrays)

    @classmethod
    def list_files(cls, directory: Path) -> list[str]:
        """Every complete ``.npz`` (pooled parts and grid files) in ``directory``."""
        return list_complete(Path(directory), "*.npz")

    @classmethod
    def load(cls, directory: Path, *, dequantize: bool = True) -> gpd.GeoDataFrame | xr.DataTree:
        """Pooled parts as a GeoDataFrame, or grid files as an ``xarray.DataTree``.

        Args:
            directory: the writer's folder.
            dequantize: float32 values for int8 archives (else int8 plus the scales).
        """
        directory = Path(directory)
        names = cls.list_files(directory)
        if any(n.startswith("part-") for n in names):
            return _load_pooled(directory, [n for n in names if n.startswith("part-")], dequantize)
        return _load_grids(directory, names, dequantize)


def _load_pooled(directory: Path, names: list[str], dequantize: bool) -> gpd.GeoDataFrame:
    import geopandas as gpd
    import shapely

    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "id",
            "model",
            "start_datetime",
            "end_datetime",
            "scene_ids",
            "crs",
            "valid_fraction",
            "fingerprint",
            "embedding",
            "embedding_scale",
            "frame_dates",
            "geometry",
        )
    }
    for name in names:
        with np.load(directory / name) as npz:
            values = npz["embeddings"]
            scales = npz.get("embedding_scale")
            records = json.loads(str(npz["metadata"]))["records"]
            columns["geometry"] += list(shapely.from_wkb(npz["footprints_wkb_hex"].tolist()))
        if scales is not None and dequantize:
            values = dequantize_values(values, scales)
        elif scales is not None:
            columns["embedding_scale"] += list(scales)
        columns["embedding"] += list(values)
        for r in records:
            for key in ("id", "model", "scene_ids", "valid_fraction", "fingerprint"):
                columns[key].append(r[key])
            for key in ("start_datetime", "end_datetime"):
                columns[key].append(np.datetime64(r[key].removesuffix("Z"), "us"))
            columns["crs"].append(r["input_grid"]["crs"])
            columns["frame_dates"].append(r.get("frame_dates"))
    if not columns["embedding_scale"]:
        del columns["embedding_scale"]
    if not any(columns["frame_dates"]):  # only time series inputs have frame dates
        del columns["frame_dates"]
    geometry = columns.pop("geometry")
    gdf = gpd.GeoDataFrame(columns, geometry=geometry, crs="OGC:CRS84")
    for key in ("start_datetime", "end_datetime"):
        gdf[key] = gdf[key].astype("datetime64[us]").dt.tz_localize("UTC")
    return gdf


def _load_grids(directory: Path, names: list[str], dequantize: bool) -> xr.DataTree:
    datasets: dict[str, xr.Dataset] = {}
    root: dict[str, Any] = {}
    for name in names:
        with np.load(directory / name) as npz:
            t = npz["transform"]
            values = npz["embedding"]
            height, width = values.shape[1:]
            grid = Grid(str(npz["crs"]), float(t[2]), float(t[5]), float(t[0]), width, height)
            scale = npz.get("embedding_scale")
            cell_valid = npz.get(CELL_VALID)
            meta = json.loads(str(npz["metadata"]))
        root = root or {"eoembed": meta.pop("eoembed", None)}
        meta.pop("eoembed", None)
        ds = cf_dataset(values, grid, {k: v for k, v in meta.items() if v is not None}, scale,
                        cell_valid)
        datasets[name.removesuffix(".npz")] = dequantize_dataset(ds) if dequantize else ds
    return grid_tree(datasets, root)
