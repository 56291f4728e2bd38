"""``AsyncTupuClient``: configuration, lifetimes and the public recognition calls."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncGenerator, AsyncIterable, Hashable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx
from anyio.abc import TaskGroup
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from ._batching import Batch, Packer
from ._coalescer import Coalescer
from ._constants import (
    DEFAULT_BATCH_LINGER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    MAX_BASE64_BODY_BYTES,
    MAX_IMAGES_PER_REQUEST,
    MAX_QPS,
    REGION_HOSTS,
    Region,
)
from ._engine import BatchEngine, failed_result
from ._envelope import decode_inner, open_envelope
from ._events import ClientStats, Hooks
from ._exceptions import (
    IMAGE_ERROR_CODE,
    InvalidImageError,
    TupuError,
    error_for_code,
    is_fatal,
)
from ._images import (
    ContentTransform,
    Image,
    ImageInput,
    PreparedImage,
    load_image,
    tag_for,
    to_image,
)
from ._keys import KeySource, load_public_key, official_public_key
from ._limiter import LocalLimiter, RateLimiter
from ._regroup import regroup
from ._requests import PreparedRequest, Transport, build_recognition_request
from ._retry import RetryPolicy
from ._sending import RequestSender, raise_for_transient_status
from ._signing import Signer
from ._types import ImageResult, RecognitionResponse

if TYPE_CHECKING:
    from ._libraries import Libraries

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["AsyncTupuClient"]

_TRANSPORTS = ("multipart", "base64")


def _resolve_region(region: Region | str) -> Region:
    if isinstance(region, Region):
        return region
    try:
        return Region(str(region).strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown region {region!r}: use Region.CN, Region.US or Region.OVERSEA "
            f"(or 'cn', 'us', 'oversea'), or pass base_url="
        ) from None


def _check_transport(transport: str) -> Transport:
    if transport not in _TRANSPORTS:
        raise ValueError(f"transport must be 'multipart' or 'base64', not {transport!r}")
    return transport  # type: ignore[return-value]


def _unwrap_group(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups raised by task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        exc = (inner or list(exc.exceptions))[0]
    return exc


class _CallOptions:
    """The options of one recognition call; equal options may share a request."""

    __slots__ = ("referer", "tasks", "transport")

    def __init__(self, tasks: Sequence[str] | None, referer: str | None, transport: Transport):
        if isinstance(tasks, str):
            tasks = [tasks]
        if tasks is not None:
            bad = [t for t in tasks if not isinstance(t, str) or not t.strip()]
            if bad:
                raise ValueError(f"tasks must be non-empty task id strings, got {bad!r}")
        if referer is not None and not isinstance(referer, str):
            raise ValueError("referer must be a str")
        self.tasks = tuple(tasks) if tasks else None
        self.referer = referer or None
        self.transport = transport


class AsyncTupuClient:
    """The asyncio (and trio) client for the Tupu image-recognition API.

    Use it as an async context manager; one client per secret id, shared by every
    coroutine of the process, so that all of them draw from one QPS budget::

        async with AsyncTupuClient(secret_id="...", private_key=Path("key.pem")) as client:
            results = await client.recognize_many(urls)

    Every request is signed with ``private_key``; every response envelope is verified
    with the Tupu public key (the bundled official one unless ``tupu_public_key`` is
    given). ``qps`` caps request starts in any 1-second window, retries included.
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
    ) -> None:
        if not isinstance(max_images_per_request, int) or max_images_per_request < 1:
            raise ValueError("max_images_per_request must be a positive int (the API's is 10)")
        if qps <= 0:
            raise ValueError("qps must be positive (the API allows 50 per secret id)")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if batch_linger < 0:
            raise ValueError("batch_linger must be >= 0 seconds")
        self.region = _resolve_region(region)
        self.base_url = (base_url or REGION_HOSTS[self.region]).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r} must start with http:// or https://")
        self._signer = Signer(secret_id, private_key)
        self._public_key: RSAPublicKey | None = None
        if verify_signature:
            self._public_key = (
                official_public_key()
                if tupu_public_key is None
                else load_public_key(tupu_public_key)
            )
        self.max_images_per_request = max_images_per_request
        self.batch_linger = batch_linger
        self.max_in_flight = max_in_flight
        # After a throttle the halved rate climbs back by qps/10 per second: full speed
        # again within ~5 s of clean traffic, instead of the 25 s of +1 req/s.
        self._limiter: RateLimiter = (
            limiter if limiter is not None else LocalLimiter(qps, recovery=max(1.0, qps / 10))
        )
        self._owns_http = http_client is None
        if http_client is None:
            http_client = httpx.AsyncClient(
                timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
                limits=httpx.Limits(
                    max_connections=max_in_flight, max_keepalive_connections=max_in_flight
                ),
            )
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
        )
        self._transform: ContentTransform | None = None
        if resize:
            from ._resize import make_resizer

            self._transform = make_resizer()
        self._url_fallback = url_fallback
        self._task_group: TaskGroup | None = None
        self._closed = False
        self._coalescer = Coalescer(
            send_batch=self._send_coalesced,
            spawn=self._spawn,
            max_images=max_images_per_request,
            linger=batch_linger,
            transport_of=lambda key: key[3],  # type: ignore[index]
        )
        self._libraries: Libraries | None = None

    # ----------------------------------------------------------------- lifetimes

    async def __aenter__(self) -> AsyncTupuClient:
        if self._closed:
            raise RuntimeError("this AsyncTupuClient is closed; create a new one")
        self._tg_cm = anyio.create_task_group()
        self._task_group = await self._tg_cm.__aenter__()
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
                await self._limiter.aclose()

    def _running_task_group(self) -> TaskGroup:
        if self._task_group is None:
            raise RuntimeError(
                "recognize_one and iter_recognize run background work: use the client as "
                "`async with AsyncTupuClient(...) as client:` (or enter it in your app's lifespan)"
            )
        return self._task_group

    def _spawn(self, fn: Any, *args: Any) -> None:
        self._running_task_group().start_soon(fn, *args)

    # ---------------------------------------------------------------- properties

    @property
    def secret_id(self) -> str:
        return self._signer.secret_id

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters: requests, images, retries, throttles, in flight."""
        return self._stats.snapshot()

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

    # ------------------------------------------------------------------- helpers

    def _parse_recognition(self, response: httpx.Response) -> RecognitionResponse:
        raise_for_transient_status(response)
        status = response.status_code
        text = open_envelope(response.content, self._public_key, status_code=status)
        decoded = decode_inner(text)
        if decoded.code not in (0, IMAGE_ERROR_CODE):
            raise error_for_code(
                decoded.code, decoded.message, status_code=status, request_id=decoded.request_id
            )
        return decoded

    async def _prepare(
        self, item: object, index: int, tags: list[str] | None, transport: Transport
    ) -> PreparedImage:
        """Validate one input; file reads and resizing run in a worker thread."""
        image = to_image(item)
        tag = tag_for(tags, index)
        if image.kind != "url" and image.sequence_id is not None and transport == "base64":
            raise InvalidImageError(
                f"{image.name or f'image #{index}'}: the base64 endpoint has no sequenceId "
                f"field; send images with a sequence_id with transport='multipart'"
            )
        if image.kind == "url" or (image.kind == "bytes" and self._transform is None):
            return load_image(image, index, tag)
        transform = self._transform
        return await anyio.to_thread.run_sync(
            lambda: load_image(image, index, tag, transform=transform)
        )

    def _build(self, batch: Batch, options: _CallOptions) -> PreparedRequest:
        return build_recognition_request(
            self.secret_id,
            batch,
            tasks=options.tasks,
            referer=options.referer,
            transport=options.transport,
        )

    async def _send_batch(self, batch: Batch, options: _CallOptions) -> list[ImageResult]:
        """One request for ``batch``: results per image; fatal errors raise."""
        request = self._build(batch, options)
        try:
            response = await self._sender.send(request, self._parse_recognition)
        except TupuError as exc:
            if is_fatal(exc):
                raise
            return [
                failed_result(im.index, im.name, exc, tag=im.tag, sequence_id=im.sequence_id)
                for im in batch
            ]
        by_position = not batch[0].is_url and options.transport == "base64"
        results = regroup(response, batch, by_position=by_position)
        if self._url_fallback and batch[0].is_url:
            from ._fallback import resubmit_failed_urls

            results = await resubmit_failed_urls(self, results, batch, options)
        return results

    async def _send_coalesced(self, batch: Batch, key: Hashable) -> list[ImageResult]:
        _, tasks, referer, transport = cast(
            "tuple[bool, tuple[str, ...] | None, str | None, Transport]", key
        )
        return await self._send_batch(batch, _CallOptions(tasks, referer, transport))

    def _packer(self, transport: Transport) -> Packer:
        return Packer(
            max_images=self.max_images_per_request,
            transport=transport,
            max_body_bytes=MAX_BASE64_BODY_BYTES,
        )

    # ------------------------------------------------------------ public calls

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
        options = _CallOptions(tasks, referer, _check_transport(transport))
        if isinstance(images, (str, bytes, os.PathLike, Image)):
            images = [images]
        images = list(images)
        if not images:
            raise ValueError("recognize needs at least one image")
        if len(images) > self.max_images_per_request:
            raise ValueError(
                f"recognize sends exactly one request of at most {self.max_images_per_request} "
                f"images, got {len(images)}: use recognize_many, which splits them"
            )
        tag_list = _tag_list(tags)
        prepared = [
            await self._prepare(item, i, tag_list, options.transport)
            for i, item in enumerate(images)
        ]
        if len({p.is_url for p in prepared}) > 1:
            raise ValueError(
                "recognize got URL and content images together, which the API forbids in one "
                "request: send them separately, or use recognize_many, which splits them"
            )
        seq = [p.sequence_id for p in prepared if p.sequence_id is not None]
        if len(seq) != len(set(seq)):
            raise ValueError(
                "a sequence_id may appear only once per request (the API requires "
                "frames of one sequence to be unique per request): use recognize_many"
            )
        request = self._build(prepared, options)
        if (
            options.transport == "base64"
            and not prepared[0].is_url
            and request.static_size + 1024 > MAX_BASE64_BODY_BYTES
        ):
            raise ValueError(
                "these images make a base64 body over the API's 30 MiB limit: send fewer per "
                "request, or use recognize_many, which packs by size"
            )
        response = await self._sender.send(request, self._parse_recognition)
        by_position = not prepared[0].is_url and options.transport == "base64"
        response.images = regroup(response, prepared, by_position=by_position)
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
        engine = self._engine(tasks, referer, transport, tags)
        send, receive = anyio.create_memory_object_stream[ImageResult](self.max_images_per_request)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(engine.run, images, send)
                async with receive:
                    async for result in receive:
                        results.append(result)
        except BaseExceptionGroup as eg:
            raise _unwrap_group(eg) from None
        results.sort(key=_by_index)
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

        Memory is bounded by the window of requests in flight, not by the input: a
        generator of a million images streams. Breaking out of the loop (or cancelling the
        consumer) cancels the work still in flight. Needs ``async with`` on the client.
        """
        engine = self._engine(tasks, referer, transport, tags)
        send, receive = anyio.create_memory_object_stream[ImageResult](self.max_images_per_request)
        failure: list[BaseException] = []
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                try:
                    await engine.run(images, send)
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
        tasks: Sequence[str] | None,
        referer: str | None,
        transport: str,
        tags: Sequence[str] | None,
    ) -> BatchEngine:
        options = _CallOptions(tasks, referer, _check_transport(transport))
        tag_list = _tag_list(tags)

        async def prepare(item: object, index: int) -> PreparedImage:
            return await self._prepare(item, index, tag_list, options.transport)

        async def send_batch(batch: Batch) -> list[ImageResult]:
            return await self._send_batch(batch, options)

        return BatchEngine(
            prepare=prepare,
            send_batch=send_batch,
            packer=self._packer(options.transport),
            max_in_flight=self.max_in_flight,
            linger=self.batch_linger,
        )

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
        Needs ``async with`` on the client. The result's ``index`` is 0.
        """
        options = _CallOptions(tasks, referer, _check_transport(transport))
        self._running_task_group()  # fail before reading anything when not entered
        prepared = await self._prepare(
            image, 0, [tag] if tag is not None else None, options.transport
        )
        key = (prepared.is_url, options.tasks, options.referer, options.transport)
        return await self._coalescer.submit(key, prepared)


def _tag_list(tags: Sequence[str] | None) -> list[str] | None:
    if tags is None:
        return None
    if isinstance(tags, str):
        return [tags]
    out = list(tags)
    bad = [t for t in out if not isinstance(t, str)]
    if bad:
        raise ValueError(f"tags must be strings, got {bad[:3]!r}")
    return out


def _by_index(result: ImageResult) -> int:
    return result.index
