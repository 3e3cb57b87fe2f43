"""Export metadata as GDAL metadata items: one ``name=value`` item per field, in one domain.

GDAL splits a metadata item at the first ``=`` *or* ``:``, so a key such as
``emb:dimensions`` would be stored as ``emb`` = ``dimensions=...`` (three items all named
``emb``). Keys are therefore written with ``_`` for ``:`` (``emb_dimensions``, ``emb_type``,
``emb_runtime_parameters``...) and mapped back on read; values that are not scalars are JSON.
The items go in their own domain, :data:`DOMAIN`, read by name with
``gdalinfo -mdd EOEMBED file`` or rasterio's ``src.tags(ns="EOEMBED")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eoembed.writers.base import flat_attrs

__all__ = ["DOMAIN", "from_gdal_metadata", "gdal_key", "to_gdal_metadata"]

DOMAIN = "EOEMBED"
"""The GDAL metadata domain eoembed's fields live in (COG tags, VRT, OGR layers)."""

_PREFIXES = ("emb",)
"""Namespaced field prefixes whose ``:`` becomes ``_`` in GDAL keys (and back on read)."""


def gdal_key(key: str) -> str:
    """``key`` as a GDAL metadata item name: ``emb:dimensions`` -> ``emb_dimensions``."""
    return key.replace(":", "_")


def to_gdal_metadata(attrs: Mapping[str, Any]) -> dict[str, str]:
    """``attrs`` as GDAL metadata items: ``:``-free keys, string values (JSON for the rest)."""
    return {gdal_key(k): str(v) for k, v in flat_attrs(attrs).items()}


def from_gdal_metadata(items: Mapping[str, str]) -> dict[str, str]:
    """Items written by :func:`to_gdal_metadata` under their field names (``emb:...``)."""
    out: dict[str, str] = {}
    for key, value in items.items():
        prefix, sep, rest = key.partition("_")
        out[f"{prefix}:{rest}" if sep and prefix in _PREFIXES else key] = value
    return out
