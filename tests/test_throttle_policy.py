"""The 429 policy on a virtual clock: jitter widens the margin, foreign load cuts the rate."""

from __future__ import annotations

import math
import re
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


def test_after_a_cut_the_rate_plateaus_at_what_the_service_accepted() -> None:
    """Foreign load left us 35 a second: the probe is flat around 35, not around 50."""
    p = policy()
    for i in range(70):  # two seconds at 35 a second
        p.on_success(9.0 + i / 35)
    assert p.accepted_in_period(10.99) == 35
    p.on_throttle(11.0, own_in_window=50, limit=LIMIT)
    p.on_throttle(11.0, own_in_window=50, limit=LIMIT)
    assert p.on_throttle(11.0, own_in_window=50, limit=LIMIT).rate_lowered
    assert p.rate(11.0) == pytest.approx(0.7 * 35.0, abs=0.71)  # 34 or 35 counted
    k = (35 * 0.3 / 0.4) ** (1 / 3)
    plateau = [p.rate(11.0 + k + d / 10) for d in range(-10, 11)]
    assert all(33.0 < r < 36.0 for r in plateau)  # flat near the accepted share
    assert p.rate(25.0) == 50.0  # and back at the ceiling when nothing throttles


def test_no_share_evidence_before_a_full_period_of_successes() -> None:
    p = policy()
    p.on_success(0.0)
    p.on_success(0.5)
    assert p.accepted_in_period(0.9) is None
    assert p.accepted_in_period(1.2) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"qps": 0.999}, "qps must be a finite number >= 1, got 0.999"),
        ({"qps": math.nan}, "qps must be a finite number >= 1, got nan"),
        ({"period": 0.0}, "period must be a positive number of seconds, got 0.0"),
        ({"period": math.inf}, "period must be a positive number of seconds, got inf"),
        ({"margin": -0.001}, "margin must be >= 0 seconds, got -0.001"),
        ({"margin": math.inf}, "margin must be >= 0 seconds, got inf"),
        ({"max_margin": math.nan}, "max_margin must be >= margin (0.015) seconds, got nan"),
        ({"min_rate": 50.5}, "min_rate must be > 0 and <= qps (50.0), got 50.5"),
        ({"min_rate": math.nan}, "min_rate must be > 0 and <= qps (50.0), got nan"),
        (
            {"retry_after_cap": -0.5},
            "retry_after_cap must be a finite number of seconds >= 0, got -0.5",
        ),
    ],
)
def test_each_bad_setting_is_named_with_its_value(kwargs: dict[str, Any], message: str) -> None:
    settings_: dict[str, Any] = {"qps": 50.0, "margin": 0.015, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        ThrottlePolicy(**settings_)
    assert str(info.value) == message


def test_the_edges_of_every_setting_are_accepted_and_kept() -> None:
    p = ThrottlePolicy(1, 0.5, margin=0.0, max_margin=0.0, min_rate=1, retry_after_cap=0.0)
    assert p.qps == 1.0
    assert p.retry_after_cap == 0.0
    assert p.paused_until == -math.inf
    assert p.margin(0.0) == 0.0
    # A zero cap: a Retry-After never pauses past the throttle itself.
    assert p.on_throttle(1.0, 0, 1, retry_after=3.0).pause_until == 1.0
    assert p.rate(1.0) == 1.0  # min_rate == qps: a cut has nowhere to go


def test_belief_reports_rate_margin_counts_and_pause_at_the_given_time() -> None:
    p = policy(retry_after_cap=2.0)
    p.on_throttle(10.0, own_in_window=50, limit=LIMIT)  # jitter
    p.on_throttle(20.0, own_in_window=10, limit=LIMIT, retry_after=1.0)  # foreign
    belief = p.belief(20.0)
    assert belief.rate == p.rate(20.0) == pytest.approx(35.0)
    assert belief.margin == p.margin(20.0)
    assert belief.margin > 0.015
    assert (belief.jitter_throttles, belief.foreign_throttles) == (1, 1)
    assert belief.paused_until == p.paused_until == 21.0


def test_share_evidence_starts_one_full_period_after_the_first_success() -> None:
    p = policy()
    p.on_success(2.0)
    p.on_success(2.5)
    assert p.accepted_in_period(2.5) is None  # half a period of evidence only
    assert p.accepted_in_period(3.0) == 1  # exactly one period: (2.0, 3.0] holds 2.5 only
    assert p.accepted_in_period(3.6) == 0


def test_the_no_cut_window_ends_exactly_one_period_plus_margin_after_a_cut() -> None:
    p = ThrottlePolicy(50.0, margin=0.0)
    assert p.on_throttle(5.0, own_in_window=10, limit=LIMIT).rate_lowered
    assert not p.on_throttle(5.999, own_in_window=10, limit=LIMIT).rate_lowered
    assert p.on_throttle(6.0, own_in_window=10, limit=LIMIT).rate_lowered  # a new cluster
    q = ThrottlePolicy(50.0, margin=0.0)
    q.on_throttle(5.0, own_in_window=10, limit=LIMIT)
    # At the end of the no-cut window an isolated throttle at our ceiling is jitter again.
    assert q.on_throttle(6.0, own_in_window=50, limit=LIMIT).cause == JITTER


def test_jitter_needs_our_own_count_at_ninety_percent_of_the_limit() -> None:
    assert policy().on_throttle(1.0, own_in_window=45, limit=LIMIT).cause == JITTER
    assert policy().on_throttle(1.0, own_in_window=44, limit=LIMIT).cause == FOREIGN


def test_throttles_persist_only_within_three_seconds() -> None:
    p = policy()
    causes = [p.on_throttle(t, own_in_window=50, limit=LIMIT).cause for t in (1.0, 2.0, 4.0)]
    assert causes == [JITTER, JITTER, JITTER]  # the one at 1.0 is exactly 3 s old at 4.0
    assert p.jitter_throttles == 3
    assert p.foreign_throttles == 0


def test_each_jitter_throttle_widens_by_half_plus_five_milliseconds() -> None:
    p = policy()
    assert p.on_throttle(1.0, own_in_window=50, limit=LIMIT).margin == pytest.approx(0.0275)
    assert p.on_throttle(100.0, own_in_window=50, limit=LIMIT).margin == pytest.approx(
        p.margin(100.0)
    )
    assert p.margin(100.0) > 0.015 * 1.5 + 0.005


def test_the_default_floor_is_one_request_per_period() -> None:
    p = ThrottlePolicy(1.5, margin=0.0)  # a ceiling under 2 is valid with the default floor
    assert p.on_throttle(1.0, own_in_window=0, limit=1).rate == pytest.approx(1.05)
    assert p.rate(1.0) == pytest.approx(1.05)
