"""Shared token plumbing: tokens to a grid, the class token, a batch split by side input.

Every adapter used to write its own ``reshape(...).permute(0, 3, 1, 2)`` and its own loop
that runs samples with the same GSD, coordinates or dates together. These helpers do it once,
as timm's ``forward_intermediates(output_fmt="NCHW")`` does for its ViTs: the card's
:class:`~eoembed.embedders.card.TokenLayout` says which leading tokens to drop and where
the class token is; the grid's shape follows from the input and the patch size.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["class_token", "grid_shape", "split_batch", "tokens_to_grid"]


def grid_shape(x: torch.Tensor, patch: int) -> tuple[int, int]:
    """``(h, w)`` grid cells of an input ``(..., H, W)`` cut into ``patch``-pixel squares."""
    return x.shape[-2] // patch, x.shape[-1] // patch


def tokens_to_grid(
    tokens: torch.Tensor, shape: tuple[int, int], prefix: int = 0
) -> torch.Tensor:
    """Raster-order tokens ``(n, prefix + h*w, D)`` -> ``(n, D, h, w)``, prefix dropped."""
    h, w = shape
    patches = tokens[:, prefix:] if prefix else tokens
    grid: torch.Tensor = patches.reshape(len(tokens), h, w, tokens.shape[-1])
    return grid.permute(0, 3, 1, 2)


def class_token(tokens: torch.Tensor, index: int) -> torch.Tensor:
    """The class token ``(n, D)`` of ``(n, T, D)`` tokens."""
    return tokens[:, index]


def split_batch(
    keys: Sequence[Hashable], forward: Callable[[list[int]], torch.Tensor]
) -> torch.Tensor:
    """Run ``forward(indices)`` once per distinct key and put each result back in place.

    For models that take a side input per batch rather than per sample (one GSD, all
    samples with coordinates or none): samples with equal keys run together, and the
    outputs come back in the input order. One key means one call over all samples.
    """
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    if len(groups) == 1:
        return forward(list(range(len(keys))))
    out: torch.Tensor | None = None
    for idx in groups.values():
        part = forward(idx)
        if out is None:
            out = part.new_empty((len(keys), *part.shape[1:]))
        out[idx] = part.to(out.dtype)
    assert out is not None
    return out
