"""Base for neural-network adapters: build the reference architecture, load pinned weights.

Subclasses create the network from its maintained package (timm, torchgeo, terratorch,
open_clip, olmoearth-pretrain-minimal), convert the released checkpoint's key layout to it
when they differ, and map normalised pixels to a feature grid. Weights always pass through
:mod:`eoembed.embedders.weights` (pinned, checksummed, no pickled code).
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np

from eoembed.embedders.base import Embedder, import_torch
from eoembed.embedders.options import EmbedderOptions
from eoembed.embedders.precision import (
    MIN_SPEEDUP,
    MODES,
    ModeTrial,
    Precision,
    choose_mode,
    precision_scope,
)
from eoembed.embedders.torch_state import preserved_torch_state
from eoembed.embedders.weights import load_state_dict, resolve_weights
from eoembed.errors import DependencyNotFoundError, ModelArgumentError, WeightsNotFoundError

if TYPE_CHECKING:
    import torch

    from eoembed.embedders.context import SampleContext
    from eoembed.specs import OutputSpec

__all__ = ["TorchEmbedder", "TorchOptions", "bf16_is_fast", "require", "submodule_state"]


@dataclass(frozen=True)
class TorchOptions(EmbedderOptions):
    """Options every neural adapter takes.

    ``weights``: ``None`` (the pinned pretrained weights), ``"random"``, or a local file.
    ``input_prep``: ``"resize"`` the region to the model's native size, or ``"tile"`` it
    into native-size tiles stitched back into one grid (fixed-size models only).
    ``precision``: ``"fp32"``; ``"fp32-bf16mm"`` (fp32 tensors, bf16 matrix products on CPUs,
    TF32 on GPUs); ``"bf16"`` autocast; ``"auto"``: on the first batch, the fastest mode whose
    embeddings keep cosine >= ``precision_min_cosine`` with fp32 on that batch (measured and
    recorded in the metadata; fp32 without measuring where the device has no fast bf16/TF32).
    See :mod:`eoembed.embedders.precision`.
    ``channels_last``: NHWC memory layout (faster convolutions on some CPUs).
    """

    weights: str | None = None
    input_prep: Literal["resize", "tile"] = "resize"
    precision: Precision = "fp32"
    precision_min_cosine: float = 0.999
    """``"auto"`` only: the smallest cosine with fp32 (per sample, or per grid cell) a reduced
    mode may give on the first batch."""
    channels_last: bool = False

    @classmethod
    def parse(cls, model_id: str, kwargs: Mapping[str, Any]) -> Self:
        """As :meth:`EmbedderOptions.parse`, and ``precision_min_cosine`` within (0, 1]."""
        options = super().parse(model_id, kwargs)
        if not 0 < options.precision_min_cosine <= 1:
            raise ModelArgumentError(
                f"model {model_id!r} argument precision_min_cosine="
                f"{options.precision_min_cosine} must be in (0, 1]"
            )
        return options


@cache
def bf16_is_fast(device_type: str) -> bool:
    """Whether ``device_type`` has native bf16 matrix units.

    CUDA: compute capability 8 (Ampere) or later, which also has TF32. CPU: AVX512-BF16 or
    AMX-BF16 in ``/proc/cpuinfo``.
    """
    torch = import_torch()
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8)
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
    """Import ``module`` or say which eoembed extra installs it.

    Torch's process-wide settings are restored after the import: some packages change them
    when imported (TerraTorch sets the float32 matmul precision to "medium").
    """
    import importlib

    try:
        with preserved_torch_state():
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
        """Create the network, load the (pinned, verified) checkpoint strictly, move it.

        Torch's process-wide settings are restored afterwards: adapters import their
        packages and vendored code here, and some of those change them.
        """
        self._precision_lock = threading.Lock()
        self._modes: dict[str, str] = {}
        # How forward passes run, per output mode (and under "auto" the first batch's trial).
        # metadata() returns this very dict, so metadata taken before the first batch (an
        # export's writers take it when they open) shows the choice once it is made.
        self.precision_record: dict[str, Any] = {"requested": self.options.precision, "used": {}}
        if self.options.precision == "auto":
            self.precision_record.update(
                min_cosine=self.options.precision_min_cosine, min_speedup=MIN_SPEEDUP, trials={}
            )
        with preserved_torch_state():
            self.model: Any = self.create_model()
            path, self.weights_meta = self.locate_weights()
            if path is not None:
                self.load_checkpoint(path)
            self.model.eval().to(self.device)
            if self.options.channels_last:
                self.model.to(memory_format=import_torch().channels_last)

    def locate_weights(self) -> tuple[Path | None, dict[str, Any]]:
        """The checkpoint to load (``None``: keep the random initialisation) and its record."""
        return resolve_weights(self.card.id, self.card.weights, self.options.weights)

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
    def device_type(self) -> str:
        """``"cpu"``, ``"cuda"``, ..."""
        return str(import_torch().device(self.device).type)

    def precision_mode(self, kind: str) -> str | None:
        """The mode of forward passes for ``kind`` output; ``None`` until ``"auto"`` chose.

        ``kind`` is :attr:`OutputSpec.kind`: grid, or pooled with one pooling.
        """
        if self.options.precision != "auto":
            return self.options.precision
        return self._modes.get(kind)

    def precision_scope(self, kind: str) -> contextlib.AbstractContextManager[Any]:
        """The precision of forward passes for ``kind`` output, set around them only."""
        chosen = self.precision_mode(kind) or "fp32"
        self.precision_record["used"][kind] = chosen
        return precision_scope(chosen, self.device_type)

    def resolve_precision(
        self, batch: torch.Tensor, context: Sequence[SampleContext], output: OutputSpec
    ) -> np.ndarray | None:
        """Under ``"auto"``, choose the mode on the first batch and return its embeddings.

        fp32 and each reduced mode run the batch (after a one-sample warm-up each); the
        fastest mode whose cosine with fp32 stays >= ``precision_min_cosine`` is kept for this
        output kind (grid, or pooled with this pooling), and the trial is recorded in
        :attr:`precision_record`.
        """
        if self.precision_mode(output.kind) is not None:
            return None
        with self._precision_lock:
            if self.precision_mode(output.kind) is not None:
                return None
            device_type = self.device_type
            if not bf16_is_fast(device_type):
                self._modes[output.kind] = "fp32"
                self.precision_record["trials"][output.kind] = {
                    "reason": f"this {device_type} has no fast bf16/TF32 matrix units: "
                              "fp32, not measured"
                }
                return None
            trials, outputs = [], {}
            for mode in MODES:
                with precision_scope(mode, device_type):
                    self.run_batch(batch[:1], context[:1], output)  # warm-up (kernels, caches)
                    t0 = time.perf_counter()
                    outputs[mode] = self.run_batch(batch, context, output)
                    seconds = time.perf_counter() - t0
                trials.append(ModeTrial.measure(mode, seconds, outputs["fp32"], outputs[mode]))
            chosen, reason = choose_mode(trials, self.options.precision_min_cosine)
            self._modes[output.kind] = chosen
            self.precision_record["used"][output.kind] = chosen
            self.precision_record["trials"][output.kind] = {
                "device": device_type, "batch": len(batch), "reason": reason,
                "modes": {t.mode: t.to_dict() for t in trials},
            }
            return outputs[chosen]

    def metadata(self) -> dict[str, Any]:
        """The base metadata plus ``precision`` (:attr:`precision_record`)."""
        return {**super().metadata(), "precision": self.precision_record}

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resize as the base class does, then apply the memory layout option."""
        x = super().prepare(x)
        if self.options.channels_last:
            x = x.contiguous(memory_format=import_torch().channels_last)
        return x
