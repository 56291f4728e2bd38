"""Key loading: every accepted spelling of a key loads, every wrong key is a clear KeyLoadError.

A key's secret material must never reach a repr, an exception message or a traceback.
"""

from __future__ import annotations

import pathlib
import re
import traceback

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from tupu_async import KeyLoadError, TupuError
from tupu_async._keys import load_private_key, load_public_key, official_public_key
from tupu_async._signing import SignedFields, Signer

_ENC = serialization.Encoding.PEM
_NOENC = serialization.NoEncryption()

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
PKCS1_PEM = PRIVATE_KEY.private_bytes(_ENC, serialization.PrivateFormat.TraditionalOpenSSL, _NOENC)
PKCS8_PEM = PRIVATE_KEY.private_bytes(_ENC, serialization.PrivateFormat.PKCS8, _NOENC)
SPKI_PUBLIC_PEM = PRIVATE_KEY.public_key().public_bytes(
    _ENC, serialization.PublicFormat.SubjectPublicKeyInfo
)
PKCS1_PUBLIC_PEM = PRIVATE_KEY.public_key().public_bytes(_ENC, serialization.PublicFormat.PKCS1)
ENCRYPTED_PKCS1_PEM = PRIVATE_KEY.private_bytes(
    _ENC,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.BestAvailableEncryption(b"passphrase"),
)
ENCRYPTED_PKCS8_PEM = PRIVATE_KEY.private_bytes(
    _ENC, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"passphrase")
)
EC_PKCS8_PEM = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    _ENC, serialization.PrivateFormat.PKCS8, _NOENC
)
EC_SEC1_PEM = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    _ENC, serialization.PrivateFormat.TraditionalOpenSSL, _NOENC
)
ED25519_PEM = ed25519.Ed25519PrivateKey.generate().private_bytes(
    _ENC, serialization.PrivateFormat.PKCS8, _NOENC
)
EC_PUBLIC_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(_ENC, serialization.PublicFormat.SubjectPublicKeyInfo)
)

OFFICIAL_PEM = pathlib.Path(__file__).parent / "vectors" / "tupu-official-public-key.pem"


def pem_body(pem: bytes) -> str:
    """The base64 lines of a PEM block, joined: the key material itself."""
    lines = pem.decode("ascii").strip().splitlines()
    return "".join(line for line in lines[1:-1] if ":" not in line and line.strip())


def pem_body_chunks(pem: bytes) -> list[str]:
    """Every base64 line of the PEM (a leak of any one of them is a leak)."""
    lines = pem.decode("ascii").strip().splitlines()
    return [line for line in lines[1:-1] if ":" not in line and len(line) >= 32]


def assert_no_key_material(text: str, *pems: bytes) -> None:
    for pem in pems:
        assert pem_body(pem) not in text
        for chunk in pem_body_chunks(pem):
            assert chunk not in text


def same_private_key(a: RSAPrivateKey, b: RSAPrivateKey) -> bool:
    return a.private_numbers() == b.private_numbers()


# --- private keys that load ---------------------------------------------------------------


@pytest.mark.parametrize("pem", [PKCS1_PEM, PKCS8_PEM], ids=["pkcs1", "pkcs8"])
@pytest.mark.parametrize("spelling", ["path", "str-path", "pem-str", "pem-bytes"])
def test_private_key_loads_from_every_spelling(
    tmp_path: pathlib.Path, pem: bytes, spelling: str
) -> None:
    file = tmp_path / "key.pem"
    file.write_bytes(pem)
    sources: dict[str, str | bytes | pathlib.Path] = {
        "path": file,
        "str-path": str(file),
        "pem-str": pem.decode("ascii"),
        "pem-bytes": pem,
    }
    source = sources[spelling]
    key = load_private_key(source)
    assert isinstance(key, RSAPrivateKey)
    assert same_private_key(key, PRIVATE_KEY)


def test_pem_headers_are_the_documented_ones() -> None:
    assert PKCS1_PEM.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert PKCS8_PEM.startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize(
    "pem",
    [
        PKCS1_PEM.replace(b"\n", b"\r\n"),
        b"\xef\xbb\xbf" + PKCS8_PEM,
        b"\n\n  " + PKCS1_PEM,
        bytearray(PKCS8_PEM),
    ],
    ids=["crlf", "utf8-bom", "leading-whitespace", "bytearray"],
)
def test_private_key_tolerates_common_file_variations(pem: bytes) -> None:
    assert same_private_key(load_private_key(pem), PRIVATE_KEY)


def test_loaded_key_object_passes_through() -> None:
    assert load_private_key(PRIVATE_KEY) is PRIVATE_KEY


# --- private keys that do not ---------------------------------------------------------------


def _load_error(source: object) -> KeyLoadError:
    with pytest.raises(KeyLoadError) as info:
        load_private_key(source)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    "pem", [ENCRYPTED_PKCS1_PEM, ENCRYPTED_PKCS8_PEM], ids=["pkcs1-aes", "pkcs8-encrypted"]
)
def test_encrypted_private_key_says_decrypt_it(pem: bytes) -> None:
    exc = _load_error(pem)
    assert "encrypted" in str(exc)
    assert "openssl" in str(exc)
    assert_no_key_material(str(exc), pem, PKCS1_PEM)


@pytest.mark.parametrize("pem", [SPKI_PUBLIC_PEM, PKCS1_PUBLIC_PEM], ids=["spki", "pkcs1"])
def test_public_key_given_as_private_is_named(pem: bytes) -> None:
    exc = _load_error(pem)
    assert "public key" in str(exc)
    assert "private key" in str(exc)


@pytest.mark.parametrize(
    "pem", [EC_PKCS8_PEM, EC_SEC1_PEM, ED25519_PEM], ids=["ec-pkcs8", "ec-sec1", "ed25519"]
)
def test_non_rsa_private_key_says_rsa(pem: bytes) -> None:
    exc = _load_error(pem)
    assert "RSA" in str(exc)
    assert "openssl genrsa" in str(exc)
    assert_no_key_material(str(exc), pem)


@pytest.mark.parametrize(
    "source",
    [
        b"not a key at all",
        b"",
        b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        PKCS1_PEM[:300],
        PKCS1_PEM.replace(b"-----END RSA PRIVATE KEY-----", b""),
        "-----BEGIN PRIVATE KEY-----\nnot base64 !!\n-----END PRIVATE KEY-----\n",
    ],
    ids=["garbage", "empty", "bad-body", "truncated", "no-footer", "str-bad-body"],
)
def test_garbage_is_a_parse_error_without_echo(source: str | bytes) -> None:
    exc = _load_error(source)
    assert "could not be parsed" in str(exc)
    assert "BEGIN RSA PRIVATE KEY" in str(exc) or "BEGIN PRIVATE KEY" in str(exc)
    raw = source.encode() if isinstance(source, str) else source
    if len(raw) > 40:
        assert raw.decode("utf-8", "replace") not in str(exc)
    assert_no_key_material(str(exc), PKCS1_PEM)


def test_truncated_key_leaks_nothing_even_in_the_traceback() -> None:
    exc = _load_error(PKCS1_PEM[:-40])
    rendered = "".join(traceback.format_exception(exc))
    assert_no_key_material(rendered, PKCS1_PEM)


def test_missing_file_path_names_the_file(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope.pem"
    exc = _load_error(missing)
    assert "nope.pem" in str(exc)
    assert "No such file" in str(exc) or "existing" in str(exc)


def test_missing_file_str_path_says_what_to_pass(tmp_path: pathlib.Path) -> None:
    exc = _load_error(str(tmp_path / "nope.pem"))
    assert "-----BEGIN" in str(exc)
    assert "pathlib.Path" in str(exc)


@pytest.mark.parametrize("as_str", [False, True])
def test_directory_is_a_read_error(tmp_path: pathlib.Path, as_str: bool) -> None:
    exc = _load_error(str(tmp_path) if as_str else tmp_path)
    assert "cannot read" in str(exc)


@pytest.mark.parametrize("source", [None, 42, 1.5, ["pem"], object()])
def test_wrong_type_names_the_type(source: object) -> None:
    exc = _load_error(source)
    assert type(source).__name__ in str(exc)


def test_key_load_error_is_a_value_error_and_a_tupu_error() -> None:
    exc = _load_error(b"junk")
    assert isinstance(exc, ValueError)
    assert isinstance(exc, TupuError)


def test_path_to_a_file_with_garbage_is_a_parse_error(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "key.pem"
    file.write_bytes(b"garbage")
    assert "could not be parsed" in str(_load_error(file))
    assert "could not be parsed" in str(_load_error(str(file)))


def test_str_path_to_an_encrypted_key(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "enc.pem"
    file.write_bytes(ENCRYPTED_PKCS8_PEM)
    assert "encrypted" in str(_load_error(str(file)))


# --- public keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("pem", [SPKI_PUBLIC_PEM, PKCS1_PUBLIC_PEM], ids=["spki", "pkcs1"])
def test_public_key_loads_from_bytes_str_and_path(tmp_path: pathlib.Path, pem: bytes) -> None:
    file = tmp_path / "pub.pem"
    file.write_bytes(pem)
    want = PRIVATE_KEY.public_key().public_numbers()
    for source in (pem, pem.decode("ascii"), file, str(file)):
        key = load_public_key(source)
        assert isinstance(key, RSAPublicKey)
        assert key.public_numbers() == want


def test_private_key_given_as_public_is_named() -> None:
    with pytest.raises(KeyLoadError, match="private key was given") as info:
        load_public_key(PKCS1_PEM)
    assert_no_key_material(str(info.value), PKCS1_PEM)


def test_non_rsa_public_key_is_refused() -> None:
    with pytest.raises(KeyLoadError, match="RSA"):
        load_public_key(EC_PUBLIC_PEM)


@pytest.mark.parametrize("source", [b"garbage", b"", "not a path and not pem"])
def test_public_key_garbage(source: str | bytes) -> None:
    with pytest.raises(KeyLoadError):
        load_public_key(source)


def test_official_public_key_is_the_vector_key_and_cached() -> None:
    key = official_public_key()
    assert key is official_public_key()
    assert key.key_size == 1024
    assert key.public_numbers() == load_public_key(OFFICIAL_PEM).public_numbers()


# --- nothing leaks through repr -------------------------------------------------------------


def test_signer_repr_shows_no_key_material() -> None:
    signer = Signer("my-secret-id", PKCS1_PEM)
    text = repr(signer) + str(signer)
    assert "my-secret-id" in text
    assert "RSA-1024" in text
    assert_no_key_material(text, PKCS1_PEM, PKCS8_PEM)
    numbers = PRIVATE_KEY.private_numbers()
    for secret in (numbers.d, numbers.p, numbers.q):
        assert str(secret) not in text
        assert format(secret, "x") not in text


def test_signer_has_no_instance_dict_to_dump() -> None:
    signer = Signer("sid", PKCS8_PEM)
    assert not hasattr(signer, "__dict__")
    assert_no_key_material(repr(vars(type(signer))), PKCS8_PEM)


def test_signed_fields_repr_hides_the_signature() -> None:
    fields = Signer("sid", PKCS1_PEM).sign()
    for text in (repr(fields), str(fields), f"{fields}", "{}".format(fields)):  # noqa: UP032
        assert fields.signature not in text
        assert fields.timestamp in text
        assert fields.nonce in text
        assert "***" in text
    assert isinstance(fields, SignedFields)


def test_signer_refuses_empty_secret_id() -> None:
    for bad in ("", "   "):
        with pytest.raises(KeyLoadError, match="secret_id"):
            Signer(bad, PKCS1_PEM)


def test_signer_with_a_bad_key_raises_key_load_error_without_echo() -> None:
    with pytest.raises(KeyLoadError) as info:
        Signer("sid", SPKI_PUBLIC_PEM)
    assert_no_key_material(str(info.value), SPKI_PUBLIC_PEM)
    assert re.search(r"public key", str(info.value))
