"""The fake server's network knobs over real loopback HTTP: arrival jitter, connection
set-up delay, foreign load; and the client warming its pool ahead of need."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import anyio
import httpx
import pytest
from clients import http_client_for

from tupu_async._signing import Signer
from tupu_async._warmup import default_warm_connections, warm_pool
from tupu_async.testing import FakeTupuServer, spawn_fake_server
from tupu_async.testing._asgi import ARRIVED_KEY
from tupu_async.testing._qps import SlidingWindowLimit
from tupu_async.testing._serving import serve_in_loop

pytestmark = pytest.mark.anyio

SECRET = "test-secret"


def make_server(**knobs: object) -> tuple[FakeTupuServer, Signer]:
    server = FakeTupuServer(**knobs)  # type: ignore[arg-type]
    secret_id, key = server.add_credentials(SECRET)
    return server, Signer(secret_id, key)


async def post(http: httpx.AsyncClient, signer: Signer) -> httpx.Response:
    fields = signer.sign()
    body = {
        "image": ["http://img.test/a.jpg"],
        "timestamp": fields.timestamp,
        "nonce": fields.nonce,
        "signature": fields.signature,
    }
    return await http.post(f"/v3/recognition/{SECRET}", json=body)


def gate_delays(server: FakeTupuServer) -> list[float]:
    stats = server.stats
    return [g - a for a, g in zip(stats.arrivals, stats.gate_times, strict=True)]


async def test_arrival_jitter_delays_the_gate_and_the_gate_counts_in_that_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, signer = make_server(qps_limit=1, arrival_jitter=0.2, seed=3)
    exchange = server.app.exchange
    sleep = exchange.sleep
    jitter: dict[int, float] = {}  # request index -> the delay the server drew for it

    async def recording_sleep(delay: float, call: Any) -> None:
        jitter.setdefault(call.index, delay)  # a request's first sleep is its gate's
        await sleep(delay, call)

    monkeypatch.setattr(exchange, "sleep", recording_sleep)
    async with (
        server.serve() as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
        anyio.create_task_group() as tg,
    ):
        for _ in range(6):
            tg.start_soon(post, http, signer)
    assert sorted(jitter) == list(range(6))
    assert all(0.0 <= j <= 0.2 for j in jitter.values())
    assert len(set(jitter.values())) > 1  # really random, not a constant shift
    # Each reached the gate at least its jitter after it arrived. (How much later is up to
    # the machine's load: a stalled server wakes them late, so no upper bound holds.)
    delays = gate_delays(server)
    assert all(delays[i] >= jitter[i] - 1e-6 for i in range(6))
    # One slot a second, counted in the order the requests REACHED the gate: the first one
    # there got it, and after it only one reaching the gate a full second later could have.
    stats = server.stats
    gates = stats.gate_times
    expected = [False] * 6
    last_accepted = -math.inf
    for i in sorted(range(6), key=gates.__getitem__):
        if last_accepted <= gates[i] - 1.0:
            expected[i], last_accepted = True, gates[i]
    assert stats.arrival_accepted == expected
    assert stats.http_429 == expected.count(False) >= 1


async def test_connection_setup_delays_only_the_first_request_of_a_connection() -> None:
    server, signer = make_server(qps_limit=None, connection_setup=0.15)
    async with server.serve() as base_url:
        for _ in range(2):  # two clients: two new connections
            async with httpx.AsyncClient(base_url=base_url) as http:
                for _ in range(3):
                    assert (await post(http, signer)).status_code == 200
    delays = gate_delays(server)
    assert [d >= 0.15 for d in delays] == [True, False, False, True, False, False]
    assert all(d < 0.05 for i, d in enumerate(delays) if i % 3)


async def test_a_warmed_pool_takes_connection_setup_off_the_first_request() -> None:
    server, signer = make_server(qps_limit=None, connection_setup=0.15)
    async with server.serve() as base_url, httpx.AsyncClient(base_url=base_url) as http:
        await warm_pool(http, base_url, 2)
        assert server.stats.total_requests == 0  # HEAD is not an API request
        assert (await post(http, signer)).status_code == 200
    (delay,) = gate_delays(server)
    assert delay < 0.05


async def test_foreign_load_takes_its_share_of_the_window() -> None:
    """The foreign client's accepted requests take slots in the window ours count in: ours
    plus its never pass the limit, and ours get 429s our own load alone never could.

    The expectations come from when the gate saw each request (``stats.gate_times``), not
    from the sleep: on a loaded machine the burst can land well after it, when more of the
    foreign client's requests are due (and some of those are throttled in turn).
    """
    limit, foreign_qps = 10, 6
    server, signer = make_server(qps_limit=limit, foreign_qps=foreign_qps)
    async with server.serve() as base_url, httpx.AsyncClient(base_url=base_url) as http:
        assert (await post(http, signer)).status_code == 200  # the foreign client starts now
        await anyio.sleep(0.55)  # at least: it has sent at 0, 1/6, 2/6 and 3/6 s meanwhile
        statuses: list[int] = []

        async def ours() -> None:
            statuses.append((await post(http, signer)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(ours)
    stats = server.stats
    gates, accepted = stats.gate_times, stats.arrival_accepted
    assert len(gates) == 9
    assert sorted(statuses) == sorted(200 if ok else 429 for ok in accepted[1:])
    assert stats.http_429 == statuses.count(429)
    # The foreign client sends every 1/6 s from our first request on, up to the latest time
    # the gate saw; those due before our burst found the window nearly empty.
    start, spacing = gates[0], 1.0 / foreign_qps
    sent = stats.foreign_accepted + stats.foreign_throttled
    assert sent == math.floor((max(gates) - start) / spacing) + 1
    assert stats.foreign_accepted >= 4
    # Ours plus the foreign client's never pass the limit in any window (t - 1, t]: of the
    # foreign requests sent in a window, at least all but the throttled ones were accepted.
    foreign = [start + k * spacing for k in range(sent)]
    ours_accepted = [g for g, ok in zip(gates, accepted, strict=True) if ok]

    def in_window(times: list[float], end: float) -> int:
        return sum(1 for t in times if end - 1.0 < t <= end)

    for end in ours_accepted + foreign:
        foreign_accepted = max(0, in_window(foreign, end) - stats.foreign_throttled)
        assert in_window(ours_accepted, end) + foreign_accepted <= limit, end - start
    # Nine requests of ours can never fill a window of ten: each 429 is the foreign load's.
    assert len(gates) < limit
    assert statuses.count(429) >= 1


def test_foreign_load_on_a_virtual_clock() -> None:
    gate = SlidingWindowLimit(50, foreign_qps=15)
    ours = [gate.try_acquire("k", i / 50) for i in range(500)]  # 50/s for 10 s
    assert gate.foreign_accepted + gate.foreign_throttled == pytest.approx(150, abs=1)
    # The window is shared: both clients together never get more than 50 a second.
    assert sum(ours) + gate.foreign_accepted <= 500
    assert gate.foreign_accepted >= 50
    assert sum(ours[100:]) <= 0.9 * 400
    gate.foreign_qps = 0
    assert gate.try_acquire("k", 20.0)
    gate.foreign_qps = 15  # switched on again: starts afresh, no burst of catch-up
    before = gate.foreign_accepted
    gate.try_acquire("k", 100.0)
    assert gate.foreign_accepted - before == 1


def test_the_gate_counts_out_of_order_arrivals_at_their_own_times() -> None:
    gate = SlidingWindowLimit(2)
    assert gate.try_acquire("k", 1.001)
    assert gate.try_acquire("k", 1.000)  # arrived first, reached the gate second
    assert not gate.try_acquire("k", 1.5)
    # 1.000 has left the window at 2.0005; 1.001 has not. An arrival kept behind a later
    # one would be counted 1 ms too long and refuse this request.
    assert gate.try_acquire("k", 2.0005)
    assert not gate.try_acquire("k", 2.0008)
    assert gate.try_acquire("k", 2.0011)


def test_network_knobs_refuse_bad_values() -> None:
    for name, bad in (
        ("arrival_jitter", -0.1),
        ("connection_setup", float("nan")),
        ("foreign_qps", float("inf")),
        ("qps_retry_after", -1.0),
    ):
        with pytest.raises(ValueError, match=name):
            FakeTupuServer(**{name: bad})  # type: ignore[arg-type]
        server = FakeTupuServer()
        with pytest.raises(ValueError, match=name):
            setattr(server, name, bad)


async def test_the_gate_429_carries_the_configured_retry_after() -> None:
    server, signer = make_server(qps_limit=1, qps_retry_after=None)
    assert server.qps_retry_after is None
    async with server.serve() as base_url, httpx.AsyncClient(base_url=base_url) as http:
        await post(http, signer)
        assert "retry-after" not in (await post(http, signer)).headers
        server.qps_retry_after = 0.25
        assert (await post(http, signer)).headers["retry-after"] == "0.25"


def test_default_warm_connections_cover_the_first_fifth_of_a_second() -> None:
    assert default_warm_connections(50.0, 128) == 10
    assert default_warm_connections(50.0, 8) == 8
    assert default_warm_connections(float("inf"), 16) == 10
    assert default_warm_connections(0.5, 16) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_process_runner_passes_the_knobs_on() -> None:
    def start() -> object:
        return spawn_fake_server(
            qps_limit=10, foreign_qps=6, arrival_jitter=0.05, connection_setup=0.1
        )

    process = await anyio.to_thread.run_sync(start)
    try:
        signer = Signer(process.secret_id, process.private_key_pem)  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=process.base_url) as http:  # type: ignore[attr-defined]
            await post(http, signer)
            await post(http, signer)
        stats = await process.astats()  # type: ignore[attr-defined]
    finally:
        await anyio.to_thread.run_sync(process.stop)  # type: ignore[attr-defined]
    delays = [g - a for a, g in zip(stats.arrivals, stats.gate_times, strict=True)]
    assert delays[0] >= 0.1  # new connection
    assert 0.0 < delays[1] <= 0.05 + 0.1  # jitter only
    assert stats.foreign_accepted >= 1


async def test_the_client_warms_its_own_pool_on_entry_and_only_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _ = make_server(qps_limit=None, connection_setup=0.001)
    app = server.app
    seen = app._new_connection
    three_connections = threading.Event()  # set by the server, in its thread under trio

    def counting(scope: object) -> bool:
        new = seen(scope)  # type: ignore[arg-type]
        if len(app._connections) >= 3:
            three_connections.set()
        return new

    monkeypatch.setattr(app, "_new_connection", counting)
    async with server.serve() as base_url:
        async with http_client_for(server, base_url, warm_connections=3) as client:
            # The warm-up runs in the background.
            assert await anyio.to_thread.run_sync(three_connections.wait, 10.0)
            await client.recognize(["http://img.test/a.jpg"])
        assert server.stats.total_requests == 1  # the HEADs are not API requests
        app._connections.clear()
        async with (
            httpx.AsyncClient(base_url=base_url) as mine,
            http_client_for(server, base_url, http_client=mine, warm_connections=3) as client,
        ):
            await client.recognize(["http://img.test/b.jpg"])
        assert len(app._connections) == 1  # a caller's pool is left alone


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_warm_connections_must_be_a_count(bad: object) -> None:
    server = FakeTupuServer()
    with pytest.raises(ValueError, match="warm_connections"):
        http_client_for(server, "http://fake", warm_connections=bad)


async def test_arrivals_are_stamped_when_parsed_off_the_socket() -> None:
    """Over HTTP the arrival is the protocol's parse time, taken before the app's task runs
    (a stamp taken in the task is late by whatever the loop runs first)."""
    seen: list[tuple[float, float]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope[ARRIVED_KEY], time.monotonic()))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    before = time.monotonic()
    async with serve_in_loop(app) as base_url, httpx.AsyncClient() as http:
        assert (await http.get(base_url + "/x")).status_code == 204
    ((arrived, entered),) = seen
    assert before <= arrived <= entered

    server, signer = make_server()
    async with server.serve() as base_url, httpx.AsyncClient(base_url=base_url) as http:
        sent = time.monotonic()
        assert (await post(http, signer)).status_code == 200
    (recorded,) = server.stats.arrivals
    assert sent <= recorded <= time.monotonic()


async def test_the_app_counts_a_request_at_its_stamped_arrival() -> None:
    server, signer = make_server()
    transport = httpx.ASGITransport(app=_stamped(server.app, 123.5))
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as http:
        await post(http, signer)
    assert server.stats.arrivals == [123.5]


def _stamped(app: Any, when: float) -> Any:
    async def stamped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app({**scope, ARRIVED_KEY: when}, receive, send)

    return stamped
