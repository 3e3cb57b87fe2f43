"""The writer contract: batches of finished embeddings in, complete files out.

The export engine hands a writer batches of :class:`EmbeddingRecord`; the writer turns each
batch into files that appear complete or not at all (written under a temporary name, then
renamed), and says which record ids each file holds. The engine records those files in the
manifest only after they exist, so after a crash any data file the manifest does not name is
an orphan and is removed (:meth:`Writer.list_files` finds them). Files are never rewritten.

Writers know nothing of torch, providers or catalogues: records are numpy and plain JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.errors import CapabilityError, ExportConflictError, SpecError

if TYPE_CHECKING:
    from eoembed.grid import Grid

__all__ = [
    "COLLECTION_EMB_FIELDS",
    "EMBEDDINGS_EXTENSION",
    "ITEM_EMB_FIELDS",
    "TIME_SEMANTICS",
    "TMP_PREFIX",
    "EmbeddingRecord",
    "EmbeddingSchema",
    "Writer",
    "WrittenFile",
    "atomic_path",
    "flat_attrs",
    "list_complete",
    "model_link",
    "next_part_seq",
    "part_name",
    "record_metadata",
    "schema_metadata",
    "stac_datetimes",
    "stac_embedding_fields",
]

TMP_PREFIX = ".tmp-"
"""Files and folders being written start with this; a crash can leave them, resume removes them."""


@dataclass(frozen=True)
class EmbeddingSchema:
    """What every record of one (export, model) shares; writers put it in file metadata."""

    model: str
    mode: str
    """``"pooled"`` (``values`` is ``(dim,)``) or ``"grid"`` (``(dim, h, w)``)."""
    dim: int
    dtype: str = "float32"
    """Stored type: ``"float32"``, or ``"int8"`` when quantised."""
    quantization: str | None = None
    """``None``, or ``"int8-symmetric"``: see :mod:`eoembed.writers.quantize`."""
    pooling: str | None = None
    model_meta: dict[str, Any] = field(default_factory=dict, hash=False)
    """The embedder's metadata (family, options, weights repo/revision/sha256, device)."""
    request: dict[str, Any] = field(default_factory=dict, hash=False)
    """Job-level specs as dicts: temporal, sensor, output, provider, eoembed version."""


@dataclass(frozen=True)
class EmbeddingRecord:
    """One region x model result, ready to write."""

    id: str
    """Deterministic id: a hash of geometry, time window, model and source."""
    model: str
    values: np.ndarray
    """float32 ``(dim,)`` or ``(dim, h, w)``; int8 when ``scale`` is set."""
    footprint_wkb: bytes
    """The region's footprint in lon/lat (OGC:CRS84), WKB."""
    input_grid: Grid
    """The pixel grid the model's input was read onto (native CRS, transform, size)."""
    output_grid: Grid | None
    """Grid mode: the grid of embedding cells (same CRS, coarser transform)."""
    start_datetime: str
    """First day of the time window, ISO date."""
    end_datetime: str
    """First day after the window (half-open), ISO date."""
    scene_ids: tuple[str, ...]
    spatial: dict[str, Any]
    """The region spec's ``to_dict()``."""
    fingerprint: str
    """The request fingerprint (specs, model, weights, preprocessing, version)."""
    scale: np.ndarray | None = None
    """int8 only: dequantise as ``values * scale`` (pooled: shape ``()``, grid: ``(dim,)``)."""
    valid_fraction: float | None = None
    cell_valid_fraction: np.ndarray | None = None
    """Grid mode: float32 ``(h, w)``, each cell's share of input pixels holding imagery (0
    past a scene's edge, where the model saw only fill values); None when unknown."""
    scene_times: tuple[dict[str, Any], ...] = ()
    frame_dates: tuple[str | None, ...] = ()
    """A time series input (``frames=N``): each frame's date given to the model (acquisition
    day, or the middle of its bin), ISO; empty when the input was one composite."""


@dataclass(frozen=True)
class WrittenFile:
    """A file (or folder) a writer made complete, relative to the writer's directory."""

    path: str
    ids: tuple[str, ...]


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write; rename it to ``final`` only on success.

    Works for files and folders (a Zarr group). The temporary name starts with
    :data:`TMP_PREFIX`, so a crash leaves nothing that looks complete.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def list_complete(directory: Path, pattern: str) -> list[str]:
    """Names in ``directory`` matching ``pattern``, sorted, without temporary ones."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.glob(pattern) if not p.name.startswith(TMP_PREFIX))


_PART = re.compile(r"^part-(\d+)-")


def next_part_seq(directory: Path, suffix: str) -> int:
    """The sequence number after every complete ``part-<seq>-*<suffix>`` in ``directory``.

    Part files are never rewritten, so a resumed export numbers its parts after the last.
    """
    seqs = [
        int(m.group(1))
        for name in list_complete(directory, f"part-*{suffix}")
        if (m := _PART.match(name))
    ]
    return max(seqs, default=-1) + 1


def part_name(seq: int, ids: Sequence[str], suffix: str) -> str:
    """``part-<seq>-<shortid><suffix>``; the short id hashes the ids the part holds."""
    short = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:8]
    return f"part-{seq:05d}-{short}{suffix}"


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Writer(ABC):
    """Base of the format engines: subclasses write one batch to complete files.

    Args:
        directory: the folder this writer owns (``<out>/<model>``); created if missing.
        schema: what the records share.
    """

    name: ClassVar[str]
    """Engine name users pass as ``format=``."""
    description: ClassVar[str]
    modes: ClassVar[frozenset[str]]
    """Output modes this format stores: ``{"pooled"}``, ``{"grid"}`` or both."""
    requires: ClassVar[tuple[str, ...]] = ()
    """Modules that must import for this engine to be available."""
    extra: ClassVar[str] = "export"
    """The pip extra that installs :attr:`requires`."""
    replace_unrecorded: bool = False
    """Replace a per-record file that already exists instead of refusing. Only for callers
    that write records no manifest holds (a cluster task run again after its worker died:
    the first attempt's files were never recorded)."""

    def __init__(self, directory: Path, schema: EmbeddingSchema) -> None:
        if schema.mode not in self.modes:
            raise CapabilityError(
                f"format {self.name!r} stores {' or '.join(sorted(self.modes))} embeddings,"
                f" not {schema.mode!r}"
            )
        self.directory = Path(directory)
        self.schema = schema
        self.directory.mkdir(parents=True, exist_ok=True)
        self._next_seq: int | None = None

    def prepare(self, records: Sequence[EmbeddingRecord]) -> list[EmbeddingRecord]:
        """Check every record against the schema before any I/O; quantise float ones if asked.

        Checking the whole batch first means a bad record fails the batch before any of its
        files exists, so a retried batch never meets its own half.

        Raises:
            SpecError: a record whose id, shape, dtype, scale or grid does not fit the schema.
        """
        from eoembed.writers.quantize import quantize_record

        out: list[EmbeddingRecord] = []
        seen: set[str] = set()
        for record in records:
            if not _ID.match(record.id) or record.id in seen:
                raise SpecError(
                    "EmbeddingRecord.id",
                    record.id,
                    allowed="unique ids of letters, digits, '.', '_' or '-', not starting with"
                    " '.' (they name files)",
                )
            seen.add(record.id)
            if self.schema.quantization and record.scale is None:
                record = quantize_record(record)
            _check_record(record, self.schema)
            out.append(record)
        return out

    def write_each(
        self,
        records: Sequence[EmbeddingRecord],
        relpath: Callable[[EmbeddingRecord], str],
        write_one: Callable[[EmbeddingRecord, Path], None],
    ) -> list[WrittenFile]:
        """One file (or folder) per record, for the whole batch or none of it.

        ``write_one(record, tmp)`` writes to a temporary path renamed to ``relpath(record)``
        afterwards. Existing files are never replaced; if any record fails, the files this
        call already completed are removed, so a retried batch starts clean.

        Raises:
            ExportConflictError: a record's file already exists.
        """
        records = self.prepare(records)
        for record in records:
            if self.replace_unrecorded and (self.directory / relpath(record)).exists():
                _remove(self.directory / relpath(record))  # a lost attempt's, never recorded
            if (self.directory / relpath(record)).exists():
                raise ExportConflictError(
                    f"{self.directory / relpath(record)} already exists; eoembed never"
                    " rewrites a result (remove it, or export to a new folder)"
                )
        done: list[WrittenFile] = []
        try:
            for record in records:
                rel = relpath(record)
                with atomic_path(self.directory / rel) as tmp:
                    write_one(record, tmp)
                done.append(WrittenFile(rel, (record.id,)))
        except BaseException:
            self.remove(self.directory, [f.path for f in done])
            raise
        return done

    def write_part(
        self, ids: Sequence[str], suffix: str, write: Callable[[Path], None]
    ) -> WrittenFile:
        """One new ``part-<seq>-<shortid><suffix>`` file holding ``ids``, never an old name.

        ``write(tmp)`` writes the part to a temporary path renamed when it returns.
        """
        seq = self._next_seq
        if seq is None:
            seq = next_part_seq(self.directory, suffix)
        name = part_name(seq, ids, suffix)
        while (self.directory / name).exists():
            seq += 1
            name = part_name(seq, ids, suffix)
        self._next_seq = seq + 1
        with atomic_path(self.directory / name) as tmp:
            write(tmp)
        return WrittenFile(name, tuple(ids))

    @abstractmethod
    def write(self, records: Sequence[EmbeddingRecord]) -> list[WrittenFile]:
        """Write ``records`` to complete files now; return what was written."""

    def close(self) -> None:  # noqa: B027 (most formats have nothing to finish)
        """Finish the store (consolidated metadata, indexes); safe to call more than once."""

    @classmethod
    @abstractmethod
    def list_files(cls, directory: Path) -> list[str]:
        """Every complete data file (or folder) of this format in ``directory``, relative."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Any:
        """Read everything back: a GeoDataFrame (pooled) or an ``xarray.DataTree`` (grid)."""

    @classmethod
    def remove(cls, directory: Path, paths: Sequence[str]) -> None:
        """Delete files (orphans a crash left between writing and recording them)."""
        for rel in paths:
            _remove(directory / rel)

    @classmethod
    def remove_partial(cls, directory: Path) -> None:
        """Delete every temporary file or folder a crash left mid-write."""
        if directory.is_dir():
            for path in directory.rglob(f"{TMP_PREFIX}*"):
                _remove(path)


_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


def _check_record(record: EmbeddingRecord, schema: EmbeddingSchema) -> None:
    values = record.values
    field_name = f"EmbeddingRecord.values (id {record.id!r})"
    expected = "(dim,)" if schema.mode == "pooled" else "(dim, h, w)"
    if values.ndim != (1 if schema.mode == "pooled" else 3) or values.shape[0] != schema.dim:
        raise SpecError(
            field_name, f"shape {values.shape}", allowed=f"{expected}, dim={schema.dim}"
        )
    if values.dtype != np.dtype(schema.dtype):
        raise SpecError(field_name, f"dtype {values.dtype}", allowed=schema.dtype)
    if schema.mode == "grid" and (
        record.output_grid is None or record.output_grid.shape != values.shape[1:]
    ):
        shape = None if record.output_grid is None else record.output_grid.shape
        raise SpecError(
            f"EmbeddingRecord.output_grid (id {record.id!r})",
            shape,
            allowed=f"a Grid of shape {values.shape[1:]}",
        )
    if schema.quantization:
        wanted = () if schema.mode == "pooled" else (schema.dim,)
        if record.scale is None or np.shape(record.scale) != wanted:
            shape = None if record.scale is None else np.shape(record.scale)
            raise SpecError(
                f"EmbeddingRecord.scale (id {record.id!r})", shape, allowed=f"shape {wanted}"
            )
    elif record.scale is not None:
        raise SpecError(
            f"EmbeddingRecord.scale (id {record.id!r})",
            "set",
            allowed="None: the schema is not quantised",
        )


# Metadata every format writes: the same names and meanings whatever the container.

TIME_SEMANTICS = (
    "start_datetime/end_datetime follow STAC: end_datetime is the last instant of the time"
    " window (inclusive). eoembed's TemporalSpec is half-open [start, end): its end (the first"
    " day excluded) is the day after end_datetime's date."
)
"""Written next to every time field, because eoembed's own ``end`` is exclusive."""


def stac_datetimes(record: EmbeddingRecord) -> tuple[dt.datetime, dt.datetime]:
    """The record's window as STAC ``start_datetime``/``end_datetime`` (UTC, end inclusive).

    eoembed's end day is excluded, so STAC's inclusive end is its last microsecond before.
    """
    start = dt.datetime.fromisoformat(record.start_datetime).replace(tzinfo=dt.UTC)
    end = dt.datetime.fromisoformat(record.end_datetime).replace(tzinfo=dt.UTC)
    return start, end - dt.timedelta(microseconds=1)


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def record_metadata(record: EmbeddingRecord) -> dict[str, Any]:
    """One record's metadata as plain JSON types (attributes of its group, file or row)."""
    import shapely

    start, end = stac_datetimes(record)
    out: dict[str, Any] = {
        "id": record.id,
        "model": record.model,
        "footprint_wkt": shapely.to_wkt(
            shapely.from_wkb(record.footprint_wkb), rounding_precision=-1
        ),
        "start_datetime": _iso(start),
        "end_datetime": _iso(end),
        "scene_ids": list(record.scene_ids),
        "scene_times": [dict(t) for t in record.scene_times],
        "valid_fraction": record.valid_fraction,
        "fingerprint": record.fingerprint,
        "spatial": dict(record.spatial),
        "input_grid": record.input_grid.to_dict(),
    }
    if record.frame_dates:
        out["frames"] = len(record.frame_dates)
        out["frame_dates"] = list(record.frame_dates)
    if record.output_grid is not None:
        out["output_grid"] = record.output_grid.to_dict()
    return out


def schema_metadata(schema: EmbeddingSchema) -> dict[str, Any]:
    """The schema as JSON types, with the version that wrote it and the time semantics."""
    from eoembed._version import __version__

    return {
        **dataclasses.asdict(schema),
        "eoembed_version": __version__,
        "time_semantics": TIME_SEMANTICS,
    }


EMBEDDINGS_EXTENSION = "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json"
"""The STAC Embedding extension (``emb:`` prefix, Proposal) whose schema the fields follow."""

COLLECTION_EMB_FIELDS = (
    "emb:type", "emb:dimensions", "data_type", "emb:chip_layout", "emb:temporal_resolution",
)
"""Fields of :func:`stac_embedding_fields` the extension places on a Collection."""
ITEM_EMB_FIELDS = ("data_type", "emb:runtime_parameters", "emb:quantization")
"""Fields of :func:`stac_embedding_fields` the extension places in Item properties."""


def stac_embedding_fields(schema: EmbeddingSchema) -> dict[str, Any]:
    """Metadata named after the STAC Embedding extension v0.0.1 (``emb:`` prefix, Proposal).

    Names and shapes follow the extension's JSON schema (geo-embeddings/
    embeddings-stac-specification): ``emb:type`` (``chip`` for pooled vectors, ``pixel`` for
    grids), ``emb:dimensions``, the common-metadata ``data_type``, ``emb:chip_layout`` (grids:
    each cell is ``patch_size`` input pixels square), ``emb:temporal_resolution``,
    ``emb:runtime_parameters`` and ``emb:quantization`` (only ``method``, ``original_dtype``,
    ``quantized_dtype``, ``scale``, ``offset``, ``link`` are allowed there), and an
    ``emb:model`` link when the weights came from the Hugging Face Hub (at the commit loaded)
    or a download URL. Scales differ per record, so where they are stored and how they apply
    goes in ``eoembed:quantization``. A catalogue puts the first group of
    :data:`COLLECTION_EMB_FIELDS` on its Collection and :data:`ITEM_EMB_FIELDS` on Items.
    """
    request = schema.request
    fields: dict[str, Any] = {
        "emb:type": "chip" if schema.mode == "pooled" else "pixel",
        "emb:dimensions": schema.dim,
        "data_type": schema.dtype,
    }
    patch = (request.get("preprocessing") or {}).get("patch_size")
    if schema.mode == "grid" and isinstance(patch, int) and patch >= 1:
        fields["emb:chip_layout"] = {
            "layout_type": "regular_grid", "chip_size": [patch, patch], "stride": [patch, patch],
        }
    window = _window_text(request)
    if window:
        fields["emb:temporal_resolution"] = window
    weights = schema.model_meta.get("weights") or request.get("weights") or {}
    fields["emb:runtime_parameters"] = {
        "model": schema.model,
        "options": schema.model_meta.get("options", request.get("options", {})),
        "output": {"mode": schema.mode, "pooling": schema.pooling},
        **{k: request[k] for k in ("temporal", "sensor", "provider", "frames") if k in request},
        **({"weights": dict(weights)} if isinstance(weights, Mapping) and weights else {}),
    }
    if schema.quantization:
        fields["emb:quantization"] = {
            "method": "linear",
            "original_dtype": "float32",
            "quantized_dtype": schema.dtype,
            "offset": [0.0],
        }
        fields["eoembed:quantization"] = {
            "method": schema.quantization,
            "scale": "embedding_scale",
            "formula": "value = stored * embedding_scale; stored -128 = missing (NaN)",
        }
    link = model_link(weights if isinstance(weights, Mapping) else {}, schema.model)
    if link:
        fields["links"] = [link]
    return fields


def _window_text(request: Mapping[str, Any]) -> str:
    """``emb:temporal_resolution``: how each embedding's input spans the time window."""
    temporal = request.get("temporal") or {}
    if not isinstance(temporal, Mapping) or not temporal.get("start"):
        return ""
    span = f"{temporal['start']}/{temporal.get('end')} (end excluded)"
    frames = request.get("frames")
    if frames:
        return f"time series of {frames} frames over {span}"
    composite = (request.get("sensor") or {}).get("composite") or "composite"
    return f"{composite} composite over {span}"


def model_link(weights: Mapping[str, Any], model: str) -> dict[str, Any] | None:
    """The ``emb:model`` link the recorded weights give (``None``: no weights, local file).

    The Hub repository at the commit loaded, or the URL the file was downloaded from.
    """
    repo = weights.get("repo_id")
    if repo:
        revision = weights.get("commit") or weights.get("revision")
        href = f"https://huggingface.co/{repo}" + (f"/tree/{revision}" if revision else "")
        return {"rel": "emb:model", "href": href, "type": "text/html", "title": model}
    if weights.get("source") == "url" and weights.get("url"):
        return {"rel": "emb:model", "href": str(weights["url"]), "title": model}
    return None


def flat_attrs(attrs: Mapping[str, Any]) -> dict[str, str | int | float]:
    """Attributes for containers that take only scalars (netCDF, GeoTIFF tags): JSON the rest."""
    out: dict[str, str | int | float] = {}
    for key, value in attrs.items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            out[key] = value
        elif value is not None:
            out[key] = json.dumps(value, default=str)
    return out
