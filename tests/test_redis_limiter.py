"""RedisLimiter against a real redis-server: the shared budget across connections and OS
processes, shared throttling, Redis unreachable (fail and local fallback), cancellation,
and the script's invariants under a synthetic clock (Hypothesis).

Run as a script (``python tests/test_redis_limiter.py worker ...``) this file is the
worker process the multi-process tests start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tupu_async._exceptions import TransportError
from tupu_async._limiter import RateLimiter
from tupu_async._redis_limiter import RedisLimiter

sys.path.insert(0, str(Path(__file__).parent))
import itertools

from tupu_async.testing._redis import RedisServer, free_port, redis_required, redis_server_binary

REPO_ROOT = Path(__file__).resolve().parent.parent
QPS = 50
WINDOW_US = 1_025_000  # period 1 s + the default 25 ms margin of a shared budget


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio is asyncio-only: these tests run on asyncio (trio is tested to refuse)."""
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    missing = None
    try:
        import redis  # noqa: F401
    except ImportError:
        missing = "the redis package is not installed (pip install 'tupu-async[redis]')"
    if missing is None and redis_server_binary() is None:
        missing = "redis-server is not installed (apt-get install -y redis-server)"
    if missing is not None:
        if redis_required():
            pytest.fail(f"TUPU_REQUIRE_REDIS=1 but {missing}")
        pytest.skip(missing)
    with RedisServer() as server:
        yield server


@pytest.fixture
def key() -> str:
    return f"tupu-test:{uuid.uuid4().hex}"


# -- helpers -------------------------------------------------------------------------------


def max_in_window(times_us: list[int], window_us: int) -> int:
    """The most start times that fall in any half-open window [t, t + window_us)."""
    times = sorted(times_us)
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window_us:
            start += 1
        best = max(best, end - start + 1)
    return best


def achieved_rate(times_us: list[int]) -> float:
    """Starts per second between the first and the last start."""
    times = sorted(times_us)
    return (len(times) - 1) / ((times[-1] - times[0]) / 1_000_000)


@dataclass
class Start:
    slot_us: int  # the slot on the Redis clock
    reserved_us: int  # when the slot was taken, Redis clock
    wall_us: int  # time.time() when acquire returned


async def hammer(limiter: RedisLimiter, tasks: int, count: int, until: float) -> list[Start]:
    """Run ``tasks`` coroutines acquiring until ``count`` starts or the time ``until``."""
    starts: list[Start] = []
    taken = 0

    async def one_task() -> None:
        nonlocal taken
        while taken < count and time.time() < until:
            taken += 1
            reservation = await limiter._acquire_slot()
            assert reservation is not None
            wall_us = int(time.time() * 1_000_000)
            starts.append(Start(reservation.slot_us, reservation.now_us, wall_us))

    await asyncio.gather(*(one_task() for _ in range(tasks)))
    return starts


def start_workers(
    url: str, key: str, processes: int, tasks: int, count: int, seconds: float
) -> list[subprocess.Popen[str]]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    args = [sys.executable, __file__, "worker", url, key, str(tasks), str(count), str(seconds)]
    workers = [
        subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT
        )
        for _ in range(processes)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    return workers


def collect(workers: list[subprocess.Popen[str]]) -> list[list[Start]]:
    results = []
    for worker in workers:
        out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, out
        results.append([Start(*row) for row in json.loads(out)])
    return results


def stop_all(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def worker_main(argv: list[str]) -> None:
    """One worker process: hammer the shared limiter once the parent says go, print JSON."""
    url, key, tasks, count, seconds = argv[0], argv[1], int(argv[2]), int(argv[3]), float(argv[4])

    async def run() -> list[Start]:
        limiter = RedisLimiter(url, key=key, qps=QPS)
        await limiter._client.ping()  # connect before the start signal
        print("ready", flush=True)
        sys.stdin.readline()
        try:
            return await hammer(limiter, tasks, count, time.time() + seconds)
        finally:
            await limiter.aclose()

    starts = asyncio.run(run())
    print(json.dumps([[s.slot_us, s.reserved_us, s.wall_us] for s in starts]))


# -- no server needed ----------------------------------------------------------------------


def test_tupu_async_imports_without_redis_package() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import tupu_async, tupu_async._redis_limiter as m\n"
        "try:\n    m.RedisLimiter(key='k')\n"
        "except ImportError as e:\n    print(e)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'tupu-async[redis]'" in done.stdout


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key": ""}, "key"),
        ({"key": "k", "qps": 0.5}, "raise period"),
        ({"key": "k", "qps": math.inf}, "qps"),
        ({"key": "k", "period": 0}, "period"),
        ({"key": "k", "margin": -0.1}, "margin"),
        ({"key": "k", "on_unavailable": "ignore"}, "on_unavailable"),
        ({"key": "k", "expected_workers": 0}, "expected_workers"),
        ({"key": "k", "min_rate": 100.0}, "min_rate"),
        ({"key": "k", "recovery_seconds": 0}, "recovery_seconds"),
    ],
)
def test_rejects_bad_configuration(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RedisLimiter(**kwargs)


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_trio_is_refused_with_a_clear_error() -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", key="k")
    with pytest.raises(RuntimeError, match="only under asyncio"):
        await limiter.acquire()
    with pytest.raises(RuntimeError, match="only under asyncio"):
        await limiter.on_throttle(1.0)


# -- the guarantee -------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_instances_on_separate_connections_share_one_budget(
    redis_server: RedisServer, key: str
) -> None:
    limiters = [RedisLimiter(redis_server.url, key=key, qps=QPS) for _ in range(4)]
    assert all(isinstance(limiter, RateLimiter) for limiter in limiters)
    try:
        until = time.time() + 10
        runs = await asyncio.gather(*(hammer(limiter, 3, 30, until) for limiter in limiters))
    finally:
        for limiter in limiters:
            await limiter.aclose()
    starts = [start for run in runs for start in run]
    slots = [start.slot_us for start in starts]
    assert len(slots) >= 120
    assert max_in_window(slots, WINDOW_US) <= QPS
    assert max_in_window(slots, 1_000_000) <= QPS
    assert achieved_rate(slots) >= 0.9 * QPS
    assert all(start.wall_us >= start.slot_us - 1000 for start in starts), "a start came early"


@pytest.mark.redis
def test_four_processes_share_one_budget(redis_server: RedisServer, key: str) -> None:
    workers = start_workers(redis_server.url, key, processes=4, tasks=4, count=45, seconds=20)
    try:
        runs = collect(workers)
    finally:
        stop_all(workers)
    starts = [start for run in runs for start in run]
    slots = [start.slot_us for start in starts]
    assert all(len(run) == 45 for run in runs)
    assert max_in_window(slots, WINDOW_US) <= QPS
    assert max_in_window(slots, 1_000_000) <= QPS
    assert achieved_rate(slots) >= 0.9 * QPS
    assert all(start.wall_us >= start.slot_us - 1000 for start in starts), "a start came early"
    walls = [start.wall_us for start in starts]  # same host: the Redis clock is time.time()
    assert max_in_window(walls, 1_000_000) <= QPS, "late wake-ups must take new slots"
    print(
        f"\n4 processes: {len(slots)} starts, max {max_in_window(slots, 1_000_000)} in 1 s "
        f"(Redis slots), max {max_in_window(walls, 1_000_000)} in 1 s (wall clock), "
        f"{achieved_rate(slots):.2f}/s achieved"
    )


# -- throttling ----------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_throttle_in_one_process_pauses_the_others(
    redis_server: RedisServer, key: str
) -> None:
    workers = start_workers(redis_server.url, key, processes=3, tasks=3, count=10_000, seconds=2.6)
    limiter = RedisLimiter(redis_server.url, key=key, qps=QPS, recovery_seconds=10.0)
    try:
        await asyncio.sleep(0.8)
        for _ in range(3):  # three 429s that were in flight together: one halving
            await limiter.on_throttle(retry_after=0.8)
        state = await limiter._client.hgetall(limiter._keys[1])
        runs = await asyncio.to_thread(collect, workers)
    finally:
        stop_all(workers)
        await limiter.aclose()
    throttled_at = int(state[b"throttled_at"])
    pause_until = int(state[b"pause_until"])
    assert float(state[b"throttled_rate"]) == QPS / 2
    assert limiter.current_rate == QPS / 2
    assert 0.8e6 <= pause_until - throttled_at < 0.85e6  # the later 429s extended it slightly

    starts = sorted((start for run in runs for start in run), key=lambda s: s.slot_us)
    # Every slot taken after the throttle, in any process, starts after the pause.
    assert all(s.slot_us >= pause_until for s in starts if s.reserved_us > throttled_at)
    # Slots inside the pause were all reserved before the throttle (and are few).
    in_pause = [s for s in starts if throttled_at <= s.slot_us < pause_until]
    assert all(s.reserved_us <= throttled_at for s in in_pause)
    assert len(in_pause) <= 3 * 3  # at most one queued slot per worker task
    after = [s.slot_us for s in starts if s.slot_us >= pause_until]
    assert len(after) >= 10, "the workers kept going after the pause"
    # After the pause the shared rate is halved (25 per 1.025 s), recovering by 5/s per s.
    first_half_second = [t for t in after if t < pause_until + 500_000]
    gaps = [b - a for a, b in itertools.pairwise(first_half_second)]
    assert min(gaps) >= WINDOW_US / (QPS / 2 + 5 * 0.5)
    assert max_in_window([s.slot_us for s in starts], WINDOW_US) <= QPS
    quiet = after[0] - max(s.slot_us for s in starts if s.slot_us < pause_until)
    print(
        f"\nthrottle: {len(in_pause)} pre-reserved starts inside the pause, then "
        f"{quiet / 1000:.0f} ms without starts; first post-pause gap {gaps[0] / 1000:.1f} ms"
    )


@pytest.mark.redis
@pytest.mark.anyio
async def test_throttle_moves_sleepers_of_this_process_past_the_pause(
    redis_server: RedisServer, key: str
) -> None:
    limiter = RedisLimiter(redis_server.url, key=key, qps=QPS)
    returned: list[int] = []

    async def one() -> None:
        reservation = await limiter._acquire_slot()
        assert reservation is not None
        returned.append(reservation.slot_us)

    try:
        tasks = [asyncio.create_task(one()) for _ in range(10)]  # slots over ~0.2 s
        await asyncio.sleep(0.05)
        await limiter.on_throttle(retry_after=0.3)
        await asyncio.gather(*tasks)
        state = await limiter._client.hgetall(limiter._keys[1])
    finally:
        await limiter.aclose()
    throttled_at, pause_until = int(state[b"throttled_at"]), int(state[b"pause_until"])
    slots = returned
    assert len(slots) == 10
    assert all(slot < throttled_at or slot >= pause_until for slot in slots)
    assert any(slot >= pause_until for slot in slots)


# -- Redis unreachable ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_unreachable_redis_fails_with_what_to_do() -> None:
    port = free_port()
    limiter = RedisLimiter(f"redis://:hunter2@127.0.0.1:{port}/0", key="k")
    try:
        with pytest.raises(TransportError) as caught:
            await limiter.acquire()
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message
        assert "start Redis" in message
        assert "on_unavailable='local'" in message
        assert "hunter2" not in message
        assert "hunter2" not in repr(limiter)
        with pytest.raises(TransportError):
            await limiter.on_throttle(1.0)
        limiter.on_success()  # no network call, so nothing to fail
    finally:
        await limiter.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_unreachable_redis_falls_back_locally_then_reconnects(
    redis_server: RedisServer, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    limiter = RedisLimiter(
        f"redis://127.0.0.1:{port}/0",
        key=key,
        qps=40,
        period=0.5,
        on_unavailable="local",
        expected_workers=4,
    )
    caplog.set_level(logging.WARNING, logger="tupu_async")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            began = time.monotonic()
            for _ in range(4):
                assert await limiter._acquire_slot() is None
            elapsed = time.monotonic() - began
        assert len(caught) == 1, "one warning, not one per call"
        assert issubclass(caught[0].category, RuntimeWarning)
        assert "falling back" in str(caught[0].message)
        assert any("falling back" in r.getMessage() for r in caplog.records)
        assert limiter.using_fallback
        assert limiter.current_rate == 10.0
        assert elapsed >= 3 * 0.515 / 10 - 0.002  # paced at 10 per 0.515 s locally

        with RedisServer(port=port):
            limiter._next_reconnect = 0.0  # do not wait RECONNECT_INTERVAL in a test
            slot = await limiter._acquire_slot()
            assert slot is not None
            assert not limiter.using_fallback
            assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        await limiter.aclose()


# -- cancellation, lifetimes, keys ---------------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_cancelled_while_sleeping(redis_server: RedisServer, key: str) -> None:
    limiter = RedisLimiter(redis_server.url, key=key, qps=10, period=0.5)
    spacing_us = math.ceil(limiter._window_us / 10)
    try:
        first = await limiter._acquire_slot()
        taken = await limiter._client.llen(limiter._keys[0])
        second = asyncio.create_task(limiter._acquire_slot())
        for _ in range(1000):  # until the second caller has its slot and sleeps
            if await limiter._client.llen(limiter._keys[0]) > taken:
                break
            await asyncio.sleep(0.001)
        began = time.monotonic()
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert time.monotonic() - began < spacing_us / 2_000_000, "cancelled at once"
        third = await limiter._acquire_slot()
    finally:
        await limiter.aclose()
    assert first is not None
    assert third is not None
    assert third.slot_us - first.slot_us >= 2 * spacing_us, "the cancelled slot stays counted"


@pytest.mark.redis
@pytest.mark.anyio
async def test_client_passed_in_is_used_and_left_open(redis_server: RedisServer, key: str) -> None:
    import redis.asyncio

    client: Any = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    limiter = RedisLimiter(key=key, qps=2, client=client)
    try:
        await limiter.acquire()
        await limiter.aclose()
        assert await client.llen(limiter._keys[0]) == 1
        ttl = await client.pttl(limiter._keys[0])
        assert 0 < ttl <= limiter._keep_ms + 1000
        # The other key is independent: its first start is immediate.
        other = RedisLimiter(key=key + ":other", qps=2, client=client)
        reservation = await other._reserve()
        assert reservation.delay == 0
    finally:
        await client.aclose()


# -- the script's invariants under a synthetic clock ---------------------------------------

ACQUIRE = "acquire"
operations = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=300_000),  # microseconds since the previous op
        st.one_of(  # a reservation, or a 429 with or without Retry-After
            st.just(ACQUIRE), st.none(), st.floats(min_value=0.0, max_value=1.0)
        ),
    ),
    min_size=1,
    max_size=60,
)


@pytest.mark.redis
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    qps=st.floats(min_value=1.0, max_value=12.0),
    period=st.floats(min_value=0.05, max_value=2.0),
    margin=st.floats(min_value=0.0, max_value=0.05),
    recovery_seconds=st.floats(min_value=0.5, max_value=20.0),
    ops=operations,
)
def test_script_invariants(
    redis_server: RedisServer,
    qps: float,
    period: float,
    margin: float,
    recovery_seconds: float,
    ops: list[tuple[int, str | float | None]],
) -> None:
    """The Lua script on a synthetic clock against a model of the rate and the pause."""
    asyncio.run(check_script(redis_server.url, qps, period, margin, recovery_seconds, ops))


async def check_script(
    url: str,
    qps: float,
    period: float,
    margin: float,
    recovery_seconds: float,
    ops: list[tuple[int, str | float | None]],
) -> None:
    limiter = RedisLimiter(
        url,
        key=f"tupu-test:{uuid.uuid4().hex}",
        qps=qps,
        period=period,
        margin=margin,
        recovery_seconds=recovery_seconds,
    )
    limit, window = math.floor(qps), limiter._window_us
    now = 1_700_000_000_000_000
    slots: list[int] = []
    pause_until, halve_guard = 0, 0
    throttled_rate: float | None = None

    def model_rate(at: int) -> float:  # halved on a throttle, +qps/recovery_seconds per s after
        if throttled_rate is None:
            return qps
        since = max(0, at - pause_until) / 1_000_000
        return min(qps, throttled_rate + qps / recovery_seconds * since)

    try:
        for step, op in ops:
            now += step
            if op == ACQUIRE:
                reservation = await limiter._reserve(now_us=now)
                slot = reservation.slot_us
                assert reservation.now_us == now
                assert slot >= now
                assert slot >= pause_until
                assert reservation.rate == pytest.approx(model_rate(now), rel=1e-9)
                if slots:
                    assert slot - slots[-1] >= window / reservation.rate - 1
                if len(slots) >= limit:
                    assert slot - slots[-limit] >= window  # floor(qps) per window, exactly
                slots.append(slot)
            else:
                retry_after = None if op is None else float(op)
                outcome = await limiter._throttle(retry_after, now_us=now)
                pause = 1.0 if retry_after is None else retry_after  # DEFAULT_THROTTLE_PAUSE
                pause_end = max(pause_until, now + math.ceil(pause * 1_000_000))
                assert outcome.pause_until_us == pause_end
                assert outcome.halved == (now >= halve_guard), "one halving per pause window"
                if outcome.halved:
                    halve_guard = max(pause_end, now + window)
                    throttled_rate = max(limiter._min_rate, model_rate(now) / 2)
                pause_until = pause_end
                assert outcome.rate == pytest.approx(model_rate(now), rel=1e-9)
        assert max_in_window(slots, window) <= limit
    finally:
        await limiter.aclose()


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker_main(sys.argv[2:])
