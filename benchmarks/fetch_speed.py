"""Fetch throughput and CPU cost for many small regions of the sample scene, old vs new path.

Fetches the same ``--regions`` distinct 256 x 256 px (10 m, 13 bands) PointBuffers through
``get_provider("sample")`` with:

- ``old``: the fetch as it was before handle reuse and aligned reads (a thread pool per
  fetch, every band opened and warped by a WarpedVRT, rioxarray writers that copy pixels);
- ``new``: ``SceneProvider.fetch`` as it is (pooled handles, aligned fast path; local files
  read in the calling thread), and the same with the files taken for remote ones, so read on
  the provider's reader threads (``--workers``, default the provider's).

and prints regions/s (wall) and CPU seconds per region (``time.process_time``: on a
2-core machine every CPU second spent fetching is taken from the model). Each variant's
output is checked equal to the old path's. ``--callers K`` fetches from K threads at once,
as the export engine's fetch workers do. ``--cache-transformers`` memoises
``pyproj.Transformer.from_crs`` to show what fetch costs once the spatial specs stop
building a new Transformer per call (outside this benchmark's scope: specs/grid code).
``--cog`` reads deflate-compressed tiled COG copies of the sample instead of its plain
strips, where reused handles also keep decoded tiles in GDAL's block cache.

    .venv/bin/python benchmarks/fetch_speed.py [--regions 64] [--callers 1]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from eoembed import PointBuffer, SensorSpec, TemporalSpec
from eoembed.bands import SENTINEL2_BANDS
from eoembed.errors import NoDataError
from eoembed.providers import _raster as raster
from eoembed.providers import get_provider
from eoembed.providers._raster import read_onto_grid_warped
from eoembed.providers.scenes import SceneProvider, composite

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
SENSOR = SensorSpec("sentinel-2-l1c", tuple(SENTINEL2_BANDS), 10)


def regions(n: int, buffer_m: float) -> list[PointBuffer]:
    """``n`` distinct points on a lattice inside the sample scene."""
    side = int(np.ceil(np.sqrt(n)))
    lons = np.linspace(-75.70, -75.56, side)
    lats = np.linspace(37.62, 37.74, side)
    return [PointBuffer(float(lo), float(la), buffer_m) for lo in lons for la in lats][:n]


def old_to_dataarray(data, bands, grid, attrs):
    """``to_dataarray`` before this change (each rio.write_* copies the pixels)."""
    import rioxarray  # noqa: F401
    import xarray as xr

    da = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": list(bands), "y": grid.ys(), "x": grid.xs()},
        attrs=dict(attrs),
    )
    da = da.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    return da.rio.write_coordinate_system()


def old_fetch(provider: SceneProvider, spatial, temporal, sensor):
    """``SceneProvider.fetch`` before this change, on the reference WarpedVRT reader."""
    t0 = time.perf_counter()
    info = provider.check(sensor)
    grid = spatial.grid(sensor.scale_m)
    scenes = provider.search(spatial, temporal, sensor)
    jobs = [(s, b) for s in scenes for b in sensor.bands]
    with ThreadPoolExecutor(max_workers=min(provider._max_workers, len(jobs))) as pool:
        arrays = list(
            pool.map(
                lambda job: read_onto_grid_warped(
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
        raise NoDataError("no valid pixel")
    data[np.isnan(data)] = sensor.fill_value
    attrs = {
        "provider": provider.name,
        "collection": sensor.collection,
        "processing_level": info.processing_level,
        "scene_ids": [s.id for s in scenes],
        "scene_times": [s.time_dict() for s in scenes],
        "valid_fraction": float(valid.mean()),
        "fetch_seconds": time.perf_counter() - t0,
    }
    return old_to_dataarray(data, sensor.bands, grid, attrs)


def run(fetch: Callable, spatials: list[PointBuffer], callers: int) -> tuple[float, float, list]:
    """(wall seconds, CPU seconds, outputs) for fetching every region once."""
    wall, cpu = time.perf_counter(), time.process_time()
    if callers <= 1:
        outs = [fetch(s) for s in spatials]
    else:
        with ThreadPoolExecutor(callers) as pool:
            outs = list(pool.map(fetch, spatials))
    return time.perf_counter() - wall, time.process_time() - cpu, outs


def same(a, b) -> bool:
    """Equal pixels, coordinates and attributes (but the timing attribute)."""
    import xarray as xr

    a = a.copy()
    b = b.copy()
    a.attrs.pop("fetch_seconds")
    b.attrs.pop("fetch_seconds")
    try:
        xr.testing.assert_identical(a, b)
    except AssertionError:
        return False
    return a.encoding == b.encoding


def cache_transformers() -> None:
    import pyproj

    real = pyproj.Transformer.from_crs

    @functools.cache
    def cached(crs_from, crs_to, always_xy=False):
        return real(crs_from, crs_to, always_xy=always_xy)

    pyproj.Transformer.from_crs = staticmethod(cached)


def cog_copy(sample: SceneProvider, folder: Path) -> SceneProvider:
    """The sample scene as deflate-compressed, 256 px tiled COGs in ``folder``."""
    import rasterio

    from eoembed.providers.local import LocalProvider
    from eoembed.providers.sample import SAMPLE_END, SAMPLE_START
    from eoembed.testing import make_cog

    (scene,) = sample.scenes
    for band, href in scene.assets.items():
        with rasterio.open(href) as src:
            make_cog(folder / f"{band}.tif", src.read(1), src.crs.to_string(), src.transform)
    return LocalProvider.from_folder(
        folder, collection=scene.collection, bands="{band}.tif", start=SAMPLE_START,
        end=SAMPLE_END, scene_id=scene.id,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--regions", type=int, default=64)
    parser.add_argument("--buffer-m", type=float, default=1280)
    parser.add_argument("--callers", type=int, default=1, help="threads calling fetch at once")
    parser.add_argument("--workers", type=int, default=None, help="provider max_workers")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--cache-transformers", action="store_true")
    parser.add_argument(
        "--cog", action="store_true",
        help="read deflate COG copies of the sample (256 px tiles) instead of its plain strips",
    )
    args = parser.parse_args()
    if args.cache_transformers:
        cache_transformers()

    provider = get_provider("sample")
    with tempfile.TemporaryDirectory(prefix="eoembed-cog-") as tmp:
        if args.cog:
            provider = cog_copy(provider, Path(tmp))
        compare(provider, args)
        raster.clear_handle_cache()


def compare(provider, args) -> None:
    """Print one line per variant."""
    assert isinstance(provider, SceneProvider)
    workers = args.workers or provider._max_workers
    provider._max_workers = workers
    real_is_local = raster.is_local
    spatials = regions(args.regions, args.buffer_m)
    warm_up = PointBuffer(-75.63, 37.69, args.buffer_m)  # opens files, fills caches

    def new_fetch(threads: bool) -> Callable:
        """The provider's fetch; ``threads`` makes it treat the files as remote (pooled)."""

        def fetch(spatial):
            raster.is_local = real_is_local if not threads else lambda href: False
            return provider.fetch(spatial, WINDOW, SENSOR)

        return fetch

    variants: dict[str, Callable] = {
        "old (WarpedVRT per band)": lambda s: old_fetch(provider, s, WINDOW, SENSOR),
        "new": new_fetch(threads=False),
        f"new, on {workers} reader threads": new_fetch(threads=True),
    }
    print(
        f"{len(spatials)} regions of {SENSOR.scale_m:g} m, {len(SENSOR.bands)} bands, "
        f"{2 * args.buffer_m / SENSOR.scale_m:.0f} px square; {args.callers} caller thread(s)"
        f"{'; pyproj Transformers cached' if args.cache_transformers else ''}"
        f"{'; deflate COG copies' if args.cog else ''}"
    )
    reference = None
    for name, fetch in variants.items():
        fetch(warm_up)
        best = None
        for _ in range(args.repeat):
            wall, cpu, outs = run(fetch, spatials, args.callers)
            if best is None or wall < best[0]:
                best = (wall, cpu)
        if reference is None:
            reference = outs
            check = ""
        else:
            equal = all(same(a, b) for a, b in zip(reference, outs, strict=True))
            check = "  identical to old" if equal else "  DIFFERS FROM OLD"
        wall, cpu = best
        print(
            f"{name:30s} {len(spatials) / wall:7.1f} regions/s  "
            f"{cpu / len(spatials) * 1e3:7.1f} ms CPU/region{check}"
        )
    raster.is_local = real_is_local


if __name__ == "__main__":
    main()
