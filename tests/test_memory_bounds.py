"""Memory bounds: ``recognize_one`` backpressure and the fake server's bounded records."""

from __future__ import annotations

import anyio
import httpx
import pytest
from clients import FAST_RETRIES

from tupu_async import AsyncTupuClient, ImageResult, UnlimitedLimiter
from tupu_async.testing import FakeTupuServer
from tupu_async.testing._stats import MAX_PATHS, FakeServerStats


class Gate(httpx.AsyncBaseTransport):
    """Holds every request until ``open`` is set; records how many were held at once."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.open = anyio.Event()
        self.held = 0
        self.most_held = 0
        self.sizes: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.held += 1
        self.most_held = max(self.most_held, self.held)
        try:
            await self.open.wait()
            return await self.inner.handle_async_request(request)
        finally:
            self.held -= 1


@pytest.mark.anyio
async def test_recognize_one_holds_max_in_flight_and_makes_extra_callers_wait() -> None:
    server = FakeTupuServer(qps_limit=None)
    gate = Gate(server.transport())
    sid, key = server.add_credentials("s")
    client = AsyncTupuClient(
        sid,
        key,
        base_url="http://fake.tupu.test",
        tupu_public_key=server.public_key_pem,
        http_client=httpx.AsyncClient(transport=gate),
        retry_policy=FAST_RETRIES,
        max_in_flight=2,
        max_images_per_request=3,
        batch_linger=0.0,
        limiter=UnlimitedLimiter(),  # no pacing sleeps: every task blocks on the gate
    )
    callers = 60
    results: list[ImageResult] = []

    async def one(i: int) -> None:
        results.append(await client.recognize_one(f"http://img.test/{i}.jpg"))

    async with client, anyio.create_task_group() as tg:
        for i in range(callers):
            tg.start_soon(one, i)
        await anyio.wait_all_tasks_blocked()
        # Two requests in flight; one more group filling; everybody else waits outside.
        assert gate.held == 2
        assert client._coalescer.admitted == (2 + 1) * 3
        assert len(results) == 0
        gate.open.set()
    assert sorted(r.name for r in results) == sorted(f"http://img.test/{i}.jpg" for i in range(60))
    assert all(r.ok for r in results)
    assert gate.most_held == 2
    assert client._coalescer.admitted == 0
    assert max(server.stats.images_per_request) == 3


@pytest.mark.anyio
async def test_cancelled_callers_give_their_admission_back() -> None:
    server = FakeTupuServer(qps_limit=None)
    gate = Gate(server.transport())
    sid, key = server.add_credentials("s")
    client = AsyncTupuClient(
        sid,
        key,
        base_url="http://fake.tupu.test",
        tupu_public_key=server.public_key_pem,
        http_client=httpx.AsyncClient(transport=gate),
        max_in_flight=1,
        max_images_per_request=1,
        batch_linger=0.0,
        limiter=UnlimitedLimiter(),  # no pacing sleeps: every task blocks on the gate
    )
    async with client, anyio.create_task_group() as tg:
        scopes = []
        for i in range(5):
            scope = anyio.CancelScope()
            scopes.append(scope)

            async def call(i: int = i, scope: anyio.CancelScope = scope) -> None:
                with scope:
                    await client.recognize_one(f"http://img.test/{i}.jpg")

            tg.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        assert client._coalescer.admitted == 2
        for scope in scopes:
            scope.cancel()
        await anyio.wait_all_tasks_blocked()
        gate.open.set()
    assert client._coalescer.admitted == 0


def test_fake_server_records_are_bounded_and_counts_stay_exact() -> None:
    stats = FakeServerStats(max_records=100)
    for i in range(1000):
        sequence = stats.record_arrival(float(i), f"/v3/recognition/sid{i % 3}")
        stats.set_secret_id(sequence, "sid")
        if i % 10 == 0:
            stats.record_throttled(sequence)
        stats.record_images(1 + i % 10)
    assert len(stats.arrivals) <= 100
    assert len(stats.arrival_secret_ids) == len(stats.arrivals) == len(stats.arrival_accepted)
    assert len(stats.images_per_request) <= 100
    assert stats.arrivals[-1] == 999.0
    assert stats.arrival_secret_ids[-1] == "sid"
    assert stats.arrival_accepted[-10] is False  # arrival 990, throttled
    assert stats.total_requests == 1000
    assert stats.throttled == 100
    assert sum(stats.images_histogram.values()) == 1000
    assert stats.mean_images_per_request == 5.5
    copy = stats.snapshot()
    assert copy.images_histogram == stats.images_histogram


def test_fake_server_counts_at_most_max_paths_by_name() -> None:
    stats = FakeServerStats()
    for i in range(MAX_PATHS + 50):
        stats.record_arrival(float(i), f"/random/{i}")
    assert len(stats.requests_by_path) == MAX_PATHS + 1
    assert stats.requests_by_path["(other)"] == 50


@pytest.mark.anyio
async def test_a_long_running_fake_server_keeps_bounded_records() -> None:
    server = FakeTupuServer(qps_limit=None)
    server._app.stats = FakeServerStats(max_records=50)
    sid, key = server.add_credentials("s")
    client = AsyncTupuClient(
        sid,
        key,
        base_url="http://fake.tupu.test",
        tupu_public_key=server.public_key_pem,
        http_client=httpx.AsyncClient(transport=server.transport()),
        max_images_per_request=1,
        limiter=UnlimitedLimiter(),
    )
    async with client:
        results = await client.recognize_many([f"http://img.test/{i}.jpg" for i in range(300)])
    assert all(r.ok for r in results)
    stats = server.stats
    assert stats.total_requests == 300
    assert len(stats.arrivals) <= 50
    assert stats.images_histogram == {1: 300}
