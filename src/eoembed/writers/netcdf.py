"""CF-1.8 NetCDF-4: one ``<id>.nc`` per grid record, placed alike by GDAL, QGIS and xarray.

Each file holds ``embedding`` ``(dim, y, x)`` with ``x``/``y`` cell-centre coordinates and a
``spatial_ref`` grid-mapping variable (``grid_mapping_name``, ``crs_wkt``, ``spatial_ref``,
``GeoTransform``: the attributes rioxarray and GDAL write and read). Quantised files hold int8
``embedding`` (``_FillValue`` -128) and float32 ``embedding_scale`` ``(dim,)``. Where the
provider counted clear observations, float32 ``cell_valid_fraction`` ``(y, x)`` holds each
cell's share of input pixels with imagery (0 past a scene's edge). Global
attributes: the record's metadata, the ``emb:`` fields and the export schema (``eoembed``,
JSON), so a single file describes itself.

The xarray Dataset built here (:func:`cf_dataset`) is also what the Zarr writer stores and
what the COG and npz readers return, so every grid format loads to the same shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.writers.base import (
    EmbeddingRecord,
    EmbeddingSchema,
    Writer,
    WrittenFile,
    flat_attrs,
    list_complete,
    record_metadata,
    schema_metadata,
    stac_embedding_fields,
)
from eoembed.writers.quantize import MISSING, dequantize

if TYPE_CHECKING:
    import xarray as xr

    from eoembed.grid import Grid

__all__ = [
    "CELL_VALID",
    "EMBEDDING",
    "SCALE",
    "NetCDFWriter",
    "cf_dataset",
    "dequantize_dataset",
    "file_attrs",
    "grid_tree",
]

EMBEDDING = "embedding"
"""Name of the ``(dim, y, x)`` data variable in every grid format."""
SCALE = "embedding_scale"
"""Name of the per-channel int8 scale variable ``(dim,)``."""
CELL_VALID = "cell_valid_fraction"
"""Name of the ``(y, x)`` variable: each cell's share of input pixels holding imagery."""


def cf_dataset(
    values: np.ndarray,
    grid: Grid,
    attrs: Mapping[str, Any],
    scale: np.ndarray | None = None,
    cell_valid: np.ndarray | None = None,
) -> xr.Dataset:
    """A georeferenced ``(dim, y, x)`` Dataset in CF-1.8 form.

    ``cell_valid`` (each cell's share of input pixels holding imagery) is stored as the
    ``(y, x)`` variable :data:`CELL_VALID`, so maps can leave cells without imagery blank.

    The CRS goes in a ``spatial_ref`` variable named by the data's ``grid_mapping`` and by its
    ``coordinates`` attribute, so plain ``xr.open_dataset``/``open_zarr`` decode it as a
    coordinate and ``.rio.crs``/``.rio.transform()`` work without ``decode_coords="all"``.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    var_attrs = {"long_name": "embedding", "units": "1"}
    if scale is not None:
        var_attrs["comment"] = f"int8: value = {EMBEDDING} * {SCALE} (per dim); {MISSING} = missing"
    da = xr.DataArray(
        values,
        dims=("dim", "y", "x"),
        coords={"dim": np.arange(values.shape[0]), "y": grid.ys(), "x": grid.xs()},
        name=EMBEDDING,
        attrs=var_attrs,
    )
    da = da.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    da = da.rio.write_coordinate_system()
    da.encoding["coordinates"] = "spatial_ref"
    if scale is not None:
        da.encoding["_FillValue"] = MISSING
    ds: xr.Dataset = da.to_dataset()
    if scale is not None:
        ds[SCALE] = xr.DataArray(
            np.asarray(scale, dtype=np.float32),
            dims=("dim",),
            attrs={"long_name": "int8 dequantisation scale per dim"},
        )
    if cell_valid is not None:
        ds[CELL_VALID] = xr.DataArray(
            np.asarray(cell_valid, dtype=np.float32), dims=("y", "x"),
            attrs={"long_name": "share of the cell's input pixels holding imagery",
                   "units": "1"},
        )
    ds.attrs.update(attrs)
    ds.attrs["Conventions"] = "CF-1.8"
    return ds


def dequantize_dataset(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with float32 ``embedding`` (``embedding * embedding_scale``), scale dropped."""
    if SCALE not in ds:
        return ds
    values = dequantize(np.asarray(ds[EMBEDDING].values), np.asarray(ds[SCALE].values))
    out = ds.drop_vars(SCALE)
    out[EMBEDDING] = ds[EMBEDDING].copy(data=values)
    out[EMBEDDING].attrs.pop("comment", None)
    out[EMBEDDING].encoding = {
        k: v for k, v in ds[EMBEDDING].encoding.items() if k in ("coordinates", "grid_mapping")
    }
    return out


def file_attrs(record: EmbeddingRecord, schema: EmbeddingSchema) -> dict[str, Any]:
    """Attributes that make one record's file self-describing (record, ``emb:``, schema)."""
    return {
        **record_metadata(record),
        **stac_embedding_fields(schema),
        "eoembed": schema_metadata(schema),
    }


def grid_tree(datasets: Mapping[str, xr.Dataset], root_attrs: Mapping[str, Any]) -> xr.DataTree:
    """The DataTree every grid format loads to: one child per record id."""
    import xarray as xr

    tree = xr.DataTree.from_dict({f"/{name}": ds for name, ds in datasets.items()})
    tree.attrs.update(root_attrs)
    return tree


class NetCDFWriter(Writer):
    """One CF-1.8 NetCDF-4 file per grid record: ``<id>.nc``."""

    name: ClassVar[str] = "netcdf"
    description: ClassVar[str] = "CF-1.8 NetCDF-4, one <id>.nc per region (GDAL, QGIS, xarray)"
    modes: ClassVar[frozenset[str]] = frozenset({"grid"})
    requires: ClassVar[tuple[str, ...]] = ("netCDF4", "xarray", "rioxarray")

    def write(self, records: Sequence[EmbeddingRecord]) -> list[WrittenFile]:
        """Write ``<id>.nc`` for each record (all or none of the batch)."""
        return self.write_each(records, lambda r: f"{r.id}.nc", self._write_one)

    def _write_one(self, record: EmbeddingRecord, tmp: Path) -> None:
        assert record.output_grid is not None  # checked by prepare()
        attrs = flat_attrs(file_attrs(record, self.schema))
        ds = cf_dataset(record.values, record.output_grid, attrs, record.scale,
                        record.cell_valid_fraction)
        # Added to the variable's encoding: an ``encoding=`` argument would replace it, and
        # with it ``grid_mapping`` (rioxarray keeps it there), losing the CRS for GDAL.
        ds[EMBEDDING].encoding.update(zlib=True, complevel=4, shuffle=True)
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4")

    @classmethod
    def list_files(cls, directory: Path) -> list[str]:
        """Every complete ``<id>.nc`` in ``directory``."""
        return list_complete(Path(directory), "*.nc")

    @classmethod
    def load(cls, directory: Path, *, dequantize: bool = True) -> xr.DataTree:
        """All records as an ``xarray.DataTree``, one child per id.

        Args:
            directory: the writer's folder.
            dequantize: return float32 values for int8 files (drops ``embedding_scale``).
        """
        import xarray as xr

        directory = Path(directory)
        datasets: dict[str, xr.Dataset] = {}
        for name in cls.list_files(directory):
            with xr.open_dataset(directory / name, engine="netcdf4") as opened:
                ds = opened.load()
            datasets[name.removesuffix(".nc")] = dequantize_dataset(ds) if dequantize else ds
        root: dict[str, Any] = {}
        if datasets:
            root["eoembed"] = json.loads(str(next(iter(datasets.values())).attrs["eoembed"]))
        return grid_tree(datasets, root)
