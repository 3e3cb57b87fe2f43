"""Reusable command-line options (``Annotated`` aliases) and the parsers of their raw text.

Like huggingface_hub's ``cli/_cli_utils.py``: each option is declared once, with its help and
help panel, and commands annotate their parameters with these aliases. Parsers raise
:class:`typer.BadParameter` naming the option, which the CLI prints as one line.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from eoembed.specs.sensor import COMPOSITES, MASKS, RESAMPLINGS

__all__ = [
    "ArgsOpt",
    "BBoxOpt",
    "BandsOpt",
    "BatchSizeOpt",
    "BufferOpt",
    "CloudyPctOpt",
    "CollectionOpt",
    "CompositeOpt",
    "ConfigOpt",
    "CrsOpt",
    "DeviceOpt",
    "EndOpt",
    "Engine",
    "EngineOpt",
    "FetchWorkersOpt",
    "FillValueOpt",
    "FormatOpt",
    "FramesOpt",
    "GRID_SUFFIXES",
    "JobArgsOpt",
    "JobBufferOpt",
    "JobDeviceOpt",
    "JobModelsOpt",
    "JobOutOpt",
    "JobOutputOpt",
    "JobPoolingOpt",
    "JobProviderOpt",
    "JsonOpt",
    "LatOpt",
    "LonOpt",
    "MaskOpt",
    "MaxRetriesOpt",
    "ModelArg",
    "ModelOpt",
    "ModelsArg",
    "OnError",
    "OnErrorOpt",
    "OutOpt",
    "OutputMode",
    "OutputOpt",
    "OverwriteOpt",
    "POOLED_SUFFIXES",
    "PngOpt",
    "Pooling",
    "PoolingOpt",
    "PrecisionMode",
    "PrecisionOpt",
    "Quantize",
    "QuantizeOpt",
    "QuietOpt",
    "RegionsOpt",
    "ResamplingOpt",
    "ResumeOpt",
    "ScaleOpt",
    "SchedulerOpt",
    "StartOpt",
    "YearOpt",
    "check_out_path",
    "output_path",
    "parse_bbox",
    "parse_model_args",
    "parse_model_args_by_model",
    "sensor_fields",
]

_REGION, _TIME, _MODEL, _OUTPUT = "Region", "Time window", "Model", "Output"
_JOB, _RUN, _SENSOR = "Job", "Execution", "Sensor"

POOLED_SUFFIXES = (".npy", ".npz", ".json")
"""Files ``--out`` writes for pooled output."""
GRID_SUFFIXES = (".npy", ".npz", ".nc", ".tif", ".tiff")
"""Files ``--out`` writes for grid output (.nc and .tif keep the CRS and transform)."""

def output_path(text: str) -> Path:
    """Parse an output option: an empty value is refused (``Path("")`` is the current folder).

    Raises:
        typer.BadParameter: the value is empty or blank.
    """
    if not text.strip():
        raise typer.BadParameter("an empty path; name a file or folder")
    return Path(text)


# -- model ----------------------------------------------------------------------------------

ModelArg = Annotated[str, typer.Argument(help="A model id from `eoembed models`.")]
ModelsArg = Annotated[list[str], typer.Argument(help="Model ids from `eoembed models`.")]
ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Model id (see `eoembed models`).",
                      rich_help_panel=_MODEL),
]
DeviceOpt = Annotated[
    str, typer.Option(help="Torch device: auto, cpu, cuda, cuda:1, mps...",
                      rich_help_panel=_MODEL),
]
class PrecisionMode(StrEnum):
    """``--precision`` choices (:data:`eoembed.embedders.precision.Precision`)."""

    fp32 = "fp32"
    fp32_bf16mm = "fp32-bf16mm"
    bf16 = "bf16"
    auto = "auto"


_PRECISION_HELP = (
    "Neural models' numeric precision: fp32 (default), fp32-bf16mm (bf16 matrix products; TF32 "
    "on GPUs), bf16 (autocast), or auto (the fastest mode that keeps cosine >= 0.999 with fp32 "
    "on the first batch, measured and recorded). Same as --arg precision=..."
)
PrecisionOpt = Annotated[
    PrecisionMode | None,
    typer.Option("--precision", help=_PRECISION_HELP, rich_help_panel=_MODEL),
]
ArgsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--arg", metavar="KEY=VALUE", rich_help_panel=_MODEL,
        help="A model argument (repeatable); VALUE is read as JSON, else as a string. "
        "`eoembed describe MODEL` lists them.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the card as JSON.")]

# -- data -----------------------------------------------------------------------------------

LonOpt = Annotated[
    float | None, typer.Option(help="Longitude of the square's centre (with --lat).",
                               rich_help_panel=_REGION),
]
LatOpt = Annotated[
    float | None, typer.Option(help="Latitude of the square's centre (with --lon).",
                               rich_help_panel=_REGION),
]
BufferOpt = Annotated[
    float, typer.Option("--buffer-m", help="Half side of the square around --lon/--lat, in "
                        "ground metres.", rich_help_panel=_REGION),
]
BBoxOpt = Annotated[
    str | None, typer.Option(metavar="MINX,MINY,MAXX,MAXY", rich_help_panel=_REGION,
                             help="A box instead of --lon/--lat, in --crs coordinates."),
]
CrsOpt = Annotated[str, typer.Option(help="CRS of --bbox.", rich_help_panel=_REGION)]
YearOpt = Annotated[
    int | None, typer.Option(help="A calendar year (instead of --start/--end).",
                             rich_help_panel=_TIME),
]
StartOpt = Annotated[
    str | None, typer.Option(help="First day included, YYYY, YYYY-MM or YYYY-MM-DD.",
                             rich_help_panel=_TIME),
]
EndOpt = Annotated[
    str | None, typer.Option(help="First day excluded (the window is half-open).",
                             rich_help_panel=_TIME),
]

# -- sensor (any given builds a SensorSpec; the rest is the model's own sensor) -------------

CollectionOpt = Annotated[
    str | None,
    typer.Option("--collection", rich_help_panel=_SENSOR,
                 help="Read this collection (e.g. landsat-c2-l2) instead of the model's; its "
                 "bands serving the model's are matched by name, else by wavelength."),
]
BandsOpt = Annotated[
    str | None,
    typer.Option("--bands", metavar="B1,B2,...", rich_help_panel=_SENSOR,
                 help="The collection's bands to read, comma-separated (default: those that "
                 "serve the model's); with --image: the image's bands in file order."),
]
ScaleOpt = Annotated[
    float | None,
    typer.Option("--scale-m", rich_help_panel=_SENSOR,
                 help="Ground metres per input pixel (default: the model's GSD)."),
]
CloudyPctOpt = Annotated[
    float | None,
    typer.Option("--cloudy-pct", rich_help_panel=_SENSOR,
                 help="Skip scenes with more cloud cover, in percent (default 30)."),
]
CompositeOpt = Annotated[
    str | None,
    typer.Option("--composite", rich_help_panel=_SENSOR,
                 help=f"How scenes combine: {' | '.join(COMPOSITES)} (default median)."),
]
MaskOpt = Annotated[
    str | None,
    typer.Option("--mask", rich_help_panel=_SENSOR,
                 help=f"Per-pixel cloud mask: {' | '.join(MASKS)} (default auto: the "
                 "collection's usual one)."),
]
ResamplingOpt = Annotated[
    str | None,
    typer.Option("--resampling", rich_help_panel=_SENSOR,
                 help=f"Onto the --scale-m grid: {' | '.join(RESAMPLINGS)} (default auto)."),
]
FillValueOpt = Annotated[
    float | None,
    typer.Option("--fill-value", rich_help_panel=_SENSOR,
                 help="Value of pixels no clear observation covers (default 0)."),
]


def sensor_fields(
    collection: str | None, bands: str | None, scale_m: float | None, cloudy_pct: float | None,
    composite: str | None, mask: str | None, resampling: str | None, fill_value: float | None,
) -> dict[str, Any]:
    """The sensor flags given, as SensorSpec fields (``--bands`` split on commas).

    :func:`eoembed.api.sensor_from_fields` checks them and completes them from the model's.
    """
    fields = {"collection": collection, "scale_m": scale_m, "cloudy_pct": cloudy_pct,
              "composite": composite, "mask": mask, "resampling": resampling,
              "fill_value": fill_value,
              "bands": None if bands is None else [b.strip() for b in bands.split(",")]}
    return {k: v for k, v in fields.items() if v is not None}


# -- output ---------------------------------------------------------------------------------



class OutputMode(StrEnum):
    """``--output`` choices (:data:`eoembed.specs.output.MODES`)."""

    pooled = "pooled"
    grid = "grid"


class Pooling(StrEnum):
    """``--pooling`` choices (:data:`eoembed.specs.output.POOLINGS`)."""

    default = "default"
    cls = "cls"
    native = "native"
    mean = "mean"
    max = "max"
    min = "min"
    std = "std"
    median = "median"


FramesOpt = Annotated[
    int | None,
    typer.Option(
        help="Temporal models only: a time series of this many frames (equal bins of the "
        "window) instead of one composite.",
        rich_help_panel=_TIME,
    ),
]
OutputOpt = Annotated[
    OutputMode,
    typer.Option(help="One pooled vector, or the georeferenced grid of embeddings.",
                 rich_help_panel=_OUTPUT),
]
PoolingOpt = Annotated[
    Pooling,
    typer.Option(help="The pooled vector: default (the model's published pooling), cls (class "
                 "token), native (the model's own) or a reduction of the grid cells; a grid is "
                 "printed reduced by it (mean for the others).", rich_help_panel=_OUTPUT),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", parser=output_path, rich_help_panel=_OUTPUT,
        help="Save the embedding: .npy; .npz (data and meta as JSON); .json (pooled: vector "
        "and meta); .nc or .tif (grid, with CRS and transform).",
    ),
]
PngOpt = Annotated[
    Path | None,
    typer.Option(
        parser=output_path, rich_help_panel=_OUTPUT,
        help="Write the input RGB beside a PCA picture of the grid embedding. When --pooling "
        "reduces the grid (mean, max...) the model runs once, in grid mode, and the vector is "
        "that grid reduced, which equals the model's pooled output; otherwise it runs twice.",
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing but errors.", rich_help_panel=_OUTPUT)
]


# -- export (every option defaults to None: unset flags leave the --config value alone) ------

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", exists=True, dir_okay=False, rich_help_panel=_JOB,
                 help="A YAML job file (see examples/export.yaml); flags override its values."),
]
JobModelsOpt = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", rich_help_panel=_MODEL,
                 help="Model id (repeatable; replaces the job file's models)."),
]
JobArgsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--arg", metavar="[MODEL:]KEY=VALUE", rich_help_panel=_MODEL,
        help="A model argument (repeatable), for MODEL or, without MODEL:, for every model; "
        "VALUE is read as JSON, else as a string.",
    ),
]
JobDeviceOpt = Annotated[
    str | None, typer.Option("--device", help="Torch device: auto, cpu, cuda, cuda:1, mps...",
                             rich_help_panel=_MODEL),
]
JobProviderOpt = Annotated[
    str | None,
    typer.Option("--provider", help="Provider name, or name:argument (local:/data/catalog.json); "
                 "default: a published product's own provider, else sample."),
]
RegionsOpt = Annotated[
    Path | None,
    typer.Option(
        "--regions", metavar="FILE", rich_help_panel=_REGION,
        help="A region file: GeoJSON, CSV with lon/lat (and buffer_m) columns, GeoParquet or "
        "any vector file geopandas reads; polygons, or points with --buffer-m.",
    ),
]
JobBufferOpt = Annotated[
    float | None,
    typer.Option("--buffer-m", rich_help_panel=_REGION,
                 help="Half side in ground metres of the squares around points (--lon/--lat, "
                 "or points in --regions without a buffer_m column)."),
]
JobOutputOpt = Annotated[
    OutputMode | None,
    typer.Option("--output", help="One pooled vector per region, or the grid of embeddings.",
                 rich_help_panel=_OUTPUT),
]
JobPoolingOpt = Annotated[
    Pooling | None,
    typer.Option("--pooling", help="How pooled output is formed (default: the model's "
                 "published pooling).",
                 rich_help_panel=_OUTPUT),
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", rich_help_panel=_OUTPUT,
                 help="geoparquet (default), flatgeobuf, gpkg, zarr, netcdf, cog, npz, or a plugin"
                 " writer."),
]


class Quantize(StrEnum):
    """``--quantize`` choices: int8 (symmetric, a scale per vector), or none (float32)."""

    none = "none"
    int8 = "int8"


QuantizeOpt = Annotated[
    Quantize | None,
    typer.Option("--quantize", help="Store int8 codes and scales instead of float32.",
                 rich_help_panel=_OUTPUT),
]
JobOutOpt = Annotated[
    Path | None,
    typer.Option("--out", parser=output_path, rich_help_panel=_OUTPUT,
                 help="The export folder (files per model, manifest, job description)."),
]
BatchSizeOpt = Annotated[
    int | None, typer.Option("--batch-size", min=1, rich_help_panel=_RUN,
                             help="Regions per forward pass (default 16)."),
]
FetchWorkersOpt = Annotated[
    int | None, typer.Option("--fetch-workers", min=1, rich_help_panel=_RUN,
                             help="Parallel provider reads (default 4)."),
]


class Engine(StrEnum):
    """Where an export runs."""

    local = "local"
    dask = "dask"


EngineOpt = Annotated[
    Engine | None,
    typer.Option("--engine", rich_help_panel=_RUN,
                 help="local: threads in this process (default); dask: partitions as tasks on "
                 "a Dask cluster (--scheduler, or a local cluster of this machine's cores)."),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", metavar="ADDRESS", rich_help_panel=_RUN,
                 help="--engine dask: the scheduler's address (tcp://host:8786)."),
]


class OnError(StrEnum):
    """``--on-error`` choices: stop at the first failure, or record it and go on."""

    raise_ = "raise"
    continue_ = "continue"


OnErrorOpt = Annotated[
    OnError | None,
    typer.Option("--on-error", rich_help_panel=_RUN,
                 help="raise: stop at the first failed region (default); continue: record "
                 "failures in the manifest, export the rest, exit with code 1."),
]
MaxRetriesOpt = Annotated[
    int | None, typer.Option("--max-retries", min=0, rich_help_panel=_RUN,
                             help="Retries of a failed provider read (default 2)."),
]
ResumeOpt = Annotated[
    bool | None, typer.Option("--resume/--no-resume", rich_help_panel=_RUN,
                              help="Keep results of an earlier run of the same job (default)."),
]
OverwriteOpt = Annotated[
    bool | None, typer.Option("--overwrite/--no-overwrite", rich_help_panel=_RUN,
                              help="Replace an earlier export of a different request in --out."),
]


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"minx,miny,maxx,maxy"`` -> four floats.

    Raises:
        typer.BadParameter: not four comma-separated numbers.
    """
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise typer.BadParameter(
            f"{text!r} is not four comma-separated numbers minx,miny,maxx,maxy",
            param_hint="'--bbox'",
        )
    return values[0], values[1], values[2], values[3]


def parse_model_args(pairs: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: json.loads(v) or v}``.

    Raises:
        typer.BadParameter: an item without ``=`` or with an empty key.
    """
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'--arg'")
        try:
            parsed[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key.strip()] = value
    return parsed


def parse_model_args_by_model(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``["model:k=v", "k=v", ...]`` -> ``{model: {k: v}, "*": {k: v}}`` (``*``: every model).

    Raises:
        typer.BadParameter: an item without ``=``, or with an empty model or key.
    """
    parsed: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        target, sep, rest = pair.partition("=")
        model, colon, key = target.partition(":")
        if not colon:
            model, key = "*", target
        if not sep or not model.strip() or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not [MODEL:]KEY=VALUE", param_hint="'--arg'")
        parsed.setdefault(model.strip(), {}).update(parse_model_args([f"{key}={rest}"]))
    return parsed


def check_out_path(path: Path, mode: str) -> None:
    """Refuse, before any work, an ``--out`` file type that ``mode`` output cannot be saved as.

    Raises:
        typer.BadParameter: the suffix is not one of :data:`POOLED_SUFFIXES` (pooled) or
            :data:`GRID_SUFFIXES` (grid).
    """
    allowed = GRID_SUFFIXES if mode == "grid" else POOLED_SUFFIXES
    suffix = path.suffix.lower()
    if suffix not in allowed:
        other = "pooled" if mode == "grid" else "grid"
        fix = (f", or add --output {other} to save the "
               f"{'grid' if other == 'grid' else 'pooled vector'}"
               if suffix in (POOLED_SUFFIXES if mode == "grid" else GRID_SUFFIXES) else "")
        raise typer.BadParameter(
            f"cannot save {mode} output as {path.suffix or 'a file without suffix'!r}; "
            f"use one of {', '.join(allowed)}{fix}",
            param_hint="'--out'",
        )


# -- heads: train, predict, compare (None: unset flags leave the --config value alone) -------

_LABELS, _HEAD, _SPLIT = "Labels", "Head", "Split"


class Task(StrEnum):
    """``--task`` choices (:data:`eoembed.heads.base.TASKS`)."""

    regression = "regression"
    classification = "classification"
    segmentation = "segmentation"


TrainConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", exists=True, dir_okay=False, rich_help_panel=_JOB,
                 help="A YAML job file (see examples/heads/); flags override its values."),
]
EmbeddingsOpt = Annotated[
    Path | None,
    typer.Option("--embeddings", "-e", metavar="DIR", rich_help_panel=_JOB,
                 help="An export folder (eoembed export): pooled GeoParquet or grid Zarr/COG/"
                 "NetCDF."),
]
CompareEmbeddingsOpt = Annotated[
    list[str] | None,
    typer.Option("--embeddings", "-e", metavar="DIR[:MODEL]", rich_help_panel=_JOB,
                 help="An export folder to compare (repeatable); DIR:MODEL takes one model of a "
                 "multi-model export, DIR alone every model in it."),
]
ExportModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", rich_help_panel=_JOB,
                 help="Which model of a multi-model export."),
]
LabelsOpt = Annotated[
    Path | None,
    typer.Option("--labels", "-l", metavar="FILE", rich_help_panel=_LABELS,
                 help="Labels: CSV with lon/lat, GeoJSON, GeoParquet... (points or polygons "
                 "with --value), or a label raster (GeoTIFF). Joined to embeddings by place."),
]
ValueOpt = Annotated[
    str | None, typer.Option("--value", rich_help_panel=_LABELS,
                             help="The label column of a vector label file (default value)."),
]
LabelCrsOpt = Annotated[
    str | None, typer.Option("--label-crs", rich_help_panel=_LABELS,
                             help="CRS of a CSV's lon/lat columns (default EPSG:4326)."),
]
TaskOpt = Annotated[
    Task | None, typer.Option("--task", rich_help_panel=_HEAD,
                              help="What to learn (default regression)."),
]
HeadKindOpt = Annotated[
    str | None,
    typer.Option("--head", rich_help_panel=_HEAD,
                 help="linear, rf, gbm, knn, mlp (one vector per sample) or segmentation "
                 "(decoder on grids)."),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", metavar="KEY=VALUE", rich_help_panel=_HEAD,
                 help="A head hyperparameter (repeatable), e.g. alpha=10 or epochs=20; VALUE is "
                 "read as JSON, else as a string."),
]
SplitOpt = Annotated[
    str | None,
    typer.Option("--split", metavar="METHOD", rich_help_panel=_SPLIT,
                 help="random; blocks (whole spatial blocks of --block-size-m held out, no "
                 "spatial leakage); or predefined: column:NAME (the labels' train/test column; "
                 "val counts as test), raster:MASK.tif (nonzero is test), "
                 "box:MINX,MINY,MAXX,MAXY[,CRS] (inside is test), none (train on all). Keyed "
                 "by place, never by row order."),
]
TestSizeOpt = Annotated[
    float | None, typer.Option("--test-size", min=0.0, max=1.0, rich_help_panel=_SPLIT,
                               help="Share of samples held out for the metrics (default 0.25; "
                               "0 trains on all, with no held-out metrics)."),
]
MinValidOpt = Annotated[
    float | None,
    typer.Option("--min-valid", min=0.0, max=1.0, rich_help_panel=_LABELS,
                 help="Least share of a region's pixels holding imagery (valid_fraction) for "
                 "its samples to count; regions with none are always left out (default 0)."),
]
EvalJsonOpt = Annotated[
    Path | None,
    typer.Option("--json", "--out", parser=output_path, metavar="FILE", rich_help_panel=_OUTPUT,
                 help="Also write the metrics as JSON to FILE."),
]
BlockSizeOpt = Annotated[
    float | None, typer.Option("--block-size-m", min=0.0, rich_help_panel=_SPLIT,
                               help="Side of the spatial blocks, metres (default 1000)."),
]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", rich_help_panel=_SPLIT,
                             help="Seeds the split and the head (default 0)."),
]
HeadOutOpt = Annotated[
    Path | None,
    typer.Option("--out", parser=output_path, rich_help_panel=_OUTPUT,
                 help="The folder to write: the head (config.json, weights), metrics.json and "
                 "pictures."),
]
PlotsOpt = Annotated[
    bool | None, typer.Option("--plots/--no-plots", rich_help_panel=_OUTPUT,
                              help="Write the pictures (default on; needs matplotlib)."),
]
HeadDirOpt = Annotated[
    Path,
    typer.Option("--head", exists=True, file_okay=False, metavar="DIR", rich_help_panel=_HEAD,
                 help="A head folder written by eoembed train."),
]
PredictEmbeddingsOpt = Annotated[
    Path | None,
    typer.Option("--embeddings", "-e", metavar="DIR", rich_help_panel=_JOB,
                 help="An export folder to map (instead of a region)."),
]
PredictOutOpt = Annotated[
    Path,
    typer.Option("--out", parser=output_path, rich_help_panel=_OUTPUT,
                 help="map.tif (one GeoTIFF: a mosaic, or pooled footprints), a folder (one "
                 "GeoTIFF per region), or .parquet/.geojson/.gpkg (pooled predictions)."),
]
ResolutionOpt = Annotated[
    float | None,
    typer.Option("--resolution-m", min=0.0, rich_help_panel=_OUTPUT,
                 help="Pixel size of a GeoTIFF of pooled predictions (default: the export's "
                 "input pixel size)."),
]
MapPngOpt = Annotated[
    Path | None,
    typer.Option("--png", parser=output_path, rich_help_panel=_OUTPUT,
                 help="Also draw the predicted map as a PNG (needs matplotlib)."),
]

__all__ += [
    "BlockSizeOpt",
    "CompareEmbeddingsOpt",
    "EmbeddingsOpt",
    "EvalJsonOpt",
    "ExportModelOpt",
    "HeadDirOpt",
    "HeadKindOpt",
    "HeadOutOpt",
    "LabelCrsOpt",
    "LabelsOpt",
    "MapPngOpt",
    "MinValidOpt",
    "ParamOpt",
    "PlotsOpt",
    "PredictEmbeddingsOpt",
    "PredictOutOpt",
    "ResolutionOpt",
    "SeedOpt",
    "SplitOpt",
    "Task",
    "TaskOpt",
    "TestSizeOpt",
    "TrainConfigOpt",
    "ValueOpt",
]
