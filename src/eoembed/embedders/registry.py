"""Models by id: ``list_models()``, ``describe_model(id)``, ``get_embedder(id, **args)``.

The registry maps ids to ``"module:Class"`` strings so that listing and describing models
imports no deep-learning framework.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

from eoembed.errors import UnknownModelError

if TYPE_CHECKING:
    from eoembed.embedders.base import Embedder
    from eoembed.embedders.card import ModelCard

__all__ = ["describe_model", "get_embedder", "list_models", "register_model"]

_MODELS: dict[str, str] = {
    "mosaiks": "eoembed.embedders.mosaiks:Mosaiks",
    "ssl4eo-s12-vit-s16-dino": "eoembed.embedders.ssl4eo:SSL4EOViTS16DINO",
    "ssl4eo-s12-vit-s16-moco": "eoembed.embedders.ssl4eo:SSL4EOViTS16MoCo",
    "ssl4eo-s12-resnet50-dino": "eoembed.embedders.ssl4eo:SSL4EOResNet50DINO",
    "ssl4eo-s12-resnet50-moco": "eoembed.embedders.ssl4eo:SSL4EOResNet50MoCo",
}


def register_model(model_id: str, target: str | type[Embedder]) -> None:
    """Register an Embedder class (or its ``"module:Class"`` path) under ``model_id``."""
    if isinstance(target, str):
        _MODELS[model_id] = target
    else:
        _MODELS[model_id] = f"{target.__module__}:{target.__qualname__}"
    embedder_class.cache_clear()


def list_models() -> list[str]:
    """Registered model ids, sorted."""
    return sorted(_MODELS)


@cache
def embedder_class(model_id: str) -> type[Embedder]:
    """The Embedder class registered under ``model_id``."""
    if model_id not in _MODELS:
        raise UnknownModelError(model_id, _MODELS)
    module, _, name = _MODELS[model_id].partition(":")
    cls: type[Embedder] = getattr(importlib.import_module(module), name)
    return cls


def describe_model(model_id: str) -> ModelCard:
    """The model card of ``model_id``."""
    return embedder_class(model_id).card


def get_embedder(model_id: str, *, device: str = "auto", **model_args: Any) -> Embedder:
    """Build the embedder ``model_id`` (loads its weights)."""
    return embedder_class(model_id)(device=device, **model_args)
