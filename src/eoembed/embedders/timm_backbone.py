"""Backbones built with timm from pinned Hub checkpoints.

timm builds the architecture; the checkpoint comes through :mod:`eoembed.embedders.weights`.
For ViTs the tokens laid out by the card's :class:`TokenLayout` give the grid (one cell per
``patch_size`` input pixels after resizing to the model's image size, georeferenced back
onto the input footprint) and the class token; CNNs override
:meth:`TimmEmbedder.forward_grid` with their last feature map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from eoembed.embedders.torch_embedder import TorchEmbedder, TorchOptions, require

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = ["TimmCNN", "TimmEmbedder", "TimmOptions"]

TimmOptions = TorchOptions
"""Kept for backwards compatibility: timm adapters take the common torch options."""


class TimmEmbedder(TorchEmbedder):
    """Base for timm backbones: subclasses set ``card``, ``timm_name`` and maybe ``vit``."""

    timm_name: ClassVar[str]
    vit: ClassVar[bool] = True
    """ViTs take ``img_size``; their grid is the patch tokens."""
    ignored_keys: ClassVar[tuple[str, ...]] = ("head.weight", "head.bias", "fc_norm.weight",
                                               "fc_norm.bias")

    def create_model(self) -> torch.nn.Module:
        """The timm architecture with the card's band count and no classifier."""
        timm = require("timm", "torch")
        card = self.card
        extra: dict[str, Any] = {"img_size": card.input.image_size} if self.vit else {}
        model: torch.nn.Module = timm.create_model(
            self.timm_name, pretrained=False, in_chans=len(card.input.bands), num_classes=0,
            **extra,
        )
        return model

    def forward_tokens(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """All tokens of the last block after the final norm, in the card's layout."""
        tokens: torch.Tensor = self.model.forward_features(x)
        return tokens


class TimmCNN(TimmEmbedder):
    """timm CNNs (ResNets): the last stage's feature map is the grid."""

    vit = False
    ignored_keys: ClassVar[tuple[str, ...]] = ("fc.weight", "fc.bias")
    channels_last_ok = True

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``(n, C, H/32, W/32)`` from the last stage (7 x 7 at 224 px)."""
        out: torch.Tensor = self.model.forward_features(x)
        return out
