"""Train/test splits keyed by place, not by row order: random, spatial blocks, or predefined.

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

Predefined splits (a benchmark's own partition) hold out what they declare:

- ``column:NAME``: the label table's column ``NAME`` says ``train`` or ``test`` (``val`` and
  ``validation`` are held out too); the caller resolves it per sample (``held_out=``).
- ``raster:PATH``: a mask raster sampled at each sample's centre (reprojected to the raster's
  CRS): nonzero is test; zero, nodata and outside the raster are train.
- ``box:MINX,MINY,MAXX,MAXY[,CRS]``: samples whose centre is inside the box (default CRS
  ``EPSG:4326``) are test.
- ``none`` (or ``test_size=0``): everything trains; there are no held-out metrics.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eoembed.errors import SpecError

__all__ = ["METHODS", "PREDEFINED", "Split", "check_method", "column_held_out", "make_split"]

METHODS = ("random", "blocks")
"""Splits drawn from the samples' places with ``test_size`` and ``seed``."""
PREDEFINED = ("none", "column:NAME", "raster:PATH", "box:MINX,MINY,MAXX,MAXY[,CRS]")
"""Splits given by the user (``test_size`` is ignored)."""
TRAIN_SIDES = ("train", "training")
TEST_SIDES = ("test", "val", "validation")


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


def check_method(method: str) -> str:
    """``method`` if it names a split this module makes (the box is parsed, too).

    Raises:
        SpecError: an unknown method, or a predefined one without its argument.
    """
    kind, sep, arg = method.partition(":")
    if method in METHODS or method == "none":
        return method
    if sep and kind in ("column", "raster") and arg.strip():
        return method
    if sep and kind == "box":
        _box(arg)
        return method
    raise SpecError("split", method, allowed=METHODS + PREDEFINED)


def _box(text: str) -> tuple[tuple[float, float, float, float], str]:
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = tuple(float(p) for p in parts[:4])
    except ValueError:
        numbers = ()
    if len(parts) not in (4, 5) or len(numbers) != 4 or not all(map(math.isfinite, numbers)) \
            or numbers[0] >= numbers[2] or numbers[1] >= numbers[3]:
        raise SpecError("split", f"box:{text}", allowed="box:MINX,MINY,MAXX,MAXY[,CRS] with "
                        "MINX < MAXX and MINY < MAXY")
    crs = parts[4] if len(parts) == 5 and parts[4] else "EPSG:4326"
    return (numbers[0], numbers[1], numbers[2], numbers[3]), crs


def column_held_out(values: np.ndarray, column: str) -> np.ndarray:
    """Whether each label row is held out, from its split column (``train``/``test``...).

    Raises:
        SpecError: a value that is neither a train nor a test word.
    """
    words = np.asarray([str(v).strip().lower() for v in np.asarray(values).tolist()])
    unknown = sorted(set(words.tolist()) - set(TRAIN_SIDES) - set(TEST_SIDES))
    if unknown:
        raise SpecError(f"split column {column!r}", unknown[:5],
                        allowed=TRAIN_SIDES + TEST_SIDES)
    return np.isin(words, TEST_SIDES)


def _raster_held_out(path: str, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, int]:
    """Nonzero mask pixels under each sample's centre; and how many fell outside or on nodata."""
    import rasterio

    from eoembed.grid import transformer

    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise SpecError("split", f"raster:{path}", allowed="a georeferenced mask raster")
            x, y = transformer("EPSG:4326", src.crs.to_string()).transform(lon, lat)
            values = np.array([v[0] for v in src.sample(zip(np.atleast_1d(x), np.atleast_1d(y),
                                                            strict=True), masked=True)])
            rows, cols = rasterio.transform.rowcol(src.transform, x, y)
            inside = ((np.asarray(rows) >= 0) & (np.asarray(rows) < src.height)
                      & (np.asarray(cols) >= 0) & (np.asarray(cols) < src.width))
    except rasterio.errors.RasterioIOError as exc:
        raise SpecError("split", f"raster:{path}", allowed="a readable mask raster",
                        reason=str(exc).splitlines()[0]) from None
    mask = np.ma.getmaskarray(values)
    filled = np.ma.filled(values.astype(np.float64), 0.0)
    test = inside & ~mask & np.isfinite(filled) & (filled != 0)
    return test, int((~inside | mask).sum())


def _predefined(method: str, lon: np.ndarray, lat: np.ndarray,
                held_out: np.ndarray | None) -> Split:
    kind, _, arg = method.partition(":")
    info: dict[str, Any] = {"method": method, "kind": kind}
    n = len(lon)
    if kind == "none":
        test = np.zeros(n, dtype=bool)
    elif kind == "column":
        if held_out is None or len(held_out) != n:
            raise SpecError("split", method, reason="a column split needs vector labels with "
                            "that column")
        test = np.asarray(held_out, dtype=bool)
        info["column"] = arg
    elif kind == "raster":
        test, unsampled = _raster_held_out(arg, lon, lat)
        info.update(raster=arg, samples_outside_raster=unsampled)
    else:
        from eoembed.grid import transformer

        (minx, miny, maxx, maxy), crs = _box(arg)
        x, y = transformer("EPSG:4326", crs).transform(lon, lat)
        x, y = np.asarray(x), np.asarray(y)
        test = (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)
        info.update(box=[minx, miny, maxx, maxy], crs=crs)
    if kind != "none" and not test.any():
        raise SpecError("split", method, reason=f"it holds out none of the {n} samples")
    info.update(n_train=int(n - test.sum()), n_test=int(test.sum()))
    return Split(test=test, info=info)


def make_split(
    lon: np.ndarray,
    lat: np.ndarray,
    *,
    method: str = "random",
    test_size: float = 0.25,
    block_size_m: float = 1000.0,
    seed: int = 0,
    held_out: np.ndarray | None = None,
) -> Split:
    """Hold out ``test_size`` of the samples at ``lon``/``lat`` (degrees, one per sample).

    Predefined methods (:data:`PREDEFINED`) hold out what they declare instead; ``none``, or
    ``test_size=0`` with ``random``/``blocks``, holds out nothing.

    Args:
        lon: sample centres, degrees.
        lat: sample centres, degrees.
        method: a name in :data:`METHODS` or :data:`PREDEFINED`.
        test_size: share held out by ``random``/``blocks``; 0 holds out nothing.
        block_size_m: side of ``blocks``, metres.
        seed: seeds ``random``/``blocks``.
        held_out: a ``column:`` split's side of every sample (True: test), which the caller
            reads from its labels (:func:`column_held_out`).

    Raises:
        SpecError: an unknown method, a test size outside [0, 1), a block size <= 0, fewer
            than two samples, blocks so large that one side would be empty, or a predefined
            split that holds out no sample.
    """
    check_method(method)
    if not 0.0 <= test_size < 1.0:
        raise SpecError("test_size", test_size, allowed="a fraction in [0, 1)")
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    if method not in METHODS or test_size == 0.0:
        return _predefined(method if method not in METHODS else "none", lon, lat, held_out)
    if not block_size_m > 0:
        raise SpecError("block_size_m", block_size_m, allowed="metres > 0")
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
