"""What timm, TorchGeo and TerraTorch say about a backbone, read from their own metadata.

A dynamic model id (``timm:resnet18``, ``torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO``,
``terratorch:prithvi_eo_tiny``) names a network in one of these libraries. This module reads
what the library publishes next to it, and nothing else: timm's ``pretrained_cfg`` (mean,
std, input size) and the architecture's own attributes (``num_features``,
``num_prefix_tokens``, ``feature_info``), read from a copy built on PyTorch's ``meta``
device (no memory, no weights); TorchGeo's ``weights.meta`` (bands, ``in_chans``, model) and
``weights.transforms`` (its ``Normalize``); TerraTorch's Prithvi configs and the TorchGeo
weights its wrappers default to. What the metadata lacks stays ``None`` for the user's
model arguments to fill (:mod:`eoembed.embedders.backbones`).
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, replace
from typing import Any

from eoembed.bands import SENTINEL2_BANDS
from eoembed.embedders.base import import_torch
from eoembed.embedders.card import WeightsSource
from eoembed.embedders.torch_embedder import require
from eoembed.errors import CapabilityError, UnknownModelError

__all__ = ["BackboneFacts", "close_matches", "facts_for", "s2_band_name"]

_HLS_TO_S2 = {"BLUE": "B02", "GREEN": "B03", "RED": "B04", "NIR_NARROW": "B8A",
              "SWIR_1": "B11", "SWIR_2": "B12"}
"""TerraTorch ``HLSBands`` -> the Sentinel-2 bands HLS S30 takes them from."""


@dataclass(frozen=True)
class BackboneFacts:
    """A backbone's architecture and whatever input contract its library publishes."""

    library: str
    """``"timm"``, ``"torchgeo"`` or ``"terratorch"``: how the network is built."""
    builder: str
    """timm model name (timm, TorchGeo) or TerraTorch ``BACKBONE_REGISTRY`` name."""
    kind: str
    """``"vit"`` (token sequence) or ``"cnn"`` (feature map)."""
    embedding_dim: int
    patch_size: int
    """Input pixels per grid cell: the ViT patch, or the CNN's last-stage reduction."""
    prefix_tokens: int = 0
    cls_index: int | None = None
    nhwc: bool = False
    """Whether ``forward_features`` gives ``(n, h, w, C)`` (timm Swin) rather than NCHW."""
    image_size: int | None = None
    fixed_size: bool = False
    """Whether the network only takes ``image_size`` (ViT position tables)."""
    in_chans: int | None = None
    bands: tuple[str, ...] | None = None
    """Sentinel-2 band names, when the library names the bands."""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    unit: str | None = None
    collections: tuple[str, ...] = ()
    processing_level: str = "any"
    weights: WeightsSource | None = None
    """The library's pretrained file, for ``pretrained=True``."""
    licence: str = "see the library's model page"
    citation: str = ""
    summary: str = ""
    source_note: str = ""
    """Where the normalisation constants come from."""
    reference: str = ""
    default_pooling: str = "mean"


def close_matches(name: str, known: list[str], n: int = 5) -> list[str]:
    """Up to ``n`` names of ``known`` closest to ``name`` (difflib)."""
    return difflib.get_close_matches(name, known, n=n, cutoff=0.6)


def s2_band_name(name: str) -> str | None:
    """``"B1"``, ``"B8a"``, ``"b04"`` -> eoembed's Sentinel-2 name; ``None`` if not one."""
    text = name.strip().upper()
    if text in SENTINEL2_BANDS:
        return text
    if text.startswith("B") and text[1:].isdigit():
        padded = f"B{int(text[1:]):02d}"
        return padded if padded in SENTINEL2_BANDS else None
    return None


def facts_for(library: str, name: str) -> BackboneFacts:
    """The facts of ``name`` in ``library`` (``timm``, ``torchgeo``, ``terratorch``).

    Raises:
        UnknownModelError: the library has no such name (with close matches).
        CapabilityError: a network eoembed cannot yet lay out as grid and vector.
    """
    reader = {"timm": _timm_facts, "torchgeo": _torchgeo_facts, "terratorch": _terratorch_facts}
    return reader[library](name)


# -- timm -----------------------------------------------------------------------------------


def _timm_facts(name: str) -> BackboneFacts:
    timm = require("timm", "torch")
    if not timm.is_model(name):
        raise UnknownModelError(
            f"timm:{name}", "any name of timm.list_models()",
            close=[f"timm:{m}" for m in close_matches(name, timm.list_models())],
        )
    torch = import_torch()
    with torch.device("meta"):  # the architecture's attributes without allocating it
        model = timm.create_model(name, pretrained=False, num_classes=0)
    cfg = timm.models.get_pretrained_cfg(name)
    size = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else None
    if hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed"):
        has_cls = getattr(model, "cls_token", None) is not None
        patch = model.patch_embed.patch_size
        facts = BackboneFacts(
            library="timm", builder=name, kind="vit", embedding_dim=int(model.num_features),
            patch_size=int(patch[0] if isinstance(patch, tuple | list) else patch),
            prefix_tokens=int(model.num_prefix_tokens), cls_index=0 if has_cls else None,
            fixed_size=True,
            default_pooling="cls" if has_cls and getattr(model, "global_pool", "") == "token"
            else "mean",
        )
    elif getattr(model, "feature_info", None):
        last = model.feature_info[-1]
        facts = BackboneFacts(
            library="timm", builder=name, kind="cnn", embedding_dim=int(model.num_features),
            patch_size=int(last["reduction"]),
            nhwc=getattr(model, "output_fmt", "NCHW") == "NHWC",
        )
    else:
        raise CapabilityError(
            f"timm model {name!r} is neither a ViT (num_prefix_tokens) nor a network with "
            "feature_info: eoembed cannot lay out its features as a grid"
        )
    if cfg is None:
        return replace(facts, reference=f"timm.create_model({name!r}).forward_features")
    weights = None
    if cfg.hf_hub_id:
        weights = WeightsSource(
            repo_id=cfg.hf_hub_id, filename=cfg.hf_hub_filename or "model.safetensors",
            revision="main", sha256="", licence=cfg.license or "see the model page",
            url=f"https://huggingface.co/{cfg.hf_hub_id}",
        )
    return replace(
        facts, image_size=size, in_chans=int(cfg.input_size[0]) if cfg.input_size else None,
        mean=tuple(float(v) for v in cfg.mean) if cfg.mean else None,
        std=tuple(float(v) for v in cfg.std) if cfg.std else None,
        unit="reflectance" if cfg.mean else None, weights=weights,
        licence=f"{cfg.license} (weights)" if cfg.license else facts.licence,
        citation=cfg.paper_ids or cfg.origin_url or "",
        summary=f"timm {name} ({cfg.tag or 'untagged'} pretrained_cfg)",
        source_note=f"timm pretrained_cfg of {name}.{cfg.tag} (for 0..1 RGB photographs)",
        reference=f"timm.create_model({name!r}).forward_features",
    )


# -- TorchGeo -------------------------------------------------------------------------------


def _torchgeo_members() -> list[str]:
    api = require("torchgeo.models.api", "torchgeo")
    return sorted({f"{enum.__name__}.{m.name}" for enum in api._model_weights.values()
                   for m in enum})


def _normalize_constants(transforms: Any) -> tuple[list[float], list[float]] | None:
    """Mean and std of the ``Normalize`` among a TorchGeo weight's transforms."""
    modules = transforms.modules() if hasattr(transforms, "modules") else []
    for module in modules:
        if type(module).__name__ == "Normalize" and hasattr(module, "mean"):
            mean, std = module.mean, module.std
            return [float(v) for v in _flat(mean)], [float(v) for v in _flat(std)]
    return None


def _flat(values: Any) -> list[Any]:
    return list(values.flatten().tolist()) if hasattr(values, "flatten") else list(values)


def _torchgeo_facts(name: str) -> BackboneFacts:
    models = require("torchgeo.models", "torchgeo")
    try:
        weights = models.get_weight(name)
    except (ValueError, KeyError, AttributeError, NameError, SyntaxError):
        raise UnknownModelError(
            f"torchgeo:{name}", "WeightsEnum.MEMBER of torchgeo.models (e.g. "
            "ResNet18_Weights.SENTINEL2_ALL_MOCO)",
            close=[f"torchgeo:{m}" for m in close_matches(name, _torchgeo_members())],
        ) from None
    meta = weights.meta
    arch = meta.get("model", "")
    if not require("timm", "torch").is_model(arch):
        raise CapabilityError(
            f"torchgeo:{name} builds {arch!r}, not a timm architecture; dynamic TorchGeo ids "
            "take timm-built weights (ResNet*, ViT*); registered adapters cover the others"
        )
    base = _timm_facts(arch)
    in_chans = int(meta["in_chans"])
    # Only Sentinel-2 weights name Sentinel-2 bands (Landsat's "B1".."B7" are other bands).
    names = [s2_band_name(str(b)) for b in meta.get("bands", [])] if "SENTINEL2" in name else []
    bands = tuple(b for b in names if b) if names and all(names) else None
    mean = std = None
    unit = None
    constants = _normalize_constants(weights.transforms)
    if constants is not None:
        m, s = constants
        mean = tuple(m * in_chans if len(m) == 1 else m)
        std = tuple(s * in_chans if len(s) == 1 else s)
        unit = "dn"
    l1c = (bands is not None and "B10" in bands) or "SSL4EO-S12" in str(meta.get("dataset", ""))
    url = str(weights.url)
    source = (WeightsSource.from_hub_url(url, "see TorchGeo") if "/resolve/" in url
              else None)
    return replace(
        base, library="torchgeo", in_chans=in_chans, bands=bands, mean=mean, std=std,
        unit=unit, weights=source,
        collections=("sentinel-2-l1c",) if l1c else ("sentinel-2-l2a", "sentinel-2-l1c"),
        processing_level="L1C" if l1c else "any",
        licence=f"{meta.get('license', 'see TorchGeo')} (weights)",
        citation=str(meta.get("publication", "")),
        summary=f"TorchGeo {name} ({meta.get('dataset', '?')}, {meta.get('ssl_method', '?')}) "
        f"on timm {arch}",
        source_note=f"TorchGeo {name}.transforms Normalize",
        reference=f"torchgeo.models.get_weight({name!r}) builder (timm {arch}).forward_features",
        default_pooling=base.default_pooling,
    )


# -- TerraTorch -----------------------------------------------------------------------------


def _terratorch_facts(name: str) -> BackboneFacts:
    registry = require("terratorch.registry", "terratorch").BACKBONE_REGISTRY
    own = registry["terratorch"]
    plain = name.removeprefix("terratorch_")
    if plain not in own:
        if name.startswith("timm_") and name in registry:
            raise CapabilityError(
                f"terratorch:{name} is timm's {name[5:]!r} built features-only: use "
                f"timm:{name[5:]}"
            )
        raise UnknownModelError(
            f"terratorch:{name}", "a TerraTorch BACKBONE_REGISTRY name (terratorch source)",
            close=[f"terratorch:{m}" for m in close_matches(plain, sorted(own))],
        )
    prithvi = require("terratorch.models.backbones.prithvi_vit", "terratorch")
    if plain in prithvi.prithvi_cfgs:
        return _prithvi_facts(plain, prithvi.prithvi_cfgs[plain])
    weights = inspect.signature(own[plain]).parameters.get("weights")
    default = getattr(weights, "default", None)
    if default is not None and hasattr(default, "meta"):
        member = f"{type(default).__name__}.{default.name}"
        facts = _torchgeo_facts(member)
        return replace(
            facts, library="terratorch", builder=plain,
            summary=f"TerraTorch {plain} ({facts.summary})",
            reference=f"terratorch BACKBONE_REGISTRY.build({plain!r})(x)[-1]",
        )
    raise CapabilityError(
        f"terratorch:{name} publishes no metadata eoembed can read yet (Prithvi configs and "
        "TorchGeo-weight wrappers are read); use its registered eoembed id if there is one"
    )


def _prithvi_facts(name: str, cfg: dict[str, Any]) -> BackboneFacts:
    patch = cfg["patch_size"]
    bands = tuple(_HLS_TO_S2.get(getattr(b, "value", str(b)), "") for b in cfg["bands"])
    return BackboneFacts(
        library="terratorch", builder=name, kind="vit", embedding_dim=int(cfg["embed_dim"]),
        patch_size=int(patch[-1] if isinstance(patch, list | tuple) else patch),
        prefix_tokens=1, cls_index=0, image_size=int(cfg["img_size"]), fixed_size=True,
        in_chans=int(cfg["in_chans"]), bands=bands if all(bands) else None,
        mean=tuple(float(v) for v in cfg["mean"]), std=tuple(float(v) for v in cfg["std"]),
        unit="dn", collections=("hls-s30", "hls-l30", "sentinel-2-l2a"),
        processing_level="L2A", licence="Apache-2.0 (TerraTorch)",
        summary=f"TerraTorch Prithvi {name} (one frame)",
        source_note=f"terratorch prithvi_vit.prithvi_cfgs[{name!r}] mean/std (HLS x 10000)",
        reference=f"terratorch BACKBONE_REGISTRY.build({name!r}, num_frames=1)(x)[-1]",
        default_pooling="mean",
    )
