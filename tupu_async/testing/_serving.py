"""Serving an ASGI app over real loopback HTTP with uvicorn: in the running loop or a thread.

The listening socket is bound before uvicorn starts, so a busy port raises ``OSError`` in
the caller (uvicorn itself would call ``sys.exit``) and port 0 gives a free port known at
once. The host program's signal handlers are left alone. Each request's scope carries
``ARRIVED_KEY``: ``time.monotonic()`` when its first bytes were parsed off the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import sniffio

from ._asgi import ARRIVED_KEY

if TYPE_CHECKING:
    import uvicorn

__all__ = ["bind_socket", "serve_in_loop", "serve_in_thread", "uvicorn_server"]

STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 10.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), ready to be listened on by uvicorn."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def base_url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def uvicorn_server(app: Any, *, install_signal_handlers: bool = False) -> uvicorn.Server:
    """A quiet uvicorn server for ``app`` (no access log, no lifespan, no websockets)."""
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - the testing extra installs it
        raise ImportError(
            "serving the fake Tupu server over HTTP needs uvicorn: "
            "pip install 'tupu-async[testing]'"
        ) from None

    config = uvicorn.Config(
        app,
        http=_stamping_protocol(),
        interface="asgi3",
        lifespan="off",
        ws="none",
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=2,
    )

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if install_signal_handlers:
                with super().capture_signals():
                    yield
            else:
                yield

    return _Server(config)


def _stamping_protocol() -> Any:
    """uvicorn's httptools protocol, stamping each request's arrival as it is parsed.

    The app's own task starts one loop iteration later, behind whatever else is ready (the
    responses being sent); a stamp taken there can be late by that much, and a late stamp
    bunches arrivals the client spaced correctly. ``"auto"`` without httptools.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - the testing extra installs httptools
        return "auto"

    class StampingProtocol(HttpToolsProtocol):
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope[ARRIVED_KEY] = time.monotonic()  # type: ignore[typeddict-unknown-key]

    return StampingProtocol


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run uvicorn on its own event loop in a daemon thread; yield the base URL."""
    sock = bind_socket(host, port)
    url = base_url_of(sock)
    server = uvicorn_server(app)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the starting thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"fake-tupu-server {url}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the fake Tupu server did not start on {url}") from (
                failure[0] if failure else None
            )
        time.sleep(0.002)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_TIMEOUT)
        if thread.is_alive():
            server.force_exit = True
            thread.join(SHUTDOWN_TIMEOUT)


@contextlib.asynccontextmanager
async def serve_in_loop(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run uvicorn in the running asyncio loop (under trio: in a thread); yield the base URL."""
    if sniffio.current_async_library() != "asyncio":
        manager = serve_in_thread(app, host, port)
        url = await anyio.to_thread.run_sync(manager.__enter__)
        try:
            yield url
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(manager.__exit__, None, None, None)
        return

    sock = bind_socket(host, port)
    url = base_url_of(sock)
    server = uvicorn_server(app)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        with anyio.fail_after(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError(f"the fake Tupu server did not start on {url}")
                await asyncio.sleep(0.002)
        yield url
    finally:
        server.should_exit = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_TIMEOUT):
            await asyncio.wait({task})
        if not task.done():
            server.force_exit = True
            task.cancel()
        elif not task.cancelled() and task.exception() is not None:
            raise RuntimeError("the fake Tupu server failed") from task.exception()
