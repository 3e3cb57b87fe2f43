"""Zarr v3 (zarr-python 3): one store, one group per grid record, each a CF Dataset.

Layout::

    <model-dir>/embeddings.zarr/
        zarr.json            root group: the export schema (``eoembed``) and ``emb:`` fields
        <id>/                one group per record, written as ``.tmp-*`` and renamed in place
            zarr.json        the record's metadata (dates, scenes, grids, fingerprint...)
            embedding/       (dim, y, x) float32, or int8 with embedding_scale/ (dim,)
            x/ y/ dim/       cell-centre coordinates
            spatial_ref/     CRS (crs_wkt, spatial_ref) and GeoTransform, as rioxarray writes

A group's metadata never names its own path, so a group written under a temporary name and
renamed is complete the moment it appears. Readers list the store's folders (Zarr v3's
default); :meth:`ZarrWriter.close` adds consolidated metadata once the export is whole, and a
resumed writer strips it first, so it is never stale while groups are being added.

``xarray.open_datatree(store, engine="zarr")`` opens every region as a child of the root.
When the regions share one grid, closing also writes a root-level mosaic (``embedding``
``(dim, mosaic_y, mosaic_x)``, see :mod:`eoembed.writers.zarr_mosaic`), so
``xarray.open_zarr(store)`` opens the whole export as one georeferenced array; like the
consolidated metadata it is removed when a writer reopens the store and rebuilt on close.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from eoembed.writers.base import (
    EmbeddingRecord,
    EmbeddingSchema,
    Writer,
    WrittenFile,
    atomic_path,
    list_complete,
    record_metadata,
    schema_metadata,
    stac_embedding_fields,
)
from eoembed.writers.netcdf import cf_dataset, dequantize_dataset, grid_tree
from eoembed.writers.zarr_mosaic import MOSAIC_ARRAYS, remove_mosaic, write_mosaic

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["STORE", "ZarrWriter"]

STORE = "embeddings.zarr"
"""The store's folder name inside the writer's directory."""


def _root_metadata(attrs: dict[str, Any]) -> dict[str, Any]:
    """A Zarr v3 group's ``zarr.json`` (the whole spec for a group without consolidation)."""
    return {"zarr_format": 3, "node_type": "group", "attributes": attrs}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


class ZarrWriter(Writer):
    """A Zarr v3 store ``embeddings.zarr`` with one group per grid record."""

    name: ClassVar[str] = "zarr"
    description: ClassVar[str] = "Zarr v3 store, one CF-georeferenced group per region"
    modes: ClassVar[frozenset[str]] = frozenset({"grid"})
    requires: ClassVar[tuple[str, ...]] = ("zarr", "xarray", "rioxarray")

    def __init__(self, directory: Path, schema: EmbeddingSchema) -> None:
        super().__init__(directory, schema)
        self.store = self.directory / STORE
        self._write_root()
        remove_mosaic(self.store)  # derived: rebuilt on close from every group

    def _write_root(self) -> None:
        """Create the root group, or refresh it without consolidated metadata (resume)."""
        attrs = {"eoembed": schema_metadata(self.schema), **stac_embedding_fields(self.schema)}
        wanted = _root_metadata(json.loads(json.dumps(attrs, default=str)))
        if _read_json(self.store / "zarr.json") != wanted:
            _write_json(self.store / "zarr.json", wanted)

    def write(self, records: Sequence[EmbeddingRecord]) -> list[WrittenFile]:
        """Write one group ``embeddings.zarr/<id>`` per record (all or none of the batch)."""
        return self.write_each(records, lambda r: f"{STORE}/{r.id}", self._write_one)

    def _write_one(self, record: EmbeddingRecord, tmp: Path) -> None:
        assert record.output_grid is not None  # checked by prepare()
        ds = cf_dataset(record.values, record.output_grid, record_metadata(record), record.scale,
                        record.cell_valid_fraction)
        ds.to_zarr(tmp, zarr_format=3, mode="w-", consolidated=False)

    def close(self) -> None:
        """Write the root mosaic (regions on one grid), then consolidate the metadata."""
        import zarr

        if not (self.store / "zarr.json").is_file():
            return
        self._write_root()  # metadata known only after the first batch (precision="auto")
        write_mosaic(self.store, [
            rel.split("/", 1)[1] for rel in self.list_files(self.directory)
            if (self.directory / rel / "zarr.json").is_file()  # not a crash's half group
        ])
        with warnings.catch_warnings():
            # zarr-python notes that consolidation is not yet part of the v3 spec; readers
            # that do not know it fall back to listing, which the store also supports.
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            zarr.consolidate_metadata(str(self.store), zarr_format=3)

    @classmethod
    def list_files(cls, directory: Path) -> list[str]:
        """Every group folder, as ``embeddings.zarr/<id>``.

        Empty or half-filled group folders are listed too, so that resume removes those the
        manifest does not record instead of tripping over them on every run; the root
        mosaic's arrays are not groups and are never listed (by name: record ids are hex, so
        no group is called ``embedding``; no file is read per group).
        """
        store = Path(directory) / STORE
        return [
            f"{STORE}/{name}" for name in list_complete(store, "*")
            if name not in MOSAIC_ARRAYS and (store / name).is_dir()
        ]

    @classmethod
    def _groups(cls, directory: Path, *, dequantize: bool) -> dict[str, xr.Dataset]:
        """Every complete record group, opened lazily."""
        import xarray as xr

        store = Path(directory) / STORE
        datasets: dict[str, xr.Dataset] = {}
        for rel in cls.list_files(Path(directory)):
            group = rel.split("/", 1)[1]
            if not (store / group / "zarr.json").is_file():
                continue  # an incomplete group a crash left (the manifest never records one)
            ds = xr.open_dataset(store, group=group, engine="zarr", consolidated=False)
            datasets[group] = dequantize_dataset(ds) if dequantize else ds
        return datasets

    @classmethod
    def load(cls, directory: Path, *, dequantize: bool = True) -> xr.DataTree:
        """All records as an ``xarray.DataTree`` (one child per id; arrays read lazily).

        Args:
            directory: the writer's folder.
            dequantize: return float32 values for int8 groups (drops ``embedding_scale``).
        """
        store = Path(directory) / STORE
        datasets = cls._groups(Path(directory), dequantize=dequantize)
        root = _read_json(store / "zarr.json") or {}
        return grid_tree(datasets, root.get("attributes", {}))
