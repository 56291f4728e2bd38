"""Retries: which failures are retried, the backoff schedule, Retry-After parsing, and the
mapping from httpx's exceptions to tupu-async's.

Nothing here sleeps or sends: the client asks :func:`should_retry`, then waits
``policy.delay(attempt, retry_after)`` and takes a new limiter permit for the next attempt.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from dataclasses import dataclass, field
from datetime import timezone
from typing import Final

import httpx

from ._checks import check_seconds
from ._constants import DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_RETRIES
from ._error_bodies import excerpt
from ._exceptions import (
    ConfigurationError,
    MalformedResponseError,
    TransportError,
    TupuError,
    error_for_http_status,
    is_fatal,
    is_retryable,
)

__all__ = [
    "MAX_RETRY_AFTER",
    "RetryPolicy",
    "classify_httpx_error",
    "parse_retry_after",
    "should_retry",
]

#: How many times one request is re-sent after HTTP 429 (apart from ``max_retries``).
DEFAULT_MAX_THROTTLE_RETRIES: Final = 10
#: The longest Retry-After honoured, in seconds: a larger value (or a date far ahead) is
#: treated as this.
MAX_RETRY_AFTER: Final = 60.0
# Backoff doubles per attempt up to backoff_max; past this exponent 2**n is no longer finite.
_MAX_EXPONENT: Final = 1023  # 2.0**1023 is the largest power of two a float holds
_DELTA_SECONDS = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
# httpx's failures, most specific first: the error each becomes and what its message says.
_HTTPX_ERRORS: Final[
    tuple[tuple[type[Exception] | tuple[type[Exception], ...], type[TupuError], str], ...]
] = (
    (
        httpx.ConnectTimeout,
        TransportError,
        "timed out connecting to {target} {detail}: check the network, proxy settings "
        "and region/base_url; raise timeout= if the link is slow",
    ),
    (
        httpx.ReadTimeout,
        TransportError,
        "{target} did not answer within the read timeout {detail}: the service is slow "
        "or overloaded; it is retried automatically, raise timeout= if it persists",
    ),
    (
        httpx.WriteTimeout,
        TransportError,
        "timed out sending the request to {target} {detail}: the upload is too slow "
        "for the timeout; check bandwidth, send smaller images or raise timeout=",
    ),
    (
        httpx.PoolTimeout,
        TransportError,
        "no free connection to {target} within the pool timeout {detail}: more requests "
        "are in flight than the connection pool allows; raise the httpx pool limits "
        "or the timeout",
    ),
    (
        httpx.TimeoutException,
        TransportError,
        "request to {target} timed out {detail}: raise timeout=",
    ),
    (
        httpx.ConnectError,
        TransportError,
        "could not connect to {target} {detail}: check the network, DNS, proxy "
        "settings and region/base_url",
    ),
    (
        (httpx.ReadError, httpx.WriteError, httpx.CloseError),
        TransportError,
        "the connection to {target} broke {detail}: it is retried automatically; "
        "if it persists, check the network or proxy between you and Tupu",
    ),
    (
        httpx.RemoteProtocolError,
        TransportError,
        "{target} closed the connection or sent a malformed HTTP response {detail}: "
        "it is retried automatically; if it persists, a proxy between you and Tupu "
        "may be interfering",
    ),
    (
        httpx.ProxyError,
        TransportError,
        "the proxy failed the request to {target} {detail}: check the proxy settings "
        "(HTTP_PROXY/HTTPS_PROXY or the proxy of your http_client)",
    ),
    (
        httpx.UnsupportedProtocol,
        ConfigurationError,
        "cannot send to {target} {detail}: base_url must start with http:// or https://",
    ),
    (
        httpx.TooManyRedirects,
        ConfigurationError,
        "{target} kept redirecting {detail}: the Tupu API does not redirect, so "
        "base_url points somewhere else; check base_url",
    ),
    (
        httpx.DecodingError,
        MalformedResponseError,
        "the response from {target} could not be decoded {detail}: its "
        "Content-Encoding is broken; it is retried automatically",
    ),
    (
        httpx.LocalProtocolError,
        TupuError,
        "httpx refused to send an invalid request to {target} {detail}: this is a "
        "bug in tupu-async; please report it",
    ),
    (
        Exception,
        TransportError,
        "the request to {target} failed {detail}: it is retried automatically; "
        "check the network if it persists",
    ),
)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait before each retry.

    ``attempt`` is the 0-based index of the attempt that just failed (0 for the first
    try). A retry is allowed while ``attempt < max_retries``, so a request is tried at most
    ``max_retries + 1`` times. An HTTP 429 (the service did not process the request) is
    counted apart: it is re-sent up to ``max_throttle_retries`` times, without backoff
    (see :meth:`throttle_delay`), while the rate limiter adapts. The wait before any
    other retry is full-jitter exponential backoff:
    uniform in ``[0, min(backoff_max, backoff_base * 2 ** attempt)]`` (exactly the upper
    end when ``jitter`` is False). A Retry-After from the service is a floor on the
    wait, capped at ``retry_after_max``. So every delay lies in
    ``[0, max(backoff_max, retry_after_max)]``.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    max_throttle_retries: int = DEFAULT_MAX_THROTTLE_RETRIES
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_max: float = DEFAULT_BACKOFF_MAX
    jitter: bool = True
    retry_after_max: float = MAX_RETRY_AFTER
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("max_retries", "max_throttle_retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (0 disables those retries), got {value}")
        for name in ("backoff_base", "backoff_max", "retry_after_max"):
            check_seconds(name, getattr(self, name))

    def allows_retry(self, attempt: int) -> bool:
        """True if another attempt may follow the failed attempt number ``attempt`` (0-based)."""
        return attempt < self.max_retries

    def backoff_ceiling(self, attempt: int) -> float:
        """The upper end of the jittered backoff after the failed attempt ``attempt``."""
        if attempt < 0:
            raise ValueError(f"attempt is the 0-based index of the failed attempt, got {attempt}")
        exponent = min(attempt, _MAX_EXPONENT)
        return min(self.backoff_max, self.backoff_base * 2.0**exponent)

    def throttle_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before re-sending a throttled (HTTP 429) request.

        Only an explicit Retry-After (capped at ``retry_after_max``) delays it; otherwise
        0, and the rate limiter puts the re-send in its next free slot (no backoff).
        """
        if retry_after is None or math.isnan(retry_after):
            return 0.0
        return min(max(retry_after, 0.0), self.retry_after_max)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retrying after the failed attempt ``attempt`` (0-based)."""
        ceiling = self.backoff_ceiling(attempt)
        backoff = self.rng.uniform(0.0, ceiling) if self.jitter else ceiling
        return max(backoff, self.throttle_delay(retry_after))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait according to a Retry-After header value, or None if it has none.

    Accepts delta-seconds (``"120"``; a decimal fraction is tolerated) and HTTP-dates
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``), which are measured from ``now`` (Unix time,
    default :func:`time.time`). A negative delay or a date in the past gives 0. Anything
    else (empty, garbage, an impossible date, a non-finite number) gives None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        at = when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    reference = time.time() if now is None else now
    return max(0.0, at - reference)


def should_retry(exc: BaseException) -> bool:
    """True if the failure is transient and worth another attempt; fatal errors never are.

    Takes tupu-async errors, and httpx errors (classified first with
    :func:`classify_httpx_error`). Anything else (cancellation, bugs) is not retried.
    """
    if isinstance(exc, httpx.HTTPError):
        exc = classify_httpx_error(exc)
    if is_fatal(exc):
        return False
    return is_retryable(exc)


def classify_httpx_error(exc: httpx.HTTPError) -> TupuError:
    """The tupu-async error for an httpx failure, with a message that says what to do.

    Network failures, timeouts and broken or dropped responses become
    :class:`~tupu_async.TransportError` (retried); an error status from
    ``raise_for_status`` becomes the matching :class:`~tupu_async.APIError`; a URL httpx
    cannot use becomes :class:`~tupu_async.ConfigurationError` (fatal). The returned
    error has ``exc`` as its ``__cause__``. Messages name the host, never the path (which
    holds the secret id).
    """
    target = _target(exc)
    detail = f"({type(exc).__name__}: {exc})" if str(exc) else f"({type(exc).__name__})"
    error: TupuError
    if isinstance(exc, httpx.HTTPStatusError):
        error = _status_error(exc)
    else:
        kind, template = next(
            (kind, template) for types, kind, template in _HTTPX_ERRORS if isinstance(exc, types)
        )
        error = kind(template.format(target=target, detail=detail))
    error.__cause__ = exc
    return error


def _target(exc: httpx.HTTPError) -> str:
    """``"POST http://host[:port]"`` for the failed request (no path), if httpx knows it."""
    try:
        request = exc.request
    except RuntimeError:
        return "the Tupu API"
    url = request.url
    port = f":{url.port}" if url.port is not None else ""
    return f"{request.method} {url.scheme}://{url.host}{port}"


def _status_error(exc: httpx.HTTPStatusError) -> TupuError:
    response = exc.response
    try:
        shown = excerpt(response.content)
    except httpx.ResponseNotRead:
        shown = ""
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return error_for_http_status(response.status_code, shown, retry_after=retry_after)
