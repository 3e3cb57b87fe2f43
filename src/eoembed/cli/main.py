"""``eoembed``: models, describe, embed, weights. Parsing and printing only; the API does the work.

User errors (any :class:`~eoembed.errors.EoembedError`, bad or missing options, and the
machine refusing a path: read-only, full, not a folder) print one red line,
``error: <message>``, on stderr and exit with code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.util
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from eoembed.cli.export import export_command, stac_command
from eoembed.cli.helptext import unwrap_help
from eoembed.cli.learn import compare_command, evaluate_command, predict_command, train_command
from eoembed.cli.options import (
    ArgsOpt,
    BandsOpt,
    BBoxOpt,
    BufferOpt,
    CloudyPctOpt,
    CollectionOpt,
    CompositeOpt,
    CrsOpt,
    DeviceOpt,
    EndOpt,
    FillValueOpt,
    FramesOpt,
    JobProviderOpt,
    JsonOpt,
    LatOpt,
    LonOpt,
    MaskOpt,
    ModelArg,
    ModelOpt,
    ModelsArg,
    OutOpt,
    OutputMode,
    OutputOpt,
    PngOpt,
    Pooling,
    PoolingOpt,
    PrecisionOpt,
    QuietOpt,
    ResamplingOpt,
    ScaleOpt,
    StartOpt,
    YearOpt,
    check_out_path,
    parse_bbox,
    parse_model_args,
    sensor_fields,
)
from eoembed.errors import DependencyNotFoundError, EoembedError
from eoembed.paths import check_output_file

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr

    from eoembed.embedders.card import ModelCard
    from eoembed.embedding import Embedding
    from eoembed.specs import OutputSpec, SensorSpec, SpatialSpec, TemporalSpec

__all__ = ["PLUGIN_GROUP", "app", "load_plugins", "main"]

_USAGE_ERROR = cast(type[Exception], typer.BadParameter.__base__)
"""click's ``UsageError`` (bad, missing or unknown options), wherever typer takes click from."""

_MACHINE_ERRNOS = frozenset({
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.ENOTDIR,
    errno.EISDIR, errno.ENAMETOOLONG,
})
"""``OSError`` numbers that the machine or the paths given cause (a read-only or full disk, a
file where a folder must be), never a bug: reported as user errors even when they surface
after the up-front checks (a disk filling up during an export)."""

_SHOWN_VALUES = 8
"""How many leading values of the vector ``embed`` prints."""


# -- errors and consoles ----------------------------------------------------------------------


def _console(stderr: bool = False) -> Console:
    """A console built per call, so it writes to the current streams at the current width."""
    return Console(stderr=stderr)


def _print_error(message: str) -> None:
    """Print ``error: <message>`` in red on stderr, on a single line, secrets masked."""
    from eoembed.redact import redact

    line = redact(" ".join(part.strip() for part in str(message).splitlines() if part.strip()))
    _console(stderr=True).print(Text(f"error: {line}", style="red"), soft_wrap=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn user errors into one line on stderr and exit code 2."""
    try:
        yield
    except (EoembedError, _USAGE_ERROR) as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `eoembed`: typer prints help
            raise
        format_message = getattr(exc, "format_message", None)
        _print_error(format_message() if callable(format_message) else str(exc))
        raise typer.Exit(2) from None
    except OSError as exc:
        if exc.errno not in _MACHINE_ERRNOS:
            raise
        where = f": {exc.filename!r}" if exc.filename is not None else ""
        _print_error(f"{exc.strerror or type(exc).__name__}{where}")
        raise typer.Exit(2) from None


class _Group(TyperGroup):
    """The root group: user errors raised while parsing or running any command are one line.

    Every command's help (plugins' too) is unwrapped into whole paragraphs when the group is
    built, so the terminal wraps it once (:mod:`eoembed.cli.helptext`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unwrap_help(self)

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        """Parse the root options (see :func:`_user_errors`)."""
        with _user_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        """Parse and run the subcommand (see :func:`_user_errors`)."""
        with _user_errors():
            return super().invoke(ctx)


app = typer.Typer(
    name="eoembed",
    cls=_Group,
    help="Embeddings from remote-sensing foundation models, for any place and time.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
weights_app = typer.Typer(
    help="Pre-fetch pretrained weights on a connected machine.", no_args_is_help=True
)
app.add_typer(weights_app, name="weights")


# -- models and describe ----------------------------------------------------------------------


def _bands_text(bands: tuple[str, ...]) -> str:
    """Band names, abbreviated when there are many."""
    return " ".join(bands) if len(bands) <= 4 else f"{len(bands)} ({bands[0]}..{bands[-1]})"


@app.command("models")
def models_command(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the docs' markdown table instead.")
    ] = False,
) -> None:
    """List the registered models: family, embedding size, outputs, bands, GSD, download.

    "download" says what the first use fetches: none (no weights), cached (already in the
    local cache, with its size), yes, or tiles (published embedding products such as
    alphaearth and tessera: read from the publisher's files, not computed). Any timm, TorchGeo or TerraTorch backbone also works
    by a single string: timm:<name>, torchgeo:<WeightsEnum.MEMBER>, terratorch:<backbone>
    (random weights unless pretrained=true or weights= is given; see `eoembed describe`).
    """
    from eoembed.embedders import describe_model, list_models
    from eoembed.embedders.weights import cached_weights_path

    if markdown:
        from eoembed.embedders.model_table import markdown_table

        typer.echo(markdown_table())
        return

    table = Table(
        "id", "family", "dim", "outputs", "bands", "GSD", "sensors", "download",
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
    )
    table.columns[0].no_wrap = True
    table.columns[4].no_wrap = True  # band lists stay on one line (ids are long now)
    for model_id in list_models():
        card = describe_model(model_id)
        table.add_row(
            card.id, card.family, str(card.embedding_dim), " ".join(card.outputs),
            f"{card.embedding_dim} dims" if card.product else _bands_text(card.input.band_names),
            f"{card.input.gsd_m:g} m",
            "-" if card.product else
            "any" if card.input.band_rule == "any" else str(len(card.input.accepted_sensors())),
            _download_text(card, cached_weights_path(card.weights) if card.weights else None),
        )
    console = _console()
    console.print(table)
    console.print("Also: timm:<name>, torchgeo:<WeightsEnum.MEMBER>, terratorch:<backbone> "
                  "(e.g. timm:resnet18 --arg bands=B04,B03,B02); see `eoembed models --help`.",
                  soft_wrap=True, highlight=False)


def _download_text(card: ModelCard, cached: Path | None) -> str:
    """``none``, ``cached (12.3 MB)``, ``yes`` (the first use downloads) or ``tiles``.

    ``tiles``: a published product, whose regions read the publisher's tiles (then the cache).
    """
    if card.product is not None:
        return "tiles"
    if card.weights is None:
        return "none"
    if cached is None:
        return "yes"
    return f"cached ({cached.stat().st_size / 1e6:.1f} MB)"


def _product_rows(card: ModelCard) -> list[tuple[str, str]]:
    """Key/value rows of a published product's card."""
    product = card.product
    assert product is not None
    return [
        ("product", product.name),
        ("embedding dim",
         f"{card.embedding_dim} ({card.input.band_names[0]}..{card.input.band_names[-1]})"),
        ("years", "static (one map; the window selects nothing)" if product.years is None
         else f"{product.years[0]}..{product.years[1]} (one per calendar year)"),
        ("coverage", product.coverage),
        ("resolution", f"{card.input.gsd_m:g} m"),
        ("grid", product.grid),
        ("quantisation", product.quantisation),
        ("providers", ", ".join(product.providers) + " (first: default)"),
        ("outputs", ", ".join(card.outputs) + "; pooled: mean of valid pixels"),
        ("documentation", product.url),
        ("licence", card.licence),
        ("citation", card.citation),
    ]


def _card_table(card: ModelCard) -> Table:
    """Key/value rows of a model card."""
    if card.product is not None:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, value in _product_rows(card):
            table.add_row(key, value)
        return table
    contract = card.input
    norm = contract.normalisation
    weights = card.weights
    size = f"{contract.image_size} px (regions are resized)" if contract.image_size else "any"
    rows = [
        ("embedding dim", str(card.embedding_dim)),
        ("outputs", ", ".join(card.outputs)),
        ("collections", f"{', '.join(contract.collections)} ({contract.processing_level})"),
        ("GSD", f"{contract.gsd_m:g} m"),
        ("sensors", ", ".join(contract.accepted_sensors()) + (
            " (any optical bands, by wavelength)" if contract.band_rule == "any" else "")),
        ("image size", size),
        ("patch size", f"{contract.patch_size} px per grid cell"),
        ("unit", contract.unit),
        ("normalisation", f"x * {contract.provider_scale:g}, minus mean, over std; "
         f"{norm.note}".strip("; ")),
        ("weights", "none" if not weights else weights.download_url or
         f"{weights.repo_id}/{weights.filename} @ {weights.revision}"),
        ("weights sha256", weights.sha256 if weights else "-"),
        ("licence", card.licence),
        ("citation", card.citation),
    ]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def _bands_table(card: ModelCard) -> Table:
    """The bands a model takes, in its order."""
    table = Table("band", "common name", "wavelength", "native GSD", title="input bands")
    for band in card.input.bands:
        table.add_row(
            band.name, band.common_name, f"{band.wavelength_um:.3f} um", f"{band.gsd_m:g} m"
        )
    return table


def _arguments_table(model: str) -> Table:
    """The model's ``--arg`` names, types and defaults."""
    from eoembed.embedders.registry import embedder_class

    table = Table("--arg", "type", "default", title="model arguments")
    for field in dataclasses.fields(embedder_class(model).Options):
        default = "required" if field.default is dataclasses.MISSING else repr(field.default)
        table.add_row(field.name, str(field.type), default)
    return table


@app.command("describe")
def describe_command(model: ModelArg, as_json: JsonOpt = False) -> None:
    """Show a model card: input contract, outputs, arguments, weights, licence, citation."""
    from eoembed.embedders import describe_model

    card = describe_model(model)
    if as_json:
        typer.echo(json.dumps(
            {**card.to_dict(), "accepted_sensors": card.input.accepted_sensors()}, indent=2
        ))
        return
    console = _console()
    console.print(Text.assemble((card.id, "bold"), f"  {card.family}"))
    console.print(card.summary, highlight=False)
    if card.product is not None:
        console.print(_card_table(card))
        return
    console.print(_card_table(card), _bands_table(card), _arguments_table(model))


@weights_app.command("download")
def weights_download_command(models: ModelsArg) -> None:
    """Download the weights of MODELS (Hugging Face cache, or eoembed's for URLs); verify them."""
    from eoembed.embedders import describe_model
    from eoembed.embedders.weights import download_weights

    console = _console()
    for model in models:
        source = describe_model(model).weights
        if source is None:
            console.print(f"{model}: no weights needed")
        else:
            console.print(f"{model}: {download_weights(model, source, command=True)}")


# -- embed --------------------------------------------------------------------------------------


def _region(
    lon: float | None, lat: float | None, buffer_m: float, bbox: str | None, crs: str
) -> SpatialSpec:
    """``--lon/--lat/--buffer-m`` as a PointBuffer, or ``--bbox/--crs`` as a BBox."""
    from eoembed import BBox, PointBuffer

    if bbox is not None:
        if lon is not None or lat is not None:
            raise typer.BadParameter("give --bbox or --lon/--lat, not both", param_hint="region")
        return BBox(*parse_bbox(bbox), crs=crs)
    if lon is None or lat is None:
        raise typer.BadParameter("give --lon and --lat (and --buffer-m), or --bbox",
                                 param_hint="region")
    return PointBuffer(lon, lat, buffer_m)


def _window(year: int | None, start: str | None, end: str | None) -> TemporalSpec:
    """``--year`` as a calendar year, or ``--start/--end`` as a half-open range."""
    from eoembed import TemporalSpec

    if year is not None:
        if start is not None or end is not None:
            raise typer.BadParameter("give --year or --start/--end, not both",
                                     param_hint="time window")
        return TemporalSpec.year(year)
    if start is None or end is None:
        raise typer.BadParameter("give --start and --end, or --year", param_hint="time window")
    return TemporalSpec.range(start, end)


def _output_spec(output: OutputMode, pooling: Pooling) -> OutputSpec:
    """``--output/--pooling`` as an OutputSpec."""
    from eoembed import OutputSpec

    if output is OutputMode.grid:
        return OutputSpec.grid()
    return OutputSpec.pooled(pooling.value)


def _grid_reduction(pooling: Pooling) -> str:
    """The reduction that turns a grid into the printed vector (mean for cls/native/default)."""
    from eoembed.specs.output import REDUCTIONS

    return pooling.value if pooling.value in REDUCTIONS else "mean"


def _vector(emb: Embedding, pooling: Pooling) -> np.ndarray:
    """The pooled vector of an embedding: itself, or its grid reduced by ``pooling``."""
    from eoembed.embedders.base import pool_grid

    values = emb.numpy()
    return pool_grid(values[None], _grid_reduction(pooling))[0] if emb.is_grid else values


def _write_png(
    model: str, spatial: SpatialSpec, temporal: TemporalSpec, provider: str, emb: Embedding,
    path: Path, sensor: SensorSpec | None = None,
) -> None:
    """Save the input's RGB (same provider, sensor and grid) beside the embedding's PCA."""
    from eoembed import SensorSpec, inspect_input
    from eoembed.embedders import describe_model
    from eoembed.providers import get_provider
    from eoembed.viz import RGB_BANDS, save_comparison_png

    patch = inspect_input(model, spatial=spatial, temporal=temporal, provider=provider,
                          sensor=sensor)
    if not set(RGB_BANDS) <= set(patch["band"].values.tolist()):
        contract = describe_model(model).input
        sensor = SensorSpec(contract.collections[0], RGB_BANDS, contract.gsd_m)
        patch = get_provider(provider).fetch(spatial, temporal, sensor)
    grid = cast("xr.DataArray", emb.data)
    save_comparison_png(patch, grid, path, title=f"{model} | {emb.meta['provider']} | {temporal}")


def _grid_to_save(grid: xr.DataArray, meta_json: str) -> xr.DataArray:
    """A copy of ``grid`` with file-safe attributes and the metadata as one JSON string."""
    attrs = {k: v for k, v in grid.attrs.items() if isinstance(v, str | int | float)}
    copy = grid.copy(deep=False)
    copy.attrs = {**attrs, "eoembed_meta": meta_json}
    return copy


def _saved_meta(emb: Embedding, wanted: OutputSpec) -> dict[str, Any]:
    """The metadata to save: ``wanted`` as the output spec when the CLI pooled a grid itself."""
    if wanted.mode == "pooled" and emb.is_grid:
        return {**emb.meta, "output": wanted.to_dict(), "pooled_from": emb.meta["output"]}
    return emb.meta


def _save(emb: Embedding, vector: np.ndarray, wanted: OutputSpec, path: Path) -> None:
    """Write the embedding (grid or vector, as ``wanted``) and its metadata to ``path``."""
    import numpy as np

    meta = _saved_meta(emb, wanted)
    meta_json = json.dumps(meta, default=str)
    array = np.asarray(emb.data) if wanted.mode == "grid" else vector
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, array)
    elif suffix == ".npz":
        np.savez(path, data=array, meta=np.array(meta_json))
    elif suffix == ".json":
        payload = {"vector": vector.tolist(), "meta": meta}
        path.write_text(json.dumps(payload, default=str), encoding="utf-8")
    elif suffix == ".nc":
        _grid_to_save(cast("xr.DataArray", emb.data), meta_json).to_netcdf(path)
    else:
        _grid_to_save(cast("xr.DataArray", emb.data), meta_json).rio.to_raster(path)


def _summary(emb: Embedding, vector: np.ndarray, pooling: Pooling) -> Table:
    """Model, provider, scenes, input grid, output grid, warnings and timings."""
    meta = emb.meta
    grid = meta["input_grid"] or {"crs": "no CRS"}
    timings = meta["timings"]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("model", f"{meta['model']} on {meta['device']}")
    table.add_row("provider", meta["provider"])
    table.add_row("scenes", ", ".join(meta["scene_ids"]) or "none")
    table.add_row(
        "input", f"{meta['input_shape'][0]} bands, {meta['input_shape'][2]}x"
        f"{meta['input_shape'][1]} px "
        f"of {meta['sensor']['scale_m']:g} m on {grid['crs']}",
    )
    if emb.is_grid and meta.get("output_grid"):
        cells = meta["output_grid"]
        table.add_row("grid", f"{tuple(emb.data.shape)} (dim, y, x) on {cells['crs']}, "
                      f"cells of {cells['transform'][0]:g} m")
    how = (f"{_grid_reduction(pooling)} of the grid" if emb.is_grid
           else f"{meta['output']['pooling']} pooling of the model output")
    table.add_row("vector", f"{vector.shape[0]} values, {how}")
    table.add_row("time", f"fetch {timings['fetch_s']:.2f} s, embed {timings['embed_s']:.2f} s")
    for warning in meta.get("warnings", []):
        table.add_row("warning", Text(warning, style="yellow"))
    return table


_IMAGE = "Your own image (instead of a region)"
ImageOpt = Annotated[
    Path | None,
    typer.Option("--image", metavar="FILE", rich_help_panel=_IMAGE, exists=True, dir_okay=False,
                 help="Embed this raster (GeoTIFF) as it is: no provider, no resampling; band "
                 "names from its band descriptions or --bands."),
]
ImageSensorOpt = Annotated[
    str | None,
    typer.Option("--sensor", rich_help_panel=_IMAGE,
                 help="With --image: the sensor naming its bands (sentinel-2, landsat-8, ...)."),
]
ImageUnitOpt = Annotated[
    str, typer.Option("--unit", rich_help_panel=_IMAGE,
                      help="With --image: its values, dn (reflectance x 10000) or reflectance."),
]


def _embed_image(
    model: str, image: Path, bands: str | None, sensor: str | None, unit: str,
    output: OutputSpec, device: str, model_args: dict[str, Any],
) -> Embedding:
    """``--image``: the file's pixels through :func:`eoembed.get_embedding_from_data`."""
    from eoembed.arrays import get_embedding_from_data, read_image

    pixels, names, crs, transform = read_image(image)
    given = [b.strip() for b in bands.split(",") if b.strip()] if bands else names
    emb = get_embedding_from_data(model, pixels, bands=given, sensor=sensor, unit=unit,
                                  crs=crs, transform=transform, output=output, device=device,
                                  **model_args)
    assert not isinstance(emb, list)
    emb.meta["image"] = str(image)
    return emb


@app.command("embed")
def embed_command(
    model: ModelOpt = "mosaiks",
    provider: JobProviderOpt = None,
    collection: CollectionOpt = None, bands: BandsOpt = None, scale_m: ScaleOpt = None,
    cloudy_pct: CloudyPctOpt = None, composite: CompositeOpt = None, mask: MaskOpt = None,
    resampling: ResamplingOpt = None, fill_value: FillValueOpt = None,
    lon: LonOpt = None,
    lat: LatOpt = None,
    buffer_m: BufferOpt = 1280.0,
    bbox: BBoxOpt = None,
    crs: CrsOpt = "EPSG:4326",
    year: YearOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    frames: FramesOpt = None,
    output: OutputOpt = OutputMode.pooled,
    pooling: PoolingOpt = Pooling.default,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = None,
    arg: ArgsOpt = None,
    out: OutOpt = None,
    png: PngOpt = None,
    quiet: QuietOpt = False,
    image: ImageOpt = None,
    sensor: ImageSensorOpt = None,
    unit: ImageUnitOpt = "dn",
) -> None:
    """Embed one region over one time window; print a summary and the vector's first values.

    Or embed your own raster with --image FILE (bands from its descriptions, or --bands and
    --sensor): no region, window or provider then.

    The region is --lon/--lat/--buffer-m (a square in ground metres) or --bbox/--crs; the
    window is --year or --start/--end; sensor flags change the model's own sensor (the
    imagery read). For grid output the printed vector is the grid pooled
    with --pooling. With --png and a --pooling that reduces the grid, the model runs once, in
    grid mode: the grid makes the picture and, reduced, gives the vector (identical to the
    model's pooled output); a class-token or native pooling runs it twice.
    """
    from eoembed import OutputSpec, get_embedding
    from eoembed.api import default_provider, sensor_from_fields
    from eoembed.embedders import describe_model

    fields = sensor_fields(collection, None if image is not None else bands, scale_m, cloudy_pct,
                           composite, mask, resampling, fill_value)
    if image is not None:
        given = [flag for flag, value in (("--lon/--lat", lon if lon is not None else lat),
                                          ("--bbox", bbox), ("--year", year), ("--start", start),
                                          ("--end", end), ("--frames", frames), ("--png", png))
                 if value is not None] + [f"--{k.replace('_', '-')}" for k in fields]
        if given:
            raise typer.BadParameter(f"--image takes no {', '.join(given)}", param_hint="--image")
    elif sensor is not None:
        raise typer.BadParameter("--sensor names the bands of an --image", param_hint="--image")
    spatial = _region(lon, lat, buffer_m, bbox, crs) if image is None else None
    temporal = _window(year, start, end) if image is None else None
    model_args = parse_model_args(arg or [])
    if precision is not None:
        model_args["precision"] = precision.value
    card = describe_model(model, **model_args)
    if png is not None and card.product is not None:
        raise typer.BadParameter(
            f"{model!r} is a published product: there is no input imagery to draw beside it",
            param_hint="--png",
        )
    if provider is None:  # a published product's own provider, else the sample
        provider = default_provider([card])
    sensor_spec = sensor_from_fields(model, fields, provider, model_args) if fields else None
    wanted = _output_spec(output, pooling)
    if out is not None:
        check_out_path(out, wanted.mode)
        check_output_file(out, "--out")
    if png is not None:
        check_output_file(png, "--png")
        if importlib.util.find_spec("matplotlib") is None:
            raise DependencyNotFoundError("matplotlib", "plot")
    # With --png one grid run serves both, unless the vector is not a reduction of the grid.
    one_run = png is not None and pooling.value == _grid_reduction(pooling)
    request = {"spatial": spatial, "temporal": temporal, "provider": provider,
               "sensor": sensor_spec,
               "device": device, "frames": frames, **model_args}
    if image is not None:
        emb = _embed_image(model, image, bands, sensor, unit, wanted, device, model_args)
    else:
        emb = get_embedding(model, output=OutputSpec.grid() if one_run else wanted, **request)
    vector = _vector(emb, pooling)
    if png is not None:
        assert spatial is not None and temporal is not None
        picture = emb if emb.is_grid else get_embedding(model, output=OutputSpec.grid(),
                                                        **request)
        _write_png(model, spatial, temporal, provider, picture, png, sensor_spec)
    if out is not None:
        _save(emb, vector, wanted, out)
    if quiet:
        return
    console = _console()
    console.print(_summary(emb, vector, pooling))
    shown = " ".join(f"{v:.4f}" for v in vector[:_SHOWN_VALUES])
    console.print(f"first {min(_SHOWN_VALUES, len(vector))} of {len(vector)}: {shown}",
                  soft_wrap=True, highlight=False)
    for label, path in (("saved", out), ("picture", png)):
        if path is not None:
            console.print(f"{label}: {path}", soft_wrap=True, highlight=False)


app.command("export")(export_command)
app.command("stac")(stac_command)
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("predict")(predict_command)
app.command("compare")(compare_command)


# -- plugins ------------------------------------------------------------------------------------

PLUGIN_GROUP = "eoembed.cli"
"""Entry-point group of commands from other packages: a ``typer.Typer`` (added as a group) or a
function (added as a command), under the entry point's name."""


def load_plugins(target: typer.Typer, group: str = PLUGIN_GROUP) -> list[str]:
    """Add the commands other packages declare under the entry-point ``group`` to ``target``.

    A plugin that fails to import is skipped with a one-line warning, so it cannot break
    ``eoembed`` itself.

    Returns:
        The names of the commands added.
    """
    from importlib.metadata import entry_points

    added = []
    for entry in entry_points(group=group):
        try:
            command = entry.load()
        except Exception as exc:  # noqa: BLE001  (any failure of third-party code)
            message = f"warning: plugin {entry.name!r} ({entry.value}) not loaded: {exc}"
            _console(stderr=True).print(Text(message, style="yellow"), soft_wrap=True)
            continue
        if isinstance(command, typer.Typer):
            target.add_typer(command, name=entry.name)
        else:
            target.command(entry.name)(command)
        added.append(entry.name)
    return added


load_plugins(app)


def main() -> None:
    """Console-script entry point (``eoembed``)."""
    app()
