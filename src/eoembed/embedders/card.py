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

__all__ = ["InputContract", "ModelCard", "Normalisation", "WeightsSource"]


@dataclass(frozen=True)
class Normalisation:
    """``x_model = (x_provider * scale - mean) / std``, per band, in the contract's band order."""

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

    @property
    def band_names(self) -> tuple[str, ...]:
        """Band names, in model order."""
        return tuple(b.name for b in self.bands)


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

    @property
    def pinned(self) -> bool:
        """Whether the content is fixed: the commit and the file's hash (Hub), the hash (URL)."""
        if self.download_url:
            return bool(self.sha256)
        return len(self.revision) == 40 and bool(self.sha256)


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
    bf16: bool = True
    """Whether ``precision="auto"`` may use bf16 autocast (embeddings keep cosine >= 0.999
    with fp32); False where that was measured not to hold."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)
