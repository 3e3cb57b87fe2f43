"""Retries with exponential backoff, for the failures that can go away on their own.

A region outside every scene, a missing band or a bad argument fails the same way every time,
so those are not retried; network errors, timeouts, HTTP 5xx surfaced as I/O errors, and
out-of-memory in a batch are.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from eoembed.errors import (
    CapabilityError,
    ChecksumError,
    DependencyNotFoundError,
    ModelArgumentError,
    NoDataError,
    SpecError,
    UnsafeWeightsError,
    WeightsNotFoundError,
)

__all__ = ["RetryPolicy", "Tried", "is_permanent"]

T = TypeVar("T")

_PERMANENT: tuple[type[BaseException], ...] = (
    NoDataError,
    CapabilityError,
    SpecError,
    ModelArgumentError,
    DependencyNotFoundError,
    UnsafeWeightsError,
    ChecksumError,
    WeightsNotFoundError,
)


def is_permanent(exc: BaseException) -> bool:
    """Whether trying again cannot help."""
    return isinstance(exc, _PERMANENT)


@dataclass(frozen=True)
class Tried(Generic[T]):
    """What a call gave, and after how many tries."""

    value: T
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` extra tries after the first, waiting ``backoff_s * 2**k`` (jittered).

    The jitter (x0.8 to x1.2) keeps concurrent workers from retrying in lockstep against a
    rate-limited service; waits are capped at ``max_wait_s``.
    """

    max_retries: int = 2
    backoff_s: float = 0.5
    max_wait_s: float = 30.0

    def wait(self, retry: int) -> float:
        """Seconds to sleep before retry number ``retry`` (1-based)."""
        base = self.backoff_s * 2 ** (retry - 1)
        return float(min(self.max_wait_s, base * random.uniform(0.8, 1.2)))

    def call(self, fn: Callable[[], T]) -> Tried[T]:
        """Call ``fn`` until it succeeds, fails permanently, or the retries run out.

        Raises:
            BaseException: the last error, with ``eoembed_attempts`` set on it.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return Tried(fn(), attempt)
            except Exception as exc:
                if is_permanent(exc) or attempt > self.max_retries:
                    exc.eoembed_attempts = attempt  # type: ignore[attr-defined]
                    raise
                time.sleep(self.wait(attempt))


def attempts_of(exc: BaseException) -> int:
    """How many tries a failure from :meth:`RetryPolicy.call` took (1 if unknown)."""
    return int(getattr(exc, "eoembed_attempts", 1))
