"""``export_batch``: many regions x many models to files, overlapped, resumable, never rewritten.

The shape follows ``odc.stac.load``: one entry function, keyword-only options grouped by
purpose, helpers (provider, progress) injectable. Everything that can be checked is checked
before any pixel is read: specs, models and their arguments, the provider's bands, the
format, and whether the output folder holds results of a different request.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eoembed._version import __version__
from eoembed.errors import CapabilityError, ExportConflictError, SpecError
from eoembed.paths import check_output_dir
from eoembed.pipeline.engine import EngineSettings, RunCounts, run_plan
from eoembed.pipeline.manifest import MANIFEST_NAME, Manifest, read_manifest
from eoembed.pipeline.plan import Job, ModelPlan, model_request, plan_fetches
from eoembed.pipeline.progress import export_progress
from eoembed.pipeline.retry import RetryPolicy
from eoembed.specs import OutputSpec, SensorSpec, TemporalSpec, as_spatial
from eoembed.specs.spatial import SpatialLike

if TYPE_CHECKING:
    from eoembed.providers.base import Provider
    from eoembed.writers.base import Writer

__all__ = ["JOB_FILE", "ExportResult", "export_batch", "load_export"]

JOB_FILE = "export.json"
"""The job description at the top of an export folder: format, output, models, requests."""

ON_ERROR = ("raise", "continue")
QUANTIZE = (None, "int8")


@dataclass
class ExportResult:
    """What an export run did."""

    out: Path
    format: str
    total: int
    """Region x model pairs the export covers (duplicates once)."""
    ok: int
    """Written in this run."""
    failed: int
    skipped: int
    """No data for the region in the window (recorded, not retried)."""
    reused: int
    """Already done (written or skipped) by an earlier run of the same request."""
    fetches: int
    """Provider reads made in this run, retries included."""
    unique_requests: int
    """Distinct (grid, window, sensor, provider) reads the run needed."""
    seconds: float
    warnings: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    """The first failures: id, model, region index, stage and error."""

    @property
    def complete(self) -> bool:
        """Whether every region x model is written or skipped."""
        return self.failed == 0 and self.ok + self.skipped + self.reused == self.total

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "out": str(self.out), "format": self.format, "total": self.total, "ok": self.ok,
            "failed": self.failed, "skipped": self.skipped, "reused": self.reused,
            "fetches": self.fetches, "unique_requests": self.unique_requests,
            "seconds": round(self.seconds, 3), "warnings": self.warnings,
            "failures": self.failures,
        }


def model_dir(model: str) -> str:
    """The folder name of a model's files inside an export."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", model)


def _check_options(
    on_error: str, quantize: str | None, batch_size: int, fetch_workers: int, max_retries: int,
    retry_backoff_s: float,
) -> None:
    if on_error not in ON_ERROR:
        raise SpecError("on_error", on_error, allowed=ON_ERROR)
    if quantize not in QUANTIZE:
        raise SpecError("quantize", quantize, allowed=QUANTIZE)
    for name, value, low in (
        ("batch_size", batch_size, 1), ("fetch_workers", fetch_workers, 1),
        ("max_retries", max_retries, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SpecError(name, value, allowed=f"an integer >= {low}")
    if not isinstance(retry_backoff_s, int | float) or retry_backoff_s < 0:
        raise SpecError("retry_backoff_s", retry_backoff_s, allowed="seconds >= 0")


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def _read_job(out: Path) -> dict[str, Any] | None:
    path = out / JOB_FILE
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _clear(out: Path, job: dict[str, Any] | None) -> None:
    """Delete an earlier export's files (only those eoembed wrote) for ``overwrite=True``."""
    if job is not None:
        for info in job.get("models", {}).values():
            shutil.rmtree(out / info["dir"], ignore_errors=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    (out / JOB_FILE).unlink(missing_ok=True)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        names = []
        for key in sorted(set(old) | set(new)):
            names += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return names
    return [] if old == new else [prefix.rstrip(".")]


def _conflict(stale: list[Job], job: dict[str, Any] | None, plans: list[ModelPlan], out: Path) -> ExportConflictError:
    models = sorted({j.model for j in stale})
    stored = (job or {}).get("models", {})
    changes = []
    for plan in plans:
        if plan.model in models and plan.model in stored:
            changed = _diff(stored[plan.model].get("request"), plan.request)
            changes.append(f"{plan.model}: {', '.join(changed) or 'request'}")
    return ExportConflictError(
        f"{out} already holds {len(stale)} result(s) of a different request for the same "
        f"regions (changed: {'; '.join(changes) or ', '.join(models)}); resuming would mix "
        "stale and fresh results. Write to a new out=, or pass overwrite=True (--overwrite) "
        "to replace the earlier export."
    )


def export_batch(
    spatials: Iterable[SpatialLike],
    models: str | Sequence[str],
    *,
    temporal: TemporalSpec,
    out: str | Path,
    # What to read
    sensor: SensorSpec | None = None,
    sensors: Mapping[str, SensorSpec] | None = None,
    model_args: Mapping[str, Mapping[str, Any]] | None = None,
    provider: str | Provider = "sample",
    frames: int | None = None,
    # What to write
    output: OutputSpec | None = None,
    format: str = "geoparquet",
    quantize: str | None = None,
    # Execution
    device: str = "auto",
    batch_size: int = 16,
    fetch_workers: int = 4,
    prefetch: int | None = None,
    rows_per_part: int = 2048,
    # Failures and resume
    on_error: str = "raise",
    max_retries: int = 2,
    retry_backoff_s: float = 0.5,
    resume: bool = True,
    overwrite: bool = False,
    # UI
    progress: bool = True,
) -> ExportResult:
    """Embed every region with every model and write the results to ``out``.

    >>> from eoembed import PointBuffer, TemporalSpec, export_batch
    >>> points = [PointBuffer(-75.70, 37.70, 1280), PointBuffer(-75.65, 37.68, 1280)]
    >>> export_batch(points, "mosaiks", temporal=TemporalSpec.range("2015-06-23", "2016-06-11"),
    ...              out="out/mosaiks", provider="sample")  # doctest: +SKIP

    Each distinct (grid, window, sensor, provider) is fetched once and shared by every model
    that reads it; duplicate regions are written once. Results go to ``out/<model>/`` in the
    chosen format, and every outcome to ``out/manifest.jsonl``. Rerunning the same call after
    a crash does only what is missing.

    Args:
        spatials: the regions (BBox, PointBuffer, GeometrySpec, or anything ``as_spatial`` takes).
        models: a model id or several.
        temporal: the time window.
        out: the export folder.
        sensor: the imagery for every model (default: each model's own training sensor).
        sensors: per-model sensor overrides, by model id.
        model_args: per-model arguments, by model id (see ``describe_model``).
        provider: a provider name, ``"name:argument"`` or instance.
        frames: for temporal models, a time series of this many frames (equal whole-day bins
            of the window, see ``fetch_series``) instead of one composite, each frame's date
            given to the model, as ``get_embedding(..., frames=N)``. Every model of the export
            must be temporal. Part of each request: an export made with another ``frames``
            is never reused.
        output: ``OutputSpec.pooled()`` (default) or ``OutputSpec.grid()``.
        format: ``geoparquet``, ``npz`` (pooled); ``zarr``, ``netcdf``, ``cog``, ``npz`` (grid).
        quantize: ``"int8"`` stores int8 with a scale (see ``eoembed.writers.quantize``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        batch_size: regions per forward pass.
        fetch_workers: regions read concurrently.
        prefetch: regions read ahead of the model (default ``2 * batch_size``, at least 8).
        rows_per_part: pooled rows per part file.
        on_error: ``"raise"`` stops at the first failure (after writing what is done);
            ``"continue"`` records failures in the manifest and goes on.
        max_retries: extra tries of a failing fetch, forward pass or write.
        retry_backoff_s: first wait between tries; doubles each time.
        resume: reuse results an earlier run of the same request wrote to ``out``.
        overwrite: delete an earlier export in ``out`` first.
        progress: show a progress bar on stderr.

    Raises:
        SpecError: a bad spec or option, before any I/O.
        CapabilityError: a model the provider or format cannot serve, or ``frames`` for a
            single-image model or a provider without time series, before any I/O.
        ExportConflictError: ``out`` holds results of a different request.
    """
    from eoembed.api import (
        cached_embedder,
        check_contract,
        check_grids,
        check_model_frames,
        check_models,
        check_types,
        default_sensor,
    )
    from eoembed.embedders.registry import describe_model
    from eoembed.providers.registry import get_provider
    from eoembed.writers import get_writer

    t0 = time.perf_counter()
    output = output or OutputSpec.pooled()
    check_types(temporal, output, sensor)
    _check_options(on_error, quantize, batch_size, fetch_workers, max_retries, retry_backoff_s)
    writer_cls = get_writer(format)
    if output.mode not in writer_cls.modes:
        raise CapabilityError(
            f"format {format!r} stores {', '.join(sorted(writer_cls.modes))} output, not "
            f"{output.mode!r}"
        )
    model_ids = list(dict.fromkeys([models] if isinstance(models, str) else models))
    if not model_ids:
        raise SpecError("models", [], allowed="at least one model id")
    sensors = dict(sensors or {})
    model_args = dict(model_args or {})
    for name, mapping in (("sensors", sensors), ("model_args", model_args)):
        unknown = sorted(set(mapping) - set(model_ids))
        if unknown:
            raise SpecError(f"{name} key", unknown[0], allowed=model_ids)
    source = get_provider(provider)
    cards = {m: describe_model(m) for m in model_ids}
    for model_id, card in cards.items():
        if output.mode not in card.outputs:
            raise CapabilityError(
                f"model {model_id!r} gives {', '.join(card.outputs)} output, not {output.mode!r}"
            )
    chosen = {m: sensors.get(m) or sensor or default_sensor(cards[m], source) for m in model_ids}
    for s in chosen.values():
        check_types(temporal, output, s)
    warnings = {m: check_contract(cards[m], chosen[m], source) for m in model_ids}
    for model_id in model_ids:
        frames = check_model_frames(cards[model_id], frames, source, temporal)
    regions = [as_spatial(s) for s in spatials]
    if not regions:
        raise SpecError("regions", [], allowed="at least one region")
    for scale_sensor in {s.scale_m: s for s in chosen.values()}.values():
        check_grids(regions, scale_sensor)  # before anything is written (pixel budget)
    check_models({m: model_args.get(m, {}) for m in model_ids}, device)
    out = check_output_dir(out, "export folder")
    job = _read_job(out)
    if overwrite:
        _clear(out, job)
        job = None
    elif job is not None and not resume:
        raise ExportConflictError(
            f"{out} already holds an export; pass resume=True to finish it or "
            "overwrite=True to replace it"
        )
    if job is not None and job.get("format") != format:
        raise ExportConflictError(
            f"{out} holds a {job.get('format')!r} export, not {format!r}; write to a new out= "
            "or pass overwrite=True"
        )
    out.mkdir(parents=True, exist_ok=True)

    plans = []
    for model_id in model_ids:
        embedder = cached_embedder(model_id, device, batch_size, dict(model_args.get(model_id, {})))
        request = model_request(
            embedder, chosen[model_id], temporal, output, source.name, quantize, __version__,
            frames,
        )
        plans.append(
            ModelPlan(model_id, cards[model_id], chosen[model_id], embedder, request,
                      warnings[model_id])
        )
    manifest = Manifest(out)
    done = {
        e.id: e.fingerprint for e in manifest.entries.values() if e.status in ("ok", "skipped")
    }
    plan = plan_fetches(regions, plans, temporal, source.name, done=done, frames=frames)
    if plan.stale:
        raise _conflict(plan.stale, job, plans, out)

    job = job or {"format": format, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    job.update(output=output.to_dict(), quantize=quantize, frames=frames,
               eoembed_version=__version__)
    job.setdefault("models", {})
    for p in plans:
        job["models"][p.model] = {"dir": model_dir(p.model), "request": p.request}
    _write_json_atomic(out / JOB_FILE, job)

    writers = _open_writers(writer_cls, out, plans, output, quantize, manifest)
    settings = EngineSettings(
        batch_size=batch_size,
        fetch_workers=fetch_workers,
        prefetch=prefetch or max(8, 2 * batch_size),
        rows_per_part=rows_per_part,
        on_error=on_error,
        retry=RetryPolicy(max_retries, retry_backoff_s),
        quantize=quantize,
    )
    counts = RunCounts()
    try:
        with export_progress(plan.todo, counts, enabled=progress) as advance:
            run_plan(
                plan.tasks, plans, provider=source, temporal=temporal, output=output,
                writers=writers, manifest=manifest, settings=settings, counts=counts,
                on_done=advance, frames=frames,
            )
    finally:
        for writer in writers.values():
            writer.close()
    return ExportResult(
        out=out, format=format, total=plan.total, ok=counts.ok, failed=counts.failed,
        skipped=counts.skipped, reused=len(plan.reused), fetches=counts.fetches,
        unique_requests=len(plan.tasks), seconds=time.perf_counter() - t0,
        warnings=[w for p in plans for w in p.warnings], failures=counts.failures,
    )


def _open_writers(
    writer_cls: type[Writer], out: Path, plans: list[ModelPlan], output: OutputSpec,
    quantize: str | None, manifest: Manifest,
) -> dict[str, Writer]:
    """One writer per model, after removing what a crash left half-written or unrecorded."""
    from eoembed.writers.base import EmbeddingSchema

    writers = {}
    for p in plans:
        directory = out / model_dir(p.model)
        if directory.exists():
            writer_cls.remove_partial(directory)
            orphans = set(writer_cls.list_files(directory)) - manifest.files_in_use(p.model)
            writer_cls.remove(directory, sorted(orphans))
        schema = EmbeddingSchema(
            model=p.model, mode=output.mode, dim=p.embedder.embedding_dim,
            dtype="int8" if quantize else "float32",
            quantization="int8-symmetric" if quantize else None, pooling=output.pooling,
            model_meta=p.embedder.metadata(), request=p.request,
        )
        writers[p.model] = writer_cls(directory, schema)
    return writers


def load_export(out: str | Path, model: str | None = None) -> Any:
    """Read an export back: a GeoDataFrame (pooled) or an ``xarray.DataTree`` (grid).

    Only results the manifest records as written are returned, each once. With several models and no
    ``model``, pooled rows of every model come in one GeoDataFrame (column ``model``), and
    grids in one DataTree with a child per model.
    """
    from eoembed.writers import get_writer

    out = Path(out)
    job = _read_job(out)
    if job is None:
        raise FileNotFoundError(f"{out} holds no eoembed export ({JOB_FILE} is missing)")
    models = job.get("models", {})
    if model is not None and model not in models:
        raise SpecError("model", model, allowed=sorted(models))
    writer_cls = get_writer(job["format"])
    ok = {e.id for e in read_manifest(out) if e.status == "ok"}
    names = [model] if model is not None else list(models)
    loaded = {m: _only(writer_cls.load(out / models[m]["dir"]), ok) for m in names}
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    first = next(iter(loaded.values()))
    if hasattr(first, "geometry"):
        import geopandas as gpd
        import pandas as pd

        return gpd.GeoDataFrame(pd.concat(list(loaded.values()), ignore_index=True))
    import xarray as xr

    return xr.DataTree(children=dict(loaded))


def _only(data: Any, ids: set[str]) -> Any:
    """Keep only the records whose ids are in ``ids`` (drops unrecorded leftovers)."""
    if hasattr(data, "geometry"):
        # A part file can outlive a torn manifest append; its rows are then written again,
        # identical, in a later part: keep one.
        kept = data[data["id"].isin(ids)].drop_duplicates("id", keep="last")
        return kept.reset_index(drop=True)
    keep = {name: child for name, child in data.children.items() if name in ids}
    import xarray as xr

    return xr.DataTree(dataset=data.dataset, children=keep)
