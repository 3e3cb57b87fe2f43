"""Per-sample side inputs some models take beside pixels: where, when and at what GSD.

Clay, Prithvi-TL, Copernicus-FM, Scale-MAE and others condition on location, date or ground
sampling distance. The pipeline builds one :class:`SampleContext` per region from the specs;
embedders read only what their card's ``side_inputs`` names.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eoembed.bands import BandInfo
    from eoembed.specs import SpatialSpec, TemporalSpec

__all__ = ["SIDE_INPUTS", "SampleContext"]

SIDE_INPUTS = ("wavelengths", "gsd", "latlon", "time")
"""What a card may list in ``InputContract.side_inputs``."""


@dataclass(frozen=True)
class SampleContext:
    """Centre (WGS84 degrees), date and pixel size of one region as delivered to the model."""

    lon: float
    lat: float
    date: dt.date | None
    """Acquisition date, or the middle of the time window when pixels are a composite."""
    gsd_m: float
    frame_dates: tuple[dt.date | None, ...] = ()
    """One date per frame when pixels are a time series ``(T, C, H, W)``."""
    bands: tuple[BandInfo, ...] = ()
    """The channels' bands when they are not the model card's (a wavelength-aware model on
    another sensor's bands); empty: the card's. Set by :meth:`Embedder.embed` (``bands=``)."""

    @classmethod
    def unknown(cls, gsd_m: float) -> SampleContext:
        """No location or date (direct ``embed`` calls on bare arrays)."""
        return cls(lon=math.nan, lat=math.nan, date=None, gsd_m=gsd_m)

    @classmethod
    def from_specs(cls, spatial: SpatialSpec, temporal: TemporalSpec, gsd_m: float) -> SampleContext:
        """The region's centroid and the window's middle day (composites have no single date)."""
        lon, lat = spatial.lonlat_centre()  # across 180 too, where a plain centroid is ~0
        start, end = temporal.start_date, temporal.end_date
        middle = start + (end - start) / 2
        return cls(lon=lon, lat=lat, date=middle, gsd_m=float(gsd_m))

    def dates(self, frames: int) -> tuple[dt.date | None, ...]:
        """The date of each of ``frames`` frames: its own in ``frame_dates``, else ``date``.

        One rule for every temporal model; a model decides what an unknown (None) date means.
        """
        own = self.frame_dates if len(self.frame_dates) == frames else (None,) * frames
        return tuple(d if d is not None else self.date for d in own)

    @property
    def has_location(self) -> bool:
        """Whether lon/lat are known."""
        return not (math.isnan(self.lon) or math.isnan(self.lat))

    def to_dict(self) -> dict[str, object]:
        """JSON-able form, for metadata."""
        return {
            "lon": None if math.isnan(self.lon) else self.lon,
            "lat": None if math.isnan(self.lat) else self.lat,
            "date": self.date.isoformat() if self.date else None,
            "gsd_m": self.gsd_m,
            **({"frame_dates": [d.isoformat() if d else None for d in self.frame_dates]}
               if self.frame_dates else {}),
        }
