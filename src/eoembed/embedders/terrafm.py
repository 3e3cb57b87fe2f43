"""TerraFM (Danish et al. 2025, MBZUAI): a DINO-trained ViT-B/16 over Sentinel-1/2.

Architecture. A DINO ViT-B/16 (768 wide, 12 blocks, class token, learned position
embeddings) whose patch embedding is modality-specific: one 16 x 16 convolution per input
kind (Sentinel-2 L2A, Sentinel-2 L1C, Sentinel-1) into a 2304-wide space, a learned modality
vector, then a token projection (Linear, LayerNorm, Linear, Linear) down to 768. No maintained
package provides it; the original ``terrafm.py`` of the Hub repo ``MBZUAI/TerraFM`` is vendored
in :mod:`eoembed.embedders._vendor.terrafm` (from rs-embed 0.3.1) and built by its
``terrafm_base``. Only TerraFM-B is known to be published (``TerraFM-B.pth``); the code's
``terrafm_large`` has no release eoembed could find.

Input. The twelve Sentinel-2 bands other than B10 (B01-B09, B8A, B11, B12), DN / 10000 clipped
to [0, 1] (as rs-embed's ``terrafm`` adapter), 224 x 224 pixels at 10 m. The model's own
``forward`` routes twelve-band input through the Sentinel-2 **L1C** convolution
(``PatchEmbed.forward(is_l2a=False)``), as rs-embed does; eoembed keeps that.

Outputs. ``pooled``: the class token after the final LayerNorm (``TerraFM.forward``).
``grid``: the last block's patch tokens after the final LayerNorm (``extract_feature`` with
the last block index), 14 x 14 cells of 16 x 16 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.bands import sentinel2
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    WeightsSource,
    native_rule,
)
from eoembed.embedders.torch_embedder import TorchEmbedder

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = ["TERRAFM_BANDS", "TerraFMBase"]

TERRAFM_BANDS = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)
IMAGE_SIZE = 224
PATCH_SIZE = 16

_CITATION = (
    "Danish, M. S., Munir, M. A., Shah, S. R. A., Khan, M. H., Anwer, R. M., Laaksonen, J., "
    "Khan, F. S., Khan, S. TerraFM: A Scalable Foundation Model for Unified Multisensor Earth "
    "Observation. arXiv:2506.06281 (2025). https://arxiv.org/abs/2506.06281"
)


class TerraFMBase(TorchEmbedder):
    """TerraFM-B on twelve Sentinel-2 bands (the L1C patch embedding)."""

    native_pooling = True
    ignored_keys: ClassVar[tuple[str, ...]] = ("head.",)
    """The classifier/DINO head is not part of the feature extractor."""
    card = ModelCard(
        id="terrafm-base",
        family="terrafm",
        summary=(
            "TerraFM-B (DINO ViT-B/16 with modality patch embeddings) on 12 S2 bands at 224 px; "
            "768-d class token and a 14 x 14 grid of patch tokens."
        ),
        input=InputContract(
            collections=("sentinel-2-l1c", "sentinel-2-l2a"),
            processing_level="L1C",
            bands=sentinel2(*TERRAFM_BANDS),
            gsd_m=10.0,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            unit="reflectance",
            normalisation=Normalisation(
                note=(
                    "DN / 10000 clipped to [0, 1], as rs-embed's terrafm adapter; TerraFM's "
                    "terrafm.py takes reflectance and publishes no band statistics"
                ),
            ),
        ),
        embedding_dim=768,
        outputs=("pooled", "grid"),
        pooling=native_rule("TerraFM.forward: the class token after the final LayerNorm"),
        weights=WeightsSource(
            repo_id="MBZUAI/TerraFM",
            filename="TerraFM-B.pth",
            revision="main",
            sha256="",
            licence="Apache-2.0 (TerraFM code licence; the Hub card's terms were not verified)",
            url="https://huggingface.co/MBZUAI/TerraFM",
        ),
        licence="Apache-2.0",
        citation=_CITATION,
        reference=(
            "eoembed.embedders._vendor.terrafm.terrafm_base() (MBZUAI/TerraFM terrafm.py, "
            "vendored from rs-embed 0.3.1): forward (pooled) and extract_feature(out_indices="
            "[11]) (grid)"
        ),
    )

    def create_model(self) -> torch.nn.Module:
        """The vendored ``terrafm_base()`` (random init)."""
        from eoembed.embedders._vendor.terrafm.terrafm import terrafm_base

        model: torch.nn.Module = terrafm_base()  # type: ignore[no-untyped-call]
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """Plain state dict; DDP/DINO wrapper prefixes (``module.``, ``backbone.``) removed."""
        out = {}
        for key, value in state.items():
            for prefix in ("module.", "backbone."):
                key = key.removeprefix(prefix)
            out[key] = value
        return out

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """DN / 10000, clipped to [0, 1]."""
        x: np.ndarray = np.clip(super().normalise(pixels), 0.0, 1.0)
        return x

    def forward_pooled(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """The class token after the final LayerNorm (``TerraFM.forward``)."""
        pooled: torch.Tensor = self.model(x)
        return pooled

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Last-block patch tokens after the final LayerNorm, as ``(n, D, h, w)``."""
        last = len(self.model.blocks) - 1
        grid: torch.Tensor = self.model.extract_feature(x, out_indices=[last])[-1]
        return grid
