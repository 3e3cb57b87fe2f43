"""Embed your own pixels: a numpy array or a georeferenced DataArray instead of a provider.

Like rs-embed's ``get_embedding_from_data``: the caller says what the pixels are (their bands,
by name in a registered sensor's vocabulary or as :class:`~eoembed.bands.BandInfo`, their
ground sampling distance and unit), and eoembed matches the bands to the model
(:mod:`eoembed.bandmatch`), brings the values to the unit providers deliver (harmonised DN,
reflectance x 10000) and runs the model exactly as :func:`eoembed.get_embedding` does, so the
same pixels give the same embedding either way. Nothing is resampled: a GSD other than the
model's is recorded as a warning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from eoembed.bands import BandInfo, sensor_bands
from eoembed.errors import CapabilityError, SpecError
from eoembed.grid import Grid

if TYPE_CHECKING:
    import xarray as xr

    from eoembed.embedders.card import ModelCard
    from eoembed.embedding import Embedding
    from eoembed.specs import OutputSpec, TemporalSpec

__all__ = [
    "UNIT_NAMES",
    "read_image",
    "BandsLike",
    "UnitLike",
    "array_grid",
    "get_embedding_from_data",
    "resolve_bands",
    "to_harmonised_dn",
]

UnitLike: TypeAlias = str | tuple[float, float]
"""``"dn"`` (reflectance x 10000), ``"reflectance"`` (0..1), or ``(scale, offset)`` with
``reflectance = stored * scale + offset`` (Landsat Collection 2 L2: ``(2.75e-5, -0.2)``)."""

UNIT_NAMES = ("dn", "reflectance")

BandsLike: TypeAlias = Sequence[str | BandInfo]
"""Band names in a sensor's vocabulary (``"B4"``, ``"red"``), or declared bands."""

DEFAULT_SENSOR = "sentinel-2"
"""The vocabulary of band names given without a ``sensor``."""

_DN_PER_REFLECTANCE = 10_000.0


def resolve_bands(bands: BandsLike | None, sensor: str | None, count: int) -> tuple[BandInfo, ...]:
    """The :class:`BandInfo` of each of ``count`` channels, in channel order.

    Raises:
        SpecError: no bands, a count other than the data's, or a band listed twice.
        CapabilityError: an unknown sensor or band name (naming what the sensor has).
    """
    if bands is None:
        raise SpecError(
            "bands", None, allowed=f"one name per channel ({count}), e.g. sensor='landsat-8', "
            "bands=['B2', 'B3', 'B4', 'B5'], or eoembed.bands.band(...) declarations",
        )
    items = [bands] if isinstance(bands, str | BandInfo) else list(bands)
    infos: list[BandInfo] = []
    for item in items:
        if isinstance(item, BandInfo):
            infos.append(item)
        elif isinstance(item, str) and item:
            infos.extend(sensor_bands(sensor or DEFAULT_SENSOR, [item]))
        else:
            raise SpecError("bands", item, allowed="band names (strings) or BandInfo")
    if len(infos) != count:
        raise SpecError("bands", [b.name for b in infos],
                        allowed=f"{count} band(s), one per channel of the data")
    names = [b.name for b in infos]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise SpecError("bands", duplicate, allowed="each band once")
    return tuple(infos)


def to_harmonised_dn(values: np.ndarray, unit: UnitLike) -> tuple[np.ndarray, str]:
    """``values`` as float32 harmonised DN (reflectance x 10000), and what was done.

    Raises:
        SpecError: a unit that is neither a name of :data:`UNIT_NAMES` nor ``(scale, offset)``.
    """
    x = np.asarray(values, dtype=np.float32)
    if isinstance(unit, str):
        if unit == "dn":
            return x, "dn: as given"
        if unit == "reflectance":
            return x * np.float32(_DN_PER_REFLECTANCE), "reflectance x 10000"
    elif isinstance(unit, tuple | list) and len(unit) == 2 and all(
        isinstance(v, int | float) and math.isfinite(v) for v in unit
    ):
        scale, offset = float(unit[0]), float(unit[1])
        dn = (x * np.float32(scale) + np.float32(offset)) * np.float32(_DN_PER_REFLECTANCE)
        return dn, f"(stored x {scale:g} + {offset:g}) x 10000"
    raise SpecError("unit", unit, allowed="'dn', 'reflectance' or (scale, offset) to reflectance")


def array_grid(crs: Any, transform: Any, height: int, width: int) -> Grid | None:
    """The north-up :class:`Grid` of an array, or None when its CRS or transform is unknown.

    Raises:
        SpecError: a transform that is rotated, sheared or has non-square pixels (the grid
            outputs could not be georeferenced as cells of the input).
    """
    if crs is None or transform is None:
        return None
    from affine import Affine

    t = transform if isinstance(transform, Affine) else Affine(*list(transform)[:6])
    if t.b != 0 or t.d != 0 or t.a <= 0 or not math.isclose(-t.e, t.a, rel_tol=1e-9):
        raise SpecError("transform", tuple(t)[:6],
                        allowed="a north-up transform with square pixels (a, 0, c, 0, -a, f)")
    text = crs.to_string() if hasattr(crs, "to_string") else str(crs)
    return Grid(text, float(t.c), float(t.f), float(t.a), int(width), int(height))


def read_image(path: str | Path) -> tuple[np.ndarray, list[str] | None, Any, Any]:
    """A raster file's pixels, band descriptions, CRS and transform.

    Descriptions are None unless every band has one; nodata pixels become 0 (what providers
    fill missing pixels with).

    Raises:
        SpecError: a file rasterio cannot read.
    """
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            pixels = src.read().astype(np.float32)
            names = list(src.descriptions) if all(src.descriptions) else None
            nodata, crs, transform = src.nodata, src.crs, src.transform
    except (RasterioError, OSError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise SpecError("image", str(path), allowed="a raster file (GeoTIFF...)",
                        reason=first) from None
    if nodata is not None:
        pixels[pixels == np.float32(nodata)] = 0.0
    return pixels, names, crs, transform if crs is not None else None


def _metric(crs: str) -> bool:
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    return bool(parsed.is_projected) and all(
        (a.unit_name or "").lower() in ("metre", "meter") for a in parsed.axis_info
    )


def _from_dataarray(
    da: xr.DataArray, bands: BandsLike | None, crs: Any, transform: Any
) -> tuple[np.ndarray, BandsLike | None, Any, Any]:
    """Pixels, band names, CRS and transform of a ``(..., band, y, x)`` DataArray."""
    if da.ndim not in (3, 4) or tuple(da.dims[-2:]) != ("y", "x"):
        raise SpecError("data", f"DataArray of dims {da.dims}",
                        allowed="dims (band, y, x) or (sample, band, y, x)")
    if bands is None:
        coord = da.coords[da.dims[-3]].values if da.dims[-3] in da.coords else None
        long_name = da.attrs.get("long_name")
        if isinstance(long_name, str):  # rioxarray gives one band's description as a string
            long_name = [long_name]
        if coord is not None and all(isinstance(v, str) and v for v in coord.tolist()):
            bands = [str(v) for v in coord.tolist()]
        elif isinstance(long_name, list | tuple) and all(isinstance(v, str) and v
                                                          for v in long_name):
            bands = [str(v) for v in long_name]
    if crs is None or transform is None:
        try:
            import rioxarray  # noqa: F401  (registers .rio)

            found = da.rio.crs
            if found is not None and crs is None:
                crs = found
            if transform is None and found is not None:
                transform = da.rio.transform(recalc=True)
        except ImportError:  # pragma: no cover - rioxarray comes with every provider extra
            pass
    return np.asarray(da.values), bands, crs, transform


def _contexts(grid: Grid | None, temporal: TemporalSpec | None, gsd_m: float, n: int) -> list[Any]:
    from eoembed.embedders.context import SampleContext

    if grid is None:
        context = SampleContext.unknown(gsd_m)
        if temporal is not None:
            start, end = temporal.start_date, temporal.end_date
            context = SampleContext(math.nan, math.nan, start + (end - start) / 2, gsd_m)
        return [context] * n
    from eoembed.specs import BBox, TemporalSpec

    window = temporal or TemporalSpec.range("1970-01-01", "1970-01-02")
    context = SampleContext.from_specs(BBox(*grid.bounds, crs=grid.crs), window, gsd_m)
    if temporal is None:
        context = SampleContext(context.lon, context.lat, None, gsd_m)
    return [context] * n


def _warnings(card: ModelCard, match_warning: str | None, gsd_m: float, gsd_known: bool) -> list[str]:
    warnings = [w for w in (match_warning,) if w]
    if not gsd_known:
        warnings.append(f"model {card.id!r}: the data's GSD is unknown (no gsd_m, no metric "
                        f"CRS); taken as the model's {card.input.gsd_m:g} m")
    elif not np.isclose(gsd_m, card.input.gsd_m):
        warnings.append(f"model {card.id!r} was trained at {card.input.gsd_m:g} m; input is at "
                        f"{gsd_m:g} m")
    return warnings


def get_embedding_from_data(
    model: str,
    data: np.ndarray | xr.DataArray,
    *,
    bands: BandsLike | None = None,
    sensor: str | None = None,
    gsd_m: float | None = None,
    unit: UnitLike = "dn",
    crs: Any = None,
    transform: Any = None,
    temporal: TemporalSpec | None = None,
    output: OutputSpec | None = None,
    device: str = "auto",
    batch_size: int = 16,
    **model_args: Any,
) -> Embedding | list[Embedding]:
    """The embedding of pixels you already have, as :func:`eoembed.get_embedding` gives it.

    >>> get_embedding_from_data("mosaiks", chip, sensor="landsat-8",
    ...                         bands=["B2", "B3", "B4", "B5"], gsd_m=30)  # doctest: +SKIP

    Args:
        model: a model id from :func:`eoembed.list_models`.
        data: ``(C, H, W)`` or ``(N, C, H, W)`` numpy, or a DataArray of dims ``(band, y, x)``
            (or ``(sample, band, y, x)``) whose band coordinate or ``long_name`` (rioxarray's
            band descriptions) names the bands and whose ``rio`` CRS/transform place it.
        bands: one per channel: names in ``sensor``'s vocabulary (name or common name), or
            :class:`~eoembed.bands.BandInfo` (:func:`eoembed.bands.band` declares one).
        sensor: a registered sensor (:data:`eoembed.bands.SENSORS`; default Sentinel-2).
        gsd_m: ground metres per pixel (default: the transform's, in a metric CRS).
        unit: the values' unit (:data:`UnitLike`), converted to what the model expects.
        crs: the pixels' CRS (a string or a CRS object).
        transform: their affine transform (a rasterio ``Affine``); grid outputs are
            georeferenced when it and ``crs`` are known.
        temporal: when the pixels were taken (for models that take dates).
        output: ``OutputSpec.pooled()`` (default) or ``OutputSpec.grid()``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        batch_size: samples per forward pass.
        **model_args: the model's own arguments (see ``describe_model``).

    Returns:
        One :class:`Embedding` for ``(C, H, W)`` data, a list of them for ``(N, C, H, W)``.

    Raises:
        SpecError: data of another shape, bands not one per channel, a bad unit or transform.
        BandMatchError: the bands lack one the model needs (each named with its wavelength).
        CapabilityError: an unknown sensor or band name, or an output the model cannot give.
    """
    from eoembed._version import __version__
    from eoembed.api import cached_embedder, check_models, check_types, georeference
    from eoembed.bandmatch import match_bands
    from eoembed.embedders.registry import describe_model
    from eoembed.embedding import Embedding
    from eoembed.specs import OutputSpec

    t0 = time.perf_counter()
    output = output or OutputSpec.pooled()
    if temporal is not None:
        check_types(temporal, output, None)
    elif not isinstance(output, OutputSpec):
        raise SpecError("output", output, allowed="OutputSpec.pooled() or OutputSpec.grid()")
    if hasattr(data, "dims") and hasattr(data, "coords"):
        data, bands, crs, transform = _from_dataarray(data, bands, crs, transform)  # type: ignore[arg-type]
    pixels = np.asarray(data)
    if pixels.ndim not in (3, 4) or 0 in pixels.shape:
        raise SpecError("data", f"array of shape {pixels.shape}",
                        allowed="(C, H, W) or (N, C, H, W) pixels")
    single = pixels.ndim == 3
    stack = pixels[None] if single else pixels
    infos = resolve_bands(bands, sensor, stack.shape[1])
    grid = array_grid(crs, transform, stack.shape[2], stack.shape[3])
    card = describe_model(model)
    if output.mode not in card.outputs:
        raise CapabilityError(
            f"model {model!r} gives {', '.join(card.outputs)} output, not {output.mode!r}"
        )
    output = card.resolve_output(output)
    label = sensor or ("user bands" if all(isinstance(b, BandInfo) for b in (bands or ()))
                       else DEFAULT_SENSOR)
    match = match_bands(card.input.bands, infos, rule=card.input.band_rule, model_id=card.id,
                        sensor=f"{label} {[b.name for b in infos]}")
    gsd_known = gsd_m is not None or (grid is not None and _metric(grid.crs))
    if gsd_m is None:
        gsd_m = grid.resolution if gsd_known and grid is not None else card.input.gsd_m
    if not (isinstance(gsd_m, int | float) and math.isfinite(gsd_m) and gsd_m > 0):
        raise SpecError("gsd_m", gsd_m, allowed="ground metres per pixel > 0")
    warnings = _warnings(card, match.warning(card.id), float(gsd_m), gsd_known)
    options = check_models({model: model_args}, device)[model]
    options.check_input(model, stack.shape[2], stack.shape[3])
    embedder = cached_embedder(model, device, batch_size, model_args)
    t_built = time.perf_counter()

    order = [b.name for b in infos]
    dn, conversion = to_harmonised_dn(stack[:, [order.index(s) for s in match.source]], unit)
    contexts = _contexts(grid, temporal, float(gsd_m), len(dn))
    values = embedder.embed(dn, output, contexts)
    t_embedded = time.perf_counter()

    base = {
        **embedder.metadata(),
        "provider": "data",
        "temporal": temporal.to_dict() if temporal is not None else None,
        "sensor": {"name": label, "bands": order, "scale_m": float(gsd_m),
                   "unit": unit if isinstance(unit, str) else list(unit)},
        "band_match": match.to_dict(),
        "output": output.to_dict(),
        "eoembed_version": __version__,
        "warnings": warnings,
        "timings": {"setup_s": t_built - t0, "fetch_s": 0.0, "embed_s": t_embedded - t_built,
                    "regions": len(dn), "unique_regions": len(dn)},
        "spatial": None,
        "scene_ids": [],
        "scene_times": [],
        "pixel_unit": "dn",
        "radiometry": [conversion],
        "input_grid": grid.to_dict() if grid is not None else None,
        "input_shape": [len(match.source), *dn.shape[-2:]],
        "embedding_dim": int(values.shape[1]),
    }
    out = []
    for i, value in enumerate(values):
        meta = {**base, "valid_fraction": float(np.isfinite(dn[i]).all(axis=0).mean())}
        if card.input.side_inputs:
            meta["side_inputs"] = {"uses": list(card.input.side_inputs), **contexts[i].to_dict()}
        result: np.ndarray | xr.DataArray = value
        if output.mode == "grid" and grid is not None:
            result = georeference(value, grid)
            result.attrs.update(model=model, embedding_dim=int(value.shape[0]))
            meta["output_grid"] = grid.coarsen(value.shape[1], value.shape[2]).to_dict()
        out.append(Embedding(result, meta))
    return out[0] if single else out
