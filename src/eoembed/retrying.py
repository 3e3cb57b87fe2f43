"""One retry policy for every remote call: STAC searches, COG reads, Earth Engine, weights.

Built on tenacity: exponential backoff with jitter (so concurrent workers do not retry in
lockstep against a rate-limited service), at most ``max_retries`` extra tries, and an overall
deadline after which no new try starts. What is worth retrying is decided in one place
(:func:`is_transient`): HTTP 408, 425, 429 and 5xx gateways/outages, connection resets,
refusals and timeouts; any other HTTP status (400, 401, 403, 404, ...) and eoembed's own
permanent errors fail at once. Callers with more knowledge (a signature that may be renewed,
Earth Engine's "too many concurrent aggregations") pass their own ``retry_if``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
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

__all__ = [
    "RETRY_STATUSES",
    "RetryPolicy",
    "Tried",
    "attempts_of",
    "error_chain",
    "http_status",
    "is_permanent",
    "is_transient",
]

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses that say "try again later": timeout, too early, too many requests, server
error, bad gateway, unavailable, gateway timeout."""

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

# GDAL's wording of an HTTP status, e.g. "HTTP response code: 503".
_GDAL_STATUS = re.compile(r"HTTP response code: (\d{3})")
# Names of transport-level failures from urllib3, requests, httpx, httplib2 and google-auth,
# matched by name so that none of them has to be imported here.
_TRANSPORT_ERRORS = frozenset({
    "ProtocolError", "RemoteDisconnected", "IncompleteRead", "ChunkedEncodingError",
    "ConnectTimeout", "ReadTimeout", "Timeout", "TimeoutException", "ConnectError",
    "ReadError", "RemoteProtocolError", "HttpLib2Error", "ServerNotFoundError", "TransportError",
    "NewConnectionError", "MaxRetryError", "ConnectionError",
})


def is_permanent(exc: BaseException) -> bool:
    """Whether trying again cannot help: eoembed's errors about the request itself."""
    return isinstance(exc, _PERMANENT)


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes/contexts, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind an error, wherever the library put it (None if there is none).

    Looks at ``status_code`` (pystac-client, requests), ``code`` (urllib), ``status`` and
    ``resp.status`` (googleapiclient), ``response.status_code`` (requests, httpx), and GDAL's
    "HTTP response code: N" in the message.
    """
    for current in error_chain(exc):
        candidates = (
            getattr(current, "status_code", None),
            getattr(current, "status", None),
            getattr(getattr(current, "resp", None), "status", None),
            getattr(getattr(current, "response", None), "status_code", None),
            getattr(current, "code", None) if _is_urllib_http_error(current) else None,
        )
        for value in candidates:
            if isinstance(value, int | str) and str(value).isdigit() and 100 <= int(value) < 600:
                return int(value)
        match = _GDAL_STATUS.search(str(current))
        if match:
            return int(match.group(1))
    return None


def _is_urllib_http_error(exc: BaseException) -> bool:
    from urllib.error import HTTPError

    return isinstance(exc, HTTPError)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` may go away on its own: a retryable HTTP status or a broken connection.

    An error with any other HTTP status is permanent (the server understood and refused);
    one with no status counts as transient when it is a connection failure or timeout,
    including GDAL's curl errors (reset, empty reply, timeout), which carry no status.
    """
    if is_permanent(exc):
        return False
    status = http_status(exc)
    if status is not None:
        return status in RETRY_STATUSES
    for current in error_chain(exc):
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        if type(current).__name__ in _TRANSPORT_ERRORS:
            return True
        text = str(current)
        if "CURL error" in text or "timed out" in text.lower():
            return True
    return False


@dataclass(frozen=True)
class Tried(Generic[T]):
    """What a call gave, and after how many tries."""

    value: T
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` extra tries after the first, with backoff, jitter and a deadline.

    The wait before retry ``k`` (1-based) lies between half of and all of
    ``backoff_s * 2**(k-1)`` (capped at ``max_wait_s``), drawn uniformly: the delays double,
    and concurrent callers spread out. No retry starts once ``deadline_s`` seconds
    have passed since the first try, or when its wait would end after that.
    """

    max_retries: int = 2
    backoff_s: float = 0.5
    max_wait_s: float = 30.0
    deadline_s: float | None = 600.0

    def call(
        self,
        fn: Callable[[], T],
        *,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> Tried[T]:
        """Call ``fn`` until it succeeds, fails for good, or the retries or time run out.

        Args:
            fn: the call to make.
            retry_if: whether an error is worth another try; by default everything but
                eoembed's permanent errors and HTTP statuses outside :data:`RETRY_STATUSES`.

        Raises:
            Exception: the last error, with ``eoembed_attempts`` set on it.
        """
        import tenacity

        worth = retry_if or _worth_retrying
        half = self.backoff_s / 2
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.max_retries + 1)
        if self.deadline_s is not None:
            stop = stop | tenacity.stop_before_delay(self.deadline_s)
        attempts = 0

        def counted() -> T:
            nonlocal attempts
            attempts += 1
            return fn()

        retrying = tenacity.Retrying(
            stop=stop,
            # "Equal jitter": half the doubling delay fixed, the other half drawn uniformly.
            wait=tenacity.wait_exponential(multiplier=half, max=self.max_wait_s / 2)
            + tenacity.wait_random_exponential(multiplier=half, max=self.max_wait_s / 2),
            retry=tenacity.retry_if_exception(worth),
            reraise=True,
        )
        try:
            return Tried(retrying(counted), attempts)
        except Exception as exc:
            exc.eoembed_attempts = attempts  # type: ignore[attr-defined]
            raise


def _worth_retrying(exc: BaseException) -> bool:
    """The default for :meth:`RetryPolicy.call`: not permanent, and no refusing HTTP status.

    Errors without an HTTP status are retried (a batch that ran out of memory, a write that
    hit a full disk a moment ago); an HTTP 404 or 400 is not.
    """
    if is_permanent(exc):
        return False
    status = http_status(exc)
    return status is None or status in RETRY_STATUSES


def attempts_of(exc: BaseException) -> int:
    """How many tries a failure from :meth:`RetryPolicy.call` took (1 if unknown)."""
    return int(getattr(exc, "eoembed_attempts", 1))
