"""``train``, ``predict`` and ``compare``: the embedding-first loop in three calls.

Embeddings are computed once (``export_batch``); heads are trained on them in seconds,
evaluated on a held-out split keyed by place, saved with the embedder they belong to, and
turned into maps. Same shape as ``export_batch``: one entry function per job, keyword-only
options grouped by purpose.

>>> from eoembed.heads import train, predict
>>> result = train("exports/sites", "sites.csv", value="land_fraction", task="regression",
...                head="linear", split="blocks", block_size_m=3000, out="heads/land")
...                # doctest: +SKIP
>>> predict("heads/land", embeddings="exports/grid", out="land.tif")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.errors import CapabilityError, SpecError
from eoembed.grid import Grid
from eoembed.heads.base import TASKS, GridHead, Head, TabularHead, head_class
from eoembed.heads.inputs import (
    Embeddings,
    RegionGrid,
    cell_imagery,
    embedder_info,
    has_imagery,
    load_embeddings,
)
from eoembed.heads.join import (
    IGNORE,
    SegmentationSet,
    TabularSet,
    join_segmentation,
    join_tabular,
)
from eoembed.heads.labels import RASTER_SUFFIXES as LABEL_RASTERS
from eoembed.heads.labels import RasterLabels, VectorLabels, read_labels
from eoembed.heads.maps import MapEncoding, mosaic, rasterize_footprints, write_geotiff
from eoembed.heads.metrics import PRIMARY, score
from eoembed.heads.splits import Split, check_method, column_held_out, make_split
from eoembed.paths import check_output_dir, check_output_file

if TYPE_CHECKING:
    from eoembed.specs import TemporalSpec
    from eoembed.specs.spatial import SpatialLike

__all__ = [
    "METRICS_FILE",
    "CompareResult",
    "EvaluateResult",
    "PredictResult",
    "TrainResult",
    "compare",
    "evaluate",
    "evaluate_head",
    "predict",
    "train",
]

METRICS_FILE = "metrics.json"
VECTOR_SUFFIXES = (".parquet", ".geoparquet", ".geojson", ".json", ".gpkg")
"""``predict`` outputs written as a table of pooled predictions (one row per region)."""
RASTER_SUFFIXES = (".tif", ".tiff")

EmbeddingsLike = str | Path | Embeddings
LabelsLike = str | Path | VectorLabels | RasterLabels


# -- results ------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What :func:`train` did: the fitted head, its test metrics and where it was saved."""

    head: Head
    metrics: dict[str, Any]
    """Metrics on the held-out test split (empty when nothing was held out)."""
    train_metrics: dict[str, Any]
    split: dict[str, Any]
    join: dict[str, Any]
    out: Path | None
    seconds: float
    pictures: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        """The embedder the head was trained on."""
        return str(self.head.info.get("embedder", {}).get("id"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (what ``eoembed train`` prints)."""
        return {
            "out": str(self.out) if self.out else None, "head": self.head.kind,
            "task": self.head.task, "model": self.model,
            "metrics": _headline(self.head.task, self.metrics),
            "train_metrics": _headline(self.head.task, self.train_metrics),
            "n_train": self.split.get("n_train"), "n_test": self.split.get("n_test"),
            "split": self.split.get("method"), "join": _join_summary(self.join),
            "seconds": round(self.seconds, 3), "pictures": self.pictures,
        }


@dataclass
class EvaluateResult:
    """What :func:`evaluate_head` measured: a saved head on labelled embeddings."""

    task: str
    head: str
    model: str
    metrics: dict[str, Any]
    """The task's metrics (per-class scores and the confusion matrix included)."""
    join: dict[str, Any]
    split: dict[str, Any] | None
    """The split whose test side was scored; ``None``: every labelled sample."""
    out: Path | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (what ``eoembed evaluate`` prints and writes)."""
        return {"head": self.head, "task": self.task, "model": self.model,
                "metrics": self.metrics, "join": _join_summary(self.join),
                "split": self.split, "out": str(self.out) if self.out else None,
                "seconds": round(self.seconds, 3)}


@dataclass
class PredictResult:
    """What :func:`predict` wrote."""

    out: Path
    files: list[Path]
    task: str
    regions: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (what ``eoembed predict`` prints)."""
        return {"out": str(self.out), "files": [str(f) for f in self.files], "task": self.task,
                "regions": self.regions, "seconds": round(self.seconds, 3),
                "warnings": self.warnings}


@dataclass
class CompareResult:
    """One row per model, best first by the task's primary metric."""

    metric: str
    rows: list[dict[str, Any]]
    out: Path | None
    pictures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (what ``eoembed compare`` prints)."""
        return {"metric": self.metric, "ranking": self.rows,
                "out": str(self.out) if self.out else None, "pictures": self.pictures}


def _headline(task: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar metrics (no confusion matrix), rounded for printing; none without a test."""
    if not metrics:
        return {}
    keep = {"regression": ("r2", "rmse", "mae", "n"),
            "classification": ("accuracy", "macro_f1", "n"),
            "segmentation": ("miou", "pixel_accuracy", "per_class_iou", "n")}[task]
    out: dict[str, Any] = {}
    for key in keep:
        value = metrics.get(key)
        if isinstance(value, float):
            out[key] = round(value, 6)
        elif isinstance(value, dict):
            out[key] = {k: round(v, 6) for k, v in value.items()}
        else:
            out[key] = value
    return out


def _join_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "labels"}


# -- helpers ------------------------------------------------------------------------------------


def _embeddings(value: EmbeddingsLike, model: str | None) -> Embeddings:
    if isinstance(value, Embeddings):
        return value
    return load_embeddings(value, model)


def _labels(value: LabelsLike, column: str, crs: str,
            split: str | None = None) -> VectorLabels | RasterLabels:
    """Labels as read; a ``column:NAME`` split also keeps that column."""
    if isinstance(value, VectorLabels | RasterLabels):
        return value
    kind, _, name = (split or "").partition(":")
    keep = (name,) if kind == "column" and Path(value).suffix.lower() not in LABEL_RASTERS \
        else ()
    return read_labels(value, value=column, crs=crs, extra=keep)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _tile_m(emb: Embeddings) -> float | None:
    """The median side, in metres, of the regions pooled embeddings were made of."""
    frame = emb.data
    if emb.mode != "pooled" or "input_width" not in frame or "input_transform" not in frame:
        return None
    sides = [float(w) * abs(float(t[0])) for w, t in zip(frame["input_width"],
                                                          frame["input_transform"], strict=True)]
    return float(np.median(sides)) if sides else None


def _sample_imagery(emb: Embeddings, samples: Sequence[str], min_valid: float) -> np.ndarray:
    """Whether each sample (a pooled row's id, or a cell's ``region/row/col``) had imagery."""
    fractions = emb.valid_fractions()
    if emb.mode == "pooled":
        return np.array([has_imagery(fractions.get(i), min_valid) for i in samples], dtype=bool)
    masks = {g.id: cell_imagery(g, fractions.get(g.id), min_valid) for g in emb.grids()}
    out = np.ones(len(samples), dtype=bool)
    for k, sample in enumerate(samples):
        region, row, col = sample.rsplit("/", 2)
        out[k] = bool(masks[region][int(row), int(col)]) if region in masks else True
    return out


def _with_imagery(data: TabularSet, emb: Embeddings, min_valid: float) -> TabularSet:
    """``data`` without the samples that had no (or too little) imagery, counted."""
    keep = _sample_imagery(emb, data.ids, min_valid)
    data.report["samples_without_imagery"] = int((~keep).sum())
    if keep.all():
        return data
    index = np.flatnonzero(keep)
    data.report["samples"] = len(index)
    return TabularSet(
        x=data.x[index], y=data.y[index], ids=[data.ids[i] for i in index], lon=data.lon[index],
        lat=data.lat[index], report=data.report,
        footprints=[data.footprints[i] for i in index] if data.footprints is not None else None,
    )


def _regions_with_imagery(data: SegmentationSet, emb: Embeddings,
                          min_valid: float) -> SegmentationSet:
    """``data`` without the regions that had no imagery, and unlabelled where cells had none.

    Regions dropped are counted as ``samples_without_imagery``, label pixels under cells
    without imagery as ``pixels_without_imagery``.
    """
    fractions = emb.valid_fractions()
    f = data.upsample
    keep: list[int] = []
    labels: list[np.ndarray] = []
    blanked = 0
    for i, region in enumerate(data.regions):
        cells = cell_imagery(region, fractions.get(region.id), min_valid)
        if not cells.any():
            continue
        fine = np.repeat(np.repeat(cells, f, axis=0), f, axis=1)
        label = data.labels[i].copy()
        blanked += int(((label != IGNORE) & ~fine).sum())
        label[~fine] = IGNORE
        keep.append(i)
        labels.append(label)
    data.report["samples_without_imagery"] = len(data.regions) - len(keep)
    data.report["pixels_without_imagery"] = blanked
    return SegmentationSet([data.regions[i] for i in keep], labels, data.upsample,
                           data.lon[keep], data.lat[keep], data.report)


def _column_split(emb: Embeddings, lab: VectorLabels | RasterLabels, column: str,
                  samples: Sequence[str], *, regions: bool) -> np.ndarray:
    """Each sample's side from the labels' split column, joined by place like the labels.

    A sample (or, with ``regions``, a region of cells) any of whose labels is marked for
    testing is held out, so no test label is ever trained on.
    """
    if not isinstance(lab, VectorLabels) or column not in lab.frame:
        raise SpecError("split", f"column:{column}", allowed="vector labels with that column",
                        reason=f"{lab.describe()['source']} has no column {column!r}")
    flags = column_held_out(lab.frame[column].to_numpy(), column).astype(np.float64)
    marks = VectorLabels(lab.frame.assign(value=flags), lab.source, column, lab.geometry_type)
    joined = join_tabular(emb, marks, "regression")
    held = {i for i, flag in zip(joined.ids, joined.y.tolist(), strict=True) if flag > 0}
    if regions:
        held = {i.rsplit("/", 2)[0] for i in held}
    return np.array([s in held for s in samples], dtype=bool)


def _choose_split(emb: Embeddings, lab: VectorLabels | RasterLabels, samples: Sequence[str],
                  lon: np.ndarray, lat: np.ndarray, *, split: str, test_size: float,
                  block_size_m: float, seed: int, regions: bool = False) -> Split:
    held = None
    kind, _, column = check_method(split).partition(":")
    if kind == "column":
        held = _column_split(emb, lab, column, samples, regions=regions)
    return make_split(lon, lat, method=split, test_size=test_size, block_size_m=block_size_m,
                      seed=seed, held_out=held)


def _check_enough(split: Split, y: np.ndarray | None, task: str) -> None:
    n_train = int(split.train.sum())
    if n_train < 2:
        raise SpecError("samples", n_train, allowed="at least 2 training samples",
                        reason="too few labelled samples; add labels or lower test_size")
    if task == "classification" and y is not None and len(np.unique(y[split.train])) < 2:
        raise SpecError("labels", np.unique(y[split.train]).tolist(),
                        allowed="two or more classes in the training split")


# -- train --------------------------------------------------------------------------------------


def train(
    embeddings: EmbeddingsLike,
    labels: LabelsLike,
    *,
    value: str = "value",
    task: str = "regression",
    head: str = "linear",
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
    # Split
    split: str = "random",
    test_size: float = 0.25,
    block_size_m: float = 1000.0,
    seed: int = 0,
    # Labels
    label_crs: str = "EPSG:4326",
    min_valid: float = 0.0,
    # Output
    out: str | Path | None = None,
    plots: bool = True,
) -> TrainResult:
    """Train a head on exported embeddings and labels joined by georeference.

    Args:
        embeddings: an export folder (``export_batch``) or :class:`Embeddings`.
        labels: a label file (CSV lon/lat, GeoJSON, GeoParquet, ... with ``value``; or a label
            raster), or labels already read with :func:`~eoembed.heads.labels.read_labels`.
        value: the label column of a vector label file.
        task: ``regression``, ``classification`` or ``segmentation``.
        head: ``linear``, ``rf``, ``gbm``, ``knn``, ``mlp`` or ``segmentation``.
        model: which model of a multi-model export.
        params: the head's hyperparameters (e.g. ``{"alpha": 10}``, ``{"epochs": 20}``).
        split: ``random`` or ``blocks`` (spatial blocks of ``block_size_m``); or a predefined
            split: ``column:NAME`` (the labels' train/test column), ``raster:PATH`` (nonzero
            mask pixels are test), ``box:MINX,MINY,MAXX,MAXY[,CRS]`` (inside is test), or
            ``none`` (train on everything; no held-out metrics). Recorded in the head.
        test_size: share of samples (regions for segmentation) held out; 0 is ``none``.
        block_size_m: side of the spatial blocks, metres.
        seed: seeds the split and the head.
        label_crs: CRS of a CSV's lon/lat columns.
        min_valid: samples whose region had no imagery (``valid_fraction`` 0, e.g. past a
            scene's edge) or less than this share are dropped and counted
            (``samples_without_imagery``).
        out: the head folder to write (config, weights, ``metrics.json``, pictures); ``None``
            keeps the head in memory only.
        plots: write the pictures (needs matplotlib).

    Raises:
        SpecError: a bad option, labels that match no embedding, too few samples.
    """
    t0 = time.perf_counter()
    if out is not None:
        out = check_output_dir(out, "head folder")
    if task not in TASKS:
        raise SpecError("task", task, allowed=TASKS)
    check_method(split)
    fitted = head_class(head)(task, seed=seed, **dict(params or {}))
    emb = _embeddings(embeddings, model)
    lab = _labels(labels, value, label_crs, split)
    if isinstance(fitted, GridHead):
        return _train_grid(fitted, emb, lab, t0, split=split, test_size=test_size,
                           block_size_m=block_size_m, seed=seed, min_valid=min_valid, out=out,
                           plots=plots)
    assert isinstance(fitted, TabularHead)
    data = _with_imagery(join_tabular(emb, lab, task), emb, min_valid)
    if len(data.y) < 2:
        raise SpecError("labels", lab.describe()["source"], allowed="labels inside the regions",
                        reason=f"{len(data.y)} sample(s) matched by georeference: "
                        f"{_join_summary(data.report)}")
    chosen = _choose_split(emb, lab, data.ids, data.lon, data.lat, split=split,
                           test_size=test_size, block_size_m=block_size_m, seed=seed)
    _check_enough(chosen, data.y, task)
    t_fit = time.perf_counter()
    fitted.fit(data.x[chosen.train], data.y[chosen.train])
    fit_s = time.perf_counter() - t_fit
    predicted = fitted.predict(data.x)
    metrics = score(task, data.y[chosen.test], predicted[chosen.test]) \
        if chosen.test.any() else {}
    train_metrics = score(task, data.y[chosen.train], predicted[chosen.train])
    fitted.info = {
        "embedder": embedder_info(emb.model, emb.request, str(emb.path) if emb.path else None),
        "input": {"mode": emb.mode, "tile_m": _tile_m(emb)},
        "labels": lab.describe(),
        "training": {"split": chosen.info, "join": _join_summary(data.report),
                     "fit_seconds": round(fit_s, 3)},
        "metrics": _headline(task, metrics),
    }
    result = TrainResult(fitted, metrics, train_metrics, chosen.info, data.report, None, 0.0)
    if out is not None:
        result.out = _save_training(fitted, result, Path(out))
        _write_predictions(result.out, data, predicted, chosen)
        if plots:
            result.pictures = _tabular_pictures(result.out, fitted, emb, data, predicted, chosen,
                                                metrics)
    result.seconds = time.perf_counter() - t0
    return result


def _train_grid(
    fitted: GridHead, emb: Embeddings, lab: VectorLabels | RasterLabels, t0: float, *,
    split: str, test_size: float, block_size_m: float, seed: int, min_valid: float,
    out: str | Path | None, plots: bool,
) -> TrainResult:
    given = fitted.params.get("upsample")
    data = join_segmentation(emb, lab, upsample=int(given) if given else None)
    data = _regions_with_imagery(data, emb, min_valid)
    fitted.params["upsample"] = data.upsample
    if len(data.regions) < 2:
        raise SpecError("labels", lab.describe()["source"], allowed="labels over 2+ regions",
                        reason=f"{len(data.regions)} region(s) hold labels")
    chosen = _choose_split(emb, lab, [r.id for r in data.regions], data.lon, data.lat,
                           split=split, test_size=test_size, block_size_m=block_size_m,
                           seed=seed, regions=True)
    _check_enough(chosen, None, "segmentation")
    train_idx = np.flatnonzero(chosen.train)
    test_idx = np.flatnonzero(chosen.test)
    t_fit = time.perf_counter()
    fitted.fit([data.regions[i].values for i in train_idx], [data.labels[i] for i in train_idx])
    fit_s = time.perf_counter() - t_fit
    maps = fitted.predict([r.values for r in data.regions])
    metrics = _segmentation_score(data, maps, test_idx) if len(test_idx) else {}
    train_metrics = _segmentation_score(data, maps, train_idx)
    fitted.info = {
        "embedder": embedder_info(emb.model, emb.request, str(emb.path) if emb.path else None),
        "input": {"mode": "grid", "tile_m": None},
        "labels": lab.describe(),
        "training": {"split": chosen.info, "join": _join_summary(data.report),
                     "fit_seconds": round(fit_s, 3)},
        "metrics": _headline("segmentation", metrics),
    }
    result = TrainResult(fitted, metrics, train_metrics, chosen.info, data.report, None, 0.0)
    if out is not None:
        result.out = _save_training(fitted, result, Path(out))
        if plots:
            result.pictures = _grid_pictures(result.out, fitted, data, maps, test_idx, metrics)
    result.seconds = time.perf_counter() - t0
    return result


def evaluate_head(
    head: Head | str | Path,
    embeddings: EmbeddingsLike,
    labels: LabelsLike,
    *,
    value: str | None = None,
    model: str | None = None,
    label_crs: str = "EPSG:4326",
    min_valid: float = 0.0,
    # Which samples count (default: every labelled one)
    split: str | None = None,
    test_size: float = 0.25,
    block_size_m: float = 1000.0,
    seed: int = 0,
    # Output
    out: str | Path | None = None,
) -> EvaluateResult:
    """Score a trained head on labelled embeddings, joined by georeference as in training.

    Every labelled sample with imagery counts, unless ``split`` is given: then only its test
    side does, so the split a head was trained with (``column:...``, ``box:...``, or
    ``random``/``blocks`` with the same ``test_size``, ``block_size_m`` and ``seed`` on the
    same labels) reproduces the metrics ``train`` reported.

    Args:
        head: a head folder (``train(out=...)``) or a :class:`Head`.
        embeddings: an export folder or :class:`Embeddings` made with the head's embedder.
        labels: a label file or labels already read.
        value: the label column (default: the one the head was trained on, else ``value``).
        model: which model of a multi-model export.
        label_crs: CRS of a CSV's lon/lat columns.
        min_valid: samples with no imagery (or less than this share) are left out and counted.
        split: score only this split's test side (see :func:`train`).
        test_size: ``split``'s test share (``random``/``blocks``).
        block_size_m: ``split``'s block size (``blocks``).
        seed: ``split``'s seed.
        out: also write the result as JSON to this file.

    Raises:
        CapabilityError: embeddings from another embedder, options or weights than the head's.
        SpecError: labels that match no embedding, a bad split.
    """
    t0 = time.perf_counter()
    fitted = head if isinstance(head, Head) else Head.load(head)
    target = check_output_file(out, "metrics", make_parents=True) if out is not None else None
    if split is not None:
        check_method(split)
    if value is None:
        trained = fitted.info.get("labels") or {}
        value = trained.get("value") if trained.get("kind") != "raster" else None
    emb = _embeddings(embeddings, model)
    _compatibility(fitted, emb)
    lab = _labels(labels, value or "value", label_crs, split)
    chosen: Split | None = None
    if isinstance(fitted, GridHead):
        data = _regions_with_imagery(join_segmentation(emb, lab, upsample=fitted.upsample),
                                     emb, min_valid)
        index = np.arange(len(data.regions))
        if split is not None and len(index):
            chosen = _choose_split(emb, lab, [r.id for r in data.regions], data.lon, data.lat,
                                   split=split, test_size=test_size, block_size_m=block_size_m,
                                   seed=seed, regions=True)
            index = np.flatnonzero(chosen.test)
        if not len(index):
            raise SpecError("labels", lab.describe()["source"], allowed="labels over the "
                            "regions", reason=f"no region to score: {_join_summary(data.report)}")
        maps = fitted.predict([data.regions[i].values for i in index])
        metrics = _scored_regions(data, maps, index)
        report = data.report
    else:
        assert isinstance(fitted, TabularHead)
        rows = _with_imagery(join_tabular(emb, lab, fitted.task), emb, min_valid)
        keep = np.ones(len(rows.y), dtype=bool)
        if split is not None and len(rows.y):
            chosen = _choose_split(emb, lab, rows.ids, rows.lon, rows.lat, split=split,
                                   test_size=test_size, block_size_m=block_size_m, seed=seed)
            keep = chosen.test
        if not keep.any():
            raise SpecError("labels", lab.describe()["source"], allowed="labels inside the "
                            "regions", reason=f"no sample to score: {_join_summary(rows.report)}")
        metrics = score(fitted.task, rows.y[keep], fitted.predict(rows.x[keep]))
        report = rows.report
    result = EvaluateResult(fitted.task, fitted.kind, str(emb.model), metrics, report,
                            chosen.info if chosen is not None else None, target, 0.0)
    result.seconds = time.perf_counter() - t0
    if target is not None:
        _write_json(target, result.to_dict())
    return result


def evaluate(head: Head | str | Path, embeddings: EmbeddingsLike, labels: LabelsLike, *,
             value: str | None = None, model: str | None = None,
             label_crs: str = "EPSG:4326", min_valid: float = 0.0) -> dict[str, Any]:
    """The metrics alone of :func:`evaluate_head` over every labelled sample."""
    return evaluate_head(head, embeddings, labels, value=value, model=model,
                         label_crs=label_crs, min_valid=min_valid).metrics


def _scored_regions(data: SegmentationSet, maps: Sequence[np.ndarray],
                    index: np.ndarray) -> dict[str, Any]:
    """Segmentation metrics of ``maps``, predicted for the regions ``index`` in that order."""
    full: list[np.ndarray] = [np.zeros(0)] * len(data.regions)
    for i, m in zip(index.tolist(), maps, strict=True):
        full[i] = m
    return _segmentation_score(data, full, index)


def _segmentation_score(data: SegmentationSet, maps: Sequence[np.ndarray],
                        index: np.ndarray) -> dict[str, Any]:
    truth = [data.labels[i].ravel() for i in index]
    pred = [np.asarray(maps[i]).ravel() for i in index]
    t = np.concatenate(truth) if truth else np.zeros(0, np.int64)
    p = np.concatenate(pred) if pred else np.zeros(0, np.int64)
    keep = t != IGNORE
    return score("segmentation", t[keep], p[keep])


def _save_training(fitted: Head, result: TrainResult, out: Path) -> Path:
    fitted.save(out)
    _write_json(out / METRICS_FILE, {
        "task": fitted.task, "head": fitted.kind, "model": result.model,
        "metrics": result.metrics, "train_metrics": result.train_metrics,
        "split": result.split, "join": _join_summary(result.join),
    })
    return out


def _write_predictions(out: Path, data: TabularSet, predicted: np.ndarray, chosen: Split) -> None:
    """``predictions.csv``: every labelled sample with its place, label, prediction and side."""
    path = out / "predictions.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "lon", "lat", "observed", "predicted", "split"])
        for i, sample in enumerate(data.ids):
            writer.writerow([sample, f"{data.lon[i]:.7f}", f"{data.lat[i]:.7f}", data.y[i],
                             predicted[i], "test" if chosen.test[i] else "train"])


def _tabular_pictures(out: Path, fitted: Head, emb: Embeddings, data: TabularSet,
                      predicted: np.ndarray, chosen: Split, metrics: dict[str, Any]) -> list[str]:
    from eoembed.heads import plots

    title = f"{emb.model} + {fitted.kind} ({chosen.info['method']} split, test set)"
    pictures: list[Path] = []
    test = chosen.test
    if not test.any():
        pass  # nothing held out: no test-set picture
    elif fitted.task == "regression":
        pictures.append(plots.scatter_png(data.y[test], predicted[test], out / "scatter.png",
                                          title=title, metrics=metrics))
    else:
        pictures.append(plots.confusion_png(np.asarray(metrics["confusion"]), metrics["labels"],
                                            out / "confusion.png", title=title))
    categorical = fitted.task != "regression"
    if data.footprints is not None:
        pictures.append(plots.footprint_map_png(
            data.footprints, data.y, predicted, out / "map.png", categorical=categorical,
            title=f"{emb.model} + {fitted.kind}: every labelled region (train and test)"))
        pictures.append(plots.pca_footprints_png(data.footprints, data.x, out / "pca.png"))
    else:
        rows = _cell_maps(emb, data, predicted, chosen)
        if rows:
            title = f"{emb.model} + {fitted.kind}: held-out cells (blank: training cells)"
            pictures.append(plots.grid_maps_png(rows, out / "map.png", categorical=categorical,
                                                title=title))
        grids = emb.grids()[:6]
        pictures.append(plots.pca_grids_png([(g.id, g.values) for g in grids], out / "pca.png"))
    return [str(p) for p in pictures]


def _cell_maps(emb: Embeddings, data: TabularSet, predicted: np.ndarray,
               chosen: Split) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Label and prediction maps of held-out cells, for four regions of a cell-level head."""
    shapes = {g.id: g.values.shape[1:] for g in emb.grids()}
    rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    categorical = not np.issubdtype(np.asarray(data.y).dtype, np.floating)
    for i, sample in enumerate(data.ids):
        if not chosen.test[i]:
            continue
        region, r, c = sample.rsplit("/", 2)
        if region not in rows:
            shape = shapes[region]
            rows[region] = (np.full(shape, np.nan), np.full(shape, np.nan))
        truth, pred = rows[region]
        truth[int(r), int(c)] = _number(data.y[i], categorical, data.y)
        pred[int(r), int(c)] = _number(predicted[i], categorical, data.y)
    # The regions with the most varied labels show the most.
    varied = sorted(rows.items(), key=lambda kv: -len(np.unique(kv[1][0][np.isfinite(kv[1][0])])))
    return [(k, t, p) for k, (t, p) in varied[:4]]


def _number(value: Any, categorical: bool, labels: np.ndarray) -> float:
    if not categorical:
        return float(value)
    classes = sorted({str(v) for v in labels.tolist()})
    return float(classes.index(str(value))) if str(value) in classes else math.nan


def _grid_pictures(out: Path, fitted: GridHead, data: SegmentationSet, maps: Sequence[np.ndarray],
                   test_idx: np.ndarray, metrics: dict[str, Any]) -> list[str]:
    from eoembed.heads import plots

    model = fitted.info.get("embedder", {}).get("id")
    title = f"{model} + segmentation decoder (test regions)"
    classes = list(fitted.classes or [])
    lookup = {c: i for i, c in enumerate(classes)}

    def codes(m: np.ndarray) -> np.ndarray:
        flat = [lookup.get(v, -1) for v in np.asarray(m).ravel().tolist()]
        return np.asarray(flat, dtype=float).reshape(np.shape(m))

    # Show the test regions with the most mixed labels: uniform ones say little.
    shown = test_idx if len(test_idx) else np.arange(len(data.regions))
    mixed = sorted(shown.tolist(), key=lambda i: -len(np.unique(data.labels[i])))
    rows = [(data.regions[i].id, codes(data.labels[i]), codes(maps[i])) for i in mixed[:4]]
    pictures = [
        plots.grid_maps_png(rows, out / "map.png", title=title),
        plots.pca_grids_png([(data.regions[i].id, data.regions[i].values)
                             for i in shown[:6]], out / "pca.png"),
    ]
    if metrics:
        pictures.insert(0, plots.confusion_png(np.asarray(metrics["confusion"]),
                                               metrics["labels"], out / "confusion.png",
                                               title=title))
    return [str(p) for p in pictures]


# -- predict ------------------------------------------------------------------------------------


def _compatibility(fitted: Head, emb: Embeddings) -> list[str]:
    """Refuse embeddings from another embedder; warn about other differences in the request."""
    trained = fitted.info.get("embedder") or {}
    now = embedder_info(emb.model, emb.request)
    if trained.get("id") and trained["id"] != emb.model:
        raise CapabilityError(
            f"the head was trained on {trained['id']!r} embeddings, not {emb.model!r}"
        )
    for key in ("options", "revision", "weights_sha256"):
        if trained.get(key) != now.get(key):
            raise CapabilityError(
                f"the head was trained on {emb.model!r} with {key}={trained.get(key)!r}; these "
                f"embeddings have {key}={now.get(key)!r}"
            )
    warnings = []
    for key in ("sensor", "provider", "temporal"):
        if trained.get(key) is not None and trained.get(key) != now.get(key):
            warnings.append(f"embeddings differ from the training export in {key}")
    if trained.get("output", {}).get("pooling") != (now.get("output") or {}).get("pooling") \
            and fitted.input_mode == "vector" and emb.mode == "pooled":
        raise CapabilityError("the head was trained on differently pooled embeddings")
    return warnings


def _tags(fitted: Head) -> dict[str, Any]:
    embedder = fitted.info.get("embedder") or {}
    return {"head": fitted.kind, "task": fitted.task, "embedder": embedder.get("id"),
            "embedder_revision": str(embedder.get("revision"))}


def _region_maps(fitted: Head, regions: Sequence[RegionGrid],
                 imagery: Sequence[np.ndarray] | None = None) -> list[tuple[np.ndarray, Grid]]:
    """Per-region prediction maps (labels or values) on their own grids.

    Cells without imagery (``imagery[i]``, ``(h, w)`` bool per region) map to nodata: no
    value is made up from the fill values the model saw there.
    """
    out: list[tuple[np.ndarray, Grid]] = []
    seen = list(imagery) if imagery is not None else [
        np.ones(r.values.shape[1:], dtype=bool) for r in regions]
    if isinstance(fitted, GridHead):
        f = fitted.upsample
        predicted = iter(fitted.predict([r.values for r, ok in zip(regions, seen, strict=True)
                                         if ok.any()]))
        for region, ok in zip(regions, seen, strict=True):
            g = region.grid
            fine = Grid(g.crs, g.left, g.top, g.resolution / f, g.width * f, g.height * f)
            labels = np.full(fine.shape, None, dtype=object)
            if ok.any():
                labels[:] = next(predicted)
                labels[~np.repeat(np.repeat(ok, f, axis=0), f, axis=1)] = None
            out.append((labels, fine))
        return out
    assert isinstance(fitted, TabularHead)
    for region, ok in zip(regions, seen, strict=True):
        d, h, w = region.values.shape
        cells = region.values.reshape(d, h * w).T
        finite = np.isfinite(cells).all(axis=1) & ok.ravel()
        values = np.full(h * w, np.nan, dtype=object)
        if finite.any():
            values[finite] = fitted.predict(cells[finite])
        out.append((values.reshape(h, w), region.grid))
    return out


def _write_maps(out: Path, maps: Sequence[tuple[np.ndarray, Grid]], ids: Sequence[str],
                fitted: Head) -> list[Path]:
    encoding = MapEncoding.for_task(fitted.task, fitted.classes)
    encoded = [(encoding.encode(values, _valid(values)), grid)
               for values, grid in maps]
    tags = _tags(fitted)
    if out.suffix.lower() in RASTER_SUFFIXES:
        values, grid = mosaic(encoded, encoding)
        return [write_geotiff(out, values, grid, encoding, tags)]
    if out.suffix:
        raise SpecError("out", str(out), allowed=f"a {', '.join(RASTER_SUFFIXES)} file (one "
                        "mosaic) or a folder (one GeoTIFF per region)")
    return [write_geotiff(out / f"{region}.tif", values, grid, encoding, tags)
            for region, (values, grid) in zip(ids, encoded, strict=True)]


def _valid(values: np.ndarray) -> np.ndarray:
    """Cells holding a prediction (not None or NaN)."""
    flat = [v is not None and not (isinstance(v, float) and math.isnan(v))
            for v in np.asarray(values, dtype=object).ravel().tolist()]
    return np.asarray(flat, dtype=bool).reshape(np.shape(values))


def predict(
    head: Head | str | Path,
    *,
    out: str | Path,
    # Embeddings already exported...
    embeddings: EmbeddingsLike | None = None,
    model: str | None = None,
    # ...or a region, embedded now with the head's embedder
    spatial: SpatialLike | None = None,
    temporal: TemporalSpec | None = None,
    provider: str | None = None,
    device: str = "auto",
    # Output
    resolution_m: float | None = None,
    png: str | Path | None = None,
    min_valid: float = 0.0,
) -> PredictResult:
    """Map a trained head over exported embeddings or over a region.

    Where the embeddings had no imagery (a region's ``valid_fraction`` is 0, e.g. past a
    scene's edge, or below ``min_valid``) the map holds its nodata value (and a table of
    pooled predictions an empty prediction), never a class made from fill values.

    Outputs by embeddings and ``out``:

    - pooled embeddings: ``.parquet``/``.geojson``/``.gpkg`` (one row per region: ``id``,
      ``prediction``, footprint) or ``.tif`` (footprints burnt at ``resolution_m``, default
      the input pixel size of the export, in the regions' CRS).
    - grid embeddings: ``.tif`` (one mosaic in the regions' shared CRS) or a folder (one
      ``<id>.tif`` per region). Cell heads map at the embedding cell size, the segmentation
      decoder at the label resolution it was trained at.
    - a region (``spatial``): the head's embedder runs now with the export's options, sensor,
      provider and time window (``temporal``/``provider`` override them). Grid heads map the
      region's grid; pooled heads tile the region into squares of the training regions' size
      and map one pixel per square. ``out`` is a ``.tif``.

    Raises:
        CapabilityError: embeddings from another embedder, options or weights than the head's.
        SpecError: neither or both of ``embeddings`` and ``spatial``; an unsupported ``out``.
    """
    t0 = time.perf_counter()
    fitted = head if isinstance(head, Head) else Head.load(head)
    out = (check_output_file(out, "prediction", make_parents=True) if Path(out).suffix
           else check_output_dir(out, "prediction folder"))
    if png is not None:
        check_output_file(png, "png", make_parents=True)
    if (embeddings is None) == (spatial is None):
        raise SpecError("embeddings", embeddings, allowed="exported embeddings or a region "
                        "(spatial=...), exactly one")
    if spatial is not None:
        return _predict_region(fitted, spatial, temporal, provider, device, out, png, t0,
                               min_valid)
    assert embeddings is not None
    emb = _embeddings(embeddings, model)
    warnings = _compatibility(fitted, emb)
    if emb.mode == "pooled":
        if isinstance(fitted, GridHead):
            raise CapabilityError("a segmentation head needs grid embeddings, not pooled ones")
        files = _predict_pooled(fitted, emb, out, resolution_m, min_valid)
        count = len(emb)
    else:
        if fitted.info.get("input", {}).get("mode") == "pooled":
            warnings.append("the head was trained on pooled embeddings; mapping it on grid "
                            "cells assumes cells look like pooled regions")
        regions = emb.grids()
        fractions = emb.valid_fractions()
        imagery = [cell_imagery(r, fractions.get(r.id), min_valid) for r in regions]
        blank = sum(int((~m).sum()) for m in imagery)
        if blank:
            warnings.append(f"{blank} cell(s) without imagery (valid_fraction) are nodata")
        maps = _region_maps(fitted, regions, imagery)
        files = _write_maps(out, maps, [r.id for r in regions], fitted)
        count = len(regions)
        if png is not None:
            _map_png(files[0], png, fitted)
    return PredictResult(out, files, fitted.task, count, time.perf_counter() - t0, warnings)


def _predict_pooled(fitted: Head, emb: Embeddings, out: Path, resolution_m: float | None,
                    min_valid: float) -> list[Path]:
    import geopandas as gpd

    assert isinstance(fitted, TabularHead)
    frame = emb.data
    fractions = emb.valid_fractions()
    imagery = np.array([has_imagery(fractions.get(str(i)), min_valid) for i in frame["id"]],
                       dtype=bool)
    predicted = _masked_predictions(fitted, emb.matrix(), imagery)
    suffix = out.suffix.lower()
    if suffix in VECTOR_SUFFIXES:
        table = gpd.GeoDataFrame({"id": frame["id"].to_numpy(), "model": emb.model,
                                  "prediction": predicted}, geometry=frame.geometry.to_numpy(),
                                 crs="OGC:CRS84")
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix in (".parquet", ".geoparquet"):
            table.to_parquet(out)
        else:
            table.to_file(out, driver="GPKG" if suffix == ".gpkg" else "GeoJSON")
        return [out]
    if suffix not in RASTER_SUFFIXES:
        raise SpecError("out", str(out), allowed=VECTOR_SUFFIXES + RASTER_SUFFIXES)
    crs_values = sorted({str(c) for c in frame["crs"]}) if "crs" in frame else []
    if len(crs_values) == 1:
        crs = crs_values[0]
    else:
        from eoembed.grid import local_metric_crs

        centre = frame.geometry.union_all().centroid
        crs = local_metric_crs(centre.x, centre.y)
    if resolution_m is None:
        sizes = [abs(float(t[0])) for t in frame["input_transform"]] \
            if "input_transform" in frame else [10.0]
        resolution_m = float(min(sizes))
    encoding = MapEncoding.for_task(fitted.task, fitted.classes)
    values, grid = rasterize_footprints(list(frame.geometry),
                                        encoding.encode(predicted, imagery), crs, resolution_m,
                                        encoding)
    return [write_geotiff(out, values, grid, encoding, _tags(fitted))]


def _masked_predictions(fitted: TabularHead, x: np.ndarray, imagery: np.ndarray) -> np.ndarray:
    """Predictions of the rows with imagery; NaN (values) or None (classes) elsewhere."""
    empty: Any = np.nan if fitted.task == "regression" else None
    predicted = np.full(len(imagery), empty, dtype=np.float64 if fitted.task == "regression"
                        else object)
    if imagery.any():
        predicted[imagery] = fitted.predict(x[imagery])
    return predicted


def _predict_region(
    fitted: Head, spatial: SpatialLike, temporal: TemporalSpec | None, provider: str | None,
    device: str, out: Path, png: str | Path | None, t0: float, min_valid: float,
) -> PredictResult:
    from eoembed.api import get_embeddings_batch
    from eoembed.specs import BBox, OutputSpec, SensorSpec, TemporalSpec, as_spatial

    embedder = fitted.info.get("embedder") or {}
    model = embedder.get("id")
    if not model:
        raise SpecError("head", "embedder", reason="the head does not record its embedder")
    if out.suffix.lower() not in RASTER_SUFFIXES:
        raise SpecError("out", str(out), allowed=RASTER_SUFFIXES,
                        reason="a region is mapped to one GeoTIFF")
    region = as_spatial(spatial)
    temporal = temporal or TemporalSpec.from_dict(embedder["temporal"])
    sensor = SensorSpec.from_dict(embedder["sensor"]) if embedder.get("sensor") else None
    source = provider or embedder.get("provider") or "sample"
    options = dict(embedder.get("options") or {})
    if fitted.info.get("input", {}).get("mode") == "pooled":
        tile = fitted.info["input"].get("tile_m")
        if not tile:
            raise SpecError("head", "input.tile_m", reason="the head does not record the size "
                            "of the regions it was trained on")
        tiles = region.grid(float(tile))
        boxes = [BBox(tiles.left + c * tiles.resolution, tiles.top - (r + 1) * tiles.resolution,
                      tiles.left + (c + 1) * tiles.resolution, tiles.top - r * tiles.resolution,
                      crs=tiles.crs)
                 for r in range(tiles.height) for c in range(tiles.width)]
        pooled = OutputSpec.from_dict(embedder["output"]) if embedder.get("output") else None
        embs = get_embeddings_batch(model, spatials=boxes, temporal=temporal, sensor=sensor,
                                    output=pooled, provider=source, device=device, **options)
        assert isinstance(fitted, TabularHead)
        imagery = np.array([has_imagery(e.meta.get("valid_fraction"), min_valid) for e in embs],
                           dtype=bool)
        predicted = _masked_predictions(fitted, np.stack([np.asarray(e.data) for e in embs]),
                                        imagery)
        maps = [(predicted.reshape(tiles.height, tiles.width), tiles)]
        files = _write_maps(out, maps, ["region"], fitted)
    else:
        embs = get_embeddings_batch(model, spatials=[region], temporal=temporal, sensor=sensor,
                                    output=OutputSpec.grid(), provider=source, device=device,
                                    **options)
        from eoembed.heads.inputs import region_grid

        data = embs[0].data
        if isinstance(data, np.ndarray):
            raise CapabilityError(f"{model!r} returned a vector, not a grid")
        grid = region_grid("region", data)
        seen = [cell_imagery(grid, embs[0].meta.get("valid_fraction"), min_valid)]
        files = _write_maps(out, _region_maps(fitted, [grid], seen), ["region"], fitted)
    if png is not None:
        _map_png(files[0], png, fitted)
    return PredictResult(out, files, fitted.task, 1, time.perf_counter() - t0)


def _map_png(tif: Path, png: str | Path, fitted: Head) -> None:
    import rasterio

    from eoembed.heads.plots import raster_png

    with rasterio.open(tif) as src:
        values = src.read(1, masked=True).astype(float).filled(np.nan)
    raster_png(values, png, categorical=fitted.task != "regression",
               title=f"{fitted.info.get('embedder', {}).get('id')} + {fitted.kind}: "
               f"predicted {fitted.task}")


# -- compare ------------------------------------------------------------------------------------


def _expand(entries: Sequence[EmbeddingsLike | tuple[str | Path, str]]) -> list[Embeddings]:
    """Every (export, model) to compare: a multi-model export without a model gives each."""
    from eoembed.pipeline.folder import read_job

    out: list[Embeddings] = []
    for entry in entries:
        if isinstance(entry, Embeddings):
            out.append(entry)
        elif isinstance(entry, tuple):
            out.append(load_embeddings(entry[0], entry[1]))
        else:
            job = read_job(Path(entry))
            models = list(job["models"]) if job is not None else []
            path = Path(entry)
            for name in models or [None]:
                out.append(load_embeddings(path, name))
    return out


def compare(
    embeddings: Sequence[EmbeddingsLike | tuple[str | Path, str]],
    labels: LabelsLike,
    *,
    value: str = "value",
    task: str = "regression",
    head: str = "rf",
    params: Mapping[str, Any] | None = None,
    # Split (the same for every model: it is keyed by place)
    split: str = "random",
    test_size: float = 0.25,
    block_size_m: float = 1000.0,
    seed: int = 0,
    label_crs: str = "EPSG:4326",
    min_valid: float = 0.0,
    # Output
    out: str | Path | None = None,
    plots: bool = True,
) -> CompareResult:
    """Rank models by one head trained on each one's embeddings, with one label set and split.

    The rs-embed paper's benchmark as one call: each export (or each model of a multi-model
    export) gets the same head, labels and split (splits are keyed by place, so the same
    regions are held out for every model), and the models are ranked by the task's primary
    metric (R2, macro F1 or mIoU). With ``out``, each head is saved under
    ``out/heads/<model>``, the table as ``compare.json`` and ``compare.csv``, and the ranking
    as ``compare.png``.
    """
    if not embeddings:
        raise SpecError("embeddings", [], allowed="one or more exports")
    check_method(split)
    lab = _labels(labels, value, label_crs, split)
    metric = PRIMARY.get(task, "")
    if task not in TASKS:
        raise SpecError("task", task, allowed=TASKS)
    root = check_output_dir(out, "comparison folder") if out is not None else None
    rows: list[dict[str, Any]] = []
    inputs = _expand(embeddings)
    counts = {m: [e.model for e in inputs].count(m) for m in {e.model for e in inputs}}
    names: set[str] = set()
    for emb in inputs:
        # The same model with other options (another export) is told apart by its folder.
        folder_name = emb.path.name if emb.path else ""
        name = emb.model if counts[emb.model] == 1 else f"{emb.model}@{folder_name}"
        while name in names:
            name += "'"
        names.add(name)
        folder = root / "heads" / re.sub(r"[^A-Za-z0-9._@-]", "_", name) if root else None
        result = train(emb, lab, task=task, head=head, params=params, split=split,
                       test_size=test_size, block_size_m=block_size_m, seed=seed,
                       min_valid=min_valid, out=folder, plots=plots)
        weights = emb.request.get("weights") or {}
        rows.append({
            "model": name, "export": str(emb.path) if emb.path else None, "dim": emb.dim,
            "weights": weights.get("revision") or (emb.request.get("options") or {}).get("weights"),
            metric: result.metrics.get(metric, math.nan), **_headline(task, result.metrics),
            "n_train": result.split.get("n_train"), "n_test": result.split.get("n_test"),
            "seconds": round(result.seconds, 3), "head_dir": str(folder) if folder else None,
        })
    rows.sort(key=lambda r: (-_finite(r[metric]), r["model"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    ranking = CompareResult(metric, rows, root)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        _write_json(root / "compare.json", {"task": task, "head": head, "metric": metric,
                                            "split": split, "seed": seed, "ranking": rows})
        columns = ["rank", "model", metric, *[k for k in rows[0] if k not in ("rank", "model",
                   metric, "per_class_iou")]]
        with open(root / "compare.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        if plots:
            from eoembed.heads.plots import ranking_png

            png = ranking_png([r["model"] for r in rows], [r[metric] for r in rows],
                              root / "compare.png", metric=metric,
                              title=f"{head} head, {split} split, {task}")
            ranking.pictures = [str(png)]
    return ranking


def _finite(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return number if math.isfinite(number) else -math.inf
