"""StacProvider against real servers on loopback: rustac's STAC API and a range-request server.

The ``servers`` fixture starts everything the tests need, once per session, and stops it at
the end: COGs of the sample scene's 10 m bands, an HTTP file server for them (RangeHTTPServer
in a subprocess, counting the bytes it sends and injecting faults on request) and
``rustac serve`` (in-memory backend) loaded with STAC items whose assets point at that server.
Both run in their own processes: an HTTP server thread inside the test process could wait on
the GIL while GDAL holds it. Expected pixels come from the sample provider, which reads the
original files from disk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

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
from eoembed.testing import make_cog, make_stac_item

pytest.importorskip("pystac_client")

L1C, L2A = "sentinel-2-l1c", "sentinel-2-l2a"
BANDS = ("B02", "B03", "B04", "B08")
ES_KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}  # earth-search spelling
POINT = PointBuffer(lon=-75.70, lat=37.70, buffer_m=1280)
WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
# The sample's acquisition day is unknown; STAC records the range, end_datetime inclusive.
START, END_INCLUSIVE = "2015-06-23T00:00:00Z", "2016-06-10T23:59:59Z"
L1C_ITEM, L2A_ITEM = "s2-l1c-sample", "s2-l2a-no-nir"

FILE_SERVER = r'''
"""Serve a folder with range requests; count bytes sent; fail, stall or refuse on request.

Control paths: /_stats (bytes and statuses per path), /_reset, /_fail?count=N&code=C (the
next N requests answer C), /_slow?count=N&seconds=S (the next N wait S first),
/_tokens?valid=a,b (requests with a token= query parameter outside that set get 403).
Paths under /stac are proxied to the upstream STAC API given as second argument, links
rewritten so that clients stay on the proxy, request bodies recorded in the statistics;
/_conform?add=filter,query,sort advertises those extensions as well and strips their
fields before forwarding (the upstream has none), so clients' use of them can be checked.
"""
import json, sys, threading, time, urllib.error, urllib.request
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from RangeHTTPServer import RangeRequestHandler

LOCK = threading.Lock()
STATS = {}
STATE = {"fail": 0, "code": 500, "slow": 0, "delay": 0.0, "tokens": None, "conform": []}
EXTENSION_FIELDS = {"filter": ("filter", "filter-lang"), "query": ("query",), "sort": ("sortby",)}
ROOT, UPSTREAM = sys.argv[1], sys.argv[2].rstrip("/")


class Counting:
    def __init__(self, out):
        self.out, self.n = out, 0

    def write(self, data):
        self.n += len(data)
        return self.out.write(data)


class Handler(RangeRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=ROOT, **kwargs)

    def log_message(self, *args):
        pass

    def _entry(self):
        return STATS.setdefault(
            urlsplit(self.path).path, {"bytes": 0, "statuses": [], "bodies": []}
        )

    def send_response(self, code, message=None):
        if not urlsplit(self.path).path.startswith("/_"):
            with LOCK:
                self._entry()["statuses"].append(code)
        super().send_response(code, message)

    def copyfile(self, source, outputfile):
        counting = Counting(outputfile)
        super().copyfile(source, counting)
        with LOCK:
            self._entry()["bytes"] += counting.n

    def _json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handled(self):
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path.startswith("/_"):
            with LOCK:
                if parts.path == "/_reset":
                    STATS.clear()
                    STATE.update(fail=0, slow=0, tokens=None, conform=[])
                elif parts.path == "/_fail":
                    STATE.update(fail=int(query["count"]), code=int(query.get("code", 500)))
                elif parts.path == "/_slow":
                    STATE.update(slow=int(query["count"]), delay=float(query["seconds"]))
                elif parts.path == "/_conform":
                    STATE["conform"] = query["add"].split(",")
                elif parts.path == "/_tokens":
                    STATE["tokens"] = set(query.get("valid", "").split(","))
                stats = json.loads(json.dumps(STATS))
            self._json(stats)
            return True
        with LOCK:
            fail = STATE["fail"] > 0
            STATE["fail"] -= fail
            code = STATE["code"]
            delay = STATE["delay"] if STATE["slow"] > 0 else 0.0
            STATE["slow"] -= delay > 0
            token = query.get("token")
            refused = token is not None and STATE["tokens"] is not None and (
                token not in STATE["tokens"]
            )
        if delay:
            time.sleep(delay)
        if fail or refused:
            self.send_error(code if fail else 403)
            return True
        if parts.path == "/stac" or parts.path.startswith("/stac/"):
            rest = parts.path[len("/stac"):] or "/"
            self._proxy(rest + (f"?{parts.query}" if parts.query else ""))
            return True
        return False

    def _proxy(self, rest):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with LOCK:
            conform = list(STATE["conform"])
            if body:
                self._entry()["bodies"].append(json.loads(body))
        if body and conform:
            fields = json.loads(body)
            for name in conform:
                for key in EXTENSION_FIELDS[name]:
                    fields.pop(key, None)
            body = json.dumps(fields).encode()
        request = urllib.request.Request(UPSTREAM + rest, data=body, method=self.command)
        if self.headers.get("Content-Type"):
            request.add_header("Content-Type", self.headers["Content-Type"])
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, data = response.status, response.read()
                ctype = response.headers.get("Content-Type")
        except urllib.error.HTTPError as err:
            status, data, ctype = err.code, err.read(), err.headers.get("Content-Type")
        here = f"http://127.0.0.1:{self.server.server_port}/stac"
        data = data.replace(UPSTREAM.encode(), here.encode())
        if rest == "/" and conform:
            landing = json.loads(data)
            landing["conformsTo"] += [
                f"https://api.stacspec.org/v1.0.0/item-search#{name}" for name in conform
            ]
            data = json.dumps(landing).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if not self._handled():
            super().do_GET()

    def do_HEAD(self):
        if not self._handled():
            super().do_HEAD()

    def do_POST(self):
        if not self._handled():
            self.send_error(405)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_port, flush=True)
server.serve_forever()
'''


RUSTAC = "import sys\nfrom rustac import main\nsys.exit(main())\n"
"""The ``rustac`` console script, run as a file by this interpreter: no PATH needed. (Not
``-c``: rustac parses the process's own argv, where ``-c`` and the code come first.)"""

# --------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(url: str, proc: subprocess.Popen[Any], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"{what} not ready at {url} after {timeout} s")


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class Servers:
    files: str
    """Root URL of the file server (which also proxies ``/stac`` to the API)."""
    api: str
    """Root URL of the STAC API."""
    sizes: dict[str, int]
    """Band -> COG size in bytes."""

    def control(self, path: str, **query: object) -> dict[str, Any]:
        """Call a control path of the file server; returns its statistics."""
        params = "&".join(f"{k}={v}" for k, v in query.items())
        with urllib.request.urlopen(f"{self.files}/_{path}?{params}", timeout=10) as response:
            stats: dict[str, Any] = json.loads(response.read())
            return stats

    def statuses(self) -> list[int]:
        """Every status the file server answered (control paths excepted), in order per path."""
        return [s for entry in self.control("stats").values() for s in entry["statuses"]]


def _item(item_id: str, collection: str, assets: dict[str, Path], files_url: str,
          common: dict[str, str]) -> dict[str, Any]:
    """A STAC item (as JSON) over the sample scene, its assets served over HTTP."""
    item = make_stac_item(
        item_id, {k: str(p) for k, p in assets.items()}, start="2015-06-23", end="2016-06-10",
        collection=collection,
    )
    item.properties["end_datetime"] = END_INCLUSIVE
    with rasterio.open(next(iter(assets.values()))) as src:
        item.properties.update({
            "proj:code": f"EPSG:{src.crs.to_epsg()}", "platform": "sentinel-2a",
            "constellation": "sentinel-2",
        })
    item.stac_extensions += [
        "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    ]
    for key, asset in item.assets.items():
        path = Path(asset.href)
        with rasterio.open(path) as src:
            asset.extra_fields["proj:shape"] = [src.height, src.width]
            asset.extra_fields["proj:transform"] = list(src.transform)[:6]
        asset.extra_fields["eo:bands"] = [{"name": key, "common_name": common[key]}]
        asset.href = f"{files_url}/{path.name}"
    data: dict[str, Any] = item.to_dict()
    return data


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[Servers]:
    """COGs of the sample's 10 m bands, served over HTTP and catalogued by rustac's STAC API."""
    pytest.importorskip("rustac", reason="the STAC API server is rustac's (test extra)")
    pytest.importorskip("RangeHTTPServer", reason="the file server (test extra)")
    root = tmp_path_factory.mktemp("stac")
    cogs = root / "cogs"
    for band in BANDS:
        with rasterio.open(sample_dir / f"s2_{band}.jp2") as src:
            make_cog(cogs / f"{band}.tif", src.read(1), src.crs.to_string(), src.transform,
                     blocksize=256)
    sizes = {band: (cogs / f"{band}.tif").stat().st_size for band in BANDS}

    api_port = _free_port()
    api = f"http://127.0.0.1:{api_port}"
    files_proc = subprocess.Popen(
        [sys.executable, "-c", FILE_SERVER, str(cogs), api],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert files_proc.stdout is not None
        files = f"http://127.0.0.1:{int(files_proc.stdout.readline())}"
        _wait_ready(f"{files}/_stats", files_proc, "file server")

        band_files = {ES_KEYS[b]: cogs / f"{b}.tif" for b in BANDS}
        l1c = _item(L1C_ITEM, L1C, band_files, files, {k: k for k in band_files})
        # A JP2 twin of "red" (as earth-search has): the COG must win, the JP2 does not exist.
        l1c["assets"]["red-jp2"] = {
            **l1c["assets"]["red"], "href": f"{files}/B04.jp2", "type": "image/jp2",
        }
        # Planetary-Computer-style keys, and no NIR asset at all.
        l2a = _item(L2A_ITEM, L2A, {b: cogs / f"{b}.tif" for b in BANDS[:3]}, files,
                    {b: ES_KEYS[b] for b in BANDS[:3]})
        items = root / "items.json"
        items.write_text(json.dumps({"type": "FeatureCollection", "features": [l1c, l2a]}))
        log = (root / "rustac.log").open("w")
        launcher = root / "rustac_cli.py"
        launcher.write_text(RUSTAC)
        api_proc = subprocess.Popen(
            [sys.executable, str(launcher), "serve", "--addr", f"127.0.0.1:{api_port}",
             "--create-collections", str(items)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(f"{api}/", api_proc, "rustac serve")
            yield Servers(files=files, api=api, sizes=sizes)
        finally:
            _stop(api_proc)
            log.close()
    finally:
        _stop(files_proc)


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
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
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

    provider = StacProvider(f"http://127.0.0.1:{_free_port()}")  # nothing listens there
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
