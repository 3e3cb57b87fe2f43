"""TorchGeo foundation models (DOFA, Scale-MAE, CROMA, Copernicus-FM, Panopticon): parity.

Each test writes seeded random weights in the released checkpoint layout into an offline hub
cache, loads them through eoembed's real loader, and compares eoembed's grid and pooled
embeddings of real Sentinel-2 pixels with TorchGeo's model, loaded by TorchGeo's own builder
(a stand-in weights enum returning the same state dict) and called the TorchGeo way on pixels
normalised here from the original constants.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
models = pytest.importorskip("torchgeo.models")

from eoembed import OutputSpec
from eoembed.embedders import get_embedder
from eoembed.embedders.context import SIDE_INPUTS
from eoembed.embedders.registry import embedder_class
from zoo import (
    CONTEXT,
    assert_parity,
    checkpoint_bytes,
    offline_hub,  # noqa: F401
    publish,
    rel_error,
    sample_pixels,
    shallow,  # noqa: F401
)

IDS = [
    "dofa-base", "dofa-large", "scalemae-large", "croma-base", "croma-large",
    "copernicusfm-base", "panopticon-vitb14",
]
BIG = {"dofa-large", "scalemae-large", "croma-large"}

# --- original constants, written out independently of the adapter module ----------------
# SSL4EO-S12 L1C S2C_MEAN / S2C_STD (B01..B12 with B8A, B10).
S2C_MEAN = [1605.57504906, 1390.78157673, 1314.8729939, 1363.52445545, 1549.44374991,
            2091.74883118, 2371.7172463, 2299.90463006, 2560.29504086, 830.06605044,
            22.10351321, 2177.07172323, 1524.06546312]
S2C_STD = [786.78685367, 850.34818441, 875.06484736, 1138.84957046, 1122.17775652,
           1161.59187054, 1274.39184232, 1248.42891965, 1345.52684884, 577.31607053,
           51.15431158, 1336.09932639, 1136.53823676]
# zhu-xlab/DOFA normalize_dataset.py (8-bit SatlasPretrain S2: R, G, B, B05-B08, B11, B12).
DOFA_MEAN = [114.1099739, 114.81779093, 126.63977424, 84.33539309, 97.84789168,
             103.94461911, 101.435633, 72.32804172, 56.66528851]
DOFA_STD = [77.84352553, 69.96844919, 67.42465279, 64.57022983, 61.72545487, 61.34187099,
            60.29744676, 47.88519516, 42.55886798]
DOFA_WAVELENGTHS_UM = [0.665, 0.560, 0.490, 0.705, 0.740, 0.783, 0.842, 1.610, 2.190]
S2_WAVELENGTHS_NM = [443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190]
S2_BANDWIDTHS_NM = [20, 65, 35, 30, 15, 15, 20, 115, 20, 20, 30, 90, 180]


def _tci(dn: np.ndarray) -> np.ndarray:
    """ESA true-colour 8-bit encoding: DN 0..2000 -> 0..255."""
    return np.clip(dn * 255.0 / 2000.0, 0, 255)


def _col(v: list[float]) -> np.ndarray:
    return np.asarray(v, np.float64)[None, :, None, None]


def norm_dofa(dn: np.ndarray) -> np.ndarray:
    u8 = np.concatenate([_tci(dn[:, :3]), np.clip(dn[:, 3:] / 32.0, 0, 255)], axis=1)
    return (u8 - _col(DOFA_MEAN)) / _col(DOFA_STD)


def norm_scalemae(dn: np.ndarray) -> np.ndarray:
    x = _tci(dn) / 255.0  # T.Normalize(mean=[0], std=[255]) on 8-bit RGB
    return (x - _col([0.485, 0.456, 0.406])) / _col([0.229, 0.224, 0.225])


def norm_croma(dn: np.ndarray) -> np.ndarray:
    mean = _col([m for i, m in enumerate(S2C_MEAN) if i != 10])
    std = _col([s for i, s in enumerate(S2C_STD) if i != 10])
    return np.clip((dn - (mean - 2 * std)) / (4 * std), 0, 1)


def norm_ssl4eo(dn: np.ndarray) -> np.ndarray:
    return (dn - _col(S2C_MEAN)) / _col(S2C_STD)


class FakeWeights:
    """Stands in for a torchgeo ``WeightsEnum`` member so its builders load our state."""

    def __init__(self, state: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.state, self.meta = state, meta or {}

    def get_state_dict(self, progress: bool = True) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.state.items()}


def _hooked_tokens(model: Any, run: Callable[[], Any]) -> Any:
    store: list[Any] = []
    handle = model.blocks[-1].register_forward_hook(lambda _m, _i, o: store.append(o))
    run()
    handle.remove()
    return store[0]


def _grid(tokens: Any) -> Any:
    n, length, d = tokens.shape
    side = round(length**0.5)
    return tokens.reshape(n, side, side, d).permute(0, 3, 1, 2)


def _meta_tensor(ctx: Any, patch: int = 16) -> Any:
    days = (ctx.date - dt.date(1970, 1, 1)).days
    return torch.tensor([[ctx.lon, ctx.lat, days, (patch * ctx.gsd_m / 1000) ** 2]] * 2)


# --- per model: (release state, reference builder, normalise, reference grid) ------------

Reference = tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray], Callable[[Any], Any]]


def _dofa(builder: str) -> Reference:
    net = getattr(models, builder)()
    state = {k: v for k, v in net.state_dict().items() if not k.startswith(("fc_norm", "head"))}
    ref = getattr(models, builder)(FakeWeights(state)).eval()

    def run(x: Any) -> Any:
        tokens = _hooked_tokens(ref, lambda: ref.forward_features(x, DOFA_WAVELENGTHS_UM))
        return _grid(tokens[:, 1:])

    return state, norm_dofa, run


def _scalemae() -> Reference:
    state = models.scalemae_large_patch16(img_size=224).state_dict()  # with the 1000-way head
    ref = models.scalemae_large_patch16(
        FakeWeights(state, {"img_size": 224}), img_size=224, res=CONTEXT.gsd_m
    ).eval()
    return state, norm_scalemae, lambda x: _grid(ref.forward_features(x)[:, 1:])


def _croma(builder: str) -> Reference:
    net = getattr(models, builder)()  # both modalities, as released
    state = {
        name: getattr(net, name).state_dict()
        for name in ("s1_encoder", "s1_GAP_FFN", "s2_encoder", "s2_GAP_FFN", "joint_encoder")
    }
    ref = getattr(models, builder)(FakeWeights(state), modalities=["optical"]).eval()
    return state, norm_croma, lambda x: _grid(ref(x_optical=x)["optical_encodings"])


def _copernicusfm() -> Reference:
    net = models.copernicusfm_base()
    state = {k: v for k, v in net.state_dict().items() if not k.startswith(("fc_norm", "head"))}
    ref = models.copernicusfm_base(FakeWeights(state)).eval()

    def run(x: Any) -> Any:
        tokens = _hooked_tokens(ref, lambda: ref.forward_features(
            x, _meta_tensor(CONTEXT), wavelengths=S2_WAVELENGTHS_NM,
            bandwidths=S2_BANDWIDTHS_NM, input_mode="spectral", kernel_size=16,
        ))
        return _grid(tokens[:, 1:])

    return state, norm_ssl4eo, run


def _panopticon() -> Reference:
    state = models.panopticon_vitb14().model.state_dict()
    state["pos_embed"] = torch.randn(1, 1 + 37 * 37, 768) * 0.02  # released at 518 px
    state["mask_token"] = torch.zeros(1, 768)
    ref = models.panopticon_vitb14(FakeWeights(state)).eval()

    def run(x: Any) -> Any:
        chn_ids = torch.tensor([S2_WAVELENGTHS_NM] * len(x), dtype=torch.float32)
        return _grid(ref.model.forward_features({"imgs": x, "chn_ids": chn_ids})[:, 1:])

    return state, norm_ssl4eo, run


REFERENCES: dict[str, Callable[[], Reference]] = {
    "dofa-base": lambda: _dofa("dofa_base_patch16_224"),
    "dofa-large": lambda: _dofa("dofa_large_patch16_224"),
    "scalemae-large": _scalemae,
    "croma-base": lambda: _croma("croma_base"),
    "croma-large": lambda: _croma("croma_large"),
    "copernicusfm-base": _copernicusfm,
    "panopticon-vitb14": _panopticon,
}


def _changed(embedder: Any, pixels: np.ndarray, base: np.ndarray, **ctx_changes: Any) -> bool:
    ctx = dataclasses.replace(CONTEXT, **ctx_changes)
    other = embedder.embed(pixels, OutputSpec.pooled("mean"), context=[ctx, ctx])
    return rel_error(other, base) > 1e-3


@pytest.mark.parametrize("model_id", IDS)
def test_parity_with_torchgeo(
    model_id: str, offline_hub: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    sample_provider: Any, shallow: Callable[[str], None],  # noqa: F811
) -> None:
    shallow(model_id)
    torch.manual_seed(0)
    state, normalise, reference = REFERENCES[model_id]()
    source = publish(offline_hub, monkeypatch, model_id, checkpoint_bytes(state))
    embedder = get_embedder(model_id, device="cpu")
    assert embedder.weights_meta["sha256"] == source.sha256

    card = embedder.card
    size = card.input.image_size
    assert size is not None
    pixels = sample_pixels(sample_provider, card.input.band_names, size, n=2)
    context = [CONTEXT, CONTEXT]
    grid = embedder.embed(pixels, OutputSpec.grid(), context=context)
    pooled = embedder.embed(pixels, OutputSpec.pooled("mean"), context=context)
    with torch.inference_mode():
        ref = reference(torch.from_numpy(normalise(pixels.astype(np.float64)).astype(np.float32)))
    side = size // card.input.patch_size
    assert grid.shape == (2, card.embedding_dim, side, side)
    assert_parity(grid, ref)
    assert_parity(pooled, ref.mean(dim=(2, 3)))

    # Side inputs are wired: changing one changes the embedding.
    sides = card.input.side_inputs
    if "gsd" in sides:
        assert _changed(embedder, pixels, pooled, gsd_m=30.0)
    if "latlon" in sides:
        assert _changed(embedder, pixels, pooled, lon=10.0, lat=50.0)
    if "time" in sides:
        assert _changed(embedder, pixels, pooled, date=dt.date(2020, 6, 1))
    if "wavelengths" in sides:
        shifted = tuple(
            dataclasses.replace(b, wavelength_um=b.wavelength_um * 1.2) for b in card.input.bands
        )
        embedder.card = dataclasses.replace(  # type: ignore[misc]
            card, input=dataclasses.replace(card.input, bands=shifted)
        )
        other = embedder.embed(pixels, OutputSpec.pooled("mean"), context=context)
        assert rel_error(other, pooled) > 1e-3


@pytest.mark.parametrize("model_id", IDS)
def test_card_is_consistent(model_id: str) -> None:
    card = embedder_class(model_id).card
    n = len(card.input.bands)
    assert n == len(set(card.input.band_names))
    assert len(card.input.normalisation.mean) in (0, n)
    assert len(card.input.normalisation.std) in (0, n)
    assert all(s > 0 for s in card.input.normalisation.std)
    assert card.input.normalisation.note
    assert set(card.input.side_inputs) <= set(SIDE_INPUTS)
    assert card.input.image_size and card.input.image_size % card.input.patch_size == 0
    assert card.embedding_dim in (768, 1024)
    assert card.reference.startswith("torchgeo.models.")
    weights = card.weights
    assert weights is not None and len(weights.revision) == 40
    # TorchGeo pins a sha256 prefix in every file name but Panopticon's.
    assert weights.pinned == (model_id != "panopticon-vitb14")


def test_dofa_embeds_another_sensors_bands_at_their_wavelengths(
    offline_hub: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    sample_provider: Any, shallow: Callable[[str], None],  # noqa: F811
) -> None:
    from eoembed.bands import SENSORS

    shallow("dofa-base")
    torch.manual_seed(0)
    state, _, _ = REFERENCES["dofa-base"]()
    publish(offline_hub, monkeypatch, "dofa-base", checkpoint_bytes(state))
    embedder = get_embedder("dofa-base", device="cpu")
    landsat = SENSORS["landsat-8"][1:7]  # B2..B7: blue, green, red, nir08, swir16, swir22
    pixels = sample_pixels(sample_provider, ("B02", "B03", "B04", "B8A", "B11", "B12"), 224)
    seen: list[Any] = []
    forward = embedder.model.forward_features
    monkeypatch.setattr(embedder.model, "forward_features",
                        lambda x, w: seen.append((x.shape[1], list(w))) or forward(x, w))
    out = embedder.embed(pixels, OutputSpec.pooled("mean"), bands=landsat)
    assert out.shape == (2, 768)
    assert seen[0] == (6, [b.wavelength_um for b in landsat])
