"""A light segmentation decoder on patch-grid embeddings, upsampling to the label resolution.

The TerraTorch embedding tutorial's idea, kept small enough for a CPU: a 1x1 convolution
mixes the embedding channels, a 3x3 one adds the neighbouring cells, the map is upsampled
``upsample`` times (bilinear) to the label raster's pixel size and refined by a narrow 3x3
convolution (``fine_channels``, cheap at the fine resolution) before the per-pixel
classifier. Labels reach it already aligned by
georeference (see :mod:`eoembed.heads.join`); pixels without a label are ignored by the
loss. Saved as safetensors, with the channel normalisation beside the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eoembed.embedders.base import import_torch
from eoembed.heads.base import GridHead, register_head
from eoembed.heads.mlp import load_tensors, save_tensors

if TYPE_CHECKING:
    import torch

__all__ = ["SegmentationHead", "build_decoder"]


def build_decoder(dim: int, classes: int, channels: int, upsample: int, dropout: float,
                  fine_channels: int = 16) -> torch.nn.Module:
    """The decoder: ``(n, dim, h, w)`` embeddings -> ``(n, classes, h*upsample, w*upsample)``."""
    nn = import_torch().nn
    net: torch.nn.Module = nn.Sequential(
        nn.Conv2d(dim, channels, 1), nn.GELU(), nn.Dropout2d(dropout),
        nn.Conv2d(channels, channels, 3, padding=1, padding_mode="replicate"), nn.GELU(),
        nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False),
        nn.Conv2d(channels, fine_channels, 3, padding=1, padding_mode="replicate"), nn.GELU(),
        nn.Conv2d(fine_channels, classes, 1),
    )
    return net


@register_head
class SegmentationHead(GridHead):
    """Per-pixel classes from ``(dim, h, w)`` grids, at ``upsample`` x the grid's resolution."""

    kind: ClassVar[str] = "segmentation"
    tasks: ClassVar[tuple[str, ...]] = ("segmentation",)
    weights_file: ClassVar[str] = "model.safetensors"
    defaults: ClassVar[dict[str, Any]] = {
        "channels": 64, "fine_channels": 16, "epochs": 40, "batch_size": 16, "lr": 3e-3,
        "weight_decay": 1e-4,
        "dropout": 0.1, "upsample": None,
    }

    def _configure(self) -> None:
        import_torch()
        self.module: torch.nn.Module | None = None
        self.stats: dict[str, torch.Tensor] = {}

    def _build(self, dim: int) -> torch.nn.Module:
        p = self.params
        return build_decoder(dim, len(self.classes or ()), int(p["channels"]), self.upsample,
                             float(p["dropout"]), int(p["fine_channels"]))

    def _fit(self, grids: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> None:
        torch = import_torch()
        p = self.params
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, g in enumerate(grids):
            by_shape.setdefault((g.shape[1], g.shape[2]), []).append(i)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            module = self._build(grids[0].shape[0])
            cells = np.concatenate([g.reshape(g.shape[0], -1) for g in grids], axis=1)
            std = cells.std(axis=1)
            stats = {
                "x_mean": torch.from_numpy(cells.mean(axis=1)).reshape(1, -1, 1, 1),
                "x_std": torch.from_numpy(np.where(std > 0, std, 1.0).astype(np.float32))
                .reshape(1, -1, 1, 1),
            }
            optimiser = torch.optim.AdamW(module.parameters(), lr=float(p["lr"]),
                                          weight_decay=float(p["weight_decay"]))
            stacks = {
                shape: ((torch.from_numpy(np.stack([grids[i] for i in idx])) - stats["x_mean"])
                        / stats["x_std"],
                        torch.from_numpy(np.stack([labels[i] for i in idx])))
                for shape, idx in by_shape.items()
            }
            batch = max(1, int(p["batch_size"]))
            module.train()
            for _ in range(int(p["epochs"])):
                for x, y in stacks.values():
                    order = torch.randperm(len(x))
                    for start in range(0, len(x), batch):
                        index = order[start:start + batch]
                        target = y[index]
                        if not bool((target != self.ignore_index).any()):
                            continue
                        optimiser.zero_grad(set_to_none=True)
                        loss = torch.nn.functional.cross_entropy(
                            module(x[index]), target, ignore_index=self.ignore_index
                        )
                        loss.backward()
                        optimiser.step()
        module.eval()
        self.module = module
        self.stats = stats

    def _predict(self, grids: Sequence[np.ndarray]) -> list[np.ndarray]:
        torch = import_torch()
        assert self.module is not None
        out = []
        with torch.inference_mode():
            for g in grids:
                x = torch.from_numpy(np.ascontiguousarray(g))[None]
                logits = self.module((x - self.stats["x_mean"]) / self.stats["x_std"])
                out.append(np.asarray(logits[0].argmax(dim=0).numpy()))
        return out

    def _save_weights(self, path: Path) -> None:
        assert self.module is not None
        save_tensors(path, self.module, self.stats, {"kind": self.kind, "task": self.task})

    def _load_weights(self, path: Path) -> None:
        assert self.input_dim is not None
        self.module = self._build(self.input_dim)
        self.stats = load_tensors(path, self.module)
