"""``SafeFetcher``: downloads untrusted image URLs for the URL fallback without SSRF.

Its own httpx client (never the app's: no app headers, cookies, auth, proxies or
environment settings), connections only to public addresses or allow-listed ones (see
``_address_policy`` and ``_pinned_transport``), at most ``max_redirects`` redirects
each re-checked, ``Accept-Encoding: identity`` and the size cap counted on the raw bytes
as they arrive, a concurrency bound of its own and a deadline per download.
"""

from __future__ import annotations

import http.cookiejar
import ssl
from collections.abc import Iterable
from typing import Final

import anyio
import httpcore
import httpx

from ._address_policy import AddressPolicy, AllowEntry
from ._checks import require
from ._constants import USER_AGENT
from ._logging import logger
from ._pinned_transport import CheckingBackend, PinnedTransport, Resolver, system_resolver

__all__ = [
    "DOWNLOAD_TIMEOUT",
    "MAX_CONCURRENT_DOWNLOADS",
    "MAX_REDIRECTS",
    "UNREACHABLE",
    "DownloadError",
    "SafeFetcher",
]

DOWNLOAD_TIMEOUT: Final = 10.0
"""Seconds one download may take, redirects, connections and body included."""
MAX_REDIRECTS: Final = 3
"""Redirects one download may follow; each new host is checked again."""
MAX_CONCURRENT_DOWNLOADS: Final = 8
"""Downloads in progress at once per fetcher (others wait; the wait is not timed)."""
UNREACHABLE: Final = "host unreachable, refused, timed out or not allowed"
"""The one message for every connection failure and refusal: no port-scanner oracle."""


class DownloadError(Exception):
    """A download that failed; the message is safe to show to whoever sent the URL."""


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Refuses every cookie: one URL's cookies must never reach another URL's request."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


class SafeFetcher:
    """Downloads URLs from untrusted input. See the module docstring for the guarantees.

    ``allow_private`` opts networks, addresses or host names back in (intranet image
    hosts, tests). ``ssl_context`` replaces the default certificate verification (an
    intranet CA). ``resolver`` and ``network_backend`` replace the system resolver and
    the socket layer (tests). Close with ``aclose()``.
    """

    def __init__(
        self,
        *,
        allow_private: Iterable[AllowEntry] = (),
        timeout: float = DOWNLOAD_TIMEOUT,
        max_redirects: int = MAX_REDIRECTS,
        max_concurrency: int = MAX_CONCURRENT_DOWNLOADS,
        ssl_context: ssl.SSLContext | None = None,
        resolver: Resolver = system_resolver,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        require(timeout > 0, "the download timeout must be positive seconds")
        require(max_redirects >= 0, "max_redirects must be >= 0")
        require(max_concurrency >= 1, "max_concurrency must be >= 1")
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.max_concurrency = max_concurrency
        backend = CheckingBackend(AddressPolicy(allow_private), resolver, network_backend)
        self._http = httpx.AsyncClient(
            transport=PinnedTransport(
                backend, max_connections=max_concurrency, ssl_context=ssl_context
            ),
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
            headers={
                "User-Agent": f"{USER_AGENT} (url fallback)",
                "Accept": "image/*",
                "Accept-Encoding": "identity",
            },
        )
        self._slots: anyio.CapacityLimiter | None = None

    async def fetch(self, url: str, *, max_bytes: int) -> bytes:
        """GET ``url``: its body of at most ``max_bytes``, else ``DownloadError``."""
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self.max_concurrency)
        async with self._slots:
            try:
                with anyio.fail_after(self.timeout):
                    return await self._follow(url, max_bytes)
            except TimeoutError:
                logger.debug("url_fallback: download timed out after %gs", self.timeout)
                raise DownloadError(UNREACHABLE) from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                logger.debug("url_fallback: download failed: %r", exc)
                raise DownloadError(UNREACHABLE) from None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _follow(self, url: str, max_bytes: int) -> bytes:
        request = self._http.build_request("GET", url)
        for _ in range(self.max_redirects + 1):
            response = await self._http.send(request, stream=True)
            try:
                if response.next_request is None:
                    return await _read_capped(response, max_bytes)
                request = response.next_request
            finally:
                await response.aclose()
        raise DownloadError(f"more than {self.max_redirects} redirects")


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The raw body (never decompressed), refused as soon as it passes ``max_bytes``."""
    if response.status_code != 200:
        raise DownloadError(f"HTTP {response.status_code}")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise DownloadError(f"the host sent a compressed body ({encoding[:20]}) unasked")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise DownloadError(f"{int(declared):,} bytes is over the {max_bytes:,}-byte cap")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > max_bytes:
            raise DownloadError(f"more than the {max_bytes:,}-byte cap")
    return bytes(body)
