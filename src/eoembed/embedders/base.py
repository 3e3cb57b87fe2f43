"""The embedder contract: a batch of pixels in, pooled vectors or feature grids out.

Embedders see numpy arrays ``(N, C, H, W)`` already on the request grid, in the model's band
order and in provider units; they normalise, resize, run the network in batches and return
numpy. Only this layer imports torch, and only when an embedder is built.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.embedders.card import ModelCard
from eoembed.embedders.options import EmbedderOptions
from eoembed.errors import CapabilityError, DependencyNotFoundError

if TYPE_CHECKING:
    import torch

    from eoembed.specs import OutputSpec, SensorSpec

__all__ = ["Embedder", "pool_grid", "resolve_device"]


def import_torch() -> Any:
    """Import torch, or say which extra installs it."""
    try:
        import torch
    except ImportError:
        raise DependencyNotFoundError("torch", "torch") from None
    return torch


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    torch = import_torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise CapabilityError(f"invalid device={device!r}: {exc}") from None
    return device


def pool_grid(grid: np.ndarray, pooling: str) -> np.ndarray:
    """Reduce ``(N, D, h, w)`` over its spatial cells."""
    flat = grid.reshape(*grid.shape[:2], -1)
    reducer = {
        "mean": np.mean,
        "max": np.max,
        "min": np.min,
        "std": np.std,
        "median": np.median,
    }[pooling]
    return np.asarray(reducer(flat, axis=-1), dtype=np.float32)  # type: ignore[operator]


class Embedder(ABC):
    """Base class: subclasses set ``card`` and ``Options`` and implement ``forward_grid``."""

    card: ClassVar[ModelCard]
    Options: ClassVar[type[EmbedderOptions]] = EmbedderOptions

    def __init__(self, *, device: str = "auto", batch_size: int = 16, **model_args: Any) -> None:
        self.options = self.Options.parse(self.card.id, model_args)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.weights_meta: dict[str, Any] = {}
        t0 = time.perf_counter()
        self.build()
        self.load_seconds = time.perf_counter() - t0

    # -- what subclasses provide -------------------------------------------------------

    @abstractmethod
    def build(self) -> None:
        """Create the network on ``self.device`` and load its weights."""

    @abstractmethod
    def forward_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input ``(n, C, H, W)`` -> spatial features ``(n, D, h, w)``."""

    # -- shared behaviour ---------------------------------------------------------------

    def check_sensor(self, sensor: SensorSpec) -> list[str]:
        """Refuse sensors that miss a required band; return warnings for quality mismatches."""
        needed = self.card.input.band_names
        missing = [b for b in needed if b not in sensor.bands]
        if missing:
            raise CapabilityError(
                f"model {self.card.id!r} needs band(s) {', '.join(missing)} which the sensor "
                f"spec does not request; it needs: {', '.join(needed)}"
            )
        warnings = []
        if sensor.collection not in self.card.input.collections:
            warnings.append(
                f"model {self.card.id!r} was trained on {', '.join(self.card.input.collections)}"
                f", not {sensor.collection!r}"
            )
        return warnings

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """Provider units -> model units, per the card's :class:`Normalisation`."""
        norm = self.card.input.normalisation
        x = pixels.astype(np.float32) * np.float32(norm.scale)
        if norm.mean:
            x -= np.asarray(norm.mean, np.float32)[:, None, None]
        if norm.std:
            x /= np.asarray(norm.std, np.float32)[:, None, None]
        return x

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to the model's image size when it has one (bilinear, as rs-embed's resize)."""
        size = self.card.input.image_size
        if size is None or tuple(x.shape[-2:]) == (size, size):
            return x
        th = import_torch()
        resized: torch.Tensor = th.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        return resized

    def embed(self, pixels: np.ndarray, output: OutputSpec) -> np.ndarray:
        """``(N, C, H, W)`` provider pixels -> ``(N, D)`` pooled or ``(N, D, h, w)`` grids."""
        torch = import_torch()
        if pixels.ndim != 4 or pixels.shape[1] != len(self.card.input.bands):
            raise CapabilityError(
                f"model {self.card.id!r} takes (N, {len(self.card.input.bands)}, H, W) pixels,"
                f" got shape {pixels.shape}"
            )
        if output.mode not in self.card.outputs:
            raise CapabilityError(
                f"model {self.card.id!r} gives {', '.join(self.card.outputs)} output, "
                f"not {output.mode!r}"
            )
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(pixels), self.batch_size):
                batch = torch.from_numpy(self.normalise(pixels[start : start + self.batch_size]))
                feats = self.forward_grid(self.prepare(batch.to(self.device)))
                chunks.append(feats.float().cpu().numpy())
        grid = np.concatenate(chunks).astype(np.float32, copy=False)
        if output.mode == "grid":
            return grid
        return pool_grid(grid, output.pooling or "mean")

    @property
    def embedding_dim(self) -> int:
        """Length of each embedding with these options (the card's, unless options change it)."""
        return self.card.embedding_dim

    def metadata(self) -> dict[str, Any]:
        """What to record about this embedder next to every embedding."""
        return {
            "model": self.card.id,
            "family": self.card.family,
            "options": self.options.to_dict(),
            "device": self.device,
            "weights": self.weights_meta,
            "load_seconds": self.load_seconds,
        }
