"""Decoding the answers of the image-library management endpoints.

An answer is plain JSON or a signed envelope (verified with the client's public key);
:func:`open_management_body` gives its top-level fields or raises the classified
``TupuError``, and :func:`match_outcomes` maps per-item answers to one outcome per name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .._envelope import open_envelope
from .._error_bodies import error_from_fields, malformed, not_json
from .._exceptions import APIError
from .._sending import raise_for_transient_status
from ._types import (
    NO_ANSWER_CODE,
    ImageLibrary,
    LibraryImage,
    LibraryItemOutcome,
    parse_updated_at,
)

__all__ = [
    "decode_field",
    "image_libraries_decoder",
    "item_outcomes_decoder",
    "library_images_decoder",
    "match_outcomes",
    "open_management_body",
    "to_library_image",
]

T = TypeVar("T")


class _WireOutcome(msgspec.Struct):
    code: Any = None
    error: Any = None
    name: Any = None
    url: Any = None


class _WireImage(msgspec.Struct, rename="camel"):
    name: Any = None
    url: Any = None
    updated_at: Any = None


image_libraries_decoder = msgspec.json.Decoder(list[ImageLibrary] | None)
library_images_decoder = msgspec.json.Decoder(list[_WireImage] | None)
item_outcomes_decoder = msgspec.json.Decoder(list[_WireOutcome] | None)
_fields_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_any_decoder = msgspec.json.Decoder()


def _error_in(fields: Mapping[str, msgspec.Raw], body: bytes | str, status: int) -> APIError | None:
    """The error a decoded management body reports, if any."""
    error, code, message = (
        _any_decoder.decode(fields[key]) if key in fields else None
        for key in ("error", "code", "message")
    )
    return error_from_fields(error, code, message, body, status)


def open_management_body(
    response: httpx.Response, public_key: RSAPublicKey | None
) -> dict[str, msgspec.Raw]:
    """The top-level fields of a management answer, verified if it came signed.

    Raises a classified ``TupuError`` for error statuses, error bodies and garbage.
    """
    raise_for_transient_status(response)
    status = response.status_code
    content = response.content
    try:
        fields = _fields_decoder.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        raise not_json(content, status, "a JSON object from the management API") from None
    body: bytes | str = content
    if "json" in fields:
        text = open_envelope(content, public_key, status_code=status)
        try:
            fields = _fields_decoder.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise malformed(
                "the signed management answer is not a JSON object", text, status
            ) from None
        body = text
    elif "signature" in fields:
        raise malformed(
            "the management answer carries a signature but no signed 'json' text, so it "
            "cannot be verified",
            content,
            status,
        )
    try:
        error = _error_in(fields, body, status)
    except RecursionError:
        raise malformed(
            "the management answer nests too deeply to be what the docs describe", body, status
        ) from None
    if error is not None:
        raise error
    return fields


def decode_field(
    fields: Mapping[str, msgspec.Raw], key: str, decoder: msgspec.json.Decoder[list[T] | None]
) -> list[T] | None:
    """``fields[key]`` decoded; None when absent or null."""
    raw = fields.get(key)
    if raw is None:
        return None
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise malformed(
            f"the management answer's {key!r} is not what the docs describe ({exc})", bytes(raw)
        ) from None


def to_library_image(wire: _WireImage) -> LibraryImage:
    raw = wire.updated_at
    return LibraryImage(
        name="" if wire.name is None else str(wire.name),
        url=None if wire.url is None else str(wire.url),
        updated_at=parse_updated_at(raw),
        updated_at_raw=None if raw is None else str(raw),
    )


def _as_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def match_outcomes(
    names: Sequence[str], answers: list[_WireOutcome] | None
) -> list[LibraryItemOutcome]:
    """One outcome per name, in order, from the service's per-item answers.

    Answers are matched by name; answers without a name are matched by position when the
    answer has one entry per item. A name with no answer gets a failed outcome saying so.
    """
    if answers is None:
        return [
            LibraryItemOutcome(
                name=name,
                code=NO_ANSWER_CODE,
                error="the service's answer had no per-image list, so this image's outcome "
                "is unknown: list the library to check it",
            )
            for name in names
        ]
    by_name: dict[str, list[_WireOutcome]] = {}
    nameless = 0
    for entry in answers:
        if isinstance(entry.name, str) and entry.name:
            by_name.setdefault(entry.name, []).append(entry)
        else:
            nameless += 1
    positional = nameless == len(answers) and len(answers) == len(names)
    outcomes: list[LibraryItemOutcome] = []
    for position, name in enumerate(names):
        answer: _WireOutcome | None
        if positional:
            answer = answers[position]
        else:
            queue = by_name.get(name)
            answer = queue.pop(0) if queue else None
        if answer is None:
            outcomes.append(
                LibraryItemOutcome(
                    name=name,
                    code=NO_ANSWER_CODE,
                    error="the service's answer left this image out, so its outcome is unknown: "
                    "list the library to check it",
                )
            )
            continue
        code = _as_code(answer.code)
        error = "" if answer.error is None else str(answer.error)
        url = answer.url if isinstance(answer.url, str) and answer.url else None
        if code is None:
            outcomes.append(
                LibraryItemOutcome(
                    name=name,
                    code=NO_ANSWER_CODE,
                    url=url,
                    error=f"the service gave no status code for this image ({error or 'no error'})",
                )
            )
        else:
            outcomes.append(LibraryItemOutcome(name=name, code=code, error=error, url=url))
    return outcomes
