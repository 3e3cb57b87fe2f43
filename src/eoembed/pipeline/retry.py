"""The pipeline's retries: :class:`eoembed.retrying.RetryPolicy`, the one policy eoembed uses.

A region outside every scene, a missing band or a bad argument fails the same way every time,
so those are not retried; network errors, timeouts, retryable HTTP statuses, and
out-of-memory in a batch are.
"""

from __future__ import annotations

from eoembed.retrying import RetryPolicy, Tried, attempts_of, is_permanent

__all__ = ["RetryPolicy", "Tried", "attempts_of", "is_permanent"]
