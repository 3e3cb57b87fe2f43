"""TerraMind 1.0 encoders (IBM and ESA, 2025) on raw Sentinel-2, built with TerraTorch.

The network is TerraTorch's own ``TerraMindViT`` from its backbone factories
(``terratorch/models/backbones/terramind/model/terramind_register.py``:
``terramind_v1_tiny`` / ``_small`` / ``_base`` / ``_large``), built for one raw input
modality: ``S2L2A`` (12 bands, modality key ``untok_sen2l2a@224``) or ``S2L1C`` (13 bands,
``untok_sen2l1c@224``). Raw (untokenised) modalities need no tokenizer, so nothing but the
checkpoint is downloaded.

Weights: ``TerraMind_v1_<size>.pt`` from ``ibm-esa-geospatial/TerraMind-1.0-<size>``, the file
TerraTorch's ``pretrained_weights`` names. It is a flat state dict of the whole pretraining
model (encoder, decoder, every modality's embedding); TerraTorch's ``checkpoint_filter_fn``
keeps the entries the ViT has. Here only the encoder blocks, the final encoder norm and the
chosen modality's patch embedding are kept (``convert_checkpoint``) and then loaded strictly,
so a missing encoder entry is an error rather than TerraTorch's silent random init.

Input: digital numbers standardised with TerraTorch's ``v1_pretraining_mean`` /
``v1_pretraining_std`` for the modality (TerraMind's backbones take standardised pixels; the
constants are TerraMesh's pretraining statistics), 224 x 224 pixels, 16-pixel patches.

Output: ``TerraMindViT.forward`` returns one ``(B, 196, D)`` token tensor per encoder block;
the last one is taken after the final ``encoder_norm`` (TerraTorch applies the norm to the
last entry only, and its ``ReshapeTokensToImage`` neck reshapes these tokens row-major into a
14 x 14 map, as done here). With one image modality, TerraTorch's default
``merge_method="mean"`` (mean over image modalities) is the identity; TerraMind has no class
or register tokens (``num_register_tokens=0``), so every token is a patch token. The pooled
vector is the grid's mean.

No side inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from eoembed.bands import sentinel2
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    PoolingRule,
    WeightsSource,
)
from eoembed.embedders.tokens import grid_shape, tokens_to_grid
from eoembed.embedders.torch_embedder import TorchEmbedder, require

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = [
    "TerraMindV1Base",
    "TerraMindV1BaseS2L1C",
    "TerraMindV1Large",
    "TerraMindV1LargeS2L1C",
    "TerraMindV1Small",
    "TerraMindV1SmallS2L1C",
    "TerraMindV1Tiny",
    "TerraMindV1TinyS2L1C",
]

_CITATION = (
    "Jakubik, J., Yang, F., Blumenstiel, B., Scheurer, E., Sedona, R., Maurogiovanni, S., "
    "Bosmans, J., Dionelis, N., Marsocci, V., Kopp, N., et al. TerraMind: Large-Scale "
    "Generative Multimodality for Earth Observation. arXiv:2504.11171 (2025). "
    "https://arxiv.org/abs/2504.11171"
)

_NORM_NOTE = (
    "terratorch 1.2.11 terratorch/models/backbones/terramind/model/terramind_register.py: "
    "v1_pretraining_mean / v1_pretraining_std['{key}'] (digital numbers)"
)


@dataclass(frozen=True)
class _Modality:
    """One raw Sentinel-2 input modality of TerraMind 1.0 (TerraTorch's ``MODALITY_INFO``)."""

    key: str
    collection: str
    level: str
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


_MODALITIES = {
    # PRETRAINED_BANDS["untok_sen2l2a@224"]: COASTAL_AEROSOL, BLUE, GREEN, RED, RED_EDGE_1..3,
    # NIR_BROAD, NIR_NARROW, WATER_VAPOR, SWIR_1, SWIR_2.
    "S2L2A": _Modality(
        "untok_sen2l2a@224", "sentinel-2-l2a", "L2A",
        ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"),
        (1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234,
         3132.22, 3162.988, 2424.884, 1857.648),
        (2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918,
         1753.829, 1797.379, 1434.261, 1334.311),
    ),
    # PRETRAINED_BANDS["untok_sen2l1c@224"]: as above with CIRRUS (B10) after WATER_VAPOR.
    "S2L1C": _Modality(
        "untok_sen2l1c@224", "sentinel-2-l1c", "L1C",
        ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
         "B12"),
        (2357.089, 2137.385, 2018.788, 2082.986, 2295.651, 2854.537, 3122.849, 3040.56,
         3306.481, 1473.847, 506.07, 2472.825, 1838.929),
        (1624.683, 1675.806, 1557.708, 1833.702, 1823.738, 1733.977, 1732.131, 1679.732,
         1727.26, 1024.687, 442.165, 1331.411, 1160.419),
    ),
}

_DIMS = {"tiny": 192, "small": 384, "base": 768, "large": 1024}


def _card(size: str, modality: str) -> ModelCard:
    mod = _MODALITIES[modality]
    suffix = "" if modality == "S2L2A" else "-s2l1c"
    repo = f"ibm-esa-geospatial/TerraMind-1.0-{size}"
    return ModelCard(
        id=f"terramind-v1-{size}{suffix}",
        family="terramind",
        summary=(
            f"TerraMind 1.0 {size} encoder on raw Sentinel-2 {mod.level} ({len(mod.bands)} "
            "bands); 14 x 14 patch-token grid."
        ),
        input=InputContract(
            collections=(mod.collection,),
            processing_level=mod.level,
            bands=sentinel2(*mod.bands),
            gsd_m=10.0,
            image_size=224,
            patch_size=16,
            normalisation=Normalisation(
                scale=1.0, mean=mod.mean, std=mod.std, note=_NORM_NOTE.format(key=mod.key)
            ),
        ),
        embedding_dim=_DIMS[size],
        outputs=("pooled", "grid"),
        pooling=PoolingRule(
            source="TerraMind has no class or register tokens: the mean of its patch tokens",
        ),
        # No commit or file hash for these repos could be verified offline: unpinned (the
        # commit and sha256 actually downloaded are recorded in each embedding's metadata).
        weights=WeightsSource(
            repo_id=repo,
            filename=f"TerraMind_v1_{size}.pt",
            revision="main",
            sha256="",
            licence="Apache-2.0",
            url=f"https://huggingface.co/{repo}",
        ),
        licence="Apache-2.0",
        citation=_CITATION,
        reference=(
            f"terratorch BACKBONE_REGISTRY terramind_v1_{size}(modalities=['{modality}'], "
            "pretrained=True) (terratorch 1.2.11)"
        ),
    )


class _TerraMindV1(TorchEmbedder):
    """A TerraMind 1.0 encoder for one raw Sentinel-2 modality; subclasses set the card."""

    size: ClassVar[str]
    modality: ClassVar[str] = "S2L2A"

    def create_model(self) -> torch.nn.Module:
        """TerraTorch's ``terramind_v1_<size>`` backbone for the modality, untrained."""
        register = require(
            "terratorch.models.backbones.terramind.model.terramind_register", "terratorch"
        )
        factory = getattr(register, f"terramind_v1_{self.size}")
        model: torch.nn.Module = factory(
            modalities=[self.modality], pretrained=False, merge_method="mean"
        )
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """Keep the encoder, its final norm and this modality's patch embedding."""
        key = _MODALITIES[self.modality].key
        keep = ("encoder.", "encoder_norm.", f"encoder_embeddings.{key}.")
        return {k: v for k, v in state.items() if k.startswith(keep)}

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Last block's tokens after ``encoder_norm`` as ``(n, D, h, w)``."""
        tokens = self.model({self.modality: x})[-1]
        return tokens_to_grid(tokens, grid_shape(x, self.card.input.patch_size))


class TerraMindV1Tiny(_TerraMindV1):
    """TerraMind 1.0 tiny (ViT-T, 192-d) on Sentinel-2 L2A."""

    size = "tiny"
    card = _card("tiny", "S2L2A")


class TerraMindV1Small(_TerraMindV1):
    """TerraMind 1.0 small (ViT-S, 384-d) on Sentinel-2 L2A."""

    size = "small"
    card = _card("small", "S2L2A")


class TerraMindV1Base(_TerraMindV1):
    """TerraMind 1.0 base (ViT-B, 768-d) on Sentinel-2 L2A."""

    size = "base"
    card = _card("base", "S2L2A")


class TerraMindV1Large(_TerraMindV1):
    """TerraMind 1.0 large (ViT-L, 1024-d) on Sentinel-2 L2A."""

    size = "large"
    card = _card("large", "S2L2A")


class TerraMindV1TinyS2L1C(_TerraMindV1):
    """TerraMind 1.0 tiny on Sentinel-2 L1C (13 bands, its S2L1C patch embedding)."""

    size = "tiny"
    modality = "S2L1C"
    card = _card("tiny", "S2L1C")


class TerraMindV1SmallS2L1C(_TerraMindV1):
    """TerraMind 1.0 small on Sentinel-2 L1C (13 bands, its S2L1C patch embedding)."""

    size = "small"
    modality = "S2L1C"
    card = _card("small", "S2L1C")


class TerraMindV1BaseS2L1C(_TerraMindV1):
    """TerraMind 1.0 base on Sentinel-2 L1C (13 bands, its S2L1C patch embedding)."""

    size = "base"
    modality = "S2L1C"
    card = _card("base", "S2L1C")


class TerraMindV1LargeS2L1C(_TerraMindV1):
    """TerraMind 1.0 large on Sentinel-2 L1C (13 bands, its S2L1C patch embedding)."""

    size = "large"
    modality = "S2L1C"
    card = _card("large", "S2L1C")
