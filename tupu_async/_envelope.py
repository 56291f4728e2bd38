"""Signed response envelopes: verify the signature over the text as received, then decode.

A success response is ``{"json": "<text>", "signature": "<base64>"}``. Every other shape
becomes a ``TupuError`` saying what came back (see ``docs/design-libraries.md``).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ._constants import Task
from ._error_bodies import (
    excerpt,
    malformed,
    not_json,
    plain_error,
    read_plain_error,
    unreadable_body,
)
from ._exceptions import (
    MalformedResponseError,
    SignatureVerificationError,
    TupuError,
)
from ._freshness import check_age
from ._keys import KeySource, load_public_key, official_public_key
from ._regroup import regroup_unknown_inputs
from ._signing import verify_signature
from ._types import (
    AdFile,
    FileResult,
    GenericFile,
    OcrFile,
    PoliticalFile,
    PornFile,
    RecognitionResponse,
    SummaryItem,
    TaskResult,
    ViolationFile,
    ViolenceFile,
    VulgarFile,
)

__all__ = ["decode_inner", "open_envelope", "verify_envelope"]

_ENVELOPE_SHAPE = "a signed Tupu envelope {'json': ..., 'signature': ...}"


class _Outer(msgspec.Struct):
    json: str | None = None
    signature: str | None = None
    error: Any = None
    code: Any = None
    message: Any = None


_outer_decoder = msgspec.json.Decoder(_Outer)
_raw_map_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_int_decoder = msgspec.json.Decoder(int)
_str_decoder = msgspec.json.Decoder(str)
_any_decoder = msgspec.json.Decoder()
_summary_decoder = msgspec.json.Decoder(list[SummaryItem])
_generic_task_decoder = msgspec.json.Decoder(TaskResult[dict[str, Any]])  # type: ignore[type-var]

_TASK_FILE_TYPES: dict[str, type[FileResult]] = {
    Task.PORN: PornFile,
    Task.POLITICAL: PoliticalFile,
    Task.VIOLENCE: ViolenceFile,
    Task.OCR_TEXT: OcrFile,
    Task.AD: AdFile,
    Task.VULGAR: VulgarFile,
    Task.VIOLATION: ViolationFile,
}
_task_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    task_id: msgspec.json.Decoder(TaskResult[file_type])  # type: ignore[valid-type]
    for task_id, file_type in _TASK_FILE_TYPES.items()
}
_HEAD_KEYS = frozenset({"code", "message", "timestamp", "nonce", "requestId", "summary"})
_GENERIC_FIELDS = ("name", "label", "rate", "review", "tag")


def _as_float(value: object) -> float | None:
    """A JSON number as float; None for anything else (bools, strings, out-of-range ints)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _lenient_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _lenient_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _lenient_summary(raw: msgspec.Raw) -> list[SummaryItem]:
    """``summary`` whose fields drifted in type: keep what fits, never fail the response."""
    items = _any_decoder.decode(raw)
    if not isinstance(items, list):
        raise msgspec.ValidationError("summary must be a list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise msgspec.ValidationError("summary entries must be objects")
        code = _lenient_int(item.get("code"))
        out.append(
            SummaryItem(
                code=code if code is not None else 0,
                message=_lenient_str(item.get("message")),
                name=_lenient_str(item.get("name")),
                suggestion=_lenient_int(item.get("suggestion")),
                risk_type=_lenient_int(item.get("riskType")),
                risk_task=_lenient_str(item.get("riskTask")),
                tag=_lenient_str(item.get("tag")),
            )
        )
    return out


def open_envelope(
    body: bytes | str,
    public_key: RSAPublicKey | None,
    *,
    status_code: int | None = None,
) -> str:
    """Check the envelope's shape and signature; return the signed text as received.

    ``public_key=None`` skips verification (``verify_signature=False`` on the client).
    Raises ``MalformedResponseError`` for anything that is not an envelope, an
    ``APIError`` subclass for a plain-JSON error body, and
    ``SignatureVerificationError`` when the signature does not verify.
    """
    data = body.encode("utf-8", "replace") if isinstance(body, str) else body
    try:
        outer = _outer_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        raise not_json(data, status_code, _ENVELOPE_SHAPE) from None
    if outer.json is None:
        if outer.error is not None or outer.code is not None:
            code, message = read_plain_error(outer.error, outer.code, outer.message)
            raise plain_error(code, message, data, status_code)
        raise unreadable_body(
            data,
            status_code,
            f"the response has no 'json' field, so it is not a Tupu envelope: {excerpt(data)!r}",
        )
    if public_key is not None:
        if not outer.signature:
            raise SignatureVerificationError(
                "the response envelope carries no signature, so it cannot be trusted; "
                "if you really talk to a server that does not sign, pass verify_signature=False"
            )
        if not verify_signature(public_key, outer.json.encode("utf-8"), outer.signature):
            raise SignatureVerificationError(
                "the response signature does not verify with the Tupu public key: the response "
                "was altered in transit or came from another server. Check base_url, and pass "
                "tupu_public_key= if you talk to a fake or private deployment"
            )
    return outer.json


def _decode_task(task_id: str, raw: msgspec.Raw) -> TaskResult[Any]:
    decoder = _task_decoders.get(task_id)
    if decoder is not None:
        try:
            return decoder.decode(raw)  # type: ignore[no-any-return]
        except msgspec.ValidationError:
            pass  # the service changed a field's type: keep everything via the generic form
    generic = _generic_task_decoder.decode(raw)
    files = []
    for entry in generic.file_list:
        if not isinstance(entry, dict):
            raise msgspec.ValidationError(f"task {task_id}: fileList entries must be objects")
        name, rate, review, tag = (entry.get(k) for k in ("name", "rate", "review", "tag"))
        file = GenericFile(
            name=name if isinstance(name, str) else None,
            label=entry.get("label"),
            rate=_as_float(rate),
            review=review if isinstance(review, bool) else None,
            tag=tag if isinstance(tag, str) else None,
        )
        # Everything not kept in a typed field stays in ``extra``, badly typed values too.
        file.extra = {
            k: v
            for k, v in entry.items()
            if k not in _GENERIC_FIELDS or (v is not None and getattr(file, k) is None)
        }
        files.append(file)
    return TaskResult(
        file_list=files,
        statistic=generic.statistic,
        review_count=generic.review_count,
        top_n_statistic=generic.top_n_statistic,
    )


def decode_inner(text: str) -> RecognitionResponse:
    """Decode the signed text into a ``RecognitionResponse`` (``images`` left empty)."""
    try:
        fields = _raw_map_decoder.decode(text)
        code_raw = fields.get("code")
        if code_raw is None:
            raise msgspec.ValidationError("missing 'code'")
        code = _int_decoder.decode(code_raw)
        message = ""
        timestamp: int | None = None
        nonce: str | None = None
        request_id: str | None = None
        summary: list[SummaryItem] | None = None
        tasks: dict[str, TaskResult[Any]] = {}
        extra: dict[str, Any] = {}
        for key, raw in fields.items():
            if key in _HEAD_KEYS:
                if key == "message":
                    value = _any_decoder.decode(raw)
                    message = value if isinstance(value, str) else str(value)
                elif key == "timestamp":
                    value = _any_decoder.decode(raw)
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        timestamp = int(value)
                elif key == "nonce":
                    value = _any_decoder.decode(raw)
                    nonce = None if value is None else str(value)
                elif key == "requestId":
                    value = _any_decoder.decode(raw)
                    request_id = None if value is None else str(value)
                elif key == "summary":
                    try:
                        summary = _summary_decoder.decode(raw)
                    except msgspec.ValidationError:
                        summary = _lenient_summary(raw)
                continue
            if bytes(memoryview(raw)[:1]) == b"{":
                tasks[key] = _decode_task(key, raw)
            else:
                extra[key] = _any_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as exc:
        raise malformed(
            f"the signed response text is not the JSON Tupu documents ({exc})", text
        ) from None
    except RecursionError:  # nesting deeper than the decoder's stack allows
        raise malformed(
            "the signed response text nests too deeply to be the JSON Tupu documents", text
        ) from None
    return RecognitionResponse(
        code=code,
        message=message,
        timestamp=timestamp,
        nonce=nonce,
        request_id=request_id,
        summary=summary,
        tasks=tasks,
        extra=extra,
        json_text=text,
    )


def verify_envelope(
    body: bytes | str,
    public_key: KeySource | RSAPublicKey | None = None,
    *,
    max_age: float | None = None,
) -> RecognitionResponse:
    """Verify and decode a signed envelope that reached you some other way (a callback).

    Args:
        body: the envelope, as received.
        public_key: the key to verify with; None uses the bundled official Tupu key.
        max_age: seconds; when set, a response whose ``timestamp`` is further than that
            from the local clock, or missing, raises ``StaleResponseError``. Default off.

    Returns the decoded response with ``images`` regrouped per image. A bad signature
    raises ``SignatureVerificationError``, any other malformed body a ``TupuError``; a
    non-zero ``code`` is returned, not raised: read ``response.code``.
    """
    if max_age is not None and not max_age > 0:
        raise ValueError(f"max_age must be a positive number of seconds or None, got {max_age!r}")

    key = official_public_key() if public_key is None else load_public_key(public_key)
    try:
        text = open_envelope(body, key)
    except TupuError:
        raise
    except Exception as exc:  # pragma: no cover - defensive: never leak a raw exception
        raise MalformedResponseError(f"could not read the envelope: {exc}") from None
    response = decode_inner(text)
    if max_age is not None:
        check_age(response.timestamp, max_age, time.time())
    response.images = regroup_unknown_inputs(response)
    return response
