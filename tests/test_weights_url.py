"""Weights at plain HTTPS URLs: streamed into eoembed's cache, verified, reused, offline-safe.

A real HTTP server on loopback publishes the files; eoembed's cache root is a temporary
folder (``EOEMBED_CACHE``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from eoembed.embedders.card import WeightsSource
from eoembed.embedders.weights import (
    download_weights,
    offline,
    resolve_weights,
    url_cache_path,
    weights_cache_dir,
)
from eoembed.errors import ChecksumError, WeightsNotFoundError
from zoo import WeightsServer, weights_server  # noqa: F401

pytest.importorskip("huggingface_hub")

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: more than one read chunk
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def _source(server: WeightsServer, name: str = "w.pth", sha256: str = DIGEST) -> WeightsSource:
    return WeightsSource(
        repo_id="", filename=name, revision="", sha256=sha256, licence="test",
        download_url=server.url + name,
    )


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_download_verify_record_and_reuse_without_the_server(
    weights_server: WeightsServer,  # noqa: F811
) -> None:
    (weights_server.folder / "w.pth").write_bytes(PAYLOAD)
    source = _source(weights_server)
    assert source.pinned
    assert weights_cache_dir() == weights_server.cache / "weights"

    path, meta = resolve_weights("m", source, None)
    assert path == url_cache_path(source) and path.read_bytes() == PAYLOAD
    assert meta == {"source": "url", "url": source.download_url, "pinned": True,
                    "filename": "w.pth", "sha256": DIGEST, "licence": "test"}
    assert _leftovers(weights_server.cache) == [path]  # no .part file left behind

    weights_server.stop()  # the cached file is used: no request is made
    assert download_weights("m", source) == path
    assert resolve_weights("m", source, None)[1]["sha256"] == DIGEST


def test_unpinned_records_the_sha256_loaded(weights_server: WeightsServer) -> None:  # noqa: F811
    (weights_server.folder / "u.pth").write_bytes(PAYLOAD)
    source = _source(weights_server, "u.pth", sha256="")
    assert not source.pinned
    _, meta = resolve_weights("m", source, None)
    assert meta["pinned"] is False and meta["sha256"] == DIGEST


def test_checksum_mismatch_is_refused_and_nothing_kept(
    weights_server: WeightsServer,  # noqa: F811
) -> None:
    (weights_server.folder / "w.pth").write_bytes(PAYLOAD)
    source = _source(weights_server, sha256="00000000")
    with pytest.raises(ChecksumError, match=f"sha256 {DIGEST}, expected 00000000"):
        download_weights("m", source)
    assert _leftovers(weights_server.cache) == []


def test_corrupt_cached_file_is_refused_and_deleted(
    weights_server: WeightsServer,  # noqa: F811
) -> None:
    (weights_server.folder / "w.pth").write_bytes(PAYLOAD)
    source = _source(weights_server)
    path = download_weights("m", source)
    path.write_bytes(PAYLOAD[:-1] + b"x")  # damaged on disk after the download
    with pytest.raises(ChecksumError, match="deleted"):
        download_weights("m", source)
    assert not path.exists()
    assert download_weights("m", source).read_bytes() == PAYLOAD  # and fetched anew


@pytest.mark.parametrize("switch", ["HF_HUB_OFFLINE", "EOEMBED_OFFLINE"])
def test_offline_without_a_cached_file_names_the_url(
    weights_server: WeightsServer, monkeypatch: pytest.MonkeyPatch, switch: str,  # noqa: F811
) -> None:
    (weights_server.folder / "w.pth").write_bytes(PAYLOAD)
    source = _source(weights_server)
    monkeypatch.setenv(switch, "1")
    assert offline()
    with pytest.raises(WeightsNotFoundError) as info:
        download_weights("some-model", source)
    message = str(info.value)
    assert source.download_url in message and "downloads are off" in message
    assert str(url_cache_path(source)) in message
    assert "eoembed weights download some-model" in message and "weights='random'" in message
    assert isinstance(info.value, FileNotFoundError)
    assert _leftovers(weights_server.cache) == []


def test_hub_offline_constant_is_honoured(
    weights_server: WeightsServer, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError, match="downloads are off"):
        download_weights("m", _source(weights_server))


def test_http_errors_and_html_pages_are_not_weights(
    weights_server: WeightsServer,  # noqa: F811
) -> None:
    with pytest.raises(WeightsNotFoundError, match=r"could not be downloaded from .*missing\.pth"):
        download_weights("m", _source(weights_server, "missing.pth"))
    (weights_server.folder / "quota.html").write_text("<html>Quota exceeded</html>")
    with pytest.raises(WeightsNotFoundError, match="HTML page"):
        download_weights("m", _source(weights_server, "quota.html", sha256=""))
    weights_server.stop()
    with pytest.raises(WeightsNotFoundError, match="could not be downloaded"):
        download_weights("m", _source(weights_server))
    assert _leftovers(weights_server.cache) == []
