"""The bodies the fake server answers with: signed envelopes, plain JSON errors, HTML.

A signed envelope is ``{"json": "<inner text>", "signature": "<base64>"}`` where the
signature is RSA PKCS#1 v1.5 SHA-256 over the UTF-8 bytes of the inner text, exactly as
the real service signs. Plain errors are ``{"error": {"code": N, "message": "..."}}``
where ``code`` is the Tupu status code when one fits, else the HTTP status.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any, Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from .._signing import sign_message

__all__ = [
    "CODE_MESSAGES",
    "HTML_502_PAGE",
    "corrupt_signature",
    "envelope_body",
    "inner_fields",
    "inner_json",
    "plain_error_body",
]

CODE_MESSAGES: Final[dict[int, str]] = {
    0: "success",
    1: "authentication failed",
    2: "model id error",
    3: "no file",
    4: "API version error",
    5: "API version deprecated",
    6: "secretId error",
    7: "task not allowed for this secretId",
    8: "secretId status abnormal",
    9: "no certificate uploaded",
    10: "pipe id error",
    11: "callback parameter missing",
    12: "timestamp error",
    13: "no task configured or all tasks closed",
    14: "image error",
    100: "server error",
    101: "unknown error",
}

HTML_502_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

_encoder = msgspec.json.Encoder()


def inner_fields(code: int, message: str, nonce: str | msgspec.Raw) -> dict[str, Any]:
    """The common keys of every inner response: code, message, nonce, requestId, timestamp."""
    return {
        "code": code,
        "message": message,
        "nonce": nonce,
        "requestId": str(uuid.uuid4()),
        "timestamp": int(time.time() * 1000),
    }


def inner_json(members: bytes, common: dict[str, Any]) -> bytes:
    """The inner JSON text: pre-encoded ``members`` (no braces) followed by ``common``."""
    encoded = _encoder.encode(common)
    if not members:
        return encoded
    return b"{" + members + b"," + encoded[1:]


def envelope_body(key: RSAPrivateKey, inner: dict[str, Any] | bytes) -> bytes:
    """Sign the inner JSON text (``inner`` serialised, or given as bytes) and wrap both."""
    inner_bytes = inner if isinstance(inner, bytes) else _encoder.encode(inner)
    signature = sign_message(key, inner_bytes)
    return _encoder.encode({"json": inner_bytes.decode("utf-8"), "signature": signature})


def corrupt_signature(body: bytes) -> bytes:
    """The same envelope with a signature that is valid base64 but does not verify."""
    envelope = msgspec.json.decode(body)
    raw = bytearray(base64.b64decode(envelope["signature"]))
    raw[len(raw) // 2] ^= 0x5A
    envelope["signature"] = base64.b64encode(bytes(raw)).decode("ascii")
    return _encoder.encode(envelope)


def plain_error_body(code: int, message: str) -> bytes:
    return _encoder.encode({"error": {"code": code, "message": message}})


def json_body(value: Any) -> bytes:
    return _encoder.encode(value)
