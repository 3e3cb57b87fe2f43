"""Whole files a provider needs before it can read (product indexes, registries, tiles).

Each is downloaded once into eoembed's cache, under a temporary name renamed when complete,
so a file there is always whole. A copy younger than ``max_age_s`` is used without asking
the server; an older one is revalidated with ``If-Modified-Since`` (a 304 costs no body) and
kept when the server cannot be reached. Retries follow :mod:`eoembed.retrying`.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

from eoembed.errors import ProviderUnavailableError
from eoembed.redact import redact
from eoembed.retrying import RetryPolicy, is_transient

__all__ = [
    "DOWNLOAD_RETRIES",
    "cached_download",
    "products_cache_bytes",
    "products_cache_dir",
    "trim_cache",
]

DOWNLOAD_RETRIES = RetryPolicy(max_retries=4, backoff_s=0.5, deadline_s=300.0)
"""Retries of one file download (a server that drops one request in five still delivers)."""

_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


def products_cache_dir() -> Path:
    """Where product files are kept: beside the patch cache (``$EOEMBED_CACHE/products``)."""
    from eoembed.providers.cache import default_cache_dir

    return default_cache_dir().parent / "products"


def products_cache_bytes() -> int:
    """Size limit of each product's cache folder: ``$EOEMBED_PRODUCTS_CACHE_BYTES``, 20 GiB."""
    from eoembed.errors import SpecError

    text = os.environ.get("EOEMBED_PRODUCTS_CACHE_BYTES", "").strip()
    if not text:
        return 20 * 2**30
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise SpecError("EOEMBED_PRODUCTS_CACHE_BYTES", text, allowed="a whole number of bytes")
    return value


def trim_cache(
    root: Path, max_bytes: int, keep: tuple[str, ...] = (), protect: Collection[Path] = ()
) -> int:
    """Delete the least recently used files under ``root`` until it holds ``max_bytes``.

    Files are ordered by modification time (readers touch what they use); names in ``keep``
    (indexes, registries), paths in ``protect`` (files being read) and partial downloads of
    other writers are never deleted. Returns the bytes deleted.
    """
    protected = {Path(p).resolve() for p in protect}
    files = []
    total = 0
    for path in root.rglob("*"):
        try:
            stat = path.stat()
        except OSError:  # removed meanwhile by another process
            continue
        if not path.is_file():
            continue
        total += stat.st_size
        if (path.name not in keep and not path.name.endswith((".part", ".tmp"))
                and path.resolve() not in protected):
            files.append((stat.st_mtime, stat.st_size, path))
    deleted = 0
    for _, size, path in sorted(files):
        if total - deleted <= max_bytes:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            deleted += size
    return deleted


def cached_download(url: str, target: Path, *, max_age_s: float = 7 * 86400.0) -> Path:
    """``target``, downloaded from ``url`` when missing or stale; never a partial file.

    Raises:
        ProviderUnavailableError: the server could not be reached (or refused) and no copy
            is cached.
    """
    import urllib.error

    from eoembed.embedders.weights import offline

    if target.is_file():
        age = time.time() - target.stat().st_mtime
        if age < max_age_s or offline():
            return target
    elif offline():
        raise ProviderUnavailableError(
            f"{redact(url)} is not cached at {target} and downloads are off "
            "(EOEMBED_OFFLINE / HF_HUB_OFFLINE is set)"
        )
    try:
        DOWNLOAD_RETRIES.call(lambda: _download_once(url, target), retry_if=is_transient)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        if target.is_file():  # a stale copy beats none; it is revalidated next time
            return target
        status = f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else str(exc)
        raise ProviderUnavailableError(f"could not download {redact(url)}: {status}") from None
    return target


def _download_once(url: str, target: Path) -> None:
    """One GET of ``url`` into ``target`` (conditional when a copy exists)."""
    import urllib.error
    import urllib.request

    from eoembed._version import __version__

    headers = {"User-Agent": f"eoembed/{__version__}"}
    if target.is_file():
        headers["If-Modified-Since"] = email.utils.formatdate(target.stat().st_mtime, usegmt=True)
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            os.utime(target)  # still current: fresh for another max_age_s
            return
        raise
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out, response:
            expected = response.headers.get("Content-Length")
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                size += len(chunk)
        if expected is not None and size != int(expected):  # transient: retried
            raise ConnectionResetError(f"the download stopped after {size} of {expected} bytes")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
