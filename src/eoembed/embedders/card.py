"""Model cards: what a model needs as input, what it gives, where its weights come from.

Cards are plain frozen data (no torch), so ``eoembed models`` and ``describe_model`` work
without loading any model, and the pipeline can check a provider against a model's input
contract before reading a pixel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from eoembed.bands import BandInfo
from eoembed.errors import CapabilityError
from eoembed.specs.output import DEFAULT_POOLING, REDUCTIONS, OutputSpec

__all__ = [
    "UNITS",
    "InputContract",
    "ModelCard",
    "Normalisation",
    "PoolingRule",
    "ProductInfo",
    "TokenLayout",
    "WeightsSource",
    "native_rule",
]

UNITS: dict[str, float] = {
    "dn": 1.0,
    "reflectance": 1e-4,
}
"""Pixel units a model can expect, as the factor from what providers deliver: harmonised
Sentinel-2 digital numbers (``"dn"``: reflectance x 10000, processing-baseline offset
removed), or ``"reflectance"`` (0..1, DN / 10000)."""


@dataclass(frozen=True)
class Normalisation:
    """``x_model = (x_unit * scale - mean) / std``, per band, in the contract's band order.

    ``x_unit`` is the provider's pixels in the contract's :attr:`InputContract.unit`.
    """

    scale: float = 1.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    note: str = ""
    """Where the constants come from."""


@dataclass(frozen=True)
class InputContract:
    """The pixels a model expects."""

    collections: tuple[str, ...]
    """Collections the model was trained on (first is the default)."""
    processing_level: str
    """``"L1C"`` or ``"L2A"``: other levels work but are flagged as a quality mismatch."""
    bands: tuple[BandInfo, ...]
    gsd_m: float
    """Ground sampling distance the model was trained at (the default ``scale_m``)."""
    image_size: int | None
    """Side in pixels the model takes; ``None`` when any size works."""
    patch_size: int
    """Input pixels per output grid cell."""
    normalisation: Normalisation
    frames: int = 1
    side_inputs: tuple[str, ...] = ()
    """Per-sample inputs besides pixels, from :data:`eoembed.embedders.context.SIDE_INPUTS`
    (band wavelengths, GSD, lat/lon, date), taken from each region's :class:`SampleContext`."""
    unit: str = "dn"
    """The pixel unit the model's normalisation starts from (a key of :data:`UNITS`); the
    base class converts the provider's digital numbers to it."""
    band_rule: str = "wavelength"
    """How a sensor's bands are matched to :attr:`bands` (:data:`eoembed.bandmatch.BAND_RULES`):
    by name, else by overlapping wavelength (a Landsat ``red`` serves ``B04``)."""

    def __post_init__(self) -> None:
        from eoembed.bandmatch import BAND_RULES

        if self.unit not in UNITS:
            raise ValueError(f"unit {self.unit!r} is not one of {', '.join(UNITS)}")
        if self.band_rule not in BAND_RULES:
            raise ValueError(f"band_rule {self.band_rule!r} is not one of {BAND_RULES}")

    @property
    def band_names(self) -> tuple[str, ...]:
        """Band names, in model order."""
        return tuple(b.name for b in self.bands)

    @property
    def provider_scale(self) -> float:
        """Factor from provider pixels to the model's first step: unit conversion x scale."""
        return UNITS[self.unit] * self.normalisation.scale

    def accepted_sensors(self) -> list[str]:
        """Registered sensors that serve every band the model needs (matched by its rule)."""
        from eoembed.bandmatch import accepted_sensors

        return accepted_sensors(self.bands, self.band_rule)

    def request_dict(self) -> dict[str, Any]:
        """The contract as it enters export fingerprints: the unit folded into the scale.

        Fingerprints predate :attr:`unit`, :attr:`band_rule` and band widths; folding or
        leaving them out keeps them for unchanged numbers (the bands actually read enter the
        request separately).
        """
        out = dataclasses.asdict(self)
        out.pop("unit")
        out.pop("band_rule")
        for entry in out["bands"]:
            entry.pop("bandwidth_um")
        out["normalisation"]["scale"] = self.provider_scale
        return out


@dataclass(frozen=True)
class WeightsSource:
    """Pretrained weights: a file on the Hugging Face Hub, or at a plain HTTPS URL.

    Hub files are fetched through ``huggingface_hub`` (its cache); URL files (``download_url``
    set, ``repo_id`` and ``revision`` empty) are fetched into eoembed's own cache and checked
    against ``sha256`` when it is known.
    """

    repo_id: str
    filename: str
    revision: str
    """A full commit hash; a branch name only where no commit could be verified (then the
    commit and sha256 actually downloaded are recorded in each embedding's metadata)."""
    sha256: str
    """sha256 of the file, or the leading hex digits of it that the publisher pins; empty
    when unknown (unpinned)."""
    licence: str
    url: str = ""
    """Human-readable page for the weights."""
    download_url: str = ""
    """Where to download the file when it is not on the Hub (then ``repo_id``/``revision``
    are empty and ``sha256`` alone pins the content)."""
    companions: tuple[str, ...] = ()
    """Other files of the same Hub repository and revision the model is built from (a
    release's ``config.json``); downloaded with the weights."""

    @classmethod
    def from_hub_url(cls, url: str, licence: str) -> WeightsSource:
        """A TorchGeo enum URL ``https://hf.co/<org>/<repo>/resolve/<commit>/<file>`` -> pin.

        The sha256 prefix is the ``-<hex>`` suffix of the file name when the publisher gave
        one (torchvision's ``check_hash`` convention); otherwise the file is unpinned by hash.
        """
        parts = url.split("/")
        resolve = parts.index("resolve")
        repo_id = "/".join(parts[resolve - 2 : resolve])
        revision, filename = parts[resolve + 1], "/".join(parts[resolve + 2 :])
        stem = filename.rsplit(".", 1)[0]
        tail = stem.rsplit("-", 1)[-1] if "-" in stem else ""
        sha = tail if len(tail) >= 8 and all(c in "0123456789abcdef" for c in tail) else ""
        return cls(
            repo_id=repo_id, filename=filename, revision=revision, sha256=sha, licence=licence,
            url=f"https://huggingface.co/{repo_id}",
        )

    @property
    def pinned(self) -> bool:
        """Whether the content is fixed: the commit and the file's hash (Hub), the hash (URL)."""
        if self.download_url:
            return bool(self.sha256)
        return len(self.revision) == 40 and bool(self.sha256)


@dataclass(frozen=True)
class TokenLayout:
    """How a token model's output sequence splits into a class token and the patch grid.

    Like timm's ``num_prefix_tokens``: the first ``prefix_tokens`` are not patches (class,
    register tokens); the rest are the grid in raster order.
    """

    prefix_tokens: int = 0
    cls_index: int | None = None
    """Position of the class token, ``None`` when the model has none."""


@dataclass(frozen=True)
class PoolingRule:
    """Which global embedding ``OutputSpec.pooled()`` gives, and which others are offered.

    ``"cls"``: the class token; ``"native"``: the model's own global embedding (CLIP's
    projected image embedding, ...); the reductions (``"mean"``, ...) reduce the grid.
    """

    default: str = "mean"
    supported: tuple[str, ...] = REDUCTIONS
    source: str = ""
    """Where the published default comes from."""

    def __post_init__(self) -> None:
        if self.default not in self.supported:
            raise ValueError(f"default pooling {self.default!r} not in {self.supported}")


def native_rule(source: str, *, grid: bool = True) -> PoolingRule:
    """A model whose published global embedding is its own (``"native"``).

    Reductions of its grid are offered too when it has one.
    """
    supported = ("native", *REDUCTIONS) if grid else ("native",)
    return PoolingRule(default="native", supported=supported, source=source)


@dataclass(frozen=True)
class ProductInfo:
    """A published embedding product: read from its publisher's files, never computed.

    Its "bands" are the embedding's dimensions, served by the providers listed here; the
    contract's GSD is the product's pixel size.
    """

    name: str
    """The publisher's name for it."""
    years: tuple[int, int] | None
    """First and last year published (inclusive), one layer per calendar year; None for a
    static product (one map for all time: windows select nothing)."""
    coverage: str
    """Where it exists ("global land", ...)."""
    grid: str
    """How its pixels are laid out (CRS and tiling)."""
    quantisation: str
    """How values are stored and brought back to floats, and what marks no data."""
    providers: tuple[str, ...]
    """Providers that serve it; the first is the default."""
    url: str = ""
    """The product's documentation."""


@dataclass(frozen=True)
class ModelCard:
    """Everything a user needs to know to use and cite a model."""

    id: str
    family: str
    summary: str
    input: InputContract
    embedding_dim: int
    outputs: tuple[str, ...]
    """Subset of ``("pooled", "grid")``."""
    weights: WeightsSource | None
    """``None`` for models without learned weights."""
    licence: str
    citation: str
    grid_matches_input: bool = False
    """Whether grid cells are input pixels (``patch_size == 1``)."""
    reference: str = ""
    """The implementation the adapter is tested against (package and entry point)."""
    pooling: PoolingRule = PoolingRule()
    """The published global embedding and the poolings offered."""
    tokens: TokenLayout | None = None
    """For token models whose adapter gives ``forward_tokens``: class token and prefix."""
    product: ProductInfo | None = None
    """For published embedding products (no network runs): what and where they are."""

    def resolve_pooling(self, pooling: str | None) -> str:
        """``"default"`` (or None) -> the card's default; refuse one the model lacks."""
        if pooling is None or pooling == DEFAULT_POOLING:
            return self.pooling.default
        if pooling not in self.pooling.supported:
            raise CapabilityError(
                f"model {self.id!r} has no {pooling!r} pooling; it supports "
                f"{', '.join(self.pooling.supported)} (default {self.pooling.default!r})"
            )
        return pooling

    def resolve_output(self, output: OutputSpec) -> OutputSpec:
        """``output`` with its pooling resolved for this model (grid output unchanged)."""
        if output.mode != "pooled":
            return output
        return output.with_pooling(self.resolve_pooling(output.pooling))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)
