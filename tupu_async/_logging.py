"""The one ``tupu_async`` logger, and ``TUPU_LOG`` (debug/info/warning/error) to turn it on.

The library never touches the root logger. ``TUPU_LOG`` gives the ``tupu_async`` logger
its own stderr handler and level, for a quick look without writing logging config.
"""

from __future__ import annotations

import logging
import os

__all__ = ["logger"]

logger = logging.getLogger("tupu_async")


def _configure_from_env() -> None:
    level = os.environ.get("TUPU_LOG", "").strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR") or logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


_configure_from_env()
