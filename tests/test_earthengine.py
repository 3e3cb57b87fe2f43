"""EarthEngineProvider through the real earthengine-api client, faked at its HTTP boundary.

Nothing can be recorded from Earth Engine here, so :class:`FakeEarthEngine` answers what the
client sends, built from what ships with earthengine-api itself:

- the Cloud API discovery document (``ee/tests/cloud_api_discovery_document.json``, a
  snapshot Google ships for the client's own tests; its ``v1alpha`` paths are served as the
  ``v1`` the client asks for) and the algorithm list (``ee/tests/algorithms.json``), so
  ``ee.Initialize`` builds the client exactly as against the real service;
- ``value:compute`` answers ``{"result": ...}`` JSON, as ``ee.data.computeValue`` reads it;
- ``image:computePixels`` answers a real ``.npy`` structured array (one float32 field per
  requested band, shape ``(height, width)``) of the sample scene's pixels read onto the grid
  the request names, with masked pixels (outside the scene) set to the ``Image.unmask``
  value the request's expression carries, as Earth Engine fills them.

The provider is built with ``http_transport=`` (a public ``ee.Initialize`` argument) and fake
credentials, so every byte goes through googleapiclient, google-auth-httplib2 and ``ee.data``
as in production; no socket is opened. The client's own per-request retries are set to 0
(``ee.data.setMaxRetries``) so that injected faults reach eoembed's retry layer at once.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from eoembed import PointBuffer, SensorSpec, TemporalSpec
from eoembed.errors import (
    CapabilityError,
    NoDataError,
    ProviderError,
    ProviderUnavailableError,
)
from eoembed.grid import Grid
from eoembed.providers import get_provider
from eoembed.providers.radiometry import HARMONISED_DN
from eoembed.providers.sample import SampleProvider

ee = pytest.importorskip("ee")
httplib2 = pytest.importorskip("httplib2")

from google.oauth2.credentials import Credentials

from eoembed.providers import earthengine as eemod
from eoembed.providers.earthengine import (
    EARTH_ENGINE_COLLECTIONS,
    EarthEngineProvider,
)

PROJECT = "eoembed-test"
TOKEN = "test-access-token"
SA_TOKEN = "service-account-access-token"
BANDS = ("B08", "B02", "B04")  # not in file order: the band mapping must hold
EE_BANDS = ["B8", "B2", "B4"]
COUNT_BAND = "eoembed_clear_count"
POINT = PointBuffer(lon=-75.70, lat=37.70, buffer_m=1280)
EDGE = PointBuffer(lon=-75.725, lat=37.70, buffer_m=1280)  # half outside the sample scene
WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
SCENES = {  # Earth Engine image ids (format of COPERNICUS/S2_HARMONIZED) and start times
    "ids": [
        "COPERNICUS/S2_HARMONIZED/20151012T154242_20151012T154241_T18SVH",
        "COPERNICUS/S2_HARMONIZED/20160320T154222_20160320T154223_T18SVH",
    ],
    "times": [1444664561000, 1458489743000],
}
EE_DIR = Path(ee.__file__).parent


def _discovery_document() -> bytes:
    doc = (EE_DIR / "tests" / "cloud_api_discovery_document.json").read_text()
    return doc.replace('"v1alpha/', '"v1/').encode()


DISCOVERY = _discovery_document()
ALGORITHMS = (EE_DIR / "tests" / "algorithms.json").read_bytes()


@dataclasses.dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def _error(status: int, message: str) -> tuple[Any, bytes]:
    """A Google API error answer, as googleapiclient's HttpError parses it."""
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
             429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
    body = {"error": {"code": status, "message": message, "status": names.get(status, "")}}
    return (
        httplib2.Response({"status": status, "content-type": "application/json; charset=UTF-8"}),
        json.dumps(body).encode(),
    )


def _resolve(expression: dict[str, Any]) -> Any:
    """An expression graph as nested plain values: references followed, arrays as lists.

    Function calls become ``{"functionName": ..., "arguments": {...}}``; everything else its
    value, so tests can look for calls and constants without knowing the graph's layout.
    """
    values = expression["values"]

    def value(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if "valueReference" in node:
            return value(values[node["valueReference"]])
        if "constantValue" in node:
            return node["constantValue"]
        if "arrayValue" in node:
            return [value(v) for v in node["arrayValue"].get("values", [])]
        if "dictionaryValue" in node:
            return {k: value(v) for k, v in node["dictionaryValue"].get("values", {}).items()}
        if "functionInvocationValue" in node:
            call = node["functionInvocationValue"]
            return {
                "functionName": call.get("functionName", ""),
                "arguments": {k: value(v) for k, v in call.get("arguments", {}).items()},
            }
        if "functionDefinitionValue" in node:  # a mapped function: its body is a reference
            definition = node["functionDefinitionValue"]
            return {
                "argumentNames": definition["argumentNames"],
                "body": value(values[definition["body"]]),
            }
        return node  # argumentReference: kept as sent

    return value(values[expression["result"]])


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "functionName" in node and "arguments" in node:
            yield node
        for item in node.values():
            yield from _walk(item)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _calls(expression: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Arguments of each distinct call of ``name`` in ``expression`` (a sent graph), outermost
    first. The graph sends a shared subexpression once; resolving repeats it, so repeats of
    the same call are dropped."""
    seen: dict[str, dict[str, Any]] = {}
    for call in _walk(_resolve(expression)):
        if call["functionName"] == name:
            seen.setdefault(json.dumps(call["arguments"], sort_keys=True), call["arguments"])
    return list(seen.values())


def _const(arg: Any) -> Any:
    """A constant, also when sent as ``Image.constant(value)``."""
    if isinstance(arg, dict) and arg.get("functionName") == "Image.constant":
        return arg["arguments"]["value"]
    return arg


class FakeEarthEngine:
    """An ``httplib2.Http``-like transport answering like the Earth Engine Cloud API v1."""

    def __init__(self, sample_dir: Path) -> None:
        self.sample_dir = sample_dir
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.faults: dict[str, list[tuple[int, str]]] = {}
        self.scenes: dict[str, list[Any]] = SCENES
        self.delay = 0.0
        self.in_flight = 0
        self.peak = 0
        self.band_source: Any = None
        """``(band, grid) -> values`` for bands not in the sample scene (a product's)."""

    def fail(self, route: str, *faults: tuple[int, str]) -> None:
        """Answer the next requests of ``route`` with these (status, message) errors."""
        self.faults.setdefault(route, []).extend(faults)

    def paths(self, route: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(route)]

    def request(
        self, uri: str, method: str = "GET", body: Any = None, headers: Any = None,
        redirections: int = 5, connection_type: Any = None, **kwargs: Any,
    ) -> tuple[Any, bytes]:
        url = urlsplit(uri)
        path = url.path
        if url.netloc == "oauth2.googleapis.com":  # a service account's token exchange
            with self.lock:
                self.requests.append(Recorded(method, uri, dict(headers or {}), body))
            token = {"access_token": SA_TOKEN, "expires_in": 3600, "token_type": "Bearer"}
            return self._ok(json.dumps(token).encode())
        parsed = json.loads(body) if body else None
        with self.lock:
            self.requests.append(Recorded(method, path, dict(headers or {}), parsed))
        route = path.rsplit("/", 1)[-1]
        with self.lock:
            queued = self.faults.get(route)
            fault = queued.pop(0) if queued else None
        if fault:
            return _error(*fault)
        if path == "/$discovery/rest":
            return self._ok(DISCOVERY)
        if path == f"/v1/projects/{PROJECT}/algorithms":
            return self._ok(ALGORITHMS)
        if path == f"/v1/projects/{PROJECT}/value:compute":
            return self._ok(json.dumps({"result": self.scenes}).encode())
        if path == f"/v1/projects/{PROJECT}/image:computePixels":
            with self.lock:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            try:
                if self.delay:
                    time.sleep(self.delay)
                return self._ok(self._pixels(parsed), "application/octet-stream")
            finally:
                with self.lock:
                    self.in_flight -= 1
        return _error(404, f"no route for {method} {path}")

    @staticmethod
    def _ok(content: bytes, kind: str = "application/json; charset=UTF-8") -> tuple[Any, bytes]:
        return httplib2.Response({"status": 200, "content-type": kind}), content

    def _pixels(self, body: dict[str, Any]) -> bytes:
        """The requested bands of the sample scene on the requested grid, as ``.npy``."""
        from eoembed.providers._raster import read_onto_grid

        assert body["fileFormat"] == "NPY"
        pixel_grid = body["grid"]
        affine = pixel_grid["affineTransform"]
        assert affine["shearX"] == 0 and affine["shearY"] == 0
        assert affine["scaleY"] == -affine["scaleX"]
        grid = Grid(
            pixel_grid["crsCode"], affine["translateX"], affine["translateY"], affine["scaleX"],
            pixel_grid["dimensions"]["width"], pixel_grid["dimensions"]["height"],
        )
        # The composite's unmask value (the lowest: masks unmask to 1, counts to 0).
        fill = min(_const(a["value"]) for a in _calls(body["expression"], "Image.unmask"))
        *bands, count = body["bandIds"]
        assert count == COUNT_BAND
        out = np.zeros(grid.shape, [*((b, "<f4") for b in bands), (count, "<u2")])
        clear = np.ones(grid.shape, bool)  # one image: clear where it has every band
        for band in bands:
            name = f"B{band[1:].zfill(2)}" if band[1:].isdigit() else band
            path = self.sample_dir / f"s2_{name}.jp2"
            if self.band_source is not None:
                values = self.band_source(band, grid)
            elif path.exists():
                values = read_onto_grid(str(path), grid, nodata=0.0)
            else:  # bands of other collections: a constant
                values = np.full(grid.shape, 1000.0, np.float32)
            clear &= ~np.isnan(values)
            out[band] = values
        for band in bands:  # an observation missing a band is masked in all of them
            out[band] = np.where(clear, out[band], np.float32(fill))
        out[count] = clear
        buffer = io.BytesIO()
        np.save(buffer, out)
        return buffer.getvalue()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, sample_dir: Path) -> Iterator[FakeEarthEngine]:
    """A fresh Earth Engine session state and a fake service; reset again afterwards."""
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", dict)
    ee.Reset()
    eemod._SESSION.reset()
    ee.data.setMaxRetries(0)
    yield FakeEarthEngine(sample_dir)
    ee.Reset()
    eemod._SESSION.reset()


def provider(server: FakeEarthEngine, **kwargs: Any) -> EarthEngineProvider:
    kwargs.setdefault("backoff", 0.001)
    return EarthEngineProvider(
        PROJECT, credentials=Credentials(token=TOKEN), http_transport=server, **kwargs
    )


def l1c(**kwargs: Any) -> SensorSpec:
    return SensorSpec("sentinel-2-l1c", BANDS, **kwargs)


# --------------------------------------------------------------------------- contract


def test_collections_are_declared_before_any_request() -> None:
    served = EarthEngineProvider().collections()
    assert set(served) == {"sentinel-2-l1c", "sentinel-2-l2a", "landsat-c2-l2", "sentinel-1-grd",
                           "alphaearth-annual"}
    assert served["sentinel-2-l1c"].band_names[:13] == (
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"
    )
    assert "SCL" in served["sentinel-2-l2a"].band_names
    assert "B10" not in served["sentinel-2-l2a"].band_names
    assert served["landsat-c2-l2"].band_names[:4] == ("coastal", "blue", "green", "red")
    assert EARTH_ENGINE_COLLECTIONS["sentinel-2-l2a"].band_ids["B8A"] == "B8A"
    assert EARTH_ENGINE_COLLECTIONS["sentinel-2-l2a"].band_ids["B01"] == "B1"
    assert EARTH_ENGINE_COLLECTIONS["landsat-c2-l2"].band_ids["red"] == "SR_B4"


def test_sentinel2_is_read_harmonised_and_says_so(server: FakeEarthEngine) -> None:
    """Earth Engine's harmonized collections are the unit every provider serves Sentinel-2 in.

    They shift baseline >= 04.00 scenes back by 1000 DN server-side, so eoembed applies
    nothing itself, and records that it relied on them.
    """
    source = provider(server)
    for collection, ee_id in (("sentinel-2-l1c", "COPERNICUS/S2_HARMONIZED"),
                              ("sentinel-2-l2a", "COPERNICUS/S2_SR_HARMONIZED")):
        assert source.collections()[collection].unit == HARMONISED_DN
        patch = source.fetch(POINT, WINDOW, SensorSpec(collection, ("B04", "B08")))
        expression = server.paths("image:computePixels")[-1].body["expression"]
        assert [a["id"] for a in _calls(expression, "ImageCollection.load")] == [ee_id]
        assert patch.attrs["unit"] == HARMONISED_DN
        assert [r["scene_id"] for r in patch.attrs["radiometry"]] == SCENES["ids"]
        for record in patch.attrs["radiometry"]:
            assert (record["scale"], record["offset"]) == (1.0, 0.0)
            assert record["bands"] == ["B04", "B08"]
            assert f"Earth Engine {ee_id}: harmonised server-side" in record["reason"]
    landsat = source.fetch(POINT, WINDOW, SensorSpec("landsat-c2-l2", ("red",), 30.0))
    assert landsat.attrs["unit"] == "" and "harmonised" not in str(landsat.attrs["radiometry"])


def test_unservable_requests_fail_before_any_request(server: FakeEarthEngine) -> None:
    source = provider(server)
    with pytest.raises(CapabilityError, match="no band"):
        source.fetch(POINT, WINDOW, SensorSpec("sentinel-2-l2a", ("B10",)))
    with pytest.raises(CapabilityError, match="hls-s30"):
        source.fetch(POINT, WINDOW, SensorSpec("hls-s30", ("B04",)))
    assert server.requests == [] and not ee.data.is_initialized()


def test_registry_names_and_import_stays_light() -> None:
    assert isinstance(get_provider("earthengine"), EarthEngineProvider)
    named = get_provider("earthengine:my-ee-project")
    assert isinstance(named, EarthEngineProvider) and named.project == "my-ee-project"
    code = (
        "import sys, eoembed\n"
        "from eoembed.providers import get_provider, EarthEngineProvider\n"
        "get_provider('earthengine:p').collections()\n"
        "print('ee' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- requests


def test_fetch_equals_sample_patch_and_sends_what_earth_engine_expects(
    server: FakeEarthEngine, sample_provider: SampleProvider
) -> None:
    sensor = l1c(cloudy_pct=25)
    patch = provider(server).fetch(POINT, WINDOW, sensor)
    expected = sample_provider.fetch(POINT, WINDOW, sensor)

    # Pixels, coordinates and georeferencing equal the sample provider's on the same grid.
    np.testing.assert_array_equal(patch.values, expected.values)
    np.testing.assert_array_equal(patch.clear_count.values, expected.clear_count.values)
    assert patch.clear_count.dtype == np.uint16
    assert patch.dtype == np.float32 and list(patch.band.values) == list(BANDS)
    np.testing.assert_array_equal(patch.x.values, expected.x.values)
    np.testing.assert_array_equal(patch.y.values, expected.y.values)
    assert patch.rio.crs == expected.rio.crs and patch.rio.transform() == expected.rio.transform()
    assert patch.attrs["provider"] == "earthengine"
    assert patch.attrs["collection"] == "sentinel-2-l1c"
    assert patch.attrs["processing_level"] == "L1C"
    assert patch.attrs["scene_ids"] == SCENES["ids"]
    assert patch.attrs["scene_times"][0] == {
        "datetime": "2015-10-12", "start_datetime": "2015-10-12", "end_datetime": "2015-10-13"
    }
    assert patch.attrs["valid_fraction"] == 1.0 and patch.attrs["fetch_seconds"] > 0
    assert patch.attrs["mask"] == "qa60" and patch.attrs["masked_scene_ids"] == SCENES["ids"]

    # Initialisation as the client does it, then one listing and one pixel request.
    assert [r.path.rsplit("/", 1)[-1] for r in server.requests] == [
        "rest", "rest", "algorithms", "value:compute", "image:computePixels"
    ]
    for r in server.requests:
        assert r.headers["authorization"] == f"Bearer {TOKEN}"
    pixels = server.requests[-1]
    assert pixels.method == "POST" and pixels.headers["X-Goog-User-Project"] == PROJECT
    grid = POINT.grid(10.0)
    assert pixels.body["grid"] == {
        "dimensions": {"width": grid.width, "height": grid.height},
        "affineTransform": {"scaleX": 10.0, "shearX": 0, "translateX": grid.left,
                            "shearY": 0, "scaleY": -10.0, "translateY": grid.top},
        "crsCode": "EPSG:32618",
    }
    assert pixels.body["bandIds"] == [*EE_BANDS, COUNT_BAND]
    assert pixels.body["fileFormat"] == "NPY"

    expression = pixels.body["expression"]
    top = _resolve(expression)  # float32 bands, then the uint16 clear count
    assert top["functionName"] == "Image.addBands"
    assert top["arguments"]["dstImg"]["functionName"] == "Image.toFloat"
    assert top["arguments"]["srcImg"]["functionName"] == "Image.toUint16"
    (load,) = _calls(expression, "ImageCollection.load")
    assert load["id"] == "COPERNICUS/S2_HARMONIZED"
    (window,) = _calls(expression, "DateRange")
    assert (window["start"], window["end"]) == (
        "2015-06-23", "2016-06-11"
    )
    (cloud,) = _calls(expression, "Filter.greaterThan")  # lte is not(greaterThan)
    assert cloud["leftField"] == "CLOUDY_PIXEL_PERCENTAGE"
    assert cloud["rightValue"] == 25
    (bounds,) = _calls(expression, "GeometryConstructors.Polygon")
    ring = np.array(bounds["coordinates"][0])
    np.testing.assert_allclose(
        [ring[:, 0].min(), ring[:, 1].min(), ring[:, 0].max(), ring[:, 1].max()],
        POINT.lonlat_geometry().bounds, atol=1e-6,
    )
    assert bounds["geodesic"] is False
    (qa,) = _calls(expression, "Image.bitwiseAnd")  # QA60 cloud mask: bits 10 and 11
    assert _const(qa["image2"]) == (1 << 10) | (1 << 11)
    assert _calls(expression, "reduce.median") and not _calls(expression, "ImageCollection.mosaic")
    selects = [a["bandSelectors"] for a in _calls(expression, "Image.select")]
    assert EE_BANDS in selects and ["QA60"] in selects

    # The same filters in the listing, which names the images by system:id.
    listing = server.paths("value:compute")[0].body["expression"]
    assert {a["property"] for a in
            _calls(listing, "AggregateFeatureCollection.array")} == {
        "system:id", "system:time_start"
    }
    windows = _calls(listing, "DateRange")  # one collection, referenced by both lists
    assert windows and all(w == window for w in windows)


def test_gaps_are_filled_like_other_providers(
    server: FakeEarthEngine, sample_provider: SampleProvider
) -> None:
    sensor = l1c(fill_value=-1.0)
    patch = provider(server).fetch(EDGE, WINDOW, sensor)
    expected = sample_provider.fetch(EDGE, WINDOW, sensor)
    np.testing.assert_array_equal(patch.values, expected.values)
    np.testing.assert_array_equal(patch.clear_count.values, expected.clear_count.values)
    assert 0.2 < patch.attrs["valid_fraction"] < 0.8
    assert patch.attrs["valid_fraction"] == expected.attrs["valid_fraction"]
    assert not np.isnan(patch.values).any() and (patch.values == -1.0).any()


def test_mosaic_puts_least_cloudy_on_top_and_lists_it_first(server: FakeEarthEngine) -> None:
    patch = provider(server).fetch(POINT, WINDOW, l1c(composite="mosaic"))
    expression = server.paths("image:computePixels")[0].body["expression"]
    assert _calls(expression, "ImageCollection.mosaic") and not _calls(expression, "reduce.median")
    sorts = [(a["key"], a.get("ascending", True))
             for a in _calls(expression, "Collection.limit")]
    # Outermost (applied last) first: by time, then most cloudy first, so the least cloudy
    # image is drawn last, on top.
    assert sorts == [("CLOUDY_PIXEL_PERCENTAGE", False), ("system:time_start", True)]
    assert patch.attrs["scene_ids"] == SCENES["ids"][::-1]


def test_other_collections_and_masks(server: FakeEarthEngine) -> None:
    source = provider(server)
    landsat = source.fetch(POINT, WINDOW, SensorSpec("landsat-c2-l2", ("red", "nir08"), 30.0))
    assert landsat.shape == (2, *POINT.grid(30.0).shape)
    body = server.paths("image:computePixels")[-1].body
    assert body["bandIds"] == ["SR_B4", "SR_B5", COUNT_BAND]
    ids = [a["id"] for a in _calls(body["expression"], "ImageCollection.load")]
    assert ids == ["LANDSAT/LC09/C02/T1_L2", "LANDSAT/LC08/C02/T1_L2"]
    assert _calls(body["expression"], "ImageCollection.merge")
    (qa,) = _calls(body["expression"], "Image.bitwiseAnd")
    assert _const(qa["image2"]) == 0b11111  # fill, dilated cloud, cirrus, cloud, shadow
    (cloud,) = _calls(body["expression"], "Filter.greaterThan")
    assert cloud["leftField"] == "CLOUD_COVER"

    source.fetch(POINT, WINDOW, SensorSpec("sentinel-1-grd", ("vv", "vh")))
    body = server.paths("image:computePixels")[-1].body
    assert body["bandIds"] == ["VV", "VH", COUNT_BAND]
    assert not _calls(body["expression"], "Filter.greaterThan")  # no cloud filter
    assert {a["rightValue"] for a in
            _calls(body["expression"], "Filter.listContains")} == {"VV", "VH"}

    l2a = source.fetch(POINT, WINDOW, SensorSpec("sentinel-2-l2a", ("B04",)))
    expression = server.paths("image:computePixels")[-1].body["expression"]
    (scl,) = _calls(expression, "Image.remap")  # SCL classes -> 0 (unclear), others 1
    assert scl["from"] == [0, 1, 3, 8, 9, 10] and scl["defaultValue"] == 1
    assert _calls(expression, "ImageCollection.load")[0]["id"] == "COPERNICUS/S2_SR_HARMONIZED"
    assert l2a.attrs["mask"] == "scl"


def test_mask_none_and_named_masks(server: FakeEarthEngine) -> None:
    source = provider(server)
    patch = source.fetch(POINT, WINDOW, l1c(mask="none"))
    expression = server.paths("image:computePixels")[-1].body["expression"]
    selects = [a["bandSelectors"] for a in _calls(expression, "Image.select")]
    assert ["QA60"] not in selects and not _calls(expression, "Image.bitwiseAnd")
    assert patch.attrs["mask"] == "none" and patch.attrs["masked_scene_ids"] == []
    # Still whole observations only: each image masked where any requested band is.
    (whole,) = _calls(expression, "Image.reduce")
    assert whole["reducer"]["functionName"] == "Reducer.min"
    source.fetch(POINT, WINDOW, SensorSpec("sentinel-2-l2a", ("B04",), mask="cloud_prob"))
    expression = server.paths("image:computePixels")[-1].body["expression"]
    (lt,) = _calls(expression, "Image.lt")
    assert _const(lt["image2"]) == 40
    assert ["MSK_CLDPRB"] in [a["bandSelectors"] for a in _calls(expression, "Image.select")]
    with pytest.raises(CapabilityError, match="Fmask"):
        source.fetch(POINT, WINDOW, SensorSpec("sentinel-2-l2a", ("B04",), mask="fmask"))


def test_no_image_is_nodata_without_asking_for_pixels(server: FakeEarthEngine) -> None:
    server.scenes = {"ids": [], "times": []}
    with pytest.raises(NoDataError, match="CLOUDY_PIXEL_PERCENTAGE <= 30"):
        provider(server).fetch(POINT, WINDOW, l1c())
    assert not server.paths("image:computePixels")


def test_large_grids_are_fetched_as_tiles(
    server: FakeEarthEngine, sample_provider: SampleProvider
) -> None:
    grid = POINT.grid(10.0)  # 256 x 256
    limit = 100 * 90 * 4 * len(BANDS)
    patch = provider(server, max_request_bytes=limit).fetch(POINT, WINDOW, l1c())
    np.testing.assert_array_equal(patch.values, sample_provider.fetch(POINT, WINDOW, l1c()).values)
    tiles = [r.body["grid"] for r in server.paths("image:computePixels")]
    assert len(tiles) > 1
    covered = np.zeros(grid.shape, int)
    for tile in tiles:
        w, h = tile["dimensions"]["width"], tile["dimensions"]["height"]
        assert w * h * 4 * (len(BANDS) + 1) <= limit and tile["crsCode"] == grid.crs
        col = round((tile["affineTransform"]["translateX"] - grid.left) / 10.0)
        row = round((grid.top - tile["affineTransform"]["translateY"]) / 10.0)
        covered[row:row + h, col:col + w] += 1
    assert (covered == 1).all()  # the tiles are exactly the grid


def test_tiles_respect_both_limits_and_cover_the_grid() -> None:
    grid = Grid("EPSG:32618", 500000.0, 4200000.0, 10.0, 70000, 300)
    tiles = eemod._tiles(grid, 13, eemod.MAX_REQUEST_BYTES, eemod.MAX_REQUEST_SIDE)
    covered = np.zeros(grid.shape, np.uint8)
    for row, col, tile in tiles:
        assert tile.width <= 32768 and tile.height <= 32768
        assert tile.width * tile.height * 13 * 4 <= 48 * 2**20
        assert tile.left == grid.left + col * 10.0 and tile.top == grid.top - row * 10.0
        covered[row:row + tile.height, col:col + tile.width] += 1
    assert (covered == 1).all()
    assert len(tiles) == -(-70000 * 300 * 13 * 4 // (48 * 2**20))  # as few as the size allows
    thin = Grid("EPSG:32618", 0.0, 0.0, 10.0, 70000, 1)  # tiny, but wider than 32768 px
    assert [t.width for _, _, t in eemod._tiles(thin, 1, 2**20, 32768)] == [23334, 23334, 23332]
    small = Grid("EPSG:32618", 0.0, 0.0, 10.0, 100, 100)
    assert eemod._tiles(small, 4, 2**20, 32768) == [(0, 0, small)]
    wkt = 'PROJCS["custom",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257]]]]'
    assert eemod._pixel_grid(Grid(wkt, 0.0, 0.0, 1.0, 1, 1))["crsWkt"] == wkt


# --------------------------------------------------------------------------- session


def test_initialised_once_across_fetches_and_threads(
    server: FakeEarthEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = ee.Initialize
    monkeypatch.setattr(ee, "Initialize", lambda **kw: (calls.append(kw), real(**kw))[1])
    server.delay = 0.02
    source = provider(server, max_concurrent=2)

    def work(_: int) -> None:
        for _ in range(3):
            source.fetch(POINT, WINDOW, l1c())

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, range(6)))  # re-raises any thread's error
    assert len(calls) == 1
    assert len(server.paths("rest")) == 2 and len(server.paths("algorithms")) == 1
    assert len(server.paths("image:computePixels")) == 18
    assert server.peak <= 2  # the provider's concurrency limit holds


def test_another_project_in_the_same_process_is_refused(server: FakeEarthEngine) -> None:
    provider(server).fetch(POINT, WINDOW, l1c())
    other = EarthEngineProvider("another-project", http_transport=server)
    with pytest.raises(ProviderError, match="one project per process"):
        other.fetch(POINT, WINDOW, l1c())


def test_a_session_the_caller_initialised_is_used_as_is(server: FakeEarthEngine) -> None:
    ee.Initialize(credentials=Credentials(token=TOKEN), project=PROJECT, http_transport=server)
    before = len(server.requests)
    EarthEngineProvider(backoff=0.001).fetch(POINT, WINDOW, l1c())
    assert [r.path.rsplit("/", 1)[-1] for r in server.requests[before:]] == [
        "value:compute", "image:computePixels"
    ]


def test_unauthenticated_says_what_to_run(
    server: FakeEarthEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "EE_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    # google.auth's last resort probes the GCE metadata server (blocked here, with retries);
    # NO_GCE_CHECK is read when google.auth is imported, so set its flag.
    from google.auth.compute_engine import _metadata

    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)
    source = EarthEngineProvider("some-project", http_transport=server)
    with pytest.raises(ProviderError, match="earthengine authenticate") as info:
        source.fetch(POINT, WINDOW, l1c())
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(info.value)
    assert server.requests == [] and not ee.data.is_initialized()


def test_service_account_key_from_the_environment(
    server: FakeEarthEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import base64

    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / "key.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "1",
        "private_key": pem, "client_email": f"eoembed@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
    }))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    EarthEngineProvider(PROJECT, http_transport=server).fetch(POINT, WINDOW, l1c())

    exchange = server.requests[0]  # the JWT exchanged for a token before anything else
    assert exchange.path == "https://oauth2.googleapis.com/token"
    form = exchange.body.decode() if isinstance(exchange.body, bytes) else exchange.body
    assertion = dict(pair.split("=") for pair in form.split("&"))["assertion"]
    claims = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
    assert "https://www.googleapis.com/auth/earthengine" in claims["scope"].split()
    assert all(r.headers["authorization"] == f"Bearer {SA_TOKEN}" for r in server.requests[1:])


def test_missing_project_says_how_to_set_one(server: FakeEarthEngine) -> None:
    source = EarthEngineProvider(credentials=Credentials(token=TOKEN), http_transport=server)
    with pytest.raises(ProviderError, match="earthengine:<project>"):
        source.fetch(POINT, WINDOW, l1c())


def test_unregistered_project_is_refused_with_a_hint(server: FakeEarthEngine) -> None:
    server.fail("algorithms", (403, "Permission denied: project not registered for Earth Engine"))
    with pytest.raises(ProviderError, match="registered for Earth Engine") as info:
        provider(server).fetch(POINT, WINDOW, l1c())
    assert not isinstance(info.value, ProviderUnavailableError)
    assert not ee.data.is_initialized()  # a later fetch initialises afresh
    provider(server).fetch(POINT, WINDOW, l1c())


# --------------------------------------------------------------------------- retries


def test_429_then_success_is_retried(server: FakeEarthEngine) -> None:
    server.fail("image:computePixels", (429, "Too Many Requests: quota exceeded"))
    patch = provider(server).fetch(POINT, WINDOW, l1c())
    assert len(server.paths("image:computePixels")) == 2 and patch.attrs["valid_fraction"] == 1.0


def test_too_many_concurrent_aggregations_is_retried(server: FakeEarthEngine) -> None:
    server.fail("value:compute", (400, "Too many concurrent aggregations."))
    provider(server).fetch(POINT, WINDOW, l1c())
    assert len(server.paths("value:compute")) == 2


def test_bad_request_is_a_provider_error_with_the_message(server: FakeEarthEngine) -> None:
    message = "Image.select: Pattern 'B8' did not match any bands."
    server.fail("image:computePixels", (400, message))
    with pytest.raises(ProviderError, match="HTTP 400") as info:
        provider(server).fetch(POINT, WINDOW, l1c())
    assert message in str(info.value) and not isinstance(info.value, ProviderUnavailableError)
    assert len(server.paths("image:computePixels")) == 1  # not retried


def test_persistent_failure_is_unavailable_after_retries(server: FakeEarthEngine) -> None:
    server.fail("image:computePixels", *[(503, "The service is currently unavailable.")] * 3)
    with pytest.raises(ProviderUnavailableError, match="after 2 retries"):
        provider(server, retries=2).fetch(POINT, WINDOW, l1c())
    assert len(server.paths("image:computePixels")) == 3


def test_backoff_doubles_with_jitter(
    server: FakeEarthEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(eemod.time, "sleep", sleeps.append)
    server.fail("image:computePixels", *[(429, "Too many requests")] * 3)
    provider(server, backoff=1.0).fetch(POINT, WINDOW, l1c())
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):
        assert 0.5 * 2**attempt <= slept <= 2**attempt


# --------------------------------------------------------------------------- end to end


def test_get_embedding_through_earth_engine_equals_sample(server: FakeEarthEngine) -> None:
    pytest.importorskip("torch")
    from eoembed import get_embedding

    via_ee = get_embedding("mosaiks", spatial=POINT, temporal=WINDOW, provider=provider(server))
    via_sample = get_embedding("mosaiks", spatial=POINT, temporal=WINDOW, provider="sample")
    np.testing.assert_array_equal(np.asarray(via_ee.data), np.asarray(via_sample.data))
    assert via_ee.meta["scene_ids"] == SCENES["ids"]


def test_alphaearth_from_earth_engine_equals_the_cog_mirror(
    server: FakeEarthEngine, tmp_path: Path, sample_dir: Path
) -> None:
    """The same place and year from Earth Engine's floats and from the mirror's int8 COGs.

    The fake serves, for the collection's bands, the values Earth Engine holds: the mirror
    fixture's dequantised pixels on the requested grid, its no-data pixels masked.
    """
    from eoembed import BBox, OutputSpec, get_embedding
    from eoembed.providers.alphaearth import AlphaEarthProvider
    from eoembed.testing.products import make_alphaearth_mirror

    mirror = make_alphaearth_mirror(tmp_path, sample_dir, years=(2024,))
    truth = AlphaEarthProvider(str(mirror.base))
    t = mirror.transform
    region = BBox(t.c + 500, t.f - 3500, t.c + 3500, t.f - 200, crs=mirror.crs)
    tiles = truth.tiles(region, 2024, collection="alphaearth-annual", temporal=TemporalSpec.year(2024))
    assert len(tiles) == 4

    held: dict[Grid, np.ndarray] = {}

    def earth_engine_values(band: str, grid: Grid) -> np.ndarray:
        if grid not in held:
            out = np.full((64, *grid.shape), np.nan, np.float32)
            for tile in tiles:
                out = np.where(np.isnan(out), truth.read_tile(tile, grid, range(64)), out)
            held[grid] = out
        return held[grid][int(band[1:])]

    server.band_source = earth_engine_values
    server.scenes = {"ids": ["GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL/xfixture2024aef"],
                     "times": [1704067200000]}
    # a window inside 2024 selects the 2024 layer, dated 1 January on Earth Engine too
    via_ee = get_embedding("alphaearth", spatial=region,
                           temporal=TemporalSpec.range("2024-03-01", "2024-09-01"),
                           output=OutputSpec.grid(), provider=provider(server))
    via_mirror = get_embedding("alphaearth", spatial=region, temporal=TemporalSpec.year(2024),
                               output=OutputSpec.grid(), provider=truth)
    np.testing.assert_array_equal(via_ee.data.values, via_mirror.data.values)
    assert np.isnan(via_ee.data.values).any()  # the fixture's no-data rows, masked on both
    assert via_ee.meta["valid_fraction"] == via_mirror.meta["valid_fraction"]
    (request,) = server.paths("image:computePixels")
    text = json.dumps(request.body)
    assert "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL" in text
    assert "2024-01-01" in text and "2025-01-01" in text and "2024-03-01" not in text
    assert "ImageCollection.mosaic" in text and "median" not in text.lower()
    assert request.body["bandIds"][:64] == [f"A{i:02d}" for i in range(64)]


# --------------------------------------------------------------------------- live


def _have_credentials() -> bool:
    home = Path(os.path.expanduser("~/.config/earthengine/credentials"))
    return bool(os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")) or home.exists()


@pytest.mark.network
@pytest.mark.skipif(not _have_credentials(), reason="no Earth Engine credentials on this machine")
def test_live_sentinel2_patch() -> None:
    ee.Reset()
    eemod._SESSION.reset()
    source = EarthEngineProvider(os.environ.get("EOEMBED_EE_PROJECT"))
    point = PointBuffer(lon=6.6, lat=46.5, buffer_m=320)
    patch = source.fetch(
        point, TemporalSpec.range("2023-06", "2023-09"),
        SensorSpec("sentinel-2-l2a", ("B02", "B03", "B04", "B08")),
    )
    assert patch.shape == (4, 64, 64)
    assert patch.attrs["scene_ids"][0].startswith("COPERNICUS/S2_SR_HARMONIZED/")
    assert patch.attrs["valid_fraction"] > 0.5
    assert 0 < float(patch.sel(band="B08").median()) < 10000
