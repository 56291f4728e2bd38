"""Opening connections ahead of need, so connection set-up is off the paced path."""

from __future__ import annotations

import math

import anyio
import httpx

from ._logging import logger

__all__ = ["default_warm_connections", "warm_pool"]

# Connections opened on entry per request per second of the ceiling: the first 0.2 s of
# paced requests (why not more: docs/design-limiters.md).
_SECONDS_OF_PACE_COVERED = 0.2


def default_warm_connections(qps: float, max_in_flight: int) -> int:
    """How many connections to open on entry: ``ceil(qps / 5)``, at most ``max_in_flight``."""
    if not math.isfinite(qps):
        return min(max_in_flight, 10)
    return max(1, min(max_in_flight, math.ceil(qps * _SECONDS_OF_PACE_COVERED)))


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
