"""Base for neural-network adapters: build the reference architecture, load pinned weights.

Subclasses create the network from its maintained package (timm, torchgeo, terratorch,
open_clip, olmoearth-pretrain-minimal), convert the released checkpoint's key layout to it
when they differ, and map normalised pixels to a feature grid. Weights always pass through
:mod:`eoembed.embedders.weights` (pinned, checksummed, no pickled code).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from eoembed.embedders.base import Embedder, import_torch
from eoembed.embedders.options import EmbedderOptions
from eoembed.embedders.weights import load_state_dict, resolve_weights
from eoembed.errors import DependencyNotFoundError, WeightsNotFoundError

if TYPE_CHECKING:
    import torch

__all__ = ["TorchEmbedder", "TorchOptions", "bf16_is_fast", "require", "submodule_state"]


@dataclass(frozen=True)
class TorchOptions(EmbedderOptions):
    """Options every neural adapter takes.

    ``weights``: ``None`` (the pinned pretrained weights), ``"random"``, or a local file.
    ``input_prep``: ``"resize"`` the region to the model's native size, or ``"tile"`` it
    into native-size tiles stitched back into one grid (fixed-size models only).
    ``precision``: ``"fp32"``; ``"bf16"`` autocast; ``"auto"``: bf16 only where the device
    runs it fast and the model keeps cosine >= 0.999 with fp32 (the card's ``bf16``).
    ``channels_last``: NHWC memory layout (faster convolutions on some CPUs).
    """

    weights: str | None = None
    input_prep: Literal["resize", "tile"] = "resize"
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    channels_last: bool = False


@cache
def bf16_is_fast(device_type: str) -> bool:
    """Whether ``device_type`` has native bf16 matrix units (CUDA Ampere+, AVX512-BF16/AMX)."""
    torch = import_torch()
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def submodule_state(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A checkpoint's entries under ``prefix`` (``"encoder."``...) without it; else ``state``."""
    if not any(k.startswith(prefix) for k in state):
        return state
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def require(module: str, extra: str) -> Any:
    """Import ``module`` or say which eoembed extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DependencyNotFoundError(module.split(".")[0], extra) from None


class TorchEmbedder(Embedder):
    """Subclasses set ``card`` and implement ``create_model`` and ``forward_grid``."""

    Options = TorchOptions
    options: TorchOptions
    ignored_keys: ClassVar[tuple[str, ...]] = ()
    """Checkpoint entries the feature extractor does not use (decoders, classifier heads)."""
    channels_last_ok: ClassVar[bool] = False
    """Whether the network is convolutional enough for ``channels_last`` to matter."""

    @abstractmethod
    def create_model(self) -> torch.nn.Module:
        """The architecture, randomly initialised, on the CPU."""

    def convert_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """Released checkpoint keys -> ``self.model`` keys (identity by default)."""
        return state

    def build(self) -> None:
        """Create the network, load the (pinned, verified) checkpoint strictly, move it."""
        card = self.card
        self.model: Any = self.create_model()
        path, self.weights_meta = resolve_weights(card.id, card.weights, self.options.weights)
        if path is not None:
            self.load_checkpoint(path)
        self.model.eval().to(self.device)
        if self.options.channels_last:
            self.model.to(memory_format=import_torch().channels_last)

    def load_checkpoint(self, path: Path) -> None:
        """Load ``path`` into ``self.model``; any key mismatch is an error naming the keys."""
        state = self.convert_checkpoint(load_state_dict(path))
        state = {k: v for k, v in state.items() if not k.startswith(self.ignored_keys)}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsNotFoundError(
                f"checkpoint {path} does not fit {self.card.id!r}: missing {list(missing)[:5]}, "
                f"unexpected {list(unexpected)[:5]}"
            )

    @property
    def use_bf16(self) -> bool:
        """bf16 autocast when asked, or under ``"auto"`` where it is fast and accurate."""
        precision = self.options.precision
        if precision == "auto":
            return self.card.bf16 and bf16_is_fast(import_torch().device(self.device).type)
        return precision == "bf16"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resize as the base class does, then apply the memory layout option."""
        x = super().prepare(x)
        if self.options.channels_last:
            x = x.contiguous(memory_format=import_torch().channels_last)
        return x
