"""A provider over a list of :class:`Scene`: select, read, composite.

Local files, static STAC catalogues and the bundled sample all reduce to a list of scenes;
remote providers can reuse the same reading and compositing once their search yields scenes.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

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
    data: np.ndarray,
    bands: Sequence[str],
    grid: Grid,
    attrs: Mapping[str, object],
    *,
    copy: bool = True,
) -> xr.DataArray:
    """Wrap ``(band, y, x)`` pixels with coordinates, CRS and transform (rioxarray style).

    The result owns a copy of ``data`` unless ``copy=False`` (for callers handing over a
    fresh array: copying a 13-band 256 x 256 patch costs more than wrapping it). Builds the
    same object as rioxarray's ``write_crs``/``write_transform``/``write_coordinate_system``
    (see :func:`_to_dataarray_rio`), but from CRS metadata computed once per CRS: rioxarray
    re-derives it from the CRS on every call, which cost more than reading the pixels.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor for callers)
    import xarray as xr

    if _RIO_ATTRS.intersection(attrs):
        return _to_dataarray_rio(data, bands, grid, attrs, copy=copy)
    spatial_ref, y_attrs, x_attrs = _georeference_template(grid.crs, _rio_export_grid_mapping())
    spatial_ref = {**spatial_ref, "GeoTransform": " ".join(map(str, grid.transform.to_gdal()))}
    da = xr.DataArray(
        np.array(data, copy=True) if copy else data,
        dims=("band", "y", "x"),
        coords={
            "band": list(bands),
            "y": xr.Variable("y", grid.ys(), dict(y_attrs)),
            "x": xr.Variable("x", grid.xs(), dict(x_attrs)),
            "spatial_ref": xr.Variable((), 0, spatial_ref),
        },
        attrs=dict(attrs),
    )
    da.encoding["grid_mapping"] = "spatial_ref"
    return da


_RIO_ATTRS = frozenset({"crs", "transform", "grid_mapping"})
"""Attributes rioxarray's writers rewrite or read; only its own code handles them exactly."""


def _to_dataarray_rio(
    data: np.ndarray,
    bands: Sequence[str],
    grid: Grid,
    attrs: Mapping[str, object],
    *,
    copy: bool = True,
) -> xr.DataArray:
    """:func:`to_dataarray` the plain rioxarray way: the reference its template reproduces."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    da = xr.DataArray(
        np.array(data, copy=True) if copy else data,
        dims=("band", "y", "x"),
        coords={"band": list(bands), "y": grid.ys(), "x": grid.xs()},
        attrs=dict(attrs),
    )
    # In place: each rio.write_* otherwise deep-copies the pixels.
    da.rio.write_crs(grid.crs, inplace=True)
    da.rio.write_transform(grid.transform, inplace=True)
    da.rio.write_coordinate_system(inplace=True)
    return da


def _rio_export_grid_mapping() -> bool:
    """The ``export_grid_mapping`` option of rioxarray: it changes what ``write_crs`` writes."""
    from rioxarray._options import EXPORT_GRID_MAPPING, get_option

    return bool(get_option(EXPORT_GRID_MAPPING))


@functools.lru_cache(maxsize=64)
def _georeference_template(
    crs: str, export_grid_mapping: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``spatial_ref`` (less GeoTransform), ``y`` and ``x`` attributes rioxarray writes for ``crs``.

    Taken from rioxarray itself on a 1-pixel array, so they follow its version's conventions.
    """
    from eoembed.grid import Grid

    del export_grid_mapping  # part of the cache key only
    tiny = _to_dataarray_rio(
        np.zeros((1, 1, 1), np.float32), ["b"], Grid(crs, 0.0, 1.0, 1.0, 1, 1), {}, copy=False
    )
    spatial_ref = dict(tiny.coords["spatial_ref"].attrs)
    spatial_ref.pop("GeoTransform", None)
    return spatial_ref, dict(tiny.coords["y"].attrs), dict(tiny.coords["x"].attrs)


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
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

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
        # Looked up per call (not imported at module level): tests count reads by patching it.
        from eoembed.providers._raster import is_local, read_onto_grid

        t0 = time.perf_counter()
        info = self.check(sensor)
        grid = grid or spatial.grid(sensor.scale_m)
        scenes = self.search(spatial, temporal, sensor)
        hrefs = [scene.assets[band] for scene in scenes for band in sensor.bands]
        stack = np.empty((len(scenes), len(sensor.bands), *grid.shape), np.float32)
        planes = stack.reshape(len(hrefs), *grid.shape)

        def read(job: int) -> None:
            planes[job] = read_onto_grid(
                hrefs[job], grid, resampling=sensor.resampling, nodata=info.nodata
            )

        # Remote reads wait on the network, so they overlap on reader threads. Local reads
        # of a small region are CPU work (a window copy, mostly under the GIL): threads only
        # add hand-offs, and callers that want concurrency (the export engine) already fetch
        # several regions at once.
        self._run_all(read, len(hrefs), threads=not all(map(is_local, hrefs)))
        data = composite(stack, sensor.composite)
        gaps = np.isnan(data)
        valid = ~gaps.any(axis=0)
        if not valid.any():
            raise NoDataError(
                f"the {len(scenes)} scene(s) found hold no valid pixel inside the region"
            )
        data[gaps] = sensor.fill_value
        attrs = {
            "provider": self.name,
            "collection": sensor.collection,
            "processing_level": info.processing_level,
            "scene_ids": [s.id for s in scenes],
            "scene_times": [s.time_dict() for s in scenes],
            "valid_fraction": float(valid.mean()),
            "fetch_seconds": time.perf_counter() - t0,
        }
        return to_dataarray(data, sensor.bands, grid, attrs, copy=False)

    def _run_all(self, task: Callable[[int], None], n: int, *, threads: bool) -> None:
        """``task(0) ... task(n - 1)``: on this provider's reader threads if ``threads``.

        The threads live as long as the provider: starting a pool per fetch cost more than
        the reads themselves once handles are reused.
        """
        if not threads or self._max_workers <= 1 or n <= 1:
            for i in range(n):
                task(i)
            return
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self._max_workers, thread_name_prefix=f"eoembed-{self.name}-read"
                )
            pool = self._pool
        for future in [pool.submit(task, i) for i in range(n)]:
            future.result()
