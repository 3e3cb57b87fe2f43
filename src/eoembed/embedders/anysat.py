"""AnySat (Astruc et al., CVPR 2025) on Sentinel-2 time series, from the original model code.

No maintained package provides AnySat (it is published for ``torch.hub`` only), so the model
code is vendored from rs-embed 0.3.1 (:mod:`eoembed.embedders._vendor.anysat`, MIT): the
network is the release's ``AnyModule`` built from ``hubconf.get_default_config("base")``, the
module ``AnySat.from_pretrained`` loads ``models/AnySat.pth`` into (its ``state_dict`` entry,
unwrapped by the loader). The checkpoint carries projectors for all eleven GeoPlex sensors;
only the ``s2`` one runs here.

Input: the 10 Sentinel-2 bands AnySat's ``s2`` projector takes (B2, B3, B4, B5, B6, B7, B8,
B8A, B11, B12), as a time series ``(N, T, 10, H, W)`` of up to :data:`_FRAMES` frames or one
image ``(N, 10, H, W)`` (``T = 1``). Each frame's date enters as its day of year (0 = 1
January, as the AnySat docs and rs-embed's adapter count), from ``SampleContext.frame_dates``,
else the sample's ``date``, else mid-year (day 182, rs-embed's fallback). Pixels are resized
to :data:`_IMAGE` px (or tiled, ``input_prep="tile"``) and standardised per band with the
sample's own mean and standard deviation over frames and pixels: AnySat standardised each
band with the statistics of each pretraining dataset (``NORM_<sensor>_patch.json`` files that
ship with the data, not the model), and rs-embed's default does the same per tile.

Outputs are AnySat's own: ``output="tile"`` (the class token after the cross-attention
block) is the pooled embedding, and ``output="patch"`` the grid, one cell per ``patch_size``
x ``patch_size`` pixels (AnySat's ``patch_size`` in metres is ``10 * patch_size``: S2 is
10 m), rows north to south as the pixels.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eoembed.bands import sentinel2
from eoembed.embedders.base import import_torch
from eoembed.embedders.card import (
    InputContract,
    ModelCard,
    Normalisation,
    WeightsSource,
    native_rule,
)
from eoembed.embedders.torch_embedder import TorchEmbedder, TorchOptions, submodule_state
from eoembed.errors import CapabilityError, ModelArgumentError

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = ["AnySatBase", "AnySatOptions", "frame_days_of_year"]

_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
"""The ``s2`` projector's 10 input channels, in order (rs-embed's ``_S2_10_BANDS``)."""
_S2_RES_M = 10
"""``AnySat.res["s2"]``: the metres per pixel AnySat assumes for ``s2``."""
_IMAGE = 32
"""Native side in pixels: 320 m, within AnySat's advice of at most 32 patches a side."""
_PATCH = 2
"""Default pixels per token side (20 m patches): a 16 x 16 grid at the native size."""
_FRAMES = 24
"""Most frames accepted (the temporal encoder takes any number; this bounds the cost)."""
_UNKNOWN_DOY = 182
"""Day of year used without any date (rs-embed's fallback: mid-year)."""
_MAX_DOY = 364
"""AnySat docs: 1 January -> 0, 31 December -> 364 (leap days clipped)."""

_CITATION = (
    "Astruc, G., Gonthier, N., Mallet, C., Landrieu, L. AnySat: One Earth Observation Model "
    "for Many Resolutions, Scales, and Modalities. CVPR 2025. "
    "https://arxiv.org/abs/2412.14123"
)


@dataclass(frozen=True)
class AnySatOptions(TorchOptions):
    """AnySat options.

    ``patch_size``: input pixels per token side; AnySat's patch size in metres is ten times
    it (any multiple of 10 m works). It must divide the native size (32 px); smaller patches
    give finer grids at a cost that grows with the token count.
    """

    patch_size: int = _PATCH

    def validate(self, model_id: str) -> None:
        """``patch_size`` must tile the native image exactly."""
        if self.patch_size < 1 or _IMAGE % self.patch_size:
            raise ModelArgumentError(
                f"model {model_id!r} argument patch_size={self.patch_size} must divide "
                f"{_IMAGE} (1, 2, 4, 8, 16 or 32 px)"
            )


def _day_of_year(day: dt.date | None) -> int:
    if day is None:
        return _UNKNOWN_DOY
    return min(day.timetuple().tm_yday - 1, _MAX_DOY)


def frame_days_of_year(context: Sequence[SampleContext], n: int, t: int) -> list[list[int]]:
    """``(n, t)`` AnySat dates (day of year, 0-based) for ``n`` samples of ``t`` frames.

    Per frame: its date in ``frame_dates``, else the sample's date, else mid-year.
    """
    if not context:
        return [[_UNKNOWN_DOY] * t for _ in range(n)]
    days = []
    for ctx in context:
        days.append([_day_of_year(d) for d in ctx.dates(t)])
    return days


def standardise(x: torch.Tensor) -> torch.Tensor:
    """``(n, T, C, H, W)`` -> per-sample, per-band z-scores over frames and pixels.

    NaN pixels are left out of the statistics and become 0 (the band mean).
    """
    th = import_torch()
    mean = th.nanmean(x, dim=(1, 3, 4), keepdim=True)
    var = th.nanmean((x - mean) ** 2, dim=(1, 3, 4), keepdim=True)
    std = var.sqrt().nan_to_num(0.0).clamp_min(1e-6)
    out: torch.Tensor = ((x - mean) / std).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    return out


class AnySatBase(TorchEmbedder):
    """AnySat base (126M parameters, 768 wide): S2 time series -> tile and patch embeddings."""

    Options = AnySatOptions
    options: AnySatOptions
    native_pooling = True
    card = ModelCard(
        id="anysat-base",
        family="anysat",
        summary=(
            "AnySat base (JEPA on GeoPlex), S2 L2A 10-band time series (1-24 frames, day-of-"
            "year dates); pooled = AnySat 'tile' token, grid = 'patch' tokens (20 m); 32 px."
        ),
        input=InputContract(
            collections=("sentinel-2-l2a",),
            processing_level="L2A",
            bands=sentinel2(*_BANDS),
            gsd_m=float(_S2_RES_M),
            image_size=_IMAGE,
            patch_size=_PATCH,
            normalisation=Normalisation(
                scale=1.0,
                note=(
                    "per sample and band, (x - mean) / std over frames and pixels, in the "
                    "adapter: AnySat standardised each band with its pretraining datasets' own "
                    "statistics (NORM_<sensor>_patch.json, shipped with the data, not the "
                    "model); rs-embed's default (per_tile_zscore) does the same per tile"
                ),
            ),
            frames=_FRAMES,
            side_inputs=("time",),
        ),
        embedding_dim=768,
        outputs=("pooled", "grid"),
        pooling=native_rule("AnySat output='tile': its class token after the cross-attention"),
        weights=WeightsSource(
            repo_id="g-astruc/AnySat", filename="models/AnySat.pth", revision="main",
            sha256="", licence="MIT", url="https://huggingface.co/g-astruc/AnySat",
        ),
        licence="MIT",
        citation=_CITATION,
        reference=(
            "AnySat hubconf.AnySat(model_size='base', flash_attn=False) forward(x, patch_size,"
            " output='tile'/'patch') (github.com/gastruc/AnySat, vendored from rs-embed 0.3.1)"
        ),
    )

    @property
    def grid_patch_size(self) -> int:
        """The ``patch_size`` option: tiles are stitched at the grid it gives."""
        return self.options.patch_size

    def create_model(self) -> torch.nn.Module:
        """The release's ``AnyModule`` (what ``from_pretrained`` loads ``state_dict`` into)."""
        # Imported as a module object: the vendored code is untyped.
        hubconf: Any = importlib.import_module("eoembed.embedders._vendor.anysat.hubconf")
        wrapper: Any = hubconf.AnySat(model_size="base", flash_attn=False)
        module: torch.nn.Module = wrapper.model
        return module

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """The ``AnyModule`` entries; a whole ``AnySat`` wrapper's keys lose ``model.``.

        The release nests them under ``state_dict`` (unwrapped by the loader); a wrapper's
        state dict also lists the shared spatial encoder a second time, outside ``model.``.
        """
        return submodule_state(state, "model.")

    def _encode(
        self, x: torch.Tensor, context: Sequence[SampleContext], output: str
    ) -> torch.Tensor:
        """``AnySat.forward`` on standardised ``s2`` frames with their dates."""
        th = import_torch()
        frames = x if x.ndim == 5 else x[:, None]
        n, t = frames.shape[:2]
        side = frames.shape[-1]
        if frames.shape[-2] != side or side % self.options.patch_size:
            raise CapabilityError(
                f"model {self.card.id!r} needs square inputs whose side is a multiple of "
                f"patch_size={self.options.patch_size}, got {tuple(frames.shape[-2:])}"
            )
        dates = th.tensor(frame_days_of_year(context, n, t), dtype=th.long, device=x.device)
        inputs = {"s2": standardise(frames.float()), "s2_dates": dates}
        # AnySat.forward: patch_size in metres // 10 -> AnyModule.forward_release's scale.
        scale = self.options.patch_size * _S2_RES_M // 10
        out: torch.Tensor = self.model.forward_release(inputs, scale, output=output)
        return out

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``(n, [T,] 10, H, W)`` -> ``(n, 768, H/p, W/p)``: AnySat's ``output="patch"``."""
        return self._encode(x, context, "patch").permute(0, 3, 1, 2)

    def forward_pooled(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``(n, [T,] 10, H, W)`` -> ``(n, 768)``: AnySat's ``output="tile"``."""
        return self._encode(x, context, "tile")
