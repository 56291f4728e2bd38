"""One rule for ``base_url``: scheme and host (and an optional proxy prefix), never the API path."""

from __future__ import annotations

import urllib.parse

__all__ = ["normalise_base_url"]


def normalise_base_url(url: str) -> str:
    """``url`` without a trailing slash or an API path (``/v3/...``).

    Raises ValueError, saying what to pass, for anything but an http(s) URL with a host
    and no query or fragment.
    """
    text = url.strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"base URL {url!r} is not an http:// or https:// URL with a host: pass the "
            f"service's scheme and host, e.g. http://api.open.tuputech.com"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"base URL {url!r} has a query or fragment: pass only the scheme and host, "
            f"e.g. http://api.open.tuputech.com"
        )
    path = parts.path.rstrip("/")
    cut = (path + "/").find("/v3/")
    if cut >= 0:  # the official SDKs' form: .../v3/recognition/[secret id]
        path = path[:cut]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
