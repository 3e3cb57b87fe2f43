"""What output: one pooled vector per region, or a georeferenced grid of embeddings."""

from __future__ import annotations

from dataclasses import dataclass

from eoembed.errors import SpecError
from eoembed.specs._base import Spec, check_choice

__all__ = ["MODES", "POOLINGS", "OutputSpec"]

MODES = ("pooled", "grid")
POOLINGS = ("mean", "max", "min", "std", "median")


@dataclass(frozen=True)
class OutputSpec(Spec):
    """``OutputSpec.pooled("mean")`` gives a (D,) vector; ``OutputSpec.grid()`` a (D, y, x) grid."""

    mode: str = "pooled"
    pooling: str | None = "mean"

    def __post_init__(self) -> None:
        check_choice("OutputSpec.mode", self.mode, MODES)
        if self.mode == "pooled":
            check_choice("OutputSpec.pooling", self.pooling, POOLINGS)
        elif self.pooling is not None:
            raise SpecError(
                "OutputSpec.pooling", self.pooling, allowed=[None],
                reason="grid output is not pooled",
            )

    @classmethod
    def pooled(cls, pooling: str = "mean") -> OutputSpec:
        """One vector per region, the model's spatial outputs reduced by ``pooling``."""
        return cls("pooled", pooling)

    @classmethod
    def grid(cls) -> OutputSpec:
        """The model's spatial output, georeferenced to the ground cells it covers."""
        return cls("grid", None)
