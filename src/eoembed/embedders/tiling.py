"""Large inputs for fixed-size models: tiles of the native size, stitched back without seams.

Tiles start on patch boundaries and overlap just enough to cover the region; every output
cell is taken from the tile whose centre is nearest to it, so each cell appears exactly once
and always from the tile that gave it the most context on every side.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from eoembed.errors import CapabilityError

if TYPE_CHECKING:
    import torch

__all__ = ["stitch_tiles", "tile_starts"]


def tile_starts(length: int, size: int, patch: int) -> list[int]:
    """Start offsets (multiples of ``patch``) of tiles of ``size`` px covering ``length`` px."""
    if length <= size:
        return [0]
    count = math.ceil((length - size) / size) + 1
    span = (length - size) // patch
    return [round(i * span / (count - 1)) * patch for i in range(count)]


def _owners(length_cells: int, starts: list[int], size_cells: int, patch: int) -> list[int]:
    """For each output cell, the index of the tile whose centre is nearest."""
    centres = [s / patch + size_cells / 2 for s in starts]
    owners = []
    for c in range(length_cells):
        distances = [abs(c + 0.5 - m) for m in centres]
        owners.append(distances.index(min(distances)))
    return owners


def stitch_tiles(
    x: torch.Tensor,
    size: int,
    patch: int,
    forward: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
) -> torch.Tensor:
    """``(N, D, H/patch, W/patch)`` features of ``x`` ``(N, [T,] C, H, W)`` from native tiles.

    ``forward`` maps ``(n, C, size, size)`` to ``(n, D, size/patch, size/patch)``. Sides smaller than ``size`` are reflect-padded (the padding's cells are cropped off).
    """
    import torch

    height, width = x.shape[-2:]
    if height % patch or width % patch:
        raise CapabilityError(
            f"input_prep='tile' needs region sides that are multiples of the model's patch "
            f"size ({patch} px); got {height} x {width} px. Choose a region size that is, or "
            f"use input_prep='resize'"
        )
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])  # padding modes take 4-d input; frames fold in
        x = torch.nn.functional.pad(flat, (0, pad_w, 0, pad_h), mode=mode)
        x = x.reshape(*lead, *x.shape[-3:])
    cells = size // patch
    ys, xs = tile_starts(x.shape[-2], size, patch), tile_starts(x.shape[-1], size, patch)
    tiles = torch.stack([x[..., y : y + size, c : c + size] for y in ys for c in xs], dim=1)
    flat = tiles.reshape(-1, *tiles.shape[2:])
    outputs = torch.cat([forward(flat[i : i + batch_size]) for i in range(0, len(flat), batch_size)])
    outputs = outputs.reshape(len(x), len(ys), len(xs), *outputs.shape[1:])
    rows, cols = height // patch, width // patch
    own_y, own_x = _owners(rows, ys, cells, patch), _owners(cols, xs, cells, patch)
    iy = torch.tensor(own_y)
    ix = torch.tensor(own_x)
    ly = torch.tensor([r - ys[t] // patch for r, t in zip(range(rows), own_y, strict=True)])
    lx = torch.tensor([c - xs[t] // patch for c, t in zip(range(cols), own_x, strict=True)])
    # (N, ty, tx, D, cy, cx) -> (ty, cy, tx, cx, N, D); pick (tile, cell) per row and column.
    by_cell = outputs.permute(1, 4, 2, 5, 0, 3)
    picked = by_cell[iy[:, None], ly[:, None], ix[None, :], lx[None, :]]
    return picked.permute(2, 3, 0, 1).contiguous()
