"""The command line, run in-process through typer's CliRunner on the real sample scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from eoembed.cli.main import app, main

EMBED = [
    "embed", "--model", "mosaiks", "--provider", "sample", "--lon", "-75.70", "--lat", "37.70",
    "--buffer-m", "1280", "--start", "2015-06-23", "--end", "2016-06-11",
]


def test_models_lists_every_registered_model() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    assert "mosaiks" in result.output and "ssl4eo-s12-vit-s16-dino" in result.output


def test_describe_json_is_the_card() -> None:
    result = CliRunner().invoke(app, ["describe", "ssl4eo-s12-vit-s16-moco", "--json"])
    card = json.loads(result.output)
    assert card["embedding_dim"] == 384
    assert card["weights"]["revision"] == "1cb683f6c14739634cdfaaceb076529adf898c74"


def test_embed_prints_vector_and_writes_png_and_npy(tmp_path: Path) -> None:
    from PIL import Image

    png, npy = tmp_path / "s.png", tmp_path / "v.npy"
    result = CliRunner().invoke(app, [*EMBED, "--png", str(png), "--out", str(npy)])
    assert result.exit_code == 0, result.output
    vector = np.load(npy)
    assert vector.shape == (512,) and np.isfinite(vector).all() and vector.std() > 0
    assert f"{vector[0]:.4f}" in result.output
    image = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    left, right = image[:, : image.shape[1] // 2], image[:, image.shape[1] // 2 :]
    assert left.std() > 10 and right.std() > 10


def test_embed_grid_geotiff_is_georeferenced(tmp_path: Path) -> None:
    import rioxarray

    tif = tmp_path / "g.tif"
    result = CliRunner().invoke(app, [*EMBED, "--output", "grid", "--out", str(tif)])
    assert result.exit_code == 0, result.output
    grid = rioxarray.open_rasterio(tif)
    left, bottom, right, top = grid.rio.bounds()
    assert grid.rio.crs.to_epsg() == 32618
    assert right - left == pytest.approx(2560) and top - bottom == pytest.approx(2560)
    assert grid.shape == (512, 32, 32)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (["--lat", "95"], "PointBuffer.lat"),
        (["--end", "2015-01-01"], "TemporalSpec.end"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--provider", "nowhere"], "unknown provider 'nowhere'"),
        (["--arg", "colour=1"], "no argument 'colour'"),
    ],
)
def test_user_errors_are_one_line_exit_2(
    change: list[str], needle: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = list(EMBED)
    for flag, value in zip(change[::2], change[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    monkeypatch.setattr("sys.argv", ["eoembed", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    stderr = capsys.readouterr().err
    assert needle in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
