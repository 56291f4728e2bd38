"""``TupuClient``: the synchronous client, a facade over one ``AsyncTupuClient`` that runs
on an event loop in a background thread (an anyio blocking portal)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Sequence
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import Future
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, Generic, TypeVar, cast, overload

import anyio
import httpx
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.memory import MemoryObjectReceiveStream
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from ._address_policy import AllowEntry
from ._client import AsyncTupuClient
from ._closing import Closing
from ._constants import (
    DEFAULT_BATCH_LINGER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RESPONSE_MAX_AGE,
    DEFAULT_TIMEOUT,
    MAX_IMAGES_PER_REQUEST,
    MAX_QPS,
    Region,
)
from ._events import ClientStats, Hooks
from ._exceptions import ClientClosedError, TupuError
from ._images import ImageInput
from ._keys import KeySource
from ._libraries import SyncLibraries
from ._limiter import RateLimiter
from ._requests import Transport
from ._retry import RetryPolicy
from ._types import ImageResult, RecognitionResponse

__all__ = ["BlockingCallError", "ClientClosedError", "TupuClient"]

T = TypeVar("T")


class BlockingCallError(TupuError, RuntimeError):
    """A blocking ``TupuClient`` call made inside a running event loop, which it would freeze."""


def _running_event_loop() -> str | None:
    """The name of the event loop running in this thread, if any."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return "trio"
    return None


def _refuse_inside_event_loop(what: str) -> None:
    loop = _running_event_loop()
    if loop is not None:
        raise BlockingCallError(
            f"TupuClient.{what} blocks, and this thread runs a {loop} event loop that it would "
            f"freeze: in async code use AsyncTupuClient (`await client.{what}(...)`), or run "
            f"the call in a worker thread (anyio.to_thread.run_sync, asyncio.to_thread)"
        )


async def _pull(items: Iterable[ImageInput]) -> AsyncIterator[ImageInput]:
    """Iterate ``items`` in a worker thread, one item at a time, so a caller's generator
    (which may block on files, queues or a database) never runs on the event loop."""
    iterator = iter(items)
    done = object()
    while True:
        # Abandoned on cancellation: a generator blocked on a queue must not hang close().
        item: object = await anyio.to_thread.run_sync(next, iterator, done, abandon_on_cancel=True)
        if item is done:
            return
        yield cast("ImageInput", item)


def _source(images: Iterable[ImageInput]) -> Iterable[ImageInput] | AsyncIterator[ImageInput]:
    """Lists and tuples go as they are (no caller code runs); other iterables are pulled."""
    if isinstance(images, (list, tuple)):
        return images
    return _pull(images)


class _Cancellable(Generic[T]):
    """One call on the loop that the calling thread can cancel at any moment, even before
    the portal has handed back its future (an interrupt can land in between)."""

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._scope: anyio.CancelScope | None = None
        self._abandoned = False

    async def run(self) -> T | None:
        with anyio.CancelScope() as scope:
            with self._lock:
                self._scope = scope
                if self._abandoned:
                    scope.cancel()
            return await self._fn()
        return None  # cancelled by abandon(); the caller has raised already

    def abandon(self, portal: BlockingPortal) -> None:
        with self._lock:
            self._abandoned = True
            scope = self._scope
        if scope is not None:
            with contextlib.suppress(RuntimeError):  # the portal has stopped: nothing runs
                portal.call(scope.cancel)


def _closed_error(what: str) -> ClientClosedError:
    return ClientClosedError(f"TupuClient.{what} on a closed client: create a new TupuClient")


_Pump = tuple[anyio.CancelScope, MemoryObjectReceiveStream[ImageResult]]


def _stop_pump(scope: anyio.CancelScope, receive: MemoryObjectReceiveStream[ImageResult]) -> None:
    scope.cancel()
    receive.close()


def _shut_down(
    client_cm: AbstractContextManager[object],
    portal: BlockingPortal,
    portal_cm: AbstractContextManager[BlockingPortal],
    loop_thread: int,
) -> None:
    """Exit the async client, cancel calls still waiting, stop the loop thread."""
    if threading.get_ident() == loop_thread:  # collected on the loop itself: cannot block
        args = (client_cm, portal, portal_cm, loop_thread)
        threading.Thread(target=_shut_down, args=args, daemon=True).start()
        return
    try:
        client_cm.__exit__(None, None, None)
    finally:
        try:  # calls still waiting in other threads are cancelled, not awaited
            portal.call(portal.stop, True)
        finally:
            portal_cm.__exit__(None, None, None)


class _Forwarded(Generic[T]):
    """A read-only attribute read from the wrapped ``AsyncTupuClient``'s one of that name."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Forwarded[T]: ...
    @overload
    def __get__(self, obj: TupuClient, owner: type | None = None) -> T: ...
    def __get__(self, obj: TupuClient | None, owner: type | None = None) -> T | _Forwarded[T]:
        if obj is None:
            return self
        return cast("T", getattr(obj._client, self.name))

    def __set__(self, obj: TupuClient, value: T) -> None:
        raise AttributeError(f"TupuClient.{self.name} is read-only")


class TupuClient(Closing):
    """The synchronous client: the constructor and results of ``AsyncTupuClient``.

    For threaded code (Django, Flask, Celery, scripts); use it as a context manager or
    call :meth:`close`. One client per secret id, shared by every thread::

        with TupuClient(secret_id="...", private_key=Path("key.pem")) as client:
            results = client.recognize_many(paths)

    Calls are thread-safe; concurrent ``recognize_one`` calls from many threads are
    coalesced into shared requests. Calling it from inside a running event loop raises
    ``BlockingCallError``; after :meth:`close` calls raise ``ClientClosedError``.
    ``backend`` picks the background loop (``"asyncio"`` or ``"trio"``).
    """

    def __init__(
        self,
        secret_id: str,
        private_key: KeySource | RSAPrivateKey,
        *,
        region: Region | str = Region.CN,
        base_url: str | None = None,
        tupu_public_key: KeySource | RSAPublicKey | None = None,
        verify_signature: bool = True,
        qps: float = MAX_QPS,
        max_images_per_request: int = MAX_IMAGES_PER_REQUEST,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
        batch_linger: float = DEFAULT_BATCH_LINGER,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        limiter: RateLimiter | None = None,
        retry_policy: RetryPolicy | None = None,
        hooks: Hooks | None = None,
        resize: bool = False,
        url_fallback: bool = False,
        fallback_allow_private: Iterable[AllowEntry] = (),
        response_max_age: float | None = DEFAULT_RESPONSE_MAX_AGE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        retry_ambiguous: bool = True,
        warm_connections: int | None = None,
        backend: str = "asyncio",
    ) -> None:
        # Every AsyncTupuClient argument, by name (a test keeps the two signatures in step).
        arguments = {k: v for k, v in locals().items() if k not in ("self", "backend")}
        _refuse_inside_event_loop("__init__")
        make = partial(AsyncTupuClient, **arguments)
        self._lock = threading.Lock()
        self._closed = False
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal(
            backend, name="tupu-async-loop"
        )
        portal = self._portal_cm.__enter__()
        try:
            self._client: AsyncTupuClient = portal.call(make)
            self._loop_thread: int = portal.call(threading.get_ident)
            self._client_cm = portal.wrap_async_context_manager(self._client)
            self._client_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        self._portal = portal
        self._libraries: SyncLibraries | None = None
        # Closes a client nobody closed when it is collected or at interpreter exit, while
        # the loop thread still runs (later, exiting would wait on the frozen thread).
        self._finalizer = weakref.finalize(
            self, _shut_down, self._client_cm, portal, self._portal_cm, self._loop_thread
        )

    def close(self) -> None:
        """Cancel work in flight, close connections, stop the background loop. Idempotent.

        Calls still running in other threads raise (cancelled) instead of hanging.
        """
        _refuse_inside_event_loop("close")
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether the client was closed (by :meth:`close`, or at interpreter exit)."""
        return self._closed or not self._finalizer.alive

    def _check_open(self, what: str) -> None:
        _refuse_inside_event_loop(what)
        if self.closed:
            raise _closed_error(what)

    def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        self._check_open(what)
        call = _Cancellable(fn)
        future: Future[T | None] | None = None
        try:
            try:
                future = self._portal.start_task_soon(call.run)
                return cast("T", future.result())
            except BaseException:
                if future is None or not future.done():
                    # Interrupted (Ctrl-C, a signal handler's exception): never leave the
                    # call running, sending requests nobody waits for.
                    call.abandon(self._portal)
                raise
        except FutureCancelled:
            raise ClientClosedError(
                f"TupuClient.{what} was cancelled because the client was closed"
            ) from None
        except RuntimeError as exc:
            if self.closed:  # the portal stopped under this call
                raise _closed_error(what) from exc
            raise

    def _forward(
        self,
        method: Callable[..., Awaitable[T]],
        arguments: dict[str, Any],
        **replaced: object,
    ) -> T:
        """Call the async client's ``method`` with the calling method's ``arguments``."""
        arguments = {k: v for k, v in arguments.items() if k != "self"} | replaced
        return self._call(method.__name__, partial(method, **arguments))

    def _call_start(
        self, what: str, fn: Callable[..., Awaitable[object]]
    ) -> tuple[Future[object], _Pump]:
        """Start ``fn`` as a task on the loop; its ``task_status.started`` value too."""
        self._check_open(what)
        future, started = self._portal.start_task(fn)
        return future, cast("_Pump", started)

    secret_id = _Forwarded[str]("The secret id requests are signed for.")
    base_url = _Forwarded[str]("The API host requests go to.")
    stats = _Forwarded[ClientStats]("A snapshot of the counters (``AsyncTupuClient.stats``).")
    hooks = _Forwarded[Hooks]("The event hooks (see ``AsyncTupuClient``).")
    limiter = _Forwarded[RateLimiter]("The rate limiter every thread's requests share.")

    @property
    def async_client(self) -> AsyncTupuClient:
        """The ``AsyncTupuClient`` running on the background loop (for instrumentation)."""
        return self._client

    @property
    def libraries(self) -> SyncLibraries:
        """The image-library (名单) management API, blocking."""
        if self._libraries is None:
            self._libraries = SyncLibraries(self._client.libraries, self._call)
        return self._libraries

    def __repr__(self) -> str:
        return f"TupuClient(secret_id={self.secret_id!r}, base_url={self.base_url!r})"

    def recognize(
        self,
        images: Sequence[ImageInput],
        *,
        tasks: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        referer: str | None = None,
        transport: Transport = "multipart",
    ) -> RecognitionResponse:
        """Exactly one HTTP request; see ``AsyncTupuClient.recognize``."""
        return self._forward(self._client.recognize, locals())

    def recognize_many(
        self,
        images: Iterable[ImageInput],
        *,
        tasks: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        referer: str | None = None,
        transport: Transport = "multipart",
    ) -> list[ImageResult]:
        """Any number of images, one result per input in input order; see
        ``AsyncTupuClient.recognize_many``. A generator is consumed in a worker thread."""
        return self._forward(self._client.recognize_many, locals(), images=_source(images))

    def recognize_one(
        self,
        image: ImageInput,
        *,
        tasks: Sequence[str] | None = None,
        tag: str | None = None,
        referer: str | None = None,
        transport: Transport = "multipart",
    ) -> ImageResult:
        """One image; concurrent calls from any threads share requests (see
        ``AsyncTupuClient.recognize_one``)."""
        return self._forward(self._client.recognize_one, locals())

    def iter_recognize(
        self,
        images: Iterable[ImageInput],
        *,
        tasks: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        referer: str | None = None,
        transport: Transport = "multipart",
    ) -> Generator[ImageResult, None, None]:
        """Yield each result as soon as its request completes, with bounded memory.

        A plain generator: closing it (or leaving the ``for`` loop and dropping it)
        cancels the work still in flight. Fatal errors raise from the ``for`` loop.
        """
        _refuse_inside_event_loop("iter_recognize")
        client = self._client
        source = _source(images)

        async def pump(*, task_status: TaskStatus[_Pump]) -> None:
            send, receive = anyio.create_memory_object_stream[ImageResult](0)
            with anyio.CancelScope() as scope:
                task_status.started((scope, receive))
                async with send:
                    async for result in client.iter_recognize(
                        source, tasks=tasks, tags=tags, referer=referer, transport=transport
                    ):
                        await send.send(result)

        future, (scope, receive) = self._call_start("iter_recognize", pump)
        try:
            while True:
                try:
                    result = self._call("iter_recognize", receive.receive)
                except anyio.EndOfStream:
                    break
                yield result
            if self.closed:
                raise ClientClosedError("the client was closed while iter_recognize ran")
            future.result()  # the pump's own error (a fatal TupuError), if any
        finally:
            if threading.get_ident() == self._loop_thread:
                # Garbage-collected on the loop itself: stop the pump, never wait on it.
                _stop_pump(scope, receive)
            else:
                if not self.closed:
                    with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                        self._portal.call(_stop_pump, scope, receive)
                with contextlib.suppress(Exception):  # raised above already, or not wanted
                    future.result()
