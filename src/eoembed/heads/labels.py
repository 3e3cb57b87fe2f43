"""Label files: points or polygons with a value column, or a label raster.

Labels are read with their georeference and nothing else: their row order never matters,
because :mod:`eoembed.heads.join` matches them to embeddings by place.

- Vector labels: a CSV with ``lon``/``lat`` (or ``longitude``/``latitude``) columns in
  degrees; GeoJSON; GeoParquet; or any file geopandas reads (GeoPackage, shapefile...). Points
  or polygons (not both), and a ``value`` column. Rows without a geometry or a value are
  dropped and counted.
- Raster labels: a GeoTIFF (or any raster GDAL reads: ``.tif``, ``.tiff``, ``.vrt``,
  ``.jp2``, ``.img``), band 1; its nodata value marks unlabelled pixels.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.errors import DependencyNotFoundError, SpecError
from eoembed.regions import LAT_COLUMNS, LON_COLUMNS, PARQUET_SUFFIXES, check_unique_columns

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["RASTER_SUFFIXES", "RasterLabels", "VectorLabels", "read_labels"]

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
_VECTOR_FORMATS = (
    "a CSV with lon/lat columns, GeoJSON, GeoParquet or another vector file geopandas reads"
)


@dataclass
class VectorLabels:
    """Points or polygons in lon/lat (``EPSG:4326``) with their label in column ``value``."""

    frame: gpd.GeoDataFrame
    source: str
    column: str
    """The value column's name in the file."""
    geometry_type: str
    """``"points"`` or ``"polygons"``."""
    dropped: int = 0
    """Rows without a geometry or a value."""

    @property
    def values(self) -> np.ndarray:
        """The labels, in file order."""
        return np.asarray(self.frame["value"].to_numpy())

    def describe(self) -> dict[str, Any]:
        """Provenance for a head's ``config.json``."""
        return {"source": self.source, "value": self.column, "kind": self.geometry_type,
                "rows": len(self.frame), "rows_dropped": self.dropped}


@dataclass
class RasterLabels:
    """A label raster's band 1: where it is, and how it is georeferenced."""

    path: Path
    crs: str
    transform: tuple[float, ...]
    width: int
    height: int
    nodata: float | None
    dtype: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def resolution(self) -> float:
        """Pixel width, in CRS units."""
        return abs(float(self.transform[0]))

    @property
    def is_integer(self) -> bool:
        """Whether the raster holds integer codes (classes) rather than values."""
        return np.issubdtype(np.dtype(self.dtype), np.integer)

    def describe(self) -> dict[str, Any]:
        """Provenance for a head's ``config.json``."""
        return {"source": str(self.path), "value": "band 1", "kind": "raster", "crs": self.crs,
                "resolution": self.resolution, "nodata": self.nodata}


def _frame(path: Path) -> gpd.GeoDataFrame:
    try:
        import geopandas as gpd
    except ImportError:
        raise DependencyNotFoundError("geopandas", "export") from None
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            return gpd.read_parquet(path)
        return gpd.read_file(path)
    except ImportError as exc:
        raise DependencyNotFoundError(exc.name or "pyarrow", "export") from exc
    except Exception as exc:  # noqa: BLE001  (any reader failure means an unreadable file)
        first = str(exc).strip().splitlines()
        raise SpecError("labels", str(path), allowed=_VECTOR_FORMATS,
                        reason=first[0] if first else type(exc).__name__) from None


def _csv(path: Path, crs: str) -> gpd.GeoDataFrame:
    import geopandas as gpd
    import pandas as pd

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            check_unique_columns(path, next(csv.reader(handle, delimiter=sep), []))
        table = pd.read_csv(path, sep=sep, encoding="utf-8-sig")
    except (UnicodeDecodeError, csv.Error, pd.errors.ParserError, pd.errors.EmptyDataError
            ) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError("labels", str(path), allowed="a UTF-8 CSV file with a header row "
                        "and lon/lat columns", reason=first) from None
    names = {str(c).lower(): str(c) for c in table.columns}
    lon = next((names[c] for c in LON_COLUMNS if c in names), None)
    lat = next((names[c] for c in LAT_COLUMNS if c in names), None)
    if lon is None or lat is None:
        raise SpecError(f"{path}: columns", list(table.columns),
                        allowed="lon and lat (or longitude and latitude) columns")
    geometry = gpd.points_from_xy(pd.to_numeric(table[lon], errors="coerce"),
                                  pd.to_numeric(table[lat], errors="coerce"))
    from pyproj.exceptions import CRSError

    try:
        return gpd.GeoDataFrame(table.drop(columns=[lon, lat]), geometry=geometry, crs=crs)
    except CRSError as exc:
        raise SpecError("label_crs", crs, allowed="a CRS pyproj knows, e.g. 'EPSG:4326'",
                        reason=(str(exc).splitlines() or [""])[0]) from None


def _raster(path: Path) -> RasterLabels:
    import rasterio

    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise SpecError(f"{path}: crs", None, allowed="a raster with a CRS",
                                reason="a label raster must be georeferenced")
            return RasterLabels(
                path=path, crs=src.crs.to_string(), transform=tuple(src.transform)[:6],
                width=src.width, height=src.height, nodata=src.nodata, dtype=src.dtypes[0],
                info=dict(src.tags()),
            )
    except rasterio.errors.RasterioIOError as exc:
        raise SpecError("labels", str(path), allowed="a readable raster",
                        reason=str(exc).splitlines()[0]) from None


def read_labels(
    path: str | Path, *, value: str | None = "value", crs: str = "EPSG:4326",
    extra: tuple[str, ...] = (),
) -> VectorLabels | RasterLabels:
    """Read a label file (see the module docstring for formats).

    Args:
        path: the file.
        value: the column holding the labels (vector files); ignored for rasters.
        crs: the CRS of a CSV's lon/lat columns (other files declare their own).
        extra: other columns to carry along under their own names (e.g. a split column).

    Raises:
        SpecError: a missing or unreadable file, no value column, mixed or unsupported
            geometry types, or no usable row; the message names the file and what is allowed.
    """
    path = Path(path)
    if not path.exists():
        raise SpecError("labels", str(path), reason="no such file")
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return _raster(path)
    frame = _csv(path, crs) if suffix in (".csv", ".tsv") else _frame(path)
    columns = [str(c) for c in frame.columns if c != frame.geometry.name]
    if value is None or value not in frame.columns:
        raise SpecError("value", value, allowed=columns, reason=f"not a column of {path}")
    for name in extra:
        if name not in frame.columns:
            raise SpecError("column", name, allowed=columns, reason=f"not a column of {path}")
    if frame.crs is None:
        frame = frame.set_crs("EPSG:4326")  # GeoJSON without a crs member is CRS84
    frame = frame.to_crs("EPSG:4326")
    keep = frame.geometry.notna() & ~frame.geometry.is_empty & frame[value].notna()
    if frame.geometry.notna().any():
        finite = np.isfinite(frame.geometry.bounds.to_numpy()).all(axis=1)
        keep &= finite
    dropped = int((~keep).sum())
    frame = frame[keep]
    kinds = set(frame.geometry.geom_type)
    if not kinds:
        raise SpecError("labels", str(path), allowed="at least one row with geometry and value",
                        reason="no usable rows")
    if kinds <= {"Point"}:
        kind = "points"
    elif kinds <= {"Polygon", "MultiPolygon"}:
        kind = "polygons"
    else:
        raise SpecError(f"{path}: geometry types", sorted(kinds),
                        allowed="points, or polygons (not both)")
    import geopandas as gpd

    columns_kept = {name: frame[name].to_numpy() for name in extra if name != "value"}
    out = gpd.GeoDataFrame({"value": frame[value].to_numpy(), **columns_kept},
                           geometry=frame.geometry.to_numpy(), crs="EPSG:4326")
    return VectorLabels(out.reset_index(drop=True), str(path), value, kind, dropped)
