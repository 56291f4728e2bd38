"""Opening connections ahead of need, so connection set-up is off the paced path."""

from __future__ import annotations

import math

import anyio
import httpx

from ._events import logger

__all__ = ["default_warm_connections", "warm_pool"]

# Connections kept open for each request per second of the ceiling: enough for answers
# that take up to this many seconds without opening a new connection mid-run.
_SECONDS_OF_LATENCY_COVERED = 0.5


def default_warm_connections(qps: float, max_in_flight: int) -> int:
    """How many connections to open on entry: ``ceil(qps / 2)``, at most ``max_in_flight``."""
    if not math.isfinite(qps):
        return max_in_flight
    return max(1, min(max_in_flight, math.ceil(qps * _SECONDS_OF_LATENCY_COVERED)))


async def warm_pool(http: httpx.AsyncClient, base_url: str, count: int) -> None:
    """Open ``count`` keep-alive connections to ``base_url`` with concurrent ``HEAD /``.

    A HEAD of the root carries no secret id and no signature, so it is not an API call
    and takes nothing from the QPS budget. Failures are logged at debug level and
    ignored: the real requests open their own connections as usual.
    """

    async def one() -> None:
        try:
            await http.head(base_url + "/")
        except httpx.HTTPError as exc:
            logger.debug("warming a connection to %s failed: %r", base_url, exc)

    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(one)
    logger.debug("warmed %d connections to %s", count, base_url)
