"""Clay v1 (base) encoder for Sentinel-2 L2A, via TerraTorch's ``clay_v1`` backbone.

Clay generates its patch-embedding weights from each band's central wavelength and adds
encodings of the ground sampling distance (scaling the 2-D sin-cos position table), the
acquisition week and hour, and the latitude/longitude. eoembed builds them from each sample's
:class:`~eoembed.embedders.context.SampleContext` exactly as Clay's tutorials do
(``normalize_timestamp``/``normalize_latlon``); an unknown date or location is zeros (TerraTorch's
``Datacuber`` default), an unknown GSD the card's 10 m. The released checkpoint is a Lightning
file of the whole MAE (``state_dict`` with ``model.encoder.*``, decoder, teacher); only the
encoder is kept, renamed as TerraTorch's ``Embedder.transform_state_dict`` does.

``OutputSpec.pooled()`` is the class token, the embedding Clay's documentation publishes: its
tutorials (Clay-foundation/model ``docs/tutorials``) take ``unmsk_patch[:, 0, :]``, "the
class token, which is the overall single embedding"; the grid's mean stays available as
``"mean"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eoembed.bands import sentinel2
from eoembed.embedders.base import import_torch
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    PoolingRule,
    TokenLayout,
    WeightsSource,
)
from eoembed.embedders.tokens import split_batch
from eoembed.embedders.torch_embedder import TorchEmbedder, require
from eoembed.specs.output import REDUCTIONS

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = ["ClayV1Base", "clay_latlon", "clay_time"]

# Clay's configs/metadata.yaml, platform sentinel-2-l2a (band_order, mean, std, wavelength).
CLAY_S2 = {  # S2 band: (Clay name, mean, std, wavelength in micrometres)
    "B02": ("blue", 1105.0, 1809.0, 0.493),
    "B03": ("green", 1355.0, 1757.0, 0.56),
    "B04": ("red", 1552.0, 1888.0, 0.665),
    "B05": ("rededge1", 1887.0, 1870.0, 0.704),
    "B06": ("rededge2", 2422.0, 1732.0, 0.74),
    "B07": ("rededge3", 2630.0, 1697.0, 0.783),
    "B08": ("nir", 2743.0, 1742.0, 0.842),
    "B8A": ("nir08", 2785.0, 1648.0, 0.865),
    "B11": ("swir16", 2388.0, 1470.0, 1.61),
    "B12": ("swir22", 1835.0, 1379.0, 2.19),
}


def clay_time(ctx: SampleContext | None) -> tuple[float, float, float, float]:
    """(sin, cos) of the ISO week and of the hour (0 h: eoembed has dates only); zeros if unknown."""
    if ctx is None or ctx.date is None:
        return (0.0, 0.0, 0.0, 0.0)
    week = ctx.date.isocalendar().week * 2 * math.pi / 52
    return (math.sin(week), math.cos(week), 0.0, 1.0)


def clay_latlon(ctx: SampleContext | None) -> tuple[float, float, float, float]:
    """(sin, cos) of latitude and of longitude in radians; zeros when unknown."""
    if ctx is None or not ctx.has_location:
        return (0.0, 0.0, 0.0, 0.0)
    lat, lon = math.radians(ctx.lat), math.radians(ctx.lon)
    return (math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon))


class ClayV1Base(TorchEmbedder):
    """Clay v1 base: ViT-B, patch 8, 256 px chips, wavelength-conditioned patch embedding."""

    card = ModelCard(
        id="clay-v1-base",
        family="clay",
        summary=(
            "Clay v1 base (ViT-B/8, TerraTorch clay_v1) on ten Sentinel-2 L2A bands at 256 px;"
            " conditioned on band wavelengths, GSD, week and lat/lon; 32 x 32 patch-token grid."
        ),
        input=InputContract(
            collections=("sentinel-2-l2a",),
            processing_level="L2A",
            bands=sentinel2(*CLAY_S2),
            gsd_m=10.0,
            image_size=256,
            patch_size=8,
            normalisation=Normalisation(
                mean=tuple(v[1] for v in CLAY_S2.values()),
                std=tuple(v[2] for v in CLAY_S2.values()),
                note="Clay configs/metadata.yaml, sentinel-2-l2a bands.mean/std "
                     "(reflectance x 10000)",
            ),
            side_inputs=("wavelengths", "gsd", "latlon", "time"),
        ),
        embedding_dim=768,
        outputs=("pooled", "grid"),
        weights=WeightsSource(
            # terratorch 1.2.11 clay_v1.embedder default_cfgs; no commit/hash verifiable offline.
            repo_id="made-with-clay/Clay-legacy", filename="v1/clay-v1-base.ckpt",
            revision="main", sha256="", licence="Apache-2.0",
            url="https://huggingface.co/made-with-clay/Clay-legacy",
        ),
        licence="Apache-2.0",
        citation=(
            "Clay Foundation. Clay: an open-source foundation model for Earth observation, "
            "v1 (2024). https://clay-foundation.github.io/model/"
        ),
        reference="terratorch.models.backbones.clay_v1.embedder.Embedder (terratorch 1.2.11)",
        pooling=PoolingRule(
            default="cls", supported=("cls", *REDUCTIONS),
            source="Clay docs tutorials: embeddings = unmsk_patch[:, 0, :] (the class token)",
        ),
        tokens=TokenLayout(prefix_tokens=1, cls_index=0),
    )

    def create_model(self) -> torch.nn.Module:
        """TerraTorch's Clay v1 ``Embedder`` (base encoder) for the card's bands, random init."""
        embedder = require("terratorch.models.backbones.clay_v1.embedder", "terratorch")
        model: torch.nn.Module = embedder.Embedder(
            img_size=self.card.input.image_size, bands=[CLAY_S2[b][0] for b in CLAY_S2]
        )
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """``model.encoder.*`` -> ``clay_encoder.*``; decoder and teacher dropped."""
        prefix = "model.encoder."
        return {
            "clay_encoder." + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)
        }

    def _encode(self, x: torch.Tensor, context: Sequence[SampleContext | None], gsd: float
                ) -> torch.Tensor:
        th = import_torch()
        time = th.tensor([clay_time(c) for c in context], dtype=th.float32, device=x.device)
        latlon = th.tensor([clay_latlon(c) for c in context], dtype=th.float32, device=x.device)
        waves = th.tensor([v[3] for v in CLAY_S2.values()], dtype=th.float32, device=x.device)
        features = self.model.forward_features(x, time=time, latlon=latlon, waves=waves, gsd=gsd)
        tokens: torch.Tensor = features[-1]
        return tokens

    def forward_tokens(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Last-layer tokens (after the final norm): the class token, then 32 x 32 patches.

        Clay takes one GSD per batch, so samples are grouped by their GSD.
        """
        ctxs: list[SampleContext | None] = list(context) or [None] * len(x)
        gsds = [c.gsd_m if c is not None else self.card.input.gsd_m for c in ctxs]
        return split_batch(
            gsds, lambda idx: self._encode(x[idx], [ctxs[i] for i in idx], gsds[idx[0]])
        )
