"""The one place an HTTP attempt happens: limiter permit, fresh signature, send, classify,
back off, retry. Everything above (recognition, batching, libraries) goes through
:class:`RequestSender`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx

from ._constants import USER_AGENT
from ._envelope import excerpt
from ._events import ClientStats, Hooks, RequestEvent, logger
from ._exceptions import RateLimitError, TupuError, error_for_http_status
from ._limiter import RateLimiter, SentHook
from ._requests import PreparedRequest
from ._retry import RetryPolicy, classify_httpx_error, parse_retry_after, should_retry
from ._signing import Signer

__all__ = ["RequestSender", "ResponseParser", "raise_for_transient_status"]

T = TypeVar("T")
ResponseParser = Callable[[httpx.Response], T]
"""Turns one HTTP response into a result, or raises a classified ``TupuError``."""


_BODY_SENT = "http11.send_request_body.complete"


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


def _trace_extension(mark_sent: SentHook) -> dict[str, Any]:
    """An httpcore trace hook that tells the limiter when the request is on the wire."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event == _BODY_SENT:
            mark_sent()

    return {"trace": trace}


class RequestSender:
    """Sends prepared requests with the limiter, signing and retry policy of one client.

    Every attempt takes one limiter permit, so retries count against the QPS budget too;
    every attempt is signed afresh (new timestamp and nonce). Retryable failures back off
    with jitter (honouring ``Retry-After``); a 429 is reported to the shared limiter and
    re-sent in its next free slot (after a capped Retry-After, if any).
    Fatal errors and errors still failing after ``policy.max_retries`` are raised.
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
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._signer = signer
        self._limiter = limiter
        self._policy = policy
        self._hooks = hooks
        self.stats = stats
        self._headers: dict[str, dict[str, str]] = {}
        # A limiter may offer the next free slot to a throttled request (LocalLimiter does).
        self._acquire_next: Callable[[], Awaitable[SentHook | None]] | None = getattr(
            limiter, "acquire_next", None
        )

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
        headers = self._headers_for(request.content_type)
        stats = self.stats
        attempt = failures = throttles = 0
        throttled = False
        while True:
            if throttled and throttles == 1 and self._acquire_next is not None:
                # First 429 of this request: re-send in the next free slot. Later ones
                # queue as usual, so a window still full cannot burn the whole budget.
                mark_sent = await self._acquire_next()
            else:
                mark_sent = await self._limiter.acquire()
            signed = self._signer.sign()
            body = request.body(signed)
            stats.requests += 1
            stats.in_flight += 1
            self._hooks.emit("on_request", RequestEvent(shown, request.image_count, attempt))
            if logger.isEnabledFor(10):
                logger.debug(
                    "POST %s (%d images, attempt %d, %d bytes, signature=***)",
                    shown,
                    request.image_count,
                    attempt,
                    len(body),
                )
            started = time.monotonic()
            status: int | None = None
            error: TupuError
            try:
                response = await self._http.post(
                    url,
                    content=body,
                    headers=headers,
                    extensions=_trace_extension(mark_sent) if mark_sent is not None else None,
                )
            except httpx.HTTPError as exc:
                error = classify_httpx_error(exc)
            else:
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
                    self._hooks.emit(
                        "on_response",
                        RequestEvent(
                            shown,
                            request.image_count,
                            attempt,
                            status,
                            time.monotonic() - started,
                        ),
                    )
                    return result
            finally:
                stats.in_flight -= 1
            elapsed = time.monotonic() - started
            self._hooks.emit(
                "on_response",
                RequestEvent(shown, request.image_count, attempt, status, elapsed, error),
            )
            retry_after = getattr(error, "retry_after", None)
            if isinstance(error, RateLimitError):
                stats.throttles += 1
                self._hooks.emit(
                    "on_throttle",
                    RequestEvent(
                        shown,
                        request.image_count,
                        attempt,
                        status,
                        elapsed,
                        error,
                        retry_after,
                    ),
                )
                logger.warning(
                    "throttled by Tupu (HTTP 429, Retry-After %s); the limiter adapts",
                    "none" if retry_after is None else f"{retry_after:g}s",
                )
                await self._limiter.on_throttle(retry_after)
            throttled = isinstance(error, RateLimitError)
            if throttled:
                throttles += 1
                exhausted = throttles > self._policy.max_throttle_retries
            else:
                failures += 1
                exhausted = failures > self._policy.max_retries
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
            self._hooks.emit(
                "on_retry",
                RequestEvent(shown, request.image_count, attempt, status, elapsed, error, delay),
            )
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
