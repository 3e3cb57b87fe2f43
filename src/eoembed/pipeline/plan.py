"""Plan an export before any pixel moves: who needs which fetch, and what is already done.

Every region x model becomes a :class:`Job` with a deterministic id (geometry, time window,
model, source) and a request fingerprint (everything that changes the numbers: specs, model
options, weights, preprocessing, frames, quantisation, package version). Jobs that read the same
pixels (same grid, window, sensor and provider) share one :class:`FetchTask`, so duplicate
regions and models with the same input contract cost one fetch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eoembed.providers.radiometry import RADIOMETRY_CONVENTION
from eoembed.specs._base import sha256_hex

if TYPE_CHECKING:
    from eoembed.bands import BandInfo
    from eoembed.embedders.base import Embedder
    from eoembed.embedders.card import ModelCard
    from eoembed.grid import Grid
    from eoembed.specs import OutputSpec, SensorSpec, SpatialSpec, TemporalSpec

__all__ = ["FetchTask", "Job", "ModelPlan", "Plan", "job_id", "model_request", "plan_fetches"]


@dataclass
class ModelPlan:
    """One model of an export: its embedder (built once), sensor and request description."""

    model: str
    card: ModelCard
    sensor: SensorSpec
    embedder: Embedder
    request: dict[str, Any]
    """What goes into every fingerprint besides the region (see :func:`model_request`)."""
    warnings: list[str] = field(default_factory=list)
    bands: tuple[str, ...] = ()
    """The sensor band serving each band of the card, in the card's order (empty: the card's
    own names); an ``"any"`` model: the bands it reads."""
    input_bands: tuple[BandInfo, ...] | None = None
    """The bands an ``"any"`` model embeds when not its card's (passed to ``embed``)."""

    @property
    def request_hash(self) -> str:
        """sha256 of :attr:`request`."""
        return sha256_hex(self.request)


def model_request(
    embedder: Embedder,
    sensor: SensorSpec,
    temporal: TemporalSpec,
    output: OutputSpec,
    provider: str,
    quantize: str | None,
    version: str,
    frames: int | None = None,
    band_match: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Everything besides the region that decides a model's numbers, as plain JSON.

    The device and load time are left out: they change how fast, not what. ``frames`` (a time
    series of that many bins instead of one composite) is added only when set, so requests
    without it keep the fingerprints they always had.
    """
    card = embedder.card
    request: dict[str, Any] = {
        "model": card.id,
        "options": embedder.options.request_dict(),
        "weights": dict(embedder.weights_meta),
        "preprocessing": card.input.request_dict(),
        "sensor": sensor.to_dict(),
        "temporal": temporal.to_dict(),
        "output": output.to_dict(),
        "provider": provider,
        "quantize": quantize,
        # Pixels in the providers' unit (S2 harmonised DN since convention 1): results from
        # pixels read under another convention must not be reused.
        "radiometry": RADIOMETRY_CONVENTION,
        "eoembed_version": version,
    }
    if frames is not None:
        request["frames"] = frames
    if band_match and any(m != s for m, s in band_match.items()):
        request["band_match"] = dict(band_match)  # bands read by wavelength, not name
    if output.mode == "pooled" and embedder.native_pooling and output.pooling != "native":
        # These models once answered every pooling with their own embedding; a reduction
        # of their grid is other numbers, so it must not match those results.
        request["pooled_from"] = "grid"
    return request


def job_id(spatial: SpatialSpec, temporal: TemporalSpec, model: str, source: Mapping[str, str]) -> str:
    """The deterministic id of one region x model: 32 hex digits of a sha256."""
    return sha256_hex(
        {"spatial": spatial.canonical_dict(), "temporal": temporal.to_dict(), "model": model,
         "source": dict(source)}
    )[:32]


@dataclass(frozen=True)
class Job:
    """One region x model to embed."""

    id: str
    model: str
    region: int
    """Index of the region's first occurrence in the input."""
    spatial: SpatialSpec
    fingerprint: str


@dataclass
class FetchTask:
    """One provider read, and the jobs that embed its pixels."""

    key: str
    spatial: SpatialSpec
    sensor: SensorSpec
    grid: Grid
    jobs: list[Job] = field(default_factory=list)


@dataclass
class Plan:
    """What an export run has to do."""

    tasks: list[FetchTask]
    """Fetches to make, in first-use order, each with the jobs it feeds."""
    reused: list[Job]
    """Jobs already finished for this exact request."""
    stale: list[Job]
    """Jobs finished earlier for a different request (changed specs, weights, version...)."""
    total: int
    """Region x model pairs covered (duplicates once)."""

    @property
    def todo(self) -> int:
        """Jobs to run."""
        return sum(len(t.jobs) for t in self.tasks)


def plan_fetches(
    regions: Iterable[SpatialSpec],
    models: list[ModelPlan],
    temporal: TemporalSpec,
    provider: str,
    *,
    done: Mapping[str, str],
    frames: int | None = None,
) -> Plan:
    """Group the jobs still to do by the fetch they need.

    Args:
        regions: regions in input order (duplicates allowed).
        models: the models to run.
        temporal: the time window.
        provider: the provider's name (part of job ids).
        done: id -> fingerprint of jobs already finished (``ok`` or ``skipped``).
        frames: read a time series of this many frames instead of one composite (part of
            the fetch key; the models' requests carry it into the fingerprints).

    Returns:
        The fetch tasks in first-use order, with the jobs already done and those done for a
        different request set apart.
    """
    tasks: dict[str, FetchTask] = {}
    seen: set[str] = set()
    reused: list[Job] = []
    stale: list[Job] = []
    by_sensor: dict[SensorSpec, list[ModelPlan]] = {}
    for plan in models:
        by_sensor.setdefault(plan.sensor, []).append(plan)
    grids: dict[tuple[str, float, str], Grid] = {}
    for index, spatial in enumerate(regions):
        grids.clear()
        for sensor, plans in by_sensor.items():
            for plan in plans:
                jid = job_id(
                    spatial, temporal, plan.model,
                    {"provider": provider, "collection": sensor.collection},
                )
                if jid in seen:
                    continue
                seen.add(jid)
                job = Job(jid, plan.model, index, spatial, sha256_hex([jid, plan.request_hash]))
                if jid in done:
                    (reused if done[jid] == job.fingerprint else stale).append(job)
                    continue
                grid_key = (spatial.fingerprint, sensor.scale_m, sensor.collection)
                grid = grids.get(grid_key)
                if grid is None:
                    grid = grids[grid_key] = _grid(index, spatial, sensor)
                read = [grid.to_dict(), temporal.to_dict(), sensor.to_dict(), provider]
                identity = getattr(spatial, "source_identity", None)
                if identity:  # a chip: its own file, not any pixels on its grid
                    read.append(identity)
                key = sha256_hex(read if frames is None else [*read, {"frames": frames}])
                task = tasks.get(key)
                if task is None:
                    task = tasks[key] = FetchTask(key, spatial, sensor, grid)
                task.jobs.append(job)
    return Plan(list(tasks.values()), reused, stale, len(seen))


def _grid(index: int, spatial: SpatialSpec, sensor: SensorSpec) -> Grid:
    """``spatial``'s grid, snapped to ``sensor``'s native grid; fails naming the region.

    A region past the pixel budget fails the plan with its index in the message.
    """
    from eoembed.errors import SpecError
    from eoembed.providers.base import request_grid
    from eoembed.regions import located_error

    try:
        return request_grid(spatial, sensor)
    except SpecError as exc:
        raise located_error(f"regions[{index}]", exc) from None
