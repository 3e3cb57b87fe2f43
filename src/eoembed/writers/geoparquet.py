"""GeoParquet 1.1 for pooled embeddings: one row per region, written as immutable parts.

Each ``write()`` adds one ``part-<seq>-<shortid>.parquet`` (``seq`` continues after the parts
already there, so a resumed export never reuses a name). Parts are never rewritten; together
they form one dataset (``read_parquet("<dir>/*.parquet")`` in DuckDB, geopandas, pyarrow).

Columns:
    ``id``, ``model``; ``geometry`` (WKB footprint, OGC:CRS84, made valid); ``bbox``
    (struct xmin/ymin/xmax/ymax float64, the GeoParquet 1.1 covering, for row-group pruning);
    ``embedding`` (fixed-size list of float32, or of int8 with ``embedding_scale`` float32);
    ``start_datetime``/``end_datetime`` (timestamp UTC, STAC semantics: end inclusive, see
    :data:`~eoembed.writers.base.TIME_SEMANTICS`); ``scene_ids`` (list<string>); ``crs``,
    ``input_transform`` (6, rasterio order), ``input_width``, ``input_height``,
    ``input_bounds`` (4) of the grid the model read; ``valid_fraction``; ``fingerprint``;
    ``spatial`` (the region spec, JSON); ``frame_dates`` (list<string>, ISO days) only when
    the model read a time series (``frames=N``).

File metadata: ``geo`` (GeoParquet 1.1.0; ``crs`` omitted, which means OGC:CRS84), one key
per STAC Embedding extension field (``emb:type``, ``emb:dimensions``, ``data_type``,
``emb:runtime_parameters``, ``emb:quantization``; values JSON), and ``eoembed``: the export
schema (model metadata, request) as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.errors import DependencyNotFoundError
from eoembed.writers.base import (
    EmbeddingRecord,
    Writer,
    WrittenFile,
    list_complete,
    schema_metadata,
    stac_datetimes,
    stac_embedding_fields,
)
from eoembed.writers.quantize import dequantize as dequantize_values

if TYPE_CHECKING:
    import geopandas as gpd
    import pyarrow as pa

__all__ = ["GEOPARQUET_VERSION", "GeoParquetWriter", "geo_metadata"]

GEOPARQUET_VERSION = "1.1.0"
_BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def geo_metadata(geometry_types: Sequence[str], bbox: Sequence[float]) -> dict[str, Any]:
    """The GeoParquet 1.1 ``geo`` metadata for a WKB ``geometry`` with a ``bbox`` covering."""
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": sorted(set(geometry_types)),
                "bbox": [float(v) for v in bbox],
                "covering": {"bbox": {k: ["bbox", k] for k in _BBOX_FIELDS}},
            }
        },
    }


def _fixed_list(values: np.ndarray, value_type: pa.DataType) -> pa.Array:
    """Rows of ``values`` (n, k) as a fixed-size list array (k known from the type)."""
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(values).ravel(), type=value_type)
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


class GeoParquetWriter(Writer):
    """GeoParquet 1.1 parts, one row per pooled record."""

    name: ClassVar[str] = "geoparquet"
    description: ClassVar[str] = "GeoParquet 1.1, one row per region (DuckDB, geopandas, GDAL)"
    modes: ClassVar[frozenset[str]] = frozenset({"pooled"})
    requires: ClassVar[tuple[str, ...]] = ("pyarrow", "shapely")

    def write(self, records: Sequence[EmbeddingRecord]) -> list[WrittenFile]:
        """Write the batch as one new part file."""
        import pyarrow.parquet as pq

        records = self.prepare(records)
        if not records:
            return []
        table = self._table(records)
        written = self.write_part(
            [r.id for r in records],
            ".parquet",
            lambda tmp: pq.write_table(table, tmp, compression="zstd"),
        )
        return [written]

    def _table(self, records: Sequence[EmbeddingRecord]) -> pa.Table:
        """The Arrow table (with its file metadata) for checked ``records``."""
        import pyarrow as pa
        import shapely

        geoms = shapely.from_wkb([r.footprint_wkb for r in records])
        invalid = ~shapely.is_valid(geoms)
        if invalid.any():
            geoms[invalid] = shapely.make_valid(geoms[invalid])
        bounds = shapely.bounds(geoms)
        values = np.stack([r.values for r in records])
        quantised = self.schema.quantization is not None
        times = [stac_datetimes(r) for r in records]
        grids = [r.input_grid for r in records]
        columns: dict[str, pa.Array] = {
            "id": pa.array([r.id for r in records], pa.string()),
            "model": pa.array([r.model for r in records], pa.string()),
            "geometry": pa.array(shapely.to_wkb(geoms).tolist(), pa.binary()),
            "bbox": pa.StructArray.from_arrays(
                [pa.array(bounds[:, i], pa.float64()) for i in range(4)], names=_BBOX_FIELDS
            ),
            "embedding": _fixed_list(values, pa.int8() if quantised else pa.float32()),
        }
        if quantised:
            scales = [float(np.asarray(r.scale)) for r in records]
            columns["embedding_scale"] = pa.array(scales, pa.float32())
        ts = pa.timestamp("us", tz="UTC")
        columns |= {
            "start_datetime": pa.array([t[0] for t in times], ts),
            "end_datetime": pa.array([t[1] for t in times], ts),
            "scene_ids": pa.array([list(r.scene_ids) for r in records], pa.list_(pa.string())),
            "crs": pa.array([g.crs for g in grids], pa.string()),
            "input_transform": _fixed_list(
                np.array([list(g.transform)[:6] for g in grids]), pa.float64()
            ),
            "input_width": pa.array([g.width for g in grids], pa.int32()),
            "input_height": pa.array([g.height for g in grids], pa.int32()),
            "input_bounds": _fixed_list(np.array([g.bounds for g in grids]), pa.float64()),
            "valid_fraction": pa.array([r.valid_fraction for r in records], pa.float64()),
            "fingerprint": pa.array([r.fingerprint for r in records], pa.string()),
            "spatial": pa.array([json.dumps(r.spatial, default=str) for r in records]),
        }
        if any(r.frame_dates for r in records):
            columns["frame_dates"] = pa.array(
                [list(r.frame_dates) for r in records], pa.list_(pa.string())
            )
        table = pa.table(columns)
        names = [_TYPE_NAMES[int(t)] for t in shapely.get_type_id(geoms)]
        bbox = [bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max()]
        metadata = {
            "geo": geo_metadata(names, bbox),
            "eoembed": schema_metadata(self.schema),
            **stac_embedding_fields(self.schema),
        }
        return table.replace_schema_metadata(
            {k: json.dumps(v, default=str) for k, v in metadata.items()}
        )

    @classmethod
    def list_files(cls, directory: Path) -> list[str]:
        """Every complete part, in write order."""
        return list_complete(Path(directory), "part-*.parquet")

    @classmethod
    def load(cls, directory: Path, *, dequantize: bool = True) -> gpd.GeoDataFrame:
        """Every part as one GeoDataFrame (CRS OGC:CRS84), ``embedding`` as numpy rows.

        The ``bbox`` covering column is left out, as geopandas does: ``geometry`` holds it.

        Args:
            directory: the writer's folder.
            dequantize: turn int8 rows into float32 (``embedding * embedding_scale``) and drop
                ``embedding_scale``; ``False`` keeps the stored int8 and its scale.
        """
        try:
            import geopandas as gpd
        except ImportError as exc:
            raise DependencyNotFoundError("geopandas", cls.extra) from exc

        directory = Path(directory)
        paths = [str(directory / name) for name in cls.list_files(directory)]
        if not paths:
            return gpd.GeoDataFrame({"id": [], "embedding": []}, geometry=[], crs="OGC:CRS84")
        gdf = gpd.read_parquet(paths)
        if dequantize and "embedding_scale" in gdf:
            gdf["embedding"] = [
                dequantize_values(np.asarray(q), s)
                for q, s in zip(gdf["embedding"], gdf["embedding_scale"], strict=True)
            ]
            gdf = gdf.drop(columns="embedding_scale")
        return gdf


_TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}
"""shapely type ids to GeoParquet ``geometry_types`` names (2D)."""
