"""The retry policy: backoff bounds, Retry-After parsing, what is retried, httpx mapping."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
import socket
import time

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tupu_async._constants import DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_RETRIES
from tupu_async._exceptions import (
    APIError,
    AuthenticationError,
    ClockSkewError,
    ConfigurationError,
    ImageError,
    InvalidImageError,
    KeyLoadError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
    SignatureVerificationError,
    TransportError,
    TupuError,
)
from tupu_async._retry import (
    MAX_RETRY_AFTER,
    RetryPolicy,
    classify_httpx_error,
    parse_retry_after,
    should_retry,
)

attempts = st.integers(min_value=0, max_value=10_000)
retry_afters = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(-5.0, 200.0)
)
policies = st.builds(
    RetryPolicy,
    max_retries=st.integers(0, 10),
    backoff_base=st.floats(0.0, 5.0),
    backoff_max=st.floats(0.0, 30.0),
    jitter=st.booleans(),
    retry_after_max=st.floats(0.0, 120.0),
    rng=st.integers(0, 2**32).map(random.Random),
)


# --- RetryPolicy ------------------------------------------------------------------------


def test_defaults_come_from_the_constants() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == DEFAULT_MAX_RETRIES
    assert policy.backoff_base == DEFAULT_BACKOFF_BASE
    assert policy.backoff_max == DEFAULT_BACKOFF_MAX
    assert policy.jitter is True
    assert policy.retry_after_max == MAX_RETRY_AFTER == 60.0


@given(policy=policies, attempt=attempts, retry_after=retry_afters)
def test_delay_stays_within_zero_and_the_cap(
    policy: RetryPolicy, attempt: int, retry_after: float | None
) -> None:
    delay = policy.delay(attempt, retry_after)
    assert math.isfinite(delay)
    assert 0.0 <= delay <= max(policy.backoff_max, policy.retry_after_max)
    if retry_after is None or math.isnan(retry_after):
        assert delay <= policy.backoff_ceiling(attempt)


@given(policy=policies, attempt=attempts, retry_after=st.floats(-5.0, 1e9))
def test_delay_honours_retry_after_as_a_capped_floor(
    policy: RetryPolicy, attempt: int, retry_after: float
) -> None:
    delay = policy.delay(attempt, retry_after)
    assert delay >= min(max(retry_after, 0.0), policy.retry_after_max)
    assert delay <= max(policy.backoff_ceiling(attempt), policy.retry_after_max)


@given(policy=policies, attempt=st.integers(0, 200))
def test_backoff_grows_with_attempt_up_to_backoff_max(policy: RetryPolicy, attempt: int) -> None:
    ceiling, next_ceiling = policy.backoff_ceiling(attempt), policy.backoff_ceiling(attempt + 1)
    assert ceiling <= next_ceiling <= policy.backoff_max
    if next_ceiling < policy.backoff_max:
        assert next_ceiling == pytest.approx(2 * ceiling)
    unjittered = RetryPolicy(
        backoff_base=policy.backoff_base, backoff_max=policy.backoff_max, jitter=False
    )
    assert unjittered.delay(attempt) <= unjittered.delay(attempt + 1)
    assert unjittered.delay(attempt) == ceiling


def test_backoff_schedule_with_the_defaults() -> None:
    policy = RetryPolicy(jitter=False)
    assert [policy.delay(a) for a in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.delay(10**9) == 8.0  # no overflow however long it has been failing
    assert policy.delay(0, retry_after=3.0) == 3.0
    assert policy.delay(0, retry_after=3600.0) == 60.0


def test_full_jitter_spreads_the_delays() -> None:
    policy = RetryPolicy(rng=random.Random(7))
    samples = [policy.delay(3) for _ in range(400)]
    assert all(0.0 <= s <= 2.0 for s in samples)
    assert 0.8 <= sum(samples) / len(samples) <= 1.2  # uniform on [0, 2]
    assert min(samples) < 0.2
    assert max(samples) > 1.8


def test_retry_budget() -> None:
    policy = RetryPolicy(max_retries=2)
    # attempt is the 0-based index of the failed attempt: tries 0, 1, 2 -> two retries.
    assert [policy.allows_retry(a) for a in (0, 1, 2)] == [True, True, False]
    assert RetryPolicy(max_retries=0).allows_retry(0) is False


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        (
            {"max_retries": -1},
            ValueError,
            "max_retries must be >= 0 (0 disables those retries), got -1",
        ),
        ({"max_retries": 1.5}, TypeError, "max_retries must be an int, got 1.5"),
        ({"max_retries": True}, TypeError, "max_retries must be an int, got True"),
        ({"backoff_base": -0.1}, ValueError, "backoff_base must be a finite number of seconds"),
        ({"backoff_max": math.inf}, ValueError, "backoff_max must be a finite number"),
        ({"retry_after_max": math.nan}, ValueError, "retry_after_max must be a finite number"),
    ],
)
def test_bad_policies_are_refused_saying_why(
    kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as info:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert words in str(info.value)


def test_a_short_retry_after_is_honoured_exactly() -> None:
    policy = RetryPolicy(backoff_base=0.0, jitter=False)
    assert policy.delay(0, 0.25) == 0.25  # not rounded up to a whole second
    assert policy.delay(0, -3.0) == 0.0


def test_attempt_is_zero_based() -> None:
    assert RetryPolicy(jitter=False).delay(0) == DEFAULT_BACKOFF_BASE
    with pytest.raises(ValueError, match="0-based"):
        RetryPolicy().delay(-1)


# --- parse_retry_after ------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**12))
def test_parses_delta_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == float(seconds)
    assert parse_retry_after(f"  {seconds}\t") == float(seconds)


@given(st.integers(min_value=1, max_value=10**6))
def test_negative_delta_seconds_mean_now(seconds: int) -> None:
    assert parse_retry_after(f"-{seconds}") == 0.0


@given(
    when=st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(
        lambda d: d.replace(microsecond=0, tzinfo=dt.timezone.utc)
    ),
    now=st.floats(min_value=6.3e8, max_value=7.3e9),
)
def test_parses_http_dates_relative_to_now(when: dt.datetime, now: float) -> None:
    header = email.utils.format_datetime(when, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(
        max(0.0, when.timestamp() - now), abs=1e-6
    )


@given(st.text())
def test_never_raises_and_never_returns_a_bad_number(value: str) -> None:
    result = parse_retry_after(value)
    assert result is None or (math.isfinite(result) and result >= 0.0)


@given(st.text(alphabet=st.characters(exclude_categories=["Nd"])))
def test_text_without_digits_is_not_a_delay(value: str) -> None:
    assert parse_retry_after(value) is None


def test_parse_retry_after_examples() -> None:
    now = dt.datetime(2015, 10, 21, 7, 27, 0, tzinfo=dt.timezone.utc).timestamp()
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", now=now) == 60.0  # RFC 850
    assert parse_retry_after("Wed Oct 21 07:28:00 2015", now=now) == 60.0  # asctime
    assert parse_retry_after("Wed, 21 Oct 2015 07:26:00 GMT", now=now) == 0.0  # past
    assert parse_retry_after("1.5") == 1.5
    for garbage in (
        None,
        "",
        "   ",
        "soon",
        "1e3",
        "nan",
        "inf",
        "0x10",
        "1_000",
        "5 s",
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "9" * 400,
    ):
        assert parse_retry_after(garbage) is None, garbage


# --- should_retry -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        TransportError("connection refused"),
        RateLimitError("429", status_code=429),
        ServerError("503", status_code=503),
        ServerError("code 100", code=100),
        MalformedResponseError("proxy page", status_code=502),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
def test_transient_failures_are_retried(exc: BaseException) -> None:
    assert should_retry(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        AuthenticationError("code 1", code=1),
        ClockSkewError("code 12", code=12),
        ConfigurationError("code 7", code=7),
        SignatureVerificationError("bad signature"),
        KeyLoadError("bad key"),
        InvalidImageError("too big"),
        ImageError("code 14", code=14),
        APIError("HTTP 404", status_code=404),
        TupuError("bug"),
        ValueError("not ours"),
        KeyboardInterrupt(),
        httpx.UnsupportedProtocol("ftp://"),
        httpx.LocalProtocolError("bad header"),
    ],
)
def test_everything_else_is_not_retried(exc: BaseException) -> None:
    assert should_retry(exc) is False


def test_fatal_wins_over_retryable() -> None:
    class Odd(AuthenticationError, ServerError):
        pass

    assert should_retry(Odd("both", code=1)) is False


# --- classify_httpx_error ---------------------------------------------------------------

REQUEST = httpx.Request("POST", "http://api.open.tuputech.com/v3/recognition/SECRET_ID")


@pytest.mark.parametrize(
    ("exc_type", "expected", "hint"),
    [
        (httpx.ConnectTimeout, TransportError, "timed out connecting"),
        (httpx.ReadTimeout, TransportError, "did not answer"),
        (httpx.WriteTimeout, TransportError, "timed out sending"),
        (httpx.PoolTimeout, TransportError, "pool"),
        (httpx.ConnectError, TransportError, "could not connect"),
        (httpx.ReadError, TransportError, "broke"),
        (httpx.WriteError, TransportError, "broke"),
        (httpx.CloseError, TransportError, "broke"),
        (httpx.RemoteProtocolError, TransportError, "closed the connection"),
        (httpx.ProxyError, TransportError, "proxy"),
        (httpx.UnsupportedProtocol, ConfigurationError, "base_url"),
        (httpx.TooManyRedirects, ConfigurationError, "base_url"),
        (httpx.DecodingError, MalformedResponseError, "decoded"),
        (httpx.LocalProtocolError, TupuError, "bug"),
        (httpx.NetworkError, TransportError, "failed"),
    ],
)
def test_httpx_errors_map_to_tupu_errors(
    exc_type: type[httpx.RequestError], expected: type[TupuError], hint: str
) -> None:
    exc = exc_type("boom", request=REQUEST)
    error = classify_httpx_error(exc)
    assert type(error) is expected
    message = str(error)
    assert hint in message
    assert "POST http://api.open.tuputech.com" in message
    assert "SECRET_ID" not in message  # the path holds the secret id
    assert exc_type.__name__ in message
    assert error.__cause__ is exc
    assert should_retry(exc) is (expected in (TransportError, MalformedResponseError))


def test_httpx_error_without_a_request_still_gets_a_message() -> None:
    error = classify_httpx_error(httpx.ReadTimeout(""))
    assert isinstance(error, TransportError)
    assert str(error).startswith(
        "the Tupu API did not answer within the read timeout (ReadTimeout):"
    )


def test_the_detail_names_the_httpx_error_and_its_text_when_it_has_one() -> None:
    with_text = classify_httpx_error(httpx.ConnectError("refused", request=REQUEST))
    without = classify_httpx_error(httpx.ConnectError("", request=REQUEST))
    assert "POST http://api.open.tuputech.com (ConnectError: refused): " in str(with_text)
    assert "POST http://api.open.tuputech.com (ConnectError): " in str(without)


def test_a_port_is_named_only_when_the_url_has_one() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:8080/v3/recognition/SECRET_ID")
    error = classify_httpx_error(httpx.ConnectError("x", request=request))
    assert "could not connect to POST http://127.0.0.1:8080 (" in str(error)
    error = classify_httpx_error(httpx.ConnectError("x", request=REQUEST))
    assert "could not connect to POST http://api.open.tuputech.com (" in str(error)


def test_a_generic_timeout_says_to_raise_the_timeout() -> None:
    error = classify_httpx_error(httpx.TimeoutException("slow", request=REQUEST))
    assert type(error) is TransportError
    assert str(error) == (
        "request to POST http://api.open.tuputech.com timed out (TimeoutException: slow): "
        "raise timeout="
    )


def test_a_body_not_read_gives_an_empty_excerpt() -> None:
    response = httpx.Response(503, stream=httpx.ByteStream(b"never read"), request=REQUEST)
    error = classify_httpx_error(httpx.HTTPStatusError("s", request=REQUEST, response=response))
    assert isinstance(error, ServerError)
    assert str(error).endswith("body: ''")


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after"),
    [
        (429, {"Retry-After": "7"}, RateLimitError, 7.0),
        (429, {}, RateLimitError, None),
        (503, {"Retry-After": "garbage"}, ServerError, None),
        (401, {}, AuthenticationError, None),
        (404, {}, APIError, None),
    ],
)
def test_status_errors_map_like_the_client_does(
    status: int, headers: dict[str, str], expected: type[APIError], retry_after: float | None
) -> None:
    response = httpx.Response(status, headers=headers, text="<html>nope</html>", request=REQUEST)
    exc = httpx.HTTPStatusError("status", request=REQUEST, response=response)
    error = classify_httpx_error(exc)
    assert type(error) is expected
    assert isinstance(error, APIError)
    assert error.status_code == status
    assert error.retry_after == retry_after
    assert "nope" in str(error)


@pytest.mark.anyio
async def test_a_refused_loopback_connection_becomes_a_transport_error() -> None:
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient() as client:
        with anyio.fail_after(5), pytest.raises(httpx.ConnectError) as caught:
            await client.post(f"http://127.0.0.1:{port}/v3/recognition/x")
    error = classify_httpx_error(caught.value)
    assert isinstance(error, TransportError)
    assert f"POST http://127.0.0.1:{port}" in str(error)
    assert should_retry(caught.value)


def test_a_throttled_request_is_resent_without_backoff_unless_told_to_wait() -> None:
    policy = RetryPolicy(backoff_base=5.0, backoff_max=50.0, retry_after_max=10.0)
    assert policy.throttle_delay(None) == 0.0
    assert policy.throttle_delay(math.nan) == 0.0
    assert policy.throttle_delay(-2.0) == 0.0
    assert policy.throttle_delay(1.5) == 1.5
    assert policy.throttle_delay(1e9) == 10.0  # honoured, capped


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_max_throttle_retries_must_be_a_count(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_throttle_retries"):
        RetryPolicy(max_throttle_retries=value)  # type: ignore[arg-type]


def test_an_http_date_is_measured_from_the_current_time_by_default() -> None:
    header = email.utils.formatdate(time.time() + 30, usegmt=True)
    delay = parse_retry_after(header)
    assert delay is not None
    assert 25.0 <= delay <= 31.0


def test_an_http_date_without_a_zone_is_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # UTC+8: a local reading would be 8 h off
    time.tzset()
    try:
        at = dt.datetime(2015, 10, 21, 7, 28, tzinfo=dt.timezone.utc).timestamp()
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", now=at - 10) == 10.0
    finally:
        monkeypatch.undo()
        time.tzset()
