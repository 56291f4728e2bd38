"""At-least-once, said plainly: ambiguous failures are counted, or not retried on request.

A failure is ambiguous when the request reached the service (its body was sent, or an
answer started) but no usable answer came back: the images may have been processed and
billed, so a retry may bill them twice.
"""

from __future__ import annotations

import socket

import httpx
import pytest
from clients import FAST_RETRIES, http_client_for, in_process_client

from tupu_async import (
    AmbiguousFailureError,
    AsyncTupuClient,
    ResponseTooLargeError,
    SignatureVerificationError,
)
from tupu_async.testing import FakeTupuServer

URLS = [f"http://img.test/{i}.jpg" for i in range(3)]

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "fault", ["truncated_body", "http_502", "drop_connection", "timeout", "bad_signature"]
)
async def test_an_ambiguous_failure_is_retried_and_counted(fault: str) -> None:
    server = FakeTupuServer(qps_limit=None)
    server.inject(fault)  # a "timeout" fault holds the answer 5 s, past the 2 s read timeout
    async with in_process_client(server, timeout=2.0) as client:
        if fault == "bad_signature":  # fatal, never retried: nothing is re-sent
            with pytest.raises(SignatureVerificationError):
                await client.recognize_many(URLS)
            assert client.stats.ambiguous_retries == 0
            return
        results = await client.recognize_many(URLS)
        stats = client.stats
    assert all(r.ok for r in results)
    assert stats.retries == 1
    assert stats.ambiguous_retries == 1
    assert server.stats.total_requests == 2  # the same three images went twice


@pytest.mark.parametrize("fault", ["http_429", "http_500", "code_100", "code_101"])
async def test_a_clear_refusal_is_retried_but_not_counted_ambiguous(fault: str) -> None:
    server = FakeTupuServer(qps_limit=None)
    server.inject(fault)
    async with in_process_client(server) as client:
        results = await client.recognize_many(URLS)
        stats = client.stats
    assert all(r.ok for r in results)
    assert stats.retries == 1
    assert stats.ambiguous_retries == 0


@pytest.mark.parametrize("fault", ["truncated_body", "http_502", "drop_connection"])
async def test_retry_ambiguous_false_gives_error_results_and_sends_once(fault: str) -> None:
    server = FakeTupuServer(qps_limit=None)
    server.inject(fault)
    async with in_process_client(server, retry_ambiguous=False) as client:
        results = await client.recognize_many(URLS)
        stats = client.stats
    assert [r.name for r in results] == URLS  # one result per image, none lost
    assert all(isinstance(r.error, AmbiguousFailureError) for r in results)
    assert "may have processed and billed" in results[0].message
    assert server.stats.total_requests == 1
    assert stats.ambiguous_failures == 1
    assert stats.ambiguous_retries == 0
    assert stats.retries == 0


async def test_retry_ambiguous_false_still_retries_clear_refusals() -> None:
    server = FakeTupuServer(qps_limit=None)
    server.inject("http_429", "code_100")
    async with in_process_client(server, retry_ambiguous=False) as client:
        results = await client.recognize_many(URLS)
        stats = client.stats
    assert all(r.ok for r in results)
    assert stats.retries == 2
    assert stats.ambiguous_failures == 0


async def test_over_http_a_dropped_connection_after_sending_is_ambiguous() -> None:
    server = FakeTupuServer(qps_limit=None)
    server.inject("drop_connection")
    with server.serve_in_thread() as base_url:
        async with http_client_for(server, base_url, retry_ambiguous=False) as client:
            results = await client.recognize_many(URLS)
    assert all(isinstance(r.error, AmbiguousFailureError) for r in results)


async def test_over_http_a_refused_connection_is_not_ambiguous() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = FakeTupuServer(qps_limit=None)
    client = http_client_for(server, f"http://127.0.0.1:{port}", retry_ambiguous=False)
    async with client:
        results = await client.recognize_many(URLS)
        stats = client.stats
    assert all(not r.ok for r in results)
    assert not any(isinstance(r.error, AmbiguousFailureError) for r in results)
    assert stats.retries == FAST_RETRIES.max_retries
    assert stats.ambiguous_retries == 0


# --- body caps --------------------------------------------------------------------------------


class Endless(httpx.AsyncByteStream):
    """An endless 200 body; counts what the client pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        chunk = b"x" * 65536
        while True:
            self.pulled += len(chunk)
            yield chunk


async def test_a_huge_body_is_refused_while_reading() -> None:
    server = FakeTupuServer(qps_limit=None)
    streams: list[Endless] = []

    def handler(request: httpx.Request) -> httpx.Response:
        streams.append(Endless())
        return httpx.Response(200, stream=streams[-1])

    sid, key = server.add_credentials("s")
    limit = 1024 * 1024
    client = AsyncTupuClient(
        sid,
        key,
        base_url="http://fake.tupu.test",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        retry_policy=FAST_RETRIES,
        max_response_bytes=limit,
    )
    async with client:
        results = await client.recognize_many(URLS)
    assert all(isinstance(r.error, ResponseTooLargeError) for r in results)
    assert "max_response_bytes=1048576" in results[0].message
    assert len(streams) == FAST_RETRIES.max_retries + 1
    assert all(s.pulled <= limit + 65536 for s in streams)


async def test_a_declared_huge_body_is_refused_before_reading() -> None:
    pulled: list[int] = []

    class Counted(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            pulled.append(1)
            yield b"{}"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": str(10**12)}, stream=Counted())

    server = FakeTupuServer(qps_limit=None)
    sid, key = server.add_credentials("s")
    client = AsyncTupuClient(
        sid,
        key,
        base_url="http://fake.tupu.test",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )
    async with client:
        results = await client.recognize_many(URLS[:1])
    assert isinstance(results[0].error, ResponseTooLargeError)
    assert pulled == []


def test_max_response_bytes_is_checked() -> None:
    server = FakeTupuServer(qps_limit=None)
    sid, key = server.add_credentials("s")
    with pytest.raises(ValueError, match="max_response_bytes"):
        AsyncTupuClient(sid, key, max_response_bytes=10)
