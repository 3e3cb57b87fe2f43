"""Time series: frames ``(time, band, y, x)`` for temporal models, each with its dates.

:func:`fetch_series` works on any :class:`~eoembed.providers.scenes.SceneProvider` (local
files, static catalogues, the sample, and STAC APIs through the SceneProvider they build per
request). It reuses the provider's search (cloud limit, window rules, mosaic order) and its
per-scene reading (:meth:`SceneProvider.read_scene`: every band, per-pixel cloud mask), so a
one-frame series is exactly what ``fetch`` returns for the same window.

Two ways to cut a window into frames:

- ``frames=None``: one frame per acquisition, in order of acquisition start. Scenes of the
  same known day (adjacent tiles or orbits) are mosaicked into one frame: they are one look.
  Scenes whose day is only known as a range each get their own frame (they may be different
  days), with ``time`` NaT and the range in ``time_start``/``time_end``.
- ``frames=N``: the window split into ``N`` half-open bins of whole days, as equal as whole
  days allow; each frame composites (``sensor.composite``) the scenes of its bin. Temporal
  models need a fixed ``N``, so empty bins are kept, filled with ``sensor.fill_value`` and
  flagged ``frame_valid=False``. A scene whose possible days span several bins cannot be
  placed without inventing a date, so it is left out and named in
  ``attrs["unplaced_scene_ids"]`` (with a warning).
"""

from __future__ import annotations

import datetime as dt
import numbers
import time
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.errors import NoDataError, SpecError
from eoembed.providers.base import Scene, request_grid

if TYPE_CHECKING:
    import xarray as xr

    from eoembed.grid import Grid
    from eoembed.providers.scenes import SceneProvider
    from eoembed.specs import SensorSpec, SpatialSpec, TemporalSpec

__all__ = ["Frame", "check_frames", "fetch_series", "plan_frames"]

_NAT = np.datetime64("NaT", "ns")
_CLEAR_COUNT = "scenes of the frame whose pixel has every band and passes the cloud/shadow mask"


@dataclass(frozen=True)
class Frame:
    """One time step of a series before reading: its dates and the scenes it composites."""

    start: dt.date
    """First day the frame covers."""
    end: dt.date
    """First day after it (half-open)."""
    time: np.datetime64
    """Representative instant: the acquisition day, a bin's centre, or NaT when unknown."""
    scenes: tuple[Scene, ...]
    """Scenes to composite, in the provider's mosaic order; empty for an empty bin."""


def check_frames(frames: object, temporal: TemporalSpec) -> int | None:
    """``frames`` as an int (or None), checked against the window before any I/O.

    Raises:
        SpecError: ``frames`` is not None or a positive integer, or asks for more frames
            than the window has days (a bin must hold at least one whole day).
    """
    if frames is None:
        return None
    allowed = "a positive integer (number of equal time bins), or None for one frame per scene"
    if isinstance(frames, bool) or not isinstance(frames, numbers.Integral):
        raise SpecError("frames", frames, allowed=allowed)
    n = int(frames)
    if n < 1:
        raise SpecError("frames", frames, allowed=allowed)
    days = (temporal.end_date - temporal.start_date).days
    if n > days:
        raise SpecError(
            "frames", frames, allowed=f"1..{days}",
            reason=f"bins are whole days and the window {temporal} has {days} day(s)",
        )
    return n


def _ns(day: dt.date) -> np.datetime64:
    """Midnight of ``day`` at xarray's nanosecond resolution."""
    return np.datetime64(day.isoformat(), "ns")


def plan_frames(
    scenes: Sequence[Scene], temporal: TemporalSpec, frames: int | None
) -> tuple[list[Frame], list[Scene]]:
    """Group scenes (in mosaic order) into frames; no I/O.

    Returns:
        The frames in time order, and the scenes that fit no single bin (``frames=N`` only).
    """
    if frames is None:
        groups: dict[tuple[dt.date, dt.date, str], list[Scene]] = {}
        for scene in scenes:
            # Only a known day merges scenes: two ranges, even equal ones, may be two days.
            key = (scene.start, scene.end, "" if scene.date_known else scene.id)
            groups.setdefault(key, []).append(scene)
        return [
            Frame(start, end, _ns(start) if members[0].date_known else _NAT, tuple(members))
            for (start, end, _), members in sorted(groups.items(), key=lambda kv: kv[0])
        ], []
    first = temporal.start_date
    days = (temporal.end_date - first).days
    edges = [first + dt.timedelta(days=i * days // frames) for i in range(frames + 1)]
    members_of: list[list[Scene]] = [[] for _ in range(frames)]
    unplaced: list[Scene] = []
    for scene in scenes:
        # Bin i holds [edges[i], edges[i + 1]); a scene goes where all its possible days lie.
        index = next(
            (i for i in range(frames) if edges[i] <= scene.start and scene.end <= edges[i + 1]),
            None,
        )
        if index is None:
            unplaced.append(scene)
        else:
            members_of[index].append(scene)
    out = []
    for i, members in enumerate(members_of):
        lo, hi = _ns(edges[i]), _ns(edges[i + 1])
        out.append(Frame(edges[i], edges[i + 1], lo + (hi - lo) // 2, tuple(members)))
    return out, unplaced


def fetch_series(
    provider: SceneProvider,
    spatial: SpatialSpec,
    temporal: TemporalSpec,
    sensor: SensorSpec,
    *,
    frames: int | None = None,
    grid: Grid | None = None,
) -> xr.DataArray:
    """Frames ``(time, band, y, x)`` on ``grid`` (default ``spatial.grid(sensor.scale_m)``).

    Args:
        provider: the provider whose ``search`` selects scenes and whose files are read.
        spatial: the region.
        temporal: the window the frames cover.
        sensor: collection, bands, cloud limit; ``composite`` combines the scenes of a bin.
        frames: ``None`` for one frame per acquisition (same-day scenes mosaicked), or the
            number of equal whole-day bins to split the window into.
        grid: the output grid, as for ``fetch``.

    Returns:
        float32 pixels with the same band, y, x, CRS and transform as ``fetch``, plus
        coordinates along ``time``: ``time`` (acquisition day, bin centre, or NaT when the
        day is unknown), ``time_start``/``time_end`` (the frame's half-open day range),
        ``frame_valid`` (any clear pixel) and ``valid_fraction``, and ``clear_count``
        ``(time, y, x)``; attrs ``scene_ids`` and ``scene_times`` hold one list per frame,
        ``mask``/``masked_scene_ids`` as ``fetch``'s. Pixels with no clear observation
        (clouds under ``sensor.mask``, gaps, empty bins) hold ``sensor.fill_value``.

    Raises:
        SpecError: ``frames`` is not None or a positive integer no larger than the window's
            number of days (before any I/O).
        CapabilityError: the collection or a band is not served (before any I/O).
        NoDataError: no scene in the window, no scene placeable in a bin, or no valid pixel
            in any frame.

    Example::

        series = provider.fetch_series(region, TemporalSpec.year(2021), sensor, frames=12)
        series.sel(band="B04").where(series.frame_valid)  # monthly composites
    """
    t0 = time.perf_counter()
    n_frames = check_frames(frames, temporal)
    info = provider.check(sensor)
    mask = provider.mask_for(sensor)
    grid = grid or request_grid(spatial, sensor, info)
    scenes = provider.search(spatial, temporal, sensor)
    plan, unplaced = plan_frames(scenes, temporal, n_frames)
    if unplaced:
        ranges = ", ".join(f"{s.id} [{s.start}, {s.end})" for s in unplaced[:5])
        if not any(f.scenes for f in plan):
            raise NoDataError(
                f"no scene fits one of the {n_frames} bins of {temporal}: the acquisition day "
                f"of {ranges} is only known as a range spanning several bins; use fewer "
                "frames or frames=None"
            )
        warnings.warn(
            f"{len(unplaced)} scene(s) left out of the series: their acquisition day is only "
            f"known as a range spanning several of the {n_frames} bins: {ranges}",
            stacklevel=3,
        )
    method = "mosaic" if n_frames is None else sensor.composite
    out = np.empty((len(plan), len(sensor.bands), *grid.shape), np.float32)
    counts = np.zeros((len(plan), *grid.shape), np.uint16)
    for i, frame in enumerate(plan):
        if frame.scenes:
            out[i], counts[i] = _composite_frame(provider, frame.scenes, grid, sensor, method)
    placed = [s for f in plan for s in f.scenes]
    # As in fetch: with mask="auto", a scene without the mask band is used unmasked.
    masked = [s.id for s in placed if mask is not None and mask.band in s.assets]
    applied = mask.name if mask is not None and masked else "none"
    valid = counts > 0
    if not valid.any():
        cause = "valid pixel" if applied == "none" else f"clear pixel (mask {applied!r})"
        raise NoDataError(
            f"the {len(placed)} scene(s) found hold no {cause} inside the region"
        )
    # Exactly the NaN pixels: each observation is whole (every band) or all NaN.
    np.copyto(out, np.float32(sensor.fill_value), where=~valid[:, None])
    from eoembed.providers.scenes import radiometry_records

    attrs = {
        "provider": provider.name,
        "collection": sensor.collection,
        "processing_level": info.processing_level,
        "frame_composite": method,
        "scene_ids": [[s.id for s in f.scenes] for f in plan],
        "scene_times": [[s.time_dict() for s in f.scenes] for f in plan],
        "unplaced_scene_ids": [s.id for s in unplaced],
        "mask": applied,
        "masked_scene_ids": masked,
        "valid_fraction": float(valid.mean()),
        "unit": info.unit,
        "radiometry": radiometry_records(placed, sensor.bands),
        "fetch_seconds": time.perf_counter() - t0,
    }
    return _to_series(out, counts, plan, sensor.bands, grid, attrs)


def _composite_frame(
    provider: SceneProvider,
    scenes: Sequence[Scene],
    grid: Grid,
    sensor: SensorSpec,
    method: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``scenes`` combined by ``method``, and their per-pixel count of clear observations.

    Returns ``(band, y, x)`` (NaN where no observation is clear) and uint16 ``(y, x)``.

    Each scene goes through :meth:`SceneProvider.read_scene`, so frames are cloud-masked
    (``sensor.mask``) exactly as ``fetch`` masks its composite.
    """
    from eoembed.providers.scenes import clear_observations, composite

    stack = np.empty((len(scenes), len(sensor.bands), *grid.shape), np.float32)
    for j, scene in enumerate(scenes):
        stack[j] = provider.read_scene(scene, grid, sensor)
    count = clear_observations(stack)
    return composite(stack, method), count


def _to_series(
    data: np.ndarray,
    counts: np.ndarray,
    plan: Sequence[Frame],
    bands: Sequence[str],
    grid: Grid,
    attrs: dict[str, Any],
) -> xr.DataArray:
    """Wrap frames like ``fetch`` wraps one composite, plus the per-frame coordinates."""
    import xarray as xr

    from eoembed.providers.scenes import to_dataarray

    # One frame through fetch's own wrapper gives identical band/y/x/spatial_ref coordinates.
    template = to_dataarray(data[0], bands, grid, attrs, copy=False)
    coords: dict[Hashable, Any] = {name: var.variable for name, var in template.coords.items()}
    valid = counts > 0
    coords["time"] = xr.Variable("time", np.array([f.time for f in plan], "datetime64[ns]"))
    coords["time_start"] = ("time", np.array([_ns(f.start) for f in plan], "datetime64[ns]"))
    coords["time_end"] = ("time", np.array([_ns(f.end) for f in plan], "datetime64[ns]"))
    coords["frame_valid"] = ("time", valid.any(axis=(1, 2)))
    coords["valid_fraction"] = ("time", valid.mean(axis=(1, 2)))
    coords["clear_count"] = xr.Variable(
        ("time", "y", "x"), counts,
        {"long_name": "number of clear observations", "description": _CLEAR_COUNT},
    )
    da = xr.DataArray(data, dims=("time", *template.dims), coords=coords, attrs=template.attrs)
    da.encoding.update(template.encoding)
    return da
