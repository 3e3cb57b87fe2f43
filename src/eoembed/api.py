"""One call from (place, time, model) to an embedding: ``get_embedding`` and friends.

The steps, in order: validate every spec and check the model's input contract against the
provider (no I/O yet), build the model (weights loaded once and cached), fetch each unique
region once, batch the forward pass across regions, georeference grid outputs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed._version import __version__
from eoembed.embedders.context import SampleContext
from eoembed.embedders.registry import (
    describe_model,
    embedder_class_for,
    list_models,
)
from eoembed.embedding import Embedding
from eoembed.errors import CapabilityError, ModelArgumentError, SpecError
from eoembed.grid import Grid
from eoembed.providers.base import check_served, request_grid
from eoembed.providers.registry import get_provider
from eoembed.specs import OutputSpec, SensorSpec, SpatialSpec, TemporalSpec, as_spatial
from eoembed.specs.spatial import SpatialLike

if TYPE_CHECKING:
    import xarray as xr

    from eoembed.bandmatch import BandMatch
    from eoembed.bands import BandInfo
    from eoembed.embedders.base import Embedder
    from eoembed.embedders.card import ModelCard
    from eoembed.embedders.options import EmbedderOptions
    from eoembed.providers.base import CollectionInfo, Provider

__all__ = [
    "cached_embedder",
    "check_contract",
    "check_model_frames",
    "check_sensor_fields",
    "check_types",
    "contract_bands",
    "default_sensor",
    "georeference",
    "input_bands",
    "option_bands",
    "get_embedding",
    "get_embeddings_batch",
    "inspect_input",
    "patch_frame_dates",
    "patch_grid",
    "sensor_from_fields",
]

_EMBEDDER_CACHE: OrderedDict[tuple[Any, ...], Embedder] = OrderedDict()
_EMBEDDER_CACHE_SIZE = 4


def default_sensor(
    card: ModelCard, provider: Provider | None = None, collection: str | None = None,
    bands: Sequence[str] = (),
) -> SensorSpec:
    """The sensor a model was trained on: its first collection, its bands, its GSD.

    With a ``provider``: the first of the model's collections it serves; failing that, the
    first collection it serves with every band the model needs, by name (e.g. an L2A model
    on the L1C sample; ``check_contract`` then warns about the processing level) or else by
    wavelength (a Sentinel-2 model on Landsat: its bands that serve the model's; an ``"any"``
    model: the collection's bands in the spectral range of its own; models of any input size
    then read them at the collection's native GSD, 30 m for Landsat). With a ``collection``:
    that collection only. ``bands``: names an ``"any"`` model's options ask to read instead
    of its card's.
    """
    from eoembed.bandmatch import BandMatchError, match_bands, overlapping

    wanted = tuple(bands) or card.input.band_names
    fallback = collection or card.input.collections[0]
    if provider is None:
        return SensorSpec(fallback, wanted, card.input.gsd_m)
    # Providers that never resample (chips) read at their own pixel size.
    gsd = getattr(provider, "native_gsd_m", None) or card.input.gsd_m
    served = dict(provider.collections())
    if collection is not None:
        served = {collection: served[collection]} if collection in served else {}
    usable = [c for c in card.input.collections if c in served]
    if usable and not bands:
        return SensorSpec(usable[0], wanted, gsd)
    needed = set(wanted)
    by_name = [c for c in [*usable, *served] if needed <= set(served[c].band_names)]
    if by_name or bands:
        return SensorSpec(by_name[0] if by_name else fallback, wanted, gsd)

    def native(info: CollectionInfo, names: Sequence[str]) -> float:
        """The GSD to read another sensor's bands at.

        Any-size models read them at their own (coarsest) GSD; fixed-size models at the GSD
        they were trained at.
        """
        if card.input.image_size is not None or gsd != card.input.gsd_m:
            return gsd
        sizes = [b.gsd_m for b in info.bands if b.name in names and b.gsd_m > 0]
        return max(sizes) if sizes else gsd

    first_error: BandMatchError | None = None
    for name, info in served.items():
        if card.input.band_rule == "any":
            names = overlapping(card.input.bands, info.bands)
            if names:
                return SensorSpec(name, names, native(info, names))
            continue
        try:
            match = match_bands(card.input.bands, info.bands, rule=card.input.band_rule,
                                model_id=card.id, sensor=name)
        except BandMatchError as exc:
            first_error = first_error or exc
            continue
        return SensorSpec(name, match.unique_source, native(info, match.unique_source))
    if first_error is not None and len(served) == 1:
        raise first_error
    return SensorSpec(fallback, card.input.band_names, card.input.gsd_m)


SENSOR_FIELDS = tuple(f.name for f in dataclasses.fields(SensorSpec))
"""The :class:`SensorSpec` fields a partial sensor (command-line flags, a job's ``sensor:``)
may give."""

_STAND_IN = SensorSpec("stand-in", ("stand-in",))
"""A valid sensor the given fields replace, so they are checked before a provider is asked."""


def check_sensor_fields(fields: Mapping[str, Any]) -> None:
    """Check the fields of a partial sensor as :class:`SensorSpec` does, before any I/O.

    Raises:
        SpecError: an unknown field, or a value SensorSpec refuses (naming the field).
    """
    for name in fields:
        if name not in SENSOR_FIELDS:
            raise SpecError("sensor", name, allowed=SENSOR_FIELDS, reason="not a sensor field")
    dataclasses.replace(_STAND_IN, **fields)


def sensor_from_fields(
    model: str | ModelCard, fields: Mapping[str, Any], provider: str | Provider | None = None,
    model_args: Mapping[str, Any] | None = None,
) -> SensorSpec:
    """The fields given, the rest from the model's :func:`default_sensor` on ``provider``.

    A ``collection`` without ``bands`` reads that collection's bands that serve the model
    (by name, else by wavelength: ``{"collection": "landsat-c2-l2"}`` for a Sentinel-2
    model); with both, the provider is not asked. ``model_args`` shape the contract as in
    :func:`get_embedding` (a ``timm:`` id's ``in_chans``, mosaiks ``bands=``).

    Raises:
        SpecError: as :func:`check_sensor_fields`.
        BandMatchError: the collection has no band serving one the model needs.
    """
    check_sensor_fields(fields)
    if "collection" in fields and "bands" in fields:
        return SensorSpec(**fields)
    args = dict(model_args or {})
    card = describe_model(model, **args) if isinstance(model, str) else model
    wanted = option_bands(model, args) if isinstance(model, str) else ()
    source = get_provider(provider) if provider is not None else None
    sensor = default_sensor(card, source, collection=fields.get("collection"),
                            bands=wanted or tuple(fields.get("bands", ())))
    return dataclasses.replace(sensor, **fields)


def contract_bands(
    card: ModelCard, sensor: SensorSpec, provider: Provider, bands: Sequence[str] = ()
) -> BandMatch:
    """The sensor's band serving each band the model needs, in the model's order.

    An ``"any"`` model takes the sensor spec's optical bands as they are (``bands``, when its
    options name some: those).

    Raises:
        CapabilityError: the collection is not served, or the sensor spec requests no band
            that serves one the model needs (naming each, with its wavelength).
    """
    from eoembed.bandmatch import any_bands, match_bands

    info = check_served(provider.name, provider.collections(), sensor)
    by_name = {b.name: b for b in info.bands}
    requested = [by_name[b] for b in sensor.bands]
    where = f"{sensor.collection} {list(sensor.bands)}"
    if card.input.band_rule == "any":
        absent = [b for b in bands if b not in sensor.bands]
        if absent:
            raise CapabilityError(
                f"model {card.id!r} is asked to read band(s) {', '.join(absent)} which the "
                f"sensor spec does not request; it requests: {', '.join(sensor.bands)}"
            )
        chosen = [by_name[b] for b in bands] if bands else requested
        return any_bands(chosen, model_id=card.id, sensor=where)
    return match_bands(card.input.bands, requested, rule=card.input.band_rule,
                       model_id=card.id, sensor=where)


def input_bands(
    card: ModelCard, sensor: SensorSpec, provider: Provider, match: BandMatch
) -> tuple[BandInfo, ...] | None:
    """The BandInfo an ``"any"`` model embeds when not its card's bands (else ``None``)."""
    if match.model == card.input.band_names:
        return None
    info = check_served(provider.name, provider.collections(), sensor)
    by_name = {b.name: b for b in info.bands}
    return tuple(by_name[b] for b in match.source)


def option_bands(model: str, model_args: Mapping[str, Any]) -> tuple[str, ...]:
    """Bands a model's options ask to read instead of its card's (mosaiks ``bands=``)."""
    cls = embedder_class_for(model, model_args)
    return cls.Options.parse(model, dict(model_args)).read_bands()


def check_types(temporal: Any, output: Any, sensor: Any) -> None:
    """Refuse, with a SpecError naming the argument, values that are not specs."""
    from eoembed.errors import SpecError

    if not isinstance(temporal, TemporalSpec):
        raise SpecError("temporal", temporal, allowed="a TemporalSpec (TemporalSpec.year/range)")
    if not isinstance(output, OutputSpec):
        raise SpecError("output", output, allowed="OutputSpec.pooled() or OutputSpec.grid()")
    if sensor is not None and not isinstance(sensor, SensorSpec):
        raise SpecError("sensor", sensor, allowed="a SensorSpec or None (the model's default)")


def check_grids(
    regions: Sequence[SpatialSpec], sensor: SensorSpec,
    options: EmbedderOptions | None = None, model: str = "",
) -> None:
    """Make each region's grid now, before a model is built or a pixel is read.

    A region past the pixel budget, with no finite extent in its grid CRS, or of a size the
    model's ``options`` cannot embed, fails here; with several regions the message names its
    index.
    """
    from eoembed.regions import located_error

    for index, region in enumerate(regions):
        where = f"regions[{index}]" if len(regions) > 1 else ""
        try:
            grid = request_grid(region, sensor)
            if options is not None:
                options.check_input(model, grid.height, grid.width)
        except SpecError as exc:
            raise (located_error(where, exc) if where else exc) from None
        except ModelArgumentError as exc:
            raise (ModelArgumentError(f"{where}: {exc}") if where else exc) from None


def check_models(
    model_args: Mapping[str, Mapping[str, Any]], device: str
) -> dict[str, EmbedderOptions]:
    """Parse each model's arguments and the device now, before a file is written.

    Building a model comes later (and loads weights); its arguments and the device are known
    up front, so a wrong one (``num_features=10**9``, ``cuda:7``) leaves nothing behind.

    Returns:
        Each model's parsed options (for :func:`check_grids`).
    """
    classes = {m: embedder_class_for(m, args) for m, args in model_args.items()}
    options = {m: classes[m].Options.parse(m, dict(args)) for m, args in model_args.items()}
    for cls in classes.values():
        cls.device_for(device)
    return options


def default_provider(cards: Sequence[ModelCard]) -> str:
    """The provider a request without one uses: the products' own, else ``"sample"``.

    Published products are served by their own providers (their card's first); computed
    models read the bundled sample scene unless told otherwise.
    """
    firsts = {c.product.providers[0] for c in cards if c.product is not None}
    if len(firsts) == 1 and all(c.product is not None for c in cards):
        return firsts.pop()
    return "sample"


def check_product_window(card: ModelCard, temporal: TemporalSpec, provider: Provider) -> None:
    """Refuse, before any I/O, a product its provider lacks, or a window selecting no year of it.

    The provider's own years where it says (a mirror may lack a year the product has).

    Raises:
        CapabilityError: the provider does not serve the product (names those that do).
        SpecError: the window spans several years, or one the product lacks.
    """
    if card.product is None:
        return
    from eoembed.providers.products import product_year

    if card.input.collections[0] not in provider.collections():
        raise CapabilityError(
            f"{card.id!r} is a published product served by "
            f"{', '.join(repr(p) for p in card.product.providers)}, not by provider "
            f"{provider.name!r}; pass provider={card.product.providers[0]!r} (or leave it out)"
        )
    inner = getattr(provider, "inner", provider)
    years = getattr(inner, "years", card.product.years)
    product_year(temporal, card.id, None if years is None else (years[0], years[1]))


def check_contract(
    card: ModelCard, sensor: SensorSpec, provider: Provider, bands: Sequence[str] = ()
) -> list[str]:
    """Refuse before any I/O what cannot work; return warnings for what only degrades.

    ``bands``: names an ``"any"`` model's options ask to read (see :func:`contract_bands`).
    """
    info = check_served(provider.name, provider.collections(), sensor)
    match = contract_bands(card, sensor, provider, bands)
    warnings = [w for w in (match.warning(card.id),) if w]
    other_bands = match.model != card.input.band_names
    if card.input.band_rule == "any" and other_bands and "wavelengths" in card.input.side_inputs:
        warnings.append(
            f"model {card.id!r} embeds {', '.join(match.model)} by their wavelengths, not the "
            f"bands it was trained on ({', '.join(card.input.band_names)})"
        )
    substituted = bool(match.substituted) or (card.input.band_rule == "any" and other_bands)
    if substituted and sensor.collection not in card.input.collections:
        warnings.append(
            f"model {card.id!r} was trained on {', '.join(card.input.collections)}, not "
            f"{sensor.collection!r}: its bands are stood in for by wavelength; embeddings may "
            "be degraded"
        )
    level = card.input.processing_level
    if level != "any" and info.processing_level != level:
        warnings.append(
            f"model {card.id!r} was trained on {level} data; {sensor.collection!r} is "
            f"{info.processing_level}: embeddings may be degraded"
        )
    if not np.isclose(sensor.scale_m, card.input.gsd_m):
        warnings.append(
            f"model {card.id!r} was trained at {card.input.gsd_m:g} m; input is at "
            f"{sensor.scale_m:g} m"
        )
    return warnings


def cached_embedder(
    model: str, device: str, batch_size: int, model_args: dict[str, Any]
) -> Embedder:
    """A built embedder, reused across calls (weights load once; LRU of a few)."""
    key = (model, device, batch_size, tuple(sorted((k, repr(v)) for k, v in model_args.items())))
    if key in _EMBEDDER_CACHE:
        _EMBEDDER_CACHE.move_to_end(key)
        return _EMBEDDER_CACHE[key]
    embedder = embedder_class_for(model, model_args)(
        device=device, batch_size=batch_size, **model_args
    )
    _EMBEDDER_CACHE[key] = embedder
    while len(_EMBEDDER_CACHE) > _EMBEDDER_CACHE_SIZE:
        _EMBEDDER_CACHE.popitem(last=False)
    return embedder


def georeference(values: np.ndarray, grid: Grid) -> xr.DataArray:
    """A ``(dim, y, x)`` DataArray whose cells tile the input grid's footprint."""
    from eoembed.providers.scenes import to_dataarray

    cells = grid.coarsen(values.shape[1], values.shape[2])
    da = to_dataarray(values, [str(i) for i in range(values.shape[0])], cells, {})
    da = da.rename(band="dim").assign_coords(dim=np.arange(values.shape[0]))
    return da


def _fetch_unique(
    provider: Provider,
    spatials: Sequence[SpatialSpec],
    temporal: TemporalSpec,
    sensor: SensorSpec,
    max_workers: int,
    frames: int | None = None,
) -> dict[str, xr.DataArray]:
    unique: dict[str, SpatialSpec] = {}
    for s in spatials:
        unique.setdefault(s.fingerprint, s)

    def fetch(s: SpatialSpec) -> xr.DataArray:
        if frames is None:
            return provider.fetch(s, temporal, sensor)
        patch: xr.DataArray = provider.fetch_series(  # type: ignore[attr-defined]
            s, temporal, sensor, frames=frames
        )
        return patch

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(unique)))) as pool:
        futures = {key: pool.submit(fetch, s) for key, s in unique.items()}
        return {key: f.result() for key, f in futures.items()}


def check_model_frames(
    card: ModelCard, frames: object, provider: Provider, temporal: TemporalSpec
) -> int | None:
    """``frames`` as an int (or None), refused before any I/O where it cannot work.

    Shared by the one-call API and ``export_batch`` so both refuse the same requests with the
    same errors.

    Raises:
        SpecError: ``frames`` is not a positive integer, or exceeds the window's days.
        CapabilityError: a single-image model, more frames than the model takes, or a provider
            that gives no time series.
    """
    from eoembed.providers.series import check_frames

    if frames is None:
        return None
    if card.input.frames <= 1:
        raise CapabilityError(
            f"model {card.id!r} takes one image, not frames={frames}; temporal models: "
            + (", ".join(m for m in list_models() if describe_model(m).input.frames > 1)
               or "none registered")
        )
    n = check_frames(frames, temporal)
    assert n is not None
    if not 1 <= n <= card.input.frames:
        raise CapabilityError(
            f"model {card.id!r} takes 1..{card.input.frames} frames, not frames={frames}"
        )
    if not hasattr(provider, "fetch_series"):
        raise CapabilityError(f"provider {provider.name!r} gives no time series (frames=)")
    return n


def patch_frame_dates(patch: xr.DataArray) -> tuple[dt.date | None, ...]:
    """Each frame's acquisition day, or the middle of its bin when the day is unknown."""
    dates: list[dt.date | None] = []
    for i in range(patch.sizes["time"]):
        frame = patch.isel(time=i)
        stamp = frame.coords["time"].values
        if not np.isnat(stamp):
            dates.append(dt.date.fromisoformat(str(stamp)[:10]))
        elif "time_start" in frame.coords and "time_end" in frame.coords:
            start = dt.date.fromisoformat(str(frame.coords["time_start"].values)[:10])
            end = dt.date.fromisoformat(str(frame.coords["time_end"].values)[:10])
            dates.append(start + (end - start) / 2)
        else:
            dates.append(None)
    return tuple(dates)


def get_embeddings_batch(
    model: str,
    *,
    spatials: Sequence[SpatialLike],
    temporal: TemporalSpec,
    sensor: SensorSpec | None = None,
    output: OutputSpec | None = None,
    provider: str | Provider | None = None,
    device: str = "auto",
    batch_size: int = 16,
    fetch_workers: int = 4,
    frames: int | None = None,
    **model_args: Any,
) -> list[Embedding]:
    """Embeddings for many regions with one model: each region fetched once, forward batched.

    Args:
        model: a model id from :func:`eoembed.list_models`.
        spatials: regions (BBox, PointBuffer, GeometrySpec, or anything ``as_spatial`` takes).
        temporal: the time window.
        sensor: the imagery to read; defaults to the model's training sensor.
        output: ``OutputSpec.pooled()`` (default) or ``OutputSpec.grid()``.
        provider: a provider name, ``"name:argument"`` or instance; default
            :func:`default_provider` (a product's own, else ``"sample"``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        batch_size: regions per forward pass.
        fetch_workers: regions fetched concurrently.
        frames: for temporal models, a time series of this many frames (equal bins of the
            window, see ``fetch_series``) instead of one composite.
        **model_args: the model's own arguments (see ``describe_model``); unknown ones fail.

    Returns:
        One :class:`Embedding` per region, in the order given (duplicates share pixels).
    """
    t0 = time.perf_counter()
    output = output or OutputSpec.pooled()
    check_types(temporal, output, sensor)
    for name, count in (("batch_size", batch_size), ("fetch_workers", fetch_workers)):
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise SpecError(name, count, allowed="a whole number >= 1")
    regions = [as_spatial(s) for s in spatials]
    card = describe_model(model, **model_args)  # dynamic ids: the arguments shape the contract
    if output.mode not in card.outputs:
        raise CapabilityError(
            f"model {model!r} gives {', '.join(card.outputs)} output, not {output.mode!r}"
        )
    output = card.resolve_output(output)  # "default" -> the card's; unsupported: refused now
    source = get_provider(provider if provider is not None else default_provider([card]))
    check_product_window(card, temporal, source)
    wanted = option_bands(model, model_args)
    sensor = sensor or default_sensor(card, source, bands=wanted)
    warnings = check_contract(card, sensor, source, wanted)
    frames = check_model_frames(card, frames, source, temporal)
    options = check_models({model: model_args}, device)[model]
    check_grids(regions, sensor, options, model)
    embedder = cached_embedder(model, device, batch_size, model_args)
    t_built = time.perf_counter()

    patches = _fetch_unique(source, regions, temporal, sensor, fetch_workers, frames)
    t_fetched = time.perf_counter()

    match = contract_bands(card, sensor, source, wanted)
    bands, band_infos = list(match.source), input_bands(card, sensor, source, match)
    notes: dict[str, dict[str, Any]] = {}
    contexts = {
        r.fingerprint: SampleContext.from_specs(r, temporal, sensor.scale_m) for r in regions
    }
    if frames is not None:
        contexts = {
            k: dataclasses.replace(c, frame_dates=patch_frame_dates(patches[k]))
            for k, c in contexts.items()
        }
    keys = list(patches)
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for key in keys:
        by_shape.setdefault(patches[key].shape, []).append(key)
    results: dict[str, np.ndarray] = {}
    for group in by_shape.values():
        stack = np.stack([patches[k].sel(band=bands).values for k in group])
        values = embedder.embed(stack, output, [contexts[k] for k in group], bands=band_infos)
        call_notes = embedder.call_notes() or [{}] * len(group)
        for key, value, note in zip(group, values, call_notes, strict=True):
            results[key] = value
            notes[key] = note
    t_embedded = time.perf_counter()

    base_meta = {
        **embedder.metadata(),
        "provider": source.name,
        "temporal": temporal.to_dict(),
        "sensor": sensor.to_dict(),
        "band_match": match.to_dict(),
        "output": output.to_dict(),
        "eoembed_version": __version__,
        "warnings": warnings,
        "timings": {
            "setup_s": t_built - t0,
            "fetch_s": t_fetched - t_built,
            "embed_s": t_embedded - t_fetched,
            "regions": len(regions),
            "unique_regions": len(patches),
        },
    }
    out = []
    for region in regions:
        key = region.fingerprint
        patch = patches[key]
        grid = patch_grid(patch)
        values = results[key]
        meta = {
            **base_meta,
            "spatial": region.to_dict(),
            "scene_ids": list(patch.attrs.get("scene_ids", [])),
            "scene_times": list(patch.attrs.get("scene_times", [])),
            "valid_fraction": patch.attrs.get("valid_fraction"),
            "pixel_unit": patch.attrs.get("unit", ""),
            "radiometry": list(patch.attrs.get("radiometry", [])),
            "input_grid": grid.to_dict(),
            "input_shape": [len(bands), *patch.shape[-2:]],
            "embedding_dim": int(values.shape[0]),
        }
        for name, note in notes[key].items():  # what the model decided from the input
            meta[name] = [*meta[name], *note] if name == "warnings" else note
        if frames is not None:
            meta["frames"] = int(patch.sizes["time"])
        if card.input.side_inputs:
            meta["side_inputs"] = {
                "uses": list(card.input.side_inputs), **contexts[key].to_dict(),
                "date_note": "middle of the time window (composite)"
                if frames is None else "frame_dates: acquisition day or middle of the bin",
            }
        data: np.ndarray | xr.DataArray = values
        if output.mode == "grid":
            data = georeference(values, grid)
            data.attrs.update(model=model, embedding_dim=int(values.shape[0]))
            meta["output_grid"] = grid.coarsen(values.shape[1], values.shape[2]).to_dict()
        out.append(Embedding(data, meta))
    return out


def patch_grid(patch: xr.DataArray) -> Grid:
    """The :class:`Grid` a provider patch lies on."""
    transform = patch.rio.transform()
    return Grid(
        str(patch.rio.crs.to_string()),
        float(transform.c),
        float(transform.f),
        float(transform.a),
        int(patch.sizes["x"]),
        int(patch.sizes["y"]),
    )


def get_embedding(
    model: str,
    *,
    spatial: SpatialLike,
    temporal: TemporalSpec,
    sensor: SensorSpec | None = None,
    output: OutputSpec | None = None,
    provider: str | Provider | None = None,
    device: str = "auto",
    frames: int | None = None,
    **model_args: Any,
) -> Embedding:
    """The embedding of one region and time window by one model.

    >>> get_embedding("mosaiks", spatial=PointBuffer(lon=-75.70, lat=37.70, buffer_m=1280),
    ...               temporal=TemporalSpec.range("2015-06-23", "2016-06-11"),
    ...               output=OutputSpec.grid(), provider="sample")  # doctest: +SKIP

    See :func:`get_embeddings_batch` for the arguments.
    """
    return get_embeddings_batch(
        model, spatials=[spatial], temporal=temporal, sensor=sensor, output=output,
        provider=provider, device=device, frames=frames, **model_args,
    )[0]


def inspect_input(
    model: str,
    *,
    spatial: SpatialLike,
    temporal: TemporalSpec,
    sensor: SensorSpec | None = None,
    provider: str | Provider | None = None,
) -> xr.DataArray:
    """The exact patch the model will see: its bands, in its order, on the request grid.

    Values are in provider units (before the model's normalisation, which ``attrs`` records,
    together with the size the model resizes to, if any). Loads no model.
    """
    region = as_spatial(spatial)
    check_types(temporal, OutputSpec.pooled(), sensor)
    card = describe_model(model)
    source = get_provider(provider if provider is not None else default_provider([card]))
    check_product_window(card, temporal, source)
    sensor = sensor or default_sensor(card, source)
    warnings = check_contract(card, sensor, source)
    check_grids([region], sensor)
    bands = contract_bands(card, sensor, source)
    patch = source.fetch(region, temporal, sensor).sel(band=list(bands.source))
    patch = patch.assign_coords(band=list(bands.model), source_band=("band", list(bands.source)))
    norm = card.input.normalisation
    patch.attrs.update(
        model=model,
        model_image_size=card.input.image_size,
        unit=card.input.unit,
        normalisation={"scale": card.input.provider_scale, "mean": list(norm.mean),
                       "std": list(norm.std)},
        warnings=warnings,
        band_match=bands.to_dict(),
    )
    return patch
