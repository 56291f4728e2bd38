"""One attempt has a total deadline: an answer dripped a byte at a time cannot hang a run.

The read timeout is per read, so a server (or a man in the middle on the plain-http API
path) that sends one byte just within it could keep an attempt open for days.
"""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from clients import PNG_1x1

from tupu_async import AsyncTupuClient, RetryPolicy, TransportError
from tupu_async._deadline import DEADLINE_FACTOR, attempt_deadline
from tupu_async.testing import FakeTupuServer

READ_TIMEOUT = 0.3
DRIP_INTERVAL = 0.05  # far inside the read timeout, so only a total deadline ends it


async def _drip(stream: SocketStream, headers_first: bool) -> None:
    async with stream:
        await stream.receive()  # the request's start is enough
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        if headers_first:
            await stream.send(head)
            payload = b"{" * 100_000
        else:  # a header section that never ends
            payload = b"HTTP/1.1 200 OK\r\n" + b"X-Drip: 1\r\n" * 10_000
        for byte in payload:
            await stream.send(bytes([byte]))
            await anyio.sleep(DRIP_INTERVAL)


@pytest.mark.anyio
@pytest.mark.parametrize("headers_first", [True, False], ids=["body", "headers"])
async def test_a_dripped_answer_fails_the_attempt_at_its_deadline(headers_first: bool) -> None:
    server = FakeTupuServer()
    sid, key = server.add_credentials("drip")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, lambda s: _drip(s, headers_first))
        client = AsyncTupuClient(
            sid,
            key,
            base_url=f"http://127.0.0.1:{port}",
            tupu_public_key=server.public_key_pem,
            timeout=READ_TIMEOUT,
            retry_policy=RetryPolicy(max_retries=0),
            warm_connections=0,
        )
        started = time.monotonic()
        with anyio.fail_after(30):  # without a total deadline the drip lasts ~80 min
            async with client:
                [result] = await client.recognize_many([PNG_1x1])
        elapsed = time.monotonic() - started
        tg.cancel_scope.cancel()
    assert isinstance(result.error, TransportError)
    assert "deadline" in str(result.error)
    assert elapsed >= READ_TIMEOUT * DEADLINE_FACTOR * 0.9


def test_the_deadline_follows_the_timeout() -> None:
    assert attempt_deadline(httpx.Timeout(30.0)) == 30.0 * DEADLINE_FACTOR
    assert attempt_deadline(httpx.Timeout(5.0, read=60.0)) == 60.0 * DEADLINE_FACTOR
    assert attempt_deadline(httpx.Timeout(None)) is None
