"""SatMAE (Cong et al. 2022) and SatMAE++ (Noman et al. 2024): MAE-pretrained ViT-L encoders.

The networks are the classes of the maintained ``rshf`` package (MVRL's Hugging Face ports):
``rshf.satmae.SatMAE`` (RGB MAE), ``rshf.satmae.SatMAE_Pre_MS`` (group-channel MAE for
Sentinel-2) and ``rshf.satmaepp.SatMAEPP`` (SatMAE++ RGB MAE). The released files
(``MVRL/*`` on the Hub) are those models' whole state dicts, decoders included; only the
encoder is kept (decoder, mask token and, for SatMAE++, the multi-scale upsampling branch
are dropped).

Forward pass. rshf's ``forward_encoder(x, mask_ratio=0)`` still shuffles the tokens with
random noise before the blocks (MAE's masking step keeps all of them, in random order), so
its output tokens are not in raster order. The adapters run the same modules without the
masking step: patch embedding + fixed sin-cos position (and channel-group) embedding, class
token, the 24 blocks, the final LayerNorm. Attention is permutation-equivariant, so this is
rshf's ``forward_encoder`` with its tokens put back in place (``ids_restore``); the parity
tests check exactly that.

Input.
- RGB (SatMAE, SatMAE++): pretrained on fMoW-RGB, 8-bit very-high-resolution RGB photos
  (both data loaders read RGB: SatMAE with PIL, SatMAE++ with ``cv2`` then ``BGR2RGB``; rs-embed
  feeds SatMAE++ BGR by default, which the training code does not support). Sentinel-2
  B04/B03/B02 DN are divided by the option ``rgb_max`` (default 3000, reflectance 0.3, a
  common true-colour stretch), clipped to [0, 1] (the 8-bit range ``ToTensor`` gives), then
  standardised with the fMoW-RGB mean/std of ``util/datasets.py`` (``CustomDatasetFromImages``)
  in both repositories, at 224 x 224 px; grid 14 x 14 cells of 16 px.
- Multispectral (SatMAE group-channel): pretrained on fMoW-Sentinel (Sentinel-2 L1C, 13 bands,
  B01/B09/B10 dropped), input 96 x 96 px with 8 px patches. Pixels are mapped as SatMAE's
  ``SentinelNormalize``: ``(DN - (mean - 2 std)) / (4 std)`` clipped to [0, 1] and quantised
  to 8 bits (``* 255`` then ``astype(uint8)``, then ``ToTensor``'s ``/ 255``), with the
  fMoW-Sentinel band mean/std. Channel groups (as in the released model): (B02, B03, B04, B08),
  (B05, B06, B07, B8A), (B11, B12); each group has its own patch embedding, so the encoder
  sees 3 x 144 tokens.

The whole region is resized to the native size (bilinear, antialiased) rather than the eval
transform's resize-to-256/224 + centre crop, which would drop the region's border.

Outputs. ``grid``: the final-LayerNorm patch tokens, class token dropped, georeferenced by
their patch position. For the group-channel model a grid cell is the mean of the three
groups' tokens at that position (the groups share the spatial position embedding). ``pooled``:
the mean of all patch tokens, class token excluded, i.e. the mean of the grid; this is the
``global_pool`` of the SatMAE / SatMAE++ fine-tuning ViTs (``x[:, 1:].mean(dim=1)``; for the
group-channel ViT over all group tokens), taken after the pretrained per-token LayerNorm since
the fine-tuning ``fc_norm`` is not part of the pretrained weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.bands import sentinel2
from eoembed.embedders.base import import_torch
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    PoolingRule,
    WeightsSource,
)
from eoembed.embedders.rgb import DEFAULT_RGB_MAX, RGBStretchOptions, stretch_rgb
from eoembed.embedders.tokens import grid_shape, tokens_to_grid
from eoembed.embedders.torch_embedder import TorchEmbedder, require

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = [
    "FMOW_RGB_MEAN",
    "FMOW_RGB_STD",
    "FMOW_SENTINEL_MEAN",
    "FMOW_SENTINEL_STD",
    "SatMAEPPViTL16RGB",
    "SatMAEViTL8MS",
    "SatMAEViTL16RGB",
]

FMOW_RGB_MEAN = (0.4182007312774658, 0.4214799106121063, 0.3991275727748871)
"""fMoW-RGB mean (SatMAE and SatMAE++ ``util/datasets.py``, ``CustomDatasetFromImages``)."""
FMOW_RGB_STD = (0.28774282336235046, 0.27541765570640564, 0.2764017581939697)
"""fMoW-RGB std (same source)."""
FMOW_SENTINEL_MEAN = (
    1370.19151926, 1184.3824625, 1120.77120066, 1136.26026392, 1263.73947144, 1645.40315151,
    1846.87040806, 1762.59530783, 1972.62420416, 582.72633433, 14.77112979, 1732.16362238,
    1247.91870117,
)
"""fMoW-Sentinel per-band DN mean, B01..B12 in L1C order (SatMAE ``util/datasets.py``,
``SentinelIndividualImageDataset``; also ``rshf.satmae.SatMAE_Pre_MS.mean``)."""
FMOW_SENTINEL_STD = (
    633.15169573, 650.2842772, 712.12507725, 965.23119807, 948.9819932, 1108.06650639,
    1258.36394548, 1233.1492281, 1364.38688993, 472.37967789, 14.3114637, 1310.36996126,
    1087.6020813,
)
"""fMoW-Sentinel per-band DN std (same source)."""
_L1C_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
              "B11", "B12")
_MS_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
"""SatMAE's ``--dropped_bands 0 9 10`` (B01, B09, B10) removed from the 13 L1C bands."""
_MS_GROUPS = ((0, 1, 2, 6), (3, 4, 5, 7), (8, 9))
"""SatMAE's default channel groups over the 10 kept bands."""
_MS_MEAN = tuple(FMOW_SENTINEL_MEAN[_L1C_ORDER.index(b)] for b in _MS_BANDS)
_MS_STD = tuple(FMOW_SENTINEL_STD[_L1C_ORDER.index(b)] for b in _MS_BANDS)

_SATMAE = (
    "Cong, Y., Khanna, S., Meng, C., Liu, P., Rozi, E., He, Y., Burke, M., Lobell, D. B., "
    "Ermon, S. SatMAE: Pre-training Transformers for Temporal and Multi-Spectral Satellite "
    "Imagery. NeurIPS 2022. https://arxiv.org/abs/2207.08051"
)
_SATMAEPP = (
    "Noman, M., Naseer, M., Cholakkal, H., Anwer, R. M., Khan, S., Khan, F. S. Rethinking "
    "Transformers Pre-training for Multi-Spectral Satellite Imagery. CVPR 2024. "
    "https://arxiv.org/abs/2403.05419"
)
_SATMAE_LICENCE = (
    "unstated by the publishers (the MVRL Hub repository and sustainlab-group/SatMAE carry "
    "no licence)"
)
_MS_CONFIG: dict[str, Any] = {
    "img_size": 96, "patch_size": 8, "in_chans": 10, "channel_groups": _MS_GROUPS,
    "channel_embed": 256, "embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0,
    "decoder_channel_embed": 128, "decoder_embed_dim": 512, "decoder_depth": 8,
    "decoder_num_heads": 16, "norm_pix_loss": False,
}
"""SatMAE ``mae_vit_large_patch16`` group-channel pretraining (README: ``--input_size 96
--patch_size 8 --dropped_bands 0 9 10``, default groups), as rshf's ``SatMAE_Pre_MS`` takes it."""


def _weights(repo: str, filename: str, licence: str) -> WeightsSource:
    """An MVRL Hub file; no commit or hash could be verified offline, so unpinned (``main``)."""
    return WeightsSource(
        repo_id=repo, filename=filename, revision="main", sha256="", licence=licence,
        url=f"https://huggingface.co/{repo}",
    )


def _rgb_card(
    model_id: str, summary: str, weights: WeightsSource, citation: str, reference: str
) -> ModelCard:
    return ModelCard(
        id=model_id,
        family="satmae",
        summary=summary,
        input=InputContract(
            collections=("sentinel-2-l1c", "sentinel-2-l2a"),
            processing_level="any",
            bands=sentinel2("B04", "B03", "B02"),
            gsd_m=10.0,
            image_size=224,
            patch_size=16,
            normalisation=Normalisation(
                scale=1.0 / DEFAULT_RGB_MAX, mean=FMOW_RGB_MEAN, std=FMOW_RGB_STD,
                note=(
                    "DN / rgb_max (option, default 3000) clipped to [0, 1] (fMoW-RGB is 8-bit "
                    "RGB), then the fMoW-RGB mean/std of util/datasets.py "
                    "CustomDatasetFromImages (sustainlab-group/SatMAE, techmn/satmae_pp)"
                ),
            ),
        ),
        embedding_dim=1024,
        outputs=("pooled", "grid"),
        pooling=PoolingRule(
            source="SatMAE/SatMAE++ fine-tuning ViTs global_pool: x[:, 1:].mean(dim=1)",
        ),
        weights=weights,
        licence=weights.licence,
        citation=citation,
        reference=reference,
    )


class _SatMAEEmbedder(TorchEmbedder):
    """Shared: an rshf MAE with its decoder removed; the unmasked encoder pass."""

    ignored_keys: ClassVar[tuple[str, ...]] = ("decoder_", "mask_token")
    _drop: ClassVar[tuple[str, ...]] = (
        "decoder_embed", "mask_token", "decoder_pos_embed", "decoder_blocks", "decoder_norm",
        "decoder_pred", "decoder_channel_embed",
    )

    def _strip(self, model: Any) -> torch.nn.Module:
        """Delete the pretraining-only parts (their checkpoint entries are ``ignored_keys``)."""
        for name in self._drop:
            if hasattr(model, name):
                delattr(model, name)
        module: torch.nn.Module = model
        return module


class _RGBEmbedder(_SatMAEEmbedder):
    """SatMAE / SatMAE++ RGB: a plain MAE ViT (rshf ``MaskedAutoencoderViT``)."""

    Options = RGBStretchOptions
    options: RGBStretchOptions

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """DN -> 0..1 RGB (``/ rgb_max``, clipped) -> fMoW-RGB mean/std."""
        return stretch_rgb(pixels, self.options.rgb_max, FMOW_RGB_MEAN, FMOW_RGB_STD)

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """The encoder pass of rshf's ``forward_encoder`` minus the token shuffle, as a grid."""
        torch = import_torch()
        m = self.model
        tokens = m.patch_embed(x) + m.pos_embed[:, 1:, :]
        cls = (m.cls_token + m.pos_embed[:, :1, :]).expand(len(x), -1, -1)
        h = torch.cat((cls, tokens), dim=1)
        for blk in m.blocks:
            h = blk(h)
        h = m.norm(h)
        return tokens_to_grid(h[:, 1:], grid_shape(x, self.card.input.patch_size))


class SatMAEViTL16RGB(_RGBEmbedder):
    """SatMAE ViT-L/16 pretrained (800 epochs) on fMoW-RGB."""

    card = _rgb_card(
        "satmae-vit-l16-rgb",
        "SatMAE ViT-L/16 MAE on fMoW-RGB, fed S2 RGB; 14 x 14 patch-token grid (1024).",
        _weights("MVRL/satmae-vitlarge-fmow-pretrain-800", "model.safetensors", _SATMAE_LICENCE),
        _SATMAE,
        "rshf.satmae.SatMAE(SatMAEConfig()) + forward_encoder(x, mask_ratio=0.0), tokens "
        "unshuffled with ids_restore (rshf 0.2.2)",
    )

    def create_model(self) -> torch.nn.Module:
        """The rshf SatMAE (ViT-L/16, 224 px) with the decoder removed."""
        mod = require("rshf.satmae", "satmae")
        return self._strip(mod.SatMAE(mod.SatMAEConfig()))


class SatMAEPPViTL16RGB(_RGBEmbedder):
    """SatMAE++ ViT-L/16 pretrained (multi-scale MAE) on fMoW-RGB."""

    ignored_keys = (*_SatMAEEmbedder.ignored_keys, "proj_up_", "up_block.")
    _drop = (*_SatMAEEmbedder._drop, "proj_up_conv", "proj_up_norm", "up_block")
    card = _rgb_card(
        "satmaepp-vit-l16-rgb",
        "SatMAE++ ViT-L/16 multi-scale MAE on fMoW-RGB, fed S2 RGB; 14 x 14 patch-token grid "
        "(1024).",
        _weights("MVRL/satmaepp_ViT-L_pretrain_fmow_rgb", "pytorch_model.bin", "Apache-2.0"),
        _SATMAEPP,
        "rshf.satmaepp.SatMAEPP(SatMAEPPConfig()) + forward_encoder(x, mask_ratio=0.0), "
        "tokens unshuffled with ids_restore (rshf 0.2.2)",
    )

    def create_model(self) -> torch.nn.Module:
        """The rshf SatMAE++ (ViT-L/16, 224 px) without decoder and upsampling branch."""
        mod = require("rshf.satmaepp", "satmae")
        return self._strip(mod.SatMAEPP(mod.SatMAEPPConfig()))


class SatMAEViTL8MS(_SatMAEEmbedder):
    """SatMAE group-channel ViT-L (8 px patches, 96 px) pretrained on fMoW-Sentinel."""

    card = ModelCard(
        id="satmae-vit-l8-ms",
        family="satmae",
        summary=(
            "SatMAE group-channel ViT-L MAE on fMoW-Sentinel (10 S2 L1C bands in 3 groups), "
            "96 px, 8 px patches; 12 x 12 grid, each cell the mean of the 3 group tokens (1024)."
        ),
        input=InputContract(
            collections=("sentinel-2-l1c",),
            processing_level="L1C",
            bands=sentinel2(*_MS_BANDS),
            gsd_m=10.0,
            image_size=96,
            patch_size=8,
            normalisation=Normalisation(
                scale=1.0,
                mean=tuple(m - 2 * s for m, s in zip(_MS_MEAN, _MS_STD, strict=True)),
                std=tuple(4 * s for s in _MS_STD),
                note=(
                    "SatMAE SentinelNormalize (util/datasets.py, also rshf.satmae.model): "
                    "(DN - (mean - 2 std)) / (4 std) with the fMoW-Sentinel band mean/std, "
                    "clipped to [0, 1] and quantised to 8 bits (x 255, uint8, / 255)"
                ),
            ),
        ),
        embedding_dim=1024,
        outputs=("pooled", "grid"),
        pooling=PoolingRule(
            source="SatMAE/SatMAE++ fine-tuning ViTs global_pool: x[:, 1:].mean(dim=1)",
        ),
        weights=_weights(
            "MVRL/satmae-vitlarge-multispec-pretrain", "model.safetensors", _SATMAE_LICENCE
        ),
        licence=_SATMAE_LICENCE,
        citation=_SATMAE,
        reference=(
            "rshf.satmae.SatMAE_Pre_MS(config) + forward_encoder(x, mask_ratio=0.0), tokens "
            "unshuffled with ids_restore, mean over channel groups (rshf 0.2.2)"
        ),
    )

    def create_model(self) -> torch.nn.Module:
        """The rshf group-channel SatMAE (SatMAE's ViT-L pretraining config) without decoder."""
        mod = require("rshf.satmae", "satmae")
        return self._strip(mod.SatMAE_Pre_MS(dict(_MS_CONFIG)))

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """SatMAE's SentinelNormalize (float64, clip, uint8 truncation), then ``/ 255``."""
        lo = np.asarray([m - 2 * s for m, s in zip(_MS_MEAN, _MS_STD, strict=True)])[:, None, None]
        hi = np.asarray([m + 2 * s for m, s in zip(_MS_MEAN, _MS_STD, strict=True)])[:, None, None]
        scaled = (np.nan_to_num(pixels.astype(np.float64)) - lo) / (hi - lo) * 255.0
        eight_bit = np.clip(scaled, 0, 255).astype(np.uint8)
        out: np.ndarray = eight_bit.astype(np.float32) / np.float32(255.0)
        return out

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Group tokens through the encoder in raster order; cells = mean over the groups."""
        torch = import_torch()
        m = self.model
        embeds = [pe(x[:, list(g)]) for pe, g in zip(m.patch_embed, m.channel_groups, strict=True)]
        tokens = torch.stack(embeds, dim=1)  # (n, G, L, D)
        n, groups, length, _ = tokens.shape
        pos = m.pos_embed[:, 1:, :].unsqueeze(1).expand(-1, groups, -1, -1)
        chan = m.channel_embed.unsqueeze(2).expand(-1, -1, length, -1)
        tokens = (tokens + torch.cat((pos, chan), dim=-1)).reshape(n, groups * length, -1)
        h = torch.cat((m.cls_token.expand(n, -1, -1), tokens), dim=1)
        for blk in m.blocks:
            h = blk(h)
        h = m.norm(h)
        cells = h[:, 1:].reshape(n, groups, length, -1).mean(dim=1)
        return tokens_to_grid(cells, grid_shape(x, self.card.input.patch_size))
