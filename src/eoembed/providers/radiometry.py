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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from eoembed.providers.base import CollectionInfo

__all__ = [
    "AS_STORED",
    "HARMONISED_DN",
    "RADIOMETRY_CONVENTION",
    "Radiometry",
    "harmonised_collection",
    "radiometry_record",
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

RADIOMETRY_CONVENTION = 1
"""Version of the rules below; part of every patch cache key, so a patch cached under other
rules (or none, before version 1) is never reused."""

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

    @property
    def identity(self) -> bool:
        """Whether values pass through unchanged."""
        return self.scale == 1.0 and self.offset == 0.0

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
        if self.minimum is not None:
            out = np.maximum(out, np.float32(self.minimum), out=out)  # NaN propagates
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form (attrs, cache identities)."""
        return {
            "scale": self.scale, "offset": self.offset, "minimum": self.minimum,
            "reason": self.reason,
        }


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
