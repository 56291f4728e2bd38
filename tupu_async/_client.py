"""``AsyncTupuClient``: configuration, lifetimes and the public recognition calls."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Coroutine, Iterable, Sequence
from dataclasses import replace
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from ._address_policy import AllowEntry
from ._base_url import normalise_base_url
from ._batching import Batch, Packer
from ._call_options import CallOptions, as_inputs, tag_list
from ._client_setup import (
    check_client_args,
    default_http_client,
    resolve_region,
    verification_key,
)
from ._coalescer import Coalescer
from ._constants import (
    DEFAULT_BATCH_LINGER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RESPONSE_MAX_AGE,
    DEFAULT_TIMEOUT,
    MAX_BASE64_BODY_BYTES,
    MAX_IMAGES_PER_REQUEST,
    MAX_QPS,
    Region,
)
from ._engine import BatchEngine, failed_batch
from ._events import ClientStats, Hooks
from ._exceptions import ClientClosedError, InvalidImageError, TupuError, is_fatal
from ._freshness import ReplayGuard
from ._images import ImageInput, PreparedImage
from ._keys import KeySource
from ._limiter import LocalLimiter, RateLimiter
from ._recognition import ImageLoader, RecognitionParser
from ._redaction import register_secret
from ._regroup import regroup
from ._requests import Transport
from ._retry import RetryPolicy
from ._sending import RequestSender
from ._signing import Signer
from ._types import ImageResult, RecognitionResponse
from ._warmup import default_warm_connections, warm_pool

if TYPE_CHECKING:
    from ._fallback import UrlFallback
    from ._libraries import Libraries

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["AsyncTupuClient"]


def _unwrap_group(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups raised by task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        exc = (inner or list(exc.exceptions))[0]
    return exc


class AsyncTupuClient:
    """The asyncio (and trio) client for the Tupu image-recognition API.

    Use it as an async context manager, one client per secret id shared by every
    coroutine, so all of them draw from one QPS budget::

        async with AsyncTupuClient(secret_id="...", private_key=Path("key.pem")) as client:
            results = await client.recognize_many(urls)

    Guarantees: every request is signed with ``private_key`` and every response envelope
    verified with the Tupu public key (the bundled one unless ``tupu_public_key``); at most
    ``qps`` request starts (retries included) in any 1-second window; a recognition answer
    older than ``response_max_age`` seconds (None: no limit) or seen before raises
    ``StaleResponseError``/``ReplayedResponseError``; bodies over ``max_response_bytes``
    are refused unread. Delivery is at-least-once unless ``retry_ambiguous=False`` (then
    ``AmbiguousFailureError``). At most ``max_in_flight`` requests are in flight, and
    ``recognize_one`` admits at most ``(max_in_flight + 1) * max_images_per_request``
    callers at once. A client that owns its HTTP pool opens ``warm_connections``
    connections on entry (default ``ceil(qps / 5)``, 0 disables; an unsigned ``HEAD /``).
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
    ) -> None:
        check_client_args(
            max_images_per_request=max_images_per_request,
            qps=qps,
            max_retries=max_retries,
            max_in_flight=max_in_flight,
            batch_linger=batch_linger,
            response_max_age=response_max_age,
            max_response_bytes=max_response_bytes,
            warm_connections=warm_connections,
        )
        self.region = resolve_region(region)
        self.base_url = normalise_base_url(base_url or self.region.base_url)
        self._signer = Signer(secret_id, private_key)
        register_secret(self._signer.secret_id)
        self._public_key = verification_key(verify_signature, tupu_public_key)
        # Freshness is only meaningful for answers whose signature is checked.
        self._parse_recognition = RecognitionParser(
            self._public_key,
            ReplayGuard(response_max_age)
            if verify_signature and response_max_age is not None
            else None,
        )
        self.max_images_per_request = max_images_per_request
        self.batch_linger = batch_linger
        self.max_in_flight = max_in_flight
        self._limiter: RateLimiter = (
            limiter if limiter is not None else LocalLimiter(qps, recovery=max(1.0, qps / 10))
        )
        self._owns_http = http_client is None
        if warm_connections is None:
            warm_connections = default_warm_connections(self._limiter.qps, max_in_flight)
        self._warm_connections = min(warm_connections, max_in_flight) if self._owns_http else 0
        if http_client is None:
            http_client = default_http_client(timeout, max_in_flight)
        self._http = http_client
        self._stats = ClientStats()
        self.hooks = hooks or Hooks()
        self._sender = RequestSender(
            http=http_client,
            base_url=self.base_url,
            signer=self._signer,
            limiter=self._limiter,
            policy=retry_policy or RetryPolicy(max_retries=max_retries),
            hooks=self.hooks,
            stats=self._stats,
            max_response_bytes=max_response_bytes,
            retry_ambiguous=retry_ambiguous,
        )
        self._images = ImageLoader()
        if resize:
            from ._resize import make_resizer

            self._images = ImageLoader(make_resizer())
        self._fallback: UrlFallback | None = None
        if url_fallback:
            from ._fallback import make_fallback

            self._fallback = make_fallback(
                allow_private=fallback_allow_private,
                load=self._images.load,
                resized=self._images.transform is not None,
                count=self._count_fallbacks,
            )
        elif fallback_allow_private:
            raise ValueError("fallback_allow_private has no effect without url_fallback=True")
        self._task_group: TaskGroup | None = None
        self._closed = False
        self._coalescer = Coalescer(
            send_batch=self._send_batch,
            spawn=self._spawn,
            max_images=max_images_per_request,
            linger=batch_linger,
            max_in_flight=max_in_flight,
        )
        self._libraries: Libraries | None = None

    async def __aenter__(self) -> AsyncTupuClient:
        if self._closed:
            raise ClientClosedError("this AsyncTupuClient is closed; create a new one")
        self._tg_cm = anyio.create_task_group()
        self._task_group = await self._tg_cm.__aenter__()
        if self._warm_connections:
            self._task_group.start_soon(
                warm_pool, self._http, self.base_url, self._warm_connections
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel background work, close connections this client opened, free the limiter."""
        if self._closed:
            return
        self._closed = True
        tg, self._task_group = self._task_group, None
        try:
            if tg is not None:
                tg.cancel_scope.cancel()
                try:
                    await self._tg_cm.__aexit__(None, None, None)
                except BaseException as exc:  # background work was cancelled; report real errors
                    real = _unwrap_group(exc)
                    if not isinstance(real, anyio.get_cancelled_exc_class()):
                        raise real from None
        finally:  # connections and the limiter are released even when background work failed
            try:
                if self._owns_http:
                    await self._http.aclose()
            finally:
                try:
                    if self._fallback is not None:
                        await self._fallback.aclose()
                finally:
                    await self._limiter.aclose()

    def _count_fallbacks(self, n: int) -> None:
        self._stats.fallbacks += n

    def _running_task_group(self) -> TaskGroup:
        if self._task_group is None:
            raise RuntimeError(
                "recognize_one and iter_recognize run background work: use the client as "
                "`async with AsyncTupuClient(...) as client:` (or enter it in your app's lifespan)"
            )
        return self._task_group

    def _spawn(self, fn: Any, *args: Any) -> None:
        self._running_task_group().start_soon(fn, *args)

    @property
    def secret_id(self) -> str:
        return self._signer.secret_id

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters: requests, images, retries, throttles, in flight,
        and what the limiter believes (``stats.limiter``; None if it cannot say)."""
        snapshot = self._stats.snapshot()
        belief = getattr(self._limiter, "belief", None)
        if callable(belief):
            snapshot.limiter = belief()
        return snapshot

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    @property
    def libraries(self) -> Libraries:
        """The image-library (名单) management API."""
        if self._libraries is None:
            from ._libraries import Libraries

            self._libraries = Libraries(self._sender, self._public_key)
        return self._libraries

    def __repr__(self) -> str:
        return (
            f"AsyncTupuClient(secret_id={self.secret_id!r}, base_url={self.base_url!r}, "
            f"qps={self._limiter.qps})"
        )

    async def _send_batch(self, batch: Batch, options: CallOptions) -> list[ImageResult]:
        """One request for ``batch``: results per image; fatal errors raise."""
        try:
            request = options.build(self.secret_id, batch)
        except Exception as exc:  # validated inputs always encode; never lose the batch
            error = TupuError(f"could not build the request ({type(exc).__name__}: {exc})")
            return failed_batch(batch, error)
        try:
            response = await self._sender.send(request, self._parse_recognition)
        except TupuError as exc:
            if is_fatal(exc):
                raise
            return failed_batch(batch, exc)
        results = regroup(response, batch, by_position=options.by_position(batch))
        if self._fallback is not None and batch[0].is_url:
            content_options = replace(options, transport="multipart")

            async def resubmit(content: Batch) -> list[ImageResult]:
                return await self._send_batch(content, content_options)

            results = await self._fallback.replace_failed(results, batch, resubmit)
        return results

    async def recognize(
        self,
        images: Sequence[ImageInput],
        *,
        tasks: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        referer: str | None = None,
        transport: Transport = "multipart",
    ) -> RecognitionResponse:
        """Exactly one HTTP request for at most ``max_images_per_request`` images.

        Raises ``InvalidImageError`` for a bad input and ``ValueError`` for too many
        images, URL and content images mixed, a repeated ``sequence_id`` or a base64 body
        over 30 MiB, all before anything is sent. Returns the verified response with
        ``.images`` (one ``ImageResult`` per input, in order). Transient failures are
        retried; one still failing after ``max_retries`` is raised.
        """
        options = CallOptions.of(tasks, referer, transport)
        inputs = as_inputs(images, "recognize")
        if not isinstance(inputs, Iterable):
            raise InvalidImageError(
                "recognize takes a list of at most max_images_per_request images, not an "
                "async iterable: use recognize_many or iter_recognize"
            )
        images = list(inputs)
        if not images:
            raise ValueError("recognize needs at least one image")
        if len(images) > self.max_images_per_request:
            raise ValueError(
                f"recognize sends exactly one request of at most {self.max_images_per_request} "
                f"images, got {len(images)}: use recognize_many, which splits them"
            )
        tags_ = tag_list(tags)
        prepared = [
            await self._images.prepare(item, i, tags_, options.transport)
            for i, item in enumerate(images)
        ]
        request = options.build_one(self.secret_id, prepared)
        response = await self._sender.send(request, self._parse_recognition)
        response.images = regroup(response, prepared, by_position=options.by_position(prepared))
        return response

    async def recognize_many(
        self,
        images: Iterable[ImageInput] | AsyncIterable[ImageInput],
        *,
        tasks: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        referer: str | None = None,
        transport: Transport = "multipart",
    ) -> list[ImageResult]:
        """Any number of images; one ``ImageResult`` per input, in input order.

        Packs images into requests (<= ``max_images_per_request``, <= 30 MiB for base64),
        holds the QPS limit, retries transient failures. An invalid input becomes its
        own result with ``error=InvalidImageError(...)``; fatal errors (authentication,
        configuration, a bad response signature) raise and stop the call.
        """
        results: list[ImageResult] = []
        run, receive = self._engine("recognize_many", images, tasks, tags, referer, transport)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                async with receive:
                    async for result in receive:
                        results.append(result)
        except BaseExceptionGroup as eg:
            raise _unwrap_group(eg) from None
        results.sort(key=lambda result: result.index)
        return results

    async def iter_recognize(
        self,
        images: Iterable[ImageInput] | AsyncIterable[ImageInput],
        *,
        tasks: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        referer: str | None = None,
        transport: Transport = "multipart",
    ) -> AsyncGenerator[ImageResult, None]:
        """Like ``recognize_many`` but yields each result as soon as its request completes.

        Memory is bounded by the requests in flight, not by the input. Breaking out of the
        loop (or cancelling the consumer) cancels the work still in flight. Needs
        ``async with`` on the client.
        """
        engine, receive = self._engine("iter_recognize", images, tasks, tags, referer, transport)
        failure: list[BaseException] = []
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                try:
                    await engine()
                except BaseException as exc:
                    real = _unwrap_group(exc)
                    if not isinstance(real, anyio.get_cancelled_exc_class()):
                        failure.append(real)
                    else:
                        raise

        self._spawn(run)
        try:
            async with receive:
                async for result in receive:
                    yield result
            if failure:
                raise failure[0]
        finally:
            scope.cancel()

    def _engine(
        self,
        call: str,
        images: object,
        tasks: Sequence[str] | None,
        tags: Sequence[str] | None,
        referer: str | None,
        transport: str,
    ) -> tuple[Callable[[], Coroutine[Any, Any, None]], MemoryObjectReceiveStream[ImageResult]]:
        """A batch engine for one call: awaiting ``run()`` feeds ``receive``, then closes it."""
        inputs = as_inputs(images, call)
        options = CallOptions.of(tasks, referer, transport)
        tags_ = tag_list(tags)

        async def prepare(item: object, index: int) -> PreparedImage:
            return await self._images.prepare(item, index, tags_, options.transport)

        async def send_batch(batch: Batch) -> list[ImageResult]:
            return await self._send_batch(batch, options)

        engine = BatchEngine(
            prepare=prepare,
            send_batch=send_batch,
            packer=Packer(
                max_images=self.max_images_per_request,
                transport=options.transport,
                max_body_bytes=MAX_BASE64_BODY_BYTES,
            ),
            max_in_flight=self.max_in_flight,
            linger=self.batch_linger,
        )
        send, receive = anyio.create_memory_object_stream[ImageResult](self.max_images_per_request)
        return partial(engine.run, inputs, send), receive

    async def recognize_one(
        self,
        image: ImageInput,
        *,
        tasks: Sequence[str] | None = None,
        tag: str | None = None,
        referer: str | None = None,
        transport: Transport = "multipart",
    ) -> ImageResult:
        """Recognise one image, sharing a request with concurrent callers.

        Concurrent calls with the same options are coalesced into requests of up to
        ``max_images_per_request`` images, each waiting at most ``batch_linger`` seconds
        for companions. Raises ``InvalidImageError`` for bad input and fatal errors; a
        request that still fails after retries returns a result with ``error`` set.
        Needs ``async with`` on the client. The result's ``index`` is 0. Callers beyond
        the admission bound (see the class docstring) wait here before their image is read.
        """
        options = CallOptions.of(tasks, referer, transport)
        self._running_task_group()  # fail before reading anything when not entered
        async with self._coalescer.admission:  # backpressure: wait before reading the image
            tags = [tag] if tag is not None else None
            prepared = await self._images.prepare(image, 0, tags, options.transport)
            return await self._coalescer.submit(options, prepared)
