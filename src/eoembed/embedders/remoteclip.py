"""RemoteCLIP (Liu et al. 2024): OpenAI CLIP fine-tuned on remote-sensing image-text pairs.

The released checkpoints (``chendelong/RemoteCLIP`` on the Hugging Face Hub) are plain state
dicts of open_clip's ``RN50``, ``ViT-B-32`` and ``ViT-L-14`` CLIP models. open_clip builds the
architecture; only the image tower is kept (the ``visual.*`` entries), so no text tower,
tokenizer or prompt is ever needed.

Input. RemoteCLIP saw 8-bit RGB photographs (aerial and satellite scenes), not reflectances.
Sentinel-2 B04/B03/B02 digital numbers are mapped to that 0..1 RGB explicitly: divided by
the option ``rgb_max`` (the DN shown as full brightness; 3000, i.e. reflectance 0.3, a common
true-colour stretch), clipped to [0, 1], then standardised with OpenAI CLIP's mean/std
(``open_clip.constants.OPENAI_DATASET_MEAN/STD``), at 224 x 224 pixels. The whole region is
resized to 224 (bilinear, antialiased) rather than CLIP's bicubic resize + centre crop, which
would drop the region's border.

Outputs. ``pooled`` is CLIP's own image embedding (``encode_image``: the class token, or the
RN50 attention pool, through the image projection), L2-normalised unless
``normalize=False`` (CLIP embeddings are compared by cosine; the publisher's retrieval
script normalises them). ``grid`` (ViTs only) is the last block's patch tokens after the
final LayerNorm, mapped through the same image projection (``visual.proj``) so that grid
cells live in the pooled embedding's space and have its dimension, each cell normalised like
the pooled vector. The mean of the grid is therefore not the pooled embedding: CLIP pools
with the class token. RN50 has no comparable per-cell embedding (its attention pool only
returns the pooled query), so it gives pooled output only.

Activation. RemoteCLIP was fine-tuned from OpenAI's CLIP weights, which use QuickGELU; the
publisher's evaluation script builds the model with ``pretrained='openai'``, which in the
open_clip of the time meant QuickGELU, while their README example uses the plain config
(GELU). The option ``quick_gelu`` (default True, the training activation) chooses; it has no
effect on RN50, whose image tower has no GELU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.bands import sentinel2
from eoembed.embedders.base import import_torch
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    WeightsSource,
    native_rule,
)
from eoembed.embedders.rgb import DEFAULT_RGB_MAX, RGBStretchOptions, stretch_rgb
from eoembed.embedders.tokens import grid_shape, tokens_to_grid
from eoembed.embedders.torch_embedder import TorchEmbedder, require
from eoembed.errors import CapabilityError

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "RemoteCLIPOptions",
    "RemoteCLIPRN50",
    "RemoteCLIPViTB32",
    "RemoteCLIPViTL14",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""OpenAI CLIP RGB mean (open_clip/constants.py ``OPENAI_DATASET_MEAN``)."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""OpenAI CLIP RGB std (open_clip/constants.py ``OPENAI_DATASET_STD``)."""

_REPO = "chendelong/RemoteCLIP"
_REVISION = "bf1d8a3ccf2ddbf7c875705e46373bfe542bce38"
"""The Hub commit the released files are cached under (as found in public code)."""

_CITATION = (
    "Liu, F., Chen, D., Guan, Z., Zhou, X., Zhu, J., Ye, Q., Fu, L., Zhou, J. RemoteCLIP: A "
    "Vision Language Foundation Model for Remote Sensing. IEEE Transactions on Geoscience and "
    "Remote Sensing 62, 1-16 (2024). https://doi.org/10.1109/TGRS.2024.3390838"
)


@dataclass(frozen=True)
class RemoteCLIPOptions(RGBStretchOptions):
    """RemoteCLIP options (besides the common torch ones).

    ``rgb_max``: Sentinel-2 DN mapped to 1.0 before clipping to [0, 1] (the RGB stretch).
    ``normalize``: L2-normalise each embedding vector (pooled, and each grid cell).
    ``quick_gelu``: build the ViT with QuickGELU, the activation of the OpenAI CLIP weights
    RemoteCLIP was fine-tuned from (False: open_clip's plain config, GELU).
    """

    normalize: bool = True
    quick_gelu: bool = True


def _weights(filename: str, sha256: str) -> WeightsSource:
    return WeightsSource(
        repo_id=_REPO,
        filename=filename,
        revision=_REVISION,
        sha256=sha256,
        licence="Apache-2.0",
        url=f"https://huggingface.co/{_REPO}",
    )


def _card(
    model_id: str, summary: str, dim: int, patch: int, outputs: tuple[str, ...],
    weights: WeightsSource, reference: str,
) -> ModelCard:
    return ModelCard(
        id=model_id,
        family="remoteclip",
        summary=summary,
        input=InputContract(
            collections=("sentinel-2-l1c", "sentinel-2-l2a"),
            processing_level="any",
            bands=sentinel2("B04", "B03", "B02"),
            gsd_m=10.0,
            image_size=224,
            patch_size=patch,
            normalisation=Normalisation(
                scale=1.0 / DEFAULT_RGB_MAX, mean=CLIP_MEAN, std=CLIP_STD,
                note=(
                    "DN / rgb_max (option, default 3000) clipped to [0, 1], then OpenAI CLIP "
                    "mean/std from open_clip/constants.py (OPENAI_DATASET_MEAN/STD)"
                ),
            ),
        ),
        embedding_dim=dim,
        outputs=outputs,
        pooling=native_rule(
            "open_clip encode_image: CLIP's projected image embedding", grid="grid" in outputs
        ),
        weights=weights,
        licence="Apache-2.0 (weights, per the Hub model card)",
        citation=_CITATION,
        reference=reference,
    )


class RemoteCLIPEmbedder(TorchEmbedder):
    """Base: subclasses set ``card`` and ``clip_name`` (the open_clip model name)."""

    Options = RemoteCLIPOptions
    options: RemoteCLIPOptions
    native_pooling = True
    clip_name: ClassVar[str]
    vit: ClassVar[bool] = True

    def create_model(self) -> torch.nn.Module:
        """open_clip's CLIP image tower (random init); the text tower is discarded."""
        open_clip = require("open_clip", "torch")
        clip = open_clip.create_model(
            self.clip_name, pretrained=None, force_quick_gelu=self.options.quick_gelu
        )
        visual: Any = clip.visual
        if self.vit:
            visual.output_tokens = True  # forward -> (projected pooled, ln_post patch tokens)
        tower: torch.nn.Module = visual
        return tower

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """Whole-CLIP state dict -> the image tower's keys (text tower and logit scale dropped)."""
        return {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """DN -> 0..1 RGB (``/ rgb_max``, clipped) -> OpenAI CLIP mean/std."""
        return stretch_rgb(pixels, self.options.rgb_max, CLIP_MEAN, CLIP_STD)

    def _unit(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        if not self.options.normalize:
            return x
        out: torch.Tensor = import_torch().nn.functional.normalize(x, dim=dim)
        return out

    def forward_pooled(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """CLIP's image embedding (``encode_image``), L2-normalised when ``normalize``."""
        out = self.model(x)
        pooled: torch.Tensor = out[0] if self.vit else out
        return self._unit(pooled, dim=-1)

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """ViT patch tokens after ``ln_post``, through ``proj``, as ``(n, D, h, w)``."""
        if not self.vit:
            raise CapabilityError(f"model {self.card.id!r} gives pooled output only")
        _, tokens = self.model(x)
        projected = tokens @ self.model.proj
        grid = tokens_to_grid(projected, grid_shape(x, self.card.input.patch_size))
        return self._unit(grid, dim=1)


_REFERENCE = (
    "open_clip.create_model({name!r}, pretrained=None, force_quick_gelu=True) + "
    "load_state_dict, then encode_image (open_clip_torch 3.3.0)"
)


class RemoteCLIPRN50(RemoteCLIPEmbedder):
    """RemoteCLIP ResNet-50 (CLIP's modified ResNet with attention pooling); pooled only."""

    clip_name = "RN50"
    vit = False
    card = _card(
        "remoteclip-rn50",
        "RemoteCLIP RN50 image encoder on S2 RGB; CLIP image embedding (1024), pooled only.",
        1024, 32, ("pooled",),
        _weights("RemoteCLIP-RN50.pt", ""),
        _REFERENCE.format(name="RN50"),
    )


class RemoteCLIPViTB32(RemoteCLIPEmbedder):
    """RemoteCLIP ViT-B/32."""

    clip_name = "ViT-B-32"
    card = _card(
        "remoteclip-vit-b32",
        "RemoteCLIP ViT-B/32 on S2 RGB; CLIP image embedding (512) and a 7 x 7 grid of "
        "projected patch tokens.",
        512, 32, ("pooled", "grid"),
        _weights(
            "RemoteCLIP-ViT-B-32.pt",
            "60014e395d930a3f2963d1d89c8522bf4ad56775571e4356e866864789af85c4",
        ),
        _REFERENCE.format(name="ViT-B-32"),
    )


class RemoteCLIPViTL14(RemoteCLIPEmbedder):
    """RemoteCLIP ViT-L/14."""

    clip_name = "ViT-L-14"
    card = _card(
        "remoteclip-vit-l14",
        "RemoteCLIP ViT-L/14 on S2 RGB; CLIP image embedding (768) and a 16 x 16 grid of "
        "projected patch tokens.",
        768, 14, ("pooled", "grid"),
        _weights(
            "RemoteCLIP-ViT-L-14.pt",
            "fcc2a7e21e171f4ffcb7a9c0206b8b74ac0c9eb83c67b576958b7a4ed6c8cecb",
        ),
        _REFERENCE.format(name="ViT-L-14"),
    )
