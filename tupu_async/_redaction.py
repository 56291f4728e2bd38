"""Keeps secret ids out of log lines and error messages that tupu-async does not write.

Each client registers its secret id (:func:`register_secret`); :func:`redact` replaces a
registered id standing as a whole token with ``<secretId>``, and a filter on the ``httpx``
and ``tupu_async`` loggers rewrites records that contain one.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Final

from ._exceptions import TupuError

__all__ = ["MIN_REDACTED_CHARS", "PLACEHOLDER", "redact", "redact_error", "register_secret"]

PLACEHOLDER: Final = "<secretId>"
MIN_REDACTED_CHARS: Final = 8
"""Shortest secret id that is redacted."""
_LOGGERS: Final = ("httpx", "tupu_async")
_TOKEN_CHAR: Final = r"[A-Za-z0-9_\-]"
_secrets: frozenset[str] = frozenset()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def redact(text: str) -> str:
    """``text`` with every registered secret id (as a whole token) replaced."""
    pattern = _pattern
    return text if pattern is None else pattern.sub(PLACEHOLDER, text)


def redact_error(error: TupuError) -> None:
    """Remove registered secret ids from ``error``'s message and body excerpt, in place."""
    if any(isinstance(a, str) and redact(a) != a for a in error.args):
        error.args = tuple(redact(a) if isinstance(a, str) else a for a in error.args)
    for attribute in ("message", "body_excerpt"):
        value = getattr(error, attribute, None)
        if isinstance(value, str) and redact(value) != value:
            setattr(error, attribute, redact(value))


class _SecretFilter(logging.Filter):
    """Rewrites a record whose formatted message contains a registered secret id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is not None:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_FILTER: Final = _SecretFilter()


def register_secret(secret_id: str) -> None:
    """Redact ``secret_id`` from now on (logs of httpx and tupu_async, error messages)."""
    global _secrets, _pattern
    if len(secret_id) < MIN_REDACTED_CHARS or secret_id in _secrets:
        return
    with _lock:
        _secrets = _secrets | {secret_id}
        alternatives = "|".join(map(re.escape, sorted(_secrets, key=len, reverse=True)))
        _pattern = re.compile(f"(?<!{_TOKEN_CHAR})(?:{alternatives})(?!{_TOKEN_CHAR})")
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
