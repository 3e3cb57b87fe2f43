"""Published embedding products in their real layouts, made from the sample scene's pixels.

The values are not the products' (those cannot be downloaded here) but have the sample's
spatial structure: each pixel's 64 or 128 dimensions are a fixed random non-linear mix of
its four 10 m bands, normalised to unit length as AlphaEarth's are. Files, names, tiling,
encoding and orientation follow each product's documentation, so the providers read them
by the same code paths as the real ones; the true (unquantised) values come back with the
fixture so tests can check dequantisation, orientation and georeferencing pixel by pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "AlphaEarthFixture",
    "TesseraFixture",
    "make_alphaearth_mirror",
    "make_copernicus_embed_map",
    "make_majortom_hub",
    "majortom_cell",
    "make_tessera_server",
    "mix_features",
    "sample_features",
]

BUCKET = "s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual"
"""Where the real index's ``path`` column points (the mirror's bucket)."""


def sample_features(
    sample_dir: str | Path, row0: int, col0: int, size: int, dim: int, seed: int
) -> tuple[np.ndarray, str, Any]:
    """``(dim, size, size)`` unit vectors from the sample's 10 m bands, its CRS and transform.

    Rows/cols are of the sample's 10 m grid; the transform is the crop's (north-up).
    """
    import rasterio
    from rasterio.windows import Window

    bands = []
    for name in ("B02", "B03", "B04", "B08"):
        with rasterio.open(Path(sample_dir) / f"s2_{name}.jp2") as src:
            window = Window(col0, row0, size, size)
            bands.append(src.read(1, window=window).astype(np.float32) / 10000.0)
            crs, transform = src.crs.to_string(), src.window_transform(window)
    return mix_features(np.stack(bands), dim, seed), crs, transform


def mix_features(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """``(4, y, x)`` reflectance -> ``(dim, y, x)`` unit vectors (a seeded non-linear mix)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, 4)).astype(np.float32) * 8
    bias = rng.normal(size=(dim, 1, 1)).astype(np.float32)
    v = np.tanh(np.einsum("dc,cyx->dyx", mix, x - x.mean(axis=(1, 2), keepdims=True)) + bias)
    v /= np.linalg.norm(v, axis=0, keepdims=True)
    out: np.ndarray = v.astype(np.float32)
    return out


def quantise_alphaearth(values: np.ndarray) -> np.ndarray:
    """The inverse of the product's dequantisation: ``round(sign(v) sqrt(|v|) 127.5)``."""
    codes = np.round(np.sign(values) * np.sqrt(np.abs(values)) * 127.5)
    out: np.ndarray = np.clip(codes, -127, 127).astype(np.int8)
    return out


@dataclass
class AlphaEarthFixture:
    """A mirror folder (``base``: what ``AlphaEarthProvider`` is given) and its truth."""

    base: Path
    crs: str
    transform: Any
    """North-up transform of the whole crop (all tiles together)."""
    codes: dict[int, np.ndarray] = field(default_factory=dict)
    """Year -> the stored int8 codes ``(64, y, x)``, north-up, -128 where no data."""
    values: dict[int, np.ndarray] = field(default_factory=dict)
    """Year -> the unquantised unit vectors ``(64, y, x)``, north-up."""
    files: list[Path] = field(default_factory=list)


def make_alphaearth_mirror(
    root: str | Path,
    sample_dir: str | Path,
    *,
    years: tuple[int, ...] = (2023, 2024),
    row0: int = 800,
    col0: int = 600,
    size: int = 512,
    tile: int = 256,
    nodata_rows: tuple[int, int] = (40, 60),
) -> AlphaEarthFixture:
    """The AlphaEarth COG mirror's layout over a crop of the sample scene.

    ``<root>/v1/annual/aef_index.parquet`` (GeoParquet: ``fid``, ``path`` as ``s3://`` bucket
    URLs, ``year``, ``crs``, ``utm_zone``, UTM and WGS84 bounds, lon/lat footprint) and
    ``<root>/v1/annual/{year}/18N/{image}-{yoff:010d}-{xoff:010d}.tiff``: ``tile`` x ``tile``
    pixels, 64 int8 bands ``A00``..``A63``, nodata -128, stored bottom-up (positive pixel
    height) as the mirror's are. Rows ``nodata_rows`` of the crop hold -128 in every band
    (masked pixels are masked in all channels). Each year's values differ (another mix).
    """
    import geopandas as gpd
    import rasterio
    import shapely
    from affine import Affine
    from pyproj import Transformer

    base = Path(root) / "v1" / "annual"
    fixture: AlphaEarthFixture | None = None
    rows: list[dict[str, Any]] = []
    for year in years:
        values, crs, transform = sample_features(sample_dir, row0, col0, size, 64, seed=year)
        codes = quantise_alphaearth(values)
        codes[:, nodata_rows[0] : nodata_rows[1], :] = -128
        if fixture is None:
            fixture = AlphaEarthFixture(base=base, crs=crs, transform=transform)
        fixture.codes[year], fixture.values[year] = codes, values
        to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        for yoff in range(0, size, tile):
            for xoff in range(0, size, tile):
                name = f"xfixture{year}aef-{yoff:010d}-{xoff:010d}"
                path = base / str(year) / "18N" / f"{name}.tiff"
                block = codes[:, yoff : yoff + tile, xoff : xoff + tile]
                west = transform.c + xoff * transform.a
                north = transform.f + yoff * transform.e
                south = north + tile * transform.e
                east = west + tile * transform.a
                bottom_up = Affine(transform.a, 0.0, west, 0.0, -transform.e, south)
                path.parent.mkdir(parents=True, exist_ok=True)
                with rasterio.open(
                    path, "w", driver="GTiff", count=64, height=tile, width=tile, dtype="int8",
                    crs=crs, transform=bottom_up, nodata=-128, tiled=True, blockxsize=128,
                    blockysize=128, compress="deflate", interleave="band",
                ) as dst:
                    dst.write(block[:, ::-1, :])  # row 0 is the southern row
                    dst.descriptions = tuple(f"A{i:02d}" for i in range(64))
                fixture.files.append(path)
                ring = shapely.segmentize(shapely.box(west, south, east, north), 100.0)
                xs, ys = to_lonlat.transform(*np.asarray(ring.exterior.coords).T)
                footprint = shapely.Polygon(np.column_stack([xs, ys]))
                lon0, lat0, lon1, lat1 = footprint.bounds
                rows.append({
                    "fid": len(rows), "path": f"{BUCKET}/{year}/18N/{name}.tiff", "year": year,
                    "crs": crs, "utm_zone": "18N", "utm_west": west, "utm_south": south,
                    "utm_east": east, "utm_north": north, "wgs84_west": lon0,
                    "wgs84_south": lat0, "wgs84_east": lon1, "wgs84_north": lat1,
                    "geometry": footprint,
                })
    assert fixture is not None
    gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326").to_parquet(
        base / "aef_index.parquet"
    )
    return fixture


@dataclass
class TesseraFixture:
    """A TESSERA server folder (``root``: what ``tessera:URL`` serves) and its truth."""

    root: Path
    tile: tuple[float, float]
    """The tile's centre (lon, lat)."""
    year: int
    crs: str
    transform: Any
    """The tile's grid (from its landmask)."""
    values: np.ndarray
    """Dequantised ``(128, y, x)`` as stored (codes x scales), NaN where no data: NaN or
    sentinel scales, and water (landmask 0)."""


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tessera_server(
    root: str | Path, sample_dir: str | Path, *, tile: tuple[float, float] = (-75.65, 37.65),
    year: int = 2024, version: str = "v1", nodata_rows: tuple[int, int] = (100, 120),
) -> TesseraFixture:
    """One TESSERA tile over the sample scene in geotessera's server layout.

    ``<root>/<version>/registry.parquet`` and ``landmasks.parquet`` (GeoParquet, points at
    tile centres, sha256 of every file, as geotessera 0.7.5 reads them),
    ``global_0.1_degree_representation/{year}/grid_X_Y/grid_X_Y.npy`` (int8 ``(H, W, 128)``)
    with ``grid_X_Y_scales.npy`` (float32 ``(H, W)``; NaN in ``nodata_rows``, the largest
    float32 in a few pixels after them) and ``global_0.1_degree_tiff_all/grid_X_Y.tiff``
    (uint8 landmask, 0 where the sample shows water, on the tile's 10 m UTM grid anchored at
    the projected corner of the 0.1 degree box).
    """
    import datetime as dt

    import geopandas as gpd
    import rasterio
    import shapely
    from affine import Affine
    from pyproj import Transformer
    from rasterio.warp import Resampling, reproject

    lon, lat = tile
    name = f"grid_{lon:.2f}_{lat:.2f}"
    crs = "EPSG:32618"
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    xs, ys = to_utm.transform([lon - 0.05, lon + 0.05, lon + 0.05, lon - 0.05],
                              [lat - 0.05, lat - 0.05, lat + 0.05, lat + 0.05])
    left, top = min(xs), max(ys)
    width, height = int(np.ceil((max(xs) - left) / 10)), int(np.ceil((top - min(ys)) / 10))
    transform = Affine(10.0, 0.0, left, 0.0, -10.0, top)
    bands = []
    for band in ("B02", "B03", "B04", "B08"):
        with rasterio.open(Path(sample_dir) / f"s2_{band}.jp2") as src:
            out = np.zeros((height, width), np.float32)
            reproject(src.read(1).astype(np.float32) / 10000.0, out, src_transform=src.transform,
                      src_crs=src.crs, dst_transform=transform, dst_crs=crs,
                      resampling=Resampling.nearest)
            bands.append(out)
    vectors = mix_features(np.stack(bands), 128, seed=year)  # (128, H, W)
    scales = (np.abs(vectors).max(axis=0) / 127.0).astype(np.float32)
    codes = np.round(vectors / scales).astype(np.int8)
    scales[nodata_rows[0] : nodata_rows[1]] = np.nan
    scales[nodata_rows[1] : nodata_rows[1] + 2, :50] = np.finfo(np.float32).max  # a sentinel
    land = (bands[3] >= 0.1).astype(np.uint8)  # water (NIR reflectance < 0.1) is 0
    with np.errstate(over="ignore", invalid="ignore"):
        values = codes.astype(np.float32) * scales
    values[:, ~(np.isfinite(scales) & (scales < 1.0) & (land == 1))] = np.nan
    base = Path(root) / version
    tile_dir = base / "global_0.1_degree_representation" / str(year) / name
    tile_dir.mkdir(parents=True, exist_ok=True)
    np.save(tile_dir / f"{name}.npy", np.ascontiguousarray(np.moveaxis(codes, 0, -1)))
    np.save(tile_dir / f"{name}_scales.npy", scales)
    landmask = base / "global_0.1_degree_tiff_all" / f"{name}.tiff"
    landmask.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(landmask, "w", driver="GTiff", height=height, width=width, count=1,
                       dtype="uint8", crs=crs, transform=transform, compress="lzw") as dst:
        dst.write(land[None])
    lon_i, lat_i = round(lon * 100), round(lat * 100)
    point = shapely.Point(lon, lat)
    embedding, scales_file = tile_dir / f"{name}.npy", tile_dir / f"{name}_scales.npy"
    gpd.GeoDataFrame([{
        "lat": lat, "lon": lon, "year": year, "hash": _sha256(embedding),
        "scales_hash": _sha256(scales_file), "mtime": dt.datetime(year + 1, 3, 1),
        "file_size": embedding.stat().st_size, "scales_size": scales_file.stat().st_size,
        "lon_i": np.int32(lon_i), "lat_i": np.int32(lat_i), "geometry": point,
    }], geometry="geometry", crs="EPSG:4326").to_parquet(base / "registry.parquet")
    gpd.GeoDataFrame([{
        "lat": lat, "lon": lon, "hash": _sha256(landmask), "file_size": landmask.stat().st_size,
        "lon_i": np.int32(lon_i), "lat_i": np.int32(lat_i), "geometry": point,
    }], geometry="geometry", crs="EPSG:4326").to_parquet(base / "landmasks.parquet")
    return TesseraFixture(root=Path(root), tile=tile, year=year, crs=crs, transform=transform,
                          values=values)


def make_copernicus_embed_map(
    path: str | Path, sample_dir: str | Path, *, west: float = -77.0, north: float = 39.0,
    width: int = 13, height: int = 11, ocean_east_of: float = -75.6,
) -> tuple[Path, np.ndarray, Any]:
    """A crop of Copernicus-Embed's GeoTIFF layout around the sample scene.

    768 float32 bands, EPSG:4326, 0.25 degree cells whose centres lie on the lattice
    (``west``, ``north`` are centres; the transform's corner is half a cell beyond, as in
    TorchGeo's fixture of the file), pixel-interleaved 16 x 16 tiles. Cells over the sample
    hold the mix of its mean reflectance there; other land cells a mix of a seeded random
    reflectance; cells east of ``ocean_east_of`` (the Atlantic) all zeros, as empty cells
    are in the product. Returns the path, the ``(768, height, width)`` values and the
    transform.
    """
    import rasterio
    from affine import Affine
    from pyproj import Transformer

    transform = Affine(0.25, 0.0, west - 0.125, 0.0, -0.25, north + 0.125)
    sums = np.zeros((4, height, width))
    counts = np.zeros((height, width))
    with rasterio.open(Path(sample_dir) / "s2_B02.jp2") as src:
        rows, cols = np.mgrid[0 : src.height : 8, 0 : src.width : 8]
        xs, ys = src.xy(rows.ravel(), cols.ravel())
        lon, lat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    cell_c = np.floor((np.asarray(lon) - transform.c) / 0.25).astype(int)
    cell_r = np.floor((transform.f - np.asarray(lat)) / 0.25).astype(int)
    for i, band in enumerate(("B02", "B03", "B04", "B08")):
        with rasterio.open(Path(sample_dir) / f"s2_{band}.jp2") as src:
            values = src.read(1)[::8, ::8].ravel().astype(np.float64) / 10000.0
        np.add.at(sums[i], (cell_r, cell_c), values)
        if i == 0:
            np.add.at(counts, (cell_r, cell_c), 1)
    rng = np.random.default_rng(7)
    reflectance = np.where(counts > 0, sums / np.maximum(counts, 1),
                           rng.uniform(0.02, 0.4, (4, height, width)))
    values = mix_features(reflectance.astype(np.float32), 768, seed=11)
    centres = transform.c + (np.arange(width) + 0.5) * 0.25
    values[:, :, centres > ocean_east_of] = 0.0
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(out, "w", driver="GTiff", height=height, width=width, count=768,
                       dtype="float32", crs="EPSG:4326", transform=transform, tiled=True,
                       blockxsize=16, blockysize=16, compress="deflate",
                       interleave="pixel") as dst:
        dst.write(values)
    return out, values, transform


MAJORTOM_ROW_DEG = 180 / 2004
"""Height of a 10 km Major TOM row in degrees (Major TOM's grid.py: ceil(pi R / 10 km) rows)."""


def majortom_cell(lon: float, lat: float) -> tuple[str, int, int]:
    """The 10 km Major TOM cell holding (lon, lat): name (``"419U_836L"``), row, column.

    As Major TOM's ``grid.py`` lays it out: rows of 180/2004 degrees from the equator (U
    north, D south), each cut into ``ceil(2 pi R cos(row_lat) / 10 km)`` columns from the
    prime meridian (R east, L west); cells are named by their bottom-left corner.
    """
    import math

    row = math.floor(lat / MAJORTOM_ROW_DEG)
    columns = math.ceil(2 * math.pi * 6378.137 * math.cos(math.radians(row * MAJORTOM_ROW_DEG))
                        / 10)
    col = math.floor(lon / (360 / columns))
    name = f"{abs(row)}{'U' if row >= 0 else 'D'}_{abs(col)}{'R' if col >= 0 else 'L'}"
    return name, row, col


def _majortom_rows(
    reflectance: np.ndarray, boxes: Sequence[tuple[float, float, float, float]], crs: str,
    pixel_boxes: list[list[int]], cell: tuple[str, int, int], timestamp: str, dim: int,
) -> list[dict[str, Any]]:
    """Rows of one Major TOM sample: one per fragment box (UTM), embedding from reflectance."""
    import hashlib

    import shapely
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    vectors = mix_features(reflectance[:, None, :].astype(np.float32), dim, seed=dim)[:, 0, :]
    rows = []
    for k, (box, pixels) in enumerate(zip(boxes, pixel_boxes, strict=True)):
        utm = shapely.box(*box)
        xs, ys = to_lonlat.transform(*np.asarray(shapely.segmentize(utm, 50.0).exterior.coords).T)
        footprint = shapely.Polygon(np.column_stack([xs, ys]))
        centre = footprint.centroid
        embedding = vectors[:, k].astype(np.float32)
        rows.append({
            "unique_id": hashlib.sha256(
                f"{footprint.wkt}_{timestamp}_{cell[0]}_{embedding.tobytes().hex()}".encode()
            ).hexdigest(),
            "embedding": embedding,
            "timestamp": timestamp,
            "product_id": f"S2A_MSIL1C_{timestamp}_FIXTURE_{cell[0]}",
            "grid_cell": cell[0],
            "grid_row_u": np.int16(cell[1]),
            "grid_col_r": np.int16(cell[2]),
            "geometry": footprint,
            "centre_lat": np.float32(centre.y),
            "centre_lon": np.float32(centre.x),
            "utm_footprint": utm.wkt,
            "utm_crs": crs,
            "pixel_bbox": pixels,
        })
    return rows


def make_majortom_hub(
    root: str | Path, sample_dir: str | Path, *, repo_id: str = "Major-TOM/Core-S2L1C-SSL4EO",
    dim: int = 2048, timestamp: str = "20150623T000000", far_cells: int = 40,
) -> dict[str, Any]:
    """A Major TOM embedding set in the Hub's URL layout, one sample cut from the sample scene.

    ``<root>/datasets/<repo>/resolve/main/embeddings/part_00001-00050.parquet`` (``far_cells``
    synthetic samples elsewhere on Earth) and ``part_00051-00100.parquet`` (the sample
    scene's 1068 x 1068 px crop as one Major TOM sample: 25 fragments of 224 px at offsets
    0, 211, ..., 844, then further synthetic samples), one sample per row group, with the
    embedding sets' 13 columns; and ``<root>/api/datasets/<repo>/tree/main/embeddings``, the
    Hub's tree listing of that folder. ``timestamp`` labels the sample's rows: the scene's
    acquisition day is unknown, so the fixture uses the first day it may have been taken.
    Returns the fragments' UTM boxes, embeddings and the listing's shard paths.
    """
    import json

    import geopandas as gpd
    import rasterio
    from rasterio.windows import Window

    offsets = [0, 211, 422, 633, 844]
    row0, col0 = 400, 400
    bands = []
    with rasterio.open(Path(sample_dir) / "s2_B02.jp2") as src:
        crs, t = src.crs.to_string(), src.window_transform(Window(col0, row0, 1068, 1068))
    for band in ("B02", "B03", "B04", "B08"):
        with rasterio.open(Path(sample_dir) / f"s2_{band}.jp2") as src:
            bands.append(src.read(1, window=Window(col0, row0, 1068, 1068)) / 10000.0)
    image = np.stack(bands)
    boxes, pixel_boxes, means = [], [], []
    for r in offsets:
        for c in offsets:
            left, top = t.c + c * 10, t.f - r * 10
            boxes.append((left, top - 2240, left + 2240, top))
            pixel_boxes.append([r, c, r + 224, c + 224])
            means.append(image[:, r : r + 224, c : c + 224].mean(axis=(1, 2)))
    centre_x, centre_y = t.c + 5340, t.f - 5340
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(centre_x,
                                                                                 centre_y)
    sample_rows = _majortom_rows(np.stack(means, axis=1), boxes, crs, pixel_boxes,
                                 majortom_cell(lon, lat), timestamp, dim)
    rng = np.random.default_rng(3)

    def far_sample(k: int) -> list[dict[str, Any]]:
        """A synthetic sample in Europe (UTM 32N), 25 fragments of one cell."""
        x0, y0 = 400_000 + 20_000 * (k % 10), 5_300_000 + 20_000 * (k // 10)
        fboxes = [(x0 + c * 2110, y0 - r * 2110 - 2240, x0 + c * 2110 + 2240, y0 - r * 2110)
                  for r in range(5) for c in range(5)]
        flon, flat = Transformer.from_crs("EPSG:32632", "EPSG:4326",
                                          always_xy=True).transform(x0, y0)
        return _majortom_rows(rng.uniform(0.02, 0.4, (4, 25)), fboxes, "EPSG:32632",
                              [[r, c, r + 224, c + 224] for r in offsets for c in offsets],
                              majortom_cell(flon, flat), "20200715T103031", dim)

    repo = Path(root) / "datasets" / repo_id / "resolve" / "main" / "embeddings"
    repo.mkdir(parents=True, exist_ok=True)
    shards = {
        "part_00001-00050.parquet": [r for k in range(far_cells) for r in far_sample(k)],
        "part_00051-00100.parquet": sample_rows + [r for k in range(far_cells, far_cells + 4)
                                                   for r in far_sample(k)],
    }
    listing = []
    for name, rows in shards.items():
        frame = gpd.GeoDataFrame(rows, geometry="geometry")
        frame.to_parquet(repo / name, row_group_size=25, index=False)
        size = (repo / name).stat().st_size
        listing.append({"type": "file", "oid": f"{size:040x}", "size": size,
                        "path": f"embeddings/{name}",
                        "lfs": {"oid": f"{size:064x}", "size": size, "pointerSize": 134}})
    tree = Path(root) / "api" / "datasets" / repo_id / "tree" / "main" / "embeddings"
    tree.parent.mkdir(parents=True, exist_ok=True)
    tree.write_text(json.dumps(listing))
    return {"boxes": boxes, "crs": crs, "embeddings": [r["embedding"] for r in sample_rows],
            "shards": [repo / name for name in shards], "timestamp": timestamp}
