"""Grids derived from spatial specs: CRS, size, centring, ground distances, snapping."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pyproj import Geod, Transformer
from rasterio.transform import from_origin
from shapely.geometry import box

from eoembed import BBox, GeometrySpec, PointBuffer
from eoembed.grid import Grid, local_metric_crs, reproject_geometry

GEOD = Geod(ellps="WGS84")


def _project(lon: float, lat: float, crs: str) -> tuple[float, float]:
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)


def _to_lonlat(x: float, y: float, crs: str) -> tuple[float, float]:
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)


def _on_multiple(value: float, step: float) -> bool:
    return abs(value / step - round(value / step)) < 1e-6


def test_sample_point_grid() -> None:
    grid = PointBuffer(-75.70, 37.70, 1280).grid(10)
    assert grid.crs == "EPSG:32618"
    assert grid.shape == (256, 256)
    assert (grid.width, grid.height, grid.resolution) == (256, 256, 10)
    left, bottom, right, top = grid.bounds
    assert right - left == pytest.approx(2560)
    assert top - bottom == pytest.approx(2560)
    x, y = _project(-75.70, 37.70, "EPSG:32618")
    assert abs((left + right) / 2 - x) <= 5.0
    assert abs((bottom + top) / 2 - y) <= 5.0
    assert grid.transform == from_origin(left, top, 10, 10)


@pytest.mark.parametrize(
    ("lon", "lat", "crs"),
    [
        (10.9, 60.0, "EPSG:32632"),  # 1.9 deg from the central meridian at 60N
        (170.5, -45.0, "EPSG:32759"),
        (-75.70, 37.70, "EPSG:32618"),
        (-77.9, 0.2, "EPSG:32618"),  # near the edge of the zone at the equator
    ],
)
@pytest.mark.parametrize("buffer_m", [1280.0, 5000.0])
def test_ground_width_is_two_buffers_at_any_latitude(
    lon: float, lat: float, crs: str, buffer_m: float
) -> None:
    grid = PointBuffer(lon, lat, buffer_m).grid(10)
    assert grid.crs == crs
    left, bottom, right, top = grid.bounds
    mid_y, mid_x = (bottom + top) / 2, (left + right) / 2
    west = _to_lonlat(left, mid_y, crs)
    east = _to_lonlat(right, mid_y, crs)
    south = _to_lonlat(mid_x, bottom, crs)
    north = _to_lonlat(mid_x, top, crs)
    width = GEOD.inv(*west, *east)[2]
    height = GEOD.inv(*south, *north)[2]
    assert width == pytest.approx(2 * buffer_m, rel=5e-3), (width, 2 * buffer_m)
    assert height == pytest.approx(2 * buffer_m, rel=5e-3), (height, 2 * buffer_m)
    # and the grid is centred on the point (to half a pixel) in ground terms too
    centre = _to_lonlat(mid_x, mid_y, crs)
    assert GEOD.inv(lon, lat, *centre)[2] <= 5 * math.sqrt(2) * 1.001


def test_web_mercator_would_have_been_wrong_at_60n() -> None:
    """Why grids are in UTM: 2560 Web Mercator "metres" at 60N are about 1280 ground metres."""
    x, y = _project(10.9, 60.0, "EPSG:3857")
    west = _to_lonlat(x - 1280, y, "EPSG:3857")
    east = _to_lonlat(x + 1280, y, "EPSG:3857")
    assert GEOD.inv(*west, *east)[2] == pytest.approx(1280, rel=0.01)


@pytest.mark.parametrize("buffer_m", [1280.0, 1285.0, 640.0, 35.0, 3.0])
@pytest.mark.parametrize("resolution", [10.0, 20.0, 60.0])
@pytest.mark.parametrize(("lon", "lat"), [(-75.70, 37.70), (-75.70004, 37.70004), (12.345, -3.21)])
def test_centred_grid_is_centred_within_half_a_pixel_and_snapped(
    buffer_m: float, resolution: float, lon: float, lat: float
) -> None:
    grid = PointBuffer(lon, lat, buffer_m).grid(resolution)
    x, y = _project(lon, lat, grid.crs)
    left, bottom, right, top = grid.bounds
    assert abs((left + right) / 2 - x) <= resolution / 2 + 1e-6, ((left + right) / 2, x)
    assert abs((bottom + top) / 2 - y) <= resolution / 2 + 1e-6, ((bottom + top) / 2, y)
    assert grid.width == grid.height
    # the side is 2*buffer rounded up to whole pixels
    assert grid.width == max(1, math.ceil(2 * buffer_m / resolution - 1e-9))
    for edge in grid.bounds:
        assert _on_multiple(edge, resolution), (edge, resolution)


def test_grids_of_overlapping_regions_share_pixel_edges() -> None:
    a = PointBuffer(-75.70, 37.70, 1280).grid(10)
    b = BBox(-75.705, 37.695, -75.69, 37.71).grid(10)
    c = PointBuffer(-75.6987, 37.7013, 500).grid(10)
    for g in (b, c):
        assert g.crs == a.crs
        assert _on_multiple(g.left - a.left, 10) and _on_multiple(g.top - a.top, 10)
        assert np.isin(np.round(g.xs(), 6), np.round(a.xs(), 6)).any()


@pytest.mark.parametrize("resolution", [10.0, 20.0, 30.0, 60.0])
def test_bbox_grid_covers_the_box_minimally(resolution: float) -> None:
    bbox = BBox(-75.713, 37.688, -75.6891, 37.7093)
    grid = bbox.grid(resolution)
    assert grid.crs == "EPSG:32618"
    footprint = reproject_geometry(bbox.geometry(), "EPSG:4326", grid.crs)
    assert box(*grid.bounds).contains(footprint)
    # minimal: each edge is less than a pixel beyond the footprint's bounds
    fl, fb, fr, ft = footprint.bounds
    left, bottom, right, top = grid.bounds
    assert 0 <= fl - left < resolution
    assert 0 <= fb - bottom < resolution
    assert 0 <= right - fr < resolution
    assert 0 <= top - ft < resolution
    for edge in grid.bounds:
        assert _on_multiple(edge, resolution)


def test_projected_bbox_grid_is_exact_when_already_aligned() -> None:
    grid = BBox(437000, 4170000, 439000, 4172000, crs="EPSG:32618").grid(10)
    assert grid.crs == "EPSG:32618"
    assert grid.bounds == (437000, 4170000, 439000, 4172000)
    assert grid.shape == (200, 200)
    # an unaligned box grows outward to the next multiples of the resolution
    grid = BBox(437005, 4170003, 439001, 4171999.5, crs="EPSG:32618").grid(10)
    assert grid.bounds == (437000, 4170000, 439010, 4172000)
    assert grid.shape == (200, 201)
    # floating-point noise does not add a pixel
    grid = Grid.snapped("EPSG:32618", (437000 + 1e-9, 4170000, 439000 - 1e-9, 4172000), 10)
    assert grid.shape == (200, 200)


def test_geometry_spec_grid_covers_geometry() -> None:
    poly = box(-75.71, 37.69, -75.69, 37.71).difference(box(-75.70, 37.69, -75.69, 37.70))
    spec = GeometrySpec.from_geometry(poly)
    grid = spec.grid(20)
    footprint = reproject_geometry(spec.geometry(), "EPSG:4326", grid.crs)
    assert box(*grid.bounds).contains(footprint)


def test_pixel_centres_and_transform() -> None:
    grid = Grid("EPSG:32618", 437000.0, 4172000.0, 20.0, 5, 3)
    assert grid.bounds == (437000.0, 4171940.0, 437100.0, 4172000.0)
    np.testing.assert_allclose(grid.xs(), [437010, 437030, 437050, 437070, 437090])
    np.testing.assert_allclose(grid.ys(), [4171990, 4171970, 4171950])
    # the transform maps pixel centres to the coordinates above
    for col, x in enumerate(grid.xs()):
        for row, y in enumerate(grid.ys()):
            assert grid.transform @ (col + 0.5, row + 0.5) == pytest.approx((x, y))
    as_json = json.loads(json.dumps(grid.to_dict()))
    assert as_json["bounds"] == list(grid.bounds)
    assert as_json["crs"] == "EPSG:32618"
    assert as_json["transform"] == [20.0, 0.0, 437000.0, 0.0, -20.0, 4172000.0]


def test_coarsen_keeps_the_footprint() -> None:
    grid = PointBuffer(-75.70, 37.70, 1280).grid(10)
    cells = grid.coarsen(32, 32)
    assert cells.shape == (32, 32)
    assert cells.resolution == 80
    assert cells.bounds == pytest.approx(grid.bounds)
    assert cells.crs == grid.crs
    one = grid.coarsen(1, 1)
    assert one.resolution == 2560 and one.bounds == pytest.approx(grid.bounds)
    # a ViT-style 14x14 token grid over a 224 px input: non-integer factor, square cells
    vit = Grid("EPSG:32618", 0.0, 2240.0, 10.0, 224, 224).coarsen(14, 14)
    assert vit.resolution == 160
    odd = grid.coarsen(3, 3)
    assert odd.bounds == pytest.approx(grid.bounds)
    # rectangular grids coarsen with square cells only
    rect = Grid("EPSG:32618", 0.0, 1000.0, 10.0, 200, 100)
    assert rect.coarsen(10, 20).resolution == 100
    with pytest.raises(ValueError, match="square"):
        rect.coarsen(10, 10)
    with pytest.raises(ValueError, match="square"):
        grid.coarsen(32, 16)


@pytest.mark.parametrize(
    ("lon", "lat", "crs"),
    [
        (-74.0, 40.7, "EPSG:32618"),  # New York
        (-0.1, 51.5, "EPSG:32630"),  # London
        (151.2, -33.9, "EPSG:32756"),  # Sydney
        (-180.0, 10.0, "EPSG:32601"),
        (180.0, 10.0, "EPSG:32660"),
        (0.0, 0.0, "EPSG:32631"),
        (0.0, -0.0001, "EPSG:32731"),
        (20.0, 84.5, "EPSG:32661"),  # UPS north
        (20.0, -80.5, "EPSG:32761"),  # UPS south
    ],
)
def test_local_metric_crs(lon: float, lat: float, crs: str) -> None:
    assert local_metric_crs(lon, lat) == crs


def test_polar_point_buffer_uses_ups_and_keeps_ground_width() -> None:
    grid = PointBuffer(20.0, 85.0, 1000).grid(10)
    assert grid.crs == "EPSG:32661"
    left, bottom, right, top = grid.bounds
    mid = (bottom + top) / 2
    width = GEOD.inv(*_to_lonlat(left, mid, grid.crs), *_to_lonlat(right, mid, grid.crs))[2]
    assert width == pytest.approx(2000, rel=1e-2)
