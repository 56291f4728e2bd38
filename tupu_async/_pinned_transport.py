"""An httpx transport that checks every connection's address before it connects.

Guarantee: a socket is only ever opened to an address the ``AddressPolicy`` allowed,
from the one lookup that was checked (design: ``docs/design-images.md``).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import contextmanager
from typing import Final

import anyio
import httpcore
import httpx

from ._address_policy import AddressPolicy
from ._logging import logger

__all__ = ["CheckingBackend", "PinnedTransport", "Resolver", "system_resolver"]

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``resolve(host, port) -> addresses``: the IP address strings a host name resolves to;
raises ``OSError`` when it does not resolve."""

_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``), answers in its order."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class CheckingBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every answer against ``policy``, connects to a checked address.

    A host whose answers include a refused address is refused as a whole (a mixed answer
    is what a rebinding attack looks like). Refusals are logged at WARNING with the host
    and the address class, and raise ``httpcore.ConnectError`` like any failed connect.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception = httpcore.ConnectError("no address")
        for address in await self._checked_addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the URL fallback does not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def _checked_addresses(self, host: str, port: int) -> list[str]:
        try:
            answers: Sequence[str] = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                answers = await self._resolver(host, port)
            except (OSError, ValueError) as exc:  # ValueError: a name getaddrinfo rejects
                raise httpcore.ConnectError(f"{host} did not resolve") from exc
        if not answers:
            raise httpcore.ConnectError(f"{host} did not resolve")
        by_name = self._policy.host_allowed(host)
        checked: list[str] = []
        for answer in answers:
            try:
                ip = ipaddress.ip_address(answer)
            except ValueError:
                raise httpcore.ConnectError(f"{host} resolved to {answer!r}") from None
            reason = None if by_name else self._policy.refusal(ip)
            if reason is not None:
                logger.warning(
                    "url_fallback refused to connect to %s: it resolves to %s, a %s address "
                    "(allow it with fallback_allow_private=[...] if this is intended)",
                    host,
                    ip,
                    reason,
                )
                raise httpcore.ConnectError(f"{host} is not a public address")
            checked.append(str(ip))
        return checked


@contextmanager
def _mapped_errors(request: httpx.Request) -> Iterator[None]:
    """httpcore's exceptions as the httpx ones callers of an httpx client expect."""
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__, request=request) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors(self._request):
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class PinnedTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over connections opened by a ``CheckingBackend``; no proxy, no env."""

    def __init__(
        self,
        backend: CheckingBackend,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped_errors(request):
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
