"""eoembed.retrying: which failures are retried, how often, how long, and with what waits."""

from __future__ import annotations

import time
import urllib.error
from email.message import Message

import pytest

from eoembed.errors import NoDataError
from eoembed.retrying import RETRY_STATUSES, RetryPolicy, attempts_of, http_status, is_transient


class Flaky:
    """Raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def _http(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://x", code, "status", Message(), None)


def test_statuses_worth_retrying() -> None:
    assert RETRY_STATUSES == {408, 425, 429, 500, 502, 503, 504}
    for code in RETRY_STATUSES:
        assert is_transient(_http(code))
    for code in (400, 401, 403, 404, 410, 501):
        assert not is_transient(_http(code))


def test_statuses_are_found_wherever_libraries_put_them() -> None:
    assert http_status(OSError("HTTP response code: 503")) == 503  # GDAL's wording
    try:
        try:
            raise _http(429)
        except urllib.error.HTTPError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert http_status(outer) == 429
    assert http_status(ValueError("no status here")) is None


def test_connection_failures_are_transient() -> None:
    assert is_transient(ConnectionResetError(104, "Connection reset by peer"))
    assert is_transient(TimeoutError("timed out"))
    assert is_transient(OSError("CURL error: Empty reply from server"))
    assert not is_transient(ValueError("bad value"))
    assert not is_transient(NoDataError("no scene"))


def test_transient_failures_are_retried_and_counted() -> None:
    fn = Flaky(ConnectionResetError(), _http(503))
    tried = RetryPolicy(max_retries=2, backoff_s=0.001).call(fn)
    assert (tried.value, tried.attempts, fn.calls) == ("done", 3, 3)


@pytest.mark.parametrize("error", [_http(404), _http(400), NoDataError("nothing there")])
def test_refusals_fail_at_once(error: BaseException) -> None:
    fn = Flaky(error)
    with pytest.raises(type(error)) as info:
        RetryPolicy(max_retries=5, backoff_s=0.001).call(fn)
    assert fn.calls == 1 and attempts_of(info.value) == 1


def test_retries_run_out() -> None:
    fn = Flaky(*[_http(503)] * 5)
    with pytest.raises(urllib.error.HTTPError) as info:
        RetryPolicy(max_retries=2, backoff_s=0.001).call(fn)
    assert fn.calls == 3 and attempts_of(info.value) == 3


def test_deadline_stops_retrying() -> None:
    fn = Flaky(*[_http(503)] * 100)
    t0 = time.perf_counter()
    with pytest.raises(urllib.error.HTTPError):
        RetryPolicy(max_retries=100, backoff_s=0.2, deadline_s=0.5).call(fn)
    assert time.perf_counter() - t0 < 1.0 and fn.calls < 5


def test_waits_double_with_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    RetryPolicy(max_retries=4, backoff_s=1.0, max_wait_s=60).call(Flaky(*[_http(429)] * 4))
    assert len(slept) == 4
    for k, wait in enumerate(slept):
        assert 0.5 * 2**k <= wait <= 2**k
    # jitter: four equal waits from a random draw would be a coincidence
    assert len({round(w / 2**k, 6) for k, w in enumerate(slept)}) > 1


def test_a_custom_predicate_decides() -> None:
    fn = Flaky(ValueError("quota"), ValueError("quota"))
    tried = RetryPolicy(max_retries=3, backoff_s=0.001).call(
        fn, retry_if=lambda e: "quota" in str(e)
    )
    assert tried.attempts == 3
