"""ASGI plumbing of the fake server: message types, replies and reading a request body."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final

from ._responses import plain_error_body

__all__ = [
    "ARRIVED_KEY",
    "JSON",
    "Call",
    "ClientGone",
    "DroppedConnection",
    "InProcessTimeout",
    "Receive",
    "Reply",
    "Scope",
    "Send",
    "error",
    "header",
    "read_body",
    "retry_after_headers",
    "too_large",
    "write_reply",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON: Final = b"application/json"
ARRIVED_KEY: Final = "tupu_async.arrived"
"""Scope key set by the HTTP server: ``time.monotonic()`` when the request's first bytes
were parsed, before the app's task was scheduled (absent in-process)."""


@dataclasses.dataclass(slots=True)
class Call:
    """One HTTP request being answered: its ASGI scope and callables, and its arrival.

    ``in_process``: served by ``FakeServerTransport``, not over a socket; ``arrived``:
    ``time.monotonic()`` when it arrived (``scope[ARRIVED_KEY]`` over HTTP); ``index``: its
    place among the recorded arrivals.
    """

    scope: Scope
    receive: Receive
    send: Send
    in_process: bool
    arrived: float = 0.0
    index: int = 0


class DroppedConnection(Exception):
    """In-process only: the app asks the transport to act as if the connection dropped."""


class InProcessTimeout(Exception):
    """In-process only: the app asks the transport to raise a read timeout."""


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


@dataclasses.dataclass(slots=True)
class Reply:
    """One HTTP answer; ``code`` is the Tupu code it carries, counted in the statistics."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: Sequence[tuple[bytes, bytes]] = ()
    code: int | None = None


def error(status: int, code: int, message: str, **kwargs: Any) -> Reply:
    """A plain JSON error ``{"error": {"code", "message"}}``."""
    return Reply(status, plain_error_body(code, message), **kwargs)


def too_large(limit: int) -> Reply:
    """HTTP 413 for a body over ``limit`` bytes."""
    return error(413, 14, f"request entity too large: the limit is {limit} bytes")


def retry_after_headers(seconds: float | None) -> Sequence[tuple[bytes, bytes]]:
    """A ``Retry-After`` header of ``seconds``; none for None."""
    return () if seconds is None else ((b"retry-after", f"{seconds:g}".encode()),)


def header(scope: Scope, name: bytes) -> bytes:
    """The value of request header ``name`` (lower case), or ``b""``."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return b""


async def write_reply(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type),
        (b"content-length", str(len(reply.body)).encode()),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def read_body(call: Call, limit: int) -> bytes | None:
    """The whole request body, or None when it is larger than ``limit`` bytes.

    Raises :class:`ClientGone` when the client disconnects first.
    """
    declared = header(call.scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await call.receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
