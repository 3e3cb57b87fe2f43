"""Clay v1 (base) and v1.5 (large) encoders for Sentinel-2 L2A, via TerraTorch's Clay code.

Clay generates its patch-embedding weights from each band's central wavelength and adds
encodings of the ground sampling distance (scaling the 2-D sin-cos position table), the
acquisition week and hour, and the latitude/longitude. eoembed builds them from each sample's
:class:`~eoembed.embedders.context.SampleContext` exactly as Clay's tutorials do
(``normalize_timestamp``/``normalize_latlon`` in ``docs/tutorials/wall-to-wall.ipynb``:
``date.isocalendar().week`` and ``date.hour`` of the scene's UTC acquisition time, the same
``week_norm``/``hour_norm`` the pretraining chips carry in ``claymodel/datamodule.py``).
The hour is the sample's when its time of day is known (``SampleContext.date`` is a
``datetime``); a bare date gives week only, the hour pair zero (Clay's encoding of an unknown
input: the datamodule zeroes unknown ``time``/``latlon`` and TerraTorch's ``Datacuber``
defaults them to zeros). An unknown date or location is zeros; an unknown GSD the card's 10 m.

The released checkpoints are Lightning files of the whole MAE (``state_dict`` with
``model.encoder.*``, decoder, teacher, and for v1.5 the teacher projection ``proj``, plus the
optimizer, scheduler, loop and callback states and ``hyper_parameters``); only the encoder is
kept. They load with ``torch.load(weights_only=True)`` under
:func:`~eoembed.embedders.weights.lightning_checkpoint_globals` (inert types only).

``OutputSpec.pooled()`` is the class token, the embedding Clay's documentation publishes: its
tutorials (Clay-foundation/model ``docs/tutorials``) take ``unmsk_patch[:, 0, :]``, "the
class token, which is the overall single embedding"; the grid (patch tokens after the final
norm) and its mean stay available as ``OutputSpec.grid()`` and ``"mean"``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

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
from eoembed.embedders.weights import lightning_checkpoint_globals
from eoembed.specs.output import REDUCTIONS

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from eoembed.embedders.context import SampleContext

__all__ = ["ClayV1Base", "ClayV15", "clay_latlon", "clay_time"]

# Clay's configs/metadata.yaml, platform sentinel-2-l2a (band_order, mean, std, wavelength);
# the same values in the v1 and the v1.5 repository (Clay-foundation/model at a5790ce).
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
    """(sin, cos) of the ISO week and of the UTC hour, as Clay's ``normalize_timestamp``.

    The hour pair is zero when only the day is known (``date`` is not a ``datetime``); all
    four are zero without a date.
    """
    if ctx is None or ctx.date is None:
        return (0.0, 0.0, 0.0, 0.0)
    week = ctx.date.isocalendar().week * 2 * math.pi / 52
    if not isinstance(ctx.date, dt.datetime):
        return (math.sin(week), math.cos(week), 0.0, 0.0)
    stamp = ctx.date
    if stamp.tzinfo is not None:  # Clay's stamps are the scenes' UTC acquisition times
        stamp = stamp.astimezone(dt.UTC)
    hour = stamp.hour * 2 * math.pi / 24
    return (math.sin(week), math.cos(week), math.sin(hour), math.cos(hour))


def clay_latlon(ctx: SampleContext | None) -> tuple[float, float, float, float]:
    """(sin, cos) of latitude and of longitude in radians; zeros when unknown."""
    if ctx is None or not ctx.has_location:
        return (0.0, 0.0, 0.0, 0.0)
    lat, lon = math.radians(ctx.lat), math.radians(ctx.lon)
    return (math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon))


class _Clay(TorchEmbedder):
    """A Clay encoder; subclasses set ``card`` and build and run their network."""

    def load_checkpoint(self, path: Path) -> None:
        """Load under :func:`lightning_checkpoint_globals` (Clay's files are Lightning's)."""
        with lightning_checkpoint_globals():
            super().load_checkpoint(path)

    def _side_inputs(self, x: torch.Tensor, context: Sequence[SampleContext | None]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(time, latlon, waves) tensors as Clay's tutorials build them."""
        th = import_torch()
        time = th.tensor([clay_time(c) for c in context], dtype=th.float32, device=x.device)
        latlon = th.tensor([clay_latlon(c) for c in context], dtype=th.float32, device=x.device)
        waves = th.tensor([v[3] for v in CLAY_S2.values()], dtype=th.float32, device=x.device)
        return time, latlon, waves

    def _encode(self, x: torch.Tensor, context: Sequence[SampleContext | None], gsd: float
                ) -> torch.Tensor:
        """``(n, 1 + h * w, D)`` last-layer tokens of samples that share ``gsd``."""
        raise NotImplementedError

    def forward_tokens(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Last-layer tokens (after the final norm): the class token, then the patches.

        Clay takes one GSD per batch, so samples are grouped by their GSD.
        """
        ctxs: list[SampleContext | None] = list(context) or [None] * len(x)
        gsds = [c.gsd_m if c is not None else self.card.input.gsd_m for c in ctxs]
        return split_batch(
            gsds, lambda idx: self._encode(x[idx], [ctxs[i] for i in idx], gsds[idx[0]])
        )


_POOLING = PoolingRule(
    default="cls", supported=("cls", *REDUCTIONS),
    source="Clay docs tutorials: embeddings = unmsk_patch[:, 0, :] (the class token)",
)
_TOKENS = TokenLayout(prefix_tokens=1, cls_index=0)


def _input() -> InputContract:
    """The Sentinel-2 L2A contract both Clay releases share (metadata.yaml, 256 px chips)."""
    return InputContract(
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
    )


class ClayV1Base(_Clay):
    """Clay v1 base: ViT-B, patch 8, 256 px chips, wavelength-conditioned patch embedding."""

    card = ModelCard(
        id="clay-v1-base",
        family="clay",
        summary=(
            "Clay v1 base (ViT-B/8, TerraTorch clay_v1) on ten Sentinel-2 L2A bands at 256 px;"
            " conditioned on band wavelengths, GSD, week and lat/lon; 32 x 32 patch-token grid."
        ),
        input=_input(),
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
        pooling=_POOLING,
        tokens=_TOKENS,
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
        time, latlon, waves = self._side_inputs(x, context)
        features = self.model.forward_features(x, time=time, latlon=latlon, waves=waves, gsd=gsd)
        tokens: torch.Tensor = features[-1]
        return tokens


_V15_SIZE = {"dim": 1024, "depth": 24, "heads": 16, "dim_head": 64, "mlp_ratio": 4}
"""``clay_mae_large`` encoder arguments (Clay v1.5 is ``model_size: large``, configs/config.yaml)."""


class ClayV15(_Clay):
    """Clay v1.5: ViT-L, patch 8, 256 px chips, wavelength-conditioned patch embedding."""

    encoder_kwargs: ClassVar[dict[str, int]] = _V15_SIZE
    card = ModelCard(
        id="clay-v1.5",
        family="clay",
        summary=(
            "Clay v1.5 (ViT-L/8, TerraTorch clay_v15 Encoder) on ten Sentinel-2 L2A bands at"
            " 256 px; conditioned on band wavelengths, GSD, week/hour and lat/lon;"
            " 32 x 32 patch-token grid."
        ),
        input=_input(),
        embedding_dim=1024,
        outputs=("pooled", "grid"),
        weights=WeightsSource(
            # Clay's docs link .../made-with-clay/Clay/resolve/main/v1.5/clay-v1.5.ckpt; no
            # commit or file hash verifiable offline: unpinned (the commit loaded is recorded).
            repo_id="made-with-clay/Clay", filename="v1.5/clay-v1.5.ckpt",
            revision="main", sha256="", licence="Apache-2.0",
            url="https://huggingface.co/made-with-clay/Clay",
        ),
        licence="Apache-2.0",
        citation=(
            "Clay Foundation. Clay: an open-source foundation model for Earth observation, "
            "v1.5 (2025). https://clay-foundation.github.io/model/"
        ),
        reference=(
            "terratorch.models.backbones.clay_v15.model.Encoder (clay_mae_large arguments, "
            "mask_ratio=0, shuffle=False; terratorch 1.2.11) = claymodel.model.Encoder"
        ),
        pooling=_POOLING,
        tokens=_TOKENS,
    )

    def create_model(self) -> torch.nn.Module:
        """TerraTorch's Clay v1.5 ``Encoder`` (large), unmasked and unshuffled, random init."""
        clay_model = require("terratorch.models.backbones.clay_v15.model", "terratorch")
        model: torch.nn.Module = clay_model.Encoder(
            mask_ratio=0.0, patch_size=self.card.input.patch_size, shuffle=False,
            **self.encoder_kwargs,
        )
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """``model.encoder.*`` -> encoder keys; decoder, teacher and ``proj`` dropped."""
        prefix = "model.encoder."
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    def _encode(self, x: torch.Tensor, context: Sequence[SampleContext | None], gsd: float
                ) -> torch.Tensor:
        th = import_torch()
        time, latlon, waves = self._side_inputs(x, context)
        cube = {"pixels": x, "time": time, "latlon": latlon, "waves": waves,
                "gsd": th.tensor(gsd, dtype=th.float32)}
        tokens: torch.Tensor = self.model(cube)[0]  # mask_ratio 0, no shuffle: all, in order
        return tokens
