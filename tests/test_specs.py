"""Specs: validation with messages that name the field and value, round-trips, fingerprints."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import subprocess
import sys

import pytest
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box, mapping

from eoembed import BBox, GeometrySpec, OutputSpec, PointBuffer, SensorSpec, TemporalSpec
from eoembed.errors import EoembedError, SpecError
from eoembed.specs import as_spatial, spec_from_dict

NAN = float("nan")
INF = float("inf")
BOWTIE = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])


def s2(**kw):
    return SensorSpec(**{"collection": "sentinel-2-l1c", "bands": ("B04", "B03"), **kw})


# (builder, field named in the error, text of the bad value as the user wrote it)
INVALID = {
    # BBox: non-finite, out of range, reversed, empty, wrong type, unknown CRS
    "bbox-nan-minlon": (lambda: BBox(NAN, 0, 1, 1), "BBox.minlon", "nan"),
    "bbox-inf-maxlat": (lambda: BBox(0, 0, 1, INF), "BBox.maxlat", "inf"),
    "bbox-neg-inf-minlat": (lambda: BBox(0, -INF, 1, 1), "BBox.minlat", "-inf"),
    "bbox-str": (lambda: BBox("0", 0, 1, 1), "BBox.minlon", "'0'"),
    "bbox-bool": (lambda: BBox(0, 0, True, 1), "BBox.maxlon", "True"),
    "bbox-lon-low": (lambda: BBox(-181, 0, 1, 1), "BBox.minlon", "-181"),
    "bbox-lon-high": (lambda: BBox(0, 0, 180.5, 1), "BBox.maxlon", "180.5"),
    "bbox-lat-low": (lambda: BBox(0, -90.01, 1, 1), "BBox.minlat", "-90.01"),
    "bbox-lat-high": (lambda: BBox(0, 0, 1, 91), "BBox.maxlat", "91"),
    "bbox-reversed-lon": (lambda: BBox(10, 0, 5, 1), "BBox.maxlon", "5.0"),
    "bbox-reversed-lat": (lambda: BBox(0, 10, 1, 5), "BBox.maxlat", "5.0"),
    "bbox-empty-lon": (lambda: BBox(5, 0, 5, 1), "BBox.maxlon", "5.0"),
    "bbox-empty-lat": (lambda: BBox(0, 2, 1, 2), "BBox.maxlat", "2.0"),
    "bbox-antimeridian": (lambda: BBox(179, 0, -179, 1), "BBox.maxlon", "-179"),
    "bbox-unknown-crs": (lambda: BBox(0, 0, 1, 1, crs="EPSG:999999"), "BBox.crs", "EPSG:999999"),
    "bbox-garbage-crs": (lambda: BBox(0, 0, 1, 1, crs="not a crs"), "BBox.crs", "not a crs"),
    "bbox-empty-crs": (lambda: BBox(0, 0, 1, 1, crs=""), "BBox.crs", "''"),
    "bbox-projected-reversed": (
        lambda: BBox(439000, 4170000, 437000, 4172000, crs="EPSG:32618"), "BBox.maxlon", "437000"
    ),
    # PointBuffer
    "pb-nan-lon": (lambda: PointBuffer(NAN, 37.7, 100), "PointBuffer.lon", "nan"),
    "pb-inf-lat": (lambda: PointBuffer(-75.7, INF, 100), "PointBuffer.lat", "inf"),
    "pb-lon-range": (lambda: PointBuffer(-200, 37.7, 100), "PointBuffer.lon", "-200"),
    "pb-lat-range": (lambda: PointBuffer(-75.7, 95, 100), "PointBuffer.lat", "95"),
    "pb-zero-buffer": (lambda: PointBuffer(-75.7, 37.7, 0), "PointBuffer.buffer_m", "0"),
    "pb-neg-buffer": (lambda: PointBuffer(-75.7, 37.7, -5), "PointBuffer.buffer_m", "-5"),
    "pb-nan-buffer": (lambda: PointBuffer(-75.7, 37.7, NAN), "PointBuffer.buffer_m", "nan"),
    "pb-huge-buffer": (lambda: PointBuffer(-75.7, 37.7, 1e7), "PointBuffer.buffer_m", "10000000"),
    "pb-crs": (lambda: PointBuffer(-75.7, 37.7, 100, crs="EPSG:3857"), "PointBuffer.crs",
               "EPSG:3857"),
    # TemporalSpec: impossible, malformed, reversed, empty, out of range
    "date-feb-30": (lambda: TemporalSpec.range("2021-02-30", "2021-03-05"), "TemporalSpec.start",
                    "2021-02-30"),
    "date-not-leap": (lambda: TemporalSpec.range("2021-01-01", "2021-02-29"), "TemporalSpec.end",
                      "2021-02-29"),
    "date-month-13": (lambda: TemporalSpec.range("2021-13", "2022"), "TemporalSpec.start",
                      "2021-13"),
    "date-format": (lambda: TemporalSpec.range("21-1-1", "2022"), "TemporalSpec.start", "21-1-1"),
    "date-us-format": (lambda: TemporalSpec("2021-01-01", "06/01/2021"), "TemporalSpec.end",
                       "06/01/2021"),
    "date-type": (lambda: TemporalSpec.range(20210101, "2022"), "TemporalSpec.start", "20210101"),
    "date-reversed": (lambda: TemporalSpec.range("2021-06-01", "2021-01-01"), "TemporalSpec.end",
                      "2021-01-01"),
    "date-empty": (lambda: TemporalSpec.range("2021-06-01", "2021-06-01"), "TemporalSpec.end",
                   "2021-06-01"),
    "date-year-range": (lambda: TemporalSpec.range("1900", "2000"), "TemporalSpec.start", "1900"),
    "date-noon": (lambda: TemporalSpec.range(dt.datetime(2021, 1, 1, 12), "2022"),
                  "TemporalSpec.start", "2021-01-01T12:00:00"),
    "year-range": (lambda: TemporalSpec.year(1800), "TemporalSpec.year", "1800"),
    "year-str": (lambda: TemporalSpec.year("2021"), "TemporalSpec.year", "'2021'"),
    "year-bool": (lambda: TemporalSpec.year(True), "TemporalSpec.year", "True"),
    # SensorSpec
    "sensor-no-bands": (lambda: s2(bands=()), "SensorSpec.bands", "[]"),
    "sensor-dup-bands": (lambda: s2(bands=("B04", "B03", "B04")), "SensorSpec.bands", "'B04'"),
    "sensor-empty-band": (lambda: s2(bands=("B04", "")), "SensorSpec.bands", "''"),
    "sensor-int-band": (lambda: s2(bands=("B04", 8)), "SensorSpec.bands", "8"),
    "sensor-zero-scale": (lambda: s2(scale_m=0), "SensorSpec.scale_m", "0"),
    "sensor-neg-scale": (lambda: s2(scale_m=-10), "SensorSpec.scale_m", "-10"),
    "sensor-nan-scale": (lambda: s2(scale_m=NAN), "SensorSpec.scale_m", "nan"),
    "sensor-cloud-neg": (lambda: s2(cloudy_pct=-1), "SensorSpec.cloudy_pct", "-1"),
    "sensor-cloud-high": (lambda: s2(cloudy_pct=100.5), "SensorSpec.cloudy_pct", "100.5"),
    "sensor-cloud-nan": (lambda: s2(cloudy_pct=NAN), "SensorSpec.cloudy_pct", "nan"),
    "sensor-fill-inf": (lambda: s2(fill_value=INF), "SensorSpec.fill_value", "inf"),
    "sensor-composite": (lambda: s2(composite="mean"), "SensorSpec.composite", "'mean'"),
    "sensor-resampling": (lambda: s2(resampling="lanczos"), "SensorSpec.resampling",
                          "'lanczos'"),
    "sensor-collection": (lambda: s2(collection=" "), "SensorSpec.collection", "' '"),
    # OutputSpec
    "output-mode": (lambda: OutputSpec("pixels"), "OutputSpec.mode", "'pixels'"),
    "output-pooling": (lambda: OutputSpec.pooled("avg"), "OutputSpec.pooling", "'avg'"),
    "output-pooling-none": (lambda: OutputSpec("pooled", None), "OutputSpec.pooling", "None"),
    "output-grid-pooled": (lambda: OutputSpec("grid", "mean"), "OutputSpec.pooling", "'mean'"),
    # GeometrySpec
    "geom-point": (lambda: GeometrySpec.from_geometry(Point(0, 0)), "GeometrySpec.geojson",
                   "Point"),
    "geom-line": (lambda: GeometrySpec.from_geometry(LineString([(0, 0), (1, 1)])),
                  "GeometrySpec.geojson", "LineString"),
    "geom-empty": (lambda: GeometrySpec.from_geometry({"type": "Polygon", "coordinates": []}),
                   "GeometrySpec.geojson", "Polygon"),
    "geom-bowtie": (lambda: GeometrySpec.from_geometry(BOWTIE), "GeometrySpec.geojson",
                    "POLYGON"),
    "geom-lon-range": (lambda: GeometrySpec.from_geometry(box(170, 0, 190, 1)),
                       "GeometrySpec.maxlon", "190"),
    "geom-bad-json": (lambda: GeometrySpec("{not json"), "GeometrySpec.geojson", "{not json"),
    "geom-bad-type": (lambda: GeometrySpec.from_geometry(42), "geometry", "int"),
    "geom-two-features": (
        lambda: GeometrySpec.from_geometry({
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {}, "geometry": mapping(box(0, 0, 1, 1))},
                {"type": "Feature", "properties": {}, "geometry": mapping(box(2, 0, 3, 1))},
            ],
        }),
        "geometry", "2 features",
    ),
    "geom-crs": (lambda: GeometrySpec.from_geometry(box(0, 0, 1, 1), crs="EPSG:0"),
                 "GeometrySpec.crs", "EPSG:0"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_specs_raise_spec_error_naming_field_and_value(case: str) -> None:
    build, field, bad = INVALID[case]
    with pytest.raises(SpecError) as info:
        build()
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, EoembedError)
    assert err.field == field
    message = str(err)
    assert field in message, message
    assert bad in message, message


def test_spec_error_is_caught_by_generic_value_error_handler() -> None:
    try:
        BBox(0, 0, 0, 1)
    except ValueError as exc:  # what user code without eoembed imports would write
        assert "BBox.maxlon" in str(exc)
    else:
        pytest.fail("no error")


def test_antimeridian_message_says_to_split() -> None:
    with pytest.raises(SpecError, match="antimeridian"):
        BBox(179, 0, -179, 1)


def test_invalid_geometry_message_explains_why() -> None:
    with pytest.raises(SpecError, match="Self-intersection"):
        GeometrySpec.from_geometry(BOWTIE)


def test_point_geometry_suggests_point_buffer() -> None:
    with pytest.raises(SpecError, match="PointBuffer"):
        GeometrySpec.from_geometry(Point(-75.7, 37.7))


def test_dataclass_replace_revalidates_and_specs_are_frozen() -> None:
    bbox = BBox(0, 0, 1, 1)
    with pytest.raises(SpecError, match=r"BBox\.maxlon"):
        dataclasses.replace(bbox, maxlon=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bbox.minlon = 0.5  # type: ignore[misc]
    assert dataclasses.replace(bbox, maxlon=2).maxlon == 2.0


# ------------------------------------------------------------------ canonical values


def test_numbers_and_crs_are_canonicalised() -> None:
    assert BBox(1, 2, 3, 4) == BBox(1.0, 2.0, 3.0, 4.0)
    assert isinstance(BBox(1, 2, 3, 4).minlon, float)
    assert BBox(1, 2, 3, 4, crs="epsg:4326").crs == "EPSG:4326"
    assert SensorSpec("c", ["B04", "B03"]).bands == ("B04", "B03")
    assert SensorSpec("c", "B04").bands == ("B04",)
    # band order is meaningful: the provider returns bands in this order
    assert SensorSpec("c", ("B04", "B03")) != SensorSpec("c", ("B03", "B04"))


def test_equal_specs_hash_equal_and_dedupe() -> None:
    specs = [
        BBox(1, 2, 3, 4), BBox(1.0, 2.0, 3.0, 4.0),
        TemporalSpec.year(2021), TemporalSpec.range(dt.date(2021, 1, 1), "2022"),
        TemporalSpec.range("2021", dt.datetime(2022, 1, 1, tzinfo=dt.UTC)),
        PointBuffer(-75.7, 37.7, 1280), PointBuffer(lon=-75.7, lat=37.7, buffer_m=1280.0),
        OutputSpec.pooled(), OutputSpec(),
    ]
    assert len(set(specs)) == 4
    assert {specs[0]: "a"}[BBox(1, 2, 3, 4)] == "a"


# ------------------------------------------------------------------ temporal semantics


def test_year_is_half_open_calendar_year() -> None:
    year = TemporalSpec.year(2021)
    assert (year.start, year.end) == ("2021-01-01", "2022-01-01")
    assert year.contains(dt.date(2021, 1, 1))
    assert year.contains(dt.date(2021, 12, 31))
    assert not year.contains(dt.date(2022, 1, 1))
    assert not year.contains(dt.date(2020, 12, 31))
    assert str(year) == "[2021-01-01, 2022-01-01)"


def test_range_partial_dates_denote_their_first_day() -> None:
    summer = TemporalSpec.range("2021-06", "2021-08")  # June and July
    assert (summer.start, summer.end) == ("2021-06-01", "2021-08-01")
    assert summer.contains(dt.date(2021, 7, 31))
    assert not summer.contains(dt.date(2021, 8, 1))
    assert not summer.contains(dt.date(2021, 5, 31))
    assert summer.start_date == dt.date(2021, 6, 1)
    assert summer.end_date == dt.date(2021, 8, 1)
    leap = TemporalSpec.range("2020-02-29", "2020-03-01")
    assert (leap.end_date - leap.start_date).days == 1


def test_contains_interval_is_half_open_on_both_sides() -> None:
    year = TemporalSpec.year(2021)
    assert year.contains(dt.date(2021, 1, 1), dt.date(2022, 1, 1))  # the whole year
    assert year.contains(dt.date(2021, 3, 1), dt.date(2021, 4, 1))
    assert not year.contains(dt.date(2021, 12, 1), dt.date(2022, 1, 2))
    assert not year.contains(dt.date(2020, 12, 31), dt.date(2021, 1, 2))
    # The sample scene's date is only known to lie in [2015-06-23, 2016-06-11): a year
    # window cannot claim it, only a window covering the whole range can.
    assert not TemporalSpec.year(2015).contains(dt.date(2015, 6, 23), dt.date(2016, 6, 11))
    assert TemporalSpec.range("2015-06", "2016-07").contains(
        dt.date(2015, 6, 23), dt.date(2016, 6, 11)
    )


def test_midnight_datetimes_accepted_other_times_rejected() -> None:
    utc = dt.UTC
    assert TemporalSpec.range(dt.datetime(2021, 1, 1), dt.datetime(2021, 2, 1, tzinfo=utc)) == (
        TemporalSpec.range("2021-01", "2021-02")
    )
    plus2 = dt.timezone(dt.timedelta(hours=2))
    with pytest.raises(SpecError, match=r"TemporalSpec\.start"):
        TemporalSpec.range(dt.datetime(2021, 1, 1, tzinfo=plus2), "2022")


# ------------------------------------------------------------------ geometry inputs


class _GeoThing:
    """Something that is not shapely but speaks __geo_interface__ (like a geopandas row)."""

    def __init__(self, geom: dict) -> None:
        self._geom = geom

    @property
    def __geo_interface__(self) -> dict:
        return self._geom


SQUARE = box(-75.71, 37.69, -75.69, 37.71)


@pytest.mark.parametrize(
    "source",
    [
        SQUARE,
        _GeoThing(mapping(SQUARE)),
        dict(mapping(SQUARE)),
        {"type": "Feature", "properties": {"name": "x"}, "geometry": mapping(SQUARE)},
        {"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": mapping(SQUARE)}
        ]},
        json.dumps(mapping(SQUARE)),
    ],
    ids=["shapely", "geo_interface", "geojson", "feature", "featurecollection", "json-text"],
)
def test_geometry_spec_from_any_geometry_source(source: object) -> None:
    spec = GeometrySpec.from_geometry(source)
    assert spec.geometry().equals(SQUARE)
    assert spec == GeometrySpec.from_geometry(SQUARE)
    assert spec.fingerprint == GeometrySpec.from_geometry(SQUARE).fingerprint
    assert as_spatial(source) == spec


def test_geometry_spec_multipolygon_and_lonlat() -> None:
    multi = MultiPolygon([box(0, 0, 1, 1), box(2, 0, 3, 1)])
    spec = GeometrySpec.from_geometry(multi)
    assert spec.geometry().geom_type == "MultiPolygon"
    assert spec.lonlat_geometry().equals(multi)


def test_as_spatial_accepts_specs_and_tuples() -> None:
    bbox = BBox(-75.71, 37.69, -75.69, 37.71)
    assert as_spatial(bbox) is bbox
    assert as_spatial((-75.71, 37.69, -75.69, 37.71)) == bbox
    assert as_spatial([-75.71, 37.69, -75.69, 37.71]) == bbox


def test_geometry_spec_in_projected_crs() -> None:
    from pyproj import Transformer

    poly = box(437000, 4170000, 439000, 4172000)
    spec = GeometrySpec.from_geometry(poly, crs="EPSG:32618")
    assert spec.crs == "EPSG:32618"
    assert spec.grid_crs() == "EPSG:32618"
    lon, lat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(
        438000, 4171000
    )
    assert spec.lonlat_geometry().contains(Point(lon, lat))


def test_bbox_in_projected_crs() -> None:
    from pyproj import Transformer

    bbox = BBox(437000, 4170000, 439000, 4172000, crs="EPSG:32618")
    assert bbox.grid_crs() == "EPSG:32618"
    geom = bbox.lonlat_geometry()
    to_ll = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    for x, y in [(437000, 4170000), (439000, 4172000), (438000, 4171000)]:
        lon, lat = to_ll.transform(x, y)
        assert geom.buffer(1e-9).contains(Point(lon, lat))
    # A geographic box is gridded in the local UTM zone instead.
    assert BBox(-75.71, 37.69, -75.69, 37.71).grid_crs() == "EPSG:32618"
    assert BBox(-75.71, -37.71, -75.69, -37.69).grid_crs() == "EPSG:32718"


# ------------------------------------------------------------------ serialisation


EXAMPLES = [
    BBox(-75.71, 37.69, -75.69, 37.71),
    BBox(437000, 4170000, 439000, 4172000, crs="EPSG:32618"),
    PointBuffer(-75.70, 37.70, 1280),
    GeometrySpec.from_geometry(SQUARE),
    GeometrySpec.from_geometry(box(437000, 4170000, 439000, 4172000), crs="EPSG:32618"),
    TemporalSpec.year(2021),
    TemporalSpec.range("2015-06-23", "2016-06-11"),
    SensorSpec("sentinel-2-l1c", ("B04", "B03", "B02"), scale_m=20, cloudy_pct=12.5,
               fill_value=-1, composite="mosaic", resampling="bilinear"),
    OutputSpec.pooled("max"),
    OutputSpec.grid(),
]


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda s: type(s).__name__)
def test_to_dict_from_dict_json_round_trip(spec) -> None:
    data = spec.to_dict()
    assert data["type"] == type(spec).__name__
    text = json.dumps(data, allow_nan=False)  # plain JSON types only
    back = type(spec).from_dict(json.loads(text))
    assert back == spec and hash(back) == hash(spec)
    assert spec_from_dict(json.loads(text)) == spec
    assert back.fingerprint == spec.fingerprint


def test_from_dict_rejects_wrong_type_and_unknown_fields() -> None:
    data = PointBuffer(-75.7, 37.7, 100).to_dict()
    with pytest.raises(SpecError, match=r"BBox\.type"):
        BBox.from_dict(data)
    with pytest.raises(SpecError, match="radius"):
        PointBuffer.from_dict({**data, "radius": 3})
    with pytest.raises(SpecError, match="Nope"):
        spec_from_dict({"type": "Nope"})
    # from_dict validates again
    with pytest.raises(SpecError, match=r"PointBuffer\.lat"):
        PointBuffer.from_dict({**data, "lat": 100})


def test_fingerprints_differ_between_different_specs() -> None:
    variants = [
        *EXAMPLES,
        BBox(-75.71, 37.69, -75.69, 37.7100001),
        PointBuffer(-75.70, 37.70, 1281),
        PointBuffer(-75.70, 37.71, 1280),
        TemporalSpec.year(2022),
        SensorSpec("sentinel-2-l1c", ("B03", "B04", "B02"), scale_m=20, cloudy_pct=12.5,
                   fill_value=-1, composite="mosaic", resampling="bilinear"),
        OutputSpec.pooled("mean"),
    ]
    prints = [v.fingerprint for v in variants]
    assert len(set(prints)) == len(prints)
    assert all(len(p) == 64 and int(p, 16) >= 0 for p in prints)


def test_fingerprint_is_the_same_in_another_process() -> None:
    code = (
        "import json, sys\n"
        "from eoembed.specs import spec_from_dict\n"
        "print(json.dumps([spec_from_dict(d).fingerprint for d in json.load(sys.stdin)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps([s.to_dict() for s in EXAMPLES]),
        capture_output=True, text=True, check=True, env=env, timeout=60,
    )
    assert json.loads(out.stdout) == [s.fingerprint for s in EXAMPLES]


def test_pointbuffer_footprint_covers_two_buffers_squared_of_ground() -> None:
    from pyproj import Geod

    pb = PointBuffer(-75.70, 37.70, 1280)
    footprint = pb.lonlat_geometry()
    area, perimeter = Geod(ellps="WGS84").geometry_area_perimeter(footprint)
    assert math.isclose(abs(area), 2560**2, rel_tol=5e-3), area
    assert math.isclose(perimeter, 4 * 2560, rel_tol=5e-3), perimeter
    assert footprint.contains(Point(-75.70, 37.70))
