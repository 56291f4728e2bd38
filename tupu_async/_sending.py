"""``RequestSender``: the one place an HTTP attempt happens (permit, signature, send,
classify, back off, retry). Design notes: ``docs/design-client.md``."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar

import anyio
import httpx

from ._constants import DEFAULT_MAX_RESPONSE_BYTES, USER_AGENT
from ._deadline import attempt_deadline, bounded_attempt
from ._error_bodies import excerpt
from ._events import ClientStats, Hooks, Listener, RequestEvent
from ._exceptions import (
    AmbiguousFailureError,
    ClientClosedError,
    MalformedResponseError,
    RateLimitError,
    ResponseTooLargeError,
    TransportError,
    TupuError,
    error_for_http_status,
)
from ._limiter import RateLimiter, SentHook
from ._logging import logger
from ._requests import PreparedRequest
from ._retry import RetryPolicy, classify_httpx_error, parse_retry_after, should_retry
from ._signing import Signer

__all__ = ["RequestSender", "ResponseParser", "raise_for_transient_status"]

T = TypeVar("T")
ResponseParser = Callable[[httpx.Response], T]
"""Turns one HTTP response into a result, or raises a classified ``TupuError``."""


_BODY_SENT: Final = frozenset(
    {"http11.send_request_body.complete", "http2.send_request_body.complete"}
)
# Gateway statuses that say an upstream timed out or failed mid-way: it may have worked.
_AMBIGUOUS_STATUSES: Final = frozenset({502, 504})
# Without trace events (a custom transport) these failures happen after the request went.
_AFTER_SEND_ERRORS: Final = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)
# Headers that describe the wire form of a body already decoded and read.
_WIRE_HEADERS: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def raise_for_transient_status(response: httpx.Response) -> None:
    """Raise the retryable error for HTTP 429 and 5xx (with ``Retry-After``), whatever the body.

    Every response parser calls this first: those statuses are the service (or a proxy)
    saying "not now", never an answer to decode.
    """
    status = response.status_code
    if status == 429 or status >= 500:
        raise error_for_http_status(
            status,
            excerpt(response.content),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )


@dataclass(slots=True)
class _Attempt:
    """What one attempt got to: tracing seen, request body sent, response status received."""

    mark_sent: SentHook | None
    traced: bool = False
    body_sent: bool = False
    status: int | None = None

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        self.traced = True
        if event in _BODY_SENT:
            self.body_sent = True
            if self.mark_sent is not None:
                self.mark_sent()

    def ambiguous(self, error: TupuError) -> bool:
        """True if the service may have processed the request despite ``error``."""
        if self.status is not None:
            if self.status in _AMBIGUOUS_STATUSES:
                return True
            # A 2xx whose body broke: the service answered, so it did the work.
            return 200 <= self.status < 300 and isinstance(
                error, (MalformedResponseError, TransportError)
            )
        if self.traced:
            return self.body_sent
        return isinstance(error.__cause__, _AFTER_SEND_ERRORS)


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The decoded body, or ``ResponseTooLargeError`` as soon as it exceeds ``limit`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and "content-encoding" not in response.headers:
        raise _too_large(response.status_code, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(response.status_code, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(status: int, limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"the HTTP {status} response is larger than max_response_bytes={limit}, so it was "
        f"not read further: Tupu's answers are far smaller, so a proxy or another server "
        f"answered; check base_url (raise max_response_bytes= only for huge library listings)",
        status_code=status,
    )


def _tupu_code(outcome: object) -> int | None:
    """The Tupu status code a parsed response or a ``TupuError`` carries, if any."""
    code = getattr(outcome, "code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


class RequestSender:
    """Sends prepared requests with the limiter, signing and retry policy of one client.

    Every attempt takes one limiter permit, so retries count against the QPS budget too;
    every attempt is signed afresh (new timestamp and nonce). Retryable failures back off
    with jitter (honouring ``Retry-After``); a 429 is reported to the shared limiter and
    re-sent in its next free slot (after a capped Retry-After, if any).
    Fatal errors and errors still failing after ``policy.max_retries`` are raised.
    Bodies over ``max_response_bytes`` are refused unread. A failure after the request
    reached the service is *ambiguous* (it may have been processed and billed): retried
    and counted in ``stats.ambiguous_retries``, or with ``retry_ambiguous=False`` raised
    as ``AmbiguousFailureError``.
    The limiter is told each request's real send time only when the transport fires
    httpcore's body-sent trace event; otherwise (a custom transport) it counts the permit
    time, and ``stats.send_time_source`` says ``"permit"``.
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        base_url: str,
        signer: Signer,
        limiter: RateLimiter,
        policy: RetryPolicy,
        hooks: Hooks,
        stats: ClientStats,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        retry_ambiguous: bool = True,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._signer = signer
        self._limiter = limiter
        self._policy = policy
        self._hooks = hooks
        self.stats = stats
        self._headers: dict[str, dict[str, str]] = {}
        self._max_response_bytes = max_response_bytes
        self._retry_ambiguous = retry_ambiguous
        self.listeners: list[Listener] = []
        # A limiter may offer the next free slot to a throttled request (LocalLimiter does).
        self._acquire_next: Callable[[], Awaitable[SentHook | None]] | None = getattr(
            limiter, "acquire_next", None
        )

    def _emit(self, which: str, event: RequestEvent) -> None:
        self._hooks.emit(which, event)
        for listener in self.listeners:
            try:
                listener(which, event)
            except Exception:  # instrumentation must never break traffic
                logger.exception("tupu_async event listener raised; ignoring")

    @property
    def signer(self) -> Signer:
        return self._signer

    def _headers_for(self, content_type: str) -> dict[str, str]:
        headers = self._headers.get(content_type)
        if headers is None:
            if content_type.startswith("multipart/"):
                return {"Content-Type": content_type, "User-Agent": USER_AGENT}
            headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
            self._headers[content_type] = headers
        return headers

    async def send(self, request: PreparedRequest, parse: ResponseParser[T]) -> T:
        url = self._base_url + request.path
        # Logs and hook events name the endpoint, not the secret id inside its path.
        shown = request.path.replace(self._signer.secret_id, "<secretId>")
        event = partial(RequestEvent, shown, request.image_count)
        headers = self._headers_for(request.content_type)
        stats = self.stats
        attempt = failures = throttles = 0
        throttled = False
        while True:
            if self._http.is_closed:
                raise ClientClosedError(
                    "the httpx.AsyncClient passed as http_client= was closed before this "
                    "request; keep it open for the life of the tupu-async client"
                )
            waiting = time.monotonic()
            if throttled and throttles == 1 and self._acquire_next is not None:
                # First 429 of this request: re-send in the next free slot. Later ones
                # queue as usual, so a window still full cannot burn the whole budget.
                mark_sent = await self._acquire_next()
            else:
                mark_sent = await self._limiter.acquire()
            waited = time.monotonic() - waiting
            signed = self._signer.sign()
            body = request.body(signed)
            stats.requests += 1
            stats.in_flight += 1
            self._emit("on_request", event(attempt, limiter_wait=waited))
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "POST %s (%d images, attempt %d, %d bytes, signature=***)",
                    shown,
                    request.image_count,
                    attempt,
                    len(body),
                )
            started = time.monotonic()
            status: int | None = None
            error: TupuError | None = None
            progress = _Attempt(mark_sent)
            try:
                response = await self._exchange(url, body, headers, progress)
            except (httpx.HTTPError, ResponseTooLargeError) as exc:
                error = exc if isinstance(exc, TupuError) else classify_httpx_error(exc)
                status = progress.status
            except BaseException as exc:  # cancelled while in flight
                elapsed = time.monotonic() - started
                self._emit(
                    "on_cancel", event(attempt, elapsed=elapsed, error=exc, limiter_wait=waited)
                )
                raise
            else:
                self._note_send_time(progress)
                status = response.status_code
                stats.responses += 1
                stats.status_codes[status] = stats.status_codes.get(status, 0) + 1
                try:
                    result = parse(response)
                except TupuError as exc:
                    error = exc
                else:
                    stats.images += request.image_count
                    self._limiter.on_success()
            finally:
                stats.in_flight -= 1
            elapsed = time.monotonic() - started
            tupu_code = _tupu_code(result if error is None else error)
            self._emit(
                "on_response",
                event(attempt, status, elapsed, error, limiter_wait=waited, tupu_code=tupu_code),
            )
            if error is None:
                return result
            retry_after = getattr(error, "retry_after", None)
            if isinstance(error, RateLimitError):
                stats.throttles += 1
                self._emit("on_throttle", event(attempt, status, elapsed, error, retry_after))
                logger.warning(
                    "throttled by Tupu (HTTP 429, Retry-After %s); the limiter adapts",
                    "none" if retry_after is None else f"{retry_after:g}s",
                )
                await self._limiter.on_throttle(retry_after)
            ambiguous = should_retry(error) and progress.ambiguous(error)
            if ambiguous and not self._retry_ambiguous:
                stats.failures += 1
                stats.ambiguous_failures += 1
                raise AmbiguousFailureError(
                    f"{error} -- the request reached Tupu, which may have processed and billed "
                    f"it, so it was not retried (retry_ambiguous=False); resend these images "
                    f"yourself if a duplicate recognition is acceptable",
                    cause=error,
                ) from error
            throttled = isinstance(error, RateLimitError)
            if throttled:
                throttles += 1
                exhausted = throttles > self._policy.max_throttle_retries
            else:
                failures += 1
                exhausted = not self._policy.allows_retry(failures - 1)
            if not should_retry(error) or exhausted:
                stats.failures += 1
                if should_retry(error):
                    logger.warning(
                        "giving up on %s (%d images) after %d attempts: %s",
                        shown,
                        request.image_count,
                        attempt + 1,
                        error,
                    )
                raise error
            if throttled:
                delay = self._policy.throttle_delay(retry_after)
            else:
                delay = self._policy.delay(failures - 1, retry_after)
            stats.retries += 1
            if ambiguous:
                stats.ambiguous_retries += 1
            self._emit("on_retry", event(attempt, status, elapsed, error, delay))
            logger.info(
                "retrying %s in %.2fs (%s %d of %d): %s",
                shown,
                delay,
                "429 re-send" if throttled else "attempt",
                throttles if throttled else failures,
                self._policy.max_throttle_retries if throttled else self._policy.max_retries,
                error,
            )
            await anyio.sleep(delay)
            attempt += 1

    def _note_send_time(self, progress: _Attempt) -> None:
        """Record whether the limiter got this attempt's real send time (``"trace"``) or,
        the transport having reported no body-sent trace event, its permit time."""
        if progress.mark_sent is None:
            return
        if progress.body_sent:
            self.stats.send_time_source = "trace"
            return
        if self.stats.send_time_source != "permit":
            logger.debug(
                "the HTTP transport reports no request-sent trace event: the limiter counts "
                "permit times instead of send times"
            )
        self.stats.send_time_source = "permit"

    async def _exchange(
        self, url: str, body: bytes, headers: dict[str, str], progress: _Attempt
    ) -> httpx.Response:
        """POST and read the body under the cap, within the attempt's total deadline."""
        with bounded_attempt(attempt_deadline(self._http.timeout), url):
            return await self._exchange_unbounded(url, body, headers, progress)

    async def _exchange_unbounded(
        self, url: str, body: bytes, headers: dict[str, str], progress: _Attempt
    ) -> httpx.Response:
        async with self._http.stream(
            "POST", url, content=body, headers=headers, extensions={"trace": progress.trace}
        ) as streamed:
            progress.status = streamed.status_code
            content = await _read_capped(streamed, self._max_response_bytes)
        kept = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
        return httpx.Response(
            streamed.status_code, headers=kept, content=content, request=streamed.request
        )
