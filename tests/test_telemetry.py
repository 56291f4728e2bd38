"""OpenTelemetry: a span per HTTP attempt and the HTTP-client metrics, with in-memory exporters."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from clients import in_process_client, png, sync_client
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tupu_async import AuthenticationError, Hooks, RequestEvent
from tupu_async.telemetry import METRICS, Telemetry, instrument
from tupu_async.testing import FakeTupuServer, FaultConfig

SECRET = "otel-secret-id-0123456789"
TEMPLATE = "/v3/recognition/{secretId}"


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


class Otel:
    def __init__(self) -> None:
        self.spans_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrument(self, client: Any) -> Telemetry:
        return instrument(
            client, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.spans_exporter.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        """Data points by instrument name."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def total(self, name: str) -> float:
        return float(sum(point.value for point in self.metrics().get(name, [])))

    def count(self, name: str) -> int:
        return sum(point.count for point in self.metrics().get(name, []))


@pytest.fixture
def otel() -> Iterator[Otel]:
    otel = Otel()
    yield otel
    otel.tracer_provider.shutdown()
    otel.meter_provider.shutdown()


def everything_recorded(otel: Otel) -> str:
    """Every span name, attribute and metric attribute as text."""
    parts: list[str] = []
    for span in otel.spans():
        parts.append(span.name)
        parts.extend(f"{k}={v!r}" for k, v in attrs(span).items())
        parts.append(str(span.status.description))
    for points in otel.metrics().values():
        for point in points:
            parts.extend(f"{k}={v!r}" for k, v in (point.attributes or {}).items())
    return "\n".join(parts)


@pytest.mark.anyio
async def test_one_client_span_per_attempt_with_http_semantic_conventions(otel: Otel) -> None:
    server = FakeTupuServer()
    async with in_process_client(server, SECRET) as client:
        otel.instrument(client)
        results = await client.recognize_many([png(i) for i in range(25)])

    assert all(r.ok for r in results)
    spans = otel.spans()
    assert len(spans) == 3
    for span in spans:
        attributes = attrs(span)
        assert span.name == f"POST {TEMPLATE}"
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        assert attributes["http.request.method"] == "POST"
        assert attributes["server.address"] == "fake.tupu.test"
        assert attributes["server.port"] == 80
        assert attributes["url.template"] == TEMPLATE
        assert attributes["http.response.status_code"] == 200
        assert attributes["tupu.code"] == 0
        assert attributes["tupu.attempt"] == 0
        assert "http.request.resend_count" not in attributes
        assert isinstance(attributes["tupu.limiter.wait"], float)
    assert sorted(attrs(s)["tupu.images"] for s in spans) == [5, 10, 10]
    assert otel.total("tupu.client.requests") == 3
    assert otel.total("tupu.client.images") == 25
    assert otel.count("http.client.request.duration") == 3
    assert otel.count("tupu.client.limiter.wait") == 3
    assert otel.total("tupu.client.retries") == 0
    assert set(otel.metrics()) <= set(METRICS)
    assert SECRET not in everything_recorded(otel)


@pytest.mark.anyio
async def test_retries_and_throttles_are_spans_with_errors_and_counted(otel: Otel) -> None:
    server = FakeTupuServer(faults=FaultConfig(retry_after=0.01))
    server.inject("http_429", "http_500", "code_100")
    events: list[str] = []
    hooks = Hooks(on_retry=lambda e: events.append("retry"))
    async with in_process_client(server, SECRET, hooks=hooks) as client:
        otel.instrument(client)
        result = await client.recognize_one(png(1))

    assert result.ok
    assert events == ["retry"] * 3  # the user's hooks still run
    assert client.stats.retries == 3
    spans = sorted(otel.spans(), key=lambda s: attrs(s)["tupu.attempt"])
    attributes = [attrs(s) for s in spans]
    assert [a["tupu.attempt"] for a in attributes] == [0, 1, 2, 3]
    assert [a.get("http.request.resend_count") for a in attributes] == [None, 1, 2, 3]
    assert [a["http.response.status_code"] for a in attributes] == [429, 500, 200, 200]
    assert [a.get("error.type") for a in attributes] == [
        "RateLimitError",
        "ServerError",
        "ServerError",
        None,
    ]
    assert [a.get("tupu.code") for a in attributes] == [None, None, 100, 0]
    assert [s.status.status_code for s in spans] == [StatusCode.ERROR] * 3 + [StatusCode.UNSET]
    assert otel.total("tupu.client.retries") == 3
    assert otel.total("tupu.client.throttles") == 1
    assert otel.total("tupu.client.requests") == 4
    assert otel.total("tupu.client.images") == 1
    outcomes = {
        (point.attributes.get("http.response.status_code"), point.attributes.get("error.type")): (
            point.count
        )
        for point in otel.metrics()["http.client.request.duration"]
    }
    assert outcomes == {
        (429, "RateLimitError"): 1,
        (500, "ServerError"): 1,
        (200, "ServerError"): 1,  # code 100 in a 200 response
        (200, None): 1,
    }


@pytest.mark.anyio
async def test_fatal_errors_end_their_span_without_leaking_the_secret(otel: Otel) -> None:
    server = FakeTupuServer()
    async with in_process_client(server, SECRET) as client:
        otel.instrument(client)
        server.remove_secret_id(SECRET)  # the service now answers code 6, naming the id
        with pytest.raises(AuthenticationError):
            await client.recognize([png(1)])

    (span,) = otel.spans()
    attributes = attrs(span)
    assert attributes["tupu.code"] == 6
    assert attributes["error.type"] == "AuthenticationError"
    assert span.status.status_code is StatusCode.ERROR
    assert SECRET not in everything_recorded(otel)


@pytest.mark.anyio
async def test_a_cancelled_attempt_still_ends_its_span(otel: Otel) -> None:
    server = FakeTupuServer(latency=60.0)
    async with in_process_client(server, SECRET) as client:
        otel.instrument(client)
        with anyio.move_on_after(0.2):
            await client.recognize([png(1)])

    (span,) = otel.spans()
    assert attrs(span)["error.type"] == "cancelled"
    assert otel.total("tupu.client.images") == 0


@pytest.mark.anyio
async def test_uninstrument_stops_recording_and_hooks_are_unchanged(otel: Otel) -> None:
    server = FakeTupuServer()
    seen: list[RequestEvent] = []
    async with in_process_client(server, SECRET, hooks=Hooks(on_response=seen.append)) as client:
        telemetry = otel.instrument(client)
        await client.recognize([png(1)])
        telemetry.uninstrument()
        telemetry.uninstrument()
        await client.recognize([png(2)])

    assert len(otel.spans()) == 1
    assert len(seen) == 2
    assert all(e.tupu_code == 0 for e in seen)
    assert all(e.limiter_wait is not None for e in seen)
    assert client.stats.requests == 2


def test_the_sync_client_is_instrumented_through_its_async_engine(
    otel: Otel, anyio_backend: str
) -> None:
    server = FakeTupuServer()
    with sync_client(server, anyio_backend, SECRET) as client:
        otel.instrument(client)
        results = client.recognize_many([png(i) for i in range(12)])

    assert len(results) == 12
    assert len(otel.spans()) == 2
    assert otel.total("tupu.client.images") == 12


def test_importing_tupu_async_does_not_import_opentelemetry() -> None:
    code = "import sys, tupu_async; sys.exit('opentelemetry' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
