"""Every registered model honours the embedder contract; pretrained weights load safely."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from eoembed import OutputSpec, PointBuffer, TemporalSpec, get_embedding
from eoembed.api import cached_embedder
from eoembed.embedders import describe_model, get_embedder, list_models
from eoembed.embedders.registry import embedder_class
from eoembed.errors import (
    ChecksumError,
    EoembedError,
    ModelArgumentError,
    UnsafeWeightsError,
    WeightsNotFoundError,
)
from zoo import shallow  # noqa: F401

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
POINT = PointBuffer(lon=-75.70, lat=37.70, buffer_m=1280)
TIMM_SSL4EO = [m for m in list_models() if embedder_class(m).__module__ == "eoembed.embedders.ssl4eo"]
"""The timm-built SSL4EO adapters; the other families test their hub loading in test_zoo_*."""


def _args(model: str) -> dict[str, object]:
    return {"weights": "random"} if describe_model(model).weights is not None else {}


COMPUTED = [m for m in list_models() if describe_model(m).product is None]
"""Models that run a network (published products are read: tests/test_products.py)."""


@pytest.mark.parametrize("model", COMPUTED)
def test_contract_dims_batch_and_georeferencing(
    model: str, shallow: Callable[[str], None]  # noqa: F811
) -> None:
    """Every model: declared dims and grid shape, batch == one at a time, finite and input-
    dependent output, pooled "mean" == grid mean (whatever the model's default pooling),
    and grids georeferenced onto the region's footprint through ``get_embedding``.

    One build per model: ``get_embedding`` caches the embedder this test then reuses. The
    large families are built shallow (two blocks) here, at their released depth in the
    ``full`` tier.
    """
    shallow(model)
    card = describe_model(model)
    has_grid = "grid" in card.outputs
    emb = get_embedding(
        model, spatial=POINT, temporal=WINDOW, device="cpu",
        output=OutputSpec.grid() if has_grid else OutputSpec.pooled(), **_args(model),
    )
    assert emb.meta["embedding_dim"] == card.embedding_dim
    assert emb.meta["input_grid"]["crs"].endswith("32618")
    if has_grid:
        left, bottom, right, top = emb.data.rio.bounds()
        assert emb.data.rio.crs.to_epsg() == 32618
        # 2560 m, up to one pixel more where the model's GSD does not divide it (30 m HLS).
        assert 2560 <= right - left < 2560 + card.input.gsd_m
        assert 2560 <= top - bottom < 2560 + card.input.gsd_m
        assert emb.meta["input_grid"]["bounds"] == pytest.approx([left, bottom, right, top])
        assert emb.data.dims == ("dim", "y", "x")

    embedder = cached_embedder(model, "cpu", 16, _args(model))
    rng = np.random.default_rng(0)
    pixels = rng.uniform(500, 3000, (2, len(card.input.bands), 64, 64)).astype(np.float32)
    pooled = embedder.embed(pixels, OutputSpec.pooled())
    assert pooled.shape == (2, card.embedding_dim) and pooled.dtype == np.float32
    assert np.isfinite(pooled).all() and pooled.std() > 0
    assert not np.allclose(pooled[0], pooled[1])  # different inputs, different embeddings
    single = np.concatenate([embedder.embed(pixels[i : i + 1], OutputSpec.pooled()) for i in range(2)])
    np.testing.assert_allclose(pooled, single, rtol=1e-4, atol=1e-5)
    if has_grid:
        grid = embedder.embed(pixels, OutputSpec.grid())
        side = (card.input.image_size or 64) // card.input.patch_size
        assert grid.shape == (2, card.embedding_dim, side, side)
        mean = embedder.embed(pixels, OutputSpec.pooled("mean"))
        np.testing.assert_allclose(mean, grid.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)


def test_unknown_model_argument_is_an_error() -> None:
    with pytest.raises(ModelArgumentError, match="takes no argument 'weigths'") as info:
        get_embedder("ssl4eo-s12-vit-s16-dino", device="cpu", weigths="random")
    assert isinstance(info.value, TypeError)
    with pytest.raises(ModelArgumentError, match="num_features"):
        get_embedder("mosaiks", device="cpu", num_features=7)


def _hub_file(cache: Path, repo_id: str, revision: str, filename: str, payload: bytes) -> Path:
    folder = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
    folder.mkdir(parents=True)
    (folder / filename).write_bytes(payload)
    return folder / filename


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, with the hub client forced offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _checkpoint_bytes(model: str, seed: int) -> tuple[bytes, dict[str, torch.Tensor]]:
    cls = embedder_class(model)
    torch.manual_seed(seed)
    kwargs = {"img_size": 224} if cls.vit else {}
    net = timm.create_model(cls.timm_name, in_chans=13, num_classes=1000, **kwargs)
    state = net.state_dict()  # includes the classifier head, as released checkpoints do
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue(), state


@pytest.mark.parametrize("model", TIMM_SSL4EO)
def test_pinned_weights_load_from_the_hub_cache(
    model: str, offline_hub: Path, monkeypatch: pytest.MonkeyPatch,
    shallow: Callable[[str], None],  # noqa: F811
) -> None:
    shallow(model)  # ViTs at two blocks on both sides (the released depth in the full tier)
    cls = embedder_class(model)
    payload, state = _checkpoint_bytes(model, seed=1)
    digest = hashlib.sha256(payload).hexdigest()
    source = dataclasses.replace(
        cls.card.weights, repo_id="test-org/ckpt", revision="a" * 40,
        filename=f"ckpt-{digest[:8]}.pth", sha256=digest[:8],
    )
    _hub_file(offline_hub, source.repo_id, source.revision, source.filename, payload)
    monkeypatch.setattr(cls, "card", dataclasses.replace(cls.card, weights=source))

    embedder = get_embedder(model, device="cpu")
    assert embedder.weights_meta["revision"] == "a" * 40
    assert embedder.weights_meta["sha256"] == digest

    # The loaded network is the checkpoint: parity with timm loading the same state dict.
    kwargs = {"img_size": 224} if cls.vit else {}
    reference = timm.create_model(cls.timm_name, in_chans=13, num_classes=0, **kwargs).eval()
    reference.load_state_dict(state, strict=False)
    x = torch.rand(2, 13, 224, 224)
    with torch.inference_mode():
        ours = embedder.forward_grid(x)
        ref = reference.forward_features(x)
    if cls.vit:
        ref = ref[:, reference.num_prefix_tokens :].reshape(2, 14, 14, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_checksum_mismatch_is_refused(offline_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = "ssl4eo-s12-vit-s16-dino"
    cls = embedder_class(model)
    payload, _ = _checkpoint_bytes(model, seed=2)
    source = dataclasses.replace(
        cls.card.weights, repo_id="test-org/bad", revision="b" * 40,
        filename="ckpt-00000000.pth", sha256="00000000",
    )
    _hub_file(offline_hub, source.repo_id, source.revision, source.filename, payload)
    monkeypatch.setattr(cls, "card", dataclasses.replace(cls.card, weights=source))
    with pytest.raises(ChecksumError, match="expected 00000000"):
        get_embedder(model, device="cpu")


def test_missing_weights_say_how_to_get_them(offline_hub: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        get_embedding("ssl4eo-s12-vit-s16-moco", spatial=POINT, temporal=WINDOW, device="cpu")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "eoembed weights download ssl4eo-s12-vit-s16-moco" in message
    assert "1cb683f6c14739634cdfaaceb076529adf898c74" in message
    assert "weights='random'" in message


def test_random_weights_only_when_asked_and_recorded() -> None:
    emb = get_embedding(
        "ssl4eo-s12-vit-s16-dino", spatial=POINT, temporal=WINDOW, device="cpu", weights="random"
    )
    assert "random" in emb.meta["weights"]["source"]


def test_local_safetensors_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    cls = embedder_class("ssl4eo-s12-resnet50-dino")
    torch.manual_seed(3)
    net = timm.create_model(cls.timm_name, in_chans=13, num_classes=0)
    path = tmp_path / "rn50.safetensors"
    save_file(net.state_dict(), str(path))
    embedder = get_embedder("ssl4eo-s12-resnet50-dino", device="cpu", weights=str(path))
    assert embedder.weights_meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    x = torch.rand(1, 13, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(embedder.forward_grid(x), net.eval().forward_features(x))


class _Payload:
    """Pickling this would run code on load; the loader must refuse it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def test_pickled_code_is_never_executed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": _Payload()}}, str(path))
    with pytest.raises(UnsafeWeightsError) as info:
        get_embedder("ssl4eo-s12-vit-s16-dino", device="cpu", weights=str(path))
    assert isinstance(info.value, EoembedError)
    assert "pwned" not in capsys.readouterr().out
