"""Loading RSA keys from a path, PEM text or PEM bytes, with errors that say what to fix.

Key material never appears in a ``repr``, a log line or an exception message.
"""

from __future__ import annotations

import os
import pathlib
from importlib import resources
from typing import Union

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from ._exceptions import KeyLoadError

__all__ = ["KeySource", "load_private_key", "load_public_key", "official_public_key"]

KeySource = Union[str, bytes, "os.PathLike[str]"]
"""A PEM key: a path (``os.PathLike``), PEM text (``str``) or PEM bytes."""

_PEM_MARKER = b"-----BEGIN"


def _read_pem(source: KeySource, what: str) -> bytes:
    if isinstance(source, os.PathLike):
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise KeyLoadError(
                f"cannot read the {what} file {path!r} ({exc.strerror}): pass an existing PEM "
                f"file path, or the PEM text itself"
            ) from None
    if isinstance(source, str):
        data = source.encode("utf-8")
        if _PEM_MARKER not in data and "\n" not in source and len(source) < 4096:
            # A str that is not PEM is taken as a path, so both spellings work.
            if os.path.exists(source):
                return _read_pem(pathlib.Path(source), what)
            raise KeyLoadError(
                f"the {what} is neither PEM text nor the path of an existing file: pass "
                f"pathlib.Path('key.pem') or the text starting with '-----BEGIN'"
            )
        return data
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    raise KeyLoadError(
        f"the {what} must be a path, PEM str or PEM bytes, not {type(source).__name__}"
    )


def load_private_key(source: KeySource | RSAPrivateKey) -> RSAPrivateKey:
    """Load an RSA private key in PKCS#1 (``BEGIN RSA PRIVATE KEY``) or PKCS#8 PEM form."""
    if isinstance(source, RSAPrivateKey):
        return source
    data = _read_pem(source, "private key")
    if b"PUBLIC KEY" in data and b"PRIVATE KEY" not in data:
        raise KeyLoadError(
            "a public key was given where the private key is needed: pass the private key "
            "(BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY) whose public half you uploaded to Tupu"
        )
    if b"ENCRYPTED" in data:
        raise KeyLoadError(
            "the private key is encrypted with a passphrase: decrypt it first, e.g. "
            "`openssl rsa -in key.pem -out key-plain.pem`, or pass a loaded "
            "cryptography RSAPrivateKey"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyLoadError(
            "the private key is encrypted with a passphrase: decrypt it first, e.g. "
            "`openssl rsa -in key.pem -out key-plain.pem`"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyLoadError(
            "the private key could not be parsed: expected an unencrypted RSA private key in PEM "
            "form (PKCS#1 'BEGIN RSA PRIVATE KEY' or PKCS#8 'BEGIN PRIVATE KEY')"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise KeyLoadError(
            f"the private key is a {type(key).__name__.lstrip('_')}, but Tupu signs with RSA: "
            f"generate one with `openssl genrsa -out key.pem 2048`"
        )
    return key


def load_public_key(source: KeySource | RSAPublicKey) -> RSAPublicKey:
    """Load an RSA public key (``BEGIN PUBLIC KEY`` or ``BEGIN RSA PUBLIC KEY`` PEM)."""
    if isinstance(source, RSAPublicKey):
        return source
    data = _read_pem(source, "public key")
    try:
        key = serialization.load_pem_public_key(data)  # SPKI and PKCS#1 alike
    except (ValueError, UnsupportedAlgorithm):
        if b"PRIVATE KEY" in data:
            raise KeyLoadError(
                "a private key was given where the Tupu public key is expected: pass the Tupu "
                "verification key (or None for the bundled official one)"
            ) from None
        raise KeyLoadError(
            "the public key could not be parsed: expected an RSA public key in PEM form "
            "('BEGIN PUBLIC KEY')"
        ) from None
    if not isinstance(key, RSAPublicKey):
        raise KeyLoadError("the public key is not an RSA key: Tupu signs responses with RSA")
    return key


_official: RSAPublicKey | None = None


def official_public_key() -> RSAPublicKey:
    """The Tupu service's own response-signing key, as shipped by every official SDK."""
    global _official
    if _official is None:
        pem = resources.files("tupu_async").joinpath("tupu_public_key.pem").read_bytes()
        _official = load_public_key(pem)
    return _official
