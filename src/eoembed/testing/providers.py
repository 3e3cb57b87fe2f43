"""Providers for tests: a wrapper that counts fetches, and a fake that reads no files.

Both satisfy :class:`eoembed.providers.Provider`, so they can be passed as ``provider=``
anywhere a provider name is accepted.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from eoembed.bands import SENTINEL2_BANDS
from eoembed.errors import NoDataError
from eoembed.providers.base import CollectionInfo, check_served, request_grid

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr

    from eoembed.grid import Grid
    from eoembed.providers.base import Provider
    from eoembed.specs import SensorSpec, SpatialSpec, TemporalSpec

__all__ = ["CountingProvider", "DelayedProvider", "FakeProvider", "FetchCall"]

ArrayOrFloat = TypeVar("ArrayOrFloat", float, "np.ndarray")


@dataclass(frozen=True)
class FetchCall:
    """One recorded ``fetch`` call."""

    spatial: SpatialSpec
    temporal: TemporalSpec
    sensor: SensorSpec
    grid: Grid | None


class CountingProvider:
    """Wraps a real provider and records every ``fetch`` (thread-safe); pixels are unchanged."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[FetchCall] = []
        self._lock = threading.Lock()

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The wrapped provider's collections."""
        return self.inner.collections()

    def fetch(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Record the call, then delegate."""
        with self._lock:
            self.calls.append(FetchCall(spatial, temporal, sensor, grid))
        return self.inner.fetch(spatial, temporal, sensor, grid=grid)


FAKE_COLLECTION = CollectionInfo(
    "sentinel-2-l1c", tuple(SENTINEL2_BANDS.values()), "L1C", nodata=0.0,
    description="synthetic pixels from eoembed.testing.FakeProvider",
)


class FakeProvider:
    """Synthetic Sentinel-2 L1C pixels computed from map coordinates; no files, no network.

    Pixel value of band ``i`` at map coordinate ``(x, y)`` (pixel centre, grid CRS) is
    ``1000 + 100 * i + (x / 10) % 97 + (y / 10) % 89``, so tests can predict every pixel, and
    neighbouring regions agree where they overlap.

    Args:
        bands: the bands served (default: all 13 Sentinel-2 bands).
        scene_id: the id reported in ``attrs["scene_ids"]``.
        lonlat_bounds: ``(west, south, east, north)`` coverage; outside it ``fetch`` raises
            :class:`~eoembed.errors.NoDataError`. ``None`` covers the whole Earth.
    """

    name = "fake"

    def __init__(
        self,
        *,
        bands: tuple[str, ...] | None = None,
        scene_id: str = "fake-scene",
        lonlat_bounds: tuple[float, float, float, float] | None = None,
    ) -> None:
        served = tuple(SENTINEL2_BANDS[b] for b in bands) if bands else FAKE_COLLECTION.bands
        self.info = CollectionInfo(
            FAKE_COLLECTION.id, served, "L1C", nodata=0.0,
            description=FAKE_COLLECTION.description,
        )
        self.scene_id = scene_id
        self.lonlat_bounds = lonlat_bounds

    def collections(self) -> Mapping[str, CollectionInfo]:
        """One collection, ``sentinel-2-l1c``."""
        return {self.info.id: self.info}

    @staticmethod
    def value(band_index: int, x: ArrayOrFloat, y: ArrayOrFloat) -> ArrayOrFloat:
        """The pixel value the fake serves for band number ``band_index`` at ``(x, y)``."""
        return 1000.0 + 100.0 * band_index + (x / 10.0) % 97.0 + (y / 10.0) % 89.0

    def fetch(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Synthetic pixels ``(band, y, x)`` on ``grid`` (default ``spatial.grid(scale_m)``)."""
        import numpy as np

        from eoembed.providers.scenes import to_dataarray

        check_served(self.name, self.collections(), sensor)
        if self.lonlat_bounds is not None:
            from shapely.geometry import box

            if not spatial.lonlat_geometry().intersects(box(*self.lonlat_bounds)):
                raise NoDataError(
                    f"provider {self.name!r} covers only lon/lat {self.lonlat_bounds}"
                )
        grid = grid or request_grid(spatial, sensor)
        xs, ys = np.meshgrid(grid.xs(), grid.ys())
        names = list(SENTINEL2_BANDS)
        data = np.stack(
            [self.value(names.index(b), xs, ys) for b in sensor.bands]
        ).astype(np.float32)
        attrs = {
            "provider": self.name,
            "collection": self.info.id,
            "processing_level": self.info.processing_level,
            "scene_ids": [self.scene_id],
            "scene_times": [
                {"datetime": None, "start_datetime": temporal.start, "end_datetime": temporal.end}
            ],
            "valid_fraction": 1.0,
            "fetch_seconds": 0.0,
        }
        return to_dataarray(data, sensor.bands, grid, attrs)


class DelayedProvider:
    """A named provider whose every ``fetch`` first waits ``seconds``; picklable by name.

    For cluster tests: it travels to worker processes as the inner provider's name and a
    delay, so a run lasts long enough to lose a worker or a scheduler in the middle of it.
    """

    def __init__(self, inner: str, seconds: float) -> None:
        self.inner_name = inner
        self.seconds = seconds
        self.name = inner

    def _inner(self) -> Provider:
        from eoembed.providers.registry import get_provider

        return get_provider(self.inner_name)

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The inner provider's collections."""
        return self._inner().collections()

    def fetch(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Wait, then delegate."""
        import time

        time.sleep(self.seconds)
        return self._inner().fetch(spatial, temporal, sensor, grid=grid)
