"""The limiters: the window guarantee on a virtual clock, then on both anyio backends."""

from __future__ import annotations

import itertools
import logging
import math
import re
import time
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
import trio
import trio.testing
from aiolimiter import AsyncLimiter
from hypothesis import given, settings
from hypothesis import strategies as st

from tupu_async._limiter import LocalLimiter, RateLimiter, UnlimitedLimiter
from tupu_async._throttle_policy import ThrottlePolicy
from tupu_async._window_schedule import DEFAULT_THROTTLE_PAUSE, WindowSchedule


def max_in_window(starts: Sequence[float], window: float) -> int:
    """Brute force: the most starts in any half-open window [t, t + window)."""
    return max((sum(1 for s in starts if t <= s < t + window) for t in starts), default=0)


# --- the pure schedule on a virtual clock -------------------------------------------------

qps_values = st.floats(min_value=1.0, max_value=60.0)
periods = st.floats(min_value=0.05, max_value=3.0)
margins = st.floats(min_value=0.0, max_value=0.1)
gaps = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=2.0))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), gaps),
        st.tuples(st.just("acquire"), st.just(0.0)),
        st.tuples(st.just("success"), gaps),
        st.tuples(
            st.just("throttle"),
            gaps,
            st.one_of(st.none(), st.floats(min_value=-1.0, max_value=3.0)),
        ),
    ),
    max_size=150,
)


@settings(max_examples=150, deadline=None)
@given(qps=qps_values, period=periods, margin=margins, ops=operations)
def test_schedule_never_overruns_and_grants_fifo(
    qps: float, period: float, margin: float, ops: list[tuple[object, ...]]
) -> None:
    schedule = WindowSchedule(qps, period, margin=margin, min_rate=min(1.0, qps))
    now = 0.0
    slots: list[float] = []
    for op in ops:
        now += float(op[1])  # type: ignore[arg-type]
        if op[0] == "acquire":
            slot = schedule.reserve(now)
            assert slot >= now
            assert slot >= schedule.paused_until
            if slots:
                assert slot >= slots[-1]  # FIFO: a later request never gets an earlier slot
            slots.append(slot)
        elif op[0] == "success":
            schedule.success(now)
        else:
            retry_after = op[2]
            assert retry_after is None or isinstance(retry_after, float)
            schedule.throttle(now, retry_after)
        assert schedule.min_rate <= schedule.current_rate <= qps
    assert max_in_window(slots, period + margin) <= math.floor(qps)
    # The guarantee as the server sees it: any arrival jitter up to `margin` is absorbed.
    assert max_in_window(slots, period) <= qps


@settings(max_examples=100, deadline=None)
@given(qps=qps_values, period=periods, margin=margins, late=st.lists(st.floats(0.0, 0.5)))
def test_schedule_counts_real_start_times_when_wakeups_are_late(
    qps: float, period: float, margin: float, late: list[float]
) -> None:
    """A late wake-up keeps its ideal slot for pacing but the window counts the real time."""
    schedule = WindowSchedule(qps, period, margin=margin)
    started: list[float] = []
    for lateness in late:
        slot = schedule.earliest_start(started[-1] if started else 0.0)
        start = slot + lateness
        schedule.record_start(start, slot)
        started.append(start)
    assert max_in_window(started, period + margin) <= math.floor(qps)


@settings(max_examples=100, deadline=None)
@given(qps=st.integers(min_value=1, max_value=200), period=periods, margin=margins)
def test_schedule_long_run_rate_with_continuous_demand(
    qps: int, period: float, margin: float
) -> None:
    schedule = WindowSchedule(qps, period, margin=margin)
    slots = [schedule.reserve(0.0) for _ in range(20 * qps + 1)]
    rate_per_period = (len(slots) - 1) / (slots[-1] - slots[0]) * period
    expected = qps / (1 + margin / period)
    assert abs(rate_per_period - expected) <= 0.02 * expected
    # Paced, not bursty: consecutive starts are (period + margin) / qps apart.
    gaps_between = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps_between) >= (period + margin) / qps * (1 - 1e-9)


@settings(max_examples=50, deadline=None)
@given(qps=st.floats(min_value=1.0, max_value=100.0), margin=margins)
def test_schedule_fractional_qps_is_held_to_its_floor(qps: float, margin: float) -> None:
    schedule = WindowSchedule(qps, 1.0, margin=margin)
    limit = math.floor(qps)
    slots = [schedule.reserve(0.0) for _ in range(10 * limit + 1)]
    rate = (len(slots) - 1) / (slots[-1] - slots[0])
    assert rate <= limit / (1 + margin) * 1.02
    assert rate >= limit / (1 + margin) * 0.98


def test_schedule_first_window_is_not_a_burst() -> None:
    schedule = WindowSchedule(50.0, 1.0, margin=0.015)
    slots = [schedule.reserve(0.0) for _ in range(100)]
    assert sum(1 for s in slots if s < 1.0) == 50
    assert slots[1] - slots[0] == pytest.approx(1.015 / 50)


def test_schedule_window_is_half_open_and_exact() -> None:
    schedule = WindowSchedule(2.0, 1.0, margin=0.0)
    assert [schedule.reserve(0.0) for _ in range(5)] == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_throttle_pauses_everyone_and_halves_once_per_cluster() -> None:
    schedule = WindowSchedule(50.0, 1.0, margin=0.015)
    for _ in range(10):
        schedule.reserve(0.0)
    assert schedule.throttle(1.0, 2.0) is True
    assert schedule.current_rate == 25.0
    # The other requests that were in flight get their 429s too: no further halving.
    assert schedule.throttle(1.05, 2.0) is False
    assert schedule.throttle(2.9, 0.5) is False
    assert schedule.current_rate == 25.0
    assert schedule.paused_until == pytest.approx(3.4)  # every Retry-After is honoured
    slot = schedule.reserve(1.2)
    assert slot == pytest.approx(3.4)
    assert schedule.reserve(1.2) == pytest.approx(3.4 + 1.015 / 25)
    # A throttle after the pause (and after one window) is a new overload: halve again.
    assert schedule.throttle(3.5, None) is True
    assert schedule.current_rate == 12.5
    assert schedule.paused_until == pytest.approx(3.5 + DEFAULT_THROTTLE_PAUSE)


def test_throttle_never_goes_below_min_rate_and_tolerates_odd_retry_after() -> None:
    schedule = WindowSchedule(50.0, min_rate=5.0)
    now = 0.0
    for retry_after in (None, -3.0, math.nan, math.inf, 0.0, 10.0):
        schedule.throttle(now, retry_after)
        now += 20.0
    assert schedule.current_rate == 5.0
    assert schedule.paused_until == pytest.approx(100.0 + 10.0)


def test_success_recovers_additively_about_one_request_per_second_per_second() -> None:
    schedule = WindowSchedule(50.0, 1.0, margin=0.015)
    for _ in range(50):
        schedule.reserve(0.0)
    schedule.throttle(1.0, 0.5)
    schedule.success(1.2)  # during the pause: does not count
    assert schedule.current_rate == 25.0
    now = 1.5
    rates = [schedule.current_rate]
    while schedule.current_rate < 50.0:
        now = schedule.reserve(now)
        schedule.success(now)
        rates.append(schedule.current_rate)
    assert rates == sorted(rates)
    assert schedule.current_rate == 50.0
    # From 25 to 50 req/s at +1 req/s per second of traffic: about 25 s.
    assert 20.0 <= now - 1.5 <= 30.0
    for _ in range(100):
        schedule.success(now)
    assert schedule.current_rate == 50.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"qps": 0.5}, "qps"),
        ({"qps": math.inf}, "UnlimitedLimiter"),
        ({"qps": math.nan}, "qps"),
        ({"period": 0.0}, "period"),
        ({"margin": -0.1}, "margin"),
        ({"min_rate": 100.0}, "min_rate"),
        ({"min_rate": 0.0}, "min_rate"),
        ({"recovery": -1.0}, "recovery"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LocalLimiter(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"period": 0.0}, "period must be a positive number of seconds, got 0.0"),
        ({"period": -1.0}, "period must be a positive number of seconds, got -1.0"),
        ({"margin": -0.1}, "margin must be >= 0 seconds, got -0.1"),
        ({"min_rate": 0.0}, "min_rate must be > 0 and <= qps (50.0), got 0.0"),
        ({"min_rate": 51.0}, "min_rate must be > 0 and <= qps (50.0), got 51.0"),
        ({"recovery": math.inf}, "recovery must be >= 0 requests per period, got inf"),
    ],
)
def test_the_schedule_itself_refuses_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        WindowSchedule(50.0, **kwargs)


def test_the_schedule_counts_per_second_by_default() -> None:
    schedule = WindowSchedule(50.0)
    assert (schedule.period, schedule.margin, schedule.window) == (1.0, 0.015, 1.015)
    assert schedule.limit == 50
    assert schedule.min_rate == 1.0


def test_a_zero_recovery_keeps_a_halved_rate() -> None:
    schedule = WindowSchedule(50.0, 1.0, margin=0.0, recovery=0.0)
    schedule.throttle(0.0, 0.5)
    schedule.success(1.0)
    assert schedule.current_rate == 25.0
    slow = WindowSchedule(50.0, 1.0, margin=0.0, recovery=0.5)
    slow.throttle(0.0, 0.5)
    slow.success(1.0)
    assert slow.current_rate == 25.0 + 0.5 / 25


def test_limiters_implement_the_protocol() -> None:
    assert isinstance(LocalLimiter(), RateLimiter)
    assert isinstance(UnlimitedLimiter(), RateLimiter)
    assert LocalLimiter().qps == 50.0
    assert "qps=50" in repr(LocalLimiter())


# --- the real limiter in real time, on both backends --------------------------------------


@pytest.mark.anyio
async def test_concurrent_acquirers_hold_the_window_in_real_time() -> None:
    qps, n = 50.0, 120
    limiter = LocalLimiter(qps)
    starts: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        starts.append(time.monotonic())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
    assert len(starts) == n
    assert max_in_window(starts, 1.0) <= 50
    assert max_in_window(starts, 1.015) <= 50
    spacing = 1.015 / qps
    elapsed = max(starts) - min(starts)
    # Paced: 119 gaps of one spacing (a little lateness forgiven), plus scheduling slack.
    assert (n - 1) * spacing - 0.006 <= elapsed <= (n - 1) * spacing + 0.6
    assert limiter.waiting == 0


@pytest.mark.anyio
async def test_waiters_are_granted_in_arrival_order() -> None:
    limiter = LocalLimiter(200.0)
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
                await anyio.wait_all_tasks_blocked()
    assert order == list(range(20))


@pytest.mark.anyio
async def test_cancelling_the_head_of_the_line_passes_the_turn_on() -> None:
    limiter = LocalLimiter(20.0)  # one start per ~51 ms
    await limiter.acquire()
    t0 = time.monotonic()
    granted: list[float] = []

    async def head() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await limiter.acquire()
            granted.append(-1.0)  # never reached: cancelled while sleeping for its slot

    async def second() -> None:
        await limiter.acquire()
        granted.append(time.monotonic())

    scopes: list[anyio.CancelScope] = []
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(head)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            scopes[0].cancel()
    assert len(granted) == 1
    # The cancelled head took nothing: the second waiter got the very next slot.
    assert granted[0] - t0 <= 1.015 / 20 + 0.05
    assert limiter.waiting == 0


@pytest.mark.anyio
async def test_cancelled_waiters_leave_the_limiter_usable_and_correct() -> None:
    qps = 40.0
    limiter = LocalLimiter(qps)
    starts: list[float] = []
    scopes: list[anyio.CancelScope] = []
    granted_one = anyio.Event()

    async def one(cancellable: bool) -> None:
        with anyio.CancelScope() as scope:
            if cancellable:
                scopes.append(scope)
            await limiter.acquire()
            starts.append(time.monotonic())
            granted_one.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(24):
                tg.start_soon(one, i % 2 == 0)  # every other waiter will be cancelled
                await anyio.wait_all_tasks_blocked()
            # Cancel once a few waiters were granted, the rest still in line.
            while len(starts) < 3:
                await granted_one.wait()
                granted_one = anyio.Event()
            for scope in scopes:
                scope.cancel()
        # Still usable afterwards, and the window still holds across everything.
        for _ in range(5):
            await limiter.acquire()
            starts.append(time.monotonic())
    assert limiter.waiting == 0
    survivors = 12 + sum(1 for s in scopes if not s.cancelled_caught)
    assert len(starts) == survivors + 5
    assert max_in_window(starts, 1.015) <= math.floor(qps)
    spacing = 1.015 / qps
    # Cancelled waiters wasted no slots: the starts stay one spacing apart.
    assert max(starts) - min(starts) <= (len(starts) - 1) * spacing + 0.5


class TestOnTrioVirtualClock:
    """The real limiter under a throttle, driven by trio's autojumping MockClock."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    @pytest.mark.anyio
    async def test_throttle_pauses_in_flight_demand_then_recovers(self) -> None:
        limiter = LocalLimiter(50.0, clock=trio.current_time, policy="pause-halve")
        starts: list[float] = []
        throttled_at: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            starts.append(trio.current_time())
            if len(starts) == 60:
                throttled_at.append(trio.current_time())
                for _ in range(5):  # five in-flight requests all come back 429
                    await limiter.on_throttle(2.0)
            elif len(starts) > 60:
                limiter.on_success()

        async with anyio.create_task_group() as tg:
            for _ in range(400):
                tg.start_soon(one)
        t = throttled_at[0]
        assert not [s for s in starts if t < s < t + 2.0]
        assert max_in_window(starts, 1.015) <= 50
        after = [s for s in starts if s >= t + 2.0]
        first_gap = after[1] - after[0]
        assert first_gap == pytest.approx(1.015 / 25, rel=0.05)  # halved once, not 5 times
        assert 25.0 < limiter.current_rate < 50.0  # recovering additively

    @pytest.mark.anyio
    async def test_long_run_rate_on_the_virtual_clock(self) -> None:
        limiter = LocalLimiter(50.0, clock=trio.current_time)
        starts: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            starts.append(trio.current_time())

        async with anyio.create_task_group() as tg:
            for _ in range(501):
                tg.start_soon(one)
        rate = 500 / (max(starts) - min(starts))
        assert rate == pytest.approx(50 / 1.015, rel=0.02)
        assert max_in_window(starts, 1.015) == 50


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_plain_aiolimiter_overruns_the_first_second() -> None:
    """Why LocalLimiter does not use AsyncLimiter(qps, 1): its bucket starts empty."""
    limiter = AsyncLimiter(50, 1)
    starts: list[float] = []
    with anyio.fail_after(2):
        for _ in range(60):
            await limiter.acquire()
            starts.append(time.monotonic())
    assert max_in_window(starts, 1.0) == 60  # 60 > 50 in well under one second


@pytest.mark.anyio
async def test_unlimited_limiter_never_waits() -> None:
    limiter = UnlimitedLimiter()
    await limiter.on_throttle(30.0)
    limiter.on_success()
    with anyio.fail_after(2):
        for _ in range(2000):
            await limiter.acquire()
    await limiter.aclose()
    assert limiter.qps == math.inf
    assert limiter.current_rate == math.inf


def test_unlimited_limiter_repr_names_it() -> None:
    assert repr(UnlimitedLimiter()) == "<UnlimitedLimiter>"


def test_local_limiter_repr_shows_its_settings_and_state() -> None:
    limiter = LocalLimiter(20.0, 2.0, margin=0.01, policy="pause-halve", clock=lambda: 0.0)
    assert repr(limiter) == (
        "<LocalLimiter qps=20 period=2 margin=0.01 current_rate=20 policy=pause-halve waiting=0>"
    )


# --- sends that lag their permit ------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    lags=st.lists(st.floats(min_value=0.0, max_value=0.08), min_size=60, max_size=200),
    arrivals=st.lists(st.floats(min_value=0.0, max_value=0.03), min_size=60, max_size=200),
)
def test_lagging_sends_never_bunch_up_in_any_window(
    lags: list[float], arrivals: list[float]
) -> None:
    """Requests sent late (after their permit) still never exceed the cap at send time."""
    schedule = WindowSchedule(qps=20, margin=0.0)
    now = 0.0
    sent_times: list[float] = []
    pending: list[tuple[float, float]] = []  # (send time, start)
    for lag, gap in zip(lags, arrivals, strict=False):
        now += gap
        # sends whose time has come are reported before the next permit is granted
        for when, start in sorted(pending):
            if when <= now:
                schedule.record_sent(start, when)
        pending = [(w, s) for w, s in pending if w > now]
        start = schedule.reserve(now)
        now = start
        pending.append((start + lag, start))
        sent_times.append(start + lag)
    times = sorted(sent_times)
    # every send was reported before the permit 20 places later (lags < spacing * 20)
    for i, t in enumerate(times):
        inside = sum(1 for u in times[i:] if u < t + schedule.window)
        assert inside <= schedule.limit


# --- the real limiter's send hook on a virtual clock ----------------------------------------


def _run_on_mock_clock(fn: Any) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


@settings(max_examples=100, deadline=None)
@given(
    lags=st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=1, max_size=140),
    qps=st.sampled_from([5.0, 20.0, 50.0]),
)
def test_no_window_over_the_limit_at_the_wire_for_any_send_lags(
    lags: list[float], qps: float
) -> None:
    """Permits taken at once, each sent after its own lag (the very first ones included):
    counted at the wire, no 1 s window ever holds more than ``qps`` sends."""
    sent: list[float] = []

    async def main() -> None:
        limiter = LocalLimiter(qps, clock=trio.current_time)

        async def one(lag: float) -> None:
            mark_sent = await limiter.acquire()
            await trio.sleep(lag)
            sent.append(trio.current_time())
            mark_sent()

        async with trio.open_nursery() as nursery:
            for lag in lags:
                nursery.start_soon(one, lag)
                await trio.testing.wait_all_tasks_blocked()

    _run_on_mock_clock(main)
    assert len(sent) == len(lags)
    # Exact at the boundary: allow only float rounding.
    assert max_in_window(sorted(sent), 1.0 - 1e-9) <= qps


def test_a_lagging_first_send_pushes_later_permits_back() -> None:
    """The cold-start case: no baseline yet, so the first send's lag counts in full."""
    grants: list[float] = []

    async def main() -> None:
        limiter = LocalLimiter(5.0, margin=0.0, clock=trio.current_time)
        mark_sent = await limiter.acquire()
        grants.append(trio.current_time())
        await trio.sleep(0.3)  # virtual time: connection set-up before the first send
        mark_sent()
        for _ in range(5):
            hook = await limiter.acquire()
            grants.append(trio.current_time())
            hook()

    _run_on_mock_clock(main)
    # The 6th permit waits for one full window after the first request's wire time.
    assert grants[5] == pytest.approx(1.3)
    assert grants[5] - grants[0] > 1.0 + 0.29


def test_adaptive_jitter_throttle_widens_the_margin_without_a_pause() -> None:
    grants: list[float] = []
    margins: list[float] = []

    async def main() -> None:
        limiter = LocalLimiter(50.0, clock=trio.current_time)
        for _ in range(120):
            hook = await limiter.acquire()
            hook()
            grants.append(trio.current_time())
            if len(grants) == 100:
                margins.append(limiter.margin)
                await limiter.on_throttle()  # our own count is at the limit: jitter
                margins.append(limiter.margin)
        belief = limiter.belief()
        assert belief.jitter_throttles == 1
        assert belief.foreign_throttles == 0
        assert belief.rate == 50.0

    _run_on_mock_clock(main)
    assert margins[1] > margins[0] == 0.015
    gaps = [b - a for a, b in itertools.pairwise(grants[99:])]
    assert max(gaps) < 2 * (1.0 + margins[1]) / 50  # no pause, just the wider spacing
    assert max_in_window(grants, 1.0 + margins[0]) <= 50
    assert max_in_window(grants[99:], 1.0 + margins[1]) <= 50


def test_adaptive_foreign_throttles_cut_the_rate_then_probe_back() -> None:
    rates: list[float] = []

    async def main() -> None:
        limiter = LocalLimiter(50.0, clock=trio.current_time)
        for _ in range(3):  # a cluster, while our own count is far under the limit
            await limiter.on_throttle()
        rates.append(limiter.current_rate)
        await trio.sleep(30.0)
        rates.append(limiter.current_rate)
        assert limiter.belief().foreign_throttles >= 1

    _run_on_mock_clock(main)
    assert rates[0] == pytest.approx(35.0)  # cut once for the cluster, by 0.7
    assert rates[1] == 50.0


def test_retry_after_pauses_the_limiter_but_is_capped() -> None:
    grants: list[float] = []

    async def main() -> None:
        limiter = LocalLimiter(50.0, clock=trio.current_time, retry_after_cap=2.0)
        await limiter.acquire()
        await limiter.on_throttle(1e9)
        await limiter.acquire()
        grants.append(trio.current_time())
        legacy = LocalLimiter(
            50.0, clock=trio.current_time, retry_after_cap=2.0, policy="pause-halve"
        )
        await legacy.on_throttle(1e9)
        start = trio.current_time()
        await legacy.acquire()
        grants.append(trio.current_time() - start)

    _run_on_mock_clock(main)
    assert grants == [pytest.approx(2.0), pytest.approx(2.0)]


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="policy must be"):
        LocalLimiter(50.0, policy="halve")  # type: ignore[arg-type]


def test_a_throttled_request_takes_the_next_free_slot_ahead_of_the_line() -> None:
    order: list[str] = []

    async def main() -> None:
        limiter = LocalLimiter(5.0, clock=trio.current_time)
        await limiter.acquire()  # the next slot is a spacing away: everyone queues

        async def waiter(name: str, ahead: bool) -> None:
            await (limiter.acquire_next() if ahead else limiter.acquire())
            order.append(name)

        async with trio.open_nursery() as nursery:
            for name in ("a", "b", "c"):
                nursery.start_soon(waiter, name, False)
                await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(waiter, "re-send", True)

    _run_on_mock_clock(main)
    # "a" was already sleeping on the clock for the next slot; the re-send comes next.
    assert order == ["a", "re-send", "b", "c"]


# --- the schedule's log and the pause-halve boundaries, exactly -----------------------------


def test_starts_since_counts_the_logged_starts_after_a_time() -> None:
    schedule = WindowSchedule(10.0, 1.0, margin=0.0)
    assert [schedule.reserve(0.0) for _ in range(3)] == [0.0, 0.1, 0.2]
    assert schedule.starts_since(-1.0) == 3
    assert schedule.starts_since(0.05) == 2
    assert schedule.starts_since(0.2) == 0


def test_a_lagging_send_moves_its_own_start_in_the_log() -> None:
    schedule = WindowSchedule(3.0, 1.0, margin=0.0)
    schedule.reserve(0.0)
    schedule.record_sent(0.0, 0.2)
    assert schedule.starts_since(-1.0) == 1  # moved, not duplicated
    assert schedule.starts_since(0.1) == 1


def test_a_lagging_send_whose_start_already_left_the_log() -> None:
    # Limit 2: the start at 0.0 has been pushed out of the log by 0.5 and 1.0.
    later = WindowSchedule(2.0, 1.0, margin=0.0)
    assert [later.reserve(0.0) for _ in range(3)] == [0.0, 0.5, 1.0]
    later.record_sent(0.0, 0.7)  # sent after the oldest logged start: it counts
    assert later.starts_since(0.6) == 2
    assert later.starts_since(0.8) == 1
    earlier = WindowSchedule(2.0, 1.0, margin=0.0)
    for _ in range(3):
        earlier.reserve(0.0)
    earlier.record_sent(0.0, 0.4)  # still before every logged start: nothing changes
    assert earlier.starts_since(0.45) == 2
    assert earlier.starts_since(0.6) == 1


def test_pause_halve_halves_again_exactly_one_window_after_a_halving() -> None:
    schedule = WindowSchedule(50.0, 1.0, margin=0.0)
    assert schedule.throttle(0.0, 0.5) is True
    assert schedule.throttle(0.7, 0.1) is False  # within the window of the halving
    assert schedule.current_rate == 25.0
    assert schedule.throttle(1.0, 0.1) is True
    assert schedule.current_rate == 12.5


def test_pause_halve_recovers_from_the_end_of_the_pause() -> None:
    schedule = WindowSchedule(50.0, 1.0, margin=0.0)
    schedule.throttle(0.0, 1.0)
    schedule.success(0.999)
    assert schedule.current_rate == 25.0
    schedule.success(1.0)
    assert schedule.current_rate == pytest.approx(25.0 + 1 / 25)


# --- what a throttle reports ------------------------------------------------------------------


def test_belief_reports_the_widened_margin_and_the_pause() -> None:
    beliefs: list[Any] = []

    async def main() -> None:
        limiter = LocalLimiter(50.0, clock=trio.current_time, retry_after_cap=2.0)
        for _ in range(50):
            (await limiter.acquire())()
        await limiter.on_throttle(1.5)  # our own count is at the limit: jitter
        beliefs.append((trio.current_time(), limiter.belief(), limiter.margin))

    _run_on_mock_clock(main)
    now, belief, margin = beliefs[0]
    assert belief.margin == margin == pytest.approx(0.015 * 1.5 + 0.005)
    assert belief.paused_until == pytest.approx(now + 1.5)
    assert belief.jitter_throttles == 1


def test_pause_halve_without_retry_after_pauses_the_default_time() -> None:
    waited: list[float] = []

    async def main() -> None:
        limiter = LocalLimiter(50.0, clock=trio.current_time, policy="pause-halve")
        await limiter.on_throttle()
        start = trio.current_time()
        await limiter.acquire()
        waited.append(trio.current_time() - start)
        assert limiter.current_rate == 25.0

    _run_on_mock_clock(main)
    assert waited == [pytest.approx(DEFAULT_THROTTLE_PAUSE)]


def test_each_throttle_is_logged_at_debug_with_its_reaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        await trio.sleep(10.0)  # virtual time: the pause is logged relative to now, not 0
        adaptive = LocalLimiter(50.0, clock=trio.current_time, margin=0.1, retry_after_cap=2.0)
        await adaptive.on_throttle()
        await adaptive.on_throttle(5.0)
        legacy = LocalLimiter(50.0, clock=trio.current_time, policy="pause-halve")
        await legacy.on_throttle(0.25)

    with caplog.at_level(logging.DEBUG, logger="tupu_async"):
        _run_on_mock_clock(main)
    assert [r.getMessage() for r in caplog.records if r.name == "tupu_async"] == [
        "limiter: 429 from foreign (own 0 in the last period); rate 35 (lowered), margin "
        "100.0 ms, pause 0.000s; throttles: 0 jitter, 1 foreign",
        "limiter: 429 from foreign (own 0 in the last period); rate 35, margin "
        "100.0 ms, pause 2.000s; throttles: 0 jitter, 2 foreign",
        "limiter (pause-halve): rate 25, paused until +0.250s",
    ]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "tupu_async")


def test_a_late_wake_up_keeps_its_slot_for_pacing() -> None:
    """A head that wakes 3 ms late starts late, but the next slot is paced from its slot."""
    grants: list[float] = []

    def late_clock() -> float:
        now = trio.current_time()
        return now + 0.003 if now > 0.1 else now  # every wake-up after 0.1 s is 3 ms late

    async def main() -> None:
        limiter = LocalLimiter(5.0, margin=0.0, clock=late_clock)
        for _ in range(3):
            await limiter.acquire()
            grants.append(trio.current_time())

    _run_on_mock_clock(main)
    # Slots 0, 0.2, 0.4 on the limiter's clock: the third is granted at 0.4 - 3 ms there.
    assert grants == [0.0, pytest.approx(0.2), pytest.approx(0.397)]


def test_cancelling_a_waiter_behind_the_head_never_lets_the_next_one_overtake() -> None:
    """Trio runs tasks woken together in random order, so a second head woken by mistake
    would win the head's slot about half the time; 30 rounds make that show."""
    orders: list[list[str]] = []

    async def one_round() -> None:
        limiter = LocalLimiter(5.0, margin=0.0, clock=trio.current_time)
        await limiter.acquire()  # the next slot is a spacing away: everyone queues
        order: list[str] = []
        cancel_c = trio.CancelScope()

        async def waiter(name: str, scope: trio.CancelScope | None = None) -> None:
            with scope or trio.CancelScope():
                await limiter.acquire()
                order.append(name)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, "a")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(waiter, "b")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(waiter, "c", cancel_c)
            await trio.testing.wait_all_tasks_blocked()
            cancel_c.cancel()
        assert limiter.waiting == 0
        orders.append(order)

    async def main() -> None:
        for _ in range(30):
            await one_round()

    _run_on_mock_clock(main)
    assert orders == [["a", "b"]] * 30


def _grants_with_send_lags(lags: Sequence[float]) -> list[float]:
    """Permit times for one request after another, each sent ``lag`` after its permit;
    qps 5 with a 50 ms margin (spacing 0.21 s), starting at t=10 on a virtual clock."""
    grants: list[float] = []

    async def main() -> None:
        await trio.sleep(10.0)
        limiter = LocalLimiter(5.0, margin=0.05, clock=trio.current_time)
        for lag in lags:
            hook = await limiter.acquire()
            grants.append(trio.current_time())
            await trio.sleep(lag)
            hook()

    _run_on_mock_clock(main)
    return grants


def test_a_send_lagging_more_than_the_usual_delay_pushes_the_window_back() -> None:
    # The first send sets a baseline of no delay; the second lags 30 ms, under the margin.
    grants = _grants_with_send_lags([0.0, 0.03, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert grants[:6] == [pytest.approx(10.0 + 0.21 * i) for i in range(6)]
    # Five starts per 1.05 s window: the 7th waits for the 2nd's wire time + 1.05.
    assert grants[6] == pytest.approx(10.21 + 0.03 + 1.05)


def test_only_lag_beyond_the_usual_send_delay_counts() -> None:
    # The first send (no baseline yet) counts its 10 ms in full and sets the usual delay;
    # later sends lag 20 ms, of which only the 10 ms beyond the usual one count.
    grants = _grants_with_send_lags([0.01] + [0.02] * 6)
    assert grants[:5] == [pytest.approx(10.0 + 0.21 * i) for i in range(5)]
    assert grants[5] == pytest.approx(10.0 + 0.01 + 1.05)  # the 1st send's wire time + window
    assert grants[6] == pytest.approx(10.21 + 0.01 + 1.05)  # the 2nd's, 10 ms counted


def test_a_caller_arriving_as_the_head_wakes_never_takes_its_slot() -> None:
    """Trio runs tasks woken together in random order: in 30 rounds a newcomer that skipped
    the line would take the head's slot about half the time."""
    orders: list[list[str]] = []

    async def one_round() -> None:
        start = trio.current_time()
        limiter = LocalLimiter(5.0, margin=0.0, clock=trio.current_time)
        await limiter.acquire()  # the next slot is 0.2 s away
        order: list[str] = []

        async def head() -> None:
            await limiter.acquire()
            order.append("head")

        async def newcomer() -> None:
            await trio.sleep_until(start + 0.2)  # arrives exactly when the head's slot comes
            await limiter.acquire()
            order.append("newcomer")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(head)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(newcomer)
        orders.append(order)

    async def main() -> None:
        for _ in range(30):
            await one_round()

    _run_on_mock_clock(main)
    assert orders == [["head", "newcomer"]] * 30


def test_the_usual_send_delay_is_the_least_of_the_last_64() -> None:
    # A first send with no delay, then sends 20 ms late: while the no-delay send is among
    # the last 64, each 20 ms counts, and every fifth permit waits 20 ms for the window.
    grants = _grants_with_send_lags([0.0] + [0.02] * 72)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(grants)]
    assert gaps[65] == pytest.approx(0.23)
    # From the 66th send on, 20 ms is the usual delay: plain pacing, nothing pushed back.
    assert gaps[66:] == [pytest.approx(0.21)] * 6


def test_the_limiter_paces_exactly_as_its_policy_with_the_same_settings() -> None:
    """period, min_rate and the margins given to LocalLimiter reach both the schedule and
    the 429 policy: rates after foreign throttles match a policy built alike."""
    seen: list[tuple[float, float]] = []

    async def main() -> None:
        settings_: dict[str, Any] = {"margin": 0.01, "min_rate": 30.0, "max_margin": 0.05}
        limiter = LocalLimiter(50.0, 2.0, clock=trio.current_time, **settings_)
        policy = ThrottlePolicy(50.0, 2.0, **settings_)
        for _ in range(6):  # foreign (we sent nothing), each after the last one's window
            await trio.sleep(2.05)
            await limiter.on_throttle()
            policy.on_throttle(trio.current_time(), 0, 50)
        for _ in range(20):
            seen.append((limiter.current_rate, policy.rate(trio.current_time())))
            await trio.sleep(0.5)

    _run_on_mock_clock(main)
    assert seen[0][0] == 30.0  # cut to min_rate, no lower
    assert [mine for mine, _ in seen] == [pytest.approx(theirs) for _, theirs in seen]
    assert seen[-1][0] > 10.0  # and probing back up on the policy's curve


def test_jitter_widens_the_margin_up_to_the_given_max_margin() -> None:
    margins: list[float] = []

    async def main() -> None:
        limiter = LocalLimiter(5.0, margin=0.01, max_margin=0.03, clock=trio.current_time)
        for _ in range(4):
            await trio.sleep(3.5)  # isolated: no other throttle in the last 3 s
            for _ in range(5):
                await limiter.acquire()  # our own count at the ceiling: jitter
            await limiter.on_throttle()
            margins.append(limiter.margin)
        assert limiter.belief().jitter_throttles == 4

    _run_on_mock_clock(main)
    assert margins[0] == pytest.approx(0.02)
    assert margins[-1] == pytest.approx(0.03)


def test_pause_halve_halves_down_to_the_default_floor_of_one() -> None:
    rates: list[float] = []

    async def main() -> None:
        limiter = LocalLimiter(4.0, clock=trio.current_time, policy="pause-halve")
        for _ in range(4):
            await limiter.on_throttle(0.1)
            await trio.sleep(2.0)
            rates.append(limiter.current_rate)
        limiter.on_success()  # after the pause: + recovery / rate, recovery 1 by default
        rates.append(limiter.current_rate)

    _run_on_mock_clock(main)
    assert rates == [2.0, 1.0, 1.0, 1.0, 2.0]


def test_pause_halve_halves_down_to_the_given_min_rate() -> None:
    rates: list[float] = []

    async def main() -> None:
        limiter = LocalLimiter(8.0, min_rate=3.0, clock=trio.current_time, policy="pause-halve")
        for _ in range(3):
            await limiter.on_throttle(0.1)
            await trio.sleep(2.0)
            rates.append(limiter.current_rate)

    _run_on_mock_clock(main)
    assert rates == [4.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("qps", "expected_anchor"),
    [
        (500.0, 1.0 - 0.001),  # spacing 2 ms: half a spacing (1 ms) of lateness forgiven
        (20.0, 1.0 - 0.005),  # spacing 50 ms: at most 5 ms forgiven
    ],
)
def test_a_late_start_is_forgiven_at_most_half_a_spacing(
    qps: float, expected_anchor: float
) -> None:
    schedule = WindowSchedule(qps, 1.0, margin=0.0)
    schedule.record_start(1.0, 0.99)  # woke 10 ms after its slot
    assert schedule.not_before() == pytest.approx(expected_anchor + 1.0 / qps, abs=1e-12)
