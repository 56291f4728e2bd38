"""The options several commands share, as ``Annotated`` aliases, and ``with_settings``.

``@with_settings`` gives a command the five connection options (``--secret-id``,
``--private-key``, ``--region``, ``--base-url``, ``--public-key``) in one place.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from .._constants import Region
from ._common import EXIT_FATAL, fail, stderr, warn
from ._config import SettingError, Settings, resolve_settings

__all__ = [
    "Connect",
    "JsonOpt",
    "LibraryIdArg",
    "OverwriteOpt",
    "PublicKeyOpt",
    "TransportChoice",
    "flag",
    "optional",
    "with_settings",
]


class TransportChoice(str, Enum):
    multipart = "multipart"
    base64 = "base64"


def optional(*names: str, help: str) -> Any:
    """An option that defaults to None; ``--help`` shows no default."""
    return typer.Option(*names, help=help, show_default=False)


def flag(*names: str, help: str) -> Any:
    """An on/off option; shown in ``--help`` without a ``<bool>`` placeholder."""
    return typer.Option(*names, help=help, metavar="")


SecretIdOpt = Annotated[
    str | None,
    optional("--secret-id", help="Your secret id (env TUPU_SECRET_ID)."),
]
PrivateKeyOpt = Annotated[
    str | None,
    optional(
        "--private-key",
        help="Your RSA private key file (env TUPU_PRIVATE_KEY, which may also hold the PEM "
        "text or its base64). Key text here is visible in `ps`: a warning says so.",
    ),
]
RegionOpt = Annotated[
    Region | None,
    typer.Option("--region", help="cn, us or oversea (env TUPU_REGION; default cn)."),
]
BaseUrlOpt = Annotated[
    str | None,
    optional(
        "--base-url", help="Override the region's host, e.g. a fake server (env TUPU_BASE_URL)."
    ),
]
PublicKeyOpt = Annotated[
    str | None,
    optional(
        "--public-key",
        help="Tupu's public key to verify responses (PEM path or text; default: the bundled "
        "official key) (env TUPU_PUBLIC_KEY).",
    ),
]
JsonOpt = Annotated[bool, flag("--json", help="Print JSON instead of a table.")]
OverwriteOpt = Annotated[
    bool, flag("--overwrite", help="Replace an existing non-empty --out file.")
]
LibraryIdArg = Annotated[str, typer.Argument(help="The image library id.")]
Connect = Callable[[], Settings]
"""What a ``@with_settings`` command gets as ``settings``: call it to resolve them."""


def _settings(
    secret_id: SecretIdOpt = None,
    private_key: PrivateKeyOpt = None,
    region: RegionOpt = None,
    base_url: BaseUrlOpt = None,
    public_key: PublicKeyOpt = None,
) -> Settings:
    """The settings from these flags and the environment; a bad one exits with code 2."""
    try:
        return resolve_settings(
            secret_id=secret_id,
            private_key=private_key,
            region=region.value if region is not None else None,
            base_url=base_url,
            public_key=public_key,
            warn=warn,
        )
    except SettingError as exc:
        raise fail(stderr(), str(exc), EXIT_FATAL) from None


_CONNECTION = list(inspect.signature(_settings, eval_str=True).parameters.values())


def with_settings(command: Callable[..., None]) -> Callable[..., None]:
    """Add the connection options to ``command``.

    ``command`` takes a ``settings`` parameter: a function that resolves the settings
    (exit code 2 on a bad one), called when the command is ready to connect.
    """
    own = inspect.signature(command, eval_str=True)
    params = [p for p in own.parameters.values() if p.name != "settings"] + _CONNECTION

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        chosen = {p.name: kwargs.pop(p.name) for p in _CONNECTION}
        command(**kwargs, settings=lambda: _settings(**chosen))

    wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
