"""The provider contract: (region, time, sensor) -> pixels on a declared grid.

Providers are the only layer that knows about catalogues and files (pystac, rasterio, ee);
they hand the rest of eoembed an ``xarray.DataArray`` with dims ``(band, y, x)``, band
coordinates in the requested order, a CRS (rioxarray-compatible) and the grid's transform.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from eoembed.bands import BandInfo
from eoembed.grid import NativeGrid
from eoembed.providers.radiometry import Radiometry

if TYPE_CHECKING:
    import xarray as xr

    from eoembed.grid import Grid
    from eoembed.specs import SensorSpec, SpatialSpec, TemporalSpec

__all__ = [
    "CollectionInfo",
    "Provider",
    "Scene",
    "SeriesProvider",
    "check_served",
    "known_native_grid",
    "request_grid",
]


@dataclass(frozen=True)
class CollectionInfo:
    """What a provider can serve from one collection."""

    id: str
    bands: tuple[BandInfo, ...]
    processing_level: str
    """``"L1C"`` (top of atmosphere), ``"L2A"`` (surface reflectance), ..."""
    nodata: float | None = 0.0
    """Value that marks missing pixels in the source files."""
    description: str = ""
    unit: str = ""
    """The unit pixels are served in: :data:`~eoembed.providers.radiometry.HARMONISED_DN`
    (``"dn"``) for Sentinel-2 L1C/L2A and Landsat reflectance, whatever the catalogue;
    ``""`` for as stored. Bands in another unit (Landsat thermal, in kelvin) say so in
    their :class:`~eoembed.providers.radiometry.Radiometry`."""
    native_grid: NativeGrid = field(default_factory=NativeGrid)
    """Where the collection's pixel edges lie in UTM: request grids snap there, so a band read
    at its native resolution in its own zone is not resampled."""

    @property
    def band_names(self) -> tuple[str, ...]:
        """Names of the bands served."""
        return tuple(b.name for b in self.bands)


@dataclass(frozen=True)
class Scene:
    """One acquisition, as providers see it after translating catalogue metadata."""

    id: str
    collection: str
    start: dt.date
    """First day the acquisition may have happened."""
    end: dt.date
    """First day after it (half-open); ``start + 1 day`` when the date is known."""
    footprint_wkt: str
    """Footprint in lon/lat (CRS84), as WKT."""
    assets: Mapping[str, str] = field(hash=False)
    """Band name -> file path or URL."""
    cloud_cover: float | None = None
    radiometry: Mapping[str, Radiometry] = field(default_factory=dict, hash=False)
    """Band name -> what brings its stored values to the collection's unit (absent: as
    stored); decided once from the catalogue metadata, applied by the reader."""

    @property
    def date_known(self) -> bool:
        """Whether the acquisition day is known exactly."""
        return (self.end - self.start).days == 1

    def time_dict(self) -> dict[str, str | None]:
        """STAC-style datetime fields: ``datetime`` when known, else only the range."""
        return {
            "datetime": self.start.isoformat() if self.date_known else None,
            "start_datetime": self.start.isoformat(),
            "end_datetime": self.end.isoformat(),
        }


@runtime_checkable
class Provider(Protocol):
    """Turns (region, time, sensor) into pixels on the region's grid."""

    name: str

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The collections this provider serves, by id."""
        ...

    def fetch(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Pixels ``(band, y, x)`` on ``grid`` (default ``spatial.grid(sensor.scale_m)``).

        Raises:
            NoDataError: no scene covers the region in the time window.
            CapabilityError: the collection or a band is not served.
        """
        ...


@runtime_checkable
class SeriesProvider(Protocol):
    """A provider that can also return frames over time, for temporal models.

    Optional: the pipeline needs only :class:`Provider`. Scene-based providers (local, sample,
    STAC APIs) implement it through :mod:`eoembed.providers.series`.
    """

    name: str

    def fetch_series(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        frames: int | None = None,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Pixels ``(time, band, y, x)``: one frame per acquisition, or ``frames`` equal bins.

        Coordinates along ``time``: ``time`` (NaT where the day is unknown), ``time_start``,
        ``time_end`` and ``frame_valid``; band, y, x, CRS and transform are as ``fetch``'s.

        Raises:
            SpecError: ``frames`` is not None or a positive integer (before any I/O).
            NoDataError: no scene covers the region in the time window.
            CapabilityError: the collection or a band is not served.
        """
        ...


def check_served(
    provider: str, collections: Mapping[str, CollectionInfo], sensor: SensorSpec
) -> CollectionInfo:
    """The collection ``sensor`` reads, if ``provider`` serves it and every band it asks for.

    Raises:
        CapabilityError: the collection or a band is not served (before any I/O).
    """
    from eoembed.errors import CapabilityError, close_names, did_you_mean

    info = collections.get(sensor.collection)
    if info is None:
        hint = did_you_mean(close_names(sensor.collection, collections))
        raise CapabilityError(
            f"provider {provider!r} does not serve collection {sensor.collection!r}"
            f"{f' ({hint})' if hint else ''}; it serves: "
            f"{', '.join(sorted(collections)) or 'nothing'}"
        )
    missing = [b for b in sensor.bands if b not in info.band_names]
    if missing:
        hints = "; ".join(f"{b!r}: {hint}" for b in missing
                          if (hint := did_you_mean(close_names(b, info.band_names, n=2))))
        raise CapabilityError(
            f"collection {sensor.collection!r} from provider {provider!r} has no band(s) "
            f"{', '.join(missing)}{f' ({hints})' if hints else ''}; it has: "
            f"{', '.join(info.band_names)}"
        )
    return info


def known_native_grid(collection: str) -> NativeGrid:
    """The native grid of a collection eoembed knows by id (the default grid otherwise).

    For code that has a collection id but no provider (plans, up-front grid checks); it
    agrees with the providers, whose collections of these ids declare the same grid.
    """
    from eoembed.providers._stac_bands import KNOWN_STAC_COLLECTIONS

    known = KNOWN_STAC_COLLECTIONS.get(collection)
    return known.info.native_grid if known is not None else NativeGrid()


def request_grid(
    spatial: SpatialSpec, sensor: SensorSpec, info: CollectionInfo | None = None
) -> Grid:
    """The grid a request reads onto: ``spatial``'s, snapped to the collection's native grid.

    Args:
        spatial: the region.
        sensor: the sensor spec (its ``scale_m``, and its collection when ``info`` is None).
        info: the collection as the provider serves it (default: by id,
            :func:`known_native_grid`).

    Raises:
        RegionTooLargeError: the grid exceeds the pixel budget.
    """
    native = info.native_grid if info is not None else known_native_grid(sensor.collection)
    return spatial.grid(sensor.scale_m, native)
