"""Pluggable export formats, like xarray's backends: built-ins plus an entry-point group.

``get_writer("geoparquet")`` returns the engine class; built-in engines whose module does not
import (a missing optional dependency) are reported with the extra that installs them, and
third-party engines register under the ``eoembed.writers`` entry-point group.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import TYPE_CHECKING

from eoembed.errors import DependencyNotFoundError, UnknownFormatError

if TYPE_CHECKING:
    from eoembed.writers.base import Writer

__all__ = ["ENTRY_POINT_GROUP", "get_writer", "list_writers"]

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
