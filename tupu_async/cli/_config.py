"""Command-line configuration: each setting from its flag, else its environment variable.

A missing or unusable setting raises :class:`SettingError`, whose message names the flag
and the variable to set; the commands turn it into exit code 2.

The private key setting may be a path, PEM text, or base64 of either; its value is never
echoed (not in errors, not in ``repr``). Key text on the command line works, with a warning.
"""

from __future__ import annotations

import base64
import binascii
import os
import pathlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives import serialization

from .._base_url import normalise_base_url
from .._client import AsyncTupuClient
from .._constants import Region

__all__ = [
    "ENV_BASE_URL",
    "ENV_PRIVATE_KEY",
    "ENV_PUBLIC_KEY",
    "ENV_REGION",
    "ENV_SECRET_ID",
    "SettingError",
    "Settings",
    "key_source",
    "private_key_source",
    "public_key_source",
    "resolve_settings",
]

ENV_SECRET_ID = "TUPU_SECRET_ID"
ENV_PRIVATE_KEY = "TUPU_PRIVATE_KEY"
ENV_REGION = "TUPU_REGION"
ENV_BASE_URL = "TUPU_BASE_URL"
ENV_PUBLIC_KEY = "TUPU_PUBLIC_KEY"


_BASE64: Final = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
# Shorter "base64" is more likely a file name; an RSA key in base64 is ~900+ characters.
_MIN_BASE64_KEY_CHARS: Final = 64
_MAX_PATH_CHARS: Final = 4096
# A value of this many base64 characters or more could be part of a key: never quoted.
RUN_HIDDEN: Final = 24

KEY_ON_ARGV_WARNING: Final = (
    "--private-key was given the key itself: every user of this machine can read it in "
    "`ps` and it stays in your shell history. Pass the path of the key file, or set "
    f"{ENV_PRIVATE_KEY} instead"
)


class SettingError(Exception):
    """A setting that is missing or unusable; the message says which variable to set."""


@dataclass(frozen=True)
class Settings:
    """Everything needed to build a client, resolved from flags and the environment.

    ``private_key`` and ``public_key`` are PEM text or a path, as the client accepts them.
    ``repr`` shows a private key path but never private key text.
    """

    secret_id: str
    private_key: str | pathlib.Path
    region: Region
    base_url: str | None
    public_key: str | pathlib.Path | None

    def client(self, **options: Any) -> AsyncTupuClient:
        """A client with these settings (``options`` are passed on to the client)."""
        return AsyncTupuClient(
            self.secret_id,
            self.private_key,
            region=self.region,
            base_url=self.base_url,
            tupu_public_key=self.public_key,
            **options,
        )

    def __repr__(self) -> str:
        key = (
            repr(self.private_key)
            if isinstance(self.private_key, pathlib.Path)
            else "'<PEM text, hidden>'"
        )
        return (
            f"Settings(secret_id={self.secret_id!r}, private_key={key}, "
            f"region={self.region!r}, base_url={self.base_url!r}, "
            f"public_key={self.public_key!r})"
        )


def _pick(flag_value: str | None, env: Mapping[str, str], var: str) -> str | None:
    if flag_value is not None and flag_value.strip():
        return flag_value.strip()
    value = env.get(var, "").strip()
    return value or None


def _existing_file(value: str) -> pathlib.Path | None:
    """``value`` as the path of an existing file, or None (never an OSError quoting it)."""
    if len(value) > _MAX_PATH_CHARS or "\n" in value:
        return None
    try:
        path = pathlib.Path(value).expanduser()
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


def _shown(value: str) -> str:
    """``value`` quoted if it reads like a file name; a description if it could be key text."""
    compact = "".join(value.split())
    if (
        len(value) > 255
        or "\n" in value
        or (len(compact) >= RUN_HIDDEN and _BASE64.fullmatch(compact))
    ):
        return f"({len(value)} characters, not shown in case it is a key)"
    return repr(value)


def key_source(value: str, flag: str, var: str, what: str) -> str | pathlib.Path:
    """PEM text as is; anything else must be the path of an existing file.

    The error quotes ``value`` only when it cannot be key material.
    """
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")
    path = _existing_file(value)
    if path is None:
        raise SettingError(
            f"{what} {_shown(value)} is neither PEM text nor an existing file: set {var} "
            f"(or pass {flag}) to the path of the PEM file, or to the PEM text itself"
        )
    return path


def _decoded_base64(value: str) -> bytes | None:
    """``value`` decoded if it is one long base64 (or base64url) text, else None."""
    compact = "".join(value.split())
    if len(compact) < _MIN_BASE64_KEY_CHARS or not _BASE64.fullmatch(compact):
        return None
    padded = compact + "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


def _der_private_key_as_pem(der: bytes) -> str | None:
    """A bare PEM body (base64 DER, no header) as PKCS#8 PEM text, or None if it is not one."""
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        return None
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode("ascii")


def private_key_source(value: str, flag: str = "--private-key") -> str | pathlib.Path:
    """The private key from a setting: PEM text, base64 PEM, a bare PEM body, or a path.

    Raises ``SettingError`` without ever quoting ``value``.
    """
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")
    path = _existing_file(value)
    if path is not None:
        return path
    decoded = _decoded_base64(value)
    if decoded is not None:
        if b"-----BEGIN" in decoded:
            try:
                return decoded.decode("ascii")
            except UnicodeDecodeError:
                pass
        else:
            pem = _der_private_key_as_pem(decoded)
            if pem is not None:
                return pem
        raise SettingError(
            f"the private key setting ({len(value)} characters, not shown) looks like base64 "
            f"but decodes to neither a PEM file nor an RSA private key: set {ENV_PRIVATE_KEY} "
            f"(or {flag}) to the key file's path, its PEM text, or `base64 -w0 key.pem`"
        )
    raise SettingError(
        f"the private key setting ({len(value)} characters, not shown in case it is a key) "
        f"is neither PEM text, base64 of a PEM file, nor the path of an existing file: set "
        f"{ENV_PRIVATE_KEY} (or {flag}) to the key file's path, its PEM text, or "
        f"`base64 -w0 key.pem`"
    )


def public_key_source(text: str | None) -> str | pathlib.Path | None:
    """The Tupu public key from ``--public-key``'s text; None (the bundled key) without one."""
    if text is None:
        return None
    return key_source(text, "--public-key", ENV_PUBLIC_KEY, "the Tupu public key")


def resolve_settings(
    *,
    secret_id: str | None = None,
    private_key: str | None = None,
    region: str | None = None,
    base_url: str | None = None,
    public_key: str | None = None,
    env: Mapping[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Settings:
    """Flags win over environment variables; a missing required one raises SettingError.

    ``warn`` receives the warning about private key text on the command line.
    """
    env = os.environ if env is None else env
    sid = _pick(secret_id, env, ENV_SECRET_ID)
    if sid is None:
        raise SettingError(
            f"no secret id: set {ENV_SECRET_ID} (or pass --secret-id) to the secret id "
            f"Tupu gave you"
        )
    key_text = _pick(private_key, env, ENV_PRIVATE_KEY)
    if key_text is None:
        raise SettingError(
            f"no private key: set {ENV_PRIVATE_KEY} (or pass --private-key) to the path of "
            f"your RSA private key PEM file, or to the PEM text"
        )
    key = private_key_source(key_text)
    from_flag = private_key is not None and bool(private_key.strip())
    if from_flag and not isinstance(key, pathlib.Path) and warn is not None:
        warn(KEY_ON_ARGV_WARNING)
    region_text = _pick(region, env, ENV_REGION) or Region.CN.value
    try:
        resolved_region = Region(region_text.lower())
    except ValueError:
        raise SettingError(
            f"unknown region {region_text!r}: set {ENV_REGION} (or pass --region) to cn, us "
            f"or oversea"
        ) from None
    url = _pick(base_url, env, ENV_BASE_URL)
    if url is not None:
        try:
            url = normalise_base_url(url)
        except ValueError as exc:
            raise SettingError(f"{exc}; fix {ENV_BASE_URL} (or --base-url)") from None
    pub = public_key_source(_pick(public_key, env, ENV_PUBLIC_KEY))
    return Settings(
        secret_id=sid, private_key=key, region=resolved_region, base_url=url, public_key=pub
    )
