"""Request signing: RSA PKCS#1 v1.5 over SHA-256 of ``secretId,timestamp,nonce``, base64.

The strings signed are exactly the strings sent: the timestamp is integer Unix seconds
and the nonce a fixed-point decimal in [0, 1), never in scientific notation.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from ._exceptions import KeyLoadError
from ._keys import KeySource, load_private_key

__all__ = ["SignedFields", "Signer", "make_nonce", "sign_message", "verify_signature"]

_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


class SignedFields(NamedTuple):
    """The three authentication fields of one HTTP attempt, as strings to send verbatim."""

    timestamp: str
    nonce: str
    signature: str

    def __repr__(self) -> str:  # the signature is a credential for this second; keep it out
        return f"SignedFields(timestamp={self.timestamp!r}, nonce={self.nonce!r}, signature='***')"


def make_nonce() -> str:
    """A fresh nonce from the OS's CSPRNG: ``0.`` and 16 random digits (never ``1e-05``)."""
    return f"0.{secrets.randbelow(10**16):016d}"


def sign_message(key: RSAPrivateKey, message: bytes) -> str:
    """Base64 of the RSA PKCS#1 v1.5 SHA-256 signature of ``message``."""
    return base64.b64encode(key.sign(message, _PKCS1, _SHA256)).decode("ascii")


def verify_signature(key: RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid signature of ``message`` by ``key``."""
    try:
        sig = base64.b64decode(signature_b64, validate=True)
    except (ValueError, TypeError):
        return False
    try:
        key.verify(sig, message, _PKCS1, _SHA256)
    except InvalidSignature:
        return False
    return True


class Signer:
    """Signs requests for one secret id. A fresh timestamp and nonce for every call."""

    __slots__ = ("_key", "_prefix", "secret_id")

    def __init__(self, secret_id: str, private_key: KeySource | RSAPrivateKey) -> None:
        if not isinstance(secret_id, str) or not secret_id.strip():
            raise KeyLoadError("secret_id is empty: pass the secretId Tupu gave you")
        self.secret_id = secret_id
        self._key = load_private_key(private_key)
        self._prefix = f"{secret_id},"

    @property
    def key_size(self) -> int:
        return self._key.key_size

    def sign(self, timestamp: str | None = None, nonce: str | None = None) -> SignedFields:
        ts = str(int(time.time())) if timestamp is None else timestamp
        n = make_nonce() if nonce is None else nonce
        message = f"{self._prefix}{ts},{n}".encode()
        return SignedFields(ts, n, sign_message(self._key, message))

    def __repr__(self) -> str:
        return f"Signer(secret_id={self.secret_id!r}, key=<RSA-{self._key.key_size} private key>)"
