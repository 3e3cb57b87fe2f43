"""Which of a sensor's bands stands for each band a model needs: matching by what bands measure.

Model cards name their bands in the vocabulary they were trained on (mostly Sentinel-2's),
but a Landsat ``red`` measures what Sentinel-2's ``B04`` does. A model band is served by:

1. a band of the same name measuring the same thing (overlapping wavelengths: Sentinel-2 on
   Sentinel-2 or HLS; MODIS ``B01`` is red, not Sentinel-2's coastal ``B01``);
2. otherwise the spectral band whose range overlaps the model band's and whose centre is
   nearest (ties: the narrower band); panchromatic bands stand in for none;
3. SAR polarisations only by polarisation (``vv`` is ``vv`` on any C-band sensor).

A model band no sensor band overlaps is missing, and the error names each missing band with
its wavelength, and what the sensor has. Rules of a card (:attr:`InputContract.band_rule`):
``"wavelength"`` (the default) as above, ``"name"`` only step 1, ``"any"``: the model takes
whatever spectral bands the sensor spec requests (:func:`any_bands`), normalised with the
constants of its nearest card band (:func:`stand_ins`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eoembed.bands import SENSORS, BandInfo
from eoembed.errors import CapabilityError

__all__ = [
    "BAND_RULES",
    "BandMatch",
    "BandMatchError",
    "accepted_sensors",
    "any_bands",
    "match_bands",
    "overlapping",
    "stand_ins",
]

BAND_RULES = ("wavelength", "name", "any")
"""How a card's bands are matched: ``"wavelength"``: by name, else by overlapping wavelength;
``"name"``: by name only; ``"any"``: wavelength-aware models that take whatever spectral bands
the sensor serves (DOFA, Panopticon, Copernicus-FM), the card's bands being the default."""

_NEVER_SUBSTITUTE = ("pan",)


class BandMatchError(CapabilityError):
    """A sensor lacks bands a model needs (names each one, with its wavelength)."""


@dataclass(frozen=True)
class BandMatch:
    """The sensor band serving each model band, in the model's order."""

    model: tuple[str, ...]
    """Model band names, in the model's order."""
    source: tuple[str, ...]
    """Sensor band names serving them, same order (a sensor band may serve two model bands:
    Landsat's ``nir08`` serves both Sentinel-2 ``B08`` and ``B8A``)."""

    @property
    def substituted(self) -> tuple[tuple[str, str], ...]:
        """``(model band, sensor band)`` pairs matched by wavelength rather than name."""
        return tuple((m, s) for m, s in zip(self.model, self.source, strict=True) if m != s)

    @property
    def unique_source(self) -> tuple[str, ...]:
        """The sensor bands to read, each once, in first-use order."""
        return tuple(dict.fromkeys(self.source))

    def to_dict(self) -> dict[str, str]:
        """Model band -> sensor band, for metadata."""
        return dict(zip(self.model, self.source, strict=True))

    def warning(self, model_id: str) -> str | None:
        """A note on bands served by a different sensor band (``None`` when all match by name)."""
        if not self.substituted:
            return None
        pairs = ", ".join(f"{m}<-{s}" for m, s in self.substituted)
        return f"model {model_id!r} reads bands by wavelength: {pairs}"


def _overlap(a: BandInfo, b: BandInfo) -> bool:
    (a0, a1), (b0, b1) = a.range_um, b.range_um
    return a0 <= b1 and b0 <= a1


def _serving(needed: BandInfo, available: Sequence[BandInfo], rule: str) -> BandInfo | None:
    """The sensor band that serves ``needed``, or None."""
    for candidate in available:
        if candidate.name == needed.name and not candidate.is_quality and (
            candidate.is_radar == needed.is_radar
            and (needed.is_radar or _overlap(needed, candidate))
        ):
            return candidate
    if rule == "name" or needed.is_quality:
        return None
    if needed.is_radar:
        wanted = needed.common_name.casefold()
        return next(
            (c for c in available if c.is_radar and c.common_name.casefold() == wanted), None
        )
    spectral = [
        c for c in available
        if not c.is_quality and not c.is_radar and c.common_name not in _NEVER_SUBSTITUTE
        and _overlap(needed, c)
    ]
    if not spectral:
        return None
    return min(
        spectral,
        key=lambda c: (abs(c.wavelength_um - needed.wavelength_um), c.range_um[1] - c.range_um[0]),
    )


def _describe(band: BandInfo) -> str:
    if band.is_embedding:
        return f"{band.name} (embedding dimension)"
    if band.is_radar:
        return f"{band.name} ({band.common_name} polarisation)"
    low, high = band.range_um
    return f"{band.name} ({band.common_name}, {low * 1000:.0f}-{high * 1000:.0f} nm)"


def match_bands(
    needed: Sequence[BandInfo], available: Sequence[BandInfo], *,
    rule: str = "wavelength", model_id: str = "", sensor: str = "",
) -> BandMatch:
    """The sensor band serving each of ``needed``, by :data:`BAND_RULES` ``rule``.

    Raises:
        BandMatchError: bands no sensor band serves, each named with its wavelength range,
            and the sensor's bands.
    """
    if rule not in BAND_RULES:
        raise ValueError(f"band rule {rule!r} is not one of {', '.join(BAND_RULES)}")
    rule = "wavelength" if rule == "any" else rule
    served = [(b, _serving(b, available, rule)) for b in needed]
    missing = [b for b, s in served if s is None]
    if missing:
        who = f"model {model_id!r}" if model_id else "the model"
        where = f"sensor {sensor!r}" if sensor else "the sensor"
        has = ", ".join(_describe(b) for b in available if not b.is_quality) or "no bands"
        by = "of that name" if rule == "name" else "of that name or overlapping wavelength"
        raise BandMatchError(
            f"{who} needs band(s) {', '.join(_describe(b) for b in missing)} and {where} has "
            f"none {by}; it has: {has}"
        )
    return BandMatch(
        tuple(b.name for b in needed), tuple(s.name for _, s in served if s is not None)
    )


def _optical(band: BandInfo) -> bool:
    return not band.is_quality and not band.is_radar


def any_bands(
    requested: Sequence[BandInfo], *, model_id: str = "", sensor: str = ""
) -> BandMatch:
    """What an ``"any"`` model reads: each optical band requested, as itself, in order.

    Quality/mask layers and SAR polarisations never enter (their values are not reflectances).

    Raises:
        BandMatchError: no optical band is requested.
    """
    names = tuple(b.name for b in requested if _optical(b))
    if not names:
        who = f"model {model_id!r}" if model_id else "the model"
        where = f"sensor {sensor!r}" if sensor else "the sensor"
        raise BandMatchError(
            f"{who} takes optical bands of any sensor, and {where} requests none; it has: "
            + (", ".join(_describe(b) for b in requested) or "no bands")
        )
    return BandMatch(names, names)


def overlapping(needed: Sequence[BandInfo], available: Sequence[BandInfo]) -> tuple[str, ...]:
    """The optical bands of ``available`` measuring within the range of any of ``needed``.

    An ``"any"`` model's default on a sensor it was not trained on: that sensor's bands in the
    spectral range the model has seen (DOFA on Landsat 8: blue..SWIR, no coastal or thermal).
    """
    return tuple(
        c.name for c in available
        if _optical(c) and c.common_name not in _NEVER_SUBSTITUTE
        and any(_overlap(c, n) for n in needed if _optical(n))
    )


def stand_ins(bands: Sequence[BandInfo], card_bands: Sequence[BandInfo]) -> tuple[int, ...]:
    """For each of ``bands``, the index of the card band whose constants it borrows.

    The card band of the same name measuring the same thing, else the one whose centre is
    nearest (a Landsat ``B4`` red takes Sentinel-2 ``B04``'s mean and std).
    """
    out = []
    for b in bands:
        same = [i for i, c in enumerate(card_bands) if c.name == b.name and _overlap(b, c)]
        out.append(same[0] if same else min(
            range(len(card_bands)),
            key=lambda i: abs(card_bands[i].wavelength_um - b.wavelength_um),
        ))
    return tuple(out)


def accepted_sensors(needed: Sequence[BandInfo], rule: str = "wavelength") -> list[str]:
    """Registered sensors (:data:`eoembed.bands.SENSORS`) serving every band of ``needed``.

    Under rule ``"any"``: every sensor with an optical band.
    """
    if rule == "any":
        return sorted(name for name, table in SENSORS.items() if any(map(_optical, table)))
    out = []
    for name, table in sorted(SENSORS.items()):
        try:
            match_bands(needed, table, rule=rule)
        except BandMatchError:
            continue
        out.append(name)
    return out
