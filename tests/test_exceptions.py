"""The error hierarchy and the maps from Tupu codes and HTTP statuses to it.

Also the observability hooks' promise about errors: a hook that raises never breaks
traffic (the exception is logged and swallowed).
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tupu_async import (
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
from tupu_async._events import ClientStats, Hooks, RequestEvent
from tupu_async._exceptions import (
    FATAL_CODES,
    IMAGE_ERROR_CODE,
    RETRYABLE_CODES,
    error_for_code,
    error_for_http_status,
    is_fatal,
    is_retryable,
)

DOCUMENTED: dict[int, type[APIError]] = {
    1: AuthenticationError,
    6: AuthenticationError,
    8: AuthenticationError,
    9: AuthenticationError,
    12: ClockSkewError,
    14: ImageError,
    100: ServerError,
    101: ServerError,
    2: ConfigurationError,
    4: ConfigurationError,
    5: ConfigurationError,
    7: ConfigurationError,
    10: ConfigurationError,
    11: ConfigurationError,
    13: ConfigurationError,
}


# --- the hierarchy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls",
    [InvalidImageError, KeyLoadError, SignatureVerificationError, MalformedResponseError,
     TransportError, APIError, AuthenticationError, ClockSkewError, ConfigurationError,
     RateLimitError, ServerError, ImageError],
)  # fmt: skip
def test_every_error_is_a_tupu_error(cls: type[TupuError]) -> None:
    assert issubclass(cls, TupuError)
    assert issubclass(TupuError, Exception)


def test_value_errors_are_the_input_errors() -> None:
    assert issubclass(InvalidImageError, ValueError)
    assert issubclass(KeyLoadError, ValueError)
    assert not issubclass(APIError, ValueError)


def test_api_error_subclasses() -> None:
    for cls in (AuthenticationError, ConfigurationError, RateLimitError, ServerError, ImageError):
        assert issubclass(cls, APIError)
    assert issubclass(ClockSkewError, AuthenticationError)


def test_api_error_carries_its_details() -> None:
    exc = APIError("boom", code=7, status_code=200, request_id="r1", retry_after=1.5)
    assert (exc.message, exc.code, exc.status_code, exc.request_id, exc.retry_after) == (
        "boom", 7, 200, "r1", 1.5
    )  # fmt: skip
    assert str(exc) == "boom"


def test_malformed_response_error_carries_status_and_excerpt() -> None:
    exc = MalformedResponseError("bad", status_code=502, body_excerpt="<html>")
    assert exc.status_code == 502
    assert exc.body_excerpt == "<html>"
    assert MalformedResponseError("bad").status_code is None


# --- codes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "cls"), sorted(DOCUMENTED.items()))
def test_error_for_code_maps_each_documented_code(code: int, cls: type[APIError]) -> None:
    exc = error_for_code(code, "service text", status_code=200, request_id="req-9")
    assert type(exc) is cls
    assert exc.code == code
    assert exc.status_code == 200
    assert exc.request_id == "req-9"
    assert f"code {code}" in str(exc)
    assert "service text" in str(exc)
    assert "req-9" in str(exc)


def test_code_12_says_the_clock_is_off() -> None:
    exc = error_for_code(12, "timestamp error")
    assert isinstance(exc, ClockSkewError)
    assert isinstance(exc, AuthenticationError)
    assert "clock" in str(exc)
    assert "NTP" in str(exc)


@pytest.mark.parametrize(
    ("code", "words"),
    [(1, ["secret_id", "private key"]), (6, ["secret_id"]), (9, ["public key"]),
     (7, ["tasks="]), (13, ["console"]), (14, ["image"])],
)  # fmt: skip
def test_messages_say_what_to_do(code: int, words: list[str]) -> None:
    text = str(error_for_code(code, ""))
    for word in words:
        assert word in text
    assert "no message" in text


def test_code_3_no_file_is_a_configuration_error() -> None:
    assert type(error_for_code(3, "no file")) is ConfigurationError


@given(st.integers().filter(lambda c: c not in DOCUMENTED and c != 3))
def test_unknown_codes_are_plain_api_errors(code: int) -> None:
    exc = error_for_code(code, "what?")
    assert type(exc) is APIError
    assert exc.code == code
    assert "unexpected status code" in str(exc)
    assert not is_fatal(exc)
    assert not is_retryable(exc)


def test_request_id_is_optional_in_the_message() -> None:
    assert "requestId" not in str(error_for_code(1, "x"))


def test_code_sets() -> None:
    assert frozenset(range(1, 14)) == FATAL_CODES
    assert frozenset({100, 101}) == RETRYABLE_CODES
    assert IMAGE_ERROR_CODE == 14
    for code in FATAL_CODES:
        assert is_fatal(error_for_code(code, ""))
    for code in RETRYABLE_CODES:
        assert is_retryable(error_for_code(code, ""))


# --- fatal / retryable ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "fatal", "retryable"),
    [
        (AuthenticationError("x", code=1), True, False),
        (ClockSkewError("x", code=12), True, False),
        (ConfigurationError("x", code=7), True, False),
        (SignatureVerificationError("x"), True, False),
        (KeyLoadError("x"), True, False),
        (TransportError("x"), False, True),
        (RateLimitError("x", status_code=429), False, True),
        (ServerError("x", code=100), False, True),
        (MalformedResponseError("x"), False, True),
        (ImageError("x", code=14), False, False),
        (InvalidImageError("x"), False, False),
        (APIError("x", code=999), False, False),
        (TupuError("x"), False, False),
        (ValueError("x"), False, False),
        (KeyboardInterrupt(), False, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_fatal_and_retryable_classification(
    exc: BaseException, fatal: bool, retryable: bool
) -> None:
    assert is_fatal(exc) is fatal
    assert is_retryable(exc) is retryable
    assert not (is_fatal(exc) and is_retryable(exc))


@given(st.integers(min_value=0, max_value=200))
def test_no_code_is_both_fatal_and_retryable(code: int) -> None:
    if code == 0:
        return
    exc = error_for_code(code, "")
    assert not (is_fatal(exc) and is_retryable(exc))


# --- HTTP statuses -------------------------------------------------------------------------


def test_http_429_is_a_rate_limit_error_with_retry_after() -> None:
    exc = error_for_http_status(429, "slow down", retry_after=2.0)
    assert type(exc) is RateLimitError
    assert exc.status_code == 429
    assert exc.retry_after == 2.0
    assert "qps" in str(exc)
    assert "slow down" in str(exc)
    assert is_retryable(exc)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_http_5xx_is_a_server_error(status: int) -> None:
    exc = error_for_http_status(status, "<html>bad gateway</html>", retry_after=1.0)
    assert type(exc) is ServerError
    assert exc.status_code == status
    assert exc.retry_after == 1.0
    assert str(status) in str(exc)
    assert "bad gateway" in str(exc)
    assert is_retryable(exc)


@pytest.mark.parametrize("status", [401, 403])
def test_http_401_403_are_authentication_errors(status: int) -> None:
    exc = error_for_http_status(status, "")
    assert type(exc) is AuthenticationError
    assert exc.status_code == status
    assert "secret_id" in str(exc)
    assert is_fatal(exc)


def test_http_413_is_a_configuration_error() -> None:
    exc = error_for_http_status(413, "too big")
    assert type(exc) is ConfigurationError
    assert "too large" in str(exc)
    assert is_fatal(exc)


@pytest.mark.parametrize("status", [400, 404, 405, 418, 302])
def test_other_statuses_are_plain_api_errors(status: int) -> None:
    exc = error_for_http_status(status, "nope")
    assert type(exc) is APIError
    assert exc.status_code == status
    assert not is_fatal(exc)
    assert not is_retryable(exc)


# --- hooks never propagate errors ----------------------------------------------------------


def test_a_raising_hook_is_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[RequestEvent] = []

    def broken(event: RequestEvent) -> None:
        calls.append(event)
        raise RuntimeError("metrics backend down")

    hooks = Hooks(on_request=broken)
    event = RequestEvent(path="/v3/recognition/sid", images=3, attempt=0)
    with caplog.at_level(logging.ERROR, logger="tupu_async"):
        hooks.emit("on_request", event)
    assert calls == [event]
    assert "on_request" in caplog.text
    assert "metrics backend down" in caplog.text


def test_unset_hooks_are_skipped_not_called(caplog: pytest.LogCaptureFixture) -> None:
    hooks = Hooks()
    with caplog.at_level(logging.DEBUG, logger="tupu_async"):
        for which in ("on_request", "on_response", "on_retry", "on_throttle"):
            assert getattr(hooks, which) is None
            hooks.emit(which, RequestEvent(path="/p", images=1, attempt=0))
    assert caplog.records == []  # calling None would have been logged as a raising hook


def test_every_hook_receives_its_event() -> None:
    seen: list[tuple[str, int]] = []
    hooks = Hooks(
        on_request=lambda e: seen.append(("request", e.attempt)),
        on_response=lambda e: seen.append(("response", e.attempt)),
        on_retry=lambda e: seen.append(("retry", e.attempt)),
        on_throttle=lambda e: seen.append(("throttle", e.attempt)),
    )
    for i, which in enumerate(("on_request", "on_response", "on_retry", "on_throttle")):
        hooks.emit(which, RequestEvent(path="/p", images=1, attempt=i, delay=0.1))
    assert seen == [("request", 0), ("response", 1), ("retry", 2), ("throttle", 3)]


def test_request_event_is_immutable() -> None:
    event = RequestEvent(path="/p", images=1, attempt=0, error=TransportError("down"))
    with pytest.raises(AttributeError):
        event.attempt = 1  # type: ignore[misc]


def test_stats_snapshot_is_a_copy() -> None:
    stats = ClientStats(requests=3, status_codes={200: 3})
    snap = stats.snapshot()
    assert snap == stats
    stats.requests += 1
    stats.status_codes[500] = 1
    assert snap.requests == 3
    assert snap.status_codes == {200: 3}
