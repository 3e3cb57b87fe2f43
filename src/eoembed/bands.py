"""Band vocabularies shared by providers (what they serve) and model cards (what models need).

Each band carries its central wavelength and bandwidth (micrometres, full width at half
maximum) and native GSD (metres), so a model's bands can be matched to any sensor's by what
they measure rather than by name (see :mod:`eoembed.bandmatch`). The sensor registry
(:data:`SENSORS`, :func:`register_sensor`) holds the published band tables of the sensors
eoembed knows; users declare their own with :func:`register_sensor`.

Sources: ESA's Sentinel-2 MSI spectral response (S2A central wavelengths as eoembed has used
since its first release, S2A bandwidths); USGS Landsat band designations (TM, ETM+, OLI/TIRS);
NASA's MODIS MOD09 specification; Sentinel-1 C band (5.405 GHz).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "SENSORS",
    "SENTINEL2_BANDS",
    "SENTINEL2_MASK_BANDS",
    "BandInfo",
    "band",
    "quality_band",
    "register_sensor",
    "sensor_bands",
    "sentinel2",
]


@dataclass(frozen=True)
class BandInfo:
    """One spectral band: its name, common name, central wavelength, native GSD, bandwidth."""

    name: str
    common_name: str
    wavelength_um: float
    gsd_m: float
    bandwidth_um: float = 0.0
    """Full width at half maximum; 0 when unknown (matching then allows 5% of the centre)."""

    @property
    def is_radar(self) -> bool:
        """Whether this is a SAR polarisation (matched by polarisation, never by wavelength)."""
        return self.wavelength_um >= 1_000.0

    @property
    def range_um(self) -> tuple[float, float]:
        """``(low, high)`` edges of the band; 5% of the centre either side when unknown."""
        half = self.bandwidth_um / 2 if self.bandwidth_um > 0 else 0.05 * self.wavelength_um
        return (self.wavelength_um - half, self.wavelength_um + half)

    @property
    def is_quality(self) -> bool:
        """Whether this is a quality/cloud-mask layer rather than a spectral band.

        Mask layers hold class codes or bit flags: they are read by nearest neighbour and
        never averaged, and no model takes them as input.
        """
        return self.wavelength_um == 0.0 and not self.is_embedding

    @property
    def is_embedding(self) -> bool:
        """Whether this is one dimension of a published embedding product (matched by name)."""
        return self.common_name == "embedding" and self.wavelength_um == 0.0


def embedding_bands(prefix: str, dim: int, gsd_m: float, width: int = 2) -> tuple[BandInfo, ...]:
    """A published embedding's dimensions as bands ``<prefix>00``.. (no wavelength; by name)."""
    return tuple(BandInfo(f"{prefix}{i:0{width}d}", "embedding", 0.0, gsd_m) for i in range(dim))


def quality_band(name: str, gsd_m: float) -> BandInfo:
    """A non-spectral layer (quality or cloud mask): wavelength 0 marks it as such."""
    return BandInfo(name, "qa", 0.0, gsd_m)


SENTINEL2_BANDS: dict[str, BandInfo] = {
    b.name: b
    for b in (
        BandInfo("B01", "coastal", 0.443, 60.0, 0.027),
        BandInfo("B02", "blue", 0.490, 10.0, 0.098),
        BandInfo("B03", "green", 0.560, 10.0, 0.045),
        BandInfo("B04", "red", 0.665, 10.0, 0.038),
        BandInfo("B05", "rededge1", 0.705, 20.0, 0.019),
        BandInfo("B06", "rededge2", 0.740, 20.0, 0.018),
        BandInfo("B07", "rededge3", 0.783, 20.0, 0.028),
        BandInfo("B08", "nir", 0.842, 10.0, 0.145),
        BandInfo("B8A", "nir08", 0.865, 20.0, 0.033),
        BandInfo("B09", "nir09", 0.945, 60.0, 0.026),
        BandInfo("B10", "cirrus", 1.375, 60.0, 0.075),
        BandInfo("B11", "swir16", 1.610, 20.0, 0.143),
        BandInfo("B12", "swir22", 2.190, 20.0, 0.242),
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


def band(
    name: str, wavelength_um: float, bandwidth_um: float = 0.0, gsd_m: float = 0.0,
    common_name: str = "",
) -> BandInfo:
    """A band declared by its wavelength (a user's own sensor, a chip's band)."""
    return BandInfo(name, common_name or name, wavelength_um, gsd_m, bandwidth_um)


def _table(*bands: BandInfo) -> tuple[BandInfo, ...]:
    return bands


_C_BAND_UM = 55_465.8  # Sentinel-1: 5.405 GHz

SENSORS: dict[str, tuple[BandInfo, ...]] = {
    "sentinel-2": tuple(SENTINEL2_BANDS.values()),
    "landsat-8": _table(
        BandInfo("B1", "coastal", 0.443, 30.0, 0.016),
        BandInfo("B2", "blue", 0.482, 30.0, 0.060),
        BandInfo("B3", "green", 0.5613, 30.0, 0.057),
        BandInfo("B4", "red", 0.6546, 30.0, 0.037),
        BandInfo("B5", "nir08", 0.8646, 30.0, 0.028),
        BandInfo("B6", "swir16", 1.609, 30.0, 0.085),
        BandInfo("B7", "swir22", 2.201, 30.0, 0.187),
        BandInfo("B8", "pan", 0.5917, 15.0, 0.172),
        BandInfo("B9", "cirrus", 1.373, 30.0, 0.021),
        BandInfo("B10", "lwir11", 10.895, 100.0, 0.59),
        BandInfo("B11", "lwir12", 12.005, 100.0, 1.01),
    ),
    "landsat-7": _table(
        BandInfo("B1", "blue", 0.4775, 30.0, 0.073),
        BandInfo("B2", "green", 0.560, 30.0, 0.082),
        BandInfo("B3", "red", 0.6615, 30.0, 0.061),
        BandInfo("B4", "nir08", 0.835, 30.0, 0.126),
        BandInfo("B5", "swir16", 1.648, 30.0, 0.202),
        BandInfo("B6", "lwir", 11.335, 60.0, 2.05),
        BandInfo("B7", "swir22", 2.2045, 30.0, 0.281),
        BandInfo("B8", "pan", 0.7055, 15.0, 0.381),
    ),
    "landsat-5": _table(
        BandInfo("B1", "blue", 0.485, 30.0, 0.07),
        BandInfo("B2", "green", 0.560, 30.0, 0.08),
        BandInfo("B3", "red", 0.660, 30.0, 0.06),
        BandInfo("B4", "nir08", 0.830, 30.0, 0.14),
        BandInfo("B5", "swir16", 1.650, 30.0, 0.20),
        BandInfo("B6", "lwir", 11.45, 120.0, 2.1),
        BandInfo("B7", "swir22", 2.215, 30.0, 0.27),
    ),
    "modis": _table(  # MOD09 surface reflectance bands 1-7
        BandInfo("B01", "red", 0.645, 250.0, 0.050),
        BandInfo("B02", "nir08", 0.8585, 250.0, 0.035),
        BandInfo("B03", "blue", 0.469, 500.0, 0.020),
        BandInfo("B04", "green", 0.555, 500.0, 0.020),
        BandInfo("B05", "swir12", 1.240, 500.0, 0.020),
        BandInfo("B06", "swir16", 1.640, 500.0, 0.024),
        BandInfo("B07", "swir22", 2.130, 500.0, 0.050),
    ),
    "sentinel-1": tuple(
        BandInfo(p, p, _C_BAND_UM, 10.0) for p in ("vv", "vh", "hh", "hv")
    ),
}
"""Published band tables by sensor: names as the mission's own files spell them (Landsat
``B4``, MODIS ``B01``), common names as STAC does (``red``, ``nir08``). Landsat 9 shares
Landsat 8's table; HLS S30/L30 serve Sentinel-2 names at 30 m."""
SENSORS["landsat-9"] = SENSORS["landsat-8"]
SENSORS["hls-s30"] = tuple(
    BandInfo(b.name, b.common_name, b.wavelength_um, 30.0, b.bandwidth_um)
    for b in SENTINEL2_BANDS.values()
)
SENSORS["hls-l30"] = tuple(  # HLS L30 bands carry Sentinel-2 names by wavelength (B05 -> B8A)
    BandInfo(s2, lb.common_name, lb.wavelength_um, 30.0, lb.bandwidth_um)
    for s2, lb in zip(
        ("B01", "B02", "B03", "B04", "B8A", "B11", "B12", "B10"),
        (*SENSORS["landsat-8"][:7], SENSORS["landsat-8"][8]),
        strict=True,
    )
)


def register_sensor(name: str, bands: Iterable[BandInfo], *, replace: bool = False) -> None:
    """Declare a sensor's bands (by wavelength) so models can be matched to it.

    Raises:
        CapabilityError: the name is taken (unless ``replace``), or a band is listed twice.
    """
    from eoembed.errors import CapabilityError

    table = tuple(bands)
    key = name.casefold()
    if key in SENSORS and not replace:
        raise CapabilityError(f"sensor {name!r} is already registered; pass replace=True")
    names = [b.name for b in table]
    if not table or len(set(names)) != len(names):
        raise CapabilityError(f"sensor {name!r} needs at least one band, each named once")
    SENSORS[key] = table


def sensor_bands(sensor: str, names: Iterable[str] | None = None) -> tuple[BandInfo, ...]:
    """A registered sensor's bands: all of them, or those named (by name or common name).

    Raises:
        CapabilityError: an unknown sensor or band, naming the ones that exist.
    """
    from eoembed.errors import CapabilityError, close_names, did_you_mean

    table = SENSORS.get(sensor.casefold())
    if table is None:
        close = difflib.get_close_matches(sensor.casefold(), SENSORS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CapabilityError(
            f"unknown sensor {sensor!r}{hint}; known: {', '.join(sorted(SENSORS))}, or declare "
            "it with eoembed.bands.register_sensor"
        )
    if names is None:
        return table
    lookup = {b.name.casefold(): b for b in table}
    lookup.update({b.common_name.casefold(): b for b in table if b.common_name.casefold()
                   not in lookup})
    out = []
    for n in names:
        found = lookup.get(str(n).casefold())
        if found is None:
            close = close_names(str(n), lookup)
            hint = f" ({did_you_mean(lookup[c.casefold()].name for c in close)})" if close else ""
            raise CapabilityError(
                f"sensor {sensor!r} has no band {n!r}{hint}; it has: "
                + ", ".join(f"{b.name} ({b.common_name})" for b in table)
            )
        out.append(found)
    return tuple(out)
