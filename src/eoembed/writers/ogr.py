"""Pooled embeddings as FlatGeobuf or GeoPackage parts, for GDAL/QGIS builds without Arrow.

Debian's GDAL 3.6 and the pyogrio/fiona wheels cannot read GeoParquet; every GDAL reads
GeoPackage and GDAL >= 3.1 reads FlatGeobuf. Each ``write()`` adds one immutable
``part-<seq>-<shortid>.fgb`` / ``.gpkg`` (one layer, ``embeddings``), as the GeoParquet
writer adds parquet parts, so resume and the manifest work alike.

Fields: ``id``, ``model``, one column per embedding dimension (``emb_0000``, ``emb_0001``...:
float32 as Real, or int8 stored as Integer(Int16) with an ``embedding_scale`` Real), so QGIS
shows, styles and filters each dimension; ``start_datetime``/``end_datetime`` (DateTime UTC,
STAC semantics, millisecond precision: the formats hold no finer time, so the inclusive end
reads ``...23:59:59.999``); ``scene_ids``, ``input_transform``, ``input_bounds``,
``frame_dates`` (JSON text); ``crs``, ``input_width``, ``input_height``, ``valid_fraction``,
``fingerprint``, ``spatial`` (JSON). Geometry: the footprint in OGC:CRS84 (lon/lat).

Layer metadata (GDAL's default domain: GeoPackage's ``gpkg_metadata``, the FlatGeobuf header
from GDAL 3.9) holds the ``emb:`` fields (as ``emb_type``, ``emb_dimensions``...: GDAL item
names cannot hold ``:``) and the export schema (``eoembed``, JSON).

One column per dimension meets the formats' column limits: GeoPackage (SQLite) tables hold at
most 2000 columns, so a model with more dimensions than fit is refused before anything runs
(:class:`~eoembed.errors.FormatLimitError`); GeoParquet stores any dimension as one list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.errors import DependencyNotFoundError, FormatLimitError
from eoembed.writers.base import (
    EmbeddingRecord,
    EmbeddingSchema,
    Writer,
    WrittenFile,
    list_complete,
    schema_metadata,
    stac_datetimes,
    stac_embedding_fields,
)
from eoembed.writers.gdal_metadata import to_gdal_metadata
from eoembed.writers.quantize import dequantize as dequantize_values

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["LAYER", "FlatGeobufWriter", "GeoPackageWriter", "OGRWriter", "embedding_columns"]

LAYER = "embeddings"
"""The one layer of every part file."""

_RECORD_FIELDS = (
    "id", "model", "embedding_scale", "start_datetime", "end_datetime", "scene_ids", "crs",
    "input_transform", "input_width", "input_height", "input_bounds", "valid_fraction",
    "fingerprint", "spatial", "frame_dates",
)
"""Every non-embedding field a part may hold (the column budget counts them all)."""
_JSON_FIELDS = ("scene_ids", "input_transform", "input_bounds", "frame_dates")


def embedding_columns(dim: int) -> list[str]:
    """``emb_0000``... one field name per dimension (at least four digits, sorted as named)."""
    digits = max(4, len(str(dim - 1)))
    return [f"emb_{i:0{digits}d}" for i in range(dim)]


def _write_frame(
    gdf: gpd.GeoDataFrame, path: Path, driver: str, metadata: dict[str, str]
) -> None:
    """Write one part through pyogrio (a hook tests break to simulate a full disk)."""
    import pyogrio

    # GeoPackage 1.2, not GDAL's default 1.4: GDAL < 3.7 (Debian 12's 3.6) and the QGIS
    # builds on it warn that 1.4 "may only be partially supported".
    options = {"VERSION": "1.2"} if driver == "GPKG" else None
    pyogrio.write_dataframe(gdf, path, layer=LAYER, driver=driver, layer_metadata=metadata,
                            dataset_options=options)


class OGRWriter(Writer):
    """Base of the OGR vector part writers: subclasses name the driver, suffix and limit."""

    modes: ClassVar[frozenset[str]] = frozenset({"pooled"})
    requires: ClassVar[tuple[str, ...]] = ("pyogrio", "geopandas", "shapely")
    driver: ClassVar[str]
    suffix: ClassVar[str]
    max_columns: ClassVar[int]
    """Most columns a table of this format holds, counting the feature id and geometry."""

    def __init__(self, directory: Path, schema: EmbeddingSchema) -> None:
        room = self.max_columns - len(_RECORD_FIELDS) - 2  # + feature id and geometry
        if schema.dim > room:
            raise FormatLimitError(
                f"format {self.name!r} stores one column per embedding dimension and holds at"
                f" most {self.max_columns} columns ({room} dimensions); {schema.model!r} has"
                f" {schema.dim}. Use format='geoparquet' (any dimension, one list column)."
            )
        super().__init__(directory, schema)

    def write(self, records: Sequence[EmbeddingRecord]) -> list[WrittenFile]:
        """Write the batch as one new part file."""
        records = self.prepare(records)
        if not records:
            return []
        gdf = self._frame(records)
        attrs = {"eoembed": schema_metadata(self.schema), **stac_embedding_fields(self.schema)}
        metadata = to_gdal_metadata(attrs)
        written = self.write_part(
            [r.id for r in records],
            self.suffix,
            lambda tmp: _write_frame(gdf, tmp, self.driver, metadata),
        )
        return [written]

    def _frame(self, records: Sequence[EmbeddingRecord]) -> gpd.GeoDataFrame:
        import geopandas as gpd
        import pandas as pd
        import shapely

        geoms = shapely.from_wkb([r.footprint_wkb for r in records])
        invalid = ~shapely.is_valid(geoms)
        if invalid.any():
            geoms[invalid] = shapely.make_valid(geoms[invalid])
        values = np.stack([r.values for r in records])
        quantised = self.schema.quantization is not None
        times = [stac_datetimes(r) for r in records]
        grids = [r.input_grid for r in records]
        columns: dict[str, Any] = {
            "id": [r.id for r in records],
            "model": [r.model for r in records],
        }
        stored = values.astype(np.int16) if quantised else values.astype(np.float32)
        emb = pd.DataFrame(stored, columns=embedding_columns(self.schema.dim))
        if quantised:
            columns["embedding_scale"] = np.array(
                [float(np.asarray(r.scale)) for r in records], np.float32
            )
        columns |= {
            "start_datetime": pd.to_datetime([t[0] for t in times], utc=True),
            "end_datetime": pd.to_datetime([t[1] for t in times], utc=True),
            "scene_ids": [json.dumps(list(r.scene_ids)) for r in records],
            "crs": [g.crs for g in grids],
            "input_transform": [json.dumps(list(g.transform)[:6]) for g in grids],
            "input_width": np.array([g.width for g in grids], np.int32),
            "input_height": np.array([g.height for g in grids], np.int32),
            "input_bounds": [json.dumps(list(g.bounds)) for g in grids],
            "valid_fraction": [r.valid_fraction for r in records],
            "fingerprint": [r.fingerprint for r in records],
            "spatial": [json.dumps(r.spatial, default=str) for r in records],
        }
        if any(r.frame_dates for r in records):
            columns["frame_dates"] = [json.dumps(list(r.frame_dates)) for r in records]
        head = pd.DataFrame(columns)
        frame = pd.concat([head.iloc[:, :2], emb, head.iloc[:, 2:]], axis=1)
        return gpd.GeoDataFrame(frame, geometry=list(geoms), crs="OGC:CRS84")

    @classmethod
    def list_files(cls, directory: Path) -> list[str]:
        """Every complete part, in write order."""
        return list_complete(Path(directory), f"part-*{cls.suffix}")

    @classmethod
    def load(cls, directory: Path, *, dequantize: bool = True) -> gpd.GeoDataFrame:
        """Every part as one GeoDataFrame with GeoParquet's columns (``embedding`` rows).

        Args:
            directory: the writer's folder.
            dequantize: turn int8 rows into float32 (``embedding * embedding_scale``) and drop
                ``embedding_scale``; ``False`` keeps the stored int8 and its scale.
        """
        try:
            import geopandas as gpd
            import pandas as pd
            import pyogrio
        except ImportError as exc:
            raise DependencyNotFoundError(exc.name or "geopandas", cls.extra) from exc

        directory = Path(directory)
        frames = [
            pyogrio.read_dataframe(directory / name, layer=LAYER)
            for name in cls.list_files(directory)
        ]
        if not frames:
            return gpd.GeoDataFrame({"id": [], "embedding": []}, geometry=[], crs="OGC:CRS84")
        gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
        emb_cols = [c for c in gdf.columns if c.startswith("emb_")]
        quantised = "embedding_scale" in gdf
        stored = gdf[emb_cols].to_numpy(np.int8 if quantised else np.float32)
        rows = list(stored)
        if quantised and dequantize:
            rows = [dequantize_values(q, s) for q, s in zip(rows, gdf["embedding_scale"],
                                                              strict=True)]
            gdf = gdf.drop(columns="embedding_scale")
        elif quantised:
            gdf["embedding_scale"] = gdf["embedding_scale"].astype(np.float32)
        gdf = gdf.drop(columns=emb_cols)
        gdf.insert(2, "embedding", rows)
        rest = [c for c in gdf.columns if c not in ("id", "model", "geometry")]
        gdf = gdf[["id", "model", "geometry", *rest]]  # GeoParquet's column order
        for col in _JSON_FIELDS:
            if col in gdf:
                gdf[col] = [None if v is None else json.loads(v) for v in gdf[col]]
        for col in ("start_datetime", "end_datetime"):
            gdf[col] = pd.to_datetime(gdf[col], utc=True).astype("datetime64[us, UTC]")
        for col in ("input_width", "input_height"):
            gdf[col] = gdf[col].astype(np.int32)
        return gdf.set_crs("OGC:CRS84", allow_override=True)


class FlatGeobufWriter(OGRWriter):
    """FlatGeobuf parts (``part-*.fgb``), one feature per pooled record; GDAL >= 3.1."""

    name: ClassVar[str] = "flatgeobuf"
    description: ClassVar[str] = "FlatGeobuf, one feature per region, a column per dim (GDAL)"
    driver: ClassVar[str] = "FlatGeobuf"
    suffix: ClassVar[str] = ".fgb"
    max_columns: ClassVar[int] = 65535
    """A feature's properties index columns with an unsigned 16-bit integer."""


class GeoPackageWriter(OGRWriter):
    """GeoPackage parts (``part-*.gpkg``), one feature per pooled record; every GDAL/QGIS."""

    name: ClassVar[str] = "gpkg"
    description: ClassVar[str] = "GeoPackage, one feature per region, a column per dim (GDAL)"
    driver: ClassVar[str] = "GPKG"
    suffix: ClassVar[str] = ".gpkg"
    max_columns: ClassVar[int] = 2000
    """SQLite's default SQLITE_MAX_COLUMN, which GeoPackage tables inherit."""
