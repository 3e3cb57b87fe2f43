"""The fast read paths (reused handles, aligned window reads) against GDAL's warper.

Every comparison is with ``read_onto_grid_warped``, the original open-and-WarpedVRT reader,
and must hold bit for bit (NaN equal to NaN), on the real sample scene and on COGs made from
it: the speed-ups may never change a pixel.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from pyproj import Transformer

from eoembed import BBox, PointBuffer, SensorSpec, TemporalSpec
from eoembed.bands import SENTINEL2_BANDS
from eoembed.grid import Grid
from eoembed.providers import _raster as raster
from eoembed.providers._raster import (
    _HandlePool,
    clear_handle_cache,
    read_onto_grid,
    read_onto_grid_warped,
)
from eoembed.providers.scenes import _to_dataarray_rio, to_dataarray
from eoembed.testing import make_cog

UTM = "EPSG:32618"
BANDS = tuple(SENTINEL2_BANDS)  # 10, 20 and 60 m bands
# The sample's 10 m bands span x 435730..455060, y 4159990..4179460 (UTM 18N); its 20 m and
# 60 m bands start at x 435720 (and y 4179480 for 60 m), so all share 10 m pixel edges.
WEST, NORTH, EAST, SOUTH = 435730.0, 4179460.0, 455060.0, 4159990.0


def _utm17(x: float, y: float) -> tuple[float, float]:
    fx, fy = Transformer.from_crs(UTM, "EPSG:32617", always_xy=True).transform(x, y)
    return round(fx / 10) * 10, round(fy / 10) * 10


GRIDS: dict[str, Grid] = {
    # aligned, inside: window copies, nearest upsampling by 2 and 6, averages by 2, 3 and 6
    "point-10m": PointBuffer(-75.70, 37.70, 1280).grid(10),
    "point-20m": PointBuffer(-75.65, 37.66, 1280).grid(20),
    "point-60m": PointBuffer(-75.60, 37.64, 1920).grid(60),
    "point-5m": PointBuffer(-75.62, 37.70, 320).grid(5),
    "inside-120m": Grid(UTM, 437040.0, 4178280.0, 120.0, 37, 29),
    "inside-40m": Grid(UTM, 440000.0, 4175000.0, 40.0, 50, 31),
    # boxes snapped from odd edges, in lon/lat (grid in UTM 18N) and in UTM
    "bbox-lonlat-10m": BBox(-75.6913, 37.6107, -75.6612, 37.6433).grid(10),
    "bbox-lonlat-20m": BBox(-75.6913, 37.6107, -75.6612, 37.6433).grid(20),
    "bbox-utm-odd-10m": BBox(440005.3, 4165003.7, 441337.1, 4166011.9, crs=UTM).grid(10),
    # partly outside the scene: west edge, north-west corner, south-east corner
    "west-edge-10m": Grid(UTM, WEST - 1000, 4170000.0, 10.0, 256, 256),
    "nw-corner-20m": Grid(UTM, WEST - 730, NORTH + 540, 20.0, 100, 90),
    "se-corner-60m": Grid(UTM, EAST - 3000, SOUTH + 2400, 60.0, 80, 70),
    "se-corner-10m": Grid(UTM, EAST - 800, SOUTH + 600, 10.0, 128, 128),
    "outside-10m": Grid(UTM, EAST + 5000, NORTH, 10.0, 32, 32),
    # not aligned, or not an integer factor: the warper's business
    "shifted-5m-10m": Grid(UTM, 440005.0, 4166015.0, 10.0, 123, 77),
    "shifted-2.5m-20m": Grid(UTM, 440002.5, 4166010.0, 20.0, 40, 40),
    "factor-1.5-30m": Grid(UTM, 438000.0, 4172000.0, 30.0, 40, 50),
    # another CRS than the files'
    "utm17-10m": Grid("EPSG:32617", *_utm17(442000.0, 4172000.0), 10.0, 64, 64),
    "lonlat-grid": Grid("EPSG:4326", -75.70, 37.70, 1e-4, 90, 70),
}
ALIGNED_INSIDE = ["point-10m", "point-20m", "point-60m", "point-5m", "inside-120m",
                  "bbox-lonlat-10m", "bbox-lonlat-20m", "bbox-utm-odd-10m"]


def assert_same(got: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    assert got.dtype == expected.dtype == np.float32, what
    np.testing.assert_array_equal(got, expected, err_msg=what)  # NaN == NaN here


@pytest.fixture(scope="module")
def band_files(sample_dir: Path) -> dict[str, str]:
    return {band: str(sample_dir / f"s2_{band}.jp2") for band in BANDS}


# --------------------------------------------------------------------- sample scene


@pytest.mark.parametrize("resampling", ["auto", "nearest", "average", "bilinear"])
@pytest.mark.parametrize("name", list(GRIDS))
def test_every_band_equals_the_warper(band_files, name: str, resampling: str) -> None:
    grid = GRIDS[name]
    for band, path in band_files.items():
        expected = read_onto_grid_warped(path, grid, resampling=resampling, nodata=0.0)
        got = read_onto_grid(path, grid, resampling=resampling, nodata=0.0)
        assert_same(got, expected, f"{name} {resampling} {band}")


def test_grids_cover_inside_edges_and_outside(band_files) -> None:
    with rasterio.open(band_files["B04"]) as src:
        assert tuple(src.bounds) == (WEST, SOUTH, EAST, NORTH)
    b04 = {name: read_onto_grid(band_files["B04"], grid, nodata=0.0)
           for name, grid in GRIDS.items()}
    for name in ALIGNED_INSIDE:
        assert not np.isnan(b04[name]).any(), name
    for name in ("west-edge-10m", "nw-corner-20m", "se-corner-60m", "se-corner-10m"):
        assert 0.05 < np.isnan(b04[name]).mean() < 0.95, name
    assert np.isnan(b04["outside-10m"]).all()


@pytest.mark.parametrize("name", [*ALIGNED_INSIDE, "west-edge-10m", "se-corner-10m"])
def test_aligned_grids_never_reach_the_warper(band_files, name, monkeypatch) -> None:
    """The fast path really is taken (else the equality above would prove nothing)."""
    expected = {band: read_onto_grid_warped(path, GRIDS[name], nodata=0.0)
                for band, path in band_files.items()}

    def no_warp(*args, **kwargs):
        raise AssertionError("warped an aligned grid")

    monkeypatch.setattr(raster, "_warp", no_warp)
    for band, path in band_files.items():  # partly outside is fine for nearest upsampling
        assert_same(read_onto_grid(path, GRIDS[name], nodata=0.0), expected[band], band)


def test_averages_straddling_the_file_edge_go_to_the_warper(band_files, monkeypatch) -> None:
    calls: list[str] = []
    real = raster._warp

    def counted(src, *args, **kwargs):
        calls.append(src.name)
        return real(src, *args, **kwargs)

    monkeypatch.setattr(raster, "_warp", counted)
    grid = GRIDS["nw-corner-20m"]
    got = read_onto_grid(band_files["B04"], grid, nodata=0.0)  # 10 m averaged to 20 m
    assert len(calls) == 1
    assert_same(got, read_onto_grid_warped(band_files["B04"], grid, nodata=0.0))


def test_nodata_none_marks_only_outside(band_files) -> None:
    """Without any nodata value, zeros stay zeros and only pixels outside the file are NaN."""
    for name in ("west-edge-10m", "nw-corner-20m", "point-10m"):
        for band in ("B04", "B05", "B01"):
            got = read_onto_grid(band_files[band], GRIDS[name], nodata=None)
            assert_same(got, read_onto_grid_warped(band_files[band], GRIDS[name], nodata=None))


# --------------------------------------------------------------------- synthetic files


@pytest.fixture(scope="module")
def cogs(tmp_path_factory, band_files) -> dict[str, tuple[Path, float | None]]:
    """COGs cut from the sample with holes, in several dtypes and nodata conventions.

    Each is ``(path, nodata to pass)``; all cover x 436000..441120, y 4173880..4179000 at
    10 m (512 px) or 20 m (256 px), with overviews (the COG driver adds them).
    """
    root = tmp_path_factory.mktemp("fastpath")
    window10 = Grid(UTM, 436000.0, 4179000.0, 10.0, 512, 512)
    window20 = Grid(UTM, 436000.0, 4179000.0, 20.0, 256, 256)
    b04 = read_onto_grid_warped(band_files["B04"], window10, nodata=None).astype(np.uint16)
    b05 = read_onto_grid_warped(band_files["B05"], window20, nodata=None).astype(np.uint16)
    hole = (slice(100, 180), slice(300, 420))
    u16 = b04.copy()
    u16[hole] = 0
    u16[::37, ::41] = 0  # scattered single nodata pixels, so some averages have fewer inputs
    i16 = b04.astype(np.int16) - 2000
    i16[hole] = -9999
    i16[5::29, ::31] = -9999
    u8 = (b04 // 16).clip(1, 255).astype(np.uint8)
    u8[hole] = 0
    f32 = b04.astype(np.float32) / 3
    f32[hole] = np.nan
    b05_holes = b05.copy()
    b05_holes[40:90, 10:30] = 0
    return {
        "uint16-nodata0": (make_cog(root / "u16.tif", u16, UTM, window10.transform, nodata=0), None),
        "uint16-collection-nodata": (
            make_cog(root / "u16_none.tif", u16, UTM, window10.transform, nodata=None), 0.0
        ),
        "uint16-no-nodata": (
            make_cog(root / "u16_plain.tif", u16, UTM, window10.transform, nodata=None), None
        ),
        "int16-nodata-9999": (
            make_cog(root / "i16.tif", i16, UTM, window10.transform, nodata=-9999), None
        ),
        "uint8-nodata0": (make_cog(root / "u8.tif", u8, UTM, window10.transform, nodata=0), None),
        "float32-nan": (
            make_cog(root / "f32.tif", f32, UTM, window10.transform, nodata=float("nan")), None
        ),
        "uint16-20m-nodata0": (
            make_cog(root / "b05.tif", b05_holes, UTM, window20.transform, nodata=0), None
        ),
        "uint16-lzw-128px-tiles": (
            make_cog(root / "lzw.tif", u16, UTM, window10.transform, nodata=0, compress="lzw",
                     blocksize=128),
            None,
        ),
    }


COG_GRIDS = {
    "inside-10m": Grid(UTM, 437000.0, 4178000.0, 10.0, 256, 256),
    "inside-20m": Grid(UTM, 437000.0, 4178000.0, 20.0, 128, 128),
    "inside-40m": Grid(UTM, 436000.0, 4179000.0, 40.0, 128, 128),
    "inside-60m": Grid(UTM, 436020.0, 4178940.0, 60.0, 80, 80),
    "inside-5m": Grid(UTM, 437000.0, 4176000.0, 5.0, 300, 200),
    "over-edge-10m": Grid(UTM, 435500.0, 4179300.0, 10.0, 256, 256),
    "over-edge-20m": Grid(UTM, 440000.0, 4175000.0, 20.0, 256, 256),
    "shifted-10m": Grid(UTM, 437003.0, 4177998.0, 10.0, 100, 100),
}


@pytest.mark.parametrize("resampling", ["auto", "nearest", "average"])
@pytest.mark.parametrize("grid_name", list(COG_GRIDS))
def test_nodata_conventions_equal_the_warper(cogs, grid_name, resampling) -> None:
    grid = COG_GRIDS[grid_name]
    for kind, (path, nodata) in cogs.items():
        expected = read_onto_grid_warped(str(path), grid, resampling=resampling, nodata=nodata)
        got = read_onto_grid(str(path), grid, resampling=resampling, nodata=nodata)
        assert_same(got, expected, f"{kind} on {grid_name} ({resampling})")


@pytest.mark.parametrize("grid_name", ["inside-10m", "inside-20m", "inside-40m", "inside-5m"])
def test_integer_cogs_take_the_fast_path(cogs, grid_name, monkeypatch) -> None:
    grid = COG_GRIDS[grid_name]
    expected = {kind: read_onto_grid_warped(str(path), grid, nodata=nodata)
                for kind, (path, nodata) in cogs.items() if not kind.startswith("float")}

    def no_warp(*args, **kwargs):
        raise AssertionError("warped an aligned grid")

    monkeypatch.setattr(raster, "_warp", no_warp)
    for kind, want in expected.items():
        path, nodata = cogs[kind]
        assert_same(read_onto_grid(str(path), grid, nodata=nodata), want, kind)


def test_holes_become_nan_and_zeros_without_nodata_do_not(cogs) -> None:
    grid = COG_GRIDS["inside-10m"]  # starts 100 px right and 100 px down of the files'
    with_nodata = read_onto_grid(str(cogs["uint16-nodata0"][0]), grid)
    without = read_onto_grid(str(cogs["uint16-no-nodata"][0]), grid)
    assert np.isnan(with_nodata[0:80, 200:256]).all()
    assert (without[0:80, 200:256] == 0).all()
    assert not np.isnan(without).any()


def test_per_dataset_mask_goes_to_the_warper(tmp_path, band_files, monkeypatch) -> None:
    """A file whose validity is an internal mask (not a nodata value) is left to GDAL."""
    grid = Grid(UTM, 436000.0, 4179000.0, 10.0, 128, 128)
    data = read_onto_grid_warped(band_files["B04"], grid, nodata=None).astype(np.uint16)
    path = tmp_path / "masked.tif"
    profile = {"driver": "GTiff", "count": 1, "width": 128, "height": 128, "dtype": "uint16",
               "crs": UTM, "transform": grid.transform}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        mask = np.full((128, 128), 255, np.uint8)
        mask[:, :40] = 0
        dst.write_mask(mask)
    calls: list[str] = []
    real = raster._warp
    monkeypatch.setattr(raster, "_warp", lambda *a, **k: calls.append("warp") or real(*a, **k))
    got = read_onto_grid(str(path), grid)
    assert calls == ["warp"]
    assert_same(got, read_onto_grid_warped(str(path), grid))
    assert np.isnan(got[:, :40]).all() and not np.isnan(got[:, 40:]).any()


# --------------------------------------------------------------------- threads and handles


def test_concurrent_reads_equal_serial_reads(band_files) -> None:
    jobs = [(band, name) for band in ("B02", "B05", "B8A", "B01", "B11")
            for name in ("point-10m", "point-20m", "west-edge-10m", "shifted-5m-10m",
                         "utm17-10m", "inside-120m")]
    serial = {job: read_onto_grid(band_files[job[0]], GRIDS[job[1]], nodata=0.0) for job in jobs}
    rng = np.random.default_rng(0)
    order = [jobs[i] for i in rng.permutation(len(jobs) * 4) % len(jobs)]
    threads: set[int] = set()

    def read(job):
        threads.add(threading.get_ident())
        return job, read_onto_grid(band_files[job[0]], GRIDS[job[1]], nodata=0.0)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(read, order))
    assert len(threads) > 1
    for job, got in results:
        assert_same(got, serial[job], str(job))


def test_fetch_on_reader_threads_equals_serial_fetch(sample_provider, monkeypatch) -> None:
    """Remote files are read on the provider's threads; the result must not depend on it."""
    window = TemporalSpec.range("2015-06-23", "2016-06-11")
    sensor = SensorSpec("sentinel-2-l1c", BANDS, 10)
    region = PointBuffer(-75.66, 37.68, 640)
    serial = sample_provider.fetch(region, window, sensor)
    monkeypatch.setattr(raster, "is_local", lambda href: False)
    names: set[str] = set()
    real = raster.read_onto_grid

    def spied(*args, **kwargs):
        names.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(raster, "read_onto_grid", spied)
    threaded = [sample_provider.fetch(region, window, sensor) for _ in range(3)]
    assert names and all(name.startswith("eoembed-sample-read") for name in names)
    for da in threaded:
        np.testing.assert_array_equal(da.values, serial.values)
        assert da.attrs["valid_fraction"] == serial.attrs["valid_fraction"]


def test_fetch_equals_warped_reads(sample_provider, band_files) -> None:
    window = TemporalSpec.range("2015-06-23", "2016-06-11")
    region = PointBuffer(-75.7250, 37.71, 640)  # straddles the scene's west edge
    for scale in (10, 20, 60):
        sensor = SensorSpec("sentinel-2-l1c", BANDS, scale, fill_value=-1)
        da = sample_provider.fetch(region, window, sensor)
        grid = region.grid(scale)
        reads = np.stack(
            [read_onto_grid_warped(band_files[b], grid, nodata=0.0) for b in BANDS]
        )
        # A pixel is an observation only where every band has data (see scenes.fetch).
        reads[:, np.isnan(reads).any(axis=0)] = -1
        for band, expected in zip(BANDS, reads, strict=True):
            assert_same(da.sel(band=band).values, expected, f"{band} at {scale} m")


def test_rewritten_file_is_read_again(tmp_path) -> None:
    grid = Grid(UTM, 0.0, 640.0, 10.0, 64, 64)
    path = tmp_path / "changing.tif"
    first = np.full((64, 64), 7, np.uint16)
    make_cog(path, first, UTM, grid.transform, nodata=0)
    assert (read_onto_grid(str(path), grid) == 7).all()
    make_cog(path, first + 1, UTM, grid.transform, nodata=0)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # coarse clocks
    assert (read_onto_grid(str(path), grid) == 8).all()
    clear_handle_cache()
    assert (read_onto_grid(str(path), grid) == 8).all()


def test_handle_pool_bounds_and_closes(tmp_path) -> None:
    grid = Grid(UTM, 0.0, 160.0, 10.0, 16, 16)
    paths = [str(make_cog(tmp_path / f"f{i}.tif", np.full((16, 16), i + 1, np.uint16), UTM,
                          grid.transform)) for i in range(3)]
    pool = _HandlePool(max_handles=2, per_file=1)
    with pool.lend(paths[0]) as first, pool.lend(paths[0]) as second:
        assert first is not second  # one handle per concurrent user
    assert first.src.closed != second.src.closed  # only one kept: per_file=1
    handles = []
    for path in paths:
        with pool.lend(path) as handle:
            handles.append(handle)
    assert handles[0].src.closed  # least recently used file beyond max_handles
    assert not handles[1].src.closed and not handles[2].src.closed
    with pool.lend(paths[2]) as again:
        assert again is handles[2]  # reused
    with pytest.raises(ValueError), pool.lend(paths[1]) as broken:
        raise ValueError("read failed")
    assert broken.src.closed  # not lent again after an error
    pool.clear()
    assert handles[2].src.closed


def _read_in_child(args):
    path, grid = args
    idle = len(raster._POOL._idle)
    return idle, read_onto_grid(path, grid, nodata=0.0)


def test_forked_child_opens_its_own_handles(band_files) -> None:
    import multiprocessing

    grid = GRIDS["point-20m"]
    parent = read_onto_grid(band_files["B05"], grid, nodata=0.0)
    assert raster._POOL._idle  # the parent keeps its handle
    with multiprocessing.get_context("fork").Pool(1) as pool:
        idle, child = pool.apply(_read_in_child, ((band_files["B05"], grid),))
    assert idle == 0
    assert_same(child, parent)
    assert_same(read_onto_grid(band_files["B05"], grid, nodata=0.0), parent)


# --------------------------------------------------------------------- to_dataarray


@pytest.mark.parametrize(
    "grid",
    [
        GRIDS["point-10m"],
        Grid("EPSG:32617", 974270.0, 4183440.0, 20.0, 7, 5),
        Grid("EPSG:4326", -75.7, 37.7, 1e-4, 6, 4),
        Grid("EPSG:3857", -8427000.0, 4538000.0, 10.0, 3, 2),
    ],
    ids=lambda g: g.crs,
)
@pytest.mark.parametrize("attrs", [{}, {"provider": "x", "scene_ids": ["a"]}, {"crs": "old"},
                                   {"transform": [1, 0, 0, 0, -1, 0], "grid_mapping": "gm"}])
def test_to_dataarray_equals_rioxarray_writers(grid: Grid, attrs) -> None:
    data = np.arange(2 * grid.height * grid.width, dtype=np.float32).reshape(2, *grid.shape)
    got = to_dataarray(data, ["B04", "B08"], grid, attrs)
    expected = _to_dataarray_rio(data, ["B04", "B08"], grid, attrs)
    xr.testing.assert_identical(got, expected)
    assert got.encoding == expected.encoding
    for name in got.coords:
        assert got.coords[name].encoding == expected.coords[name].encoding, name
    assert got.rio.crs == expected.rio.crs
    assert got.rio.transform() == expected.rio.transform() == Affine(*grid.transform[:6])


def test_to_dataarray_copies_unless_told_not_to() -> None:
    grid = Grid(UTM, 0.0, 20.0, 10.0, 2, 2)
    data = np.zeros((1, 2, 2), np.float32)
    assert not np.shares_memory(to_dataarray(data, ["B04"], grid, {}).values, data)
    assert np.shares_memory(to_dataarray(data, ["B04"], grid, {}, copy=False).values, data)
