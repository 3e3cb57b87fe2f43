"""Galileo encoders (Tseng et al. 2025, nasaharvest) on Sentinel-2, from the original code.

No maintained package ships Galileo, so the encoder is the authors' ``single_file_galileo.py``
vendored in :mod:`eoembed.embedders._vendor.galileo` (MIT), built from the released
``models/<size>/config.json`` settings (written out below, so only ``encoder.pt`` is
downloaded) and loaded strictly from the Hugging Face repository ``nasaharvest/galileo``
(``models/<size>/encoder.pt``, the file the upstream ``Encoder.load_from_folder`` reads; its
``.backbone`` key infix is dropped as that loader does).

Input: the ten Sentinel-2 bands of Galileo's space-time group (B2 B3 B4 B5 B6 B7 B8 B8A B11
B12; its pretraining read ``COPERNICUS/S2_HARMONIZED``, i.e. L1C) as one image or a series of
up to 12 frames (``(N, T, 10, H, W)``; Galileo pretrained on up to 12 monthly steps),
normalised as its pretraining ``Normalizer(std=True)`` does: ``(x - (mean - 2 std)) / (4 std)``
with ``config/normalization.json``. They fill the S2 channels of Galileo's space-time tensor;
its S2 channel groups (RGB, red edge, NIR 10 m, NIR 20 m, SWIR) are visible and every other
group (S1, NDVI, the space, time and other static inputs) is masked, as the upstream
``construct_galileo_input(s2=..., latlon=...)`` packs an S2 sample with its location. Where
the sample's lat/lon are known, the static ``location`` group is visible and holds
``to_cartesian(lat, lon)`` (``src/data/utils.py`` and ``src/data/dataset.py``: unit-sphere
x, y, z from the tile centre, as pretraining fed every tile; its normalisation is shift 0,
divide by 1); unknown, it stays masked. Each frame's month (0 = January) comes from
``SampleContext.frame_dates`` (series) or ``SampleContext.date``; without a date, upstream's
``DEFAULT_MONTH`` (5, June).

Tokens are 8 x 8 pixel patches (the largest FlexiPatch size the projections were trained at)
of 64 x 64 pixel images (rs-embed's default size; larger regions are resized, or tiled with
``input_prep="tile"``). The encoder's ``input_resolution_m`` stays at its 10 m default: Galileo
was pretrained on 10 m pixels only. Grid: the encoder's own
``apply_mask_and_average_tokens_per_patch`` (per patch, the mean of the visible tokens over
channel groups and frames); pooled: its ``average_tokens`` (mean of all visible tokens).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from eoembed.bands import sentinel2
from eoembed.embedders.base import import_torch
from eoembed.embedders.card import InputContract, ModelCard, Normalisation, WeightsSource
from eoembed.embedders.torch_embedder import TorchEmbedder, require

if TYPE_CHECKING:
    import datetime as dt

    import torch

    from eoembed.embedders.context import SampleContext

__all__ = ["STATS", "GalileoBase", "GalileoNano", "GalileoTiny", "to_cartesian"]

_VENDOR = "eoembed.embedders._vendor.galileo.single_file_galileo"

_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
"""Galileo's ``S2_BANDS`` (B2 ... B12), in its order."""

STATS: dict[str, tuple[float, float]] = {
    "B02": (1395.3408730676722, 917.7041440370853),
    "B03": (1338.4026921784578, 913.2988423581528),
    "B04": (1343.09883810357, 1092.678723527555),
    "B05": (1543.8607982512297, 1047.2206083460424),
    "B06": (2186.2022069512263, 1048.0101611156767),
    "B07": (2525.0932853316694, 1143.6903026819996),
    "B08": (2410.3377187373408, 1098.979177731649),
    "B8A": (2750.2854646886753, 1204.472755085893),
    "B11": (2234.911100061487, 1145.9774063078878),
    "B12": (1474.5311266077113, 980.2429840007796),
}
"""(mean, std) of the S2 entries of the 13 space-time bands in nasaharvest/galileo
``config/normalization.json`` (key ``"13"``), in DN."""
_STD_MULTIPLIER = 2.0
"""``Normalizer(std=True, std_multiplier=2)``: [mean - 2 std, mean + 2 std] -> [0, 1]."""

_PATCH = 8
_IMAGE = 64
_FRAMES = 12
_DEFAULT_MONTH = 5
"""``src/data/utils.py`` ``DEFAULT_MONTH``: the month index used when none is given."""
_REPO = "nasaharvest/galileo"

_CITATION = (
    "Tseng, G., Fuller, A., Reil, M., Herzog, H., Beukema, P., Bastani, F., Green, J. R., "
    "Shelhamer, E., Kerner, H., Rolnick, D. Galileo: Learning Global & Local Features of "
    "Many Remote Sensing Modalities. arXiv:2502.09356 (2025). https://arxiv.org/abs/2502.09356"
)


def _normalisation() -> Normalisation:
    lo = [STATS[b][0] - _STD_MULTIPLIER * STATS[b][1] for b in _BANDS]
    width = [2 * _STD_MULTIPLIER * STATS[b][1] for b in _BANDS]
    return Normalisation(
        scale=1.0, mean=tuple(lo), std=tuple(width),
        note=(
            "Galileo pretraining Normalizer(std=True): (x - (mean - 2 std)) / (4 std), band "
            "statistics from nasaharvest/galileo config/normalization.json (space-time bands)"
        ),
    )


def _card(model_id: str, size: str, dim: int, params: str) -> ModelCard:
    # No commit or file hash of the Hub files could be verified offline: unpinned.
    weights = WeightsSource(
        repo_id=_REPO, filename=f"models/{size}/encoder.pt", revision="main", sha256="",
        licence="MIT", url=f"https://huggingface.co/{_REPO}/tree/main/models/{size}",
    )
    return ModelCard(
        id=model_id,
        family="galileo",
        summary=(
            f"Galileo {size} ViT encoder ({params} parameters), Sentinel-2 (10 bands, 1 to "
            f"{_FRAMES} frames) at 64 x 64 px; 8-px patch-token grid (mean over S2 channel "
            "groups and frames); month and location side inputs."
        ),
        input=InputContract(
            collections=("sentinel-2-l1c", "sentinel-2-l2a"),
            processing_level="L1C",
            bands=sentinel2(*_BANDS),
            gsd_m=10.0,
            image_size=_IMAGE,
            patch_size=_PATCH,
            normalisation=_normalisation(),
            frames=_FRAMES,
            side_inputs=("latlon", "time"),
        ),
        embedding_dim=dim,
        outputs=("pooled", "grid"),
        weights=weights,
        licence="MIT",
        citation=_CITATION,
        reference=(
            "nasaharvest/galileo single_file_galileo.Encoder (load_from_folder, forward, "
            "average_tokens, apply_mask_and_average_tokens_per_patch), vendored from rs-embed "
            "0.3.1"
        ),
        bf16=False,
    )


def to_cartesian(lat: float, lon: float) -> tuple[float, float, float]:
    """Galileo's location input: the point on the unit sphere (x, y, z) at ``lat``/``lon``."""
    la, lo = math.radians(lat), math.radians(lon)
    return (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))


def _month(day: dt.date | None) -> int:
    return day.month - 1 if day is not None else _DEFAULT_MONTH


def frame_months(context: Sequence[SampleContext], n: int, t: int) -> list[list[int]]:
    """Month index (0 = January) of each of ``t`` frames of ``n`` samples.

    Per frame: its date in ``frame_dates``, else the sample's date, else ``DEFAULT_MONTH``.
    """
    if not context:
        return [[_DEFAULT_MONTH] * t for _ in range(n)]
    months = []
    for ctx in context:
        months.append([_month(d) for d in ctx.dates(t)])
    return months


class _Galileo(TorchEmbedder):
    """The Galileo encoder; subclasses set ``card`` and the size's configuration."""

    native_pooling = True
    encoder_config: ClassVar[dict[str, Any]]
    """``model.encoder`` of the release's ``config.json``."""

    @staticmethod
    def vendored() -> Any:
        """The vendored ``single_file_galileo`` module (it needs einops)."""
        require("einops", "galileo")
        return importlib.import_module(_VENDOR)

    def create_model(self) -> torch.nn.Module:
        """``Encoder(**config["model"]["encoder"])``, as ``Encoder.load_from_folder`` builds it."""
        model: torch.nn.Module = self.vendored().Encoder(**self.encoder_config)
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """Drop the ``.backbone`` infix some releases carry (as ``load_from_folder`` does)."""
        return {k.replace(".backbone", ""): v for k, v in state.items()}

    def _encode(self, x: torch.Tensor, context: Sequence[SampleContext]) -> tuple[Any, ...]:
        """Normalised ``(n, C, H, W)`` or ``(n, T, C, H, W)`` -> the encoder's eight outputs."""
        th = import_torch()
        g = self.vendored()
        if x.ndim == 4:
            x = x[:, None]
        n, t, _, h, w = x.shape
        dev, f32 = x.device, th.float32
        s_t_x = th.zeros(n, h, w, t, len(g.SPACE_TIME_BANDS), dtype=f32, device=dev)
        s2 = [g.SPACE_TIME_BANDS.index(b) for b in g.S2_BANDS]
        s_t_x[..., s2] = x.permute(0, 3, 4, 1, 2).to(f32)
        groups = list(g.SPACE_TIME_BANDS_GROUPS_IDX)
        s_t_m = th.ones(n, h, w, t, len(groups), dtype=f32, device=dev)
        s_t_m[..., [i for i, key in enumerate(groups) if "S2" in key]] = 0
        sp_x = th.zeros(n, h, w, len(g.SPACE_BANDS), dtype=f32, device=dev)
        sp_m = th.ones(n, h, w, len(g.SPACE_BAND_GROUPS_IDX), dtype=f32, device=dev)
        t_x = th.zeros(n, t, len(g.TIME_BANDS), dtype=f32, device=dev)
        t_m = th.ones(n, t, len(g.TIME_BAND_GROUPS_IDX), dtype=f32, device=dev)
        st_x = th.zeros(n, len(g.STATIC_BANDS), dtype=f32, device=dev)
        st_m = th.ones(n, len(g.STATIC_BAND_GROUPS_IDX), dtype=f32, device=dev)
        xyz = [g.STATIC_BANDS.index(b) for b in g.LOCATION_BANDS]
        location = list(g.STATIC_BAND_GROUPS_IDX).index("location")
        for i, ctx in enumerate(context):
            if ctx.has_location:  # construct_galileo_input(latlon=...): visible, cartesian
                st_x[i, xyz] = th.tensor(to_cartesian(ctx.lat, ctx.lon), dtype=f32, device=dev)
                st_m[i, location] = 0
        months = th.tensor(frame_months(context, n, t), dtype=th.long, device=dev)
        out = self.model(
            s_t_x, sp_x, t_x, st_x, s_t_m, sp_m, t_m, st_m, months, patch_size=_PATCH
        )
        return tuple(out[:8])

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``(n, [T,] 10, 64, 64)`` -> ``(n, D, 8, 8)``: visible tokens averaged per patch."""
        tokens = self._encode(x, context)
        per_patch = self.model.apply_mask_and_average_tokens_per_patch(*tokens)
        n, hp, wp = tokens[0].shape[:3]
        grid: torch.Tensor = per_patch.reshape(n, hp, wp, -1).permute(0, 3, 1, 2)
        return grid

    def forward_pooled(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``(n, D)``: the encoder's ``average_tokens`` over all visible tokens."""
        pooled: torch.Tensor = self.model.average_tokens(*self._encode(x, context))
        return pooled


def _config(dim: int, depth: int, heads: int) -> dict[str, Any]:
    """``model.encoder`` of ``models/<size>/config.json`` (nasaharvest/galileo)."""
    return {
        "embedding_size": dim, "depth": depth, "num_heads": heads, "mlp_ratio": 4,
        "max_sequence_length": 24, "freeze_projections": False, "drop_path": 0.1,
        "max_patch_size": _PATCH,
    }


class GalileoNano(_Galileo):
    """Galileo nano: 128-wide, 4 blocks."""

    encoder_config = _config(128, 4, 8)
    card = _card("galileo-nano", "nano", 128, "1.0M")


class GalileoTiny(_Galileo):
    """Galileo tiny: 192-wide, 12 blocks, 3 heads."""

    encoder_config = _config(192, 12, 3)
    card = _card("galileo-tiny", "tiny", 192, "5.7M")


class GalileoBase(_Galileo):
    """Galileo base: 768-wide, 12 blocks, 12 heads."""

    encoder_config = _config(768, 12, 12)
    card = _card("galileo-base", "base", 768, "87M")
