"""Export jobs as data: a YAML file (or dict) validated into the arguments of ``export_batch``.

A job file makes a batch export repeatable and reviewable: the same file always asks for the
same regions, models, window and output. :class:`ExportConfig` holds the same fields as
:func:`eoembed.pipeline.export_batch`, refuses unknown keys (a typo would otherwise silently
fall back to a default), builds every spec while validating, so a bad value fails before any
pixel is fetched, and reports problems as one-line :class:`~eoembed.errors.SpecError` naming the
key path and what is allowed.

Example ``job.yaml`` (every key after ``out`` is optional and shows its default)::

    regions: sites.csv            # region file; or a list of
    buffer_m: 1280                #   {lon, lat[, buffer_m]}, {bbox: [...], crs} or geometries
    models: [mosaiks]             # ids, or {id, args: {...}, sensor: {...}} entries
    temporal: {start: 2015-06-23, end: 2016-06-11}   # or {year: 2021}; end excluded
    out: exports/sites            # the export folder
    provider: sample              # or local:catalog.json (any path LocalProvider reads)
    sensor: null                  # {collection, bands, scale_m, ...}: fields left out come from
                                  #   each model's own sensor; null: each model's own
    frames: null                  # temporal models: N equal time bins instead of a composite
    output: {mode: pooled, pooling: mean}            # or grid
    format: geoparquet            # geoparquet | flatgeobuf | gpkg | zarr | netcdf | cog | npz
    quantize: null                # or int8
    device: auto
    precision: null               # neural models: fp32 | fp32-bf16mm | bf16 | auto (each model's
                                  #   own args.precision wins); null: fp32
    batch_size: 16
    fetch_workers: 4
    on_error: raise               # or continue
    max_retries: 2
    retry_backoff_s: 0.5
    resume: true
    overwrite: false
    progress: true
    quiet: false                  # true also turns progress off

Paths in a job file (``regions``, ``out``, the path of ``provider: local:PATH``) are relative
to the file's folder, wherever the job is run from; ``~`` is expanded. Flags given on the
command line are relative to the current directory, as usual.

>>> from eoembed.pipeline import export_batch
>>> from eoembed.pipeline.config import ExportConfig
>>> result = export_batch(**ExportConfig.from_yaml("job.yaml").to_kwargs())  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from eoembed.api import check_sensor_fields, sensor_from_fields
from eoembed.embedders.precision import Precision
from eoembed.errors import DependencyNotFoundError, SpecError
from eoembed.regions import located_error, read_regions
from eoembed.specs import (
    BBox,
    GeometrySpec,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    SpatialSpec,
    TemporalSpec,
)
from eoembed.specs.temporal import parse_date

if TYPE_CHECKING:
    from eoembed.providers.base import Provider

try:
    from pydantic import (
        BaseModel,
        ConfigDict,
        Discriminator,
        Field,
        Tag,
        ValidationError,
        field_validator,
        model_validator,
    )
except ImportError:  # pragma: no cover - the export extra brings pydantic
    raise DependencyNotFoundError("pydantic", "export") from None

__all__ = [
    "BoxRegion",
    "ChipsConfig",
    "ExportConfig",
    "GeometryRegion",
    "ModelConfig",
    "OutputConfig",
    "PointRegion",
    "SensorConfig",
    "TemporalConfig",
    "job_paths",
    "merge_overrides",
]

ALL_MODELS = "*"
"""Key of ``overrides["model_args"]`` whose arguments go to every model of the job."""

_HINTS = {
    "regions": "a region file (.geojson, .csv, .parquet...) or a list of {lon, lat, buffer_m}, "
    "{bbox: [minx, miny, maxx, maxy], crs} or GeoJSON Polygon/MultiPolygon geometries",
    "models": "model ids from `eoembed models`, or {id, args, sensor} entries",
    "temporal": "{year: YYYY} or {start: YYYY-MM-DD, end: YYYY-MM-DD} (end excluded)",
    "out": "an output folder",
    "sensor": "{collection, bands, scale_m, cloudy_pct, fill_value, composite, resampling, "
    "mask}",
    "output": "pooled, grid, or {mode: pooled|grid, pooling: default|cls|native|mean|max|min"
              "|std|median}",
    "quantize": "null (float32) or int8",
}
"""What each top-level key takes, for errors about a missing or mistyped section."""


class _Section(BaseModel):
    """A strict, immutable part of a job: unknown keys fail, naming the keys allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """Refuse typos with the allowed keys and a suggestion (pydantic says only 'extra')."""
        if isinstance(data, Mapping):
            names = sorted(cls.model_fields)
            for key in data:
                if key not in names:
                    close = difflib.get_close_matches(str(key), names, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise SpecError(str(key), _short(data[key]), allowed=names,
                                    reason=f"unknown key{hint}")
        return data


def _takes_precision(model_id: str) -> bool:
    """Whether the model has a ``precision`` option (neural models; unknown ids: no)."""
    import dataclasses

    from eoembed.embedders.registry import embedder_class

    try:
        options = embedder_class(model_id).Options
    except (KeyError, ValueError, ImportError):
        return False
    return "precision" in {f.name for f in dataclasses.fields(options)}


def _short(value: Any, limit: int = 60) -> Any:
    """``value``, or its repr cut to ``limit`` characters, so errors stay one short line."""
    text = repr(value)
    return value if len(text) <= limit else text[: limit - 3] + "..."


# -- sections -----------------------------------------------------------------------------------


class TemporalConfig(_Section):
    """``{year: 2021}`` or ``{start: ..., end: ...}``: a :class:`~eoembed.specs.TemporalSpec`."""

    year: int | None = None
    start: str | None = None
    """First day included: ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` (YAML dates work too)."""
    end: str | None = None
    """First day excluded (half-open, like ``TemporalSpec.range``)."""

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> Any:
        """YAML reads an unquoted ``2021-06-01`` as a date: turn it back into ISO text."""
        return parse_date("temporal", value).isoformat() if isinstance(value, dt.date) else value

    @model_validator(mode="after")
    def _check(self) -> Self:
        self.spec()
        return self

    def spec(self) -> TemporalSpec:
        """The window as a spec.

        Raises:
            SpecError: neither or both forms, or a date the spec refuses.
        """
        if self.year is not None and self.start is None and self.end is None:
            return TemporalSpec.year(self.year)
        if self.year is None and self.start is not None and self.end is not None:
            return TemporalSpec.range(self.start, self.end)
        raise SpecError("keys", sorted(self.model_dump(exclude_none=True)),
                        allowed=_HINTS["temporal"], reason="give year alone, or start and end")


class SensorConfig(_Section):
    """:class:`~eoembed.specs.SensorSpec` fields; those left out come from the model's own.

    See :func:`eoembed.api.sensor_from_fields`.
    """

    collection: str | None = None
    bands: list[str] | None = None
    scale_m: float | None = None
    cloudy_pct: float | None = None
    fill_value: float | None = None
    composite: str | None = None
    resampling: str | None = None
    mask: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_sensor_fields(self.fields())
        return self

    def fields(self) -> dict[str, Any]:
        """The fields given."""
        return self.model_dump(exclude_none=True)

    @property
    def complete(self) -> bool:
        """Whether it names collection and bands (no model's default is needed)."""
        return self.collection is not None and self.bands is not None

    def spec(
        self, model: str = "", provider: Provider | str | None = None,
        model_args: dict[str, Any] | None = None,
    ) -> SensorSpec:
        """The sensor as a spec: the fields given, the rest from ``model``'s on ``provider``."""
        return sensor_from_fields(model, self.fields(), provider, model_args)


class ChipsConfig(_Section):
    """A chip folder: every GeoTIFF one region (see :func:`eoembed.providers.chips.open_chips`)."""

    path: str
    """A folder, a glob pattern or one file."""
    sensor: str | None = None
    """The registered sensor naming the chips' bands (default Sentinel-2)."""
    bands: list[str] | None = None
    """The chips' bands in file order (default: each file's band descriptions)."""
    unit: str = "dn"


class OutputConfig(_Section):
    """``pooled`` (``pooling`` defaults to the model's own) or ``grid``; a string sets the mode."""

    mode: str = "pooled"
    pooling: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _mode_only(cls, data: Any) -> Any:
        return {"mode": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _check(self) -> Self:
        self.spec()
        return self

    def spec(self) -> OutputSpec:
        """The output as a spec."""
        if self.mode == "pooled":
            return OutputSpec.pooled(self.pooling)
        return OutputSpec(self.mode, self.pooling)


class ModelConfig(_Section):
    """One model of the job, with its own arguments and, optionally, its own sensor."""

    id: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    """Model arguments (``eoembed describe MODEL`` lists them), e.g. ``{weights: random}``."""
    sensor: SensorConfig | None = None
    """Replaces the job's ``sensor`` for this model."""


# -- regions ------------------------------------------------------------------------------------


class PointRegion(_Section):
    """A square of half side ``buffer_m`` (default: the job's ``buffer_m``) around lon/lat."""

    lon: float
    lat: float
    buffer_m: float | None = None

    def spec(self, buffer_m: float | None) -> SpatialSpec:
        """The region as a spec; ``buffer_m`` is the job's default half side."""
        half = self.buffer_m if self.buffer_m is not None else buffer_m
        if half is None:
            raise SpecError("buffer_m", None, allowed="buffer_m here or at the top of the job",
                            reason="points need a square's half side in metres")
        return PointBuffer(self.lon, self.lat, half)


class BoxRegion(_Section):
    """``bbox: [minx, miny, maxx, maxy]`` in ``crs``."""

    bbox: tuple[float, float, float, float]
    crs: str = "EPSG:4326"

    def spec(self, buffer_m: float | None) -> SpatialSpec:
        """The region as a spec (``buffer_m`` is unused)."""
        return BBox(*self.bbox, crs=self.crs)


class GeometryRegion(_Section):
    """A GeoJSON Polygon or MultiPolygon geometry, in ``crs`` (default lon/lat)."""

    type: str
    coordinates: list[Any]
    crs: str = "EPSG:4326"

    def spec(self, buffer_m: float | None) -> SpatialSpec:
        """The region as a spec (``buffer_m`` is unused)."""
        geometry = {"type": self.type, "coordinates": self.coordinates}
        return GeometrySpec.from_geometry(geometry, crs=self.crs)


_REGION_TAGS: dict[str, type[PointRegion | BoxRegion | GeometryRegion]] = {
    "<point>": PointRegion, "<bbox>": BoxRegion, "<geometry>": GeometryRegion,
}


def _region_kind(value: Any) -> str | None:
    """Which region form a list item is, from its keys, so errors speak of that form only."""
    if isinstance(value, PointRegion | BoxRegion | GeometryRegion):
        return next(tag for tag, cls in _REGION_TAGS.items() if isinstance(value, cls))
    if not isinstance(value, Mapping):
        return None
    if "bbox" in value:
        return "<bbox>"
    if "lon" in value or "lat" in value:
        return "<point>"
    if "type" in value or "coordinates" in value:
        return "<geometry>"
    return None


def _regions_kind(value: Any) -> str | None:
    """A file path, or a list of inline regions."""
    if isinstance(value, str | Path):
        return "<file>"
    return "<list>" if isinstance(value, list | tuple) else None


RegionItem = Annotated[
    Annotated[PointRegion, Tag("<point>")]
    | Annotated[BoxRegion, Tag("<bbox>")]
    | Annotated[GeometryRegion, Tag("<geometry>")],
    Discriminator(_region_kind, custom_error_type="region_form",
                  custom_error_message="not a region; give {lon, lat, buffer_m}, {bbox: [minx, "
                  "miny, maxx, maxy], crs} or a GeoJSON Polygon/MultiPolygon geometry"),
]
RegionsField = Annotated[
    Annotated[Path, Tag("<file>")] | Annotated[list[RegionItem], Tag("<list>")],
    Discriminator(_regions_kind, custom_error_type="regions_form",
                  custom_error_message="not a region file or a list of regions"),
]


# -- the job ------------------------------------------------------------------------------------


class ExportConfig(_Section):
    """A batch export job: the arguments of ``export_batch``, as validated data.

    Build it with :meth:`from_yaml` or :meth:`from_dict` (which also apply command-line
    style overrides and turn validation errors into one-line :class:`SpecError`), then call
    ``export_batch(**config.to_kwargs())``.
    """

    # What and where
    regions: RegionsField | None = None
    """A region file (see :func:`eoembed.regions.read_regions`) or a list of inline regions."""
    chips: ChipsConfig | None = None
    """Instead of regions: a chip folder, each chip one region on its own grid."""
    buffer_m: float | None = Field(default=None, gt=0)
    """Half side in metres for points (in files or inline) that carry no ``buffer_m``."""
    models: list[ModelConfig] = Field(min_length=1)
    temporal: TemporalConfig
    sensor: SensorConfig | None = None
    """For every model without its own (a partial one completed for each model from its own
    sensor); ``None``: each model's own sensor."""
    provider: str | None = None
    """Default: the models' own product provider when they are all one product, else sample."""
    frames: int | None = Field(default=None, gt=0)
    """Temporal models only: a time series of this many equal bins of the window."""
    # Output
    out: Path
    """The export folder."""
    output: OutputConfig = Field(default_factory=OutputConfig)
    format: str = "geoparquet"
    quantize: Literal["int8"] | None = None
    # Execution
    device: str = "auto"
    precision: Precision | None = None
    """Precision of every neural model without its own ``args.precision`` (see
    :mod:`eoembed.embedders.precision`); models without the option are left alone."""
    batch_size: int = Field(default=16, gt=0)
    fetch_workers: int = Field(default=4, gt=0)
    on_error: Literal["raise", "continue"] = "raise"
    max_retries: int = Field(default=2, ge=0)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    resume: bool = True
    overwrite: bool = False
    # Where it runs
    engine: Literal["local", "dask"] = "local"
    scheduler: str | None = None
    """``engine: dask``: the scheduler's address (``tcp://host:8786``); none: a local cluster."""
    partition_size: int | None = Field(default=None, gt=0)
    resources: dict[str, float] | None = None
    """``engine: dask``: resources each task needs (``{GPU: 1}``)."""
    # UI
    progress: bool = True
    quiet: bool = False
    """No progress bars (the command line also prints nothing but errors and the summary)."""

    @field_validator("regions", mode="before")
    @classmethod
    def _one_region(cls, value: Any) -> Any:
        """A single inline region may be given without a list around it."""
        return [value] if isinstance(value, Mapping) else value

    @model_validator(mode="before")
    @classmethod
    def _regions_or_chips(cls, data: Any) -> Any:
        """A job needs regions, or chips; missing both is reported as missing regions."""
        if isinstance(data, Mapping) and data.get("regions") is None and (
            data.get("chips") is None
        ):
            raise SpecError("regions", None, allowed=_HINTS["regions"] + "; or chips: a folder",
                            reason="Field required")
        return data

    @field_validator("chips", mode="before")
    @classmethod
    def _chips_path(cls, value: Any) -> Any:
        """``chips: folder/`` is ``{path: folder/}``."""
        return {"path": value} if isinstance(value, str) else value

    @field_validator("out", mode="before")
    @classmethod
    def _named_out(cls, value: Any) -> Any:
        """An empty ``out`` would be the current folder: refused, not guessed."""
        if isinstance(value, str) and not value.strip():
            raise SpecError("out", value, allowed="a folder path")
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _model_ids(cls, value: Any) -> Any:
        """``mosaiks`` and ``[mosaiks, {id: ..., args: ...}]`` both work."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            return [{"id": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("temporal", mode="before")
    @classmethod
    def _year_only(cls, value: Any) -> Any:
        """``temporal: 2021`` is ``{year: 2021}``."""
        return {"year": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _check(self) -> Self:
        """Each model once; every inline region a valid spec (files are read by to_kwargs)."""
        ids = [m.id for m in self.models]
        for index, model_id in enumerate(ids):
            if model_id in ids[:index]:
                raise SpecError(f"models[{index}].id", model_id, allowed="each model once")
        if (self.regions is None) == (self.chips is None):
            raise SpecError("regions", self.regions, allowed="regions or chips (one of them)")
        if self.regions is not None and not isinstance(self.regions, Path):
            if not self.regions:
                raise SpecError("regions", [], allowed="at least one region (a list, or a file)")
            self.spatials()
        return self

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> ExportConfig:
        """Validate a job given as a dict, with ``overrides`` applied (see merge_overrides).

        Raises:
            SpecError: the first problem, as one line naming the key path and what is allowed.
        """
        merged = merge_overrides(data, overrides or {})
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise _spec_error(exc) from None

    @classmethod
    def from_yaml(
        cls, path: str | Path, overrides: Mapping[str, Any] | None = None
    ) -> ExportConfig:
        """Read a job file; its relative paths are relative to its folder (see job_paths).

        Raises:
            SpecError: an unreadable file, YAML that is not a mapping, or an invalid job.
            DependencyNotFoundError: PyYAML is missing.
        """
        try:
            import yaml
        except ImportError:  # pragma: no cover - the export extra brings PyYAML
            raise DependencyNotFoundError("yaml", "export") from None
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError("config", str(path), allowed="a readable YAML job file",
                            reason=exc.strerror or type(exc).__name__) from None
        except UnicodeDecodeError as exc:
            raise SpecError("config", str(path), allowed="a UTF-8 YAML job file",
                            reason=f"byte {exc.object[exc.start]:#04x} at offset {exc.start} is "
                            "not UTF-8") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            reason = f"{getattr(exc, 'problem', None) or 'not YAML'}{where}"
            raise SpecError("config", str(path), allowed="a YAML mapping of job keys",
                            reason=reason) from None
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpecError("config", str(path), allowed="a YAML mapping of job keys",
                            reason=f"the file holds a {type(data).__name__}")
        data = job_paths(data, path, ("regions", "out", "chips"))
        chips = data.get("chips")
        if isinstance(chips, Mapping) and isinstance(chips.get("path"), str):
            folder = Path(path).expanduser().absolute().parent
            data["chips"] = {**chips, "path": _from_folder(folder, chips["path"])}
        return cls.from_dict(data, overrides)

    def spatials(self) -> list[SpatialSpec]:
        """The regions as specs: the file read with :func:`read_regions`, or the inline list.

        Raises:
            SpecError: naming the file and row, or ``regions[i]``.
        """
        if isinstance(self.regions, Path):
            return read_regions(self.regions, buffer_m=self.buffer_m)
        specs: list[SpatialSpec] = []
        if self.regions is None:  # chips: see to_kwargs
            return specs
        for index, item in enumerate(self.regions):
            try:
                specs.append(item.spec(self.buffer_m))
            except SpecError as exc:
                raise located_error(f"regions[{index}]", exc) from None
        return specs

    def sensors(self) -> tuple[SensorSpec | None, dict[str, SensorSpec]]:
        """The job's ``sensor`` and each model's own; partial ones completed per model.

        The provider is built (and asked what it serves) only for a partial sensor.
        """
        from eoembed.providers.registry import get_provider

        source: Provider | None = None
        shared = self.sensor if self.sensor is not None and self.sensor.complete else None
        sensors: dict[str, SensorSpec] = {}
        for model in self.models:
            fields = model.sensor or (None if shared else self.sensor)
            if fields is None:
                continue
            if not fields.complete and source is None:
                source = get_provider(self.provider or self.default_provider())
            sensors[model.id] = fields.spec(model.id, source, dict(model.args))
        return (shared.spec() if shared else None), sensors

    def default_provider(self) -> str:
        """The provider used when the job names none (:func:`eoembed.api.default_provider`)."""
        from eoembed.api import default_provider
        from eoembed.embedders.registry import describe_model

        return default_provider([describe_model(m.id, **dict(m.args)) for m in self.models])

    def to_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``export_batch``: specs built, region files read."""
        sensor, sensors = self.sensors()
        model_args = {m.id: dict(m.args) for m in self.models if m.args}
        if self.precision is not None:
            for m in self.models:
                if _takes_precision(m.id):
                    model_args.setdefault(m.id, {}).setdefault("precision", self.precision)
        spatials: Any = self.spatials()
        if self.chips is not None:
            from eoembed.providers.chips import open_chips

            spatials = open_chips(self.chips.path, sensor=self.chips.sensor,
                                  bands=self.chips.bands, unit=self.chips.unit)
        return {
            "spatials": spatials,
            "models": [m.id for m in self.models],
            "temporal": self.temporal.spec(),
            "out": self.out,
            "sensor": sensor,
            "sensors": sensors or None,
            "model_args": model_args or None,
            "provider": self.provider,
            "frames": self.frames,
            "output": self.output.spec(),
            "format": self.format,
            "quantize": self.quantize,
            "device": self.device,
            "batch_size": self.batch_size,
            "fetch_workers": self.fetch_workers,
            "on_error": self.on_error,
            "max_retries": self.max_retries,
            "retry_backoff_s": self.retry_backoff_s,
            "resume": self.resume,
            "overwrite": self.overwrite,
            "progress": self.progress and not self.quiet,
            "engine": self.engine,
            "client": self.scheduler,
            "partition_size": self.partition_size,
            "resources": self.resources,
        }


# -- paths --------------------------------------------------------------------------------------


def job_paths(
    data: Mapping[str, Any], job_file: str | Path, keys: Iterable[str]
) -> dict[str, Any]:
    """``data`` with the paths a job file gives made absolute from the file's folder.

    The string values of ``keys`` are paths; so is the argument of ``provider: local:PATH``
    (also behind ``cached:``). ``~`` is expanded, absolute paths are kept, so a job runs the
    same from any working directory. Flags (the overrides) are not touched: they are
    relative to the current directory.
    """
    folder = Path(job_file).expanduser().absolute().parent
    resolved = dict(data)
    for key in keys:
        value = resolved.get(key)
        if isinstance(value, str) and value.strip():
            resolved[key] = _from_folder(folder, value)
    provider = resolved.get("provider")
    if isinstance(provider, str):
        resolved["provider"] = _provider_path(provider, folder)
    return resolved


def _from_folder(folder: Path, path: str) -> str:
    """``path`` (``~`` expanded) from ``folder``, without ``..`` parts."""
    return os.path.normpath(folder / Path(path).expanduser())


def _provider_path(provider: str, folder: Path) -> str:
    """``local:PATH`` with ``PATH`` taken from ``folder``; ``cached:`` looked through."""
    name, sep, argument = provider.partition(":")
    if name == "local" and argument.strip():
        return f"local:{_from_folder(folder, argument)}"
    if name == "cached" and sep:
        return f"cached:{_provider_path(argument, folder)}"
    return provider


# -- overrides ----------------------------------------------------------------------------------


def merge_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (a job as loaded from YAML) with ``overrides`` (command-line flags) applied.

    Keys are replaced, except that flags change only what they name:

    - ``temporal``: ``{year}`` replaces the window; ``{start}`` or ``{end}`` replaces that end
      of a start/end window.
    - ``output``: ``{mode}`` or ``{pooling}`` replaces that part; a new mode without a pooling
      drops the old pooling (grid output has none, pooled defaults to the model's own pooling).
    - ``sensor``: each field replaces that field; a new ``collection`` without ``bands`` drops
      the old bands (they are the new collection's that serve each model).
    - ``model_args``: ``{model_id: {key: value}}`` is merged into that model's ``args``
      (:data:`ALL_MODELS` means every model), after ``models`` is overridden.

    Raises:
        SpecError: ``model_args`` names a model that is not in the job.
    """
    merged = dict(data)
    for key, value in overrides.items():
        if key == "temporal":
            merged[key] = _merge_temporal(merged.get(key), value)
        elif key == "output":
            merged[key] = _merge_output(merged.get(key), value)
        elif key == "sensor":
            merged[key] = _merge_sensor(merged.get(key), value)
        elif key != "model_args":
            merged[key] = value
    if overrides.get("model_args"):
        merged["models"] = _merge_args(merged.get("models"), overrides["model_args"])
    return merged


def _merge_temporal(base: Any, new: Mapping[str, Any]) -> Any:
    if "year" in new or not isinstance(base, Mapping):
        return dict(new)
    return {**{k: v for k, v in base.items() if k != "year"}, **new}


def _merge_output(base: Any, new: Mapping[str, Any]) -> Any:
    current = {"mode": base} if isinstance(base, str) else dict(base or {})
    if "mode" in new and "pooling" not in new and new["mode"] != current.get("mode", "pooled"):
        current.pop("pooling", None)
    return {**current, **new}


def _merge_sensor(base: Any, new: Mapping[str, Any]) -> Any:
    if not isinstance(base, Mapping):
        return dict(new)
    current = dict(base)
    if "bands" not in new and new.get("collection", current.get("collection")) != current.get(
        "collection"
    ):
        current.pop("bands", None)
    return {**current, **new}


def _merge_args(models: Any, args: Mapping[str, Mapping[str, Any]]) -> Any:
    """``models`` as a list of entries, with ``args`` merged into the named entries."""
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list | tuple):
        return models
    entries: list[Any] = [
        {"id": m} if isinstance(m, str) else dict(m) if isinstance(m, Mapping) else m
        for m in models
    ]
    ids = [str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e]
    for model_id in args:
        if model_id != ALL_MODELS and model_id not in ids:
            raise SpecError("args", model_id, allowed=ids, reason="not a model of this job")
    for entry in entries:
        if isinstance(entry, dict):
            extra = {**args.get(ALL_MODELS, {}), **args.get(str(entry.get("id")), {})}
            if extra:
                entry["args"] = {**(entry.get("args") or {}), **extra}
    return entries


# -- errors -------------------------------------------------------------------------------------


def _loc_text(loc: tuple[int | str, ...]) -> str:
    """``("models", 1, "sensor", "bands")`` -> ``models[1].sensor.bands`` (union tags dropped)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.startswith("<"):
            text += f".{part}" if text else part
    return text


def _spec_error(exc: ValidationError) -> SpecError:
    """The first validation error as a one-line SpecError; the spec's own when it raised one."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = _loc_text(tuple(first["loc"]))
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, SpecError):
        return located_error(where, cause) if where else cause
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    missing = first["type"] == "missing"
    return SpecError(
        where or "config", None if missing else _short(first["input"]),
        allowed=_HINTS.get(where), reason=f"{first['msg']}{more}",
    )
