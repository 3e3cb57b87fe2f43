"""AgriFM (Li et al. 2025) on Sentinel-2 time series, from the original model code.

No maintained package provides AgriFM, so its Sentinel-2 encoder is vendored from rs-embed
0.3.1 (:mod:`eoembed.embedders._vendor.agrifm`, Apache-2.0): the upstream
``PretrainingSwinTransformer3DEncoder``, a ``SwinPatchEmbed3D`` (10 bands, patches of 4 frames x
2 x 2 pixels, 128 wide) feeding a modified Video Swin-B (depths 2-2-18-2, heads 4-8-16-32,
window 8 frames x 7 x 7 tokens) whose patch merging halves time with space
(``downsample_steps`` 2 x 2 x 2, ``mean_frame_down``), configured as in the release's
``configs/cropland_mapping.py``.

Input: the 10 Sentinel-2 bands of that config (B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12), as a
chronological series ``(N, T, 10, H, W)`` of 1 to :data:`FRAMES` frames (the config's
``num_frames``) or one image ``(N, 10, H, W)``. AgriFM takes no dates: frame order is all the
time it sees. Frames are standardised with the config's S2 mean and standard deviation
(``MapNormalize``, in provider DN) and resized to :data:`IMAGE_SIZE` px (``MapResize``,
bilinear; the cropland config trains at 256, rs-embed's adapter uses 224, a whole number of
7-token windows). The patch embedding zero-pads a series to a multiple of 4 frames itself, so
a single image runs as a one-frame series (rs-embed's adapter instead repeats it 8 times).

Output: the encoder's ``encoder_features``, the last stage after its LayerNorm, 1024 wide with
the frames merged away (any T <= 32 ends in one temporal slice), one cell per 16 x 16 input
pixels: the grid. The pooled embedding is its spatial mean (rs-embed's pooling).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from eoembed.bands import sentinel2
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    PoolingRule,
    WeightsSource,
)
from eoembed.embedders.torch_embedder import TorchEmbedder, require
from eoembed.errors import CapabilityError

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = ["BACKBONE_CFG", "PATCH_EMBED_CFG", "AgriFM"]

BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
"""AgriFM's S2 channels, in order (``in_chans=10``; rs-embed's ``_S2_10_BANDS``)."""
S2_MEAN = (
    4179.192015478227, 4065.9106675194444, 3957.274910960156, 5207.452475253116,
    4327.12234687, 4873.16102239, 5049.1637925, 5111.07806856, 3056.86349163, 2490.9675032,
)
S2_STD = (
    4041.5212325268735, 3691.003119315892, 3629.331318356375, 2973.5178530908756,
    3569.73343885, 3085.9151435, 2937.56005119, 2806.04462314, 1808.30013156, 1694.20220774,
)
"""``mean['S2']`` / ``std['S2']`` of AgriFM ``configs/cropland_mapping.py`` (DN, L2A)."""
IMAGE_SIZE = 224
PATCH_SIZE = 16
"""Input pixels per output cell: 2 in the patch embedding, then three 2 x 2 merges."""
FRAMES = 32
"""``num_frames`` of the cropland config; more frames would leave two temporal slices."""
DIM = 1024

PATCH_EMBED_CFG: dict[str, Any] = {
    "type": "SwinPatchEmbed3D", "patch_size": (4, 2, 2), "in_chans": 10, "embed_dim": 128,
}
BACKBONE_CFG: dict[str, Any] = {
    "type": "SwinTransformer3D", "pretrained": None, "pretrained2d": False,
    "patch_size": (4, 2, 2), "embed_dim": 128, "depths": [2, 2, 18, 2],
    "num_heads": [4, 8, 16, 32], "window_size": (8, 7, 7), "out_indices": (0, 1, 2, 3),
    "mlp_ratio": 4.0, "qkv_bias": True, "qk_scale": None, "drop_rate": 0.0,
    "attn_drop_rate": 0.0, "drop_path_rate": 0.2, "patch_norm": False, "frozen_stages": -1,
    "use_checkpoint": False, "downsample_steps": ((2, 2, 2),) * 4, "feature_fusion": "cat",
    "mean_frame_down": True,
}
"""``encoders_cfg['S2']`` of AgriFM ``configs/cropland_mapping.py`` (as rs-embed builds it)."""

_CITATION = (
    "Li, W., Liang, S., Chen, K., Chen, Y., Ma, H., Xu, J., Ma, Y., Guan, S., Fang, H., "
    "Shi, Z. AgriFM: A Multi-source Temporal Remote Sensing Foundation Model for Crop "
    "Mapping. arXiv:2505.21357 (2025). https://arxiv.org/abs/2505.21357"
)
_WEIGHTS = WeightsSource(
    repo_id="",
    filename="AgriFM.pth",
    revision="",
    sha256="",
    licence="Apache-2.0 (the AgriFM repository's licence)",
    url="https://github.com/flyakon/AgriFM#model-training",
    download_url="https://glass.hku.hk/casual/AgriFM/AgriFM.pth",
)


def _revise_key(key: str) -> str:
    """The publisher's loader's key edits: ``^module.`` dropped, ``S2_patch_emd`` renamed."""
    return key.removeprefix("module.").replace("S2_patch_emd", "patch_emd")


class AgriFM(TorchEmbedder):
    """AgriFM's S2 encoder (Video Swin-B, 88M parameters): S2 series -> 1024-d grid."""

    card = ModelCard(
        id="agrifm",
        family="agrifm",
        summary=(
            "AgriFM Video-Swin-B S2 encoder (crop-mapping pretraining), S2 L2A 10-band time "
            "series (1-32 frames, no dates) at 224 px; 1024-d last-stage grid (14 x 14)."
        ),
        input=InputContract(
            collections=("sentinel-2-l2a",),
            processing_level="L2A",
            bands=sentinel2(*BANDS),
            gsd_m=10.0,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            normalisation=Normalisation(
                scale=1.0,
                mean=S2_MEAN,
                std=S2_STD,
                note=(
                    "per band (x - mean) / std on DN, the S2 statistics of AgriFM "
                    "configs/cropland_mapping.py (MapNormalize), as rs-embed's 'agrifm_stats'"
                ),
            ),
            frames=FRAMES,
        ),
        embedding_dim=DIM,
        outputs=("pooled", "grid"),
        pooling=PoolingRule(source="the grid's spatial mean (rs-embed's pooling)"),
        weights=_WEIGHTS,
        licence="Apache-2.0",
        citation=_CITATION,
        reference=(
            "AgriFM PretrainingSwinTransformer3DEncoder(SwinPatchEmbed3D, SwinTransformer3D) "
            "forward(x, mode='tensor')['encoder_features'] (github.com/flyakon/AgriFM "
            "AgriFM/models/video_swin_transformer.py, vendored from rs-embed 0.3.1)"
        ),
    )

    encoder_prefixes: ClassVar[tuple[str, ...]] = ("patch_emd.", "backbone.")
    """Entries the S2 encoder has; others (the ``HLSL30_``/``Modis_`` patch embeddings of the
    other sources, anything else in the file) the publisher's loader skips (strict=False)."""

    def create_model(self) -> torch.nn.Module:
        """The release's S2 encoder, randomly initialised."""
        require("einops", "agrifm")
        # Imported as a module object: the vendored code is untyped.
        vendored: Any = importlib.import_module(
            "eoembed.embedders._vendor.agrifm.video_swin_transformer"
        )
        model: torch.nn.Module = vendored.PretrainingSwinTransformer3DEncoder(
            patch_emd_cfg=PATCH_EMBED_CFG, backbone_cfg=BACKBONE_CFG
        )
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """Keys as the publisher's ``init_cfg`` loading revises them, the S2 encoder's only.

        ``relative_position_index`` buffers are fixed functions of the window; where a file
        leaves them out (as Swin checkpoints often do) the model's own are kept.
        """
        out = {}
        for key, value in state.items():
            key = _revise_key(key)
            if key.startswith(self.encoder_prefixes):
                out[key] = value
        own = self.model.state_dict()
        for key, value in own.items():
            if key.endswith("relative_position_index") and key not in out:
                out[key] = value
        return out

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``(n, [T,] 10, H, W)`` -> ``encoder_features`` ``(n, 1024, H/16, W/16)``."""
        frames = x if x.ndim == 5 else x[:, None]
        grid: torch.Tensor = self.model(frames, mode="tensor")["encoder_features"]
        if grid.shape[1] != DIM:  # 'cat' fusion stacks slices: only past 32 frames
            raise CapabilityError(
                f"model {self.card.id!r} takes at most {FRAMES} frames, got {frames.shape[1]}"
            )
        return grid
