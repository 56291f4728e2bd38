"""The fake server's recognition endpoints (``/v3/recognition/...``), faults included."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import anyio

from .._constants import (
    BASE64_RECOGNITION_PATH,
    MAX_BASE64_BODY_BYTES,
    MAX_IMAGES_PER_REQUEST,
    RECOGNITION_PATH,
)
from ._asgi import (
    JSON,
    Call,
    DroppedConnection,
    InProcessTimeout,
    Reply,
    error,
    header,
    read_body,
    retry_after_headers,
    too_large,
)
from ._exchange import Route
from ._faults import Fault
from ._parsing import (
    ReceivedImage,
    RecognitionRequest,
    RequestRejected,
    complete_tail,
    parse_base64_recognition,
    parse_recognition,
)
from ._responses import CODE_MESSAGES, HTML_502_PAGE, corrupt_signature, inner_fields, inner_json
from ._stats import RecordedRequest

__all__ = ["MAX_RECOGNITION_BODY_BYTES", "RecognitionRoute"]

# Recognition bodies other than base64 (10 images of 1 MiB fit with room to spare).
MAX_RECOGNITION_BODY_BYTES: Final = 64 * 1024 * 1024
_HTTP_FAULTS: Final = frozenset(
    {Fault.HTTP_500, Fault.HTTP_502, Fault.HTTP_429, Fault.DROP_CONNECTION}
)


def _request_kind(images: Sequence[ReceivedImage], base64_route: bool) -> str:
    if base64_route:
        return "base64"
    if not images:
        return "none"
    return "url" if images[0].is_url else "file"


class RecognitionRoute(Route):
    """Answers recognition requests from ``state``, faults included."""

    async def handle(self, call: Call) -> None:
        exchange = self.exchange
        path: str = call.scope["path"]
        base64_route = path.startswith(BASE64_RECOGNITION_PATH)
        secret_id = path[len(BASE64_RECOGNITION_PATH if base64_route else RECOGNITION_PATH) :]
        if not secret_id or "/" in secret_id:
            await exchange.answer(call, error(404, 404, f"no such endpoint: {path}"))
            return
        self.state.stats.set_secret_id(call.index, secret_id)
        if call.scope["method"] != "POST":
            await exchange.answer(call, error(405, 405, "use POST"))
            return
        limit = MAX_BASE64_BODY_BYTES if base64_route else MAX_RECOGNITION_BODY_BYTES
        body = await read_body(call, limit)
        if not await exchange.pass_gate(call, secret_id):
            return
        if body is None:
            await exchange.answer(call, too_large(limit))
            return
        parsed = self._parse(body, call, base64_route)
        fault = self.state.fault_plan.next_fault()
        if fault is not None:
            self.state.stats.faults[fault] += 1
            if fault == Fault.TIMEOUT:
                await exchange.sleep(self.state.fault_plan.config.timeout_delay, call)
                if call.in_process:
                    raise InProcessTimeout
            elif fault in _HTTP_FAULTS:
                await exchange.sleep(exchange.delay(), call)
                await self._http_fault(fault, call)
                return
        await exchange.sleep(exchange.delay(), call)
        reply = self._recognize(path, secret_id, parsed, base64_route, fault)
        if fault == Fault.BAD_SIGNATURE and reply.status == 200:
            reply.body = corrupt_signature(reply.body)
        elif fault == Fault.TRUNCATED_BODY and reply.status == 200:
            reply.body = reply.body[: len(reply.body) // 2]
        await exchange.answer(call, reply)

    async def _http_fault(self, fault: str, call: Call) -> None:
        exchange = self.exchange
        if fault == Fault.HTTP_500:
            await exchange.answer(call, error(500, 100, "internal server error (injected fault)"))
        elif fault == Fault.HTTP_502:
            await exchange.answer(call, Reply(502, HTML_502_PAGE, content_type=b"text/html"))
        elif fault == Fault.HTTP_429:
            headers = retry_after_headers(self.state.fault_plan.config.retry_after)
            reply = error(429, 429, "too many requests (injected fault)", headers=headers)
            await exchange.answer(call, reply)
        else:
            self.state.stats.status_counts[0] += 1  # 0: no HTTP answer at all
            await _drop_connection(call)

    def _parse(
        self, body: bytes, call: Call, base64_route: bool
    ) -> RecognitionRequest | RequestRejected:
        """Parse the body and count its images (every admitted request, faulted or not)."""
        try:
            if base64_route:
                request = parse_base64_recognition(body)
            else:
                request = parse_recognition(body, header(call.scope, b"content-type"))
        except RequestRejected as exc:
            return exc
        self.state.stats.record_images(len(request.images))
        return request

    def _recognize(
        self,
        path: str,
        secret_id: str,
        request: RecognitionRequest | RequestRejected,
        base64_route: bool,
        fault: str | None,
    ) -> Reply:
        if isinstance(request, RequestRejected):
            return error(request.status, request.code, request.message)
        images = request.images
        if len(images) > MAX_IMAGES_PER_REQUEST:
            return error(
                400,
                3,
                f"too many images: {len(images)} in one request, the limit is "
                f"{MAX_IMAGES_PER_REQUEST}",
            )
        credentials = request.credentials
        envelope = self.exchange.envelope
        if fault in (Fault.CODE_100, Fault.CODE_101):
            code = 100 if fault == Fault.CODE_100 else 101
            return envelope(code, CODE_MESSAGES[code], credentials)
        auth = self.state.authenticator.check(
            secret_id, credentials.timestamp, credentials.nonce, credentials.signature
        )
        if not auth.ok:
            return envelope(auth.code, auth.message, credentials)
        settings = self.state.settings
        if not settings.tasks:
            return envelope(13, "no task configured for this secretId", credentials)
        tasks = _tasks(request, settings.tasks)
        if isinstance(tasks, str):
            return envelope(7, tasks, credentials)
        tags = complete_tail(request.tags, len(images))
        self.state.recorded.append(
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
            return envelope(3, "no file: the request carried no image", credentials)
        members = self.state.recognizer.recognize(
            images, tasks=tasks, tags=tags, summary=settings.summary
        )
        inner = inner_json(members, inner_fields(0, "success", credentials.nonce_echo))
        return self.exchange.signed(inner)


def _tasks(request: RecognitionRequest, known: Sequence[str]) -> list[str] | str:
    """The task ids to run, or the code-7 message naming the ones not allowed."""
    if not request.tasks:
        return list(known)
    wanted = list(dict.fromkeys(request.tasks))
    unknown = [task for task in wanted if task not in known]
    if unknown:
        return f"task not allowed for this secretId: {', '.join(unknown)}"
    return wanted


async def _drop_connection(call: Call) -> None:
    """End the exchange without a complete HTTP answer."""
    receive, send = call.receive, call.send
    if call.in_process:
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
    # Any other server: promise a body, send part of it and stop.
    headers = [(b"content-type", JSON), (b"content-length", b"4096")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"json": "', "more_body": True})
