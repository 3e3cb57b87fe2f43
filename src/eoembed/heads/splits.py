"""Train/test splits keyed by place, not by row order: random, or by spatial blocks.

Every sample has a location (its region's or cell's centre, lon/lat). Which samples go to the
test set depends only on those locations and the seed, never on the order of a file: a
shuffled label file, or another model's export of the same regions, gets the same split,
which is what makes :func:`eoembed.heads.compare` fair.

- ``random``: samples ordered by a seeded hash of their location; the first ``test_size``
  share is the test set.
- ``blocks``: samples grouped into square blocks of ``block_size_m`` metres (in the UTM zone
  of their mean centre, or EASE-Grid 2.0 when they span more than one zone's width); whole
  blocks, in seeded hash order, go to the test set until it holds ``test_size`` of the
  samples. No block is on both sides, so neighbours of a test sample cannot leak into
  training (spatial autocorrelation inflates random-split scores).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eoembed.errors import SpecError

__all__ = ["METHODS", "Split", "make_split"]

METHODS = ("random", "blocks")


@dataclass
class Split:
    """Which samples are held out, and the block of every sample (``blocks`` only)."""

    test: np.ndarray
    """Boolean, one per sample."""
    groups: np.ndarray | None = None
    """Block id of every sample (``blocks`` only)."""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def train(self) -> np.ndarray:
        """Boolean, one per sample: the complement of :attr:`test`."""
        return ~self.test


def _rank(seed: int, keys: list[str]) -> np.ndarray:
    """A seeded, order-free shuffle: the position of each key when sorted by its hash."""
    digests = [hashlib.sha256(f"{seed}:{k}".encode()).hexdigest() for k in keys]
    order = sorted(range(len(keys)), key=lambda i: (digests[i], keys[i]))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    return rank


def _metric_xy(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    from eoembed.grid import local_metric_crs, transformer

    if float(np.ptp(lon)) > 6.0:
        crs = "EPSG:6933"
    else:
        crs = local_metric_crs(float(np.mean(lon)), float(np.mean(lat)))
    x, y = transformer("EPSG:4326", crs).transform(lon, lat)
    return np.asarray(x), np.asarray(y), crs


def make_split(
    lon: np.ndarray,
    lat: np.ndarray,
    *,
    method: str = "random",
    test_size: float = 0.25,
    block_size_m: float = 1000.0,
    seed: int = 0,
) -> Split:
    """Hold out ``test_size`` of the samples at ``lon``/``lat`` (degrees, one per sample).

    Raises:
        SpecError: an unknown method, a test size outside (0, 1), a block size <= 0, fewer
            than two samples, or blocks so large that one side would be empty.
    """
    if method not in METHODS:
        raise SpecError("split", method, allowed=METHODS)
    if not 0.0 < test_size < 1.0:
        raise SpecError("test_size", test_size, allowed="a fraction in (0, 1)")
    if not block_size_m > 0:
        raise SpecError("block_size_m", block_size_m, allowed="metres > 0")
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    n = len(lon)
    if n < 2:
        raise SpecError("samples", n, allowed="at least 2 to split into train and test")
    wanted = min(n - 1, max(1, round(test_size * n)))
    info: dict[str, Any] = {"method": method, "test_size": test_size, "seed": seed}
    if method == "random":
        keys = [f"{a:.7f},{b:.7f}" for a, b in zip(lon, lat, strict=True)]
        test = _rank(seed, keys) < wanted
        info.update(n_train=int(n - test.sum()), n_test=int(test.sum()))
        return Split(test=test, info=info)

    x, y, crs = _metric_xy(lon, lat)
    bx = np.floor(x / block_size_m).astype(np.int64)
    by = np.floor(y / block_size_m).astype(np.int64)
    block_keys = [f"{a},{b}" for a, b in zip(bx, by, strict=True)]
    names = sorted(set(block_keys))
    if len(names) < 2:
        raise SpecError("block_size_m", block_size_m, allowed="a smaller block size",
                        reason=f"all {n} samples fall in one block")
    ids = {name: i for i, name in enumerate(names)}
    groups = np.array([ids[k] for k in block_keys], dtype=np.int64)
    counts = np.bincount(groups, minlength=len(names))
    test_blocks: list[int] = []
    held = 0
    for block in np.argsort(_rank(seed, names), kind="stable"):
        if held >= wanted:
            break
        if held + counts[block] >= n:
            continue  # would leave nothing to train on
        test_blocks.append(int(block))
        held += int(counts[block])
    test = np.isin(groups, test_blocks)
    if not test.any():
        raise SpecError("block_size_m", block_size_m, allowed="a smaller block size",
                        reason="no block fits in the test set without emptying the training set")
    info.update(block_size_m=block_size_m, crs=crs, blocks=len(names),
                test_blocks=len(test_blocks), n_train=int(n - test.sum()),
                n_test=int(test.sum()))
    if not math.isclose(test.mean(), test_size, abs_tol=0.1):
        info["note"] = f"whole blocks hold out {test.mean():.2f} of the samples"
    return Split(test=test, groups=groups, info=info)
