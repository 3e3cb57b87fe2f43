"""A provider over a list of :class:`Scene`: select, read, composite.

Local files, static STAC catalogues and the bundled sample all reduce to a list of scenes;
remote providers can reuse the same reading and compositing once their search yields scenes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from eoembed.errors import CapabilityError, NoDataError
from eoembed.providers.base import CollectionInfo, Scene

if TYPE_CHECKING:
    import xarray as xr

    from eoembed.grid import Grid
    from eoembed.specs import SensorSpec, SpatialSpec, TemporalSpec

__all__ = ["SceneProvider", "composite", "to_dataarray"]


def composite(stack: np.ndarray, method: str) -> np.ndarray:
    """Reduce ``(scene, band, y, x)`` with NaN gaps to ``(band, y, x)``.

    ``median`` takes the per-pixel median of valid observations; ``mosaic`` the first valid
    observation in scene order.
    """
    if stack.shape[0] == 1:
        first: np.ndarray = stack[0]
        return first
    if method == "median":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
            median: np.ndarray = np.nanmedian(stack, axis=0).astype(np.float32)
            return median
    out: np.ndarray = stack[0].copy()
    for layer in stack[1:]:
        gap = np.isnan(out)
        if not gap.any():
            break
        out[gap] = layer[gap]
    return out


def to_dataarray(
    data: np.ndarray, bands: Sequence[str], grid: Grid, attrs: Mapping[str, object]
) -> xr.DataArray:
    """Wrap ``(band, y, x)`` pixels with coordinates, CRS and transform (rioxarray style)."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    da = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": list(bands), "y": grid.ys(), "x": grid.xs()},
        attrs=dict(attrs),
    )
    da = da.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    georeferenced: xr.DataArray = da.rio.write_coordinate_system()
    return georeferenced


class SceneProvider:
    """Serve requests from an in-memory list of scenes."""

    name = "scenes"

    def __init__(
        self,
        scenes: Iterable[Scene],
        collections: Mapping[str, CollectionInfo],
        *,
        max_workers: int = 8,
    ) -> None:
        self._scenes = tuple(scenes)
        self._collections = dict(collections)
        self._max_workers = max_workers

    @property
    def scenes(self) -> tuple[Scene, ...]:
        """All scenes this provider knows."""
        return self._scenes

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The collections served, by id."""
        return self._collections

    def check(self, sensor: SensorSpec) -> CollectionInfo:
        """The collection info for ``sensor``; CapabilityError before any I/O if unservable."""
        info = self._collections.get(sensor.collection)
        if info is None:
            raise CapabilityError(
                f"provider {self.name!r} does not serve collection {sensor.collection!r}; "
                f"it serves: {', '.join(sorted(self._collections)) or 'nothing'}"
            )
        missing = [b for b in sensor.bands if b not in info.band_names]
        if missing:
            raise CapabilityError(
                f"collection {info.id!r} from provider {self.name!r} has no band(s) "
                f"{', '.join(missing)}; it has: {', '.join(info.band_names)}"
            )
        return info

    def search(
        self, spatial: SpatialSpec, temporal: TemporalSpec, sensor: SensorSpec
    ) -> list[Scene]:
        """Scenes of the collection that overlap the region, lie in the window, pass the cloud limit.

        Least cloudy first (unknown cloud cover last), then most recent: the order ``mosaic``
        uses.
        """
        from shapely import wkt

        self.check(sensor)
        region = spatial.lonlat_geometry()
        in_space = [
            s for s in self._scenes
            if s.collection == sensor.collection
            and wkt.loads(s.footprint_wkt).intersects(region)
        ]
        if not in_space:
            covered = "; ".join(
                f"{s.id}: {wkt.loads(s.footprint_wkt).bounds}" for s in self._scenes[:5]
            )
            raise NoDataError(
                f"provider {self.name!r} has no {sensor.collection!r} scene over the region "
                f"(lon/lat bounds {tuple(round(v, 5) for v in region.bounds)}); it covers: "
                f"{covered or 'nothing'}"
            )
        in_time = [s for s in in_space if temporal.contains(s.start, s.end)]
        if not in_time:
            windows = ", ".join(
                f"{s.id} [{s.start}, {s.end})" for s in in_space[:5]
            )
            raise NoDataError(
                f"no {sensor.collection!r} scene over the region lies within {temporal}; "
                f"scenes there (acquisition known to lie in): {windows}"
            )
        clear = [
            s for s in in_time if s.cloud_cover is None or s.cloud_cover <= sensor.cloudy_pct
        ]
        if not clear:
            raise NoDataError(
                f"all {len(in_time)} scene(s) in {temporal} exceed cloudy_pct="
                f"{sensor.cloudy_pct:g}; least cloudy: "
                f"{min(s.cloud_cover or 0.0 for s in in_time):.1f}%"
            )
        return sorted(
            clear,
            key=lambda s: (s.cloud_cover is None, s.cloud_cover or 0.0, -s.start.toordinal()),
        )

    def fetch(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Pixels ``(band, y, x)`` on ``grid``, composited over the matching scenes."""
        from eoembed.providers._raster import read_onto_grid

        t0 = time.perf_counter()
        info = self.check(sensor)
        grid = grid or spatial.grid(sensor.scale_m)
        scenes = self.search(spatial, temporal, sensor)
        jobs = [(s, b) for s in scenes for b in sensor.bands]
        with ThreadPoolExecutor(max_workers=min(self._max_workers, len(jobs))) as pool:
            arrays = list(
                pool.map(
                    lambda job: read_onto_grid(
                        job[0].assets[job[1]], grid, resampling=sensor.resampling,
                        nodata=info.nodata,
                    ),
                    jobs,
                )
            )
        stack = np.stack(arrays).reshape(len(scenes), len(sensor.bands), *grid.shape)
        data = composite(stack, sensor.composite)
        valid = ~np.isnan(data).any(axis=0)
        if not valid.any():
            raise NoDataError(
                f"the {len(scenes)} scene(s) found hold no valid pixel inside the region"
            )
        data[np.isnan(data)] = sensor.fill_value
        attrs = {
            "provider": self.name,
            "collection": sensor.collection,
            "processing_level": info.processing_level,
            "scene_ids": [s.id for s in scenes],
            "scene_times": [s.time_dict() for s in scenes],
            "valid_fraction": float(valid.mean()),
            "fetch_seconds": time.perf_counter() - t0,
        }
        return to_dataarray(data, sensor.bands, grid, attrs)
