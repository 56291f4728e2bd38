"""The fake server's ASGI application: dispatch, control endpoints and shared state.

Per API request, in order: the arrival is recorded (before anything else); the body is
read (over its limit: HTTP 413); the QPS gate admits it or answers HTTP 429; a
recognition request draws its fault; the latency is slept; the body is parsed and
checked (HTTP 400); the credentials are checked (a signed envelope with the Tupu code);
then the result is computed, signed and sent. HTTP-level errors are plain JSON
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Final

import msgspec

from .._constants import RECOGNITION_PATH
from ._asgi import ARRIVED_KEY, Call, ClientGone, Receive, Reply, Scope, Send, error, read_body
from ._exchange import Exchange
from ._faults import Fault
from ._management import MANAGEMENT_PATHS, ManagementRoute
from ._recognition import RecognitionRoute
from ._responses import json_body
from ._state import ServerState

__all__ = ["CONTROL_PREFIX", "FakeTupuApp"]

CONTROL_PREFIX: Final = "/_fake/"
_MAX_CONTROL_BODY_BYTES: Final = 1024 * 1024
# Client addresses remembered for the connection set-up knob (forgotten all at once).
_MAX_REMEMBERED_CONNECTIONS: Final = 65536


@dataclasses.dataclass(kw_only=True, eq=False, repr=False)
class FakeTupuApp(ServerState):
    """The ASGI app of one fake server, holding its state (see ``ServerState``).

    It never raises to the ASGI server: every request gets an answer (or, for the
    ``drop_connection`` fault, a closed connection).
    """

    def __post_init__(self) -> None:
        self._connections: set[object] = set()
        # Looked up on each call, so a test may replace _new_connection on the instance.
        self.exchange = Exchange(self, lambda scope: self._new_connection(scope))
        self.recognition = RecognitionRoute(self.exchange)
        self.management = ManagementRoute(self.exchange)

    @property
    def may_sleep(self) -> bool:
        """Whether a request may now be held by latency or a timeout fault."""
        settings = self.settings
        if settings.latency > 0 or settings.latency_jitter > 0:
            return True
        plan = self.fault_plan
        if Fault.TIMEOUT in plan.pending:
            return True
        return plan.config.rate > 0 and Fault.TIMEOUT in plan.config.kinds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handle(scope, receive, send, in_process=False)

    async def handle(self, scope: Scope, receive: Receive, send: Send, *, in_process: bool) -> None:
        """Serve one ASGI exchange; ``in_process`` when called by ``FakeServerTransport``."""
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return
        exchange = self.exchange
        call = Call(scope, receive, send, in_process)
        path: str = scope["path"]
        if scope.get("method") == "HEAD":  # a client warming its connection pool
            self._new_connection(scope)  # set up now, so no API request pays for it
            await exchange.answer(call, Reply(204, b""), count=False)
            return
        if path.startswith(CONTROL_PREFIX):
            await exchange.answer(call, await self._control(call, path), count=False)
            return
        call.arrived = scope.get(ARRIVED_KEY) or time.monotonic()
        call.index = self.stats.record_arrival(call.arrived, path)
        try:
            if path.startswith(RECOGNITION_PATH):
                await self.recognition.handle(call)
            elif path in MANAGEMENT_PATHS:
                await self.management.handle(call)
            else:
                await exchange.answer(call, error(404, 404, f"no such endpoint: {path}"))
        except ClientGone:
            return

    def _new_connection(self, scope: Scope) -> bool:
        """True for the first request seen from this client address (host, port)."""
        client = scope.get("client")
        if client is None:
            return False
        peer = tuple(client)
        if peer in self._connections:
            return False
        if len(self._connections) >= _MAX_REMEMBERED_CONNECTIONS:
            self._connections.clear()
        self._connections.add(peer)
        return True

    async def _control(self, call: Call, path: str) -> Reply:
        body = await read_body(call, _MAX_CONTROL_BODY_BYTES) or b""
        name = path[len(CONTROL_PREFIX) :]
        method = call.scope["method"]
        if name == "stats" and method == "GET":
            return Reply(200, json_body(self.stats.to_dict()))
        if name == "reset" and method == "POST":
            self.reset()
            return Reply(200, json_body({"reset": True}))
        if name == "inject" and method == "POST":
            try:
                kinds = msgspec.json.decode(body, type=dict[str, list[str]]).get("kinds", [])
                self.fault_plan.inject(kinds)
            except (msgspec.DecodeError, ValueError) as exc:
                return error(400, 400, f'send {{"kinds": [...]}} with known fault kinds: {exc}')
            return Reply(200, json_body({"pending": list(self.fault_plan.pending)}))
        if name == "health":
            return Reply(200, json_body({"ok": True}))
        return error(404, 404, f"no such control endpoint: {path}")

    def reset(self) -> None:
        """Fresh statistics, QPS windows, fault queue and replay cache (keys and libraries stay)."""
        self.stats.clear()
        self.recorded.clear()
        self.qps.reset()
        self._connections.clear()
        self.fault_plan.reset()
        self.authenticator.clear_replay_cache()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
