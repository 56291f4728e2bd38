"""Setting up an ``AsyncTupuClient``: argument checks (one table), region, HTTP pool, keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ._constants import Region
from ._keys import KeySource, load_public_key, official_public_key

__all__ = ["check_client_args", "default_http_client", "resolve_region", "verification_key"]


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


# name -> (is it bad?, what it must be): checked in this order.
_RULES: Final[dict[str, tuple[Callable[[Any], bool], str]]] = {
    "max_images_per_request": (
        lambda v: not isinstance(v, int) or v < 1,
        "a positive int (the API's is 10)",
    ),
    "qps": (lambda v: v <= 0, "positive (the API allows 50 per secret id)"),
    "max_retries": (lambda v: v < 0, ">= 0"),
    "max_in_flight": (lambda v: v < 1, ">= 1"),
    "batch_linger": (lambda v: v < 0, ">= 0 seconds"),
    "response_max_age": (
        lambda v: v is not None and not v > 0,
        "a positive number of seconds, or None to accept responses of any age",
    ),
    "max_response_bytes": (lambda v: _not_int(v) or v < 1024, "an int >= 1024"),
    "warm_connections": (
        lambda v: v is not None and (_not_int(v) or v < 0),
        "an int >= 0 (0 disables warming) or None (default)",
    ),
}


def check_client_args(**values: object) -> None:
    """``ValueError`` for the first of ``values`` (keyword names of the constructor) that
    is out of range."""
    for name, (bad, must_be) in _RULES.items():
        if name in values and bad(values[name]):
            raise ValueError(f"{name} must be {must_be}")


def resolve_region(region: Region | str) -> Region:
    """``region`` as a :class:`Region`; ``ValueError`` naming the valid ones."""
    if isinstance(region, Region):
        return region
    try:
        return Region(str(region).strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown region {region!r}: use Region.CN, Region.US or Region.OVERSEA "
            f"(or 'cn', 'us', 'oversea'), or pass base_url="
        ) from None


def default_http_client(timeout: float | httpx.Timeout, max_in_flight: int) -> httpx.AsyncClient:
    """The HTTP pool a client opens for itself: ``max_in_flight`` connections."""
    return httpx.AsyncClient(
        timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight),
    )


def verification_key(verify: bool, key: KeySource | RSAPublicKey | None) -> RSAPublicKey | None:
    """The key responses are verified with: None when ``verify`` is off, else ``key``
    (the bundled official key when None)."""
    if not verify:
        return None
    return official_public_key() if key is None else load_public_key(key)
