"""StacProvider against real servers on loopback: rustac's STAC API and a range-request server.

The ``servers`` fixture starts everything the tests need, once per session, and stops it at
the end (:func:`eoembed.testing.servers.serve_sample_stac`): COGs of the sample scene's 10 m
bands, an HTTP file server for them (counting the bytes it sends and injecting faults on
request) and ``rustac serve`` loaded with STAC items whose assets point at that server.
Expected pixels come from the sample provider, which reads the original files from disk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eoembed import PointBuffer, SensorSpec, TemporalSpec, get_embedding
from eoembed.errors import (
    CapabilityError,
    NoDataError,
    ProviderError,
    ProviderUnavailableError,
    SpecError,
)
from eoembed.providers import StacProvider, get_provider
from eoembed.providers._stac_bands import KNOWN_STAC_COLLECTIONS
from eoembed.providers.stac import (
    EARTH_SEARCH_URL,
    PLANETARY_COMPUTER_URL,
    PlanetaryComputerSigner,
    scene_from_item,
    stac_datetime,
)
from eoembed.testing.servers import (
    BANDS,
    END_INCLUSIVE,
    L1C,
    L1C_ITEM,
    L2A,
    L2A_ITEM,
    Servers,
    free_port,
    serve_sample_stac,
)

pytest.importorskip("pystac_client")

POINT = PointBuffer(lon=-75.70, lat=37.70, buffer_m=1280)
WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
# The sample's acquisition day is unknown; STAC records the range, end_datetime inclusive.
START = "2015-06-23T00:00:00Z"

@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[Servers]:
    """COGs of the sample's 10 m bands, served over HTTP and catalogued by rustac's STAC API."""
    pytest.importorskip("rustac", reason="the STAC API server is rustac's (test extra)")
    pytest.importorskip("RangeHTTPServer", reason="the file server (test extra)")
    with serve_sample_stac(tmp_path_factory.mktemp("stac"), sample_dir) as running:
        yield running


@pytest.fixture
def fresh(servers: Servers) -> Iterator[Servers]:
    """The servers with statistics and faults reset before and after the test."""
    servers.control("reset")
    yield servers
    servers.control("reset")


def _nonce_signer() -> Any:
    """A sign= that only makes hrefs unique: GDAL caches by URL, so reads really hit the server."""
    nonce = uuid.uuid4().hex
    return lambda href: f"{href}?nonce={nonce}"


@pytest.fixture(scope="module")
def expected(sample_provider: Any) -> Any:
    """What the sample provider reads from the original files."""
    return sample_provider.fetch(POINT, WINDOW, SensorSpec(L1C, BANDS))


# --------------------------------------------------------------------- pixels


def test_same_patch_as_sample_provider(servers: Servers, expected: Any) -> None:
    provider = StacProvider(servers.api)
    got = provider.fetch(POINT, WINDOW, SensorSpec(L1C, BANDS))
    np.testing.assert_array_equal(got.values, expected.values)
    assert got.dims == expected.dims
    assert list(got.band.values) == list(BANDS)
    np.testing.assert_array_equal(got.x.values, expected.x.values)
    np.testing.assert_array_equal(got.y.values, expected.y.values)
    assert got.rio.crs == expected.rio.crs
    assert got.attrs["provider"] == "stac"
    assert got.attrs["stac_api"] == servers.api
    assert got.attrs["scene_ids"] == [L1C_ITEM]
    # The range is kept: no acquisition day is invented.
    assert got.attrs["scene_times"] == [
        {"datetime": None, "start_datetime": "2015-06-23", "end_datetime": "2016-06-11"}
    ]


def test_only_the_blocks_under_the_region_are_downloaded(fresh: Servers, expected: Any) -> None:
    provider = StacProvider(fresh.api, sign=_nonce_signer())
    got = provider.fetch(POINT, WINDOW, SensorSpec(L1C, BANDS))
    np.testing.assert_array_equal(got.values, expected.values)
    stats = fresh.control("stats")
    fractions = {b: stats[f"/{b}.tif"]["bytes"] / fresh.sizes[b] for b in BANDS}
    # Measured: about 6% of each file (its header and the blocks under the region).
    assert all(0 < f < 0.10 for f in fractions.values()), fractions
    assert all(s in (200, 206) for s in fresh.statuses())


def test_planetary_computer_band_keys_and_l2a(servers: Servers, expected: Any) -> None:
    provider = StacProvider(servers.api, collections=[L1C, L2A])
    got = provider.fetch(POINT, WINDOW, SensorSpec(L2A, BANDS[:3]))
    np.testing.assert_array_equal(got.values, expected.values[:3])
    assert got.attrs["processing_level"] == "L2A"
    assert got.attrs["scene_ids"] == [L2A_ITEM]


def test_mosaiks_embedding_matches_sample(servers: Servers) -> None:
    via_stac = get_embedding(
        "mosaiks", spatial=POINT, temporal=WINDOW, provider=StacProvider(servers.api)
    )
    local = get_embedding("mosaiks", spatial=POINT, temporal=WINDOW, provider="sample")
    np.testing.assert_array_equal(via_stac.numpy(), local.numpy())
    assert via_stac.meta["provider"] == "stac"
    assert via_stac.meta["scene_ids"] == [L1C_ITEM]


def test_window_rules_follow_the_scene_provider(servers: Servers) -> None:
    provider = StacProvider(servers.api)
    sensor = SensorSpec(L1C, ("B04",))
    # The API returns the item (its range overlaps 2015), but the day may lie in 2016.
    with pytest.raises(NoDataError, match=r"2015-06-23, 2016-06-11"):
        provider.fetch(POINT, TemporalSpec.year(2015), sensor)
    with pytest.raises(NoDataError, match="no 'sentinel-2-l1c' item"):
        provider.fetch(POINT, TemporalSpec.year(2014), sensor)
    far = PointBuffer(lon=10.0, lat=45.0, buffer_m=1000)
    with pytest.raises(NoDataError, match="lon/lat bounds"):
        provider.fetch(far, WINDOW, sensor)


# --------------------------------------------------------------------- faults


def test_missing_asset_names_band_and_item(servers: Servers) -> None:
    provider = StacProvider(servers.api)
    with pytest.raises(ProviderError, match=rf"{L2A_ITEM}.*no asset for band\(s\) B08") as exc:
        provider.fetch(POINT, WINDOW, SensorSpec(L2A, ("B04", "B08")))
    assert "nir" in str(exc.value)  # the spellings looked for
    assert "B02, B03, B04" in str(exc.value)  # what the item has


def test_file_server_500s_are_retried(fresh: Servers, expected: Any) -> None:
    fresh.control("fail", count=2, code=500)
    provider = StacProvider(fresh.api, sign=_nonce_signer(), retries=3, backoff=0.05)
    got = provider.fetch(POINT, WINDOW, SensorSpec(L1C, BANDS))
    np.testing.assert_array_equal(got.values, expected.values)
    assert fresh.statuses().count(500) == 2


def test_file_server_500s_beyond_the_retries_are_a_provider_error(fresh: Servers) -> None:
    fresh.control("fail", count=1000, code=503)
    provider = StacProvider(fresh.api, sign=_nonce_signer(), retries=1, backoff=0.01)
    with pytest.raises(ProviderError, match=rf"{L1C_ITEM}.*503"):
        provider.fetch(POINT, WINDOW, SensorSpec(L1C, ("B04",)))


def test_api_500s_and_timeouts_are_retried(fresh: Servers) -> None:
    sensor = SensorSpec(L1C, ("B04",))
    # The landing page goes through the proxy; its links lead straight to rustac.
    fresh.control("fail", count=2, code=500)
    scenes = StacProvider(f"{fresh.files}/stac", retries=3, backoff=0.05).search(
        POINT, WINDOW, sensor
    )
    assert [s.id for s in scenes] == [L1C_ITEM]
    assert fresh.control("stats")["/stac"]["statuses"] == [500, 500, 200]

    fresh.control("reset")
    fresh.control("slow", count=1, seconds=3)
    t0 = time.perf_counter()
    scenes = StacProvider(f"{fresh.files}/stac", timeout=0.5, retries=2, backoff=0.05).search(
        POINT, WINDOW, sensor
    )
    assert [s.id for s in scenes] == [L1C_ITEM]
    assert time.perf_counter() - t0 < 2.5  # gave up on the stalled answer and asked again


@pytest.mark.parametrize(
    ("extensions", "sent"),
    [
        ("filter,sort", {
            "filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 20.0]},
            "filter-lang": "cql2-json",
            "sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}],
        }),
        ("query", {"query": {"eo:cloud_cover": {"lte": 20.0}}}),
    ],
)
def test_search_request(fresh: Servers, extensions: str, sent: dict[str, Any]) -> None:
    fresh.control("conform", add=extensions)
    provider = StacProvider(f"{fresh.files}/stac")
    sensor = SensorSpec(L1C, ("B04",), cloudy_pct=20)
    assert [s.id for s in provider.search(POINT, WINDOW, sensor)] == [L1C_ITEM]
    (body,) = fresh.control("stats")["/stac/search"]["bodies"]
    assert body["collections"] == [L1C]
    # [2015-06-23, 2016-06-11) as STAC's inclusive interval
    assert body["datetime"] == "2015-06-23T00:00:00Z/2016-06-10T23:59:59.999999Z"
    assert body["intersects"]["type"] == "Polygon"
    from shapely.geometry import shape

    assert shape(body["intersects"]).equals_exact(POINT.lonlat_geometry(), 1e-9)
    assert {k: body[k] for k in sent} == sent
    assert not {"filter", "query", "sortby"} - set(sent) & set(body)

    # Sentinel-1 has no cloud cover: no cloud filter (it would drop every item).
    with pytest.raises(NoDataError, match="no 'sentinel-1-rtc' item"):
        provider.search(POINT, WINDOW, SensorSpec("sentinel-1-rtc", ("vv",)))
    last = fresh.control("stats")["/stac/search"]["bodies"][-1]
    assert "filter" not in last and "query" not in last and "sortby" not in last


def test_api_down_is_a_fast_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    provider = StacProvider(url, retries=2, backoff=0.05)
    t0 = time.perf_counter()
    with pytest.raises(ProviderUnavailableError, match="unreachable") as exc:
        provider.fetch(POINT, WINDOW, SensorSpec(L1C, ("B04",)))
    assert time.perf_counter() - t0 < 5
    assert isinstance(exc.value, ConnectionError) and isinstance(exc.value, ProviderError)
    assert url in str(exc.value)


def test_server_that_is_not_a_stac_api(fresh: Servers) -> None:
    provider = StacProvider(f"{fresh.files}/")  # a directory listing in HTML
    with pytest.raises(ProviderError, match="did not answer like a STAC API"):
        provider.search(POINT, WINDOW, SensorSpec(L1C, ("B04",)))


def test_api_failing_after_retries_is_unavailable(fresh: Servers) -> None:
    fresh.control("fail", count=100, code=503)
    provider = StacProvider(f"{fresh.files}/stac", retries=1, backoff=0.01)
    with pytest.raises(ProviderUnavailableError, match="HTTP 503"):
        provider.search(POINT, WINDOW, SensorSpec(L1C, ("B04",)))


class TokenSigner:
    """Signs with a token the file server refuses until :meth:`refresh` is called."""

    def __init__(self, stale: str, fresh: str, *, expiring: bool = False) -> None:
        self.stale, self.fresh, self.expiring = stale, fresh, expiring
        self.current = stale
        self.refreshes = 0
        self.signed: list[str] = []

    def __call__(self, href: str) -> str:
        expiry = "2000-01-01T00:00:00Z" if self.current == self.stale else "2999-01-01T00:00:00Z"
        signed = f"{href}?token={self.current}"
        if self.expiring:
            signed += f"&se={expiry}"
        self.signed.append(signed)
        return signed

    def refresh(self) -> None:
        self.refreshes += 1
        self.current = self.fresh


def test_signature_refused_with_403_is_renewed(fresh: Servers, expected: Any) -> None:
    nonce = uuid.uuid4().hex
    signer = TokenSigner(f"stale-{nonce}", f"fresh-{nonce}")
    fresh.control("tokens", valid=signer.fresh)
    got = StacProvider(fresh.api, sign=signer).fetch(POINT, WINDOW, SensorSpec(L1C, BANDS))
    np.testing.assert_array_equal(got.values, expected.values)
    assert signer.refreshes == 1
    assert 403 in fresh.statuses()
    assert all(signer.fresh in s for s in signer.signed[-len(BANDS):])


def test_signer_without_refresh_is_simply_called_again(fresh: Servers, expected: Any) -> None:
    nonce = uuid.uuid4().hex
    calls: list[str] = []

    def sign(href: str) -> str:  # the first signature of each band is already revoked
        calls.append(href)
        return f"{href}?token={'old' if len(calls) <= len(BANDS) else 'new'}-{nonce}"

    fresh.control("tokens", valid=f"new-{nonce}")
    got = StacProvider(fresh.api, sign=sign).fetch(POINT, WINDOW, SensorSpec(L1C, BANDS))
    np.testing.assert_array_equal(got.values, expected.values)
    assert len(calls) == 2 * len(BANDS)


def test_expired_se_signature_is_renewed_before_reading(fresh: Servers, expected: Any) -> None:
    nonce = uuid.uuid4().hex
    signer = TokenSigner(f"stale-{nonce}", f"fresh-{nonce}", expiring=True)
    fresh.control("tokens", valid=signer.fresh)
    got = StacProvider(fresh.api, sign=signer).fetch(POINT, WINDOW, SensorSpec(L1C, BANDS))
    np.testing.assert_array_equal(got.values, expected.values)
    assert signer.refreshes == 1
    assert 403 not in fresh.statuses()  # renewed before any read was refused


def test_signature_refused_again_is_a_provider_error(fresh: Servers) -> None:
    calls: list[str] = []

    def sign(href: str) -> str:
        calls.append(href)
        return f"{href}?token=revoked-{uuid.uuid4().hex}"

    fresh.control("tokens", valid="none-of-these")
    with pytest.raises(ProviderError, match=rf"{L1C_ITEM}.*403"):
        StacProvider(fresh.api, sign=sign).fetch(POINT, WINDOW, SensorSpec(L1C, ("B04",)))
    assert len(calls) == 2  # signed, refused, signed again, refused: no endless loop


# --------------------------------------------------------------------- no network needed


def test_collections_are_declared_without_network() -> None:
    from eoembed.api import check_contract, default_sensor
    from eoembed.embedders import describe_model

    provider = StacProvider(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    infos = provider.collections()
    assert set(infos) == set(KNOWN_STAC_COLLECTIONS)
    assert infos[L1C].processing_level == "L1C" and infos[L2A].processing_level == "L2A"
    assert "B8A" in infos[L2A].band_names and "B10" not in infos[L2A].band_names
    assert infos["hls-l30"].nodata == -9999.0
    card = describe_model("mosaiks")
    assert check_contract(card, default_sensor(card), provider) == []
    with pytest.raises(CapabilityError, match="B99"):
        provider.fetch(POINT, WINDOW, SensorSpec(L1C, ("B99",)))
    with pytest.raises(CapabilityError, match="does not serve collection 'nope'"):
        provider.fetch(POINT, WINDOW, SensorSpec("nope", ("B04",)))


def test_collection_selection() -> None:
    url = "http://127.0.0.1:9"
    assert set(StacProvider(url, collections=["hls2-s30"]).collections()) == {"hls-s30"}
    assert set(StacProvider(url, collections={"hls-l30": "HLSL30_2.0"}).collections()) == {
        "hls-l30"
    }
    with pytest.raises(SpecError, match="not-a-collection"):
        StacProvider(url, collections=["not-a-collection"])
    with pytest.raises(SpecError, match="url"):
        StacProvider("ftp://example.org")


def test_registered_names() -> None:
    stac = get_provider("stac:http://127.0.0.1:9/api")
    assert isinstance(stac, StacProvider) and stac.url == "http://127.0.0.1:9/api"
    with pytest.raises(SpecError):
        get_provider("stac")
    es = get_provider("earth-search")
    assert isinstance(es, StacProvider) and es.url == EARTH_SEARCH_URL
    assert es.name == "earth-search" and L2A in es.collections()
    pc = get_provider("planetary-computer")
    assert isinstance(pc, StacProvider) and pc.url == PLANETARY_COMPUTER_URL
    assert isinstance(pc.sign, PlanetaryComputerSigner)
    assert {"hls-s30", "hls-l30", "sentinel-1-rtc"} <= set(pc.collections())


def test_half_open_window_becomes_inclusive_stac_interval() -> None:
    assert stac_datetime(TemporalSpec.year(2021)) == (
        "2021-01-01T00:00:00Z/2021-12-31T23:59:59.999999Z"
    )
    assert stac_datetime(TemporalSpec.range("2020-02-28", "2020-03-01")) == (
        "2020-02-28T00:00:00Z/2020-02-29T23:59:59.999999Z"
    )


def _pystac_item(assets: dict[str, dict[str, Any]], **props: Any) -> Any:
    import pystac

    item = pystac.Item.from_dict({
        "type": "Feature", "stac_version": "1.0.0", "id": "x",
        "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}, "bbox": [0, 0, 0, 0],
        "properties": {"datetime": "2021-06-01T10:20:30Z", **props},
        "links": [], "assets": {
            k: {"href": f"https://example.org/{k}", "type": "image/tiff; application=geotiff",
                **v}
            for k, v in assets.items()
        },
    })
    return item


def _eo(name: str, common: str | None = None) -> dict[str, Any]:
    entry = {"name": name, **({"common_name": common} if common else {})}
    return {"eo:bands": [entry]}


@pytest.mark.parametrize(
    ("collection", "assets", "expected_bands"),
    [
        # earth-search Sentinel-2: common-name keys, JP2 twins, a 3-band visual asset
        (L2A, {"red": _eo("red", "red"), "nir08": _eo("nir08", "nir08"),
               "red-jp2": {"type": "image/jp2", **_eo("red", "red")},
               "visual": {"eo:bands": [{"name": "red"}, {"name": "green"}, {"name": "blue"}]},
               "scl": {}}, {"B04": "red", "B8A": "nir08", "SCL": "scl"}),
        # Planetary Computer Sentinel-2: band-id keys
        (L2A, {"B04": _eo("B04", "red"), "B8A": _eo("B8A", "nir08"), "AOT": {}},
         {"B04": "B04", "B8A": "B8A"}),
        # Landsat: common-name keys, or only eo:bands names/common names to go by
        ("landsat-c2-l2", {"red": _eo("SR_B4", "red"), "x1": _eo("SR_B5"),
                           "x2": _eo("SR_B1", "blue"), "qa_pixel": {}},
         {"red": "red", "nir08": "x1", "blue": "x2", "qa_pixel": "qa_pixel"}),
        # HLS L30 in the Sentinel-2 vocabulary: its B05 is the narrow NIR (B8A)
        ("hls-l30", {"B05": {}, "B06": {}, "B09": {}, "B10": {}, "Fmask": {}},
         {"B8A": "B05", "B11": "B06", "B10": "B09", "lwir11": "B10", "Fmask": "Fmask"}),
        ("hls-s30", {"B05": {}, "B8A": {}, "Fmask": {}},
         {"B05": "B05", "B8A": "B8A", "Fmask": "Fmask"}),
        ("sentinel-1-rtc", {"vv": {}, "vh": {}}, {"vv": "vv", "vh": "vh"}),
    ],
)
def test_asset_spellings_map_to_one_vocabulary(
    collection: str, assets: dict[str, Any], expected_bands: dict[str, str]
) -> None:
    table = KNOWN_STAC_COLLECTIONS[collection]
    scene = scene_from_item(_pystac_item(assets, **{"eo:cloud_cover": 12.5}), table)
    assert dict(scene.assets) == {
        b: f"https://example.org/{key}" for b, key in expected_bands.items()
    }
    assert set(scene.assets) <= set(table.info.band_names)
    assert scene.collection == collection and scene.cloud_cover == 12.5
    assert scene.date_known and str(scene.start) == "2021-06-01"


def test_item_with_only_a_range_keeps_it() -> None:
    item = _pystac_item({"B04": {}}, start_datetime=START, end_datetime=END_INCLUSIVE)
    item.datetime = None
    scene = scene_from_item(item, KNOWN_STAC_COLLECTIONS[L1C])
    assert (str(scene.start), str(scene.end)) == ("2015-06-23", "2016-06-11")
    assert not scene.date_known


def test_import_eoembed_does_not_import_pystac_client() -> None:
    code = (
        "import sys, eoembed, eoembed.providers\n"
        "from eoembed.providers import get_provider\n"
        "p = get_provider('earth-search')\n"
        "print(' '.join(m for m in ('pystac_client', 'planetary_computer') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


def test_signing_covers_the_mask_band_of_a_masked_request():
    """A signed L2A read signs SCL too, so cloud masking survives signing (Planetary Computer)."""
    from eoembed.providers.base import Scene
    from eoembed.providers.stac import StacProvider

    signed_hrefs: list[str] = []

    def sign(href: str) -> str:
        signed_hrefs.append(href)
        return f"{href}?sig=1"

    provider = StacProvider("http://127.0.0.1:9/stac", sign=sign)
    l2a = SensorSpec("sentinel-2-l2a", ("B04", "B08"), 10)
    assert provider._bands_to_sign(l2a) == ("B04", "B08", "SCL")
    unmasked = SensorSpec("sentinel-2-l2a", ("B04", "B08"), 10, mask="none")
    assert provider._bands_to_sign(unmasked) == ("B04", "B08")
    scene = Scene("s", "sentinel-2-l2a", dt.date(2021, 6, 1), dt.date(2021, 6, 2),
                  "POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))",
                  {"B04": "http://x/B04.tif", "B08": "http://x/B08.tif", "SCL": "http://x/SCL.tif"})
    without_scl = dataclasses.replace(scene, assets={"B04": "http://x/B04.tif",
                                                     "B08": "http://x/B08.tif"})
    with_mask, lacking = provider._signed([scene, without_scl], ("B04", "B08", "SCL"), renew=False)
    assert with_mask.assets["SCL"] == "http://x/SCL.tif?sig=1"
    assert set(lacking.assets) == {"B04", "B08"}


# --------------------------------------------------------------------- injected faults

FAULT_REGIONS = [
    PointBuffer(-75.70 + 0.01 * (i % 4 - 2), 37.70 + 0.01 * (i // 4 - 1), 320)
    for i in range(12)
]


def _export(servers: Servers, out: Path, sign: Any, **kwargs: Any) -> Any:
    """An export of the fault regions through the pipeline, the API behind the file server."""
    from eoembed.pipeline import export_batch

    provider = StacProvider(f"{servers.files}/stac", collections=[L1C], sign=sign,
                            backoff=0.01)
    kwargs.setdefault("on_error", "continue")
    return export_batch(
        FAULT_REGIONS, "mosaiks", temporal=WINDOW, out=out, sensor=SensorSpec(L1C, BANDS, 10),
        provider=provider, retry_backoff_s=0.01, progress=False, device="cpu", **kwargs,
    )


@pytest.fixture(scope="module")
def clean_export(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The fault regions exported without faults: what every faulty run must equal."""
    from eoembed.pipeline import load_export

    servers.control("reset")
    out = tmp_path_factory.mktemp("clean")
    result = _export(servers, out, _nonce_signer())
    assert result.ok == len(FAULT_REGIONS)
    return load_export(out)


@pytest.mark.parametrize(
    "faults",
    [
        {"rate": 0.2, "seed": 7, "kinds": "500,503,429,drop,reset", "scope": "all"},
        {"rate": 0.2, "seed": 3, "kinds": "drop", "scope": "files"},
        {"first": 1, "kinds": "drop", "scope": "files"},
        {"first": 1, "kinds": "503", "scope": "all"},
    ],
    ids=["20pct-mixed", "20pct-dropped", "first-per-file-dropped", "first-per-file-503"],
)
def test_every_region_survives_injected_faults_in_one_run(
    fresh: Servers, tmp_path: Path, clean_export: Any, faults: dict[str, Any]
) -> None:
    """The same URLs are read again after a failure (one nonce per test, like public COGs):
    GDAL's cached failure must not stop the retry from reaching the server."""
    from eoembed.pipeline import load_export, read_manifest

    fresh.control("faults", **faults)
    result = _export(fresh, tmp_path / "out", _nonce_signer())
    injected = fresh.faults()
    fresh.control("reset")
    assert injected > 0
    assert (result.ok, result.failed, result.total) == (len(FAULT_REGIONS), 0, len(FAULT_REGIONS))
    assert {e.status for e in read_manifest(tmp_path / "out")} == {"ok"}
    got = load_export(tmp_path / "out")
    np.testing.assert_array_equal(
        np.stack(got.sort_values("id")["embedding"].to_numpy()),
        np.stack(clean_export.sort_values("id")["embedding"].to_numpy()),
    )


def test_a_failed_open_is_retried_past_gdals_cache(fresh: Servers, expected: Any) -> None:
    fresh.control("faults", first=1, kinds="drop")
    provider = StacProvider(fresh.api, sign=_nonce_signer(), retries=1, backoff=0.01)
    got = provider.fetch(POINT, WINDOW, SensorSpec(L1C, BANDS))
    np.testing.assert_array_equal(got.values, expected.values)
    stats = fresh.control("stats")
    for band in BANDS:  # dropped once, then answered: the retry reached the server
        assert stats[f"/{band}.tif"]["statuses"][0] == "drop"
        assert set(stats[f"/{band}.tif"]["statuses"][1:]) <= {200, 206}


def test_not_found_is_not_retried(fresh: Servers) -> None:
    fresh.control("fail", count=1000, code=404)
    provider = StacProvider(fresh.api, sign=_nonce_signer(), retries=3, backoff=0.01)
    with pytest.raises(ProviderError, match="404"):
        provider.fetch(POINT, WINDOW, SensorSpec(L1C, ("B04",)))
    assert fresh.statuses().count(404) == 1


def test_a_signed_url_failing_without_status_leaks_no_signature(
    fresh: Servers, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import traceback

    caplog.set_level(logging.DEBUG)

    secret = f"SECRET{uuid.uuid4().hex}"
    sign = lambda href: f"{href}?se=2999-01-01T00%3A00%3A00Z&sp=r&sig={secret}"
    # A body that is no TIFF: GDAL's message quotes the whole signed URL, with no status.
    fresh.control("faults", rate=1.0, kinds="garbage", scope="files")
    result = _export(fresh, tmp_path / "out", sign, max_retries=0)
    assert result.failed == len(FAULT_REGIONS)
    manifest = (tmp_path / "out" / "manifest.jsonl").read_text()
    summary = json.dumps(result.to_dict())
    assert "sig=***" in manifest and "sig=***" in summary  # the failing URL, its secret masked
    assert secret not in manifest and secret not in summary

    with pytest.raises(ProviderError) as exc:
        StacProvider(fresh.api, sign=sign, retries=1, backoff=0.01).fetch(
            POINT, WINDOW, SensorSpec(L1C, ("B04",))
        )
    shown = "".join(traceback.format_exception(exc.value))
    assert "sig=***" in shown and secret not in shown
    assert caplog.records and secret not in caplog.text  # GDAL's messages, as rasterio logs them
    assert not any(  # the log filter is removed after
        logging.getLogger(name).filters for name in ("rasterio._env", "rasterio._err")
    )
    fresh.control("reset")
