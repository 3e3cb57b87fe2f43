"""A content-addressed on-disk cache in front of any provider: the same request reads no network.

:class:`CachedProvider` keys every ``fetch`` by the sha256 of what determines its pixels (the
inner provider's identity, the region, its grid, the window, the sensor spec, the cache format,
the radiometric convention and the eoembed version) and stores the answer as
``<root>/<key[:2]>/<key>.npz``: pixels, every coordinate (with its attributes) and the
attributes as JSON. A file is only ever complete, because it is written under a temporary name
in the same folder and renamed (``os.replace`` is atomic), so threads and processes can share
one cache without locks; a cross-process lock (``filelock``) is taken only to evict. Entries
that cannot be read back (truncated, damaged, an older format) are deleted and fetched again.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eoembed._version import __version__
from eoembed.errors import CapabilityError, SpecError
from eoembed.providers.base import CollectionInfo, Provider
from eoembed.providers.base import request_grid as base_request_grid
from eoembed.providers.radiometry import RADIOMETRY_CONVENTION
from eoembed.specs._base import sha256_hex

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr

    from eoembed.grid import Grid
    from eoembed.specs import SensorSpec, SpatialSpec, TemporalSpec

__all__ = ["CACHE_FORMAT", "CacheStats", "CachedProvider", "default_cache_dir"]

CACHE_FORMAT = 1
"""Version of the file layout; part of every key, so a new layout never reads an old file."""

_SUFFIX = ".npz"
_TMP_SUFFIX = ".tmp"
_STALE_TMP_SECONDS = 3600.0
"""Temporary files older than this were left by a writer that died; scans remove them."""
_LOCK_SECONDS = 30.0
"""Longest wait for another thread or process to finish evicting."""
_RESCAN_FRACTION = 8
"""Recount the disk after writing ``max_bytes / 8``: other processes write to it too."""


def default_cache_dir() -> Path:
    r"""The folder patches are cached in when none is given.

    ``$EOEMBED_CACHE/patches`` if that variable is set, else the platform's user cache folder
    (``$XDG_CACHE_HOME/eoembed/patches``, default ``~/.cache/eoembed/patches``; on macOS
    ``~/Library/Caches/eoembed/patches``; on Windows ``%LOCALAPPDATA%\eoembed\cache\patches``).
    The variables only choose a folder: cached pixels are identical to fetched ones.
    """
    root = os.environ.get("EOEMBED_CACHE")
    if root:
        return Path(root).expanduser() / "patches"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "eoembed" / "cache" / "patches"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "eoembed" / "patches"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "eoembed" / "patches"


@dataclass(frozen=True)
class CacheStats:
    """Counters of one :class:`CachedProvider` (this process only)."""

    hits: int = 0
    """Fetches answered from disk."""
    misses: int = 0
    """Fetches passed to the inner provider (damaged entries included)."""
    bytes_read: int = 0
    """Bytes of cache files read for hits."""
    bytes_written: int = 0
    """Bytes of cache files written after misses."""
    evicted: int = 0
    """Entries this process deleted to stay under ``max_bytes``."""
    corrupt: int = 0
    """Entries that could not be read back; deleted and fetched again."""
    skipped: int = 0
    """Results not stored: attributes or coordinates that do not round-trip, or a failed write."""


class _UncacheableError(Exception):
    """A result holds something this cache cannot store exactly (it is returned, not stored)."""


class CachedProvider:
    """Wrap a provider so that repeated requests are read from disk, not the network.

    Results are returned exactly as the inner provider gave them (pixels, coordinates, CRS,
    transform, attributes, ``attrs["fetch_seconds"]`` included); errors are not cached.
    ``fetch_series`` is cached the same way when the inner provider has it. The cache assumes
    a request's answer does not change: a STAC item added later to a window already cached is
    not seen, nor is a local file rewritten in place. Start afresh with :meth:`clear`, another
    ``directory``, or a new eoembed version (part of every key).

    What the inner provider serves is identified by, in order: ``identity=``; the inner
    provider's ``cache_identity`` (an attribute, or a method taking no arguments, returning
    JSON-able data that differs whenever its answers may differ, e.g. a URL and its collection
    map); built-in rules for :class:`~eoembed.providers.stac.StacProvider` (URL, collection
    map, ``max_items``) and scene-list providers such as ``LocalProvider`` (every scene and
    asset path); else its class and ``name``. Two providers with the same identity share
    entries.

    Args:
        inner: the provider to wrap, or a name for :func:`~eoembed.providers.get_provider`.
        directory: the cache folder; default :func:`default_cache_dir`.
        max_bytes: size limit of the folder; after a write that exceeds it the least recently
            used entries (by modification time, renewed on every hit) are deleted until it
            fits. Processes sharing a folder each recount it after writing an eighth of
            ``max_bytes``, so it can briefly exceed the limit by that much per writer.
        identity: JSON-able data identifying what ``inner`` serves (see above).

    Example::

        provider = CachedProvider("earth-search")  # or get_provider("cached:earth-search")
        patch = provider.fetch(region, window, sensor)  # searched and read over HTTP
        again = provider.fetch(region, window, sensor)  # read from disk: no request at all
        assert provider.stats.hits == 1
    """

    def __init__(
        self,
        inner: Provider | str,
        directory: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = 10 * 2**30,
        identity: Any = None,
    ) -> None:
        from eoembed.providers.registry import get_provider

        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise SpecError("CachedProvider.max_bytes", max_bytes, allowed="an integer >= 0")
        self.inner: Provider = get_provider(inner)
        self.name = self.inner.name
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()
        self.max_bytes = max_bytes
        self._identity = _identity_digest(self.inner, identity)
        self._lock = threading.Lock()
        self._evict_lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(
            (f.name for f in dataclasses.fields(CacheStats)), 0
        )
        self._disk_bytes: int | None = None
        """Bytes in the folder at the last count plus those written since (None: not counted)."""
        self._since_count = 0

    @classmethod
    def from_name(cls, name: str | None = None) -> CachedProvider:
        """Provider ``"cached:NAME"``: ``NAME`` (e.g. ``sample``) behind the default cache."""
        if not name:
            raise SpecError("provider", "cached", allowed="'cached:<provider name>'")
        return cls(name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, {str(self.directory)!r})"

    @property
    def cache_identity(self) -> str:
        """The inner provider's identity: a cache in front of this one shares its entries."""
        return self._identity

    @property
    def stats(self) -> CacheStats:
        """Hits, misses and bytes so far in this process."""
        with self._lock:
            return CacheStats(**self._counts)

    # ------------------------------------------------------------------ contract

    def collections(self) -> Mapping[str, CollectionInfo]:
        """The inner provider's collections."""
        return self.inner.collections()

    def fetch(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Pixels ``(band, y, x)`` from the cache, or from the inner provider (then stored).

        Raises:
            Whatever the inner provider raises (errors are not cached).
        """
        key = self.key(spatial, temporal, sensor, grid=grid)
        return self._cached(key, lambda: self.inner.fetch(spatial, temporal, sensor, grid=grid))

    def fetch_series(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        frames: int | None = None,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """Frames ``(time, band, y, x)`` from the cache, or from the inner ``fetch_series``.

        Raises:
            CapabilityError: the inner provider serves no time series.
            Whatever the inner provider raises (errors are not cached).
        """
        series = getattr(self.inner, "fetch_series", None)
        if not callable(series):
            raise CapabilityError(
                f"provider {self.name!r} ({type(self.inner).__name__}) serves no time series "
                "(it has no fetch_series)"
            )

        def call() -> xr.DataArray:
            data: xr.DataArray = series(spatial, temporal, sensor, frames=frames, grid=grid)
            return data

        if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int)):
            return call()  # the inner provider says what is wrong with it
        key = self.key(spatial, temporal, sensor, grid=grid, series=True, frames=frames)
        return self._cached(key, call)

    # ------------------------------------------------------------------ keys and files

    def key(
        self,
        spatial: SpatialSpec,
        temporal: TemporalSpec,
        sensor: SensorSpec,
        *,
        grid: Grid | None = None,
        series: bool = False,
        frames: int | None = None,
    ) -> str:
        """The sha256 hex that names the entry of ``fetch`` (or of ``fetch_series(frames=)``).

        The region is part of it along with its grid: providers choose scenes by the region's
        footprint, so two regions on one grid may not give the same pixels. The radiometric
        convention (:data:`~eoembed.providers.radiometry.RADIOMETRY_CONVENTION`) is part of
        it too: a patch converted under other rules, or before Sentinel-2 was harmonised, is
        fetched again.
        """
        info = self.inner.collections().get(sensor.collection)
        request_grid = grid or base_request_grid(spatial, sensor, info)
        method: dict[str, Any] = (
            {"method": "fetch_series", "frames": frames} if series else {"method": "fetch"}
        )
        return sha256_hex({
            **method,
            "format": CACHE_FORMAT,
            "eoembed": __version__,
            "radiometry": RADIOMETRY_CONVENTION,
            "provider": {"name": self.name, "identity": self._identity},
            "spatial": spatial.canonical_dict(),
            "grid": request_grid.to_dict(),
            "temporal": temporal.to_dict(),
            "sensor": sensor.to_dict(),
        })

    def path(self, key: str) -> Path:
        """Where the entry ``key`` lives: ``<directory>/<key[:2]>/<key>.npz``."""
        return self.directory / key[:2] / f"{key}{_SUFFIX}"

    def disk_usage(self) -> int:
        """Bytes of all entries in the folder now (every process's)."""
        return sum(size for _, size, _ in self._scan())

    def clear(self) -> None:
        """Delete every entry (other processes' too); their next fetches refill it."""
        with self._exclusive():
            for _, _, path in self._scan():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            with self._lock:
                self._disk_bytes, self._since_count = 0, 0

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, n in increments.items():
                self._counts[name] += n

    def _cached(self, key: str, call: Callable[[], xr.DataArray]) -> xr.DataArray:
        path = self.path(key)
        cached = self._load(path, key)
        if cached is not None:
            return cached
        result = call()
        self._store(path, key, result)
        return result

    def _load(self, path: Path, key: str) -> xr.DataArray | None:
        try:
            # One read, then decode from memory: a concurrent replace or eviction of the file
            # cannot change what is decoded.
            blob = path.read_bytes()
        except OSError:  # absent (the usual miss), or unreadable: fetch instead
            self._count(misses=1)
            return None
        try:
            data = _decode(blob, key)
        except Exception:  # noqa: BLE001 (any decoding failure: a damaged entry, refetched)
            with contextlib.suppress(OSError):
                path.unlink()
            self._count(misses=1, corrupt=1)
            return None
        now = time.time_ns()  # the kernel's file clock is coarser; LRU order needs this one
        with contextlib.suppress(OSError):  # evicted meanwhile: the pixels are still good
            os.utime(path, ns=(now, now))
        self._count(hits=1, bytes_read=len(blob))
        return data

    def _store(self, path: Path, key: str, data: xr.DataArray) -> None:
        try:
            blob = _encode(data, key)
        except _UncacheableError:
            self._count(skipped=1)
            return
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=_TMP_SUFFIX, dir=path.parent)
            with os.fdopen(fd, "wb") as file:
                file.write(blob)
            now = time.time_ns()
            os.utime(tmp, ns=(now, now))
            os.replace(tmp, path)  # atomic: readers see the old entry or the whole new one
        except OSError:  # a full or read-only disk must not fail a fetch that succeeded
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            self._count(skipped=1)
            return
        self._count(bytes_written=len(blob))
        with self._lock:
            self._since_count += len(blob)
            if self._disk_bytes is not None:
                self._disk_bytes += len(blob)
            recount = (
                self._disk_bytes is None
                or self._disk_bytes > self.max_bytes
                or self._since_count * _RESCAN_FRACTION > self.max_bytes
            )
        if recount:
            self._enforce_limit()

    # ------------------------------------------------------------------ size limit

    def _scan(self) -> list[tuple[int, int, Path]]:
        """``(mtime_ns, size, path)`` of every entry; removes temporaries of dead writers."""
        entries = []
        stale = time.time() - _STALE_TMP_SECONDS
        try:
            folders = [e for e in os.scandir(self.directory) if len(e.name) == 2 and e.is_dir()]
        except FileNotFoundError:
            return []
        for folder in folders:
            with contextlib.suppress(FileNotFoundError), os.scandir(folder.path) as files:
                for file in files:
                    try:
                        st = file.stat()
                    except FileNotFoundError:  # evicted or replaced meanwhile
                        continue
                    if file.name.endswith(_SUFFIX):
                        entries.append((st.st_mtime_ns, st.st_size, Path(file.path)))
                    elif file.name.endswith(_TMP_SUFFIX) and st.st_mtime < stale:
                        with contextlib.suppress(OSError):
                            os.unlink(file.path)
        return entries

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """Hold this folder's eviction lock (threads and processes); yields whether it is held.

        Evictions are short, so waiting is cheap; after ``_LOCK_SECONDS`` (a process stuck
        while holding it) this one gives up and leaves the folder to the next writer.
        """
        if not self._evict_lock.acquire(timeout=_LOCK_SECONDS):
            yield False
            return
        try:
            try:
                from filelock import FileLock, Timeout
            except ImportError:  # two evictors then only delete more than needed, harmlessly
                yield True
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.directory / ".lock")
            try:
                lock.acquire(timeout=_LOCK_SECONDS)
            except Timeout:
                yield False
                return
            try:
                yield True
            finally:
                lock.release()
        finally:
            self._evict_lock.release()

    def _enforce_limit(self) -> None:
        """Count the folder; if it exceeds ``max_bytes``, delete least recently used entries."""
        entries = self._scan()
        total = sum(size for _, size, _ in entries)
        evicted = 0
        if total > self.max_bytes:
            # Under the lock: the counts of concurrent evictors would add up to deleting more.
            with self._exclusive() as held:
                if held:
                    entries = sorted(self._scan(), key=lambda e: (e[0], e[2].name))
                    total = sum(size for _, size, _ in entries)
                    for _, size, path in entries:
                        if total <= self.max_bytes:
                            break
                        try:
                            path.unlink()
                        except FileNotFoundError:
                            pass
                        except OSError:  # e.g. open elsewhere on Windows: try the next one
                            continue
                        total -= size
                        evicted += 1
        with self._lock:
            self._disk_bytes, self._since_count = total, 0
            self._counts["evicted"] += evicted


# ---------------------------------------------------------------------- identity


def _identity_digest(inner: Provider, identity: Any) -> str:
    """sha256 of what ``inner`` serves (see :class:`CachedProvider`), computed once."""
    if identity is None and isinstance(inner, CachedProvider):
        return inner.cache_identity  # the same source: share its entries
    if identity is None:
        identity = getattr(inner, "cache_identity", None)
        if callable(identity):
            identity = identity()
    if identity is None:
        identity = _builtin_identity(inner)
    try:
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise SpecError(
            "CachedProvider.identity", identity, allowed="JSON-able data", reason=str(err)
        ) from None
    return hashlib.sha256(text.encode()).hexdigest()


def _builtin_identity(inner: Provider) -> Any:
    from eoembed.providers.scenes import SceneProvider
    from eoembed.providers.stac import StacProvider

    if isinstance(inner, StacProvider):
        return {
            "stac_api": inner.url,
            "collections": dict(getattr(inner, "_stac_ids", {})),
            "max_items": getattr(inner, "_max_items", None),
        }
    if isinstance(inner, SceneProvider):
        return {
            "scenes": [
                {
                    "id": s.id, "collection": s.collection, "start": s.start.isoformat(),
                    "end": s.end.isoformat(), "footprint": s.footprint_wkt,
                    "assets": dict(s.assets), "cloud_cover": s.cloud_cover,
                    "radiometry": {b: r.to_dict() for b, r in s.radiometry.items()},
                }
                for s in inner.scenes
            ],
            "collections": {
                cid: dataclasses.asdict(info) for cid, info in inner.collections().items()
            },
        }
    return {"type": f"{type(inner).__module__}.{type(inner).__qualname__}"}


# ---------------------------------------------------------------------- file format


def _encode(data: xr.DataArray, key: str) -> bytes:
    """An ``.npz`` with the pixels, one array per coordinate and JSON metadata.

    Raises:
        _UncacheableError: something would not come back equal (object arrays, attributes
            that are not JSON, numbers or numpy values).
    """
    import numpy as np

    arrays: dict[str, np.ndarray] = {"data": np.asarray(data.values)}
    coords = []
    for i, (name, coord) in enumerate(data.coords.items()):
        if not isinstance(name, str):
            raise _UncacheableError(name)
        arrays[f"coord{i}"] = np.asarray(coord.values)
        coords.append({"name": name, "dims": list(coord.dims), "attrs": _to_json(coord.attrs)})
    if any(a.dtype.hasobject for a in arrays.values()):
        raise _UncacheableError("object array")
    if not all(isinstance(d, str) for d in data.dims):
        raise _UncacheableError(data.dims)
    meta = {
        "format": CACHE_FORMAT,
        "key": key,
        "name": _to_json(data.name),
        "dims": list(data.dims),
        "attrs": _to_json(data.attrs),
        "coords": coords,
        "encoding": {
            k: v for k, v in data.encoding.items() if isinstance(v, str | int | float | bool)
        },
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _decode(blob: bytes, key: str) -> xr.DataArray:
    """The DataArray :func:`_encode` stored; raises on any damage (zip CRCs are checked)."""
    import numpy as np
    import rioxarray  # noqa: F401  (registers the .rio accessor for callers)
    import xarray as xr

    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes())
        if meta["format"] != CACHE_FORMAT or meta["key"] != key:
            raise ValueError(f"entry holds format {meta['format']}, key {meta['key']}")
        coords = {
            c["name"]: xr.Variable(tuple(c["dims"]), npz[f"coord{i}"], _from_json(c["attrs"]))
            for i, c in enumerate(meta["coords"])
        }
        data = xr.DataArray(
            npz["data"], dims=tuple(meta["dims"]), coords=coords,
            attrs=_from_json(meta["attrs"]), name=_from_json(meta["name"]),
        )
    data.encoding.update(meta["encoding"])
    return data


_TAG = "__eoembed_cache__"


def _to_json(obj: Any) -> Any:
    """JSON data that :func:`_from_json` turns back into an equal value (tuples, numpy kept)."""
    import numpy as np

    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, list):
        return [_to_json(v) for v in obj]
    if isinstance(obj, tuple):
        return {_TAG: "tuple", "items": [_to_json(v) for v in obj]}
    if isinstance(obj, Mapping):
        if not all(isinstance(k, str) for k in obj) or _TAG in obj:
            raise _UncacheableError(obj)
        return {k: _to_json(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray | np.generic) and not obj.dtype.hasobject:
        kind = "array" if isinstance(obj, np.ndarray) else "scalar"
        array = np.asarray(obj)  # tobytes() is C order whatever the layout
        return {
            _TAG: kind, "dtype": array.dtype.str, "shape": list(array.shape),
            "bytes": base64.b64encode(array.tobytes()).decode(),
        }
    raise _UncacheableError(type(obj))


def _from_json(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    tag = obj.get(_TAG)
    if tag == "tuple":
        return tuple(_from_json(v) for v in obj["items"])
    if tag in ("array", "scalar"):
        array = np.frombuffer(base64.b64decode(obj["bytes"]), np.dtype(obj["dtype"]))
        array = array.reshape(obj["shape"]).copy()
        return array if tag == "array" else array[()]
    return {k: _from_json(v) for k, v in obj.items()}
