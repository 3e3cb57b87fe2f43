"""Fetching and loading pretrained weights safely.

Weights come from the Hugging Face Hub through ``huggingface_hub`` (so its cache, offline mode
``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` are honoured), pinned to a commit and checked against
a sha256 where the card pins them (otherwise the commit and sha256 actually loaded are
recorded), and loaded without executing code: safetensors, or ``torch.load(weights_only=True)``.

Weights published elsewhere (``WeightsSource.download_url``: Google Drive, a project's own
server) are streamed into eoembed's cache (``<cache>/weights/<url key>/<file>``, the cache root
chosen as for the patch cache: ``$EOEMBED_CACHE`` or the platform's user cache folder), under a
temporary ``.part`` name renamed into place only when complete and verified, so an interrupted
or corrupt download never looks cached. The same offline switches apply (``HF_HUB_OFFLINE=1``
or ``EOEMBED_OFFLINE=1``): then only the cached file is used.

Missing weights fail at once on a machine that is offline: when downloads are switched off,
or when the server cannot even be connected to (a refused connection, an unknown host),
without the Hub client's minute of retries; the message says so and what to do. Transient
failures of a download that got going (a reset, HTTP 5xx) are retried by eoembed's one
retry policy (:mod:`eoembed.retrying`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from eoembed.errors import (
    ChecksumError,
    CorruptFileError,
    DependencyNotFoundError,
    EoembedError,
    UnsafeWeightsError,
    WeightsNotFoundError,
)
from eoembed.redact import redact
from eoembed.retrying import RetryPolicy, error_chain, is_transient

if TYPE_CHECKING:
    from eoembed.embedders.card import WeightsSource

__all__ = [
    "cached_weights_path",
    "download_weights",
    "fetch_companion",
    "file_sha256",
    "lightning_checkpoint_globals",
    "load_state_dict",
    "offline",
    "resolve_weights",
    "url_cache_path",
    "weights_cache_dir",
]

_TRUE = {"1", "ON", "YES", "TRUE"}
_CHUNK = 1 << 20
_URL_TIMEOUT_S = 60.0
"""Seconds without data before a URL download is abandoned."""
_PROBE_TIMEOUT_S = 3.0
"""Seconds to resolve and connect to a weights server before calling the machine offline."""
_DOWNLOAD_RETRIES = RetryPolicy(max_retries=2, backoff_s=1.0, deadline_s=600.0)
"""Retries of a URL download after a reset, a timeout or HTTP 408/425/429/5xx."""
_OFFLINE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED})


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _how_to_get(model_id: str, source: WeightsSource, *, command: bool = False) -> str:
    """What to do about missing hub weights.

    ``command``: said by ``eoembed weights download`` itself, which must not send the user to
    run it again.
    """
    if command:
        return (
            f"run it again where the machine has network access (and HF_HUB_OFFLINE / "
            f"EOEMBED_OFFLINE unset), or on a connected machine, then copy the Hugging Face "
            f"cache (HF_HUB_CACHE) here; or download {source.repo_id}/{source.filename} at "
            f"revision {source.revision} yourself and pass weights='/path/to/{source.filename}'"
        )
    return (
        f"on a connected machine run `eoembed weights download {model_id}` (or "
        f"`huggingface-cli download {source.repo_id} {source.filename} --revision "
        f"{source.revision}`) and copy the Hugging Face cache (HF_HUB_CACHE) here; or pass "
        f"weights='/path/to/{source.filename}'; or weights='random' for an untrained model"
    )


def _offline_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the machine has no network (not that the server is failing)."""
    for current in error_chain(exc):
        for err in (current, getattr(current, "reason", None)):  # URLError keeps it in .reason
            if isinstance(err, socket.gaierror | ConnectionRefusedError):
                return True
            if isinstance(err, OSError) and err.errno in _OFFLINE_ERRNOS:
                return True
    return False


def unreachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> str | None:
    """Why ``url``'s server cannot be connected to (no DNS, refused, no route), or None.

    One TCP connection attempt, given up after ``timeout`` seconds all told (name lookup
    included, which has no timeout of its own: it runs in a thread that is abandoned). Behind
    a proxy (``HTTPS_PROXY``, ...) the proxy is what has to be reachable.
    """
    import urllib.request

    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{type(exc).__name__}: {exc}" if _offline_error(exc) else None)

    thread = threading.Thread(target=probe, daemon=True, name="eoembed-probe")
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no answer from {host} within {timeout:g} s"
    return outcome[0]


def offline() -> bool:
    """Whether downloads are off: ``EOEMBED_OFFLINE`` or the Hub's ``HF_HUB_OFFLINE`` is set."""
    for var in ("EOEMBED_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in _TRUE:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def weights_cache_dir() -> Path:
    """Folder of URL-downloaded weights: ``weights`` beside the patch cache's ``patches``."""
    from eoembed.providers.cache import default_cache_dir

    return default_cache_dir().parent / "weights"


def url_cache_path(source: WeightsSource) -> Path:
    """Where ``source``'s file is cached: keyed by its URL, under its own file name."""
    key = hashlib.sha256(source.download_url.encode()).hexdigest()[:16]
    return weights_cache_dir() / key / Path(source.filename).name


def cached_weights_path(source: WeightsSource) -> Path | None:
    """The local copy of ``source`` if it is already cached (nothing is downloaded or hashed).

    Hub files are looked up with ``huggingface_hub.try_to_load_from_cache`` (its cache and
    revision layout); URL files in eoembed's own weights cache.
    """
    if source.download_url:
        target = url_cache_path(source)
        return target if target.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(source.repo_id, source.filename, revision=source.revision)
    return Path(found) if isinstance(found, str) else None


def download_weights(model_id: str, source: WeightsSource, *, command: bool = False) -> Path:
    """The local path of ``source``: from the cache, downloading only when allowed.

    The source's ``companions`` (a ``config.json``) are fetched too.

    Args:
        model_id: the model the weights are for (named in errors).
        source: where the weights come from.
        command: the caller is ``eoembed weights download`` (its errors then do not advise
            running it).

    Raises:
        WeightsNotFoundError: not cached and not downloadable (offline, or no network);
            the message says how to get the file.
        ChecksumError: the file's sha256 does not match the pinned one.
    """
    path = _fetch(model_id, source, command=command)[0]
    for name in source.companions:
        fetch_companion(model_id, source, name, command=command)
    return path


def _fetch(model_id: str, source: WeightsSource, *, command: bool = False) -> tuple[Path, str]:
    """(local path, sha256) of ``source``, verified against the pinned hash when there is one."""
    if source.download_url:
        return _fetch_url(model_id, source, command=command)
    path = _hub_file(model_id, source, source.filename, command=command)
    digest = file_sha256(path)
    if source.sha256 and not digest.startswith(source.sha256.lower()):
        raise ChecksumError(
            f"weights file {path} for {model_id!r} has sha256 {digest}, expected "
            f"{source.sha256}...; delete it and download again"
        )
    return path, digest


def _hub_file(
    model_id: str, source: WeightsSource, filename: str, *, command: bool = False
) -> Path:
    """``filename`` of the source's Hub repository at its revision: cached, else downloaded."""
    try:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise DependencyNotFoundError("huggingface_hub", "torch") from None
    what = f"{filename} for {model_id!r} ({source.repo_id}@{source.revision[:12]})"
    try:
        return Path(hf_hub_download(
            source.repo_id, filename, revision=source.revision, local_files_only=True
        ))
    except (LocalEntryNotFoundError, OSError):
        pass
    # Not cached. Say at once when nothing can be downloaded, rather than after the Hub
    # client's retries (half a minute and more).
    if offline():
        raise WeightsNotFoundError(
            f"{what} is not cached and this machine is offline (HF_HUB_OFFLINE / "
            f"EOEMBED_OFFLINE is set). " + _how_to_get(model_id, source, command=command)
        ) from None
    why = unreachable(constants.ENDPOINT)
    if why is not None:
        raise WeightsNotFoundError(
            f"{what} is not cached and this machine is offline: cannot connect to "
            f"{constants.ENDPOINT} ({why}). " + _how_to_get(model_id, source, command=command)
        ) from None
    try:
        return Path(hf_hub_download(source.repo_id, filename, revision=source.revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise WeightsNotFoundError(
            f"{what} is not available: {type(exc).__name__}. "
            + _how_to_get(model_id, source, command=command)
        ) from None


def fetch_companion(
    model_id: str, source: WeightsSource, filename: str, *, command: bool = False
) -> tuple[Path, str]:
    """Another file of the weights' Hub repository at the same revision (a ``config.json``).

    Returns its local path and sha256 (recorded, as the release publishes no hash of it).
    """
    path = _hub_file(model_id, source, filename, command=command)
    return path, file_sha256(path)


def _how_to_get_url(
    model_id: str, source: WeightsSource, target: Path, *, command: bool = False
) -> str:
    if command:
        return (
            f"run it again where the machine has network access (and HF_HUB_OFFLINE / "
            f"EOEMBED_OFFLINE unset), or on a connected machine and copy {target} to the "
            f"same path here; or download {redact(source.download_url)} yourself and pass "
            f"weights='/path/to/{Path(source.filename).name}'"
        )
    return (
        f"on a connected machine run `eoembed weights download {model_id}` and copy {target} "
        f"to the same path here (the cache root follows EOEMBED_CACHE); or download "
        f"{redact(source.download_url)} yourself and pass weights='/path/to/{Path(source.filename).name}'"
        f"; or weights='random' for an untrained model"
    )


def _verify(model_id: str, source: WeightsSource, path: Path, digest: str) -> None:
    """Refuse (and delete) a file whose sha256 is not the pinned one."""
    if source.sha256 and not digest.startswith(source.sha256.lower()):
        path.unlink(missing_ok=True)
        raise ChecksumError(
            f"weights for {model_id!r} from {source.download_url} have sha256 {digest}, "
            f"expected {source.sha256}...; the file was deleted (run again to download it anew)"
        )


def _fetch_url(
    model_id: str, source: WeightsSource, *, command: bool = False
) -> tuple[Path, str]:
    """The cached copy of ``source.download_url``, downloaded first when missing and allowed."""
    target = url_cache_path(source)
    if target.is_file():
        digest = file_sha256(target)
        _verify(model_id, source, target, digest)
        return target, digest
    if offline():
        raise WeightsNotFoundError(
            f"weights for {model_id!r} ({redact(source.download_url)}) are not cached at "
            f"{target} and downloads are off: this machine is offline (HF_HUB_OFFLINE / "
            f"EOEMBED_OFFLINE is set). " + _how_to_get_url(model_id, source, target, command=command)
        )
    return target, _download(model_id, source, target, command=command)


def _download(
    model_id: str, source: WeightsSource, target: Path, *, command: bool = False
) -> str:
    """:func:`_download_once` under the retry policy; an offline machine fails at once."""
    import http.client

    def worth(exc: BaseException) -> bool:
        return not _offline_error(exc) and (
            is_transient(exc) or isinstance(exc, http.client.HTTPException)
        )

    url = redact(source.download_url)
    try:
        return _DOWNLOAD_RETRIES.call(
            lambda: _download_once(model_id, source, target), retry_if=worth
        ).value
    except EoembedError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
        offline_now = " (this machine is offline)" if _offline_error(exc) else ""
        raise WeightsNotFoundError(
            f"weights for {model_id!r} could not be downloaded from {url}{offline_now}: "
            f"{type(exc).__name__}: {redact(exc)}. "
            + _how_to_get_url(model_id, source, target, command=command)
        ) from None


def _download_once(model_id: str, source: WeightsSource, target: Path) -> str:
    """Stream the URL to ``<target>.<random>.part``, verify it, rename it; return its sha256."""
    import urllib.request

    from eoembed._version import __version__

    url = source.download_url
    request = urllib.request.Request(url, headers={"User-Agent": f"eoembed/{__version__}"})
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f"{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(
            request, timeout=_URL_TIMEOUT_S
        ) as response:
            if response.headers.get_content_type() == "text/html":
                raise WeightsNotFoundError(
                    f"weights for {model_id!r}: {redact(url)} answered with an HTML page, not "
                    f"the file (a sign-in, quota or confirmation page?). "
                    + _how_to_get_url(model_id, source, target)
                )
            expected = response.headers.get("Content-Length")
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        if expected is not None and size != int(expected):  # a transient failure: retried
            raise ConnectionError(f"the download stopped after {size} of {expected} bytes")
        hexdigest = digest.hexdigest()
        _verify(model_id, source, tmp, hexdigest)
        os.replace(tmp, target)
        return hexdigest
    finally:
        tmp.unlink(missing_ok=True)


def resolve_weights(
    model_id: str, source: WeightsSource | None, weights: str | None
) -> tuple[Path | None, dict[str, Any]]:
    """Interpret a model's ``weights`` argument.

    ``None``: the pinned pretrained weights. ``"random"``: no weights (recorded as such).
    A path: that local file (its sha256 is recorded, nothing is verified).
    """
    if weights == "random":
        return None, {"source": "random initialisation (explicitly requested)"}
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {str(path)!r} for {model_id!r} not found")
        return path, {"source": "local file", "path": str(path), "sha256": file_sha256(path)}
    if source is None:
        raise WeightsNotFoundError(f"model {model_id!r} has no published weights")
    path, digest = _fetch(model_id, source)
    if source.download_url:
        return path, {
            "source": "url",
            "url": source.download_url,
            "pinned": source.pinned,
            "filename": source.filename,
            "sha256": digest,  # what was actually loaded (verified when pinned)
            "licence": source.licence,
        }
    return path, {
        "source": "huggingface",
        "repo_id": source.repo_id,
        "revision": source.revision,
        # The hub cache stores files under snapshots/<commit>/: what was actually loaded.
        "commit": _snapshot_commit(path) or source.revision,
        "pinned": source.pinned,
        "filename": source.filename,
        "sha256": digest,
        "licence": source.licence,
    }


def _snapshot_commit(path: Path) -> str | None:
    """The commit a hub-cache file belongs to (``.../snapshots/<commit>/<filename>``)."""
    for parent in path.parents:
        if parent.parent.name == "snapshots":
            return parent.name
    return None


def load_state_dict(path: Path) -> dict[str, Any]:
    """Tensors from a checkpoint, without running pickled code.

    ``.safetensors`` files load with safetensors; anything else with
    ``torch.load(weights_only=True)``. A top-level ``state_dict``/``model`` entry is unwrapped.
    """
    if path.stat().st_size == 0:
        raise CorruptFileError(f"weights file {str(path)!r} is empty; download it again")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except SafetensorError as exc:
            raise CorruptFileError(f"weights file {str(path)!r} is not a valid safetensors file "
                                   f"(truncated or corrupt?): {exc}") from None
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError) as exc:  # a truncated pickle; a damaged zip archive
        first = (str(exc).splitlines() or [""])[0]
        raise CorruptFileError(f"weights file {str(path)!r} is truncated or corrupt "
                               f"({type(exc).__name__}: {first})") from None
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [""]
        # torch's message opens with advice to load unsafely; "WeightsUnpickler error:" is
        # followed (on its line, or the next) by the object (or, for bytes that are no
        # pickle, the opcode).
        marker = "WeightsUnpickler error"
        at = next((i for i, ln in enumerate(lines) if marker in ln), None)
        why = lines[0]
        if at is not None:
            rest = lines[at].split(marker, 1)[1].lstrip(": ").strip()
            why = rest or (lines[at + 1] if at + 1 < len(lines) else why)
        if why.startswith("Unsupported operand"):
            raise CorruptFileError(
                f"weights file {str(path)!r} is not a checkpoint (corrupt?): {why}"
            ) from None
        raise UnsafeWeightsError(
            f"{path} holds objects other than tensors; refusing to unpickle them ({why})"
        ) from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsNotFoundError(f"{path} holds no state dict (found {type(obj).__name__})")
    return obj


def _lightning_globals() -> list[Any]:
    """What real Lightning checkpoints pickle besides tensors and builtins, as inert objects.

    Lightning (2.x) stores optimizer, scheduler, loop and callback states as plain dicts of
    tensors, but ``hyper_parameters`` keep the user's own objects: paths, ``argparse``
    namespaces, Lightning's ``AttributeDict``. Paths and namespaces are plain values (building
    them runs no user code); ``AttributeDict`` is rebuilt as a plain dict, so no Lightning code
    is imported or run. Anything else (``functools.partial``, OmegaConf containers) is refused.
    """
    import argparse
    import pathlib

    stand_ins: list[Any] = [argparse.Namespace, pathlib.PosixPath, pathlib.PurePosixPath,
                            pathlib.PureWindowsPath,
                            (pathlib.PureWindowsPath, "pathlib.WindowsPath")]
    for package in ("lightning.fabric", "lightning_fabric", "pytorch_lightning"):
        # AttributeDict (a dict subclass) is rebuilt as a plain dict.
        stand_ins.append((dict, f"{package}.utilities.data.AttributeDict"))
        stand_ins.append((dict, f"{package}.utilities.parsing.AttributeDict"))
    return stand_ins


_LIGHTNING_LOCK = threading.Lock()


@contextlib.contextmanager
def lightning_checkpoint_globals() -> Iterator[None]:
    """Allow what a real Lightning ``.ckpt`` pickles in ``torch.load(weights_only=True)``.

    Scoped to the ``with`` block (``torch.serialization.safe_globals``, torch >= 2.5; with an
    older torch nothing is allowed and such files are refused as unsafe). torch's allow-list
    is process-wide, so one such load runs at a time.
    """
    import torch

    scope = getattr(torch.serialization, "safe_globals", None)
    if scope is None:
        yield
        return
    with _LIGHTNING_LOCK, scope(_lightning_globals()):
        yield
