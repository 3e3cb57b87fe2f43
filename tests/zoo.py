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
import importlib
import inspect
import io
import shutil
import threading
from collections.abc import Callable, Iterator
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


SHALLOW_DEPTH = 2
"""Blocks per stack in the default (shallow) tier of the parity tests."""


def cap_depth(
    monkeypatch: pytest.MonkeyPatch, cls: type, param: str = "depth", depth: int = SHALLOW_DEPTH
) -> None:
    """Build every ``cls`` with at most ``depth`` blocks while the test runs.

    ``param`` names the constructor argument giving the number of blocks (an int, or a
    sequence of per-stage counts): passed by name, by position, through ``**kwargs``, left at
    its default, or as a key of a config dict argument, it is capped all the same. A ``param``
    ending in ``indices`` holds block indices instead (capped at ``depth - 1``). eoembed's
    adapter and the reference both construct ``cls``, so both get the same shallow network
    through their real code (builders, checkpoint layout and conversion, strict loading,
    forward): only the number of identical blocks shrinks, and with it the time and memory.
    """
    original = cls.__init__  # type: ignore[misc]
    signature = inspect.signature(original)

    limit = depth - 1 if param.endswith("indices") else depth

    def capped(value: Any) -> Any:
        if isinstance(value, int):
            return min(value, limit)
        return type(value)(min(v, limit) for v in value)

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        if param in arguments:
            arguments[param] = capped(arguments[param])
        else:
            configs = [k for k, v in arguments.items() if isinstance(v, dict) and param in v]
            assert configs, f"{cls.__name__} was built without a {param!r} argument"
            for key in configs:  # **kwargs, or a config dict (copied: it may be shared)
                arguments[key] = {**arguments[key], param: capped(arguments[key][param])}
        original(*bound.args, **bound.kwargs)

    monkeypatch.setattr(cls, "__init__", init)


DEPTH_ARGUMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    # adapter module -> ("module:Class" that eoembed and the reference both build, its argument
    # giving the number of blocks). Families left out are small enough at their own depth.
    "agrifm": (("eoembed.embedders._vendor.agrifm.video_swin_transformer:SwinTransformer3D",
                "depths"),),
    "clay": (
        ("terratorch.models.backbones.clay_v1.modules:Transformer", "depth"),
        ("terratorch.models.backbones.clay_v1.embedder:Embedder", "out_indices"),
        ("terratorch.models.backbones.clay_v15.model:Encoder", "depth"),
    ),
    "galileo": (("eoembed.embedders._vendor.galileo.single_file_galileo:GalileoBase", "depth"),),
    "olmoearth": (  # encoder and decoder
        ("olmoearth_pretrain_minimal.olmoearth_pretrain_v1.nn.flexi_vit:FlexiVitBase", "depth"),
    ),
    "prithvi": (("terratorch.models.backbones.prithvi_mae:PrithviViT", "depth"),),
    "remoteclip": (("open_clip.transformer:Transformer", "layers"),),  # image and text towers
    "satmae": (
        ("rshf.satmae:SatMAEConfig", "depth"),
        ("rshf.satmaepp:SatMAEPPConfig", "depth"),
        ("rshf.satmae:SatMAE_Pre_MS", "depth"),  # a config dict
    ),
    "terrafm": (("eoembed.embedders._vendor.terrafm.terrafm:TerraFM", "depth"),),
    "terramind": (("terratorch.models.backbones.terramind.model.terramind_vit:TerraMindViT",
                   "encoder_depth"),),
    "thor": (("eoembed.embedders._vendor.thor.thor_vit:ThorViTEncoder", "depth"),),
    "ssl4eo": (("timm.models.vision_transformer:VisionTransformer", "depth"),),
    "satlas": (("torchvision.models.swin_transformer:SwinTransformer", "depths"),),
    "wildsat": (
        ("torchvision.models.vision_transformer:VisionTransformer", "num_layers"),
        ("torchvision.models.resnet:ResNet", "layers"),
        ("torchvision.models.swin_transformer:SwinTransformer", "depths"),
    ),
    "torchgeo_fms": (
        ("torchgeo.models.dofa:DOFA", "depth"),
        ("timm.models.vision_transformer:VisionTransformer", "depth"),  # Scale-MAE, Panopticon
        ("torchgeo.models.croma:CROMA", "encoder_depth"),
        ("torchgeo.models.copernicusfm:CopernicusFM", "depth"),
    ),
}


def _family(model_id: str) -> str:
    """The adapter module's name (``prithvi``, ``torchgeo_fms``...)."""
    return embedder_class(model_id).__module__.rsplit(".", 1)[-1]


def cap_model_depth(monkeypatch: pytest.MonkeyPatch, model_id: str) -> None:
    """:func:`cap_depth` on every class of ``model_id``'s family in :data:`DEPTH_ARGUMENTS`."""
    from eoembed.embedders.torch_state import preserved_torch_state

    for target, param in DEPTH_ARGUMENTS.get(_family(model_id), ()):
        module, name = target.split(":")
        # Importing a family's package may flip torch settings (TerraTorch's clay_v15 sets
        # the matmul precision): imported as eoembed's adapters import them, settings kept.
        with preserved_torch_state():
            imported = importlib.import_module(module)
        cap_depth(monkeypatch, getattr(imported, name), param)


@pytest.fixture(params=["shallow", pytest.param("full", marks=pytest.mark.full)])
def shallow(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``shallow(model_id)``: build that model's family shallow (:func:`cap_model_depth`).

    Each test using it runs twice: with shallow models by default, and at the released depth
    in the ``full`` tier (``pytest --full -m full``), where ``shallow`` does nothing.
    """

    def apply(model_id: str) -> None:
        if request.param == "shallow":
            cap_model_depth(monkeypatch, model_id)
        elif _family(model_id) not in DEPTH_ARGUMENTS:
            pytest.skip("built at the released depth in the default tier already")

    return apply


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
