"""Lon/lat geometries that cross the antimeridian (180 degrees): detect, split, unwrap.

A small region across 180 degrees comes in two spellings: split at the antimeridian into parts
touching +180 and -180 (RFC 7946, section 3.1.9, what STAC servers expect), or one ring with an
edge jumping more than 180 degrees of longitude. Taken at face value, either spans the whole
globe. Here both are recognised; :func:`split` gives the RFC 7946 form (for catalogue searches
and footprints, via the ``antimeridian`` package) and :func:`unwrap` a continuous form with
longitudes past 180 (for projecting to a UTM zone: PROJ wraps such longitudes itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from shapely.geometry.base import BaseGeometry

__all__ = ["crosses_antimeridian", "lonlat_centre", "split", "unwrap"]

_EDGE = 1e-9
"""How close to +-180 a coordinate must be to count as on the antimeridian (degrees)."""


def _rings(geom: BaseGeometry) -> list[np.ndarray]:
    """The (n, 2) coordinates of each ring of a (multi)polygon, or of anything else whole."""
    import shapely

    if geom.geom_type == "MultiPolygon":
        return [ring for part in geom.geoms for ring in _rings(part)]
    if geom.geom_type == "Polygon":
        return [shapely.get_coordinates(r) for r in (geom.exterior, *geom.interiors)]
    return [shapely.get_coordinates(geom)]


def crosses_antimeridian(geom: BaseGeometry) -> bool:
    """Whether a lon/lat geometry crosses 180 degrees, in any spelling (see module doc).

    Split form: it touches both +180 and -180. Unsplit form: an edge spans more than 180
    degrees of longitude, which RFC 7946 geometries never do, so it is read as the short way
    round, across the antimeridian. Unwrapped form (:func:`unwrap`): longitudes past 180.
    """
    import numpy as np

    rings = [r for r in _rings(geom) if len(r)]
    if not rings:
        return False
    xs = np.concatenate([r[:, 0] for r in rings])
    if xs.max() > 180 or (xs.max() >= 180 - _EDGE and xs.min() <= -180 + _EDGE):
        return True
    return any(bool((np.abs(np.diff(r[:, 0])) > 180).any()) for r in rings)


def unwrap(geom: BaseGeometry) -> BaseGeometry:
    """A crossing geometry made continuous: negative longitudes moved by +360 (up to 540)."""
    import numpy as np
    import shapely

    def shift(xy: np.ndarray) -> np.ndarray:
        out = xy.copy()
        out[:, 0] = np.where(out[:, 0] < 0, out[:, 0] + 360.0, out[:, 0])
        return out

    shifted = shapely.transform(geom, shift)
    return shapely.make_valid(shapely.union_all(shapely.get_parts(shifted)))


def split(geom: BaseGeometry) -> BaseGeometry:
    """A crossing geometry as RFC 7946 wants it: parts cut at 180, longitudes in [-180, 180].

    Edges are straight in lon/lat (as eoembed draws them), not great circles.
    """
    from antimeridian import fix_shape
    from shapely.geometry import mapping, shape

    return shape(fix_shape(mapping(geom), great_circle=False, fix_winding=True))


def lonlat_centre(geom: BaseGeometry) -> tuple[float, float]:
    """The centroid of a lon/lat geometry, taken across 180 when it crosses it."""
    if not crosses_antimeridian(geom):
        centre = geom.centroid
        return float(centre.x), float(centre.y)
    centre = unwrap(geom).centroid
    lon = float(centre.x)
    return (lon - 360.0 if lon > 180.0 else lon), float(centre.y)
