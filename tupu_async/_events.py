"""Observability: event hooks and the ``client.stats`` counters.

Hooks are plain callables (sync, cheap) so apps can feed metrics without slowing the
engine down; an exception raised by a hook is logged and swallowed, never lost traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from ._logging import logger
from ._throttle_policy import LimiterBelief

__all__ = ["ClientStats", "Hooks", "Listener", "RequestEvent"]


@dataclass(frozen=True)
class RequestEvent:
    """One HTTP attempt, as seen by the hooks.

    ``attempt`` counts from 0; ``status_code`` is None before the response (or when the
    connection failed); ``error`` is the failure of this attempt, if any; ``delay`` is the
    backoff before the next attempt (``on_retry``) or the pause (``on_throttle``).
    ``limiter_wait`` is how long the attempt waited for its rate-limiter permit and
    ``tupu_code`` the Tupu status code of the response, when it carried one.
    """

    path: str
    images: int
    attempt: int
    status_code: int | None = None
    elapsed: float | None = None
    error: BaseException | None = None
    delay: float | None = None
    limiter_wait: float | None = None
    tupu_code: int | None = None


Hook = Callable[[RequestEvent], None]
Listener = Callable[[str, RequestEvent], None]
"""``listener(hook_name, event)``: sees every event, e.g. the OpenTelemetry instrumentation."""


@dataclass
class Hooks:
    """Callables invoked on every request, response, retry and throttle.

    ``on_cancel`` runs instead of ``on_response`` when an attempt is cancelled while its
    request is in flight (its ``error`` is the cancellation).
    """

    on_request: Hook | None = None
    on_response: Hook | None = None
    on_retry: Hook | None = None
    on_throttle: Hook | None = None
    on_cancel: Hook | None = None

    def emit(self, which: str, event: RequestEvent) -> None:
        hook: Hook | None = getattr(self, which)
        if hook is None:
            return
        try:
            hook(event)
        except Exception:  # a metrics hook must never break traffic
            logger.exception("tupu_async %s hook raised; ignoring", which)


@dataclass
class ClientStats:
    """Counters since the client was created. ``client.stats`` returns a copy (a snapshot)."""

    requests: int = 0
    """HTTP attempts started (retries included)."""
    responses: int = 0
    images: int = 0
    """Images in requests that succeeded."""
    retries: int = 0
    ambiguous_retries: int = 0
    """Retries after a failure that left it unknown whether the service processed (and
    billed) the images: each may have been recognised twice."""
    ambiguous_failures: int = 0
    """Requests not retried after such a failure because ``retry_ambiguous=False``."""
    throttles: int = 0
    failures: int = 0
    """Requests that failed for good (after retries, or fatally)."""
    in_flight: int = 0
    fallbacks: int = 0
    status_codes: dict[int, int] = field(default_factory=dict)
    limiter: LimiterBelief | None = None
    """What the limiter believes (rate, margin, throttles by cause), when it can say."""

    send_time_source: Literal["trace", "permit"] | None = None
    """What the limiter's send-time correction uses: ``"trace"`` (the real send time, from
    httpcore trace events) or ``"permit"`` (the transport reports no such event, e.g. a
    custom transport: permit times count); None before any response or without a limiter
    that asks for send times."""

    def snapshot(self) -> ClientStats:
        """An independent copy: later counting changes neither it nor the client."""
        return replace(self, status_codes=dict(self.status_codes))
