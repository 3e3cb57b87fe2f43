"""``export_batch``: many regions x many models to files, overlapped, resumable, never rewritten.

The shape follows ``odc.stac.load``: one entry function, keyword-only options grouped by
purpose, helpers (provider, progress) injectable. Everything that can be checked is checked
before any pixel is read: specs, models and their arguments, the provider's bands, the
format, and whether the output folder holds results of a different request. The folder's
identity, lock and path checks live in :mod:`eoembed.pipeline.folder`, file checksums in
:mod:`eoembed.pipeline.integrity`.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eoembed._version import __version__
from eoembed.errors import (
    CapabilityError,
    CorruptExportError,
    EoembedError,
    ExportConflictError,
    ExportNotFoundError,
    IncompleteExportWarning,
    ProviderError,
    SpecError,
    UnsafeExportPathError,
)
from eoembed.paths import check_output_dir
from eoembed.pipeline.engine import EngineSettings, RunCounts, run_plan
from eoembed.pipeline.folder import (
    JOB_FILE,
    export_lock,
    identity_diff,
    job_identity,
    model_dir,
    model_folder,
    read_job,
    write_job,
)
from eoembed.pipeline.integrity import verify
from eoembed.pipeline.manifest import MANIFEST_NAME, Manifest, read_manifest
from eoembed.pipeline.plan import Job, ModelPlan, model_request, plan_fetches
from eoembed.pipeline.progress import export_progress
from eoembed.pipeline.retry import RetryPolicy
from eoembed.redact import redact
from eoembed.specs import OutputSpec, SensorSpec, TemporalSpec, as_spatial
from eoembed.specs.spatial import SpatialLike, SpatialSpec

if TYPE_CHECKING:
    from eoembed.providers.base import Provider
    from eoembed.providers.chips import ChipsProvider
    from eoembed.writers.base import Writer

__all__ = ["JOB_FILE", "ExportResult", "export_batch", "load_export", "model_dir"]

ON_ERROR = ("raise", "continue")
ENGINES = ("local", "dask")
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
        """JSON-able summary (signatures and tokens in any text masked)."""
        return {
            "out": str(self.out), "format": self.format, "total": self.total, "ok": self.ok,
            "failed": self.failed, "skipped": self.skipped, "reused": self.reused,
            "fetches": self.fetches, "unique_requests": self.unique_requests,
            "seconds": round(self.seconds, 3), "warnings": [redact(w) for w in self.warnings],
            "failures": [
                {k: redact(v) if isinstance(v, str) else v for k, v in failure.items()}
                for failure in self.failures
            ],
        }


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


def export_batch(
    spatials: Iterable[SpatialLike] | ChipsProvider,
    models: str | Sequence[str],
    *,
    temporal: TemporalSpec,
    out: str | Path,
    # What to read
    sensor: SensorSpec | None = None,
    sensors: Mapping[str, SensorSpec] | None = None,
    model_args: Mapping[str, Mapping[str, Any]] | None = None,
    provider: str | Provider | None = None,
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
    # Where it runs
    engine: str = "local",
    client: Any = None,
    partition_size: int | None = None,
    resources: Mapping[str, float] | None = None,
    # UI
    progress: bool = True,
) -> ExportResult:
    """Embed every region with every model and write the results to ``out``.

    ``spatials`` may also be a chip folder (:func:`eoembed.providers.chips.open_chips`):
    each chip is then one region, read from its own file on its own grid (``provider`` is
    unused), identified by its file name and content hash.

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
        provider: a provider name, ``"name:argument"`` or instance; default: the models'
            product provider when all are the same published product, else ``"sample"``.
        frames: for temporal models, a time series of this many frames (equal whole-day bins
            of the window, see ``fetch_series``) instead of one composite, each frame's date
            given to the model, as ``get_embedding(..., frames=N)``. Every model of the export
            must be temporal. Part of each request: an export made with another ``frames``
            is never reused.
        output: ``OutputSpec.pooled()`` (default) or ``OutputSpec.grid()``.
        format: ``geoparquet``, ``flatgeobuf``, ``gpkg`` (GDAL/QGIS without Arrow), ``npz``
            (pooled); ``zarr``, ``netcdf``, ``cog`` (plus a ``mosaic.vrt``), ``npz`` (grid).
        quantize: ``"int8"`` stores int8 with a scale (see ``eoembed.writers.quantize``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        batch_size: regions per forward pass.
        fetch_workers: regions read concurrently.
        prefetch: regions read ahead of the model (default ``2 * batch_size``, at least 8).
        rows_per_part: pooled rows per part file.
        on_error: ``"raise"`` stops at the first failure (after writing what is done);
            ``"continue"`` records failures in the manifest and goes on.
        max_retries: extra tries of a failing fetch, forward pass or write.
        retry_backoff_s: scale of the waits between tries (jittered, doubling, each at most
            30 s; see :class:`eoembed.retrying.RetryPolicy`).
        resume: reuse results an earlier run of the same request wrote to ``out``, after
            checking their files (size, sha256): missing, truncated or changed ones are redone.
        overwrite: delete an earlier export in ``out`` first (only the folders its
            ``export.json`` names inside ``out``).
        engine: ``"local"`` (threads in this process) or ``"dask"``: partitions of the plan
            run as tasks on a Dask cluster, each worker writing into ``out`` and the client
            appending their manifest entries; the same files and numbers as ``"local"``, and
            either engine resumes the other's export.
        client: for ``engine="dask"``: a ``distributed.Client``, a scheduler address
            (``"tcp://host:8786"``), or None for a ``LocalCluster`` of this machine's cores.
        partition_size: fetch tasks per Dask task (default
            :data:`~eoembed.pipeline.dask_engine.DEFAULT_PARTITION`).
        resources: Dask resources each task needs (``{"GPU": 1}``: only workers started with
            ``--resources GPU=1`` run the models).
        progress: show a progress bar on stderr.

    ``out`` holds one request, fixed when it is created: every argument that decides the
    numbers or the files (models, options, weights, sensor, window, output, provider, format,
    quantisation, frames, version); only the regions may change between runs. Points already
    exported there with another ``buffer_m`` count as a changed request too.

    Raises:
        SpecError: a bad spec or option, before any I/O.
        CapabilityError: a model the provider or format cannot serve, or ``frames`` for a
            single-image model or a provider without time series, before any I/O.
        ExportConflictError: ``out`` holds results of a different request; ``fields`` names
            what differs.
        ExportLockedError: another export is writing ``out``.
        CorruptExportError: ``out``'s ``export.json`` is unreadable and not resuming.
        UnsafeExportPathError: a file in ``out`` names a path outside it.
    """
    from eoembed.api import (
        cached_embedder,
        check_contract,
        check_grids,
        check_model_frames,
        check_models,
        check_product_window,
        check_types,
        contract_bands,
        default_provider,
        default_sensor,
        input_bands,
        option_bands,
    )
    from eoembed.embedders.registry import describe_model
    from eoembed.providers.chips import ChipsProvider
    from eoembed.providers.registry import get_provider
    from eoembed.writers import get_writer, mode_mismatch

    t0 = time.perf_counter()
    output = output or OutputSpec.pooled()
    check_types(temporal, output, sensor)
    _check_options(on_error, quantize, batch_size, fetch_workers, max_retries, retry_backoff_s)
    if engine not in ENGINES:
        raise SpecError("engine", engine, allowed=ENGINES)
    if engine == "local" and (client is not None or resources):
        raise SpecError("client", client if client is not None else resources,
                        allowed="client= and resources= with engine='dask' only")
    if partition_size is not None and (isinstance(partition_size, bool) or
                                       not isinstance(partition_size, int) or partition_size < 1):
        raise SpecError("partition_size", partition_size, allowed="a whole number >= 1")
    writer_cls = get_writer(format)
    if output.mode not in writer_cls.modes:
        raise CapabilityError(mode_mismatch(format, writer_cls.modes, output.mode))
    model_ids = list(dict.fromkeys([models] if isinstance(models, str) else models))
    if not model_ids:
        raise SpecError("models", [], allowed="at least one model id")
    sensors = dict(sensors or {})
    model_args = dict(model_args or {})
    for name, mapping in (("sensors", sensors), ("model_args", model_args)):
        unknown = sorted(set(mapping) - set(model_ids))
        if unknown:
            raise SpecError(f"{name} key", unknown[0], allowed=model_ids)
    if isinstance(spatials, ChipsProvider):  # a chip folder: the chips are regions and source
        provider, spatials = spatials, list(spatials.specs)
        if on_error == "raise" and provider.unreadable:
            bad = provider.unreadable[0]
            raise ProviderError(f"chip {bad.name!r} cannot be read: {bad.error} (pass "
                                "on_error='continue' to embed the other chips)")
    cards = {m: describe_model(m, **model_args.get(m, {})) for m in model_ids}
    source = get_provider(
        provider if provider is not None else default_provider(list(cards.values()))
    )
    for card in cards.values():
        check_product_window(card, temporal, source)
    for model_id, card in cards.items():
        if output.mode not in card.outputs:
            other = "grid" if output.mode == "pooled" else "pooled"
            raise CapabilityError(
                f"model {model_id!r} gives {', '.join(card.outputs)} output, not "
                f"{output.mode!r}: pass --output {other} (output=OutputSpec.{other}())"
            )
    # Each model's pooling resolved ("default" -> its card's), so fingerprints record it.
    outputs = {m: cards[m].resolve_output(output) for m in model_ids}
    wanted = {m: option_bands(m, model_args.get(m, {})) for m in model_ids}
    chosen = {m: sensors.get(m) or sensor or default_sensor(cards[m], source, bands=wanted[m])
              for m in model_ids}
    for s in chosen.values():
        check_types(temporal, output, s)
    contract_warnings = {m: check_contract(cards[m], chosen[m], source, wanted[m])
                         for m in model_ids}
    for model_id in model_ids:
        frames = check_model_frames(cards[model_id], frames, source, temporal)
    regions = [as_spatial(s) for s in spatials]
    if not regions:
        raise SpecError("regions", [], allowed="at least one region")
    options = check_models({m: model_args.get(m, {}) for m in model_ids}, device)
    for model_id in model_ids:  # before anything is written: pixel budget, input sizes
        # (under on_error="continue" a region a model cannot take is recorded as failed)
        check_grids(regions, chosen[model_id],
                    options[model_id] if on_error == "raise" else None, model_id)

    if engine == "dask":
        from eoembed.pipeline.dask_engine import check_shippable

        check_shippable(provider if provider is not None else source.name)
        auto = [m for m, o in options.items() if getattr(o, "precision", None) == "auto"]
        if auto:
            raise SpecError(
                f"model_args[{auto[0]!r}].precision", "auto",
                allowed=["fp32", "fp32-bf16mm", "bf16"],
                reason="with engine='dask' each worker would choose for itself, and one "
                "export could mix precisions; pin one",
            )
    out = check_output_dir(out, "export folder")
    out.mkdir(parents=True, exist_ok=True)
    with export_lock(out):
        job, notes = _open_job(out, overwrite=overwrite, resume=resume)
        plans = []
        for model_id in model_ids:
            embedder = cached_embedder(
                model_id, device, batch_size, dict(model_args.get(model_id, {}))
            )
            match = contract_bands(cards[model_id], chosen[model_id], source, wanted[model_id])
            request = model_request(
                embedder, chosen[model_id], temporal, outputs[model_id], source.name, quantize,
                __version__, frames, match.to_dict(),
            )
            plans.append(
                ModelPlan(model_id, cards[model_id], chosen[model_id], embedder, request,
                          contract_warnings[model_id], match.source,
                          input_bands(cards[model_id], chosen[model_id], source, match))
            )
        identity = job_identity(format, {p.model: p.request for p in plans})
        if job is not None:
            _check_identity(out, job, identity)
        manifest = Manifest(out)
        _check_recorded(out, manifest, plans, regions, writer_cls, rebuilt=job is None)

        if job is None:
            job = {"format": format,
                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "models": {p.model: {"dir": model_dir(p.model), "request": p.request}
                              for p in plans}}
        folders = {m: model_folder(out, info["dir"], m) for m, info in job["models"].items()}
        done, repairs = _verified(manifest, plans, folders, writer_cls)
        plan = plan_fetches(regions, plans, temporal, source.name, done=done, frames=frames)
        if plan.stale:
            raise _conflict(plan.stale, out)

        job.update(output=output.to_dict(), quantize=quantize, frames=frames,
                   eoembed_version=__version__)
        job["run"] = {"finished": False, "total": plan.total,
                      "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_job(out, job)

        writers = _open_writers(writer_cls, folders, plans, output, quantize, manifest, done)
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
                if engine == "dask":
                    from eoembed.pipeline.dask_engine import (
                        DEFAULT_PARTITION,
                        WorkerPlan,
                        run_plan_dask,
                    )

                    recorded = run_plan_dask(
                        plan.tasks,
                        [WorkerPlan.of(p, model_args.get(p.model, {}), device, batch_size)
                         for p in plans],
                        client=client, provider=provider if provider is not None else
                        source.name, temporal=temporal, output=output, folders=folders,
                        writer_format=format,
                        schemas={m: w.schema for m, w in writers.items()},
                        manifest=manifest, settings=settings, counts=counts,
                        on_done=advance, frames=frames,
                        partition_size=partition_size or DEFAULT_PARTITION,
                        resources=resources,
                    )
                    _remove_unrecorded(writer_cls, folders, manifest, recorded)
                else:
                    run_plan(
                        plan.tasks, plans, provider=source, temporal=temporal, output=output,
                        writers=writers, manifest=manifest, settings=settings, counts=counts,
                        on_done=advance, frames=frames,
                    )
        finally:
            for writer in writers.values():
                writer.close()
            # Derived like the writers' mosaics, so rebuilt however the run ended (a region
            # that raised included): it never lists fewer results than the manifest records,
            # nor files this run removed.
            notes += _catalogue(out)
        job["run"].update(finished=True, ok=counts.ok, failed=counts.failed,
                          skipped=counts.skipped, reused=len(plan.reused))
        write_job(out, job)
    return ExportResult(
        out=out, format=format, total=plan.total, ok=counts.ok, failed=counts.failed,
        skipped=counts.skipped, reused=len(plan.reused), fetches=counts.fetches,
        unique_requests=len(plan.tasks), seconds=time.perf_counter() - t0,
        warnings=[*notes, *repairs, *(w for p in plans for w in p.warnings)],
        failures=counts.failures,
    )


def _catalogue(out: Path) -> list[str]:
    """Rebuild the export's STAC catalogue; a failure is reported, the results stay."""
    from eoembed.pipeline.catalog import build_stac

    try:
        build_stac(out)
    except (OSError, ValueError, EoembedError) as exc:
        return [(f"the STAC catalogue was not rebuilt ({type(exc).__name__}: {exc}); run "
                 f"`eoembed stac {out}` to retry")]
    return []


def _open_job(
    out: Path, *, overwrite: bool, resume: bool
) -> tuple[dict[str, Any] | None, list[str]]:
    """The folder's job description (``None``: a new one) and notes for the user.

    ``overwrite`` clears the folder first (then the job is ``None`` too).
    An unreadable ``export.json`` (truncated, edited) is rebuilt from the live request when
    resuming: :func:`_check_recorded` then checks every manifest line against the request.
    A model folder outside ``out`` is refused before anything is deleted.
    """
    try:
        job = read_job(out)
    except UnsafeExportPathError:
        raise
    except CorruptExportError as exc:
        if not (overwrite or resume):
            raise
        if overwrite:
            _clear(out, None)
            return None, []
        note = (f"{JOB_FILE} was unreadable ({exc}); rebuilt from the live request after "
                "every manifest line was checked against it")
        return None, [note]
    if overwrite:
        _clear(out, job)
        return None, []
    if job is not None and not resume:
        raise ExportConflictError(
            f"{out} already holds an export; pass resume=True to finish it or "
            "overwrite=True to replace it"
        )
    return job, []


def _clear(out: Path, job: dict[str, Any] | None) -> None:
    """Delete an earlier export's files (only those eoembed wrote) for ``overwrite=True``.

    Model folders come from ``export.json`` and are checked to lie inside ``out``
    (:func:`~eoembed.pipeline.folder.model_folder`) before anything is deleted.
    """
    if job is not None:
        folders = [model_folder(out, info["dir"], m) for m, info in job["models"].items()]
        for folder in folders:
            if folder.is_symlink():
                folder.unlink()
            else:
                shutil.rmtree(folder, ignore_errors=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    (out / JOB_FILE).unlink(missing_ok=True)
    from eoembed.pipeline.catalog import remove_stac

    remove_stac(out)


def _check_identity(out: Path, job: dict[str, Any], identity: dict[str, Any]) -> None:
    """Refuse a request that differs from the one the folder was created for."""
    stored = job_identity(job["format"], {m: i["request"] for m, i in job["models"].items()})
    fields = identity_diff(stored, identity)
    if not fields:
        return
    detail = []
    if "format" in fields:
        detail.append(f"format {stored['format']!r} -> {identity['format']!r}")
    if "models" in fields:
        detail.append(f"models {sorted(stored['models'])} -> {sorted(identity['models'])}")
    raise ExportConflictError(
        f"{out} was created for another request; changed: {', '.join(fields)}"
        + (f" ({'; '.join(detail)})" if detail else "")
        + ". An export folder holds one request (regions may be added): write to a new out=,"
        " or pass overwrite=True (--overwrite) to replace the earlier export.",
        fields,
    )


def _check_recorded(
    out: Path, manifest: Manifest, plans: list[ModelPlan], regions: list[SpatialSpec],
    writer_cls: type[Writer], *, rebuilt: bool,
) -> None:
    """Refuse recorded points at another buffer; lacking ``export.json``, foreign results.

    Re-running recorded points with another ``buffer_m`` is refused; without a readable
    ``export.json``, so is any manifest line of another request or format.

    Every manifest line carries its request's fingerprint, ``sha256([id, request hash])``, so
    a lost ``export.json`` is rebuilt only when every recorded result provably belongs to the
    live request.
    """
    from eoembed.specs._base import sha256_hex
    from eoembed.specs.spatial import PointBuffer

    buffers: dict[tuple[Any, ...], set[float]] = {}
    for entry in manifest.entries.values():
        sp = entry.spatial
        if isinstance(sp, dict) and sp.get("type") == "PointBuffer":
            key = (sp.get("lon"), sp.get("lat"), sp.get("crs"))
            buffers.setdefault(key, set()).add(sp.get("buffer_m"))  # type: ignore[arg-type]
    for index, region in enumerate(regions):
        if isinstance(region, PointBuffer):
            seen = buffers.get((region.lon, region.lat, region.crs))
            if seen and region.buffer_m not in seen:
                raise ExportConflictError(
                    f"{out} already holds region {index} (lon {region.lon}, lat {region.lat})"
                    f" with buffer_m {sorted(seen)}, not {region.buffer_m}; changed: buffer_m."
                    " Another buffer of the same points is another export: write to a new "
                    "out=, or pass overwrite=True (--overwrite) to replace the earlier one.",
                    ["buffer_m"],
                )
    if not rebuilt or not manifest.entries:
        return
    hashes = {p.model: p.request_hash for p in plans}
    for entry in manifest.entries.values():
        request_hash = hashes.get(entry.model)
        if request_hash is None or sha256_hex([entry.id, request_hash]) != entry.fingerprint:
            raise ExportConflictError(
                f"{out / JOB_FILE} is unreadable and {out / MANIFEST_NAME} records results "
                f"of another request (model {entry.model!r}); write to a new out=, or pass "
                "overwrite=True (--overwrite) to replace the earlier export.",
                ["models" if request_hash is None else "request"],
            )
        if entry.status == "ok":
            known = set(writer_cls.list_files(out / model_dir(entry.model)))
            if not set(entry.files) <= known:
                raise ExportConflictError(
                    f"{out / JOB_FILE} is unreadable and {out} holds results in another "
                    f"format than {writer_cls.name!r}; write to a new out=, or pass "
                    "overwrite=True (--overwrite).",
                    ["format"],
                )


def _verified(
    manifest: Manifest, plans: list[ModelPlan], folders: dict[str, Path],
    writer_cls: type[Writer],
) -> tuple[dict[str, str], list[str]]:
    """Finished jobs (id -> fingerprint) whose files are intact, and what was found damaged.

    Files missing, truncated, changed or holding records the manifest lost are removed and
    their records redone; skipped jobs (no data) stay done.
    """
    done = {e.id: e.fingerprint for e in manifest.entries.values() if e.status == "skipped"}
    repairs = []
    for p in plans:
        entries = manifest.ok_entries(p.model)
        verdict = verify(folders[p.model], [(e.id, e.files, e.checks) for e in entries])
        writer_cls.remove(folders[p.model], sorted(verdict.bad_files))
        done.update((e.id, e.fingerprint) for e in entries if e.id in verdict.good)
        if verdict.reasons:
            shown = "; ".join(f"{f}: {r}" for f, r in sorted(verdict.reasons.items())[:5])
            repairs.append(
                f"{p.model}: redoing {len(verdict.bad_ids)} result(s) whose files were "
                f"damaged or missing ({len(verdict.reasons)} file(s): {shown})"
            )
    return done, repairs


def _conflict(stale: list[Job], out: Path) -> ExportConflictError:
    models = sorted({j.model for j in stale})
    return ExportConflictError(
        f"{out} already holds {len(stale)} result(s) of a different request for the same "
        f"regions (models {', '.join(models)}); resuming would mix stale and fresh results. "
        "Write to a new out=, or pass overwrite=True (--overwrite) to replace the earlier "
        "export.",
        ["request"],
    )


def _remove_unrecorded(
    writer_cls: type[Writer], folders: Mapping[str, Path], manifest: Manifest,
    recorded: Mapping[str, set[str]],
) -> None:
    """Delete data files no manifest entry names (``recorded``: this run's, per model).

    What cluster tasks lost with their workers wrote before they could report (their reruns
    wrote the recorded copies).
    """
    for model, directory in folders.items():
        if not directory.exists():
            continue
        kept = set(recorded.get(model, ())) | {f for e in manifest.ok_entries(model)
                                               for f in e.files}
        orphans = set(writer_cls.list_files(directory)) - kept
        writer_cls.remove(directory, sorted(orphans))


def _open_writers(
    writer_cls: type[Writer], folders: dict[str, Path], plans: list[ModelPlan],
    output: OutputSpec, quantize: str | None, manifest: Manifest, done: dict[str, str],
) -> dict[str, Writer]:
    """One writer per model, after removing what a crash left half-written or unrecorded."""
    from eoembed.writers.base import EmbeddingSchema

    writers = {}
    for p in plans:
        directory = folders[p.model]
        if directory.exists():
            writer_cls.remove_partial(directory)
            in_use = {f for e in manifest.ok_entries(p.model) if e.id in done for f in e.files}
            orphans = set(writer_cls.list_files(directory)) - in_use
            writer_cls.remove(directory, sorted(orphans))
        schema = EmbeddingSchema(
            model=p.model, mode=output.mode, dim=p.embedder.embedding_dim,
            dtype="int8" if quantize else "float32",
            quantization="int8-symmetric" if quantize else None,
            pooling=p.card.resolve_output(output).pooling,
            model_meta=p.embedder.metadata(), request=p.request,
        )
        writers[p.model] = writer_cls(directory, schema)
    return writers


def load_export(out: str | Path, model: str | None = None) -> Any:
    """Read an export back: a GeoDataFrame (pooled) or an ``xarray.DataTree`` (grid).

    Only results the manifest records as written are returned, each once. With several models
    and no ``model``, pooled rows of every model come in one GeoDataFrame (column ``model``),
    and grids in one DataTree with a child per model.

    Never partial in silence: a recorded file that is missing or has another size than
    recorded raises (running the export again redoes it); results that failed, or a last run
    that did not finish (crashed, stopped, or still running), give an
    :class:`~eoembed.errors.IncompleteExportWarning` with the counts. Sizes are checked here,
    sha256 on resume (reading every byte twice would double the cost of a load).

    Raises:
        FileNotFoundError: ``out`` holds no export.
        CorruptExportError: ``export.json`` is unreadable, or recorded files are missing or
            truncated.
        UnsafeExportPathError: a path in the folder's files leads outside it.
    """
    from eoembed.writers import get_writer

    out = Path(out)
    job = read_job(out)
    if job is None:
        raise ExportNotFoundError(f"{out} holds no eoembed export ({JOB_FILE} is missing)")
    models = job["models"]
    if model is not None and model not in models:
        raise SpecError("model", model, allowed=sorted(models))
    writer_cls = get_writer(job["format"])
    entries = read_manifest(out)
    names = [model] if model is not None else list(models)
    loaded = {}
    for name in names:
        folder = model_folder(out, models[name]["dir"], name)
        ok = [e for e in entries if e.model == name and e.status == "ok"]
        verdict = verify(folder, [(e.id, e.files, e.checks) for e in ok], full=False)
        if verdict.reasons:
            shown = "; ".join(f"{f}: {r}" for f, r in sorted(verdict.reasons.items())[:5])
            raise CorruptExportError(
                f"{out}: {len(verdict.bad_ids)} of {len(ok)} written {name} result(s) are in "
                f"{len(verdict.reasons)} missing or damaged file(s) ({shown}). Run the same "
                "export again: resume checks every file and redoes these."
            )
        try:
            data = _only(writer_cls.load(folder), {e.id for e in ok})
        except EoembedError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:  # a damaged page, header, chunk
            first = (str(exc).splitlines() or [""])[0]
            raise CorruptExportError(
                f"{out}: {name} files cannot be read ({type(exc).__name__}: {first}). Run the "
                "same export again: resume checks every file and redoes damaged ones."
            ) from None
        count = len(data) if hasattr(data, "geometry") else len(data.children)
        if count != len(ok):
            raise CorruptExportError(
                f"{out}: {name} files hold {count} of the {len(ok)} results the manifest "
                "records. Run the same export again: resume checks every file and redoes them."
            )
        loaded[name] = data
    _warn_incomplete(out, job, [e for e in entries if e.model in names])
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    first = next(iter(loaded.values()))
    if hasattr(first, "geometry"):
        import geopandas as gpd
        import pandas as pd

        return gpd.GeoDataFrame(pd.concat(list(loaded.values()), ignore_index=True))
    import xarray as xr

    return xr.DataTree(children=dict(loaded))


def _warn_incomplete(out: Path, job: dict[str, Any], entries: list[Any]) -> None:
    """Warn, with counts, when the export has failed results or its last run did not finish."""
    counts = {s: sum(e.status == s for e in entries) for s in ("ok", "failed", "skipped")}
    run = job.get("run") or {}
    problems = []
    if counts["failed"]:
        problems.append(f"{counts['failed']} result(s) failed (see {MANIFEST_NAME})")
    if run.get("finished") is False:
        problems.append(
            f"the last run (of {run.get('total', '?')} region x model results) did not finish:"
            " it crashed, was stopped, or is still running"
        )
    if problems:
        warnings.warn(
            f"{out} is incomplete: {counts['ok']} result(s) loaded, {counts['skipped']} "
            f"skipped (no data); {'; '.join(problems)}. Run the same export again to finish it.",
            IncompleteExportWarning,
            stacklevel=3,
        )


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
