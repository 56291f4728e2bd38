"""The fake server's ASGI application: routing, limits, faults, latency and answers.

Per API request, in order: the arrival is recorded (monotonic time, before anything
else); the body is read (over its size limit: HTTP 413); the QPS limiter admits it or
answers HTTP 429; a recognition request draws its fault (queue first, then random); the
injected latency is slept; the body is parsed and checked (mixed URL/file images or more
than 10 images: HTTP 400); the credentials are checked (failures: a signed envelope with
the Tupu code, HTTP 200); then the result is computed, signed and sent.

HTTP-level errors are plain JSON ``{"error": {"code", "message"}}``: ``code`` 3 for a
body the API cannot use, 14 for an entity over the size limit (HTTP 413), otherwise the
HTTP status (400 for a management request the API refuses, 404, 405, 429, 500).
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final

import anyio
import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from .._constants import (
    BASE64_RECOGNITION_PATH,
    LIBRARY_ADD_BASE64_PATH,
    LIBRARY_ADD_URLS_PATH,
    LIBRARY_DELETE_PATH,
    LIBRARY_IMAGES_PATH,
    LIBRARY_MAX_BODY_BYTES,
    LIBRARY_MAX_DELETES_PER_REQUEST,
    LIBRARY_MAX_IMAGES_PER_REQUEST,
    LIBRARY_MAX_URLS_PER_REQUEST,
    LIBRARY_SEARCH_PATH,
    MAX_BASE64_BODY_BYTES,
    MAX_IMAGES_PER_REQUEST,
    RECOGNITION_PATH,
)
from . import _faults as faults
from ._auth import Authenticator
from ._jsontext import JsonStyle, StyleCycle, restyle
from ._library import LibraryStore
from ._parsing import (
    Credentials,
    ManagementRequest,
    RecognitionRequest,
    RequestRejected,
    parse_base64_recognition,
    parse_management,
    parse_recognition,
)
from ._qps import SlidingWindowLimit
from ._responses import (
    CODE_MESSAGES,
    HTML_502_PAGE,
    corrupt_signature,
    envelope_body,
    inner_fields,
    inner_json,
    json_body,
    plain_error_body,
)
from ._results import ImageInput, Recognizer, complete_tail
from ._stats import FakeServerStats, RecordedRequest

__all__ = ["AppSettings", "DroppedConnection", "FakeTupuApp", "InProcessTimeout"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Recognition bodies other than base64 (10 images of 1 MiB fit with room to spare).
MAX_RECOGNITION_BODY_BYTES: Final = 64 * 1024 * 1024
MAX_MANAGEMENT_BODY_BYTES: Final = 16 * 1024 * 1024
RECORDED_REQUESTS: Final = 1000
CONTROL_PREFIX: Final = "/_fake/"
# Client addresses remembered for the connection set-up knob (forgotten all at once).
_MAX_REMEMBERED_CONNECTIONS: Final = 65536

_JSON: Final = b"application/json"
_MANAGEMENT_PATHS: Final = frozenset(
    {
        LIBRARY_SEARCH_PATH,
        LIBRARY_IMAGES_PATH,
        LIBRARY_ADD_URLS_PATH,
        LIBRARY_ADD_BASE64_PATH,
        LIBRARY_DELETE_PATH,
    }
)
_MANAGEMENT_LIMITS: Final = {
    LIBRARY_ADD_URLS_PATH: LIBRARY_MAX_URLS_PER_REQUEST,
    LIBRARY_ADD_BASE64_PATH: LIBRARY_MAX_IMAGES_PER_REQUEST,
    LIBRARY_DELETE_PATH: LIBRARY_MAX_DELETES_PER_REQUEST,
}


class DroppedConnection(Exception):
    """In-process only: the app asks the transport to act as if the connection dropped."""


class InProcessTimeout(Exception):
    """In-process only: the app asks the transport to raise a read timeout."""


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class AppSettings:
    """The knobs of a running fake server (the server object exposes them)."""

    __slots__ = (
        "arrival_jitter",
        "connection_setup",
        "json_style",
        "latency",
        "latency_jitter",
        "qps_retry_after",
        "sign_management_responses",
        "summary",
        "tasks",
    )

    def __init__(
        self,
        *,
        latency: float,
        latency_jitter: float,
        summary: bool,
        tasks: Sequence[str],
        sign_management_responses: bool,
        json_style: JsonStyle = "go",
        arrival_jitter: float = 0.0,
        connection_setup: float = 0.0,
        qps_retry_after: float | None = 1.0,
    ) -> None:
        self.json_style = StyleCycle(json_style)
        self.latency = latency
        self.latency_jitter = latency_jitter
        self.summary = summary
        self.tasks = tuple(tasks)
        self.sign_management_responses = sign_management_responses
        #: Each request reaches the QPS gate uniform(0, arrival_jitter) s after it arrived.
        self.arrival_jitter = arrival_jitter
        #: The first request on a new connection reaches the gate this much later.
        self.connection_setup = connection_setup
        #: The Retry-After of the gate's 429s (None: no header).
        self.qps_retry_after = qps_retry_after


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return b""


def _request_kind(images: Sequence[ImageInput], base64_route: bool) -> str:
    if base64_route:
        return "base64"
    if not images:
        return "none"
    return "url" if images[0].is_url else "file"


class _Reply:
    __slots__ = ("body", "code", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        *,
        content_type: bytes = _JSON,
        headers: Sequence[tuple[bytes, bytes]] = (),
        code: int | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.code = code


def _error(status: int, code: int, message: str, **kwargs: Any) -> _Reply:
    return _Reply(status, plain_error_body(code, message), **kwargs)


class FakeTupuApp:
    """The ASGI app of one fake server. All state lives in the components it holds.

    It never raises to the ASGI server: every request gets an answer (or, for the
    ``drop_connection`` fault, a closed connection).
    """

    def __init__(
        self,
        *,
        settings: AppSettings,
        signing_key: RSAPrivateKey,
        authenticator: Authenticator,
        recognizer: Recognizer,
        libraries: LibraryStore,
        fault_plan: faults.FaultPlan,
        qps: SlidingWindowLimit,
        download_fails: Callable[[str], bool],
        seed: int = 0,
    ) -> None:
        self.settings = settings
        self.signing_key = signing_key
        self.authenticator = authenticator
        self.recognizer = recognizer
        self.libraries = libraries
        self.fault_plan = fault_plan
        self.qps = qps
        self.download_fails = download_fails
        self.stats = FakeServerStats()
        self.recorded: collections.deque[RecordedRequest] = collections.deque(
            maxlen=RECORDED_REQUESTS
        )
        self._jitter_rng = random.Random(seed)
        self._arrival_rng = random.Random(seed + 1)
        self._connections: set[object] = set()

    # -- ASGI entry points ------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handle(scope, receive, send, in_process=False)

    async def handle(self, scope: Scope, receive: Receive, send: Send, *, in_process: bool) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        if scope.get("method") == "HEAD":  # a client warming its connection pool
            self._new_connection(scope)  # set up now, so no API request pays for it
            await self._send(send, _Reply(204, b""), count=False)
            return
        if path.startswith(CONTROL_PREFIX):
            reply = await self._control(scope, receive, path)
            await self._send(send, reply, count=False)
            return
        now = time.monotonic()
        index = self.stats.record_arrival(now, path)
        try:
            if path.startswith(RECOGNITION_PATH):
                await self._recognition(scope, receive, send, path, now, index, in_process)
                return
            if path in _MANAGEMENT_PATHS:
                await self._management(scope, receive, send, path, now, index, in_process)
                return
            await self._send(send, _error(404, 404, f"no such endpoint: {path}"))
        except _ClientGone:
            return

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    @property
    def may_sleep(self) -> bool:
        """Whether a request may now be held by latency or a timeout fault."""
        settings = self.settings
        if settings.latency > 0 or settings.latency_jitter > 0:
            return True
        plan = self.fault_plan
        if faults.TIMEOUT in plan.pending:
            return True
        return plan.config.rate > 0 and faults.TIMEOUT in plan.config.kinds

    # -- plumbing -----------------------------------------------------------------------

    async def _send(self, send: Send, reply: _Reply, *, count: bool = True) -> None:
        if count:
            self.stats.status_counts[reply.status] += 1
            if reply.code is not None:
                self.stats.code_counts[reply.code] += 1
        headers = [
            (b"content-type", reply.content_type),
            (b"content-length", str(len(reply.body)).encode()),
            *reply.headers,
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _read_body(self, scope: Scope, receive: Receive, limit: int) -> bytes | None:
        """The whole request body, or None when it is larger than ``limit`` bytes."""
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _delay(self) -> float:
        settings = self.settings
        delay = settings.latency
        if settings.latency_jitter:
            delay += self._jitter_rng.uniform(-settings.latency_jitter, settings.latency_jitter)
        return delay if delay > 0 else 0.0

    async def _sleep(self, delay: float, receive: Receive, in_process: bool) -> None:
        """Sleep ``delay`` s; over a real server, stop early when the client goes away."""
        if delay <= 0:
            return
        if in_process:  # the transport enforces the client's timeout by cancelling us
            await anyio.sleep(delay)
            return
        gone = False
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                nonlocal gone
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone = True
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            await anyio.sleep(delay)
            group.cancel_scope.cancel()
        if gone:
            raise _ClientGone

    async def _reach_gate(
        self, scope: Scope, receive: Receive, now: float, index: int, in_process: bool
    ) -> float:
        """When the request reaches the QPS gate: ``now``, or later under the network knobs.

        Delayed requests reach it in the order of their delays expiring, and are counted
        at the time they do.
        """
        settings = self.settings
        if not settings.arrival_jitter and not settings.connection_setup:
            return now
        delay = 0.0
        if settings.connection_setup and self._new_connection(scope):
            delay += settings.connection_setup
        if settings.arrival_jitter:
            delay += self._arrival_rng.uniform(0.0, settings.arrival_jitter)
        await self._sleep(delay, receive, in_process)
        gate = time.monotonic()
        self.stats.set_gate_time(index, gate)
        return gate

    def _admit(self, secret_id: str, gate: float) -> bool:
        """The QPS gate's verdict; the foreign client's requests it let by are counted."""
        qps = self.qps
        accepted, throttled = qps.foreign_accepted, qps.foreign_throttled
        ok = qps.try_acquire(secret_id, gate)
        self.stats.foreign_accepted += qps.foreign_accepted - accepted
        self.stats.foreign_throttled += qps.foreign_throttled - throttled
        return ok

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

    def _too_large(self, limit: int) -> _Reply:
        return _error(413, 14, f"request entity too large: the limit is {limit} bytes")

    def _throttled(self, index: int, secret_id: str) -> _Reply:
        self.stats.record_throttled(index)
        limit = self.qps.limit
        retry_after = self.settings.qps_retry_after
        return _error(
            429,
            429,
            f"too many requests: secretId {secret_id!r} is limited to {limit:g} requests per "
            f"second",
            headers=() if retry_after is None else ((b"retry-after", f"{retry_after:g}".encode()),),
        )

    def _signed(self, inner: bytes | dict[str, Any]) -> bytes:
        """The envelope of ``inner``, spelt in the next ``json_style`` before signing."""
        if isinstance(inner, dict):
            inner = json_body(inner)
        return envelope_body(self.signing_key, restyle(inner, self.settings.json_style.next()))

    def _envelope(self, code: int, message: str, credentials: Credentials) -> _Reply:
        inner = inner_fields(code, message, credentials.nonce_echo)
        return _Reply(200, self._signed(inner), code=code)

    # -- recognition ------------------------------------------------------------------

    async def _recognition(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        now: float,
        index: int,
        in_process: bool,
    ) -> None:
        base64_route = path.startswith(BASE64_RECOGNITION_PATH)
        secret_id = path[len(BASE64_RECOGNITION_PATH if base64_route else RECOGNITION_PATH) :]
        if not secret_id or "/" in secret_id:
            await self._send(send, _error(404, 404, f"no such endpoint: {path}"))
            return
        self.stats.set_secret_id(index, secret_id)
        if scope["method"] != "POST":
            await self._send(send, _error(405, 405, "use POST"))
            return
        limit = MAX_BASE64_BODY_BYTES if base64_route else MAX_RECOGNITION_BODY_BYTES
        body = await self._read_body(scope, receive, limit)
        gate = await self._reach_gate(scope, receive, now, index, in_process)
        if not self._admit(secret_id, gate):
            await self._send(send, self._throttled(index, secret_id))
            return
        if body is None:
            await self._send(send, self._too_large(limit))
            return
        parsed = self._parse_recognition(body, scope, base64_route)
        fault = self.fault_plan.next_fault()
        if fault is not None:
            self.stats.faults[fault] += 1
            if fault == faults.TIMEOUT:
                delay = self.fault_plan.config.timeout_delay
                await self._sleep(delay, receive, in_process)
                if in_process:
                    raise InProcessTimeout
            elif await self._http_fault(fault, receive, send, in_process):
                return
        await self._sleep(self._delay(), receive, in_process)
        reply = self._recognize(path, secret_id, parsed, base64_route, fault)
        if fault == faults.BAD_SIGNATURE and reply.status == 200:
            reply.body = corrupt_signature(reply.body)
        elif fault == faults.TRUNCATED_BODY and reply.status == 200:
            reply.body = reply.body[: len(reply.body) // 2]
        await self._send(send, reply)

    async def _http_fault(self, fault: str, receive: Receive, send: Send, in_process: bool) -> bool:
        """Answer an HTTP-level fault (after the usual latency); False when not one."""
        if fault not in (faults.HTTP_500, faults.HTTP_502, faults.HTTP_429, faults.DROP_CONNECTION):
            return False
        await self._sleep(self._delay(), receive, in_process)
        if fault == faults.HTTP_500:
            await self._send(send, _error(500, 100, "internal server error (injected fault)"))
        elif fault == faults.HTTP_502:
            await self._send(send, _Reply(502, HTML_502_PAGE, content_type=b"text/html"))
        elif fault == faults.HTTP_429:
            retry_after = self.fault_plan.config.retry_after
            headers = (
                () if retry_after is None else ((b"retry-after", f"{retry_after:g}".encode()),)
            )
            reply = _error(429, 429, "too many requests (injected fault)", headers=headers)
            await self._send(send, reply)
        else:
            self.stats.status_counts[0] += 1  # 0: no HTTP answer at all
            await self._drop_connection(receive, send, in_process)
        return True

    async def _drop_connection(self, receive: Receive, send: Send, in_process: bool) -> None:
        if in_process:
            raise DroppedConnection
        # uvicorn: the receive callable is bound to the request cycle holding the transport.
        transport = getattr(getattr(receive, "__self__", None), "transport", None)
        close = getattr(transport, "close", None)
        if callable(close):
            close()
            with anyio.move_on_after(1.0):
                while (await receive())["type"] != "http.disconnect":
                    pass
            return
        # Any other server: promise a body, send part of it and stop; the server must then
        # close the connection without a complete response.
        headers = [(b"content-type", _JSON), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"json": "', "more_body": True})

    def _parse_recognition(
        self, body: bytes, scope: Scope, base64_route: bool
    ) -> RecognitionRequest | RequestRejected:
        """Parse the body and count its images (every admitted request, faulted or not)."""
        try:
            if base64_route:
                request = parse_base64_recognition(body)
            else:
                request = parse_recognition(body, _header(scope, b"content-type"))
        except RequestRejected as exc:
            return exc
        self.stats.record_images(len(request.images))
        return request

    def _recognize(
        self,
        path: str,
        secret_id: str,
        request: RecognitionRequest | RequestRejected,
        base64_route: bool,
        fault: str | None,
    ) -> _Reply:
        if isinstance(request, RequestRejected):
            return _error(request.status, request.code, request.message)
        images = request.images
        if len(images) > MAX_IMAGES_PER_REQUEST:
            return _error(
                400,
                3,
                f"too many images: {len(images)} in one request, the limit is "
                f"{MAX_IMAGES_PER_REQUEST}",
            )
        credentials = request.credentials
        if fault in (faults.CODE_100, faults.CODE_101):
            code = 100 if fault == faults.CODE_100 else 101
            return self._envelope(code, CODE_MESSAGES[code], credentials)
        auth = self.authenticator.check(
            secret_id, credentials.timestamp, credentials.nonce, credentials.signature
        )
        if not auth.ok:
            return self._envelope(auth.code, auth.message, credentials)
        if not self.settings.tasks:
            return self._envelope(13, "no task configured for this secretId", credentials)
        tasks = self._tasks(request)
        if isinstance(tasks, str):
            return self._envelope(7, tasks, credentials)
        tags = complete_tail(request.tags, len(images))
        self.recorded.append(
            RecordedRequest(
                path=path,
                secret_id=secret_id,
                kind=_request_kind(images, base64_route),
                names=[image.name for image in images],
                tags=tags,
                sequence_ids=complete_tail(request.sequence_ids, len(images)),
                tasks=list(request.tasks),
                referer=request.referer,
            )
        )
        if not images:
            return self._envelope(3, "no file: the request carried no image", credentials)
        settings = self.settings
        members = self.recognizer.recognize(
            images, tasks=tasks, tags=tags, summary=settings.summary
        )
        inner = inner_json(members, inner_fields(0, "success", credentials.nonce_echo))
        return _Reply(200, self._signed(inner), code=0)

    def _tasks(self, request: RecognitionRequest) -> list[str] | str:
        """The task ids to run, or the code-7 message naming the ones not allowed."""
        known = self.settings.tasks
        if not request.tasks:
            return list(known)
        wanted = list(dict.fromkeys(request.tasks))
        unknown = [task for task in wanted if task not in known]
        if unknown:
            return f"task not allowed for this secretId: {', '.join(unknown)}"
        return wanted

    # -- management ---------------------------------------------------------------------

    async def _management(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        now: float,
        index: int,
        in_process: bool,
    ) -> None:
        if scope["method"] != "POST":
            await self._send(send, _error(405, 405, "use POST"))
            return
        limit = (
            LIBRARY_MAX_BODY_BYTES if path == LIBRARY_ADD_BASE64_PATH else MAX_MANAGEMENT_BODY_BYTES
        )
        body = await self._read_body(scope, receive, limit)
        if body is None:
            await self._send(send, self._too_large(limit))
            return
        try:
            request = parse_management(body)
        except RequestRejected as exc:
            await self._send(send, _error(exc.status, exc.code, exc.message))
            return
        secret_id = request.secret_id
        self.stats.set_secret_id(index, secret_id)
        gate = await self._reach_gate(scope, receive, now, index, in_process)
        if not self._admit(secret_id, gate):
            await self._send(send, self._throttled(index, secret_id))
            return
        await self._sleep(self._delay(), receive, in_process)
        await self._send(send, self._manage(path, request))

    def _manage(self, path: str, request: ManagementRequest) -> _Reply:
        credentials = request.credentials
        auth = self.authenticator.check(
            request.secret_id, credentials.timestamp, credentials.nonce, credentials.signature
        )
        if not auth.ok:
            return self._management_error(auth.code, auth.message, credentials)
        store = self.libraries
        if path == LIBRARY_SEARCH_PATH:
            return self._management_ok(
                {"imageLibraries": store.search(request.secret_id, request.name)}, credentials
            )
        library = store.get(request.library_id or "", request.secret_id)
        if library is None:
            return _error(
                400, 400, f"image library not found: {request.library_id!r} (imageLibraryId)"
            )
        if path == LIBRARY_IMAGES_PATH:
            images = [image.to_json() for image in library.images.values()]
            return self._management_ok({"images": images}, credentials)
        items = request.images or []
        most = _MANAGEMENT_LIMITS[path]
        if not 1 <= len(items) <= most:
            return _error(400, 400, f"images must hold 1 to {most} items, not {len(items)}")
        if path == LIBRARY_ADD_URLS_PATH:
            results = store.add_urls(library, items, self.download_fails)
        elif path == LIBRARY_ADD_BASE64_PATH:
            results = store.add_base64(library, items)
        else:
            results = store.delete(library, items)
        return self._management_ok({"images": results}, credentials)

    def _management_ok(self, data: dict[str, Any], credentials: Credentials) -> _Reply:
        if not self.settings.sign_management_responses:
            return _Reply(200, json_body(data))
        inner = inner_fields(0, "success", credentials.nonce_echo)
        inner.update(data)
        return _Reply(200, self._signed(inner), code=0)

    def _management_error(self, code: int, message: str, credentials: Credentials) -> _Reply:
        if self.settings.sign_management_responses:
            return self._envelope(code, message, credentials)
        return _error(400, code, message)

    # -- control endpoints ----------------------------------------------------------------

    async def _control(self, scope: Scope, receive: Receive, path: str) -> _Reply:
        body = await self._read_body(scope, receive, 1024 * 1024) or b""
        name = path[len(CONTROL_PREFIX) :]
        method = scope["method"]
        if name == "stats" and method == "GET":
            return _Reply(200, json_body(self.stats.to_dict()))
        if name == "reset" and method == "POST":
            self.reset()
            return _Reply(200, json_body({"reset": True}))
        if name == "inject" and method == "POST":
            try:
                kinds = msgspec.json.decode(body, type=dict[str, list[str]]).get("kinds", [])
                self.fault_plan.inject(kinds)
            except (msgspec.DecodeError, ValueError) as exc:
                return _error(400, 400, f'send {{"kinds": [...]}} with known fault kinds: {exc}')
            return _Reply(200, json_body({"pending": list(self.fault_plan.pending)}))
        if name == "health":
            return _Reply(200, json_body({"ok": True}))
        return _error(404, 404, f"no such control endpoint: {path}")

    def reset(self) -> None:
        """Fresh statistics, QPS windows, fault queue and replay cache (keys and libraries stay)."""
        self.stats.clear()
        self.recorded.clear()
        self.qps.reset()
        self._connections.clear()
        self.fault_plan.reset()
        self.authenticator.clear_replay_cache()
