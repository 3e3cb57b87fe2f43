"""The pixel grid every provider reads onto and every grid embedding is georeferenced to.

A :class:`Grid` is a projected CRS, a north-up affine transform and a size. Grids are
derived from spatial specs alone (never from a provider's files), so the same request gives
the same grid through every provider.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from affine import Affine
    from pyproj import Transformer
    from shapely.geometry.base import BaseGeometry

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "Grid",
    "NativeGrid",
    "check_pixel_budget",
    "local_metric_crs",
    "max_pixels",
    "reproject_geometry",
    "transformer",
]

DEFAULT_MAX_PIXELS = 25_000_000
"""Largest grid (width x height) one region may read: 5000 x 5000 px, a 50 km square at 10 m.

A provider holds every band of a region in memory at once (13 float32 Sentinel-2 bands of this
size are 1.3 GB, and a median composite holds one such stack per scene), so a region past it is
refused before any I/O. Raise it with :data:`MAX_PIXELS_ENV`; cover larger areas with many
regions, or read them at a coarser ``scale_m``."""

MAX_PIXELS_ENV = "EOEMBED_MAX_PIXELS"
"""Environment variable overriding :data:`DEFAULT_MAX_PIXELS` (a whole number of pixels)."""


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: ``crs``, top-left corner, square pixel size and shape."""

    crs: str
    """CRS of the grid, as a string pyproj understands (``"EPSG:32618"``)."""
    left: float
    """x of the grid's left edge, in CRS units."""
    top: float
    """y of the grid's top edge, in CRS units."""
    resolution: float
    """Pixel size in CRS units (metres for every grid eoembed makes)."""
    width: int
    height: int

    @property
    def transform(self) -> Affine:
        """The affine transform (pixel corner -> CRS), as rasterio uses it."""
        from affine import Affine

        return Affine(self.resolution, 0.0, self.left, 0.0, -self.resolution, self.top)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        return (
            self.left,
            self.top - self.height * self.resolution,
            self.left + self.width * self.resolution,
            self.top,
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.height, self.width)

    def xs(self) -> np.ndarray:
        """X coordinates of pixel centres."""
        import numpy as np

        return self.left + (np.arange(self.width) + 0.5) * self.resolution

    def ys(self) -> np.ndarray:
        """Y coordinates of pixel centres (decreasing: north up)."""
        import numpy as np

        return self.top - (np.arange(self.height) + 0.5) * self.resolution

    def coarsen(self, height: int, width: int) -> Grid:
        """The grid of ``height`` x ``width`` cells covering the same ground footprint.

        Used to georeference model outputs (patch tokens, pooled cells) that tile the input.
        """
        # Non-integer factors (a 256 px input resized to 224 for a ViT) still tile the
        # footprint exactly; only square cells are required.
        if not math.isclose(self.width / width, self.height / height, rel_tol=1e-9):
            raise ValueError(
                f"output grid {height}x{width} does not tile input {self.height}x{self.width}"
                " with square cells"
            )
        return Grid(
            self.crs, self.left, self.top, self.resolution * self.width / width, width, height
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for metadata."""
        return {
            "crs": self.crs,
            "transform": list(self.transform)[:6],
            "width": self.width,
            "height": self.height,
            "bounds": list(self.bounds),
        }

    @classmethod
    def snapped(
        cls, crs: str, bounds: tuple[float, float, float, float], resolution: float,
        origin: tuple[float, float] = (0.0, 0.0),
    ) -> Grid:
        """The smallest grid with pixel edges at ``origin + k * resolution`` covering ``bounds``.

        Snapping keeps grids of the same CRS aligned with each other and, with the right
        ``origin``, with a sensor's native grid, so that a band read at its own resolution is
        not resampled at all. Sentinel-2's native edges lie on multiples of 10/20/60 m (the
        default origin); Landsat's do not: its pixel *centres* lie on multiples of the
        resolution, so its 30 m edges are odd multiples of 15 m (origin ``(15, 15)``, see
        :class:`NativeGrid`). Snapping Landsat to the default origin shifts it half a pixel
        and grows the grid by one.
        """
        left, bottom, right, top = bounds
        ox, oy = (o % resolution for o in origin)
        eps = 1e-6 * resolution
        x0 = ox + math.floor((left - ox) / resolution + eps) * resolution
        x1 = ox + math.ceil((right - ox) / resolution - eps) * resolution
        y0 = oy + math.floor((bottom - oy) / resolution + eps) * resolution
        y1 = oy + math.ceil((top - oy) / resolution - eps) * resolution
        width = max(1, round((x1 - x0) / resolution))
        height = max(1, round((y1 - y0) / resolution))
        return cls(crs, x0, y1, resolution, width, height)

    @classmethod
    def centred(
        cls, crs: str, x: float, y: float, half_size: float, resolution: float,
        origin: tuple[float, float] = (0.0, 0.0),
    ) -> Grid:
        """A square grid of side ``2*half_size`` centred within half a pixel of (x, y).

        Pixel edges stay at ``origin + k * resolution`` (see :meth:`snapped`), so the centre
        of a grid of an even number of pixels is the pixel corner nearest (x, y), and that of
        an odd number the pixel centre nearest (x, y).
        """
        ox, oy = (o % resolution for o in origin)
        x, y = x - ox, y - oy
        n = max(1, math.ceil(2 * half_size / resolution - 1e-9))
        if n % 2 == 0:
            col = round(x / resolution) - n // 2
            row = round(y / resolution) + n // 2
        else:
            col = math.floor(x / resolution) - n // 2
            row = math.floor(y / resolution) + n // 2 + 1
        return cls(crs, ox + col * resolution, oy + row * resolution, resolution, n, n)


_UTM_NORTH, _UTM_SOUTH = range(32601, 32661), range(32701, 32761)
_SOUTH_FALSE_NORTHING = 10_000_000.0


@dataclass(frozen=True)
class NativeGrid:
    """Where a collection's native pixel edges lie in its UTM zone, at any resolution.

    Request grids in a UTM zone put their edges there too (:meth:`origin`), so reading a
    collection at its own resolution in its own zone copies pixels instead of resampling.
    """

    offset_px: float = 0.0
    """Edges at ``(k + offset_px) * resolution`` metres: 0 for Sentinel-2 and HLS (edges on
    multiples of 10/20/30/60 m), 0.5 for Landsat (pixel centres on multiples: 30 m edges at
    odd multiples of 15 m, 15 m panchromatic edges at odd multiples of 7.5 m)."""
    north_zones: bool = False
    """Whether southern scenes are gridded in the *northern* UTM zone (negative northings),
    as Landsat's are; a request in the southern zone (EPSG:327xx, 10 000 km false northing)
    then shifts its rows to match."""

    def origin(self, crs: str, resolution: float) -> tuple[float, float]:
        """A pixel corner of the native grid, in grid CRS ``crs`` at ``resolution``.

        ``(0, 0)`` (edges on multiples of the resolution) outside UTM zones, where no
        native grid lies.
        """
        code = _epsg(crs)
        if code is None or (code not in _UTM_NORTH and code not in _UTM_SOUTH):
            return (0.0, 0.0)
        shift = self.offset_px * resolution
        y = shift + (_SOUTH_FALSE_NORTHING if self.north_zones and code in _UTM_SOUTH else 0.0)
        return (shift % resolution, y % resolution)


def _epsg(crs: str) -> int | None:
    """The EPSG code of ``"EPSG:32616"``-style strings (as grids carry them), else None."""
    authority, _, code = crs.partition(":")
    if authority.upper() != "EPSG" or not code.isdigit():
        return None
    return int(code)


def max_pixels() -> int:
    """The pixel budget of one region: ``$EOEMBED_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`.

    Read on every call, so it reaches worker processes and can be changed between runs.
    """
    from eoembed.errors import SpecError

    raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        number = float(raw)
        value = int(number) if number.is_integer() else 0
    except (ValueError, OverflowError):  # "abc"; "inf"
        value = 0
    if value < 1:
        raise SpecError(MAX_PIXELS_ENV, raw, allowed="a whole number of pixels >= 1")
    return value


def check_pixel_budget(grid: Grid, limit: int | None = None) -> Grid:
    """``grid`` itself, or a :class:`~eoembed.errors.RegionTooLargeError` past the budget.

    Args:
        grid: the grid a region reads onto.
        limit: the budget in pixels (default :func:`max_pixels`).
    """
    from eoembed.errors import RegionTooLargeError

    budget = max_pixels() if limit is None else limit
    pixels = grid.width * grid.height
    if pixels > budget:
        raise RegionTooLargeError(
            "region", f"{grid.width} x {grid.height} px of {grid.resolution:g} m on {grid.crs}",
            allowed=f"at most {budget:,} pixels per region (set {MAX_PIXELS_ENV} to raise the "
            "budget, split the area into several regions, or read it at a coarser scale_m)",
            reason=f"{pixels:,} pixels would be read into memory at once",
        )
    return grid


def local_metric_crs(lon: float, lat: float) -> str:
    """The UTM zone (UPS near the poles) holding (lon, lat), as an EPSG code string.

    Metres in UTM are ground metres to within 0.1% inside a zone, unlike Web Mercator's.
    """
    if lat >= 84.0:
        return "EPSG:32661"
    if lat < -80.0:
        return "EPSG:32761"
    zone = min(60, math.floor((lon + 180.0) / 6.0) + 1)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


@lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> Transformer:
    """A lon/lat-order ``Transformer`` from ``src`` to ``dst``, built once per pair.

    Building one costs about a millisecond (a PROJ database lookup), which adds up over
    thousands of regions; pyproj's Transformers are safe to share between threads (3.1+).
    """
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def reproject_geometry(geom: BaseGeometry, src: str, dst: str) -> BaseGeometry:
    """``geom`` from CRS ``src`` to ``dst``, densified so straight edges stay faithful."""
    if src == dst:
        return geom
    import numpy as np
    import shapely

    project_xy = transformer(src, dst)
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        minx, miny, maxx, maxy = geom.bounds
        geom = shapely.segmentize(geom, max(maxx - minx, maxy - miny) / 64 or 1.0)

    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(project_xy.transform(xy[:, 0], xy[:, 1]))

    return shapely.transform(geom, project)
