"""Test helpers for the URL fallback: real HTTP servers on loopback and a routing backend.

``LoopbackServer`` answers from a route function in its own threads and records every
request it receives, so a test can assert that a canary server was never contacted.
``RoutedBackend`` stands in for the internet: connections to chosen "public" addresses
go to a loopback port instead; every other address is connected to for real.
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import httpcore


@dataclass
class Reply:
    """What a route answers; ``chunks`` streams a body with no Content-Length."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] | None = None


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]


Route = Callable[[str], Reply]


def files(mapping: dict[str, bytes]) -> Route:
    """A route serving ``mapping`` by path, 404 for anything else."""

    def route(path: str) -> Reply:
        body = mapping.get(path)
        return Reply(404, b"not found") if body is None else Reply(200, body)

    return route


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (HTTP/1.0: one request per connection).

    With ``tls`` it serves HTTPS; the handshake runs in the accepting thread.
    """

    def __init__(self, route: Route | None = None, *, tls: ssl.SSLContext | None = None) -> None:
        self.route: Route = route or (lambda path: Reply(404, b"canary"))
        self.tls = tls
        self.hits: list[Hit] = []
        self.chunks_sent = 0
        self.url = ""
        self.port = 0

    @contextlib.contextmanager
    def running(self) -> Iterator[LoopbackServer]:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}))
                reply = owner.route(self.path)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunks is None:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                try:
                    if reply.chunks is None:
                        self.wfile.write(reply.body)
                        return
                    for chunk in reply.chunks:
                        self.wfile.write(chunk)
                        owner.chunks_sent += 1
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, format: str, *args: object) -> None:
                return

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        self.port = int(httpd.server_address[1])
        self.url = f"{'http' if self.tls is None else 'https'}://127.0.0.1:{self.port}"
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join()


class RoutedBackend(httpcore.AsyncNetworkBackend):
    """Connects ``routes`` addresses to loopback ports; records every (address, port)."""

    def __init__(self, routes: dict[str, int] | None = None) -> None:
        self.routes = routes or {}
        self.connects: list[tuple[str, int]] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        if host in self.routes:
            host, port = "127.0.0.1", self.routes[host]
        return await self._inner.connect_tcp(host, port, timeout=timeout)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AssertionError("the fetcher must not open unix sockets")

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("not used")


class StubResolver:
    """Answers from a table of name -> list of answers (one per call, the last repeats)."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answers = self.table.get(host)
        if answers is None:
            raise OSError(f"{host}: name not known")
        seen = sum(1 for h in self.calls if h == host)
        return answers[min(seen, len(answers)) - 1]
