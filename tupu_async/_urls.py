"""Image URLs: the one check of what a ``str`` input must look like before it is sent.

A ``str`` is only ever a URL, never a local file name. The rule, checked without any
I/O: scheme ``http`` or ``https``, a host, at most :data:`MAX_URL_LENGTH` characters,
and no whitespace, control characters or unpaired surrogates anywhere (percent-encode
them). Non-ASCII letters are allowed.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

from ._exceptions import InvalidImageError

__all__ = ["MAX_URL_LENGTH", "URL_RULE", "check_image_url", "not_a_url_error", "shown"]

MAX_URL_LENGTH: Final = 8192
"""Longest URL accepted, in characters."""

URL_RULE: Final = (
    f"an image URL needs the http:// or https:// scheme and a host, at most "
    f"{MAX_URL_LENGTH} characters, and no spaces or control characters (percent-encode them)"
)

# Whitespace (ASCII and Unicode), C0/C1 controls, DEL, and unpaired surrogates.
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\ufeff]")
_SHOWN = 120


def shown(text: str) -> str:
    """``text`` shortened for an error message (never the whole of a huge input)."""
    return repr(text[:_SHOWN] + ("…" if len(text) > _SHOWN else ""))


_LOCAL_FILES = "pass a local file as pathlib.Path(...) or Image.from_path(...)"


def not_a_url_error(text: str, *, where: str = "", local: str = _LOCAL_FILES) -> InvalidImageError:
    """The error for a ``str`` that is not an http(s) URL; it never touches the file system.

    ``where`` prefixes the message (e.g. ``"image 'a': "``); ``local`` says where local
    files go instead.
    """
    return InvalidImageError(
        f"{where}{shown(text)} is not an http(s) URL, and a str is only ever read as a URL: "
        f"{local}, and URLs with their http:// or https:// scheme"
    )


def check_image_url(url: object, *, where: str = "", local: str = _LOCAL_FILES) -> str:
    """``url`` when it follows the rule above; ``InvalidImageError`` saying which part fails.

    ``where`` prefixes every message and ``local`` is passed to :func:`not_a_url_error`.
    """
    if not isinstance(url, str):
        raise InvalidImageError(f"{where}an image URL must be a str, not {type(url).__name__}")
    scheme, sep, _ = url[:16].partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise not_a_url_error(url, where=where, local=local)
    if len(url) > MAX_URL_LENGTH:
        raise InvalidImageError(
            f"{where}{shown(url)} is {len(url):,} characters long, over the limit: {URL_RULE}"
        )
    bad = _FORBIDDEN.search(url)
    if bad is not None:
        raise InvalidImageError(
            f"{where}{shown(url)} contains {bad.group()!r} at position {bad.start()}: {URL_RULE}"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise InvalidImageError(
            f"{where}{shown(url)} is not a well-formed URL ({exc}): {URL_RULE}"
        ) from None
    if not host:
        raise InvalidImageError(f"{where}{shown(url)} has no host: {URL_RULE}")
    return url
