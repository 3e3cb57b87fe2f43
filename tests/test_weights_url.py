"""Weights at plain HTTPS URLs: streamed into eoembed's cache, verified, reused, offline-safe.

A real HTTP server on loopback publishes the files; eoembed's cache root is a temporary
folder (``EOEMBED_CACHE``).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------- offline, fail fast


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty Hugging Face cache, downloads allowed, the Hub at a loopback port nobody serves."""
    from huggingface_hub import constants

    from eoembed.testing.servers import free_port

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("EOEMBED_OFFLINE", raising=False)
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    return endpoint


HUB_MODEL = "ssl4eo-s12-vit-s16-dino"


def _hub_source() -> WeightsSource:
    from eoembed.embedders import describe_model

    source = describe_model(HUB_MODEL).weights
    assert source is not None and not source.download_url
    return source


def test_missing_hub_weights_without_network_fail_at_once(empty_hub: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as info:
        download_weights(HUB_MODEL, _hub_source())
    assert time.perf_counter() - t0 < 2  # not the Hub client's retries (24 s and more)
    message = str(info.value)
    assert "this machine is offline" in message and empty_hub in message
    assert f"eoembed weights download {HUB_MODEL}" in message and "weights='random'" in message


def test_missing_hub_weights_with_hub_offline_fail_at_once(
    empty_hub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match=r"offline \(HF_HUB_OFFLINE"):
        download_weights(HUB_MODEL, _hub_source())
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("offline_switch", [True, False])
def test_weights_download_command_offline_does_not_advise_itself(
    empty_hub: str, monkeypatch: pytest.MonkeyPatch, offline_switch: bool
) -> None:
    from typer.testing import CliRunner

    from eoembed.cli.main import app

    if offline_switch:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["weights", "download", HUB_MODEL])
    assert time.perf_counter() - t0 < 2
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "error:" in output and "offline" in output
    assert "run `eoembed weights download" not in output
    assert "network access" in output


def test_url_weights_with_the_server_down_fail_at_once(
    weights_server: WeightsServer,  # noqa: F811
) -> None:
    source = _source(weights_server)
    weights_server.stop()
    t0 = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="this machine is offline"):
        download_weights("m", source)
    assert time.perf_counter() - t0 < 2


def test_url_download_is_retried_after_a_transient_failure(
    weights_server: WeightsServer, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """A server answering 503 once: the one retry policy tries again and gets the file."""
    from eoembed.embedders import weights

    (weights_server.folder / "w.pth").write_bytes(PAYLOAD)
    handler = weights_server.server.RequestHandlerClass
    answered: list[int] = []
    real_get = handler.func.do_GET  # type: ignore[attr-defined]

    def flaky_get(self: Any) -> None:
        answered.append(503 if not answered else 200)
        if answered[-1] == 503:
            self.send_error(503)
        else:
            real_get(self)

    monkeypatch.setattr(handler.func, "do_GET", flaky_get)  # type: ignore[attr-defined]
    monkeypatch.setattr(weights, "_DOWNLOAD_RETRIES", weights.RetryPolicy(2, 0.01))
    assert download_weights("m", _source(weights_server)).read_bytes() == PAYLOAD
    assert answered == [503, 200]
