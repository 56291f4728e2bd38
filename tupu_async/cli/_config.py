"""Command-line configuration: each setting from its flag, else its environment variable.

A missing or unusable setting raises :class:`SettingError`, whose message names the flag
and the variable to set; the commands turn it into exit code 2.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    "public_key_source",
    "resolve_settings",
]

ENV_SECRET_ID = "TUPU_SECRET_ID"
ENV_PRIVATE_KEY = "TUPU_PRIVATE_KEY"
ENV_REGION = "TUPU_REGION"
ENV_BASE_URL = "TUPU_BASE_URL"
ENV_PUBLIC_KEY = "TUPU_PUBLIC_KEY"


class SettingError(Exception):
    """A setting that is missing or unusable; the message says which variable to set."""


@dataclass(frozen=True)
class Settings:
    """Everything needed to build a client, resolved from flags and the environment.

    ``private_key`` and ``public_key`` are PEM text or a path, as the client accepts them.
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


def _pick(flag_value: str | None, env: Mapping[str, str], var: str) -> str | None:
    if flag_value is not None and flag_value.strip():
        return flag_value.strip()
    value = env.get(var, "").strip()
    return value or None


def key_source(value: str, flag: str, var: str, what: str) -> str | pathlib.Path:
    """PEM text as is; anything else must be the path of an existing file."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")
    path = pathlib.Path(value).expanduser()
    if not path.is_file():
        raise SettingError(
            f"{what} {value!r} is neither PEM text nor an existing file: set {var} "
            f"(or pass {flag}) to the path of the PEM file, or to the PEM text itself"
        )
    return path


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
) -> Settings:
    """Flags win over environment variables; a missing required one raises SettingError."""
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
    key = key_source(key_text, "--private-key", ENV_PRIVATE_KEY, "the private key")
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
