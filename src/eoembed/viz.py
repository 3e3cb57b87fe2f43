"""Pictures for people: an input beside its grid embedding, and quick-looks of exports.

Colours come from principal components: each vector (or grid cell) is projected on the first
three principal axes of the set it belongs to, and those three numbers are red, green and
blue. matplotlib (the ``plot`` extra) is imported only when a picture is drawn, and only
through its object API (a :class:`~matplotlib.figure.Figure` on its own Agg canvas), so no
backend or pyplot state of the calling process changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from eoembed.errors import DependencyNotFoundError

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure
    from shapely.geometry.base import BaseGeometry

__all__ = [
    "RGB_BANDS",
    "export_quicklook",
    "new_figure",
    "pca_rgb",
    "rgb_from_patch",
    "save_comparison_png",
]

RGB_BANDS = ("B04", "B03", "B02")
"""Sentinel-2 red, green, blue."""


def new_figure(
    size: tuple[float, float], layout: Literal["constrained", "tight"] | None = None
) -> Figure:
    """A matplotlib figure on its own Agg canvas: no pyplot, no backend switch, nothing to close.

    Raises:
        DependencyNotFoundError: matplotlib is not installed (the ``plot`` extra).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DependencyNotFoundError("matplotlib", "plot") from None
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _limits(channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel 2nd and 98th percentiles of ``(..., c)`` values (finite ones)."""
    flat = channels.reshape(-1, channels.shape[-1])
    flat = flat[np.isfinite(flat).all(axis=1)]
    if not len(flat):
        zeros = np.zeros(channels.shape[-1])
        return zeros, zeros
    lo, hi = np.percentile(flat, [2, 98], axis=0)
    return lo, hi


def _scaled(channels: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``channels`` mapped from [lo, hi] to [0, 1], clipped (a constant channel is 0)."""
    span = np.where(hi > lo, hi - lo, 1.0)
    out: np.ndarray = np.clip((channels - lo) / span, 0.0, 1.0)
    return out


def _stretch(channels: np.ndarray) -> np.ndarray:
    """Per-channel 2-98 percentile stretch of ``(..., c)`` values to [0, 1]."""
    return _scaled(channels, *_limits(channels))


_PCA_FIT_ROWS = 50_000
"""Most rows the principal axes are fitted on (a seeded sample of larger sets)."""


def _principal_axes(x: np.ndarray, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and first three principal axes ``(<=3, D)`` of the rows of ``x``.

    With ``limit``, fitted on a seeded sample of at most that many rows, so a quick-look of a
    large export costs the same as a small one's.
    """
    if limit is not None and len(x) > limit:
        x = x[np.random.default_rng(0).choice(len(x), limit, replace=False)]
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:3]


def _project(x: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Rows of ``x`` as their first three principal components (missing ones 0)."""
    components = (x - mean) @ axes.T
    if components.shape[1] < 3:
        components = np.pad(components, ((0, 0), (0, 3 - components.shape[1])))
    out: np.ndarray = components
    return out


def pca_rgb(grid: np.ndarray) -> np.ndarray:
    """Colour each cell of a grid embedding by its first three principal components.

    Args:
        grid: ``(D, h, w)`` features.

    Returns:
        ``(h, w, 3)`` floats in [0, 1]: the centred features projected on their first three
        principal axes (numpy SVD), each stretched between its 2nd and 98th percentiles.
        Missing components (fewer than three cells or dimensions) are black.
    """
    d, h, w = grid.shape
    x = np.nan_to_num(grid.reshape(d, h * w).T.astype(np.float64))
    return _stretch(_project(x, *_principal_axes(x)).reshape(h, w, 3))


def rgb_from_patch(patch: xr.DataArray) -> np.ndarray:
    """True colour of a ``(band, y, x)`` patch holding bands B04, B03 and B02.

    Returns:
        ``(y, x, 3)`` floats in [0, 1], each channel stretched between its 2nd and 98th
        percentiles.
    """
    rgb = np.stack([patch.sel(band=b).values for b in RGB_BANDS], axis=-1)
    return _stretch(np.nan_to_num(rgb.astype(np.float64)))


def _extent(da: xr.DataArray) -> tuple[float, float, float, float]:
    """``(left, right, bottom, top)`` ground extent of a raster, from its x/y coordinates.

    This is what ``imshow(extent=...)`` takes, so rasters of different resolutions over the
    same ground overlay exactly.
    """
    res_x, res_y = (abs(float(r)) for r in da.rio.resolution())
    xs, ys = np.asarray(da["x"].values), np.asarray(da["y"].values)
    return (
        float(xs.min()) - res_x / 2,
        float(xs.max()) + res_x / 2,
        float(ys.min()) - res_y / 2,
        float(ys.max()) + res_y / 2,
    )


def save_comparison_png(
    patch: xr.DataArray, grid_embedding: xr.DataArray, path: str | Path, title: str = ""
) -> Path:
    """Write a PNG of the input's true colour beside the grid embedding's PCA colours.

    Both panels are drawn in the rasters' CRS (metres) over the same ground extent, so a
    cell of the embedding sits over the pixels it was computed from.

    Args:
        patch: ``(band, y, x)`` input with bands B04, B03, B02, georeferenced.
        grid_embedding: ``(dim, y, x)`` grid embedding on the same CRS.
        path: where to write the PNG.
        title: a title above both panels.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.
    """
    fig = new_figure((10, 5.4))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    axes[0].imshow(rgb_from_patch(patch), extent=_extent(patch), interpolation="nearest")
    axes[0].set_title("input (B04, B03, B02)")
    axes[1].imshow(
        pca_rgb(np.asarray(grid_embedding.values)), extent=_extent(grid_embedding),
        interpolation="nearest",
    )
    dims, h, w = grid_embedding.shape
    axes[1].set_title(f"embedding: {dims} dims, {h}x{w} cells, PCA to RGB")
    crs = patch.rio.crs
    for ax in axes:
        ax.set_xlabel(f"x, m ({crs.to_string() if crs else 'no CRS'})")
        ax.ticklabel_format(useOffset=False, style="plain")
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("y, m")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


# -- quick-looks of exports ---------------------------------------------------------------------

_GRID_PANELS = 6
"""Most regions drawn one panel each in a grid export's quick-look (the largest ones)."""
_MOSAIC_REGIONS = 64
"""Most regions drawn together as one mosaic."""
_MOSAIC_COVER = 0.25
"""Least share of their common bounding box the regions must cover to be drawn as a mosaic
(below it, e.g. points scattered over a country, each would be a speck)."""
_MAX_POLYGONS = 5000
"""Most footprints drawn as polygons; more regions are drawn as dots (drawing stays fast)."""
_NO_DATA = (0.6, 0.6, 0.6)
"""Colour of a region whose embedding holds no finite value (or the only region)."""


@dataclass
class _Region:
    """One region of an export, as a quick-look draws it."""

    id: str
    footprint: BaseGeometry
    """In lon/lat (OGC:CRS84)."""
    pooled: np.ndarray
    """``(D,)``: the vector, or the mean of a grid's cells that hold imagery."""
    dataset: Any = None
    """A grid export's region (``embedding`` and ``cell_valid_fraction``), read lazily."""
    crs: str | None = None
    extent: tuple[float, float, float, float] | None = None
    """``(left, right, bottom, top)`` of a grid in ``crs``."""

    @property
    def cells(self) -> int:
        if self.dataset is None:
            return 0
        _, h, w = self.dataset["embedding"].shape
        return int(h * w)


def _grid_values(ds: xr.Dataset) -> np.ndarray:
    """``(dim, y, x)`` float64 embeddings, north row first, cells without imagery NaN."""
    values = np.asarray(ds["embedding"].values, dtype=np.float64)
    if "cell_valid_fraction" in ds:
        valid = np.asarray(ds["cell_valid_fraction"].values) > 0
        values = np.where(valid[None], values, np.nan)
    ys = np.asarray(ds["y"].values) if "y" in ds.coords else np.zeros(0)
    if len(ys) > 1 and ys[0] < ys[-1]:
        values = values[:, ::-1]
    return values


def _grid_place(ds: xr.Dataset) -> tuple[str | None, tuple[float, float, float, float]]:
    """A grid's CRS and ``(left, right, bottom, top)`` extent in it."""
    recorded = ds.attrs.get("output_grid")
    if isinstance(recorded, str):
        recorded = json.loads(recorded)
    _, h, w = ds["embedding"].shape
    if isinstance(recorded, dict) and recorded.get("transform"):
        a, _, c, _, e, f = (float(v) for v in recorded["transform"][:6])
        x0, x1, y0, y1 = c, c + a * w, f, f + e * h
        return recorded.get("crs"), (min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1))
    xs, ys = np.asarray(ds["x"].values, float), np.asarray(ds["y"].values, float)
    dx = abs(xs[1] - xs[0]) if len(xs) > 1 else 1.0
    dy = abs(ys[1] - ys[0]) if len(ys) > 1 else dx
    crs = ds["spatial_ref"].attrs.get("crs_wkt") if "spatial_ref" in ds.coords else None
    return crs, (float(xs.min() - dx / 2), float(xs.max() + dx / 2),
                 float(ys.min() - dy / 2), float(ys.max() + dy / 2))


def _footprint(ds: xr.Dataset, crs: str | None,
               extent: tuple[float, float, float, float]) -> BaseGeometry:
    """The recorded lon/lat footprint, else the grid's extent taken to lon/lat."""
    import shapely
    from shapely.geometry import box

    wkt = ds.attrs.get("footprint_wkt")
    if isinstance(wkt, str) and wkt:
        return shapely.from_wkt(wkt)
    left, right, bottom, top = extent
    if crs is None:
        return box(left, bottom, right, top)
    from eoembed.grid import reproject_geometry

    return reproject_geometry(box(left, bottom, right, top), crs, "OGC:CRS84")


def _grid_regions(tree: Any) -> list[_Region]:
    """Each region of a grid export: footprint, place, and the mean of its cells."""
    regions = []
    for name, child in tree.children.items():
        ds = child.to_dataset()
        crs, extent = _grid_place(ds)
        values = _grid_values(ds)
        flat = values.reshape(values.shape[0], -1)
        kept = flat[:, np.isfinite(flat).all(axis=0)]
        pooled = kept.mean(axis=1) if kept.shape[1] else np.full(values.shape[0], np.nan)
        regions.append(_Region(str(name), _footprint(ds, crs, extent), pooled,
                               ds, crs, extent))
    return regions


def _pooled_regions(frame: Any) -> list[_Region]:
    """Each row of a pooled export: its footprint and vector."""
    return [
        _Region(str(rid), geom, np.asarray(vector, dtype=np.float64))
        for rid, geom, vector in zip(frame["id"], frame.geometry, frame["embedding"], strict=True)
    ]


def _region_colours(regions: list[_Region]) -> np.ndarray:
    """``(n, 3)`` RGB: each region's pooled vector on the regions' first principal components.

    Regions without a finite vector, and a lone region (nothing to contrast), are grey.
    """
    colours = np.tile(np.asarray(_NO_DATA), (len(regions), 1))
    vectors = np.stack([r.pooled for r in regions]) if regions else np.zeros((0, 0))
    finite = np.isfinite(vectors).all(axis=1) if len(vectors) else np.zeros(0, bool)
    if finite.sum() >= 2:
        x = vectors[finite]
        components = _project(x, *_principal_axes(x, _PCA_FIT_ROWS))
        colours[finite] = _stretch(components)
    return colours


def _draw_map(ax: Any, regions: list[_Region], colours: np.ndarray,
              numbered: list[_Region]) -> None:
    """Footprints in lon/lat filled with their colours; small ones also marked by a dot.

    Beyond :data:`_MAX_POLYGONS` regions every region is a dot at its centre.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Polygon

    bounds = np.array([r.footprint.bounds for r in regions])
    west, south = bounds[:, 0].min(), bounds[:, 1].min()
    east, north = bounds[:, 2].max(), bounds[:, 3].max()
    span = max(east - west, north - south)
    margin = span * 0.08 or 0.01
    ax.set_xlim(west - margin, east + margin)
    ax.set_ylim(south - margin, north + margin)
    as_polygons = len(regions) <= _MAX_POLYGONS
    if as_polygons:
        patches, face = [], []
        for region, colour in zip(regions, colours, strict=True):
            for part in getattr(region.footprint, "geoms", [region.footprint]):
                if hasattr(part, "exterior"):
                    patches.append(Polygon(np.asarray(part.exterior.coords)[:, :2]))
                    face.append(colour)
        ax.add_collection(PatchCollection(patches, facecolors=face, edgecolors="0.25",
                                          linewidths=0.4))
    sizes = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    dots = sizes < 0.03 * max(span, 1e-9) if as_polygons else np.ones(len(regions), bool)
    if dots.any():
        centres = [regions[i].footprint.centroid for i in np.flatnonzero(dots)]
        ax.scatter([p.x for p in centres], [p.y for p in centres], c=colours[dots],
                   s=36 if as_polygons else 6, edgecolors="0.15",
                   linewidths=0.6 if as_polygons else 0, zorder=3)
    for number, region in enumerate(numbered, start=1):
        centre = region.footprint.centroid
        ax.annotate(str(number), (centre.x, centre.y), xytext=(4, 4),
                    textcoords="offset points", fontsize=8, zorder=4,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    mid_lat = float(np.clip((south + north) / 2, -80, 80))
    ax.set_aspect(1 / np.cos(np.radians(mid_lat)), adjustable="box")
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.grid(True, color="0.85", linewidth=0.5)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=7)


def _cell_rgba(grid: np.ndarray, mean: np.ndarray, axes: np.ndarray, lo: np.ndarray,
               hi: np.ndarray) -> np.ndarray:
    """``(h, w, 4)`` colours of a grid's cells on shared axes; cells without imagery clear."""
    d, h, w = grid.shape
    x = grid.reshape(d, h * w).T
    finite = np.isfinite(x).all(axis=1)
    rgba = np.zeros((h * w, 4))
    if finite.any():
        rgba[finite, :3] = _scaled(_project(x[finite], mean, axes), lo, hi)
        rgba[finite, 3] = 1.0
    return rgba.reshape(h, w, 4)


def _mosaic(regions: list[_Region]) -> bool:
    """Whether the grids can be drawn as one picture: one CRS, few, and close together."""
    crs = {r.crs for r in regions}
    if len(regions) > _MOSAIC_REGIONS or len(crs) != 1 or None in crs:
        return False
    extents = np.array([r.extent for r in regions], dtype=float)
    area = float(((extents[:, 1] - extents[:, 0]) * (extents[:, 3] - extents[:, 2])).sum())
    union = float((extents[:, 1].max() - extents[:, 0].min())
                  * (extents[:, 3].max() - extents[:, 2].min()))
    return union > 0 and area / union >= _MOSAIC_COVER


def _draw_grids(fig: Any, spec: Any, regions: list[_Region], mosaic: bool) -> None:
    """The grids' cells coloured on principal axes shared by every region drawn."""
    grids = [_grid_values(r.dataset) for r in regions]
    cells = np.concatenate([g.reshape(g.shape[0], -1).T for g in grids])
    cells = cells[np.isfinite(cells).all(axis=1)]
    if len(cells) < 2:
        cells = np.zeros((2, grids[0].shape[0]))
    mean, axes = _principal_axes(cells, _PCA_FIT_ROWS)
    lo, hi = _limits(_project(cells, mean, axes))
    if mosaic:
        ax = fig.add_subplot(spec)
        for region, grid in zip(regions, grids, strict=True):
            ax.imshow(_cell_rgba(grid, mean, axes, lo, hi), extent=region.extent,
                      interpolation="nearest")
        extents = np.array([r.extent for r in regions], dtype=float)
        ax.set_xlim(extents[:, 0].min(), extents[:, 1].max())
        ax.set_ylim(extents[:, 2].min(), extents[:, 3].max())
        ax.set_aspect("equal")
        ax.set_xlabel(f"x, m ({_crs_name(regions[0].crs)})")
        ax.set_ylabel("y, m")
        ax.ticklabel_format(useOffset=False, style="plain")
        ax.tick_params(labelsize=7)
        ax.set_title(f"{len(regions)} grids as one mosaic, cells on shared PCA axes", fontsize=9)
        return
    cols = int(np.ceil(np.sqrt(len(regions))))
    rows = -(-len(regions) // cols)
    panels = spec.subgridspec(rows, cols, hspace=0.35, wspace=0.15)
    for index, (region, grid) in enumerate(zip(regions, grids, strict=True)):
        ax = fig.add_subplot(panels[index // cols, index % cols])
        ax.imshow(_cell_rgba(grid, mean, axes, lo, hi), extent=region.extent,
                  interpolation="nearest")
        ax.set_title(f"{index + 1}: {region.id[:8]} ({grid.shape[2]}x{grid.shape[1]} cells)",
                     fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])


def _crs_name(crs: str | None) -> str:
    if crs is None:
        return "no CRS"
    if crs.startswith(("EPSG:", "OGC:")):
        return crs
    from pyproj import CRS

    authority = CRS.from_user_input(crs).to_authority()
    return ":".join(authority) if authority else "custom CRS"


def export_quicklook(out: str | Path, path: str | Path, model: str | None = None) -> Path:
    """Write a PNG quick-look of a finished export (any format :func:`load_export` reads).

    The regions are drawn on a lon/lat map, each footprint (from the recorded metadata)
    filled with its embedding's first three principal components as RGB: pooled vectors as
    they are, grids as the mean of their cells that hold imagery. For grid exports a second
    panel shows the cells themselves, coloured on principal axes shared by every region drawn
    so colours compare across regions: one mosaic when the regions share a CRS and lie close
    together, else the largest few (numbered on the map).

    Cost: every result is read (each grid once, for its mean), so a large grid export takes
    about as long to draw as to load.

    Args:
        out: the export folder.
        path: the PNG to write.
        model: which model of a multi-model export (default: the first in its ``export.json``).

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Raises:
        ExportNotFoundError: ``out`` holds no export.
        SpecError: ``model`` is not in the export, or the export holds no results yet.
        DependencyNotFoundError: matplotlib is not installed (the ``plot`` extra).
    """
    from eoembed.errors import ExportNotFoundError, SpecError
    from eoembed.pipeline.export import load_export
    from eoembed.pipeline.folder import read_job

    out = Path(out)
    job = read_job(out)
    if job is None:
        raise ExportNotFoundError(f"{out} holds no eoembed export (export.json is missing)")
    model = model if model is not None else next(iter(job["models"]), None)
    if model not in job["models"]:
        raise SpecError("model", model, allowed=sorted(job["models"]))
    data = load_export(out, model=model)
    grid = not hasattr(data, "geometry")
    regions = _grid_regions(data) if grid else _pooled_regions(data)
    if not regions:
        raise SpecError("out", str(out), reason=f"it holds no written {model} results to draw")
    colours = _region_colours(regions)
    mosaic = grid and _mosaic(regions)
    shown = [] if not grid else regions if mosaic else sorted(
        regions, key=lambda r: r.cells, reverse=True)[:_GRID_PANELS]

    fig = new_figure((13.0, 6.0) if grid else (7.0, 6.0), layout="constrained")
    spec = fig.add_gridspec(1, 2 if grid else 1, width_ratios=[1, 1.25] if grid else [1])
    ax = fig.add_subplot(spec[0, 0])
    _draw_map(ax, regions, colours, [] if mosaic else shown)
    what = "mean of each grid's cells" if grid else "pooled embeddings"
    ax.set_title(f"{len(regions)} region(s), {what}: first 3 principal components as RGB",
                 fontsize=9)
    if grid:
        _draw_grids(fig, spec[0, 1], shown, mosaic)
    fig.suptitle(f"{model} | {job['format']} | {'grid' if grid else 'pooled'} | {out.name}",
                 fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
