"""Sentinel-2 backbones from TorchGeo 0.8.1's weight enums (beyond :mod:`eoembed.embedders.ssl4eo`).

Each class mirrors one ``torchgeo.models.*_Weights`` member: the checkpoint URL (commit and,
where the file name carries one, the sha256 prefix), ``meta["bands"]`` (band order the weights
were trained with) and ``transforms`` (normalisation) are reproduced in the card.

- SSL4EO-S12 MAE / FG-MAE ViTs and the ResNet-18 MoCo / ResNet-50 DeCUR CNNs take all 13 L1C
  bands divided by 10000 at 224 px (TorchGeo ``_zhu_xlab_transforms`` /
  ``_ssl4eo_s12_transforms_s2_10k``; eoembed resizes the region to 224 rather than resizing to
  256 and centre-cropping, which would drop the region's border).
- SatlasPretrain Swin-V2 backbones (torchvision ``swin_v2_b`` / ``swin_v2_t`` with a
  ``in_chans`` patch-embedding conv, as ``torchgeo.models.swin_v2_b`` builds them) take the
  8-bit TCI (B04, B03, B02) divided by 255 and, for the multispectral weights, B05-B08, B11,
  B12 divided by 8160, all clipped to 0..1, at 256 px (``_satlas_*_transforms``, Satlas
  ``Normalization.md``). From L1C digital numbers the TCI is approximated as
  ``DN * 255 / 2000`` (ESA maps DN 0..2000 onto the TCI's 8 bits), so the RGB bands are
  divided by 2000. The grid is the last stage's feature map after the final LayerNorm
  (8 x 8 cells of 32 px).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.bands import SENTINEL2_BANDS, sentinel2
from eoembed.embedders.card import InputContract, ModelCard, Normalisation, WeightsSource
from eoembed.embedders.timm_backbone import TimmCNN, TimmEmbedder
from eoembed.embedders.torch_embedder import TorchEmbedder, require

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from eoembed.embedders.context import SampleContext

__all__ = [
    "SSL4EOResNet18MoCo",
    "SSL4EOResNet50DeCUR",
    "SSL4EOViTB16FGMAE",
    "SSL4EOViTB16MAE",
    "SSL4EOViTL16MAE",
    "SSL4EOViTS16FGMAE",
    "SSL4EOViTS16MAE",
    "SatlasSwinV2BS2MS",
    "SatlasSwinV2BS2RGB",
    "SatlasSwinV2TS2MS",
    "SatlasSwinV2TS2RGB",
]

_SSL4EO = (
    "Wang, Y., Braham, N. A. A., Xiong, Z., Liu, C., Albrecht, C. M., Zhu, X. X. SSL4EO-S12: "
    "A large-scale multimodal, multitemporal dataset for self-supervised learning in Earth "
    "observation. IEEE Geoscience and Remote Sensing Magazine 11(3), 98-106 (2023). "
    "https://arxiv.org/abs/2211.07044"
)
_FGMAE = (
    "Wang, Y., Hernandez, H. H., Albrecht, C. M., Zhu, X. X. Feature guided masked autoencoder "
    "for self-supervised learning in remote sensing. IEEE JSTARS (2024). "
    "https://arxiv.org/abs/2310.18653"
)
_DECUR = (
    "Wang, Y., Albrecht, C. M., Braham, N. A. A., Liu, C., Xiong, Z., Zhu, X. X. Decoupling "
    "common and unique representations for multimodal self-supervised learning. ECCV 2024. "
    "https://arxiv.org/abs/2309.05300"
)
_SATLAS = (
    "Bastani, F., Wolters, P., Gupta, R., Ferdinando, J., Kembhavi, A. SatlasPretrain: A "
    "large-scale dataset for remote sensing image understanding. ICCV 2023. "
    "https://arxiv.org/abs/2211.15660"
)
_HF = "https://huggingface.co"
_FGMAE_LICENCE = "unstated by the publisher (wangyi111/FGMAE)"


def _url_source(url: str, licence: str) -> WeightsSource:
    """A TorchGeo enum URL ``https://hf.co/<org>/<repo>/resolve/<commit>/<file>`` -> pin.

    The sha256 prefix is the ``-<hex>`` suffix of the file name when the publisher gave one
    (torchvision's ``check_hash`` convention); otherwise the file is unpinned by hash.
    """
    parts = url.split("/")
    resolve = parts.index("resolve")
    repo_id = "/".join(parts[resolve - 2 : resolve])
    revision, filename = parts[resolve + 1], "/".join(parts[resolve + 2 :])
    stem = filename.rsplit(".", 1)[0]
    tail = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    sha = tail if len(tail) >= 8 and all(c in "0123456789abcdef" for c in tail) else ""
    return WeightsSource(
        repo_id=repo_id, filename=filename, revision=revision, sha256=sha, licence=licence,
        url=f"{_HF}/{repo_id}",
    )


# -- SSL4EO-S12 family (timm) -----------------------------------------------------------------

_SSL4EO_NORM = Normalisation(
    scale=1e-4,
    note="TorchGeo 0.8.1 _zhu_xlab_transforms / _ssl4eo_s12_transforms_s2_10k "
    "(torchgeo/models/vit.py, resnet.py): Normalize(mean=0, std=10000)",
)


def _ssl4eo_contract(patch_size: int) -> InputContract:
    return InputContract(
        collections=("sentinel-2-l1c",),
        processing_level="L1C",
        bands=tuple(SENTINEL2_BANDS.values()),  # torchgeo _sentinel2_toa_bands: B1..B8a..B12
        gsd_m=10.0,
        image_size=224,
        patch_size=patch_size,
        normalisation=_SSL4EO_NORM,
    )


def _ssl4eo_card(
    model_id: str, summary: str, dim: int, patch: int, url: str, citation: str,
    reference: str, licence: str = "CC-BY-4.0",
) -> ModelCard:
    return ModelCard(
        id=model_id,
        family="ssl4eo-s12",
        summary=summary,
        input=_ssl4eo_contract(patch),
        embedding_dim=dim,
        outputs=("pooled", "grid"),
        weights=_url_source(url, licence),
        licence=f"{licence} (weights)",
        citation=citation,
        reference=f"{reference} (torchgeo 0.8.1) + timm forward_features",
    )


class _MAEViT(TimmEmbedder):
    """SSL4EO-S12 MAE-style encoders (``*_enc.pth``): timm ViT keys, classifier dropped.

    TorchGeo loads them with ``strict=False`` tolerating missing ``norm.*`` (the final
    LayerNorm), which then keeps timm's initialisation (weight 1, bias 0); a checkpoint without
    them gets exactly that here too, so eoembed matches what TorchGeo users run.
    """

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """Fill a missing final LayerNorm with its identity initialisation, as TorchGeo ends up."""
        th = require("torch", "torch")
        if "norm.weight" not in state:
            dim = state["cls_token"].shape[-1]
            state = {**state, "norm.weight": th.ones(dim), "norm.bias": th.zeros(dim)}
        return state


class SSL4EOViTS16MAE(_MAEViT):
    """ViT-S/16 pretrained with MAE on SSL4EO-S12 Sentinel-2 L1C (13 bands)."""

    timm_name = "vit_small_patch16_224"
    card = _ssl4eo_card(
        "ssl4eo-s12-vit-s16-mae",
        "ViT-S/16, MAE on SSL4EO-S12 S2 L1C; 14 x 14 patch-token grid.",
        384, 16,
        "https://huggingface.co/wangyi111/SSL4EO-S12/resolve/"
        "75c72195d35201dc1fb210818993518c25da566b/B13_vits16_mae_ep99_enc.pth",
        _SSL4EO, "torchgeo.models.vit_small_patch16_224 + ViTSmall16_Weights.SENTINEL2_ALL_MAE",
    )


class SSL4EOViTB16MAE(_MAEViT):
    """ViT-B/16 pretrained with MAE on SSL4EO-S12 Sentinel-2 L1C (13 bands)."""

    timm_name = "vit_base_patch16_224"
    card = _ssl4eo_card(
        "ssl4eo-s12-vit-b16-mae",
        "ViT-B/16, MAE on SSL4EO-S12 S2 L1C; 14 x 14 patch-token grid.",
        768, 16,
        "https://huggingface.co/wangyi111/SSL4EO-S12/resolve/"
        "75c72195d35201dc1fb210818993518c25da566b/B13_vitb16_mae_ep99_enc.pth",
        _SSL4EO, "torchgeo.models.vit_base_patch16_224 + ViTBase16_Weights.SENTINEL2_ALL_MAE",
    )


class SSL4EOViTL16MAE(_MAEViT):
    """ViT-L/16 pretrained with MAE on SSL4EO-S12 Sentinel-2 L1C (13 bands)."""

    timm_name = "vit_large_patch16_224"
    card = _ssl4eo_card(
        "ssl4eo-s12-vit-l16-mae",
        "ViT-L/16, MAE on SSL4EO-S12 S2 L1C; 14 x 14 patch-token grid.",
        1024, 16,
        "https://huggingface.co/wangyi111/SSL4EO-S12/resolve/"
        "75c72195d35201dc1fb210818993518c25da566b/B13_vitl16_mae_ep99_enc.pth",
        _SSL4EO, "torchgeo.models.vit_large_patch16_224 + ViTLarge16_Weights.SENTINEL2_ALL_MAE",
    )


class SSL4EOViTS16FGMAE(_MAEViT):
    """ViT-S/16 pretrained with feature-guided MAE on SSL4EO-S12 Sentinel-2 L1C (13 bands)."""

    timm_name = "vit_small_patch16_224"
    card = _ssl4eo_card(
        "ssl4eo-s12-vit-s16-fgmae",
        "ViT-S/16, FG-MAE on SSL4EO-S12 S2 L1C; 14 x 14 patch-token grid.",
        384, 16,
        "https://huggingface.co/wangyi111/FGMAE/resolve/"
        "24dd3077d7a99ecd454eaec7adb83d045d7fa122/B13_vits16_fgmae_ep99_enc.pth",
        _FGMAE, "torchgeo.models.vit_small_patch16_224 + ViTSmall16_Weights.SENTINEL2_ALL_FGMAE",
        licence=_FGMAE_LICENCE,
    )


class SSL4EOViTB16FGMAE(_MAEViT):
    """ViT-B/16 pretrained with feature-guided MAE on SSL4EO-S12 Sentinel-2 L1C (13 bands)."""

    timm_name = "vit_base_patch16_224"
    card = _ssl4eo_card(
        "ssl4eo-s12-vit-b16-fgmae",
        "ViT-B/16, FG-MAE on SSL4EO-S12 S2 L1C; 14 x 14 patch-token grid.",
        768, 16,
        "https://huggingface.co/wangyi111/FGMAE/resolve/"
        "24dd3077d7a99ecd454eaec7adb83d045d7fa122/B13_vitb16_fgmae_ep99_enc.pth",
        _FGMAE, "torchgeo.models.vit_base_patch16_224 + ViTBase16_Weights.SENTINEL2_ALL_FGMAE",
        licence=_FGMAE_LICENCE,
    )


class SSL4EOResNet18MoCo(TimmCNN):
    """ResNet-18 pretrained with MoCo v2 on SSL4EO-S12 Sentinel-2 L1C (13 bands)."""

    timm_name = "resnet18"
    card = _ssl4eo_card(
        "ssl4eo-s12-resnet18-moco",
        "ResNet-18, MoCo v2 on SSL4EO-S12 S2 L1C; 7 x 7 feature-map grid.",
        512, 32,
        "https://hf.co/torchgeo/resnet18_sentinel2_all_moco/resolve/"
        "5b8cddc9a14f3844350b7f40b85bcd32aed75918/resnet18_sentinel2_all_moco-59bfdff9.pth",
        _SSL4EO, "torchgeo.models.resnet18 + ResNet18_Weights.SENTINEL2_ALL_MOCO",
    )


class SSL4EOResNet50DeCUR(TimmCNN):
    """ResNet-50 pretrained with DeCUR (S1/S2 multimodal SSL) on SSL4EO-S12, S2 L1C branch."""

    timm_name = "resnet50"
    card = _ssl4eo_card(
        "ssl4eo-s12-resnet50-decur",
        "ResNet-50, DeCUR on SSL4EO-S12 S2 L1C (optical branch); 7 x 7 feature-map grid.",
        2048, 32,
        "https://huggingface.co/torchgeo/decur/resolve/"
        "eba7ae5945d482a4319be046d34b552db5dd9950/rn50_ssl4eo-s12_ms_decur_ep100-fc6b09ff.pth",
        _DECUR, "torchgeo.models.resnet50 + ResNet50_Weights.SENTINEL2_ALL_DECUR",
        licence="MIT",
    )


# -- SatlasPretrain Swin-V2 (torchvision) -------------------------------------------------------

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
        weights=_url_source(url, "ODC-BY-1.0"),
        licence="ODC-BY-1.0 (weights)",
        citation=_SATLAS,
        reference=f"torchgeo.models.{enum} (torchgeo 0.8.1) + torchvision features/norm/permute",
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
