"""FoMo-Net_1 (Bountos et al. 2025, FoMo-Bench): one ViT for any set of spectral bands.

Architecture. FoMo-Net_1 (FoMo-Bench ``model_zoo/multimodal_mae.py``, ``MultiSpectralViT``
with ``single_embedding_layer=True``) is lucidrains' vit-pytorch ViT run on one band at a
time: every band is cut into 16 x 16 patches by the *shared* one-channel patch embedding
(LayerNorm, Linear, LayerNorm), gets the learned embedding of its band (one of 37 band keys,
``spectral_embedding``) and the patch's position embedding, and the tokens of all bands are
concatenated (no class token) and run through vit-pytorch's pre-norm ``Transformer``
(768 wide, 12 blocks, 12 heads of 64, MLP 2048, final LayerNorm). The patch embedding and the
transformer are built by the maintained ``vit-pytorch`` package (``vit_pytorch.vit.ViT``,
whose module names are those of the released checkpoint); eoembed adds the band embedding
parameter and the per-band tokenisation. The release stores ``pos_embedding`` and
``cls_token`` with a leading batch axis, which is dropped on load; the classifier head
(``mlp_head``) is not used.

Input. The 12 Sentinel-2 bands other than B10, keyed 6-15, 17, 18 in FoMo's
``modality_channels`` (``sentinel-2-b1`` ... ``sentinel-2-b12``, B10 being key 16), as
reflectance (DN / 10000, as rs-embed's ``fomo`` adapter feeds them) at 64 x 64 pixels
(``--image_size 64`` in FoMo-Bench's ``examples/pretrained_fomo_example.py``).

Outputs. ``grid``: for each 16 x 16 patch, the mean over the 12 bands of its last-layer
tokens (4 x 4 cells at 64 px; rs-embed's "spectral_mean_patch_tokens"). ``pooled``: the mean
of all tokens, which equals the mean of the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from eoembed.bands import sentinel2
from eoembed.embedders.base import import_torch
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

__all__ = ["FOMO_S2_KEYS", "FoMoNet1"]

FOMO_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
FOMO_S2_KEYS = (6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18)
"""FoMo ``modality_channels`` keys of :data:`FOMO_BANDS` (``sentinel-2-b1`` is 6, b10 is 16)."""
NUM_BAND_KEYS = 37
"""Entries of FoMo-Bench's ``modality_channels`` (Planet, S1, S2, Landsat, aerial, DEM, GF2);
``spectral_embedding`` has one more row."""
IMAGE_SIZE = 64
PATCH_SIZE = 16
DIM = 768
_VIT_ARGS: dict[str, Any] = {
    "image_size": IMAGE_SIZE, "patch_size": PATCH_SIZE, "dim": DIM, "depth": 12, "heads": 12,
    "mlp_dim": 2048, "dim_head": 64, "channels": 1,
}
"""FoMo-Net_1's configuration (FoMo-Bench ``examples/pretrained_fomo_example.py`` defaults)."""

_CITATION = (
    "Bountos, N. I., Ouaknine, A., Papoutsis, I., Rolnick, D. FoMo: Multi-Modal, "
    "Multi-Scale and Multi-Task Remote Sensing Foundation Models for Forest Monitoring. "
    "Proceedings of the AAAI Conference on Artificial Intelligence 39(27), 27858-27868 (2025). "
    "https://arxiv.org/abs/2312.10114"
)
_WEIGHTS = WeightsSource(
    repo_id="",
    filename="fomo_single_embedding_layer_weights.pt",
    revision="",
    sha256="",
    licence="not stated (FoMo-Bench code is MIT)",
    url="https://github.com/RolnickLab/FoMo-Bench#loading-pretrained-fomo-net",
    download_url=(
        "https://www.dropbox.com/scl/fi/4ckmxlcbc0tcod8hknp7c/"
        "fomo_single_embedding_layer_weights.pt?rlkey=26tlf3yaz93vvcosr0qrvklub&dl=1"
    ),
)


class FoMoNet1(TorchEmbedder):
    """FoMo-Net_1 on the 12 Sentinel-2 bands (B10 excluded)."""

    ignored_keys: ClassVar[tuple[str, ...]] = ("mlp_head.",)
    card = ModelCard(
        id="fomo-net1",
        family="fomo",
        summary=(
            "FoMo-Net_1 ViT-B/16 over per-band tokens of 12 S2 bands at 64 px; 768-d band-mean "
            "patch tokens on a 4 x 4 grid."
        ),
        input=InputContract(
            collections=("sentinel-2-l2a", "sentinel-2-l1c"),
            processing_level="any",
            bands=sentinel2(*FOMO_BANDS),
            gsd_m=10.0,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            unit="reflectance",
            normalisation=Normalisation(
                note=(
                    "DN / 10000 (reflectance), as rs-embed's fomo adapter ('unit_scale'); "
                    "FoMo-Bench publishes no fixed statistics for FoMo-Net_1"
                ),
            ),
        ),
        embedding_dim=DIM,
        outputs=("pooled", "grid"),
        pooling=PoolingRule(source="the mean of all tokens (rs-embed's fomo adapter)"),
        weights=_WEIGHTS,
        licence="FoMo-Bench code MIT; the weights' licence is not stated",
        citation=_CITATION,
        reference=(
            "vit_pytorch.vit.ViT(image_size=64, patch_size=16, num_classes=1000, dim=768, "
            "depth=12, heads=12, mlp_dim=2048, channels=1) (vit-pytorch 1.26.11) modules, "
            "run per band as FoMo-Bench's MultiSpectralViT.forward(pool=False)"
        ),
    )

    def create_model(self) -> torch.nn.Module:
        """vit-pytorch's ViT (one input channel, no head) plus FoMo's band embeddings."""
        vit_module = require("vit_pytorch.vit", "fomo")
        th = import_torch()
        model: torch.nn.Module = vit_module.ViT(num_classes=0, **_VIT_ARGS)
        model.register_parameter(
            "spectral_embedding", th.nn.Parameter(th.randn(1, NUM_BAND_KEYS + 1, DIM))
        )
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """FoMo's ``(1, N, D)`` position / class parameters -> vit-pytorch's ``(N, D)``."""
        out = {}
        for key, value in state.items():
            for prefix in ("module.", "model."):
                key = key.removeprefix(prefix)
            if key in ("pos_embedding", "cls_token") and value.ndim == 3:
                value = value[0]
            out[key] = value
        return out

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 12, 64, 64)`` -> last-layer tokens ``(n, 12, 16, D)``, band-major."""
        model = self.model
        n, bands, height, width = x.shape
        patches = model.to_patch_embedding(x.reshape(n * bands, 1, height, width))
        tokens = patches.reshape(n, bands, -1, patches.shape[-1])
        keys = list(FOMO_S2_KEYS)
        tokens = tokens + model.spectral_embedding[0, keys][None, :, None, :]
        tokens = tokens + model.pos_embedding[1 : tokens.shape[2] + 1][None, None]
        out: torch.Tensor = model.transformer(tokens.reshape(n, -1, tokens.shape[-1]))
        return out.reshape(n, bands, -1, out.shape[-1])

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Band-mean of each patch's tokens, as ``(n, D, h, w)``."""
        return tokens_to_grid(self._tokens(x).mean(dim=1), grid_shape(x, PATCH_SIZE))
