"""One pixel unit per collection: what it takes to bring a scene's stored values to it.

Since processing baseline 04.00 (25 January 2022, and every Collection-1 reprocessing) ESA's
Sentinel-2 L1C/L2A digital numbers carry a +1000 offset (``RADIO_ADD_OFFSET`` /
``BOA_ADD_OFFSET`` = -1000). Catalogues say so differently: Planetary Computer items give only
``s2:processing_baseline``; Earth Search's ``sentinel-2-c1-l2a`` declares ``raster:bands``
``scale: 0.0001, offset: -0.1`` and leaves the pixels as ESA made them; its older
``sentinel-2-l2a`` declares the same offset even on items whose COGs already had it removed
(``earthsearch:boa_offset_applied: true``; Element84/earth-search#66, allenai/rslearn#501).

eoembed serves Sentinel-2 in one unit, :data:`HARMONISED_DN`, and decides per scene, once,
when a provider translates catalogue metadata (:func:`sentinel2_radiometry`); readers only
apply the resulting :class:`Radiometry` to each band before any compositing, so a median over
shifted and unshifted scenes is right.

Landsat reflectance is served in the same unit, so Sentinel-2 models' normalisations apply
(:func:`landsat_radiometry`): Collection 2 Level-2 surface reflectance is
``DN * 2.75e-5 - 0.2`` and Level-1 top-of-atmosphere reflectance
``(DN * 2e-5 - 0.1) / sin(sun elevation)`` (USGS's published constants, used unless the
item's ``raster:bands`` or the product's MTL file declare others). Thermal bands are not
reflectance: they are served in kelvin (Level-2 surface temperature ``DN * 0.00341802 +
149``; Level-1 brightness temperature from radiance through the band's K1/K2) and say so in
their :class:`Radiometry` ``unit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from eoembed.bands import BandInfo
    from eoembed.providers.base import CollectionInfo

__all__ = [
    "AS_STORED",
    "HARMONISED_DN",
    "RADIOMETRY_CONVENTION",
    "Radiometry",
    "harmonised_collection",
    "landsat_radiometry",
    "radiometry_record",
    "scene_radiometry",
    "sentinel2_radiometry",
]

HARMONISED_DN = "dn"
"""The unit providers deliver Sentinel-2 L1C/L2A reflectance bands in: reflectance x 10000 as
before processing baseline 04.00 (no +1000 offset), i.e. what Earth Engine's
``COPERNICUS/S2_HARMONIZED`` serves and pre-2022 products hold. Values the offset would take
below 0 (negative reflectance, which older products could not hold) are clamped to 0, as
Sentinel Hub's ``harmonizeValues`` and Planetary Computer's published recipe do. Model cards'
``"dn"`` unit is this one."""

AS_STORED = ""
"""The unit of collections eoembed does not convert: values as the files store them."""

RADIOMETRY_CONVENTION = 2
"""Version of the rules below; part of every patch cache key, so a patch cached under other
rules (or none, before version 1; Landsat as stored, before version 2) is never reused."""

QUANTIFICATION = 10000.0
"""Sentinel-2 ``QUANTIFICATION_VALUE``: reflectance = DN / 10000 (+ offset since 04.00)."""
BASELINE_OFFSET_DN = -1000.0
"""``RADIO_ADD_OFFSET``/``BOA_ADD_OFFSET`` of every baseline >= 04.00 so far, in DN."""
_OFFSET_SINCE = 4.0

_BASELINE_KEYS = ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version")
_APPLIED_KEYS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")


@dataclass(frozen=True)
class Radiometry:
    """``unit = max(stored * scale + offset, minimum)`` for one band of one scene.

    Nodata never reaches it: readers turn nodata into NaN first, and NaN stays NaN.
    """

    scale: float = 1.0
    offset: float = 0.0
    """In the collection's unit."""
    reason: str = ""
    """Why: which metadata decided it (recorded in the patch's ``attrs["radiometry"]``)."""
    minimum: float | None = None
    """Lowest value of the unit (0 for :data:`HARMONISED_DN`); None for no floor."""
    unit: str = ""
    """The band's unit when it is not the collection's (``"K"`` for thermal bands)."""
    planck: tuple[float, float] | None = None
    """``(K1, K2)``: the scaled value is radiance, turned into brightness temperature
    ``K2 / ln(K1 / radiance + 1)`` (Landsat Level-1 thermal bands)."""

    @property
    def identity(self) -> bool:
        """Whether values pass through unchanged."""
        return self.scale == 1.0 and self.offset == 0.0 and self.planck is None

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` (float32, NaN for nodata) in the unit; in place where possible."""
        import numpy as np

        if self.identity:
            return values
        out = values
        if self.scale != 1.0:
            out = np.multiply(out, np.float32(self.scale), out=out)
        if self.offset != 0.0:
            out = np.add(out, np.float32(self.offset), out=out)
        if self.planck is not None:
            k1, k2 = (np.float32(k) for k in self.planck)
            with np.errstate(divide="ignore", invalid="ignore"):
                # Radiance <= 0 has no temperature: NaN, never a number.
                out = np.where(out > 0, k2 / np.log(k1 / out + 1), np.float32(np.nan))
            out = out.astype(np.float32, copy=False)
        if self.minimum is not None:
            out = np.maximum(out, np.float32(self.minimum), out=out)  # NaN propagates
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form (attrs, cache identities)."""
        out: dict[str, Any] = {
            "scale": self.scale, "offset": self.offset, "minimum": self.minimum,
            "reason": self.reason,
        }
        if self.unit:
            out["unit"] = self.unit
        if self.planck is not None:
            out["planck_k1_k2"] = list(self.planck)
        return out


def harmonised_collection(info: CollectionInfo | None) -> bool:
    """Whether scenes of ``info`` are brought to :data:`HARMONISED_DN`."""
    return info is not None and info.unit == HARMONISED_DN


def _baseline(properties: Mapping[str, Any]) -> tuple[str, float | None] | None:
    """The declared processing baseline (text, number or None if unparseable), if any."""
    for key in _BASELINE_KEYS:
        value = properties.get(key)
        if value is None or value == "":
            continue
        try:
            return f"{key} {value}", float(value)
        except (TypeError, ValueError):
            return f"{key} {value!r}", None
    return None


def _declared(fields: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """``(scale, offset)`` an asset declares (raster extension), each None when absent.

    STAC 1.0 ``raster:bands[0].scale/offset``, or STAC 1.1 ``raster:scale/raster:offset``
    on the asset or its single ``bands`` entry.
    """
    candidates: list[Mapping[str, Any]] = []
    raster = fields.get("raster:bands")
    if isinstance(raster, Sequence) and len(raster) == 1 and isinstance(raster[0], Mapping):
        candidates.append({"raster:scale": raster[0].get("scale"),
                           "raster:offset": raster[0].get("offset")})
    bands = fields.get("bands")
    if isinstance(bands, Sequence) and len(bands) == 1 and isinstance(bands[0], Mapping):
        candidates.append(bands[0])
    candidates.append(fields)
    scale = offset = None
    for entry in candidates:
        if scale is None and entry.get("raster:scale") is not None:
            scale = float(entry["raster:scale"])
        if offset is None and entry.get("raster:offset") is not None:
            offset = float(entry["raster:offset"])
    return scale, offset


def _one_band(properties: Mapping[str, Any], fields: Mapping[str, Any]) -> Radiometry:
    """The rule, for one reflectance band of one Sentinel-2 item (see the module docstring).

    In order: an offset the catalogue says it already removed is not removed again; a
    baseline before 04.00 has no offset (whatever ``raster:bands`` says); a declared
    ``raster:bands`` offset is applied; a baseline >= 04.00 without one gets -1000 DN.
    """
    declared_scale, declared_offset = _declared(fields)
    # Without a declared scale, stored values are DN: already in the unit.
    scale = 1.0 if declared_scale is None else declared_scale * QUANTIFICATION
    scale_note = f"raster:bands scale {declared_scale:g}; " if declared_scale is not None else ""
    floor = 0.0
    applied = next((k for k in _APPLIED_KEYS if properties.get(k) is True), None)
    baseline = _baseline(properties)
    if applied is not None:
        return Radiometry(scale, 0.0, f"{scale_note}{applied} is true: the catalogue already "
                          "removed the offset, so a declared one is not applied again", floor)
    if baseline is not None and baseline[1] is not None and baseline[1] < _OFFSET_SINCE:
        ignored = (
            f" (raster:bands offset {declared_offset:g} ignored)" if declared_offset else ""
        )
        return Radiometry(scale, 0.0, f"{scale_note}{baseline[0]} < 04.00: no offset{ignored}",
                          floor)
    if declared_offset is not None:
        return Radiometry(
            scale, declared_offset * QUANTIFICATION,
            f"raster:bands scale {declared_scale if declared_scale is not None else 1e-4:g}, "
            f"offset {declared_offset:g} (reflectance = DN x scale + offset)", floor,
        )
    if baseline is not None and baseline[1] is not None:
        return Radiometry(scale, BASELINE_OFFSET_DN, f"{scale_note}{baseline[0]} >= 04.00 and "
                          "no offset declared: DN carry the +1000 offset", floor)
    what = f"unparseable {baseline[0]}" if baseline is not None else "no processing baseline"
    return Radiometry(scale, 0.0, f"{scale_note}{what} and no offset declared: values as "
                      "stored", floor)


def sentinel2_radiometry(
    info: CollectionInfo | None,
    properties: Mapping[str, Any],
    band_fields: Mapping[str, Mapping[str, Any]],
) -> dict[str, Radiometry]:
    """Band -> :class:`Radiometry` of one item, from its properties and its assets' fields.

    Only reflectance bands of a :func:`harmonised_collection` get one; quality bands (SCL,
    cloud probability) and other collections are left as stored (empty result).

    Args:
        info: the eoembed collection the item belongs to.
        properties: the item's properties.
        band_fields: band -> the ``extra_fields`` of the asset serving it.
    """
    if info is None or not harmonised_collection(info):
        return {}
    spectral = {b.name for b in info.bands if not b.is_quality}
    return {
        band: _one_band(properties, fields)
        for band, fields in band_fields.items() if band in spectral
    }


# Landsat --------------------------------------------------------------------------------
L2_REFLECTANCE = (2.75e-5, -0.2)
"""Collection 2 Level-2 surface reflectance ``(scale, offset)``: reflectance = DN x s + o."""
L2_TEMPERATURE = (0.00341802, 149.0)
"""Collection 2 Level-2 surface temperature ``(scale, offset)``: kelvin = DN x s + o."""
L1_REFLECTANCE = (2e-5, -0.1)
"""Level-1 (OLI) top-of-atmosphere reflectance before the sun-angle correction."""
L1_RADIANCE_TIRS = (3.342e-4, 0.1)
"""Level-1 TIRS radiance ``(scale, offset)`` (W/(m2 sr um)) of Landsat 8; Landsat 9's
TIRS-2 differs, so its scenes need the MTL's (declared in ``raster:bands``)."""
PLANCK_K1_K2 = {
    ("landsat-8", "lwir11"): (774.8853, 1321.0789),
    ("landsat-8", "lwir12"): (480.8883, 1201.1442),
}
"""Published TIRS thermal constants by (platform, band); other platforms need the MTL's."""
_OLI_PLATFORMS = ("landsat-8", "landsat-9")
SUN_ELEVATION_KEYS = ("view:sun_elevation", "landsat:sun_elevation", "sun_elevation")
_THERMAL_UM = 3.0
LANDSAT_K1_K2 = "eoembed:planck_k1_k2"
"""Band field carrying ``(K1, K2)`` read from an MTL file (local products)."""


def _sun_elevation(properties: Mapping[str, Any]) -> tuple[str, float] | None:
    for key in SUN_ELEVATION_KEYS:
        value = properties.get(key)
        if value is None:
            continue
        try:
            elevation = float(value)
        except (TypeError, ValueError):
            continue
        if 0.0 < elevation <= 90.0:
            return key, elevation
    return None


def _scale_offset(
    fields: Mapping[str, Any], published: tuple[float, float], what: str
) -> tuple[float, float, str]:
    """The declared ``raster:bands`` scale/offset, else ``published``, and where they came from."""
    scale, offset = _declared(fields)
    if scale is None and offset is None:
        why = f"{what}: published scale {published[0]:g}, offset {published[1]:g} (none declared)"
        return published[0], published[1], why
    scale = published[0] if scale is None else scale
    offset = 0.0 if offset is None else offset
    return scale, offset, f"{what}: raster:bands scale {scale:g}, offset {offset:g}"


def _landsat_band(
    band: BandInfo, level: str, properties: Mapping[str, Any], fields: Mapping[str, Any]
) -> Radiometry:
    """The rule for one band of one Landsat scene (see the module docstring)."""
    import math

    thermal = band.wavelength_um >= _THERMAL_UM
    if level.startswith("L2"):
        if thermal:
            scale, offset, why = _scale_offset(fields, L2_TEMPERATURE, "surface temperature")
            return Radiometry(scale, offset, f"{why}; kelvin, not reflectance", None, "K")
        scale, offset, why = _scale_offset(fields, L2_REFLECTANCE, "surface reflectance")
        return Radiometry(scale * QUANTIFICATION, offset * QUANTIFICATION,
                          f"{why}; x 10000", 0.0)
    if thermal:
        platform = str(properties.get("platform", "")).casefold()
        k1_k2 = fields.get(LANDSAT_K1_K2) or PLANCK_K1_K2.get((platform, band.common_name))
        if k1_k2 is None:
            return Radiometry(reason=f"Level-1 thermal band: no K1/K2 for platform "
                              f"{platform or 'unknown'!r} (MTL file or Landsat 8 needed): "
                              "DN as stored, not kelvin", unit="dn")
        if platform != "landsat-8" and _declared(fields) == (None, None):
            return Radiometry(reason=f"Level-1 thermal band of {platform or 'unknown'!r}: no "
                              "radiance scale declared and the published one is Landsat 8's "
                              "TIRS: DN as stored, not kelvin", unit="dn")
        scale, offset, why = _scale_offset(fields, L1_RADIANCE_TIRS, "radiance")
        k1, k2 = (float(k) for k in k1_k2)
        return Radiometry(scale, offset, f"{why}; brightness temperature K2/ln(K1/L+1), "
                          f"K1 {k1:g}, K2 {k2:g}", None, "K", (k1, k2))
    platform = str(properties.get("platform", "")).casefold()
    if platform and platform not in _OLI_PLATFORMS and _declared(fields) == (None, None):
        return Radiometry(reason=f"Level-1 {platform}: no reflectance scale declared and the "
                          "published one is OLI's (Landsat 8/9): DN as stored")
    scale, offset, why = _scale_offset(fields, L1_REFLECTANCE, "TOA reflectance")
    sun = _sun_elevation(properties)
    if sun is None:
        return Radiometry(scale * QUANTIFICATION, offset * QUANTIFICATION,
                          f"{why}; x 10000; no sun elevation known: NOT corrected for the sun "
                          "angle (divide by sin(sun elevation) for true TOA reflectance)", 0.0)
    factor = QUANTIFICATION / math.sin(math.radians(sun[1]))
    return Radiometry(scale * factor, offset * factor,
                      f"{why}; / sin({sun[0]} {sun[1]:g}); x 10000", 0.0)


def landsat_radiometry(
    info: CollectionInfo | None,
    properties: Mapping[str, Any],
    band_fields: Mapping[str, Mapping[str, Any]],
) -> dict[str, Radiometry]:
    """Band -> :class:`Radiometry` of one Landsat scene, from its properties and assets' fields.

    Reflective bands go to :data:`HARMONISED_DN` (reflectance x 10000, floored at 0 as
    Sentinel-2's); thermal bands to kelvin; quality bands stay as stored.

    Args:
        info: the eoembed collection (``processing_level`` ``"L2SP"`` or ``"L1"``).
        properties: the item's properties (``view:sun_elevation``, ``platform``).
        band_fields: band -> the ``extra_fields`` of the asset serving it.
    """
    if info is None or not harmonised_collection(info):
        return {}
    by_name = {b.name: b for b in info.bands if not b.is_quality}
    return {
        band: _landsat_band(by_name[band], info.processing_level, properties, fields)
        for band, fields in band_fields.items() if band in by_name
    }


def scene_radiometry(
    info: CollectionInfo | None,
    properties: Mapping[str, Any],
    band_fields: Mapping[str, Mapping[str, Any]],
) -> dict[str, Radiometry]:
    """What brings each band of one scene to its collection's unit (Sentinel-2 or Landsat)."""
    if info is not None and info.id.startswith("landsat-"):
        return landsat_radiometry(info, properties, band_fields)
    return sentinel2_radiometry(info, properties, band_fields)


def radiometry_record(
    scene_id: str, radiometry: Mapping[str, Radiometry], bands: Sequence[str]
) -> list[dict[str, Any]]:
    """What was applied to ``bands`` of one scene, one entry per distinct conversion.

    Bands without one are listed as stored (scale 1, offset 0).
    """
    groups: dict[Radiometry, list[str]] = {}
    for band in bands:
        rule = radiometry.get(band) or Radiometry(reason="no radiometric metadata: as stored")
        groups.setdefault(rule, []).append(band)
    return [
        {"scene_id": scene_id, "bands": names, **rule.to_dict()}
        for rule, names in groups.items()
    ]
