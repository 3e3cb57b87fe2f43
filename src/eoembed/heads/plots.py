"""Pictures of a head's results: observed vs predicted, confusion matrix, maps, PCA, rankings.

matplotlib (the ``learn`` or ``plot`` extra) is imported inside each function, with the Agg
backend, so they work on machines without a display and importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eoembed.errors import DependencyNotFoundError

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

__all__ = [
    "confusion_png",
    "footprint_map_png",
    "grid_maps_png",
    "pca_colours",
    "pca_footprints_png",
    "pca_grids_png",
    "raster_png",
    "ranking_png",
    "scatter_png",
]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise DependencyNotFoundError("matplotlib", "learn") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def scatter_png(y_true: np.ndarray, y_pred: np.ndarray, path: str | Path, *,
                title: str = "", metrics: dict[str, Any] | None = None) -> Path:
    """Observed vs predicted values with the 1:1 line and R2/RMSE in the corner."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.scatter(y_true, y_pred, s=14, alpha=0.7, edgecolors="none")
    lo = float(np.nanmin([np.min(y_true), np.min(y_pred)]))
    hi = float(np.nanmax([np.max(y_true), np.max(y_pred)]))
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--")
    ax.set_xlabel("observed")
    ax.set_ylabel("predicted")
    ax.set_title(title, fontsize=9)
    if metrics:
        text = f"R2 {metrics['r2']:.3f}\nRMSE {metrics['rmse']:.3g}\nn {metrics['n']}"
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=8)
    return _save(fig, path)


def confusion_png(cm: np.ndarray, labels: Sequence[Any], path: str | Path, *,
                  title: str = "") -> Path:
    """Counts of truth (rows) vs prediction (columns), shaded by row share."""
    plt = _pyplot()
    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * k, 1.0 + 0.7 * k))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), [str(v) for v in labels], rotation=45, ha="right")
    ax.set_yticks(range(k), [str(v) for v in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("observed")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def _polygons(ax: Any, footprints: Sequence[BaseGeometry], colours: Any) -> None:
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Polygon

    patches = []
    for geom in footprints:
        parts = getattr(geom, "geoms", [geom])
        for part in parts:
            patches.append(Polygon(np.asarray(part.exterior.coords), closed=True))
    ax.add_collection(PatchCollection(patches, facecolors=colours, edgecolors="none"))
    ax.autoscale_view()
    ax.set_aspect(1 / np.cos(np.radians(np.mean([g.centroid.y for g in footprints]))))
    ax.set_xlabel("lon")
    ax.set_ylabel("lat")


def _colours(values: np.ndarray, categorical: bool, vmin: float | None = None,
             vmax: float | None = None) -> tuple[np.ndarray, Any]:
    plt = _pyplot()
    if categorical:
        labels = sorted({str(v) for v in values})
        cmap = plt.get_cmap("tab10")
        index = {v: i for i, v in enumerate(labels)}
        return np.array([cmap(index[str(v)] % 10) for v in values]), labels
    from matplotlib.colors import Normalize

    norm = Normalize(vmin=vmin if vmin is not None else float(np.min(values)),
                     vmax=vmax if vmax is not None else float(np.max(values)))
    return plt.get_cmap("viridis")(norm(np.asarray(values, dtype=float))), norm


def footprint_map_png(footprints: Sequence[BaseGeometry], observed: np.ndarray,
                      predicted: np.ndarray, path: str | Path, *, categorical: bool,
                      title: str = "") -> Path:
    """Observed beside predicted labels, each region's footprint filled with its value."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.6), sharex=True, sharey=True)
    both = np.concatenate([np.asarray(observed, dtype=object), np.asarray(predicted, dtype=object)])
    vmin = vmax = None
    if not categorical:
        vmin, vmax = float(np.min(both.astype(float))), float(np.max(both.astype(float)))
    scale: Any = None
    for ax, values, name in ((axes[0], observed, "observed"), (axes[1], predicted, "predicted")):
        colours, scale = _colours(np.asarray(values), categorical, vmin, vmax)
        _polygons(ax, footprints, colours)
        ax.set_title(name, fontsize=9)
    if categorical:
        from matplotlib.patches import Patch

        cmap = plt.get_cmap("tab10")
        handles = [Patch(color=cmap(i % 10), label=v) for i, v in enumerate(scale)]
        axes[1].legend(handles=handles, fontsize=7, loc="lower right")
    else:
        fig.colorbar(plt.cm.ScalarMappable(norm=scale, cmap="viridis"), ax=axes, shrink=0.8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def grid_maps_png(rows: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, *,
                  title: str = "", categorical: bool = True) -> Path:
    """For a few regions: the label map beside the predicted map (NaN/-1 left blank)."""
    plt = _pyplot()
    rows = list(rows)[:4]
    fig, axes = plt.subplots(len(rows), 2, figsize=(6, 3 * len(rows)), squeeze=False)
    cmap = "tab10" if categorical else "viridis"
    every = np.concatenate([np.ravel(a).astype(float) for _, t, p in rows for a in (t, p)])
    every = every[np.isfinite(every)]
    vmin, vmax = (float(every.min()), float(every.max())) if len(every) else (0.0, 1.0)
    if categorical:
        vmin, vmax = 0.0, 9.0
    for (name, truth, pred), (a, b) in zip(rows, axes, strict=True):
        for ax, data, label in ((a, truth, "labels"), (b, pred, "predicted")):
            shown = np.ma.masked_invalid(np.where(np.asarray(data) == -1, np.nan, data)
                                         .astype(float))
            ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"{label} {name[:8]}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def pca_colours(x: np.ndarray) -> np.ndarray:
    """Each row of ``x`` as an RGB colour: its first three principal components, stretched."""
    from eoembed.viz import pca_rgb

    return pca_rgb(np.asarray(x, dtype=np.float64).T[:, :, None]).reshape(-1, 3)


def pca_footprints_png(footprints: Sequence[BaseGeometry], x: np.ndarray, path: str | Path, *,
                       title: str = "") -> Path:
    """Pooled embeddings on a map: each footprint coloured by its PCA-to-RGB colour."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.8))
    _polygons(ax, footprints, pca_colours(x))
    ax.set_title(title or "embeddings, first 3 principal components as RGB", fontsize=9)
    return _save(fig, path)


def pca_grids_png(grids: Sequence[tuple[str, np.ndarray]], path: str | Path, *,
                  title: str = "") -> Path:
    """Grid embeddings of a few regions, each cell coloured by its PCA-to-RGB colour."""
    from eoembed.viz import pca_rgb

    plt = _pyplot()
    grids = list(grids)[:6]
    fig, axes = plt.subplots(1, len(grids), figsize=(2.6 * len(grids), 2.8), squeeze=False)
    for ax, (name, values) in zip(axes[0], grids, strict=True):
        ax.imshow(pca_rgb(values), interpolation="nearest")
        ax.set_title(name[:8], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "grid embeddings, first 3 principal components as RGB", fontsize=9)
    return _save(fig, path)


def ranking_png(models: Sequence[str], scores: Sequence[float], path: str | Path, *,
                metric: str, title: str = "") -> Path:
    """Horizontal bars of ``metric`` per model, best on top."""
    plt = _pyplot()
    order = np.argsort(np.asarray(scores, dtype=float))
    fig, ax = plt.subplots(figsize=(6, 0.9 + 0.45 * len(models)))
    ax.barh([models[i] for i in order], [scores[i] for i in order], color="tab:blue")
    for y, i in enumerate(order):
        ax.text(scores[i], y, f" {scores[i]:.3f}", va="center", fontsize=8)
    ax.set_xlabel(metric)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def raster_png(values: np.ndarray, path: str | Path, *, categorical: bool,
               title: str = "") -> Path:
    """A predicted map (one band, NaN blank) with a legend or colour bar."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.4))
    shown = np.ma.masked_invalid(np.asarray(values, dtype=float))
    if categorical:
        from matplotlib.patches import Patch

        classes = np.unique(shown.compressed())
        index = np.searchsorted(classes, shown.filled(classes[0] if len(classes) else 0))
        cmap = plt.get_cmap("tab10")
        ax.imshow(np.ma.masked_where(shown.mask, index), cmap=cmap, vmin=0, vmax=9,
                  interpolation="nearest")
        handles = [Patch(color=cmap(i % 10), label=f"{c:g}") for i, c in enumerate(classes)]
        ax.legend(handles=handles, fontsize=7, loc="lower right")
    else:
        image = ax.imshow(shown, cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
