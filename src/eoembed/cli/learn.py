"""``eoembed train``, ``evaluate``, ``predict``, ``compare``: heads on frozen embeddings.

Parsing and printing only: flags become overrides of a YAML job
(:mod:`eoembed.heads.config` validates them) and :mod:`eoembed.heads.api` does the work. A
short summary goes to stderr; the last line of stdout is always the JSON summary, so scripts
read it with ``tail -n 1``. User errors exit with code 2 (see ``cli.main``).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from eoembed.cli.options import (
    BBoxOpt,
    BlockSizeOpt,
    BufferOpt,
    CompareEmbeddingsOpt,
    CrsOpt,
    DeviceOpt,
    EmbeddingsOpt,
    EndOpt,
    EvalJsonOpt,
    ExportModelOpt,
    HeadDirOpt,
    HeadKindOpt,
    HeadOutOpt,
    JobProviderOpt,
    LabelCrsOpt,
    LabelsOpt,
    LatOpt,
    LonOpt,
    MapPngOpt,
    MinValidOpt,
    ParamOpt,
    PlotsOpt,
    PredictEmbeddingsOpt,
    PredictOutOpt,
    QuietOpt,
    ResolutionOpt,
    SeedOpt,
    SplitOpt,
    StartOpt,
    TaskOpt,
    TestSizeOpt,
    TrainConfigOpt,
    ValueOpt,
    YearOpt,
    parse_bbox,
    parse_model_args,
)

__all__ = ["compare_command", "evaluate_command", "predict_command", "train_command"]


def _given(**values: Any) -> dict[str, Any]:
    """The flags that were given, enum choices as their values."""
    return {k: v.value if isinstance(v, StrEnum) else v for k, v in values.items()
            if v is not None}


def _overrides(
    labels: Path | None, value: str | None, label_crs: str | None, task: Any, head: str | None,
    param: list[str] | None, split: Any, test_size: float | None, block_size_m: float | None,
    seed: int | None, min_valid: float | None, out: Path | None, plots: bool | None,
    quiet: bool,
) -> dict[str, Any]:
    """Flags shared by train and compare, as job overrides."""
    return _given(
        labels=labels, value=value, label_crs=label_crs, task=task, head=head,
        min_valid=min_valid,
        params=parse_model_args(param) if param else None,
        split=_given(method=split, test_size=test_size, block_size_m=block_size_m,
                     seed=seed) or None,
        out=out, plots=plots, quiet=quiet or None,
    )


def _summary_line(text: str, quiet: bool) -> None:
    if not quiet:
        Console(stderr=True).print(text, soft_wrap=True, highlight=False)


def train_command(
    config: TrainConfigOpt = None,
    embeddings: EmbeddingsOpt = None,
    model: ExportModelOpt = None,
    labels: LabelsOpt = None,
    value: ValueOpt = None,
    label_crs: LabelCrsOpt = None,
    task: TaskOpt = None,
    head: HeadKindOpt = None,
    param: ParamOpt = None,
    split: SplitOpt = None,
    test_size: TestSizeOpt = None,
    block_size_m: BlockSizeOpt = None,
    seed: SeedOpt = None,
    min_valid: MinValidOpt = None,
    out: HeadOutOpt = None,
    plots: PlotsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a head on exported embeddings with labels joined by place; save it to --out.

    The job comes from --config (YAML) and/or flags. Metrics on the held-out split go to
    --out/metrics.json, with pictures (observed vs predicted or confusion matrix, a map, a PCA
    view of the embeddings); the last line of stdout is the JSON summary.
    """
    from eoembed.heads.api import train
    from eoembed.heads.config import TrainConfig

    overrides = _overrides(labels, value, label_crs, task, head, param, split, test_size,
                           block_size_m, seed, min_valid, out, plots, quiet)
    overrides.update(_given(embeddings=embeddings, model=model))
    if config is not None:
        job = TrainConfig.from_yaml(config, overrides)
    else:
        job = TrainConfig.from_dict({}, overrides)
    result = train(**job.to_kwargs())
    summary = result.to_dict()
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in summary["metrics"].items()
                        if isinstance(v, float))
    if summary["n_test"]:
        scored = f"{metrics} on {summary['n_test']} held-out samples ({summary['split']} split)"
    else:
        scored = (f"trained on all {summary['n_train']} samples; no held-out metrics "
                  f"({summary['split']} split)")
    dropped = summary["join"].get("samples_without_imagery")
    if dropped:
        scored += f"; {dropped} sample(s) without imagery left out"
    _summary_line(f"{result.head.kind} head on {result.model}: {scored}; saved to "
                  f"{result.out}", job.quiet)
    typer.echo(json.dumps(summary, default=str))


def predict_command(
    head: HeadDirOpt,
    out: PredictOutOpt,
    embeddings: PredictEmbeddingsOpt = None,
    model: ExportModelOpt = None,
    lon: LonOpt = None,
    lat: LatOpt = None,
    buffer_m: BufferOpt = 1280.0,
    bbox: BBoxOpt = None,
    crs: CrsOpt = "EPSG:4326",
    year: YearOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    provider: JobProviderOpt = None,
    device: DeviceOpt = "auto",
    resolution_m: ResolutionOpt = None,
    png: MapPngOpt = None,
    min_valid: MinValidOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Map a trained head over exported embeddings (--embeddings) or a region.

    A region is --lon/--lat/--buffer-m or --bbox/--crs: the head's embedder runs on it with the
    options, sensor, provider and time window of the training export (--provider, --year or
    --start/--end override them). The last line of stdout is the JSON summary.
    """
    from eoembed.heads.api import predict

    spatial = _region(lon, lat, buffer_m, bbox, crs)
    if (embeddings is None) == (spatial is None):
        raise typer.BadParameter("give --embeddings, or a region (--lon/--lat or --bbox)",
                                 param_hint="input")
    temporal = _window(year, start, end)
    result = predict(head, out=out, embeddings=embeddings, model=model, spatial=spatial,
                     temporal=temporal, provider=provider, device=device,
                     resolution_m=resolution_m, png=png, min_valid=min_valid or 0.0)
    stderr = Console(stderr=True)
    if not quiet:
        stderr.print(f"{result.task} map of {result.regions} region(s) in "
                     f"{result.seconds:.1f} s: {', '.join(str(f) for f in result.files[:3])}"
                     f"{' ...' if len(result.files) > 3 else ''}", soft_wrap=True,
                     highlight=False)
        for warning in result.warnings:
            stderr.print(f"warning: {warning}", style="yellow", soft_wrap=True)
    typer.echo(json.dumps(result.to_dict(), default=str))


def _region(lon: float | None, lat: float | None, buffer_m: float, bbox: str | None,
            crs: str) -> Any:
    """A PointBuffer, a BBox, or None when neither is given."""
    from eoembed import BBox, PointBuffer

    if bbox is not None:
        if lon is not None or lat is not None:
            raise typer.BadParameter("give --bbox or --lon/--lat, not both", param_hint="region")
        return BBox(*parse_bbox(bbox), crs=crs)
    if lon is None and lat is None:
        return None
    if lon is None or lat is None:
        raise typer.BadParameter("give both --lon and --lat", param_hint="region")
    return PointBuffer(lon, lat, buffer_m)


def _window(year: int | None, start: str | None, end: str | None) -> Any:
    """``--year`` or ``--start/--end`` as a TemporalSpec, or None (the head's own window)."""
    from eoembed import TemporalSpec

    if year is not None:
        if start is not None or end is not None:
            raise typer.BadParameter("give --year or --start/--end, not both",
                                     param_hint="time window")
        return TemporalSpec.year(year)
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise typer.BadParameter("give both --start and --end", param_hint="time window")
    return TemporalSpec.range(start, end)


def _export_ref(text: str) -> dict[str, Any]:
    """``DIR`` or ``DIR:MODEL`` (a folder that exists wins over a split at the colon)."""
    if Path(text).exists() or ":" not in text:
        return {"path": text}
    path, _, model = text.rpartition(":")
    return {"path": path, "model": model}


def compare_command(
    config: TrainConfigOpt = None,
    embeddings: CompareEmbeddingsOpt = None,
    labels: LabelsOpt = None,
    value: ValueOpt = None,
    label_crs: LabelCrsOpt = None,
    task: TaskOpt = None,
    head: HeadKindOpt = None,
    param: ParamOpt = None,
    split: SplitOpt = None,
    test_size: TestSizeOpt = None,
    block_size_m: BlockSizeOpt = None,
    seed: SeedOpt = None,
    min_valid: MinValidOpt = None,
    out: HeadOutOpt = None,
    plots: PlotsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Rank models: one head, one label set, one split, each model's embeddings.

    Writes --out/compare.json, compare.csv and compare.png (the ranking) and each model's head
    under --out/heads/. The last line of stdout is the JSON summary.
    """
    from eoembed.heads.api import compare
    from eoembed.heads.config import CompareConfig

    overrides = _overrides(labels, value, label_crs, task, head, param, split, test_size,
                           block_size_m, seed, min_valid, out, plots, quiet)
    if embeddings:
        overrides["embeddings"] = [_export_ref(e) for e in embeddings]
    if config is not None:
        job = CompareConfig.from_yaml(config, overrides)
    else:
        job = CompareConfig.from_dict({}, overrides)
    result = compare(**job.to_kwargs())
    if not job.quiet:
        table = Table("rank", "model", "weights", "dim", result.metric, "n train", "n test",
                      "seconds", box=box.SIMPLE_HEAD, show_edge=False)
        for row in result.rows:
            table.add_row(str(row["rank"]), row["model"], str(row["weights"] or "-"),
                          str(row["dim"]), f"{row[result.metric]:.4f}", str(row["n_train"]),
                          str(row["n_test"]), f"{row['seconds']:.2f}")
        Console(stderr=True).print(table)
    typer.echo(json.dumps(result.to_dict(), default=str))


def evaluate_command(
    head: Annotated[Path, typer.Argument(exists=True, file_okay=False, metavar="HEAD",
                                         help="A head folder written by eoembed train.")],
    export: Annotated[Path, typer.Option("--export", "--embeddings", "-e", metavar="DIR",
                                         help="An export folder made with the head's "
                                         "embedder.")],
    labels: Annotated[Path, typer.Option("--labels", "-l", metavar="FILE",
                                         help="Labels (as for train), joined by place.")],
    model: ExportModelOpt = None,
    value: ValueOpt = None,
    label_crs: LabelCrsOpt = None,
    split: SplitOpt = None,
    test_size: TestSizeOpt = None,
    block_size_m: BlockSizeOpt = None,
    seed: SeedOpt = None,
    min_valid: MinValidOpt = None,
    json_out: EvalJsonOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Score a trained head on labelled embeddings: a table of metrics, and JSON.

    Every labelled sample with imagery counts; with --split, only that split's test side
    (the head's own split reproduces the metrics train reported). --value defaults to the
    column the head was trained on. The last line of stdout is the JSON summary.
    """
    from eoembed.heads.api import evaluate_head

    if split is None and test_size == 0.0:
        split = "none"
    result = evaluate_head(
        head, export, labels, value=value, model=model, label_crs=label_crs or "EPSG:4326",
        min_valid=min_valid or 0.0, split=split, test_size=0.25 if test_size is None
        else test_size, block_size_m=block_size_m or 1000.0, seed=seed or 0, out=json_out,
    )
    if not quiet:
        Console(stderr=True).print(_metrics_table(result.task, result.metrics,
                                                  f"{result.head} head on {result.model}"))
    typer.echo(json.dumps(result.to_dict(), default=str))


_PER_CLASS = ("per_class_precision", "per_class_recall", "per_class_f1", "per_class_iou")


def _metrics_table(task: str, metrics: dict[str, Any], title: str) -> Table:
    """The scalar metrics, then one row per class (precision, recall, F1, IoU)."""
    table = Table("metric", "value", title=title, box=box.SIMPLE_HEAD, show_edge=False)
    for key, value in metrics.items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    present = [k for k in _PER_CLASS if k in metrics]
    if not present:
        return table
    classes = Table("class", *[k.removeprefix("per_class_") for k in present],
                    title=title, box=box.SIMPLE_HEAD, show_edge=False)
    for label in metrics.get("labels", []):
        classes.add_row(str(label), *[f"{metrics[k].get(str(label), 0.0):.4f}" for k in present])
    outer = Table.grid(padding=(0, 4))
    outer.add_row(table, classes)
    return outer
