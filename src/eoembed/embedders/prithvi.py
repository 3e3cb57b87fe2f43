"""Prithvi-EO 1.0 and 2.0 (NASA/IBM) encoders for HLS-style six-band imagery, via TerraTorch.

TerraTorch builds the ``PrithviViT`` encoder (``terratorch.models.backbones.prithvi_vit``);
the released checkpoints are whole masked autoencoders (``encoder.*``/``decoder.*``, or the flat
Prithvi 1.0 layout), converted here as TerraTorch's ``checkpoint_filter_fn_vit`` does: decoder
dropped, ``encoder.`` stripped, and the fixed sin-cos position table rebuilt for one frame.

Frames. The released models were pretrained on time series (3 frames for 1.0, 4 for the 2.0
models but tiny). They take one composite by default, or up to that many frames
(``get_embedding(..., frames=T)``): pixels ``(N, T, C, H, W)`` go in as TerraTorch's
``(N, C, T, H, W)`` with ``num_frames=T``, so the fixed sin-cos position table is rebuilt for
T frames as TerraTorch does. The grid cell is the mean over frames of that patch's tokens
(TerraTorch's ``prepare_features_for_image_model`` stacks the frames along channels instead,
which would make the dimension depend on T).

The ``-tl`` models add sin-cos encodings of (year, day of year), per frame, and (lat, lon) from
each sample's :class:`~eoembed.embedders.context.SampleContext` (a frame without its own date
takes the sample's); samples with an unknown date or location get no such encoding, as the
original forward does when the coordinates are ``None``.

Location order: latitude first. The encoder's ``LocationEncoder`` (``prithvi_mae.py``, the
model code the Prithvi-EO-2.0 release ships and TerraTorch maintains) documents its input as
"lat and lon" and embeds column 0 with the latitude half of the channels; the datasets the
Prithvi team wrote for the paper's TL fine-tuning (TerraTorch ``FireScarsNonGeo``,
``MultiTemporalCropClassification``, ``BurnIntensityNonGeo``, ``Sen1Floods11NonGeo``) all
feed ``[lat, lon]`` of the tile centre. The release's demo ``inference.py`` passes rasterio's
``lnglat()`` ((lon, lat)) instead; it disagrees with the model code and the training-side
datasets, so it is not followed. The pretraining data loader itself is not published.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from eoembed.bands import sentinel2
from eoembed.embedders.base import import_torch
from eoembed.embedders.card import InputContract, ModelCard, Normalisation, WeightsSource
from eoembed.embedders.torch_embedder import TorchEmbedder, require

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = [
    "PrithviEOV1100",
    "PrithviEOV2300",
    "PrithviEOV2300TL",
    "PrithviEOV2600",
    "PrithviEOV2600TL",
    "PrithviEOV2100TL",
    "PrithviEOV2TinyTL",
    "location_coords",
    "temporal_coords",
]

BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
"""HLS BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2 (TerraTorch ``PRETRAINED_BANDS``)."""

V1_MEAN = (775.2290211032589, 1080.992780391705, 1228.5855250417867,
           2497.2022620507532, 2204.2139147975554, 1610.8324823273745)
V1_STD = (1281.526139861424, 1270.0297974547493, 1399.4802505642526,
          1368.3446143747644, 1291.6764008585435, 1154.505683480695)
V2_MEAN = (1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0)
V2_STD = (2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0)

_V1_NOTE = ("Prithvi-EO-1.0-100M config (data_mean/data_std, HLS reflectance x 10000); "
            "TerraTorch's PRITHVI_V1_MEAN/STD round these")
_V2_NOTE = ("Prithvi-EO-2.0 config.json mean/std (HLS reflectance x 10000) = TerraTorch "
            "prithvi_vit.PRITHVI_V2_MEAN/PRITHVI_V2_STD")

_CITATION_V1 = (
    "Jakubik, J., Roy, S., Phillips, C. E., et al. Foundation Models for Generalist Geospatial "
    "Artificial Intelligence. arXiv:2310.18660 (2023)."
)
_CITATION_V2 = (
    "Szwarcman, D., Roy, S., Fraccaro, P., et al. Prithvi-EO-2.0: A Versatile Multi-Temporal "
    "Foundation Model for Earth Observation Applications. arXiv:2412.02732 (2024)."
)


def temporal_coords(date: dt.date) -> tuple[float, float]:
    """(year, day of year, 1-based) as Prithvi-EO-2.0's ``inference.py`` reads HLS names."""
    return float(date.year), float(date.timetuple().tm_yday)


def location_coords(ctx: SampleContext) -> tuple[float, float]:
    """(lat, lon) in degrees, the order ``LocationEncoder`` and the TL datasets use."""
    return float(ctx.lat), float(ctx.lon)


def _weights(repo: str, filename: str) -> WeightsSource:
    # No commit or file hash for these files could be verified offline: unpinned.
    return WeightsSource(
        repo_id=f"ibm-nasa-geospatial/{repo}", filename=filename, revision="main", sha256="",
        licence="Apache-2.0", url=f"https://huggingface.co/ibm-nasa-geospatial/{repo}",
    )


def _card(
    model_id: str, variant: str, dim: int, patch: int, weights: WeightsSource, *, v1: bool,
    tl: bool, frames: int,
) -> ModelCard:
    side = (" Takes (year, day of year) and (lat, lon) encodings from each sample (lat first,"
            " as prithvi_mae.LocationEncoder and TerraTorch's TL datasets)." if tl else "")
    return ModelCard(
        id=model_id,
        family="prithvi",
        summary=(
            f"Prithvi-EO {'1.0' if v1 else '2.0'} ViT ({variant}, TerraTorch) on six HLS bands;"
            f" pretrained with num_frames={frames}; takes one composite"
            + (f" or up to {frames} frames (grid: mean over frames)" if frames > 1 else "")
            + f"; {224 // patch} x {224 // patch} patch-token grid.{side}"
        ),
        input=InputContract(
            collections=("hls-s30", "hls-l30", "sentinel-2-l2a"),
            processing_level="L2A",
            bands=sentinel2(*BANDS),
            gsd_m=30.0,
            image_size=224,
            patch_size=patch,
            normalisation=Normalisation(
                mean=V1_MEAN if v1 else V2_MEAN, std=V1_STD if v1 else V2_STD,
                note=_V1_NOTE if v1 else _V2_NOTE,
            ),
            frames=frames,
            side_inputs=("latlon", "time") if tl else (),
        ),
        embedding_dim=dim,
        outputs=("pooled", "grid"),
        weights=weights,
        licence="Apache-2.0",
        citation=_CITATION_V1 if v1 else _CITATION_V2,
        reference=f"terratorch.models.backbones.prithvi_vit.{variant} (terratorch 1.2.11)",
    )


class _Prithvi(TorchEmbedder):
    """Prithvi ViT encoder; subclasses set ``card``, ``variant`` and ``tl``."""

    variant: ClassVar[str]
    """TerraTorch backbone name (``prithvi_eo_v2_300_tl``...)."""
    tl: ClassVar[bool] = False
    """Whether the model takes temporal and location encodings."""

    def create_model(self) -> torch.nn.Module:
        """TerraTorch's registered Prithvi backbone for one frame, randomly initialised."""
        prithvi_vit = require("terratorch.models.backbones.prithvi_vit", "terratorch")
        model: torch.nn.Module = getattr(prithvi_vit, self.variant)(pretrained=False, num_frames=1)
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """MAE checkpoint -> encoder keys, as TerraTorch's ``checkpoint_filter_fn_vit``."""
        out: dict[str, Any] = {}
        for key, value in state.items():
            key = key.replace("_timm_module.", "")
            if "decoder" in key or "_dec" in key or key == "mask_token":
                continue
            key = key.removeprefix("encoder.")
            if key == "pos_embed":
                # Fixed sin-cos table; its size depends on num_frames (1 here).
                value = self.model.pos_embed
            out[key] = value
        return out

    def _encode(
        self, x: torch.Tensor, time: torch.Tensor | None, latlon: torch.Tensor | None
    ) -> torch.Tensor:
        """``(n, C, H, W)`` or ``(n, T, C, H, W)`` -> ``(n, D, h, w)``, frames averaged."""
        frames = 1 if x.ndim == 4 else x.shape[1]
        if x.ndim == 5:
            x = x.permute(0, 2, 1, 3, 4)  # TerraTorch's (n, C, T, H, W)
        model: Any = self.model
        # The temporal encoding splits tokens by ``num_frames``; the model was built for one.
        # (Set per call: one embedder is not meant to run forwards from several threads.)
        model.num_frames = frames
        try:
            tokens = model.forward_features(x, temporal_coords=time, location_coords=latlon)[-1]
        finally:
            model.num_frames = 1
        h, w = (s // self.card.input.patch_size for s in x.shape[-2:])
        grid = tokens[:, 1:].reshape(len(x), frames, h, w, -1).mean(dim=1)
        out: torch.Tensor = grid.permute(0, 3, 1, 2)
        return out

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``(n, D, h, w)`` patch tokens of the last block (after the final norm, cls dropped).

        TL models: samples are grouped by which coordinates they have, since the original
        forward takes coordinates for the whole batch or none.
        """
        if not self.tl or not context:
            return self._encode(x, None, None)
        th = import_torch()
        frames = 1 if x.ndim == 4 else x.shape[1]
        groups: dict[tuple[bool, bool], list[int]] = {}
        for i, ctx in enumerate(context):
            groups.setdefault((_dates(ctx, frames) is not None, ctx.has_location), []).append(i)
        out: torch.Tensor | None = None
        for (has_time, has_loc), idx in groups.items():
            sub = [context[i] for i in idx]
            time = latlon = None
            if has_time:
                time = th.tensor([[temporal_coords(d) for d in _dates(c, frames) or ()]
                                  for c in sub], dtype=th.float32, device=x.device)
            if has_loc:
                latlon = th.tensor([location_coords(c) for c in sub], dtype=th.float32,
                                   device=x.device)
            if len(groups) == 1:
                return self._encode(x, time, latlon)
            grid = self._encode(x[idx], time, latlon)
            if out is None:
                out = grid.new_empty((len(x), *grid.shape[1:]))
            out[idx] = grid
        assert out is not None
        return out


def _dates(ctx: SampleContext, frames: int) -> tuple[dt.date, ...] | None:
    """Each frame's date (:meth:`SampleContext.dates`); None if any is unknown."""
    dates = ctx.dates(frames)
    if any(d is None for d in dates):
        return None
    return tuple(d for d in dates if d is not None)


class PrithviEOV1100(_Prithvi):
    """Prithvi-EO-1.0 100M (ViT-B/16, 3-frame pretraining)."""

    variant = "prithvi_eo_v1_100"
    card = _card("prithvi-eo-v1-100", variant, 768, 16,
                 _weights("Prithvi-EO-1.0-100M", "Prithvi_EO_V1_100M.pt"), v1=True, tl=False,
                 frames=3)


class PrithviEOV2TinyTL(_Prithvi):
    """Prithvi-EO-2.0 tiny TL (ViT-Ti/16 width 192, with time and location encodings)."""

    variant = "prithvi_eo_v2_tiny_tl"
    tl = True
    card = _card("prithvi-eo-v2-tiny-tl", variant, 192, 16,
                 _weights("Prithvi-EO-2.0-tiny-TL", "Prithvi_EO_V2_tiny_TL.pt"), v1=False,
                 tl=True, frames=1)


class PrithviEOV2100TL(_Prithvi):
    """Prithvi-EO-2.0 100M TL (ViT-B/16 with time and location encodings)."""

    variant = "prithvi_eo_v2_100_tl"
    tl = True
    card = _card("prithvi-eo-v2-100-tl", variant, 768, 16,
                 _weights("Prithvi-EO-2.0-100M-TL", "Prithvi_EO_V2_100M_TL.pt"), v1=False,
                 tl=True, frames=4)


class PrithviEOV2300(_Prithvi):
    """Prithvi-EO-2.0 300M (ViT-L/16)."""

    variant = "prithvi_eo_v2_300"
    card = _card("prithvi-eo-v2-300", variant, 1024, 16,
                 _weights("Prithvi-EO-2.0-300M", "Prithvi_EO_V2_300M.pt"), v1=False, tl=False,
                 frames=4)


class PrithviEOV2300TL(_Prithvi):
    """Prithvi-EO-2.0 300M TL (ViT-L/16 with time and location encodings)."""

    variant = "prithvi_eo_v2_300_tl"
    tl = True
    card = _card("prithvi-eo-v2-300-tl", variant, 1024, 16,
                 _weights("Prithvi-EO-2.0-300M-TL", "Prithvi_EO_V2_300M_TL.pt"), v1=False,
                 tl=True, frames=4)


class PrithviEOV2600(_Prithvi):
    """Prithvi-EO-2.0 600M (ViT-H/14)."""

    variant = "prithvi_eo_v2_600"
    card = _card("prithvi-eo-v2-600", variant, 1280, 14,
                 _weights("Prithvi-EO-2.0-600M", "Prithvi_EO_V2_600M.pt"), v1=False, tl=False,
                 frames=4)


class PrithviEOV2600TL(_Prithvi):
    """Prithvi-EO-2.0 600M TL (ViT-H/14 with time and location encodings)."""

    variant = "prithvi_eo_v2_600_tl"
    tl = True
    card = _card("prithvi-eo-v2-600-tl", variant, 1280, 14,
                 _weights("Prithvi-EO-2.0-600M-TL", "Prithvi_EO_V2_600M_TL.pt"), v1=False,
                 tl=True, frames=4)
