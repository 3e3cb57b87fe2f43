"""What output: one pooled vector per region, or a georeferenced grid of embeddings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from eoembed.errors import SpecError
from eoembed.specs._base import Spec, check_choice

__all__ = ["DEFAULT_POOLING", "MODES", "POOLINGS", "REDUCTIONS", "OutputSpec"]

MODES = ("pooled", "grid")
REDUCTIONS = ("mean", "max", "min", "std", "median")
"""Poolings that reduce the model's grid over its cells."""
DEFAULT_POOLING = "default"
"""The model's published global embedding (its card's :class:`PoolingRule` default)."""
POOLINGS = (DEFAULT_POOLING, "cls", "native", *REDUCTIONS)
"""``"cls"``: the class token; ``"native"``: the model's own global embedding (CLIP's
image embedding, ...); which a model has is checked against its card, not here."""


@dataclass(frozen=True)
class OutputSpec(Spec):
    """``OutputSpec.pooled()`` gives a (D,) vector; ``OutputSpec.grid()`` a (D, y, x) grid."""

    mode: str = "pooled"
    pooling: str | None = DEFAULT_POOLING
    """For pooled output: a name from :data:`POOLINGS`; ``"default"`` is the model's own."""

    def __post_init__(self) -> None:
        check_choice("OutputSpec.mode", self.mode, MODES)
        if self.mode == "pooled":
            check_choice("OutputSpec.pooling", self.pooling, POOLINGS)
        elif self.pooling is not None:
            raise SpecError(
                "OutputSpec.pooling", self.pooling, allowed=[None],
                reason="grid output is not pooled",
            )

    @property
    def kind(self) -> str:
        """``"grid"`` or ``"pooled-<pooling>"``: what the forward passes compute.

        Per-output state such as ``precision="auto"``'s choice is kept per kind.
        """
        return "grid" if self.mode == "grid" else f"pooled-{self.pooling}"

    @classmethod
    def pooled(cls, pooling: str | None = None) -> OutputSpec:
        """One vector per region: ``pooling`` (``None``: the model's published default).

        ``"cls"`` is the class token, ``"native"`` the model's own global embedding, the
        reductions (``"mean"``, ``"max"``...) reduce the model's grid over its cells.
        """
        return cls("pooled", pooling or DEFAULT_POOLING)

    @classmethod
    def grid(cls) -> OutputSpec:
        """The model's spatial output, georeferenced to the ground cells it covers."""
        return cls("grid", None)

    def with_pooling(self, pooling: str) -> OutputSpec:
        """This spec with ``pooling`` (a model's resolved pooling); grid output unchanged."""
        if self.mode != "pooled":
            return self
        return dataclasses.replace(self, pooling=pooling)
