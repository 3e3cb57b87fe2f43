"""eoembed: embeddings from remote-sensing foundation models, any place, any time, one call.

>>> from eoembed import PointBuffer, TemporalSpec, OutputSpec, get_embedding
>>> emb = get_embedding("mosaiks", spatial=PointBuffer(-75.70, 37.70, 1280),
...                     temporal=TemporalSpec.range("2015-06-23", "2016-06-11"),
...                     provider="sample")  # doctest: +SKIP

Importing eoembed is light: specs load eagerly; the API, providers and models (torch,
rasterio, xarray) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eoembed._version import __version__
from eoembed.errors import EoembedError
from eoembed.specs import (
    BBox,
    GeometrySpec,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    SpatialSpec,
    TemporalSpec,
)

if TYPE_CHECKING:
    from eoembed.api import get_embedding, get_embeddings_batch, inspect_input
    from eoembed.arrays import get_embedding_from_data
    from eoembed.embedders import describe_model, list_models
    from eoembed.embedding import Embedding
    from eoembed.heads import predict, train
    from eoembed.pipeline import export_batch, load_export

__all__ = (
    "BBox",
    "Embedding",
    "EoembedError",
    "GeometrySpec",
    "OutputSpec",
    "PointBuffer",
    "SensorSpec",
    "SpatialSpec",
    "TemporalSpec",
    "__version__",
    "describe_model",
    "export_batch",
    "get_embedding",
    "get_embedding_from_data",
    "get_embeddings_batch",
    "inspect_input",
    "list_models",
    "load_export",
    "predict",
    "train",
)

_LAZY = {
    "get_embedding": "eoembed.api",
    "get_embeddings_batch": "eoembed.api",
    "get_embedding_from_data": "eoembed.arrays",
    "inspect_input": "eoembed.api",
    "Embedding": "eoembed.embedding",
    "describe_model": "eoembed.embedders",
    "list_models": "eoembed.embedders",
    "export_batch": "eoembed.pipeline",
    "load_export": "eoembed.pipeline",
    "train": "eoembed.heads",
    "predict": "eoembed.heads",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eoembed' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
