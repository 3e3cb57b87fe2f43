"""Heads: small models trained on frozen embeddings, saved with the embedder they belong to.

The embedding-first workflow (TerraTorch's embedding tutorials, rs-embed's benchmark): embed
once with :func:`eoembed.export_batch`, then train light heads in seconds, compare models with
one head and one split, and map predictions.

>>> from eoembed.heads import train, predict, compare
>>> train("exports/sites", "sites.csv", value="land_fraction", head="gbm",
...       split="blocks", block_size_m=3000, out="heads/land")  # doctest: +SKIP

Heads: ``linear`` (ridge / logistic), ``rf`` (random forest), ``gbm`` (histogram gradient
boosting), ``knn`` and ``mlp`` on one vector per sample (pooled regions or grid cells), and
``segmentation`` (a light convolutional decoder on patch grids that upsamples to the label
raster's resolution). scikit-learn, skops, torch and matplotlib load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eoembed.heads.api import (
        CompareResult,
        EvaluateResult,
        PredictResult,
        TrainResult,
        compare,
        evaluate,
        evaluate_head,
        predict,
        train,
    )
    from eoembed.heads.base import GridHead, Head, TabularHead, list_heads, load_head
    from eoembed.heads.inputs import Embeddings, load_embeddings
    from eoembed.heads.labels import RasterLabels, VectorLabels, read_labels

__all__ = (
    "CompareResult",
    "Embeddings",
    "EvaluateResult",
    "GridHead",
    "Head",
    "PredictResult",
    "RasterLabels",
    "TabularHead",
    "TrainResult",
    "VectorLabels",
    "compare",
    "evaluate",
    "evaluate_head",
    "list_heads",
    "load_embeddings",
    "load_head",
    "predict",
    "read_labels",
    "train",
)

_LAZY = {
    "CompareResult": "eoembed.heads.api",
    "EvaluateResult": "eoembed.heads.api",
    "PredictResult": "eoembed.heads.api",
    "TrainResult": "eoembed.heads.api",
    "compare": "eoembed.heads.api",
    "evaluate": "eoembed.heads.api",
    "evaluate_head": "eoembed.heads.api",
    "predict": "eoembed.heads.api",
    "train": "eoembed.heads.api",
    "GridHead": "eoembed.heads.base",
    "Head": "eoembed.heads.base",
    "TabularHead": "eoembed.heads.base",
    "list_heads": "eoembed.heads.base",
    "load_head": "eoembed.heads.base",
    "Embeddings": "eoembed.heads.inputs",
    "load_embeddings": "eoembed.heads.inputs",
    "RasterLabels": "eoembed.heads.labels",
    "VectorLabels": "eoembed.heads.labels",
    "read_labels": "eoembed.heads.labels",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eoembed.heads' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
