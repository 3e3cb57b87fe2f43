"""Pluggable export formats, like xarray's backends: built-ins plus an entry-point group.

``get_writer("geoparquet")`` returns the engine class; built-in engines whose module does not
import (a missing optional dependency) are reported with the extra that installs them, and
third-party engines register under the ``eoembed.writers`` entry-point group.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from eoembed.errors import DependencyNotFoundError, UnknownFormatError

if TYPE_CHECKING:
    from eoembed.writers.base import Writer

__all__ = ["ENTRY_POINT_GROUP", "formats_storing", "get_writer", "list_writers", "mode_mismatch"]

ENTRY_POINT_GROUP = "eoembed.writers"

_BUILTIN: dict[str, str] = {
    "geoparquet": "eoembed.writers.geoparquet:GeoParquetWriter",
    "zarr": "eoembed.writers.zarr:ZarrWriter",
    "netcdf": "eoembed.writers.netcdf:NetCDFWriter",
    "cog": "eoembed.writers.cog:COGWriter",
    "npz": "eoembed.writers.npz:NpzWriter",
    "flatgeobuf": "eoembed.writers.ogr:FlatGeobufWriter",
    "gpkg": "eoembed.writers.ogr:GeoPackageWriter",
}


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _all() -> dict[str, str]:
    return {**_entry_points(), **_BUILTIN}


def list_writers() -> list[str]:
    """Names of every known format (built-in and plugins), installed or not."""
    return sorted(_all())


def get_writer(name: str) -> type[Writer]:
    """The writer class registered as ``name``.

    Raises:
        UnknownFormatError: no such format (the message lists the known ones).
        DependencyNotFoundError: the format's optional dependency is not installed.
    """
    target = _all().get(name)
    if target is None:
        raise UnknownFormatError(name, list_writers())
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DependencyNotFoundError(exc.name or module_name, "export") from exc
    cls: type[Writer] = getattr(module, attr)
    for dep in cls.requires:
        try:
            importlib.import_module(dep)
        except ImportError:
            raise DependencyNotFoundError(dep, cls.extra) from None
    return cls


def formats_storing(mode: str) -> list[str]:
    """The installed formats that store ``mode`` output (``"pooled"`` or ``"grid"``).

    Built-in ones first: what an error about a format and output mismatch suggests instead.
    """
    names = [*_BUILTIN, *sorted(set(_entry_points()) - set(_BUILTIN))]
    found = []
    for name in names:
        try:
            if mode in get_writer(name).modes:
                found.append(name)
        except Exception:  # noqa: BLE001, S112  (an uninstallable or broken plugin: not offered)
            continue
    return found


def mode_mismatch(format: str, stored: Iterable[str], mode: str) -> str:
    """Why ``format`` cannot hold ``mode`` output, and the flags (and arguments) that fix it."""
    others = [f for f in formats_storing(mode) if f != format]
    if mode == "pooled":
        fix = "add --output grid (output=OutputSpec.grid()) to export the grids"
        if others:
            fix += f", or choose a format that stores pooled vectors: {', '.join(others)}"
    else:
        fix = (f"choose a format that stores grids, e.g. --format {others[0]} (format="
               f"{others[0]!r}; also {', '.join(others[1:]) or 'none other'})"
               if others else "no installed format stores grids")
        fix += "; or drop --output grid for pooled vectors"
    return f"format {format!r} stores {' and '.join(sorted(stored))} output, not {mode!r}: {fix}"
