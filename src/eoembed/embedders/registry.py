"""Models by id: ``list_models()``, ``describe_model(id)``, ``get_embedder(id, **args)``.

The registry maps ids to ``"module:Class"`` strings so that listing and describing models
imports no deep-learning framework.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from eoembed.errors import UnknownModelError, close_names

if TYPE_CHECKING:
    from eoembed.embedders.base import Embedder
    from eoembed.embedders.card import ModelCard

__all__ = [
    "DYNAMIC_PREFIXES",
    "describe_model",
    "embedder_class",
    "embedder_class_for",
    "get_embedder",
    "list_models",
    "register_model",
]

DYNAMIC_PREFIXES = ("timm", "torchgeo", "terratorch")
"""``<prefix>:<name>`` ids name a library's backbone (:mod:`eoembed.embedders.backbones`)."""

_MODELS: dict[str, str] = {
    "mosaiks": "eoembed.embedders.mosaiks:Mosaiks",
    "ssl4eo-s12-vit-s16-dino": "eoembed.embedders.ssl4eo:SSL4EOViTS16DINO",
    "ssl4eo-s12-vit-s16-moco": "eoembed.embedders.ssl4eo:SSL4EOViTS16MoCo",
    "ssl4eo-s12-resnet50-dino": "eoembed.embedders.ssl4eo:SSL4EOResNet50DINO",
    "ssl4eo-s12-resnet50-moco": "eoembed.embedders.ssl4eo:SSL4EOResNet50MoCo",
    # -- torchgeo family --
    "dofa-base": "eoembed.embedders.torchgeo_fms:DOFABase",
    "dofa-large": "eoembed.embedders.torchgeo_fms:DOFALarge",
    "scalemae-large": "eoembed.embedders.torchgeo_fms:ScaleMAELarge",
    "croma-base": "eoembed.embedders.torchgeo_fms:CROMABase",
    "croma-large": "eoembed.embedders.torchgeo_fms:CROMALarge",
    "copernicusfm-base": "eoembed.embedders.torchgeo_fms:CopernicusFMBase",
    "panopticon-vitb14": "eoembed.embedders.torchgeo_fms:PanopticonViTB14",
    "ssl4eo-s12-vit-s16-mae": "eoembed.embedders.ssl4eo:SSL4EOViTS16MAE",
    "ssl4eo-s12-vit-b16-mae": "eoembed.embedders.ssl4eo:SSL4EOViTB16MAE",
    "ssl4eo-s12-vit-l16-mae": "eoembed.embedders.ssl4eo:SSL4EOViTL16MAE",
    "ssl4eo-s12-vit-s16-fgmae": "eoembed.embedders.ssl4eo:SSL4EOViTS16FGMAE",
    "ssl4eo-s12-vit-b16-fgmae": "eoembed.embedders.ssl4eo:SSL4EOViTB16FGMAE",
    "ssl4eo-s12-resnet18-moco": "eoembed.embedders.ssl4eo:SSL4EOResNet18MoCo",
    "ssl4eo-s12-resnet50-decur": "eoembed.embedders.ssl4eo:SSL4EOResNet50DeCUR",
    "satlas-swin-v2-b-s2-ms": "eoembed.embedders.satlas:SatlasSwinV2BS2MS",
    "satlas-swin-v2-b-s2-rgb": "eoembed.embedders.satlas:SatlasSwinV2BS2RGB",
    "satlas-swin-v2-t-s2-ms": "eoembed.embedders.satlas:SatlasSwinV2TS2MS",
    "satlas-swin-v2-t-s2-rgb": "eoembed.embedders.satlas:SatlasSwinV2TS2RGB",
    # -- terratorch family --
    "prithvi-eo-v1-100": "eoembed.embedders.prithvi:PrithviEOV1100",
    "prithvi-eo-v2-tiny-tl": "eoembed.embedders.prithvi:PrithviEOV2TinyTL",
    "prithvi-eo-v2-100-tl": "eoembed.embedders.prithvi:PrithviEOV2100TL",
    "prithvi-eo-v2-300": "eoembed.embedders.prithvi:PrithviEOV2300",
    "prithvi-eo-v2-300-tl": "eoembed.embedders.prithvi:PrithviEOV2300TL",
    "prithvi-eo-v2-600": "eoembed.embedders.prithvi:PrithviEOV2600",
    "prithvi-eo-v2-600-tl": "eoembed.embedders.prithvi:PrithviEOV2600TL",
    "clay-v1-base": "eoembed.embedders.clay:ClayV1Base",
    "clay-v1.5": "eoembed.embedders.clay:ClayV15",
    "terramind-v1-tiny": "eoembed.embedders.terramind:TerraMindV1Tiny",
    "terramind-v1-small": "eoembed.embedders.terramind:TerraMindV1Small",
    "terramind-v1-base": "eoembed.embedders.terramind:TerraMindV1Base",
    "terramind-v1-large": "eoembed.embedders.terramind:TerraMindV1Large",
    "terramind-v1-tiny-s2l1c": "eoembed.embedders.terramind:TerraMindV1TinyS2L1C",
    "terramind-v1-small-s2l1c": "eoembed.embedders.terramind:TerraMindV1SmallS2L1C",
    "terramind-v1-base-s2l1c": "eoembed.embedders.terramind:TerraMindV1BaseS2L1C",
    "terramind-v1-large-s2l1c": "eoembed.embedders.terramind:TerraMindV1LargeS2L1C",
    # -- open_clip and olmoearth family --
    "olmoearth-v1-nano": "eoembed.embedders.olmoearth:OlmoEarthV1Nano",
    "olmoearth-v1-tiny": "eoembed.embedders.olmoearth:OlmoEarthV1Tiny",
    "olmoearth-v1-base": "eoembed.embedders.olmoearth:OlmoEarthV1Base",
    "olmoearth-v1-large": "eoembed.embedders.olmoearth:OlmoEarthV1Large",
    "remoteclip-rn50": "eoembed.embedders.remoteclip:RemoteCLIPRN50",
    "remoteclip-vit-b32": "eoembed.embedders.remoteclip:RemoteCLIPViTB32",
    "remoteclip-vit-l14": "eoembed.embedders.remoteclip:RemoteCLIPViTL14",
    # -- satmae --
    "satmae-vit-l16-rgb": "eoembed.embedders.satmae:SatMAEViTL16RGB",
    "satmae-vit-l8-ms": "eoembed.embedders.satmae:SatMAEViTL8MS",
    "satmaepp-vit-l16-rgb": "eoembed.embedders.satmae:SatMAEPPViTL16RGB",
    # -- wildsat --
    "wildsat-vit-b16": "eoembed.embedders.wildsat:WildSATViTB16",
    "wildsat-resnet50": "eoembed.embedders.wildsat:WildSATResNet50",
    "wildsat-swin-t": "eoembed.embedders.wildsat:WildSATSwinT",
    # -- fomo --
    "fomo-net1": "eoembed.embedders.fomo:FoMoNet1",
    # -- galileo --
    "galileo-nano": "eoembed.embedders.galileo:GalileoNano",
    "galileo-tiny": "eoembed.embedders.galileo:GalileoTiny",
    "galileo-base": "eoembed.embedders.galileo:GalileoBase",
    # -- anysat --
    "anysat-base": "eoembed.embedders.anysat:AnySatBase",
    # -- thor --
    "thor-v1-tiny": "eoembed.embedders.thor:ThorV1Tiny",
    "thor-v1-small": "eoembed.embedders.thor:ThorV1Small",
    "thor-v1-base": "eoembed.embedders.thor:ThorV1Base",
    "thor-v1-large": "eoembed.embedders.thor:ThorV1Large",
    # -- terrafm --
    "terrafm-base": "eoembed.embedders.terrafm:TerraFMBase",
    # -- agrifm --
    "agrifm": "eoembed.embedders.agrifm:AgriFM",
    # -- published embedding products (read, not computed) --
    "alphaearth": "eoembed.embedders.products:AlphaEarth",
    "tessera": "eoembed.embedders.products:Tessera",
    "copernicus-embed": "eoembed.embedders.products:CopernicusEmbed",
    "majortom-s2l1c-ssl4eo": "eoembed.embedders.products:MajorTomS2L1CSSL4EO",
    "majortom-s1rtc-ssl4eo": "eoembed.embedders.products:MajorTomS1RTCSSL4EO",
    "majortom-s2rgb-dinov2": "eoembed.embedders.products:MajorTomS2RGBDINOv2",
    "majortom-s2rgb-siglip": "eoembed.embedders.products:MajorTomS2RGBSigLIP",
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
    """The Embedder class of ``model_id`` (a dynamic id: with its library's defaults)."""
    return embedder_class_for(model_id, {})


def embedder_class_for(model_id: str, model_args: Mapping[str, Any]) -> type[Embedder]:
    """The Embedder class of ``model_id`` given its arguments.

    Registered ids ignore the arguments here; for dynamic ids (``timm:resnet18``) they
    complete the input contract (``bands=``, ``mean=``, ...), which the class's card holds.
    """
    prefix, sep, _ = model_id.partition(":")
    if sep and prefix in DYNAMIC_PREFIXES:
        from eoembed.embedders.backbones import backbone_class

        return backbone_class(model_id, model_args)
    if model_id not in _MODELS:
        known = [*_MODELS, *(f"{p}:" for p in DYNAMIC_PREFIXES)]
        raise UnknownModelError(
            model_id, [*_MODELS, *(f"{p}:<name>" for p in DYNAMIC_PREFIXES)],
            close=close_names(model_id, known),
        )
    module, _, name = _MODELS[model_id].partition(":")
    cls: type[Embedder] = getattr(importlib.import_module(module), name)
    return cls


def describe_model(model_id: str, **model_args: Any) -> ModelCard:
    """The model card of ``model_id`` (for a dynamic id, with these contract arguments)."""
    if model_args:
        return embedder_class_for(model_id, model_args).card
    return embedder_class(model_id).card


def get_embedder(model_id: str, *, device: str = "auto", **model_args: Any) -> Embedder:
    """Build the embedder ``model_id`` (loads its weights)."""
    return embedder_class_for(model_id, model_args)(device=device, **model_args)
