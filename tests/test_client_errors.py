"""The client's error paths through its public API: every Tupu code, argument checks,
lifetimes, and ``recognize_one`` groups that fail or lose a caller.

A scripted ``httpx.MockTransport`` answers every request with a signed envelope holding
the code under test, so the client's whole path (send, verify, decode, classify, retry)
runs as it does against the service.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from clients import PNG_1x1, http_client_for, in_process_client
from cryptography.hazmat.primitives.asymmetric import rsa

from tupu_async import (
    AsyncTupuClient,
    AuthenticationError,
    ClockSkewError,
    ConfigurationError,
    Hooks,
    Image,
    ImageResult,
    RateLimitError,
    Region,
    RequestEvent,
    RetryPolicy,
    ServerError,
    TransportError,
    TupuError,
    UnlimitedLimiter,
)
from tupu_async._constants import REGION_HOSTS, USER_AGENT
from tupu_async._signing import sign_message
from tupu_async.testing import FakeTupuServer

pytestmark = pytest.mark.anyio

TUPU_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
CLIENT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
RETRIES = 2
POLICY = RetryPolicy(
    max_retries=RETRIES, max_throttle_retries=RETRIES, backoff_base=0.001, backoff_max=0.002
)

# Every documented code that raises, and the class it must raise.
FATAL: dict[int, type[TupuError]] = {
    1: AuthenticationError,
    2: ConfigurationError,
    3: ConfigurationError,
    4: ConfigurationError,
    5: ConfigurationError,
    6: AuthenticationError,
    7: ConfigurationError,
    8: AuthenticationError,
    9: AuthenticationError,
    10: ConfigurationError,
    11: ConfigurationError,
    12: ClockSkewError,
    13: ConfigurationError,
}
TRANSIENT = (100, 101)


def urls(n: int, prefix: str = "img") -> list[str]:
    return [f"http://img.test/{prefix}/{i}.jpg" for i in range(n)]


class Scripted:
    """A transport answering every request with Tupu code ``code``, recording requests."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        fresh = {"timestamp": int(time.time() * 1000), "nonce": uuid.uuid4().hex}  # not stale
        text = json.dumps({"code": self.code, "message": f"scripted {self.code}", **fresh})
        signature = sign_message(TUPU_KEY, text.encode())
        return httpx.Response(200, json={"json": text, "signature": signature})

    def client(self, **kwargs: Any) -> AsyncTupuClient:
        kwargs.setdefault("retry_policy", POLICY)
        return AsyncTupuClient(
            "scripted-secret",
            CLIENT_KEY,
            base_url="http://tupu.test",
            tupu_public_key=TUPU_KEY.public_key(),
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(self.handle)),
            **kwargs,
        )


# --------------------------------------------------------------------- every code


@pytest.mark.parametrize(("code", "cls"), sorted(FATAL.items()))
async def test_each_fatal_code_raises_its_class_without_a_retry(
    code: int, cls: type[TupuError]
) -> None:
    scripted = Scripted(code)
    async with scripted.client() as client:
        with pytest.raises(cls) as info:
            await client.recognize(urls(2))
    assert type(info.value) is cls
    assert getattr(info.value, "code", None) == code
    assert f"Tupu code {code}" in str(info.value)
    assert len(scripted.requests) == 1  # never retried
    assert client.stats.retries == 0


@pytest.mark.parametrize(("code", "cls"), sorted(FATAL.items()))
async def test_each_fatal_code_stops_a_batch_run(code: int, cls: type[TupuError]) -> None:
    scripted = Scripted(code)
    async with scripted.client(max_in_flight=1) as client:
        with pytest.raises(cls):
            await client.recognize_many(urls(40))
    assert len(scripted.requests) == 1  # the first answer stops the run


@pytest.mark.parametrize(("code", "cls"), sorted(FATAL.items()))
async def test_each_fatal_code_reaches_every_coalesced_caller(
    code: int, cls: type[TupuError]
) -> None:
    scripted = Scripted(code)
    errors: list[BaseException] = []

    async def one(url: str) -> None:
        try:
            await client.recognize_one(url)
        except TupuError as exc:
            errors.append(exc)

    async with (
        scripted.client(max_images_per_request=4, batch_linger=30) as client,
        anyio.create_task_group() as tg,
    ):
        for url in urls(4):
            tg.start_soon(one, url)
    assert [type(e) for e in errors] == [cls] * 4
    assert len(scripted.requests) == 1  # one shared request, not retried


@pytest.mark.parametrize("code", TRANSIENT)
async def test_transient_codes_are_retried_then_raise(code: int) -> None:
    scripted = Scripted(code)
    async with scripted.client() as client:
        with pytest.raises(ServerError) as info:
            await client.recognize(urls(2))
    assert info.value.code == code
    assert len(scripted.requests) == 1 + RETRIES
    assert client.stats.retries == RETRIES


@pytest.mark.parametrize("code", TRANSIENT)
async def test_transient_codes_fail_each_image_of_a_batch_run(code: int) -> None:
    scripted = Scripted(code)
    async with scripted.client(max_in_flight=1) as client:
        results = await client.recognize_many(urls(12))
    assert [r.index for r in results] == list(range(12))  # every image back exactly once
    assert all(isinstance(r.error, ServerError) and r.error.code == code for r in results)
    assert len(scripted.requests) == 2 * (1 + RETRIES)  # two requests (10 + 2), each retried


@pytest.mark.parametrize("code", TRANSIENT)
async def test_a_coalesced_group_that_keeps_failing_returns_failed_results(code: int) -> None:
    scripted = Scripted(code)
    results: list[ImageResult] = []

    async def one(url: str) -> None:
        results.append(await client.recognize_one(url))

    async with (
        scripted.client(max_images_per_request=3, batch_linger=30) as client,
        anyio.create_task_group() as tg,
    ):
        for url in urls(3):
            tg.start_soon(one, url)
    assert sorted(r.name for r in results) == urls(3)
    assert all(r.index == 0 and isinstance(r.error, ServerError) for r in results)
    assert len(scripted.requests) == 1 + RETRIES


# ----------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_images_per_request": 0}, "max_images_per_request must be a positive int"),
        ({"max_images_per_request": 2.5}, "max_images_per_request must be a positive int"),
        ({"qps": 0}, "qps must be positive"),
        ({"qps": -3}, "qps must be positive"),
        ({"max_retries": -1}, "max_retries must be >= 0"),
        ({"max_in_flight": 0}, "max_in_flight must be >= 1"),
        ({"batch_linger": -0.5}, "batch_linger must be >= 0"),
        ({"region": "mars"}, "unknown region 'mars'"),
        ({"base_url": "tupu.test"}, "is not an http:// or https:// URL with a host"),
        ({"base_url": "ftp://tupu.test"}, "is not an http:// or https:// URL with a host"),
    ],
)
def test_bad_constructor_arguments_say_what_to_pass(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        AsyncTupuClient("sid", CLIENT_KEY, **kwargs)


@pytest.mark.parametrize(
    ("region", "host"),
    [
        (Region.US, REGION_HOSTS[Region.US]),
        (" Oversea ", REGION_HOSTS[Region.OVERSEA]),
        ("cn", REGION_HOSTS[Region.CN]),
    ],
)
def test_regions_by_enum_or_name_pick_their_host(region: Region | str, host: str) -> None:
    client = AsyncTupuClient("sid", CLIENT_KEY, region=region)
    assert client.base_url == host.rstrip("/")
    assert isinstance(client.region, Region)


def test_base_url_wins_over_region_and_loses_its_trailing_slash() -> None:
    client = AsyncTupuClient("sid", CLIENT_KEY, region="us", base_url="https://proxy.test/")
    assert client.base_url == "https://proxy.test"


async def test_a_bad_transport_is_refused_by_every_call_before_sending() -> None:
    scripted = Scripted(0)
    async with scripted.client() as client:
        with pytest.raises(ValueError, match="transport must be 'multipart' or 'base64'"):
            await client.recognize(urls(1), transport="xml")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="transport must be"):
            await client.recognize_many(urls(1), transport="json")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="transport must be"):
            async for _ in client.iter_recognize(urls(1), transport="url"):  # type: ignore[arg-type]
                pass
        with pytest.raises(ValueError, match="transport must be"):
            await client.recognize_one(urls(1)[0], transport="")  # type: ignore[arg-type]
    assert scripted.requests == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"tasks": ["ok", " "]}, "tasks must be non-empty task id strings"),
        ({"tasks": [7]}, "tasks must be non-empty task id strings"),
        ({"referer": b"http://site.test"}, "referer must be a str"),
        ({"tags": ["fine", 3]}, "tags must be strings"),
    ],
)
async def test_bad_call_options_are_refused_before_sending(
    kwargs: dict[str, Any], words: str
) -> None:
    scripted = Scripted(0)
    async with scripted.client() as client:
        with pytest.raises(ValueError, match=words):
            await client.recognize_many(urls(3), **kwargs)
    assert scripted.requests == []


# ------------------------------------------------------------------------ lifetimes


async def test_a_closed_client_cannot_be_entered_or_used_again() -> None:
    scripted = Scripted(0)
    client = scripted.client()
    async with client:
        assert (await client.recognize(urls(1))).code == 0
    await client.aclose()  # closing twice is harmless

    with pytest.raises(RuntimeError, match="closed; create a new one"):
        async with client:
            pass
    with pytest.raises(RuntimeError, match="async with"):
        await client.recognize_one(urls(1)[0])
    with pytest.raises(RuntimeError, match="async with"):
        async for _ in client.iter_recognize(urls(1)):
            pass
    assert len(scripted.requests) == 1


class Boom(BaseException):
    """Not an ``Exception``: background work lets it through rather than report it."""


async def test_aclose_reraises_an_error_of_background_work_and_still_cleans_up() -> None:
    def explode(event: RequestEvent) -> None:
        raise Boom("from a hook")

    client = AsyncTupuClient(
        "sid",
        CLIENT_KEY,
        base_url="http://tupu.invalid",  # never reached: the hook fires first
        hooks=Hooks(on_request=explode),
        batch_linger=0,
    )
    http = client._http  # the client opened it, so the client must close it
    await client.__aenter__()
    with pytest.raises(Boom):
        await client.recognize_one(urls(1)[0])  # the caller hears of it
    with pytest.raises(Boom, match="from a hook"):
        await client.aclose()  # and so does whoever closes the client
    assert http.is_closed  # the connections it opened are closed all the same


# ------------------------------------------------------- recognize_one: lost callers


async def test_a_caller_cancelled_before_its_group_is_sent_is_left_out() -> None:
    server = FakeTupuServer(qps_limit=None)
    results: dict[str, ImageResult] = {}
    leaving = anyio.CancelScope()

    async def one(url: str) -> None:
        results[url] = await client.recognize_one(url)

    async def leaves(url: str) -> None:
        with leaving:
            await client.recognize_one(url)

    gone, *staying = urls(4, "group")
    async with (
        in_process_client(server, max_images_per_request=3, batch_linger=30, qps=1000) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(one, staying[0])
        tg.start_soon(leaves, gone)
        await anyio.wait_all_tasks_blocked()  # both wait in one group of 3
        leaving.cancel()
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(one, staying[1])
        tg.start_soon(one, staying[2])  # the group is full only without `gone`
    assert leaving.cancelled_caught
    assert sorted(results) == sorted(staying)
    assert all(r.ok for r in results.values())
    assert [sorted(r.names) for r in server.requests] == [sorted(staying)]  # type: ignore[type-var]


async def test_a_caller_cancelled_after_its_group_is_sent_leaves_the_others_served() -> None:
    server = FakeTupuServer(qps_limit=None)
    results: dict[str, ImageResult] = {}
    leaving = anyio.CancelScope()
    hooks = Hooks(on_request=lambda event: leaving.cancel())  # the request is under way

    async def one(url: str) -> None:
        results[url] = await client.recognize_one(url)

    async def leaves(url: str) -> None:
        with leaving:
            await client.recognize_one(url)

    gone, *staying = urls(3, "sent")
    async with (
        in_process_client(
            server, max_images_per_request=3, batch_linger=30, qps=1000, hooks=hooks
        ) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(leaves, gone)
        for url in staying:
            tg.start_soon(one, url)
    assert leaving.cancelled_caught
    assert sorted(results) == sorted(staying)
    assert all(r.ok and r.index == 0 for r in results.values())
    assert [sorted(r.names) for r in server.requests] == [sorted([gone, *staying])]  # type: ignore[type-var]


# ------------------------------------------------------------- what goes on the wire


class StatusScripted(Scripted):
    """Answers with HTTP ``status``: a signed envelope of code 0, or ``body`` when given."""

    def __init__(self, status: int, body: bytes | None = None) -> None:
        super().__init__(0)
        self.status = status
        self.body = body

    def handle(self, request: httpx.Request) -> httpx.Response:
        answer = super().handle(request)
        content = answer.content if self.body is None else self.body
        return httpx.Response(self.status, content=content)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_transient_status_is_retried_even_with_a_valid_envelope(status: int) -> None:
    scripted = StatusScripted(status)
    async with scripted.client(limiter=UnlimitedLimiter()) as client:
        with pytest.raises(TupuError) as info:
            await client.recognize(urls(1))
    assert getattr(info.value, "status_code", None) == status
    assert len(scripted.requests) == 1 + RETRIES


async def test_a_gateway_page_is_quoted_in_the_error() -> None:
    scripted = StatusScripted(502, b"<html>  bad\n gateway </html>")
    async with scripted.client() as client:
        with pytest.raises(ServerError) as info:
            await client.recognize(urls(1))
    assert "body: '<html> bad gateway </html>'" in str(info.value)


@pytest.mark.parametrize(
    ("transport", "content_type"),
    [("multipart", "multipart/form-data; boundary="), ("base64", "application/json")],
)
async def test_every_request_names_its_content_type_and_the_client(
    transport: str, content_type: str
) -> None:
    scripted = Scripted(0)
    async with scripted.client() as client:
        for _ in range(2):  # the second request reuses the headers of the first
            await client.recognize([Image.from_bytes(PNG_1x1)], transport=transport)  # type: ignore[arg-type]
    for request in scripted.requests:
        assert request.headers["Content-Type"].startswith(content_type)
        assert request.headers["User-Agent"] == USER_AGENT
    boundaries = {r.headers["Content-Type"] for r in scripted.requests}
    assert len(boundaries) == (2 if transport == "multipart" else 1)  # a fresh boundary each


async def test_hook_events_name_the_endpoint_but_not_the_secret_id() -> None:
    paths: list[str] = []
    scripted = Scripted(0)
    hooks = Hooks(on_request=lambda event: paths.append(event.path))
    async with scripted.client(hooks=hooks) as client:
        await client.recognize(urls(1))
    assert paths == ["/v3/recognition/<secretId>"]
    assert scripted.requests[0].url.path == "/v3/recognition/scripted-secret"


class SentRecorder(UnlimitedLimiter):
    """A limiter whose permits want to hear when their request body is on the wire."""

    def __init__(self) -> None:
        self.granted = 0
        self.sent = 0

    async def acquire(self) -> Callable[[], None]:  # type: ignore[override]
        await anyio.lowlevel.checkpoint()
        self.granted += 1

        def mark_sent() -> None:
            self.sent += 1

        return mark_sent


async def test_the_limiter_hears_once_per_request_when_its_body_was_sent() -> None:
    server = FakeTupuServer(qps_limit=None)
    limiter = SentRecorder()
    with server.serve_in_thread() as base_url:
        async with http_client_for(server, base_url, limiter=limiter) as client:
            await client.recognize(urls(3))
            await client.recognize([Image.from_bytes(PNG_1x1)], transport="base64")
    assert limiter.granted == 2
    assert limiter.sent == 2


async def test_each_attempt_is_logged_at_debug_without_the_secret_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scripted = Scripted(0)
    async with scripted.client() as client:
        with caplog.at_level(logging.DEBUG, logger="tupu_async"):
            await client.recognize(urls(2))
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("POST ")]
    assert line.startswith("POST /v3/recognition/<secretId> (2 images, attempt 0, ")
    assert line.endswith(" bytes, signature=***)")


async def test_an_attempt_that_got_no_answer_reports_no_status() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    events: list[RequestEvent] = []
    client = AsyncTupuClient(
        "sid",
        CLIENT_KEY,
        base_url="http://tupu.test",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(refuse)),
        retry_policy=POLICY,
        hooks=Hooks(on_response=events.append, on_retry=events.append),
    )
    async with client:
        with pytest.raises(TransportError):
            await client.recognize(urls(1))
    assert len(events) == 1 + RETRIES + RETRIES  # a response event per attempt, a retry per retry
    assert all(e.status_code is None and isinstance(e.error, TransportError) for e in events)


class Sequence429(Scripted):
    """Answers HTTP 429 (Retry-After 0.01), then 503, then a signed success."""

    def __init__(self) -> None:
        super().__init__(0)
        self.answers = [(429, {"Retry-After": "0.01"}), (503, {})]

    def handle(self, request: httpx.Request) -> httpx.Response:
        answer = super().handle(request)
        if self.answers:
            status, headers = self.answers.pop(0)
            return httpx.Response(status, headers=headers, text="busy")
        return answer


class ThrottleRecorder(UnlimitedLimiter):
    def __init__(self) -> None:
        self.throttles: list[float | None] = []

    async def on_throttle(self, retry_after: float | None = None) -> None:
        self.throttles.append(retry_after)
        await anyio.lowlevel.checkpoint()


async def test_every_attempt_is_reported_to_hooks_stats_limiter_and_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, RequestEvent]] = []
    hooks = Hooks(
        on_response=lambda e: seen.append(("response", e)),
        on_throttle=lambda e: seen.append(("throttle", e)),
        on_retry=lambda e: seen.append(("retry", e)),
    )
    scripted = Sequence429()
    limiter = ThrottleRecorder()
    async with scripted.client(hooks=hooks, limiter=limiter) as client:
        with caplog.at_level(logging.INFO, logger="tupu_async"):
            response = await client.recognize(urls(2))
        stats = client.stats
    assert response.code == 0
    path = "/v3/recognition/<secretId>"
    assert [(k, e.path, e.images, e.attempt, e.status_code) for k, e in seen] == [
        ("response", path, 2, 0, 429),
        ("throttle", path, 2, 0, 429),
        ("retry", path, 2, 0, 429),
        ("response", path, 2, 1, 503),
        ("retry", path, 2, 1, 503),
        ("response", path, 2, 2, 200),
    ]
    throttle = seen[1][1]
    assert throttle.delay == 0.01  # the service's Retry-After
    assert isinstance(throttle.error, RateLimitError)
    assert all(e.elapsed is not None and 0 <= e.elapsed < 30 for _, e in seen)
    assert all(e.delay is not None and e.delay >= 0 for k, e in seen if k == "retry")
    assert seen[2][1].delay is not None
    assert seen[2][1].delay >= 0.01  # Retry-After is a floor
    assert limiter.throttles == [0.01]
    assert (stats.throttles, stats.retries, stats.failures) == (1, 2, 0)
    messages = [r.getMessage() for r in caplog.records]
    assert "throttled by Tupu (HTTP 429, Retry-After 0.01s); the limiter adapts" in messages
    retries = [m for m in messages if m.startswith(f"retrying {path} in ")]
    assert len(retries) == 2
    assert "s (429 re-send 1 of 2): HTTP 429: the secret id is over its QPS limit" in retries[0]
    assert "s (attempt 1 of 2): HTTP 503 from Tupu" in retries[1]


async def test_giving_up_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    scripted = StatusScripted(429)  # no Retry-After: re-sent at once, the limiter adapts
    limiter = ThrottleRecorder()
    async with scripted.client(limiter=limiter) as client:
        with caplog.at_level(logging.INFO, logger="tupu_async"):
            for _ in range(2):
                with pytest.raises(RateLimitError):
                    await client.recognize(urls(2))
        stats = client.stats
    attempts = 2 * (1 + RETRIES)
    assert (stats.throttles, stats.retries, stats.failures) == (attempts, 2 * RETRIES, 2)
    assert limiter.throttles == [None] * attempts
    messages = [r.getMessage() for r in caplog.records]
    assert "throttled by Tupu (HTTP 429, Retry-After none); the limiter adapts" in messages
    giving_up = "giving up on /v3/recognition/<secretId> (2 images) after 3 attempts: HTTP 429"
    assert sum(m.startswith(giving_up) for m in messages) == 2
