"""SSL4EO-S12 backbones (Wang et al. 2023) for 13-band Sentinel-2 L1C, built with timm.

Weights are the TorchGeo releases on the Hugging Face Hub (CC-BY-4.0), pinned to the commits
TorchGeo 0.10 uses; each file name carries the leading sha256 hex digits that are verified.
Preprocessing follows TorchGeo's ``_zhu_xlab_transforms``: digital numbers divided by 10000,
at 224 x 224 pixels. eoembed resizes the whole region to 224 (TorchGeo resizes to 256 and
centre-crops 224, which would drop the region's border).
"""

from __future__ import annotations

from eoembed.bands import SENTINEL2_BANDS
from eoembed.embedders.card import InputContract, ModelCard, Normalisation, WeightsSource
from eoembed.embedders.timm_backbone import TimmCNN, TimmEmbedder

__all__ = ["SSL4EOResNet50DINO", "SSL4EOResNet50MoCo", "SSL4EOViTS16DINO", "SSL4EOViTS16MoCo"]

_CITATION = (
    "Wang, Y., Braham, N. A. A., Xiong, Z., Liu, C., Albrecht, C. M., Zhu, X. X. SSL4EO-S12: "
    "A large-scale multimodal, multitemporal dataset for self-supervised learning in Earth "
    "observation. IEEE Geoscience and Remote Sensing Magazine 11(3), 98-106 (2023). "
    "https://arxiv.org/abs/2211.07044"
)


def _contract(patch_size: int) -> InputContract:
    return InputContract(
        collections=("sentinel-2-l1c",),
        processing_level="L1C",
        bands=tuple(SENTINEL2_BANDS.values()),
        gsd_m=10.0,
        image_size=224,
        patch_size=patch_size,
        normalisation=Normalisation(
            scale=1e-4, note="TorchGeo _zhu_xlab_transforms: Normalize(mean=0, std=10000)"
        ),
    )


def _hub(repo: str, revision: str, filename: str) -> WeightsSource:
    return WeightsSource(
        repo_id=f"torchgeo/{repo}",
        filename=filename,
        revision=revision,
        sha256=filename.rsplit("-", 1)[1].split(".")[0],
        licence="CC-BY-4.0",
        url=f"https://huggingface.co/torchgeo/{repo}",
    )


def _card(model_id: str, summary: str, dim: int, patch: int, weights: WeightsSource) -> ModelCard:
    return ModelCard(
        id=model_id,
        family="ssl4eo-s12",
        summary=summary,
        input=_contract(patch),
        embedding_dim=dim,
        outputs=("pooled", "grid"),
        weights=weights,
        licence="CC-BY-4.0 (weights)",
        citation=_CITATION,
    )


class SSL4EOViTS16DINO(TimmEmbedder):
    """ViT-S/16 pretrained with DINO on SSL4EO-S12 Sentinel-2 L1C (all 13 bands)."""

    timm_name = "vit_small_patch16_224"
    card = _card(
        "ssl4eo-s12-vit-s16-dino",
        "ViT-S/16, DINO on SSL4EO-S12 S2 L1C; 14 x 14 patch-token grid.",
        384, 16,
        _hub(
            "vit_small_patch16_224_sentinel2_all_dino",
            "5b41dd418a79de47ac9f5be3e035405a83818a62",
            "vit_small_patch16_224_sentinel2_all_dino-36bcc127.pth",
        ),
    )


class SSL4EOViTS16MoCo(TimmEmbedder):
    """ViT-S/16 pretrained with MoCo v3 on SSL4EO-S12 Sentinel-2 L1C (all 13 bands)."""

    timm_name = "vit_small_patch16_224"
    card = _card(
        "ssl4eo-s12-vit-s16-moco",
        "ViT-S/16, MoCo v3 on SSL4EO-S12 S2 L1C; 14 x 14 patch-token grid.",
        384, 16,
        _hub(
            "vit_small_patch16_224_sentinel2_all_moco",
            "1cb683f6c14739634cdfaaceb076529adf898c74",
            "vit_small_patch16_224_sentinel2_all_moco-67c9032d.pth",
        ),
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
        _hub(
            "resnet50_sentinel2_all_dino",
            "d7f14bf5530d70ac69d763e58e77e44dbecfec7c",
            "resnet50_sentinel2_all_dino-d6c330e9.pth",
        ),
    )


class SSL4EOResNet50MoCo(_SSL4EOResNet50):
    """ResNet-50 pretrained with MoCo v2 on SSL4EO-S12 Sentinel-2 L1C (all 13 bands)."""

    card = _card(
        "ssl4eo-s12-resnet50-moco",
        "ResNet-50, MoCo v2 on SSL4EO-S12 S2 L1C; 7 x 7 feature-map grid.",
        2048, 32,
        _hub(
            "resnet50_sentinel2_all_moco",
            "da4f3c9dbe09272eb902f3b37f46635fa4726879",
            "resnet50_sentinel2_all_moco-df8b932e.pth",
        ),
    )
