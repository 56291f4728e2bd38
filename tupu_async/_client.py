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

from ._address_policy import AllowEntry
from ._base_url import normalise_base_url
from ._batching import Batch, Packer
from ._coalescer import Coalescer
from ._constants import (
    DEFAULT_BATCH_LINGER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RESPONSE_MAX_AGE,
    DEFAULT_TIMEOUT,
    MAX_BASE64_BODY_BYTES,
    MAX_IMAGE_BYTES,
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
    ClientClosedError,
    InvalidImageError,
    TupuError,
    error_for_code,
    is_fatal,
)
from ._freshness import ReplayGuard
from ._images import (
    ContentTransform,
    Image,
    ImageInput,
    PreparedImage,
    check_image,
    display_path,
    load_image,
    prepare_url_str,
    read_path_in_thread,
    tag_for,
    to_image,
)
from ._keys import KeySource, load_public_key, official_public_key
from ._limiter import LocalLimiter, RateLimiter
from ._redaction import redact_error, register_secret
from ._regroup import regroup
from ._requests import PreparedRequest, Transport, build_recognition_request
from ._retry import RetryPolicy
from ._sending import RequestSender, raise_for_transient_status
from ._signing import Signer
from ._types import ImageResult, RecognitionResponse
from ._warmup import default_warm_connections, warm_pool

if TYPE_CHECKING:
    from ._fallback import UrlFallback
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

    A verified recognition answer must also be fresh: its timestamp within
    ``response_max_age`` seconds of the local clock (None turns this off) and not an
    answer this client accepted before; otherwise ``StaleResponseError`` or
    ``ReplayedResponseError`` (fatal). Bodies over ``max_response_bytes`` are refused
    unread. Delivery is at-least-once: a failure after the request reached the service
    is retried unless ``retry_ambiguous=False`` (then those images fail with
    ``AmbiguousFailureError``); ``stats.ambiguous_retries`` counts such re-sends.
    ``recognize_one`` admits at most ``(max_in_flight + 1) * max_images_per_request``
    callers at once (the rest wait) and sends at most ``max_in_flight`` requests at once.
    On entry, a client that owns its HTTP pool opens ``warm_connections`` connections in
    the background (default ``ceil(qps / 5)``, 0 disables; an unsigned ``HEAD /``, not an
    API call), so connection set-up does not lag the first paced requests.
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
        if response_max_age is not None and not response_max_age > 0:
            raise ValueError(
                "response_max_age must be a positive number of seconds, or None to accept "
                "responses of any age"
            )
        if isinstance(max_response_bytes, bool) or not (
            isinstance(max_response_bytes, int) and max_response_bytes >= 1024
        ):
            raise ValueError("max_response_bytes must be an int >= 1024")
        if warm_connections is not None and (
            isinstance(warm_connections, bool)
            or not isinstance(warm_connections, int)
            or warm_connections < 0
        ):
            raise ValueError(
                "warm_connections must be an int >= 0 (0 disables warming) or None (default)"
            )
        self.region = _resolve_region(region)
        self.base_url = normalise_base_url(base_url or REGION_HOSTS[self.region])
        self._signer = Signer(secret_id, private_key)
        register_secret(self._signer.secret_id)
        self._public_key: RSAPublicKey | None = None
        if verify_signature:
            self._public_key = (
                official_public_key()
                if tupu_public_key is None
                else load_public_key(tupu_public_key)
            )
        # Freshness is only meaningful for answers whose signature is checked.
        self._replay_guard = (
            ReplayGuard(response_max_age)
            if verify_signature and response_max_age is not None
            else None
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
        if warm_connections is None:
            warm_connections = default_warm_connections(self._limiter.qps, max_in_flight)
        # Only a pool this client owns is warmed: a caller's http_client is theirs to manage.
        self._warm_connections = min(warm_connections, max_in_flight) if self._owns_http else 0
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
            max_response_bytes=max_response_bytes,
            retry_ambiguous=retry_ambiguous,
        )
        self._transform: ContentTransform | None = None
        if resize:
            from ._resize import make_resizer

            self._transform = make_resizer()
        self._fallback: UrlFallback | None = None
        if url_fallback:
            self._fallback = self._make_fallback(fallback_allow_private)
        elif fallback_allow_private:
            raise ValueError("fallback_allow_private has no effect without url_fallback=True")
        self._task_group: TaskGroup | None = None
        self._closed = False
        self._coalescer = Coalescer(
            send_batch=self._send_coalesced,
            spawn=self._spawn,
            max_images=max_images_per_request,
            linger=batch_linger,
            transport_of=lambda key: key[3],  # type: ignore[index]
            max_in_flight=max_in_flight,
        )
        self._libraries: Libraries | None = None

    # ----------------------------------------------------------------- lifetimes

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

    def _make_fallback(self, allow_private: Iterable[AllowEntry]) -> UrlFallback:
        from ._fallback import MAX_DOWNLOAD_BYTES_RESIZED, UrlFallback
        from ._safe_fetch import SafeFetcher

        def count(n: int) -> None:
            self._stats.fallbacks += n

        return UrlFallback(
            fetcher=SafeFetcher(allow_private=allow_private),
            load=self._load,
            max_bytes=MAX_IMAGE_BYTES if self._transform is None else MAX_DOWNLOAD_BYTES_RESIZED,
            count=count,
        )

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

    # ------------------------------------------------------------------- helpers

    def _parse_recognition(self, response: httpx.Response) -> RecognitionResponse:
        try:
            return self._parse_recognition_unredacted(response)
        except TupuError as exc:
            redact_error(exc)
            raise

    def _parse_recognition_unredacted(self, response: httpx.Response) -> RecognitionResponse:
        raise_for_transient_status(response)
        status = response.status_code
        text = open_envelope(response.content, self._public_key, status_code=status)
        decoded = decode_inner(text)
        if decoded.code not in (0, IMAGE_ERROR_CODE):
            # Errors first: code 12 explains a skewed clock better than staleness would.
            raise error_for_code(
                decoded.code, decoded.message, status_code=status, request_id=decoded.request_id
            )
        if self._replay_guard is not None:
            self._replay_guard.check(decoded.timestamp, decoded.nonce, text)
        return decoded

    async def _prepare(
        self, item: object, index: int, tags: list[str] | None, transport: Transport
    ) -> PreparedImage:
        """Validate one input: raises ``InvalidImageError`` and nothing else.

        A failure that validation did not foresee still fails only this input, as an
        ``InvalidImageError`` naming the cause.
        """
        try:
            return await self._prepare_checked(item, index, tags, transport)
        except InvalidImageError:
            raise
        except Exception as exc:
            detail = display_path(str(exc))[:200]
            raise InvalidImageError(
                f"image #{index}: could not be prepared ({type(exc).__name__}: {detail}); "
                f"pass a URL str, a pathlib.Path, bytes or tupu_async.Image"
            ) from exc

    async def _prepare_checked(
        self, item: object, index: int, tags: list[str] | None, transport: Transport
    ) -> PreparedImage:
        """File reads and resizing run in worker threads; reads are bounded in time."""
        if type(item) is str:  # the common case, checked in one pass
            return prepare_url_str(item, index, tag_for(tags, index))
        image, tag = check_image(to_image(item), tag_for(tags, index))
        if image.kind != "url" and image.sequence_id is not None and transport == "base64":
            raise InvalidImageError(
                f"{image.name or f'image #{index}'}: the base64 endpoint has no sequenceId "
                f"field; send images with a sequence_id with transport='multipart'"
            )
        return await self._load(image, index, tag)

    async def _load(self, image: Image, index: int, tag: str | None) -> PreparedImage:
        """``load_image``; file reads (bounded in time) and resizing in worker threads."""
        transform = self._transform
        if image.kind == "url" or (image.kind == "bytes" and transform is None):
            return load_image(image, index, tag)
        content = None
        if image.kind == "path":
            content = await read_path_in_thread(image, transform=transform)
            if transform is None:
                return load_image(image, index, tag, content=content)
        return await anyio.to_thread.run_sync(
            lambda: load_image(image, index, tag, transform=transform, content=content)
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
        try:
            request = self._build(batch, options)
        except Exception as exc:  # validated inputs always encode; never lose the batch
            error = TupuError(f"could not build the request ({type(exc).__name__}: {exc})")
            return [
                failed_result(im.index, im.name, error, tag=im.tag, sequence_id=im.sequence_id)
                for im in batch
            ]
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
        if self._fallback is not None and batch[0].is_url:
            content_options = _CallOptions(options.tasks, options.referer, "multipart")

            async def resubmit(content: Batch) -> list[ImageResult]:
                return await self._send_batch(content, content_options)

            results = await self._fallback.replace_failed(results, batch, resubmit)
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
        inputs = _as_inputs(images, "recognize")
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
        images = _as_inputs(images, "recognize_many")
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
        images = _as_inputs(images, "iter_recognize")
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
        Needs ``async with`` on the client. The result's ``index`` is 0. Callers beyond
        the admission bound (see the class docstring) wait here before their image is read.
        """
        options = _CallOptions(tasks, referer, _check_transport(transport))
        self._running_task_group()  # fail before reading anything when not entered
        async with self._coalescer.admission:  # backpressure: wait before reading the image
            prepared = await self._prepare(
                image, 0, [tag] if tag is not None else None, options.transport
            )
            key = (prepared.is_url, options.tasks, options.referer, options.transport)
            return await self._coalescer.submit(key, prepared)


def _as_inputs(images: object, call: str) -> Iterable[Any] | AsyncIterable[Any]:
    """The images argument as an iterable: one bare image is a list of one.

    ``InvalidImageError`` when it is neither an image nor an (async) iterable of images.
    """
    if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike, Image)):
        return [images]
    if isinstance(images, (Iterable, AsyncIterable)):
        return images
    raise InvalidImageError(
        f"{call} needs an image or an iterable of images, not {type(images).__name__}: pass "
        f"URL strs, pathlib.Paths, bytes or tupu_async.Image objects"
    )


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
