"""Observability: event hooks, the ``tupu_async`` logger, ``client.stats`` and TUPU_LOG."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tupu_async import Image, RateLimitError
from tupu_async._client import AsyncTupuClient
from tupu_async._events import ClientStats, Hooks, RequestEvent
from tupu_async._retry import RetryPolicy
from tupu_async._throttle_policy import ThrottlePolicy
from tupu_async.testing import FakeTupuServer, FaultConfig

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
FAST_RETRIES = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.05)


class Recorder:
    """Every hook event, by hook name, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, RequestEvent]] = []

    def hooks(self) -> Hooks:
        return Hooks(
            on_request=lambda e: self.events.append(("request", e)),
            on_response=lambda e: self.events.append(("response", e)),
            on_retry=lambda e: self.events.append(("retry", e)),
            on_throttle=lambda e: self.events.append(("throttle", e)),
        )

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[RequestEvent]:
        return [e for n, e in self.events if n == name]


class SignatureSpy(httpx.AsyncBaseTransport):
    """Passes requests to the fake server and keeps every signature that went out."""

    _JSON = re.compile(rb'"signature":"([^"]+)"')
    _FORM = re.compile(rb'name="signature"\r\n\r\n([^\r\n]+)')

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.signatures: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        found = self._JSON.findall(body) + self._FORM.findall(body)
        self.signatures += [s.decode() for s in found]
        return await self.inner.handle_async_request(request)


@pytest.fixture
def server() -> FakeTupuServer:
    return FakeTupuServer(qps_limit=None, faults=FaultConfig(retry_after=0.05))


@contextlib.asynccontextmanager
async def make_client(
    server: FakeTupuServer,
    transport: httpx.AsyncBaseTransport | None = None,
    credentials: tuple[str, bytes] | None = None,
    **options: object,
) -> AsyncIterator[AsyncTupuClient]:
    secret_id, key = credentials or server.add_credentials()
    options.setdefault("retry_policy", FAST_RETRIES)
    async with (
        httpx.AsyncClient(transport=transport or server.transport()) as http,
        AsyncTupuClient(
            secret_id,
            key,
            base_url="http://fake",
            tupu_public_key=server.public_key_pem,
            http_client=http,
            **options,  # type: ignore[arg-type]
        ) as client,
    ):
        yield client


# ---------------------------------------------------------------------------- hooks


@pytest.mark.anyio
async def test_hooks_see_each_request_and_response(server: FakeTupuServer) -> None:
    recorder = Recorder()

    async with make_client(server, hooks=recorder.hooks()) as client:
        await client.recognize([f"http://images.test/{i}.jpg" for i in range(7)])

    assert recorder.names() == ["request", "response"]
    request, response = recorder.of("request")[0], recorder.of("response")[0]
    assert request.path.startswith("/v3/recognition/")
    assert (request.images, request.attempt, request.status_code) == (7, 0, None)
    assert (response.images, response.attempt, response.status_code) == (7, 0, 200)
    assert response.elapsed is not None
    assert response.elapsed >= 0
    assert response.error is None


@pytest.mark.anyio
async def test_hooks_see_a_retry_with_its_delay_and_error(server: FakeTupuServer) -> None:
    recorder = Recorder()
    server.inject("http_500")

    async with make_client(server, hooks=recorder.hooks()) as client:
        await client.recognize(["http://images.test/a.jpg"])

    assert recorder.names() == ["request", "response", "retry", "request", "response"]
    failed, retry = recorder.of("response")[0], recorder.of("retry")[0]
    assert failed.status_code == 500
    assert failed.error is not None
    assert retry.attempt == 0
    assert retry.delay is not None
    assert 0 <= retry.delay <= FAST_RETRIES.backoff_max
    assert type(retry.error).__name__ == "ServerError"
    assert [e.attempt for e in recorder.of("request")] == [0, 1]
    assert recorder.of("response")[1].status_code == 200


@pytest.mark.anyio
async def test_hooks_see_a_throttle_with_the_pause(server: FakeTupuServer) -> None:
    recorder = Recorder()
    server.inject("http_429")

    async with make_client(server, hooks=recorder.hooks()) as client:
        await client.recognize(["http://images.test/a.jpg"])

    assert recorder.names() == ["request", "response", "throttle", "retry", "request", "response"]
    throttle = recorder.of("throttle")[0]
    assert throttle.status_code == 429
    assert throttle.delay == pytest.approx(0.05)  # the Retry-After the server sent


@pytest.mark.anyio
async def test_a_hook_that_raises_is_logged_and_traffic_goes_on(
    server: FakeTupuServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: RequestEvent) -> None:
        raise RuntimeError("metrics backend down")

    with caplog.at_level(logging.ERROR, logger="tupu_async"):
        async with make_client(server, hooks=Hooks(on_request=broken)) as client:
            response = await client.recognize(["http://images.test/a.jpg"])

    assert response.images[0].ok
    assert any("on_request hook raised" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- logging


@pytest.mark.anyio
async def test_retries_are_logged_at_info_with_the_delay(
    server: FakeTupuServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.inject("http_502", "code_100")

    with caplog.at_level(logging.INFO, logger="tupu_async"):
        async with make_client(server) as client:
            await client.recognize(["http://images.test/a.jpg"])

    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(retries) == 2
    assert all(r.levelno == logging.INFO and r.name == "tupu_async" for r in retries)
    for record in retries:
        assert re.search(r" in \d+\.\d\ds \(attempt \d of 3\)", record.getMessage())


@pytest.mark.anyio
async def test_a_throttle_is_logged_as_a_warning(
    server: FakeTupuServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.inject("http_429")

    with caplog.at_level(logging.INFO, logger="tupu_async"):
        async with make_client(server) as client:
            await client.recognize(["http://images.test/a.jpg"])

    (throttled,) = [r for r in caplog.records if "throttled" in r.getMessage()]
    assert throttled.levelno == logging.WARNING
    assert "0.05s" in throttled.getMessage()


@pytest.mark.anyio
async def test_debug_logs_never_contain_signatures_or_key_material(
    server: FakeTupuServer, caplog: pytest.LogCaptureFixture
) -> None:
    spy = SignatureSpy(server.transport())
    server.inject("http_500")  # a retry: one more signature, one more log line
    credentials = server.add_credentials("logged")
    private_pem = credentials[1].decode()

    with caplog.at_level(logging.DEBUG):  # every logger, httpx's included
        async with make_client(server, spy, credentials) as client:
            await client.recognize_many([f"http://images.test/{i}.jpg" for i in range(12)])
            await client.recognize_many([Image.from_bytes(PNG, name=f"{i}.png") for i in range(3)])
            await client.recognize_many([PNG], transport="base64")

    text = "\n".join(r.getMessage() for r in caplog.records)
    debug = [r for r in caplog.records if r.name == "tupu_async" and r.levelno == logging.DEBUG]
    assert len(spy.signatures) == 5  # 2 URL requests (+1 retry), multipart, base64
    assert len(debug) >= len(spy.signatures)
    assert all("signature=***" in r.getMessage() for r in debug if "POST" in r.getMessage())
    for signature in spy.signatures:
        assert signature not in text
        assert signature[:24] not in text
    for line in private_pem.splitlines()[1:-1]:
        assert line not in text
    assert "PRIVATE KEY" not in text


# ----------------------------------------------------------------------------- stats


@pytest.mark.anyio
async def test_stats_count_requests_images_retries_and_failures(server: FakeTupuServer) -> None:
    one_retry = RetryPolicy(max_retries=1, backoff_base=0.01, backoff_max=0.05)
    async with make_client(server, retry_policy=one_retry) as client:
        before = client.stats
        server.inject("http_500")
        await client.recognize_many([f"http://images.test/{i}.jpg" for i in range(25)])
        middle = client.stats
        server.inject("http_500", "http_500")
        (failed,) = await client.recognize_many(["http://images.test/z.jpg"])
        after = client.stats

    assert before == ClientStats(limiter=before.limiter)
    assert before.limiter is not None
    assert before.limiter.rate == 50.0
    assert before.limiter.jitter_throttles + before.limiter.foreign_throttles == 0
    assert middle.requests == 4  # 3 requests, one retried
    assert middle.responses == 4
    assert middle.images == 25
    assert middle.retries == 1
    assert middle.failures == 0
    assert middle.in_flight == 0
    assert middle.status_codes == {200: 3, 500: 1}
    assert not failed.ok
    assert after.failures == 1
    assert after.retries == 2
    assert after.status_codes[500] == 3


@pytest.mark.anyio
async def test_stats_is_a_snapshot(server: FakeTupuServer) -> None:
    async with make_client(server) as client:
        before = client.stats
        scribbled = client.stats
        scribbled.requests = 99
        scribbled.status_codes[200] = 99
        await client.recognize(["http://images.test/a.jpg"])

        assert client.stats.requests == 1  # writing to a snapshot changes nothing
        assert client.stats.status_codes == {200: 1}
        assert before.requests == 0  # and a snapshot does not follow the client
        assert before.status_codes == {}


# ------------------------------------------------------------------------- TUPU_LOG


@pytest.mark.parametrize(("value", "level"), [("debug", 10), ("INFO", 20), ("", 0), ("loud", 0)])
def test_tupu_log_sets_the_logger_level(value: str, level: int) -> None:
    code = (
        "import json, logging, tupu_async; print(json.dumps(logging.getLogger('tupu_async').level))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TUPU_LOG": value},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert json.loads(proc.stdout) == level


@pytest.mark.anyio
async def test_stats_and_debug_log_say_what_the_limiter_believes_after_a_429(
    server: FakeTupuServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.inject("http_429")

    with caplog.at_level(logging.DEBUG, logger="tupu_async"):
        async with make_client(server) as client:
            started = time.monotonic()  # the limiter's clock
            await client.recognize(["http://images.test/a.jpg"])
            stats = client.stats
            elapsed = time.monotonic() - started
            qps = client.limiter.qps

    belief = stats.limiter
    assert belief is not None
    # One request in the window, far under the limit: capacity spent by someone else.
    assert (belief.jitter_throttles, belief.foreign_throttles) == (0, 1)
    # The 429 cut the rate to 0.7 of the ceiling; since then it has probed back up along
    # the CUBIC curve, for less than `elapsed` (more of it on a loaded machine).
    curve = ThrottlePolicy(qps, margin=0.0)
    curve.on_throttle(0.0, own_in_window=0, limit=int(qps))
    assert qps * 0.7 <= belief.rate <= curve.rate(elapsed)
    assert stats.throttles == 1
    (decision,) = [r for r in caplog.records if r.getMessage().startswith("limiter: 429")]
    assert decision.levelno == logging.DEBUG
    assert "from foreign" in decision.getMessage()
    assert f"rate {qps * 0.7:.3g} (lowered)" in decision.getMessage()  # as of the 429
    assert "1 foreign" in decision.getMessage()


@pytest.mark.anyio
async def test_a_throttled_request_is_resent_ahead_of_the_queue(server: FakeTupuServer) -> None:
    """The 429'd request is re-sent in the limiter's next free slot, not behind the line."""
    server.faults = FaultConfig(retry_after=None)
    server.latency = 0.1  # by the time the 429 is back, the other requests are queued
    server.inject("http_429")
    events: list[str] = []
    hooks = Hooks(
        on_request=lambda e: events.append(f"attempt {e.attempt}"),
        on_throttle=lambda e: events.append("429"),
    )
    async with make_client(server, hooks=hooks, max_images_per_request=1, max_in_flight=20) as c:
        results = await c.recognize_many([f"http://images.test/{i}.jpg" for i in range(40)])
    assert all(r.ok for r in results)
    assert events.count("attempt 0") == 40
    throttled_at, resent_at = events.index("429"), events.index("attempt 1")
    # ~15 requests were queued when the 429 came back: at most the one already sleeping
    # on the clock for the next slot goes before the re-send.
    assert resent_at - throttled_at <= 2, events


@pytest.mark.anyio
async def test_429s_have_their_own_retry_budget(server: FakeTupuServer) -> None:
    """Five 429s in a row exceed max_retries (3) but not max_throttle_retries: no image
    fails; past max_throttle_retries the request fails with RateLimitError."""
    server.faults = FaultConfig(retry_after=None)
    server.inject(*["http_429"] * 5)
    async with make_client(server) as client:
        (result,) = await client.recognize_many(["http://images.test/a.jpg"])
        assert result.ok
        assert client.stats.throttles == 5
    server.inject(*["http_429"] * 3)
    policy = RetryPolicy(max_retries=3, max_throttle_retries=2, backoff_max=0.01)
    async with make_client(server, retry_policy=policy) as client:
        (result,) = await client.recognize_many(["http://images.test/b.jpg"])
    assert isinstance(result.error, RateLimitError)
