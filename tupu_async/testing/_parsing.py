"""Parsing the bodies the fake server accepts into plain request values.

Recognition requests come as JSON (``image`` URLs), ``multipart/form-data`` (repeated
``image`` fields holding files or URL strings) or ``x-www-form-urlencoded`` (URLs); the
base64 endpoint takes JSON ``images``; the management endpoints take JSON with the
credentials in the body. ``timestamp`` and ``nonce`` are kept as the exact text received
(a JSON number in its JavaScript spelling). A multipart ZIP file stands for its member
images, each named by its path in the archive.

A body that cannot be used raises ``RequestRejected`` carrying the HTTP status and the
plain JSON error to answer with.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import urllib.parse
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from .._exceptions import InvalidImageError
from .._zip import is_zip, read_zip_members
from ._jsontext import js_number_text

__all__ = [
    "Credentials",
    "LibraryImageItem",
    "ManagementRequest",
    "ReceivedImage",
    "RecognitionRequest",
    "RequestRejected",
    "complete_tail",
    "parse_base64_recognition",
    "parse_management",
    "parse_recognition",
]

CODE_NO_FILE: Final = 3


@dataclasses.dataclass(slots=True, kw_only=True, repr=False)
class ReceivedImage:
    """One image of a request as received: a URL, or content (unnamed on base64).

    ``error`` is the per-image (code 14) message when the image is unusable as sent.
    """

    name: str | None
    url: str | None = None
    content: bytes | None = None
    error: str | None = None

    @property
    def is_url(self) -> bool:
        return self.url is not None

    def __repr__(self) -> str:
        what = f"url={self.url!r}" if self.url is not None else f"{len(self.content or b'')} bytes"
        return f"ReceivedImage(name={self.name!r}, {what})"


def complete_tail(values: Sequence[str], count: int) -> list[str] | None:
    """``values`` aligned to ``count`` images: the last repeats, extras drop; None if empty."""
    if not values:
        return None
    if len(values) >= count:
        return list(values[:count])
    return [*values, *([values[-1]] * (count - len(values)))]


class RequestRejected(Exception):
    """A request refused before authentication: answered with a plain JSON error."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Credentials:
    """The authentication fields of one request, as the exact texts received.

    ``nonce_echo`` is what the response echoes: the nonce string, or the raw JSON number
    literal when the nonce came as a JSON number.
    """

    __slots__ = ("nonce", "nonce_echo", "signature", "timestamp")

    def __init__(
        self,
        timestamp: str | None,
        nonce: str | None,
        signature: str | None,
        nonce_echo: str | msgspec.Raw | None = None,
    ) -> None:
        self.timestamp = timestamp
        self.nonce = nonce
        self.signature = signature
        self.nonce_echo: str | msgspec.Raw = (
            nonce_echo if nonce_echo is not None else (nonce if nonce is not None else "")
        )


@dataclasses.dataclass(slots=True, kw_only=True)
class RecognitionRequest:
    """One recognition request: its images and options, and its credentials."""

    images: list[ReceivedImage]
    tags: list[str]
    tasks: list[str]
    sequence_ids: list[str]
    referer: str | None
    credentials: Credentials


# -- JSON -------------------------------------------------------------------------------

StrOrList = str | list[str] | None


class _JsonRecognition(msgspec.Struct):
    image: StrOrList = None
    tag: StrOrList = None
    task: StrOrList = None
    sequenceId: StrOrList = None
    referer: str | None = None
    timestamp: msgspec.Raw = msgspec.Raw()
    nonce: msgspec.Raw = msgspec.Raw()
    signature: str | None = None


class _JsonBase64(msgspec.Struct):
    images: list[str] | None = None
    tags: StrOrList = None
    tasks: StrOrList = None
    timestamp: msgspec.Raw = msgspec.Raw()
    nonce: msgspec.Raw = msgspec.Raw()
    signature: str | None = None


class LibraryImageItem(msgspec.Struct):
    """One ``images`` item of a management request (fields depend on the endpoint)."""

    name: str | None = None
    url: str | None = None
    content: str | None = None


class _JsonManagement(msgspec.Struct):
    secretId: str | None = None
    timestamp: msgspec.Raw = msgspec.Raw()
    nonce: msgspec.Raw = msgspec.Raw()
    signature: str | None = None
    name: str | None = None
    imageLibraryId: str | None = None
    images: list[LibraryImageItem] | None = None


@dataclasses.dataclass(slots=True, kw_only=True)
class ManagementRequest:
    """A management request body: the secret id, credentials and the operation's fields."""

    secret_id: str
    credentials: Credentials
    name: str | None
    library_id: str | None
    images: list[LibraryImageItem] | None


_recognition_decoder = msgspec.json.Decoder(_JsonRecognition)
_base64_decoder = msgspec.json.Decoder(_JsonBase64)
_management_decoder = msgspec.json.Decoder(_JsonManagement)
_str_decoder = msgspec.json.Decoder(str)


def _raw_text(raw: msgspec.Raw | None) -> tuple[str | None, str | msgspec.Raw | None]:
    """(text to sign, value to echo) of a raw JSON string or number; (None, None) otherwise."""
    if raw is None:
        return None, None
    data = bytes(raw)
    if not data:
        return None, None
    first = data[:1]
    if first == b'"':
        text = _str_decoder.decode(data)
        return text, text
    if first in b"-0123456789":
        # The service signs over the number as JavaScript prints it, not the literal.
        return js_number_text(data.decode("ascii")), raw
    return None, None  # null, true, an object: not a usable timestamp or nonce


def _json_credentials(
    timestamp: msgspec.Raw | None, nonce: msgspec.Raw | None, signature: str | None
) -> Credentials:
    ts_text, _ = _raw_text(timestamp)
    nonce_text, nonce_echo = _raw_text(nonce)
    return Credentials(ts_text, nonce_text, signature, nonce_echo)


def _as_list(value: StrOrList) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return value


def _decode_json(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise RequestRejected(400, CODE_NO_FILE, f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise RequestRejected(400, CODE_NO_FILE, f"request body is not valid JSON: {exc}") from None


def _parse_recognition_json(body: bytes) -> RecognitionRequest:
    parsed: _JsonRecognition = _decode_json(_recognition_decoder, body)
    return RecognitionRequest(
        images=[ReceivedImage(name=url, url=url) for url in _as_list(parsed.image)],
        tags=_as_list(parsed.tag),
        tasks=_as_list(parsed.task),
        sequence_ids=_as_list(parsed.sequenceId),
        referer=parsed.referer,
        credentials=_json_credentials(parsed.timestamp, parsed.nonce, parsed.signature),
    )


# -- forms ------------------------------------------------------------------------------


class _Part:
    __slots__ = ("chunks", "filename", "name")

    def __init__(self) -> None:
        self.name: str = ""
        self.filename: str | None = None
        self.chunks: list[bytes] = []


def _content_disposition(value: bytes) -> tuple[str, str | None]:
    from python_multipart.multipart import parse_options_header

    _, options = parse_options_header(value)
    name = options.get(b"name", b"").decode("utf-8", "replace")
    filename = options.get(b"filename")
    return name, (filename.decode("utf-8", "replace") if filename is not None else None)


def _parse_multipart(body: bytes, content_type: bytes) -> list[tuple[str, str | None, bytes]]:
    """(field name, filename or None, data) of every part, in order."""
    try:
        from python_multipart import MultipartParser
        from python_multipart.exceptions import MultipartParseError
        from python_multipart.multipart import parse_options_header
    except ImportError:  # pragma: no cover - the testing extra installs it
        raise RequestRejected(
            500, 100, "the fake server needs python-multipart: pip install 'tupu-async[testing]'"
        ) from None

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestRejected(400, CODE_NO_FILE, "multipart body without a boundary")
    parts: list[_Part] = []
    header_field: list[bytes] = []
    header_value: list[bytes] = []

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].chunks.append(data[start:end])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.append(data[start:end])

    def on_header_end() -> None:
        if b"".join(header_field).lower() == b"content-disposition":
            part = parts[-1]
            part.name, part.filename = _content_disposition(b"".join(header_value))
        header_field.clear()
        header_value.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise RequestRejected(400, CODE_NO_FILE, f"malformed multipart body: {exc}") from None
    return [(p.name, p.filename, b"".join(p.chunks)) for p in parts]


def _parse_urlencoded(body: bytes) -> list[tuple[str, str | None, bytes]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRejected(400, CODE_NO_FILE, "form body is not UTF-8") from None
    pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
    return [(name, None, value.encode()) for name, value in pairs]


def _recognition_from_fields(fields: Sequence[tuple[str, str | None, bytes]]) -> RecognitionRequest:
    images: list[ReceivedImage] = []
    lists: dict[str, list[str]] = {"tag": [], "task": [], "sequenceId": []}
    singles: dict[str, str] = {}
    has_file = has_url = False
    per_field: list[int] = []  # images each ``image`` field stands for (a ZIP: its members)
    for name, filename, data in fields:
        if name == "image":
            if filename is not None:
                has_file = True
                expanded = _zip_members(filename, data) if is_zip(data) else None
                images.extend(expanded or [ReceivedImage(name=filename, content=data)])
                per_field.append(len(expanded) if expanded else 1)
            else:
                has_url = True
                url = data.decode("utf-8", "replace").strip()
                images.append(ReceivedImage(name=url, url=url))
                per_field.append(1)
        elif name in lists:
            lists[name].append(data.decode("utf-8", "replace"))
        elif name in ("referer", "timestamp", "nonce", "signature"):
            singles[name] = data.decode("utf-8", "replace")
    if has_file and has_url:
        raise RequestRejected(
            400,
            CODE_NO_FILE,
            "image URLs and image files cannot be mixed in one request: send them separately",
        )
    if len(per_field) != len(images):  # a ZIP's members share its field's tag
        lists["tag"] = _spread(lists["tag"], per_field)
        lists["sequenceId"] = _spread(lists["sequenceId"], per_field)
    return RecognitionRequest(
        images=images,
        tags=lists["tag"],
        tasks=lists["task"],
        sequence_ids=lists["sequenceId"],
        referer=singles.get("referer"),
        credentials=Credentials(
            singles.get("timestamp"), singles.get("nonce"), singles.get("signature")
        ),
    )


def _zip_members(filename: str, data: bytes) -> list[ReceivedImage]:
    """The member images of an uploaded ZIP; a refused archive is one failed image."""
    try:
        members = read_zip_members(data, archive=filename)
    except InvalidImageError as exc:
        return [ReceivedImage(name=filename, content=b"", error=str(exc))]
    return [ReceivedImage(name=member.name, content=member.data) for member in members]


def _spread(values: list[str], per_field: list[int]) -> list[str]:
    """Per-field values (tail-completed) repeated for each image the field stands for."""
    aligned = complete_tail(values, len(per_field))
    if aligned is None:
        return values
    return [value for value, count in zip(aligned, per_field, strict=True) for _ in range(count)]


def _media_type(content_type: bytes) -> bytes:
    return content_type.split(b";", 1)[0].strip().lower()


def parse_recognition(body: bytes, content_type: bytes) -> RecognitionRequest:
    """Parse a ``/v3/recognition/{secretId}`` body of any accepted content type."""
    media = _media_type(content_type)
    if media == b"multipart/form-data":
        return _recognition_from_fields(_parse_multipart(body, content_type))
    if media == b"application/x-www-form-urlencoded":
        return _recognition_from_fields(_parse_urlencoded(body))
    if media == b"application/json" or media.endswith(b"+json") or (not media and body[:1] == b"{"):
        return _parse_recognition_json(body)
    raise RequestRejected(
        400,
        CODE_NO_FILE,
        f"unsupported Content-Type {media.decode('latin-1')!r}: send application/json, "
        f"multipart/form-data or application/x-www-form-urlencoded",
    )


def _decode_base64_image(text: str) -> ReceivedImage:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return ReceivedImage(name=None, content=b"", error="invalid base64 image content")
    return ReceivedImage(name=None, content=data)


def parse_base64_recognition(body: bytes) -> RecognitionRequest:
    """Parse a ``/v3/recognition/image/sync/base64/{secretId}`` JSON body."""
    parsed: _JsonBase64 = _decode_json(_base64_decoder, body)
    return RecognitionRequest(
        images=[_decode_base64_image(text) for text in parsed.images or ()],
        tags=_as_list(parsed.tags),
        tasks=_as_list(parsed.tasks),
        sequence_ids=[],
        referer=None,
        credentials=_json_credentials(parsed.timestamp, parsed.nonce, parsed.signature),
    )


def parse_management(body: bytes) -> ManagementRequest:
    """Parse a ``/v3/management/...`` JSON body."""
    parsed: _JsonManagement = _decode_json(_management_decoder, body)
    return ManagementRequest(
        secret_id=parsed.secretId or "",
        credentials=_json_credentials(parsed.timestamp, parsed.nonce, parsed.signature),
        name=parsed.name,
        library_id=parsed.imageLibraryId,
        images=parsed.images,
    )
