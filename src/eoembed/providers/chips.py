"""Chip folders: every GeoTIFF one sample, read on its own grid (TerraTorch's chip workflow).

:func:`open_chips` lists the chips (a folder, a glob or a list of files), reads each header
and hashes each file once; every chip becomes a :class:`ChipSpec`, a spatial spec whose grid
is the chip's own (no resampling) and whose identity is its file name and content hash, so two
chips of the same footprint (two dates, two products) are two jobs, and a chip whose bytes
change is a new job. :class:`ChipsProvider` then serves each chip's pixels to the ordinary
pipeline, ``export_batch(open_chips(...), models, ...)``, with its manifest, resume, integrity
checks and writers. A chip that cannot be read fails alone, at its fetch.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.arrays import BandsLike, UnitLike, resolve_bands, to_harmonised_dn
from eoembed.bands import BandInfo, sensor_bands
from eoembed.errors import CapabilityError, ProviderError, SpecError
from eoembed.grid import Grid, NativeGrid
from eoembed.providers.base import CollectionInfo
from eoembed.specs.spatial import SpatialSpec, _canonical_crs

if TYPE_CHECKING:
    import xarray as xr
    from shapely.geometry.base import BaseGeometry

    from eoembed.specs import SensorSpec, TemporalSpec

__all__ = ["CHIP_SUFFIXES", "ChipSpec", "ChipsProvider", "open_chips"]

CHIP_SUFFIXES = (".tif", ".tiff")
"""Files a chip folder is listed for."""

CHIPS_COLLECTION = "chips"


@dataclass(frozen=True)
class ChipSpec(SpatialSpec):
    """One chip: its file name and content hash, and its own pixel grid.

    ``error`` is set for a chip whose header could not be read; its grid is then a
    placeholder and its fetch fails, naming the error.
    """

    name: str
    """The file's path relative to the folder listed (its name, for single files)."""
    sha256: str
    crs: str
    left: float
    top: float
    resolution: float
    width: int
    height: int
    error: str = ""

    def __post_init__(self) -> None:
        if not self.error:
            object.__setattr__(self, "crs", _canonical_crs("ChipSpec.crs", self.crs))

    @property
    def chip_grid(self) -> Grid:
        """The chip's own grid."""
        return Grid(self.crs, self.left, self.top, self.resolution, self.width, self.height)

    @property
    def source_identity(self) -> str:
        """What tells this chip's pixels from another's on the same grid: name and hash."""
        return f"{self.name}@{self.sha256}"

    def geometry(self) -> BaseGeometry:
        """The chip's footprint, in its CRS."""
        from shapely.geometry import box

        if self.error:
            raise ProviderError(f"chip {self.name!r} cannot be read: {self.error}")
        return box(*self.chip_grid.bounds)

    def grid_crs(self) -> str:
        """The chip's own CRS."""
        return self.crs

    def _grid(self, scale_m: float, native: NativeGrid | None = None) -> Grid:
        """The chip's own grid, whatever ``scale_m`` and anchor: chips are never resampled."""
        return self.chip_grid


@dataclass(frozen=True)
class _Chip:
    spec: ChipSpec
    path: str
    bands: tuple[str, ...]
    """Canonical band name of each of the file's bands (empty when unreadable)."""
    nodata: float | None = None


def _hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _list(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[tuple[str, str]]:
    """``(path, name)`` of every chip: a folder's GeoTIFFs, a glob's matches, or the files."""
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        if Path(text).is_dir():
            root = Path(text)
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in CHIP_SUFFIXES
                           and p.is_file())
            return [(str(p), p.relative_to(root).as_posix()) for p in files]
        if glob.has_magic(text):
            return [(p, Path(p).name) for p in sorted(glob.glob(text, recursive=True))
                    if Path(p).is_file()]
        return [(text, Path(text).name)]
    return [(os.fspath(p), Path(os.fspath(p)).name) for p in source]


def _read_chip(
    path: str, name: str, bands: BandsLike | None, sensor: str | None
) -> tuple[_Chip, tuple[BandInfo, ...]]:
    """Header, band names and hash of one chip; a chip carrying the error when unreadable."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        digest = _hash(path)
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc.strerror or exc}"
        return _Chip(ChipSpec(name, "", "", 0.0, 0.0, 1.0, 1, 1, error), path, ()), ()
    try:
        with rasterio.open(path) as src:
            t, crs, count = src.transform, src.crs, src.count
            descriptions, nodata = src.descriptions, src.nodata
            height, width = src.height, src.width
        if crs is None:
            raise SpecError(f"chip {name!r} crs", None, allowed="a georeferenced GeoTIFF")
        if t.b != 0 or t.d != 0 or t.a <= 0 or abs(-t.e - t.a) > 1e-9 * t.a:
            raise SpecError(f"chip {name!r} transform", tuple(t)[:6],
                            allowed="north-up square pixels")
        given = bands if bands is not None else (
            list(descriptions) if all(descriptions) else None
        )
        if given is None:
            raise SpecError(f"chip {name!r} bands", list(descriptions),
                            allowed="band descriptions in the file, or bands= / --bands")
        infos = resolve_bands(given, sensor, count)
        spec = ChipSpec(name, digest, crs.to_string(), float(t.c), float(t.f), float(t.a),
                        int(width), int(height))
    except (RasterioError, SpecError, CapabilityError, OSError) as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return _Chip(ChipSpec(name, digest, "", 0.0, 0.0, 1.0, 1, 1, error), path, ()), ()
    return _Chip(spec, path, tuple(b.name for b in infos), nodata), infos


def open_chips(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    sensor: str | None = None,
    bands: BandsLike | None = None,
    unit: UnitLike = "dn",
) -> ChipsProvider:
    """The chips of a folder (GeoTIFFs, recursively), a glob, or a list of files.

    >>> chips = open_chips("chips/", sensor="landsat-8")  # doctest: +SKIP
    >>> export_batch(chips, "mosaiks", temporal=TemporalSpec.year(2021), out="out")  # doctest: +SKIP

    Args:
        source: a folder, a glob pattern (``"chips/*_2021.tif"``) or chip files.
        sensor: the registered sensor whose vocabulary names the bands (default Sentinel-2).
        bands: the bands of every chip, in file order; default: each file's band
            descriptions (``rasterio``'s ``descriptions``, GDAL's band description).
        unit: the chips' values (see :data:`eoembed.arrays.UnitLike`).

    Raises:
        ProviderError: no chips found, or none can be read (each unreadable one is named).
        CapabilityError: an unknown sensor.
        SpecError: a bad unit.
    """
    if sensor is not None:
        sensor_bands(sensor)  # an unknown sensor fails here, not once per chip
    to_harmonised_dn(np.zeros(1), unit)  # a bad unit fails here too
    listed = _list(source)
    if not listed:
        raise ProviderError(f"no chips ({', '.join(CHIP_SUFFIXES)}) found at {source!r}")
    chips: list[_Chip] = []
    table: tuple[BandInfo, ...] = ()
    for path, name in listed:
        chip, infos = _read_chip(path, name, bands, sensor)
        chips.append(chip)
        table = table or infos
    if not table:
        reasons = "; ".join(f"{c.spec.name}: {c.spec.error}" for c in chips[:5])
        raise ProviderError(f"none of the {len(chips)} chip(s) at {source!r} can be read: "
                            f"{reasons}")
    return ChipsProvider(chips, table, unit=unit, sensor=sensor)


class ChipsProvider:
    """Serves each listed chip's own pixels, in harmonised DN, on its own grid."""

    name = "chips"

    def __init__(
        self, chips: Sequence[_Chip], bands: tuple[BandInfo, ...], *, unit: UnitLike = "dn",
        sensor: str | None = None,
    ) -> None:
        self._chips = {(c.spec.name, c.spec.sha256): c for c in chips}
        self.specs: list[ChipSpec] = [c.spec for c in chips]
        """One spec per chip, in listing order: the regions of an export."""
        self.unit = unit
        self.sensor = sensor
        self._info = CollectionInfo(
            CHIPS_COLLECTION, bands, "unknown", nodata=None, unit="dn",
            description=f"GeoTIFF chips ({sensor or 'sentinel-2'} band names), each on its "
            "own grid",
        )
        readable = [c.spec.resolution for c in chips if not c.spec.error]
        self.native_gsd_m: float | None = readable[0] if readable else None
        """The first readable chip's pixel size: the GSD requests default to."""

    @property
    def unreadable(self) -> list[ChipSpec]:
        """Chips whose header could not be read (their fetch fails)."""
        return [s for s in self.specs if s.error]

    def collections(self) -> Mapping[str, CollectionInfo]:
        """One collection, ``"chips"``, of the first readable chip's bands."""
        return {CHIPS_COLLECTION: self._info}

    def fetch(
        self, spatial: SpatialSpec, temporal: TemporalSpec, sensor: SensorSpec, *,
        grid: Grid | None = None,
    ) -> xr.DataArray:
        """The chip's pixels ``(band, y, x)`` in ``sensor.bands``' order, on its own grid.

        The time window is not used: a chip is what it is. The file is hashed again as it
        is read, so a chip changed since it was listed fails rather than being mislabelled.

        Raises:
            ProviderError: the chip cannot be read, or changed since it was listed.
            CapabilityError: not one of this provider's chips, another grid, or a band the
                chip lacks.
        """
        from rasterio.io import MemoryFile

        from eoembed.providers.scenes import to_dataarray

        chip = self._chips.get((getattr(spatial, "name", ""), getattr(spatial, "sha256", "")))
        if chip is None or not isinstance(spatial, ChipSpec):
            raise CapabilityError(f"provider 'chips' serves only its own chips, not {spatial!r}")
        if spatial.error:
            raise ProviderError(f"chip {spatial.name!r} cannot be read: {spatial.error}")
        own = spatial.chip_grid
        if grid is not None and grid != own:
            raise CapabilityError(f"chip {spatial.name!r} is read on its own grid only "
                                  "(chips are never resampled)")
        missing = [b for b in sensor.bands if b not in chip.bands]
        if missing:
            raise CapabilityError(f"chip {spatial.name!r} has no band(s) {', '.join(missing)}; "
                                  f"it has: {', '.join(chip.bands)}")
        try:
            raw = Path(chip.path).read_bytes()
            if hashlib.sha256(raw).hexdigest() != spatial.sha256:
                raise ProviderError(f"chip {spatial.name!r} changed since it was listed; "
                                    "list the chips again")
            indexes = [chip.bands.index(b) + 1 for b in sensor.bands]
            with MemoryFile(raw) as memory, memory.open() as src:
                stored = src.read(indexes).astype(np.float32)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 (GDAL's errors for damaged files vary)
            first = (str(exc).splitlines() or [""])[0]
            raise ProviderError(f"chip {spatial.name!r} cannot be read: "
                                f"{type(exc).__name__}: {first}") from None
        valid = np.isfinite(stored)
        if chip.nodata is not None:
            valid &= stored != np.float32(chip.nodata)
        values, conversion = to_harmonised_dn(stored, self.unit)
        values[~valid] = sensor.fill_value
        attrs: dict[str, Any] = {
            "scene_ids": [spatial.name], "scene_times": [],
            "valid_fraction": float(valid.all(axis=0).mean()), "unit": "dn",
            "radiometry": [conversion], "chip_sha256": spatial.sha256,
        }
        return to_dataarray(values, list(sensor.bands), own, attrs, copy=False)
