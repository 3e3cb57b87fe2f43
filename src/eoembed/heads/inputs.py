"""Embeddings as heads see them: an export's rows or grids, with their georeference and origin.

An export folder (:func:`eoembed.pipeline.export_batch`) loads as pooled rows (a GeoDataFrame:
``id``, ``geometry`` footprint in CRS84, ``embedding``) or grids (a DataTree with one
``(dim, y, x)`` ``embedding`` per region, CRS and transform set). :class:`Embeddings` gives
both one shape and keeps the export's request, so a head records exactly which embedder
(model, options, weights revision and checksum, sensor, output) it was trained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.errors import SpecError
from eoembed.grid import Grid
from eoembed.writers.netcdf import CELL_VALID

if TYPE_CHECKING:
    import xarray as xr
    from shapely.geometry.base import BaseGeometry

__all__ = [
    "Embeddings",
    "RegionGrid",
    "embedder_info",
    "has_imagery",
    "load_embeddings",
    "region_grid",
]


@dataclass
class RegionGrid:
    """One region's grid embedding: ``values`` ``(dim, h, w)`` on :attr:`grid`."""

    id: str
    values: np.ndarray
    grid: Grid
    cell_valid: np.ndarray | None = None
    """``(h, w)``: each cell's share of input pixels that held imagery; None: not recorded."""

    @property
    def footprint(self) -> BaseGeometry:
        """The grid's outline in lon/lat."""
        from shapely.geometry import box

        from eoembed.grid import reproject_geometry

        return reproject_geometry(box(*self.grid.bounds), self.grid.crs, "EPSG:4326")

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Lon/lat of every cell centre, ``(h, w)`` each."""
        from eoembed.grid import transformer

        xs, ys = np.meshgrid(self.grid.xs(), self.grid.ys())
        lon, lat = transformer(self.grid.crs, "EPSG:4326").transform(xs, ys)
        return np.asarray(lon), np.asarray(lat)


def region_grid(region_id: str, data: xr.DataArray | xr.Dataset) -> RegionGrid:
    """A :class:`RegionGrid` from a georeferenced ``(dim, y, x)`` DataArray or its Dataset."""
    import rioxarray  # noqa: F401  (registers .rio)

    da = data["embedding"] if hasattr(data, "data_vars") else data
    crs = da.rio.crs
    if crs is None:
        raise SpecError("embeddings", region_id, reason="a grid without a CRS cannot be placed")
    t = da.rio.transform()
    if abs(t.b) > 1e-9 or abs(t.d) > 1e-9 or not np.isclose(abs(t.a), abs(t.e)):
        raise SpecError("embeddings", region_id, allowed="north-up grids with square cells")
    values = np.asarray(da.transpose("dim", "y", "x").values, dtype=np.float32)
    grid = Grid(crs.to_string(), float(t.c), float(t.f), float(t.a), values.shape[2],
                values.shape[1])
    cell_valid = None
    if hasattr(data, "data_vars") and CELL_VALID in data.data_vars:
        cell_valid = np.asarray(data[CELL_VALID].transpose("y", "x").values, dtype=np.float32)
    return RegionGrid(region_id, values, grid, cell_valid)


@dataclass
class Embeddings:
    """One model's embeddings from an export: pooled rows or region grids."""

    path: Path | None
    model: str
    mode: str
    """``"pooled"`` or ``"grid"``."""
    data: Any
    """The GeoDataFrame (pooled) or DataTree (grid) :func:`load_export` returned."""
    request: dict[str, Any]

    def __len__(self) -> int:
        return len(self.data) if self.mode == "pooled" else len(self.data.children)

    @property
    def dim(self) -> int:
        """The embedding size."""
        if self.mode == "pooled":
            return len(self.data["embedding"].iloc[0]) if len(self.data) else 0
        first = next(iter(self.data.children.values()), None)
        return int(first["embedding"].sizes["dim"]) if first is not None else 0

    def matrix(self) -> np.ndarray:
        """Pooled embeddings as ``(n, dim)`` float32, in row order."""
        if not len(self.data):
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.asarray(v, dtype=np.float32) for v in self.data["embedding"]])

    def valid_fractions(self) -> dict[str, float | None]:
        """Each region's share of input pixels that held imagery (``None``: not recorded).

        The export records it per region (``valid_fraction``: a pooled row's column, a grid
        region's attribute); 0 means the model saw only fill values (past a scene's edge).
        """
        if self.mode == "pooled":
            frame = self.data
            values = frame["valid_fraction"] if "valid_fraction" in frame else [None] * len(frame)
            return {str(i): _fraction(v) for i, v in zip(frame["id"], values, strict=True)}
        return {name: _fraction(child.attrs.get("valid_fraction"))
                for name, child in self.data.children.items()}

    def grids(self) -> list[RegionGrid]:
        """Grid embeddings, one per region, sorted by id."""
        return [region_grid(name, child.to_dataset())
                for name, child in sorted(self.data.children.items())]


def _fraction(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def has_imagery(fraction: float | None, min_valid: float = 0.0) -> bool:
    """Whether a sample with ``fraction`` valid input pixels may be trained on or mapped.

    More than none is always needed; ``min_valid`` asks for at least that share. A fraction
    the export did not record counts as valid.
    """
    return fraction is None or (fraction > 0.0 and fraction >= min_valid)


def cell_imagery(region: RegionGrid, fraction: float | None, min_valid: float = 0.0
                 ) -> np.ndarray:
    """``(h, w)`` bool: the cells of ``region`` with imagery (:func:`has_imagery`).

    Per cell where the export recorded ``cell_valid_fraction``, else the region's own
    ``fraction`` for every cell.
    """
    shape = region.values.shape[1:]
    if not has_imagery(fraction, min_valid):
        return np.zeros(shape, dtype=bool)
    if region.cell_valid is None:
        return np.ones(shape, dtype=bool)
    return np.asarray((region.cell_valid > 0) & (region.cell_valid >= min_valid), dtype=bool)


def embedder_info(model: str, request: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """What a head records about its embedder: id, options, weights revision, request hash.

    ``request_sha256`` is the export's request fingerprint (everything besides the region that
    decides the numbers); predictions check embeddings against it.
    """
    from eoembed.specs._base import sha256_hex

    weights = request.get("weights") or {}
    return {
        "id": model,
        "revision": weights.get("revision"),
        "weights_sha256": weights.get("sha256"),
        "options": request.get("options", {}),
        "output": request.get("output"),
        "sensor": request.get("sensor"),
        "provider": request.get("provider"),
        "temporal": request.get("temporal"),
        "request_sha256": sha256_hex(request) if request else None,
        "export": source,
    }


def load_embeddings(path: str | Path, model: str | None = None) -> Embeddings:
    """One model's embeddings from an export folder.

    Args:
        path: a folder written by ``export_batch`` / ``eoembed export``.
        model: the model to take; needed only when the export holds several.

    Raises:
        SpecError: not an export folder, or ``model`` missing or not in the export.
    """
    from eoembed.pipeline.export import JOB_FILE, load_export
    from eoembed.pipeline.folder import read_job

    if not isinstance(path, str | os.PathLike):
        raise SpecError("embeddings", type(path).__name__,
                        allowed="an export folder written by eoembed export")
    path = Path(path)
    job = read_job(path)
    if job is None:
        raise SpecError("embeddings", str(path),
                        allowed="an export folder written by eoembed export",
                        reason=f"{JOB_FILE} is missing")
    models = list(job.get("models", {}))
    if model is None:
        if len(models) != 1:
            raise SpecError("model", None, allowed=models,
                            reason=f"{path} holds several models; name one")
        model = models[0]
    elif model not in models:
        raise SpecError("model", model, allowed=models, reason=f"not in {path}")
    request = job["models"][model].get("request", {})
    mode = (job.get("output") or {}).get("mode", "pooled")
    data = load_export(path, model=model)
    return Embeddings(path, model, mode, data, request)
