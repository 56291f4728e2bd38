"""Replayed and stale signed responses: refused by the client, optional for callbacks.

A man-in-the-middle transport sits between the client and the fake server: it records
every answer and can replace the next one with a byte-identical earlier answer, a stale
one signed by the server's own key, or the real 2018 response signed by Tupu.
"""

from __future__ import annotations

import pathlib
import time

import httpx
import msgspec
import pytest
from clients import FAST_RETRIES

from tupu_async import (
    AsyncTupuClient,
    ReplayedResponseError,
    SignatureVerificationError,
    StaleResponseError,
    verify_envelope,
)
from tupu_async._freshness import ReplayGuard, check_age, timestamp_seconds
from tupu_async.testing import FakeTupuServer
from tupu_async.testing._responses import envelope_body

VECTORS = pathlib.Path(__file__).parent / "vectors"
BODY_2018 = (VECTORS / "real-response-2018.json").read_bytes()
BODY_2023 = (VECTORS / "real-callback-2023.json").read_bytes()


class ManInTheMiddle(httpx.AsyncBaseTransport):
    """Forwards to ``inner``; records each answer; answers ``forged`` instead when set."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.captured: list[bytes] = []
        self.forged: bytes | None = None
        self.forwarded = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.forwarded += 1
        self.captured.append(body)
        if self.forged is not None:
            body = self.forged
        return httpx.Response(
            response.status_code,
            headers={"content-type": "application/json"},
            content=body,
        )


def mitm_client(server: FakeTupuServer, mitm: ManInTheMiddle, **kwargs: object) -> AsyncTupuClient:
    sid, key = server.add_credentials("mitm-secret")
    kwargs.setdefault("tupu_public_key", server.public_key_pem)
    return AsyncTupuClient(
        sid,
        key,
        base_url="http://fake.tupu.test",
        http_client=httpx.AsyncClient(transport=mitm),
        retry_policy=FAST_RETRIES,
        **kwargs,  # type: ignore[arg-type]
    )


def stale_envelope(server: FakeTupuServer, age_seconds: float) -> bytes:
    """A well-signed recognition answer for one URL whose timestamp is ``age_seconds`` old."""
    inner = {
        "code": 0,
        "message": "success",
        "nonce": "0.123",
        "requestId": "stale-request",
        "timestamp": int((time.time() - age_seconds) * 1000),
        "54bcfc6c329af61034f7c2fc": {
            "fileList": [{"name": "http://img.test/a.jpg", "label": 2, "rate": 0.9}],
            "statistic": [0, 0, 1],
        },
    }
    return envelope_body(server.signing_key, inner)


# --- through the client ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_byte_identical_replay_is_refused() -> None:
    server = FakeTupuServer(qps_limit=None)
    mitm = ManInTheMiddle(server.transport())
    async with mitm_client(server, mitm) as client:
        first = await client.recognize_many(["http://img.test/a.jpg"])
        assert first[0].ok
        mitm.forged = mitm.captured[0]  # the same bytes again, valid signature and all
        with pytest.raises(ReplayedResponseError, match="already accepted") as info:
            await client.recognize_many(["http://img.test/a.jpg"])
        with pytest.raises(ReplayedResponseError):
            await client.recognize(["http://img.test/a.jpg"])
    assert isinstance(info.value, SignatureVerificationError)
    assert mitm.forwarded == 3  # fatal: refused once per call, never retried


@pytest.mark.anyio
async def test_a_stale_signed_response_is_refused() -> None:
    server = FakeTupuServer(qps_limit=None)
    mitm = ManInTheMiddle(server.transport())
    mitm.forged = stale_envelope(server, age_seconds=3600)
    async with mitm_client(server, mitm) as client:
        with pytest.raises(StaleResponseError, match="3600 s old") as info:
            await client.recognize_many(["http://img.test/a.jpg"])
    assert isinstance(info.value, SignatureVerificationError)
    assert "NTP" in str(info.value)
    assert "https://" in str(info.value)
    assert mitm.forwarded == 1


@pytest.mark.anyio
async def test_a_response_from_the_future_is_refused() -> None:
    server = FakeTupuServer(qps_limit=None)
    mitm = ManInTheMiddle(server.transport())
    mitm.forged = stale_envelope(server, age_seconds=-3600)
    async with mitm_client(server, mitm) as client:
        with pytest.raises(StaleResponseError, match="in the future"):
            await client.recognize(["http://img.test/a.jpg"])


@pytest.mark.anyio
async def test_the_real_2018_response_is_not_todays_answer() -> None:
    server = FakeTupuServer(qps_limit=None)
    mitm = ManInTheMiddle(server.transport())
    mitm.forged = BODY_2018  # signed by the real Tupu key, which the client trusts by default
    async with mitm_client(server, mitm, tupu_public_key=None) as client:
        with pytest.raises(StaleResponseError):
            await client.recognize_many(["http://img.test/a.jpg"])


@pytest.mark.anyio
async def test_a_response_within_max_age_is_accepted_and_the_window_is_configurable() -> None:
    server = FakeTupuServer(qps_limit=None)
    mitm = ManInTheMiddle(server.transport())
    mitm.forged = stale_envelope(server, age_seconds=120)
    async with mitm_client(server, mitm) as client:  # default 600 s
        assert (await client.recognize_many(["http://img.test/a.jpg"]))[0].ok
    async with mitm_client(server, mitm, response_max_age=60) as client:
        with pytest.raises(StaleResponseError, match="max_age=60"):
            await client.recognize_many(["http://img.test/a.jpg"])


@pytest.mark.anyio
async def test_response_max_age_none_turns_the_freshness_checks_off() -> None:
    server = FakeTupuServer(qps_limit=None)
    mitm = ManInTheMiddle(server.transport())
    async with mitm_client(server, mitm, response_max_age=None) as client:
        await client.recognize_many(["http://img.test/a.jpg"])
        mitm.forged = mitm.captured[0]
        assert (await client.recognize_many(["http://img.test/a.jpg"]))[0].ok
        mitm.forged = stale_envelope(server, age_seconds=10 * 365 * 86400)
        assert (await client.recognize_many(["http://img.test/a.jpg"]))[0].ok


@pytest.mark.anyio
async def test_fresh_answers_from_the_fake_server_all_pass() -> None:
    server = FakeTupuServer(qps_limit=None)
    mitm = ManInTheMiddle(server.transport())
    urls = [f"http://img.test/{i}.jpg" for i in range(200)]
    async with mitm_client(server, mitm, max_images_per_request=2) as client:
        results = await client.recognize_many(urls)
        one = [await client.recognize_one(u) for u in urls[:5]]
    assert all(r.ok for r in results + one)
    assert len(set(mitm.captured)) == len(mitm.captured) >= 105


def test_the_client_rejects_a_non_positive_max_age() -> None:
    server = FakeTupuServer(qps_limit=None)
    sid, key = server.add_credentials("x")
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="response_max_age"):
            AsyncTupuClient(sid, key, response_max_age=bad)


# --- verify_envelope --------------------------------------------------------------------------


def test_the_real_vectors_verify_without_max_age() -> None:
    assert verify_envelope(BODY_2018).code == 0
    assert verify_envelope(BODY_2023).code == 0


def test_verify_envelope_with_max_age_refuses_old_envelopes() -> None:
    for body in (BODY_2018, BODY_2023):
        with pytest.raises(StaleResponseError, match="old by the local clock"):
            verify_envelope(body, max_age=600)


def test_verify_envelope_with_max_age_accepts_a_fresh_envelope() -> None:
    server = FakeTupuServer()
    fresh = stale_envelope(server, age_seconds=5)
    response = verify_envelope(fresh, server.public_key_pem, max_age=60)
    assert response.request_id == "stale-request"
    with pytest.raises(ValueError, match="max_age"):
        verify_envelope(fresh, server.public_key_pem, max_age=0)


def test_verify_envelope_max_age_refuses_an_envelope_without_timestamp() -> None:
    server = FakeTupuServer()
    body = envelope_body(server.signing_key, {"code": 0, "message": "success"})
    assert verify_envelope(body, server.public_key_pem).timestamp is None
    with pytest.raises(StaleResponseError, match="no timestamp"):
        verify_envelope(body, server.public_key_pem, max_age=60)


# --- the guard itself ------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_timestamps_in_seconds_and_milliseconds() -> None:
    assert timestamp_seconds(1_700_000_000_123) == pytest.approx(1_700_000_000.123)
    assert timestamp_seconds(1_700_000_000) == 1_700_000_000.0
    assert check_age(1_700_000_000, 10, 1_700_000_005.0) == 1_700_000_000.0


def test_the_guard_accepts_each_answer_once() -> None:
    clock = Clock(1_700_000_000.0)
    guard = ReplayGuard(600, clock=clock)
    ts = 1_700_000_000_000
    guard.check(ts, "n1", "text-1")
    guard.check(ts, "n2", "text-2")  # same millisecond, another answer
    guard.check(ts, "n1", "text-3")  # same pair, other signed text: another answer
    with pytest.raises(ReplayedResponseError):
        guard.check(ts, "n1", "text-1")
    assert len(guard) == 3


def test_the_guard_forgets_answers_once_they_are_stale_anyway() -> None:
    clock = Clock(1_700_000_000.0)
    guard = ReplayGuard(60, clock=clock)
    for i in range(1000):
        clock.now += 0.1
        guard.check(int(clock.now * 1000), str(i), f"text-{i}")
    assert len(guard) <= 601  # only the last 60 s are remembered
    first = 1_700_000_000_100
    with pytest.raises(StaleResponseError):
        guard.check(first, "0", "text-0")  # forgotten, and refused as stale instead


def test_the_guard_cap_never_lets_an_evicted_answer_through() -> None:
    clock = Clock(1_700_000_000.0)
    guard = ReplayGuard(600, max_entries=10, clock=clock)
    stamps = [1_700_000_000_000 + i for i in range(30)]
    for i, ts in enumerate(stamps):
        guard.check(ts, str(i), f"text-{i}")
    assert len(guard) == 10
    with pytest.raises(ReplayedResponseError):
        guard.check(stamps[0], "0", "text-0")  # evicted, but at or below the floor
    guard.check(stamps[-1] + 1, "new", "text-new")  # newer answers still pass


def test_the_guard_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_age"):
        ReplayGuard(0)
    with pytest.raises(ValueError, match="max_entries"):
        ReplayGuard(10, max_entries=0)


def test_a_decoded_vector_timestamp_is_milliseconds() -> None:
    inner = msgspec.json.decode(msgspec.json.decode(BODY_2018)["json"])
    assert inner["timestamp"] > 100_000_000_000
