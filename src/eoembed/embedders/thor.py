"""THOR v1 (Forgaard et al. 2026, FM4CS / Norwegian Computing Center) on Sentinel-2.

Architecture. THOR is a ViT (timm blocks) over per-band, native-resolution tokens: every band
has its own FlexiViT patch embedding (released at 16 px, pseudo-inverse resized to the patch
size used), the bands of one group (same GSD) are averaged token by token ("subsetmean"),
each group's tokens get a sincos patch-size embedding and a group embedding, and attention
carries an ALiBi bias from the ground distance between patch centres (no position
embeddings, no class token). No maintained package provides it: the original code
(FM4CS/THOR v1.0.2, and the TerraTorch extension FM4CS/thor_terratorch_ext) is vendored in
:mod:`eoembed.embedders._vendor.thor` from rs-embed 0.3.1. eoembed builds the encoder with
the extension's default configuration (all Sentinel-1/2/3 channels and groups, so the
released checkpoint loads strictly) and feeds it the ten Sentinel-2 bands below.

Input. Sentinel-2 L2A B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12 (THOR's BLUE, GREEN,
RED, RED_EDGE_1-3, NIR_BROAD, NIR_NARROW, SWIR_1, SWIR_2), 288 x 288 pixels at 10 m (ground
cover 2880 m), DN clipped to [0, 10000], / 10000, then z-scored with the per-band statistics
of rs-embed's thor adapter (``_THOR_S2_MEAN/_STD``, "thor_stats"). As the extension's
``THOREncoderWrapper`` does, the 20 m bands (B05, B06, B07, B8A, B11, B12) are resampled
(bilinear) to their native 20 m grid (144 x 144) before tokenisation, and the model runs
with patch size 8 (the extension's and rs-embed's default ``flexivit_patch_size_seqs``):
36 x 36 tokens from the 10 m group and 18 x 18 from the 20 m group.

Outputs. The encoder's tokens after its final LayerNorm (``ThorViTEncoder.forward``); with
``final_norm=False`` the last block's tokens without it, which is what the TerraTorch
extension returns (``forward_intermediates``) and what rs-embed's ``thor`` adapter embeds.
``grid``: each group's tokens as a map, the 18 x 18 map upsampled bilinearly to 36 x 36, the
maps averaged (the extension's ``merge_method="mean"``): 36 x 36 cells of 8 x 8 pixels.
``pooled``: the mean of all 1620 tokens (rs-embed's pooled THOR output), which weights the
10 m group four times as much as the 20 m group and so differs from the grid mean.
"""

from __future__ import annotations

import re
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
from eoembed.embedders.tokens import tokens_to_grid
from eoembed.embedders.torch_embedder import TorchEmbedder, TorchOptions, submodule_state
from eoembed.errors import WeightsNotFoundError

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = [
    "THOR_BANDS",
    "THOR_MEAN",
    "THOR_NAMES",
    "THOR_STD",
    "ThorOptions",
    "ThorV1Base",
    "ThorV1Large",
    "ThorV1Small",
    "ThorV1Tiny",
]

THOR_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
THOR_NAMES = (
    "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD", "NIR_NARROW",
    "SWIR_1", "SWIR_2",
)
"""The extension's band names of :data:`THOR_BANDS` (``lookup_band`` maps them to channels)."""
THOR_MEAN = (
    0.176620, 0.195923, 0.213948, 0.263378, 0.300818, 0.313144, 0.308133, 0.320993, 0.221550,
    0.175772,
)
"""Per-band mean of reflectance (DN / 10000), rs-embed ``onthefly_thor._THOR_S2_MEAN``."""
THOR_STD = (
    0.264520, 0.252949, 0.259180, 0.272771, 0.248175, 0.235432, 0.226434, 0.223274, 0.171606,
    0.156223,
)
"""Per-band std of reflectance, rs-embed ``onthefly_thor._THOR_S2_STD``."""
IMAGE_SIZE = 288
GSD_M = 10
GROUND_COVER_M = IMAGE_SIZE * GSD_M
PATCH_SIZE = 8
"""FlexiViT patch size the encoder runs at (input pixels per token of the 10 m group)."""
INPUT_PARAMS: dict[str, Any] = {
    "ground_covers": [GROUND_COVER_M], "flexivit_patch_size_seqs": [PATCH_SIZE],
}
"""Overrides of the extension's default input parameters (as rs-embed's adapter sets them)."""
_IGNORED = re.compile(r"decoder_|decode_|ref_pos_embed|pos_embed")
"""Encoder entries the extension's loader skips (``ckpt_ignore``): MAE decoder parts and
position tables the ALiBi encoder does not use."""
_DERIVED = re.compile(r"encoder_slopes$|band_embed\.")
"""Entries computed from the configuration (ALiBi slopes, sincos group embeddings): taken
from the built model when a checkpoint lacks them."""

_CITATION = (
    "Forgaard, T., Reksten, J. H., Waldeland, A. U., Marsocci, V., Longépé, N., "
    "Kampffmeyer, M., Salberg, A.-B. THOR: A Versatile Foundation Model for Earth Observation "
    "Climate and Society Applications. arXiv:2601.16011 (2026). "
    "https://arxiv.org/abs/2601.16011"
)


@dataclass(frozen=True)
class ThorOptions(TorchOptions):
    """THOR options (besides the common torch ones).

    ``final_norm``: embed the encoder's output after its final LayerNorm (True) or the last
    block's output without it (False: the TerraTorch extension's and rs-embed's features).
    """

    final_norm: bool = True


def _card(size: str, dim: int) -> ModelCard:
    repo = f"FM4CS/THOR-1.0-{size}"
    return ModelCard(
        id=f"thor-v1-{size}",
        family="thor",
        summary=(
            f"THOR v1 {size} (ALiBi ViT over per-band FlexiViT tokens) on 10 S2 bands at 288 px "
            f"(10 m and 20 m groups, patch 8); {dim}-d group-mean tokens on a 36 x 36 grid."
        ),
        input=InputContract(
            collections=("sentinel-2-l2a", "sentinel-2-l1c"),
            processing_level="L2A",
            bands=sentinel2(*THOR_BANDS),
            gsd_m=float(GSD_M),
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            unit="reflectance",
            normalisation=Normalisation(
                mean=THOR_MEAN, std=THOR_STD,
                note=(
                    "DN clipped to [0, 10000], / 10000, then the per-band mean/std of rs-embed's "
                    "thor adapter ('thor_stats', onthefly_thor._THOR_S2_MEAN/_STD)"
                ),
            ),
        ),
        embedding_dim=dim,
        outputs=("pooled", "grid"),
        pooling=native_rule("the mean of all tokens of both GSD groups (rs-embed's THOR pooling)"),
        weights=WeightsSource(
            repo_id=repo,
            filename=f"thor_v1_vit_{size}.pt",
            revision="main",
            sha256="",
            licence="MIT (FM4CS/THOR code licence; the Hub card's terms were not verified)",
            url=f"https://huggingface.co/{repo}",
        ),
        licence="MIT (THOR code); Apache-2.0 (thor_terratorch_ext)",
        citation=_CITATION,
        reference=(
            "eoembed.embedders._vendor.thor (FM4CS/THOR v1.0.2 ThorViTEncoder and "
            "thor_terratorch_ext THOREncoderWrapper, vendored from rs-embed 0.3.1): "
            f"load_thor_model('thor_v1_{size}', {list(THOR_NAMES)!r}, pretrained=False, "
            f"input_params={INPUT_PARAMS!r}, merge_method='mean')"
        ),
    )


class ThorEmbedder(TorchEmbedder):
    """Base: subclasses set ``card`` and ``variant`` (the extension's model key)."""

    Options = ThorOptions
    options: ThorOptions
    native_pooling = True
    variant: ClassVar[str]

    def create_model(self) -> torch.nn.Module:
        """The vendored ``ThorViTEncoder`` as the extension configures it (random init)."""
        from eoembed.embedders._vendor.thor.terratorch_ext import load_thor_model

        wrapper = load_thor_model(
            self.variant, model_bands=list(THOR_NAMES), out_indices=[-1], pretrained=False,
            input_params=dict(INPUT_PARAMS),
        )
        self.channels: list[str] = list(wrapper.bands)
        """The encoder's channel names, in :data:`THOR_BANDS` order."""
        model: torch.nn.Module = wrapper.model
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """THOR release -> encoder keys: the ``encoder.`` part, decoder/position tables dropped.

        As the extension's loader (``extract_model_state_dict_from_ckpt(...)["encoder"]`` then
        ``ckpt_ignore``); entries derived from the configuration are filled in when absent.
        """
        state = submodule_state(state, "encoder.")
        out = {k: v for k, v in state.items() if not _IGNORED.match(k)}
        if not out:
            raise WeightsNotFoundError(f"no THOR encoder weights in the checkpoint of {self.card.id!r}")
        for key, value in self.model.state_dict().items():
            if key not in out and _DERIVED.match(key):
                out[key] = value
        return out

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """DN clipped to [0, 10000] (as rs-embed), then the card's scale and mean/std."""
        return super().normalise(np.clip(pixels, 0.0, 10000.0))

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """``(n, 10, 288, 288)`` -> tokens ``(n, T, D)`` and each group's grid side."""
        th = import_torch()
        model = self.model
        gsd = {c: model.channels[c]["GSD"] for c in self.channels}
        inputs: dict[str, torch.Tensor] = {}
        for res in sorted(set(gsd.values())):
            idx = [i for i, c in enumerate(self.channels) if gsd[c] == res]
            side = GROUND_COVER_M // res
            bands = x[:, idx]
            if side != x.shape[-1]:  # the extension's per-band bilinear resample to native GSD
                bands = th.nn.functional.interpolate(bands, size=(side, side), mode="bilinear")
            for j, i in enumerate(idx):
                inputs[self.channels[i]] = bands[:, j : j + 1]
        if self.options.final_norm:
            tokens, params = model(inputs, return_channel_params=True)
        else:
            feats, params = model.forward_intermediates(
                inputs, indices=[len(model.blocks) - 1], intermediates_only=True,
                return_channel_params=True,
            )
            tokens = feats[-1]
        groups = model.get_available_groups(inputs)
        sides = [int(params[members[0]]["num_patch"]) for members in groups.values()]
        return tokens, sides

    def forward_pooled(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Mean of all tokens (both groups)."""
        tokens, _ = self._tokens(x)
        pooled: torch.Tensor = tokens.mean(dim=1)
        return pooled

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Each group's token map, upsampled to the finest (bilinear), averaged: ``(n, D, h, w)``."""
        th = import_torch()
        tokens, sides = self._tokens(x)
        finest = max(sides)
        maps = []
        start = 0
        for side in sides:
            part = tokens[:, start : start + side * side]
            start += side * side
            grid = tokens_to_grid(part, (side, side))
            if side != finest:
                grid = th.nn.functional.interpolate(grid, size=(finest, finest), mode="bilinear")
            maps.append(grid)
        merged: torch.Tensor = th.stack(maps).mean(dim=0)
        return merged


class ThorV1Tiny(ThorEmbedder):
    """THOR v1 tiny (ViT-Ti, 192 wide, 12 blocks, 3 heads)."""

    variant = "thor_v1_tiny"
    card = _card("tiny", 192)


class ThorV1Small(ThorEmbedder):
    """THOR v1 small (ViT-S, 384 wide, 12 blocks, 6 heads)."""

    variant = "thor_v1_small"
    card = _card("small", 384)


class ThorV1Base(ThorEmbedder):
    """THOR v1 base (ViT-B, 768 wide, 12 blocks, 12 heads)."""

    variant = "thor_v1_base"
    card = _card("base", 768)


class ThorV1Large(ThorEmbedder):
    """THOR v1 large (ViT-L, 1024 wide, 24 blocks, 16 heads)."""

    variant = "thor_v1_large"
    card = _card("large", 1024)
