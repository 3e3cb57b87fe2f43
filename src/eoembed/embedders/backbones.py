"""Any timm, TorchGeo or TerraTorch backbone by a single string, as TerraTorch offers.

``timm:<name>`` (``timm:resnet18``), ``torchgeo:<WeightsEnum.MEMBER>``
(``torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO``) and ``terratorch:<backbone>``
(``terratorch:prithvi_eo_tiny``) become embedders on the fly. The input contract comes from
the library's metadata (:mod:`eoembed.embedders.backbone_facts`) where it exists, else from
the model arguments ``bands=``, ``in_chans=``, ``gsd_m=``, ``mean=``, ``std=``, ``unit=``,
``image_size=``; what neither gives is a :class:`ModelArgumentError` naming the argument.

Weights: nothing is downloaded by default. ``pretrained=False`` (the default) builds random
weights, recorded as such in every embedding's metadata; ``weights=`` takes a local file or a
Hub pin ``hf://<org>/<repo>/<file>[@<revision>]``; ``pretrained=True`` loads the file the
library's metadata names (timm's ``hf_hub_id``, TorchGeo's pinned URL) from the cache, or
downloads it when the machine may. Outputs reuse the registered adapters' machinery: the
ViT patch tokens (timm's ``num_prefix_tokens`` dropped) or the CNN's last feature map form
the grid, and the class token or a reduction of the grid the vector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from eoembed.bands import SENTINEL2_BANDS, SENTINEL2_L2A_BANDS, sentinel2
from eoembed.embedders.backbone_facts import BackboneFacts, facts_for, s2_band_name
from eoembed.embedders.base import Embedder
from eoembed.embedders.card import (
    UNITS,
    InputContract,
    ModelCard,
    Normalisation,
    PoolingRule,
    TokenLayout,
    WeightsSource,
)
from eoembed.embedders.timm_backbone import TimmCNN, TimmEmbedder
from eoembed.embedders.torch_embedder import TorchEmbedder, TorchOptions, require
from eoembed.embedders.weights import resolve_weights
from eoembed.errors import ModelArgumentError
from eoembed.specs.output import REDUCTIONS

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext

__all__ = [
    "BAND_PRESETS",
    "PREFIXES",
    "BackboneOptions",
    "backbone_card",
    "backbone_class",
    "is_dynamic",
]

PREFIXES = ("timm", "torchgeo", "terratorch")
"""Libraries whose networks a model id can name as ``<prefix>:<name>``."""

BAND_PRESETS: dict[int, tuple[str, ...]] = {
    3: ("B04", "B03", "B02"),
    4: ("B02", "B03", "B04", "B08"),
    10: ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"),
    12: SENTINEL2_L2A_BANDS,
    13: tuple(SENTINEL2_BANDS),
}
"""Sentinel-2 bands for ``bands=<count>`` (and timm's RGB networks): true colour; the 10 m
bands; the 10 and 20 m bands; L2A's twelve; all thirteen in L1C order."""

_CONTRACT = ("pretrained", "bands", "in_chans", "gsd_m", "mean", "std", "unit", "image_size")


def is_dynamic(model_id: str) -> bool:
    """Whether ``model_id`` names a library's backbone (``timm:...``) rather than a registered id."""
    prefix, sep, _ = model_id.partition(":")
    return bool(sep) and prefix in PREFIXES


@dataclass(frozen=True)
class BackboneOptions(TorchOptions):
    """Options of dynamic backbones: the common torch options and the input contract.

    ``pretrained``: load the library's published weights (default: random weights, unless
    ``weights=`` names a file or ``hf://org/repo/file[@revision]``). ``bands``: Sentinel-2 band
    names (``"B04,B03,B02"`` or a list) or a count (see :data:`BAND_PRESETS`). ``in_chans``:
    the band count, checked against ``bands``. ``gsd_m``: the training GSD (default: the
    bands' finest native GSD). ``mean``/``std``: per band (or one value for all), in ``unit``
    (``"dn"`` or ``"reflectance"``). ``image_size``: the side regions are resized to.
    """

    pretrained: bool = False
    bands: str | int | tuple[str, ...] | None = None
    in_chans: int | None = None
    gsd_m: float | None = None
    mean: float | tuple[float, ...] | None = None
    std: float | tuple[float, ...] | None = None
    unit: str | None = None
    image_size: int | None = None


# -- the card ---------------------------------------------------------------------------------


def _missing(model_id: str, arg: str, why: str) -> ModelArgumentError:
    return ModelArgumentError(f"model {model_id!r} needs the argument {arg}=: {why}")


def _resolve_bands(model_id: str, facts: BackboneFacts, opts: BackboneOptions) -> tuple[str, ...]:
    """The Sentinel-2 bands, in model order: the user's, the library's, or a preset."""
    given = opts.bands
    if isinstance(given, bool):
        raise ModelArgumentError(f"model {model_id!r} argument bands={given!r} names no bands")
    if isinstance(given, int):
        if given not in BAND_PRESETS:
            raise ModelArgumentError(
                f"model {model_id!r} argument bands={given}: no preset for {given} bands "
                f"(presets: {sorted(BAND_PRESETS)}); name them, e.g. bands=B02,B03,B04,B08"
            )
        bands = BAND_PRESETS[given]
    elif given is not None:
        names = given.split(",") if isinstance(given, str) else list(given)
        mapped = [s2_band_name(str(n)) for n in names]
        unknown = [str(n) for n, m in zip(names, mapped, strict=True) if m is None]
        if unknown or not names:
            raise ModelArgumentError(
                f"model {model_id!r} argument bands: {', '.join(unknown) or 'none'} is not a "
                f"Sentinel-2 band; bands are {', '.join(SENTINEL2_BANDS)}"
            )
        bands = tuple(m for m in mapped if m)
    elif facts.bands is not None:
        bands = facts.bands
    elif facts.library == "timm" and (opts.in_chans or facts.in_chans) in BAND_PRESETS:
        bands = BAND_PRESETS[opts.in_chans or facts.in_chans or 0]
    else:
        raise _missing(model_id, "bands", "its library names no Sentinel-2 bands for it "
                       "(Sentinel-2 names like bands=B02,B03,B04, or a count)")
    if len(set(bands)) != len(bands):
        raise ModelArgumentError(f"model {model_id!r} argument bands repeats a band: {bands}")
    if opts.in_chans is not None and opts.in_chans != len(bands):
        raise ModelArgumentError(
            f"model {model_id!r} argument in_chans={opts.in_chans} but {len(bands)} bands "
            f"({', '.join(bands)})"
        )
    return bands


def _per_band(model_id: str, name: str, value: float | tuple[float, ...], n: int) -> tuple[float, ...]:
    values = (value,) * n if isinstance(value, int | float) else tuple(value)
    if len(values) == 1:
        values = values * n
    if len(values) != n or not all(isinstance(v, int | float) for v in values):
        raise ModelArgumentError(
            f"model {model_id!r} argument {name} must be one number or {n} numbers (one per "
            f"band), got {value!r}"
        )
    if name == "std" and any(v <= 0 for v in values):
        raise ModelArgumentError(f"model {model_id!r} argument std must be > 0, got {value!r}")
    return tuple(float(v) for v in values)


def _resolve_normalisation(
    model_id: str, facts: BackboneFacts, opts: BackboneOptions, n: int
) -> tuple[Normalisation, str]:
    """Per-band mean/std and the unit they apply to: the user's, else the library's."""
    stats = {}
    for name in ("mean", "std"):
        given, published = getattr(opts, name), getattr(facts, name)
        if given is not None:
            stats[name] = _per_band(model_id, name, given, n)
        elif published is not None and len(published) in (1, n):
            stats[name] = _per_band(model_id, name, published, n)
        elif published is not None:
            raise _missing(model_id, name, f"its library's {name} has {len(published)} values "
                           f"(for {len(published)} channels), not one per each of the {n} bands")
        else:
            raise _missing(model_id, name, "its library publishes no normalisation for it")
    unit = opts.unit or facts.unit
    if unit is None:
        raise _missing(model_id, "unit", "say which pixel unit mean/std apply to: "
                       + " or ".join(UNITS))
    if unit not in UNITS:
        raise ModelArgumentError(f"model {model_id!r} argument unit={unit!r} is not one of "
                                 f"{', '.join(UNITS)}")
    user = opts.mean is not None or opts.std is not None
    note = "model arguments mean/std" if user else facts.source_note
    return Normalisation(mean=stats["mean"], std=stats["std"], note=note), unit


def backbone_card(model_id: str, facts: BackboneFacts, opts: BackboneOptions) -> ModelCard:
    """The card of ``model_id`` with these options: metadata, filled in by the arguments."""
    bands = _resolve_bands(model_id, facts, opts)
    n = len(bands)
    norm, unit = _resolve_normalisation(model_id, facts, opts, n)
    size = opts.image_size or facts.image_size
    if size is None and facts.fixed_size:
        raise _missing(model_id, "image_size", "a ViT takes one image size and its library "
                       "publishes none")
    if size is not None and size % facts.patch_size:
        raise ModelArgumentError(f"model {model_id!r} argument image_size={size} must be a "
                                 f"multiple of its patch size {facts.patch_size}")
    _check_fits(model_id, facts, opts, n, size)
    has_cls = facts.kind == "vit" and facts.cls_index is not None
    gsd = opts.gsd_m or min(SENTINEL2_BANDS[b].gsd_m for b in bands)  # finest, as resampled
    own = facts.bands is not None and opts.bands is None
    collections = facts.collections if own and facts.collections else (
        "sentinel-2-l2a", "sentinel-2-l1c")
    grid = f"{size // facts.patch_size} x {size // facts.patch_size} " if size else ""
    return ModelCard(
        id=model_id,
        family=f"{facts.library} (dynamic)",
        summary=f"{facts.summary or facts.builder}; {grid}"
        f"{'patch-token' if facts.kind == 'vit' else 'feature-map'} grid; bands "
        f"{'from its metadata' if own else 'from the model arguments'}; weights random unless "
        "pretrained=True or weights= is given.",
        input=InputContract(
            collections=collections,
            processing_level=facts.processing_level if own else "any",
            bands=sentinel2(*bands),
            gsd_m=float(gsd),
            image_size=size,
            patch_size=facts.patch_size,
            normalisation=norm,
            unit=unit,
        ),
        embedding_dim=facts.embedding_dim,
        outputs=("pooled", "grid"),
        weights=facts.weights,
        licence=facts.licence,
        citation=facts.citation,
        reference=facts.reference,
        pooling=PoolingRule(
            default=facts.default_pooling if has_cls else "mean",
            supported=("cls", *REDUCTIONS) if has_cls else REDUCTIONS,
            source=f"{facts.library} {facts.builder}: "
            + ("class token (global_pool='token')" if facts.default_pooling == "cls"
               else "mean of the grid"),
        ),
        tokens=TokenLayout(facts.prefix_tokens, facts.cls_index) if facts.kind == "vit"
        else None,
    )


def _check_fits(
    model_id: str, facts: BackboneFacts, opts: BackboneOptions, n: int, size: int | None
) -> None:
    """Refuse what the library's network or its published weights cannot take."""
    changed = []
    if facts.in_chans is not None and n != facts.in_chans:
        changed.append(f"{n} bands (it has {facts.in_chans})")
    if facts.fixed_size and facts.image_size and size != facts.image_size:
        changed.append(f"image_size={size} (it has {facts.image_size})")
    if changed and (opts.pretrained or facts.library == "terratorch"):
        what = "its published weights" if opts.pretrained else "TerraTorch's builder"
        raise ModelArgumentError(f"model {model_id!r}: {what} cannot take {', '.join(changed)}")


# -- weights ----------------------------------------------------------------------------------


def hub_pin(text: str, licence: str) -> WeightsSource:
    """``hf://<org>/<repo>/<file>[@<revision>]`` -> an (unhashed) Hub source."""
    body, _, revision = text.removeprefix("hf://").partition("@")
    parts = body.split("/")
    if len(parts) < 3 or not all(parts):
        raise ModelArgumentError(f"weights={text!r} is not hf://<org>/<repo>/<file>[@<revision>]")
    return WeightsSource(repo_id="/".join(parts[:2]), filename="/".join(parts[2:]),
                         revision=revision or "main", sha256="", licence=licence)


def backbone_weights(card: ModelCard, opts: BackboneOptions) -> tuple[Path | None, dict[str, Any]]:
    """The checkpoint to load (or None: random weights) and what to record about it."""
    given = opts.weights
    if given == "random" or (given is None and not opts.pretrained):
        why = "weights='random'" if given else "pretrained=False and no weights= given"
        return None, {"source": "random initialisation", "random": True, "reason": why}
    if given is not None and given.startswith("hf://"):
        path, meta = resolve_weights(card.id, hub_pin(given, "see the repository"), None)
    elif given is not None:
        path, meta = resolve_weights(card.id, None, given)
    elif card.weights is None:
        raise ModelArgumentError(
            f"model {card.id!r}: its library's metadata names no weights file for "
            "pretrained=True; pass weights=/path/to/file or weights=hf://org/repo/file@rev"
            + _registered_hint(card.id)
        )
    else:
        path, meta = resolve_weights(card.id, card.weights, None)
    return path, {**meta, "random": False}


def _registered_hint(model_id: str) -> str:
    from eoembed.embedders.registry import list_models

    twin = model_id.partition(":")[2].replace("_", "-")
    return f"; or use the registered id {twin!r}" if twin in list_models() else ""


# -- embedders --------------------------------------------------------------------------------


class BackboneViT(TimmEmbedder):
    """A timm ViT (or TorchGeo weights on one): tokens by ``num_prefix_tokens``."""

    Options = BackboneOptions
    options: BackboneOptions

    def locate_weights(self) -> tuple[Path | None, dict[str, Any]]:
        """Random unless asked (see :func:`backbone_weights`)."""
        return backbone_weights(self.card, self.options)


class BackboneCNN(TimmCNN):
    """A timm CNN (or TorchGeo weights on one): the last feature map is the grid."""

    Options = BackboneOptions
    options: BackboneOptions
    nhwc: ClassVar[bool] = False
    """timm Swin-style networks give ``(n, h, w, C)`` features."""

    def locate_weights(self) -> tuple[Path | None, dict[str, Any]]:
        """Random unless asked (see :func:`backbone_weights`)."""
        return backbone_weights(self.card, self.options)

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """``(n, C, h, w)`` from ``forward_features`` (NHWC output permuted)."""
        out = super().forward_grid(x, context)
        return out.permute(0, 3, 1, 2) if self.nhwc else out


class BackboneTerraTorch(TorchEmbedder):
    """A TerraTorch ``BACKBONE_REGISTRY`` network: its last output is tokens or a feature map."""

    Options = BackboneOptions
    options: BackboneOptions
    builder: ClassVar[str]
    prithvi: ClassVar[bool] = False

    def locate_weights(self) -> tuple[Path | None, dict[str, Any]]:
        """Random unless asked (see :func:`backbone_weights`)."""
        return backbone_weights(self.card, self.options)

    def create_model(self) -> torch.nn.Module:
        """``BACKBONE_REGISTRY.build`` with the card's bands, randomly initialised."""
        registry = require("terratorch.registry", "terratorch").BACKBONE_REGISTRY
        kwargs: dict[str, Any] = (
            {"num_frames": 1} if self.prithvi
            else {"model_bands": list(self.card.input.band_names)}
        )
        model: torch.nn.Module = registry.build(f"terratorch_{self.builder}", pretrained=False,
                                                **kwargs)
        return model

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """A bare network's checkpoint in the wrapper's keys (``resnet_model.``).

        TerraTorch's wrappers keep the classifier ``fc``, which no output uses; a checkpoint
        without one (TorchGeo's SSL releases) leaves it as built.
        """
        own = self.model.state_dict()
        prefix = next(iter(own), "").split(".", 1)[0] + "."
        if prefix != "." and all(k.startswith(prefix) for k in own) and not any(
            k.startswith(prefix) for k in state
        ):
            state = {prefix + k: v for k, v in state.items()}
        unused = {k: v for k, v in own.items()
                  if k.endswith(("fc.weight", "fc.bias")) and k not in state}
        return {**state, **unused}

    def _last(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        last: torch.Tensor = out[-1] if isinstance(out, list | tuple) else out
        return last

    def forward_tokens(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """ViTs: the last output's tokens (class token first)."""
        return self._last(x)

    def forward_grid(
        self, x: torch.Tensor, context: Sequence[SampleContext] = ()
    ) -> torch.Tensor:
        """ViTs: patch tokens laid out by the card; CNNs: the last feature map."""
        if self.card.tokens is not None:
            return super().forward_grid(x, context)
        return self._last(x)


@cache
def _facts(model_id: str) -> BackboneFacts:
    prefix, _, name = model_id.partition(":")
    return facts_for(prefix, name)


@cache
def _class_for(model_id: str, options: BackboneOptions) -> type[Embedder]:
    facts = _facts(model_id)
    card = backbone_card(model_id, facts, options)
    attrs: dict[str, Any] = {"card": card, "__module__": __name__, "__doc__": card.summary}
    base: type[Embedder]
    if facts.library == "terratorch":
        base = BackboneTerraTorch
        attrs.update(builder=facts.builder, prithvi=facts.kind == "vit")
    elif facts.kind == "vit":
        base = BackboneViT
        attrs.update(timm_name=facts.builder)
    else:
        base = BackboneCNN
        attrs.update(timm_name=facts.builder, nhwc=facts.nhwc)
    name = "".join(c if c.isalnum() else "_" for c in model_id)
    return type(name, (base,), attrs)


def backbone_class(model_id: str, model_args: Mapping[str, Any]) -> type[Embedder]:
    """The Embedder class of a dynamic id for these model arguments (cached per contract).

    Raises:
        UnknownModelError: no such name in the library (close matches named).
        ModelArgumentError: a wrong argument, or the contract needs one that is missing.
        CapabilityError: a network eoembed cannot lay out yet.
    """
    options = BackboneOptions.parse(model_id, dict(model_args))
    contract = {f.name: getattr(options, f.name) for f in fields(BackboneOptions)
                if f.name in _CONTRACT}
    return _class_for(model_id, BackboneOptions(**contract))
