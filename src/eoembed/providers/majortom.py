"""Major TOM embedding sets: one vector per image fragment, read from their GeoParquet shards.

The Major TOM embedding datasets (``Major-TOM/Core-S2L1C-SSL4EO`` and siblings on the
Hugging Face Hub) hold, per row, one fragment of a Major TOM Core sample (a 10 km grid cell
imaged once): ``embedding`` (float32, 2048/768/1152-d), ``geometry`` (the fragment's
footprint in lon/lat, WKB), ``centre_lat``/``centre_lon``, ``timestamp`` (the image's
acquisition, ``YYYYMMDDTHHMMSS``), ``product_id``, ``grid_cell`` and UTM footprint fields, in
shards ``embeddings/part_NNNNN-MMMMM.parquet``. There is no index: the shard list comes from
the Hub's tree API, and each shard's footer says, per row group, the range of its
``centre_lat``/``centre_lon`` (Parquet column statistics). A request reads the footers once
(cached), then only the row groups whose range meets the region (HTTP range requests
through fsspec), and keeps them on disk: the same place again reads nothing.

Fragments become pixels on the request grid: each pixel takes the embedding of the
fragment that contains its centre (of several overlapping ones, the one whose centre is
nearest), NaN outside every fragment. Only fragments imaged inside the request's window
count. Fragment footprints are used as published (the producer's footprints are known to be
transposed relative to the pixel rows in some releases; not corrected here).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.bands import BandInfo, embedding_bands
from eoembed.errors import (
    DependencyNotFoundError,
    EoembedError,
    NoDataError,
    ProviderError,
    ProviderUnavailableError,
)
from eoembed.providers.products import ProductProvider, ProductTile, product_collection
from eoembed.redact import redact
from eoembed.retrying import RETRY_STATUSES, is_transient

if TYPE_CHECKING:
    from eoembed.grid import Grid
    from eoembed.providers.base import CollectionInfo
    from eoembed.specs import SpatialSpec, TemporalSpec

__all__ = ["GSD_M", "HUB_URL", "MAJORTOM_SETS", "MajorTomProvider", "MajorTomSet"]

HUB_URL = "https://huggingface.co"
COLUMNS = ("embedding", "geometry", "centre_lat", "centre_lon", "timestamp", "product_id",
           "grid_cell")
GSD_M = 500.0
"""Request pixels fragments are painted on by default: fine enough that a region's pooled
vector weighs its fragments by area, coarse enough for 2048-d grids of large regions."""
_MARGIN_DEG = 0.05
"""Row groups are chosen by fragment centres; a fragment (<= 3.84 km) reaches this far."""


@dataclass(frozen=True)
class MajorTomSet:
    """One Major TOM embedding dataset."""

    collection: str
    repo_id: str
    dim: int
    fragment_px: int
    source: str
    model: str

    @property
    def bands(self) -> tuple[BandInfo, ...]:
        """Its dimensions as bands ``M0000``..."""
        return embedding_bands("M", self.dim, GSD_M, width=4)


MAJORTOM_SETS: dict[str, MajorTomSet] = {
    s.collection: s
    for s in (
        MajorTomSet("majortom-core-s2l1c-ssl4eo", "Major-TOM/Core-S2L1C-SSL4EO", 2048, 224,
                    "Core-S2L1C (13 bands)", "SSL4EO-S12 ResNet-50 DINO"),
        MajorTomSet("majortom-core-s1rtc-ssl4eo", "Major-TOM/Core-S1RTC-SSL4EO", 2048, 224,
                    "Core-S1RTC (VV, VH)", "SSL4EO-S12 ResNet-50 MoCo"),
        MajorTomSet("majortom-core-s2rgb-dinov2", "Major-TOM/Core-S2RGB-DINOv2", 768, 224,
                    "Core-S2L2A RGB", "DINOv2 ViT-B/14"),
        MajorTomSet("majortom-core-s2rgb-siglip", "Major-TOM/Core-S2RGB-SigLIP", 1152, 384,
                    "Core-S2L2A RGB", "SigLIP SO400M/14-384"),
    )
}
"""The published sets, by eoembed collection id."""


def _parse_timestamp(text: str) -> dt.date:
    return dt.datetime.strptime(text[:15], "%Y%m%dT%H%M%S").date()


class MajorTomProvider(ProductProvider):
    """Major TOM embedding sets from the Hub (or a mirror with the Hub's URL layout).

    Args:
        endpoint: the Hub, or a server answering its ``/api/datasets/<repo>/tree/<rev>/<path>``
            listings and ``/datasets/<repo>/resolve/<rev>/<path>`` files (range requests).
        revision: the datasets' revision (a commit pins them; ``main`` is what is there now).
        cache_dir: where listings, footers and row groups are kept.
    """

    name = "majortom"
    years = None

    def __init__(
        self, endpoint: str | None = None, *, revision: str = "main",
        cache_dir: str | Path | None = None,
    ) -> None:
        from eoembed.providers.downloads import products_cache_dir

        self.endpoint = (endpoint or HUB_URL).rstrip("/")
        self.revision = revision
        key = hashlib.sha256(f"{self.endpoint}@{revision}".encode()).hexdigest()[:16]
        self._cache = Path(cache_dir) if cache_dir else products_cache_dir() / "majortom" / key
        self._lock = threading.Lock()
        self._footers: dict[str, list[dict[str, Any]]] = {}
        self._collections = {
            cid: product_collection(
                cid, s.bands, f"Major TOM {s.repo_id}: {s.model} on {s.source}, {s.dim}-d per "
                f"{s.fragment_px} px fragment"
            )
            for cid, s in MAJORTOM_SETS.items()
        }

    @classmethod
    def from_url(cls, url: str | None = None) -> MajorTomProvider:
        """Provider ``"majortom"`` or ``"majortom:ENDPOINT"``."""
        return cls(url or None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint!r}, revision={self.revision!r})"

    @property
    def cache_identity(self) -> str:
        """What a patch cache in front of this provider keys on: the endpoint and revision."""
        return f"majortom:{self.endpoint}@{self.revision}"

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The four embedding sets."""
        return self._collections

    # ------------------------------------------------------------------ the shards

    def _url(self, repo_id: str, path: str) -> str:
        return f"{self.endpoint}/datasets/{repo_id}/resolve/{self.revision}/{path}"

    def _folder(self, repo_id: str) -> Path:
        return self._cache / repo_id.replace("/", "--")

    def shards(self, repo_id: str) -> dict[str, str]:
        """The set's ``embeddings/*.parquet`` paths and content ids, from the Hub's tree API.

        Every page of the listing (the API pages with ``Link: <...>; rel="next"``), kept
        for :data:`LISTING_MAX_AGE_S`: a shard republished under the same name gets a new
        content id, and with it new cache entries.
        """
        from eoembed.embedders.weights import offline

        path = self._folder(repo_id) / "tree.json"
        fresh = path.is_file() and (time.time() - path.stat().st_mtime < LISTING_MAX_AGE_S
                                    or offline())
        if fresh:
            entries = json.loads(path.read_text())
        else:
            if offline():
                raise ProviderUnavailableError(
                    f"the Major TOM {repo_id} listing is not cached and downloads are off "
                    "(EOEMBED_OFFLINE / HF_HUB_OFFLINE is set)"
                )
            entries = self._call(lambda: _list_tree(
                f"{self.endpoint}/api/datasets/{repo_id}/tree/{self.revision}/embeddings"
            ), f"{repo_id} listing")
            _write_atomic(path, json.dumps(entries).encode())
        return {
            e["path"]: str((e.get("lfs") or {}).get("oid") or e.get("oid") or "")[:16]
            for e in sorted(entries, key=lambda e: e["path"])
            if e.get("type") == "file" and e["path"].endswith(".parquet")
        }

    def footer(self, repo_id: str, shard: str, oid: str = "") -> list[dict[str, Any]]:
        """Per row group of ``shard``: its rows and ``centre_lat``/``centre_lon`` ranges.

        Read from the file's footer once (a few range requests), then from the cache.
        """
        key = f"{repo_id}/{shard}@{oid}"
        with self._lock:
            if key in self._footers:
                return self._footers[key]
        path = self._folder(repo_id) / "footers" / f"{Path(shard).stem}.{oid}.json"
        groups: list[dict[str, Any]] | None = None
        if path.is_file():
            with contextlib.suppress(ValueError):  # damaged: read the footer again
                groups = json.loads(path.read_text())
        if groups is None:
            self._check_online(shard)
            groups = self._call(lambda: self._read_footer(self._url(repo_id, shard)), shard)
            _write_atomic(path, json.dumps(groups).encode())
        with self._lock:
            self._footers[key] = groups
        return groups

    def _check_online(self, what: str) -> None:
        from eoembed.embedders.weights import offline

        if offline():
            raise ProviderUnavailableError(
                f"Major TOM {what} is not cached and downloads are off "
                "(EOEMBED_OFFLINE / HF_HUB_OFFLINE is set)"
            )

    @staticmethod
    def _read_footer(url: str) -> list[dict[str, Any]]:
        pq = _pyarrow_parquet()
        with _http().open(url, "rb", block_size=1 << 16) as f:
            meta = pq.ParquetFile(f).metadata
        names = [meta.schema.column(i).path for i in range(meta.num_columns)]
        groups = []
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            ranges: dict[str, Any] = {"rows": group.num_rows}
            for column in ("centre_lat", "centre_lon"):
                stats = group.column(names.index(column)).statistics if column in names else None
                ranges[column] = (
                    [float(stats.min), float(stats.max)]
                    if stats is not None and stats.has_min_max else None
                )
            groups.append(ranges)
        return groups

    def _call(self, read: Any, what: str) -> Any:
        """``read()`` retried on connection failures and retryable statuses only.

        Raises:
            ProviderUnavailableError: the server kept failing or could not be reached.
            ProviderError: it refused (404, 403, ...) or sent what is not Parquet.
        """
        try:
            return self.read_retries.call(read, retry_if=_transient).value
        except Exception as exc:
            if isinstance(exc, EoembedError) or not isinstance(exc, _http_errors()):
                raise
            kind = ProviderUnavailableError if _transient(exc) else ProviderError
            raise kind(
                f"Major TOM {what} could not be read from {redact(self.endpoint)}: "
                f"{type(exc).__name__}: {redact(exc)}"
            ) from None

    def tiles(
        self, spatial: SpatialSpec, year: int | None, *, collection: str = "",
        temporal: TemporalSpec | None = None,
    ) -> Sequence[ProductTile]:
        """One "tile": every row group whose fragment centres may fall near the region."""
        dataset = MAJORTOM_SETS[collection]
        west, south, east, north = spatial.lonlat_geometry().bounds
        # A fragment's centre lies up to half its diagonal away: wider in longitude poleward.
        lon_margin = _MARGIN_DEG / max(math.cos(math.radians(max(abs(south), abs(north)))),
                                       0.01)
        chosen = []
        for shard, oid in self.shards(dataset.repo_id).items():
            for i, group in enumerate(self.footer(dataset.repo_id, shard, oid)):
                lat, lon = group["centre_lat"], group["centre_lon"]
                if lat is not None and not (lat[0] - _MARGIN_DEG <= north
                                            and south <= lat[1] + _MARGIN_DEG):
                    continue
                if lon is not None and not (lon[0] - lon_margin <= east
                                            and west <= lon[1] + lon_margin):
                    continue
                chosen.append((shard, oid, i))
        if not chosen:
            return []
        ident = ",".join(f"{Path(s).stem}#{i}" for s, _, i in chosen)
        return [ProductTile(id=ident, year=None, source=(dataset, chosen, temporal))]

    def row_group(self, repo_id: str, shard: str, index: int, oid: str = "") -> Any:
        """Row group ``index`` of ``shard`` (the columns used), from the cache or the server."""
        pq = _pyarrow_parquet()
        path = self._folder(repo_id) / "rows" / f"{Path(shard).stem}.{oid}.{index}.parquet"
        if path.is_file():
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: evicted last
            try:
                return pq.read_table(path)
            except (OSError, ValueError):  # damaged or evicted meanwhile: read it again
                path.unlink(missing_ok=True)
        self._check_online(f"{shard} row group {index}")

        def read() -> Any:
            with _http().open(self._url(repo_id, shard), "rb", block_size=1 << 20) as f:
                return pq.ParquetFile(f).read_row_group(index, columns=list(COLUMNS))

        from eoembed.providers.downloads import products_cache_bytes, trim_cache

        table = self._call(read, f"{shard} row group {index}")
        sink = _buffer()
        pq.write_table(table, sink)
        _write_atomic(path, sink.getvalue().to_pybytes())
        trim_cache(path.parent, products_cache_bytes(), protect=[path])
        return table

    # ------------------------------------------------------------------ pixels

    def read_tile(self, tile: ProductTile, grid: Grid, dims: Sequence[int]) -> np.ndarray:
        """Fragments imaged in the window, painted onto ``grid`` (nearest centre wins)."""
        import pyarrow as pa
        import shapely
        from pyproj import Transformer

        dataset, chosen, temporal = tile.source
        table = pa.concat_tables(
            [self.row_group(dataset.repo_id, s, i, oid) for s, oid, i in chosen]
        )
        times = [_parse_timestamp(t) for t in table.column("timestamp").to_pylist()]
        keep = np.array([temporal is None or temporal.contains(d, d + dt.timedelta(days=1))
                         for d in times], bool)
        out = np.full((len(dims), *grid.shape), np.nan, np.float32)
        if not keep.any():
            found = sorted({d.isoformat() for d in times})
            if found:
                raise NoDataError(
                    f"Major TOM {dataset.repo_id} has fragments near the region imaged on "
                    f"{', '.join(found[:5])}, none within {temporal}"
                )
            return out
        rows = np.flatnonzero(keep)
        polygons = shapely.from_wkb(np.asarray(table.column("geometry").to_pylist(),
                                               dtype=object)[rows])
        centres = shapely.centroid(polygons)
        xs, ys = np.meshgrid(grid.xs(), grid.ys())
        lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
        points = shapely.points(np.ravel(lon), np.ravel(lat))
        pixel, fragment = shapely.STRtree(polygons).query(points, predicate="within")
        if len(pixel):
            distance = shapely.distance(points[pixel], centres[fragment])
            order = np.lexsort((distance, pixel))  # per pixel, the nearest centre first
            pixel, fragment = pixel[order], fragment[order]
            first = np.r_[True, pixel[1:] != pixel[:-1]]
            pixel, fragment = pixel[first], fragment[first]
            vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)[rows])
            flat = out.reshape(len(dims), -1)
            flat[:, pixel] = vectors[fragment][:, list(dims)].T
        return out


LISTING_MAX_AGE_S = 7 * 86400.0
"""How long a shard listing is used before it is asked for again."""


def _buffer() -> Any:
    """An in-memory Arrow output stream (a row group is written whole, then renamed in)."""
    import pyarrow as pa

    return pa.BufferOutputStream()


def _write_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` under a unique temporary name, renamed when complete."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _list_tree(url: str) -> list[dict[str, Any]]:
    """Every entry of a Hub tree listing, following its ``Link: rel="next"`` pages."""
    import re
    import urllib.request

    from eoembed._version import __version__

    entries: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        request = urllib.request.Request(next_url, headers={"User-Agent": f"eoembed/{__version__}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            entries.extend(json.loads(response.read()))
            link = response.headers.get("Link") or ""
        found = re.search(r'<([^>]+)>;\s*rel="next"', link)
        next_url = found.group(1) if found else None
    return entries


def _http_errors() -> tuple[type[BaseException], ...]:
    """What reading over HTTP raises: OS and parse errors, and aiohttp's own."""
    try:
        import aiohttp
    except ImportError:
        return (OSError, ValueError, TimeoutError)
    return (OSError, ValueError, TimeoutError, aiohttp.ClientError)


def _transient(err: BaseException) -> bool:
    """A connection failure or a status worth retrying; not a refusal or a bad file."""
    status = getattr(err, "status", None) or getattr(err, "code", None)
    if isinstance(status, int) and 100 <= status < 600:
        return status in RETRY_STATUSES
    if isinstance(err, (FileNotFoundError, PermissionError, ValueError)):
        return False
    try:
        import aiohttp

        if isinstance(err, aiohttp.ClientError):
            return True
    except ImportError:
        pass
    return isinstance(err, (ConnectionError, TimeoutError)) or is_transient(err)


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DependencyNotFoundError("pyarrow", "export") from None
    return pq


def _http() -> Any:
    try:
        import fsspec

        return fsspec.filesystem("http")
    except (ImportError, ValueError):
        raise DependencyNotFoundError("fsspec[http]", "majortom") from None
