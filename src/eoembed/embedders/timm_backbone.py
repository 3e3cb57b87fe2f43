"""Backbones built with timm from pinned Hub checkpoints.

timm builds the architecture; the checkpoint comes through :mod:`eoembed.embedders.weights`.
For ViTs the patch tokens become the grid output (one cell per ``patch_size`` input pixels
after resizing to the model's image size, georeferenced back onto the input footprint);
CNNs override :meth:`TimmEmbedder.forward_grid` with their last feature map. Pooled outputs
reduce the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from eoembed.embedders.base import Embedder, import_torch
from eoembed.embedders.options import EmbedderOptions
from eoembed.embedders.weights import load_state_dict, resolve_weights
from eoembed.errors import DependencyNotFoundError, WeightsNotFoundError

if TYPE_CHECKING:
    import torch

__all__ = ["TimmEmbedder", "TimmOptions"]


@dataclass(frozen=True)
class TimmOptions(EmbedderOptions):
    """``weights``: ``None`` (pinned pretrained), ``"random"``, or a local checkpoint path."""

    weights: str | None = None


class TimmEmbedder(Embedder):
    """Base for timm backbones: subclasses set ``card``, ``timm_name`` and maybe ``vit``."""

    Options = TimmOptions
    options: TimmOptions
    timm_name: ClassVar[str]
    vit: ClassVar[bool] = True
    """ViTs take ``img_size``; their grid is the patch tokens."""
    ignored_keys: ClassVar[tuple[str, ...]] = ("head.weight", "head.bias", "fc_norm.weight",
                                               "fc_norm.bias")
    """Checkpoint entries that the feature extractor does not use (classifier heads)."""

    def build(self) -> None:
        """Create the timm model and load the (pinned, verified) checkpoint strictly."""
        try:
            import timm
        except ImportError:
            raise DependencyNotFoundError("timm", "torch") from None
        card = self.card
        extra: dict[str, Any] = {"img_size": card.input.image_size} if self.vit else {}
        self.model: Any = timm.create_model(
            self.timm_name,
            pretrained=False,
            in_chans=len(card.input.bands),
            num_classes=0,
            **extra,
        )
        path, self.weights_meta = resolve_weights(card.id, card.weights, self.options.weights)
        if path is not None:
            state = {
                k: v for k, v in load_state_dict(path).items() if k not in self.ignored_keys
            }
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise WeightsNotFoundError(
                    f"checkpoint {path} does not fit {card.id!r}: missing {missing[:5]}, "
                    f"unexpected {unexpected[:5]}"
                )
        self.model.eval().to(self.device)

    def forward_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens of the last block (after the final norm) as ``(n, D, h, w)``."""
        import_torch()
        tokens = self.model.forward_features(x)[:, self.model.num_prefix_tokens :]
        side = x.shape[-1] // self.card.input.patch_size
        grid: torch.Tensor = tokens.reshape(len(x), -1, side, tokens.shape[-1])
        return grid.permute(0, 3, 1, 2)
