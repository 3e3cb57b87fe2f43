"""SatlasPretrain Swin-V2 backbones (Bastani et al. 2023) for Sentinel-2, as in TorchGeo 0.8.1.

Each class mirrors one ``torchgeo.models.Swin_V2_*_Weights`` member: the checkpoint URL (commit
and the sha256 prefix in the file name), ``meta["bands"]`` and ``transforms``. The network is
torchvision ``swin_v2_b`` / ``swin_v2_t`` with an ``in_chans`` patch-embedding conv, as
``torchgeo.models.swin_v2_b`` builds it. Input: the 8-bit TCI (B04, B03, B02) divided by 255
and, for the multispectral weights, B05-B08, B11, B12 divided by 8160, all clipped to 0..1, at
256 px (``_satlas_*_transforms``, Satlas ``Normalization.md``). From L1C digital numbers the TCI
is approximated as ``DN * 255 / 2000`` (ESA maps DN 0..2000 onto the TCI's 8 bits), so the RGB
bands are divided by 2000. The grid is the last stage's feature map after the final LayerNorm
(8 x 8 cells of 32 px); pooled output is its mean, as torchvision's ``SwinTransformer``
(``avgpool``) and Satlas's own classification heads pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.bands import sentinel2
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    PoolingRule,
    WeightsSource,
)
from eoembed.embedders.torch_embedder import TorchEmbedder, require

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from eoembed.embedders.context import SampleContext

__all__ = ["SatlasSwinV2BS2MS", "SatlasSwinV2BS2RGB", "SatlasSwinV2TS2MS", "SatlasSwinV2TS2RGB"]

_SATLAS = (
    "Bastani, F., Wolters, P., Gupta, R., Ferdinando, J., Kembhavi, A. SatlasPretrain: A "
    "large-scale dataset for remote sensing image understanding. ICCV 2023. "
    "https://arxiv.org/abs/2211.15660"
)

_SATLAS_RGB = ("B04", "B03", "B02")
_SATLAS_MS = (*_SATLAS_RGB, "B05", "B06", "B07", "B08", "B11", "B12")
_TCI_DN = 2000.0
"""L1C digital number that an 8-bit TCI value of 255 stands for (approximation)."""


def _satlas_contract(bands: tuple[str, ...]) -> InputContract:
    std = tuple(_TCI_DN if b in _SATLAS_RGB else 8160.0 for b in bands)
    return InputContract(
        collections=("sentinel-2-l1c",),
        processing_level="L1C",
        bands=sentinel2(*bands),
        gsd_m=10.0,
        image_size=256,
        patch_size=32,
        normalisation=Normalisation(
            scale=1.0,
            mean=(0.0,) * len(bands),
            std=std,
            note="TorchGeo 0.8.1 _satlas_sentinel2_transforms / _satlas_transforms "
            "(torchgeo/models/swin.py): Normalize(mean=0, std=[255]*3 TCI + [8160]*6), then "
            "clipped to 0..1 (allenai/satlas Normalization.md); TCI 255 ~ L1C DN 2000 (ESA TCI scaling)",
        ),
    )


class SatlasSwinV2(TorchEmbedder):
    """torchvision Swin-V2 with Satlas's ``in_chans`` patch-embedding conv (4 x 4, stride 4).

    The released files hold the whole torchvision state dict (TorchGeo loads them with no
    missing or unexpected keys); the classifier ``head`` is not used.
    """

    tv_name: ClassVar[str]
    ignored_keys: ClassVar[tuple[str, ...]] = ("head.weight", "head.bias")

    def create_model(self) -> torch.nn.Module:
        """The torchvision architecture, first conv swapped as ``torchgeo.models.swin_v2_*``."""
        th = require("torch", "torch")
        models = require("torchvision.models", "torchgeo")
        model: Any = getattr(models, self.tv_name)(weights=None)
        stem = model.features[0][0]
        model.features[0][0] = th.nn.Conv2d(
            len(self.card.input.bands), stem.out_channels, kernel_size=(4, 4), stride=(4, 4)
        )
        model.head = th.nn.Identity()  # the classifier is not used; its checkpoint keys are dropped
        built: torch.nn.Module = model
        return built

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """The card's division, then Satlas's clip to 0..1 (8-bit TCI, clipped 16-bit bands)."""
        clipped: np.ndarray = np.clip(super().normalise(pixels), 0.0, 1.0)
        return clipped

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Last stage features after the final LayerNorm, ``(n, C, H/32, W/32)``."""
        out: torch.Tensor = self.model.permute(self.model.norm(self.model.features(x)))
        return out


def _satlas_card(model_id: str, arch: str, dim: int, bands: tuple[str, ...], url: str,
                 enum: str) -> ModelCard:
    kind = "multispectral (TCI + 6 bands)" if len(bands) > 3 else "RGB (TCI)"
    return ModelCard(
        id=model_id,
        family="satlaspretrain",
        summary=f"{arch}, SatlasPretrain Sentinel-2 single-image {kind}; 8 x 8 feature-map grid.",
        input=_satlas_contract(bands),
        embedding_dim=dim,
        outputs=("pooled", "grid"),
        weights=WeightsSource.from_hub_url(url, "ODC-BY-1.0"),
        licence="ODC-BY-1.0 (weights)",
        citation=_SATLAS,
        reference=f"torchgeo.models.{enum} (torchgeo 0.8.1) + torchvision features/norm/permute",
        pooling=PoolingRule(source="torchvision SwinTransformer avgpool (mean of the last map)"),
    )


_SATLAS_URL = "https://hf.co/torchgeo/satlas/resolve/081d6607431bf36bdb59c223777cbb267131b8f2/"


class SatlasSwinV2BS2MS(SatlasSwinV2):
    """Swin-V2-B, SatlasPretrain Sentinel-2 single-image multispectral (9 bands)."""

    tv_name = "swin_v2_b"
    card = _satlas_card(
        "satlas-swin-v2-b-s2-ms", "Swin-V2-B", 1024, _SATLAS_MS,
        _SATLAS_URL + "sentinel2_swinb_si_ms-fe22a12c.pth",
        "swin_v2_b + Swin_V2_B_Weights.SENTINEL2_SI_MS_SATLAS",
    )


class SatlasSwinV2BS2RGB(SatlasSwinV2):
    """Swin-V2-B, SatlasPretrain Sentinel-2 single-image RGB (TCI)."""

    tv_name = "swin_v2_b"
    card = _satlas_card(
        "satlas-swin-v2-b-s2-rgb", "Swin-V2-B", 1024, _SATLAS_RGB,
        _SATLAS_URL + "sentinel2_swinb_si_rgb-156a98d5.pth",
        "swin_v2_b + Swin_V2_B_Weights.SENTINEL2_SI_RGB_SATLAS",
    )


class SatlasSwinV2TS2MS(SatlasSwinV2):
    """Swin-V2-T, SatlasPretrain Sentinel-2 single-image multispectral (9 bands)."""

    tv_name = "swin_v2_t"
    card = _satlas_card(
        "satlas-swin-v2-t-s2-ms", "Swin-V2-T", 768, _SATLAS_MS,
        _SATLAS_URL + "sentinel2_swint_si_ms-bc68e396.pth",
        "swin_v2_t + Swin_V2_T_Weights.SENTINEL2_SI_MS_SATLAS",
    )


class SatlasSwinV2TS2RGB(SatlasSwinV2):
    """Swin-V2-T, SatlasPretrain Sentinel-2 single-image RGB (TCI)."""

    tv_name = "swin_v2_t"
    card = _satlas_card(
        "satlas-swin-v2-t-s2-rgb", "Swin-V2-T", 768, _SATLAS_RGB,
        _SATLAS_URL + "sentinel2_swint_si_rgb-0c1a96e0.pth",
        "swin_v2_t + Swin_V2_T_Weights.SENTINEL2_SI_RGB_SATLAS",
    )
