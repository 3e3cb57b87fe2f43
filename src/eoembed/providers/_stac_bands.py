"""Band and collection vocabularies of public STAC APIs, mapped onto eoembed's.

Catalogues name the same file differently: earth-search keys the Sentinel-2 red band
``red``, Planetary Computer ``B04``; Landsat's red is ``red`` or ``SR_B4``. eoembed names
each band once (Sentinel-2 band ids, STAC common names for Landsat), so one
:class:`~eoembed.specs.SensorSpec` reads the same pixels from any catalogue. Only this module
knows the catalogue spellings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eoembed.bands import (
    SENSORS,
    SENTINEL2_BANDS,
    SENTINEL2_L2A_BANDS,
    SENTINEL2_MASK_BANDS,
    BandInfo,
    quality_band,
    sentinel2,
)
from eoembed.grid import NativeGrid
from eoembed.providers.base import CollectionInfo
from eoembed.providers.radiometry import HARMONISED_DN

__all__ = [
    "EARTH_SEARCH_COLLECTIONS",
    "KNOWN_STAC_COLLECTIONS",
    "LANDSAT_GRID",
    "PLANETARY_COMPUTER_COLLECTIONS",
    "USGS_COLLECTIONS",
    "StacCollection",
]

# Match quality of an asset for a band, best first: its key, the common name of its single
# eo:bands entry, then that entry's name (mission-specific, e.g. Landsat's SR_B4).
_BY_KEY, _BY_COMMON_NAME, _BY_NAME = 0, 1, 2
_TIFF_TYPES = ("image/tiff", "image/vnd.stac.geotiff")


@dataclass(frozen=True)
class StacCollection:
    """How one eoembed collection is found in STAC APIs and how its assets become bands."""

    info: CollectionInfo
    """What eoembed serves: its collection id, bands (eoembed names), level and nodata."""
    stac_ids: tuple[str, ...]
    """The collection's ids in known STAC APIs; the first is the default."""
    aliases: Mapping[str, str] = field(hash=False)
    """Asset key or ``eo:bands`` name/common name (any case) -> eoembed band name."""
    cloud_cover: bool = True
    """Whether items carry ``eo:cloud_cover`` (searches filter on it only then)."""

    def band_assets(self, item_assets: Mapping[str, Any]) -> dict[str, Any]:
        """Band (eoembed name) -> the asset serving it, from an item's assets (``pystac.Asset``).

        When several assets match a band (earth-search has ``red`` and ``red-jp2``), the one
        matched by key wins over one matched by ``eo:bands``, and a GeoTIFF over other formats.
        """
        lookup = {k.casefold(): v for k, v in self.aliases.items()}
        best: dict[str, tuple[tuple[int, bool], Any]] = {}
        for key, asset in item_assets.items():
            entries = _band_entries(asset.extra_fields)
            candidates: list[tuple[int, Any]] = [(_BY_KEY, key)]
            if len(entries) == 1:  # multi-band assets (visual/TCI) never stand for one band
                entry = entries[0]
                common = entry.get("common_name") or entry.get("eo:common_name")
                candidates += [(_BY_COMMON_NAME, common), (_BY_NAME, entry.get("name"))]
            for level, name in candidates:
                band = lookup.get(str(name).casefold()) if name else None
                if band is None:
                    continue
                media = (asset.media_type or "").split(";")[0].strip()
                rank = (level, media not in _TIFF_TYPES)
                if band not in best or rank < best[band][0]:
                    best[band] = (rank, asset)
                break
        return {band: asset for band, (_, asset) in best.items()}

    def asset_bands(self, item_assets: Mapping[str, Any]) -> dict[str, str]:
        """Band (eoembed name) -> href of the asset :meth:`band_assets` picks."""
        return {
            band: asset.get_absolute_href() or asset.href
            for band, asset in self.band_assets(item_assets).items()
        }

    def names_for(self, band: str) -> list[str]:
        """The catalogue spellings that map to ``band`` (for error messages)."""
        return sorted(k for k, v in self.aliases.items() if v == band)


def _band_entries(extra_fields: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``eo:bands`` (STAC 1.0) or ``bands`` (STAC 1.1) of an asset."""
    entries = extra_fields.get("eo:bands") or extra_fields.get("bands") or []
    return [e for e in entries if isinstance(e, Mapping)]


def _aliases(pairs: Iterable[tuple[str, Iterable[str]]]) -> dict[str, str]:
    """``{band: spellings}`` inverted to ``{spelling: band}``; each band also maps to itself."""
    out: dict[str, str] = {}
    for band, spellings in pairs:
        for name in (band, *spellings):
            out[name] = band
    return out


# Sentinel-2 -----------------------------------------------------------------------------
# Band ids (B04) as on Planetary Computer, common names (red, nir08) as on earth-search.
_S2_SPELLINGS = [(b.name, (b.common_name,)) for b in SENTINEL2_BANDS.values()]
_SCL = SENTINEL2_MASK_BANDS["SCL"]

SENTINEL2_L1C = StacCollection(
    CollectionInfo(
        "sentinel-2-l1c", tuple(SENTINEL2_BANDS.values()), "L1C", nodata=0.0,
        description="Sentinel-2 MSI top-of-atmosphere reflectance x 10000",
        unit=HARMONISED_DN,
    ),
    stac_ids=("sentinel-2-l1c", "sentinel-2-c1-l1c"),
    aliases=_aliases(_S2_SPELLINGS),
)
SENTINEL2_L2A = StacCollection(
    CollectionInfo(
        "sentinel-2-l2a", (*sentinel2(*SENTINEL2_L2A_BANDS), _SCL), "L2A", nodata=0.0,
        description="Sentinel-2 MSI surface reflectance x 10000 and the scene classification",
        unit=HARMONISED_DN,
    ),
    stac_ids=("sentinel-2-l2a", "sentinel-2-c1-l2a"),
    aliases=_aliases([*(p for p in _S2_SPELLINGS if p[0] != "B10"), ("SCL", ("scl",))]),
)

# Landsat ---------------------------------------------------------------------------------
# Bands are named by STAC common name: Landsat's band numbers differ between missions (SR_B1 is
# coastal on Landsat 8/9 but blue on 4-7), common names do not. OLI numbers (SR_B4, B4) are
# accepted only where a key or common name did not already decide. Wavelengths and bandwidths
# are OLI/TIRS's (eoembed.bands.SENSORS["landsat-8"]), so models match them by wavelength.
LANDSAT_GRID = NativeGrid(offset_px=0.5, north_zones=True)
"""Landsat's grids put pixel centres on multiples of the pixel size (30 m edges at odd
multiples of 15 m), in the northern UTM zone even for southern scenes."""
_OLI_TIRS = {b.common_name: b for b in SENSORS["landsat-8"]}
_OLI_NUMBERS = {b.common_name: b.name for b in SENSORS["landsat-8"]}  # red -> B4


def _landsat(*common_names: str) -> tuple[BandInfo, ...]:
    return tuple(
        BandInfo(c, c, _OLI_TIRS[c].wavelength_um, _OLI_TIRS[c].gsd_m, _OLI_TIRS[c].bandwidth_um)
        for c in common_names
    )


_L2_REFLECTIVE = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22")
LANDSAT_C2_L2 = StacCollection(
    CollectionInfo(
        "landsat-c2-l2", (*_landsat(*_L2_REFLECTIVE, "lwir11"), quality_band("qa_pixel", 30.0)),
        "L2SP", nodata=0.0,
        description="Landsat 4-9 Collection 2 Level-2 surface reflectance x 10000, surface "
        "temperature (lwir11) in kelvin, QA_PIXEL",
        unit=HARMONISED_DN, native_grid=LANDSAT_GRID,
    ),
    stac_ids=("landsat-c2-l2", "landsat-c2l2-sr"),
    aliases=_aliases([
        ("coastal", ("SR_B1",)), ("blue", ("SR_B2",)), ("green", ("SR_B3",)),
        ("red", ("SR_B4",)), ("nir08", ("SR_B5", "nir")), ("swir16", ("SR_B6",)),
        ("swir22", ("SR_B7",)), ("lwir11", ("ST_B10", "lwir")), ("qa_pixel", ("QA_PIXEL",)),
    ]),
)
_L1_BANDS = (*_L2_REFLECTIVE, "pan", "cirrus", "lwir11", "lwir12")
LANDSAT_C2_L1 = StacCollection(
    CollectionInfo(
        "landsat-c2-l1",
        (*_landsat(*_L1_BANDS), quality_band("qa_pixel", 30.0), quality_band("bqa", 30.0)),
        "L1", nodata=0.0,
        description="Landsat 8/9 OLI/TIRS Level-1 top-of-atmosphere reflectance x 10000 "
        "(sun-angle corrected where the sun elevation is known), thermal brightness temperature "
        "in kelvin, QA_PIXEL (Collection 2) or BQA (pre-collection)",
        unit=HARMONISED_DN, native_grid=LANDSAT_GRID,
    ),
    stac_ids=("landsat-c2l1",),
    aliases=_aliases([
        *((c, (_OLI_NUMBERS[c],)) for c in _L1_BANDS),
        ("qa_pixel", ("QA_PIXEL",)), ("bqa", ("BQA",)),
    ]),
)

# HLS v2 ----------------------------------------------------------------------------------
# Harmonized Landsat Sentinel-2: both products are served in the Sentinel-2 vocabulary, so
# one SensorSpec reads S30 and L30 alike. L30 files use Landsat numbering (its B05 is the
# narrow NIR that S30 calls B8A), so its keys are remapped here.
_FMASK = quality_band("Fmask", 30.0)
_HLS_S30_BANDS = tuple(
    BandInfo(b.name, b.common_name, b.wavelength_um, 30.0) for b in SENTINEL2_BANDS.values()
)
HLS_S30 = StacCollection(
    CollectionInfo(
        "hls-s30", (*_HLS_S30_BANDS, _FMASK), "HLS", nodata=-9999.0,
        description="HLS v2 Sentinel-2 surface reflectance x 10000 at 30 m",
    ),
    stac_ids=("hls2-s30", "HLSS30_2.0", "HLSS30.v2.0"),
    aliases=_aliases([*_S2_SPELLINGS, ("Fmask", ())]),
)
_L30_KEYS = {  # eoembed (Sentinel-2) name -> HLS L30 asset key
    "B01": "B01", "B02": "B02", "B03": "B03", "B04": "B04",
    "B8A": "B05", "B11": "B06", "B12": "B07", "B10": "B09",
}
_HLS_L30_BANDS = tuple(b for b in _HLS_S30_BANDS if b.name in _L30_KEYS)
HLS_L30 = StacCollection(
    CollectionInfo(
        "hls-l30",
        (*_HLS_L30_BANDS, BandInfo("lwir11", "lwir11", 10.9, 30.0),
         BandInfo("lwir12", "lwir12", 12.0, 30.0), _FMASK),
        "HLS", nodata=-9999.0,
        description="HLS v2 Landsat 8/9 surface reflectance x 10000, Sentinel-2 band names",
    ),
    stac_ids=("hls2-l30", "HLSL30_2.0", "HLSL30.v2.0"),
    # Keys only (no identity entries): L30's key B05 is eoembed's B8A, not B05.
    aliases={
        **{key: band for band, key in _L30_KEYS.items()},
        **{SENTINEL2_BANDS[band].common_name: band for band in _L30_KEYS},
        "B10": "lwir11", "B11": "lwir12", "Fmask": "Fmask",
    },
)

# Sentinel-1 RTC --------------------------------------------------------------------------
_C_BAND_UM = 55_465.8  # 5.405 GHz
SENTINEL1_RTC = StacCollection(
    CollectionInfo(
        "sentinel-1-rtc",
        tuple(BandInfo(p, p, _C_BAND_UM, 10.0) for p in ("vv", "vh", "hh", "hv")),
        "RTC", nodata=-32768.0,
        description="Sentinel-1 radiometrically terrain-corrected backscatter (linear gamma0)",
    ),
    stac_ids=("sentinel-1-rtc",),
    aliases=_aliases([(p, (p.upper(),)) for p in ("vv", "vh", "hh", "hv")]),
    cloud_cover=False,
)

KNOWN_STAC_COLLECTIONS: dict[str, StacCollection] = {
    c.info.id: c
    for c in (
        SENTINEL2_L1C, SENTINEL2_L2A, LANDSAT_C2_L2, LANDSAT_C2_L1, HLS_S30, HLS_L30,
        SENTINEL1_RTC,
    )
}
"""Collections whose catalogue spellings eoembed knows, by eoembed collection id."""

EARTH_SEARCH_COLLECTIONS = {
    "sentinel-2-l2a": "sentinel-2-c1-l2a",
    "sentinel-2-l1c": "sentinel-2-l1c",
    "landsat-c2-l2": "landsat-c2-l2",
}
"""eoembed collection id -> collection id on earth-search v1."""

PLANETARY_COMPUTER_COLLECTIONS = {
    "sentinel-2-l2a": "sentinel-2-l2a",
    "landsat-c2-l2": "landsat-c2-l2",
    "hls-s30": "hls2-s30",
    "hls-l30": "hls2-l30",
    "sentinel-1-rtc": "sentinel-1-rtc",
}
"""eoembed collection id -> collection id on Microsoft Planetary Computer (its
``landsat-c2-l1`` is MSS, Landsat 1-5: not eoembed's OLI/TIRS ``landsat-c2-l1``)."""

USGS_COLLECTIONS = {
    "landsat-c2-l1": "landsat-c2l1",
    "landsat-c2-l2": "landsat-c2l2-sr",
}
"""eoembed collection id -> collection id on USGS's LandsatLook STAC server
(``https://landsatlook.usgs.gov/stac-server``; its assets need a USGS ERS login). Its
``landsat-c2l2-sr`` holds reflectance only: surface temperature is in ``landsat-c2l2-st``."""
