"""Keeps secret ids out of log lines and error messages that tupu-async does not write.

The secret id is part of every API path, so httpx's own request log line shows it, and
so does any error body that echoes the path (a gateway's error page). Secret ids are
registered by each client; :func:`redact` replaces them with ``<secretId>``, and a filter
on the ``httpx`` and ``tupu_async`` loggers rewrites records that contain one.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from ._exceptions import TupuError

__all__ = ["PLACEHOLDER", "redact", "redact_error", "register_secret"]

PLACEHOLDER: Final = "<secretId>"
_LOGGERS: Final = ("httpx", "tupu_async")
_secrets: frozenset[str] = frozenset()
_lock = threading.Lock()


def redact(text: str) -> str:
    """``text`` with every registered secret id replaced by ``<secretId>``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, PLACEHOLDER)
    return text


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
        if _secrets:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_FILTER: Final = _SecretFilter()


def register_secret(secret_id: str) -> None:
    """Redact ``secret_id`` from now on (logs of httpx and tupu_async, error messages)."""
    global _secrets
    if not secret_id or secret_id in _secrets:
        return
    with _lock:
        _secrets = _secrets | {secret_id}
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
