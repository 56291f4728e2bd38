"""The in-process httpx transport of a fake server, failing as a socket would."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import httpx

from ._asgi import DroppedConnection, InProcessTimeout, Receive, Scope, Send

if TYPE_CHECKING:
    from ._app import FakeTupuApp

__all__ = ["FakeServerTransport"]


class FakeServerTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that serves requests with a fake server's app.

    Runs the app in the caller's task (asyncio or trio); no sockets, no threads. The
    client's read timeout is enforced (``httpx.ReadTimeout``), as are the
    ``drop_connection`` (``httpx.RemoteProtocolError``) and ``timeout`` faults.
    """

    def __init__(self, app: FakeTupuApp) -> None:
        self._app = app

        async def in_process_app(scope: Scope, receive: Receive, send: Send) -> None:
            await app.handle(scope, receive, send, in_process=True)

        self._inner = httpx.ASGITransport(app=in_process_app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        read_timeout = timeouts.get("read")
        try:
            if read_timeout is None or not self._app.may_sleep:  # skip the cancel scope
                return await self._inner.handle_async_request(request)
            with anyio.fail_after(read_timeout):
                return await self._inner.handle_async_request(request)
        except (TimeoutError, InProcessTimeout):
            raise httpx.ReadTimeout(
                "timed out waiting for the fake server", request=request
            ) from None
        except DroppedConnection:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from None

    async def aclose(self) -> None:
        await self._inner.aclose()
