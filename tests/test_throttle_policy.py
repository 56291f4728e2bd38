"""The 429 policy on a virtual clock: jitter widens the margin, foreign load cuts the rate."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tupu_async._throttle_policy import FOREIGN, JITTER, ThrottlePolicy

LIMIT = 50


def policy(**kwargs: Any) -> ThrottlePolicy:
    return ThrottlePolicy(50.0, margin=0.015, **kwargs)


def test_an_isolated_throttle_at_our_own_ceiling_is_jitter_and_widens_the_margin() -> None:
    p = policy()
    decision = p.on_throttle(10.0, own_in_window=50, limit=LIMIT)
    assert decision.cause == JITTER
    assert not decision.rate_lowered
    assert decision.rate == 50.0
    assert decision.margin > 0.015
    assert decision.pause_until == -math.inf  # no global pause without Retry-After
    assert p.jitter_throttles == 1
    assert p.foreign_throttles == 0


def test_the_widened_margin_decays_slowly_while_clean_and_never_below_base() -> None:
    p = policy()
    widened = p.on_throttle(0.0, own_in_window=49, limit=LIMIT).margin
    assert p.margin(1.0) > 0.015 + 0.95 * (widened - 0.015)  # slow: barely moved in 1 s
    assert p.margin(60.0) == pytest.approx(0.015 + (widened - 0.015) / 2)
    assert p.margin(600.0) == pytest.approx(0.015, abs=1e-4)
    assert p.margin(600.0) >= 0.015


def test_repeated_jitter_throttles_widen_up_to_max_margin() -> None:
    p = policy(max_margin=0.1)
    margins = []
    for i in range(20):
        margins.append(p.on_throttle(i * 10.0, own_in_window=50, limit=LIMIT).margin)
    assert margins == sorted(margins)
    assert margins[-1] == 0.1


def test_throttled_well_under_our_ceiling_is_foreign_and_cuts_the_rate_once_per_cluster() -> None:
    p = policy()
    first = p.on_throttle(5.0, own_in_window=30, limit=LIMIT)
    assert first.cause == FOREIGN
    assert first.rate_lowered
    assert first.rate == pytest.approx(35.0)
    # The rest of the cluster (other requests in flight) does not cut again.
    second = p.on_throttle(5.5, own_in_window=50, limit=LIMIT)
    assert second.cause == FOREIGN
    assert not second.rate_lowered
    assert second.rate >= 35.0
    assert p.foreign_throttles == 2


def test_persistent_throttles_are_foreign_even_at_our_own_ceiling() -> None:
    p = policy()
    causes = [p.on_throttle(t, own_in_window=50, limit=LIMIT).cause for t in (1.0, 2.0, 3.0)]
    assert causes == [JITTER, JITTER, FOREIGN]


def test_rate_probes_back_cubic_style_without_a_second_at_half_rate() -> None:
    p = policy()
    p.on_throttle(0.0, own_in_window=20, limit=LIMIT)
    rates = [p.rate(t / 10) for t in range(100)]
    assert rates == sorted(rates)  # monotonic probe, no saw-tooth within a cycle
    assert rates[0] == pytest.approx(35.0)
    assert min(rates) > 25.0  # never half rate
    assert p.rate(10.0) == 50.0  # back at the ceiling within 10 s when nothing throttles
    # Flat near the throttled rate: slower growth around K than at the start.
    k = (50 * 0.3 / 0.4) ** (1 / 3)
    assert p.rate(k + 0.5) - p.rate(k - 0.5) < p.rate(1.0) - p.rate(0.0)


def test_rate_follows_a_foreign_load_change_within_seconds() -> None:
    """Foreign load takes 15 of 50: the rate settles near 35; when it goes, back to 50."""
    p = policy()
    now = 0.0
    foreign = 15.0
    rates: list[float] = []
    cuts: list[float] = []
    while now < 60.0:
        available = 50.0 - foreign
        over = p.rate(now) > available
        if over and p.on_throttle(now, own_in_window=int(available), limit=LIMIT).rate_lowered:
            cuts.append(now)
        rates.append(p.rate(now))
        now += 0.1
        if now >= 30.0:
            foreign = 0.0
    loaded = rates[50:300]  # 5 s to 30 s
    assert sum(loaded) / len(loaded) >= 0.85 * 35.0
    assert max(loaded) <= 35.0 * 1.1
    assert p.rate(40.0) == 50.0  # within 10 s of the load leaving
    assert all(c < 30.0 for c in cuts)


def test_retry_after_is_honoured_but_capped() -> None:
    p = policy(retry_after_cap=2.0)
    assert p.on_throttle(1.0, 50, LIMIT, retry_after=0.5).pause_until == 1.5
    assert p.on_throttle(20.0, 50, LIMIT, retry_after=1e9).pause_until == 22.0
    for odd in (None, math.nan, math.inf, -1.0, 0.0):
        assert p.on_throttle(40.0, 50, LIMIT, retry_after=odd).pause_until == 22.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 5.0),
            st.integers(0, 60),
            st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        ),
        max_size=40,
    )
)
def test_bounds_hold_for_any_throttle_sequence(events: list[tuple[float, int, Any]]) -> None:
    p = policy(retry_after_cap=3.0)
    now = 0.0
    for gap, own, retry_after in events:
        now += gap
        decision = p.on_throttle(now, own, LIMIT, retry_after)
        assert 1.0 <= decision.rate <= 50.0
        assert 0.015 <= decision.margin <= 0.2
        assert decision.pause_until <= now + 3.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_margin": 0.001}, "max_margin"),
        ({"min_rate": 0.0}, "min_rate"),
        ({"retry_after_cap": math.inf}, "retry_after_cap"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        policy(**kwargs)
