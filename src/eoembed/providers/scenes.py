"""A provider over a list of :class:`Scene`: select, read, composite.

Local files, static STAC catalogues and the bundled sample all reduce to a list of scenes;
remote providers can reuse the same reading and compositing once their search yields scenes.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.errors import CapabilityError, NoDataError, ProviderError
from eoembed.providers.base import CollectionInfo, Scene, check_served, request_grid

if TYPE_CHECKING:
    import xarray as xr

    from eoembed.grid import Grid
    from eoembed.providers.masks import CloudMask
    from eoembed.specs import SensorSpec, SpatialSpec, TemporalSpec

__all__ = [
    "SceneProvider", "clear_observations", "composite", "radiometry_records", "to_dataarray"
]

_CLEAR_COUNT_ATTRS = {
    "long_name": "number of clear observations",
    "description": "scenes whose pixel has every band and passes the cloud/shadow mask",
}


def clear_observations(stack: np.ndarray) -> np.ndarray:
    """Per-pixel count of whole observations in ``(scene, band, y, x)``; drops partial ones.

    A scene's pixel missing any band (NaN) is set to NaN in every band, in place, so a
    composite never mixes bands of an observation with gaps (or under a cloud) with others.
    Returns uint16 ``(y, x)``.
    """
    whole = ~np.isnan(stack).any(axis=1)
    if not whole.all():
        np.copyto(stack, np.float32(np.nan), where=~whole[:, None])
    count: np.ndarray = whole.sum(axis=0, dtype=np.uint16)
    return count


def radiometry_records(scenes: Iterable[Scene], bands: Sequence[str]) -> list[dict[str, Any]]:
    """``attrs["radiometry"]``: per scene, the conversion applied to each band and why."""
    from eoembed.providers.radiometry import radiometry_record

    return [entry for s in scenes for entry in radiometry_record(s.id, s.radiometry, bands)]


def composite(stack: np.ndarray, method: str) -> np.ndarray:
    """Reduce ``(scene, band, y, x)`` with NaN gaps to ``(band, y, x)``.

    ``median`` takes the per-pixel median of valid observations; ``mosaic`` the first valid
    observation in scene order. Masked (cloudy) observations are NaN by then, so these are
    clear observations only.
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
        info = check_served(self.name, self._collections, sensor)
        self.mask_for(sensor)
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

    def mask_for(self, sensor: SensorSpec) -> CloudMask | None:
        """The per-pixel mask ``sensor`` asks for here, or None for no masking.

        ``"auto"`` takes the collection's usual mask band where this provider serves it.

        Raises:
            CapabilityError: a named mask whose band the collection does not serve.
        """
        from eoembed.providers.masks import resolve_mask

        info = self._collections.get(sensor.collection)
        served = info.band_names if info is not None else ()
        try:
            return resolve_mask(sensor.collection, sensor.mask, served)
        except CapabilityError as err:
            raise CapabilityError(f"provider {self.name!r}: {err}") from None

    def fetch(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Pixels ``(band, y, x)`` on ``grid``, composited over the clear observations.

        An observation is one scene's pixel with every requested band present and clear under
        ``sensor.mask``; ``median`` takes the per-pixel median of those, ``mosaic`` the first
        in :meth:`search` order (least cloudy scene first). The count of clear observations
        comes back as the ``clear_count`` coordinate on ``(y, x)`` (uint16); pixels where it
        is 0 hold ``sensor.fill_value`` in every band, and ``attrs["valid_fraction"]`` is the
        fraction of pixels where it is not. ``attrs["mask"]`` names the mask applied
        (``"none"`` when none) and ``attrs["masked_scene_ids"]`` the scenes it was applied to
        (with ``mask="auto"``, a scene without the mask band is used unmasked).
        """
        import xarray as xr

        t0 = time.perf_counter()
        info = self.check(sensor)
        mask = self.mask_for(sensor)
        grid = grid or request_grid(spatial, sensor, info)
        scenes = self.search(spatial, temporal, sensor)
        stack, masked = self._read_scenes(scenes, grid, sensor, info, mask)
        count = clear_observations(stack)
        data = composite(stack, sensor.composite)
        applied = mask.name if mask is not None and masked else "none"
        valid = count > 0
        if not valid.any():
            cause = "valid pixel" if applied == "none" else f"clear pixel (mask {applied!r})"
            raise NoDataError(
                f"the {len(scenes)} scene(s) found hold no {cause} inside the region"
            )
        if not valid.all():
            # Exactly the NaN pixels: every scene's observation is whole or all NaN.
            data[:, ~valid] = sensor.fill_value
        attrs = {
            "provider": self.name,
            "collection": sensor.collection,
            "processing_level": info.processing_level,
            "scene_ids": [s.id for s in scenes],
            "scene_times": [s.time_dict() for s in scenes],
            "mask": applied,
            "masked_scene_ids": masked,
            "valid_fraction": float(valid.mean()),
            "unit": info.unit,
            "radiometry": radiometry_records(scenes, sensor.bands),
            "fetch_seconds": time.perf_counter() - t0,
        }
        da = to_dataarray(data, sensor.bands, grid, attrs, copy=False)
        da.coords["clear_count"] = xr.Variable(("y", "x"), count, dict(_CLEAR_COUNT_ATTRS))
        return da

    def read_scene(self, scene: Scene, grid: Grid, sensor: SensorSpec) -> np.ndarray:
        """One scene's ``sensor.bands`` on ``grid``: float32 ``(band, y, x)``, NaN where unclear.

        A pixel is NaN in every band where the scene has no data in some band or the mask
        (``sensor.mask``, as in :meth:`fetch`) calls it cloud, shadow or fill; elsewhere it
        holds the scene's values. For time series and other per-scene uses; no search, no
        cloud limit (``sensor.cloudy_pct``) applied.

        Raises:
            CapabilityError: the collection, a band or the named mask is not served.
            ProviderError: a named mask's band is missing from this scene.
        """
        info = self.check(sensor)
        stack, _ = self._read_scenes([scene], grid, sensor, info, self.mask_for(sensor))
        clear_observations(stack)
        out: np.ndarray = stack[0]
        return out

    def _read_scenes(
        self,
        scenes: Sequence[Scene],
        grid: Grid,
        sensor: SensorSpec,
        info: CollectionInfo,
        mask: CloudMask | None,
    ) -> tuple[np.ndarray, list[str]]:
        """``(scene, band, y, x)`` float32 with NaN for no data and masked pixels.

        Returns the stack and the ids of the scenes whose mask band was read. Mask bands are
        read by nearest neighbour and without the collection's nodata value: their codes and
        flags must not be averaged, and 0 is a real value of some (a 0 % cloud probability).
        """
        # Looked up per call (not imported at module level): tests count reads by patching it.
        from eoembed.providers._raster import is_local, read_onto_grid

        if mask is not None and sensor.mask != "auto":
            lacking = [s.id for s in scenes if mask.band not in s.assets]
            if lacking:
                raise ProviderError(
                    f"scene(s) {', '.join(lacking[:5])} have no {mask.band!r} band for "
                    f"mask={mask.name!r}; use mask='auto' (scenes without it go unmasked) "
                    "or mask='none'"
                )
        with_mask = [i for i, s in enumerate(scenes) if mask is not None and mask.band in s.assets]
        hrefs = [scene.assets[band] for scene in scenes for band in sensor.bands]
        n_bands = len(hrefs)
        if mask is not None:
            hrefs += [scenes[i].assets[mask.band] for i in with_mask]
        stack = np.empty((len(scenes), len(sensor.bands), *grid.shape), np.float32)
        planes = stack.reshape(n_bands, *grid.shape)
        flags = np.empty((len(with_mask), *grid.shape), np.float32)

        # What brings each plane to the collection's unit (per scene and band; None: as
        # stored), applied right after reading: before masks and compositing.
        rules = [
            scene.radiometry.get(band) for scene in scenes for band in sensor.bands
        ]

        def read(job: int) -> None:
            if job < n_bands:
                values = read_onto_grid(
                    hrefs[job], grid, resampling=sensor.resampling, nodata=info.nodata
                )
                rule = rules[job]
                planes[job] = values if rule is None else rule.apply(values)
            else:
                flags[job - n_bands] = read_onto_grid(
                    hrefs[job], grid, resampling="nearest", nodata=None
                )

        # Remote reads wait on the network, so they overlap on reader threads. Local reads
        # of a small region are CPU work (a window copy, mostly under the GIL): threads only
        # add hand-offs, and callers that want concurrency (the export engine) already fetch
        # several regions at once.
        self._run_all(read, len(hrefs), threads=not all(map(is_local, hrefs)))
        if mask is not None:
            for layer, i in zip(flags, with_mask, strict=True):
                unclear = ~mask(layer)
                if unclear.any():
                    stack[i][:, unclear] = np.nan
        return stack, [scenes[i].id for i in with_mask]

    def _run_all(self, task: Callable[[int], None], n: int, *, threads: bool) -> None:
        """``task(0) ... task(n - 1)``: on this provider's reader threads if ``threads``.

        The threads live as long as the provider: starting a pool per fetch cost more than
        the reads themselves once handles are reused. Returns (or raises the first error)
        only once every task has ended.
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
        futures = [pool.submit(task, i) for i in range(n)]
        # Every read ends before the first error is raised: a caller's settings (GDAL
        # options, log redaction) stay in force until no read of this fetch runs any more.
        wait(futures)
        for future in futures:
            future.result()

    def fetch_series(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        frames: int | None = None,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Frames ``(time, band, y, x)``: see :func:`eoembed.providers.series.fetch_series`."""
        from eoembed.providers.series import fetch_series

        return fetch_series(self, spatial, temporal, sensor, frames=frames, grid=grid)
