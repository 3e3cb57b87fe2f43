"""FoMo-Net_1: the released state-dict layout loads, and matches vit-pytorch's modules run as
FoMo-Bench's ``MultiSpectralViT.forward(pool=False)`` runs them.

The reference is ``vit_pytorch.vit.ViT`` (the package FoMo-Bench's model is written on) with
seeded random weights and a seeded band-embedding table; its forward is written out here the
way FoMo-Bench's loops over bands (one band at a time, tokens concatenated band by band), not
eoembed's batched version. The checkpoint is saved in FoMo's own layout (``(1, N, D)``
position and class parameters, ``spectral_embedding``, classifier head) and served over
loopback HTTP, so eoembed's URL download, cache and loader are exercised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
vit_pytorch_vit = pytest.importorskip("vit_pytorch.vit")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.embedders.fomo import FOMO_BANDS, FOMO_S2_KEYS
from zoo import (
    WeightsServer,
    assert_parity,
    checkpoint_bytes,
    publish_url,
    sample_pixels,
    weights_server,  # noqa: F401
)

MODEL = "fomo-net1"
# FoMo-Bench modality_channels names of the S2 keys (configs/datasets/fomo_pretraining_datasets).
S2_NAMES = {6 + i: f"sentinel-2-b{b}" for i, b in enumerate(
    ("1", "2", "3", "4", "5", "6", "7", "8", "8a", "9", "10", "11", "12"))}


def _reference(seed: int) -> tuple[Any, Any]:
    """vit-pytorch ViT as FoMo-Net_1 builds it, plus FoMo's (1, 38, 768) band embeddings."""
    torch.manual_seed(seed)
    vit = vit_pytorch_vit.ViT(
        image_size=64, patch_size=16, num_classes=1000, dim=768, depth=12, heads=12,
        mlp_dim=2048, channels=1,
    ).eval()
    spectral = torch.randn(1, 38, 768)
    return vit, spectral


def _fomo_state(vit: Any, spectral: Any) -> dict[str, Any]:
    """The state dict as MultiSpectralViT holds it (leading batch axis on pos/cls)."""
    state = dict(vit.state_dict())
    state["pos_embedding"] = state["pos_embedding"][None]
    state["cls_token"] = state["cls_token"][None]
    state["spectral_embedding"] = spectral
    return state


def _ref_tokens(vit: Any, spectral: Any, pixels: np.ndarray) -> Any:
    """FoMo's forward(pool=False): each band patchified alone, band + position embeddings."""
    x = torch.from_numpy(pixels).float() / 10000.0
    tokens = None
    with torch.inference_mode():
        for idx, channel in enumerate(x.permute(1, 0, 2, 3)):
            band = vit.to_patch_embedding(channel.unsqueeze(1))
            band = band + spectral[:, FOMO_S2_KEYS[idx]]
            band = band + vit.pos_embedding[None, 1 : band.shape[1] + 1]
            tokens = band if tokens is None else torch.cat((tokens, band), dim=1)
        return vit.transformer(tokens)


def test_parity_with_vit_pytorch(
    weights_server: WeightsServer, monkeypatch: pytest.MonkeyPatch, sample_provider: Any,  # noqa: F811
) -> None:
    pixels = sample_pixels(sample_provider, FOMO_BANDS, 64, n=2)
    vit, spectral = _reference(seed=0)
    tokens = _ref_tokens(vit, spectral, pixels)  # (2, 12 bands * 16 patches, 768)
    ref_grid = tokens.reshape(2, 12, 4, 4, 768).mean(dim=1).permute(0, 3, 1, 2)
    source = publish_url(
        weights_server, monkeypatch, MODEL, checkpoint_bytes(_fomo_state(vit, spectral)),
        pinned=True,
    )
    del vit

    embedder = get_embedder(MODEL, device="cpu")
    assert embedder.weights_meta["source"] == "url"
    assert embedder.weights_meta["sha256"] == source.sha256
    grid = embedder.embed(pixels, OutputSpec.grid())
    assert grid.shape == (2, 768, 4, 4)
    assert_parity(grid, ref_grid)
    assert_parity(embedder.embed(pixels, OutputSpec.pooled()), tokens.mean(dim=1))


def test_card() -> None:
    card = describe_model(MODEL)
    assert card.input.band_names == FOMO_BANDS
    names = [S2_NAMES[k] for k in FOMO_S2_KEYS]
    assert names == [f"sentinel-2-b{b.lstrip('B0').lower()}" for b in FOMO_BANDS]
    assert 16 not in FOMO_S2_KEYS  # B10 (cirrus) is not used
    assert card.input.image_size == 64 and card.input.patch_size == 16
    assert card.input.unit == "reflectance"
    assert card.input.provider_scale == pytest.approx(1e-4)
    assert card.weights is not None and card.weights.download_url.startswith("https://")
    assert card.weights.filename == "fomo_single_embedding_layer_weights.pt"
