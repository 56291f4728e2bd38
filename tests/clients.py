"""Test helpers: a fake server and a client wired to it, in process or over loopback."""

from __future__ import annotations

from typing import Any

import httpx

from tupu_async import AsyncTupuClient, RetryPolicy, TupuClient
from tupu_async.testing import FakeTupuServer

FAST_RETRIES = RetryPolicy(max_retries=3, backoff_base=0.005, backoff_max=0.05)


def in_process_client(
    server: FakeTupuServer, secret_id: str = "test-secret", **kwargs: Any
) -> AsyncTupuClient:
    """A client talking to ``server`` through its in-process transport."""
    sid, key = server.add_credentials(secret_id)
    kwargs.setdefault("retry_policy", FAST_RETRIES)
    return AsyncTupuClient(
        sid,
        key,
        base_url="http://fake.tupu.test",
        tupu_public_key=server.public_key_pem,
        http_client=httpx.AsyncClient(transport=server.transport()),
        **kwargs,
    )


def sync_client(
    server: FakeTupuServer, backend: str, secret_id: str = "sync", **kwargs: Any
) -> TupuClient:
    """A ``TupuClient`` on ``backend`` talking to ``server`` in process."""
    sid, key = server.add_credentials(secret_id)
    kwargs.setdefault("retry_policy", FAST_RETRIES)
    return TupuClient(
        sid,
        key,
        base_url="http://fake.tupu.test",
        tupu_public_key=server.public_key_pem,
        http_client=httpx.AsyncClient(transport=server.transport()),
        backend=backend,
        **kwargs,
    )


def http_client_for(
    server: FakeTupuServer, base_url: str, secret_id: str = "test-secret", **kwargs: Any
) -> AsyncTupuClient:
    """A client talking to ``server`` over real loopback HTTP at ``base_url``."""
    sid, key = server.add_credentials(secret_id)
    kwargs.setdefault("retry_policy", FAST_RETRIES)
    return AsyncTupuClient(
        sid, key, base_url=base_url, tupu_public_key=server.public_key_pem, **kwargs
    )


PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def png(seed: int) -> bytes:
    """A distinct small PNG-looking content per seed (valid magic; content varies)."""
    return PNG_1x1 + seed.to_bytes(8, "big")
