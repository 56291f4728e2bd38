"""Request signing: byte-for-byte what the official SDK's ``rsa`` library produces.

The service rebuilds ``secretId,timestamp,nonce`` from the strings it receives, so the
fields must be exactly the strings signed: integer seconds and a fixed-point nonce.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import time
from unittest import mock

import pytest
import rsa as rsa_lib
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tupu_async import KeyLoadError
from tupu_async._signing import (
    SignedFields,
    Signer,
    make_nonce,
    sign_message,
    verify_signature,
)

NONCE_RE = re.compile(r"^0\.\d{16}$")


def _pkcs1(key: RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


KEY_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
KEY_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
PEM_1024 = _pkcs1(KEY_1024)
PEM_2048 = _pkcs1(KEY_2048)
RSA_LIB_1024 = rsa_lib.PrivateKey.load_pkcs1(PEM_1024)
RSA_LIB_2048 = rsa_lib.PrivateKey.load_pkcs1(PEM_2048)


def official_sdk_signature(priv: rsa_lib.PrivateKey, message: str) -> str:
    """What the official Python SDK sends: rsa.sign(msg, key, 'SHA-256'), base64."""
    return base64.b64encode(rsa_lib.sign(message.encode("utf-8"), priv, "SHA-256")).decode()


# --- equal to the official SDK --------------------------------------------------------------


@pytest.mark.parametrize(
    ("pem", "rsa_priv"), [(PEM_1024, RSA_LIB_1024), (PEM_2048, RSA_LIB_2048)], ids=["1024", "2048"]
)
def test_signature_equals_official_sdk_byte_for_byte(
    pem: bytes, rsa_priv: rsa_lib.PrivateKey
) -> None:
    signer = Signer("5d9f5a0b-secret", pem)
    fields = signer.sign()
    want = official_sdk_signature(rsa_priv, f"5d9f5a0b-secret,{fields.timestamp},{fields.nonce}")
    assert fields.signature == want
    # And the rsa library accepts it as a valid signature of exactly that message.
    message = f"5d9f5a0b-secret,{fields.timestamp},{fields.nonce}".encode()
    pub = rsa_lib.PublicKey(rsa_priv.n, rsa_priv.e)
    assert rsa_lib.verify(message, base64.b64decode(fields.signature), pub) == "SHA-256"


@settings(max_examples=40, deadline=None)
@given(
    secret_id=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != ""),
    timestamp=st.integers(min_value=0, max_value=2**40).map(str),
    nonce=st.integers(min_value=0, max_value=10**16 - 1).map(lambda n: f"0.{n:016d}"),
)
def test_any_message_signs_like_the_official_sdk(
    secret_id: str, timestamp: str, nonce: str
) -> None:
    fields = Signer(secret_id, KEY_1024).sign(timestamp=timestamp, nonce=nonce)
    assert fields.timestamp == timestamp
    assert fields.nonce == nonce
    assert fields.signature == official_sdk_signature(
        RSA_LIB_1024, f"{secret_id},{timestamp},{nonce}"
    )


def test_sign_message_is_pkcs1v15_sha256_base64() -> None:
    message = b"sid,1700000000,0.1234567890123456"
    sig = sign_message(KEY_1024, message)
    assert sig == official_sdk_signature(RSA_LIB_1024, message.decode())
    assert len(base64.b64decode(sig, validate=True)) == 128


# --- the fields are the strings signed ------------------------------------------------------


def test_timestamp_is_integer_seconds_as_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_700_000_123.987654)
    fields = Signer("sid", KEY_1024).sign()
    assert fields.timestamp == "1700000123"
    assert isinstance(fields.timestamp, str)


def test_timestamp_tracks_the_clock() -> None:
    before = int(time.time())
    fields = Signer("sid", KEY_1024).sign()
    after = int(time.time())
    assert fields.timestamp.isdigit()
    assert before <= int(fields.timestamp) <= after


def test_nonce_never_uses_scientific_notation() -> None:
    nonces = [make_nonce() for _ in range(20_000)]
    bad = [n for n in nonces if not NONCE_RE.match(n)]
    assert bad == []
    for n in nonces[:200]:
        assert "e" not in n.lower()
        assert 0.0 <= float(n) < 1.0


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=10**16 - 1))
def test_nonce_format_for_every_random_draw(drawn: int) -> None:
    # make_nonce draws an integer below 10**16 from the OS CSPRNG and formats it.
    with mock.patch.object(secrets, "randbelow", return_value=drawn) as randbelow:
        nonce = make_nonce()
    randbelow.assert_called_once_with(10**16)
    assert NONCE_RE.match(nonce), nonce
    assert nonce == f"0.{drawn:016d}"
    assert int(nonce[2:]) == drawn


@pytest.mark.parametrize(
    ("drawn", "want"),
    [(0, "0.0000000000000000"), (12, "0.0000000000000012"), (10**16 - 1, "0.9999999999999999")],
)
def test_small_and_large_nonces_stay_fixed_point(drawn: int, want: str) -> None:
    with mock.patch.object(secrets, "randbelow", return_value=drawn):
        assert make_nonce() == want


def test_fresh_nonce_and_signature_per_sign_call() -> None:
    signer = Signer("sid", KEY_1024)
    signed = [signer.sign() for _ in range(300)]
    assert len({f.nonce for f in signed}) == len(signed)
    assert len({f.signature for f in signed}) == len(signed)
    for f in signed:
        assert NONCE_RE.match(f.nonce)


def test_explicit_timestamp_and_nonce_are_used_verbatim() -> None:
    fields = Signer("sid", KEY_1024).sign(timestamp="1524559433", nonce="0.387212879582294")
    assert fields == SignedFields(
        "1524559433",
        "0.387212879582294",
        official_sdk_signature(RSA_LIB_1024, "sid,1524559433,0.387212879582294"),
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_processes_do_not_repeat_nonces() -> None:
    make_nonce()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.write(write_end, ",".join(make_nonce() for _ in range(5)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        child = set(pipe.read().decode().split(","))
    parent = {make_nonce() for _ in range(5)}
    assert child.isdisjoint(parent)


# --- verification ---------------------------------------------------------------------------


def test_verify_signature_round_trip() -> None:
    message = b"sid,1700000000,0.0000000000000001"
    sig = sign_message(KEY_2048, message)
    assert verify_signature(KEY_2048.public_key(), message, sig)


def test_verify_signature_rejects_tampering() -> None:
    message = b"sid,1700000000,0.5"
    sig = sign_message(KEY_1024, message)
    pub = KEY_1024.public_key()
    assert not verify_signature(pub, message + b"0", sig)
    assert not verify_signature(pub, b"sid,1700000001,0.5", sig)
    assert not verify_signature(OTHER_KEY.public_key(), message, sig)
    raw = bytearray(base64.b64decode(sig))
    for position in (0, len(raw) // 2, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[position] ^= 0x01
        assert not verify_signature(pub, message, base64.b64encode(bytes(flipped)).decode())
    assert not verify_signature(pub, message, base64.b64encode(bytes(raw[:-1])).decode())


@pytest.mark.parametrize(
    "garbage",
    ["", "not base64!!", "====", "abc", "é", "\x00", "QUJD\n", "A" * 171, "*" * 172],
)
def test_verify_signature_rejects_garbage_base64(garbage: str) -> None:
    assert verify_signature(KEY_1024.public_key(), b"sid,1,0.1", garbage) is False


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_verify_signature_never_raises(garbage: str) -> None:
    assert verify_signature(KEY_1024.public_key(), b"sid,1,0.1", garbage) is False


@settings(max_examples=30, deadline=None)
@given(message=st.binary(max_size=200), bit=st.integers(min_value=0, max_value=1023))
def test_any_single_bit_flip_fails_verification(message: bytes, bit: int) -> None:
    sig = bytearray(base64.b64decode(sign_message(KEY_1024, message)))
    sig[bit // 8] ^= 1 << (bit % 8)
    assert not verify_signature(KEY_1024.public_key(), message, base64.b64encode(sig).decode())


def test_key_size_is_reported() -> None:
    assert Signer("sid", KEY_2048).key_size == 2048
    assert Signer("sid", PEM_1024).key_size == 1024


def test_a_signature_with_characters_outside_base64_does_not_verify() -> None:
    message = b"secret,1700000000000,0.1234567890123456"
    sig = sign_message(KEY_1024, message)
    assert verify_signature(KEY_1024.public_key(), message, sig)
    tampered = sig[:10] + "*" + sig[10:]  # a lax decoder would skip the star and verify
    assert not verify_signature(KEY_1024.public_key(), message, tampered)


@pytest.mark.parametrize("secret_id", ["", "   "])
def test_an_empty_secret_id_is_refused_saying_what_to_pass(secret_id: str) -> None:
    with pytest.raises(KeyLoadError) as info:
        Signer(secret_id, KEY_1024)
    assert str(info.value) == "secret_id is empty: pass the secretId Tupu gave you"
