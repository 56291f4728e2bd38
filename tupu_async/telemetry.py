"""OpenTelemetry for tupu-async (the ``[otel]`` extra): spans and metrics per HTTP attempt.

Off unless enabled: nothing here is imported by ``tupu_async`` itself. Enable it per client::

    from tupu_async.telemetry import instrument

    telemetry = instrument(client)  # an AsyncTupuClient or a TupuClient

Each HTTP attempt (retries included) becomes one ``CLIENT`` span named ``POST
<url.template>`` and feeds the metrics below, following the OpenTelemetry semantic
conventions for HTTP clients. The secret id never appears: paths are templated
(``/v3/recognition/{secretId}``) and errors are recorded by type, not message. It is
built on the client's event hooks, which keep working unchanged.
"""

from __future__ import annotations

import contextvars
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

from ._client import AsyncTupuClient
from ._events import RequestEvent
from ._exceptions import TupuError
from ._sync import TupuClient
from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["METRICS", "Telemetry", "TelemetryUnavailableError", "instrument"]

METRICS: Final = {
    "http.client.request.duration": "histogram (s): each HTTP attempt, request sent to response",
    "tupu.client.requests": "counter: HTTP attempts started, retries included",
    "tupu.client.images": "counter: images in attempts that succeeded",
    "tupu.client.throttles": "counter: HTTP 429 responses",
    "tupu.client.retries": "counter: attempts retried after a transient failure",
    "tupu.client.limiter.wait": "histogram (s): each attempt's wait for its rate-limiter permit",
}
"""The instruments recorded, by name."""

_DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10)
_COUNTER_UNITS: Final = {
    "tupu.client.requests": "{request}",
    "tupu.client.images": "{image}",
    "tupu.client.throttles": "{response}",
    "tupu.client.retries": "{retry}",
}
_WAIT_BUCKETS: Final = (0, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class TelemetryUnavailableError(TupuError, ImportError):
    """OpenTelemetry is not installed: ``pip install 'tupu-async[otel]'``."""


def _server(base_url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


def _error_type(event: RequestEvent) -> str | None:
    """``error.type`` per the conventions: the exception class (or the status code)."""
    if event.error is not None:
        return type(event.error).__qualname__
    if event.status_code is not None and event.status_code >= 400:
        return str(event.status_code)
    return None


class Telemetry:
    """The instrumentation of one client; :meth:`uninstrument` detaches it."""

    def __init__(
        self,
        client: AsyncTupuClient | TupuClient,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError:  # pragma: no cover - the test environment has the extra
            raise TelemetryUnavailableError(
                "OpenTelemetry is not installed: pip install 'tupu-async[otel]'"
            ) from None
        self._trace = trace
        self._client = client.async_client if isinstance(client, TupuClient) else client
        address, port = _server(self._client.base_url)
        self._common: dict[str, str | int] = {
            "http.request.method": "POST",
            "server.address": address,
            "server.port": port,
        }
        self._tracer = trace.get_tracer("tupu_async", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("tupu_async", __version__, meter_provider=meter_provider)
        counters = {
            name: meter.create_counter(name, unit=unit, description=METRICS[name])
            for name, unit in _COUNTER_UNITS.items()
        }
        self._requests = counters["tupu.client.requests"]
        self._images = counters["tupu.client.images"]
        self._throttles = counters["tupu.client.throttles"]
        self._retries = counters["tupu.client.retries"]
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        self._limiter_wait = meter.create_histogram(
            "tupu.client.limiter.wait",
            unit="s",
            description=METRICS["tupu.client.limiter.wait"],
            explicit_bucket_boundaries_advisory=list(_WAIT_BUCKETS),
        )
        # Each attempt runs start to end in one task, so its span rides in the task's context.
        self._span: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
            f"tupu_async_span_{id(self)}", default=None
        )
        self._client._sender.listeners.append(self._on_event)

    def uninstrument(self) -> None:
        """Stop recording for this client (idempotent)."""
        listeners = self._client._sender.listeners
        if self._on_event in listeners:
            listeners.remove(self._on_event)

    def _attributes(self, event: RequestEvent) -> dict[str, Any]:
        return {**self._common, "url.template": event.path.replace("<secretId>", "{secretId}")}

    def _on_event(self, which: str, event: RequestEvent) -> None:
        if which == "on_request":
            self._start(event)
        elif which in ("on_response", "on_cancel"):
            self._end(event, cancelled=which == "on_cancel")
        elif which == "on_retry":
            self._retries.add(1, self._attributes(event))
        elif which == "on_throttle":
            self._throttles.add(1, self._attributes(event))

    def _start(self, event: RequestEvent) -> None:
        attributes = self._attributes(event)
        self._requests.add(1, attributes)
        if event.limiter_wait is not None:
            self._limiter_wait.record(event.limiter_wait, attributes)
        span_attributes: dict[str, Any] = {
            **attributes,
            "tupu.images": event.images,
            "tupu.attempt": event.attempt,
            "tupu.limiter.wait": event.limiter_wait or 0.0,
        }
        if event.attempt:
            span_attributes["http.request.resend_count"] = event.attempt
        span = self._tracer.start_span(
            f"POST {attributes['url.template']}",
            kind=self._trace.SpanKind.CLIENT,
            attributes=span_attributes,
        )
        self._span.set(span)

    def _end(self, event: RequestEvent, *, cancelled: bool) -> None:
        span = self._span.get()
        self._span.set(None)
        attributes = self._attributes(event)
        if event.status_code is not None:
            attributes["http.response.status_code"] = event.status_code
        error_type = "cancelled" if cancelled else _error_type(event)
        if error_type is not None:
            attributes["error.type"] = error_type
        if event.elapsed is not None:
            self._duration.record(event.elapsed, attributes)
        if event.error is None and not cancelled:
            self._images.add(event.images, attributes)
        if span is None:
            return
        span.set_attributes(attributes)
        if event.tupu_code is not None:
            span.set_attribute("tupu.code", event.tupu_code)
        if error_type is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error_type))
        span.end()


def instrument(
    client: AsyncTupuClient | TupuClient,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> Telemetry:
    """Record OpenTelemetry spans and metrics for ``client``'s HTTP attempts.

    The global tracer and meter providers are used unless given. Raises
    ``TelemetryUnavailableError`` when the ``[otel]`` extra is not installed.
    """
    return Telemetry(client, tracer_provider=tracer_provider, meter_provider=meter_provider)
