"""TorchGeo weight-enum backbones: released checkpoint layout -> eoembed == torchgeo's own model.

Each checkpoint is a seeded random state dict in the layout TorchGeo loads (timm keys for
ResNets/ViTs; the full torchvision Swin-V2 state dict with a multispectral stem for Satlas).
The reference is TorchGeo's constructor called with the real weights enum member, its download
redirected to the published file, run the way TorchGeo users extract features.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eoembed import OutputSpec
from eoembed.embedders import describe_model, get_embedder
from zoo import (
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    sample_pixels,
    shallow,  # noqa: F401
)

torch = pytest.importorskip("torch")
pytest.importorskip("torchgeo")

# id -> (torchgeo constructor, weights enum class, member, timm / torchvision architecture)
CASES: dict[str, tuple[str, str, str, str]] = {
    "ssl4eo-s12-vit-s16-mae": ("vit_small_patch16_224", "ViTSmall16_Weights", "SENTINEL2_ALL_MAE",
                               "vit_small_patch16_224"),
    "ssl4eo-s12-vit-b16-mae": ("vit_base_patch16_224", "ViTBase16_Weights", "SENTINEL2_ALL_MAE",
                               "vit_base_patch16_224"),
    "ssl4eo-s12-vit-l16-mae": ("vit_large_patch16_224", "ViTLarge16_Weights", "SENTINEL2_ALL_MAE",
                               "vit_large_patch16_224"),
    "ssl4eo-s12-vit-s16-fgmae": ("vit_small_patch16_224", "ViTSmall16_Weights",
                                 "SENTINEL2_ALL_FGMAE", "vit_small_patch16_224"),
    "ssl4eo-s12-vit-b16-fgmae": ("vit_base_patch16_224", "ViTBase16_Weights",
                                 "SENTINEL2_ALL_FGMAE", "vit_base_patch16_224"),
    "ssl4eo-s12-resnet18-moco": ("resnet18", "ResNet18_Weights", "SENTINEL2_ALL_MOCO", "resnet18"),
    "ssl4eo-s12-resnet50-decur": ("resnet50", "ResNet50_Weights", "SENTINEL2_ALL_DECUR",
                                  "resnet50"),
    "satlas-swin-v2-b-s2-ms": ("swin_v2_b", "Swin_V2_B_Weights", "SENTINEL2_SI_MS_SATLAS",
                               "swin_v2_b"),
    "satlas-swin-v2-b-s2-rgb": ("swin_v2_b", "Swin_V2_B_Weights", "SENTINEL2_SI_RGB_SATLAS",
                                "swin_v2_b"),
    "satlas-swin-v2-t-s2-ms": ("swin_v2_t", "Swin_V2_T_Weights", "SENTINEL2_SI_MS_SATLAS",
                               "swin_v2_t"),
    "satlas-swin-v2-t-s2-rgb": ("swin_v2_t", "Swin_V2_T_Weights", "SENTINEL2_SI_RGB_SATLAS",
                                "swin_v2_t"),
}
BIG = {"ssl4eo-s12-vit-l16-mae"}
""">= 300M parameters: run these under ``flock /tmp/zoo/big.lock``."""

# torchgeo band names (meta["bands"]) -> eoembed names.
TG_BANDS = {"B1": "B01", "B2": "B02", "B3": "B03", "B4": "B04", "B5": "B05", "B6": "B06",
            "B7": "B07", "B8": "B08", "B8a": "B8A", "B9": "B09", "B10": "B10", "B11": "B11",
            "B12": "B12", "B02": "B02", "B03": "B03", "B04": "B04", "B05": "B05", "B06": "B06",
            "B07": "B07", "B08": "B08"}

# Original constants. SSL4EO-S12 (zhu-xlab linear_BE_moco.py / torchgeo _zhu_xlab_transforms):
# reflectance DN / 10000. Satlas (allenai/satlas Normalization.md): 8-bit TCI / 255, other bands
# / 8160, clipped to 0..1; the TCI is formed from L1C DN as DN * 255 / 2000, clipped to 0..255.
SSL4EO_DIVISOR = 10000.0
SATLAS_TCI_DN = 2000.0
SATLAS_BAND_DIVISOR = 8160.0


def _enum(case: tuple[str, str, str, str]) -> Any:
    import torchgeo.models as tgm

    return getattr(getattr(tgm, case[1]), case[2])


def _released_state(model_id: str, arch: str, in_chans: int) -> dict[str, Any]:
    """Seeded weights in the layout of the released file."""
    torch.manual_seed(sum(map(ord, model_id)))
    if arch.startswith("swin"):
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None)
        stem = model.features[0][0]
        model.features[0][0] = torch.nn.Conv2d(in_chans, stem.out_channels, (4, 4), (4, 4))
        return {k: v.clone() for k, v in model.state_dict().items()}
    import timm

    model = timm.create_model(arch, in_chans=in_chans)
    state = model.state_dict()
    if arch.startswith("vit"):
        # MAE encoders (``*_enc.pth``) carry no classifier; TorchGeo tolerates a missing final
        # norm too: exercise that path on one id, keep it on the others.
        drop = ("head.",) + (("norm.",) if model_id == "ssl4eo-s12-vit-s16-mae" else ())
        state = {k: v for k, v in state.items() if not k.startswith(drop)}
    return {k: v.clone() for k, v in state.items()}


def _torchgeo_reference(
    case: tuple[str, str, str, str], path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """TorchGeo's constructor with the real enum member; its download reads ``path``."""
    import torchgeo.models as tgm
    import torchvision.models._api as tv_api

    weights = _enum(case)

    def fake_download(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        assert url.rsplit("/", 1)[-1] == path.name, url
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        return state

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", fake_download)
    return getattr(tgm, case[0])(weights=weights).eval()


def _reference_input(model_id: str, pixels: np.ndarray, weights: Any) -> Any:
    """Provider DN -> the model input, with TorchGeo's own Normalize for the constants."""
    x = torch.from_numpy(pixels.copy())
    if model_id.startswith("satlas"):
        x[:, :3] = torch.clamp(x[:, :3] * 255.0 / SATLAS_TCI_DN, 0.0, 255.0)  # the 8-bit TCI
        # weights.transforms = CenterCrop(256) (a no-op at 256 px) + Normalize(0, [255.., 8160..])
        out = weights.transforms(x.clone())  # its Normalize is in place
        expected = x.clone()
        expected[:, :3] /= 255.0
        expected[:, 3:] /= SATLAS_BAND_DIVISOR
        torch.testing.assert_close(out, expected)
        return torch.clamp(out, 0.0, 1.0)
    normalize = weights.transforms[-1]  # T.Normalize(mean=[0], std=[10000])
    out = normalize(x)
    torch.testing.assert_close(out, torch.from_numpy(pixels) / SSL4EO_DIVISOR)
    return out


def _reference_grid(model_id: str, model: Any, x: Any) -> Any:
    with torch.inference_mode():
        if model_id.startswith("satlas"):
            return model.permute(model.norm(model.features(x)))  # torchvision's own forward
        feats = model.forward_features(x)
        if "vit" in model_id:
            tokens = feats[:, model.num_prefix_tokens :]
            side = x.shape[-1] // 16
            return tokens.reshape(len(x), side, side, -1).permute(0, 3, 1, 2)
        return feats


def _run_parity(
    model_id: str,
    offline_hub: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    sample_provider: Any,
) -> None:
    case = CASES[model_id]
    card = describe_model(model_id)
    weights = _enum(case)
    assert card.input.band_names == tuple(TG_BANDS[b] for b in weights.meta["bands"])
    assert len(card.input.bands) == weights.meta["in_chans"]
    assert weights.url.rsplit("/", 1)[-1] == card.weights.filename
    assert card.weights.revision in weights.url

    payload = checkpoint_bytes(_released_state(model_id, case[3], len(card.input.bands)))
    source = publish(offline_hub, monkeypatch, model_id, payload)
    embedder = get_embedder(model_id, device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256

    path = next(offline_hub.rglob(source.filename))
    reference = _torchgeo_reference(case, path, monkeypatch)
    size = card.input.image_size
    assert size is not None
    pixels = sample_pixels(sample_provider, card.input.band_names, size, n=2)
    ref_grid = _reference_grid(model_id, reference, _reference_input(model_id, pixels, weights))

    grid = embedder.embed(pixels, OutputSpec.grid())
    assert grid.shape == (2, card.embedding_dim, size // card.input.patch_size,
                          size // card.input.patch_size)
    assert_parity(grid, ref_grid)
    assert_parity(embedder.embed(pixels, OutputSpec.pooled("mean")), ref_grid.mean(dim=(2, 3)))


@pytest.mark.parametrize("model_id", sorted(set(CASES) - BIG))
def test_parity_with_torchgeo(
    model_id: str,
    offline_hub: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    sample_provider: Any,
    shallow: Callable[[str], None],  # noqa: F811
) -> None:
    shallow(model_id)
    _run_parity(model_id, offline_hub, monkeypatch, sample_provider)


@pytest.mark.parametrize("model_id", sorted(BIG))
def test_parity_with_torchgeo_big(
    model_id: str,
    offline_hub: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    sample_provider: Any,
    shallow: Callable[[str], None],  # noqa: F811
) -> None:
    """Separate so it can be deselected (``-k "not big"``) or run under the big-model lock."""
    shallow(model_id)
    _run_parity(model_id, offline_hub, monkeypatch, sample_provider)


def test_satlas_clips_like_the_8bit_inputs() -> None:
    """Bright pixels saturate (TCI is 8-bit, other bands clip at 8160) instead of growing."""
    embedder = get_embedder("satlas-swin-v2-t-s2-ms", device="cpu", weights="random")
    pixels = np.full((1, 9, 4, 4), 20000.0, np.float32)
    pixels[0, 0] = SATLAS_TCI_DN / 2
    x = embedder.normalise(pixels)
    assert x.max() == 1.0 and x.min() >= 0.0
    np.testing.assert_allclose(x[0, 0], 0.5)


@pytest.mark.parametrize("model_id", sorted(CASES))
def test_cards_are_consistent(model_id: str) -> None:
    card = describe_model(model_id)
    n = len(card.input.bands)
    norm = card.input.normalisation
    assert len(norm.mean) in (0, n) and len(norm.std) in (0, n)
    assert norm.note and "torchgeo" in norm.note.lower()
    assert card.outputs == ("pooled", "grid") and not card.input.side_inputs
    assert card.input.image_size is not None
    assert card.input.image_size % card.input.patch_size == 0
    assert card.weights is not None and len(card.weights.revision) == 40
    assert "torchgeo" in card.reference
    # Expected dims per architecture.
    dims = {"vit-s16": 384, "vit-b16": 768, "vit-l16": 1024, "resnet18": 512, "resnet50": 2048,
            "swin-v2-b": 1024, "swin-v2-t": 768}
    assert card.embedding_dim == next(d for k, d in dims.items() if k in model_id)
