"""The client against the fake server over real loopback HTTP (uvicorn)."""

from __future__ import annotations

from typing import Any, Literal

import anyio
import pytest
from clients import FAST_RETRIES, http_client_for, png

from tupu_async import ImageResult, LocalLimiter, TransportError
from tupu_async._constants import TASK_PORN
from tupu_async.testing import FakeTupuServer

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", ["url", "multipart", "base64"])
async def test_recognize_each_transport_over_http(kind: str) -> None:
    server = FakeTupuServer()
    images: list[Any] = (
        [f"http://img.test/{i}.jpg" for i in range(10)]
        if kind == "url"
        else [png(i) for i in range(10)]
    )
    transport: Literal["multipart", "base64"] = "base64" if kind == "base64" else "multipart"
    with server.serve_in_thread() as base_url:
        async with http_client_for(server, base_url) as client:
            resp = await client.recognize(
                images, tags=["a"], tasks=[TASK_PORN], transport=transport
            )
    assert len(resp.images) == 10
    assert all(r.ok and r.tag == "a" and set(r.tasks) == {TASK_PORN} for r in resp.images)
    assert server.stats.images_per_request == [10]


async def test_dropped_connections_and_bad_bodies_are_retried_over_http() -> None:
    server = FakeTupuServer()
    server.inject("drop_connection", "truncated_body", "http_502", "code_101")
    with server.serve_in_thread() as base_url:
        async with http_client_for(
            server,
            base_url,
            retry_policy=FAST_RETRIES.__class__(
                max_retries=4, backoff_base=0.001, backoff_max=0.01
            ),
        ) as client:
            resp = await client.recognize(["http://img.test/a.jpg"])
            assert client.stats.retries == 4
    assert resp.images[0].ok


async def test_unreachable_server_gives_transport_error_per_image() -> None:
    server = FakeTupuServer()
    async with http_client_for(server, "http://127.0.0.1:9") as client:
        results = await client.recognize_many(["http://img.test/a.jpg", "http://img.test/b.jpg"])
    assert all(isinstance(r.error, TransportError) for r in results)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_window_guarantee_counted_by_the_server_at_arrival() -> None:
    """150 requests at qps=50 over loopback: the server never sees more than 50 in 1 s.

    The server shares this test's event loop on a 2-core machine that also runs other
    tests, so arrival jitter here reaches ~20 ms; the limiter's margin is widened to
    50 ms to test the mechanism, not the machine. benchmarks/throughput.py measures the
    default 15 ms margin with the server in its own process.
    """
    server = FakeTupuServer(qps_limit=50, latency=0.02, latency_jitter=0.01)
    results: list[ImageResult] = []
    limiter = LocalLimiter(50, margin=0.05)
    async with (
        server.serve() as base_url,
        http_client_for(server, base_url, limiter=limiter) as client,
    ):
        assert client.limiter is limiter
        assert limiter.margin == 0.05
        with anyio.fail_after(30):
            results = await client.recognize_many(
                [f"http://img.test/n{i}.jpg" for i in range(1500)]
            )
    assert len(results) == 1500
    assert all(r.ok for r in results)
    assert server.stats.http_429 == 0
    assert server.stats.max_in_window(1.0) <= 50
    assert len(server.stats.images_per_request) == 150


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aclose_leaves_no_tasks_or_connections_behind() -> None:
    import asyncio

    server = FakeTupuServer(qps_limit=None, latency=0.05)
    before = set(asyncio.all_tasks())
    async with server.serve() as base_url:
        client = http_client_for(server, base_url, qps=1000)
        async with client:
            stream = client.iter_recognize([f"http://img.test/n{i}.jpg" for i in range(200)])
            async for _ in stream:
                break  # leave work in flight
            await client.recognize_one("http://img.test/one.jpg")
        assert client._http.is_closed
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        assert pool.connections == []
        await stream.aclose()
        leftover = set(asyncio.all_tasks()) - before - {asyncio.current_task()}
        # only the server's own task may remain while it is still serving
        assert all(getattr(t.get_coro(), "__qualname__", "") == "Server.serve" for t in leftover)
