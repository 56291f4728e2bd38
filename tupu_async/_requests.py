"""Request bodies for the three recognition transports and the management endpoints.

Each body is built once, without the three authentication fields; ``body(signed)``
splices a fresh ``timestamp``/``nonce``/``signature`` in front for every attempt.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from ._constants import BASE64_RECOGNITION_PATH, RECOGNITION_PATH
from ._images import PreparedImage
from ._signing import SignedFields

__all__ = [
    "BASE64_BODY_OVERHEAD",
    "PreparedRequest",
    "Transport",
    "base64_image_cost",
    "build_base64_request",
    "build_json_request",
    "build_multipart_request",
    "build_recognition_request",
    "wire_tags",
]

Transport = Literal["multipart", "base64"]

_encode = msgspec.json.Encoder().encode
_JSON = "application/json"
BASE64_BODY_OVERHEAD = 4096
"""Bytes of a base64 body that are not images or tags (auth fields, tasks, punctuation)."""


class PreparedRequest(msgspec.Struct, eq=False):
    """A request ready to send any number of times: path, content type, static body part.

    ``body(signed)`` returns the full body for one attempt.
    """

    path: str
    content_type: str
    static: bytes
    image_count: int = 0
    json_prefix: bytes = b""
    """JSON members that go before the auth fields (a management call's ``secretId``)."""
    multipart_boundary: bytes | None = None

    @property
    def static_size(self) -> int:
        return len(self.static)

    def body(self, signed: SignedFields) -> bytes:
        if self.multipart_boundary is not None:
            dash = b"--" + self.multipart_boundary
            return (
                _form_field(dash, "timestamp", signed.timestamp)
                + _form_field(dash, "nonce", signed.nonce)
                + _form_field(dash, "signature", signed.signature)
                + self.static
            )
        auth = (
            b"{"
            + self.json_prefix
            + b'"timestamp":"'
            + signed.timestamp.encode()
            + b'","nonce":"'
            + signed.nonce.encode()
            + b'","signature":"'
            + signed.signature.encode()
            + b'"'
        )
        if self.static == b"{}":
            return auth + b"}"
        return auth + b"," + self.static[1:]


def _form_field(dash: bytes, name: str, value: str) -> bytes:
    """One multipart form field; ``dash`` is ``--`` and the boundary."""
    return (
        dash
        + b'\r\nContent-Disposition: form-data; name="'
        + name.encode()
        + b'"\r\n\r\n'
        + value.encode()
        + b"\r\n"
    )


def wire_tags(images: Sequence[PreparedImage]) -> list[str] | None:
    """Explicit tags for every image once any has one ('' for none), else None.

    The server tail-completes missing tags with the last one given; sending every tag
    means it can never give an image someone else's tag.
    """
    if all(im.tag is None for im in images):
        return None
    return [im.tag if im.tag is not None else "" for im in images]


def _wire_sequence_ids(images: Sequence[PreparedImage]) -> list[str] | None:
    if all(im.sequence_id is None for im in images):
        return None
    return [im.sequence_id if im.sequence_id is not None else "" for im in images]


def _optional_fields(
    images: Sequence[PreparedImage], tasks: Sequence[str] | None, referer: str | None
) -> dict[str, list[str] | str]:
    """The ``tag``, ``sequenceId``, ``task`` and ``referer`` fields that apply, in order."""
    fields: dict[str, list[str] | str] = {}
    tags = wire_tags(images)
    if tags is not None:
        fields["tag"] = tags
    seq = _wire_sequence_ids(images)
    if seq is not None:
        fields["sequenceId"] = seq
    if tasks:
        fields["task"] = list(tasks)
    if referer:
        fields["referer"] = referer
    return fields


def build_json_request(
    secret_id: str,
    images: Sequence[PreparedImage],
    *,
    tasks: Sequence[str] | None = None,
    referer: str | None = None,
) -> PreparedRequest:
    """URL images as a JSON body to ``/v3/recognition/<secretId>``."""
    fields: dict[str, Any] = {"image": [im.url for im in images]}
    fields.update(_optional_fields(images, tasks, referer))
    return PreparedRequest(
        RECOGNITION_PATH + secret_id, _JSON, _encode(fields), image_count=len(images)
    )


def _quote(value: str) -> bytes:
    # The same escaping browsers and httpx use for form-data names.
    return (
        value.replace("\\", "\\\\")
        .replace('"', "%22")
        .replace("\r", "%0D")
        .replace("\n", "%0A")
        .encode("utf-8")
    )


def build_multipart_request(
    secret_id: str,
    images: Sequence[PreparedImage],
    *,
    tasks: Sequence[str] | None = None,
    referer: str | None = None,
) -> PreparedRequest:
    """Content images as a multipart upload to ``/v3/recognition/<secretId>``."""
    boundary = os.urandom(16).hex().encode()
    dash = b"--" + boundary
    parts: list[bytes] = []
    for im in images:
        assert im.content is not None
        parts.append(
            dash
            + b'\r\nContent-Disposition: form-data; name="image"; filename="'
            + _quote(im.wire_name)
            + b'"\r\nContent-Type: '
            + im.mime_type.encode()
            + b"\r\n\r\n"
        )
        parts.append(im.content)
        parts.append(b"\r\n")
    for name, values in _optional_fields(images, tasks, referer).items():
        for value in [values] if isinstance(values, str) else values:
            parts.append(_form_field(dash, name, value))
    parts.append(dash + b"--\r\n")
    return PreparedRequest(
        RECOGNITION_PATH + secret_id,
        "multipart/form-data; boundary=" + boundary.decode(),
        b"".join(parts),
        image_count=len(images),
        multipart_boundary=boundary,
    )


def base64_image_cost(im: PreparedImage) -> int:
    """Bytes one image adds to a base64 JSON body (its base64 string, quotes, comma, tag)."""
    assert im.content is not None
    tag_cost = len(_encode(im.tag)) + 1 if im.tag is not None else 3
    return 4 * ((len(im.content) + 2) // 3) + 3 + tag_cost


def build_base64_request(
    secret_id: str,
    images: Sequence[PreparedImage],
    *,
    tasks: Sequence[str] | None = None,
) -> PreparedRequest:
    """Content images base64-encoded in JSON to ``/v3/recognition/image/sync/base64/<id>``."""
    fields: dict[str, Any] = {
        "images": [base64.b64encode(im.content or b"").decode("ascii") for im in images]
    }
    tags = wire_tags(images)
    if tags is not None:
        fields["tags"] = tags
    if tasks:
        fields["tasks"] = list(tasks)
    return PreparedRequest(
        BASE64_RECOGNITION_PATH + secret_id, _JSON, _encode(fields), image_count=len(images)
    )


def build_recognition_request(
    secret_id: str,
    images: Sequence[PreparedImage],
    *,
    tasks: Sequence[str] | None,
    referer: str | None,
    transport: Transport,
) -> PreparedRequest:
    """The request for one batch: URL JSON, multipart or base64 by the images' kind."""
    if images[0].is_url:
        return build_json_request(secret_id, images, tasks=tasks, referer=referer)
    if transport == "base64":
        return build_base64_request(secret_id, images, tasks=tasks)
    return build_multipart_request(secret_id, images, tasks=tasks, referer=referer)


def build_management_request(path: str, secret_id: str, fields: dict[str, Any]) -> PreparedRequest:
    """A management call: JSON with ``secretId`` in the body next to the auth fields."""
    prefix = b'"secretId":' + _encode(secret_id) + b","
    return PreparedRequest(path, _JSON, _encode(fields), json_prefix=prefix)
