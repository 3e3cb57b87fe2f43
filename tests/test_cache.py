"""CachedProvider: content-addressed patches on disk, shared by threads and processes.

The inner provider is the real sample provider (counted with CountingProvider), and a real
STAC API with a range-request file server on loopback (the servers of test_stac.py) shows
that a cached request transfers nothing.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from eoembed import BBox, PointBuffer, SensorSpec, TemporalSpec
from eoembed.errors import CapabilityError, NoDataError, SpecError
from eoembed.grid import Grid
from eoembed.providers import CachedProvider, StacProvider, get_provider
from eoembed.providers.cache import CACHE_FORMAT, default_cache_dir
from eoembed.testing import CountingProvider

try:  # the loopback STAC API and file server of test_stac (skipped without the stac extra)
    from test_stac import (
        BANDS,
        L1C,
        POINT,
        WINDOW,
        Servers,
        _nonce_signer,
        fresh,  # noqa: F401  (fixture)
        servers,  # noqa: F401  (fixture)
    )
except (ImportError, pytest.skip.Exception):
    HAVE_STAC = False
else:
    HAVE_STAC = True

SMALL = PointBuffer(lon=-75.70, lat=37.70, buffer_m=320)  # 64 x 64 px at 10 m
WINDOW_ALL = TemporalSpec.range("2015-06-23", "2016-06-11")
SENSOR = SensorSpec("sentinel-2-l1c", ("B04", "B08"))
LONS = (-75.70, -75.69, -75.68, -75.67)
"""Centres of the regions the concurrency tests fetch over and over."""


def _without_timing(da: xr.DataArray) -> xr.DataArray:
    out = da.copy()
    out.attrs = {k: v for k, v in da.attrs.items() if k != "fetch_seconds"}
    return out


def assert_same_patch(got: xr.DataArray, want: xr.DataArray, *, timing: bool = True) -> None:
    """Equal pixels, coordinates (with their attributes), attributes, CRS and transform."""
    if timing:
        xr.testing.assert_identical(got, want)
    else:  # separate fetches of one request differ only in how long they took
        xr.testing.assert_identical(_without_timing(got), _without_timing(want))
    assert got.dtype == want.dtype
    assert got.rio.crs == want.rio.crs
    with warnings.catch_warnings():  # rioxarray multiplies Affines with `*` (deprecated)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        assert got.rio.transform() == want.rio.transform()
    assert got.encoding.get("grid_mapping") == want.encoding.get("grid_mapping")


@pytest.fixture
def counting(sample_provider: Any) -> CountingProvider:
    return CountingProvider(sample_provider)


@pytest.fixture
def cached(counting: CountingProvider, tmp_path: Path) -> CachedProvider:
    return CachedProvider(counting, tmp_path / "cache")


# --------------------------------------------------------------------- hits and misses


def test_second_fetch_is_read_from_disk(cached: CachedProvider, counting: CountingProvider,
                                        tmp_path: Path) -> None:
    first = cached.fetch(SMALL, WINDOW_ALL, SENSOR)
    assert len(counting.calls) == 1
    second = cached.fetch(SMALL, WINDOW_ALL, SENSOR)
    assert len(counting.calls) == 1
    assert_same_patch(second, first)
    assert second.attrs["scene_ids"] == first.attrs["scene_ids"]
    assert second.attrs["scene_times"] == first.attrs["scene_times"]
    assert cached.name == "sample" and cached.collections() == counting.collections()

    # Another instance (a new process, say) on the same folder reads the same entry.
    again = CachedProvider(CountingProvider(counting.inner), tmp_path / "cache")
    assert_same_patch(again.fetch(SMALL, WINDOW_ALL, SENSOR), first)
    assert again.stats.hits == 1 and again.stats.misses == 0

    stats = cached.stats
    assert (stats.hits, stats.misses, stats.corrupt, stats.evicted) == (1, 1, 0, 0)
    assert stats.bytes_written == stats.bytes_read == cached.disk_usage() > 0
    # Content-addressed layout: <root>/<key[:2]>/<key>.npz, nothing else but the lock.
    key = cached.key(SMALL, WINDOW_ALL, SENSOR)
    assert len(key) == 64
    assert cached.path(key) == tmp_path / "cache" / key[:2] / f"{key}.npz"
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == [cached.path(key)]


def test_explicit_default_grid_is_the_same_request(cached: CachedProvider,
                                                   counting: CountingProvider) -> None:
    cached.fetch(SMALL, WINDOW_ALL, SENSOR)
    cached.fetch(SMALL, WINDOW_ALL, SENSOR, grid=SMALL.grid(SENSOR.scale_m))
    assert len(counting.calls) == 1


def test_anything_that_changes_the_pixels_misses(cached: CachedProvider,
                                                 counting: CountingProvider) -> None:
    grid = SMALL.grid(10.0)
    shifted = Grid(grid.crs, grid.left + 10.0, grid.top, grid.resolution, grid.width,
                   grid.height)
    bbox = BBox(*SMALL.lonlat_geometry().bounds)
    requests: list[tuple[Any, TemporalSpec, SensorSpec, Grid | None]] = [
        (SMALL, WINDOW_ALL, SENSOR, None),
        (SMALL, WINDOW_ALL, SENSOR, shifted),  # grid
        (SMALL, WINDOW_ALL, SENSOR, grid.coarsen(32, 32)),  # resolution via grid
        (SMALL, TemporalSpec.range("2015-01-01", "2017-01-01"), SENSOR, None),  # window
        (SMALL, WINDOW_ALL, SensorSpec("sentinel-2-l1c", ("B04",)), None),  # bands
        (SMALL, WINDOW_ALL, SensorSpec("sentinel-2-l1c", ("B08", "B04")), None),  # order
        (SMALL, WINDOW_ALL, SensorSpec("sentinel-2-l1c", SENSOR.bands, scale_m=20), None),
        (SMALL, WINDOW_ALL, SensorSpec("sentinel-2-l1c", SENSOR.bands, fill_value=-1), None),
        (PointBuffer(lon=-75.69, lat=37.70, buffer_m=320), WINDOW_ALL, SENSOR, None),  # place
        (bbox, WINDOW_ALL, SENSOR, grid),  # same grid, other region: scenes are chosen by it
    ]
    keys = {cached.key(s, t, sen, grid=g) for s, t, sen, g in requests}
    assert len(keys) == len(requests)
    results = [cached.fetch(s, t, sen, grid=g) for s, t, sen, g in requests]
    assert len(counting.calls) == len(requests)
    again = [cached.fetch(s, t, sen, grid=g) for s, t, sen, g in requests]
    assert len(counting.calls) == len(requests)
    for got, want in zip(again, results, strict=True):
        assert_same_patch(got, want)
    assert cached.stats.hits == len(requests)


def test_errors_are_not_cached(cached: CachedProvider, counting: CountingProvider) -> None:
    window = TemporalSpec.year(2014)
    for _ in range(2):
        with pytest.raises(NoDataError):
            cached.fetch(SMALL, window, SENSOR)
    assert len(counting.calls) == 2
    assert cached.disk_usage() == 0


class Decorating:
    """Adds what other providers may return: extra coordinates, numpy and tuple attributes."""

    def __init__(self, inner: Any, extra: Mapping[str, Any] | None = None) -> None:
        self.inner, self.name, self.extra = inner, inner.name, dict(extra or {})
        self.calls = 0

    def collections(self) -> Any:
        return self.inner.collections()

    def fetch(self, spatial: Any, temporal: Any, sensor: Any, *, grid: Any = None) -> Any:
        self.calls += 1
        da = self.inner.fetch(spatial, temporal, sensor, grid=grid)
        clear = xr.Variable(("y", "x"), np.arange(da.y.size * da.x.size, dtype=np.uint8)
                            .reshape(da.y.size, da.x.size), {"long_name": "clear scenes"})
        da = da.assign_coords(clear_count=clear, time=np.datetime64("2016-01-02", "ns"))
        da.attrs.update(
            nodata=np.float32(0.5), window=("2015-06-23", "2016-06-11"), weights=np.arange(3.0),
            nested={"a": [1, (2, 3)], "b": None}, **self.extra,
        )
        da.name = "pixels"
        return da


def test_every_coordinate_and_attribute_comes_back(sample_provider: Any, tmp_path: Path) -> None:
    inner = Decorating(sample_provider)
    cached = CachedProvider(inner, tmp_path)
    first = cached.fetch(SMALL, WINDOW_ALL, SENSOR)
    second = cached.fetch(SMALL, WINDOW_ALL, SENSOR)
    assert inner.calls == 1
    assert_same_patch(second, first)
    assert second.clear_count.dims == ("y", "x") and second.clear_count.dtype == np.uint8
    assert second.clear_count.attrs == {"long_name": "clear scenes"}
    assert second.time.dtype == first.time.dtype
    assert second.name == "pixels"
    assert type(second.attrs["nodata"]) is np.float32
    assert second.attrs["window"] == ("2015-06-23", "2016-06-11")
    np.testing.assert_array_equal(second.attrs["weights"], np.arange(3.0))
    assert second.attrs["nested"] == {"a": [1, (2, 3)], "b": None}


def test_result_that_cannot_round_trip_is_returned_not_stored(sample_provider: Any,
                                                              tmp_path: Path) -> None:
    inner = Decorating(sample_provider, extra={"odd": {1, 2}})
    cached = CachedProvider(inner, tmp_path)
    for _ in range(2):
        assert cached.fetch(SMALL, WINDOW_ALL, SENSOR).attrs["odd"] == {1, 2}
    assert inner.calls == 2
    assert cached.stats.skipped == 2 and cached.disk_usage() == 0


def test_series_are_cached_too(sample_provider: Any, counting: CountingProvider,
                               tmp_path: Path) -> None:
    cached = CachedProvider(sample_provider, tmp_path)
    first = cached.fetch_series(SMALL, WINDOW_ALL, SENSOR)
    second = cached.fetch_series(SMALL, WINDOW_ALL, SENSOR)
    assert (cached.stats.hits, cached.stats.misses) == (1, 1)
    assert_same_patch(second, first)
    assert second.dims == ("time", "band", "y", "x") and np.isnat(second.time.values).all()
    keys = {
        cached.key(SMALL, WINDOW_ALL, SENSOR),
        cached.key(SMALL, WINDOW_ALL, SENSOR, series=True),
        cached.key(SMALL, WINDOW_ALL, SENSOR, series=True, frames=1),
    }
    assert len(keys) == 3
    assert cached.fetch(SMALL, WINDOW_ALL, SENSOR).dims == ("band", "y", "x")  # not the series
    with pytest.raises(SpecError, match="frames"):
        cached.fetch_series(SMALL, WINDOW_ALL, SENSOR, frames=0)
    with pytest.raises(CapabilityError, match="no fetch_series"):
        CachedProvider(counting, tmp_path).fetch_series(SMALL, WINDOW_ALL, SENSOR)


# --------------------------------------------------------------------- damage and size


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other-entry", "bit-flip"])
def test_damaged_entry_is_refetched(cached: CachedProvider, counting: CountingProvider,
                                    damage: str) -> None:
    other = PointBuffer(lon=-75.69, lat=37.70, buffer_m=320)
    first = cached.fetch(SMALL, WINDOW_ALL, SENSOR)
    cached.fetch(other, WINDOW_ALL, SENSOR)
    path = cached.path(cached.key(SMALL, WINDOW_ALL, SENSOR))
    blob = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(blob)))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other-entry":  # a valid file under the wrong name
        path.write_bytes(cached.path(cached.key(other, WINDOW_ALL, SENSOR)).read_bytes())
    else:  # one flipped bit in the pixels: the zip member's CRC catches it
        flipped = bytearray(blob)
        flipped[len(blob) // 3] ^= 0x01
        path.write_bytes(bytes(flipped))
    calls = len(counting.calls)
    refetched = cached.fetch(SMALL, WINDOW_ALL, SENSOR)
    assert len(counting.calls) == calls + 1
    assert cached.stats.corrupt == 1
    assert_same_patch(refetched, first, timing=False)
    assert_same_patch(cached.fetch(SMALL, WINDOW_ALL, SENSOR), refetched)  # rewritten, whole
    assert len(counting.calls) == calls + 1


def test_eviction_keeps_the_most_recently_used(counting: CountingProvider,
                                               tmp_path: Path) -> None:
    a, b, c = (PointBuffer(lon=lon, lat=37.70, buffer_m=320) for lon in LONS[:3])
    probe = CachedProvider(counting, tmp_path / "probe")
    probe.fetch(a, WINDOW_ALL, SENSOR)
    size = probe.stats.bytes_written

    cached = CachedProvider(counting, tmp_path / "cache", max_bytes=int(2.5 * size))
    key = {r: cached.key(r, WINDOW_ALL, SENSOR) for r in (a, b, c)}
    cached.fetch(a, WINDOW_ALL, SENSOR)
    cached.fetch(b, WINDOW_ALL, SENSOR)
    cached.fetch(a, WINDOW_ALL, SENSOR)  # a hit: a is now more recent than b
    assert cached.stats.hits == 1 and cached.stats.evicted == 0
    cached.fetch(c, WINDOW_ALL, SENSOR)  # three entries do not fit: b goes
    assert cached.stats.evicted == 1
    assert cached.path(key[a]).exists() and cached.path(key[c]).exists()
    assert not cached.path(key[b]).exists()
    assert cached.disk_usage() <= cached.max_bytes

    calls = len(counting.calls)
    cached.fetch(a, WINDOW_ALL, SENSOR)
    cached.fetch(c, WINDOW_ALL, SENSOR)
    assert len(counting.calls) == calls  # both hits
    cached.fetch(b, WINDOW_ALL, SENSOR)
    assert len(counting.calls) == calls + 1
    assert cached.disk_usage() <= cached.max_bytes

    cached.clear()
    assert cached.disk_usage() == 0
    nothing = CachedProvider(counting, tmp_path / "none", max_bytes=0)
    nothing.fetch(a, WINDOW_ALL, SENSOR)
    assert nothing.disk_usage() == 0 and nothing.stats.evicted == 1


# --------------------------------------------------------------------- concurrency

WORKER = r"""
import json, random, sys
import xarray as xr
from eoembed import PointBuffer, SensorSpec, TemporalSpec
from eoembed.providers import CachedProvider
from eoembed.providers.sample import SampleProvider

directory, max_bytes, rounds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lons = json.loads(sys.argv[5])
window = TemporalSpec.range("2015-06-23", "2016-06-11")
sensor = SensorSpec("sentinel-2-l1c", ("B04", "B08"))
regions = [PointBuffer(lon=lon, lat=37.70, buffer_m=320) for lon in lons]
sample = SampleProvider()

def plain(da):
    da = da.copy()
    da.attrs.pop("fetch_seconds")
    return da

expected = [plain(sample.fetch(r, window, sensor)) for r in regions]
cached = CachedProvider(sample, directory, max_bytes=max_bytes)
rng = random.Random(seed)
for _ in range(rounds):
    order = list(range(len(regions)))
    rng.shuffle(order)
    for i in order:
        xr.testing.assert_identical(plain(cached.fetch(regions[i], window, sensor)), expected[i])
stats = vars(cached.stats) | {"keys": [cached.key(r, window, sensor) for r in regions]}
print(json.dumps(stats))
"""


def test_threads_and_processes_share_one_folder(sample_provider: Any, tmp_path: Path) -> None:
    """Readers, writers and evictors at once: no read ever sees a partial or damaged file."""
    directory = tmp_path / "shared"
    regions = [PointBuffer(lon=lon, lat=37.70, buffer_m=320) for lon in LONS]
    expected = [sample_provider.fetch(r, WINDOW_ALL, SENSOR) for r in regions]
    probe = CachedProvider(sample_provider, tmp_path / "probe")
    probe.fetch(regions[0], WINDOW_ALL, SENSOR)
    # Room for about 3 of the 4 entries: entries are evicted all the time.
    max_bytes = int(3.2 * probe.stats.bytes_written)
    rounds = 12

    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(directory), str(max_bytes), str(rounds), str(n),
             json.dumps(LONS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for n in range(2)
    ]
    shared = CachedProvider(sample_provider, directory, max_bytes=max_bytes)

    def work(n: int) -> None:
        # Half the threads share one instance, the others have their own.
        cached = (
            CachedProvider(sample_provider, directory, max_bytes=max_bytes) if n % 2 else shared
        )
        rng = random.Random(n)
        done = 0
        # At least `rounds` rounds, and on until the processes are done: they overlap.
        while done < rounds or any(w.poll() is None for w in workers):
            for i in rng.sample(range(len(regions)), len(regions)):
                assert_same_patch(cached.fetch(regions[i], WINDOW_ALL, SENSOR), expected[i],
                                  timing=False)
            done += 1
        assert cached.stats.corrupt == 0

    try:
        with ThreadPoolExecutor(4) as pool:
            for future in [pool.submit(work, n) for n in range(4)]:
                future.result()
    finally:
        outputs = [w.communicate(timeout=120) for w in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        stats = json.loads(out.strip().splitlines()[-1])
        assert stats["corrupt"] == 0, stats
        assert stats["hits"] + stats["misses"] == rounds * len(LONS)
        assert stats["keys"] == [shared.key(r, WINDOW_ALL, SENSOR) for r in regions]
    assert shared.stats.corrupt == 0 and shared.stats.hits > 0
    assert shared.disk_usage() <= max_bytes  # the last evictor left the folder under the limit
    assert not list(directory.rglob("*.tmp"))  # every temporary was renamed or removed


# --------------------------------------------------------------------- identity, names, dirs


def test_provider_identity_is_part_of_the_key(sample_provider: Any, tmp_path: Path) -> None:
    class WithIdentity(CountingProvider):
        cache_identity: Any = None

    one, two = WithIdentity(sample_provider), WithIdentity(sample_provider)
    one.cache_identity, two.cache_identity = {"url": "a"}, {"url": "b"}
    keys = {
        CachedProvider(p, tmp_path).key(SMALL, WINDOW_ALL, SENSOR)
        for p in (one, two, CountingProvider(sample_provider), sample_provider)
    }
    assert len(keys) == 4
    method = WithIdentity(sample_provider)
    method.cache_identity = lambda: {"url": "a"}  # a method works as well as an attribute
    assert CachedProvider(method, tmp_path).key(SMALL, WINDOW_ALL, SENSOR) == CachedProvider(
        one, tmp_path
    ).key(SMALL, WINDOW_ALL, SENSOR)
    # identity= overrides; a cache in front of a cache shares the inner one's entries
    explicit = CachedProvider(sample_provider, tmp_path, identity={"url": "b"})
    assert explicit.cache_identity == CachedProvider(two, tmp_path).cache_identity
    outer = CachedProvider(CachedProvider(sample_provider, tmp_path / "a"), tmp_path / "b")
    assert outer.cache_identity == CachedProvider(sample_provider, tmp_path).cache_identity
    with pytest.raises(SpecError, match="identity"):
        CachedProvider(sample_provider, tmp_path, identity={"x": object()})

    stac = {
        CachedProvider(p, tmp_path).cache_identity
        for p in (
            StacProvider("http://127.0.0.1:9/a"),
            StacProvider("http://127.0.0.1:9/b"),
            StacProvider("http://127.0.0.1:9/a", collections={"hls-l30": "HLSL30_2.0"}),
            StacProvider("http://127.0.0.1:9/a", max_items=5),
        )
    }
    assert len(stac) == 4
    assert CachedProvider(StacProvider("http://127.0.0.1:9/a"), tmp_path).cache_identity in stac


def test_arguments_and_registered_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EOEMBED_CACHE", str(tmp_path / "root"))
    provider = get_provider("cached:sample")
    assert isinstance(provider, CachedProvider)
    assert provider.inner is get_provider("sample") and provider.name == "sample"
    assert provider.directory == tmp_path / "root" / "patches"
    stac = get_provider("cached:stac:http://127.0.0.1:9/api")
    assert isinstance(stac, CachedProvider) and isinstance(stac.inner, StacProvider)
    assert stac.inner.url == "http://127.0.0.1:9/api"
    with pytest.raises(SpecError, match="cached:<provider name>"):
        get_provider("cached")
    assert isinstance(CachedProvider("sample", tmp_path).inner, type(get_provider("sample")))
    for bad in (-1, 1.5, True):
        with pytest.raises(SpecError, match="max_bytes"):
            CachedProvider("sample", tmp_path, max_bytes=bad)  # type: ignore[arg-type]
    assert CACHE_FORMAT >= 1


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG layout")
def test_default_directory_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.delenv("EOEMBED_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "eoembed" / "patches"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "eoembed" / "patches"
    monkeypatch.setenv("EOEMBED_CACHE", "~/elsewhere")
    assert default_cache_dir() == tmp_path / "home" / "elsewhere" / "patches"


# --------------------------------------------------------------------- a real server


@pytest.mark.skipif(not HAVE_STAC, reason="needs the stac and test extras")
def test_cached_stac_request_transfers_nothing(fresh: Servers, sample_provider: Any,
                                               tmp_path: Path) -> None:
    sensor = SensorSpec(L1C, BANDS)
    # Through the proxy, so that API requests are recorded as well as asset reads.
    first_provider = CachedProvider(
        StacProvider(f"{fresh.files}/stac", sign=_nonce_signer()), tmp_path
    )
    first = first_provider.fetch(POINT, WINDOW, sensor)
    stats = fresh.control("stats")
    assert 200 in stats["/stac/search"]["statuses"]  # the proxy counts requests, not bytes
    assert all(stats[f"/{b}.tif"]["bytes"] > 0 for b in BANDS)
    np.testing.assert_array_equal(
        first.values, sample_provider.fetch(POINT, WINDOW, sensor).values
    )

    fresh.control("reset")
    # A new provider (a new session, say): no search, no asset read, no byte sent.
    second_provider = CachedProvider(
        StacProvider(f"{fresh.files}/stac", sign=_nonce_signer()), tmp_path
    )
    second = second_provider.fetch(POINT, WINDOW, sensor)
    assert fresh.control("stats") == {}
    assert_same_patch(second, first)
    assert second.attrs["stac_api"] == f"{fresh.files}/stac"
    assert second_provider.stats.hits == 1 and second_provider.stats.misses == 0
