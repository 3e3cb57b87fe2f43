"""Numeric precision of a forward pass: an explicit, scoped, measured choice.

``"fp32"``: fp32 tensors and fp32 matrix products (torch's ``"highest"``; cuDNN without TF32).
``"fp32-bf16mm"``: fp32 tensors, reduced-precision matrix products (torch's ``"medium"``:
bf16 on CPUs with AVX512-BF16/AMX, TF32 on CUDA GPUs; cuDNN convolutions in TF32 too).
``"bf16"``: bf16 autocast. ``"auto"``: on the first batch, each faster mode is compared with
fp32 on that batch and the fastest one whose embeddings keep cosine >= ``min_cosine`` with
fp32 is kept (see :func:`choose_mode`).

Each mode is set only around eoembed's own forward pass (:func:`precision_scope`) and the
process's settings are restored after it, so neither the caller's code nor another model
sees them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from eoembed.embedders.base import import_torch
from eoembed.embedders.torch_state import preserved_torch_state

__all__ = [
    "MIN_SPEEDUP",
    "MODES",
    "ModeTrial",
    "Precision",
    "choose_mode",
    "min_cosine",
    "precision_scope",
]

Precision = Literal["fp32", "fp32-bf16mm", "bf16", "auto"]
MODES: tuple[str, ...] = ("fp32", "fp32-bf16mm", "bf16")
"""The fixed modes, reference first, then in order of decreasing precision."""
MIN_SPEEDUP = 1.1
"""How much faster than fp32 a reduced mode must run on the trial batch to be chosen: a
mode within timing noise of fp32 is not worth its rounding."""


@contextlib.contextmanager
def precision_scope(mode: str, device_type: str) -> Iterator[None]:
    """Run the block in ``mode`` on ``device_type``; restore torch's settings after it."""
    torch = import_torch()
    reduced_matmul = mode == "fp32-bf16mm"
    with preserved_torch_state():
        # The legacy setters keep torch's legacy and new (fp32_precision) views consistent.
        torch.set_float32_matmul_precision("medium" if reduced_matmul else "highest")
        if device_type == "cuda":
            torch.backends.cudnn.allow_tf32 = reduced_matmul
        if mode == "bf16":
            with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
                yield
        else:
            yield


def min_cosine(reference: np.ndarray, other: np.ndarray) -> float | None:
    """Smallest cosine similarity between matching vectors along axis 1.

    Pooled ``(N, D)``: one cosine per sample; grids ``(N, D, h, w)``: one per cell. Two zero
    vectors count as equal. ``None`` when ``other`` is not finite (the mode overflowed).
    """
    a = np.moveaxis(reference.astype(np.float64), 1, -1).reshape(-1, reference.shape[1])
    b = np.moveaxis(other.astype(np.float64), 1, -1).reshape(-1, other.shape[1])
    if not np.isfinite(b).all():
        return None
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    norms = norm_a * norm_b
    cos = np.divide((a * b).sum(axis=1), norms, out=np.zeros(len(a)), where=norms > 0)
    cos[(norm_a == 0) & (norm_b == 0)] = 1.0
    return float(cos.min()) if cos.size else None


@dataclass(frozen=True)
class ModeTrial:
    """One mode's run of the trial batch."""

    mode: str
    seconds: float
    cosine: float | None = None
    """Smallest cosine with fp32 of the output the run gives (per sample, or per grid cell);
    ``None`` for fp32 itself or an output that is not finite."""
    cosine_mean_pooled: float | None = None
    """Grids only: smallest per-sample cosine of the grids' spatial means."""

    @classmethod
    def measure(
        cls, mode: str, seconds: float, reference: np.ndarray, output: np.ndarray
    ) -> ModeTrial:
        """Compare ``output`` with fp32's ``reference`` (skipped for fp32 itself)."""
        if mode == "fp32":
            return cls(mode, seconds)
        pooled = None
        if output.ndim > 2:
            pooled = min_cosine(reference.mean(axis=(-2, -1)), output.mean(axis=(-2, -1)))
        return cls(mode, seconds, min_cosine(reference, output), pooled)

    def passes(self, threshold: float) -> bool:
        """Whether every measured cosine is at least ``threshold``."""
        pooled = self.cosine_mean_pooled
        return (self.cosine is not None and self.cosine >= threshold
                and (pooled is None or pooled >= threshold))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for the embedder's metadata (cosines rounded to 7 digits)."""
        out: dict[str, Any] = {"seconds": round(self.seconds, 4)}
        for key in ("cosine", "cosine_mean_pooled"):
            value = getattr(self, key)
            if self.mode != "fp32" and (key == "cosine" or value is not None):
                out[key] = None if value is None else round(value, 7)
        return out


def choose_mode(trials: Sequence[ModeTrial], threshold: float) -> tuple[str, str]:
    """The mode to keep, and a sentence saying why.

    The fastest mode that keeps every cosine >= ``threshold`` and runs at least
    :data:`MIN_SPEEDUP` times fp32's speed; else ``"fp32"``.
    """
    fp32 = next(t for t in trials if t.mode == "fp32")
    verdicts, kept = [], []
    for t in trials:
        if t.mode == "fp32":
            continue
        speedup = fp32.seconds / t.seconds if t.seconds > 0 else math.inf
        cosine = "not finite" if t.cosine is None else f"{t.cosine:.6f}"
        if not t.passes(threshold):
            verdicts.append(f"{t.mode} cosine {cosine} < {threshold}")
        elif speedup < MIN_SPEEDUP:
            verdicts.append(f"{t.mode} only {speedup:.2f}x fp32's speed")
        else:
            verdicts.append(f"{t.mode} cosine {cosine}, {speedup:.2f}x fp32's speed")
            kept.append(t)
    if not kept:
        return "fp32", "; ".join(verdicts) + ": kept fp32"
    best = min(kept, key=lambda t: t.seconds)
    return best.mode, "; ".join(verdicts) + f": kept {best.mode}, the fastest that passes"
