"""Reaching Redis for the shared limiter: the client, its errors, and what to tell users.

The ``redis`` package is imported only by :func:`connect` and :func:`redis_errors` (that
is, when a :class:`~tupu_async.RedisLimiter` is constructed), so ``import tupu_async``
works without it.
"""

from __future__ import annotations

import asyncio
import importlib
import time
import urllib.parse
import warnings
from typing import Any, Final

from ._exceptions import TransportError
from ._limiter import LocalLimiter
from ._logging import logger

__all__ = [
    "Outage",
    "connect",
    "describe_error",
    "fallback_limiter",
    "outage_error",
    "redacted_url",
    "redis_errors",
    "refused_error",
    "require_asyncio",
]

#: Connect timeout of a client the limiter creates itself.
REDIS_SOCKET_TIMEOUT: Final = 2.0


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            "RedisLimiter needs the redis package: pip install 'tupu-async[redis]'"
        ) from exc


def connect(url: str, redis_timeout: float) -> Any:
    """A ``redis.asyncio.Redis`` for ``url`` whose every call fails after ``redis_timeout``
    seconds, with no retry of its own and no extra round trips when connecting (RESP2)."""
    redis_asyncio = _import("redis.asyncio")
    retry = _import("redis.asyncio.retry").Retry(_import("redis.backoff").NoBackoff(), 1)
    return redis_asyncio.Redis.from_url(
        url,
        socket_connect_timeout=min(REDIS_SOCKET_TIMEOUT, redis_timeout),
        socket_timeout=redis_timeout,
        retry=retry,
        protocol=2,
    )


def redis_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """The errors that mean Redis refused us (credentials, ACL), and those that mean it is
    unavailable (down, timed out, or answering with an error during a failover)."""
    errors = _import("redis.exceptions")
    refused = (errors.AuthenticationError, errors.AuthorizationError, errors.NoPermissionError)
    return refused, (errors.RedisError, OSError, asyncio.TimeoutError)


def require_asyncio() -> None:
    """Raise ``RuntimeError`` unless an asyncio event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "RedisLimiter runs only under asyncio (redis.asyncio is asyncio-only); under trio "
            "use the local limiter, or run the client under asyncio"
        ) from None


def redacted_url(url: str) -> str:
    """The URL with any password replaced, fit for error messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def describe_error(exc: BaseException) -> str:
    """``"Type: text"``, or just ``"Type"`` when the error has no text."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def refused_error(url: str, key: str, exc: BaseException) -> TransportError:
    """The error for a Redis that refused the limiter's credentials or commands."""
    return TransportError(
        f"Redis at {redacted_url(url)} refused the limiter ({describe_error(exc)}): fix the "
        f"user and password in the URL, or grant it EVALSHA/EVAL on the {key!r} keys"
    )


def outage_error(url: str, seconds: float, exc: BaseException) -> TransportError:
    """The error for a Redis unavailable for ``seconds`` with ``on_unavailable="fail"``."""
    return TransportError(
        f"Redis at {redacted_url(url)} has been unavailable for "
        f"{seconds:.1f} s ({describe_error(exc)}), so no slot of the "
        f"shared QPS budget could be taken: start Redis there (or promote a "
        f"writable primary), fix the URL, raise outage_timeout, or pass "
        f"on_unavailable='local' to fall back to a per-process limit of "
        f"qps / expected_workers"
    )


def fallback_limiter(
    url: str,
    exc: BaseException,
    qps: float,
    period: float,
    *,
    margin: float,
    min_rate: float,
    workers: int,
    retry_every: float,
) -> tuple[LocalLimiter, float]:
    """Warn that Redis at ``url`` failed with ``exc``, and return the local limiter for one
    of ``workers`` processes sharing ``qps`` per ``period``, with the factor from its rate
    to requests per ``period``.

    ``LocalLimiter`` needs ``qps >= 1``: below one request per period the period is
    stretched instead (and the factor is below 1).
    """
    local_qps = qps / workers
    message = (
        f"cannot reach Redis at {redacted_url(url)} for the shared QPS budget "
        f"({describe_error(exc)}); falling back to a per-process limit of {local_qps:g} "
        f"requests per {period:g} s (qps / expected_workers) and retrying Redis every "
        f"{retry_every:g} s. Start Redis or fix the URL; set expected_workers to the "
        f"number of processes"
    )
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    logger.warning("tupu_async: %s", message)
    if local_qps >= 1.0:
        local_period, scale = period, 1.0
    else:
        local_period, scale = period / local_qps, local_qps
    ceiling = local_qps / scale
    limiter = LocalLimiter(
        ceiling, local_period, margin=margin, min_rate=min(ceiling, min_rate / workers)
    )
    return limiter, scale


class Outage:
    """How long Redis has been unavailable to one limiter (``on_unavailable="fail"``),
    with a warning when it goes and when it comes back."""

    def __init__(self, url: str, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._since: float | None = None

    def over(self) -> None:
        """Redis answered: log the end of the outage, if there was one."""
        if self._since is not None:
            logger.warning(
                "tupu_async: Redis at %s answers again after %.2f s; bookings resume",
                redacted_url(self._url),
                time.monotonic() - self._since,
            )
            self._since = None

    async def wait_out(self, exc: BaseException, backoff: float) -> None:
        """Redis failed with ``exc``: sleep ``backoff`` seconds, or raise
        :func:`outage_error` once the outage has lasted ``timeout`` seconds."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
            logger.warning(
                "tupu_async: Redis at %s unavailable (%s); no request starts without a "
                "shared slot, retrying for up to %.3g s",
                redacted_url(self._url),
                describe_error(exc),
                self._timeout,
            )
        remaining = self._since + self._timeout - now
        if remaining <= 0:
            raise outage_error(self._url, now - self._since, exc) from exc
        await asyncio.sleep(min(backoff, remaining))
