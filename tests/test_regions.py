"""Region files (GeoJSON, CSV, GeoParquet, GeoPackage) written here and read into specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eoembed import BBox, GeometrySpec, PointBuffer
from eoembed.errors import SpecError
from eoembed.regions import Regions, read_regions

gpd = pytest.importorskip("geopandas")
shapely_geometry = pytest.importorskip("shapely.geometry")

SQUARE = [[[-75.70, 37.70], [-75.69, 37.70], [-75.69, 37.71], [-75.70, 37.71], [-75.70, 37.70]]]
UTM_SQUARE = [[[437200, 4171800], [438480, 4171800], [438480, 4173080], [437200, 4173080],
               [437200, 4171800]]]
"""1.28 km in EPSG:32618, inside the sample scene."""


def feature(geometry: dict | None, **properties: object) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def write_geojson(path: Path, *features: dict, **extra: object) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features), **extra}))
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- GeoJSON ------------------------------------------------------------------------------------


def test_geojson_polygons_and_points(tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "sites.geojson",
        feature({"type": "Polygon", "coordinates": SQUARE}, site="a"),
        feature({"type": "Point", "coordinates": [-75.65, 37.68]}, site="b", buffer_m=320),
        feature({"type": "Point", "coordinates": [-75.60, 37.66]}, site="c"),
    )
    regions = read_regions(path, buffer_m=1280, id_column="site")
    assert isinstance(regions, Regions) and isinstance(regions, list)
    polygon, own, default = regions
    assert polygon == GeometrySpec.from_geometry({"type": "Polygon", "coordinates": SQUARE})
    assert own == PointBuffer(-75.65, 37.68, 320)
    assert default == PointBuffer(-75.60, 37.66, 1280)
    assert regions.ids == ("a", "b", "c")
    assert read_regions(path, buffer_m=1280).ids is None


def test_geojson_feature_ids_and_a_bare_geometry(tmp_path: Path) -> None:
    one = {"type": "Feature", "id": 7, "geometry": {"type": "Polygon", "coordinates": SQUARE},
           "properties": None}
    assert read_regions(write_text(tmp_path / "one.json", json.dumps(one)), id_column="id").ids \
        == ("7",)
    bare = write_text(tmp_path / "bare.json", json.dumps({"type": "MultiPolygon",
                                                          "coordinates": [SQUARE]}))
    (spec,) = read_regions(bare)
    assert isinstance(spec, GeometrySpec) and spec.geometry().geom_type == "MultiPolygon"


def test_geojson_legacy_crs_keeps_polygons_and_reprojects_points(tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "utm.geojson",
        feature({"type": "Polygon", "coordinates": UTM_SQUARE}),
        feature({"type": "Point", "coordinates": [437840, 4172440]}),
        crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32618"}},
    )
    polygon, point = read_regions(path, buffer_m=640)
    assert isinstance(polygon, GeometrySpec) and polygon.crs == "EPSG:32618"
    assert polygon.geometry().bounds == (437200, 4171800, 438480, 4173080)
    assert isinstance(point, PointBuffer) and point.buffer_m == 640
    assert (point.lon, point.lat) == (pytest.approx(-75.70, abs=0.01),
                                      pytest.approx(37.70, abs=0.01))
    assert point.grid(10.0).bounds == pytest.approx((437200, 4171800, 438480, 4173080), abs=10)


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_points_with_own_and_default_buffers(tmp_path: Path) -> None:
    path = write_text(tmp_path / "pts.csv", "name,Longitude,Latitude,buffer_m\n"
                      "a,-75.70,37.70,320\nb,-75.65,37.68,\n")
    regions = read_regions(path, buffer_m=1280, id_column="name")
    assert list(regions) == [PointBuffer(-75.70, 37.70, 320), PointBuffer(-75.65, 37.68, 1280)]
    assert regions.ids == ("a", "b")


def test_tsv_without_buffer_column(tmp_path: Path) -> None:
    path = write_text(tmp_path / "pts.tsv", "lat\tlon\n37.7\t-75.7\n")
    assert read_regions(path, buffer_m=100) == [PointBuffer(-75.7, 37.7, 100)]


# -- GeoParquet and other vector files ----------------------------------------------------------


def test_geoparquet_keeps_polygon_crs_and_reprojects_points(tmp_path: Path) -> None:
    from shapely.geometry import Point, shape

    pytest.importorskip("pyarrow")
    frame = gpd.GeoDataFrame(
        {"site": ["p", "q", "r"], "buffer_m": [None, 320.0, None]},
        geometry=[shape({"type": "Polygon", "coordinates": UTM_SQUARE}),
                  Point(437840, 4172440), Point(440000, 4170000)],
        crs="EPSG:32618",
    )
    path = tmp_path / "sites.parquet"
    frame.to_parquet(path)
    regions = read_regions(path, buffer_m=1280, id_column="site")
    polygon, own, default = regions
    assert isinstance(polygon, GeometrySpec) and polygon.crs == "EPSG:32618"
    assert polygon.grid(10.0).bounds == (437200, 4171800, 438480, 4173080)
    assert isinstance(own, PointBuffer) and own.buffer_m == 320
    assert own.lon == pytest.approx(-75.70, abs=0.01)
    assert isinstance(default, PointBuffer) and default.buffer_m == 1280
    assert regions.ids == ("p", "q", "r")


def test_geopackage_in_lonlat(tmp_path: Path) -> None:
    from shapely.geometry import shape

    pytest.importorskip("pyogrio")
    frame = gpd.GeoDataFrame(
        geometry=[shape({"type": "Polygon", "coordinates": SQUARE})], crs="EPSG:4326"
    )
    path = tmp_path / "sites.gpkg"
    frame.to_file(path)
    (spec,) = read_regions(path)
    assert isinstance(spec, GeometrySpec) and spec.crs == "EPSG:4326"
    assert spec.geometry().bounds == pytest.approx(BBox(-75.70, 37.70, -75.69, 37.71)
                                                   .geometry().bounds)


# -- errors -------------------------------------------------------------------------------------


def _parquet(path: Path, geometries: list, crs: str | None = "EPSG:4326", **columns: list) -> Path:
    pytest.importorskip("pyarrow")
    gpd.GeoDataFrame(columns, geometry=geometries, crs=crs).to_parquet(path)
    return path


def _bad_files(tmp: Path) -> list[tuple[Path, dict, list[str]]]:
    """(file, read_regions keywords, texts the one-line message must contain)."""
    from shapely.geometry import LineString, MultiPoint, Point

    (tmp / "binary.csv").write_bytes(b"lon,lat\n\xff\xfe\x00\n")
    line = {"type": "LineString", "coordinates": [[-75.7, 37.7], [-75.6, 37.6]]}
    point = {"type": "Point", "coordinates": [-75.7, 37.7]}
    polygon = {"type": "Polygon", "coordinates": SQUARE}
    return [
        (tmp / "missing.csv", {}, ["missing.csv", "no such file"]),
        (write_text(tmp / "xy.csv", "x,y\n1,2\n"), {"buffer_m": 10},
         ["xy.csv", "no longitude column", "'lon' or 'longitude' column", "'x'"]),
        (write_text(tmp / "nan.csv", "lon,lat\n-75.7,37.7\n-75.6,north\n"), {"buffer_m": 10},
         ["nan.csv line 3", "lat='north'", "a number"]),
        (write_text(tmp / "blank.csv", "lon,lat\n-75.7,\n"), {"buffer_m": 10},
         ["blank.csv line 2", "lat"]),
        (write_text(tmp / "wide.csv", "lon,lat\n-75.7,37.7,320\n"), {"buffer_m": 10},
         ["wide.csv line 2", "more values than columns", "2 values"]),
        (write_text(tmp / "lat.csv", "lon,lat\n-75.7,95\n"), {"buffer_m": 10},
         ["lat.csv line 2", "PointBuffer.lat=95.0", "[-90, 90]"]),
        (write_text(tmp / "nobuf.csv", "lon,lat\n-75.7,37.7\n"), {},
         ["nobuf.csv line 2", "buffer_m", "--buffer-m"]),
        (write_text(tmp / "buf.csv", "lon,lat,buffer_m\n-75.7,37.7,-5\n"), {},
         ["buf.csv line 2", "PointBuffer.buffer_m=-5.0"]),
        (write_text(tmp / "ids.csv", "lon,lat,site\n-75.7,37.7,a\n-75.6,37.6,a\n"),
         {"buffer_m": 10, "id_column": "site"}, ["ids.csv line 3", "site='a'", "line 2"]),
        (write_text(tmp / "noid.csv", "lon,lat\n-75.7,37.7\n"),
         {"buffer_m": 10, "id_column": "site"}, ["noid.csv", "no 'site' column"]),
        (write_text(tmp / "empty.csv", "lon,lat\n"), {"buffer_m": 10}, ["empty.csv", "empty"]),
        (write_geojson(tmp / "line.geojson", feature(polygon), feature(line)), {},
         ["line.geojson feature 1", "'LineString'", "'Polygon'", "'Point'"]),
        (write_geojson(tmp / "null.geojson", feature(None)), {},
         ["null.geojson feature 0", "empty geometry"]),
        (write_geojson(tmp / "pt.geojson", feature(point)), {},
         ["pt.geojson feature 0", "buffer_m"]),
        (write_geojson(tmp / "bad.geojson", feature({"type": "Polygon", "coordinates": [[0]]})),
         {}, ["bad.geojson feature 0", "geometry"]),
        (write_text(tmp / "text.json", "{not json"), {}, ["text.json", "GeoJSON"]),
        (write_text(tmp / "list.json", "[1, 2]"), {}, ["list.json", "type='list'", "FeatureCollection"]),
        (write_geojson(tmp / "crs.geojson", feature(polygon), crs={"type": "link"}), {},
         ["crs.geojson: crs"]),
        (_parquet(tmp / "multi.parquet", [Point(0, 0), MultiPoint([(0, 0), (1, 1)])]),
         {"buffer_m": 10}, ["multi.parquet row 1", "'MultiPoint'", "'Polygon'"]),
        (_parquet(tmp / "lines.parquet", [LineString([(0, 0), (1, 1)])]), {},
         ["lines.parquet row 0", "'LineString'", "lines have no area"]),
        (_parquet(tmp / "nocrs.parquet", [Point(0, 0)], crs=None), {"buffer_m": 10},
         ["nocrs.parquet: crs", "declares its CRS"]),
        (_parquet(tmp / "noid.parquet", [Point(0, 0)], a=[1]), {"buffer_m": 10, "id_column": "x"},
         ["noid.parquet", "no 'x' column", "['a']"]),
        (_parquet(tmp / "nullid.parquet", [Point(0, 0)], x=[None]),
         {"buffer_m": 10, "id_column": "x"}, ["nullid.parquet row 0", "an id on every row"]),
        (tmp / "binary.csv", {}, ["binary.csv", "UTF-8"]),
        (write_text(tmp / "junk.gpkg", "not a geopackage"), {},
         ["junk.gpkg", "GeoParquet (.parquet)", "GeoJSON"]),
    ]


def test_bad_files_raise_one_line_spec_errors_naming_file_and_row(tmp_path: Path) -> None:
    for path, kwargs, needles in _bad_files(tmp_path):
        with pytest.raises(SpecError) as info:
            read_regions(path, **kwargs)
        message = str(info.value)
        assert isinstance(info.value, ValueError)
        assert "\n" not in message, message
        for needle in needles:
            assert needle in message, (path.name, message)
