"""SatMAE / SatMAE++ adapters: MVRL's released files load, and match rshf's own encoders.

Each checkpoint is a seeded rshf model's whole state dict (decoder included) in the layout
MVRL publishes: ``model.safetensors`` written by the model's own ``save_pretrained``
(huggingface_hub's ``PyTorchModelHubMixin``) for SatMAE, a ``torch.save``d state dict
(``pytorch_model.bin``) for SatMAE++. Every tensor is perturbed after the seeded init so that
biases and LayerNorms (zero / one at init) are checked too. The reference is rshf's
``forward_encoder(x, mask_ratio=0.0)``, whose tokens come out shuffled by MAE's masking step
and are put back with the ``ids_restore`` it returns; the input is prepared here from the
original papers' code (constants written out below, SatMAE's ``SentinelNormalize`` taken
from rshf).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rshf.satmae")

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from eoembed.errors import ModelArgumentError
from zoo import (
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
    shallow,  # noqa: F401
)

# fMoW-RGB mean/std (sustainlab-group/SatMAE and techmn/satmae_pp util/datasets.py,
# CustomDatasetFromImages).
RGB_MEAN = (0.4182007312774658, 0.4214799106121063, 0.3991275727748871)
RGB_STD = (0.28774282336235046, 0.27541765570640564, 0.2764017581939697)
RGB = ("B04", "B03", "B02")
RGB_MAX = 3000.0
# SatMAE fMoW-Sentinel: 13 L1C bands, --dropped_bands 0 9 10, default channel groups.
L1C = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
DROPPED = (0, 9, 10)
MS = tuple(b for i, b in enumerate(L1C) if i not in DROPPED)
GROUPS = ((0, 1, 2, 6), (3, 4, 5, 7), (8, 9))
MS_CONFIG = {
    "img_size": 96, "patch_size": 8, "in_chans": 10, "channel_groups": GROUPS,
    "channel_embed": 256, "embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0,
    "decoder_channel_embed": 128, "decoder_embed_dim": 512, "decoder_depth": 8,
    "decoder_num_heads": 16, "norm_pix_loss": False,
}
MODELS = ("satmae-vit-l16-rgb", "satmae-vit-l8-ms", "satmaepp-vit-l16-rgb")


def _reference(model_id: str, seed: int) -> Any:
    """rshf's model, seeded, every tensor perturbed (so zero biases / unit norms are tested)."""
    torch.manual_seed(seed)
    if model_id == "satmaepp-vit-l16-rgb":
        from rshf.satmaepp import SatMAEPP, SatMAEPPConfig

        model = SatMAEPP(SatMAEPPConfig())
    elif model_id == "satmae-vit-l8-ms":
        from rshf.satmae import SatMAE_Pre_MS

        model = SatMAE_Pre_MS(dict(MS_CONFIG))
    else:
        from rshf.satmae import SatMAE, SatMAEConfig

        model = SatMAE(SatMAEConfig())
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(torch.randn_like(tensor) * 0.02)
    return model.eval()


def _payload(model_id: str, model: Any, tmp_path: Path) -> bytes:
    """The file as MVRL publishes it (see the module docstring)."""
    if model_id == "satmaepp-vit-l16-rgb":
        return checkpoint_bytes(model.state_dict())
    model.save_pretrained(tmp_path / "release")
    return (tmp_path / "release" / "model.safetensors").read_bytes()


def _reference_input(model_id: str, model: Any, pixels: np.ndarray) -> Any:
    """The original preprocessing of the model's training data, minus resize / crop."""
    if model_id == "satmae-vit-l8-ms":
        from rshf.satmae.model import SentinelNormalize
        from torchvision.transforms import ToTensor

        keep = [i for i in range(13) if i not in DROPPED]
        norm = SentinelNormalize(np.asarray(model.mean)[keep], np.asarray(model.std)[keep])
        return torch.stack([ToTensor()(norm(p.transpose(1, 2, 0))) for p in pixels])
    from torchvision.transforms import Normalize

    x = torch.from_numpy(pixels).div(RGB_MAX).clamp(0, 1)
    return Normalize(RGB_MEAN, RGB_STD)(x)


def _reference_outputs(model_id: str, model: Any, x: Any) -> tuple[Any, Any]:
    """(grid, pooled) from rshf's forward_encoder, tokens restored to raster order."""
    with torch.inference_mode():
        latent, _, ids_restore = model.forward_encoder(x, mask_ratio=0.0)
    index = ids_restore.unsqueeze(-1).expand(-1, -1, latent.shape[-1])
    patches = torch.gather(latent[:, 1:], 1, index)  # (n, [G *] L, D) in raster order
    pooled = patches.mean(dim=1)  # the fine-tuning ViTs' global_pool (no class token)
    if model_id == "satmae-vit-l8-ms":
        patches = patches.reshape(len(x), len(GROUPS), -1, patches.shape[-1]).mean(dim=1)
    side = int(patches.shape[1] ** 0.5)
    grid = patches.reshape(len(x), side, side, -1).permute(0, 3, 1, 2)
    return grid, pooled


@pytest.mark.parametrize("model_id", MODELS)
def test_parity_with_rshf(
    model_id: str,
    offline_hub: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    sample_provider: Any,
    tmp_path: Path,
    shallow: Callable[[str], None],  # noqa: F811
) -> None:
    shallow(model_id)
    card = describe_model(model_id)
    size = card.input.image_size
    assert size is not None
    pixels = sample_pixels(sample_provider, card.input.band_names, size, n=2)
    ref = _reference(model_id, seed=sum(map(ord, model_id)))
    x_ref = _reference_input(model_id, ref, pixels)
    ref_grid, ref_pooled = _reference_outputs(model_id, ref, x_ref)
    payload = _payload(model_id, ref, tmp_path)
    del ref
    source = publish(offline_hub, monkeypatch, model_id, payload)
    del payload

    embedder = get_embedder(model_id, device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256
    assert embedder.weights_meta["filename"] == card.weights.filename
    # Preprocessing is the original one exactly (the MS model's 8-bit quantisation included).
    np.testing.assert_array_equal(embedder.normalise(pixels), x_ref.numpy())
    grid = embedder.embed(pixels, OutputSpec.grid())
    side = size // card.input.patch_size
    assert grid.shape == (2, card.embedding_dim, side, side)
    assert_parity(grid, ref_grid)
    # Pooled output is the grid mean (the contract test checks embed(pooled) == that); here it
    # is checked against rshf's mean over all patch tokens, for the MS model over all groups.
    assert_parity(grid.mean(axis=(2, 3)), ref_pooled)


@pytest.mark.parametrize("model_id", MODELS)
def test_cards_are_consistent(model_id: str) -> None:
    card = describe_model(model_id)
    norm = card.input.normalisation
    n = len(card.input.bands)
    assert len(norm.mean) == len(norm.std) == n and norm.note
    assert card.embedding_dim == 1024 and card.outputs == ("pooled", "grid")
    assert card.input.side_inputs == () and card.input.gsd_m == 10.0
    assert card.weights is not None and card.weights.repo_id.startswith("MVRL/")
    assert "rshf" in card.reference
    if model_id == "satmae-vit-l8-ms":
        assert card.input.band_names == MS
        assert (card.input.image_size, card.input.patch_size) == (96, 8)
        assert card.input.collections == ("sentinel-2-l1c",)
        # SentinelNormalize's min / range as the card's mean / std.
        sentinel_mean = np.asarray(
            [1370.19151926, 1184.3824625, 1120.77120066, 1136.26026392, 1263.73947144,
             1645.40315151, 1846.87040806, 1762.59530783, 1972.62420416, 582.72633433,
             14.77112979, 1732.16362238, 1247.91870117])
        sentinel_std = np.asarray(
            [633.15169573, 650.2842772, 712.12507725, 965.23119807, 948.9819932,
             1108.06650639, 1258.36394548, 1233.1492281, 1364.38688993, 472.37967789,
             14.3114637, 1310.36996126, 1087.6020813])
        keep = [i for i in range(13) if i not in DROPPED]
        np.testing.assert_allclose(norm.mean, (sentinel_mean - 2 * sentinel_std)[keep])
        np.testing.assert_allclose(norm.std, 4 * sentinel_std[keep])
    else:
        assert card.input.band_names == RGB
        assert (card.input.image_size, card.input.patch_size) == (224, 16)
        assert norm.mean == RGB_MEAN and norm.std == RGB_STD
        assert norm.scale == 1.0 / RGB_MAX


def test_rgb_max_is_validated() -> None:
    """A non-positive stretch is refused before any model is built."""
    with pytest.raises(ModelArgumentError, match="rgb_max"):
        get_embedder("satmae-vit-l16-rgb", device="cpu", weights="random", rgb_max=0.0)
