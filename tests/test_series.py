"""Time series from scene providers: frames, their dates, bins and composites.

The collection is built from the real sample scene: COG copies of its B04 and B08 under
SMALL's grid, each scene offset by a known value so every frame can be told apart, plus the
original sample files with their unknown acquisition day. Expected pixels come from reading
the sample files with rasterio, never from eoembed's own output.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from eoembed import PointBuffer, SensorSpec, TemporalSpec
from eoembed.errors import NoDataError, SpecError
from eoembed.grid import Grid
from eoembed.providers.base import Provider, SeriesProvider
from eoembed.providers.local import LocalProvider
from eoembed.providers.series import plan_frames
from eoembed.testing import FakeProvider, make_cog, make_stac_catalog, make_stac_item

L1C = "sentinel-2-l1c"
UTM = "EPSG:32618"
BANDS = ("B08", "B04")  # not the files' order
SMALL = PointBuffer(-75.70, 37.70, 320)  # 64 x 64 pixels at 10 m
WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")  # holds the sample's whole range
SAMPLE_ID = "sample"
NAT = np.datetime64("NaT", "ns")


def day(text: str) -> np.datetime64:
    return np.datetime64(text, "ns")


def read_window(path: Path, grid: Grid) -> np.ndarray:
    """The file's pixels under ``grid`` (aligned with the file's pixels)."""
    with rasterio.open(path) as src:
        window = from_bounds(*grid.bounds, transform=src.transform)
        return src.read(1, window=window.round_offsets().round_lengths())


# Known-date scenes: id -> (date, offset, cloud cover, columns covered).
# t1-west and t1-east are adjacent tiles of one day that overlap in columns 24..39.
KNOWN = {
    "t1-west": ("2015-08-05", 100, 1.0, (0, 40)),
    "t1-east": ("2015-08-05", 200, 2.0, (24, 64)),
    "t2": ("2015-10-20", 300, 10.0, (0, 64)),
    "t2b": ("2015-11-10", 400, 20.0, (0, 64)),
    "t3": ("2016-03-01", 500, 5.0, (0, 64)),  # rows 0..7 are nodata
    "cloudy": ("2015-09-15", 900, 80.0, (0, 64)),  # over the default cloudy_pct=30
}


@pytest.fixture(scope="module")
def collection(tmp_path_factory, sample_dir):
    """A LocalProvider over the known-date scenes and the sample; and the sample's pixels."""
    root = tmp_path_factory.mktemp("series")
    grid = SMALL.grid(10)
    base = {b: read_window(sample_dir / f"s2_{b}.jp2", grid).astype(np.uint16) for b in BANDS}
    items = []
    for scene_id, (date, offset, cloud, (c0, c1)) in KNOWN.items():
        tile = Grid(grid.crs, grid.left + 10 * c0, grid.top, 10.0, c1 - c0, 64)
        assets = {}
        for band in BANDS:
            data = base[band][:, c0:c1] + offset
            if scene_id == "t3":
                data[:8] = 0
            assets[band] = make_cog(
                root / scene_id / f"{band}.tif", data, UTM, tile.transform, nodata=0
            )
        items.append(make_stac_item(scene_id, assets, date=date, cloud_cover=cloud))
    # The sample itself: day unknown, STAC range inclusive of its last day 2016-06-10.
    items.append(make_stac_item(
        SAMPLE_ID, {b: sample_dir / f"s2_{b}.jp2" for b in BANDS},
        start="2015-06-23", end="2016-06-10",
    ))
    provider = LocalProvider.from_stac(make_stac_catalog(root / "stac", items))
    return provider, {b: v.astype(np.float32) for b, v in base.items()}


def expected(base, scene_id: str) -> np.ndarray:
    """``(band, y, x)`` of one known scene on SMALL's grid, NaN where it has no data."""
    _, offset, _, (c0, c1) = KNOWN[scene_id]
    out = np.full((len(BANDS), 64, 64), np.nan, np.float32)
    for i, band in enumerate(BANDS):
        out[i, :, c0:c1] = base[band][:, c0:c1] + offset
    if scene_id == "t3":
        out[:, :8] = np.nan
    return out


def sample_pixels(base) -> np.ndarray:
    return np.stack([base[b] for b in BANDS])


def series(provider, window=WINDOW, frames=None, **sensor):
    sensor.setdefault("fill_value", -1)
    return provider.fetch_series(SMALL, window, SensorSpec(L1C, BANDS, **sensor), frames=frames)


@pytest.fixture(scope="module")
def per_scene(collection):
    provider, _ = collection
    return series(provider)


# --------------------------------------------------------------------- one frame per scene


def test_providers_implement_the_series_protocol(collection, sample_provider) -> None:
    provider, _ = collection
    assert isinstance(provider, SeriesProvider)
    assert isinstance(provider, Provider)
    assert isinstance(sample_provider, SeriesProvider)
    assert not isinstance(FakeProvider(), SeriesProvider)


def test_one_frame_per_scene_in_date_order(per_scene) -> None:
    da = per_scene
    assert da.dims == ("time", "band", "y", "x")
    assert da.shape == (5, 2, 64, 64)
    assert da.dtype == np.float32
    assert list(da.band.values) == list(BANDS)
    # The sample's day is unknown: NaT, and its range; known days are [day, day + 1).
    np.testing.assert_array_equal(
        da.time.values,
        [NAT, day("2015-08-05"), day("2015-10-20"), day("2015-11-10"), day("2016-03-01")],
    )
    np.testing.assert_array_equal(
        da.time_start.values,
        [day(d) for d in ("2015-06-23", "2015-08-05", "2015-10-20", "2015-11-10", "2016-03-01")],
    )
    np.testing.assert_array_equal(
        da.time_end.values,
        [day(d) for d in ("2016-06-11", "2015-08-06", "2015-10-21", "2015-11-11", "2016-03-02")],
    )
    # Same-day tiles share a frame, least cloudy first; the cloudy scene is left out.
    assert da.attrs["scene_ids"] == [[SAMPLE_ID], ["t1-west", "t1-east"], ["t2"], ["t2b"], ["t3"]]
    assert da.attrs["scene_times"][0] == [
        {"datetime": None, "start_datetime": "2015-06-23", "end_datetime": "2016-06-11"}
    ]
    assert da.attrs["scene_times"][2] == [
        {"datetime": "2015-10-20", "start_datetime": "2015-10-20", "end_datetime": "2015-10-21"}
    ]
    assert da.attrs["frame_composite"] == "mosaic"
    assert da.attrs["unplaced_scene_ids"] == []
    assert da.frame_valid.values.all()
    np.testing.assert_allclose(da.valid_fraction.values, [1, 1, 1, 1, 1 - 8 / 64])


def test_frame_pixels_are_each_scenes(per_scene, collection) -> None:
    _, base = collection
    da = per_scene
    np.testing.assert_array_equal(da.values[0], sample_pixels(base))
    # t1 tiles mosaicked: west (less cloudy) wins the overlap, east fills the rest.
    t1 = expected(base, "t1-west")
    east = expected(base, "t1-east")
    t1[:, :, 40:] = east[:, :, 40:]
    np.testing.assert_array_equal(da.values[1], t1)
    np.testing.assert_array_equal(da.values[2], expected(base, "t2"))
    np.testing.assert_array_equal(da.values[3], expected(base, "t2b"))
    t3 = np.nan_to_num(expected(base, "t3"), nan=-1)  # fill_value where t3 has no data
    np.testing.assert_array_equal(da.values[4], t3)


def test_grid_crs_and_transform_equal_fetch(per_scene, collection) -> None:
    provider, _ = collection
    single = provider.fetch(SMALL, WINDOW, SensorSpec(L1C, BANDS))
    da = per_scene
    assert da.rio.crs == single.rio.crs
    assert da.rio.crs.to_epsg() == 32618
    assert tuple(da.rio.transform()) == pytest.approx(tuple(single.rio.transform()))
    assert tuple(da.rio.transform()) == pytest.approx(tuple(SMALL.grid(10).transform))
    np.testing.assert_array_equal(da.x.values, single.x.values)
    np.testing.assert_array_equal(da.y.values, single.y.values)
    assert da.spatial_ref.attrs == single.spatial_ref.attrs
    assert da.attrs["provider"] == "local"
    assert da.attrs["processing_level"] == "L1C"


def test_explicit_grid_is_used(collection) -> None:
    provider, _ = collection
    grid = SMALL.grid(20)
    sensor = SensorSpec(L1C, BANDS, scale_m=20)
    da = provider.fetch_series(SMALL, WINDOW, sensor, grid=grid)
    single = provider.fetch(SMALL, WINDOW, sensor, grid=grid)
    assert da.shape == (5, 2, 32, 32)
    assert tuple(da.rio.transform()) == pytest.approx(tuple(single.rio.transform()))


@pytest.mark.parametrize(
    ("window", "frames"),
    [
        (WINDOW, 1),  # all scenes, composited by median
        (TemporalSpec.range("2015-10-20", "2015-10-21"), None),  # one scene
        (TemporalSpec.range("2015-10", "2015-12"), 1),  # two scenes
    ],
)
def test_single_frame_series_equals_fetch(collection, window, frames) -> None:
    provider, _ = collection
    sensor = SensorSpec(L1C, BANDS, fill_value=-1)
    single = provider.fetch(SMALL, window, sensor)
    da = provider.fetch_series(SMALL, window, sensor, frames=frames)
    assert da.sizes["time"] == 1
    np.testing.assert_array_equal(da.values[0], single.values)
    np.testing.assert_array_equal(da.clear_count.values[0], single.clear_count.values)
    assert da.attrs["scene_ids"] == [single.attrs["scene_ids"]]
    assert da.valid_fraction.values[0] == single.attrs["valid_fraction"]


def test_same_day_frame_equals_a_mosaic_fetch(collection) -> None:
    provider, _ = collection
    one_day = TemporalSpec.range("2015-08-05", "2015-08-06")
    sensor = SensorSpec(L1C, BANDS, composite="mosaic")
    da = provider.fetch_series(SMALL, one_day, sensor)
    np.testing.assert_array_equal(da.values[0], provider.fetch(SMALL, one_day, sensor).values)


def test_cloud_limit_applies_to_frames(collection, per_scene) -> None:
    provider, base = collection
    da = series(provider, cloudy_pct=100)
    assert ["cloudy"] in da.attrs["scene_ids"]
    i = da.attrs["scene_ids"].index(["cloudy"])
    assert da.time.values[i] == day("2015-09-15")
    np.testing.assert_array_equal(da.values[i], expected(base, "cloudy"))
    assert da.sizes["time"] == per_scene.sizes["time"] + 1


# --------------------------------------------------------------------- equal bins


BINNED = TemporalSpec.range("2015-08-01", "2016-04-01")  # 244 days: bins of 61 days


@pytest.mark.parametrize("composite", ["median", "mosaic"])
def test_bins_bounds_composites_and_empty_flags(collection, composite) -> None:
    provider, base = collection
    da = series(provider, BINNED, frames=4, composite=composite)
    edges = ["2015-08-01", "2015-10-01", "2015-12-01", "2016-01-31", "2016-04-01"]
    np.testing.assert_array_equal(da.time_start.values, [day(e) for e in edges[:-1]])
    np.testing.assert_array_equal(da.time_end.values, [day(e) for e in edges[1:]])
    centres = [day(a) + (day(b) - day(a)) // 2 for a, b in itertools.pairwise(edges)]
    np.testing.assert_array_equal(da.time.values, centres)
    assert da.time.values[0] == np.datetime64("2015-08-31T12:00", "ns")
    assert da.attrs["scene_ids"] == [["t1-west", "t1-east"], ["t2", "t2b"], [], ["t3"]]
    assert da.attrs["frame_composite"] == composite
    np.testing.assert_array_equal(da.frame_valid.values, [True, True, False, True])
    np.testing.assert_allclose(da.valid_fraction.values, [1, 1, 0, 1 - 8 / 64])
    # bin 0: the two tiles; in the overlap the median is their mean, the mosaic the west tile
    west, east = expected(base, "t1-west"), expected(base, "t1-east")
    bin0 = np.where(np.isnan(west), east, west)
    if composite == "median":
        bin0[:, :, 24:40] = (west[:, :, 24:40] + east[:, :, 24:40]) / 2
    np.testing.assert_array_equal(da.values[0], bin0)
    # bin 1: t2 (+300, cloud 10) and t2b (+400, cloud 20)
    t2 = expected(base, "t2")
    np.testing.assert_array_equal(da.values[1], t2 + (50 if composite == "median" else 0))
    # bin 2: empty, kept and filled so the series has a fixed length
    assert (da.values[2] == -1).all()
    np.testing.assert_array_equal(da.values[3], np.nan_to_num(expected(base, "t3"), nan=-1))


def test_uneven_window_bins_cover_it_in_whole_days(collection) -> None:
    provider, _ = collection
    window = TemporalSpec.range("2015-08-01", "2015-08-11")  # 10 days in 3 bins: 3, 3, 4
    da = series(provider, window, frames=3)
    np.testing.assert_array_equal(
        da.time_start.values, [day("2015-08-01"), day("2015-08-04"), day("2015-08-07")]
    )
    np.testing.assert_array_equal(
        da.time_end.values, [day("2015-08-04"), day("2015-08-07"), day("2015-08-11")]
    )
    assert da.attrs["scene_ids"] == [[], ["t1-west", "t1-east"], []]
    np.testing.assert_array_equal(da.frame_valid.values, [False, True, False])


def test_scene_with_unknown_day_spanning_bins_is_left_out(collection) -> None:
    provider, _ = collection
    with pytest.warns(UserWarning, match=rf"{SAMPLE_ID} \[2015-06-23, 2016-06-11\)"):
        da = series(provider, WINDOW, frames=2)
    assert da.attrs["unplaced_scene_ids"] == [SAMPLE_ID]
    assert da.attrs["scene_ids"] == [["t1-west", "t1-east", "t2", "t2b"], ["t3"]]
    np.testing.assert_array_equal(da.time_end.values, [day("2015-12-17"), day("2016-06-11")])
    # ... but one bin covering its whole range holds it
    one = series(provider, WINDOW, frames=1)
    assert SAMPLE_ID in one.attrs["scene_ids"][0]
    assert one.attrs["unplaced_scene_ids"] == []


def test_only_unplaceable_scenes_is_no_data(sample_provider) -> None:
    sensor = SensorSpec(L1C, BANDS)
    with pytest.raises(NoDataError, match="only known as a range"):
        sample_provider.fetch_series(SMALL, WINDOW, sensor, frames=3)
    # one frame per scene keeps it, with its range and no invented date
    da = sample_provider.fetch_series(SMALL, WINDOW, sensor)
    assert np.isnat(da.time.values[0])
    assert da.time_start.values[0] == day("2015-06-23")
    assert da.time_end.values[0] == day("2016-06-11")


def test_plan_frames_merges_only_known_days() -> None:
    from eoembed.providers.base import Scene

    def scene(scene_id: str, start: str, end: str) -> Scene:
        return Scene(scene_id, L1C, dt.date.fromisoformat(start), dt.date.fromisoformat(end),
                     "POINT (0 0)", {})

    scenes = [
        scene("r1", "2020-01-01", "2020-01-10"),
        scene("r2", "2020-01-01", "2020-01-10"),  # same range, maybe another day
        scene("d1", "2020-01-05", "2020-01-06"),
        scene("d2", "2020-01-05", "2020-01-06"),
        scene("d0", "2020-01-01", "2020-01-02"),
    ]
    plan, unplaced = plan_frames(scenes, TemporalSpec.range("2020-01", "2020-02"), None)
    assert unplaced == []
    assert [[s.id for s in f.scenes] for f in plan] == [["d0"], ["r1"], ["r2"], ["d1", "d2"]]
    assert [np.isnat(f.time) for f in plan] == [False, True, True, False]
    assert plan[3].time == day("2020-01-05")
    assert (plan[1].start, plan[1].end) == (dt.date(2020, 1, 1), dt.date(2020, 1, 10))


# --------------------------------------------------------------------- cloud masks


L2A = "sentinel-2-l2a"
MASK_WINDOW = TemporalSpec.range("2015-08", "2015-09")


@pytest.fixture(scope="module")
def masked_collection(tmp_path_factory, sample_dir):
    """L2A scenes of B04 with a 20 m SCL layer: cloud (9) in m1's rows 0..15, shadow (3) in
    m2's columns 0..15 (10 m pixels), vegetation (4) elsewhere; m3 has no SCL at all."""
    root = tmp_path_factory.mktemp("masked")
    grid = SMALL.grid(10)
    coarse = Grid(grid.crs, grid.left, grid.top, 20.0, 32, 32)  # 2 x 2 pixels of grid
    base = read_window(sample_dir / "s2_B04.jp2", grid).astype(np.uint16)
    items = []
    for scene_id, date, offset in [("m1", "2015-08-05", 100), ("m2", "2015-08-20", 200),
                                   ("m3", "2015-08-25", 300)]:
        assets = {"B04": make_cog(root / scene_id / "B04.tif", base + offset, UTM,
                                  grid.transform, nodata=0)}
        if scene_id != "m3":
            scl = np.full((32, 32), 4, np.uint8)
            if scene_id == "m1":
                scl[:8] = 9
            else:
                scl[:, :8] = 3
            assets["SCL"] = make_cog(root / scene_id / "SCL.tif", scl, UTM, coarse.transform)
        items.append(make_stac_item(scene_id, assets, date=date, cloud_cover=5,
                                    collection=L2A))
    provider = LocalProvider.from_stac(make_stac_catalog(root / "stac", items))
    return provider, base.astype(np.float32)


def test_frames_are_cloud_masked(masked_collection) -> None:
    provider, base = masked_collection
    sensor = SensorSpec(L2A, ("B04",), fill_value=-1)
    da = provider.fetch_series(SMALL, MASK_WINDOW, sensor)
    assert da.attrs["scene_ids"] == [["m1"], ["m2"], ["m3"]]
    assert da.attrs["mask"] == "scl"
    assert da.attrs["masked_scene_ids"] == ["m1", "m2"]
    m1 = base + 100
    m1[:16] = -1  # under m1's cloud
    m2 = base + 200
    m2[:, :16] = -1  # under m2's shadow
    np.testing.assert_array_equal(da.values[:, 0], [m1, m2, base + 300])  # m3 unmasked
    np.testing.assert_array_equal(da.clear_count.values, [m1 != -1, m2 != -1, base > -1])
    np.testing.assert_allclose(da.valid_fraction.values, [0.75, 0.75, 1.0])
    none = provider.fetch_series(SMALL, MASK_WINDOW, SensorSpec(L2A, ("B04",), mask="none"))
    assert none.attrs["mask"] == "none"
    np.testing.assert_array_equal(none.values[:, 0], [base + 100, base + 200, base + 300])


def test_masked_bin_composite_equals_fetch(masked_collection) -> None:
    provider, base = masked_collection
    sensor = SensorSpec(L2A, ("B04",), fill_value=-1)
    da = provider.fetch_series(SMALL, MASK_WINDOW, sensor, frames=1)
    single = provider.fetch(SMALL, MASK_WINDOW, sensor)
    np.testing.assert_array_equal(da.values[0], single.values)
    np.testing.assert_array_equal(da.clear_count.values[0], single.clear_count.values)
    count = np.full((64, 64), 3)
    count[:16] -= 1
    count[:, :16] -= 1
    np.testing.assert_array_equal(da.clear_count.values[0], count)
    # where all three are clear the median is m2's; under m1's cloud only m2 and m3 count
    np.testing.assert_array_equal(da.values[0, 0, 16:, 16:], base[16:, 16:] + 200)
    np.testing.assert_array_equal(da.values[0, 0, :16, 16:], base[:16, 16:] + 250)
    np.testing.assert_array_equal(da.values[0, 0, :16, :16], base[:16, :16] + 300)


# --------------------------------------------------------------------- errors, STAC


@pytest.mark.parametrize("frames", [0, -2, 2.5, True, "3", 355])
def test_bad_frames_is_spec_error_before_io(collection, monkeypatch, frames) -> None:
    import eoembed.providers._raster as raster

    provider, _ = collection

    def no_reads(*args, **kwargs):
        raise AssertionError("read before checking frames")

    monkeypatch.setattr(raster, "read_onto_grid", no_reads)
    monkeypatch.setattr(provider, "search", no_reads)
    with pytest.raises(SpecError, match="frames"):
        series(provider, WINDOW, frames=frames)


def test_numpy_integer_frames_are_accepted(collection) -> None:
    provider, _ = collection
    assert series(provider, BINNED, frames=np.int64(2)).sizes["time"] == 2


def test_stac_provider_series_reads_its_search_results(collection, monkeypatch) -> None:
    pytest.importorskip("pystac_client")
    from eoembed.providers.stac import StacProvider

    local, _ = collection
    stac = StacProvider("http://127.0.0.1:9/stac", collections=[L1C])
    assert isinstance(stac, SeriesProvider)
    searched = []

    def query(spatial, temporal, sensor):
        searched.append(temporal)
        return list(local.scenes)

    monkeypatch.setattr(stac, "_query", query)
    da = series(stac, BINNED, frames=4)
    want = series(local, BINNED, frames=4)
    assert searched == [BINNED]  # one search for the whole window
    np.testing.assert_array_equal(da.values, want.values)
    np.testing.assert_array_equal(da.time.values, want.time.values)
    assert da.attrs["scene_ids"] == want.attrs["scene_ids"]
    assert da.attrs["provider"] == "stac"
    assert da.attrs["stac_api"] == "http://127.0.0.1:9/stac"
    with pytest.raises(SpecError, match="frames"):
        series(stac, BINNED, frames=0)
    assert searched == [BINNED]  # the bad value never reached the API
