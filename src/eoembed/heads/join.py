"""Join labels to embeddings by georeference, never by file order.

- Pooled rows and label points: a point labels the region whose footprint contains it (the
  one whose centre is nearest when footprints overlap). Polygons label the region they
  overlap most (areas in a metric CRS). A region with several labels takes their mean
  (regression) or most common value (classification; ties to the smallest).
- Pooled rows and a label raster: the raster's pixels whose centres fall in the footprint,
  averaged (regression) or their most common value (classification).
- Grid cells and label points: a point labels the cell it falls in; polygons are burnt onto
  each region's cell grid; a label raster is warped onto it (``rasterio.warp.reproject``,
  average or mode).
- Segmentation: the label raster is warped onto each region's grid refined ``upsample``
  times (the decoder's output grid), using the region's own CRS and transform; polygons are
  burnt onto that grid.

Labels outside every region are dropped and counted in the join report. Results are sorted
by sample id, so the same labels in any row order give identical arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.errors import SpecError
from eoembed.grid import Grid, reproject_geometry, transformer
from eoembed.heads.labels import RasterLabels, VectorLabels

if TYPE_CHECKING:
    import geopandas as gpd
    from shapely.geometry.base import BaseGeometry

    from eoembed.heads.inputs import Embeddings, RegionGrid

__all__ = [
    "SegmentationSet",
    "TabularSet",
    "auto_upsample",
    "join_segmentation",
    "join_tabular",
    "warp_labels",
]

IGNORE = -1
"""Label of pixels without a label in segmentation maps."""


@dataclass
class TabularSet:
    """One embedding and one label per sample (a pooled region, or a grid cell)."""

    x: np.ndarray
    y: np.ndarray
    ids: list[str]
    lon: np.ndarray
    lat: np.ndarray
    """Sample centres (degrees): what splits are keyed on."""
    footprints: list[BaseGeometry] | None = None
    """Each pooled region's outline (lon/lat), for maps."""
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class SegmentationSet:
    """Region grids and their label maps on the grid refined ``upsample`` times."""

    regions: list[RegionGrid]
    labels: list[np.ndarray]
    upsample: int
    lon: np.ndarray
    lat: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)


# -- helpers ------------------------------------------------------------------------------------


def _aggregate(keys: Sequence[str], values: np.ndarray, task: str) -> dict[str, Any]:
    """One label per key: mean (regression) or most common, ties to the smallest."""
    order = sorted(range(len(keys)), key=lambda i: (keys[i], str(values[i])))
    out: dict[str, Any] = {}
    start = 0
    while start < len(order):
        end = start
        while end < len(order) and keys[order[end]] == keys[order[start]]:
            end += 1
        group = [values[i] for i in order[start:end]]
        if task == "regression":
            out[keys[order[start]]] = float(math.fsum(float(v) for v in group) / len(group))
        else:
            labels, counts = np.unique(np.asarray(group), return_counts=True)
            out[keys[order[start]]] = labels[int(np.argmax(counts))].item()
        start = end
    return out


def _target(values: np.ndarray, task: str, source: str) -> np.ndarray:
    """Regression values as float64 (refusing text), class labels as they are."""
    if task != "regression":
        return values
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError("value", source, allowed="numbers",
                        reason="regression needs numeric labels") from None


def _frame(geometries: Sequence[BaseGeometry], **columns: Any) -> gpd.GeoDataFrame:
    import geopandas as gpd

    return gpd.GeoDataFrame(columns, geometry=list(geometries), crs="EPSG:4326")


def _metric_crs(geometries: Sequence[BaseGeometry]) -> str:
    import shapely

    from eoembed.grid import local_metric_crs

    centre = shapely.union_all(list(geometries)).centroid
    return local_metric_crs(centre.x, centre.y)


def _match_vector(
    footprints: Sequence[BaseGeometry], centres: np.ndarray, keys: Sequence[str],
    labels: VectorLabels,
) -> tuple[np.ndarray, np.ndarray]:
    """(label row, footprint index) pairs: each label to at most one footprint."""
    import geopandas as gpd

    regions = _frame(footprints, fid=np.arange(len(footprints)))
    lab = labels.frame.assign(lid=np.arange(len(labels.frame)))
    predicate = "within" if labels.geometry_type == "points" else "intersects"
    hits = gpd.sjoin(lab, regions, predicate=predicate, how="inner")
    lid = hits["lid"].to_numpy(dtype=np.int64)
    fid = hits["fid"].to_numpy(dtype=np.int64)
    if labels.geometry_type == "points":
        px = hits.geometry.x.to_numpy()
        py = hits.geometry.y.to_numpy()
        scale = np.cos(np.radians(py))
        score = -(((px - centres[fid, 0]) * scale) ** 2 + (py - centres[fid, 1]) ** 2)
    else:
        crs = _metric_crs(list(footprints))
        a = gpd.GeoSeries(hits.geometry.to_numpy(), crs="EPSG:4326").to_crs(crs)
        b = gpd.GeoSeries([footprints[i] for i in fid], crs="EPSG:4326").to_crs(crs)
        score = a.intersection(b, align=False).area.to_numpy()
    best: dict[int, tuple[float, str, int]] = {}
    for label, region, s in zip(lid.tolist(), fid.tolist(), score.tolist(), strict=True):
        candidate = (-s, keys[region], region)
        if label not in best or candidate < best[label]:
            best[label] = candidate
    pairs = sorted(best.items())
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1][2] for p in pairs], dtype=np.int64))


def _report(labels: VectorLabels | RasterLabels, matched: int, samples: int,
            regions: int, labelled: int) -> dict[str, Any]:
    report: dict[str, Any] = {"labels": labels.describe(), "regions": regions,
                              "regions_labelled": labelled, "samples": samples}
    if isinstance(labels, VectorLabels):
        report.update(labels_total=len(labels.frame), labels_matched=matched,
                      labels_outside=len(labels.frame) - matched,
                      labels_unusable=labels.dropped)
    return report


# -- label rasters ------------------------------------------------------------------------------


def _label_res_m(labels: RasterLabels, lat: float) -> float:
    from pyproj import CRS

    crs = CRS.from_user_input(labels.crs)
    if crs.is_geographic:
        return labels.resolution * 111_320.0 * max(math.cos(math.radians(lat)), 0.01)
    return labels.resolution * float(crs.axis_info[0].unit_conversion_factor)


def auto_upsample(labels: RasterLabels, region: RegionGrid) -> int:
    """Label pixels per embedding cell side: the cell size over the label pixel size, >= 1."""
    lat = float(region.footprint.centroid.y)
    return max(1, round(region.grid.resolution / _label_res_m(labels, lat)))


def warp_labels(labels: RasterLabels, grid: Grid, *, classes: bool) -> np.ndarray:
    """The label raster on ``grid`` (float64, NaN where unlabelled), by georeference.

    Classes are resampled by mode when the target pixels are coarser than the labels and by
    nearest neighbour otherwise; values by average (or nearest when finer).
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

    lat = float(transformer(grid.crs, "EPSG:4326").transform(*_centre(grid))[1])
    coarser = grid.resolution > 1.01 * _label_res_m(labels, lat)
    if not coarser:
        resampling = Resampling.nearest
    else:
        resampling = Resampling.mode if classes else Resampling.average
    out = np.full(grid.shape, np.nan, dtype=np.float64)
    with rasterio.open(labels.path) as src:
        reproject(
            source=rasterio.band(src, 1), destination=out, src_nodata=src.nodata,
            dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
            resampling=resampling,
        )
    return out


def _centre(grid: Grid) -> tuple[float, float]:
    left, bottom, right, top = grid.bounds
    return (left + right) / 2, (bottom + top) / 2


def _pooled_raster_values(footprints: Sequence[BaseGeometry], labels: RasterLabels,
                          task: str) -> list[Any]:
    """Each footprint's mean (regression) or most common value (classes), or None."""
    import rasterio
    from rasterio.mask import mask

    out: list[Any] = []
    with rasterio.open(labels.path) as src:
        for footprint in footprints:
            geom = reproject_geometry(footprint, "EPSG:4326", labels.crs)
            try:
                data, _ = mask(src, [geom], crop=True, filled=False, indexes=1)
            except ValueError:  # no overlap with the raster
                out.append(None)
                continue
            valid = np.asarray(data.compressed(), dtype=np.float64)
            valid = valid[np.isfinite(valid)]
            if not len(valid):
                out.append(None)
            elif task == "regression":
                out.append(float(valid.mean()))
            else:
                values, counts = np.unique(valid, return_counts=True)
                out.append(_class_value(values[int(np.argmax(counts))]))
    return out


def _class_value(value: float) -> Any:
    """Integral raster values as ints, so classes read ``1`` rather than ``1.0``."""
    return int(value) if float(value).is_integer() else float(value)


# -- tabular ------------------------------------------------------------------------------------


def join_tabular(emb: Embeddings, labels: VectorLabels | RasterLabels, task: str) -> TabularSet:
    """One (embedding, label) pair per labelled pooled region or grid cell.

    Samples whose embedding holds NaN (cells no clear observation covered) are dropped and
    counted as ``samples_without_embedding``.
    """
    data = _pooled(emb, labels, task) if emb.mode == "pooled" else _cells(emb, labels, task)
    finite = np.isfinite(data.x).all(axis=1) if data.x.size else np.ones(len(data.y), bool)
    data.report["samples_without_embedding"] = int((~finite).sum())
    if finite.all():
        return data
    keep = np.flatnonzero(finite)
    data.report["samples"] = len(keep)
    return TabularSet(
        x=data.x[keep], y=data.y[keep], ids=[data.ids[i] for i in keep], lon=data.lon[keep],
        lat=data.lat[keep],
        footprints=[data.footprints[i] for i in keep] if data.footprints is not None else None,
        report=data.report,
    )


def _pooled(emb: Embeddings, labels: VectorLabels | RasterLabels, task: str) -> TabularSet:
    frame = emb.data
    ids = [str(i) for i in frame["id"]]
    footprints = list(frame.geometry)
    x_all = emb.matrix()
    if isinstance(labels, RasterLabels):
        values = _pooled_raster_values(footprints, labels, task)
        assigned = {ids[i]: v for i, v in enumerate(values) if v is not None}
        matched = len(assigned)
    else:
        centres = np.array([[g.centroid.x, g.centroid.y] for g in footprints]).reshape(-1, 2)
        lid, fid = _match_vector(footprints, centres, ids, labels)
        raw = labels.values
        assigned = _aggregate([ids[i] for i in fid], raw[lid], task)
        matched = len(lid)
    position = {rid: i for i, rid in enumerate(ids)}
    chosen = sorted(assigned)
    rows = [position[rid] for rid in chosen]
    source = labels.describe()["source"]
    y = _target(np.array([assigned[r] for r in chosen], dtype=object), task, source)
    centroids = [footprints[i].centroid for i in rows]
    return TabularSet(
        x=x_all[rows] if rows else np.zeros((0, emb.dim), np.float32),
        y=_tidy(y, task),
        ids=chosen,
        lon=np.array([c.x for c in centroids]),
        lat=np.array([c.y for c in centroids]),
        footprints=[footprints[i] for i in rows],
        report=_report(labels, matched, len(chosen), len(ids), len(chosen)),
    )


def _tidy(y: np.ndarray, task: str) -> np.ndarray:
    """An object array of labels as a plain numeric or string array."""
    if task == "regression":
        return np.asarray(y, dtype=np.float64)
    values = y.tolist()
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(v, int | float | np.number) for v in values):
        return np.asarray(values, dtype=np.float64)
    return np.asarray([str(v) for v in values])


def _cells(emb: Embeddings, labels: VectorLabels | RasterLabels, task: str) -> TabularSet:
    regions = emb.grids()
    cell_values: dict[str, Any] = {}
    cell_index: dict[str, tuple[int, int, int]] = {}
    matched = 0
    if isinstance(labels, RasterLabels):
        for k, region in enumerate(regions):
            warped = warp_labels(labels, region.grid, classes=task != "regression")
            for r, c in zip(*np.nonzero(np.isfinite(warped)), strict=True):
                key = f"{region.id}/{r:05d}/{c:05d}"
                cell_values[key] = (float(warped[r, c]) if task == "regression"
                                    else _class_value(warped[r, c]))
                cell_index[key] = (k, int(r), int(c))
        matched = len(cell_values)
    elif labels.geometry_type == "points":
        footprints = [g.footprint for g in regions]
        centres = np.array([[f.centroid.x, f.centroid.y] for f in footprints]).reshape(-1, 2)
        lid, fid = _match_vector(footprints, centres, [g.id for g in regions], labels)
        keys: list[str] = []
        kept: list[int] = []
        for label, k in zip(lid.tolist(), fid.tolist(), strict=True):
            point = labels.frame.geometry.iloc[label]
            grid = regions[k].grid
            x, y = transformer("EPSG:4326", grid.crs).transform(point.x, point.y)
            col = math.floor((x - grid.left) / grid.resolution)
            row = math.floor((grid.top - y) / grid.resolution)
            if 0 <= row < grid.height and 0 <= col < grid.width:
                key = f"{regions[k].id}/{row:05d}/{col:05d}"
                keys.append(key)
                kept.append(label)
                cell_index[key] = (k, row, col)
        cell_values = _aggregate(keys, labels.values[kept], task)
        matched = len(kept)
    else:
        for k, region in enumerate(regions):
            burnt = _burn(labels, region.grid, task)
            for r, c in zip(*np.nonzero(np.isfinite(burnt)), strict=True):
                key = f"{region.id}/{r:05d}/{c:05d}"
                cell_values[key] = float(burnt[r, c]) if task == "regression" else _class_value(
                    burnt[r, c])
                cell_index[key] = (k, int(r), int(c))
        matched = int(labels.frame.intersects(
            _frame([g.footprint for g in regions]).union_all()).sum()) if regions else 0
    chosen = sorted(cell_values)
    centres_cache = {k: regions[k].cell_centres() for k in {cell_index[c][0] for c in chosen}}
    x = np.stack([regions[k].values[:, r, c] for k, r, c in (cell_index[c] for c in chosen)]) \
        if chosen else np.zeros((0, emb.dim), np.float32)
    lon = np.array([centres_cache[k][0][r, c] for k, r, c in (cell_index[c] for c in chosen)])
    lat = np.array([centres_cache[k][1][r, c] for k, r, c in (cell_index[c] for c in chosen)])
    y = _target(np.array([cell_values[c] for c in chosen], dtype=object), task,
                labels.describe()["source"])
    labelled = len({cell_index[c][0] for c in chosen})
    return TabularSet(
        x=x.astype(np.float32), y=_tidy(y, task), ids=chosen, lon=lon, lat=lat,
        report=_report(labels, matched, len(chosen), len(regions), labelled),
    )


def _burn(labels: VectorLabels, grid: Grid, task: str) -> np.ndarray:
    """Polygon labels burnt onto ``grid`` (float64, NaN outside every polygon)."""
    from rasterio.features import rasterize

    values = _target(labels.values, task, labels.source)
    if task != "regression":
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise SpecError("value", labels.source, allowed="numeric class codes",
                            reason="polygons are burnt onto grids as numbers") from None
    shapes = [
        (reproject_geometry(g, "EPSG:4326", grid.crs), float(v))
        for g, v in zip(labels.frame.geometry, values, strict=True)
    ]
    return np.asarray(rasterize(shapes, out_shape=grid.shape, transform=grid.transform,
                                fill=np.nan, dtype="float64"))


# -- segmentation -------------------------------------------------------------------------------


def join_segmentation(
    emb: Embeddings, labels: VectorLabels | RasterLabels, *, upsample: int | None = None
) -> SegmentationSet:
    """Each region's grid with its label map on the grid refined ``upsample`` times.

    Args:
        emb: grid embeddings.
        labels: a label raster of integer classes, or polygons with numeric class codes.
        upsample: label pixels per embedding cell side; default: the cell size over the label
            raster's pixel size (polygons: 1).

    Raises:
        SpecError: pooled embeddings, point labels, or non-integer classes.
    """
    if emb.mode != "grid":
        raise SpecError("embeddings", str(emb.path), allowed="grid embeddings (zarr, cog...)",
                        reason="segmentation needs patch grids, not pooled vectors")
    if isinstance(labels, VectorLabels) and labels.geometry_type == "points":
        raise SpecError("labels", labels.source, allowed="a label raster or polygons",
                        reason="segmentation needs label maps, not points")
    regions = emb.grids()
    if not regions:
        raise SpecError("embeddings", str(emb.path), reason="the export holds no grids")
    if upsample is None:
        upsample = auto_upsample(labels, regions[0]) if isinstance(labels, RasterLabels) else 1
    if upsample < 1:
        raise SpecError("upsample", upsample, allowed="an integer >= 1")
    kept: list[RegionGrid] = []
    maps: list[np.ndarray] = []
    for region in regions:
        g = region.grid
        fine = Grid(g.crs, g.left, g.top, g.resolution / upsample, g.width * upsample,
                    g.height * upsample)
        if isinstance(labels, RasterLabels):
            warped = warp_labels(labels, fine, classes=True)
        else:
            warped = _burn(labels, fine, "segmentation")
        valid = np.isfinite(warped)
        if not valid.any():
            continue
        if not np.all(np.equal(np.mod(warped[valid], 1), 0)):
            raise SpecError("labels", str(getattr(labels, "path", "")),
                            allowed="integer class codes", reason="segmentation labels are classes")
        label_map = np.full(warped.shape, IGNORE, dtype=np.int64)
        label_map[valid] = warped[valid].astype(np.int64)
        kept.append(region)
        maps.append(label_map)
    centres = [r.footprint.centroid for r in kept]
    report = _report(labels, len(kept), len(kept), len(regions), len(kept))
    report["upsample"] = upsample
    report["labelled_pixels"] = int(sum((m != IGNORE).sum() for m in maps))
    return SegmentationSet(kept, maps, upsample, np.array([c.x for c in centres]),
                           np.array([c.y for c in centres]), report)
