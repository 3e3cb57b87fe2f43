"""``eoembed``: models, describe, embed, weights. Parsing and printing only; logic lives in the API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from eoembed.errors import EoembedError

app = typer.Typer(
    name="eoembed", help="Embeddings from remote-sensing foundation models.",
    no_args_is_help=True, pretty_exceptions_enable=False,
)
weights_app = typer.Typer(help="Pre-fetch pretrained weights on a connected machine.")
app.add_typer(weights_app, name="weights")


def _console(stderr: bool = False) -> Console:
    # Built per call so that the terminal width (COLUMNS) is read when printing.
    return Console(stderr=stderr)


@app.command("models")
def models_command() -> None:
    """List the registered models."""
    from eoembed.embedders import describe_model, list_models

    table = Table()
    table.add_column("id", no_wrap=True)
    for column in ("family", "dim", "outputs", "bands", "GSD", "weights"):
        table.add_column(column)
    for model_id in list_models():
        card = describe_model(model_id)
        table.add_row(
            card.id, card.family, str(card.embedding_dim), ", ".join(card.outputs),
            _bands_text(card.input.band_names), f"{card.input.gsd_m:g} m",
            "pinned hub" if card.weights else "none",
        )
    _console().print(table)


def _bands_text(bands: tuple[str, ...]) -> str:
    return ",".join(bands) if len(bands) <= 4 else f"{len(bands)}: {bands[0]}..{bands[-1]}"


@app.command("describe")
def describe_command(
    model: Annotated[str, typer.Argument(help="A model id from `eoembed models`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
) -> None:
    """Show a model card: input contract, outputs, weights, licence, citation."""
    from eoembed.embedders import describe_model

    card = describe_model(model).to_dict()
    if as_json:
        typer.echo(json.dumps(card, indent=2))
    else:
        _console().print_json(data=card)


@weights_app.command("download")
def weights_download_command(
    models: Annotated[list[str], typer.Argument(help="Model ids.")],
) -> None:
    """Download and verify the pinned weights of MODELS into the Hugging Face cache."""
    from eoembed.embedders import describe_model
    from eoembed.embedders.weights import download_weights

    for model in models:
        source = describe_model(model).weights
        if source is None:
            _console().print(f"{model}: no weights needed")
            continue
        _console().print(f"{model}: {download_weights(model, source)}")


def _parse_args(pairs: list[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--arg {pair!r}: expected key=value")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


@app.command("embed")
def embed_command(
    model: Annotated[str, typer.Option(help="Model id.")] = "mosaiks",
    provider: Annotated[str, typer.Option(help="Provider name or name:argument.")] = "sample",
    lon: Annotated[float | None, typer.Option(help="Point longitude.")] = None,
    lat: Annotated[float | None, typer.Option(help="Point latitude.")] = None,
    buffer_m: Annotated[float, typer.Option(help="Half side of the square, metres.")] = 1280,
    bbox: Annotated[str | None, typer.Option(help="minlon,minlat,maxlon,maxlat")] = None,
    crs: Annotated[str, typer.Option(help="CRS of --bbox.")] = "EPSG:4326",
    year: Annotated[int | None, typer.Option(help="Calendar year.")] = None,
    start: Annotated[str | None, typer.Option(help="First day, YYYY[-MM[-DD]].")] = None,
    end: Annotated[str | None, typer.Option(help="First day excluded.")] = None,
    output: Annotated[str, typer.Option(help="pooled or grid.")] = "pooled",
    pooling: Annotated[str, typer.Option(help="mean, max, min, std, median.")] = "mean",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda...")] = "auto",
    arg: Annotated[list[str] | None, typer.Option(help="Model argument key=value.")] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help=".npy, .json (pooled); .tif, .nc (grid)")
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option(help="Write input RGB beside the PCA of the grid embedding (computes "
                     "the grid once and pools it for the printed vector)."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Print only the vector.")] = False,
) -> None:
    """Embed one region and time window; print the vector, optionally save it and a picture."""
    from eoembed import BBox, OutputSpec, PointBuffer, TemporalSpec, get_embedding
    from eoembed.embedders.base import pool_grid
    from eoembed.errors import SpecError

    if bbox is not None:
        try:
            values = [float(v) for v in bbox.split(",")]
        except ValueError:
            raise SpecError("--bbox", bbox, allowed="minlon,minlat,maxlon,maxlat") from None
        if len(values) != 4:
            raise SpecError("--bbox", bbox, allowed="four comma-separated numbers")
        spatial: Any = BBox(values[0], values[1], values[2], values[3], crs=crs)
    elif lon is not None and lat is not None:
        spatial = PointBuffer(lon, lat, buffer_m)
    else:
        raise SpecError("region", None, allowed="--lon and --lat, or --bbox")
    if year is not None:
        temporal = TemporalSpec.year(year)
    elif start is not None and end is not None:
        temporal = TemporalSpec.range(start, end)
    else:
        raise SpecError("time", None, allowed="--year, or --start and --end")
    wanted = OutputSpec.grid() if output == "grid" else OutputSpec.pooled(pooling)
    spec = OutputSpec.grid() if png is not None else wanted
    emb = get_embedding(
        model, spatial=spatial, temporal=temporal, output=spec, provider=provider,
        device=device, **_parse_args(arg or []),
    )
    vector = emb.numpy() if not emb.is_grid else pool_grid(emb.numpy()[None], pooling)[0]
    if png is not None:
        _write_png(model, spatial, temporal, provider, emb.data, png)
    if out_file is not None:
        _write_output(emb.data if wanted.mode == "grid" else vector, emb.meta, out_file)
    if not quiet:
        meta = emb.meta
        grid = meta["input_grid"]
        _console().print(
            f"[bold]{model}[/] on {meta['provider']} scenes {', '.join(meta['scene_ids'])}\n"
            f"input {meta['input_shape']} on {grid['crs']} {grid['width']}x{grid['height']} px;"
            f" embedding dim {meta['embedding_dim']}"
            + (f"; grid {tuple(emb.data.shape)}" if emb.is_grid else "")
        )
    with _numpy_print():
        typer.echo(vector)


def _numpy_print() -> Any:
    import numpy as np

    return np.printoptions(precision=4, threshold=16, edgeitems=8)


def _write_png(model: str, spatial: Any, temporal: Any, provider: str, grid: Any,
               path: Path) -> None:
    from eoembed import SensorSpec
    from eoembed.embedders import describe_model
    from eoembed.providers import get_provider
    from eoembed.viz import save_comparison_png

    card = describe_model(model)
    sensor = SensorSpec(card.input.collections[0], ("B04", "B03", "B02"), card.input.gsd_m)
    patch = get_provider(provider).fetch(spatial, temporal, sensor)
    save_comparison_png(patch, grid, path, title=f"{model}: {temporal}")


def _write_output(data: Any, meta: dict[str, Any], path: Path) -> None:
    import numpy as np

    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, np.asarray(data))
    elif suffix == ".npz":
        np.savez(path, embedding=np.asarray(data), meta=json.dumps(meta, default=str))
    elif suffix == ".json":
        path.write_text(json.dumps({"embedding": np.asarray(data).tolist(), "meta": meta},
                                   default=str))
    elif suffix in (".tif", ".tiff") and hasattr(data, "rio"):
        data.rio.to_raster(path)
    elif suffix == ".nc" and hasattr(data, "rio"):
        data.attrs = {k: v for k, v in data.attrs.items() if isinstance(v, str | int | float)}
        data.to_netcdf(path)
    else:
        from eoembed.errors import SpecError

        raise SpecError("--out", str(path), allowed=".npy, .npz, .json; .tif or .nc for grids")


def main() -> None:
    """Entry point: user errors are one line on stderr and exit code 2."""
    try:
        app(standalone_mode=False)
    except (EoembedError, typer.BadParameter) as exc:
        _console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
