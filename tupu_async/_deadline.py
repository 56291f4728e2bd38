"""A total deadline for one request attempt, on top of httpx's per-operation timeouts.

The whole exchange (upload, response headers and body) gets ``DEADLINE_FACTOR`` times the
longest configured timeout; past it the attempt fails like a read timeout and is retried
as one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import anyio
import httpx

__all__ = ["DEADLINE_FACTOR", "attempt_deadline", "bounded_attempt"]

DEADLINE_FACTOR: Final = 10
"""The deadline is this many times the longest timeout (300 s for the default 30 s)."""


def attempt_deadline(timeout: httpx.Timeout) -> float | None:
    """Seconds one attempt may take in all; None when every timeout is off."""
    parts = [t for t in (timeout.connect, timeout.read, timeout.write, timeout.pool) if t]
    return max(parts) * DEADLINE_FACTOR if parts else None


@contextmanager
def bounded_attempt(deadline: float | None, request_url: str) -> Iterator[None]:
    """Runs the block within ``deadline`` seconds, else raises ``httpx.ReadTimeout``."""
    if deadline is None:
        yield
        return
    try:
        with anyio.fail_after(deadline):
            yield
    except TimeoutError:
        raise httpx.ReadTimeout(
            f"the answer was not complete within the {deadline:g} s deadline of one "
            f"attempt ({DEADLINE_FACTOR} x the timeout)",
            request=httpx.Request("POST", request_url),
        ) from None
