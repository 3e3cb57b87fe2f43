"""The export engine on a Dask cluster: partitions of the plan as tasks, one manifest.

The client plans as the local engine does (the same fingerprints, the same ``done`` set),
cuts the fetch tasks into partitions and submits one Dask task per partition. A task runs
the local engine (:func:`eoembed.pipeline.engine.run_plan`) inside its worker: embedders are
built once per worker process (the one-call API's embedder cache lives there), pixels are
fetched, embedded and written straight into the shared output folder through the same
atomic writers, and the task returns the manifest entries it would have appended. The
client appends them as tasks finish, so the manifest stays the single source of truth:

- a worker lost mid-task recorded nothing; Dask runs its task again elsewhere, the new
  attempt replaces per-record files the lost one left (never recorded), and part files of a
  lost attempt are removed at the end of the run as orphans, as a local resume does;
- a scheduler that goes away leaves every finished partition recorded: the same call, on
  either engine, resumes with what is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eoembed.errors import (
    ClusterUnavailableError,
    DependencyNotFoundError,
    RemoteTaskError,
    SpecError,
)

if TYPE_CHECKING:
    from eoembed.bands import BandInfo
    from eoembed.embedders.card import ModelCard
    from eoembed.pipeline.engine import EngineSettings, RunCounts
    from eoembed.pipeline.manifest import Manifest, ManifestEntry
    from eoembed.pipeline.plan import FetchTask, ModelPlan
    from eoembed.providers.base import Provider
    from eoembed.specs import OutputSpec, SensorSpec, TemporalSpec
    from eoembed.writers.base import EmbeddingSchema

__all__ = ["DEFAULT_PARTITION", "WorkerPlan", "check_shippable", "run_plan_dask"]

DEFAULT_PARTITION = 64
"""Fetch tasks per Dask task: enough to fill a model batch several times, few enough that a
lost worker costs little and every worker's memory stays that of a small local export."""


@dataclass(frozen=True)
class WorkerPlan:
    """A :class:`~eoembed.pipeline.plan.ModelPlan` without its built model: what is shipped."""

    model: str
    card: ModelCard
    sensor: SensorSpec
    request: dict[str, Any]
    model_args: dict[str, Any]
    device: str
    batch_size: int
    bands: tuple[str, ...] = ()
    input_bands: tuple[BandInfo, ...] | None = None

    @classmethod
    def of(cls, plan: ModelPlan, model_args: Mapping[str, Any], device: str,
           batch_size: int) -> WorkerPlan:
        """What a worker needs to rebuild ``plan``."""
        return cls(plan.model, plan.card, plan.sensor, plan.request, dict(model_args), device,
                   batch_size, tuple(plan.bands), plan.input_bands)

    def build(self) -> ModelPlan:
        """The plan with its embedder, built once per worker process and reused."""
        from eoembed.api import cached_embedder
        from eoembed.pipeline.plan import ModelPlan

        embedder = cached_embedder(self.model, self.device, self.batch_size, self.model_args)
        return ModelPlan(self.model, self.card, self.sensor, embedder, self.request, [],
                         self.bands, self.input_bands)


@dataclass
class _Job:
    """What every partition of one export shares.

    Sent with each task, never scattered: a copy lost with a worker is never the last one.
    """

    folders: dict[str, str]
    format: str
    schemas: dict[str, EmbeddingSchema]
    plans: list[WorkerPlan]
    provider: Any
    temporal: TemporalSpec
    output: OutputSpec
    settings: EngineSettings
    frames: int | None
    seq_base: int
    """Part numbers of partition ``i`` start at ``seq_base + i * SEQ_STRIDE``: no listing of
    the folder per task, no two partitions on one number."""


SEQ_STRIDE = 1000
"""Part-number slots per partition (a partition writes a part per ``rows_per_part`` rows)."""

_PARTITION_LOCK = threading.Lock()
"""One partition at a time per worker process: a worker with several threads would run two
forward passes on one cached model, and precision scopes change process-wide settings."""


@dataclass
class _Result:
    """A partition's outcomes, returned to the client."""

    index: int
    jobs: int
    entries: list[ManifestEntry]
    fetches: int
    worker: str
    error: str | None = None
    """``Type: message`` of the error that stopped the partition: a region's under
    ``on_error="raise"``, or the worker's setup (a model or provider it cannot build)."""
    version: str = ""


def _run_partition(job: _Job, index: int, tasks: list[FetchTask]) -> _Result:
    """Run one partition in a worker with the local engine; return what it recorded."""
    from eoembed._version import __version__
    from eoembed.pipeline.engine import RunCounts, run_plan
    from eoembed.pipeline.manifest import MemoryManifest
    from eoembed.providers.registry import get_provider
    from eoembed.redact import redact
    from eoembed.writers import get_writer

    sink = MemoryManifest()
    counts = RunCounts()
    error = None
    with _PARTITION_LOCK:
        try:  # writers are not closed here: the client finishes stores (Zarr) once, at the end
            provider = get_provider(job.provider)
            plans = [p.build() for p in job.plans]
            writer_cls = get_writer(job.format)
            writers = {}
            for plan in plans:
                writer = writer_cls(Path(job.folders[plan.model]), job.schemas[plan.model])
                writer.replace_unrecorded = True
                writer._next_seq = job.seq_base + index * SEQ_STRIDE
                writers[plan.model] = writer
            run_plan(tasks, plans, provider=provider, temporal=job.temporal,
                     output=job.output, writers=writers, manifest=sink,
                     settings=job.settings, counts=counts, frames=job.frames)
        except Exception as exc:  # noqa: BLE001 (reported to the client with what was recorded)
            error = redact(f"{type(exc).__name__}: {exc}")
    return _Result(index, sum(len(t.jobs) for t in tasks), sink.collected, counts.fetches,
                   socket.gethostname(), error, __version__)


def check_shippable(provider: object) -> None:
    """Refuse, before anything is written, a provider that cannot travel to the workers.

    Raises:
        SpecError: an instance that does not pickle (open handles, locks, a session).
    """
    if isinstance(provider, str):
        return
    _distributed()  # brings cloudpickle, which Dask ships tasks with
    try:
        importlib.import_module("cloudpickle").dumps(provider)
    except Exception as exc:  # noqa: BLE001 (whatever pickling raises, the answer is no)
        raise SpecError(
            "provider", type(provider).__name__,
            allowed="a provider name ('earth-search', 'local:/path', ...) or a picklable "
            "provider instance",
            reason=f"engine='dask' rebuilds the provider on every worker; this one does not "
            f"pickle ({type(exc).__name__}: {exc})",
        ) from None


def _distributed() -> Any:
    """The ``distributed`` package (untyped here: its annotations are partial)."""
    try:
        return importlib.import_module("distributed")
    except ImportError:
        raise DependencyNotFoundError("distributed", "dask") from None


@contextlib.contextmanager
def _client(client: Any) -> Iterator[Any]:
    """A ``distributed.Client``: the one given, one to the address given, or a local cluster.

    Only connecting is translated to :class:`ClusterUnavailableError` here; errors of the
    run itself pass through as they are.
    """
    distributed = _distributed()
    if isinstance(client, distributed.Client):
        yield client
        return
    with contextlib.ExitStack() as stack:
        try:
            if client is None:
                cluster = stack.enter_context(distributed.LocalCluster(
                    processes=True, threads_per_worker=1, dashboard_address=":0"))
                owned = stack.enter_context(distributed.Client(cluster))
            else:
                timeout = importlib.import_module("dask").config.get(
                    "distributed.comm.timeouts.connect")
                address = getattr(client, "scheduler_address", None) or str(client)
                owned = stack.enter_context(distributed.Client(address, timeout=timeout))
        except (OSError, TimeoutError) as exc:
            raise ClusterUnavailableError(
                f"no Dask scheduler at {client!r}: {type(exc).__name__}: {exc}"
            ) from None
        yield owned


def _check_versions(dask: Any) -> None:
    """Refuse workers running another eoembed: their results would carry our fingerprints."""
    from eoembed._version import __version__

    versions = dask.run(lambda: importlib.import_module("eoembed").__version__)
    other = {w: v for w, v in versions.items() if v != __version__}
    if other:
        raise SpecError(
            "client", min(other), allowed=f"workers with eoembed {__version__}",
            reason=f"worker(s) run eoembed {', '.join(sorted(set(other.values())))}",
        )


def run_plan_dask(
    tasks: Sequence[FetchTask],
    plans: Sequence[WorkerPlan],
    *,
    client: Any,
    provider: str | Provider,
    temporal: TemporalSpec,
    output: OutputSpec,
    folders: Mapping[str, Path],
    writer_format: str,
    schemas: Mapping[str, EmbeddingSchema],
    manifest: Manifest,
    settings: EngineSettings,
    counts: RunCounts,
    on_done: Callable[[int], None] = lambda n: None,
    frames: int | None = None,
    partition_size: int = DEFAULT_PARTITION,
    resources: Mapping[str, float] | None = None,
) -> dict[str, set[str]]:
    """Run ``tasks`` on a Dask cluster; append each partition's entries to ``manifest``.

    At most twice as many partitions as the cluster has threads are submitted at a time, and
    each result is released once recorded: the scheduler never recomputes a finished
    partition because a worker died, and memory on both sides stays that of a window. On an
    error, the partitions already running are waited for and recorded before it is raised.
    Returns, per model, the files the recorded ``ok`` entries of this run name.
    ``resources`` (e.g. ``{"GPU": 1}``) route tasks to the workers that declare them.

    Raises:
        ClusterUnavailableError: the scheduler cannot be reached or went away (what finished
            is recorded: the same call resumes).
        RemoteTaskError: a partition stopped on a worker: a region failed under
            ``on_error="raise"``, a worker could not build its model or provider, or a task
            killed every worker it ran on.
        SpecError: workers run another eoembed version.
    """
    from eoembed.writers.base import next_part_seq

    distributed = _distributed()
    # every part file whatever its suffix (.parquet, .npz, .fgb, .gpkg...): a resumed run
    # numbers its parts after the last, as the local engine does
    seq_base = max(next_part_seq(Path(f), "") for f in folders.values()) + SEQ_STRIDE
    job = _Job({m: str(p) for m, p in folders.items()}, writer_format, dict(schemas),
               list(plans), provider, temporal, output, settings, frames, seq_base)
    parts = iter(enumerate(tasks[i : i + partition_size]
                           for i in range(0, len(tasks), partition_size)))
    recorded: dict[str, set[str]] = {m: set() for m in folders}
    done = 0
    with _client(client) as dask:
        comm_errors = (OSError, TimeoutError, CancelledError, distributed.comm.CommClosedError)
        try:
            _check_versions(dask)
            window = max(2, 2 * sum(dask.nthreads().values()))
        except comm_errors as exc:
            raise ClusterUnavailableError(
                f"the Dask cluster cannot be used ({type(exc).__name__}: {exc})") from None

        def submit() -> Any:
            nxt = next(parts, None)
            if nxt is None:
                return None
            return dask.submit(_run_partition, job, nxt[0], list(nxt[1]), pure=False,
                               resources=dict(resources) if resources else None)

        inflight = [f for f in (submit() for _ in range(window)) if f is not None]
        pending = distributed.as_completed(inflight)
        failure: BaseException | None = None
        for future in pending:
            try:
                result: _Result = future.result()
            except comm_errors as exc:
                raise ClusterUnavailableError(
                    f"the Dask cluster went away mid-export ({type(exc).__name__}: {exc}); "
                    f"{done} result(s) are recorded: run the same export again (on either "
                    "engine) to finish it"
                ) from None
            except distributed.KilledWorker as exc:
                failure = failure or RemoteTaskError(
                    f"a partition's task killed the workers that ran it ({exc}): too little "
                    "worker memory for the model and batch size? What finished is recorded")
                continue
            except Exception as exc:  # noqa: BLE001 (what a worker raised outside the engine)
                failure = failure or RemoteTaskError(
                    f"a partition failed on its worker: {type(exc).__name__}: {exc} (is the "
                    "same eoembed, with the models' extras, installed on every worker?)")
                continue
            finally:
                future.release()
            manifest.append(result.entries)
            done += len(result.entries)
            with counts.lock:
                counts.fetches += result.fetches
            for entry in result.entries:
                counts.add(entry.status, entry)
                if entry.status == "ok":
                    recorded[entry.model].update(entry.files)
            on_done(len(result.entries))
            # Regions that fail under on_error="continue" are entries, not errors: an error
            # here stopped the partition (on_error="raise", or the worker's setup).
            if result.error is not None and failure is None:
                failure = RemoteTaskError(
                    f"partition {result.index} on {result.worker} stopped: {result.error} "
                    "(what finished is recorded; fix the cause and run again to resume)"
                )
            if failure is None:  # after a failure, only the running partitions finish
                nxt = submit()
                if nxt is not None:
                    pending.add(nxt)
        if failure is not None:
            raise failure
    return recorded
