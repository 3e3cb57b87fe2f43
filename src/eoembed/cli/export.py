"""``eoembed export``: a batch job from a YAML file and/or flags; the summary as one JSON line.

Parsing only: flags become overrides of the job file (:mod:`eoembed.pipeline.config` merges and
validates them) and :func:`eoembed.pipeline.export_batch` does the work. The last line of
stdout is always the run's JSON summary, so scripts can read it with ``tail -n 1``.

Exit codes: 0 when every region x model is done, 1 when some failed under
``--on-error continue`` (the export holds the rest), 2 for user errors (see ``cli.main``).
"""

from __future__ import annotations

import importlib.util
import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from eoembed.cli.options import (
    BandsOpt,
    BatchSizeOpt,
    BBoxOpt,
    CloudyPctOpt,
    CollectionOpt,
    CompositeOpt,
    ConfigOpt,
    CrsOpt,
    EndOpt,
    EngineOpt,
    FetchWorkersOpt,
    FillValueOpt,
    FormatOpt,
    FramesOpt,
    JobArgsOpt,
    JobBufferOpt,
    JobDeviceOpt,
    JobModelsOpt,
    JobOutOpt,
    JobOutputOpt,
    JobPoolingOpt,
    JobProviderOpt,
    LatOpt,
    LonOpt,
    MaskOpt,
    MaxRetriesOpt,
    OnErrorOpt,
    OverwriteOpt,
    PrecisionOpt,
    Quantize,
    QuantizeOpt,
    QuietOpt,
    RegionsOpt,
    ResamplingOpt,
    ResumeOpt,
    ScaleOpt,
    SchedulerOpt,
    StartOpt,
    YearOpt,
    output_path,
    parse_bbox,
    parse_model_args_by_model,
    sensor_fields,
)

if TYPE_CHECKING:
    from eoembed.pipeline.config import ExportConfig

__all__ = ["export_command"]

ChipsOpt = Annotated[
    str | None,
    typer.Option("--chips", metavar="DIR_OR_GLOB", rich_help_panel="Region",
                 help="Embed GeoTIFF chips instead of regions: a folder or a glob, each chip one "
                 "sample on its own grid (band names from the files' band descriptions)."),
]
ExportPngOpt = Annotated[
    Path | None,
    typer.Option("--png", metavar="FILE", parser=output_path, rich_help_panel="Output",
                 help="Also draw a quick-look of the export: the regions on a lon/lat map "
                 "coloured by their embeddings' first principal components, and for grid output "
                 "the grids' cells (a job already done only draws it). With several models, one "
                 "picture each: look.png gives look-<model>.png."),
]
ChipSensorOpt = Annotated[
    str | None,
    typer.Option("--chip-sensor", rich_help_panel="Region",
                 help="With --chips: the sensor naming their bands (sentinel-2, landsat-8...)."),
]


def _regions(
    regions: Any, lon: float | None, lat: float | None, bbox: str | None, crs: str
) -> Any:
    """The one region source the flags give (a file, a point, a box), or None for none."""
    given = [name for name, on in (("--regions", regions is not None),
                                   ("--lon/--lat", lon is not None or lat is not None),
                                   ("--bbox", bbox is not None)) if on]
    if len(given) > 1:
        raise typer.BadParameter(f"give one of --regions, --lon/--lat or --bbox, not "
                                 f"{' and '.join(given)}", param_hint="region")
    if regions is not None:
        return str(regions)
    if bbox is not None:
        return [{"bbox": list(parse_bbox(bbox)), "crs": crs}]
    if lon is not None or lat is not None:
        if lon is None or lat is None:
            raise typer.BadParameter("give both --lon and --lat", param_hint="region")
        return [{"lon": lon, "lat": lat}]
    return None


def _temporal(year: int | None, start: str | None, end: str | None) -> dict[str, Any] | None:
    """``--year`` or the given ends of ``--start/--end``, or None for neither."""
    if year is not None and (start is not None or end is not None):
        raise typer.BadParameter("give --year or --start/--end, not both", param_hint="time window")
    if year is not None:
        return {"year": year}
    window = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    return window or None


def _given(**values: Any) -> dict[str, Any]:
    """The flags that were given, enum choices as their values."""
    return {k: v.value if isinstance(v, StrEnum) else v for k, v in values.items()
            if v is not None}


def _check_png(png: Path) -> None:
    """Refuse, before the export runs, a --png that cannot be written or drawn."""
    from eoembed.errors import DependencyNotFoundError
    from eoembed.paths import check_output_file

    check_output_file(png, "--png")
    if importlib.util.find_spec("matplotlib") is None:
        raise DependencyNotFoundError("matplotlib", "plot")


def _pictures(png: Path, models: dict[str, Any]) -> dict[str, Path]:
    """The picture of each model: ``png`` itself for one, ``<stem>-<model dir><suffix>`` else."""
    if len(models) == 1:
        return {next(iter(models)): png}
    return {m: png.with_name(f"{png.stem}-{info['dir']}{png.suffix}")
            for m, info in models.items()}


def _draw(out: Path, png: Path, job: ExportConfig, stderr: Console) -> None:
    """Draw the export's quick-look(s); a folder with no results yet gets a warning only."""
    from eoembed.pipeline.folder import read_job
    from eoembed.pipeline.manifest import read_manifest
    from eoembed.viz import export_quicklook

    recorded = read_job(out) or {"models": {}}
    written = {e.model for e in read_manifest(out) if e.status == "ok"}
    for model, path in _pictures(png, recorded["models"]).items():
        if model not in written:
            stderr.print(Text(f"warning: no picture of {model}: the export holds none of its "
                              "results", style="yellow"), soft_wrap=True)
            continue
        export_quicklook(out, path, model=model)
        if not job.quiet:
            stderr.print(f"picture: {path}", soft_wrap=True, highlight=False)


def export_command(
    config: ConfigOpt = None,
    model: JobModelsOpt = None,
    arg: JobArgsOpt = None,
    device: JobDeviceOpt = None,
    precision: PrecisionOpt = None,
    provider: JobProviderOpt = None,
    collection: CollectionOpt = None, bands: BandsOpt = None, scale_m: ScaleOpt = None,
    cloudy_pct: CloudyPctOpt = None, composite: CompositeOpt = None, mask: MaskOpt = None,
    resampling: ResamplingOpt = None, fill_value: FillValueOpt = None,
    regions: RegionsOpt = None,
    lon: LonOpt = None,
    lat: LatOpt = None,
    buffer_m: JobBufferOpt = None,
    bbox: BBoxOpt = None,
    crs: CrsOpt = "EPSG:4326",
    year: YearOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    frames: FramesOpt = None,
    output: JobOutputOpt = None,
    pooling: JobPoolingOpt = None,
    file_format: FormatOpt = None,
    quantize: QuantizeOpt = None,
    out: JobOutOpt = None,
    batch_size: BatchSizeOpt = None,
    fetch_workers: FetchWorkersOpt = None,
    on_error: OnErrorOpt = None,
    max_retries: MaxRetriesOpt = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = None,
    quiet: QuietOpt = False,
    chips: ChipsOpt = None,
    chip_sensor: ChipSensorOpt = None,
    engine: EngineOpt = None,
    scheduler: SchedulerOpt = None,
    png: ExportPngOpt = None,
) -> None:
    """Embed many regions with one or more models and write them to --out.

    The job comes from --config (YAML) and/or flags; a flag overrides the file's value. Regions
    are a file (--regions), one point (--lon/--lat/--buffer-m) or one box (--bbox/--crs); the
    window is --year or --start/--end, cut into --frames N bins for temporal models. Sensor
    flags set fields of the job's sensor; the others are each model's own. Rerunning
    a job resumes it. The last line of stdout is the JSON summary; exit code 1 means some
    regions failed under --on-error continue.
    """
    from eoembed.pipeline import export_batch
    from eoembed.pipeline.config import ExportConfig

    overrides = _given(
        models=model or None, regions=_regions(regions, lon, lat, bbox, crs),
        buffer_m=buffer_m, temporal=_temporal(year, start, end), frames=frames,
        format=file_format,
        output=_given(mode=output, pooling=pooling) or None, out=out, provider=provider,
        device=device, precision=precision, batch_size=batch_size, fetch_workers=fetch_workers, on_error=on_error,
        max_retries=max_retries, resume=resume, overwrite=overwrite, quiet=quiet or None,
        engine=engine, scheduler=scheduler,
        model_args=parse_model_args_by_model(arg) if arg else None,
        sensor=sensor_fields(collection, bands, scale_m, cloudy_pct, composite, mask, resampling,
                             fill_value) or None,
    )
    if chips is not None:
        if "regions" in overrides:
            raise typer.BadParameter("give --chips or a region, not both", param_hint="--chips")
        overrides["chips"] = _given(path=chips, sensor=chip_sensor)
    elif chip_sensor is not None:
        raise typer.BadParameter("--chip-sensor describes --chips", param_hint="--chips")
    if quantize is not None:
        overrides["quantize"] = None if quantize is Quantize.none else quantize.value
    if config is not None:
        job = ExportConfig.from_yaml(config, overrides)
    else:
        job = ExportConfig.from_dict({}, overrides)
    if png is not None:
        _check_png(png)
    result = export_batch(**job.to_kwargs())
    stderr = Console(stderr=True)
    if png is not None:
        _draw(result.out, png, job, stderr)
    if not job.quiet:
        stderr.print(f"{result.ok} written, {result.reused} reused, {result.skipped} skipped (no "
                     f"data), {result.failed} failed in {result.seconds:.1f} s: {result.out}",
                     soft_wrap=True, highlight=False)
    if result.failed:
        message = (f"{result.failed} region x model pair(s) failed (on_error=continue); the rest "
                   f"is in {result.out}; the errors are in its manifest and the summary's "
                   "'failures'")
        stderr.print(Text(f"warning: {message}", style="yellow"), soft_wrap=True)
    typer.echo(json.dumps(result.to_dict(), default=str))
    if result.failed:
        raise typer.Exit(1)


def stac_command(
    out: Annotated[Path, typer.Argument(help="The export folder.", show_default=False)],
) -> None:
    """Rebuild an export's STAC catalogue (OUT/catalog.json); exports write it themselves."""
    from eoembed.pipeline.catalog import write_stac

    typer.echo(str(write_stac(out)))
