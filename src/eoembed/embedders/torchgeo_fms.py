"""TorchGeo 0.8 foundation models: DOFA, Scale-MAE, CROMA, Copernicus-FM, Panopticon.

Each adapter builds the architecture with the ``torchgeo.models`` builder (random init) and
loads the checkpoint that TorchGeo's ``*_Weights`` enum points at, pinned to the commit in
that URL and, where the file name carries one, the leading sha256 digits. Grids are the patch
tokens of the last transformer block (class tokens dropped). ``OutputSpec.pooled()`` gives
what each TorchGeo model's own forward pools: the mean of the patch tokens for DOFA and
Copernicus-FM (``global_pool=True``) and CROMA (``optical_GAP`` averages the encodings; its
GAP-FFN is not applied here), the class token for Scale-MAE and Panopticon (timm
``VisionTransformer`` with ``global_pool="token"``).
Side inputs (band wavelengths, GSD, location, date) are taken from the card's bands and each
sample's :class:`~eoembed.embedders.context.SampleContext`, never from the environment.

TorchGeo leaves normalisation to the user for all five (``transforms`` is ``Identity`` or
sensor-agnostic), so each card's :class:`Normalisation` note names the original source of
its constants.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.bands import SENTINEL2_BANDS, BandInfo, sentinel2
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    PoolingRule,
    TokenLayout,
    WeightsSource,
)
from eoembed.embedders.tokens import split_batch
from eoembed.embedders.torch_embedder import TorchEmbedder, require
from eoembed.specs.output import REDUCTIONS

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = [
    "CROMABase",
    "CROMALarge",
    "CopernicusFMBase",
    "DOFABase",
    "DOFALarge",
    "PanopticonViTB14",
    "ScaleMAELarge",
]

_L1C = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)

# SSL4EO-S12 Sentinel-2 L1C band statistics (50k-patch subset), digital numbers, in _L1C order:
# S2C_MEAN / S2C_STD of zhu-xlab/SSL4EO-S12 src/benchmark/.../ssl4eo_dataset.py.
_SSL4EO_L1C_MEAN = dict(zip(_L1C, (
    1605.57504906, 1390.78157673, 1314.8729939, 1363.52445545, 1549.44374991, 2091.74883118,
    2371.7172463, 2299.90463006, 2560.29504086, 830.06605044, 22.10351321, 2177.07172323,
    1524.06546312,
), strict=True))
_SSL4EO_L1C_STD = dict(zip(_L1C, (
    786.78685367, 850.34818441, 875.06484736, 1138.84957046, 1122.17775652, 1161.59187054,
    1274.39184232, 1248.42891965, 1345.52684884, 577.31607053, 51.15431158, 1336.09932639,
    1136.53823676,
), strict=True))

S2_BANDWIDTH_NM: dict[str, float] = {
    "B01": 20.0, "B02": 65.0, "B03": 35.0, "B04": 30.0, "B05": 15.0, "B06": 15.0,
    "B07": 20.0, "B08": 115.0, "B8A": 20.0, "B09": 20.0, "B10": 30.0, "B11": 90.0,
    "B12": 180.0,
}
"""ESA's nominal Sentinel-2 MSI spectral widths (nm); Copernicus-FM's spectral hypernetwork
takes them (its docstring example: B, G, R, NIR = 65, 35, 30, 115)."""



def bandwidth_nm(band: BandInfo) -> float:
    """A band's spectral width in nm.

    ESA's nominal one for Sentinel-2's own bands, else the band's declared width (its
    :attr:`BandInfo.range_um`).
    """
    if SENTINEL2_BANDS.get(band.name) == band:
        return S2_BANDWIDTH_NM[band.name]
    low, high = band.range_um
    return round(1000.0 * (high - low), 3)


TCI_DN_MAX = 2000.0
"""ESA's 8-bit true-colour image (TCI) maps L1C digital numbers 0..2000 onto 0..255 and
saturates above; used wherever a model was trained on 8-bit RGB."""


def _hub(url: str, licence: str) -> WeightsSource:
    """A WeightsSource from a TorchGeo weights URL ``https://hf.co/<repo>/resolve/<rev>/<file>``.

    The sha256 is the ``-<hex8>`` suffix TorchGeo puts in file names; empty when there is none.
    """
    path = url.split("://", 1)[1].split("/", 1)[1]
    repo, rest = path.split("/resolve/")
    revision, filename = rest.split("/", 1)
    stem = filename.rsplit(".", 1)[0]
    suffix = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    is_hex = len(suffix) == 8 and all(c in "0123456789abcdef" for c in suffix)
    return WeightsSource(
        repo_id=repo, filename=filename, revision=revision, sha256=suffix if is_hex else "",
        licence=licence, url=f"https://huggingface.co/{repo}",
    )


def _last_block_tokens(blocks: Any, run: Callable[[], Any]) -> torch.Tensor:
    """Tokens out of ``blocks[-1]`` while ``run()`` calls the package's own forward."""
    store: list[torch.Tensor] = []
    handle = blocks[-1].register_forward_hook(lambda _m, _i, out: store.append(out))
    try:
        run()
    finally:
        handle.remove()
    return store[0]


_CLS_TOKENS = TokenLayout(prefix_tokens=1, cls_index=0)
"""A ViT with one class token before the patch tokens."""
_CLS_OR_MEAN = ("cls", *REDUCTIONS)


class _TorchGeoEmbedder(TorchEmbedder):
    """Shared pieces: provider-unit clipping before the linear normalisation, wavelengths."""

    dn_range: ClassVar[tuple[tuple[float, ...], tuple[float, ...]] | None] = None
    """Per-band (low, high) clip in provider units applied before normalising, where the
    original preprocessing saturates (8-bit encodings, mean +- 2 std windows)."""

    def normalise_as(self, pixels: np.ndarray, bands: Sequence[BandInfo] | None) -> np.ndarray:
        """Clip to ``dn_range`` (when set), then the card's linear normalisation.

        Other bands than the card's (``bands``) take the clip and constants of their nearest
        card band.
        """
        if self.dn_range is not None:
            index = list(self.stand_ins(bands))
            low, high = (np.asarray(v, np.float32)[index][:, None, None] for v in self.dn_range)
            pixels = np.clip(pixels.astype(np.float32), low, high)
        return super().normalise_as(pixels, bands)

    def input_bands(self, context: Sequence[SampleContext] = ()) -> tuple[BandInfo, ...]:
        """The bands of this batch's channels: the contexts' (another sensor's), else the card's."""
        return context[0].bands if context and context[0].bands else self.card.input.bands

    def wavelengths_um(self, context: Sequence[SampleContext] = ()) -> list[float]:
        """Central wavelength of each channel's band, micrometres."""
        return [b.wavelength_um for b in self.input_bands(context)]


# -- DOFA ----------------------------------------------------------------------------------

_DOFA_BANDS = ("B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12")
# zhu-xlab/DOFA normalize_dataset.py S2_MEAN / S2_STD, on SatlasPretrain's 8-bit Sentinel-2
# (TCI R, G, B, then B05, B06, B07, B08, B11, B12 as clip(DN / 32, 0, 255)).
_DOFA_U8_MEAN = (114.1099739, 114.81779093, 126.63977424, 84.33539309, 97.84789168,
                 103.94461911, 101.435633, 72.32804172, 56.66528851)
_DOFA_U8_STD = (77.84352553, 69.96844919, 67.42465279, 64.57022983, 61.72545487,
                61.34187099, 60.29744676, 47.88519516, 42.55886798)
_DOFA_U8_PER_DN = (255.0 / TCI_DN_MAX,) * 3 + (1.0 / 32.0,) * 6
"""8-bit value per digital number: ESA TCI for R, G, B; Satlas' DN / 32 for the rest."""

_DOFA_CITATION = (
    "Xiong, Z., Wang, Y., Zhang, F., Stewart, A. J., Hanna, J., Borth, D., Papoutsis, I., "
    "Le Saux, B., Camps-Valls, G., Zhu, X. X. Neural plasticity-inspired multimodal "
    "foundation model for Earth observation (DOFA). arXiv:2403.15356 (2024)."
)


def _dofa_card(model_id: str, size: str, dim: int, url: str) -> ModelCard:
    return ModelCard(
        id=model_id,
        family="dofa",
        summary=(
            f"DOFA ViT-{size}/16 (MAE, wavelength-conditioned dynamic patch embedding) on the "
            "9 Sentinel-2 bands DOFA was pretrained with (SatlasPretrain); 14 x 14 patch-token "
            "grid of the last block (the checkpoint has no final norm)."
        ),
        input=InputContract(
            collections=("sentinel-2-l1c",),
            processing_level="L1C",
            bands=sentinel2(*_DOFA_BANDS),
            gsd_m=10.0,
            image_size=224,
            patch_size=16,
            normalisation=Normalisation(
                scale=1.0,
                mean=tuple(m / k for m, k in zip(_DOFA_U8_MEAN, _DOFA_U8_PER_DN, strict=True)),
                std=tuple(s / k for s, k in zip(_DOFA_U8_STD, _DOFA_U8_PER_DN, strict=True)),
                note=(
                    "zhu-xlab/DOFA normalize_dataset.py S2_MEAN/S2_STD on SatlasPretrain 8-bit "
                    "Sentinel-2 (allenai/satlas Normalization.md: TCI for R,G,B, clip(DN/32) "
                    "for B05-B12); here folded into DN units: R,G,B = DN*255/2000 (ESA TCI, "
                    "clipped at 2000), others DN/32 (clipped at 8160)"
                ),
            ),
            side_inputs=("wavelengths",),
            band_rule="any",
        ),
        embedding_dim=dim,
        outputs=("pooled", "grid"),
        weights=_hub(url, "CC-BY-4.0"),
        licence="CC-BY-4.0 (weights), MIT (code)",
        citation=_DOFA_CITATION,
        reference=f"torchgeo.models.dofa_{size.lower()}_patch16_224 (torchgeo 0.8.1)",
        pooling=PoolingRule(
            supported=_CLS_OR_MEAN,
            source="torchgeo.models.DOFA.forward_features, global_pool=True: mean of x[:, 1:]",
        ),
        tokens=_CLS_TOKENS,
    )


class _DOFA(_TorchGeoEmbedder):
    """DOFA: the patch embedding is generated from each band's central wavelength."""

    builder: ClassVar[str]
    ignored_keys: ClassVar[tuple[str, ...]] = ("fc_norm.", "head.", "norm.")
    dn_range = ((0.0,) * 9, tuple(255.0 / k for k in _DOFA_U8_PER_DN))

    def create_model(self) -> torch.nn.Module:
        """TorchGeo's DOFA without head and pooling norm (neither is in the checkpoint)."""
        models = require("torchgeo.models", "torchgeo")
        th = require("torch", "torch")
        model: torch.nn.Module = getattr(models, self.builder)(num_classes=0)
        model.fc_norm = th.nn.Identity()
        return model

    def forward_tokens(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Last block's tokens from ``DOFA.forward_features(x, wavelengths)``."""
        return _last_block_tokens(
            self.model.blocks, lambda: self.model.forward_features(x, self.wavelengths_um(context))
        )


class DOFABase(_DOFA):
    """DOFA ViT-B/16."""

    builder = "dofa_base_patch16_224"
    card = _dofa_card(
        "dofa-base", "Base", 768,
        "https://hf.co/torchgeo/dofa/resolve/b8db318b64a90b9e085ec04ba8851233c5893666/"
        "dofa_base_patch16_224-a0275954.pth",
    )


class DOFALarge(_DOFA):
    """DOFA ViT-L/16."""

    builder = "dofa_large_patch16_224"
    card = _dofa_card(
        "dofa-large", "Large", 1024,
        "https://hf.co/torchgeo/dofa/resolve/b8db318b64a90b9e085ec04ba8851233c5893666/"
        "dofa_large_patch16_224-0ff904d3.pth",
    )


# -- Scale-MAE -----------------------------------------------------------------------------

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class ScaleMAELarge(_TorchGeoEmbedder):
    """Scale-MAE ViT-L/16 on fMoW RGB; positional encodings scaled by each sample's GSD."""

    ignored_keys: ClassVar[tuple[str, ...]] = ("head.", "fc_norm.", "decoder", "mask_token")
    dn_range = ((0.0,) * 3, (TCI_DN_MAX,) * 3)
    card = ModelCard(
        id="scalemae-large",
        family="scale-mae",
        summary=(
            "Scale-MAE ViT-L/16 (fMoW RGB) with GSD-aware sin-cos positional encodings (the "
            "sample's GSD in metres); Sentinel-2 R, G, B as 8-bit true colour; 14 x 14 "
            "patch-token grid after the final norm."
        ),
        input=InputContract(
            collections=("sentinel-2-l1c",),
            processing_level="L1C",
            bands=sentinel2("B04", "B03", "B02"),
            gsd_m=10.0,
            image_size=224,
            patch_size=16,
            normalisation=Normalisation(
                scale=1.0 / TCI_DN_MAX,
                mean=_IMAGENET_MEAN,
                std=_IMAGENET_STD,
                note=(
                    "torchgeo.models.scale_mae _scale_mae_transforms: Normalize(0, 255) then "
                    "ImageNet mean/std, on 8-bit RGB; Sentinel-2 DN -> 8 bit as ESA's TCI "
                    "(DN*255/2000, clipped at 2000)"
                ),
            ),
            side_inputs=("gsd",),
        ),
        embedding_dim=1024,
        outputs=("pooled", "grid"),
        weights=_hub(
            "https://hf.co/isaaccorley/vit_large_patch16_224_fmow_rgb_scalemae/resolve/"
            "9dc7f569424baeb780698352cf6e87638c882123/"
            "vit_large_patch16_224_fmow_rgb_scalemae-98ed9821.pth",
            "CC-BY-NC-4.0",
        ),
        licence="CC-BY-NC-4.0 (Scale-MAE weights, as the fMoW-trained release)",
        citation=(
            "Reed, C. J., Gupta, R., Li, S., Brockman, S., Funk, C., Clipp, B., Keutzer, K., "
            "Candido, S., Uyttendaele, M., Darrell, T. Scale-MAE: A scale-aware masked "
            "autoencoder for multiscale geospatial representation learning. ICCV 2023. "
            "https://arxiv.org/abs/2212.14532"
        ),
        reference="torchgeo.models.scalemae_large_patch16 (torchgeo 0.8.1)",
        pooling=PoolingRule(
            default="cls", supported=_CLS_OR_MEAN,
            source="torchgeo.models.ScaleMAE is a timm VisionTransformer, global_pool='token'",
        ),
        tokens=_CLS_TOKENS,
    )

    def create_model(self) -> torch.nn.Module:
        """TorchGeo's ScaleMAE ViT-L/16 at 224 px, no classifier."""
        models = require("torchgeo.models", "torchgeo")
        model: torch.nn.Module = models.scalemae_large_patch16(num_classes=0, img_size=224)
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """``pos_embed`` is recomputed from the GSD at every call; keep the model's if absent."""
        state = dict(state)
        state.setdefault("pos_embed", self.model.pos_embed.detach().clone())
        return state

    def forward_tokens(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Tokens after the final norm, one call per distinct GSD (``ScaleMAE.res``, metres)."""
        gsds = [c.gsd_m for c in context] if context else [self.card.input.gsd_m] * len(x)

        def run(idx: list[int]) -> torch.Tensor:
            self.model.res = float(gsds[idx[0]])
            tokens: torch.Tensor = self.model.forward_features(x[idx])
            return tokens

        return split_batch(gsds, run)


# -- CROMA ---------------------------------------------------------------------------------

_CROMA_BANDS = tuple(b for b in _L1C if b != "B10")
_CROMA_LOW = tuple(_SSL4EO_L1C_MEAN[b] - 2 * _SSL4EO_L1C_STD[b] for b in _CROMA_BANDS)
_CROMA_HIGH = tuple(_SSL4EO_L1C_MEAN[b] + 2 * _SSL4EO_L1C_STD[b] for b in _CROMA_BANDS)


def _croma_card(model_id: str, size: str, dim: int, url: str) -> ModelCard:
    return ModelCard(
        id=model_id,
        family="croma",
        summary=(
            f"CROMA ViT-{size}/8 optical encoder (SSL4EO-S12 pretraining, 12 Sentinel-2 "
            "bands without B10, 120 x 120 px, 2D-ALiBi); 15 x 15 patch-token grid. Only the "
            "optical branch is used: eoembed serves optical pixels here, so the SAR and joint "
            "radar-optical encoders are not loaded."
        ),
        input=InputContract(
            collections=("sentinel-2-l1c",),
            processing_level="L1C",
            bands=sentinel2(*_CROMA_BANDS),
            gsd_m=10.0,
            image_size=120,
            patch_size=8,
            normalisation=Normalisation(
                scale=1.0,
                mean=_CROMA_LOW,
                std=tuple(h - lo for h, lo in zip(_CROMA_HIGH, _CROMA_LOW, strict=True)),
                note=(
                    "antofuller/CROMA README normalize(): (x - (mean - 2 std)) / (4 std), "
                    "clipped to [0, 1] (SatMAE/SeCo style), with dataset statistics: "
                    "SSL4EO-S12 L1C S2C_MEAN/S2C_STD (zhu-xlab/SSL4EO-S12), B10 dropped"
                ),
            ),
        ),
        embedding_dim=dim,
        outputs=("pooled", "grid"),
        weights=_hub(url, "CC-BY-4.0"),
        licence="CC-BY-4.0 (weights), MIT (code)",
        citation=(
            "Fuller, A., Millard, K., Green, J. R. CROMA: Remote sensing representations with "
            "contrastive radar-optical masked autoencoders. NeurIPS 2023. "
            "https://arxiv.org/abs/2311.00566"
        ),
        reference=f"torchgeo.models.croma_{size.lower()} (torchgeo 0.8.1), modalities=['optical']",
        pooling=PoolingRule(
            source="torchgeo.models.CROMA optical_GAP: mean of optical_encodings (its GAP-FFN "
            "projection is not applied here)",
        ),
        tokens=TokenLayout(),
    )


class _CROMA(_TorchGeoEmbedder):
    """CROMA optical encoder; the checkpoint is a dict of per-module state dicts."""

    builder: ClassVar[str]
    dn_range = (_CROMA_LOW, _CROMA_HIGH)

    def create_model(self) -> torch.nn.Module:
        """TorchGeo's CROMA with the optical modality only."""
        models = require("torchgeo.models", "torchgeo")
        model: torch.nn.Module = getattr(models, self.builder)(modalities=["optical"])
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """``{"s2_encoder": {...}, "s2_GAP_FFN": {...}, ...}`` -> flat keys; SAR parts dropped.

        ``attn_bias`` is the fixed 2D-ALiBi buffer CROMA computes itself (not released).
        """
        flat = {
            f"{module}.{key}": value
            for module in ("s2_encoder", "s2_GAP_FFN")
            for key, value in state[module].items()
        }
        flat["attn_bias"] = self.model.attn_bias
        return flat

    def forward_tokens(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``optical_encodings`` of ``CROMA.forward(x_optical=x)``: 15 x 15 patches, no prefix."""
        tokens: torch.Tensor = self.model(x_optical=x)["optical_encodings"]
        return tokens


class CROMABase(_CROMA):
    """CROMA ViT-B/8 optical encoder."""

    builder = "croma_base"
    card = _croma_card(
        "croma-base", "Base", 768,
        "https://hf.co/torchgeo/croma/resolve/387883f08af79d777167519c57cd826eda89a16f/"
        "CROMA_base-0238d814.pt",
    )


class CROMALarge(_CROMA):
    """CROMA ViT-L/8 optical encoder."""

    builder = "croma_large"
    card = _croma_card(
        "croma-large", "Large", 1024,
        "https://huggingface.co/torchgeo/croma/resolve/92cb1a0f4e34c6c01558baf070197c01255382f6/"
        "CROMA_large-921e69ad.pt",
    )


# -- Copernicus-FM -------------------------------------------------------------------------

_EPOCH = dt.date(1970, 1, 1)


class CopernicusFMBase(_TorchGeoEmbedder):
    """Copernicus-FM ViT-B/16, spectral mode, with location, date and patch-area encodings."""

    ignored_keys: ClassVar[tuple[str, ...]] = ("fc_norm.", "head.", "norm.")
    card = ModelCard(
        id="copernicusfm-base",
        family="copernicus-fm",
        summary=(
            "Copernicus-FM ViT-B/16 in spectral mode (hypernetwork patch embedding from each "
            "band's wavelength and bandwidth) on the 13 Sentinel-2 L1C bands, with lon/lat, "
            "date and patch-area metadata encodings; 14 x 14 patch-token grid of the last "
            "block (the checkpoint has no final norm)."
        ),
        input=InputContract(
            collections=("sentinel-2-l1c",),
            processing_level="L1C",
            bands=sentinel2(*_L1C),
            gsd_m=10.0,
            image_size=224,
            patch_size=16,
            normalisation=Normalisation(
                scale=1.0,
                mean=tuple(_SSL4EO_L1C_MEAN[b] for b in _L1C),
                std=tuple(_SSL4EO_L1C_STD[b] for b in _L1C),
                note=(
                    "standardised with SSL4EO-S12 L1C S2C_MEAN/S2C_STD (zhu-xlab/SSL4EO-S12; "
                    "Copernicus-Pretrain's Sentinel-2 L1C extends SSL4EO-S12); TorchGeo's "
                    "CopernicusFM_Base_Weights.transforms is Identity"
                ),
            ),
            side_inputs=("wavelengths", "gsd", "latlon", "time"),
            band_rule="any",
        ),
        embedding_dim=768,
        outputs=("pooled", "grid"),
        weights=_hub(
            "https://huggingface.co/torchgeo/copernicus-fm/resolve/"
            "f395812cc990ba25a451dbb9c9e6d95c8482947e/CopernicusFM_ViT_base_varlang-085350e4.pth",
            "CC-BY-4.0",
        ),
        licence="CC-BY-4.0 (weights), Apache-2.0 (code)",
        citation=(
            "Wang, Y., Xiong, Z., Liu, C., Stewart, A. J., Dujardin, T., Bountos, N. I., "
            "Zavras, A., Gerken, F., Papoutsis, I., Leal-Taixe, L., Zhu, X. X. Towards a "
            "unified Copernicus foundation model for Earth vision. ICCV 2025. "
            "https://arxiv.org/abs/2503.11849"
        ),
        reference="torchgeo.models.copernicusfm_base (torchgeo 0.8.1), input_mode='spectral'",
        pooling=PoolingRule(
            supported=_CLS_OR_MEAN,
            source="torchgeo.models.CopernicusFM.forward_features, global_pool=True: mean of "
            "x[:, 1:]",
        ),
        tokens=_CLS_TOKENS,
    )

    def create_model(self) -> torch.nn.Module:
        """TorchGeo's Copernicus-FM base, without head and pooling norm."""
        models = require("torchgeo.models", "torchgeo")
        th = require("torch", "torch")
        model: torch.nn.Module = models.copernicusfm_base()
        model.fc_norm = th.nn.Identity()
        return model

    def metadata_rows(self, context: Sequence[SampleContext], n: int) -> np.ndarray:
        """``(n, 4)`` lon, lat, days since 1970-01-01, patch-token area (km^2); NaN = unknown.

        Without context, location and date are unknown (Copernicus-FM then uses its learned
        tokens) and the area follows from the card's GSD.
        """
        patch = self.card.input.patch_size
        rows = []
        for i in range(n):
            c = context[i] if context else None
            gsd = c.gsd_m if c is not None else self.card.input.gsd_m
            lon = c.lon if c is not None and c.has_location else math.nan
            lat = c.lat if c is not None and c.has_location else math.nan
            days = float((c.date - _EPOCH).days) if c is not None and c.date else math.nan
            rows.append((lon, lat, days, (patch * gsd / 1000.0) ** 2))
        return np.asarray(rows, dtype=np.float32)

    def forward_tokens(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Last-block tokens of ``CopernicusFM.forward_features`` (spectral mode).

        Copernicus-FM swaps in a learned token for the whole batch when any sample lacks
        location, date or area, so samples are run in groups with the same known fields.
        """
        th = require("torch", "torch")
        meta = self.metadata_rows(context, len(x))
        bands = self.input_bands(context)
        wavelengths = [float(round(1000.0 * b.wavelength_um)) for b in bands]
        bandwidths = [bandwidth_nm(b) for b in bands]

        def run(idx: list[int]) -> torch.Tensor:
            md = th.as_tensor(meta[idx], device=x.device)
            return _last_block_tokens(self.model.blocks, lambda: self.model.forward_features(
                x[idx], md, wavelengths=wavelengths, bandwidths=bandwidths,
                input_mode="spectral", kernel_size=self.card.input.patch_size,
            ))

        return split_batch([tuple(np.isnan(row)) for row in meta], run)


# -- Panopticon ----------------------------------------------------------------------------


class PanopticonViTB14(_TorchGeoEmbedder):
    """Panopticon ViT-B/14 (DINOv2 teacher) with wavelength-keyed channel attention."""

    ignored_keys: ClassVar[tuple[str, ...]] = ("mask_token",)
    card = ModelCard(
        id="panopticon-vitb14",
        family="panopticon",
        summary=(
            "Panopticon ViT-B/14 (DINOv2 teacher, spectral progressive pretraining): a "
            "cross-attention patch embedding over channels keyed by wavelength, any band set; "
            "here the 13 Sentinel-2 L1C bands; 16 x 16 patch-token grid after the final norm."
        ),
        input=InputContract(
            collections=("sentinel-2-l1c",),
            processing_level="L1C",
            bands=sentinel2(*_L1C),
            gsd_m=10.0,
            image_size=224,
            patch_size=14,
            normalisation=Normalisation(
                scale=1.0,
                mean=tuple(_SSL4EO_L1C_MEAN[b] for b in _L1C),
                std=tuple(_SSL4EO_L1C_STD[b] for b in _L1C),
                note=(
                    "standardised with SSL4EO-S12 L1C S2C_MEAN/S2C_STD (zhu-xlab/SSL4EO-S12; "
                    "SSL4EO-S12 is part of Panopticon's pretraining data); TorchGeo's "
                    "Panopticon_Weights.transforms is Identity"
                ),
            ),
            side_inputs=("wavelengths",),
            band_rule="any",
        ),
        embedding_dim=768,
        outputs=("pooled", "grid"),
        weights=_hub(
            "https://hf.co/lewaldm/panopticon/resolve/c8c2bb9555819e8b2bcedf5b3b00e3bf531554e7/"
            "panopticon_vitb14_teacher.pth",
            "Apache-2.0",
        ),
        licence="Apache-2.0",
        citation=(
            "Waldmann, L., Shah, A., Wang, Y., Lehmann, N., Stewart, A. J., Xiong, Z., Zhu, "
            "X. X., Bauer, S., Chuang, J. Panopticon: Advancing any-sensor foundation models "
            "for Earth observation. CVPR Workshops 2025. https://arxiv.org/abs/2503.10845"
        ),
        reference="torchgeo.models.panopticon_vitb14 (torchgeo 0.8.1)",
        pooling=PoolingRule(
            default="cls", supported=_CLS_OR_MEAN,
            source="torchgeo.models.Panopticon.forward -> timm vit_base_patch14_dinov2 "
            "(global_pool='token'): the class token after the final norm",
        ),
        tokens=_CLS_TOKENS,
    )

    def create_model(self) -> torch.nn.Module:
        """TorchGeo's Panopticon at 224 px."""
        models = require("torchgeo.models", "torchgeo")
        model: torch.nn.Module = models.panopticon_vitb14(img_size=224)
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """The timm ViT's keys at 518 px -> ``model.``-prefixed keys, pos_embed resized.

        As ``torchgeo.models.panopticon_vitb14`` loads it (same resize function).
        """
        resize = require("torchgeo.models.copernicusfm", "torchgeo").resize_abs_pos_embed
        state = {k: v for k, v in state.items() if k != "mask_token"}
        patch, size = self.card.input.patch_size, self.card.input.image_size
        assert size is not None
        old = math.isqrt(state["pos_embed"].shape[1] - 1)
        state["pos_embed"] = resize(state["pos_embed"], size // patch, old)
        return {f"model.{k}": v for k, v in state.items()}

    def forward_tokens(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Tokens after the final norm; ``chn_ids`` are the bands' wavelengths in nm."""
        th = require("torch", "torch")
        # A fresh (n, C) tensor: ChnEmb rewrites its input in place.
        chn_ids = th.tensor(
            [float(round(1000.0 * w)) for w in self.wavelengths_um(context)], device=x.device
        ).repeat(len(x), 1)
        vit = self.model.model
        tokens: torch.Tensor = vit.forward_features({"imgs": x, "chn_ids": chn_ids})
        return tokens
