"""SSL4EO-S12 backbones (Wang et al. 2023) for 13-band Sentinel-2 L1C, built with timm.

One module for the whole family, whatever the pretraining method (DINO, MoCo, MAE, FG-MAE,
DeCUR): each class mirrors a ``torchgeo.models.*_Weights`` member of TorchGeo 0.8.1, whose
checkpoint URL (commit and, where the file name carries one, the sha256 prefix), band order
(``meta["bands"]``, all 13 L1C bands B1..B8a..B12) and transforms are reproduced in the card.

Input: reflectance, i.e. digital numbers / 10000 (TorchGeo ``_zhu_xlab_transforms`` /
``_ssl4eo_s12_transforms_s2_10k``: ``Normalize(mean=0, std=10000)``), declared as the card's
unit ``"reflectance"``; 224 x 224 px. eoembed resizes the whole region to 224 (TorchGeo
resizes to 256 and centre-crops 224, which would drop the region's border).

Pooling. TorchGeo builds the ViTs with ``timm.create_model("vit_*_patch16_224")``, whose
``VisionTransformer`` pools with ``global_pool="token"``: the published global embedding is
the class token after the final norm, so ``OutputSpec.pooled()`` gives it (``"mean"`` of
the patch-token grid stays available). The ResNets pool as timm's ``ResNet`` does
(``global_pool="avg"``: the mean of the last feature map), which is the grid's mean.
"""

from __future__ import annotations

from typing import Any

from eoembed.bands import SENTINEL2_BANDS
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    PoolingRule,
    TokenLayout,
    WeightsSource,
)
from eoembed.embedders.timm_backbone import TimmCNN, TimmEmbedder
from eoembed.embedders.torch_embedder import require
from eoembed.specs.output import REDUCTIONS

__all__ = [
    "SSL4EOResNet18MoCo",
    "SSL4EOResNet50DINO",
    "SSL4EOResNet50DeCUR",
    "SSL4EOResNet50MoCo",
    "SSL4EOViTB16FGMAE",
    "SSL4EOViTB16MAE",
    "SSL4EOViTL16MAE",
    "SSL4EOViTS16DINO",
    "SSL4EOViTS16FGMAE",
    "SSL4EOViTS16MAE",
    "SSL4EOViTS16MoCo",
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
_FGMAE_LICENCE = "unstated by the publisher (wangyi111/FGMAE)"
_TG = "https://huggingface.co/torchgeo"


_NORM = Normalisation(
    note="TorchGeo 0.8.1 _zhu_xlab_transforms / _ssl4eo_s12_transforms_s2_10k "
    "(torchgeo/models/vit.py, resnet.py): Normalize(mean=0, std=10000), i.e. reflectance",
)

_VIT_TOKENS = TokenLayout(prefix_tokens=1, cls_index=0)
"""timm ``vit_*_patch16_224``: one class token (``num_prefix_tokens == 1``), then patches."""
_VIT_POOLING = PoolingRule(
    default="cls", supported=("cls", *REDUCTIONS),
    source="torchgeo.models.vit_*_patch16_224 -> timm VisionTransformer, global_pool='token'",
)
_CNN_POOLING = PoolingRule(
    source="torchgeo.models.resnet* -> timm ResNet, global_pool='avg' (last feature map mean)",
)


def _card(
    model_id: str, summary: str, dim: int, patch: int, url: str, citation: str,
    reference: str = "", licence: str = "CC-BY-4.0",
) -> ModelCard:
    vit = patch == 16
    return ModelCard(
        id=model_id,
        family="ssl4eo-s12",
        summary=summary,
        input=InputContract(
            collections=("sentinel-2-l1c",),
            processing_level="L1C",
            bands=tuple(SENTINEL2_BANDS.values()),  # torchgeo _sentinel2_toa_bands order
            gsd_m=10.0,
            image_size=224,
            patch_size=patch,
            normalisation=_NORM,
            unit="reflectance",
        ),
        embedding_dim=dim,
        outputs=("pooled", "grid"),
        weights=WeightsSource.from_hub_url(url, licence),
        licence=f"{licence} (weights)",
        citation=citation,
        reference=f"{reference} (torchgeo 0.8.1) + timm forward_features" if reference else "",
        pooling=_VIT_POOLING if vit else _CNN_POOLING,
        tokens=_VIT_TOKENS if vit else None,
    )


# -- DINO / MoCo (TorchGeo's own Hub releases) ---------------------------------------------------


class SSL4EOViTS16DINO(TimmEmbedder):
    """ViT-S/16 pretrained with DINO on SSL4EO-S12 Sentinel-2 L1C (all 13 bands)."""

    timm_name = "vit_small_patch16_224"
    card = _card(
        "ssl4eo-s12-vit-s16-dino",
        "ViT-S/16, DINO on SSL4EO-S12 S2 L1C; 14 x 14 patch-token grid.",
        384, 16,
        f"{_TG}/vit_small_patch16_224_sentinel2_all_dino/resolve/"
        "5b41dd418a79de47ac9f5be3e035405a83818a62/"
        "vit_small_patch16_224_sentinel2_all_dino-36bcc127.pth",
        _SSL4EO,
    )


class SSL4EOViTS16MoCo(TimmEmbedder):
    """ViT-S/16 pretrained with MoCo v3 on SSL4EO-S12 Sentinel-2 L1C (all 13 bands)."""

    timm_name = "vit_small_patch16_224"
    card = _card(
        "ssl4eo-s12-vit-s16-moco",
        "ViT-S/16, MoCo v3 on SSL4EO-S12 S2 L1C; 14 x 14 patch-token grid.",
        384, 16,
        f"{_TG}/vit_small_patch16_224_sentinel2_all_moco/resolve/"
        "1cb683f6c14739634cdfaaceb076529adf898c74/"
        "vit_small_patch16_224_sentinel2_all_moco-67c9032d.pth",
        _SSL4EO,
    )


class _SSL4EOResNet50(TimmCNN):
    """ResNet-50: the last stage's 7 x 7 feature map is the grid (32 input pixels a cell)."""

    timm_name = "resnet50"


class SSL4EOResNet50DINO(_SSL4EOResNet50):
    """ResNet-50 pretrained with DINO on SSL4EO-S12 Sentinel-2 L1C (all 13 bands)."""

    card = _card(
        "ssl4eo-s12-resnet50-dino",
        "ResNet-50, DINO on SSL4EO-S12 S2 L1C; 7 x 7 feature-map grid.",
        2048, 32,
        f"{_TG}/resnet50_sentinel2_all_dino/resolve/d7f14bf5530d70ac69d763e58e77e44dbecfec7c/"
        "resnet50_sentinel2_all_dino-d6c330e9.pth",
        _SSL4EO,
    )


class SSL4EOResNet50MoCo(_SSL4EOResNet50):
    """ResNet-50 pretrained with MoCo v2 on SSL4EO-S12 Sentinel-2 L1C (all 13 bands)."""

    card = _card(
        "ssl4eo-s12-resnet50-moco",
        "ResNet-50, MoCo v2 on SSL4EO-S12 S2 L1C; 7 x 7 feature-map grid.",
        2048, 32,
        f"{_TG}/resnet50_sentinel2_all_moco/resolve/da4f3c9dbe09272eb902f3b37f46635fa4726879/"
        "resnet50_sentinel2_all_moco-df8b932e.pth",
        _SSL4EO,
    )


# -- MAE / FG-MAE / DeCUR / ResNet-18 MoCo (the authors' Hub releases TorchGeo points at) ------

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
    card = _card(
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
    card = _card(
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
    card = _card(
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
    card = _card(
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
    card = _card(
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
    card = _card(
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
    card = _card(
        "ssl4eo-s12-resnet50-decur",
        "ResNet-50, DeCUR on SSL4EO-S12 S2 L1C (optical branch); 7 x 7 feature-map grid.",
        2048, 32,
        "https://huggingface.co/torchgeo/decur/resolve/"
        "eba7ae5945d482a4319be046d34b552db5dd9950/rn50_ssl4eo-s12_ms_decur_ep100-fc6b09ff.pth",
        _DECUR, "torchgeo.models.resnet50 + ResNet50_Weights.SENTINEL2_ALL_DECUR",
        licence="MIT",
    )
