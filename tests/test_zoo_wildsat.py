"""WildSAT adapters: the released checkpoint layout, downloaded over HTTP, == torchvision's model.

Each test writes a seeded torchvision model as WildSAT's ``train.py`` saves it (the whole
training state: ``satellite_state_dict`` with DDP's ``module.`` prefix and the decoder heads,
the location/text models, the optimizer, ``opt`` as an ``argparse.Namespace`` and a pickled
``StepLR``), publishes it on a loopback HTTP server in place of Google Drive, and compares
eoembed's embeddings with the torchvision model loaded from the same state dict, on real
sample pixels preprocessed as WildSAT does (written out here).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models.feature_extraction import create_feature_extractor

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.embedders.weights import url_cache_path
from eoembed.errors import UnsafeWeightsError
from zoo import (
    WeightsServer,
    assert_parity,
    publish_url,
    rel_error,
    sample_pixels,
    shallow,  # noqa: F401
    weights_server,  # noqa: F401
)

RGB = ("B04", "B03", "B02")
TCI_DN = 2000.0  # L1C DN shown as TCI 255 (ESA TCI scaling), as eoembed's Satlas adapters
# id -> (torchvision constructor, WildSAT's --satellite_encoder, grid feature node, head)
CASES = {
    "wildsat-vit-b16": ("vit_b_16", "vitb16", "encoder.ln", "heads"),
    "wildsat-resnet50": ("resnet50", "resnet50", "layer4", "fc"),
    "wildsat-swin-t": ("swin_t", "swint", "norm", "head"),
}
DRIVE_IDS = {
    "wildsat-vit-b16": "1IxBpf3nbEMzny4YJWS6stMBxel6gMiYE",
    "wildsat-resnet50": "1LwCjzT1p0yFOtv1m0YD-rl7tP0eYXTb2",
    "wildsat-swin-t": "12rfb3ES9-RuIAk_RjzYrMQJG_5J1Iq5H",
}


def _training_checkpoint(model: Any, encoder: str) -> bytes:
    """What WildSAT's train.py saves (small stand-ins for the location and text models)."""
    state = {f"module.backbone.{k}": v for k, v in model.state_dict().items()}
    for i in (1, 2, 3):  # threelinearnobias decoder: text, location, image heads
        state[f"module.decoder.backbone{i}.0.weight"] = torch.randn(256, 1000)
    text = torch.nn.Linear(16, 256, bias=False)
    optimizer = torch.optim.Adam(text.parameters(), lr=1e-4)
    text(torch.randn(2, 16)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    opt = argparse.Namespace(
        satellite_encoder=encoder, satellite_head="threelinearnobias", common_embed_dim=256,
        scheduler="steplr", use_bnft=True, is_tunefc=True, lora_layer_types=["conv"],
        satellite_encoder_ckpt=None, lr=1e-4,
    )
    buf = io.BytesIO()
    torch.save({
        "epoch": 26,
        "satellite_state_dict": state,
        "sinr_state_dict": {"module.head.weight": torch.randn(256, 256)},
        "text_emb_model": {f"module.head.{k}": v for k, v in text.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "opt": opt,
        "loss": 1.25,
        "scheduler": scheduler,
        "all_losses_plot": [[3.0, 2.0]],
        "all_losses_names": ["train"],
        "all_accs_plot": [],
        "all_accs_names": [],
    }, buf)
    return buf.getvalue()


def _preprocess(pixels: np.ndarray) -> Any:
    """L1C DN -> TCI / 255 (DN / 2000, clipped) -> WildSAT's x - min, / max(max, 1)."""
    return _wildsat_normalise(torch.from_numpy(pixels).float().div(TCI_DN).clamp(0, 1))


def _wildsat_normalise(x: Any) -> Any:
    out = []
    for image in x:  # dataset/classification.py, one image at a time
        if image.max() - image.min():
            image = image - image.min()
            image = image / torch.maximum(image.max(), torch.tensor(1.0))
        else:
            image = torch.zeros_like(image)
        out.append(image)
    return torch.stack(out)


def _reference(model: Any, node: str, head: str, x: Any, vit: bool) -> tuple[Any, Any]:
    """(torchvision forward, the classifier on each cell of the ``node`` feature map)."""
    last = "heads.head" if vit else head
    with torch.inference_mode():
        out = create_feature_extractor(model, return_nodes={node: "f", last: "out"})(x)
        pooled, feats = out["out"], out["f"]
        if vit:
            side = int((feats.shape[1] - 1) ** 0.5)
            feats = feats[:, 1:].reshape(len(x), side, side, -1)
        elif node == "layer4":
            feats = feats.permute(0, 2, 3, 1)
        cells = getattr(model, head)(feats).permute(0, 3, 1, 2)
    return pooled, cells


@pytest.mark.parametrize("model_id", list(CASES))
def test_parity_with_torchvision_through_the_url_loader(
    model_id: str, weights_server: WeightsServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch, sample_provider: Any,
    shallow: Callable[[str], None],  # noqa: F811
) -> None:
    shallow(model_id)
    arch, encoder, node, head = CASES[model_id]
    card = describe_model(model_id)
    size = card.input.image_size
    assert size is not None
    pixels = sample_pixels(sample_provider, RGB, size, n=2)
    torch.manual_seed(sum(map(ord, model_id)))
    ref = getattr(torchvision.models, arch)(weights=None).eval()
    payload = _training_checkpoint(ref, encoder)
    source = publish_url(weights_server, monkeypatch, model_id, payload)
    ref_pooled, ref_grid = _reference(ref, node, head, _preprocess(pixels), arch.startswith("vit"))
    del payload

    embedder = get_embedder(model_id, device="cpu")
    meta = embedder.weights_meta
    assert meta["source"] == "url" and meta["url"] == source.download_url
    assert meta["pinned"] is False
    assert meta["sha256"] == hashlib.sha256(
        (weights_server.folder / source.filename).read_bytes()
    ).hexdigest()
    pooled = embedder.embed(pixels, OutputSpec.pooled())
    grid = embedder.embed(pixels, OutputSpec.grid())
    side = size // card.input.patch_size
    assert pooled.shape == (2, 1000) and grid.shape == (2, 1000, side, side)
    assert_parity(pooled, ref_pooled)
    assert_parity(grid, ref_grid)
    if not arch.startswith("vit"):  # average pool then linear: the grid's mean is the output
        assert rel_error(grid.mean(axis=(2, 3)), ref_pooled) <= 1e-5
    # The allow-list was scoped to the load: plain weights_only loading still refuses the file.
    cached = url_cache_path(source)
    assert cached.is_relative_to(weights_server.cache)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(cached), weights_only=True)


def test_other_pickled_objects_are_still_refused(tmp_path: Any) -> None:
    """Only the training-state names WildSAT pickles are allowed, nothing else."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    path = tmp_path / "evil.pth"
    torch.save({
        "satellite_state_dict": {f"module.backbone.{k}": v for k, v in model.state_dict().items()},
        "opt": argparse.Namespace(satellite_encoder="resnet50"),
        "scheduler": torch.optim.lr_scheduler.ExponentialLR(
            torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1), gamma=0.9),
    }, str(path))
    with pytest.raises(UnsafeWeightsError, match=r"Unsupported global: .*(ExponentialLR|SGD)"):
        get_embedder("wildsat-resnet50", device="cpu", weights=str(path))


def test_plain_torchvision_state_dict_loads(tmp_path: Any, sample_provider: Any) -> None:
    """``weights=`` may also be a bare torchvision state dict (e.g. extracted once)."""
    torch.manual_seed(1)
    ref = torchvision.models.vit_b_16(weights=None).eval()
    path = tmp_path / "vit_b_16.pth"
    torch.save(ref.state_dict(), str(path))
    pixels = sample_pixels(sample_provider, RGB, 96, n=1)  # resized to 224 like any region
    embedder = get_embedder("wildsat-vit-b16", device="cpu", weights=str(path))
    x = torch.nn.functional.interpolate(
        torch.from_numpy(pixels).div(TCI_DN).clamp(0, 1), size=(224, 224), mode="bilinear",
        align_corners=False, antialias=True,
    )
    with torch.inference_mode():
        ref_pooled = ref(_wildsat_normalise(x))
    assert_parity(embedder.embed(pixels, OutputSpec.pooled()), ref_pooled)


@pytest.mark.parametrize("model_id", list(CASES))
def test_cards_are_consistent(model_id: str) -> None:
    card = describe_model(model_id)
    arch = CASES[model_id][0]
    model = getattr(torchvision.models, arch)(weights=None)
    assert card.embedding_dim == 1000 == sum(
        p.shape[0] for n, p in model.named_parameters() if n.endswith(("head.bias", "fc.bias"))
    )
    assert card.input.band_names == RGB and card.input.collections == ("sentinel-2-l1c",)
    assert card.input.image_size == (224 if arch.startswith("vit") else 512)
    assert card.input.normalisation.std == (TCI_DN,) * 3
    weights = card.weights
    assert weights is not None and not weights.pinned and weights.repo_id == ""
    assert weights.download_url == (
        f"https://drive.usercontent.google.com/download?id={DRIVE_IDS[model_id]}"
        "&export=download&confirm=t"
    )
    assert DRIVE_IDS[model_id] in weights.url
