"""Request authentication for the fake server: secret ids, their keys, skew and replay.

The checks, in order, and the Tupu code each failure gives:

- unknown secret id: 6; secret id known but no public key uploaded: 9;
- missing timestamp, nonce or signature, or a signature that does not verify over
  ``f"{secretId},{timestamp},{nonce}"`` (the field texts exactly as received): 1;
- a timestamp (seconds or milliseconds) more than ``max_clock_skew`` from now: 12;
- the same (timestamp, nonce) pair seen before for this secret id while it could still
  be accepted (a replay): 1.
"""

from __future__ import annotations

import heapq
import time
from typing import Final

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .._signing import verify_signature

__all__ = ["AuthResult", "Authenticator"]

CODE_OK: Final = 0
CODE_AUTH_FAILED: Final = 1
CODE_BAD_SECRET_ID: Final = 6
CODE_NO_CERTIFICATE: Final = 9
CODE_TIMESTAMP: Final = 12

# Above this a timestamp is taken as milliseconds (1e11 s is the year 5138).
_MILLISECONDS_THRESHOLD: Final = 100_000_000_000


class AuthResult:
    """The outcome of one check: ``code`` 0 when authenticated, else the Tupu code."""

    __slots__ = ("code", "message")

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message

    @property
    def ok(self) -> bool:
        return self.code == CODE_OK


_OK = AuthResult(CODE_OK, "success")


def parse_timestamp_seconds(text: str) -> float | None:
    """A request timestamp (seconds or milliseconds, integer or decimal) in seconds."""
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value / 1000.0 if abs(value) >= _MILLISECONDS_THRESHOLD else value


class Authenticator:
    """Holds the registered secret ids and keys and checks each request against them."""

    def __init__(self, *, max_clock_skew: float = 300.0, replay_protection: bool = True) -> None:
        self.max_clock_skew = max_clock_skew
        self.replay_protection = replay_protection
        self._keys: dict[str, RSAPublicKey | None] = {}
        self._seen: set[tuple[str, str, str]] = set()
        self._expiry: list[tuple[float, tuple[str, str, str]]] = []  # a heap

    def register(self, secret_id: str, public_key: RSAPublicKey | None) -> None:
        self._keys[secret_id] = public_key

    def forget(self, secret_id: str) -> None:
        self._keys.pop(secret_id, None)

    @property
    def secret_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def public_key(self, secret_id: str) -> RSAPublicKey | None:
        return self._keys.get(secret_id)

    def clear_replay_cache(self) -> None:
        self._seen.clear()
        self._expiry.clear()

    def _expire(self, now: float) -> None:
        expiry = self._expiry
        seen = self._seen
        while expiry and expiry[0][0] <= now:
            seen.discard(heapq.heappop(expiry)[1])

    def check(
        self,
        secret_id: str,
        timestamp: str | None,
        nonce: str | None,
        signature: str | None,
        *,
        now: float | None = None,
    ) -> AuthResult:
        """Authenticate one request; ``now`` is wall-clock seconds (default: time.time())."""
        if secret_id not in self._keys:
            return AuthResult(
                CODE_BAD_SECRET_ID, f"secretId error: {secret_id!r} is not a known secretId"
            )
        key = self._keys[secret_id]
        if key is None:
            return AuthResult(
                CODE_NO_CERTIFICATE, "no certificate: no public key was uploaded for this secretId"
            )
        if not timestamp or not nonce or not signature:
            missing = [
                name
                for name, value in (
                    ("timestamp", timestamp),
                    ("nonce", nonce),
                    ("signature", signature),
                )
                if not value
            ]
            return AuthResult(
                CODE_AUTH_FAILED, f"authentication failed: missing {', '.join(missing)}"
            )
        message = f"{secret_id},{timestamp},{nonce}".encode()
        if not verify_signature(key, message, signature):
            return AuthResult(CODE_AUTH_FAILED, "authentication failed: signature does not verify")
        wall = time.time() if now is None else now
        seconds = parse_timestamp_seconds(timestamp)
        if seconds is None:
            return AuthResult(CODE_TIMESTAMP, f"timestamp error: {timestamp!r} is not a number")
        if abs(seconds - wall) > self.max_clock_skew:
            return AuthResult(
                CODE_TIMESTAMP,
                f"timestamp error: {timestamp} is {seconds - wall:+.0f} s from the server clock",
            )
        if self.replay_protection:
            mono = time.monotonic()
            self._expire(mono)
            seen_key = (secret_id, timestamp, nonce)
            if seen_key in self._seen:
                return AuthResult(
                    CODE_AUTH_FAILED, "authentication failed: timestamp and nonce already used"
                )
            self._seen.add(seen_key)
            # The pair could be accepted again until its timestamp leaves the skew window.
            remaining = seconds + self.max_clock_skew - wall
            heapq.heappush(self._expiry, (mono + max(remaining, 0.0), seen_key))
        return _OK
