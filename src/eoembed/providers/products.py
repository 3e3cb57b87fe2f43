"""Providers of published embedding products: (where, year) -> the product's values on a grid.

A product is served like imagery whose "bands" are the embedding's dimensions: ``fetch``
returns ``(dimension, y, x)`` float32 on the request grid, dequantised as the product
documents, NaN where it has no data, with the ``clear_count`` coordinate (1 where a pixel has
a value) and ``valid_fraction`` as scene providers give them. Each product says which of its
tiles cover a region in a year and how to read one onto a grid; this base class picks the
year from the window, mosaics the tiles and refuses regions without data.

Resampling is nearest neighbour on stored values (declared in ``attrs["resampling"]``): at
the product's own resolution and grid (the default request) that is an exact copy of its
pixels; coarser requests take one product pixel per cell.
"""

from __future__ import annotations

import datetime as dt
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.errors import (
    EoembedError,
    NoDataError,
    ProviderError,
    ProviderUnavailableError,
    SpecError,
)
from eoembed.grid import NativeGrid
from eoembed.providers.base import CollectionInfo, check_served, request_grid
from eoembed.redact import redact
from eoembed.retrying import RETRY_STATUSES, RetryPolicy, http_status, is_transient

if TYPE_CHECKING:
    import xarray as xr

    from eoembed.bands import BandInfo
    from eoembed.grid import Grid
    from eoembed.specs import SensorSpec, SpatialSpec, TemporalSpec

__all__ = [
    "ProductProvider",
    "ProductTile",
    "check_product_sensor",
    "footprint_mask",
    "product_collection",
    "product_year",
]


@dataclass(frozen=True)
class ProductTile:
    """One file (or array) of a product holding one year over part of the globe."""

    id: str
    year: int | None
    source: Any
    """What :meth:`ProductProvider.read_tile` needs to read it (a URL, a tile key, ...)."""


def product_year(
    temporal: TemporalSpec, product: str, years: tuple[int, int] | None
) -> int | None:
    """The one product year a window selects: the calendar year it lies in.

    None for a static product (``years`` None), whatever the window.

    Raises:
        SpecError: the window spans several calendar years, or none the product has.
    """
    if years is None:
        return None
    start = dt.date.fromisoformat(temporal.start)
    end = dt.date.fromisoformat(temporal.end)
    touched = list(range(start.year, (end - dt.timedelta(days=1)).year + 1))
    first, last = years
    allowed = f"a window within one year of {first}..{last}, e.g. TemporalSpec.year({last})"
    if len(touched) != 1:
        raise SpecError(
            "temporal", str(temporal), allowed=allowed,
            reason=f"{product!r} publishes one embedding per calendar year and the window "
            f"spans {touched[0]}..{touched[-1]}",
        )
    year = touched[0]
    if not first <= year <= last:
        raise SpecError(
            "temporal", str(temporal), allowed=allowed,
            reason=f"{product!r} is published for {first}..{last}, not {year}",
        )
    return year


def check_product_sensor(sensor: SensorSpec) -> None:
    """Refuse sensor settings a product cannot honour (it is read, not composited).

    Raises:
        SpecError: a resampling other than nearest, or a cloud mask.
    """
    if sensor.resampling not in ("auto", "nearest"):
        raise SpecError(
            "SensorSpec.resampling", sensor.resampling, allowed=["auto", "nearest"],
            reason="published embeddings are resampled by nearest neighbour only (averaging "
            "or interpolating vectors would make ones the product does not have)",
        )
    if sensor.mask not in ("auto", "none"):
        raise SpecError("SensorSpec.mask", sensor.mask, allowed=["auto", "none"],
                        reason="a published product has no cloud mask to apply")


def footprint_mask(spatial: SpatialSpec, grid: Grid) -> np.ndarray:
    """``(y, x)`` True where a pixel touches the region's footprint.

    The whole grid for boxes and squares in the grid's CRS; for other shapes (a polygon, a
    lon/lat box on a UTM grid) the pixels outside are left out, so pooled means are over
    the region, not its bounding box.
    """
    from rasterio.features import geometry_mask

    from eoembed.grid import reproject_geometry

    shape = reproject_geometry(spatial.geometry(), spatial.crs, grid.crs)
    mask: np.ndarray = geometry_mask([shape], out_shape=grid.shape, transform=grid.transform,
                                     all_touched=True, invert=True)
    return mask


def product_collection(
    collection: str, bands: tuple[BandInfo, ...], description: str,
    native_grid: NativeGrid | None = None,
) -> CollectionInfo:
    """A product as a collection: its dimensions as bands, no nodata value (NaN is used)."""
    return CollectionInfo(
        id=collection, bands=bands, processing_level="embedding", nodata=None,
        description=description, native_grid=native_grid or NativeGrid(),
    )


class ProductProvider(ABC):
    """Base of product providers: year, tiles, mosaic, validity; subclasses read tiles."""

    name: str
    years: tuple[int, int] | None
    """First and last year served (inclusive); None for a static product."""
    read_retries = RetryPolicy(max_retries=4, backoff_s=0.2, deadline_s=120.0)
    """Retries of one tile read (servers that drop one request in five still deliver)."""

    @abstractmethod
    def collections(self) -> Mapping[str, CollectionInfo]:
        """The product's collection(s)."""

    @abstractmethod
    def tiles(
        self, spatial: SpatialSpec, year: int | None, *, collection: str,
        temporal: TemporalSpec,
    ) -> Sequence[ProductTile]:
        """The tiles of ``year`` (None: a static product) that may hold values over ``spatial``.

        In the order they are mosaicked: the first valid value wins. ``collection`` and
        ``temporal`` matter to providers of several products, or of dated records.
        """

    @abstractmethod
    def read_tile(self, tile: ProductTile, grid: Grid, dims: Sequence[int]) -> np.ndarray:
        """``tile``'s dimensions ``dims`` on ``grid``, dequantised, NaN where it has no value.

        Returns float32 ``(len(dims), y, x)``.
        """

    def _read(self, tile: ProductTile, grid: Grid, dims: Sequence[int]) -> np.ndarray:
        """:meth:`read_tile` retried while the failure is a connection's, not the file's.

        Like STAC reads: an HTTP status worth retrying, or none (a reset or closed connection,
        a block read broken off) is tried again; what remains is a ProviderUnavailableError.
        """
        from rasterio.errors import RasterioError

        from eoembed.providers._raster import _broken_off

        def worth(err: BaseException) -> bool:
            if isinstance(err, EoembedError):  # said already (retried inside if worth it)
                return False
            if isinstance(err, RasterioError):
                status = http_status(err)
                return _broken_off(err) if status is None else status in RETRY_STATUSES
            return is_transient(err)

        try:
            return self.read_retries.call(
                lambda: self.read_tile(tile, grid, dims), retry_if=worth
            ).value
        except (RasterioError, OSError) as err:
            if isinstance(err, EoembedError):
                raise
            if worth(err):
                raise ProviderUnavailableError(
                    f"{self.name!r}: tile {tile.id} could not be read: {redact(err)}"
                ) from None
            raise ProviderError(
                f"{self.name!r}: tile {tile.id} ({redact(str(tile.source))}) cannot be read: "
                f"{redact(err)}"
            ) from None

    def fetch(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """The product's values over ``spatial`` for the year ``temporal`` selects."""
        import xarray as xr

        from eoembed.providers.scenes import to_dataarray

        t0 = time.perf_counter()
        info = check_served(self.name, self.collections(), sensor)
        check_product_sensor(sensor)
        year = product_year(temporal, sensor.collection, self.years)
        grid = grid or request_grid(spatial, sensor, info)
        inside = footprint_mask(spatial, grid)
        names = info.band_names
        dims = [names.index(b) for b in sensor.bands]
        tiles = list(self.tiles(spatial, year, collection=sensor.collection, temporal=temporal))
        if not tiles:
            when = "" if year is None else f" for {year}"
            raise NoDataError(
                f"{sensor.collection!r} has no tile{when} over the region (lon/lat "
                f"bounds {tuple(round(v, 5) for v in spatial.lonlat_geometry().bounds)}); "
                "the product covers land only"
            )
        data = np.full((len(dims), *grid.shape), np.nan, np.float32)
        valid = np.zeros(grid.shape, bool)
        used = []
        for tile in tiles:
            values = self._read(tile, grid, dims)
            has = np.isfinite(values).all(axis=0) & ~valid & inside
            if has.any():
                data[:, has] = values[:, has]
                valid |= has
                used.append(tile)
            if valid.all():
                break
        if not valid.any():
            when = "" if year is None else f" of {year}"
            raise NoDataError(
                f"the {len(tiles)} {sensor.collection!r} tile(s){when} over the region "
                f"hold no value inside it ({', '.join(t.id for t in tiles[:3])})"
            )
        period: dict[str, str | None] = {"datetime": None, "start_datetime": None,
                                         "end_datetime": None}  # static: no period
        if year is not None:
            period.update(start_datetime=f"{year}-01-01", end_datetime=f"{year + 1}-01-01")
        attrs = {
            "provider": self.name,
            "collection": sensor.collection,
            "processing_level": "embedding",
            "product_year": year,
            "scene_ids": [t.id for t in used],
            "scene_times": [dict(period) for _ in used],
            "mask": "none",
            "masked_scene_ids": [],
            "valid_fraction": float(valid.mean()),
            "unit": "",
            "radiometry": [],
            "resampling": "nearest",
            "fetch_seconds": time.perf_counter() - t0,
        }
        da = to_dataarray(data, sensor.bands, grid, attrs, copy=False)
        da.coords["clear_count"] = xr.Variable(
            ("y", "x"), valid.astype(np.uint16),
            {"long_name": "number of clear observations",
             "description": "1 where the product has a value, 0 where it has none"},
        )
        return da
