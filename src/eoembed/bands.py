"""Band vocabularies shared by providers (what they serve) and model cards (what models need).

Wavelengths are the central wavelengths (micrometres) and GSDs the native ground sampling
distances (metres) published by ESA for the Sentinel-2 MSI.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SENTINEL2_BANDS", "SENTINEL2_MASK_BANDS", "BandInfo", "quality_band", "sentinel2"]


@dataclass(frozen=True)
class BandInfo:
    """One spectral band: its name, common name, central wavelength and native GSD."""

    name: str
    common_name: str
    wavelength_um: float
    gsd_m: float

    @property
    def is_quality(self) -> bool:
        """Whether this is a quality/cloud-mask layer rather than a spectral band.

        Mask layers hold class codes or bit flags: they are read by nearest neighbour and
        never averaged, and no model takes them as input.
        """
        return self.wavelength_um == 0.0


def quality_band(name: str, gsd_m: float) -> BandInfo:
    """A non-spectral layer (quality or cloud mask): wavelength 0 marks it as such."""
    return BandInfo(name, "qa", 0.0, gsd_m)


SENTINEL2_BANDS: dict[str, BandInfo] = {
    b.name: b
    for b in (
        BandInfo("B01", "coastal", 0.443, 60.0),
        BandInfo("B02", "blue", 0.490, 10.0),
        BandInfo("B03", "green", 0.560, 10.0),
        BandInfo("B04", "red", 0.665, 10.0),
        BandInfo("B05", "rededge1", 0.705, 20.0),
        BandInfo("B06", "rededge2", 0.740, 20.0),
        BandInfo("B07", "rededge3", 0.783, 20.0),
        BandInfo("B08", "nir", 0.842, 10.0),
        BandInfo("B8A", "nir08", 0.865, 20.0),
        BandInfo("B09", "nir09", 0.945, 60.0),
        BandInfo("B10", "cirrus", 1.375, 60.0),
        BandInfo("B11", "swir16", 1.610, 20.0),
        BandInfo("B12", "swir22", 2.190, 20.0),
    )
}
"""The 13 MSI bands in L1C order (B8A after B08)."""

SENTINEL2_L2A_BANDS = tuple(b for b in SENTINEL2_BANDS if b != "B10")
"""L2A drops the cirrus band B10."""

SENTINEL2_MASK_BANDS: dict[str, BandInfo] = {
    b.name: b
    for b in (
        quality_band("SCL", 20.0),
        quality_band("CLDPRB", 20.0),
    )
}
"""Sentinel-2 L2A per-pixel quality layers: Sen2Cor's scene classification (``SCL``) and
cloud probability in percent (``CLDPRB``, ``MSK_CLDPRB``; s2cloudless probabilities use the
same 0..100 scale). See :mod:`eoembed.providers.masks` for how they mask pixels."""


def sentinel2(*names: str) -> tuple[BandInfo, ...]:
    """BandInfo for the named Sentinel-2 bands, in the order given."""
    return tuple(SENTINEL2_BANDS[n] for n in names)
