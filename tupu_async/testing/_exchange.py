"""What every API route of the fake server shares: knobs, pacing, the QPS gate, signing."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import anyio

from ._asgi import Call, ClientGone, Reply, Scope, error, retry_after_headers, write_reply
from ._jsontext import restyle
from ._parsing import Credentials
from ._responses import envelope_body, inner_fields, json_body
from ._state import ServerState

__all__ = ["Exchange", "Route"]


class Exchange:
    """Answers, latency, the QPS gate and response signing, for every route of one app.

    ``new_connection(scope)`` tells whether a request is its connection's first.
    Components are read from ``state`` on every use, so replacing one takes effect.
    """

    def __init__(self, state: ServerState, new_connection: Callable[[Scope], bool]) -> None:
        self.state = state
        self._jitter_rng = random.Random(state.seed)
        self._arrival_rng = random.Random(state.seed + 1)
        self._new_connection = new_connection

    async def answer(self, call: Call, reply: Reply, *, count: bool = True) -> None:
        """Send ``reply``, counting its status and code unless ``count`` is false."""
        if count:
            stats = self.state.stats
            stats.status_counts[reply.status] += 1
            if reply.code is not None:
                stats.code_counts[reply.code] += 1
        await write_reply(call.send, reply)

    def delay(self) -> float:
        """This request's latency: ``latency`` plus or minus up to ``latency_jitter``."""
        settings = self.state.settings
        delay = settings.latency
        if settings.latency_jitter:
            delay += self._jitter_rng.uniform(-settings.latency_jitter, settings.latency_jitter)
        return delay if delay > 0 else 0.0

    async def sleep(self, delay: float, call: Call) -> None:
        """Sleep ``delay`` s; over a real server, raise :class:`ClientGone` if the client goes."""
        if delay <= 0:
            return
        if call.in_process:  # the transport enforces the client's timeout by cancelling us
            await anyio.sleep(delay)
            return
        gone = False
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                nonlocal gone
                while (await call.receive())["type"] != "http.disconnect":
                    pass
                gone = True
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            await anyio.sleep(delay)
            group.cancel_scope.cancel()
        if gone:
            raise ClientGone

    async def pass_gate(self, call: Call, secret_id: str) -> bool:
        """Take ``call`` to the QPS gate: True when admitted, else the 429 is sent."""
        gate = await self._reach_gate(call)
        qps, stats = self.state.qps, self.state.stats
        accepted, throttled = qps.foreign_accepted, qps.foreign_throttled
        admitted = qps.try_acquire(secret_id, gate)
        stats.foreign_accepted += qps.foreign_accepted - accepted
        stats.foreign_throttled += qps.foreign_throttled - throttled
        if not admitted:
            stats.record_throttled(call.index)
            await self.answer(
                call,
                error(
                    429,
                    429,
                    f"too many requests: secretId {secret_id!r} is limited to {qps.limit:g} "
                    f"requests per second",
                    headers=retry_after_headers(self.state.settings.qps_retry_after),
                ),
            )
        return admitted

    async def _reach_gate(self, call: Call) -> float:
        """When ``call`` reaches the gate: its arrival, or later under the network knobs."""
        settings = self.state.settings
        if not settings.arrival_jitter and not settings.connection_setup:
            return call.arrived
        delay = 0.0
        if settings.connection_setup and self._new_connection(call.scope):
            delay += settings.connection_setup
        if settings.arrival_jitter:
            delay += self._arrival_rng.uniform(0.0, settings.arrival_jitter)
        await self.sleep(delay, call)
        gate = time.monotonic()
        self.state.stats.set_gate_time(call.index, gate)
        return gate

    def signed(self, inner: bytes | dict[str, Any], *, code: int = 0) -> Reply:
        """HTTP 200 with the envelope of ``inner``, spelt in the next ``json_style``."""
        if isinstance(inner, dict):
            inner = json_body(inner)
        text = restyle(inner, self.state.settings.json_style.next())
        return Reply(200, envelope_body(self.state.signing_key, text), code=code)

    def envelope(self, code: int, message: str, credentials: Credentials) -> Reply:
        """A signed answer carrying only ``code`` and ``message``."""
        return self.signed(inner_fields(code, message, credentials.nonce_echo), code=code)


class Route:
    """One family of API endpoints, answering from the exchange's state."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.state = exchange.state

    async def handle(self, call: Call) -> None:
        raise NotImplementedError
