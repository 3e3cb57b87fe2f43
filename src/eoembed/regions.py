"""Region files: GeoJSON, CSV of points, GeoParquet or any vector file, read into region specs.

Batch exports take their regions from files people already have. :func:`read_regions` turns
each row into the spec it denotes (polygons into :class:`~eoembed.specs.GeometrySpec` in the
file's own CRS, points into :class:`~eoembed.specs.PointBuffer` squares) and refuses anything
else with a :class:`~eoembed.errors.SpecError` naming the file, the row and what is allowed, so
a bad row fails the job before any pixel is fetched.

>>> from eoembed.regions import read_regions
>>> regions = read_regions("sites.csv", buffer_m=1280)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from eoembed.errors import DependencyNotFoundError, SpecError
from eoembed.specs import GeometrySpec, PointBuffer, SpatialSpec

if TYPE_CHECKING:
    import geopandas as gpd
    from shapely.geometry.base import BaseGeometry

__all__ = [
    "CSV_SUFFIXES",
    "GEOJSON_SUFFIXES",
    "PARQUET_SUFFIXES",
    "Regions",
    "check_unique_columns",
    "located_error",
    "read_regions",
]

GEOJSON_SUFFIXES = (".geojson", ".json")
"""Read as GeoJSON (RFC 7946) by eoembed itself, without geopandas."""
CSV_SUFFIXES = (".csv", ".tsv")
"""Read as a table of points: ``lon``/``lat`` columns, optionally ``buffer_m``."""
PARQUET_SUFFIXES = (".parquet", ".geoparquet")
"""Read with ``geopandas.read_parquet``; any other suffix goes to ``geopandas.read_file``."""

LON_COLUMNS = ("lon", "longitude")
LAT_COLUMNS = ("lat", "latitude")
BUFFER_COLUMN = "buffer_m"
"""Column (or GeoJSON property) giving a point's own half side in metres."""

_GEOMETRY_TYPES = ("Polygon", "MultiPolygon", "Point")
_FORMATS = (
    "GeoJSON (.geojson, .json), a CSV of points with lon/lat columns (.csv, .tsv), "
    "GeoParquet (.parquet) or another vector file geopandas reads (.gpkg, .shp, .fgb...)"
)


class Regions(list[SpatialSpec]):
    """The specs of a region file, in file order, with the file's own ids when asked for.

    Export rows are keyed by a content hash, not by the file's ids; ``ids[i]`` lets callers
    join their own identifiers back onto ``regions[i]``.
    """

    def __init__(
        self, specs: Iterable[SpatialSpec] = (), ids: Sequence[str] | None = None
    ) -> None:
        super().__init__(specs)
        self.ids: tuple[str, ...] | None = tuple(ids) if ids is not None else None
        """Values of ``id_column``, one per spec; ``None`` when no id column was asked for."""


def located_error(where: str, error: SpecError) -> SpecError:
    """``error`` again, its field prefixed with ``where`` (a file and row, a config key).

    A spec's own message names the spec field (``PointBuffer.lat``) but not which row of which
    file held it; this keeps value, allowed values and reason, and adds the location.
    """
    bare = f"invalid {error.field}={error.value!r}"
    allowed = str(SpecError(error.field, error.value, error.allowed))[len(bare):]
    message = str(error)
    detail = message[len(bare):len(message) - len(allowed)] if message.startswith(bare) else ""
    reason = detail.removeprefix(": ") or None
    # type(error): a subclass (RegionTooLargeError) stays catchable as itself.
    return type(error)(f"{where}: {error.field}", error.value, error.allowed, reason=reason)


def _fail(
    where: str, field: str, value: Any, allowed: Iterable[Any] | str | None = None,
    reason: str | None = None,
) -> SpecError:
    return SpecError(f"{where}: {field}", value, allowed, reason=reason)


def read_regions(
    path: str | Path, *, buffer_m: float | None = None, id_column: str | None = None
) -> Regions:
    """Read a region file into specs, one per feature or row, in file order.

    Polygons and multipolygons become :class:`~eoembed.specs.GeometrySpec` in the file's CRS
    (so a projected file keeps its grid); points become :class:`~eoembed.specs.PointBuffer`
    squares, reprojected to lon/lat, whose half side is the row's ``buffer_m`` column (or
    GeoJSON property) when set, else ``buffer_m``.

    Args:
        path: ``.geojson``/``.json`` (FeatureCollection, Feature or geometry; a legacy
            ``crs`` member is honoured), ``.csv``/``.tsv`` with ``lon``/``lat`` (or
            ``longitude``/``latitude``) columns in degrees, ``.parquet`` (GeoParquet) or any
            other vector file geopandas reads.
        buffer_m: half side, in ground metres, of the square around points that carry no
            ``buffer_m`` of their own.
        id_column: a column (GeoJSON: a property, or ``"id"`` for the feature id) whose
            values, which must be present and unique, become :attr:`Regions.ids`.

    Returns:
        The specs, with ``ids`` when ``id_column`` is given.

    Raises:
        SpecError: a missing or unreadable file, no regions, a missing column, a row that is
            not a polygon or point, a point without a buffer, or a value a spec refuses; the
            message names the file and the row.
        DependencyNotFoundError: geopandas (or pyarrow) is missing for a file that needs it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    own_reader = suffix in GEOJSON_SUFFIXES + CSV_SUFFIXES
    if not (path.is_file() or (path.is_dir() and not own_reader)):  # a folder: e.g. shapefiles
        raise SpecError("regions", str(path), allowed=_FORMATS, reason="no such file")
    if suffix in GEOJSON_SUFFIXES:
        rows = _geojson_rows(path, id_column)
    elif suffix in CSV_SUFFIXES:
        rows = _csv_rows(path, id_column)
    else:
        rows = _vector_rows(path, id_column)
    specs: list[SpatialSpec] = []
    ids: list[str] = []
    seen: dict[str, str] = {}
    for where, geom, crs, own_buffer, row_id in rows:
        specs.append(_spec(where, geom, crs, own_buffer if own_buffer is not None else buffer_m))
        if id_column is not None:
            if row_id in seen:
                raise _fail(where, id_column, row_id, allowed="unique ids",
                            reason=f"also at {seen[row_id]}")
            seen[row_id] = where
            ids.append(row_id)
    if not specs:
        raise SpecError("regions", str(path), allowed="at least one region", reason="empty file")
    return Regions(specs, ids if id_column is not None else None)


_Row: TypeAlias = tuple[str, "BaseGeometry | None", str, float | None, str]
"""(where, geometry or None, its CRS, the row's own buffer_m or None, the row's id or "")."""


def _spec(where: str, geom: BaseGeometry | None, crs: str, buffer_m: float | None) -> SpatialSpec:
    """One row's geometry as a spec, or a SpecError saying where and what is allowed."""
    from eoembed.grid import reproject_geometry

    if geom is None or geom.is_empty:
        raise _fail(where, "geometry", None, allowed=_GEOMETRY_TYPES, reason="empty geometry")
    try:
        if geom.geom_type == "Point":
            if buffer_m is None:
                raise _fail(
                    where, BUFFER_COLUMN, None, reason="points need a square's half side",
                    allowed=f"a {BUFFER_COLUMN!r} column or property, or buffer_m= "
                    "(--buffer-m, or buffer_m in a job file)",
                )
            point = reproject_geometry(geom, crs, "OGC:CRS84")
            return PointBuffer(float(point.x), float(point.y), buffer_m)
        if geom.geom_type in ("Polygon", "MultiPolygon"):
            return GeometrySpec.from_geometry(geom, crs=crs)
    except SpecError as exc:
        if exc.field.startswith(f"{where}: "):
            raise
        raise located_error(where, exc) from None
    raise _fail(
        where, "geometry", geom.geom_type, allowed=_GEOMETRY_TYPES,
        reason="lines have no area; use polygons, or points with a buffer"
        if "Line" in geom.geom_type else None,
    )


def _number(where: str, field: str, value: Any) -> float | None:
    """A cell as a float; ``None`` when empty (blank, null or NaN)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(where, field, value, allowed="a number") from None
    return None if math.isnan(number) else number


def _row_id(where: str, id_column: str | None, value: Any) -> str:
    """A row's id as text; refuses a missing one (ids must name every row)."""
    if id_column is None:
        return ""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
        raise _fail(where, id_column, None, allowed="an id on every row")
    return str(value)


# -- GeoJSON ------------------------------------------------------------------------------------


def _geojson_crs(path: Path, data: Mapping[str, Any]) -> str:
    """The legacy (2008) ``crs`` member's name, else lon/lat as RFC 7946 says."""
    member = data.get("crs")
    if member is None:
        return "EPSG:4326"
    name = member.get("properties", {}).get("name") if isinstance(member, Mapping) else None
    if not isinstance(name, str):
        raise SpecError(f"{path}: crs", member, allowed="{'type': 'name', 'properties': "
                        "{'name': 'EPSG:...'}}, or no crs member (lon/lat)")
    return name


def _geojson_rows(path: Path, id_column: str | None) -> Iterator[_Row]:
    """Features of a FeatureCollection, a single Feature or a bare geometry."""
    from shapely.geometry import shape

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError("regions", str(path), allowed="a GeoJSON file", reason=str(exc)) from None
    kind = data.get("type") if isinstance(data, Mapping) else None
    if kind == "FeatureCollection":
        features = data.get("features")
    elif kind == "Feature":
        features = [data]
    elif kind in _GEOMETRY_TYPES or kind in ("LineString", "MultiLineString", "MultiPoint"):
        features = [{"type": "Feature", "geometry": data, "properties": {}}]
    else:
        features = None
    if not isinstance(features, list):
        raise SpecError(f"{path}: type", kind if isinstance(data, Mapping) else
                        type(data).__name__, allowed=["FeatureCollection", "Feature",
                                                      *_GEOMETRY_TYPES])
    crs = _geojson_crs(path, data)
    for index, feature in enumerate(features):
        where = f"{path} feature {index}"
        if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
            raise _fail(where, "type", feature.get("type") if isinstance(feature, Mapping)
                        else type(feature).__name__, allowed=["Feature"])
        props = feature.get("properties") or {}
        raw = feature.get("geometry")
        try:
            geom = shape(raw) if raw else None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise _fail(where, "geometry", str(raw)[:80], allowed=_GEOMETRY_TYPES,
                        reason=str(exc) or type(exc).__name__) from None
        own = _number(where, BUFFER_COLUMN, props.get(BUFFER_COLUMN))
        value = feature.get("id") if id_column == "id" and "id" not in props else (
            props.get(id_column) if id_column else None)
        yield where, geom, crs, own, _row_id(where, id_column, value)


# -- CSV ----------------------------------------------------------------------------------------


def _column(path: Path, header: Sequence[str], names: Sequence[str], what: str) -> str:
    """The first of ``names`` the header has (case-insensitive), else a SpecError."""
    lowered = {h.strip().lower(): h for h in header}
    for name in names:
        if name in lowered:
            return lowered[name]
    raise SpecError(
        f"{path}: columns", list(header), reason=f"no {what} column",
        allowed=f"a {' or '.join(repr(n) for n in names)} column",
    )


def _csv_rows(path: Path, id_column: str | None) -> Iterator[_Row]:
    """Points from a table with lon/lat columns in degrees and an optional buffer_m column."""
    try:
        yield from _csv_table(path, id_column)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SpecError("regions", str(path), allowed="a UTF-8 CSV file with a header row",
                        reason=str(exc)) from None


def check_unique_columns(path: Path | str, header: Sequence[str]) -> None:
    """Refuse a table header naming a column twice (case-insensitively).

    Which of the two holds the data would be a guess (``csv.DictReader`` keeps the last,
    pandas the first).
    """
    names = [str(h).strip().lower() for h in header]
    twice = next((h for h in names if names.count(h) > 1), None)
    if twice is not None:
        raise SpecError(f"{path}: columns", list(header), allowed="each column once",
                        reason=f"column {twice!r} appears {names.count(twice)} times")


def _csv_table(path: Path, id_column: str | None) -> Iterator[_Row]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        header = list(reader.fieldnames or [])
        check_unique_columns(path, header)
        lon_col = _column(path, header, LON_COLUMNS, "longitude")
        lat_col = _column(path, header, LAT_COLUMNS, "latitude")
        buffer_col = next((h for h in header if h.strip().lower() == BUFFER_COLUMN), None)
        id_col = _column(path, header, [id_column.lower()], repr(id_column)) if id_column else None
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if None in row:  # DictReader files surplus values under the key None
                raise _fail(where, "values", row[None], allowed=f"{len(header)} values, one "
                            "per header column", reason="more values than columns")
            coords = []
            for col in (lon_col, lat_col):
                value = _number(where, col.strip(), row.get(col))
                if value is None:
                    raise _fail(where, col.strip(), row.get(col), allowed="a number")
                coords.append(value)
            own = _number(where, BUFFER_COLUMN, row.get(buffer_col)) if buffer_col else None
            row_id = _row_id(where, id_column, row.get(id_col) if id_col else None)
            yield where, _point(*coords), "EPSG:4326", own, row_id


def _point(lon: float, lat: float) -> BaseGeometry:
    from shapely.geometry import Point

    return Point(lon, lat)


# -- GeoParquet and other vector files ----------------------------------------------------------


def _read_frame(path: Path) -> gpd.GeoDataFrame:
    """The file as a GeoDataFrame; any failure to read it is the file's fault."""
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
        raise SpecError("regions", str(path), allowed=_FORMATS,
                        reason=first[0] if first else type(exc).__name__) from None


def _vector_rows(path: Path, id_column: str | None) -> Iterator[_Row]:
    """Rows of a GeoDataFrame, in the file's CRS."""
    frame = _read_frame(path)
    if frame.crs is None:
        raise SpecError(f"{path}: crs", None, allowed="a file that declares its CRS",
                        reason="coordinates without a CRS cannot be placed")
    authority = frame.crs.to_authority()
    crs = f"{authority[0]}:{authority[1]}" if authority else frame.crs.to_wkt()
    columns = [str(c) for c in frame.columns if c != frame.geometry.name]
    buffer_col = next((c for c in columns if c.lower() == BUFFER_COLUMN), None)
    if id_column is not None and id_column not in columns:
        raise SpecError(f"{path}: columns", columns, reason=f"no {id_column!r} column",
                        allowed=f"a column {id_column!r} holding the ids")
    for index, geom in enumerate(frame.geometry):
        where = f"{path} row {index}"
        raw = _cell(frame, buffer_col, index)
        own = _number(where, BUFFER_COLUMN, raw)
        yield where, geom, crs, own, _row_id(where, id_column, _cell(frame, id_column, index))


def _cell(frame: gpd.GeoDataFrame, column: str | None, index: int) -> Any:
    """``frame[column]`` at position ``index``, ``None`` for a missing value or column."""
    if column is None:
        return None
    series = frame[column]
    return None if bool(series.isna().iloc[index]) else series.iloc[index]
