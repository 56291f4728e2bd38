"""Nothing lost, nothing duplicated: the engine under injected faults."""

from __future__ import annotations

import pytest
from clients import in_process_client, png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tupu_async import RetryPolicy
from tupu_async.testing import FakeTupuServer, FaultConfig

TRANSIENT = ("http_500", "http_502", "drop_connection", "code_100", "truncated_body")


@pytest.mark.anyio
async def test_ten_thousand_images_under_ten_percent_faults() -> None:
    server = FakeTupuServer(qps_limit=None, faults=FaultConfig(rate=0.10, kinds=TRANSIENT, seed=7))
    n = 10_000
    inputs = [f"http://img.test/n{i}.jpg" for i in range(n)]
    async with in_process_client(server, qps=100_000, max_in_flight=64) as client:
        results = await client.recognize_many(inputs)
        stats = client.stats
    assert len(results) == n
    assert [r.index for r in results] == list(range(n))  # 0 lost, 0 duplicated, in order
    assert [r.name for r in results] == inputs
    ok = sum(r.ok for r in results)
    assert ok >= 0.99 * n
    assert all(r.error is not None for r in results if not r.ok)
    assert stats.retries > 0
    assert sum(server.stats.faults.values()) > 50


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 120),
    rate=st.floats(0.0, 0.5),
    content_every=st.integers(2, 7),
)
def test_order_and_one_result_per_input_under_random_faults(
    seed: int, n: int, rate: float, content_every: int
) -> None:
    import anyio

    async def run() -> None:
        server = FakeTupuServer(
            qps_limit=None, faults=FaultConfig(rate=rate, kinds=TRANSIENT, seed=seed)
        )
        inputs: list[object] = [
            png(i) if i % content_every == 0 else f"http://img.test/{seed}/{i}.jpg"
            for i in range(n)
        ]
        policy = RetryPolicy(max_retries=1, backoff_base=0.001, backoff_max=0.002)
        async with in_process_client(server, qps=100_000, retry_policy=policy) as client:
            results = await client.recognize_many(inputs)  # type: ignore[arg-type]
        assert [r.index for r in results] == list(range(n))
        for r in results:
            assert r.ok or r.error is not None
        # every image was either answered or failed with its request's error
        sent = sum(server.stats.images_per_request)
        assert sent >= n

    for backend in ("asyncio", "trio"):
        anyio.run(run, backend=backend)
