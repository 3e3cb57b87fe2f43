"""Optional int8 storage: symmetric linear quantisation, 4x smaller than float32.

The formula (method ``"int8-symmetric"``)::

    scale = max|v| / 127            # per vector (pooled) or per channel (grid)
    q     = clip(round(v / scale), -127, 127)   as int8
    v'    = q * scale               # dequantised

Rounding to the nearest step makes the error of every element at most half a step:
``|v - v'| <= scale / 2`` (plus float32 rounding of the product, ~1e-7 relative). ``-128``
is never produced by rounding, so it marks missing values (NaN in, NaN out).

The scale is symmetric (no offset) because embeddings are compared by direction (cosine,
dot product): a zero offset keeps ``q`` proportional to ``v`` within each scale group.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from eoembed.writers.base import EmbeddingRecord

__all__ = ["METHOD", "MISSING", "dequantize", "quantize", "quantize_record"]

METHOD = "int8-symmetric"
"""The name stored in ``EmbeddingSchema.quantization``."""
MISSING = -128
"""The int8 value standing for NaN (rounding never produces it)."""


def quantize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantise float ``values`` to int8 and the scale(s) that undo it.

    Args:
        values: ``(dim,)`` for one pooled vector (one scale, shape ``()``), or ``(dim, ...)``
            for a grid (one scale per channel, shape ``(dim,)``: channels differ in range,
            and a shared scale would flatten the small ones to zero).

    Returns:
        ``(q, scale)``: int8 values of ``values``' shape and float32 scale(s), such that
        ``|values - dequantize(q, scale)| <= scale / 2`` element-wise.
    """
    v = np.asarray(values, dtype=np.float64)
    axes = tuple(range(1, v.ndim)) if v.ndim > 1 else None
    missing = np.isnan(v)
    amax = np.max(np.where(missing, 0.0, np.abs(v)), axis=axes)
    # Scale rounded to float32 first, so q is computed with exactly the scale that is stored.
    scale = (amax / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float64)
    q = np.clip(np.rint(np.where(missing, 0.0, v) / _expand(safe, v.ndim)), -127, 127)
    q = np.where(missing, MISSING, q).astype(np.int8)
    return q, np.asarray(scale, dtype=np.float32)


def dequantize(q: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """Float32 values from int8 ``q`` and its scale(s); ``-128`` (missing) becomes NaN.

    ``scale`` indexes the leading axes of ``q``: shape ``()`` for one vector, ``(dim,)`` for
    a ``(dim, h, w)`` grid, ``(n,)`` for an ``(n, dim)`` stack of pooled vectors.
    Float input (already masked, e.g. by xarray's ``_FillValue`` decoding) is scaled as is.
    """
    q = np.asarray(q)
    s = np.asarray(scale, dtype=np.float32)
    out = q.astype(np.float32) * _expand(s, q.ndim)
    if q.dtype == np.int8:
        out[q == MISSING] = np.nan
    result: np.ndarray = out.astype(np.float32, copy=False)
    return result


def quantize_record(record: EmbeddingRecord) -> EmbeddingRecord:
    """The same record with int8 ``values`` and their ``scale``."""
    q, scale = quantize(record.values)
    return dataclasses.replace(record, values=q, scale=scale)


def _expand(scale: np.ndarray, ndim: int) -> np.ndarray:
    """Scale shaped to broadcast over the trailing axes of an ``ndim`` array."""
    return scale.reshape(scale.shape + (1,) * (ndim - scale.ndim))
