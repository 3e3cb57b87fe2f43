"""What sensor: collection, bands, ground resolution, cloud limits, masking and compositing."""

from __future__ import annotations

from dataclasses import dataclass

from eoembed.errors import SpecError
from eoembed.specs._base import Spec, check_choice, check_finite

__all__ = ["COMPOSITES", "MASKS", "RESAMPLINGS", "SensorSpec"]

COMPOSITES = ("median", "mosaic")
"""``median``: per-pixel median of clear observations; ``mosaic``: first clear observation,
least cloudy scene first."""

RESAMPLINGS = ("auto", "nearest", "bilinear", "cubic", "average")
"""``auto``: nearest when a band is upsampled or kept, area average when it is downsampled."""

MASKS = ("auto", "none", "scl", "qa_pixel", "bqa", "fmask", "cloud_prob")
"""Per-pixel cloud/shadow masks (see :mod:`eoembed.providers.masks` for the classes and bits
each one drops). ``auto``: the collection's usual mask band where the provider serves it
(Sentinel-2 L2A ``SCL``, Landsat C2 ``qa_pixel``, HLS ``Fmask``), no masking otherwise;
``none``: every pixel with data counts as clear; a name: that mask, and a CapabilityError if
the collection does not serve its band."""


@dataclass(frozen=True)
class SensorSpec(Spec):
    """The raw imagery a request needs.

    Band names are the collection's STAC ``eo:bands`` common names for the provider
    (Sentinel-2: ``B01``..``B12``, ``B8A``). Every band is resampled onto one grid of
    ``scale_m`` ground metres.
    """

    collection: str
    bands: tuple[str, ...]
    scale_m: float = 10.0
    cloudy_pct: float = 30.0
    """Scenes with more cloud cover (percent) are skipped; scenes with no cloud metadata pass."""
    fill_value: float = 0.0
    """Value of pixels no clear observation covers."""
    composite: str = "median"
    resampling: str = "auto"
    mask: str = "auto"
    """Which per-pixel cloud/shadow mask drops observations before compositing (:data:`MASKS`)."""

    def __post_init__(self) -> None:
        if not isinstance(self.collection, str) or not self.collection.strip():
            raise SpecError("SensorSpec.collection", self.collection, allowed="a collection id")
        bands = (self.bands,) if isinstance(self.bands, str) else tuple(self.bands)
        if not bands:
            raise SpecError("SensorSpec.bands", list(bands), allowed="at least one band name")
        for band in bands:
            if not isinstance(band, str) or not band:
                raise SpecError("SensorSpec.bands", band, allowed="band names (strings)")
        if len(set(bands)) != len(bands):
            dup = next(b for b in bands if bands.count(b) > 1)
            raise SpecError("SensorSpec.bands", dup, allowed="each band once")
        object.__setattr__(self, "bands", bands)
        scale = check_finite("SensorSpec.scale_m", self.scale_m)
        if scale <= 0:
            raise SpecError("SensorSpec.scale_m", self.scale_m, allowed="metres > 0")
        object.__setattr__(self, "scale_m", scale)
        cloud = check_finite("SensorSpec.cloudy_pct", self.cloudy_pct)
        if not 0 <= cloud <= 100:
            raise SpecError("SensorSpec.cloudy_pct", self.cloudy_pct, allowed="0..100")
        object.__setattr__(self, "cloudy_pct", cloud)
        object.__setattr__(
            self, "fill_value", check_finite("SensorSpec.fill_value", self.fill_value)
        )
        check_choice("SensorSpec.composite", self.composite, COMPOSITES)
        check_choice("SensorSpec.resampling", self.resampling, RESAMPLINGS)
        check_choice("SensorSpec.mask", self.mask, MASKS)
