"""Shared checks for model-zoo adapters: checkpoints in the real hub-cache layout, parity.

Each family's test writes the reference implementation's (random, seeded) weights as the
publisher releases them into an offline Hugging Face cache, loads them through eoembed's real
loader, and compares eoembed's embeddings with the reference model's on the same pixels.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import io
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eoembed import SensorSpec
from eoembed.embedders.card import WeightsSource
from eoembed.embedders.context import SampleContext
from eoembed.embedders.registry import embedder_class

PARITY_RTOL = 1e-5
"""Largest relative error allowed between eoembed and the reference, in fp32."""

CONTEXT = SampleContext(lon=-75.70, lat=37.70, date=dt.date(2015, 12, 16), gsd_m=10.0)
"""Side inputs for parity tests: the sample point, the middle of its window."""


def rel_error(ours: Any, ref: Any) -> float:
    """max |ours - ref| / max |ref| (numpy or torch)."""
    a = np.asarray(ours.detach().cpu() if hasattr(ours, "detach") else ours, dtype=np.float64)
    b = np.asarray(ref.detach().cpu() if hasattr(ref, "detach") else ref, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != reference {b.shape}"
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def assert_parity(ours: Any, ref: Any) -> None:
    """Relative error within :data:`PARITY_RTOL`."""
    err = rel_error(ours, ref)
    assert err <= PARITY_RTOL, f"relative error {err:.3g} > {PARITY_RTOL}"


def checkpoint_bytes(state: dict[str, Any], fmt: str = "pth") -> bytes:
    """A state dict serialised as publishers do: ``torch.save`` or safetensors."""
    import torch

    if fmt == "safetensors":
        from safetensors.torch import save

        return bytes(save({k: v.contiguous() for k, v in state.items()}))
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty Hugging Face cache, with the hub client forced offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield cache
    # Checkpoints of the large models run to gigabytes; pytest would keep them for three runs.
    shutil.rmtree(cache, ignore_errors=True)


def publish(
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    model_id: str,
    payload: bytes,
    filename: str | None = None,
    extra: dict[str, bytes] | None = None,
) -> WeightsSource:
    """Put ``payload`` in the hub-cache layout as ``model_id``'s weights; pin the card to it.

    The file keeps the card's file name (so format detection by suffix is exercised) unless
    ``filename`` is given; the revision is a fake commit and the sha256 the real one.
    ``extra``: other files of the same repository commit (a ``config.json``), by path.
    """
    cls = embedder_class(model_id)
    card = cls.card
    assert card.weights is not None, f"{model_id} has no weights to publish"
    digest = hashlib.sha256(payload).hexdigest()
    source = dataclasses.replace(
        card.weights, repo_id=f"test-org/{model_id}", revision="c" * 40,
        filename=filename or card.weights.filename, sha256=digest,
    )
    folder = cache / f"models--test-org--{model_id}" / "snapshots" / source.revision
    target = folder / source.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)
    for name, content in (extra or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    monkeypatch.setattr(cls, "card", dataclasses.replace(card, weights=source))
    return source


def sample_pixels(sample_provider: Any, bands: tuple[str, ...], size: int, n: int = 2) -> np.ndarray:
    """``(n, len(bands), size, size)`` real Sentinel-2 L1C pixels from the sample scene."""
    from eoembed import PointBuffer, TemporalSpec

    window = TemporalSpec.range("2015-06-23", "2016-06-11")
    sensor = SensorSpec("sentinel-2-l1c", bands=bands, scale_m=10.0)
    out = []
    for i in range(n):
        region = PointBuffer(lon=-75.70 + 0.03 * i, lat=37.70 - 0.02 * i, buffer_m=size * 5)
        out.append(sample_provider.fetch(region, window, sensor).values[:, :size, :size])
    return np.stack(out).astype(np.float32)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclasses.dataclass
class WeightsServer:
    """A loopback HTTP server publishing the files in ``folder`` at ``url`` + name."""

    url: str
    folder: Path
    cache: Path
    """eoembed's cache root for the test (``EOEMBED_CACHE``)."""
    server: ThreadingHTTPServer

    def stop(self) -> None:
        """Stop serving (idempotent): later downloads fail as on a machine without network."""
        if self.server.socket.fileno() != -1:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def weights_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WeightsServer]:
    """Weights published over HTTP on loopback; eoembed's cache empty, downloads allowed."""
    from huggingface_hub import constants

    folder, cache = tmp_path / "served", tmp_path / "eoembed-cache"
    folder.mkdir()
    monkeypatch.setenv("EOEMBED_CACHE", str(cache))
    monkeypatch.delenv("EOEMBED_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    published = WeightsServer(f"http://127.0.0.1:{server.server_port}/", folder, cache, server)
    yield published
    published.stop()
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)


def publish_url(
    server: WeightsServer,
    monkeypatch: pytest.MonkeyPatch,
    model_id: str,
    payload: bytes,
    pinned: bool = False,
) -> WeightsSource:
    """Serve ``payload`` under the card's file name and point ``model_id``'s card at its URL.

    ``pinned``: the card carries the payload's sha256 (else none, as for unpublished hashes).
    """
    cls = embedder_class(model_id)
    card = cls.card
    assert card.weights is not None and card.weights.download_url, f"{model_id}: no URL weights"
    name = Path(card.weights.filename).name
    (server.folder / name).write_bytes(payload)
    source = dataclasses.replace(
        card.weights, download_url=server.url + name,
        sha256=hashlib.sha256(payload).hexdigest() if pinned else "",
    )
    monkeypatch.setattr(cls, "card", dataclasses.replace(card, weights=source))
    return source
