"""Regions are sane before any I/O: the antimeridian gives small grids, big areas a clear error.

A point at lon 179.999 and a small polygon across 180 (split as RFC 7946 says, or as one ring
with an edge across it) read onto the small grid of their UTM zone, with a lon/lat footprint
split at 180 rather than spanning the globe. A region past the pixel budget
(:func:`eoembed.grid.max_pixels`) is a :class:`~eoembed.errors.RegionTooLargeError` raised
before the provider is called or a file written.
"""

from __future__ import annotations

import math
from importlib.util import find_spec
from pathlib import Path

import pytest
from shapely.geometry import Point, box

from eoembed import BBox, GeometrySpec, PointBuffer, SensorSpec, TemporalSpec
from eoembed.embedders.context import SampleContext
from eoembed.errors import NoDataError, RegionTooLargeError, SpecError
from eoembed.grid import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, max_pixels
from eoembed.testing import CountingProvider, FakeProvider

needs_torch = pytest.mark.skipif(find_spec("torch") is None, reason="needs torch")

WINDOW = TemporalSpec.range("2021-06-01", "2021-07-01")
ACROSS = {"type": "Polygon", "coordinates": [[[179.9, 0.0], [-179.9, 0.0], [-179.9, 0.1],
                                              [179.9, 0.1], [179.9, 0.0]]]}
"""A 0.2 x 0.1 degree box across 180, written as one ring with edges across it."""
SPLIT = {"type": "MultiPolygon", "coordinates": [
    [[[179.9, 0.0], [180.0, 0.0], [180.0, 0.1], [179.9, 0.1], [179.9, 0.0]]],
    [[[-180.0, 0.0], [-179.9, 0.0], [-179.9, 0.1], [-180.0, 0.1], [-180.0, 0.0]]],
]}
"""The same box split at 180, as RFC 7946 writes it."""


# -- the antimeridian ---------------------------------------------------------------------------


def test_point_at_179_999_is_a_square_in_its_zone() -> None:
    spec = PointBuffer(179.999, 10.0, 1000)
    grid = spec.grid(10)
    assert grid.crs == "EPSG:32660" and grid.shape == (200, 200)
    footprint = spec.lonlat_geometry()
    assert footprint.geom_type == "MultiPolygon" and len(footprint.geoms) == 2
    west, east = sorted(footprint.geoms, key=lambda g: g.bounds[0])
    assert west.bounds[0] == pytest.approx(-180.0) and east.bounds[2] == pytest.approx(180.0)
    # 2 km of longitude at 10 N is 0.0183 degrees, split between the two sides
    width = (west.bounds[2] - west.bounds[0]) + (east.bounds[2] - east.bounds[0])
    assert width == pytest.approx(2000 / (111_320 * math.cos(math.radians(10))), rel=0.01)
    lon, lat = spec.lonlat_centre()
    assert lon == pytest.approx(179.999, abs=1e-6) and lat == pytest.approx(10.0, abs=1e-5)
    context = SampleContext.from_specs(spec, WINDOW, 10.0)
    assert context.lon == pytest.approx(179.999, abs=1e-6)


@pytest.mark.parametrize("geometry", [ACROSS, SPLIT], ids=["one-ring", "split"])
def test_polygon_across_180_reads_onto_a_small_grid(geometry: dict) -> None:
    spec = GeometrySpec.from_geometry(geometry)
    grid = spec.grid(10)
    assert grid.crs == "EPSG:32660"
    # 0.2 x 0.1 degrees at the equator: about 22.3 x 11.1 km
    assert grid.width == pytest.approx(22_264 / 10, rel=0.01)
    assert grid.height == pytest.approx(11_070 / 10, rel=0.01)
    footprint = spec.lonlat_geometry()
    assert footprint.geom_type == "MultiPolygon"
    assert footprint.area == pytest.approx(0.02, rel=1e-6)  # not the 359.8 degrees around
    assert all(-180 <= x <= 180 for x in (footprint.bounds[0], footprint.bounds[2]))
    lon, lat = spec.lonlat_centre()
    assert abs(lon) == pytest.approx(180.0, abs=1e-6) and lat == pytest.approx(0.05)


def test_both_spellings_give_the_same_grid() -> None:
    one = GeometrySpec.from_geometry(ACROSS).grid(10)
    two = GeometrySpec.from_geometry(SPLIT).grid(10)
    assert one == two


def test_square_round_the_pole_covers_the_pole() -> None:
    spec = PointBuffer(0.0, 90.0, 1280)
    assert spec.grid(10).shape == (256, 256) and spec.grid_crs() == "EPSG:32661"
    footprint = spec.lonlat_geometry()
    assert footprint.is_valid and footprint.covers(Point(0.0, 90.0))
    assert footprint.bounds[1] > 89.98


def test_a_provider_elsewhere_has_no_data_for_a_point_at_179_999() -> None:
    """The footprint no longer spans the globe, so it meets only what is near 180."""
    spec = PointBuffer(179.999, 10.0, 1000)
    sensor = SensorSpec("sentinel-2-l1c", ("B04",), 10.0)
    with pytest.raises(NoDataError):
        FakeProvider(lonlat_bounds=(0.0, 9.0, 1.0, 11.0)).fetch(spec, WINDOW, sensor)
    near = FakeProvider(lonlat_bounds=(-180.0, 9.0, -179.5, 11.0))
    assert near.fetch(spec, WINDOW, sensor).shape == (1, 200, 200)


@needs_torch
def test_embedding_at_179_999_fetches_one_small_grid() -> None:
    from eoembed import get_embedding

    counting = CountingProvider(FakeProvider())
    emb = get_embedding("mosaiks", spatial=PointBuffer(179.999, 10.0, 640), temporal=WINDOW,
                        provider=counting)
    assert len(counting.calls) == 1
    grid = emb.meta["input_grid"]
    assert (grid["crs"], grid["width"], grid["height"]) == ("EPSG:32660", 128, 128)


# -- the pixel budget ---------------------------------------------------------------------------


def test_ten_degree_box_is_refused_with_the_budget_named() -> None:
    with pytest.raises(RegionTooLargeError) as info:
        BBox(0, 0, 10, 10).grid(10)
    message = str(info.value)
    assert MAX_PIXELS_ENV in message and f"{DEFAULT_MAX_PIXELS:,}" in message
    assert "111487 x 111360 px" in message
    assert isinstance(info.value, SpecError) and isinstance(info.value, ValueError)
    assert BBox(0, 0, 10, 10).grid(1000).shape == (1114, 1115)  # a coarser scale fits


def test_budget_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = PointBuffer(-75.7, 37.7, 320)  # 64 x 64 px at 10 m
    monkeypatch.setenv(MAX_PIXELS_ENV, "4096")
    assert max_pixels() == 4096 and spec.grid(10).shape == (64, 64)
    monkeypatch.setenv(MAX_PIXELS_ENV, "4095")
    with pytest.raises(RegionTooLargeError):
        spec.grid(10)
    for bad in ("lots", "inf", "2.7", "0"):
        monkeypatch.setenv(MAX_PIXELS_ENV, bad)
        with pytest.raises(SpecError, match=MAX_PIXELS_ENV):
            spec.grid(10)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    assert max_pixels() == DEFAULT_MAX_PIXELS


@needs_torch
def test_get_embedding_refuses_before_calling_the_provider() -> None:
    from eoembed import get_embedding

    counting = CountingProvider(FakeProvider())
    with pytest.raises(RegionTooLargeError):
        get_embedding("mosaiks", spatial=BBox(0, 0, 10, 10), temporal=WINDOW,
                      provider=counting)
    assert counting.calls == []


@needs_torch
@pytest.mark.skipif(find_spec("pyarrow") is None, reason="needs the export extra")
def test_export_refuses_before_calling_the_provider_or_writing(tmp_path: Path) -> None:
    from eoembed import export_batch

    counting = CountingProvider(FakeProvider())
    regions = [PointBuffer(-75.7, 37.7, 320), GeometrySpec.from_geometry(box(0, 0, 10, 10))]
    with pytest.raises(RegionTooLargeError, match=r"regions\[1\]"):
        export_batch(regions, "mosaiks", temporal=WINDOW, out=tmp_path / "out",
                     provider=counting, progress=False)
    assert counting.calls == [] and not (tmp_path / "out").exists()


def test_projected_box_far_outside_its_crs_is_refused() -> None:
    with pytest.raises(RegionTooLargeError):
        BBox(0, 0, 1e9, 1e9, crs="EPSG:32618").grid(10)


@pytest.mark.parametrize("bounds", [(179.0, 0.0, 180.0, 1.0), (-180.0, 0.0, -179.0, 1.0),
                                    (-1.0, 0.0, 1.0, 1.0)],
                         ids=["touches-east", "touches-west", "greenwich"])
def test_regions_that_do_not_cross_keep_their_polygon(bounds: tuple[float, ...]) -> None:
    spec = GeometrySpec.from_geometry(box(*bounds))
    footprint = spec.lonlat_geometry()
    assert footprint.geom_type == "Polygon"
    assert footprint.bounds == pytest.approx(bounds)
    assert spec.lonlat_centre() == pytest.approx(
        ((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2))
