"""Reading one band of one file onto a grid, fast where it can be and GDAL-warped otherwise.

Batch exports fetch thousands of small regions from the same few files, so the cost that
matters is per region, not per file. Three things keep it low:

- **Open handles are reused** (:class:`_HandlePool`): opening a file, parsing its header and
  comparing CRSs costs more than reading a 256 x 256 window of it, and GDAL's block cache
  belongs to a dataset handle, so a fresh handle per read re-decodes every block. Remote
  files keep fewer idle handles than local ones (each may hold a ``VSI_CACHE``).
- **Aligned grids skip the warper** (:func:`_read_aligned`): when the file is in the grid's
  CRS and its pixel edges fall on the grid's (the usual case: grids snap to multiples of the
  resolution, like Sentinel-2 and Landsat tiles), nearest upsampling by an integer factor is a
  window read plus ``np.repeat``-style indexing, and average downsampling by an integer factor
  is a block mean (only where every block lies inside the file). Both give exactly what
  GDAL's warper gives; tests compare them bit for bit.
- **Everything else goes through a WarpedVRT** on the reused handle, as before: other CRSs,
  non-aligned grids, non-integer factors, bilinear/cubic, masks other than nodata.

:func:`read_onto_grid_warped` keeps the original open-warp-close path as the reference that
tests and benchmarks compare against.

A remote file whose open or read failed is reopened with GDAL's curl cache bypassed
(:func:`_fresh_env`): ``/vsicurl/`` remembers a failed open for the life of the process, so
without this every later try of that file would fail without reaching the server.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.vrt import WarpedVRT

from eoembed.retrying import RetryPolicy, http_status, is_transient

if TYPE_CHECKING:
    from rasterio.crs import CRS

    from eoembed.grid import Grid

__all__ = [
    "GDAL_ENV",
    "clear_handle_cache",
    "is_local",
    "read_onto_grid",
    "read_onto_grid_warped",
]

GDAL_ENV = {
    # Don't list remote directories on open, merge neighbouring range requests, cache blocks.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.jp2,.TIF,.TIFF,.JP2",
    "VSI_CACHE": "TRUE",
}

MAX_IDLE_HANDLES = 256
"""Open handles on local files kept between reads, all files together (least recently used
file closed first); well under the usual limit of 1024 open files per process."""
MAX_HANDLES_PER_FILE = 8
"""Idle handles kept per local file: one per thread that reads it at once, up to this."""
MAX_IDLE_REMOTE_HANDLES = 32
"""Open handles on remote files kept between reads. Fewer: with ``VSI_CACHE`` each may hold
up to ``VSI_CACHE_SIZE`` (25 MB by default) of fetched bytes."""
MAX_HANDLES_PER_REMOTE_FILE = 2
"""Idle handles kept per remote file."""

# Integer dtypes whose every value float32 holds exactly, so a numpy cast equals GDAL's.
_FAST_DTYPES = frozenset({"uint8", "int8", "uint16", "int16"})
# Offsets and factors closer than this to whole numbers (in pixels) count as whole. Grid and
# file coordinates are multiples of their resolution, so real cases are exact or far off.
_ALIGN_TOL = 1e-9


def choose_resampling(method: str, native_res: float, target_res: float) -> Resampling:
    """``auto`` keeps pixel values when upsampling and averages when downsampling."""
    if method != "auto":
        return Resampling[method]
    return Resampling.average if native_res < target_res * (1 - 1e-9) else Resampling.nearest


def native_resolution(src: rasterio.io.DatasetReader, grid: Grid) -> float:
    """The file's pixel size in the grid CRS's units (metres), whatever the file's CRS.

    A lon/lat file's ``res`` is in degrees; comparing it with metres would always look like
    downsampling, so the file's pixel size is measured in the grid CRS instead.
    """
    from rasterio.warp import calculate_default_transform

    if src.crs is None or src.crs == _crs(grid.crs):
        return float(abs(src.res[0]))
    transform, _, _ = calculate_default_transform(
        src.crs, grid.crs, src.width, src.height, *src.bounds
    )
    return float(abs(transform.a))


@functools.lru_cache(maxsize=64)
def _crs(text: str) -> CRS:
    """Parsed grid CRS, cached: parsing costs as much as reading a small window."""
    from rasterio.crs import CRS

    return CRS.from_user_input(text)


# --------------------------------------------------------------------- reference path


def read_onto_grid_warped(
    href: str, grid: Grid, *, resampling: str = "auto", nodata: float | None = None
) -> np.ndarray:
    """:func:`read_onto_grid` as GDAL's warper alone does it: open, warp, close.

    The reference the fast paths must equal bit for bit; also the old per-read cost, for
    benchmarks.
    """
    with rasterio.Env(**GDAL_ENV), rasterio.open(href) as src:
        src_nodata = src.nodata if src.nodata is not None else nodata
        method = choose_resampling(resampling, native_resolution(src, grid), grid.resolution)
        return _warp(src, grid, method, src_nodata)


def _warp(
    src: rasterio.io.DatasetReader, grid: Grid, method: Resampling, src_nodata: float | None
) -> np.ndarray:
    """Band 1 of ``src`` warped onto ``grid`` by a WarpedVRT, float32 with NaN gaps."""
    with WarpedVRT(
        src,
        crs=grid.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=method,
        src_nodata=src_nodata,
        nodata=src_nodata if src_nodata is not None else 0,
        add_alpha=src_nodata is None,
        # Warp in float32: averaged or interpolated integer pixels keep their fractions.
        dtype="float32",
    ) as vrt:
        if src_nodata is None:
            data, alpha = vrt.read((1, vrt.count)).astype(np.float32)
            data[alpha == 0] = np.nan
            out: np.ndarray = data
            return out
        band = vrt.read(1, masked=True)
        filled: np.ndarray = np.ma.filled(band.astype(np.float32), np.nan)
        return filled


# --------------------------------------------------------------------- handle reuse


@dataclass
class _Handle:
    """An open dataset plus what is worth computing once per file rather than per read."""

    src: Any  # rasterio.io.DatasetReader; not thread-safe, so one user at a time
    signature: tuple[int, int] | None
    """(mtime_ns, size) of a local file when opened; a change means the file was replaced."""
    plain: bool
    """Band 1 is integer, north-up, with square pixels and no mask but nodata: fast-path able."""
    by_crs: dict[str, tuple[bool, float]] = field(default_factory=dict)
    """Grid CRS -> (same CRS as the file, file's pixel size in that CRS)."""

    @classmethod
    def open(
        cls, href: str, signature: tuple[int, int] | None, *, fresh: bool = False
    ) -> _Handle:
        """Open ``href``; ``fresh`` bypasses what GDAL cached about it (after a failure)."""
        with rasterio.Env(**GDAL_ENV, **(_fresh_env(href) if fresh else {})):
            src = rasterio.open(href)
        t = src.transform
        plain = (
            src.dtypes[0] in _FAST_DTYPES
            and src.crs is not None
            and t.b == 0.0
            and t.d == 0.0
            and t.a > 0.0
            and t.e == -t.a
            and src.mask_flag_enums[0] in ([MaskFlags.all_valid], [MaskFlags.nodata])
        )
        return cls(src, signature, plain)

    def crs_info(self, grid: Grid) -> tuple[bool, float]:
        """Whether ``grid`` is in the file's CRS, and the file's pixel size in grid units."""
        info = self.by_crs.get(grid.crs)
        if info is None:
            same = self.src.crs is not None and self.src.crs == _crs(grid.crs)
            info = (same, native_resolution(self.src, grid))
            self.by_crs[grid.crs] = info
        return info


def _vsi_path(href: str) -> str:
    """The GDAL file name rasterio opens for ``href`` (``/vsicurl/https://...`` for a URL)."""
    from rasterio._path import _parse_path  # not re-exported; rasterio.open does the same

    return str(_parse_path(href).as_vsi())


def _fresh_env(href: str) -> dict[str, str]:
    """GDAL options under which opening ``href`` reaches the server again.

    GDAL's ``/vsicurl/`` keeps a process-wide cache of file properties, failures included
    ("does not exist", an HTTP error), so a retry of a file whose first request failed never
    leaves the process. A handle opened while ``CPL_VSIL_CURL_NON_CACHED`` names the file
    ignores and, when closed, drops that file's cached state. rasterio does not expose
    ``VSICurlPartialClearCache``, so the option is set with ``rasterio.Env`` for the duration
    of this one open. GDAL splits the option's value at colons, so the prefix it compares is
    the URL's scheme part, and with GDAL 3.10 an option set by ``rasterio.Env`` is seen by
    other threads too: remote files other threads open at that moment also skip the cache.
    That costs them a few requests, never a wrong read; it happens only after a failure.
    """
    return {"CPL_VSIL_CURL_NON_CACHED": _vsi_path(href)}


def is_local(href: str) -> bool:
    """Whether ``href`` names a plain local file (no GDAL virtual file system, no URL)."""
    return "://" not in href and not href.startswith("/vsi")


def _signature(href: str) -> tuple[int, int] | None:
    """(mtime_ns, size) of a local file, so a rewritten file is reopened; None otherwise."""
    if not is_local(href):
        return None
    try:
        stat = os.stat(href)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class _HandlePool:
    """Idle open handles by href, lent to one thread at a time.

    A rasterio dataset must not be used by two threads at once, but any thread may use it
    after another is done. Lending handles out (rather than keeping one per thread) lets
    short-lived worker threads reuse them too, and keeps at most as many handles per file as
    threads ever read it concurrently.
    """

    def __init__(
        self, max_handles: int = MAX_IDLE_HANDLES, per_file: int = MAX_HANDLES_PER_FILE
    ) -> None:
        self._lock = threading.Lock()
        self._idle: OrderedDict[str, list[_Handle]] = OrderedDict()
        self._count = 0
        self._max_handles = max_handles
        self._per_file = per_file
        self._failed: set[str] = set()
        """Hrefs whose last open or read failed: reopened bypassing GDAL's curl cache."""

    def forget(self) -> None:
        """Drop every handle without closing it (in a forked child; the parent owns them)."""
        self._lock = threading.Lock()
        self._idle = OrderedDict()
        self._count = 0
        self._failed = set()

    @contextmanager
    def lend(self, href: str) -> Iterator[_Handle]:
        """An open handle on ``href`` for the duration of the block; returned to the pool after.

        A handle whose read raised is closed rather than returned, in case GDAL left it in a
        bad state, and the next open of a remote ``href`` after a failure bypasses GDAL's
        cached state of it, so that a retry reaches the server.
        """
        signature = _signature(href)
        handle = None
        stale: list[_Handle] = []
        with self._lock:
            failed = href in self._failed
            idle = self._idle.get(href)
            if idle:
                if idle[-1].signature == signature:
                    handle = idle.pop()
                    self._count -= 1
                else:  # the file changed on disk: none of its handles are valid any more
                    stale = self._idle.pop(href)
                    self._count -= len(stale)
        _close(stale)
        if handle is None:
            try:
                handle = _Handle.open(href, signature, fresh=failed)
            except BaseException:
                self._mark_failed(href)
                raise
        try:
            yield handle
        except BaseException:
            _close([handle])
            self._mark_failed(href)
            raise
        if failed:
            with self._lock:
                self._failed.discard(href)
        self._give_back(href, handle)

    def _mark_failed(self, href: str) -> None:
        if not is_local(href):
            with self._lock:
                self._failed.add(href)

    def _give_back(self, href: str, handle: _Handle) -> None:
        extra: list[_Handle] = []
        with self._lock:
            idle = self._idle.setdefault(href, [])
            self._idle.move_to_end(href)
            if idle and idle[-1].signature != handle.signature:
                extra.extend(idle)
                self._count -= len(idle)
                idle.clear()
            if len(idle) < self._per_file:
                idle.append(handle)
                self._count += 1
            else:
                extra.append(handle)
            while self._count > self._max_handles:
                oldest = self._idle.popitem(last=False)[1]
                extra.extend(oldest)
                self._count -= len(oldest)
        _close(extra)

    def clear(self) -> None:
        """Close every idle handle (those lent out at the time are kept when given back)."""
        with self._lock:
            handles = [h for idle in self._idle.values() for h in idle]
            self._idle.clear()
            self._count = 0
        _close(handles)


def _close(handles: list[_Handle]) -> None:
    for handle in handles:
        handle.src.close()


_POOL = _HandlePool()
_REMOTE_POOL = _HandlePool(MAX_IDLE_REMOTE_HANDLES, MAX_HANDLES_PER_REMOTE_FILE)
# A forked child shares its parent's open files (and their offsets): it opens its own.
os.register_at_fork(after_in_child=_POOL.forget)
os.register_at_fork(after_in_child=_REMOTE_POOL.forget)


def clear_handle_cache() -> None:
    """Close the files kept open between reads (e.g. before deleting or rewriting them)."""
    _POOL.clear()
    _REMOTE_POOL.clear()


# --------------------------------------------------------------------- fast path


def read_onto_grid(
    href: str, grid: Grid, *, resampling: str = "auto", nodata: float | None = None
) -> np.ndarray:
    """Band 1 of ``href`` on ``grid`` as float32, NaN where there is no data.

    Equal, pixel for pixel, to :func:`read_onto_grid_warped`: only the blocks under the grid
    are read; pixels equal to ``nodata`` (or the file's own nodata value) and pixels outside
    the file become NaN. Reuses open handles, and skips the warper when the grid is aligned
    with the file's pixels. A remote read broken off without an HTTP status (a connection
    closed or reset, which GDAL does not always retry itself) is tried again, past GDAL's
    cached state of the file (:data:`REMOTE_READ_RETRIES`).
    """
    if is_local(href):
        return _read_onto_grid(href, grid, resampling, nodata)
    return REMOTE_READ_RETRIES.call(
        lambda: _read_onto_grid(href, grid, resampling, nodata), retry_if=_broken_off
    ).value


REMOTE_READ_RETRIES = RetryPolicy(max_retries=2, backoff_s=0.1, deadline_s=60.0)
"""Retries of one remote band read after a broken connection. Errors with an HTTP status are
left to GDAL's own retries and to the provider's (which re-signs refused URLs)."""


def _broken_off(err: BaseException) -> bool:
    """A GDAL read that failed for want of a connection, not for what the server said."""
    from rasterio.errors import RasterioError

    if not isinstance(err, RasterioError) or http_status(err) is not None:
        return False
    text = str(err)
    return is_transient(err) or "IReadBlock failed" in text or "Read or write failed" in text


def _read_onto_grid(
    href: str, grid: Grid, resampling: str, nodata: float | None
) -> np.ndarray:
    """One try of :func:`read_onto_grid`."""
    with (_POOL if is_local(href) else _REMOTE_POOL).lend(href) as handle:
        src = handle.src
        src_nodata = src.nodata if src.nodata is not None else nodata
        same_crs, native_res = handle.crs_info(grid)
        method = choose_resampling(resampling, native_res, grid.resolution)
        # Reads of local files need none of GDAL_ENV's options (they are all about opening
        # files and HTTP), and entering an Env costs as much as a small read.
        env = nullcontext() if handle.signature is not None else rasterio.Env(**GDAL_ENV)
        with env:
            if handle.plain and same_crs:
                fast = _read_aligned(src, grid, method, src_nodata)
                if fast is not None:
                    return fast
            return _warp(src, grid, method, src_nodata)


def _whole(value: float) -> int | None:
    """``value`` as an int if it is one (within float noise), else None."""
    if not math.isfinite(value):
        return None
    nearest = round(value)
    return int(nearest) if abs(value - nearest) <= _ALIGN_TOL * max(1.0, abs(value)) else None


def _read_aligned(
    src: Any, grid: Grid, method: Resampling, src_nodata: float | None
) -> np.ndarray | None:
    """The warper's result computed with numpy, or None where that is not exact.

    Handles grids whose pixel edges lie on the file's (``nearest`` or ``average``, same
    resolution or an integer factor of it in the right direction).
    """
    t = src.transform
    res = t.a
    if method is Resampling.nearest:
        # Upsampling by k: grid pixel (i, j) lies inside file pixel ((m + i) // k, ...).
        # Centres sit at odd multiples of 1/(2k) file pixels, never on a file pixel edge.
        k = _whole(res / grid.resolution)
        if k is None or k < 1:
            return None
        step = grid.resolution
    elif method is Resampling.average:
        # Downsampling by k: grid pixel (i, j) is the mean of a k x k block of file pixels.
        k = _whole(grid.resolution / res)
        if k is None or k < 1:
            return None
        step = res
    else:
        return None
    # Offsets of the grid's top-left corner from the file's, in units of ``step``.
    col0 = _whole((grid.left - t.c) / step)
    row0 = _whole((t.f - grid.top) / step)
    if col0 is None or row0 is None:
        return None
    if src_nodata is not None:
        limits = np.iinfo(src.dtypes[0])
        if _whole(src_nodata) is None or not limits.min <= src_nodata <= limits.max:
            return None  # a nodata no pixel can hold: leave that edge case to GDAL
    if method is Resampling.nearest:
        return _nearest_up(src, grid, k, row0, col0, src_nodata)
    return _average_down(src, grid, k, row0, col0, src_nodata)


def _window(
    src: Any, row_start: int, row_stop: int, col_start: int, col_stop: int, fill: float
) -> np.ndarray:
    """File pixels [row_start, row_stop) x [col_start, col_stop) as float, ``fill`` outside."""
    from rasterio.windows import Window

    height, width = row_stop - row_start, col_stop - col_start
    r0, r1 = max(row_start, 0), min(row_stop, src.height)
    c0, c1 = max(col_start, 0), min(col_stop, src.width)
    if r0 >= r1 or c0 >= c1:
        return np.full((height, width), fill, np.float32)
    inner: np.ndarray = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    if (r0, r1, c0, c1) == (row_start, row_stop, col_start, col_stop):
        return inner.astype(np.float32)
    out = np.full((height, width), fill, np.float32)
    out[r0 - row_start : r1 - row_start, c0 - col_start : c1 - col_start] = inner
    return out


def _nearest_up(
    src: Any, grid: Grid, k: int, row0: int, col0: int, src_nodata: float | None
) -> np.ndarray:
    """Nearest upsampling by ``k`` of the file window under ``grid`` (k == 1: a copy)."""
    rows = (row0 + np.arange(grid.height)) // k
    cols = (col0 + np.arange(grid.width)) // k
    r_start, c_start = int(rows[0]), int(cols[0])
    data = _window(src, r_start, int(rows[-1]) + 1, c_start, int(cols[-1]) + 1, np.nan)
    if src_nodata is not None:
        data[data == np.float32(src_nodata)] = np.nan
    if k == 1:
        return data
    out: np.ndarray = data.take(rows - r_start, axis=0).take(cols - c_start, axis=1)
    return out


def _average_down(
    src: Any, grid: Grid, k: int, row0: int, col0: int, src_nodata: float | None
) -> np.ndarray | None:
    """Mean of each ``k`` x ``k`` block of valid file pixels (GDAL's ``average``).

    None unless every block lies inside the file: where a grid pixel straddles the file's
    edge, the warper weighs the pixels it keeps in ways not worth imitating.
    """
    if row0 < 0 or col0 < 0:
        return None
    if row0 + grid.height * k > src.height or col0 + grid.width * k > src.width:
        return None
    data = _window(src, row0, row0 + grid.height * k, col0, col0 + grid.width * k, np.nan)
    if src_nodata is not None:
        data[data == np.float32(src_nodata)] = np.nan
    if k == 1:
        return data
    blocks = data.reshape(grid.height, k, grid.width, k).astype(np.float64)
    valid = ~np.isnan(blocks)
    # Sums of at most k*k integers are exact in float64, so one division rounds like GDAL's.
    total = np.where(valid, blocks, 0.0).sum(axis=(1, 3))
    count = valid.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = (total / count).astype(np.float32)
    if src_nodata is not None and (out == src_nodata).any():
        return None  # the warper nudges means equal to nodata; let it do so
    return out


# --------------------------------------------------------------------- multi-band reads


def read_bands_onto_grid(
    href: str, grid: Grid, *, nodata: float | None = None
) -> np.ndarray:
    """Every band of ``href`` on ``grid`` by nearest neighbour: float32 ``(band, y, x)``.

    For files whose bands belong together (an embedding product's dimensions): one open and
    one warp instead of a read per band. Nearest keeps stored codes exact, so quantised
    values can be decoded afterwards. GDAL's warper handles any geotransform, so files
    stored bottom-up (positive pixel height) come out north-up like the rest. Pixels equal
    to ``nodata`` (or the file's own nodata value) and pixels outside the file are NaN.
    Handles are reused and broken-off remote reads retried as in :func:`read_onto_grid`.
    """

    def once() -> np.ndarray:
        with (_POOL if is_local(href) else _REMOTE_POOL).lend(href) as handle:
            src = handle.src
            src_nodata = src.nodata if src.nodata is not None else nodata
            env = nullcontext() if handle.signature is not None else rasterio.Env(**GDAL_ENV)
            with env, WarpedVRT(
                src, crs=grid.crs, transform=grid.transform, width=grid.width,
                height=grid.height, resampling=Resampling.nearest, src_nodata=src_nodata,
                nodata=src_nodata if src_nodata is not None else 0,
                add_alpha=src_nodata is None, dtype="float32",
                # Near-exact reprojection of every pixel centre (GDAL's default approximates
                # within 1/8 pixel): a pixel near a cell edge lands in the cell it lies in.
                tolerance=1e-6,
            ) as vrt:
                if src_nodata is None:
                    data: np.ndarray = vrt.read().astype(np.float32)
                    values, alpha = data[:-1], data[-1]
                    values[:, alpha == 0] = np.nan
                    return values
                out: np.ndarray = np.ma.filled(vrt.read(masked=True).astype(np.float32), np.nan)
                return out

    if is_local(href):
        return once()
    return REMOTE_READ_RETRIES.call(once, retry_if=_broken_off).value
