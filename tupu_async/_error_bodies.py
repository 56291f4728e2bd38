"""Classifying what came back when it is not a result: plain error bodies and excerpts.

One place turns an unsigned error body (``{"error": ...}``, ``{"code": ..., "message":
...}``) or an error status into the matching ``TupuError``, for recognition
(:mod:`._envelope`) and the image-library API alike, and cuts bodies to an excerpt for
error messages.
"""

from __future__ import annotations

from typing import Final

from ._exceptions import (
    APIError,
    MalformedResponseError,
    TupuError,
    error_for_code,
    error_for_http_status,
)

__all__ = [
    "describe_body",
    "error_from_fields",
    "excerpt",
    "malformed",
    "not_json",
    "plain_error",
    "read_plain_error",
    "unreadable_body",
]

EXCERPT_CHARS: Final = 200


def excerpt(body: bytes | str) -> str:
    """The start of ``body`` for an error message: whitespace runs collapsed, at most
    :data:`EXCERPT_CHARS` characters, ``…`` when cut."""
    text = body if isinstance(body, str) else body[: EXCERPT_CHARS * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


def describe_body(body: bytes, status_code: int | None) -> str:
    """What a body that is not the expected JSON looks like (empty, HTML, broken JSON, text)."""
    status = f"HTTP {status_code} " if status_code is not None else ""
    if not body.strip():
        return f"an empty {status}body"
    head = body.lstrip()[:1]
    if head == b"<":
        where = f" ({status.strip()})" if status else ""
        return f"an HTML page{where}, probably a proxy or gateway error: {excerpt(body)!r}"
    if head in (b"{", b"["):
        return f"a truncated or invalid JSON {status}body: {excerpt(body)!r}"
    return f"a non-JSON {status}body: {excerpt(body)!r}"


def malformed(problem: str, body: bytes | str, status: int | None = None) -> TupuError:
    """``MalformedResponseError``: ``problem``, then the quoted excerpt of ``body``."""
    return MalformedResponseError(
        f"{problem}: {excerpt(body)!r}", status_code=status, body_excerpt=excerpt(body)
    )


def unreadable_body(body: bytes, status: int | None, problem: str) -> TupuError:
    """The error for a body that is not the expected shape: the HTTP error for an error
    status, else a ``MalformedResponseError`` with the message ``problem``."""
    if status is not None and status >= 400:
        return error_for_http_status(status, excerpt(body))
    return MalformedResponseError(problem, status_code=status, body_excerpt=excerpt(body))


def not_json(body: bytes, status: int | None, expected: str) -> TupuError:
    """:func:`unreadable_body` for a body that does not decode as ``expected`` at all."""
    return unreadable_body(
        body, status, f"expected {expected} but got {describe_body(body, status)}"
    )


def _int_code(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_plain_error(error: object, code: object, message: object) -> tuple[int | None, str]:
    """``(code, message)`` from a plain body's top-level ``error``, ``code`` and ``message``.

    An ``error`` object's int ``code`` and its ``message`` (or ``msg``) win over the
    top-level ones; a code that is not an int counts as none. A non-object ``error`` is
    the message, after the top-level ``message`` when there is one.
    """
    top = message if isinstance(message, str) else ""
    if isinstance(error, dict):
        inner = _int_code(error.get("code"))
        text = error.get("message") or error.get("msg")
        return (inner if inner is not None else _int_code(code)), str(text or top)
    if error is not None and error != "":
        return _int_code(code), f"{top}: {error}" if top else str(error)
    return _int_code(code), top


def plain_error(code: int | None, message: str, body: bytes | str, status: int | None) -> APIError:
    """The error for a body that reports one: by its non-zero ``code``, else by an HTTP error
    status, else a plain ``APIError`` quoting the message (or the body)."""
    if code:
        return error_for_code(code, message, status_code=status)
    if status is not None and status >= 400:
        return error_for_http_status(status, excerpt(body))
    return APIError(
        f"Tupu answered with an error and no signed result: {message or excerpt(body)!r}",
        status_code=status,
    )


def error_from_fields(
    error: object, code: object, message: object, body: bytes | str, status: int
) -> APIError | None:
    """The error a decoded plain answer reports, or None when it is a success.

    It reports one when it has a non-zero int ``code``, a non-empty ``error``, or an HTTP
    error status.
    """
    number, text = read_plain_error(error, code, message)
    if number or error not in (None, "", 0, False):
        return plain_error(number, text, body, status)
    if status >= 400:
        return error_for_http_status(status, excerpt(body))
    return None
