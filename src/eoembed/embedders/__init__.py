"""Embedders: one adapter per model, a card describing its contract, a registry by id."""

from eoembed.embedders.base import Embedder
from eoembed.embedders.card import InputContract, ModelCard, Normalisation, WeightsSource
from eoembed.embedders.registry import describe_model, get_embedder, list_models, register_model

__all__ = (
    "Embedder",
    "InputContract",
    "ModelCard",
    "Normalisation",
    "WeightsSource",
    "describe_model",
    "get_embedder",
    "list_models",
    "register_model",
)
