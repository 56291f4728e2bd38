"""RedisLimiter against a real redis-server: the shared budget across connections and OS
processes, batched booking (Redis close by and 50 ms away behind a delaying proxy), shared
throttling, Redis unavailable (refused, restarted, blackholed, read-only), a clock step,
cancellation, the client wired to it, and the script's invariants under a synthetic clock.

Run as a script (``python tests/test_redis_limiter.py worker ...``) this file is the
worker process the multi-process tests start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
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

from tupu_async import Hooks, RequestEvent
from tupu_async._exceptions import TransportError
from tupu_async._limiter import RateLimiter
from tupu_async._redis_clock import RedisClock
from tupu_async._redis_connection import describe_error as _describe
from tupu_async._redis_connection import redacted_url as _redacted
from tupu_async._redis_limiter import DEFAULT_LEASE, RedisLimiter, _Slot
from tupu_async._redis_script import Reservation, ThrottleOutcome
from tupu_async._throttle_policy import ThrottlePolicy
from tupu_async.testing import FakeTupuServer
from tupu_async.testing._redis import (
    DelayProxy,
    RedisServer,
    free_port,
    redis_required,
    redis_server_binary,
)

sys.path.insert(0, str(Path(__file__).parent))
import itertools

from clients import in_process_client

REPO_ROOT = Path(__file__).resolve().parent.parent
QPS = 50
WINDOW_US = 1_025_000  # period 1 s + the default 25 ms margin of a shared budget


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio is asyncio-only: these tests run on asyncio (trio is tested to refuse)."""
    return "asyncio"


def _redis_missing() -> str | None:
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis package is not installed (pip install 'tupu-async[redis]')"
    if redis_server_binary() is None:
        return "redis-server is not installed (apt-get install -y redis-server)"
    return None


def _skip_without_redis() -> None:
    missing = _redis_missing()
    if missing is not None:
        if redis_required():
            pytest.fail(f"TUPU_REQUIRE_REDIS=1 but {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    _skip_without_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of this test's own, free to stop, restart or demote."""
    _skip_without_redis()
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
    reserved_us: int  # when the slot was booked, Redis clock
    wall_us: int  # time.time() when acquire returned


async def hammer(limiter: RedisLimiter, tasks: int, count: int, until: float) -> list[Start]:
    """Run ``tasks`` coroutines acquiring until ``count`` starts or the time ``until``."""
    starts: list[Start] = []
    taken = 0

    async def one_task() -> None:
        nonlocal taken
        while taken < count and time.time() < until:
            taken += 1
            slot = await limiter._take()
            assert slot is not None
            wall_us = int(time.time() * 1_000_000)
            starts.append(Start(slot.slot_us, slot.reserved_us, wall_us))

    await asyncio.gather(*(one_task() for _ in range(tasks)))
    return starts


def record_bookings(limiter: RedisLimiter) -> list[int]:
    """Every slot ``limiter`` books from now on (started on or not), Redis µs."""
    booked: list[int] = []
    accept = limiter._accept

    def accepted(reservation: Reservation, sent_us: int, received_us: int) -> None:
        booked.extend(reservation.slots_us)
        accept(reservation, sent_us, received_us)

    limiter._accept = accepted  # type: ignore[method-assign]
    return booked


class LogEvent(logging.Handler):
    """Sets an asyncio event when the ``tupu_async`` logger emits a message containing text."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = asyncio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.text in message:
            self.messages.append(message)
            self.event.set()

    def __enter__(self) -> LogEvent:
        tupu_logger = logging.getLogger("tupu_async")
        self._level = tupu_logger.level
        tupu_logger.setLevel(logging.DEBUG)
        tupu_logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        tupu_logger = logging.getLogger("tupu_async")
        tupu_logger.removeHandler(self)
        tupu_logger.setLevel(self._level)


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


def wait_until_started(workers: list[subprocess.Popen[str]]) -> None:
    """Block until every worker has made its first start (it prints 'started')."""
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "started"


def collect(workers: list[subprocess.Popen[str]]) -> list[tuple[list[Start], list[int]]]:
    """Each worker's starts and booked slots."""
    results = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, out
        report = json.loads(out.strip().splitlines()[-1])
        results.append(([Start(*row) for row in report["starts"]], report["booked"]))
    return results


def stop_all(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def worker_main(argv: list[str]) -> None:
    """One worker process: hammer the shared limiter once the parent says go, print JSON
    of its starts and of every slot it booked."""
    url, key, tasks, count, seconds = argv[0], argv[1], int(argv[2]), int(argv[3]), float(argv[4])

    async def run() -> tuple[list[Start], list[int]]:
        limiter = RedisLimiter(url, key=key, qps=QPS)
        booked = record_bookings(limiter)
        await limiter._client.ping()  # connect before the start signal
        print("ready", flush=True)
        sys.stdin.readline()
        try:
            first = await limiter._take()
            assert first is not None
            print("started", flush=True)
            wall_us = int(time.time() * 1_000_000)
            rest = await hammer(limiter, tasks, count - 1, time.time() + seconds)
            return [Start(first.slot_us, first.reserved_us, wall_us), *rest], booked
        finally:
            await limiter.aclose()

    starts, booked = asyncio.run(run())
    rows = [[s.slot_us, s.reserved_us, s.wall_us] for s in starts]
    print(json.dumps({"starts": rows, "booked": booked}))


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
        ({"key": "k", "lease": -1.0}, "lease"),
        ({"key": "k", "outage_timeout": math.nan}, "outage_timeout"),
        ({"key": "k", "redis_timeout": 0.0}, "redis_timeout"),
        ({"key": "k", "max_retry_after": math.inf}, "max_retry_after"),
        ({"key": "k", "reaction": "halve"}, "reaction"),
        ({"key": "k", "margin": 0.05, "max_margin": 0.01}, "max_margin"),
    ],
)
def test_rejects_bad_configuration(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RedisLimiter(**kwargs)


def test_redis_clock_maps_through_the_best_reply_and_never_early() -> None:
    clock = RedisClock()
    assert not clock.known
    with pytest.raises(LookupError):
        clock.to_local(0)
    assert clock.recent_rtt_us == clock.rtt_spread_us == 0
    offset = 5_000_000  # local = redis + offset
    # Replies: sent at local s, Redis ran at local s + up, reply back `down` later.
    for sent, up, down in [(0, 3_000, 9_000), (100_000, 500, 700), (200_000, 4_000, 1_000)]:
        assert not clock.observe(sent, sent + up + down, sent + up - offset)
    assert clock.offset_us == offset + 700  # the shortest return trip
    assert clock.to_local(1_000) == 1_000 + offset + 700  # never earlier than meant
    assert clock.to_redis(clock.to_local(1_000)) == 1_000
    assert clock.recent_rtt_us == 12_000  # the slowest of the recent round trips
    assert clock.rtt_spread_us == 5_000 - 1_200  # the median one minus the fastest one


def test_redis_clock_drops_its_samples_on_a_clock_step() -> None:
    clock = RedisClock()
    clock.observe(0, 1_000, -500)
    assert not clock.observe(10_000, 11_000, 9_600)  # within both round trips: same clock
    assert clock.observe(20_000, 21_000, 20_500 - 3_600_000_000)  # an hour ahead: a step
    assert clock.offset_us == 21_000 - (20_500 - 3_600_000_000)


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
    bookings = [record_bookings(limiter) for limiter in limiters]
    try:
        until = time.time() + 10
        runs = await asyncio.gather(*(hammer(limiter, 3, 30, until) for limiter in limiters))
    finally:
        for limiter in limiters:
            await limiter.aclose()
    starts = [start for run in runs for start in run]
    slots = [start.slot_us for start in starts]
    booked = sorted(slot for run in bookings for slot in run)
    assert len(slots) >= 120
    assert set(slots) <= set(booked)
    assert max_in_window(booked, WINDOW_US) <= QPS
    assert max_in_window(booked, 1_000_000) <= QPS
    # The budget is kept busy; under load some booked slots are given up (late wake-ups).
    assert achieved_rate(booked) >= 0.9 * QPS
    assert all(start.wall_us >= start.slot_us - 1000 for start in starts), "a start came early"


@pytest.mark.redis
def test_four_processes_share_one_budget(redis_server: RedisServer, key: str) -> None:
    workers = start_workers(redis_server.url, key, processes=4, tasks=4, count=45, seconds=20)
    try:
        reports = collect(workers)
    finally:
        stop_all(workers)
    runs = [run for run, _ in reports]
    booked = sorted(slot for _, slots in reports for slot in slots)
    starts = [start for run in runs for start in run]
    slots = [start.slot_us for start in starts]
    assert all(len(run) == 45 for run in runs)
    assert set(slots) <= set(booked)
    assert max_in_window(booked, WINDOW_US) <= QPS
    assert max_in_window(booked, 1_000_000) <= QPS
    # The budget is kept busy; under load some booked slots are given up (late wake-ups).
    assert achieved_rate(booked) >= 0.9 * QPS
    assert all(start.wall_us >= start.slot_us - 1000 for start in starts), "a start came early"
    walls = [start.wall_us for start in starts]  # same host: the Redis clock is time.time()
    assert max_in_window(walls, 1_000_000) <= QPS, "late wake-ups must take new slots"


@pytest.mark.redis
@pytest.mark.anyio
async def test_redis_50ms_away_books_ahead_instead_of_a_round_trip_per_permit(
    redis_server: RedisServer, key: str
) -> None:
    """Behind a 50 ms round trip one process still gets the whole budget: each script call
    books several slots, and the next call overlaps the waits."""
    with DelayProxy(redis_server.port, delay=0.05) as proxy:
        limiter = RedisLimiter(proxy.url, key=key, qps=QPS)
        calls = redis_server.command_calls()
        try:
            starts = await hammer(limiter, tasks=20, count=100, until=time.time() + 30)
        finally:
            await limiter.aclose()
    script_calls = sum(redis_server.command_calls().get(c, 0) for c in ("evalsha", "eval")) - sum(
        calls.get(c, 0) for c in ("evalsha", "eval")
    )
    slots = sorted(start.slot_us for start in starts)
    assert len(slots) == 100
    assert script_calls <= 100 / 2, "one round trip per permit"
    assert max_in_window(slots, WINDOW_US) <= QPS
    # Booked ahead of need: nearly every slot was booked more than the 25 ms return trip
    # before it came (one round trip per permit books every slot just in time, at 20/s).
    ahead = [s for s in starts if s.slot_us - s.reserved_us >= 25_000]
    assert len(ahead) >= 0.9 * len(starts)
    assert achieved_rate(slots[5:]) >= 0.75 * QPS  # 0.976 when quiet; late wake-ups under load
    assert all(start.wall_us >= start.slot_us - 1000 for start in starts), "a start came early"


# -- the line: first come, first served ----------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_acquire_serves_callers_in_arrival_order_and_a_cancelled_waiter_costs_no_slot(
    redis_server: RedisServer, key: str
) -> None:
    """Through the public acquire: only the head of the line holds a slot, so cancelling
    callers behind it wastes none, and the others start in the order they came."""
    limiter = RedisLimiter(redis_server.url, key=key, qps=10, period=0.5, lease=0.0)
    order: list[int] = []
    first_started = asyncio.Event()

    async def caller(index: int) -> None:
        await limiter.acquire()
        order.append(index)
        first_started.set()

    try:
        await limiter.acquire()  # the log now paces everyone 51.5 ms after this
        tasks = [asyncio.create_task(caller(i)) for i in range(8)]
        await first_started.wait()  # caller 0 started; 1 is the head, 2-7 wait behind it
        for task in tasks[2:5]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        booked = await limiter._client.llen(limiter._keys[0])
    finally:
        await limiter.aclose()
    assert order == [0, 1, 5, 6, 7]
    starts = 1 + len(order)
    assert booked <= starts + 1, "cancelled callers behind the head had booked slots"


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_process_books_no_further_ahead_than_its_lease(
    redis_server: RedisServer, key: str
) -> None:
    limiter = RedisLimiter(redis_server.url, key=key, qps=QPS, lease=0.1)
    spacing_us = math.ceil(limiter._window_us / QPS)
    try:
        callers = [asyncio.create_task(limiter.acquire()) for _ in range(40)]
        for done, finished in enumerate(asyncio.as_completed(callers), start=1):
            await finished
            if done == 10:
                break
        now_us = int(time.time() * 1_000_000)
        last = int(await limiter._client.lindex(limiter._keys[0], -1))
        await asyncio.gather(*callers)
    finally:
        await limiter.aclose()
    lead_us = max(rtt for rtt, _ in limiter._clock._samples)
    # Booked ahead: at most the lease plus a reply's lead and one slot beyond it.
    assert last - now_us <= 100_000 + lead_us + spacing_us


# -- throttling ----------------------------------------------------------------------------


class ThreadWorker:
    """Another "process" on the budget: its own RedisLimiter, connection and event loop, in
    a thread, acquiring from ``tasks`` coroutines until stopped. Redis sees exactly what it
    sees of another process; a thread starts in milliseconds where an interpreter takes
    seconds, so the test can run hundreds of times."""

    def __init__(self, url: str, key: str, tasks: int, **options: Any) -> None:
        self.url, self.key, self.tasks, self.options = url, key, tasks, options
        self.started = threading.Event()
        self.stop = threading.Event()
        self.starts: list[Start] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.reached = threading.Event()
        self._after: tuple[int, int] | None = None

    def count_after(self, slot_us: int, count: int) -> None:
        """Set ``reached`` once ``count`` starts have slots at or after ``slot_us``."""
        self._after = (slot_us, count)
        self._check()

    def _check(self) -> None:
        after = self._after
        if after is not None and sum(s.slot_us >= after[0] for s in self.starts) >= after[1]:
            self.reached.set()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self.started.set()
            self.reached.set()

    async def _main(self) -> None:
        limiter = RedisLimiter(self.url, key=self.key, qps=QPS, **self.options)

        async def one() -> None:
            while not self.stop.is_set():
                slot = await limiter._take()
                assert slot is not None
                self.starts.append(Start(slot.slot_us, slot.reserved_us, time.time_ns() // 1000))
                self.started.set()
                self._check()

        try:
            await asyncio.gather(*(one() for _ in range(self.tasks)))
        finally:
            await limiter.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_throttle_in_one_process_pauses_the_others(
    redis_server: RedisServer, key: str
) -> None:
    workers = [
        ThreadWorker(redis_server.url, key, tasks=3, reaction="pause-halve") for _ in range(3)
    ]
    limiter = RedisLimiter(
        redis_server.url, key=key, qps=QPS, recovery_seconds=10.0, reaction="pause-halve"
    )
    outcomes: list[ThrottleOutcome] = []
    throttle = limiter._throttle

    async def recorded(retry_after: float | None, *, now_us: int | None = None) -> ThrottleOutcome:
        outcome = await throttle(retry_after, now_us=now_us)
        outcomes.append(outcome)
        return outcome

    limiter._throttle = recorded  # type: ignore[method-assign]
    try:
        for worker in workers:
            worker.thread.start()
        for worker in workers:
            await asyncio.to_thread(worker.started.wait)
        for _ in range(3):  # three 429s that were in flight together: one halving
            await limiter.on_throttle(retry_after=0.8)
        state = await limiter._client.hgetall(limiter._keys[1])
        for worker in workers:  # run on until each has made 10 starts after the pause
            worker.count_after(outcomes[-1].pause_until_us, 10)
        for worker in workers:
            assert await asyncio.to_thread(worker.reached.wait, 60)
    finally:
        for worker in workers:
            worker.stop.set()
        for worker in workers:
            await asyncio.to_thread(worker.thread.join, 30)
        await limiter.aclose()
    assert all(worker.error is None for worker in workers), [w.error for w in workers]
    runs = [worker.starts for worker in workers]
    assert [outcome.halved for outcome in outcomes] == [True, False, False]
    assert float(state[b"throttled_rate"]) == QPS / 2
    assert limiter.current_rate == QPS / 2
    first, final = outcomes[0], outcomes[-1]
    assert final.pause_until_us == int(state[b"pause_until"])
    previous = 0
    for outcome in outcomes:  # each 429 extends the pause to 0.8 s after its script ran
        assert outcome.pause_until_us == max(outcome.now_us + 800_000, previous)
        previous = outcome.pause_until_us

    starts = sorted((start for run in runs for start in run), key=lambda s: s.slot_us)
    # A slot booked after a throttle ran, in any process, starts after that throttle's pause.
    for outcome in outcomes:
        booked_after = [s for s in starts if s.reserved_us > outcome.now_us]
        assert all(s.slot_us >= outcome.pause_until_us for s in booked_after)
    # Slots inside the first pause were booked before it: at most a lease (+ a slot) each.
    in_pause = [s for s in starts if first.now_us <= s.slot_us < first.pause_until_us]
    assert all(s.reserved_us <= first.now_us for s in in_pause)
    spacing_us = WINDOW_US / QPS
    assert len(in_pause) <= 3 * (math.ceil((DEFAULT_LEASE * 1e6 + 20_000) / spacing_us) + 1)
    after = [s.slot_us for s in starts if s.slot_us >= final.pause_until_us]
    assert len(after) >= 10, "the workers kept going after the pause"
    # After the pause the shared rate is halved (25 per 1.025 s), recovering by 5/s per s.
    first_half_second = [t for t in after if t < final.pause_until_us + 500_000]
    gaps = [b - a for a, b in itertools.pairwise(first_half_second)]
    assert min(gaps) >= WINDOW_US / (QPS / 2 + 5 * 0.5)
    assert max_in_window([s.slot_us for s in starts], WINDOW_US) <= QPS


@pytest.mark.redis
@pytest.mark.anyio
async def test_throttle_moves_the_sleeping_head_past_the_pause(
    redis_server: RedisServer, key: str
) -> None:
    limiter = RedisLimiter(redis_server.url, key=key, qps=QPS)
    returned: list[_Slot] = []
    booked = asyncio.Event()
    accept = limiter._accept

    def accepted(reservation: Reservation, sent_us: int, received_us: int) -> None:
        accept(reservation, sent_us, received_us)
        booked.set()

    limiter._accept = accepted  # type: ignore[method-assign]

    async def one() -> None:
        slot = await limiter._take()
        assert slot is not None
        returned.append(slot)

    try:
        await limiter._take()  # the log now paces the next ones 20.5 ms apart
        tasks = [asyncio.create_task(one()) for _ in range(10)]
        await booked.wait()  # the head has booked slots and sleeps on the first
        await limiter.on_throttle(retry_after=0.3)
        await asyncio.gather(*tasks)
        state = await limiter._client.hgetall(limiter._keys[1])
    finally:
        await limiter.aclose()
    throttled_at, pause_until = int(state[b"throttled_at"]), int(state[b"pause_until"])
    assert len(returned) == 10
    assert all(s.slot_us < throttled_at or s.slot_us >= pause_until for s in returned)
    assert any(s.slot_us >= pause_until for s in returned)


@pytest.mark.redis
@pytest.mark.anyio
async def test_retry_after_is_capped(redis_server: RedisServer, key: str) -> None:
    limiter = RedisLimiter(redis_server.url, key=key, qps=QPS, max_retry_after=0.2)
    try:
        await limiter.on_throttle(retry_after=1e9)
        state = await limiter._client.hgetall(limiter._keys[1])
        began = time.monotonic()
        slot = await limiter._take()
        waited = time.monotonic() - began
    finally:
        await limiter.aclose()
    assert int(state[b"pause_until"]) - int(state[b"throttled_at"]) == 200_000
    assert slot is not None
    assert slot.slot_us >= int(state[b"pause_until"])
    assert waited < 5.0


# -- Redis unavailable ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_unreachable_redis_fails_after_the_outage_timeout_with_what_to_do() -> None:
    port = free_port()
    limiter = RedisLimiter(
        f"redis://:hunter2@127.0.0.1:{port}/0", key="k", outage_timeout=0.3, redis_timeout=0.2
    )
    try:
        began = time.monotonic()
        with pytest.raises(TransportError) as caught:
            await limiter.acquire()
        assert time.monotonic() - began >= 0.3, "it waited for Redis to come back"
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message
        assert "start Redis" in message
        assert "on_unavailable='local'" in message
        assert "hunter2" not in message
        assert "hunter2" not in repr(limiter)
        took = re.search(r"has been unavailable for (\d+\.\d) s \((\w+)", message)
        assert took is not None, message
        assert 0.3 <= float(took[1]) < 60.0
        assert took[2].endswith("Error")
        # Past the timeout, the next caller is told at once (one attempt, no new wait).
        began = time.monotonic()
        with pytest.raises(TransportError):
            await limiter.acquire()
        assert time.monotonic() - began < 0.3
        await limiter.on_throttle(1.0)  # cannot share it: pauses locally, never raises
        limiter.on_success()  # no network call, so nothing to fail
    finally:
        await limiter.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_redis_restarted_mid_run_costs_no_image(own_redis: RedisServer, key: str) -> None:
    """The client on a RedisLimiter, Redis stopped for 0.4 s and restarted empty mid-run:
    every image comes back once and ok, and the service never sees more than 50 in 1 s."""
    server = FakeTupuServer()
    limiter = RedisLimiter(own_redis.url, key=key, qps=QPS)
    requests_seen = asyncio.Event()
    sent = 0

    def on_request(event: RequestEvent) -> None:
        nonlocal sent
        sent += 1
        if sent == 20:
            requests_seen.set()

    client = in_process_client(server, limiter=limiter, hooks=Hooks(on_request=on_request))
    lost_state = LogEvent("lost the shared limiter state")

    async def outage() -> None:
        await requests_seen.wait()
        await asyncio.to_thread(own_redis.stop)
        await asyncio.sleep(0.4)
        await asyncio.to_thread(own_redis.start)

    urls = [f"https://img.example.com/b/{i:07d}.jpg" for i in range(1000)]
    with lost_state:
        async with client:
            restart = asyncio.create_task(outage())
            results = await client.recognize_many(urls)
            await restart
    assert [r.name for r in results] == urls
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert server.stats.http_429 == 0
    assert server.stats.max_in_window(1.0) <= QPS
    assert lost_state.messages, "the restart lost the state and the limiter paused for it"


@pytest.mark.redis
@pytest.mark.anyio
async def test_blackholed_redis_fails_closed_then_resumes(
    redis_server: RedisServer, key: str
) -> None:
    with DelayProxy(redis_server.port, delay=0.01) as proxy:
        limiter = RedisLimiter(proxy.url, key=key, qps=QPS, redis_timeout=0.2, lease=0.05)
        outage = LogEvent("unavailable")
        try:
            with outage:
                await hammer(limiter, 5, 10, time.time() + 30)
                proxy.blackhole()
                taking = asyncio.create_task(hammer(limiter, 5, 20, time.time() + 30))
                await outage.event.wait()
                blocked_at = int(time.time() * 1_000_000)
                await asyncio.sleep(0.3)  # an outage of at least this long
                proxy.restore()
                starts = await taking
        finally:
            await limiter.aclose()
    assert len(starts) == 20
    during = [s for s in starts if blocked_at < s.wall_us < blocked_at + 300_000]
    # Only slots booked before the outage (at most the lease ahead) start during it.
    assert all(s.slot_us <= blocked_at + 50_000 + 60_000 for s in during)
    assert max_in_window([s.slot_us for s in starts], WINDOW_US) <= QPS


@pytest.mark.redis
@pytest.mark.anyio
async def test_read_only_replica_is_waited_out_until_promoted(
    redis_server: RedisServer, own_redis: RedisServer, key: str
) -> None:
    """READONLY (a failover in progress) takes the outage path: wait, retry, then go on."""
    import redis.asyncio

    admin: Any = redis.asyncio.Redis.from_url(own_redis.url)
    await admin.replicaof("127.0.0.1", redis_server.port)
    limiter = RedisLimiter(own_redis.url, key=key, qps=QPS, outage_timeout=30.0)
    outage = LogEvent("ReadOnlyError")
    try:
        with outage:
            taking = asyncio.create_task(limiter._take())
            await outage.event.wait()
            assert not taking.done(), "no start without a shared slot"
            await admin.replicaof("NO", "ONE")
            slot = await taking
    finally:
        await limiter.aclose()
        await admin.aclose()
    assert slot is not None
    assert "READONLY" in outage.messages[0] or "read only" in outage.messages[0].lower()
    assert re.fullmatch(
        re.escape(f"tupu_async: Redis at {own_redis.url} unavailable (ReadOnlyError: ")
        + r".+"
        + re.escape("); no request starts without a shared slot, retrying for up to ")
        + r"\S+ s",
        outage.messages[0],
    ), outage.messages[0]


@pytest.mark.redis
@pytest.mark.anyio
async def test_read_only_redis_past_the_timeout_raises_a_transport_error(
    redis_server: RedisServer, own_redis: RedisServer, key: str
) -> None:
    import redis.asyncio

    admin: Any = redis.asyncio.Redis.from_url(own_redis.url)
    await admin.replicaof("127.0.0.1", redis_server.port)
    limiter = RedisLimiter(own_redis.url, key=key, qps=QPS, outage_timeout=0.2)
    try:
        with pytest.raises(TransportError, match="promote a writable primary"):
            await limiter.acquire()
    finally:
        await limiter.aclose()
        await admin.replicaof("NO", "ONE")
        await admin.aclose()


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
    limiter._reconnect_interval = 0.05  # do not wait RECONNECT_INTERVAL in a test
    caplog.set_level(logging.WARNING, logger="tupu_async")
    back = LogEvent("reachable again")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            began = time.monotonic()
            for _ in range(4):
                assert await limiter._take() is None
            elapsed = time.monotonic() - began
        assert len(caught) == 1, "one warning, not one per call"
        assert issubclass(caught[0].category, RuntimeWarning)
        assert "falling back" in str(caught[0].message)
        assert any("falling back" in r.getMessage() for r in caplog.records)
        assert limiter.using_fallback
        assert limiter.current_rate == 10.0
        assert elapsed >= 3 * 0.515 / 10 - 0.002  # paced at 10 per 0.515 s locally

        still = LogEvent("still unreachable")
        with still:
            await still.event.wait()  # a probe that failed, at debug level
        assert re.fullmatch(
            re.escape(f"tupu_async: Redis at redis://127.0.0.1:{port}/0 still unreachable: ")
            + r".*\S.*",
            still.messages[0],
        ), still.messages[0]
        with back, RedisServer(port=port):
            await back.event.wait()  # the background probe found it
            slot = await limiter._take()
            assert slot is not None
            assert not limiter.using_fallback
        assert back.messages == [
            f"tupu_async: Redis at redis://127.0.0.1:{port}/0 is reachable again; "
            "the shared QPS budget is back"
        ]
    finally:
        await limiter.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_blackholed_redis_with_local_fallback_keeps_granting(
    redis_server: RedisServer, key: str
) -> None:
    """The reconnect probe runs in the background: while Redis stays blackholed, callers
    are served by the local fallback, not parked behind a probe for seconds."""
    with DelayProxy(redis_server.port) as proxy:
        limiter = RedisLimiter(
            proxy.url, key=key, qps=QPS, on_unavailable="local", redis_timeout=0.2
        )
        limiter._reconnect_interval = 0.1  # many probes during the blackhole
        probes = LogEvent("still unreachable")
        try:
            await limiter.acquire()
            proxy.blackhole()
            with warnings.catch_warnings(), probes:
                warnings.simplefilter("ignore")
                granted_during_probes = 0
                while len(probes.messages) < 3:
                    assert await limiter._take() is None
                    granted_during_probes += 1
        finally:
            await limiter.aclose()
    # Three failed probes of 0.1 s interval + 0.2 s timeout each: ~0.9 s at 50/s locally.
    assert granted_during_probes >= 20


# -- a clock step ------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_booking_absurdly_far_ahead_is_pulled_back(
    redis_server: RedisServer, key: str
) -> None:
    """A log and a pause an hour ahead (the clock of a failed-over server) cost at most
    max_retry_after plus the bound on legitimate bookings, not an hour."""
    limiter = RedisLimiter(redis_server.url, key=key, qps=10, period=0.05, max_retry_after=0.3)
    far_us = int(time.time() * 1_000_000) + 3600 * 1_000_000
    pulled = LogEvent("pulled back")
    try:
        await limiter._client.rpush(limiter._keys[0], *[str(far_us + i) for i in range(10)])
        await limiter._client.hset(limiter._keys[1], mapping={"pause_until": str(far_us)})
        with pulled:
            reservation = await limiter._reserve(1)
            limiter._accept(reservation, reservation.now_us, reservation.now_us)
        log = [int(slot) for slot in await limiter._client.lrange(limiter._keys[0], 0, -1)]
    finally:
        await limiter.aclose()
    bound_us = 300_000 + limiter._settings.max_ahead_us + limiter._window_us
    assert reservation.clamped
    assert pulled.messages
    assert reservation.slots_us[0] - reservation.now_us <= bound_us
    assert max(log) - reservation.now_us <= bound_us
    assert log == sorted(log)


# -- cancellation, lifetimes, keys, the client ---------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_cancelled_while_sleeping(redis_server: RedisServer, key: str) -> None:
    limiter = RedisLimiter(redis_server.url, key=key, qps=10, period=0.5, lease=0.0)
    spacing_us = math.ceil(limiter._window_us / 10)
    taken = asyncio.Event()
    top_up = limiter._top_up

    def slot_taken(*, heads_slot_taken: bool) -> None:  # the head took its slot: it sleeps
        top_up(heads_slot_taken=heads_slot_taken)
        taken.set()

    try:
        first = await limiter._take()
        limiter._top_up = slot_taken  # type: ignore[method-assign]
        second = asyncio.create_task(limiter._take())
        await taken.wait()
        began = time.monotonic()
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert time.monotonic() - began < spacing_us / 2_000_000, "cancelled at once"
        third = await limiter._take()
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
        reservation = await other._reserve(1)
        assert reservation.slots_us == (reservation.now_us,)
    finally:
        await client.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_async_tupu_client_runs_on_a_redis_limiter(
    redis_server: RedisServer, key: str
) -> None:
    server = FakeTupuServer()
    limiter = RedisLimiter(redis_server.url, key=key, qps=QPS)
    urls = [f"https://img.example.com/b/{i:07d}.jpg" for i in range(300)]
    async with in_process_client(server, limiter=limiter) as client:
        assert client.limiter is limiter
        results = await client.recognize_many(urls)
        booked = await limiter._client.llen(limiter._keys[0])
    assert [r.name for r in results] == urls
    assert all(r.ok for r in results)
    assert booked >= server.stats.total_requests == 30, "every request took a shared slot"
    assert server.stats.http_429 == 0
    assert server.stats.max_in_window(1.0) <= QPS


# -- the script's invariants under a synthetic clock ---------------------------------------

ACQUIRE = "acquire"
operations = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=300_000),  # microseconds since the previous op
        st.one_of(  # a booking of 1-5 slots, or a 429 with or without Retry-After
            st.integers(min_value=1, max_value=5), st.none(), st.floats(0.0, 1.0)
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
    lease=st.floats(min_value=0.0, max_value=0.5),
    ops=operations,
)
def test_script_invariants(
    redis_server: RedisServer,
    qps: float,
    period: float,
    margin: float,
    recovery_seconds: float,
    lease: float,
    ops: list[tuple[int, int | float | None]],
) -> None:
    """The Lua script on a synthetic clock against a model of the rate and the pause."""
    asyncio.run(check_script(redis_server.url, qps, period, margin, recovery_seconds, lease, ops))


async def check_script(
    url: str,
    qps: float,
    period: float,
    margin: float,
    recovery_seconds: float,
    lease: float,
    ops: list[tuple[int, int | float | None]],
) -> None:
    limiter = RedisLimiter(
        url,
        key=f"tupu-test:{uuid.uuid4().hex}",
        qps=qps,
        period=period,
        margin=margin,
        recovery_seconds=recovery_seconds,
        lease=lease,
        reaction="pause-halve",
    )
    limit, window = math.floor(qps), limiter._window_us
    lease_us = limiter._lease_us
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
            if isinstance(op, int):
                reservation = await limiter._reserve(op, now_us=now)
                assert reservation.now_us == now
                assert 1 <= len(reservation.slots_us) <= op
                assert reservation.rate == pytest.approx(model_rate(now), rel=1e-9)
                for k, slot in enumerate(reservation.slots_us):
                    assert slot >= now
                    assert slot >= pause_until
                    if k > 0:
                        assert slot <= now + lease_us, "extra slots only within the lease"
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


# -- the adaptive throttle policy, shared -----------------------------------------------


@pytest.mark.redis
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    qps=st.floats(min_value=2.0, max_value=12.0),
    period=st.floats(min_value=0.05, max_value=2.0),
    margin=st.floats(min_value=0.0, max_value=0.05),
    ops=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=300_000),
            st.one_of(st.integers(min_value=1, max_value=5), st.none(), st.floats(0.0, 8.0)),
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_script_runs_the_throttle_policy(
    redis_server: RedisServer,
    qps: float,
    period: float,
    margin: float,
    ops: list[tuple[int, int | float | None]],
) -> None:
    """The script's 'adaptive' reaction against ThrottlePolicy itself as the model: same
    cause, rate, margin and pause for every 429, same rate and margin for every booking."""
    asyncio.run(check_policy(redis_server.url, qps, period, margin, ops))


async def check_policy(
    url: str, qps: float, period: float, margin: float, ops: list[tuple[int, int | float | None]]
) -> None:
    limiter = RedisLimiter(
        url, key=f"tupu-test:{uuid.uuid4().hex}", qps=qps, period=period, margin=margin
    )
    settings_ = limiter._settings
    base_us = 1_700_000_000_000_000
    model = ThrottlePolicy(
        qps,
        settings_.period_us / 1e6,
        margin=settings_.base_margin_us / 1e6,
        min_rate=limiter._min_rate,
        retry_after_cap=limiter._max_retry_after,
    )
    limit = math.floor(qps)
    now = base_us
    slots: list[int] = []

    def seconds(us: float) -> float:
        return (us - base_us) / 1e6

    try:
        for step, op in ops:
            now += step
            at = seconds(now)
            if isinstance(op, int):
                reservation = await limiter._reserve(op, now_us=now)
                assert reservation.rate == pytest.approx(model.rate(at), rel=1e-9)
                assert reservation.margin_us / 1e6 == pytest.approx(model.margin(at), abs=1e-9)
                window = settings_.period_us + reservation.margin_us
                for slot in reservation.slots_us:
                    assert slot >= now
                    if len(slots) >= limit:
                        assert slot - slots[-limit] >= window - 1
                    slots.append(slot)
            else:
                retry_after = None if op is None else float(op)
                trailing = settings_.period_us + model.margin(at) * 1e6
                own = sum(1 for t in slots[-limit:] if now - trailing < t <= now)
                decision = model.on_throttle(at, own, limit, retry_after)
                outcome = await limiter._throttle(retry_after, now_us=now)
                assert outcome.cause == decision.cause
                assert outcome.halved == decision.rate_lowered
                assert outcome.rate == pytest.approx(decision.rate, rel=1e-9)
                assert outcome.margin_us / 1e6 == pytest.approx(decision.margin, abs=1e-9)
                if decision.pause_until == -math.inf:
                    assert outcome.pause_until_us == 0
                else:
                    assert seconds(outcome.pause_until_us) == pytest.approx(
                        decision.pause_until, abs=2e-6
                    )
                assert (outcome.jitter_throttles, outcome.foreign_throttles) == (
                    model.jitter_throttles,
                    model.foreign_throttles,
                )
        assert max_in_window(slots, limiter._window_us) <= limit
    finally:
        await limiter.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_429_in_one_process_changes_what_another_books(
    redis_server: RedisServer, key: str
) -> None:
    """Jitter widens the margin every process uses; foreign load cuts everyone's rate.

    What ``other`` learns is the shared state as of its own booking, and the margin decays
    and the rate probes back up with time: so it is checked against Redis times read
    around the steps, not expected to be the value of the moment of the 429.
    """
    one = RedisLimiter(redis_server.url, key=key, qps=10, margin=0.01)
    other = RedisLimiter(redis_server.url, key=key, qps=10, margin=0.01)

    async def redis_now() -> float:
        seconds, micros = await one._client.time()
        return int(seconds) + int(micros) / 1_000_000

    try:
        now = await redis_now()
        # The log at the limit, all half a second old: for half a second more our own
        # count is at the limit, so a 429 then looks like our jitter.
        first_us = round((now - 0.5) * 1_000_000)
        await one._client.rpush(one._keys[0], *(first_us + 1000 * i for i in range(10)))
        await one.on_throttle(None)
        assert one.belief().jitter_throttles == 1
        assert one.belief().margin == pytest.approx(0.01 * 1.5 + 0.005)
        before = await redis_now()
        await one.on_throttle(None)
        widened = one.belief()
        assert widened.jitter_throttles == 2
        # 0.02 * 1.5 + 0.005, less what the first widening decayed before the second:
        assert 0.02 < widened.margin <= 0.02 * 1.5 + 0.005 + 1e-9
        await other.acquire()
        since_widened = await redis_now() - before
        seen = other.belief()
        assert (seen.jitter_throttles, seen.foreign_throttles) == (2, 0)
        # The shared margin, its widened part decayed (60 s half-life) for that long at most.
        least = 0.01 + (widened.margin - 0.01) * 0.5 ** (since_widened / 60.0)
        assert least - 1e-9 <= seen.margin <= widened.margin + 1e-9
        assert seen.paused_until == -math.inf, "no Retry-After: no pause"
        before = await redis_now()
        await one.on_throttle(None)  # the third within 3 s: persistent, someone else's load
        assert one.belief().foreign_throttles == 1
        assert one.current_rate == pytest.approx(10 * 0.7)
        await other.acquire()
        since_cut = await redis_now() - before
        assert other.belief().foreign_throttles == 1
        # Cut to 7, probing back up CUBIC-style since the cut: for `since_cut` at most.
        curve = ThrottlePolicy(10, margin=0.01)
        curve.on_throttle(0.0, own_in_window=0, limit=10)
        assert 10 * 0.7 - 1e-9 <= other.current_rate <= curve.rate(since_cut) + 1e-9
    finally:
        await one.aclose()
        await other.aclose()


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker_main(sys.argv[2:])


@pytest.mark.redis
@pytest.mark.anyio
async def test_the_local_fallback_is_announced_and_sized_from_the_shared_budget(
    redis_server: RedisServer, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Fewer than one request per period per worker: the fallback stretches its period,
    and says where it could not connect (password hidden) and why."""
    port = free_port()
    url = f"redis://tupu:s3cret@127.0.0.1:{port}/0"
    limiter = RedisLimiter(
        url,
        key=key,
        qps=50,
        margin=0.03,
        min_rate=2.0,
        on_unavailable="local",
        expected_workers=100,
    )
    shown = f"redis://tupu:***@127.0.0.1:{port}/0"
    assert repr(limiter) == (
        f"RedisLimiter({shown!r}, key={key!r}, qps=50.0, period=1.0, on_unavailable='local')"
    )
    caplog.set_level(logging.WARNING, logger="tupu_async")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await limiter.acquire()
        (warning,) = caught
        message = str(warning.message)
        assert re.fullmatch(
            re.escape(f"cannot reach Redis at {shown} for the shared QPS budget (")
            + r"\w*ConnectionError: .+"
            + re.escape(
                "); falling back to a per-process limit of 0.5 requests per 1 s "
                "(qps / expected_workers) and retrying Redis every 5 s. Start Redis or "
                "fix the URL; set expected_workers to the number of processes"
            ),
            message,
        ), message
        assert "s3cret" not in message
        assert f"tupu_async: {message}" in [r.getMessage() for r in caplog.records]
        fallback = limiter._fallback
        assert fallback is not None
        # One request per 2 s locally, reported as 0.5 per the configured 1 s period.
        assert (fallback.qps, fallback.period, fallback.margin) == (1.0, 2.0, 0.03)
        assert fallback._schedule.min_rate == 2.0 / 100  # min_rate shared out like qps
        assert limiter.current_rate == limiter.belief().rate == 0.5
        await limiter.on_throttle(3.0)  # the fallback pauses for the Retry-After
        assert fallback.belief().paused_until == pytest.approx(time.monotonic() + 3.0, abs=0.5)
    finally:
        await limiter.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_shared_throttle_is_logged_with_its_cause_rate_and_margin(
    redis_server: RedisServer, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RedisLimiter(redis_server.url, key=key, qps=10, margin=0.2, max_margin=0.3)
    caplog.set_level(logging.DEBUG, logger="tupu_async")
    try:
        await limiter.acquire()
        await limiter.on_throttle(None)  # one start of ten: someone else's load
        await limiter.on_throttle(None)  # the same cluster: no second cut
    finally:
        await limiter.aclose()
    cut, same = [r for r in caplog.records if "throttled" in r.getMessage()]
    assert cut.getMessage() == (
        f"tupu_async: throttled (foreign); shared rate for {key} 7.00 per 1 s, margin 200.0 ms"
    )
    assert cut.levelno == logging.INFO  # the rate was cut
    assert same.levelno == logging.DEBUG
    assert limiter.belief().margin == 0.2


@pytest.mark.redis
@pytest.mark.anyio
@pytest.mark.parametrize("reaction", ["adaptive", "pause-halve"])
async def test_a_throttle_redis_cannot_record_pauses_this_process_and_says_so(
    key: str, caplog: pytest.LogCaptureFixture, reaction: Any
) -> None:
    """Adaptive pauses locally only for an explicit Retry-After; pause-halve always."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    limiter = RedisLimiter(url, key=key, qps=10, redis_timeout=0.5, reaction=reaction)
    caplog.set_level(logging.WARNING, logger="tupu_async")
    try:
        with RedisServer(port=port):
            await limiter.acquire()  # the Redis clock is known from here on
        began = time.monotonic()
        await limiter.on_throttle(None)
        no_retry_after = limiter.belief().paused_until
        await limiter.on_throttle(2.0)
        with_retry_after = limiter.belief().paused_until
    finally:
        await limiter.aclose()
    if reaction == "adaptive":
        assert no_retry_after == -math.inf
    else:
        assert began + 1.0 <= no_retry_after <= time.monotonic() + 1.0 + 0.01
    assert began + 2.0 <= with_retry_after <= time.monotonic() + 2.0 + 0.01
    messages = [r.getMessage() for r in caplog.records if "could not share" in r.getMessage()]
    assert len(messages) == 2
    assert re.fullmatch(
        re.escape(f"tupu_async: could not share a throttle through Redis at {url} (")
        + r"\w*(ConnectionError|TimeoutError)\b.*"
        + re.escape("); pausing this process only"),
        messages[0],
    ), messages[0]


@pytest.mark.redis
@pytest.mark.anyio
async def test_wrong_credentials_are_refused_with_what_to_fix(
    redis_server: RedisServer, key: str
) -> None:
    """A server without that user/password refuses at once, for acquire and on_throttle."""
    url = f"redis://nobody:wrong@127.0.0.1:{redis_server.port}/0"
    limiter = RedisLimiter(url, key=key, qps=10, on_unavailable="local")
    shown = f"redis://nobody:***@127.0.0.1:{redis_server.port}/0"
    pattern = (
        re.escape(f"Redis at {shown} refused the limiter (")
        + r"\w*(Authentication|Authorization)Error: .+"
        + re.escape(
            f"): fix the user and password in the URL, or grant it EVALSHA/EVAL on the {key!r} keys"
        )
    )
    try:
        with pytest.raises(TransportError) as on_acquire:
            await limiter.acquire()
        with pytest.raises(TransportError) as on_throttle:
            await limiter.on_throttle(1.0)
    finally:
        await limiter.aclose()
    for caught in (on_acquire, on_throttle):
        assert re.fullmatch(pattern, str(caught.value)), str(caught.value)
        assert "wrong" not in str(caught.value)
    assert not limiter.using_fallback  # a refusal is not an outage: no silent fallback


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://tupu:s3cret@db.internal:6380/2", "redis://tupu:***@db.internal:6380/2"),
        ("redis://:s3cret@db.internal/0", "redis://:***@db.internal/0"),
        ("redis://tupu:s3cret@/0", "redis://tupu:***@/0"),
        ("redis://db.internal:6379/0", "redis://db.internal:6379/0"),
        ("redis://[::1", "<unparsable Redis URL>"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert _redacted(url) == shown


def test_errors_are_described_by_type_and_text() -> None:
    assert _describe(ConnectionError("refused")) == "ConnectionError: refused"
    assert _describe(TimeoutError()) == "TimeoutError"


def test_a_clock_sample_exactly_at_the_step_threshold_is_no_step() -> None:
    clock = RedisClock()
    assert clock.observe(0, 100, 0) is False  # round trip 100 µs, offset 100
    # |offset - 100| == both round trips + the slack: still the same clock.
    assert clock.observe(1_000, 1_100, 1_100 - (100 + 100 + 100 + 2_000)) is False
    assert clock.offset_us == 100
    assert clock.observe(2_000, 2_100, 2_100 - (100 + 100 + 100 + 2_001)) is True
    assert clock.offset_us == 2_301


def test_the_clock_keeps_the_last_32_samples_and_zero_round_trips() -> None:
    clock = RedisClock()
    clock.observe(5, 5, -5)  # a zero round trip, offset 10: the best sample
    assert clock.recent_rtt_us == 0
    for i in range(32):
        clock.observe(100 * i, 100 * i, 100 * i - 20)  # offset 20
    assert clock.offset_us == 20  # the best one has aged out
