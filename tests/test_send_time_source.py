"""The limiter's send-time correction reports whether the transport gave it send times."""

from __future__ import annotations

import logging

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tupu_async._events import ClientStats, Hooks
from tupu_async._limiter import LocalLimiter
from tupu_async._requests import build_management_request
from tupu_async._retry import RetryPolicy
from tupu_async._sending import RequestSender
from tupu_async._signing import Signer

KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)


class _TracingTransport(httpx.AsyncBaseTransport):
    """Answers 200 after firing the body-sent trace event, as httpcore does."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        trace = request.extensions["trace"]
        await trace("http11.send_request_body.complete", {"request": request})
        return httpx.Response(200, content=b"{}")


def _sender(transport: httpx.AsyncBaseTransport, stats: ClientStats) -> RequestSender:
    return RequestSender(
        http=httpx.AsyncClient(transport=transport),
        base_url="http://tupu.test",
        signer=Signer("secret-under-test", KEY),
        limiter=LocalLimiter(50),
        policy=RetryPolicy(max_retries=0),
        hooks=Hooks(),
        stats=stats,
    )


async def _send_twice(sender: RequestSender) -> list[int]:
    request = build_management_request("/v3/lib/search/", "secret-under-test", {})
    return [await sender.send(request, lambda r: r.status_code) for _ in range(2)]


@pytest.mark.anyio
async def test_a_transport_without_trace_events_falls_back_to_permit_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = ClientStats()
    sender = _sender(httpx.MockTransport(lambda request: httpx.Response(200)), stats)
    assert stats.send_time_source is None
    with caplog.at_level(logging.DEBUG, logger="tupu_async"):
        assert await _send_twice(sender) == [200, 200]  # the requests themselves still work
    assert stats.send_time_source == "permit"
    notes = [r for r in caplog.records if "no request-sent trace event" in r.getMessage()]
    assert len(notes) == 1  # said once, not per request
    assert stats.snapshot().send_time_source == "permit"


@pytest.mark.anyio
async def test_a_transport_with_trace_events_reports_real_send_times() -> None:
    stats = ClientStats()
    assert await _send_twice(_sender(_TracingTransport(), stats)) == [200, 200]
    assert stats.send_time_source == "trace"
