"""Where: bounding boxes, point buffers and arbitrary geometries, in any CRS.

Each spatial spec knows its footprint and the pixel :class:`~eoembed.grid.Grid` a request
for it reads onto: the spec's own CRS when that is projected in metres, otherwise the local
UTM zone, so that ``scale_m`` and ``buffer_m`` are ground metres everywhere on Earth.

Regions across the antimeridian (a point at lon 179.999, a lon/lat polygon split at 180 or
with an edge across it) read onto the small grid of their own UTM zone, and their lon/lat
footprint is split at 180 as RFC 7946 says (:mod:`eoembed.dateline`). Every grid is checked
against the pixel budget (:func:`eoembed.grid.max_pixels`) when it is made, before any I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeAlias, runtime_checkable

from eoembed import dateline
from eoembed.errors import SpecError
from eoembed.grid import (
    Grid,
    NativeGrid,
    check_pixel_budget,
    local_metric_crs,
    reproject_geometry,
)
from eoembed.specs._base import Spec, check_finite

if TYPE_CHECKING:
    from pyproj import CRS
    from shapely.geometry.base import BaseGeometry

__all__ = [
    "BBox",
    "GeometrySpec",
    "PointBuffer",
    "SpatialLike",
    "SpatialSpec",
    "as_spatial",
]

MAX_BUFFER_M = 100_000.0
"""Largest PointBuffer radius: beyond it a single UTM grid distorts ground distances."""


@runtime_checkable
class GeoInterface(Protocol):
    """Anything exposing ``__geo_interface__`` (shapely, geopandas rows, ...)."""

    @property
    def __geo_interface__(self) -> dict[str, Any]: ...


@lru_cache(maxsize=256)
def _crs(field: str, value: str) -> CRS:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise SpecError(
            field, value, allowed="a CRS pyproj knows, e.g. 'EPSG:4326' or 'EPSG:32618'",
            reason=str(exc).splitlines()[0],
        ) from None


def _canonical_crs(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(field, value, allowed="a CRS string, e.g. 'EPSG:4326'")
    crs = _crs(field, value)
    authority = crs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else crs.to_wkt()


def _check_lonlat(prefix: str, lon: float, lat: float) -> None:
    if not -180.0 <= lon <= 180.0:
        raise SpecError(f"{prefix}lon", lon, allowed="longitudes in [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise SpecError(f"{prefix}lat", lat, allowed="latitudes in [-90, 90]")


class SpatialSpec(Spec):
    """Base of the region specs: a footprint in some CRS and the grid to read it onto."""

    crs: str

    def geometry(self) -> BaseGeometry:
        """The footprint as a shapely geometry in ``self.crs``."""
        raise NotImplementedError

    def lonlat_geometry(self) -> BaseGeometry:
        """The footprint in lon/lat (CRS84 axis order), split at 180 when it crosses it."""
        return _lonlat_footprint(self.geometry(), self.crs)

    def lonlat_centre(self) -> tuple[float, float]:
        """(lon, lat) of the footprint's centroid, taken across 180 when it crosses it."""
        return dateline.lonlat_centre(self.lonlat_geometry())

    def _projectable_geometry(self) -> BaseGeometry:
        """The footprint in ``self.crs``, continuous across 180 when lon/lat crosses it."""
        geom = self.geometry()
        if _crs(f"{self.type_name}.crs", self.crs).is_geographic and (
            dateline.crosses_antimeridian(geom)
        ):
            return dateline.unwrap(geom)
        return geom

    def grid_crs(self) -> str:
        """The spec's own CRS when projected in metres, else the local UTM zone.

        (Web) Mercator is never used: its metres shrink with latitude, so ``scale_m`` would
        not be ground metres.
        """
        crs = _crs(f"{self.type_name}.crs", self.crs)
        method = (crs.coordinate_operation.method_name if crs.coordinate_operation else "")
        mercator = "mercator" in method.lower() and "transverse" not in method.lower()
        if crs.is_projected and not mercator and all(
            (a.unit_name or "").lower() in ("metre", "meter") for a in crs.axis_info
        ):
            return self.crs
        lon, lat = self.lonlat_centre()
        return local_metric_crs(lon, lat)

    def grid(self, scale_m: float, native: NativeGrid | None = None) -> Grid:
        """The snapped pixel grid, ``scale_m`` ground metres per pixel, covering the footprint.

        Pixel edges lie where ``native`` (the collection's :class:`~eoembed.grid.NativeGrid`)
        puts them in the grid's UTM zone, by default on multiples of ``scale_m``. Grids are
        remembered per (spec, scale, native grid): plans and providers ask for them
        repeatedly.

        Raises:
            RegionTooLargeError: the grid exceeds the pixel budget
                (:func:`eoembed.grid.max_pixels`).
            SpecError: the footprint has no finite extent in the grid's CRS.
        """
        return check_pixel_budget(_grid_of(self, float(scale_m), native or _DEFAULT_NATIVE))

    def _grid(self, scale_m: float, native: NativeGrid) -> Grid:
        """The grid :meth:`grid` returns, before the budget check."""
        crs = self.grid_crs()
        bounds = reproject_geometry(self._projectable_geometry(), self.crs, crs).bounds
        if not all(math.isfinite(v) for v in bounds):
            raise SpecError(
                f"{self.type_name}.crs", self.crs, allowed="coordinates inside the CRS's area",
                reason=f"the footprint has no finite extent in {crs}",
            )
        return Grid.snapped(crs, bounds, scale_m, native.origin(crs, scale_m))


_DEFAULT_NATIVE = NativeGrid()


@lru_cache(maxsize=4096)
def _grid_of(spec: SpatialSpec, scale_m: float, native: NativeGrid) -> Grid:
    return spec._grid(scale_m, native)


_XY_NAMES = {"minx": "minlon", "miny": "minlat", "maxx": "maxlon", "maxy": "maxlat"}
"""How a box in a projected CRS records its corners, and the fields they are."""


@dataclass(frozen=True)
class BBox(SpatialSpec):
    """An axis-aligned box ``(minlon, minlat, maxlon, maxlat)`` in ``crs``.

    With a projected ``crs`` the four numbers are that CRS's x/y (the names keep rs-embed's
    signature), and :meth:`to_dict` records them as ``minx, miny, maxx, maxy``. A box across
    the antimeridian is two boxes, or one :class:`GeometrySpec` (polygons may cross 180).
    """

    minlon: float
    minlat: float
    maxlon: float
    maxlat: float
    crs: str = "EPSG:4326"

    def __post_init__(self) -> None:
        for name in ("minlon", "minlat", "maxlon", "maxlat"):
            object.__setattr__(self, name, check_finite(f"BBox.{name}", getattr(self, name)))
        object.__setattr__(self, "crs", _canonical_crs("BBox.crs", self.crs))
        if _crs("BBox.crs", self.crs).is_geographic:
            _check_lonlat("BBox.min", self.minlon, self.minlat)
            _check_lonlat("BBox.max", self.maxlon, self.maxlat)
        if self.minlon >= self.maxlon:
            raise SpecError(
                "BBox.maxlon", self.maxlon, allowed=f"a value > minlon={self.minlon}",
                reason="empty or reversed box (a box across the antimeridian is two boxes, or "
                "one GeometrySpec polygon, which may cross 180)",
            )
        if self.minlat >= self.maxlat:
            raise SpecError(
                "BBox.maxlat", self.maxlat, allowed=f"a value > minlat={self.minlat}",
                reason="empty or reversed box",
            )

    def geometry(self) -> BaseGeometry:
        """The box as a shapely polygon in ``self.crs``."""
        from shapely.geometry import box

        return box(self.minlon, self.minlat, self.maxlon, self.maxlat)

    def to_dict(self) -> dict[str, Any]:
        """As recorded: ``minlon..maxlat`` in lon/lat, ``minx..maxy`` in a projected CRS."""
        data = self.canonical_dict()
        if _crs("BBox.crs", self.crs).is_geographic:
            return data
        return {"type": data["type"], **{xy: data[f] for xy, f in _XY_NAMES.items()},
                "crs": data["crs"]}

    def canonical_dict(self) -> dict[str, Any]:
        """The ``minlon..maxlat`` form in every CRS: what ids, fingerprints and caches hash.

        Exports and caches made before projected boxes were recorded as x/y hashed this
        form, so hashing it keeps them found (resumed, reused).
        """
        return {"type": self.type_name, **self._fields_to_json()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """From either recorded form (``minx..maxy`` or ``minlon..maxlat``)."""
        data = dict(data)
        for xy, name in _XY_NAMES.items():
            if xy in data:
                if name in data:
                    raise SpecError(f"BBox.{xy}", data[xy],
                                    reason=f"give {xy} or {name}, not both")
                data[name] = data.pop(xy)
        return super().from_dict(data)


@dataclass(frozen=True)
class PointBuffer(SpatialSpec):
    """A square of side ``2 * buffer_m`` ground metres centred on (lon, lat).

    The square is built in the point's UTM zone, so its side is ground metres at any latitude
    (Web Mercator "metres" shrink by cos(latitude)).
    """

    lon: float
    lat: float
    buffer_m: float
    crs: str = "EPSG:4326"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lon", check_finite("PointBuffer.lon", self.lon))
        object.__setattr__(self, "lat", check_finite("PointBuffer.lat", self.lat))
        object.__setattr__(
            self, "buffer_m", check_finite("PointBuffer.buffer_m", self.buffer_m)
        )
        _check_lonlat("PointBuffer.", self.lon, self.lat)
        if not 0 < self.buffer_m <= MAX_BUFFER_M:
            raise SpecError(
                "PointBuffer.buffer_m", self.buffer_m, allowed=f"metres in (0, {MAX_BUFFER_M:g}]"
            )
        if self.crs != "EPSG:4326":
            raise SpecError(
                "PointBuffer.crs", self.crs, allowed=["EPSG:4326"],
                reason="give the point in lon/lat; the square is built in its UTM zone",
            )

    def geometry(self) -> BaseGeometry:
        """The square footprint, in lon/lat."""
        return self.lonlat_geometry()

    def lonlat_geometry(self) -> BaseGeometry:
        """The square footprint (from the grid CRS), in lon/lat."""
        from shapely.geometry import box

        crs = self.grid_crs()
        x, y = _reproject_point(self.lon, self.lat, crs)
        square = box(x - self.buffer_m, y - self.buffer_m, x + self.buffer_m, y + self.buffer_m)
        return _lonlat_footprint(square, crs)

    def grid_crs(self) -> str:
        """The UTM (or polar UPS) zone of the point."""
        return local_metric_crs(self.lon, self.lat)

    def _grid(self, scale_m: float, native: NativeGrid) -> Grid:
        """A square grid centred (to half a pixel) on the point, ``2*buffer_m`` wide."""
        crs = self.grid_crs()
        x, y = _reproject_point(self.lon, self.lat, crs)
        return Grid.centred(crs, x, y, self.buffer_m, scale_m, native.origin(crs, scale_m))


def _lonlat_footprint(geom: BaseGeometry, crs: str) -> BaseGeometry:
    """``geom`` (in ``crs``) in lon/lat, split at 180 (RFC 7946) when it crosses it.

    A geometry already in lon/lat is continuous across 180 first, so that densifying its
    edges follows the short way round.
    """
    if _crs("crs", crs).is_geographic and dateline.crosses_antimeridian(geom):
        geom = dateline.unwrap(geom)
    lonlat = reproject_geometry(geom, crs, "OGC:CRS84")
    if dateline.crosses_antimeridian(lonlat):  # also a ring round a pole (UPS squares)
        return dateline.split(lonlat)
    return lonlat


def _reproject_point(lon: float, lat: float, crs: str) -> tuple[float, float]:
    from eoembed.grid import transformer

    x, y = transformer("OGC:CRS84", crs).transform(lon, lat)
    return float(x), float(y)


@dataclass(frozen=True)
class GeometrySpec(SpatialSpec):
    """Any polygonal geometry, stored as canonical GeoJSON text in ``crs``.

    Build it with :meth:`from_geometry` from a shapely geometry, anything with
    ``__geo_interface__``, or a GeoJSON geometry/Feature dict.
    """

    geojson: str
    crs: str = "EPSG:4326"

    def __post_init__(self) -> None:
        from shapely.errors import ShapelyError
        from shapely.geometry import mapping, shape
        from shapely.validation import explain_validity

        object.__setattr__(self, "crs", _canonical_crs("GeometrySpec.crs", self.crs))
        try:
            geom = shape(json.loads(self.geojson))
        except (TypeError, ValueError, KeyError, AttributeError, ShapelyError) as exc:
            raise SpecError(
                "GeometrySpec.geojson", self.geojson[:80], allowed="a GeoJSON geometry",
                reason=str(exc),
            ) from None
        if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise SpecError(
                "GeometrySpec.geojson", geom.geom_type, allowed=["Polygon", "MultiPolygon"],
                reason="use PointBuffer for points" if geom.geom_type == "Point" else None,
            )
        if not geom.is_valid:
            raise SpecError(
                "GeometrySpec.geojson", geom.wkt[:80], allowed="a valid polygon",
                reason=explain_validity(geom),
            )
        if _crs("GeometrySpec.crs", self.crs).is_geographic:
            minx, miny, maxx, maxy = geom.bounds
            _check_lonlat("GeometrySpec.min", minx, miny)
            _check_lonlat("GeometrySpec.max", maxx, maxy)
        object.__setattr__(
            self, "geojson", json.dumps(mapping(geom), sort_keys=True, separators=(",", ":"))
        )

    @classmethod
    def from_geometry(cls, obj: Any, crs: str = "EPSG:4326") -> GeometrySpec:
        """From a shapely geometry, a ``__geo_interface__`` object or a GeoJSON dict."""
        if isinstance(obj, GeoInterface):
            obj = obj.__geo_interface__
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as exc:
                raise SpecError(
                    "geometry", obj[:80], reason=f"not GeoJSON text ({exc})",
                    allowed="a spec (BBox, PointBuffer, GeometrySpec), a (minlon, minlat, "
                    "maxlon, maxlat) tuple, a shapely geometry or a GeoJSON dict or text",
                ) from None
        if not isinstance(obj, Mapping):
            raise SpecError(
                "geometry", type(obj).__name__,
                allowed="a shapely geometry, a __geo_interface__ object or a GeoJSON dict",
            )
        if obj.get("type") == "Feature":
            obj = obj["geometry"]
        elif obj.get("type") == "FeatureCollection":
            features = obj.get("features", [])
            if len(features) != 1:
                raise SpecError(
                    "geometry", f"FeatureCollection of {len(features)} features",
                    allowed="one feature (pass several regions as a list instead)",
                )
            obj = features[0]["geometry"]
        return cls(json.dumps(obj, sort_keys=True), crs)

    def geometry(self) -> BaseGeometry:
        """The geometry as shapely, in ``self.crs``."""
        from shapely.geometry import shape

        return shape(json.loads(self.geojson))


SpatialLike: TypeAlias = SpatialSpec | tuple[float, float, float, float] | Mapping[str, Any] | Any


def as_spatial(obj: SpatialLike) -> SpatialSpec:
    """Accept a spec, a ``(minlon, minlat, maxlon, maxlat)`` tuple or any geometry."""
    if isinstance(obj, SpatialSpec):
        return obj
    if isinstance(obj, tuple | list) and len(obj) == 4 and all(
        isinstance(v, int | float) for v in obj
    ):
        return BBox(*obj)
    return GeometrySpec.from_geometry(obj)
